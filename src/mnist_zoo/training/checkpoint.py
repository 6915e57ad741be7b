"""Checkpoints: everything needed to continue a run, written atomically after every epoch.

A checkpoint folder holds ``last.pt`` (weights, EMA, optimizer, scheduler, grad scaler, best
epoch so far, history, RNG state, the recipe as data and the model's name and kwargs),
``best.pt`` (the best epoch's weights) and the history as ``history.csv`` and
``history.json``.

Each ``.pt`` file records a SHA-256 of its own content (:func:`payload_checksum`), so a damaged
file is refused rather than resumed from. ``best.pt`` is written before ``last.pt``, and
``last.pt`` records the checksum of the ``best.pt`` that goes with it: a run killed between
the two writes is repaired on resume (:func:`repair_best`), so a resumed run always starts from
a consistent pair. A run resumes only into the same model, and only with the same recipe unless
recipe changes are explicitly allowed: the recipes are compared as data, setting by setting.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..atomic import atomic_writer
from ..errors import CheckpointError
from .callbacks import BestSoFar
from .config import TrainConfig
from .ema import ModelEMA
from .history import History
from .optim import continue_with_new_recipe
from .verify import describe_model, payload_checksum

__all__ = [
    "BEST_NAME",
    "CHECKPOINT_FORMAT",
    "LAST_NAME",
    "RESUME_MAY_DIFFER",
    "RESUME_MUST_MATCH",
    "WEIGHTS_FORMAT",
    "Resumed",
    "TrainState",
    "config_differences",
    "load_checkpoint",
    "read_checkpoint",
    "repair_best",
    "save_checkpoint",
]

CHECKPOINT_FORMAT = "mnist_zoo.checkpoint/2"
WEIGHTS_FORMAT = "mnist_zoo.weights/2"
_OLD_FORMATS = ("mnist_zoo.checkpoint/1", "mnist_zoo.weights/1")
LAST_NAME = "last.pt"
BEST_NAME = "best.pt"
#: Recipe settings a resumed run may change: the precision follows the hardware the run
#: continues on (a run started with "auto" on one machine may resolve otherwise on another).
#: Everything else shapes the data, the schedule or the loss, so it must match unless recipe
#: changes are allowed.
RESUME_MAY_DIFFER = ("precision",)
#: Settings that choose the validation split: changing them on resume would train on images
#: the earlier epochs validated on, so they must match even when recipe changes are allowed.
RESUME_MUST_MATCH = ("seed", "split_seed", "val_size")
_LAST_KEYS = ("epoch", "model", "ema", "optimizer", "scheduler", "scaler", "best", "history",
              "rng", "config", "stop_training", "architecture", "best_file",
              "recipe_changes")  # fmt: skip
_BEST_KEYS = ("epoch", "model", "config", "metrics", "architecture")
_WHAT_TO_DO = "Delete it to start over, or pass another checkpoint folder (--checkpoint-dir)."


@dataclass
class TrainState:
    """What a run carries from epoch to epoch besides the model and its history.

    Attributes:
        optimizer: The optimizer.
        scheduler: The learning-rate schedule, or ``None``.
        scaler: The fp16 grad scaler (disabled for other precisions).
        ema: The EMA of the weights, or ``None``.
        best: The best epoch so far.
        best_checksum: The checksum of the ``best.pt`` last written (or found on resume).
    """

    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler
    ema: ModelEMA | None
    best: BestSoFar
    best_checksum: str | None = None


@dataclass
class Resumed:
    """Where a resumed run picks up.

    Attributes:
        next_epoch: The first epoch still to train (0-based).
        history: The epochs trained so far.
        stop_training: Whether the run had already decided to stop (early stopping).
        checksum: The checksum of the ``last.pt`` resumed from.
        recipe_changes: Every change of recipe the run has gone through, this resume's
            included: ``{"epoch": first epoch (1-based) trained with it, "changed": {setting:
            [before, after]}}``.
    """

    next_epoch: int
    history: History
    stop_training: bool
    checksum: str = ""
    recipe_changes: list[dict[str, Any]] = field(default_factory=list)


def save_checkpoint(
    folder: Path,
    *,
    epoch: int,
    model: nn.Module,
    state: TrainState,
    history: History,
    config: dict[str, Any],
    stop_training: bool,
    architecture: dict[str, Any] | None = None,
    recipe_changes: Sequence[dict[str, Any]] = (),
) -> None:
    """Write ``best.pt`` when ``epoch`` is the best so far, then ``last.pt``, then the history.

    Args:
        folder: The checkpoint folder, created if needed.
        epoch: The 0-based epoch just finished.
        model: The model being trained (its raw weights).
        state: Optimizer, scheduler, scaler, EMA and best epoch.
        history: The epochs trained so far, ``epoch`` included.
        config: The recipe as data (``asdict`` of the resolved config).
        stop_training: Whether the run decided to stop after this epoch.
        architecture: What :func:`describe_model` says; default: ``describe_model(model)``.
        recipe_changes: The run's changes of recipe so far (see :class:`Resumed`).

    Raises:
        OSError: The folder cannot be written.
    """
    folder.mkdir(parents=True, exist_ok=True)
    architecture = architecture if architecture is not None else describe_model(model)
    best = _best_payload(state.best, history.rows, config, architecture)
    # Written when the epoch is the best, or when its content changed (a recipe changed on
    # resume is recorded in it): before last.pt, which records it.
    if best is not None and (state.best.epoch == epoch or best["checksum"] != state.best_checksum):
        _write(folder / BEST_NAME, best)
        state.best_checksum = best["checksum"]
    payload = {
        "format": CHECKPOINT_FORMAT,
        "epoch": epoch,
        "model": model.state_dict(),
        "ema": state.ema.state_dict() if state.ema is not None else None,
        "optimizer": state.optimizer.state_dict(),
        "scheduler": state.scheduler.state_dict() if state.scheduler is not None else None,
        "scaler": state.scaler.state_dict(),
        "best": state.best.to_dict(),
        "history": history.rows,
        "rng": {"torch": torch.get_rng_state()},
        "config": config,
        "stop_training": stop_training,
        "architecture": architecture,
        # The best.pt that goes with this file: a resume checks it, and rewrites it if a kill
        # came between the two writes.
        "best_file": {"epoch": best["epoch"], "checksum": best["checksum"]} if best else None,
        "recipe_changes": list(recipe_changes),
    }
    _write(folder / LAST_NAME, payload)
    history.to_csv(folder / "history.csv")
    history.to_json(folder / "history.json")


def _best_payload(
    best: BestSoFar, rows: list[dict[str, float]], config: dict[str, Any], architecture: Any
) -> dict[str, Any] | None:
    if best.epoch < 0 or best.state is None:
        return None
    payload = {
        "format": WEIGHTS_FORMAT,
        "epoch": best.epoch,
        "model": best.state,
        "config": config,
        "metrics": rows[best.epoch],
        "architecture": architecture,
    }
    payload["checksum"] = payload_checksum(payload)
    return payload


def _write(path: Path, payload: dict[str, Any]) -> None:
    payload.setdefault("checksum", payload_checksum(payload))
    with atomic_writer(path) as f:
        torch.save(payload, f)


def read_checkpoint(path: Path, *, device: torch.device | str = "cpu") -> dict[str, Any]:
    """Read a ``last.pt`` or ``best.pt`` and verify it: format, keys and checksum.

    Nothing in the file is executed (``torch.load(weights_only=True)``).

    Args:
        path: The file.
        device: Where its tensors are loaded.

    Returns:
        Its content, verified.

    Raises:
        CheckpointError: The file is not a readable, intact mnist_zoo checkpoint (empty,
            truncated, random bytes, another object, keys missing, a changed byte); the
            message says what to do.
        OSError: The file cannot be opened.
    """
    try:
        payload = torch.load(path, map_location=device, weights_only=True)
    except OSError:
        raise
    except Exception as err:  # a damaged file can fail in the unpickler in many ways
        reason = (str(err).strip().splitlines() or [""])[0][:200]
        raise _unreadable(path, f"{type(err).__name__}: {reason}") from err
    if not isinstance(payload, dict):
        raise _unreadable(path, f"it holds a {type(payload).__name__}")
    fmt = payload.get("format")
    if fmt in _OLD_FORMATS:
        raise _unreadable(path, f"it was written by an older mnist_zoo ({fmt}), without a checksum")
    keys = {CHECKPOINT_FORMAT: _LAST_KEYS, WEIGHTS_FORMAT: _BEST_KEYS}.get(fmt)
    if keys is None:
        raise _unreadable(path, "it is not an mnist_zoo checkpoint")
    missing = [k for k in (*keys, "checksum") if k not in payload]
    if missing:
        raise _unreadable(path, f"it lacks {', '.join(missing)}")
    if payload["checksum"] != payload_checksum(payload):
        raise _unreadable(path, "its content does not match its checksum: the file is damaged")
    return payload


def _unreadable(path: Path, reason: str) -> CheckpointError:
    return CheckpointError(
        f"Cannot resume from {path}: it is not a readable checkpoint ({reason}). {_WHAT_TO_DO}"
    )


def config_differences(
    saved: Mapping[str, Any],
    mine: Mapping[str, Any],
    *,
    ignore: tuple[str, ...] = RESUME_MAY_DIFFER,
) -> list[str]:
    """The recipe settings that differ between a checkpoint and this run.

    Args:
        saved: The recipe the checkpoint recorded.
        mine: This run's recipe, as data.
        ignore: Settings allowed to differ.

    Returns:
        The names of the differing settings, in recipe order.
    """
    names = [*mine, *(k for k in saved if k not in mine)]
    return [k for k in names if k not in ignore and saved.get(k) != mine.get(k)]


def load_checkpoint(
    path: Path,
    *,
    device: torch.device,
    model: nn.Module,
    state: TrainState,
    config: TrainConfig,
    architecture: dict[str, Any] | None = None,
    allow_recipe_change: bool = False,
    steps_per_epoch: int = 1,
    repair: bool = True,
) -> Resumed | None:
    """Restore a run from ``path`` into ``model`` and ``state``, and the global torch RNG.

    With the same recipe, everything is restored and the run continues exactly as it would
    have without the interruption. With a changed recipe (``allow_recipe_change``), the
    weights, EMA, history, best epoch and RNG are restored, the optimizer keeps its running
    state (when it is the same optimizer) but takes the new recipe's settings, and the
    schedule is the new recipe's, at the step the run has reached.

    Args:
        path: The ``last.pt`` to resume from.
        device: Where the model lives (tensors are loaded there).
        model: The model to load the weights into.
        state: Optimizer, scheduler, scaler and EMA to restore; its ``best`` is replaced.
        config: This run's recipe (as resolved: precision, global batch), compared with the
            checkpoint's setting by setting.
        architecture: This run's model, as :func:`describe_model` gives it; default:
            ``describe_model(model)``.
        allow_recipe_change: Continue with a recipe that differs from the checkpoint's
            (except in :data:`RESUME_MUST_MATCH`) instead of refusing.
        steps_per_epoch: Batches per epoch, to bring a changed schedule to the run's step.
        repair: Rewrite ``best.pt`` if it disagrees with ``last.pt`` (:func:`repair_best`),
            and the history files from ``last.pt``; only the process that writes files should.

    Returns:
        Where to continue, or ``None`` when ``path`` does not exist (start from scratch).

    Raises:
        CheckpointError: The file is not a readable, intact checkpoint of a run; it holds
            another model (the message names both); or it was written with a different
            recipe (the message lists each differing setting) and changes are not allowed.
    """
    if not path.exists():
        return None
    payload = read_checkpoint(path, device=device)
    if payload["format"] != CHECKPOINT_FORMAT:
        raise _unreadable(path, "it holds the best weights only, not a run to continue")
    _check_architecture(path, payload["architecture"], architecture or describe_model(model))
    saved, mine = payload["config"], dataclasses.asdict(config)
    changed = {k: [saved.get(k), mine.get(k)] for k in config_differences(saved, mine, ignore=())}
    recipe_changed = _check_changes(path, changed, allow_recipe_change)
    _load_weights(path, model, payload)
    if state.ema is not None:
        state.ema.load_state_dict(payload["ema"] or {"module": model.state_dict(), "updates": 0})
    if recipe_changed:
        continue_with_new_recipe(
            state.optimizer, state.scheduler, config, payload["optimizer"],
            saved_optimizer=saved.get("optimizer"), epochs_done=int(payload["epoch"]) + 1,
            steps_per_epoch=steps_per_epoch,
        )  # fmt: skip
    else:
        state.optimizer.load_state_dict(payload["optimizer"])
        if state.scheduler is not None and payload["scheduler"] is not None:
            state.scheduler.load_state_dict(payload["scheduler"])
    state.scaler.load_state_dict(payload["scaler"])
    state.best = BestSoFar.from_dict(payload["best"])
    state.best_checksum = (payload["best_file"] or {}).get("checksum")
    torch.set_rng_state(payload["rng"]["torch"].cpu())
    history = History(payload["history"])
    if repair:  # a kill after last.pt may have left best.pt or the history files behind it
        repair_best(path.parent, payload)
        history.to_csv(path.parent / "history.csv")
        history.to_json(path.parent / "history.json")
    changes = list(payload["recipe_changes"])
    if changed:
        changes.append({"epoch": int(payload["epoch"]) + 2, "changed": changed})
    return Resumed(
        next_epoch=int(payload["epoch"]) + 1,
        history=history,
        # A run continued with another recipe trains on, whatever the old one had decided.
        stop_training=bool(payload["stop_training"]) and not recipe_changed,
        checksum=payload["checksum"],
        recipe_changes=changes,
    )


def _describe(arch: Mapping[str, Any]) -> str:
    name = arch.get("name") or str(arch.get("class", "?")).rpartition(".")[2]
    kwargs = ", ".join(f"{k}={v!r}" for k, v in (arch.get("kwargs") or {}).items())
    return f"{name}({kwargs})"


def _check_architecture(path: Path, saved: Mapping[str, Any], mine: Mapping[str, Any]) -> None:
    if saved != mine:
        raise CheckpointError(
            f"Cannot resume from {path}: it holds a {_describe(saved)} checkpoint, and this run "
            f"trains {_describe(mine)}. Train the same model, or use another checkpoint folder."
        )


def _check_changes(path: Path, changed: dict[str, list[Any]], allow: bool) -> bool:
    """Refuse a changed recipe unless allowed; returns whether it changed beyond precision."""
    differ = [k for k in changed if k not in RESUME_MAY_DIFFER]
    locked = [k for k in differ if k in RESUME_MUST_MATCH]
    if differ and (not allow or locked):
        listed = ", ".join(f"{k} ({changed[k][0]!r} there, {changed[k][1]!r} here)" for k in differ)
        hint = (
            f" {' and '.join(locked)} choose the validation split, which a run cannot change."
            if allow
            else " To continue with the new settings from here on, allow it "
            "(allow_recipe_change=True, --allow-recipe-change)."
        )
        raise CheckpointError(
            f"Cannot resume from {path}: it was written with a different {listed}.{hint} "
            "Use the same settings, or another checkpoint folder "
            "(checkpoint_dir=, --checkpoint-dir)."
        )
    return bool(differ)


def _load_weights(path: Path, model: nn.Module, payload: Mapping[str, Any]) -> None:
    try:
        model.load_state_dict(payload["model"])
    except RuntimeError as err:  # the class matched, but the model changed since
        first = str(err).strip().splitlines()[0]
        raise CheckpointError(
            f"Cannot resume from {path}: its weights do not fit this model ({first}). "
            "Train the same model, or use another checkpoint folder."
        ) from err


def repair_best(folder: Path, last: Mapping[str, Any]) -> bool:
    """Make ``best.pt`` agree with ``last.pt``, rewriting it from ``last.pt`` if it does not.

    ``last.pt`` records the checksum of its ``best.pt`` and holds the best weights itself, so
    a ``best.pt`` that a kill left missing, damaged or one epoch ahead is rewritten exactly.

    Args:
        folder: The checkpoint folder.
        last: The verified content of its ``last.pt`` (see :func:`read_checkpoint`).

    Returns:
        Whether ``best.pt`` was rewritten.

    Raises:
        OSError: The folder cannot be written.
    """
    record = last.get("best_file")
    if record is None:
        return False
    path = folder / BEST_NAME
    try:
        if path.exists() and read_checkpoint(path)["checksum"] == record["checksum"]:
            return False
    except CheckpointError:
        pass
    best = BestSoFar.from_dict(last["best"])
    payload = _best_payload(best, last["history"], last["config"], last["architecture"])
    if payload is None:
        return False
    _write(path, payload)
    return True
