"""One epoch of training and one pass of validation: the hot loop, with nothing else in it."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..devices import autocast_context
from . import distributed
from .batches import BatchSource
from .checkpoint import TrainState
from .config import TrainConfig
from .optim import PER_BATCH_SCHEDULERS
from .progress import EpochBar

__all__ = ["Placement", "train_one_epoch", "validate"]


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
