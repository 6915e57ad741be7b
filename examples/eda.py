"""The study's look at the data: the data checks, the class distribution and sample digits.

Run from the repository root, with MNIST in the folder ``DIR`` (the four IDX files)::

    python examples/eda.py --data DIR                    # writes report/eda/*.png
    python examples/eda.py --data DIR --out docs/img     # the figures of the documentation

Without ``--data`` MNIST is read from ``$MNIST_ZOO_DATA`` (``export MNIST_ZOO_DATA=DIR``).

It takes a few seconds, so there is no separate quick mode. It prints the report of
``mnist_zoo.check_mnist`` and stops with exit status 1 if a check fails; otherwise it writes

* ``class_distribution.png``: images per digit, train and test side by side;
* ``samples.png``: the first ten training images of each digit, one row per digit;
* ``mean_digits.png``: the mean training image of each digit.

Needs matplotlib (``pip install "mnist-zoo[plot]"``); without it the script says so in one line
and exits with status 1.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

import mnist_zoo
from mnist_zoo.errors import run_command

#: Images per digit in the sample grid.
SAMPLES_PER_DIGIT = 10
#: Small, crisp PNGs: the figures are committed to the documentation.
DPI = 100
#: The one line printed instead of a traceback when the ``plot`` extra is not installed.
PLOT_EXTRA_MISSING = 'eda.py: error: the figures need matplotlib: pip install "mnist-zoo[plot]"'
#: Figure width in inches: the documentation's text column at ``DPI`` (about 720 px), so the
#: figures are shown there at full size and their labels stay readable.
WIDTH = 7.2


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse the command line.

    Args:
        argv: The arguments, without the program name; ``None`` reads ``sys.argv``.

    Returns:
        The parsed options.
    """
    parser = argparse.ArgumentParser(description="MNIST data checks and overview figures.")
    parser.add_argument("--data", metavar="DIR", help="MNIST folder (default: $MNIST_ZOO_DATA)")
    parser.add_argument("--out", type=Path, default=Path("report/eda"), help="folder for PNGs")
    return parser.parse_args(argv)


def plot_class_distribution(train: mnist_zoo.MNIST, test: mnist_zoo.MNIST, path: Path) -> None:
    """Bar charts of the number of images per digit, train and test side by side.

    Args:
        train: The training split.
        test: The test split.
        path: Where to write the PNG.
    """
    import matplotlib.pyplot as plt

    # One above the other: side by side, the count labels would not fit above their bars.
    fig, axes = plt.subplots(2, 1, figsize=(WIDTH, 5.2))
    for ax, split, colour in zip(axes, (train, test), ("tab:blue", "tab:orange"), strict=True):
        counts = np.bincount(split.targets.numpy(), minlength=10)
        bars = ax.bar(range(10), counts, color=colour)
        ax.bar_label(bars, labels=[f"{c:,}" for c in counts], fontsize=9, padding=2)
        ax.set_title(f"{split.split}: {len(split):,} images", fontsize=10)
        ax.set_xticks(range(10))
        ax.set_ylabel("images")
        # Headroom for the count labels above the tallest bar.
        ax.set_ylim(0, counts.max() * 1.15)
        ax.spines[["top", "right"]].set_visible(False)
    axes[1].set_xlabel("digit")
    fig.tight_layout()
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)


def digit_mosaic(images: np.ndarray, columns: int) -> np.ndarray:
    """Tile 28x28 images into one picture, row by row, with a 2-pixel gap between them.

    Args:
        images: uint8 or float images of shape (N, 28, 28), N a multiple of ``columns``.
        columns: Images per row.

    Returns:
        A float array in [0, 1]; gaps are mid-grey so black digit backgrounds stay apart.
    """
    rows = len(images) // columns
    gap, size = 2, images.shape[-1]
    mosaic = np.full((rows * (size + gap) - gap, columns * (size + gap) - gap), 0.5)
    scale = 255.0 if images.dtype == np.uint8 else 1.0
    for index, image in enumerate(images):
        row, column = divmod(index, columns)
        top, left = row * (size + gap), column * (size + gap)
        mosaic[top : top + size, left : left + size] = image / scale
    return mosaic


def plot_samples(train: mnist_zoo.MNIST, path: Path) -> None:
    """A grid of the first training images of each digit, one row per digit.

    Args:
        train: The training split.
        path: Where to write the PNG.
    """
    import matplotlib.pyplot as plt

    labels = train.targets.numpy()
    images = train.images[:, 0].numpy()
    picks = [np.flatnonzero(labels == d)[:SAMPLES_PER_DIGIT] for d in range(10)]
    mosaic = digit_mosaic(images[np.concatenate(picks)], SAMPLES_PER_DIGIT)

    fig, ax = plt.subplots(figsize=(4.4, 4.4))
    ax.imshow(mosaic, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_yticks([14 + 30 * d for d in range(10)], [str(d) for d in range(10)])
    ax.set_xticks([])
    ax.set_ylabel("digit")
    ax.set_title(f"first {SAMPLES_PER_DIGIT} training images of each digit", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)


def plot_mean_digits(train: mnist_zoo.MNIST, path: Path) -> None:
    """The mean training image of each digit in one row.

    Args:
        train: The training split.
        path: Where to write the PNG.
    """
    import matplotlib.pyplot as plt

    labels = train.targets.numpy()
    images = train.images[:, 0].numpy().astype(np.float32) / 255
    means = np.stack([images[labels == d].mean(axis=0) for d in range(10)])

    fig, ax = plt.subplots(figsize=(WIDTH, 1.3))
    ax.imshow(digit_mosaic(means, 10), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks([14 + 30 * d for d in range(10)], [str(d) for d in range(10)])
    ax.set_yticks([])
    ax.set_title("mean training image of each digit", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the data checks, then draw the figures into ``--out``.

    Args:
        argv: Command-line arguments; ``None`` reads ``sys.argv``.

    Returns:
        The exit status: 0, or 1 when matplotlib is missing or a data check failed (no figures
        are drawn then).
    """
    args = parse_args(argv)
    try:
        import matplotlib
    except ModuleNotFoundError:
        print(PLOT_EXTRA_MISSING, file=sys.stderr)
        return 1
    matplotlib.use("Agg")  # write files, never open a window

    # Every file there, or one line naming those that are not (no table of checks not run).
    report = mnist_zoo.check_mnist(mnist_zoo.data.require_mnist(args.data))
    print(report.format())
    if not report.passed:
        print("\nThe data failed a check; fix it before looking further.", file=sys.stderr)
        return 1

    train = mnist_zoo.MNIST(args.data, split="train")
    test = mnist_zoo.MNIST(args.data, split="test")
    args.out.mkdir(parents=True, exist_ok=True)
    figures = {
        "class_distribution.png": lambda path: plot_class_distribution(train, test, path),
        "samples.png": lambda path: plot_samples(train, path),
        "mean_digits.png": lambda path: plot_mean_digits(train, path),
    }
    print()
    for name, draw in figures.items():
        draw(args.out / name)
        print(f"wrote {args.out / name}")
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main, "eda.py"))
