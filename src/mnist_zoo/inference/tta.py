"""Test-time augmentation (TTA): average a model's probabilities over a few views of each digit.

```python
from mnist_zoo.inference import TTA_VIEWS, TTAModel, tta_logits
logits = tta_logits(model, test.images)            # (N, 10): log of the averaged probabilities
mnist_zoo.predict(model, images, tta=True)         # the same views, through predict
mnist_zoo.evaluate_model(model, test.images, test.targets, tta=True)
```

The views (:data:`TTA_VIEWS`) are the digit as it is, shifted by one pixel up, down, left and
right, and rotated by 8 degrees either way about the image centre: the small changes of
position and slant that handwriting has and that the training recipes augment with. Pixels
moved in from outside the image are 0, MNIST's black background. There are no flips: a
mirrored 2, 3, 4, 5, 6, 7 or 9 is not that digit any more.

Each batch's views are made with torch on the batch's device (a zero-filled shift, or
``affine_grid`` and bilinear ``grid_sample`` for a rotation), stacked, and run through the
model in one forward pass; the softmax probabilities are averaged over the views. The result is
returned as the log of the averaged probabilities, which behaves like logits: ``argmax`` is the
TTA label and ``softmax`` gives the averaged probabilities back exactly, so accuracy, loss and
calibration code work unchanged (as for :class:`mnist_zoo.Ensemble`). Batching, devices, eval
mode and precision are those of :func:`mnist_zoo.inference.batched.batched_logits`, which
:func:`tta_logits` runs a :class:`TTAModel` through.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InvalidArgumentError
from .batched import batched_logits

__all__ = ["TTA_VIEWS", "TTAModel", "augmented_views", "tta_logits"]

#: Shifts by one pixel, as (rows down, columns right).
_SHIFTS: dict[str, tuple[int, int]] = {
    "shift_up": (-1, 0),
    "shift_down": (1, 0),
    "shift_left": (0, -1),
    "shift_right": (0, 1),
}
#: Rotations, in degrees, counter-clockwise as the digit is seen.
_ROTATIONS: dict[str, float] = {"rotate_ccw8": 8.0, "rotate_cw8": -8.0}

#: The default views, in the order they are stacked: the image itself, the four one-pixel
#: shifts and the two 8-degree rotations. Never a flip.
TTA_VIEWS: tuple[str, ...] = ("identity", *_SHIFTS, *_ROTATIONS)


def _check_views(views: Sequence[str]) -> tuple[str, ...]:
    if isinstance(views, str):
        views = (views,)
    chosen = tuple(views)
    unknown = [view for view in chosen if view not in TTA_VIEWS]
    if not chosen or unknown:
        raise InvalidArgumentError(
            f"views must name at least one of {', '.join(TTA_VIEWS)}; got {list(chosen)}."
        )
    return chosen


def _shift(x: torch.Tensor, down: int, right: int) -> torch.Tensor:
    """``x`` moved by whole pixels, the uncovered border filled with 0 (not wrapped round)."""
    height, width = x.shape[-2:]
    out = torch.zeros_like(x)
    out[..., max(down, 0) : height + min(down, 0), max(right, 0) : width + min(right, 0)] = x[
        ..., max(-down, 0) : height - max(down, 0), max(-right, 0) : width - max(right, 0)
    ]
    return out


def _rotate(x: torch.Tensor, degrees: float) -> torch.Tensor:
    """``x`` rotated about its centre, counter-clockwise as seen for positive ``degrees``."""
    angle = math.radians(degrees)
    cos, sin = math.cos(angle), math.sin(angle)
    # affine_grid maps each output position to the input position it samples, in (x, y) with
    # y growing downwards: this theta turns the picture counter-clockwise on screen.
    theta = torch.tensor([[cos, -sin, 0.0], [sin, cos, 0.0]], dtype=x.dtype, device=x.device)
    grid = F.affine_grid(theta.expand(len(x), 2, 3), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def augmented_views(x: torch.Tensor, views: Sequence[str] = TTA_VIEWS) -> torch.Tensor:
    """The views of a batch of images, stacked view by view.

    Args:
        x: (N, 1, H, W) float images, 0 the background.
        views: Names from :data:`TTA_VIEWS`, in the order wanted.

    Returns:
        (V, N, 1, H, W): ``out[v]`` is view ``views[v]`` of every image, same dtype and device.

    Raises:
        InvalidArgumentError: ``x`` is not an (N, 1, H, W) float batch, or ``views`` is empty
            or names an unknown view.
    """
    chosen = _check_views(views)
    if x.ndim != 4 or x.shape[1] != 1 or not x.is_floating_point():
        raise InvalidArgumentError(
            f"TTA takes (N, 1, H, W) float images, got {x.dtype} of shape {tuple(x.shape)}."
        )
    out = []
    for view in chosen:
        if view in _SHIFTS:
            out.append(_shift(x, *_SHIFTS[view]))
        elif view in _ROTATIONS:
            out.append(_rotate(x, _ROTATIONS[view]))
        else:
            out.append(x)
    return torch.stack(out)


class TTAModel(nn.Module):
    """A model wrapped to average its softmax probabilities over views of each image.

    ``forward`` returns the log of the averaged probabilities (see the module documentation),
    so the wrapper can be used wherever a model is: :func:`mnist_zoo.evaluate_model`,
    :func:`mnist_zoo.robustness.evaluate_corruptions`,
    :func:`mnist_zoo.calibration.fit_temperature`.

    Args:
        model: A classifier taking (N, 1, 28, 28) float images in [0, 1], returning logits.
        views: The views to average over, names from :data:`TTA_VIEWS` (default: all).

    Attributes:
        model: The wrapped model (its parameters are the wrapper's).
        views: The view names, in order.

    Raises:
        InvalidArgumentError: ``views`` is empty or names an unknown view.
    """

    def __init__(self, model: nn.Module, views: Sequence[str] = TTA_VIEWS) -> None:
        super().__init__()
        self.model = model
        self.views = _check_views(views)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Log of the mean over views of the model's softmax probabilities.

        Args:
            x: (N, 1, H, W) float images.

        Returns:
            (N, C) log-probabilities; ``softmax`` of them is the mean probability over views.
        """
        stacked = augmented_views(x, self.views)
        count, n = stacked.shape[:2]
        # One forward pass over all views: the model is in eval mode, so images do not
        # influence each other.
        logits = self.model(stacked.flatten(0, 1)).float()
        log_probs = torch.log_softmax(logits, dim=1).view(count, n, -1)
        return torch.logsumexp(log_probs, dim=0) - math.log(count)

    def extra_repr(self) -> str:
        """The view names, shown when the wrapper is printed.

        Returns:
            ``"views=(...)"``.
        """
        return f"views={self.views}"


def tta_logits(
    model: nn.Module,
    images: torch.Tensor,
    *,
    views: Sequence[str] = TTA_VIEWS,
    batch_size: int = 1000,
    device: torch.device | str | None = None,
    precision: str = "fp32",
) -> torch.Tensor:
    """Log of the averaged probabilities over ``views`` for every image, in batches.

    Runs a :class:`TTAModel` through :func:`mnist_zoo.inference.batched.batched_logits`: each
    batch of ``batch_size`` images goes through the model as ``len(views) * batch_size``
    images.

    Args:
        model: A classifier taking (N, 1, 28, 28) float images in [0, 1]; on ``device``.
        images: (N, 1, 28, 28) images, uint8 0-255 or float in [0, 1], on any device.
        views: Names from :data:`TTA_VIEWS` (default: all).
        batch_size: Images per batch (before the views multiply it).
        device: Where the batches go; defaults to the device of the model's parameters.
        precision: ``"fp32"``, ``"bf16"`` or ``"fp16"`` (autocast).

    Returns:
        (N, C) float32 log-probabilities on ``device``.

    Raises:
        InvalidArgumentError: An unknown or empty ``views``, and whatever
            :func:`~mnist_zoo.inference.batched.batched_logits` raises.
    """
    return batched_logits(
        TTAModel(model, views), images, batch_size=batch_size, device=device, precision=precision
    )
