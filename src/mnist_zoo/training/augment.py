"""Batch-wise data augmentation: geometry (:class:`RandomAffine`, optionally elastic) and
appearance (:class:`RandomAppearance`: stroke width, contrast, background level, pixel noise,
random erasing), each drawn per image and applied to the whole batch in a few tensor operations.

Every random number comes from the generator passed in, drawn for the whole global batch, so
the augmentation depends on the seed alone (a resumed run and N processes replay it exactly).
A setting at 0 draws nothing: the base recipe's stream of random numbers is the one v0.1 used.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import InvalidArgumentError

__all__ = ["Augmentation", "RandomAffine", "RandomAppearance", "compose"]


@dataclass(frozen=True)
class RandomAffine:
    """Batch-wise random affine augmentation: one ``affine_grid``/``grid_sample`` per batch.

    Each image gets its own rotation in [-degrees, degrees], scale in ``scale`` and shift of up
    to ``translate`` of the image size. Works on float images in [0, 1]; the background that
    comes in from outside the frame is 0, MNIST's black. With ``elastic`` > 0, a smooth random
    displacement field (Simard et al., 2003: random offsets on a coarse grid, interpolated) is
    added to the same sampling grid, so that the warp is still one ``grid_sample``.

    Args:
        degrees: The largest rotation, either way, in degrees.
        scale: The range of the zoom factor (low, high); a list is stored as a tuple.
        translate: The largest shift, either way along each axis, as a fraction of the size.
        elastic: The largest elastic displacement of a pixel, in pixels; 0 for none.

    Raises:
        InvalidArgumentError: A negative or non-finite setting, or a scale range that is not
            two positive numbers in order.
    """

    degrees: float = 12.0
    scale: tuple[float, float] = (0.9, 1.1)
    translate: float = 0.1
    elastic: float = 0.0

    def __post_init__(self) -> None:
        # A recipe read back from config.json has its scale as a list.
        object.__setattr__(self, "scale", tuple(self.scale))
        for name in ("degrees", "translate", "elastic"):
            _check_setting(self, name, math.inf)
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
        r = _share_of(torch.rand, generator, share, n, 4)
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
        if self.elastic > 0:
            grid = grid + self._displacement(x, generator, share)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    def _displacement(
        self, x: torch.Tensor, generator: torch.Generator, share: tuple[int, int]
    ) -> torch.Tensor:
        """A smooth random field (N, H, W, 2) in ``affine_grid``'s [-1, 1] coordinates."""
        n, _, h, w = x.shape
        coarse = _share_of(torch.rand, generator, share, n, 2, _ELASTIC_GRID, _ELASTIC_GRID)
        coarse = (2 * coarse - 1).to(x.device, x.dtype)
        field = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=True)
        # A displacement of d pixels is 2d / size in normalised coordinates.
        scale = torch.tensor([2 * self.elastic / w, 2 * self.elastic / h], device=x.device)
        return field.permute(0, 2, 3, 1) * scale.to(x.dtype)


#: Nodes per side of the coarse grid the elastic field is drawn on: 4 x 4 gives stroke-scale
#: wobbles on a 28 x 28 digit without tearing it.
_ELASTIC_GRID = 4


@dataclass(frozen=True)
class RandomAppearance:
    """Batch-wise random appearance: stroke width, contrast, background level, pixel noise and
    random erasing.

    Each of the first four changes is applied to an image with probability ``p``, independently,
    with its strength drawn uniformly up to its setting:

    - stroke: blend by ``t`` in [-stroke, stroke] towards the 3 x 3 dilation (thicker, t > 0)
      or erosion (thinner, t < 0) of the digit;
    - contrast: multiply by ``a`` in [1 - contrast, 1];
    - background: add ``b`` in [0, background] to every pixel (a grey page instead of black);
    - noise: add Gaussian noise of standard deviation up to ``noise``.

    Then, with probability ``erase``, random erasing (Zhong et al., 2017; timm's
    ``RandomErasing``): a rectangle covering 2-33 % of the image, aspect ratio 0.3-3.3, is
    filled with one grey level drawn in [0, 1], so that the model learns to read a digit with
    part of it hidden or a bar across it.

    The result is clipped to [0, 1]. A setting at 0 turns its change off and draws no random
    number for it.

    Args:
        stroke: The largest blend towards a thicker or thinner stroke, in [0, 1].
        contrast: The largest contrast reduction, in [0, 1).
        background: The largest background level, in [0, 1).
        noise: The largest noise standard deviation, >= 0.
        p: The probability that an image gets each of the first four changes, in [0, 1].
        erase: The probability that an image gets a rectangle erased, in [0, 1].

    Raises:
        InvalidArgumentError: A setting that is not a finite number in its range.
    """

    stroke: float = 0.0
    contrast: float = 0.0
    background: float = 0.0
    noise: float = 0.0
    p: float = 0.5
    erase: float = 0.0

    def __post_init__(self) -> None:
        for name, high in (("stroke", 1.0), ("contrast", 0.999), ("background", 0.999),
                           ("noise", math.inf), ("p", 1.0), ("erase", 1.0)):  # fmt: skip
            _check_setting(self, name, high)

    def __call__(
        self, x: torch.Tensor, generator: torch.Generator, *, share: tuple[int, int] = (0, 1)
    ) -> torch.Tensor:
        """Augment a batch.

        Args:
            x: Float images (N, C, H, W) in [0, 1], on any device.
            generator: The CPU generator the random numbers come from.
            share: ``(index, count)``: ``x`` is the ``index``-th of ``count`` equal parts of a
                global batch (see :meth:`RandomAffine.__call__`).

        Returns:
            The changed images, same shape, dtype and device, in [0, 1].
        """
        n = x.shape[0]
        r = _share_of(torch.rand, generator, share, n, 8).to(x.device, x.dtype)
        on = (r[:, 4:] < self.p).to(x.dtype)
        per_image = (n, 1, 1, 1)
        if self.stroke > 0:
            t = ((2 * r[:, 0] - 1) * self.stroke * on[:, 0]).view(per_image)
            thick = F.max_pool2d(x, 3, 1, 1)
            thin = -F.max_pool2d(-x, 3, 1, 1)
            x = torch.where(t > 0, x + t * (thick - x), x - t * (thin - x))
        contrast = 1 - r[:, 1] * self.contrast * on[:, 1]
        level = r[:, 2] * self.background * on[:, 2]
        x = x * contrast.view(per_image) + level.view(per_image)
        if self.noise > 0:
            noise = _share_of(torch.randn, generator, share, n, *x.shape[1:])
            sd = (r[:, 3] * self.noise * on[:, 3]).view(per_image)
            x = x + sd * noise.to(x.device, x.dtype)
        if self.erase > 0:
            x = _erase(x, _share_of(torch.rand, generator, share, n, 6), self.erase)
        return x.clamp(0, 1)


#: Random erasing's ranges: the fraction of the image a rectangle covers, and its aspect
#: ratio (height / width, drawn on a log scale), as in Zhong et al. (2017).
_ERASE_AREA = (0.02, 1 / 3)
_ERASE_ASPECT = (0.3, 1 / 0.3)


def _erase(x: torch.Tensor, r: torch.Tensor, p: float) -> torch.Tensor:
    """Fill one random rectangle per chosen image with a random grey level.

    ``r`` holds six uniform numbers per image: on/off, area, aspect, top, left, fill value.
    The rectangle is a mask built by comparing coordinates, so the batch needs no loop.
    """
    r = r.to(x.device, x.dtype)
    n, _, h, w = x.shape
    area = (_ERASE_AREA[0] + r[:, 1] * (_ERASE_AREA[1] - _ERASE_AREA[0])) * h * w
    log_low, log_high = math.log(_ERASE_ASPECT[0]), math.log(_ERASE_ASPECT[1])
    aspect = torch.exp(log_low + r[:, 2] * (log_high - log_low))
    eh = torch.sqrt(area * aspect).round().clamp(1, h)
    ew = torch.sqrt(area / aspect).round().clamp(1, w)
    top = (r[:, 3] * (h - eh + 1)).floor()
    left = (r[:, 4] * (w - ew + 1)).floor()
    rows = torch.arange(h, device=x.device, dtype=x.dtype).view(1, h, 1)
    cols = torch.arange(w, device=x.device, dtype=x.dtype).view(1, 1, w)
    inside = (
        (rows >= top.view(n, 1, 1))
        & (rows < (top + eh).view(n, 1, 1))
        & (cols >= left.view(n, 1, 1))
        & (cols < (left + ew).view(n, 1, 1))
        & (r[:, 0] < p).view(n, 1, 1)
    ).unsqueeze(1)
    return torch.where(inside, r[:, 5].view(n, 1, 1, 1), x)


#: What :func:`compose` returns: one augmentation or a chain of them, called the same way.
Augmentation = Callable[..., torch.Tensor]


def compose(*steps: Augmentation | None) -> Augmentation | None:
    """Chain augmentations, skipping ``None``; one step is returned as it is.

    Args:
        steps: Augmentations called as ``step(x, generator, share=...)``, in order.

    Returns:
        ``None`` for no step, the step itself for one, else a function applying them in turn
        with the same generator (so the stream of random numbers is fixed by their order).
    """
    chosen = [s for s in steps if s is not None]
    if len(chosen) <= 1:
        return chosen[0] if chosen else None

    def chain(
        x: torch.Tensor, generator: torch.Generator, *, share: tuple[int, int] = (0, 1)
    ) -> torch.Tensor:
        for step in chosen:
            x = step(x, generator, share=share)
        return x

    return chain


def _share_of(
    draw: Callable[..., torch.Tensor],
    generator: torch.Generator,
    share: tuple[int, int],
    n: int,
    *shape: int,
) -> torch.Tensor:
    """This part's rows of random numbers drawn for the whole global batch (see ``share``)."""
    index, count = share
    return draw((n * count, *shape), generator=generator)[index * n : (index + 1) * n]


def _check_setting(owner: object, name: str, high: float) -> None:
    """Refuse a setting of ``owner`` that is not a finite number in [0, high]."""
    value = getattr(owner, name)
    if not _is_real(value) or not math.isfinite(value) or not 0 <= value <= high:
        bound = "" if high == math.inf else f" and <= {high:g}"
        raise InvalidArgumentError(
            f"{type(owner).__name__} {name} must be a finite number >= 0{bound}, got {value!r}."
        )


def _is_real(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
