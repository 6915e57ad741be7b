"""Pretrained weights on the Hugging Face Hub: save, publish and load them safely.

A model's weights live in a folder laid out exactly like its Hub repo:

```text
hub/minivgg/
    model.safetensors   fp32 state dict (never pickle)
    config.json         architecture, builder kwargs, recipe, metrics, SHA-256 of the weights
    README.md           model card: Hub YAML front matter + a short human summary
```

```python
import mnist_zoo.hub as hub
hub.save_pretrained(model, "hub/minivgg", name="minivgg", metrics=result.to_dict())
hub.push_to_hub("hub/minivgg", "mnist-zoo/minivgg")
model = hub.load_pretrained("minivgg")        # registry name: pinned repo, revision and SHA-256
model = hub.load_pretrained("hub/minivgg")    # or a local folder in the same layout
```

Downloads go through ``huggingface_hub.hf_hub_download``, so its cache and environment
variables work as Hub users expect: ``HF_HOME`` / ``HF_HUB_CACHE`` (where), ``HF_ENDPOINT``
(which server), ``HF_HUB_OFFLINE=1`` (no network, cache only).

How the weights file is verified before a single byte of it is parsed:

* registry name at its pinned revision: against the SHA-256 pinned in the registry;
* registry name with ``revision=`` resolving to another commit: the pin describes other bytes,
  so the file is checked against the Hub's ETag, which for LFS files is the SHA-256 the Hub
  computed on upload. That catches corruption in transit or in the cache, not a repo owner
  changing the weights: pass no ``revision`` to get the reviewed, pinned bytes;
* local folder: trusted, but checked against the SHA-256 that ``config.json`` records.

A file that fails its check is deleted from the cache and never loaded.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

import safetensors
import safetensors.torch
import torch
from huggingface_hub import CommitInfo, EvalResult, HfApi, ModelCardData, hf_hub_download
from huggingface_hub import constants as hf_constants
from huggingface_hub import errors as hf_errors
from huggingface_hub.utils import HFValidationError, validate_repo_id
from torch import nn

from . import __version__
from .registry import ModelEntry, count_parameters, get_model_entry, list_models, list_pretrained

__all__ = [
    "CONFIG_NAME",
    "HUB_FILES",
    "SPECIAL_LOADERS",
    "WEIGHTS_NAME",
    "ChecksumMismatchError",
    "CorruptWeightsError",
    "HubError",
    "HubFileNotFoundError",
    "HubNotFoundError",
    "HubRepoNotFoundError",
    "HubRevisionNotFoundError",
    "HubUnavailableError",
    "InvalidHubFolderError",
    "NoPretrainedWeightsError",
    "WeightsMismatchError",
    "load_pretrained",
    "push_to_hub",
    "save_pretrained",
    "sha256_file",
]

logger = logging.getLogger(__name__)

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
CARD_NAME = "README.md"
#: The files that make a Hub folder; exactly these are uploaded.
HUB_FILES = (WEIGHTS_NAME, CONFIG_NAME, CARD_NAME)

_SHA256 = re.compile(r"[0-9a-f]{64}")

# ----------------------------------------------------------------------------------------------
# Errors: one class per thing that can go wrong, each message says what to do about it.


class HubError(Exception):
    """Base class of every error raised while saving, publishing or loading Hub weights."""


class NoPretrainedWeightsError(HubError):
    """The model is registered but has no published weights."""


class HubUnavailableError(HubError):
    """The Hub could not be reached (or offline mode is on) and the file is not cached."""


class HubNotFoundError(HubError):
    """The Hub answered, but the repo, revision or file does not exist there."""


class HubRepoNotFoundError(HubNotFoundError):
    """The Hub repo does not exist (or is private or gated)."""


class HubRevisionNotFoundError(HubNotFoundError):
    """The repo exists but the requested revision does not."""


class HubFileNotFoundError(HubNotFoundError):
    """The repo and revision exist but the file does not."""


class ChecksumMismatchError(HubError):
    """A weights file's SHA-256 is not the expected one; the file was not loaded."""


class CorruptWeightsError(HubError):
    """A weights file is not a readable safetensors file."""


class WeightsMismatchError(HubError):
    """The tensors in a weights file do not fit the model's architecture."""


class InvalidHubFolderError(HubError):
    """A local folder is not a complete, readable Hub folder."""


# ----------------------------------------------------------------------------------------------
# Saving: model -> hub/<name>/{model.safetensors, config.json, README.md}


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks.

    Args:
        path: The file to hash.

    Returns:
        The 64-character lowercase hex digest.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def save_pretrained(
    model: nn.Module,
    folder: str | os.PathLike[str],
    *,
    name: str,
    model_kwargs: dict[str, Any] | None = None,
    recipe: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    repo_id: str | None = None,
) -> Path:
    """Write a model's weights, config and model card to ``folder``, laid out like its Hub repo.

    Args:
        model: The trained model; its floating-point tensors are saved as fp32.
        folder: Destination folder, created if needed; the three files in it are replaced.
        name: The registry name of the model's architecture (e.g. ``"minivgg"``).
        model_kwargs: Builder kwargs the model was created with, e.g. ``{"batch_norm": True}``.
        recipe: How it was trained; defaults to the registry entry's recipe.
        metrics: Evaluation results with fractions in [0, 1], as ``EvaluationResult.to_dict()``
            returns: ``test_accuracy`` (required if metrics are given), optionally
            ``per_class_accuracy`` (10 values), ``confused_pairs`` ([true, pred, count], ...),
            ``num_test_images``.
        repo_id: The Hub repo the folder is meant for; defaults to the registry's pin.

    Returns:
        The folder.

    Raises:
        UnknownModelError: ``name`` is not registered.
        WeightsMismatchError: ``model`` is not ``name`` built with ``model_kwargs``.
        ValueError: ``metrics`` lack ``test_accuracy`` or it is not a fraction.
    """
    entry = get_model_entry(name)
    model_kwargs = dict(model_kwargs or {})
    recipe = dict(entry.recipe if recipe is None else recipe)
    metrics = dict(metrics or {})
    if metrics:
        acc = metrics.get("test_accuracy")
        if not isinstance(acc, (int, float)) or not 0.0 <= acc <= 1.0:
            raise ValueError(
                f"metrics['test_accuracy'] must be a fraction in [0, 1], got {acc!r} "
                "(pass EvaluationResult.to_dict(); percentages are derived for the card)."
            )
    if repo_id is None and entry.pretrained is not None:
        repo_id = entry.pretrained.repo_id

    state = {
        k: (v.float() if v.is_floating_point() else v).detach().cpu().contiguous()
        for k, v in model.state_dict().items()
    }
    # Fail here, not in every user's load_pretrained: the weights must fit what the config says.
    _check_state_dict(entry.builder(**model_kwargs), state, f"{name}(**{model_kwargs})")
    weights = safetensors.torch.save(state, metadata={"format": "pt"})
    sha256 = hashlib.sha256(weights).hexdigest()

    config = {
        "architecture": entry.name,
        "model_kwargs": model_kwargs,
        "recipe": recipe,
        "metrics": metrics,
        "sha256": sha256,
        "library_name": "mnist_zoo",
        "library_version": __version__,
        "repo_id": repo_id,
    }
    card = _model_card(entry, model, config)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _write_atomic(
        folder,
        {
            WEIGHTS_NAME: weights,
            CONFIG_NAME: (json.dumps(config, indent=2) + "\n").encode(),
            CARD_NAME: card.encode(),
        },
    )
    return folder


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def _write_atomic(folder: Path, files: dict[str, bytes]) -> None:
    # Stage every file before renaming any, so a crash mid-save leaves the previous set whole.
    # Files are replaced one by one rather than the folder swapped, so a .git or other files
    # the user keeps in the folder survive.
    staged: list[tuple[str, str]] = []
    try:
        for filename, data in files.items():
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{filename}.", suffix=".tmp")
            # mkstemp makes owner-only files; published files should be readable as usual.
            os.chmod(tmp, 0o666 & ~_UMASK)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            staged.append((tmp, filename))
        for tmp, filename in staged:
            os.replace(tmp, folder / filename)
    finally:
        for tmp, _ in staged:
            Path(tmp).unlink(missing_ok=True)


def _model_card(entry: ModelEntry, model: nn.Module, config: dict[str, Any]) -> str:
    metrics, recipe, kwargs = config["metrics"], config["recipe"], config["model_kwargs"]
    repo_name = (config["repo_id"] or entry.name).split("/")[-1]
    acc = metrics.get("test_accuracy")
    results = []
    if acc is not None:
        results = [
            EvalResult(
                task_type="image-classification",
                task_name="Image Classification",
                dataset_type="ylecun/mnist",
                dataset_name="MNIST",
                dataset_split="test",
                metric_type="accuracy",
                metric_value=round(100 * acc, 2),
                metric_name="Test accuracy (%)",
            )
        ]
    front_matter = ModelCardData(
        license="mit",
        library_name="pytorch",
        tags=["image-classification", "mnist", "pytorch", "safetensors", "mnist-zoo"],
        datasets=["ylecun/mnist"],
        metrics=["accuracy"],
        pipeline_tag="image-classification",
        model_name=repo_name if results else None,
        eval_results=results or None,
    ).to_yaml()

    # A folder meant for a Hub repo is loaded by name once published; otherwise by path.
    load_line = (
        f'model = mnist_zoo.load_pretrained("{entry.name}")'
        if entry.pretrained is not None or config["repo_id"]
        else f'model = mnist_zoo.load_pretrained("hub/{entry.name}")  # a local copy of this repo'
    )
    args = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
    lines = [
        "---",
        front_matter,
        "---",
        "",
        f"# {repo_name}",
        "",
        f"{entry.description}",
        "",
        "An MNIST digit classifier from [mnist_zoo](https://github.com/mnist-zoo/mnist_zoo) "
        f"{__version__}. Input: float images of shape (N, 1, 28, 28) with pixels in [0, 1] "
        "(standardisation happens inside the model); output: (N, 10) logits.",
        "",
        "```python",
        "import mnist_zoo",
        load_line,
        "```",
        "",
        "## Architecture",
        "",
        f"`{entry.name}({args})`: {count_parameters(model):,} parameters.",
        "",
        f"Reproduce these weights with `mnist-zoo train {entry.name}` (mnist_zoo "
        f"{__version__}, the registry's recipe below).",
        "",
        "## Training recipe",
        "",
    ]
    if recipe:
        lines += ["| setting | value |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in recipe.items()]
    else:
        lines.append("Not recorded.")
    lines += ["", "## Results", ""]
    if acc is None:
        lines.append("Not evaluated.")
    else:
        n = metrics.get("num_test_images")
        on = f" on the {n:,} MNIST test images" if n else " on the MNIST test set"
        lines.append(f"Test accuracy: **{100 * acc:.2f}%**{on} (fp32), scored once after training.")
        if "val_accuracy" in metrics and "epochs_trained" in metrics:
            minutes = metrics.get("train_time_s", 0) / 60
            took = f" in {minutes:.1f} min of training" if minutes else ""
            lines.append(
                f"Validation accuracy {100 * metrics['val_accuracy']:.2f}% (5,000 images held out "
                f"of the training set) after {metrics['epochs_trained']} epochs{took}."
            )
        per_class = metrics.get("per_class_accuracy")
        if per_class:
            lines += ["", "| digit | accuracy |", "|---:|---:|"]
            lines += [f"| {d} | {100 * a:.2f}% |" for d, a in enumerate(per_class)]
        pairs = metrics.get("confused_pairs")
        if pairs:
            lines += ["", "Most confused pairs (true → predicted: count):", ""]
            lines += [f"- {t} → {p}: {c}" for t, p, c in pairs]
    lines += [
        "",
        "## Files",
        "",
        f"- `{WEIGHTS_NAME}`: fp32 state dict, SHA-256 `{config['sha256']}`",
        f"- `{CONFIG_NAME}`: architecture, builder kwargs, recipe and metrics",
        "",
    ]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# Publishing


def push_to_hub(
    folder: str | os.PathLike[str],
    repo_id: str,
    *,
    revision: str | None = None,
    token: str | None = None,
    commit_message: str = "Upload mnist_zoo weights",
    private: bool | None = None,
    endpoint: str | None = None,
    tag: str | None = None,
) -> CommitInfo:
    """Upload a folder written by :func:`save_pretrained` to a Hub model repo.

    The folder is checked (all three files present, weights load into the architecture the
    config names) before any network call. The repo, and the branch if ``revision`` names
    one, are created if missing.

    Args:
        folder: A folder written by :func:`save_pretrained`.
        repo_id: The target repo, ``"owner/name"``.
        revision: Branch to commit to; default ``main``.
        token: Hub token with write access; default: the one ``hf auth login`` saved.
        commit_message: The commit's summary line.
        private: Visibility if the repo is created; ``None`` keeps the Hub's default.
        endpoint: Hub URL; default ``HF_ENDPOINT`` or https://huggingface.co.
        tag: Also tag the new commit, e.g. ``"v0.1.0"``: the registry pins a release's
            weights by such a tag plus the file's SHA-256.

    Returns:
        The commit: a ``str`` of its URL, with the commit sha in ``.oid``.

    Raises:
        InvalidHubFolderError: The folder is missing or incomplete.
        ValueError: ``repo_id`` is not a valid repo id.
    """
    folder = Path(folder)
    _check_folder(folder)
    load_pretrained(folder)  # never publish weights that would not load
    try:
        validate_repo_id(repo_id)
    except HFValidationError as err:
        raise ValueError(f"Invalid repo_id {repo_id!r}: {err}") from None

    api = HfApi(
        endpoint=endpoint, token=token, library_name="mnist_zoo", library_version=__version__
    )
    api.create_repo(repo_id, repo_type="model", exist_ok=True, private=private)
    if revision not in (None, "main"):
        api.create_branch(repo_id, branch=revision, exist_ok=True)
    commit = api.upload_folder(
        repo_id=repo_id,
        folder_path=folder,
        revision=revision,
        commit_message=commit_message,
        allow_patterns=list(HUB_FILES),
    )
    if tag is not None:
        api.create_tag(repo_id, tag=tag, revision=commit.oid, exist_ok=True)
    return commit


def _check_folder(folder: Path, required: tuple[str, ...] = HUB_FILES) -> None:
    if not folder.is_dir():
        raise InvalidHubFolderError(
            f"{str(folder)!r} is not a folder. Write one with "
            "mnist_zoo.hub.save_pretrained(model, folder, name=...)."
        )
    missing = [f for f in required if not (folder / f).is_file()]
    if missing:
        raise InvalidHubFolderError(
            f"{str(folder)!r} is missing {', '.join(missing)}; a Hub folder holds "
            f"{', '.join(HUB_FILES)}. Re-create it with mnist_zoo.hub.save_pretrained()."
        )


# ----------------------------------------------------------------------------------------------
# Loading

#: Names that are not a single registered model, mapped to a loader taking load_pretrained's
#: keyword arguments (revision, device, cache_dir, local_files_only, endpoint), e.g. an
#: ensemble built from several pretrained models. Checked before the registry.
SPECIAL_LOADERS: dict[str, Callable[..., nn.Module]] = {}


def _load_ensemble(**kwargs: Any) -> nn.Module:
    from .ensemble import load_pretrained_ensemble

    return load_pretrained_ensemble(**kwargs)


SPECIAL_LOADERS["ensemble"] = _load_ensemble


def load_pretrained(
    name: str | os.PathLike[str],
    *,
    revision: str | None = None,
    device: str | torch.device = "cpu",
    cache_dir: str | os.PathLike[str] | None = None,
    local_files_only: bool = False,
    endpoint: str | None = None,
) -> nn.Module:
    """Load a pretrained model, in eval mode, from the Hub or from a local Hub folder.

    The returned model carries its provenance in ``model.pretrained_cfg``: name,
    architecture, model_kwargs, repo_id, revision (commit), sha256, metrics, recipe, source.

    Args:
        name: A registered model name with published weights (see ``list_pretrained()``),
            or a folder written by :func:`save_pretrained` (e.g. ``"hub/minivgg"``).
        revision: Branch, tag or commit to load instead of the pinned one (see the module
            docs for how the file is then verified). Ignored for local folders.
        device: Where to put the model.
        cache_dir: Hub cache folder; default ``HF_HUB_CACHE`` (``$HF_HOME/hub``).
        local_files_only: Use only the cache, never the network (as ``HF_HUB_OFFLINE=1``).
        endpoint: Hub URL; default ``HF_ENDPOINT`` or https://huggingface.co.

    Returns:
        The model with the weights loaded, on ``device``, in eval mode.

    Raises:
        UnknownModelError: ``name`` is neither registered nor a folder (a ``KeyError``).
        HubError: A subclass saying what went wrong and what to do about it.
    """
    key = os.fspath(name).lower()
    if key in SPECIAL_LOADERS:
        return SPECIAL_LOADERS[key](
            revision=revision,
            device=device,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
            endpoint=endpoint,
        )
    folder = _as_folder(name)
    if folder is not None:
        model = _load_from_folder(folder)
    else:
        model = _load_from_hub(
            get_model_entry(key),
            revision=revision,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
            endpoint=endpoint,
        )
    return model.to(device).eval()


def _as_folder(name: str | os.PathLike[str]) -> Path | None:
    # A registered name wins over a same-named folder in the working directory; anything with
    # a path separator is a path, so a typo there says "no such folder", not "unknown model".
    if not isinstance(name, os.PathLike) and name.lower() in list_models():
        return None
    path = Path(name)
    if path.is_dir():
        return path
    if isinstance(name, os.PathLike) or "/" in name or os.sep in name:
        raise InvalidHubFolderError(
            f"{str(name)!r} is neither a folder nor a registered model name (those are: "
            f"{', '.join(list_models())}). To load a Hub repo that is not in the registry, "
            "download it first: huggingface_hub.snapshot_download(repo_id), then pass that folder."
        )
    return None


def _load_from_folder(folder: Path) -> nn.Module:
    _check_folder(folder, required=(CONFIG_NAME, WEIGHTS_NAME))  # the card is only for people
    config = _read_config(folder / CONFIG_NAME)
    weights_path = folder / WEIGHTS_NAME
    data = weights_path.read_bytes()
    sha256 = hashlib.sha256(data).hexdigest()
    if config.get("sha256") and sha256 != config["sha256"]:
        raise ChecksumMismatchError(
            f"{weights_path} has SHA-256 {sha256}, but {folder / CONFIG_NAME} records "
            f"{config['sha256']}: the weights and config do not belong together. Re-create the "
            "folder with save_pretrained(), or download the repo again."
        )
    entry = get_model_entry(config["architecture"])
    meta = {"repo_id": config.get("repo_id"), "revision": None, "sha256": sha256}
    return _build(entry, config, data, weights_path, meta)


def _load_from_hub(
    entry: ModelEntry,
    *,
    revision: str | None,
    cache_dir: str | os.PathLike[str] | None,
    local_files_only: bool,
    endpoint: str | None,
) -> nn.Module:
    weights = entry.pretrained
    if weights is None:
        have = ", ".join(list_pretrained()) or "none yet"
        raise NoPretrainedWeightsError(
            f"{entry.name!r} is registered but has no published weights (models with weights: "
            f"{have}). Use create_model({entry.name!r}) for a freshly initialised one, or load "
            f"your own: save_pretrained(model, 'hub/{entry.name}', name={entry.name!r}), then "
            f"load_pretrained('hub/{entry.name}')."
        )

    def download(filename: str, revision: str) -> Path:
        return _download(
            weights.repo_id,
            filename,
            revision=revision,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
            endpoint=endpoint,
        )

    weights_path = download(weights.filename, revision or weights.revision)
    # The cache stores a file at snapshots/<commit>/<filename>.
    commit = weights_path.parents[len(PurePosixPath(weights.filename).parts) - 1].name
    where = f"{weights.filename} of {weights.repo_id}@{commit}"

    pinned = revision in (None, weights.revision) or commit == weights.revision
    if pinned:
        expected, against = weights.sha256, f"the SHA-256 mnist_zoo {__version__} pins"
        hint = "the weights on the Hub are not the reviewed ones: update mnist_zoo or report it"
    else:
        # The cache names blobs by ETag, and the Hub's ETag of an LFS file is its SHA-256.
        etag = Path(os.path.realpath(weights_path)).name
        expected = etag if _SHA256.fullmatch(etag) else None
        against = "the SHA-256 the Hub reports for it (its ETag)"
        hint = "the Hub's copy may be damaged: tell the repo's owner"
        logger.warning(
            "Loading %s at revision %r (commit %s) instead of the pinned %s: checking it against "
            "%s, not against the reviewed pin.",
            entry.name,
            revision,
            commit[:12],
            weights.revision[:12],
            against if expected else "nothing (the cache does not record the ETag)",
        )

    data = weights_path.read_bytes()
    sha256 = hashlib.sha256(data).hexdigest()
    if expected is not None and sha256 != expected:
        _evict(weights_path)
        raise ChecksumMismatchError(
            f"{where} has SHA-256 {sha256}, but {against} is {expected}. The file was deleted "
            f"from the cache and not loaded. Run again to download it afresh; if this persists, "
            f"{hint}."
        )
    # From the weights' commit, not the revision: a branch may have moved in between.
    config = _read_config(download(CONFIG_NAME, commit))
    meta = {"repo_id": weights.repo_id, "revision": commit, "sha256": sha256}
    return _build(entry, config, data, weights_path, meta)


def _download(
    repo_id: str,
    filename: str,
    *,
    revision: str,
    cache_dir: str | os.PathLike[str] | None,
    local_files_only: bool,
    endpoint: str | None,
) -> Path:
    what = f"{filename} of {repo_id} at revision {revision!r}"
    try:
        return Path(
            hf_hub_download(
                repo_id,
                filename,
                revision=revision,
                cache_dir=cache_dir,
                local_files_only=local_files_only,
                endpoint=endpoint,
                library_name="mnist_zoo",
                library_version=__version__,
            )
        )
    # Order matters: the first three are all HTTP errors, a gated repo is a RepositoryNotFound.
    except hf_errors.RevisionNotFoundError as err:
        raise HubRevisionNotFoundError(
            f"Revision {revision!r} does not exist in {repo_id}. Pass a branch, tag or commit "
            "of that repo, or no revision to get the pinned one."
        ) from err
    except hf_errors.RemoteEntryNotFoundError as err:
        raise HubFileNotFoundError(
            f"{repo_id} at revision {revision!r} has no file {filename!r}: the repo is not in "
            f"mnist_zoo's Hub layout ({', '.join(HUB_FILES)}). Pick another revision, or "
            "re-publish it with mnist_zoo.hub.push_to_hub()."
        ) from err
    except hf_errors.RepositoryNotFoundError as err:
        raise HubRepoNotFoundError(
            f"Hub repo {repo_id!r} was not found at {endpoint or hf_constants.ENDPOINT}. Check "
            "the repo id and HF_ENDPOINT; if the repo is private or gated, log in with "
            "`hf auth login` (or set HF_TOKEN)."
        ) from err
    except hf_errors.LocalEntryNotFoundError as err:
        cache = cache_dir or hf_constants.HF_HUB_CACHE
        if local_files_only or hf_constants.is_offline_mode():
            why = "offline mode is on (local_files_only=True or HF_HUB_OFFLINE=1)"
        else:
            why = f"the Hub at {endpoint or hf_constants.ENDPOINT} could not be reached"
        raise HubUnavailableError(
            f"Cannot get {what}: {why} and it is not in the cache at {cache}. To work offline: "
            "load it once with network access (this fills the cache), then set HF_HUB_OFFLINE=1; "
            "or pass cache_dir= pointing to a cache that has it; or pass a local folder written "
            "by save_pretrained(), e.g. load_pretrained('hub/<name>')."
        ) from err
    except hf_errors.HfHubHTTPError as err:
        raise HubUnavailableError(
            f"Downloading {what} failed: {err}. Retry later, or work offline (see HF_HUB_OFFLINE)."
        ) from err


def _evict(pointer: Path) -> None:
    # The snapshot entry is usually a symlink to a blob: remove both, so the next call
    # downloads afresh instead of finding the bad bytes again.
    for path in {Path(os.path.realpath(pointer)), pointer}:
        try:
            path.unlink(missing_ok=True)
        except OSError as err:
            logger.warning("Could not delete %s from the cache: %s", path, err)


def _read_config(path: Path) -> dict[str, Any]:
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise InvalidHubFolderError(f"Cannot read {path}: {err}.") from err
    if not isinstance(config, dict) or not isinstance(config.get("architecture"), str):
        raise InvalidHubFolderError(
            f"{path} does not name an architecture; it should be a config.json written by "
            "mnist_zoo.hub.save_pretrained()."
        )
    return config


def _build(
    entry: ModelEntry, config: dict[str, Any], data: bytes, source: Path, meta: dict[str, Any]
) -> nn.Module:
    kwargs = dict(config.get("model_kwargs") or {})
    try:
        # Parse the bytes already hashed rather than re-reading the file, so what was verified
        # is exactly what is loaded.
        state = safetensors.torch.load(data)
    except safetensors.SafetensorError as err:
        raise CorruptWeightsError(
            f"{source} is not a valid safetensors file ({err}). If it came from the Hub, delete "
            "it from the cache and load again; if it is local, re-create it with save_pretrained()."
        ) from err
    try:
        model = entry.builder(**kwargs)
    except TypeError as err:
        raise InvalidHubFolderError(
            f"config.json's model_kwargs {kwargs} do not fit {entry.name}: {err}."
        ) from err
    _check_state_dict(model, state, f"{entry.name}(**{kwargs}) from {source}")
    model.load_state_dict(state, strict=True)
    model.pretrained_cfg = {
        "name": entry.name,
        "architecture": config["architecture"],
        "model_kwargs": kwargs,
        **meta,
        "metrics": dict(
            config.get("metrics") or (entry.pretrained.metrics if entry.pretrained else {})
        ),
        "recipe": dict(config.get("recipe") or entry.recipe),
        "library_version": config.get("library_version"),
        "source": str(source),
    }
    return model


def _check_state_dict(model: nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    # load_state_dict(strict=True) would also refuse, but with a wall of text; name the first
    # offender of each kind with its shapes so the cause is obvious.
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state.items()}
    problems = []
    if missing := [k for k in expected if k not in got]:
        problems.append(
            f"{len(missing)} missing key(s), first {missing[0]!r} (model expects shape "
            f"{expected[missing[0]]})"
        )
    if unexpected := [k for k in got if k not in expected]:
        problems.append(
            f"{len(unexpected)} unexpected key(s), first {unexpected[0]!r} (shape "
            f"{got[unexpected[0]]})"
        )
    if wrong := [k for k in expected if k in got and got[k] != expected[k]]:
        problems.append(
            f"{len(wrong)} shape mismatch(es), first {wrong[0]!r}: the weights have "
            f"{got[wrong[0]]}, the model expects {expected[wrong[0]]}"
        )
    if problems:
        raise WeightsMismatchError(
            f"The weights do not fit {what}: {'; '.join(problems)}. Were they saved from another "
            "architecture or with other model_kwargs?"
        )
