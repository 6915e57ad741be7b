"""Writing local Hub folders: :func:`save_pretrained`, :func:`write_card`, :func:`complete_save`.

A folder holds ``model.safetensors``, ``config.json`` and ``README.md``, laid out exactly like
its Hub repo (see :mod:`mnist_zoo.hub.layout`); :mod:`mnist_zoo.hub.reading` reads one back.

**How a save switches the set atomically.** ``config.json`` records the SHA-256 of the weights,
so it is the commit record of the set: :func:`save_pretrained` first writes the new weights
and card beside the old ones as hidden *staged* files named after the new weights' SHA-256
(``.model.safetensors.<sha256>.staged``), then replaces ``config.json`` (one atomic rename:
the switch), then renames the staged files into place. A kill before the switch leaves the
old set whole (and staged files that the next save deletes); a kill after it leaves the new
config and its staged weights, which :func:`~mnist_zoo.hub.reading.load_folder` finds by the
hash the config records,
and which the next :func:`save_pretrained` or :func:`~mnist_zoo.hub.push_to_hub` renames into
place (:func:`complete_save`). Swapping in a freshly written sibling folder instead would need
to move every other file the user keeps in the folder (a ``.git``, checkpoints) one by one, and
POSIX has no atomic exchange of two folders: there would be a moment with no folder at all.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import safetensors.torch
from torch import nn

from .._version import __version__
from ..atomic import atomic_writer, remove_stale_temporaries
from ..errors import ChecksumMismatchError, InvalidArgumentError, InvalidHubFolderError
from ..registry import ModelEntry, count_parameters, get_model_entry
from .card import card_markdown, ensemble_card, model_card
from .layout import CARD_NAME, CONFIG_NAME, HUB_FILES, LIBRARY_NAME, WEIGHTS_NAME, staged_path
from .provenance import default_recipe, provenance, recipe_as_dict, unwrap
from .reading import read_config, temperature_of
from .verify import (
    MAX_CONFIG_BYTES,
    check_state_dict,
    nonfinite_tensors,
    read_limited,
    released_tag,
)

if TYPE_CHECKING:  # for the annotations only; see provenance.default_recipe for why
    from ..training import TrainConfig, Trainer

__all__ = ["complete_save", "save_pretrained", "write_card"]


def save_pretrained(
    model_or_trainer: nn.Module | Trainer,
    folder: str | os.PathLike[str],
    *,
    name: str | None = None,
    model_kwargs: dict[str, Any] | None = None,
    recipe: TrainConfig | Mapping[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    repo_id: str | None = None,
    calibration: Mapping[str, Any] | None = None,
) -> Path:
    """Write a model's weights, config and model card to ``folder``, laid out like its Hub repo.

    ```python
    model = mnist_zoo.create_model("minivgg")           # knows its architecture and kwargs
    save_pretrained(model, "hub/minivgg", metrics=result.to_dict())
    save_pretrained(trainer, "runs/minivgg")            # the trainer's model and recipe
    ```

    Args:
        model_or_trainer: The trained model (its floating-point tensors are saved as fp32), or a
            ``Trainer`` (anything with ``.model`` and ``.config``): its model is saved and its
            config (``resolved_config``, as the run carried it out) is the recipe.
        folder: Destination folder, created if needed; the three files in it are replaced, any
            other file in it is left alone.
        name: The registry name of the model's architecture (e.g. ``"minivgg"``). Default: the
            architecture ``model.pretrained_cfg`` records, as ``create_model`` and
            ``load_pretrained`` set it. An explicit name wins.
        model_kwargs: Builder kwargs the model was created with, e.g. ``{"batch_norm": True}``.
            Default: ``{}`` with an explicit ``name``, else those ``model.pretrained_cfg``
            records.
        recipe: How it was trained: a ``TrainConfig`` or a plain dict. Default: the trainer's
            config, else the registry's recipe for ``name``.
        metrics: Evaluation results with fractions in [0, 1], as ``EvaluationResult.to_dict()``
            returns: ``test_accuracy`` (required if metrics are given), optionally
            ``per_class_accuracy`` (10 values), ``confused_pairs`` ([true, pred, count], ...),
            ``num_test_images``, ``val_accuracy``, ``epochs_trained``, ``train_time_s``.
        repo_id: The Hub repo the folder is meant for, ``"owner/name"``: the card's snippet
            loads it as ``"hf-hub:owner/name"``. Default: the registry's repo when the weights
            are a published release's file (the card then loads them by name), else none (the
            card loads the folder by path).
        calibration: The temperature fitted on validation data and what it did, as
            :func:`~mnist_zoo.pipeline.train_and_save` records it: ``temperature`` (required,
            positive), ``fitted_on`` and ``test``; written as ``config.json``'s
            ``calibration`` section, which ``load_pretrained`` reads back into
            ``pretrained_cfg["temperature"]`` and the card shows. Not taken from
            ``model.pretrained_cfg``: a model changed since it was calibrated would carry a
            stale temperature. ``None``: no section.

    Returns:
        The folder.

    Raises:
        UnknownModelError: ``name`` is not registered.
        WeightsMismatchError: ``model`` is not ``name`` built with ``model_kwargs``.
        InvalidArgumentError: No ``name`` was given and the model does not record its
            architecture; ``metrics`` lack ``test_accuracy`` or it is not a fraction; or
            ``calibration`` has no positive ``temperature``.
        TypeError: ``model_or_trainer`` is neither a model nor a trainer.
        OSError: The folder cannot be written.
    """
    model, trainer_recipe, known = unwrap(model_or_trainer)
    name, model_kwargs = provenance(model, name, model_kwargs, known)
    entry = get_model_entry(name)
    if recipe is None:
        recipe = trainer_recipe
    recipe = default_recipe(entry) if recipe is None else recipe_as_dict(recipe)
    metrics = _checked_metrics(metrics)
    weights = _weights_bytes(model, entry, model_kwargs)
    sha256 = hashlib.sha256(weights).hexdigest()
    if repo_id is None and (tag := released_tag(entry, sha256)) is not None:
        # Only a release's own file belongs in the project's repo; a user's run belongs in none.
        repo_id = entry.releases[tag].repo_id
    config = {
        "architecture": entry.name,
        "model_kwargs": model_kwargs,
        "num_classes": getattr(model, "num_classes", None),
        "recipe": recipe,
        "metrics": metrics,
        "sha256": sha256,
        "library_name": LIBRARY_NAME,
        "library_version": __version__,
        "repo_id": repo_id,
    }
    if calibration is not None:
        config["calibration"] = _checked_calibration(calibration)
    if not isinstance(config["num_classes"], int):
        del config["num_classes"]  # a model that does not say; model_kwargs decides anyway
    card = model_card(config, entry=entry, num_parameters=count_parameters(model))
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _switch(folder, weights, _config_bytes(config), card_markdown(card).encode(), config["sha256"])
    return folder


def _weights_bytes(model: nn.Module, entry: ModelEntry, model_kwargs: dict[str, Any]) -> bytes:
    state = {
        k: (v.float() if v.is_floating_point() else v).detach().cpu().contiguous()
        for k, v in model.state_dict().items()
    }
    if bad := nonfinite_tensors(state):
        raise InvalidArgumentError(
            f"The model's weights hold NaN or infinite values in {len(bad)} tensor(s), first "
            f"{bad[0]!r}: refusing to save weights that cannot be used. Did its training diverge?"
        )
    # Fail here, not in every user's load_pretrained: the weights must fit what the config says.
    check_state_dict(entry.builder(**model_kwargs), state, f"{entry.name}(**{model_kwargs})")
    return safetensors.torch.save(state, metadata={"format": "pt"})


def _checked_metrics(metrics: dict[str, Any] | None) -> dict[str, Any]:
    metrics = dict(metrics or {})
    if metrics:
        acc = metrics.get("test_accuracy")
        if not isinstance(acc, (int, float)) or not 0.0 <= acc <= 1.0:
            raise InvalidArgumentError(
                f"metrics['test_accuracy'] must be a fraction in [0, 1], got {acc!r} "
                "(pass EvaluationResult.to_dict(); percentages are derived for the card)."
            )
    return metrics


def _checked_calibration(calibration: Mapping[str, Any]) -> dict[str, Any]:
    section = dict(calibration)
    try:
        temperature_of({"calibration": section}, "the model being saved")
    except InvalidHubFolderError as err:
        raise InvalidArgumentError(
            f"calibration['temperature'] must be a positive number, got "
            f"{section.get('temperature')!r}: pass the temperature fit_temperature() returned."
        ) from err
    return section


def _config_bytes(config: Mapping[str, Any]) -> bytes:
    # default=str: a recipe field such as a Path is recorded as text rather than refused.
    return (json.dumps(config, indent=2, default=str) + "\n").encode()


def _switch(folder: Path, weights: bytes, config: bytes, card: bytes, sha256: str) -> None:
    # See the module docstring: stage, switch config.json, then rename the staged files.
    complete_save(folder)
    staged = {
        WEIGHTS_NAME: (staged_path(folder, WEIGHTS_NAME, sha256), weights),
        CARD_NAME: (staged_path(folder, CARD_NAME, sha256), card),
    }
    try:
        for path, data in staged.values():
            with atomic_writer(path) as f:
                f.write(data)
        with atomic_writer(folder / CONFIG_NAME) as f:  # the switch
            f.write(config)
    except BaseException:
        if not _holds(folder / CONFIG_NAME, config):  # not switched: the old set stays whole
            for path, _ in staged.values():
                path.unlink(missing_ok=True)
        raise
    complete_save(folder)


def _holds(path: Path, data: bytes) -> bool:
    try:
        return read_limited(path, size=len(data)) == data
    except (OSError, ValueError, ChecksumMismatchError):  # missing, unreadable, another size
        return False


def _recorded_sha256(folder: Path) -> str | None:
    try:
        recorded = json.loads(read_limited(folder / CONFIG_NAME, limit=MAX_CONFIG_BYTES))
    except (OSError, ValueError):  # CorruptWeightsError and JSON errors are ValueErrors
        return None
    sha256 = recorded.get("sha256") if isinstance(recorded, dict) else None
    return sha256.strip().lower() if isinstance(sha256, str) else None


def complete_save(folder: str | os.PathLike[str]) -> None:
    """Finish a :func:`save_pretrained` that was interrupted, or clean up after it.

    Staged files of the set that ``config.json`` records (the save was killed after its
    switch) are renamed into place; other staged files (killed before it) and the temporary
    files of interrupted writes are deleted. No other file is touched. Call it only when no
    other process is saving into the folder.

    Args:
        folder: A Hub folder; a missing one has nothing to complete.

    Raises:
        OSError: A file cannot be renamed or deleted.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return
    for name in HUB_FILES:
        remove_stale_temporaries(folder, name)
        remove_stale_temporaries(folder, f".{name}.*.staged")
    current = _recorded_sha256(folder)
    for name in (WEIGHTS_NAME, CARD_NAME):
        for path in folder.glob(f".{name}.*.staged"):
            if current is not None and path == staged_path(folder, name, current):
                os.replace(path, folder / name)
            else:
                path.unlink(missing_ok=True)


def write_card(folder: str | os.PathLike[str]) -> Path:
    """Re-render a folder's README.md from its config.json; the weights are not touched.

    Works for a folder written by :func:`save_pretrained` and for the ensemble's folder
    (``hub/ensemble``, whose config lists ``members``).

    Args:
        folder: A Hub folder with a ``config.json``.

    Returns:
        The path of the card written.

    Raises:
        InvalidHubFolderError: ``config.json`` is missing or names no architecture.
        UnknownModelError: The architecture is not registered.
        OSError: The card cannot be written.
    """
    folder = Path(folder)
    complete_save(folder)  # a staged card of an interrupted save would overwrite this one
    config = read_config(folder / CONFIG_NAME)
    if "members" in config:
        card = ensemble_card(config)
    else:
        entry = get_model_entry(config["architecture"])
        skeleton = entry.builder(**(config.get("model_kwargs") or {}))
        card = model_card(config, entry=entry, num_parameters=count_parameters(skeleton))
    with atomic_writer(folder / CARD_NAME) as f:
        f.write(card_markdown(card).encode())
    return folder / CARD_NAME
