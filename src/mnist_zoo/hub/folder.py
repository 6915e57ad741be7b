"""Local Hub folders: write one with :func:`save_pretrained`, read one back, check one.

A folder holds ``model.safetensors``, ``config.json`` and ``README.md``, laid out exactly like
its Hub repo (see :mod:`mnist_zoo.hub.layout`). Reading one is trusted but checked: the weights
must have the SHA-256 that ``config.json`` records and fit the architecture it names.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import safetensors
import safetensors.torch
import torch
from torch import nn

from .._version import __version__
from ..atomic import atomic_writer
from ..ensemble import PRETRAINED_MEMBERS
from ..errors import (
    ChecksumMismatchError,
    CorruptWeightsError,
    InvalidArgumentError,
    InvalidHubFolderError,
    WeightsMismatchError,
)
from ..registry import ModelEntry, count_parameters, get_model_entry
from .card import card_markdown, ensemble_card, model_card
from .layout import CARD_NAME, CONFIG_NAME, HUB_FILES, LIBRARY_NAME, WEIGHTS_NAME
from .provenance import default_recipe, provenance, recipe_as_dict, unwrap

if TYPE_CHECKING:  # for the annotations only; see provenance.default_recipe for why
    from ..training import TrainConfig, Trainer

__all__ = [
    "build_model",
    "check_folder",
    "check_state_dict",
    "load_folder",
    "read_config",
    "save_pretrained",
    "write_card",
]


def save_pretrained(
    model_or_trainer: nn.Module | Trainer,
    folder: str | os.PathLike[str],
    *,
    name: str | None = None,
    model_kwargs: dict[str, Any] | None = None,
    recipe: TrainConfig | Mapping[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    repo_id: str | None = None,
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
        repo_id: The Hub repo the folder is meant for; defaults to the registry's pin.

    Returns:
        The folder.

    Raises:
        UnknownModelError: ``name`` is not registered.
        WeightsMismatchError: ``model`` is not ``name`` built with ``model_kwargs``.
        InvalidArgumentError: No ``name`` was given and the model does not record its
            architecture; or ``metrics`` lack ``test_accuracy`` or it is not a fraction.
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
    if repo_id is None and entry.pretrained is not None:
        repo_id = entry.pretrained.repo_id

    state = {
        k: (v.float() if v.is_floating_point() else v).detach().cpu().contiguous()
        for k, v in model.state_dict().items()
    }
    # Fail here, not in every user's load_pretrained: the weights must fit what the config says.
    check_state_dict(entry.builder(**model_kwargs), state, f"{name}(**{model_kwargs})")
    weights = safetensors.torch.save(state, metadata={"format": "pt"})
    config = {
        "architecture": entry.name,
        "model_kwargs": model_kwargs,
        "recipe": recipe,
        "metrics": metrics,
        "sha256": hashlib.sha256(weights).hexdigest(),
        "library_name": LIBRARY_NAME,
        "library_version": __version__,
        "repo_id": repo_id,
    }
    card = model_card(config, entry=entry, num_parameters=count_parameters(model))
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _write_atomic(
        folder,
        {
            WEIGHTS_NAME: weights,
            CONFIG_NAME: _config_bytes(config),
            CARD_NAME: card_markdown(card).encode(),
        },
    )
    return folder


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


def _config_bytes(config: Mapping[str, Any]) -> bytes:
    # default=str: a recipe field such as a Path is recorded as text rather than refused.
    return (json.dumps(config, indent=2, default=str) + "\n").encode()


def _write_atomic(folder: Path, files: dict[str, bytes]) -> None:
    # Stage every file before renaming any, so a crash mid-save leaves the previous set whole:
    # each atomic_writer renames its file only when the stack unwinds without an error, and
    # removes its temporary file otherwise. Files are replaced one by one rather than the
    # folder swapped, so a .git or other files the user keeps in the folder survive. Entered
    # in reverse so that the renames, last in first out, happen in the order given.
    with contextlib.ExitStack() as stack:
        for filename, data in reversed(files.items()):
            stack.enter_context(atomic_writer(folder / filename)).write(data)


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
    config = read_config(folder / CONFIG_NAME)
    if "members" in config:
        card = ensemble_card(config)
    else:
        entry = get_model_entry(config["architecture"])
        skeleton = entry.builder(**(config.get("model_kwargs") or {}))
        card = model_card(config, entry=entry, num_parameters=count_parameters(skeleton))
    _write_atomic(folder, {CARD_NAME: card_markdown(card).encode()})
    return folder / CARD_NAME


def check_folder(folder: Path, required: tuple[str, ...] = HUB_FILES) -> None:
    """Check that ``folder`` is a folder holding the ``required`` Hub files.

    Args:
        folder: The folder to check.
        required: The file names it must hold.

    Raises:
        InvalidHubFolderError: It is not a folder, is the ensemble's folder (which holds no
            weights), or lacks a required file.
    """
    if not folder.is_dir():
        raise InvalidHubFolderError(
            f"{str(folder)!r} is not a folder. Write one with "
            "mnist_zoo.hub.save_pretrained(model, folder, name=...)."
        )
    missing = [f for f in required if not (folder / f).is_file()]
    if WEIGHTS_NAME in missing:
        _refuse_ensemble_folder(folder)
    if missing:
        raise InvalidHubFolderError(
            f"{str(folder)!r} is missing {', '.join(missing)}; a Hub folder holds "
            f"{', '.join(HUB_FILES)}. Re-create it with mnist_zoo.hub.save_pretrained()."
        )


def _refuse_ensemble_folder(folder: Path) -> None:
    """Explain the ensemble's folder, which describes models rather than holding weights."""
    try:
        members = json.loads((folder / CONFIG_NAME).read_text(encoding="utf-8"))["members"]
    except (OSError, ValueError, KeyError, TypeError):
        return
    which = (
        "the three pinned models"
        if tuple(members) == PRETRAINED_MEMBERS
        else f"the models {', '.join(map(str, members))}"
    )
    raise InvalidHubFolderError(
        f"{str(folder)!r} describes the ensemble of {which} ({', '.join(map(str, members))}) "
        "and holds no weights of its own: load it by name, load_pretrained('ensemble'), which "
        "fetches the members from their repos, or build it from local folders with "
        "Ensemble([load_pretrained(folder) for folder in ...])."
    )


def read_config(path: Path) -> dict[str, Any]:
    """Read a Hub folder's ``config.json``.

    Args:
        path: The file.

    Returns:
        The config, a dict with at least a string ``architecture``.

    Raises:
        InvalidHubFolderError: The file cannot be read, is not JSON, or names no architecture.
    """
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


def load_folder(folder: Path) -> nn.Module:
    """Build the model a local Hub folder holds, after checking its weights' SHA-256.

    Args:
        folder: A folder written by :func:`save_pretrained`.

    Returns:
        The model with the weights loaded (in training mode, on the CPU), its provenance in
        ``model.pretrained_cfg``.

    Raises:
        InvalidHubFolderError: The folder is incomplete, or config.json is unreadable.
        ChecksumMismatchError: The weights are not the ones config.json records.
        CorruptWeightsError: The weights file is not a safetensors file.
        WeightsMismatchError: The weights do not fit the architecture config.json names.
        UnknownModelError: The architecture is not registered.
    """
    check_folder(folder, required=(CONFIG_NAME, WEIGHTS_NAME))  # the card is only for people
    config = read_config(folder / CONFIG_NAME)
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
    return build_model(entry, config, data, weights_path, meta)


def build_model(
    entry: ModelEntry, config: dict[str, Any], data: bytes, source: Path, meta: dict[str, Any]
) -> nn.Module:
    """Build ``entry``'s model as ``config`` says and load the (already verified) weights.

    Args:
        entry: The architecture's registry entry.
        config: The folder's or repo's ``config.json`` content.
        data: The bytes of the safetensors file, as hashed: exactly these are parsed.
        source: Where the bytes came from, for messages and ``pretrained_cfg["source"]``.
        meta: ``repo_id``, ``revision`` and ``sha256`` for ``model.pretrained_cfg``.

    Returns:
        The model with the weights loaded; ``model.pretrained_cfg`` holds its provenance.

    Raises:
        CorruptWeightsError: ``data`` is not a safetensors file.
        InvalidHubFolderError: The config's ``model_kwargs`` do not fit the builder.
        WeightsMismatchError: The tensors do not fit the model.
    """
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
    check_state_dict(model, state, f"{entry.name}(**{kwargs}) from {source}")
    model.load_state_dict(state, strict=True)
    model.pretrained_cfg = {
        "name": entry.name,
        "architecture": config["architecture"],
        "model_kwargs": kwargs,
        **meta,
        "metrics": dict(
            config.get("metrics") or (entry.pretrained.metrics if entry.pretrained else {})
        ),
        "recipe": recipe_as_dict(config.get("recipe")) or default_recipe(entry),
        "library_version": config.get("library_version"),
        "source": str(source),
    }
    return model


def check_state_dict(model: nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    """Check that ``state`` has exactly ``model``'s keys, with the same shapes.

    ``load_state_dict(strict=True)`` would also refuse, but with a wall of text; this names the
    first offender of each kind with its shapes, so the cause is obvious.

    Args:
        model: The model the tensors are meant for.
        state: The tensors.
        what: How to name the model in the message.

    Raises:
        WeightsMismatchError: A key is missing or unexpected, or a shape differs.
    """
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
