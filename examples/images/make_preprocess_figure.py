"""Draw docs/img/preprocess.png: each example picture before and after ``mnist_zoo.preprocess``.

Run from anywhere: ``python examples/images/make_preprocess_figure.py``. Needs matplotlib
(``pip install "mnist-zoo[plot]"``).
"""

from __future__ import annotations

import sys
from pathlib import Path

try:
    import matplotlib
except ModuleNotFoundError:
    sys.exit('make_preprocess_figure.py: error: needs matplotlib: pip install "mnist-zoo[plot]"')
matplotlib.use("Agg")  # write a file, never open a window
import matplotlib.pyplot as plt  # noqa: E402
from make_images import PICTURES  # noqa: E402  (this folder is on sys.path when run)

from mnist_zoo.inference import load_image, preprocess  # noqa: E402

HERE = Path(__file__).resolve().parent
OUT = HERE.parents[1] / "docs" / "img" / "preprocess.png"


def main(out: Path = OUT) -> None:
    """Write the before/after grid: pictures on the top row, 28x28 model inputs below."""
    paths = [HERE / picture.file for picture in PICTURES]  # in digit order
    # As wide as the documentation's text column (720 px), so the page shows it at full size.
    fig, axes = plt.subplots(2, len(paths), figsize=(7.2, 3.0), squeeze=False)
    for column, path in enumerate(paths):
        before, after = axes[0, column], axes[1, column]
        image = load_image(path)
        before.imshow(image, cmap="gray" if image.mode == "L" else None)
        before.set_title(f"{path.name}\n{image.width}x{image.height}", fontsize=8.5)
        after.imshow(preprocess(path)[0].numpy(), cmap="gray", vmin=0, vmax=1)
        after.set_title("28x28", fontsize=8.5)
        for ax in (before, after):
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_ylabel("picture", fontsize=9)
    axes[1, 0].set_ylabel("preprocess()", fontsize=9)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
