"""An exponential moving average of a model's weights, used in place of the raw weights."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from ..errors import InvalidArgumentError

__all__ = ["ModelEMA"]


class ModelEMA:
    """An exponential moving average of a model's weights (and float buffers, e.g. BN stats).

    The decay ramps up as ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates, so the
    average is not dominated by the random initialisation early in a short run.

    Args:
        model: The model being trained; the average starts as a copy of it, in eval mode.
        decay: The decay once the ramp is over, in (0, 1).

    Raises:
        InvalidArgumentError: ``decay`` is not in (0, 1).
    """

    def __init__(self, model: nn.Module, decay: float = 0.999) -> None:
        if not 0.0 < decay < 1.0:
            raise InvalidArgumentError(f"EMA decay must be in (0, 1), got {decay}.")
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay = decay
        self.updates = 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average one step towards ``model``'s current weights.

        Args:
            model: The model being trained (the same architecture as the average).
        """
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        ema_state, state = self.module.state_dict(), model.state_dict()
        floats = [k for k, v in ema_state.items() if v.dtype.is_floating_point]
        torch._foreach_lerp_([ema_state[k] for k in floats], [state[k] for k in floats], 1 - d)
        for k, v in ema_state.items():
            if not v.dtype.is_floating_point:
                v.copy_(state[k])

    def state_dict(self) -> dict[str, Any]:
        """The averaged weights and the update count, for checkpoints.

        Returns:
            ``{"module": state dict, "updates": count}``.
        """
        return {"module": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned.

        Args:
            state: A dict from :meth:`state_dict`.
        """
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])
