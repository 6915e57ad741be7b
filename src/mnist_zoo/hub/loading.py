"""``load_pretrained``: a model by registry name (from the Hub) or from a local Hub folder.

```python
model = load_pretrained("minivgg")        # registry name: pinned repo, revision and SHA-256
model = load_pretrained("hub/minivgg")    # or a local folder in the same layout
model = load_pretrained("ensemble")       # the three pretrained models as one Ensemble
```
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..ensemble import PRETRAINED_MEMBERS, Ensemble
from ..errors import InvalidHubFolderError, NoPretrainedWeightsError
from ..registry import ModelEntry, get_model_entry, list_models, list_pretrained
from .folder import build_model, load_folder, read_config
from .layout import CONFIG_NAME
from .remote import download, fetch_weights

__all__ = ["PRETRAINED_MEMBERS", "SPECIAL_LOADERS", "load_pretrained", "load_pretrained_ensemble"]


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
    See :mod:`mnist_zoo.hub.remote` for how a downloaded file is verified; a local folder is
    trusted, but checked against the SHA-256 its ``config.json`` records.

    Args:
        name: A registered model name with published weights (see ``list_pretrained()``),
            ``"ensemble"`` (the pretrained models as one :class:`~mnist_zoo.Ensemble`), or a
            folder written by :func:`~mnist_zoo.hub.save_pretrained` (e.g. ``"hub/minivgg"``).
        revision: Branch, tag or commit to load instead of the pinned one (the file is then
            checked against the Hub's ETag instead of the pin). Ignored for local folders.
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
        model = load_folder(folder)
    else:
        model = _load_from_hub(
            get_model_entry(key),
            revision=revision,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
            endpoint=endpoint,
        )
    return model.to(device).eval()


def load_pretrained_ensemble(**kwargs: Any) -> Ensemble:
    """The pretrained models as one :class:`~mnist_zoo.Ensemble` (equal weights), in eval mode.

    This is what ``load_pretrained("ensemble")`` returns. Its ``pretrained_cfg`` holds each
    member's.

    Args:
        **kwargs: Passed to :func:`load_pretrained` for each member of
            ``PRETRAINED_MEMBERS`` (``revision``, ``device``, ``cache_dir``, ...).

    Returns:
        The ensemble, on the members' device, in eval mode.

    Raises:
        HubError: A member could not be loaded (a subclass says why).
    """
    members = [load_pretrained(name, **kwargs) for name in PRETRAINED_MEMBERS]
    ensemble = Ensemble(members).to(next(members[0].parameters()).device).eval()
    ensemble.pretrained_cfg = {  # type: ignore[assignment]
        "name": "ensemble",
        "members": [m.pretrained_cfg for m in members],
    }
    return ensemble


#: Names that are not a single registered model, mapped to a loader taking load_pretrained's
#: keyword arguments (revision, device, cache_dir, local_files_only, endpoint), e.g. an
#: ensemble built from several pretrained models. Checked before the registry.
SPECIAL_LOADERS: dict[str, Callable[..., nn.Module]] = {"ensemble": load_pretrained_ensemble}


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


def _load_from_hub(
    entry: ModelEntry,
    *,
    revision: str | None,
    cache_dir: str | os.PathLike[str] | None,
    local_files_only: bool,
    endpoint: str | None,
) -> nn.Module:
    pin = entry.pretrained
    if pin is None:
        have = ", ".join(list_pretrained()) or "none yet"
        raise NoPretrainedWeightsError(
            f"{entry.name!r} is registered but has no published weights (models with weights: "
            f"{have}). Use create_model({entry.name!r}) for a freshly initialised one, or load "
            f"your own: save_pretrained(model, 'hub/{entry.name}', name={entry.name!r}), then "
            f"load_pretrained('hub/{entry.name}')."
        )
    where = {"cache_dir": cache_dir, "local_files_only": local_files_only, "endpoint": endpoint}
    weights = fetch_weights(entry.name, pin, revision=revision, **where)
    # From the weights' commit, not the revision: a branch may have moved in between.
    config = read_config(download(pin.repo_id, CONFIG_NAME, revision=weights.commit, **where))
    meta = {"repo_id": pin.repo_id, "revision": weights.commit, "sha256": weights.sha256}
    return build_model(entry, config, weights.data, weights.path, meta)
