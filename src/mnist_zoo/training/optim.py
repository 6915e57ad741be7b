"""The optimizer and the learning-rate schedule a recipe names."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .config import TrainConfig

__all__ = ["PER_BATCH_SCHEDULERS", "make_optimizer", "make_scheduler"]

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
