"""Hooks into ``Trainer.fit``, early stopping, and the record of the best epoch so far."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..errors import InvalidArgumentError

if TYPE_CHECKING:
    from .history import History
    from .trainer import Trainer

__all__ = ["BestSoFar", "Callback", "EarlyStopping"]

#: The validation metrics early stopping can watch.
MONITORS = ("val_loss", "val_acc")


class Callback:
    """Hooks into :meth:`Trainer.fit`. Override what you need; set ``trainer.stop_training``."""

    def on_fit_start(self, trainer: Trainer) -> None:
        """Called once before the first epoch (also after a resume).

        Args:
            trainer: The trainer that is about to train.
        """

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        """Called after each epoch, once its checkpoint is written.

        Args:
            trainer: The trainer; ``trainer.stop_training = True`` ends training here.
            epoch: The 0-based epoch that just finished.
            metrics: The epoch's row of the history.
        """

    def on_fit_end(self, trainer: Trainer, history: History) -> None:
        """Called once after training, with the final weights in place.

        Args:
            trainer: The trainer; ``trainer.model`` holds the weights to use.
            history: The per-epoch metrics.
        """


@dataclass(frozen=True)
class EarlyStopping:
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs.

    Part of a recipe, so immutable like the rest of :class:`~mnist_zoo.training.TrainConfig`.

    Args:
        monitor: A validation metric: "val_loss" (lower is better) or "val_acc" (higher is
            better).
        patience: Epochs without improvement before training stops (>= 1).
        min_delta: The smallest change that counts as an improvement (>= 0).
        restore_best: Put the weights of the best epoch back at the end.

    Raises:
        InvalidArgumentError: A setting out of its range.
    """

    monitor: str = "val_loss"
    patience: int = 3
    min_delta: float = 0.0
    restore_best: bool = True

    def __post_init__(self) -> None:
        if self.monitor not in MONITORS:
            raise InvalidArgumentError(
                f"EarlyStopping monitors 'val_loss' or 'val_acc', not {self.monitor!r}."
            )
        if not isinstance(self.patience, int) or isinstance(self.patience, bool):
            raise InvalidArgumentError(
                f"EarlyStopping patience must be an integer, got {self.patience!r}."
            )
        if self.patience < 1:
            raise InvalidArgumentError(f"EarlyStopping patience must be >= 1, got {self.patience}.")
        if not isinstance(self.min_delta, (int, float)) or not math.isfinite(self.min_delta):
            raise InvalidArgumentError(
                f"EarlyStopping min_delta must be a finite number, got {self.min_delta!r}."
            )
        if self.min_delta < 0:
            raise InvalidArgumentError(
                f"EarlyStopping min_delta must be >= 0, got {self.min_delta}."
            )

    @property
    def mode(self) -> str:
        """ "min" for losses, "max" for accuracies."""
        return "min" if self.monitor.endswith("loss") else "max"

    def improved(self, value: float, best: float | None) -> bool:
        """Whether ``value`` beats ``best`` by more than ``min_delta``.

        Args:
            value: This epoch's value of the monitored metric.
            best: The best value so far, or ``None`` before the first epoch.

        Returns:
            True when ``value`` is the new best.
        """
        if best is None:
            return True
        if self.mode == "min":
            return value < best - self.min_delta
        return value > best + self.min_delta


@dataclass
class BestSoFar:
    """The best epoch so far by the monitored metric, with a CPU copy of its weights.

    Attributes:
        value: The best value of the monitored metric, ``None`` before the first epoch.
        epoch: The 0-based epoch it was reached at, -1 before the first.
        state: A CPU copy of the weights (the EMA's when there is one) of that epoch.
        bad_epochs: Epochs since then without an improvement.
    """

    value: float | None = None
    epoch: int = -1
    state: dict[str, torch.Tensor] | None = None
    bad_epochs: int = 0

    def update(self, value: float, epoch: int, model: nn.Module, stopper: EarlyStopping) -> bool:
        """Record ``epoch`` as the best if ``value`` improves on the best, else count it as bad.

        Args:
            value: The epoch's value of ``stopper.monitor``.
            epoch: The 0-based epoch.
            model: The model whose weights to keep if the epoch is the best.
            stopper: Decides what counts as an improvement.

        Returns:
            Whether the epoch is the new best.
        """
        if not stopper.improved(value, self.value):
            self.bad_epochs += 1
            return False
        self.value, self.epoch, self.bad_epochs = value, epoch, 0
        self.state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        return True

    def to_dict(self) -> dict[str, Any]:
        """Plain data for a checkpoint (loadable with ``torch.load(weights_only=True)``).

        Returns:
            The four fields as a dict; the weights are not copied.
        """
        return {
            "value": self.value,
            "epoch": self.epoch,
            "state": self.state,
            "bad_epochs": self.bad_epochs,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BestSoFar:
        """Read back what :meth:`to_dict` wrote, with the weights moved to the CPU.

        Args:
            data: A dict from :meth:`to_dict`.

        Returns:
            The record.
        """
        state = data.get("state")
        return cls(
            value=data.get("value"),
            epoch=int(data.get("epoch", -1)),
            state={k: v.cpu() for k, v in state.items()} if state is not None else None,
            bad_epochs=int(data.get("bad_epochs", 0)),
        )
