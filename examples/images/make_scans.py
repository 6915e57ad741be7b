"""Make scan-like pictures of real handwriting: ``python examples/images/make_scans.py``.

The digits of ``*_scan.png`` were written by hand by real people: they are the first test
image of digits 1, 6 and 9 in MNIST's test set (``t10k-images``, never trained on), chosen by
position, not by how well any model reads them. Each is enlarged 7x (bicubic), turned into dark
ink on off-white paper, placed off-centre on a larger sheet, and given a little paper grain, the
way a scanned or photographed note looks before ``mnist_zoo.preprocess`` brings it back to
MNIST's convention. Deterministic; reads MNIST from ``--data`` or ``$MNIST_ZOO_DATA``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

import mnist_zoo

HERE = Path(__file__).resolve().parent
WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
#: (digit, sheet width, sheet height, left, top): the sheets differ so the digit is off-centre.
SHEETS = [(1, 230, 260, 30, 50), (6, 260, 220, 50, 12), (9, 240, 240, 20, 40)]


def main() -> None:
    """Write one ``WORD_scan.png`` per entry of ``SHEETS`` next to this script."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data", help="MNIST folder (default: $MNIST_ZOO_DATA)")
    args = p.parse_args()
    test = mnist_zoo.MNIST(args.data, split="test")
    rng = np.random.default_rng(0)
    for digit, width, height, left, top in SHEETS:
        index = int((test.targets == digit).nonzero()[0])
        ink = Image.fromarray(test.images[index, 0].numpy()).resize((196, 196), Image.BICUBIC)
        sheet = np.zeros((height, width), dtype=np.float64)
        sheet[top : top + 196, left : left + 196] = np.asarray(ink, dtype=np.float64) / 255
        paper, pen = 236.0, 35.0
        pixels = paper - (paper - pen) * sheet + rng.normal(0, 3.0, sheet.shape)
        out = HERE / f"{WORDS[digit]}_scan.png"
        Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(out, optimize=True)
        print(f"{out.name}: MNIST test image {index} (label {digit}), {width}x{height}")


if __name__ == "__main__":
    main()
