"""One epoch of training and one pass of validation: the hot loop, with nothing else in it."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..devices import autocast_context
from ..errors import TrainingError
from . import distributed
from .batches import BatchSource
from .checkpoint import TrainState
from .config import TrainConfig
from .optim import PER_BATCH_SCHEDULERS
from .progress import EpochBar

__all__ = ["Placement", "check_finite", "train_one_epoch", "validate"]


@dataclass(frozen=True)
class Placement:
    """Where and how a model runs.

    Attributes:
        device: The device.
        precision: The resolved precision: "fp32", "bf16" or "fp16".
        world_size: The number of processes training together.
    """

    device: torch.device
    precision: str
    world_size: int = 1


def train_one_epoch(
    model: nn.Module,
    batches: BatchSource,
    state: TrainState,
    config: TrainConfig,
    where: Placement,
    *,
    epoch: int,
    bar: EpochBar,
    step_model: nn.Module | None = None,
) -> dict[str, float]:
    """Train one epoch and return its row of the history.

    Args:
        model: The model being trained (its parameters are clipped, the EMA follows it).
        batches: The training batches.
        state: Optimizer, scheduler, scaler and EMA, stepped in place.
        config: The recipe (label smoothing, gradient clipping, schedule).
        where: Device, precision and number of processes.
        epoch: The 0-based epoch.
        bar: The epoch's progress bar; its clock times the epoch.
        step_model: What the batches run through: the DDP wrapper of ``model``, or ``None``
            for ``model`` itself.

    Returns:
        ``epoch`` (1-based), ``train_loss``, ``train_acc``, ``lr``, ``images_per_s`` and
        ``epoch_time_s``, summed over all processes.
    """
    forward = step_model if step_model is not None else model
    forward.train()
    criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    # Sums stay on the device: no per-batch .item() synchronisation in the hot loop.
    loss_sum = torch.zeros((), device=where.device, dtype=torch.float64)
    correct = torch.zeros((), device=where.device, dtype=torch.int64)
    seen = 0
    for step, (x, y) in enumerate(batches.epoch(epoch)):
        loss, logits = _train_step(model, forward, criterion, x, y, state, config, where)
        loss_sum += loss.detach() * len(y)
        correct += (logits.detach().argmax(1) == y).sum()
        seen += len(y)
        bar.update(step, loss_sum, correct, seen)
    elapsed = time.perf_counter() - bar.start
    bar.close()
    seen_t = torch.tensor(seen, dtype=torch.float64, device=where.device)
    totals = torch.stack([loss_sum, correct.double(), seen_t])
    loss_total, correct_total, seen_total = distributed.all_reduce_sum(
        totals, where.world_size
    ).tolist()
    return {
        "epoch": epoch + 1,
        "train_loss": loss_total / seen_total,
        "train_acc": correct_total / seen_total,
        "lr": state.optimizer.param_groups[0]["lr"],
        "images_per_s": seen_total / elapsed,
        "epoch_time_s": elapsed,
    }


def _train_step(
    model: nn.Module,
    forward: nn.Module,
    criterion: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    state: TrainState,
    config: TrainConfig,
    where: Placement,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimisation step; returns the batch's loss and logits."""
    with autocast_context(where.device, where.precision):
        logits = forward(x)
    loss = criterion(logits.float(), y)
    state.optimizer.zero_grad(set_to_none=True)
    state.scaler.scale(loss).backward()
    if config.grad_clip is not None:
        state.scaler.unscale_(state.optimizer)
        nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
    state.scaler.step(state.optimizer)
    state.scaler.update()
    if config.scheduler in PER_BATCH_SCHEDULERS:
        state.scheduler.step()
    if state.ema is not None:
        state.ema.update(model)
    return loss, logits


@torch.no_grad()
def validate(model: nn.Module, batches: BatchSource, where: Placement) -> tuple[float, float]:
    """Loss and accuracy of ``model`` on the validation batches, over all processes.

    Args:
        model: The model to score (the EMA's when there is one); put in eval mode.
        batches: The validation batches.
        where: Device, precision and number of processes.

    Returns:
        ``(loss, accuracy)``: the mean cross-entropy without label smoothing, and a fraction.
    """
    model.eval()
    loss_sum = torch.zeros((), device=where.device, dtype=torch.float64)
    correct = torch.zeros((), device=where.device, dtype=torch.int64)
    seen = torch.zeros((), device=where.device, dtype=torch.float64)
    for x, y in batches.epoch(0):
        with autocast_context(where.device, where.precision):
            logits = model(x).float()
        loss_sum += F.cross_entropy(logits, y, reduction="sum")
        correct += (logits.argmax(1) == y).sum()
        seen += len(y)
    totals = distributed.all_reduce_sum(
        torch.stack([loss_sum, correct.double(), seen]), where.world_size
    )
    loss_total, correct_total, seen_total = totals.tolist()
    return loss_total / seen_total, correct_total / seen_total


def check_finite(metrics: dict[str, float], model: nn.Module, config: TrainConfig) -> None:
    """Stop a run whose loss or weights stopped being finite, before the epoch is saved.

    The losses are the epoch's sums, already on the host, so this costs no synchronisation in
    the hot loop; the weights are checked once per epoch.

    Args:
        metrics: The epoch's row of the history (``epoch``, ``train_loss``, ``val_loss``).
        model: The model being trained.
        config: The recipe, for the message.

    Raises:
        TrainingError: A loss or a weight is NaN or infinite.
    """
    bad = [f"{k} is {metrics[k]}" for k in ("train_loss", "val_loss") if k in metrics
           and not math.isfinite(metrics[k])]  # fmt: skip
    with torch.no_grad():
        finite = torch.stack([torch.isfinite(p).all() for p in model.parameters()]).all()
    if not bad and bool(finite):
        return
    raise TrainingError(
        f"Training stopped in epoch {int(metrics['epoch'])}: "
        f"{', '.join(bad) or 'the weights are not finite'}. The learning rate "
        f"(lr={config.lr:g}) is probably too high: lower it, or set grad_clip. Nothing of this "
        "epoch was saved; the checkpoints of the epochs before it are as they were."
    )
