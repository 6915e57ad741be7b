"""The optimizer and the learning-rate schedule a recipe names."""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch
from torch import nn

from .config import TrainConfig

__all__ = [
    "PER_BATCH_SCHEDULERS",
    "continue_with_new_recipe",
    "fast_forward",
    "make_optimizer",
    "make_scheduler",
]

#: Schedules stepped after every batch; "step" and "plateau" are stepped after every epoch.
PER_BATCH_SCHEDULERS = ("onecycle", "cosine")


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """The optimizer ``config`` names, over the model's trainable parameters.

    Args:
        model: The model being trained.
        config: The recipe (optimizer, lr, weight_decay).

    Returns:
        AdamW, Adam, or SGD with Nesterov momentum 0.9.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(
        params,
        lr=config.lr,
        momentum=0.9,
        nesterov=True,
        weight_decay=config.weight_decay,
    )


def make_scheduler(
    optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int
) -> Any:
    """The learning-rate schedule ``config`` names.

    Args:
        optimizer: The optimizer to schedule.
        config: The recipe (scheduler, epochs, lr, warmup_epochs).
        steps_per_epoch: Batches per epoch, for the schedules stepped every batch.

    Returns:
        A ``torch.optim.lr_scheduler`` object, or ``None`` for "none".
    """
    total = config.epochs * steps_per_epoch
    if config.scheduler == "onecycle":
        pct = min(0.5, max(0.05, config.warmup_epochs / config.epochs))
        # OneCycleLR divides by the warm-up's length, pct * total - 1 steps, which is zero
        # when pct * total is exactly 1 (2 steps at 0.5, 20 at 0.05). The next float up gives
        # the schedule's limit there: the first step at the initial rate, then the annealing.
        while float(pct * total) - 1 == 0:
            pct = math.nextafter(pct, 1.0)
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=config.lr, total_steps=total, pct_start=pct
        )
    if config.scheduler == "cosine":
        warmup = min(total - 1, max(1, round(config.warmup_epochs * steps_per_epoch)))
        return torch.optim.lr_scheduler.SequentialLR(
            optimizer,
            [
                torch.optim.lr_scheduler.LinearLR(optimizer, 0.01, 1.0, total_iters=warmup),
                torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total - warmup),
            ],
            milestones=[warmup],
        )
    if config.scheduler == "step":
        step = max(1, config.epochs // 3)
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=step, gamma=0.1)
    if config.scheduler == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=1)
    return None


def fast_forward(
    scheduler: Any, config: TrainConfig, epochs_done: int, steps_per_epoch: int
) -> None:
    """Step a fresh schedule to where a run that has trained ``epochs_done`` epochs stands.

    Args:
        scheduler: A schedule from :func:`make_scheduler` that has not been stepped.
        config: The recipe it was made for.
        epochs_done: Epochs already trained.
        steps_per_epoch: Batches per epoch.
    """
    if scheduler is None or config.scheduler == "plateau":
        return  # "plateau" follows the validation loss, which a fresh schedule has not seen
    per_batch = config.scheduler in PER_BATCH_SCHEDULERS
    steps = epochs_done * steps_per_epoch if per_batch else epochs_done
    steps = min(steps, config.epochs * steps_per_epoch if per_batch else config.epochs)
    with warnings.catch_warnings():
        # No optimizer step comes between these: torch warns about that order, rightly
        # anywhere but here.
        warnings.simplefilter("ignore", UserWarning)
        for _ in range(steps):
            scheduler.step()


def continue_with_new_recipe(
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    config: TrainConfig,
    saved_state: dict[str, Any],
    *,
    saved_optimizer: str | None,
    epochs_done: int,
    steps_per_epoch: int,
) -> None:
    """Continue a run whose recipe changed on resume: the new settings, the running state.

    The optimizer keeps its running state (moments, step counts) when the recipe names the
    same optimizer, and takes every setting (learning rate, weight decay, ...) from the new
    recipe; the schedule is the new recipe's, stepped to where the run stands. From here on
    the run trains as if the new recipe had been its recipe from the start.

    Args:
        optimizer: The new recipe's optimizer, from :func:`make_optimizer`.
        scheduler: The new recipe's schedule, from :func:`make_scheduler`, not yet stepped.
        config: The new recipe.
        saved_state: The checkpoint's ``optimizer.state_dict()``.
        saved_optimizer: The optimizer the checkpoint's recipe names.
        epochs_done: Epochs the checkpoint has trained.
        steps_per_epoch: Batches per epoch.
    """
    if saved_optimizer == config.optimizer:
        fresh = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
        optimizer.load_state_dict(saved_state)
        for group, settings in zip(optimizer.param_groups, fresh, strict=True):
            group.update(settings)
    fast_forward(scheduler, config, epochs_done, steps_per_epoch)
