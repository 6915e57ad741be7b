"""Checkpoints: everything needed to continue a run, written atomically after every epoch.

A checkpoint folder holds ``last.pt`` (weights, EMA, optimizer, scheduler, grad scaler, best
epoch so far, history, RNG state and the recipe as data), ``best.pt`` (the best epoch's
weights) and the history as ``history.csv`` and ``history.json``. A run resumes only from a
checkpoint written with the same recipe: the recipes are compared as data, setting by setting.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..atomic import atomic_writer
from ..errors import CheckpointError
from .callbacks import BestSoFar
from .ema import ModelEMA
from .history import History

__all__ = [
    "BEST_NAME",
    "CHECKPOINT_FORMAT",
    "LAST_NAME",
    "RESUME_MAY_DIFFER",
    "Resumed",
    "TrainState",
    "config_differences",
    "load_checkpoint",
    "save_checkpoint",
]

CHECKPOINT_FORMAT = "mnist_zoo.checkpoint/1"
WEIGHTS_FORMAT = "mnist_zoo.weights/1"
LAST_NAME = "last.pt"
BEST_NAME = "best.pt"
#: Recipe settings a resumed run may change: the precision follows the hardware the run
#: continues on (a run started with "auto" on one machine may resolve otherwise on another).
#: Everything else shapes the data, the schedule or the loss, so it must match.
RESUME_MAY_DIFFER = ("precision",)


@dataclass
class TrainState:
    """What a run carries from epoch to epoch besides the model and its history.

    Attributes:
        optimizer: The optimizer.
        scheduler: The learning-rate schedule, or ``None``.
        scaler: The fp16 grad scaler (disabled for other precisions).
        ema: The EMA of the weights, or ``None``.
        best: The best epoch so far.
    """

    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler
    ema: ModelEMA | None
    best: BestSoFar


@dataclass
class Resumed:
    """Where a resumed run picks up.

    Attributes:
        next_epoch: The first epoch still to train (0-based).
        history: The epochs trained so far.
        stop_training: Whether the run had already decided to stop (early stopping).
    """

    next_epoch: int
    history: History
    stop_training: bool


def save_checkpoint(
    folder: Path,
    *,
    epoch: int,
    model: nn.Module,
    state: TrainState,
    history: History,
    config: dict[str, Any],
    stop_training: bool,
) -> None:
    """Write ``last.pt``, ``best.pt`` when ``epoch`` is the best so far, and the history files.

    Args:
        folder: The checkpoint folder, created if needed.
        epoch: The 0-based epoch just finished.
        model: The model being trained (its raw weights).
        state: Optimizer, scheduler, scaler, EMA and best epoch.
        history: The epochs trained so far, ``epoch`` included.
        config: The recipe as data (``asdict`` of the resolved config).
        stop_training: Whether the run decided to stop after this epoch.

    Raises:
        OSError: The folder cannot be written.
    """
    folder.mkdir(parents=True, exist_ok=True)
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
    }
    with atomic_writer(folder / LAST_NAME) as f:
        torch.save(payload, f)
    if state.best.epoch == epoch:
        weights = {
            "format": WEIGHTS_FORMAT,
            "epoch": epoch,
            "model": state.best.state,
            "config": config,
            "metrics": history.rows[-1],
        }
        with atomic_writer(folder / BEST_NAME) as f:
            torch.save(weights, f)
    history.to_csv(folder / "history.csv")
    history.to_json(folder / "history.json")


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
    config: dict[str, Any],
) -> Resumed | None:
    """Restore a run from ``path`` into ``model`` and ``state``, and the global torch RNG.

    Args:
        path: The ``last.pt`` to resume from.
        device: Where the model lives (tensors are loaded there).
        model: The model to load the weights into.
        state: Optimizer, scheduler, scaler and EMA to restore; its ``best`` is replaced.
        config: This run's recipe as data, compared with the checkpoint's.

    Returns:
        Where to continue, or ``None`` when ``path`` does not exist (start from scratch).

    Raises:
        CheckpointError: The file is not a readable checkpoint, or it was written with a
            different recipe (the message lists each differing setting).
    """
    if not path.exists():
        return None
    try:
        payload = torch.load(path, map_location=device, weights_only=True)
    except (RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as err:
        raise CheckpointError(
            f"Cannot resume from {path}: it is not a readable checkpoint ({err}). "
            "Delete it, or use another checkpoint_dir."
        ) from err
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"Cannot resume from {path}: it is not an mnist_zoo checkpoint.")
    saved = payload.get("config") or {}
    differ = config_differences(saved, config)
    if differ:
        raise CheckpointError(
            f"Cannot resume from {path}: it was written with a different "
            + ", ".join(f"{k} ({saved.get(k)!r} there, {config.get(k)!r} here)" for k in differ)
            + ". Use the same settings, or another checkpoint_dir."
        )
    model.load_state_dict(payload["model"])
    if state.ema is not None and payload["ema"] is not None:
        state.ema.load_state_dict(payload["ema"])
    state.optimizer.load_state_dict(payload["optimizer"])
    if state.scheduler is not None and payload["scheduler"] is not None:
        state.scheduler.load_state_dict(payload["scheduler"])
    state.scaler.load_state_dict(payload["scaler"])
    state.best = BestSoFar.from_dict(payload["best"])
    history = History(payload["history"])
    torch.set_rng_state(payload["rng"]["torch"].cpu())
    return Resumed(
        next_epoch=int(payload["epoch"]) + 1,
        history=history,
        stop_training=bool(payload.get("stop_training", False)),
    )
