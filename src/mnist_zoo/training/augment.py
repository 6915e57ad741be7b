"""Batch-wise data augmentation: one random affine warp per image, one kernel call per batch."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import InvalidArgumentError

__all__ = ["RandomAffine"]


@dataclass(frozen=True)
class RandomAffine:
    """Batch-wise random affine augmentation: one ``affine_grid``/``grid_sample`` per batch.

    Each image gets its own rotation in [-degrees, degrees], scale in ``scale`` and shift of up
    to ``translate`` of the image size. Works on float images in [0, 1]; the background that
    comes in from outside the frame is 0, MNIST's black.

    Args:
        degrees: The largest rotation, either way, in degrees.
        scale: The range of the zoom factor (low, high); a list is stored as a tuple.
        translate: The largest shift, either way along each axis, as a fraction of the size.

    Raises:
        InvalidArgumentError: A negative or non-finite setting, or a scale range that is not
            two positive numbers in order.
    """

    degrees: float = 12.0
    scale: tuple[float, float] = (0.9, 1.1)
    translate: float = 0.1

    def __post_init__(self) -> None:
        # A recipe read back from config.json has its scale as a list.
        object.__setattr__(self, "scale", tuple(self.scale))
        for name in ("degrees", "translate"):
            value = getattr(self, name)
            if not _is_real(value) or not math.isfinite(value) or value < 0:
                raise InvalidArgumentError(
                    f"RandomAffine {name} must be a finite number >= 0, got {value!r}."
                )
        low_high = self.scale
        if (
            len(low_high) != 2
            or not all(_is_real(v) and math.isfinite(v) and v > 0 for v in low_high)
            or low_high[0] > low_high[1]
        ):
            raise InvalidArgumentError(
                f"RandomAffine scale must be (low, high) with 0 < low <= high, got {self.scale!r}."
            )

    def __call__(
        self, x: torch.Tensor, generator: torch.Generator, *, share: tuple[int, int] = (0, 1)
    ) -> torch.Tensor:
        """Augment a batch.

        Args:
            x: Float images (N, C, H, W) in [0, 1], on any device.
            generator: The CPU generator the random numbers come from, so that the
                augmentation depends on its seed only, whatever the device.
            share: ``(index, count)``: ``x`` is the ``index``-th of ``count`` equal parts of a
                global batch. The random numbers are drawn for the whole global batch and
                this part's are used, so that processes that each augment their part do
                exactly what one process would with the whole batch.

        Returns:
            The warped images, same shape, dtype and device.
        """
        n = x.shape[0]
        index, count = share
        r = torch.rand(n * count, 4, generator=generator)[index * n : (index + 1) * n]
        r = r.to(x.device)
        angle = (2 * r[:, 0] - 1) * math.radians(self.degrees)
        scale = self.scale[0] + r[:, 1] * (self.scale[1] - self.scale[0])
        # affine_grid maps output to input in [-1, 1] coordinates, so a shift of a fraction f
        # of the image is 2f there, and enlarging the digit by s means sampling at 1/s.
        shift = (2 * r[:, 2:] - 1) * (2 * self.translate)
        cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
        theta = torch.stack(
            [
                torch.stack([cos, -sin, shift[:, 0]], 1),
                torch.stack([sin, cos, shift[:, 1]], 1),
            ],
            1,
        ).to(x.dtype)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _is_real(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
