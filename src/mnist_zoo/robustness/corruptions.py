"""The 15 corruptions of MNIST-C (Mu & Gilmer, 2019), in numpy, at MNIST-C's severities.

Every corruption is a function ``corruption(images, rng) -> images``: it takes a batch of
MNIST images, uint8 of shape (N, 28, 28), and a :class:`numpy.random.Generator` for its random
choices, and returns a new uint8 batch of the same shape (rounded from MNIST-C's float result).
:data:`CORRUPTIONS` maps each name to its function, in MNIST-C's order, and :func:`corrupt`
runs one by name with a generator seeded from a base seed and the name, so a corruption always
draws the same numbers for the same seed:

```python
from mnist_zoo.robustness import CORRUPTIONS, corrupt
rotated = corrupt(images, "rotate", seed=0)             # the same bytes on every run
noisy = CORRUPTIONS["shot_noise"](images, np.random.default_rng(1))
```

A corruption's random draws are made for the whole batch at once, so image i of a batch is
corrupted the same way only when the batch is the same: corrupt a set in one call.
:func:`~mnist_zoo.robustness.suite.corrupt` and the suite live in
:mod:`~mnist_zoo.robustness.suite`.
docs/robustness.md says which corruptions reproduce MNIST-C exactly and which approximate it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

import numpy as np

from ..errors import InvalidArgumentError
from . import _imageops as ops

__all__ = [
    "CORRUPTIONS",
    "Corruption",
    "MNIST_C_SEVERITY",
    "brightness",
    "canny_edges",
    "dotted_line",
    "fog",
    "glass_blur",
    "impulse_noise",
    "motion_blur",
    "rotate",
    "scale",
    "shear",
    "shot_noise",
    "spatter",
    "stripe",
    "translate",
    "zigzag",
]

#: A corruption: uint8 images (N, 28, 28) and a random generator in, uint8 images out.
Corruption = Callable[[np.ndarray, np.random.Generator], np.ndarray]

_SIZE = 28
_CENTRE = (_SIZE - 1) / 2  # 13.5: geometric corruptions keep the image centre fixed
# Fog builds this many 256 x 256 fractals at a time. The draws are assigned chunk by chunk,
# so the chunk size is part of the corruption's definition and must not change.
_FOG_CHUNK = 16


def _to_float(images: np.ndarray) -> np.ndarray:
    """Check a batch and scale it to float64 in [0, 1], as MNIST-C's ``np.array(x) / 255.``."""
    if not isinstance(images, np.ndarray):
        raise TypeError(f"images must be a numpy array, got {type(images).__name__}.")
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (_SIZE, _SIZE):
        raise InvalidArgumentError(
            f"images must be uint8 of shape (N, {_SIZE}, {_SIZE}), "
            f"got {images.dtype} of shape {images.shape}."
        )
    return images / 255.0


def _to_uint8(x: np.ndarray) -> np.ndarray:
    """[0, 1] floats to uint8 pixels, rounded to nearest."""
    return np.rint(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)


def _signs(rng: np.random.Generator, shape: int | tuple[int, ...]) -> np.ndarray:
    """Random -1/+1, as MNIST-C's ``np.random.choice([-1, 1])``."""
    return np.where(rng.random(shape) < 0.5, -1.0, 1.0)


def shot_noise(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Poisson (shot) noise: each pixel becomes ``Poisson(3 x) / 3`` (MNIST-C severity 5).

    Args:
        images: uint8 (N, 28, 28).
        rng: Source of the Poisson draws.

    Returns:
        The corrupted uint8 (N, 28, 28) images.
    """
    x = _to_float(images)
    return _to_uint8(rng.poisson(x * 3.0) / 3.0)


def impulse_noise(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Salt-and-pepper noise: each pixel is replaced with probability 0.17 (severity 4) by
    white or black, each with probability one half (scikit-image's ``random_noise("s&p")``).

    Args:
        images: uint8 (N, 28, 28).
        rng: Source of the per-pixel choices.

    Returns:
        The corrupted uint8 (N, 28, 28) images.
    """
    x = _to_float(images)
    flipped = rng.random(x.shape) < 0.17
    salted = rng.random(x.shape) < 0.5
    x[flipped & salted] = 1.0
    x[flipped & ~salted] = 0.0
    return _to_uint8(x)


def glass_blur(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Glass blur (severity 1): blur, locally shuffle pixels twice, blur again.

    MNIST-C blurs with sigma 0.7 through scikit-image's ``gaussian(..., multichannel=True)``
    on a 2-D image, which takes the columns for channels and so blurs along the rows axis only
    (vertically); this keeps that. Between the blurs the image is truncated to uint8, and twice
    every pixel from (27, 27) back to (2, 2) is swapped, with probability one half, with its
    neighbour at an offset of -1 or 0 in each axis.

    Args:
        images: uint8 (N, 28, 28).
        rng: Source of the swaps.

    Returns:
        The corrupted uint8 (N, 28, 28) images.
    """
    x = _to_float(images)
    x = (ops.gaussian_filter(x, (0.7, 0.0), "nearest") * 255).astype(np.uint8)
    batch = np.arange(len(x))
    for _ in range(2):
        for h in range(_SIZE - 1, 1, -1):
            for w in range(_SIZE - 1, 1, -1):
                swap = batch[rng.random(len(x)) < 0.5]
                dx, dy = rng.integers(-1, 1, size=(2, len(swap)))
                here = x[swap, h, w]
                x[swap, h, w] = x[swap, h + dy, w + dx]
                x[swap, h + dy, w + dx] = here
    return _to_uint8(ops.gaussian_filter(x / 255.0, (0.7, 0.0), "nearest"))


def motion_blur(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Motion blur (severity 1): ImageMagick's motion blur, radius 10, sigma 3, at an angle
    drawn uniformly from [-45, 45] degrees per image.

    MNIST-C calls ImageMagick; this reimplements its kernel (21 one-sided Gaussian taps along
    the angle, edge pixels repeated) in numpy.

    Args:
        images: uint8 (N, 28, 28).
        rng: Source of the angles.

    Returns:
        The corrupted uint8 (N, 28, 28) images.
    """
    x = _to_float(images)
    angles = rng.uniform(-45.0, 45.0, size=len(x))
    return _to_uint8(ops.motion_blur(x, angles, radius=10.0, sigma=3.0))


def _centred_warp(x: np.ndarray, linear: np.ndarray) -> np.ndarray:
    """Warp by inverse maps ``linear`` (N, 2, 2), translated so the centre stays put."""
    translation = _CENTRE * (1.0 - linear.sum(axis=2))
    return ops.warp_affine(x, linear, translation)


def shear(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Horizontal shear by an angle of 0.4 rad (severity 2), direction random per image.

    scikit-image's ``AffineTransform(shear=s)`` of 2019, ``[[1, -sin s], [0, cos s]]``, as the
    inverse map: the pixel at row r reads the input ``-sin(s) (r - 13.5)`` columns away, the
    rows scaled by ``cos(s)``. (Current scikit-image defines ``shear`` differently.)

    Args:
        images: uint8 (N, 28, 28).
        rng: Source of the directions.

    Returns:
        The corrupted uint8 (N, 28, 28) images.
    """
    x = _to_float(images)
    s = 0.4 * _signs(rng, len(x))
    zero = np.zeros_like(s)
    linear = np.stack(
        [np.stack([np.ones_like(s), -np.sin(s)], 1), np.stack([zero, np.cos(s)], 1)], 1
    )
    return _to_uint8(_centred_warp(x, linear))


def scale(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Shrink the digit to 70 % about the image centre (severity 3: inverse map scale 1/0.7).

    Args:
        images: uint8 (N, 28, 28).
        rng: Unused: the corruption is deterministic (kept for the common signature).

    Returns:
        The corrupted uint8 (N, 28, 28) images.
    """
    x = _to_float(images)
    linear = np.broadcast_to(np.eye(2) / 0.7, (len(x), 2, 2))
    return _to_uint8(_centred_warp(x, linear))


def rotate(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rotate by 0.4 rad (about 23 degrees, severity 2) about the centre, direction random.

    Args:
        images: uint8 (N, 28, 28).
        rng: Source of the directions.

    Returns:
        The corrupted uint8 (N, 28, 28) images.
    """
    x = _to_float(images)
    a = 0.4 * _signs(rng, len(x))
    cos, sin = np.cos(a), np.sin(a)
    linear = np.stack([np.stack([cos, -sin], 1), np.stack([sin, cos], 1)], 1)
    return _to_uint8(_centred_warp(x, linear))


def brightness(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Raise the HSV value by 0.5 (severity 5); for grey images that is ``min(x + 0.5, 1)``.

    MNIST-C goes grey -> RGB -> HSV -> RGB -> grey with scikit-image; for a grey pixel the
    value channel is the pixel itself and the round trip is the identity, so the shortcut is
    exact (up to the last bit of float rounding).

    Args:
        images: uint8 (N, 28, 28).
        rng: Unused: the corruption is deterministic (kept for the common signature).

    Returns:
        The corrupted uint8 (N, 28, 28) images.
    """
    return _to_uint8(_to_float(images) + 0.5)


def translate(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Shift by 3 pixels in each axis (severity 3), each direction random per image.

    Args:
        images: uint8 (N, 28, 28).
        rng: Source of the directions.

    Returns:
        The corrupted uint8 (N, 28, 28) images.
    """
    x = _to_float(images)
    shifts = 3.0 * _signs(rng, (len(x), 2))  # (dx, dy) of the inverse map
    linear = np.broadcast_to(np.eye(2), (len(x), 2, 2))
    return _to_uint8(ops.warp_affine(x, linear, shifts))


def stripe(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Invert the 7 leftmost and 7 rightmost columns.

    Args:
        images: uint8 (N, 28, 28).
        rng: Unused: the corruption is deterministic (kept for the common signature).

    Returns:
        The corrupted uint8 (N, 28, 28) images.
    """
    _to_float(images)
    out = images.copy()
    out[:, :, :7] = 255 - out[:, :, :7]
    out[:, :, 21:] = 255 - out[:, :, 21:]
    return out


def fog(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Fog (severity 5): add 3 x a plasma fractal (decay 1.4), then rescale by
    ``max / (max + 3)``, with ``max`` the image's brightest pixel.

    Each image gets its own 256 x 256 fractal, of which the top-left 28 x 28 corner is used,
    normalised by the whole map's range, as in MNIST-C.

    Args:
        images: uint8 (N, 28, 28).
        rng: Source of the fractals.

    Returns:
        The corrupted uint8 (N, 28, 28) images.
    """
    x = _to_float(images)
    plasma = np.zeros_like(x)
    for start in range(0, len(x), _FOG_CHUNK):
        count = min(_FOG_CHUNK, len(x) - start)
        plasma[start : start + count] = ops.plasma_fractal(rng, count, 1.4, _SIZE)
    brightest = x.max(axis=(1, 2), keepdims=True)
    return _to_uint8((x + 3.0 * plasma) * brightest / (brightest + 3.0))


def spatter(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Mud spatter (severity 4): blobs of grey (63/255) from thresholded, blurred noise.

    A layer of Gaussian noise (mean 0.65, sd 0.3) is blurred (sigma 1), thresholded at 0.65,
    the mask blurred (sigma 1.5) and cut below 0.8; the image is faded to grey under it.

    Args:
        images: uint8 (N, 28, 28).
        rng: Source of the noise.

    Returns:
        The corrupted uint8 (N, 28, 28) images.
    """
    x = _to_float(images)
    liquid = ops.gaussian_filter(rng.normal(0.65, 0.3, size=x.shape), (1.0, 1.0), "nearest")
    mask = ops.gaussian_filter((liquid > 0.65).astype(np.float64), (1.5, 1.5), "nearest")
    mask[mask < 0.8] = 0.0
    return _to_uint8(x * (1 - mask) + 63 / 255 * mask)


def dotted_line(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Add a dashed line across the image, from row r0 at the left to row r1 at the right
    (each drawn from 0-26), in 2-pixel dashes.

    Args:
        images: uint8 (N, 28, 28).
        rng: Source of the line ends.

    Returns:
        The corrupted uint8 (N, 28, 28) images.
    """
    x = _to_float(images)
    ends = rng.integers(0, 27, size=(len(x), 2))
    ink = np.stack([ops.dotted_line_ink(int(a), int(b)) for a, b in ends]) if len(x) else 0.0
    return _to_uint8(x + ink)


def zigzag(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Add a zigzag line from column 2 to 25, starting at a random row (0-26) and rising or
    falling by -5 to 4 rows.

    Args:
        images: uint8 (N, 28, 28).
        rng: Source of the start row and slope.

    Returns:
        The corrupted uint8 (N, 28, 28) images.
    """
    x = _to_float(images)
    starts = rng.integers(0, 27, size=len(x))
    rises = rng.integers(-5, 5, size=len(x))
    ink = (
        np.stack([ops.zigzag_ink(int(a), int(b)) for a, b in zip(starts, rises, strict=True)])
        if len(x)
        else 0.0
    )
    return _to_uint8(x + ink)


def canny_edges(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Replace each digit by its Canny edges (sigma 1, thresholds 0.1 and 0.2): 255 on an
    edge, 0 elsewhere.

    Args:
        images: uint8 (N, 28, 28).
        rng: Unused: the corruption is deterministic (kept for the common signature).

    Returns:
        The corrupted uint8 (N, 28, 28) images.
    """
    return ops.canny(_to_float(images)).astype(np.uint8) * np.uint8(255)


#: Every corruption by name, in MNIST-C's order.
CORRUPTIONS: Mapping[str, Corruption] = MappingProxyType(
    {
        "shot_noise": shot_noise,
        "impulse_noise": impulse_noise,
        "glass_blur": glass_blur,
        "motion_blur": motion_blur,
        "shear": shear,
        "scale": scale,
        "rotate": rotate,
        "brightness": brightness,
        "translate": translate,
        "stripe": stripe,
        "fog": fog,
        "spatter": spatter,
        "dotted_line": dotted_line,
        "zigzag": zigzag,
        "canny_edges": canny_edges,
    }
)

#: The severity level (1-5) of MNIST-C's code each corruption uses; None: it has no levels.
MNIST_C_SEVERITY: Mapping[str, int | None] = MappingProxyType(
    {
        "shot_noise": 5,
        "impulse_noise": 4,
        "glass_blur": 1,
        "motion_blur": 1,
        "shear": 2,
        "scale": 3,
        "rotate": 2,
        "brightness": 5,
        "translate": 3,
        "stripe": None,
        "fog": 5,
        "spatter": 4,
        "dotted_line": None,
        "zigzag": None,
        "canny_edges": None,
    }
)
