"""Draw the example digit pictures in this folder: ``python examples/images/make_images.py``.

Each digit is a few hand-placed polylines (in a unit box, y pointing down) that are jittered,
slanted, smoothed into Catmull-Rom curves and then inked by stamping round pen tips of varying
width along them, at 4x resolution and downsampled for antialiasing. The paper gets a little
noise and, for one picture, a grey tint with uneven lighting. Everything is seeded, so running
the script again writes identical files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

HERE = Path(__file__).resolve().parent
SUPERSAMPLE = 4

Stroke = list[tuple[float, float]]


def _eight() -> list[Stroke]:
    # A figure eight traced in one go, with a smaller top loop, as most people write it.
    t = np.linspace(0.1, 2 * np.pi + 0.35, 26)
    x = 0.3 - 0.36 * np.sin(2 * t) / 2 * np.where(np.sin(t) < 0, 1.7, 1.3)
    y = 0.5 + np.sin(t) * np.where(np.sin(t) < 0, 0.44, 0.5)
    return [list(zip(x, y, strict=True))]


def _zero() -> list[Stroke]:
    t = np.linspace(-0.6 * np.pi, 1.55 * np.pi, 14)
    return [list(zip(0.3 + 0.29 * np.cos(t), 0.5 + 0.5 * np.sin(t), strict=True))]


DIGITS: dict[str, list[Stroke]] = {
    "zero": _zero(),
    "eight": _eight(),
    "two": [
        [(0.04, 0.24), (0.14, 0.08), (0.33, 0.01), (0.5, 0.1), (0.54, 0.3), (0.44, 0.5),
         (0.24, 0.73), (0.03, 0.97), (0.3, 0.94), (0.62, 0.96)],
    ],
    "three": [
        [(0.04, 0.13), (0.24, 0.01), (0.48, 0.06), (0.55, 0.24), (0.41, 0.41), (0.2, 0.47),
         (0.41, 0.51), (0.59, 0.66), (0.55, 0.86), (0.34, 0.99), (0.12, 0.95), (0.01, 0.84)],
    ],
    "four": [
        [(0.4, 0.0), (0.21, 0.34), (0.02, 0.64), (0.34, 0.63), (0.64, 0.61)],
        [(0.5, 0.28), (0.48, 0.64), (0.46, 1.0)],
    ],
    "five": [
        [(0.14, 0.04), (0.11, 0.25), (0.09, 0.47), (0.3, 0.39), (0.5, 0.45), (0.6, 0.66),
         (0.51, 0.88), (0.3, 0.99), (0.03, 0.9)],
        [(0.13, 0.04), (0.35, 0.03), (0.58, 0.01)],
    ],
    "seven": [
        [(0.01, 0.06), (0.3, 0.03), (0.6, 0.02), (0.46, 0.3), (0.33, 0.62), (0.23, 1.0)],
    ],
}  # fmt: skip


@dataclass(frozen=True)
class Picture:
    """How to draw one example: which digit, on what paper, with what pen."""

    file: str
    digit: str
    size: tuple[int, int]  # (width, height)
    height: float  # digit height as a fraction of the picture's height
    centre: tuple[float, float]  # where the digit goes, as fractions of (width, height)
    pen: float  # mean pen width in pixels
    slant: float  # horizontal shear: x moves right by slant * (distance above the baseline)
    paper: int = 247
    ink: tuple[int, int, int] = (28, 28, 36)
    seed: int = 0


PICTURES = [
    Picture("zero.png", "zero", (160, 200), 0.62, (0.38, 0.45), 9.0, 0.18, seed=1),
    Picture("two.png", "two", (240, 150), 0.7, (0.62, 0.55), 8.0, 0.2, seed=2),
    Picture("three.png", "three", (200, 200), 0.6, (0.4, 0.6), 10.0, 0.15, seed=3),
    Picture("four.png", "four", (180, 260), 0.5, (0.55, 0.4), 11.0, 0.1, seed=4),
    Picture("five_grey.png", "five", (220, 180), 0.66, (0.45, 0.5), 9.0, 0.22, 196, seed=5),
    Picture("seven_thin.png", "seven", (150, 230), 0.58, (0.45, 0.55), 2.2, 0.2, seed=6),
    Picture("eight.png", "eight", (190, 170), 0.74, (0.58, 0.48), 9.0, 0.12, seed=7),
]


def catmull_rom(points: np.ndarray, samples: int = 16) -> np.ndarray:
    """A smooth curve through ``points`` (K, 2), ends included."""
    padded = np.vstack([2 * points[0] - points[1], points, 2 * points[-1] - points[-2]])
    t = np.linspace(0, 1, samples, endpoint=False)[:, None]
    curve = []
    for p0, p1, p2, p3 in zip(padded, padded[1:], padded[2:], padded[3:], strict=False):
        curve.append(
            0.5
            * (
                2 * p1
                + (p2 - p0) * t
                + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2
                + (3 * p1 - p0 - 3 * p2 + p3) * t**3
            )
        )
    return np.vstack([*curve, points[-1:]])


def resample(curve: np.ndarray, spacing: float) -> np.ndarray:
    """Points every ``spacing`` along ``curve``, so pen stamps overlap evenly."""
    lengths = np.r_[0, np.cumsum(np.linalg.norm(np.diff(curve, axis=0), axis=1))]
    at = np.linspace(0, lengths[-1], max(2, int(lengths[-1] / spacing) + 1))
    return np.column_stack([np.interp(at, lengths, curve[:, i]) for i in range(2)])


def ink_coverage(pic: Picture, rng: np.random.Generator) -> np.ndarray:
    """Fraction of each pixel covered by ink, (H, W) in [0, 1]."""
    width, height = pic.size
    s = SUPERSAMPLE
    mask = Image.new("L", (width * s, height * s), 0)
    draw = ImageDraw.Draw(mask)
    scale = pic.height * height * s
    cx, cy = pic.centre[0] * width * s, pic.centre[1] * height * s
    for stroke in DIGITS[pic.digit]:
        points = np.array(stroke, dtype=float)
        points += rng.normal(0, 0.018, points.shape)  # a hand never repeats a path exactly
        points[:, 0] += pic.slant * (1 - points[:, 1])
        points = (points - [0.3 + pic.slant / 2, 0.5]) * scale + [cx, cy]
        path = resample(catmull_rom(points), spacing=max(1.0, pic.pen * s / 6))
        t = np.linspace(0, 1, len(path))
        # Pressure: the pen lands and lifts lightly and wavers a little in between.
        wobble = np.interp(t, np.linspace(0, 1, 6), rng.uniform(0.85, 1.15, 6))
        radius = pic.pen * s / 2 * (0.6 + 0.4 * np.sin(np.pi * t) ** 0.5) * wobble
        for (x, y), r in zip(path, radius, strict=True):
            draw.ellipse((x - r, y - r, x + r, y + r), fill=255)
    small = mask.resize((width, height), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.float32) / 255


def paper(pic: Picture, rng: np.random.Generator) -> np.ndarray:
    """The paper's colour per pixel, (H, W, 3): a tint, grain and gently uneven lighting."""
    width, height = pic.size
    yy, xx = np.mgrid[0:height, 0:width] / max(width, height)
    light = 1 + 0.04 * (xx - 0.5) - 0.03 * (yy - 0.5) if pic.paper < 230 else 1.0
    grain = rng.normal(0, 2.0, (height, width))
    base = pic.paper * light + grain
    tint = np.array([1.0, 0.995, 0.98])  # paper is slightly warm, not pure grey
    return base[..., None] * tint


def render(pic: Picture) -> Image.Image:
    """Draw one picture as an RGB image."""
    rng = np.random.default_rng(pic.seed)
    coverage = ink_coverage(pic, rng)[..., None] * 0.95
    rgb = paper(pic, rng) * (1 - coverage) + np.array(pic.ink) * coverage
    return Image.fromarray(np.clip(np.round(rgb), 0, 255).astype(np.uint8))


def main() -> None:
    """Write every picture in :data:`PICTURES` next to this script."""
    for pic in PICTURES:
        render(pic).save(HERE / pic.file)
        print(f"wrote {pic.file} {pic.size[0]}x{pic.size[1]}")


if __name__ == "__main__":
    main()
