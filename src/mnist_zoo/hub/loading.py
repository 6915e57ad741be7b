"""``load_pretrained``: a model by registry name or Hub repo id, or from a local Hub folder.

```python
model = load_pretrained("minivgg")                          # pinned repo, revision, SHA-256s
model = load_pretrained("minivgg@v0.1.0")                   # another pinned release, its own pins
model = load_pretrained("hf-hub:mnist-zoo/minivgg@v0.1.0")  # any repo in the zoo's layout
model = load_pretrained("hub/minivgg")                      # a local folder in the same layout
model = load_pretrained("ensemble")                         # the three as one Ensemble
model = load_pretrained("minivgg", num_classes=26)          # a fresh 26-way head
```

A registered name loads its default release (``DEFAULT_RELEASE`` in :mod:`mnist_zoo.models`);
``revision="v0.1.0"`` or the name form ``"minivgg@v0.1.0"`` loads another pinned release, checked
against that release's own pins. ``list_pretrained(tags=True)`` lists them all. A revision that
no release pins is refused unless ``trust_unverified=True``.

Each way in ends in the same checks (:mod:`mnist_zoo.hub.verify`): sizes before reading,
SHA-256 before parsing, dtypes and finiteness before loading; nothing is unpickled.
"""

from __future__ import annotations

import difflib
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from huggingface_hub.utils import HFValidationError, validate_repo_id
from torch import nn

from .._version import __version__
from ..devices import select_device
from ..ensemble import PRETRAINED_MEMBERS, Ensemble, ensemble_members
from ..errors import (
    InvalidArgumentError,
    InvalidHubFolderError,
    NoPretrainedWeightsError,
    UnknownModelError,
    UnverifiedWeightsError,
)
from ..registry import ModelEntry, PretrainedWeights, get_model_entry, list_models, list_pretrained
from .layout import CONFIG_NAME, WEIGHTS_NAME
from .reading import build_model, load_folder, parse_config
from .remote import FetchedFile, check_pinned_config, fetch_file, reject
from .verify import MAX_CONFIG_BYTES, same_sha256, size_limit

__all__ = [
    "HF_HUB_PREFIX",
    "PRETRAINED_MEMBERS",
    "SPECIAL_LOADERS",
    "load_pretrained",
    "load_pretrained_ensemble",
]

logger = logging.getLogger(__name__)

#: The prefix that makes a name a Hub repo id, as in timm: ``"hf-hub:owner/name[@revision]"``.
HF_HUB_PREFIX = "hf-hub:"


def load_pretrained(
    name: str | os.PathLike[str],
    *,
    revision: str | None = None,
    device: str | torch.device = "cpu",
    cache_dir: str | os.PathLike[str] | None = None,
    local_files_only: bool = False,
    endpoint: str | None = None,
    num_classes: int | None = None,
    trust_unverified: bool = False,
) -> nn.Module:
    """Load a pretrained model, in eval mode, from the Hub or from a local Hub folder.

    The returned model carries its provenance in ``model.pretrained_cfg``: name,
    architecture, model_kwargs, repo_id, revision (commit), sha256, metrics, recipe, source,
    num_classes. What is verified, and against what, is in :mod:`mnist_zoo.hub`; in short,
    every file's size is checked before it is read and its SHA-256 before it is parsed.

    Args:
        name: A registered model name with published weights (see ``list_pretrained()``),
            optionally with a release tag, ``"minivgg@v0.1.0"`` (as ``revision="v0.1.0"``);
            ``"hf-hub:owner/name"`` or ``"hf-hub:owner/name@revision"``, any Hub repo in the
            zoo's layout (``config.json`` + ``model.safetensors``) whose config names a
            registered architecture; ``"ensemble"`` (the pretrained models as one
            :class:`~mnist_zoo.Ensemble`); or a folder written by
            :func:`~mnist_zoo.hub.save_pretrained` (e.g. ``"hub/minivgg"``).
        revision: Branch, tag or commit. For a registered name: a pinned release's tag
            (``list_pretrained(tags=True)``), loaded and checked against that release's own
            pins; default: the registry's default release. Any other revision needs
            ``trust_unverified`` (the file is then checked against the Hub's ETag only). For
            ``hf-hub:``, the same as an ``@revision`` suffix (default ``main``). Ignored for
            local folders.
        device: Where to put the model: ``"cpu"`` (default), ``"auto"``, ``"cuda"``,
            ``"cuda:N"``, ``"mps"`` or a ``torch.device``.
        cache_dir: Hub cache folder; default ``HF_HUB_CACHE`` (``$HF_HOME/hub``).
        local_files_only: Use only the cache, never the network (as ``HF_HUB_OFFLINE=1``).
        endpoint: Hub URL; default ``HF_ENDPOINT`` or https://huggingface.co.
        num_classes: The number of outputs wanted. ``None`` or the checkpoint's own: every
            tensor is loaded. Another number: the backbone is loaded strictly and the head is
            replaced by a freshly initialised one (``model.reset_classifier``), which a log
            line names; the metrics in ``pretrained_cfg`` are then dropped.
        trust_unverified: Load a ``config.json`` that records no SHA-256 of the weights (a
            local folder or an ``hf-hub:`` repo) anyway, or a registered name at a revision
            no release pins, with a warning.

    Returns:
        The model with the weights loaded, on ``device``, in eval mode.

    Raises:
        UnknownModelError: ``name`` is neither registered nor a folder, or an ``hf-hub:``
            repo's config names an architecture that is not registered (a ``KeyError``).
        InvalidArgumentError: ``num_classes`` is not a positive integer or does not apply to
            this model, the ``hf-hub:`` name is malformed, or a name's ``@tag`` and
            ``revision`` disagree (a ``ValueError``).
        HubError: A subclass saying what went wrong and what to do about it:
            ``ChecksumMismatchError``, ``UnverifiedWeightsError`` (also: a revision no release
            pins, without ``trust_unverified``; the message lists the pinned tags),
            ``IncompatibleConfigError``,
            ``HubUnavailableError``, ... (see :mod:`mnist_zoo.errors`).
        DeviceNotAvailableError: ``device`` names a device this machine does not have (a
            ``RuntimeError``).
    """
    device = select_device(device)  # before any download: a device this machine lacks is named
    where = {"cache_dir": cache_dir, "local_files_only": local_files_only, "endpoint": endpoint}
    key = os.fspath(name)
    if isinstance(name, str):
        key, revision = _split_release(key, revision)
    if isinstance(name, str) and key.lower().startswith(HF_HUB_PREFIX):
        repo_id, revision = _parse_hub_name(key, revision)
        model = _load_repo(repo_id, revision, None, None, trust_unverified, where)
    elif key.lower() in SPECIAL_LOADERS:
        if num_classes is not None:
            raise InvalidArgumentError(f"num_classes= does not apply to {key!r}.")
        return SPECIAL_LOADERS[key.lower()](revision=revision, device=device, **where)
    elif (folder := _as_folder(name)) is not None:
        model = load_folder(folder, trust_unverified=trust_unverified)
    else:
        entry = get_model_entry(key)
        pin = _release_of(entry, revision, trust_unverified)
        repo_id = pin.repo_id if pin else _pin_of(entry).repo_id
        model = _load_repo(repo_id, revision, entry, pin, trust_unverified, where)
    return with_num_classes(model, num_classes).to(device).eval()


def load_pretrained_ensemble(*, revision: str | None = None, **kwargs: Any) -> Ensemble:
    """A release's pretrained ensemble as one :class:`~mnist_zoo.Ensemble` (equal weights).

    This is what ``load_pretrained("ensemble")`` returns, and ``load_pretrained("ensemble",
    revision="v0.1.0")`` (or ``"ensemble@v0.1.0"``) the ensemble of that release:
    :func:`~mnist_zoo.ensemble.ensemble_members` names its members, each loaded and checked
    against its own pin. Its ``pretrained_cfg`` holds each member's.

    Args:
        revision: The release; default: the registry's default release.
        **kwargs: Passed to :func:`load_pretrained` for each member (``device``,
            ``cache_dir``, ``trust_unverified``, ...).

    Returns:
        The ensemble, on the members' device, in eval mode.

    Raises:
        HubError: A member could not be loaded (a subclass says why), or ``revision`` is not
            a pinned release and ``trust_unverified`` is not set.
    """
    release = revision or get_model_entry(PRETRAINED_MEMBERS[0]).default_release
    names = ensemble_members(release) if release else PRETRAINED_MEMBERS
    members = [load_pretrained(name, **kwargs) for name in names]
    ensemble = Ensemble(members).to(next(members[0].parameters()).device).eval()
    ensemble.pretrained_cfg = {  # type: ignore[assignment]
        "name": "ensemble",
        "release": release,
        "members": [m.pretrained_cfg for m in members],
    }
    return ensemble


#: Names that are not a single registered model, mapped to a loader taking load_pretrained's
#: keyword arguments (revision, device, cache_dir, local_files_only, endpoint), e.g. an
#: ensemble built from several pretrained models. Checked before the registry.
SPECIAL_LOADERS: dict[str, Callable[..., nn.Module]] = {"ensemble": load_pretrained_ensemble}


def with_num_classes(model: nn.Module, num_classes: int | None) -> nn.Module:
    """Give a loaded model ``num_classes`` outputs: keep its head if it has them, else a fresh one.

    The backbone, every tensor but the head's, stays as loaded. A replaced head is named in
    one log line (logger ``mnist_zoo.hub.loading``, level INFO) and in
    ``model.pretrained_cfg["fresh_head"]``.

    Args:
        model: A model just loaded, with its ``pretrained_cfg``.
        num_classes: The number of outputs wanted, or ``None`` to keep the model as it is.

    Returns:
        ``model`` itself.

    Raises:
        InvalidArgumentError: ``num_classes`` is not a positive integer, or the model has no
            ``get_classifier()`` / ``reset_classifier()`` to replace its head with.
    """
    if num_classes is None:
        return model
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise InvalidArgumentError(f"num_classes must be a positive integer, got {num_classes!r}.")
    get, reset = getattr(model, "get_classifier", None), getattr(model, "reset_classifier", None)
    if not callable(get) or not callable(reset):
        raise InvalidArgumentError(
            f"num_classes={num_classes} needs a model whose head can be replaced, with "
            f"get_classifier() and reset_classifier(); {type(model).__name__} has neither."
        )
    cfg = getattr(model, "pretrained_cfg", {})
    head = get()
    if head.out_features != num_classes:
        head_name = next(n for n, m in model.named_modules() if m is head)
        old = head.out_features
        reset(num_classes)
        kept = len(model.state_dict()) - len(get().state_dict())
        logger.info(
            "%s: the pretrained %d-way head %s is replaced by a freshly initialised %d-way one; "
            "the other %d tensors are the pretrained weights.",
            cfg.get("name", type(model).__name__),
            old,
            head_name,
            num_classes,
            kept,
        )
        cfg.update(fresh_head=head_name, metrics={})  # the metrics were the old head's
    cfg["num_classes"] = num_classes
    return model


def _parse_hub_name(name: str, revision: str | None) -> tuple[str, str]:
    repo_id, at, suffix = name[len(HF_HUB_PREFIX) :].partition("@")
    if at and not suffix:
        raise InvalidArgumentError(f"{name!r} ends in '@' without a revision.")
    if at and revision is not None and revision != suffix:
        raise InvalidArgumentError(
            f"{name!r} names revision {suffix!r}, but revision={revision!r} was passed too."
        )
    try:
        validate_repo_id(repo_id)
    except HFValidationError as err:
        raise InvalidArgumentError(
            f"{name!r} is not 'hf-hub:owner/name[@revision]': {err}"
        ) from None
    return repo_id, suffix or revision or "main"


def _split_release(name: str, revision: str | None) -> tuple[str, str | None]:
    """``"minivgg@v0.1.0"`` -> ``("minivgg", "v0.1.0")``; other names are left alone."""
    base, at, tag = name.partition("@")
    if not at or name.lower().startswith(HF_HUB_PREFIX) or "/" in base or os.sep in base:
        return name, revision
    if not tag:
        raise InvalidArgumentError(f"{name!r} ends in '@' without a release tag.")
    if revision is not None and revision != tag:
        raise InvalidArgumentError(
            f"{name!r} names release {tag!r}, but revision={revision!r} was passed too."
        )
    return base, tag


def _release_of(
    entry: ModelEntry, revision: str | None, trust_unverified: bool
) -> PretrainedWeights | None:
    """The pin of the release ``revision`` names; ``None``: an unpinned revision, if trusted."""
    pin = entry.release(revision) if entry.pretrained is not None else _pin_of(entry)
    if pin is not None or trust_unverified:
        return pin
    tags = ", ".join(
        f"{tag} (default)" if tag == entry.default_release else tag for tag in entry.releases
    )
    raise UnverifiedWeightsError(
        f"mnist_zoo {__version__} pins no weights of {entry.name!r} at revision {revision!r}; "
        f"its pinned releases are: {tags}. Load one of those as NAME@TAG, e.g. "
        f"'{entry.name}@{entry.default_release}'. To load an unpinned revision anyway, checked "
        "against the Hub's ETag only, pass trust_unverified=True to load_pretrained()."
    )


def _pin_of(entry: ModelEntry) -> PretrainedWeights:
    if entry.pretrained is None:
        have = ", ".join(list_pretrained()) or "none yet"
        raise NoPretrainedWeightsError(
            f"{entry.name!r} is registered but has no published weights (models with weights: "
            f"{have}). Use create_model({entry.name!r}) for a freshly initialised one, or load "
            f"your own: save_pretrained(model, 'hub/{entry.name}', name={entry.name!r}), then "
            f"load_pretrained('hub/{entry.name}')."
        )
    return entry.pretrained


def _as_folder(name: str | os.PathLike[str]) -> Path | None:
    # A registered name wins over a same-named folder in the working directory; anything with
    # a path separator is a path, so a typo there says "no such folder", not "unknown model".
    if not isinstance(name, os.PathLike) and name.lower() in list_models():
        return None
    path = Path(name)
    if path.is_dir():
        return path
    if isinstance(name, os.PathLike) or "/" in name or os.sep in name:
        raise InvalidHubFolderError(_no_such_folder(name))
    return None


def _no_such_folder(name: str | os.PathLike[str]) -> str:
    """Why ``name`` loads nothing, with the name that most likely was meant.

    The names suggested work as they are in Python and on the command line alike.
    """
    path = Path(name)
    where = "" if path.is_absolute() else f" (relative to {Path.cwd()})"
    text = (
        f"{str(name)!r} is neither a folder{where} nor a registered model name (those are: "
        f"{', '.join(list_models())})."
    )
    if path.name.lower() in list_models():
        # "hub/minivgg" outside a checkout of mnist_zoo, or a run's folder in another directory.
        return f"{text} The published weights of {path.name.lower()} load by the name " + (
            f"{path.name.lower()!r}; a folder of your own, by its full path."
        )
    try:
        siblings = [d.name for d in path.parent.iterdir() if d.is_dir()]
    except OSError:  # no such parent, or one that cannot be listed: nothing to suggest
        siblings = []
    close = difflib.get_close_matches(path.name, siblings, n=1)
    if close:  # a typo in a folder's name: hub/simplcnn for hub/simplecnn
        return f"{text} Did you mean {str(path.with_name(close[0]))!r}?"
    parts = path.as_posix().split("/")
    if isinstance(name, str) and len(parts) == 2 and all(parts) and not name.startswith("."):
        text += f" A Hub repo loads by its id with the hf-hub: prefix, 'hf-hub:{name}'."
    return text


def _load_repo(
    repo_id: str,
    revision: str | None,
    entry: ModelEntry | None,
    pin: PretrainedWeights | None,
    trust_unverified: bool,
    where: dict[str, Any],
) -> nn.Module:
    """A registered name's repo (``entry`` given; ``pin``: its release, or ``None`` for a
    trusted unpinned revision) or any repo; config.json first, then weights."""
    config_file = fetch_file(
        repo_id,
        CONFIG_NAME,
        revision=revision or (pin.revision if pin else "main"),
        limit=MAX_CONFIG_BYTES,
        **where,
    )
    commit = config_file.commit
    pinned, registered = pin is not None, entry is not None
    if pin is not None:
        check_pinned_config(config_file, pin)
    config = parse_config(config_file.data, f"{CONFIG_NAME} of {repo_id}@{commit}")
    entry = entry or _entry_named_by(config, f"hf-hub:{repo_id}@{commit}")
    if not config.get("sha256") and pin is None and not trust_unverified:
        raise UnverifiedWeightsError(
            f"The {CONFIG_NAME} of hf-hub:{repo_id}@{commit} records no SHA-256 of "
            f"{WEIGHTS_NAME}, so the weights cannot be checked against it. If you trust the "
            "repo, load it with trust_unverified=True (the Hub's ETag is still checked)."
        )
    if registered and not pinned:
        logger.warning(
            "Loading %s at revision %r (commit %s) instead of the pinned releases (%s): checking "
            "it against the SHA-256 the Hub reports for it (its ETag) and its config.json, not "
            "against a reviewed pin.",
            entry.name,
            revision,
            commit[:12],
            ", ".join(entry.releases),
        )
    kwargs = dict(config.get("model_kwargs") or {})
    weights = fetch_file(
        repo_id,
        pin.filename if pin else WEIGHTS_NAME,
        revision=commit,  # not the revision: a branch may have moved in between
        size=pin.size if pinned else None,
        limit=None if pinned and pin.size else _limit(entry, kwargs),
        **where,
    )
    _verify_weights(weights, repo_id, pin if pinned else None, config)
    meta = {"repo_id": repo_id, "revision": weights.commit, "sha256": weights.sha256}
    if pinned and registered:
        meta["release"] = next((t for t, p in entry.releases.items() if p is pin), pin.revision)
    return build_model(entry, config, weights.data, weights.path, meta)


def _entry_named_by(config: dict[str, Any], source: str) -> ModelEntry:
    try:
        return get_model_entry(config["architecture"])
    except UnknownModelError:
        raise UnknownModelError(
            config["architecture"],
            list_models(),
            f" The {CONFIG_NAME} of {source} names it, but mnist_zoo {__version__} has no such "
            "architecture (a newer version may: pip install -U mnist-zoo).",
        ) from None


def _limit(entry: ModelEntry, kwargs: dict[str, Any]) -> int:
    try:
        return size_limit(entry.builder, kwargs)
    except TypeError as err:
        raise InvalidHubFolderError(
            f"config.json's model_kwargs {kwargs} do not fit {entry.name}: {err}."
        ) from err


def _verify_weights(
    weights: FetchedFile, repo_id: str, pin: PretrainedWeights | None, config: dict[str, Any]
) -> None:
    """Check the weights' SHA-256: against the pin, or else the Hub's ETag and the config."""
    where = f"{weights.path.name} of {repo_id}@{weights.commit}"
    if pin is not None:
        checks = [(pin.sha256, f"the SHA-256 mnist_zoo {__version__} pins")]
        hint = "the weights on the Hub are not the reviewed ones: update mnist_zoo or report it"
    else:
        checks = [
            (weights.etag, "the SHA-256 the Hub reports for it (its ETag)"),
            (config.get("sha256"), f"the SHA-256 its {CONFIG_NAME} records"),
        ]
        hint = "the repo's copy may be damaged, or its config and weights do not belong together"
        if not config.get("sha256"):
            logger.warning(
                "%s: its %s records no SHA-256; checking it against %s only.",
                where,
                CONFIG_NAME,
                "the Hub's ETag" if weights.etag else "nothing (the cache records no ETag)",
            )
    for expected, against in checks:
        if expected and not same_sha256(weights.sha256, expected):
            reject(
                weights,
                f"{where} has SHA-256 {weights.sha256}, but {against} is {expected}.",
                hint=f"{hint}; tell the repo's owner" if pin is None else hint,
            )
