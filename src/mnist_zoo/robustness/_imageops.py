"""Small numpy image operations the corruptions are built from, batched over (N, H, W) arrays.

They reproduce the SciPy, scikit-image and ImageMagick operations that MNIST-C calls, so the
package needs neither: a Gaussian filter as ``scipy.ndimage.gaussian_filter`` computes it,
bilinear affine warping as ``skimage.transform.warp`` does it, scikit-image's Canny edge
detector, ImageMagick's motion-blur kernel and the diamond-square plasma fractal of MNIST-C's
fog. Every function works on float arrays in [0, 1] unless it says otherwise.
"""

from __future__ import annotations

import functools

import numpy as np

# scipy.ndimage's boundary modes, by the name np.pad gives the same padding.
_PAD_MODES = {"nearest": "edge", "constant": "constant", "reflect": "symmetric"}


def _correlate_direct(x: np.ndarray, weights: np.ndarray, axis: int, mode: str) -> np.ndarray:
    """Correlate ``x`` with an odd-length kernel along ``axis`` (scipy.ndimage.correlate1d)."""
    radius = len(weights) // 2
    pad = [(0, 0)] * x.ndim
    pad[axis] = (radius, radius)
    padded = np.pad(x, pad, mode=_PAD_MODES[mode])
    size = x.shape[axis]
    out = np.zeros(x.shape)
    for k, weight in enumerate(weights):
        out += weight * padded.take(np.arange(k, k + size), axis=axis)
    return out


def filter_matrix(weights: np.ndarray, size: int, mode: str) -> np.ndarray:
    """The (size, size) matrix K of a 1-D correlation: ``K @ signal`` filters a signal.

    Correlating with a fixed kernel and boundary mode is linear, so its matrix is its response
    to each unit impulse; applying it is then one matrix product per image, far faster than
    shifting and adding for 28-pixel signals.
    """
    return _correlate_direct(np.eye(size), weights, 0, mode)


def correlate1d(x: np.ndarray, weights: np.ndarray, axis: int, mode: str) -> np.ndarray:
    """Correlate (N, H, W) images with an odd-length kernel along spatial ``axis`` (1 or 2).

    The same numbers as ``scipy.ndimage.correlate1d(x, weights, axis, mode=mode)`` up to float
    rounding; ``mode`` is "nearest", "constant" (zeros) or "reflect".
    """
    matrix = filter_matrix(weights, x.shape[axis], mode)
    return matrix @ x if axis == 1 else x @ matrix.T


def gaussian_filter(x: np.ndarray, sigma: tuple[float, float], mode: str) -> np.ndarray:
    """Gaussian blur of (N, H, W) images: ``sigma`` is (rows, columns); 0 leaves an axis alone.

    The kernel is SciPy's: truncated at 4 standard deviations (radius ``int(4 * sigma +
    0.5)``) and normalised to sum 1.
    """
    out = x
    for axis, s in zip((1, 2), sigma, strict=True):
        if s <= 0:
            continue
        radius = int(4.0 * s + 0.5)
        taps = np.arange(-radius, radius + 1, dtype=np.float64)
        kernel = np.exp(-0.5 * taps**2 / s**2)
        out = correlate1d(out, kernel / kernel.sum(), axis, mode)
    return out


def sobel(x: np.ndarray, axis: int) -> np.ndarray:
    """scipy.ndimage.sobel of (N, H, W) images along spatial ``axis`` (1 or 2), reflect mode."""
    derivative = correlate1d(x, np.array([-1.0, 0.0, 1.0]), axis, "reflect")
    return correlate1d(derivative, np.array([1.0, 2.0, 1.0]), 3 - axis, "reflect")


def _groups(keys: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Split rows of ``keys`` (N, K) into groups of equal rows: (the row, member indices)."""
    unique, inverse = np.unique(keys, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    order = np.argsort(inverse, kind="stable")
    bounds = np.cumsum(np.bincount(inverse, minlength=len(unique)))[:-1]
    return list(zip(unique, np.split(order, bounds), strict=True))


def bilinear_sample(x: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Sample images (N, H, W) at the float positions (H, W) shared by all; zero outside.

    This is scikit-image's order-1 interpolation with ``mode="constant", cval=0``: each of
    the four neighbours that lies outside the image counts as 0.
    """
    h, w = x.shape[1:]
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1)))  # a zero frame: out-of-range reads land on it
    r0 = np.floor(rows)
    c0 = np.floor(cols)
    dr = rows - r0
    dc = cols - c0
    r0 = r0.astype(np.int64)
    c0 = c0.astype(np.int64)

    def at(r: np.ndarray, c: np.ndarray) -> np.ndarray:
        return padded[:, np.clip(r, -1, h) + 1, np.clip(c, -1, w) + 1]

    top = (1 - dc) * at(r0, c0) + dc * at(r0, c0 + 1)
    bottom = (1 - dc) * at(r0 + 1, c0) + dc * at(r0 + 1, c0 + 1)
    return (1 - dr) * top + dr * bottom


def warp_affine(x: np.ndarray, linear: np.ndarray, translation: np.ndarray) -> np.ndarray:
    """Warp images by per-image inverse maps, as ``skimage.transform.warp(x, inverse_map=A)``.

    Output pixel (row r, column c) takes the input at ``linear @ (c, r) + translation``
    (scikit-image's (x, y) = (column, row) order), bilinearly interpolated, zero outside.
    Images sharing a map are warped together (the corruptions draw from a few maps).

    Args:
        x: (N, H, W) images.
        linear: (N, 2, 2) matrices.
        translation: (N, 2) offsets.

    Returns:
        The warped (N, H, W) images.
    """
    h, w = x.shape[1:]
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float64)
    out = np.empty(x.shape)
    params = np.concatenate([linear.reshape(-1, 4), translation], axis=1)
    for (a, b, c, d, tx, ty), members in _groups(params):
        out[members] = bilinear_sample(
            x[members], c * cols + d * rows + ty, a * cols + b * rows + tx
        )
    return out


def motion_blur(x: np.ndarray, angles: np.ndarray, radius: float, sigma: float) -> np.ndarray:
    """ImageMagick's ``MotionBlurImage`` for each image, at its angle in degrees.

    ImageMagick convolves with a one-sided Gaussian of ``2 * ceil(radius) + 1`` taps: tap j
    has weight ``exp(-j**2 / (2 sigma**2))`` (normalised) and reads the pixel j steps along the
    angle, rounded to whole pixels; pixels beyond the border repeat the edge. Images whose
    angles round to the same pixel offsets are blurred together.
    """
    taps = np.arange(2 * int(np.ceil(radius)) + 1)
    weights = np.exp(-(taps.astype(np.float64) ** 2) / (2.0 * sigma**2))
    weights /= weights.sum()
    theta = np.deg2rad(angles)[:, None]
    dx = np.ceil(taps * np.cos(theta) - 0.5).astype(np.int64)  # (N, taps)
    dy = np.ceil(taps * np.sin(theta) - 0.5).astype(np.int64)
    pad = int(taps[-1])
    padded = np.pad(x, ((0, 0), (pad, pad), (pad, pad)), mode="edge")
    h, w = x.shape[1:]
    out = np.empty(x.shape)
    for offsets, members in _groups(np.concatenate([dy, dx], axis=1)):
        group = padded[members]
        total = np.zeros((len(members), h, w))
        for weight, oy, ox in zip(weights, offsets[: len(taps)], offsets[len(taps) :], strict=True):
            total += weight * group[:, pad + oy : pad + oy + h, pad + ox : pad + ox + w]
        out[members] = total
    return out


def _plasma_level(
    rng: np.random.Generator, grid: np.ndarray, wibble: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One diamond-square step: the square centres and the two sets of diamond points."""

    def noisy_mean(total: np.ndarray) -> np.ndarray:
        noise = rng.random(total.shape, dtype=np.float32)
        return total / 4 + (2 * noise - 1) * (wibble * wibble)

    right = np.roll(grid, -1, axis=2)
    centres = grid + np.roll(grid, -1, axis=1)
    centres = noisy_mean(centres + np.roll(centres, -1, axis=2))
    across = noisy_mean(centres + np.roll(centres, 1, axis=1) + grid + right)
    down = noisy_mean(centres + np.roll(centres, 1, axis=2) + grid + np.roll(grid, -1, axis=1))
    return centres, across, down


def _interleave(
    grid: np.ndarray, centres: np.ndarray, across: np.ndarray, down: np.ndarray
) -> np.ndarray:
    n, size, _ = grid.shape
    out = np.empty((n, 2 * size, 2 * size), dtype=grid.dtype)
    out[:, 0::2, 0::2] = grid
    out[:, 1::2, 1::2] = centres
    out[:, 0::2, 1::2] = across
    out[:, 1::2, 0::2] = down
    return out


def plasma_fractal(
    rng: np.random.Generator, count: int, decay: float, crop: int, mapsize: int = 256
) -> np.ndarray:
    """The top-left ``crop`` x ``crop`` corner of ``count`` diamond-square height maps.

    As MNIST-C's ``plasma_fractal``: a toroidal ``mapsize`` x ``mapsize`` map, the noise
    amplitude starting at 100**2 and its square root divided by ``decay`` at each level, the
    whole map scaled to [0, 1] by its own minimum and maximum; only the corner is returned.
    The finest level is never assembled into a full map: its minimum and maximum are taken
    from its four parts, which is what makes a 256 x 256 map per image affordable.
    """
    grid = np.zeros((count, 1, 1), dtype=np.float32)
    wibble = 100.0
    while 2 * grid.shape[1] < mapsize:
        grid = _interleave(grid, *_plasma_level(rng, grid, wibble))
        wibble /= decay
    parts = (grid, *_plasma_level(rng, grid, wibble))
    low = np.min([p.min(axis=(1, 2)) for p in parts], axis=0)[:, None, None]
    high = np.max([p.max(axis=(1, 2)) for p in parts], axis=0)[:, None, None]
    half = (crop + 1) // 2
    corner = _interleave(*(p[:, :half, :half] for p in parts))[:, :crop, :crop]
    return ((corner - low) / (high - low)).astype(np.float64)


def line_from_points(c0: float, r0: float, c1: float, r1: float, size: int = 28) -> np.ndarray:
    """MNIST-C's anti-aliased line from column ``c0`` to ``c1`` through rows ``r0`` and ``r1``.

    Ink falls off with the vertical distance d to the line as ``log(1 - d / 2.3) + 1`` (none
    beyond d = 2.3) and is cut at the columns ``floor(c0)`` and ``ceil(c1)``.
    """
    if c1 == c0:
        return np.zeros((size, size))
    cols = np.arange(size, dtype=np.float64)[None, :]
    rows = np.arange(size, dtype=np.float64)[:, None]
    slope = (r1 - r0) / (c1 - c0)
    distance = np.clip(np.abs(rows - (slope * (cols - c0) + r0)), 0, 2.3 - 1e-10)
    ink = np.clip(np.log(1 - distance / 2.3) + 1, 0, 1)
    # Python slice semantics on purpose, as in MNIST-C (a negative bound counts from the end).
    ink[:, : int(np.floor(c0))] = 0
    ink[:, int(np.ceil(c1)) :] = 0
    return ink


@functools.lru_cache(maxsize=1024)
def dotted_line_ink(r0: int, r1: int) -> np.ndarray:
    """MNIST-C's dotted line from (column 0, row r0) to (column 27, row r1): 2-pixel dashes."""
    ink = line_from_points(0, r0, 27, r1)
    for start in range(0, 28, 4):  # dashes: columns 2-3, 6-7, ... keep their ink
        ink[:, start : start + 2] = 0
    ink.flags.writeable = False
    return ink


@functools.lru_cache(maxsize=1024)
def zigzag_ink(r0: int, rise: int) -> np.ndarray:
    """MNIST-C's zigzag from (column 2, row r0) towards (column 25, row r0 + rise)."""
    length = step = 2.0  # each tooth: 2 pixels along the line, 2 pixels off it
    c0, c1 = 2, 25
    theta = np.arctan(rise / (c1 - c0))
    d = (c1 - c0) / np.cos(theta)
    points = [(0.0, 0.0)]
    for i in range(int((d - length) // (2 * length)) + 1):
        points.append(((2 * i + 1) * length, (-1) ** i * step))
    last_full = (2 * length) * (d // (2 * length))
    if d != last_full:  # MNIST-C's closing point, quirk included
        points.append((d, points[-1][1] / (2 * (d - last_full))))
    rotation = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    cs, rs = rotation @ np.array(points).T
    cs, rs = cs + c0, rs + r0
    ink = sum(line_from_points(cs[i - 1], rs[i - 1], cs[i], rs[i]) for i in range(1, len(cs)))
    ink.flags.writeable = False
    return ink


def _dilate(mask: np.ndarray) -> np.ndarray:
    """3x3 binary dilation of (N, H, W) masks."""
    padded = np.pad(mask, ((0, 0), (1, 1), (1, 1)))
    h, w = mask.shape[1:]
    out = np.zeros_like(mask)
    for dr in range(3):
        for dc in range(3):
            out |= padded[:, dr : dr + h, dc : dc + w]
    return out


def _non_maximum(magnitude: np.ndarray, gi: np.ndarray, gj: np.ndarray) -> np.ndarray:
    """scikit-image's interpolated non-maximum suppression over four direction sectors.

    Works on flat indices into zero-padded copies, and only at the candidate points (inside
    the 1-pixel border, non-zero gradient), as scikit-image does.
    """
    n, h, w = magnitude.shape
    stride = w + 2

    def flat(a: np.ndarray) -> np.ndarray:
        return np.pad(a, ((0, 0), (1, 1), (1, 1))).ravel()

    mag = flat(magnitude)
    interior = np.zeros((n, h + 2, w + 2), dtype=bool)
    interior[:, 2:-2, 2:-2] = True  # the image border is never an edge (scikit-image's mask)
    idx = np.flatnonzero(interior.ravel() & (mag > 0))
    m, i, j = mag[idx], flat(gi)[idx], flat(gj)[idx]
    ai, aj = np.abs(i), np.abs(j)
    same = ((i >= 0) & (j >= 0)) | ((i <= 0) & (j <= 0))
    opposite = ((i <= 0) & (j >= 0)) | ((i >= 0) & (j <= 0))
    # (sector, numerator, denominator, near +, diagonal +, near -, diagonal -), in
    # scikit-image's order: a point on a sector boundary keeps the later sector's answer.
    sectors = (
        (same & (ai >= aj), aj, ai, (1, 0), (1, 1), (-1, 0), (-1, -1)),
        (same & (ai <= aj), ai, aj, (0, 1), (1, 1), (0, -1), (-1, -1)),
        (opposite & (ai <= aj), ai, aj, (0, 1), (-1, 1), (0, -1), (1, -1)),
        (opposite & (ai >= aj), aj, ai, (-1, 0), (-1, 1), (1, 0), (1, -1)),
    )
    maxima = np.zeros(len(idx), dtype=bool)
    for sector, num, den, near_p, diag_p, near_m, diag_m in sectors:
        sel = np.flatnonzero(sector)
        k, weight, here = idx[sel], num[sel] / den[sel], m[sel]

        def at(offset: tuple[int, int], k: np.ndarray = k) -> np.ndarray:
            return mag[k + offset[0] * stride + offset[1]]

        plus = at(diag_p) * weight + at(near_p) * (1 - weight) <= here
        minus = at(diag_m) * weight + at(near_m) * (1 - weight) <= here
        maxima[sel] = plus & minus
    out = np.zeros(mag.shape, dtype=bool)
    out[idx] = maxima
    return out.reshape(n, h + 2, w + 2)[:, 1:-1, 1:-1]


def canny(x: np.ndarray, sigma: float = 1.0, low: float = 0.1, high: float = 0.2) -> np.ndarray:
    """Canny edges of (N, H, W) images in [0, 1], as ``skimage.feature.canny`` finds them.

    Gaussian smoothing with zero padding renormalised at the border, Sobel gradients,
    interpolated non-maximum suppression, and hysteresis: weak edges (magnitude >= ``low``)
    are kept when 8-connected to a strong one (>= ``high``).

    Returns:
        A boolean (N, H, W) edge map.
    """
    bleed = gaussian_filter(np.ones((1, *x.shape[1:])), (sigma, sigma), "constant")
    smoothed = gaussian_filter(x, (sigma, sigma), "constant") / (bleed + np.finfo(float).eps)
    gj = sobel(smoothed, axis=2)
    gi = sobel(smoothed, axis=1)
    magnitude = np.hypot(gi, gj)
    maxima = _non_maximum(magnitude, gi, gj)
    weak = maxima & (magnitude >= low)
    edges = maxima & (magnitude >= high)
    while True:  # grow the strong edges through the weak ones: their connected components
        grown = _dilate(edges) & weak
        if np.array_equal(grown, edges):
            return edges
        edges = grown
