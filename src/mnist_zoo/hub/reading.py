"""Reading a Hub folder or a repo's files: check them, parse the config, build the model.

Every loader goes through here: :func:`load_folder` for a local folder, and
:mod:`mnist_zoo.hub.loading` for files from the Hub cache, with :func:`parse_config` and
:func:`build_model`. What is checked, and in which order, is listed in
:mod:`mnist_zoo.hub.verify`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import safetensors
import safetensors.torch
from torch import nn

from ..errors import (
    ChecksumMismatchError,
    CorruptWeightsError,
    EnsembleFolderError,
    InvalidHubFolderError,
    UnverifiedWeightsError,
)
from ..registry import ModelEntry, get_model_entry
from .layout import CONFIG_NAME, HUB_FILES, WEIGHTS_NAME, staged_path
from .provenance import default_recipe, recipe_as_dict
from .verify import (
    MAX_CONFIG_BYTES,
    check_architecture,
    check_library_version,
    check_state_dict,
    read_limited,
    same_sha256,
    size_limit,
)

__all__ = [
    "build_model",
    "check_folder",
    "load_folder",
    "parse_config",
    "read_config",
    "temperature_of",
]

logger = logging.getLogger(__name__)


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
    # Present is enough here: what is not a regular file is refused when it is read.
    missing = [f for f in required if not (folder / f).exists()]
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
    raise EnsembleFolderError(
        f"{str(folder)!r} describes the {ensemble_of(members)} and holds no weights of its own: "
        "load it by name, load_pretrained('ensemble'), which fetches the members from their "
        "repos, or build it from local folders with "
        "Ensemble([load_pretrained(folder) for folder in ...]).",
        members=list(map(str, members)),
    )


def ensemble_of(members: Sequence[str]) -> str:
    """``"ensemble of the N pinned models (a, b, ...)"``, for messages about an ensemble folder.

    Args:
        members: The members its ``config.json`` names.

    Returns:
        The phrase.
    """
    return f"ensemble of the {len(members)} pinned models ({', '.join(members)})"


def read_config(path: Path) -> dict[str, Any]:
    """Read a Hub folder's ``config.json``, at most :data:`~mnist_zoo.hub.verify.MAX_CONFIG_BYTES`.

    Args:
        path: The file.

    Returns:
        The config, a dict with at least a string ``architecture``.

    Raises:
        InvalidHubFolderError: The file cannot be read, is too large or not a regular file, is
            not JSON, or names no architecture.
        IncompatibleConfigError: It was written by a newer mnist_zoo.
    """
    try:
        data = read_limited(path, limit=MAX_CONFIG_BYTES)
    except (OSError, CorruptWeightsError) as err:
        raise InvalidHubFolderError(f"Cannot read {path}: {err}") from err
    return parse_config(data, str(path))


def parse_config(data: bytes, source: str) -> dict[str, Any]:
    """Parse the bytes of a ``config.json`` and check what every loader relies on.

    Args:
        data: The file's bytes.
        source: Where they came from, for messages.

    Returns:
        The config, a dict with at least a string ``architecture``.

    Raises:
        InvalidHubFolderError: It is not a JSON object naming an architecture.
        IncompatibleConfigError: It was written by a newer mnist_zoo.
    """
    try:
        config = json.loads(data.decode("utf-8"))
    except ValueError as err:
        raise InvalidHubFolderError(f"Cannot read {source}: {err}.") from err
    if not isinstance(config, dict) or not isinstance(config.get("architecture"), str):
        raise InvalidHubFolderError(
            f"{source} does not name an architecture; it should be a config.json written by "
            "mnist_zoo.hub.save_pretrained()."
        )
    check_library_version(config, source)
    return config


def load_folder(folder: Path, *, trust_unverified: bool = False) -> nn.Module:
    """Build the model a local Hub folder holds, after checking its weights' size and SHA-256.

    Args:
        folder: A folder written by :func:`save_pretrained`.
        trust_unverified: Load the weights even if ``config.json`` records no SHA-256 to check
            them against (a warning is logged).

    Returns:
        The model with the weights loaded (in training mode, on the CPU), its provenance in
        ``model.pretrained_cfg``.

    Raises:
        InvalidHubFolderError: The folder is incomplete, or config.json is unreadable.
        UnverifiedWeightsError: config.json records no SHA-256 and ``trust_unverified`` is off.
        IncompatibleConfigError: config.json was written by a newer mnist_zoo.
        ChecksumMismatchError: The weights are not the ones config.json records.
        CorruptWeightsError: The weights file is not a regular file, is larger than its
            architecture can hold, is not a safetensors file, or holds NaN or infinity.
        WeightsMismatchError: The weights do not fit the architecture config.json names.
        UnknownModelError: The architecture is not registered.
    """
    check_folder(folder, required=(CONFIG_NAME, WEIGHTS_NAME))  # the card is only for people
    config = read_config(folder / CONFIG_NAME)
    entry = get_model_entry(config["architecture"])
    recorded = config.get("sha256")
    if not recorded and not trust_unverified:
        raise UnverifiedWeightsError(
            f"{folder / CONFIG_NAME} records no SHA-256 of {WEIGHTS_NAME}, so the weights "
            "cannot be verified. Re-create the folder with save_pretrained(), which records it, "
            "or, if you trust the folder's origin, load it with trust_unverified=True."
        )
    path, data = _read_weights(folder, entry, config)
    sha256 = hashlib.sha256(data).hexdigest()
    if not recorded:
        logger.warning(
            "Loading %s unverified (trust_unverified=True): %s records no SHA-256; its SHA-256 "
            "is %s.",
            path,
            CONFIG_NAME,
            sha256,
        )
    meta = {"repo_id": config.get("repo_id"), "revision": None, "sha256": sha256}
    return build_model(entry, config, data, path, meta)


def _read_weights(folder: Path, entry: ModelEntry, config: dict[str, Any]) -> tuple[Path, bytes]:
    """The weights the config records: model.safetensors, or a save's staged file (see above)."""
    kwargs = dict(config.get("model_kwargs") or {})
    try:
        limit = size_limit(entry.builder, kwargs)
    except TypeError as err:
        raise InvalidHubFolderError(
            f"config.json's model_kwargs {kwargs} do not fit {entry.name}: {err}."
        ) from err
    path = folder / WEIGHTS_NAME
    data = read_limited(path, limit=limit)
    recorded = config.get("sha256")
    if not recorded or same_sha256(hashlib.sha256(data).hexdigest(), recorded):
        return path, data
    # A save killed after its switch: the recorded weights are still staged beside the old.
    staged = _staged_weights(folder, recorded)
    if staged is not None and staged.is_file():
        staged_data = read_limited(staged, limit=limit)
        if same_sha256(hashlib.sha256(staged_data).hexdigest(), recorded):
            return staged, staged_data
    raise ChecksumMismatchError(
        f"{path} has SHA-256 {hashlib.sha256(data).hexdigest()}, but {folder / CONFIG_NAME} "
        f"records {recorded}: the weights and config do not belong together. Re-create the "
        "folder with save_pretrained(), or download the repo again."
    )


def _staged_weights(folder: Path, recorded: object) -> Path | None:
    try:
        return staged_path(folder, WEIGHTS_NAME, recorded) if isinstance(recorded, str) else None
    except ValueError:
        return None


def build_model(
    entry: ModelEntry, config: dict[str, Any], data: bytes, source: Path, meta: dict[str, Any]
) -> nn.Module:
    """Build ``entry``'s model as ``config`` says and load the (already verified) weights.

    The model is always built by ``entry``'s builder. A config that names another registered
    architecture is accepted only if that one builds the same class with the same tensors (a
    registered alias); otherwise it is refused, so a config cannot relabel weights.

    Args:
        entry: The architecture's registry entry.
        config: The folder's or repo's ``config.json`` content.
        data: The bytes of the safetensors file, as hashed: exactly these are parsed.
        source: Where the bytes came from, for messages and ``pretrained_cfg["source"]``.
        meta: ``repo_id``, ``revision`` and ``sha256`` for ``model.pretrained_cfg``.

    Returns:
        The model with the weights loaded; ``model.pretrained_cfg`` holds its provenance, and
        ``temperature`` (fitted on validation data; ``None`` when the config records none)
        and ``calibration`` (the config's section, or ``None``).

    Raises:
        CorruptWeightsError: ``data`` is not a safetensors file, or holds NaN or infinity.
        InvalidHubFolderError: The config's ``model_kwargs`` do not fit the builder, or its
            calibration temperature is not a positive number.
        IncompatibleConfigError: The config names an architecture other than ``entry``'s.
        WeightsMismatchError: The tensors' keys, shapes or dtypes do not fit the model.
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
    check_architecture(entry, config["architecture"], model, kwargs, str(source))
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
        "temperature": temperature_of(config, str(source)),
        "calibration": config.get("calibration"),
    }
    return model


def temperature_of(config: dict[str, Any], source: str) -> float | None:
    """The temperature a config's ``calibration`` section records, checked.

    Args:
        config: A ``config.json``'s content.
        source: The weights it belongs to, for messages.

    Returns:
        ``config["calibration"]["temperature"]`` as a float, or ``None`` when the config has
        no calibration section (as the v0.1 releases).

    Raises:
        InvalidHubFolderError: The section is not an object, or its temperature is not a
            positive finite number.
    """
    section = config.get("calibration")
    if section is None:
        return None
    value = section.get("temperature") if isinstance(section, dict) else None
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise InvalidHubFolderError(
            f"The config.json of {source} records calibration temperature {value!r}; it "
            "must be a positive number. Re-create the folder with save_pretrained(), or "
            "remove the section to load the model without temperature scaling."
        )
    return float(value)
