"""Test-time augmentation on the validation split: does it pay for the published models?

    python benchmarks/tta_validation.py --data DIR                 # hub/NAME, the default release
    python benchmarks/tta_validation.py --data DIR --hub hub/v0.1.0

Each model in ``HUB`` is scored on the validation images its recorded recipe held out (never the
test set), once plainly and once with test-time augmentation (``tta_logits``: the seven
``TTA_VIEWS``, small shifts and rotations, no flips), both with the model's stored temperature;
so is the ensemble of the three, which averages their calibrated probabilities as ``Ensemble``
does. Reported: accuracy and NLL each way, and the images TTA fixes and breaks.

This only measures; a release that wanted TTA would have to fix its rule before scoring the
test set (see docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

import mnist_zoo
from mnist_zoo.calibration import apply_temperature
from mnist_zoo.data import MNIST
from mnist_zoo.errors import run_command
from mnist_zoo.inference import batched_logits, stored_temperature, tta_logits
from mnist_zoo.pipeline import recorded_validation_split

NAMES = ("simplecnn", "deepercnn", "minivgg")


def log_probs(model: torch.nn.Module, images: torch.Tensor, tta: bool) -> torch.Tensor:
    """Calibrated log-probabilities of ``model`` on ``images``, with or without TTA."""
    logits = tta_logits(model, images) if tta else batched_logits(model, images)
    return apply_temperature(logits, stored_temperature(model) or 1.0).log_softmax(1)


def row(name: str, plain: torch.Tensor, tta: torch.Tensor, labels: torch.Tensor) -> str:
    """One table row: accuracy and NLL each way, images fixed and broken by TTA."""
    right_plain, right_tta = plain.argmax(1) == labels, tta.argmax(1) == labels
    fixed = int((right_tta & ~right_plain).sum())
    broken = int((right_plain & ~right_tta).sum())

    def nll(lp: torch.Tensor) -> float:
        return float(-lp.gather(1, labels[:, None]).mean())

    return (f"{name:<11}{100 * right_plain.double().mean():>9.2f}%"
            f"{100 * right_tta.double().mean():>9.2f}%{nll(plain):>9.4f}{nll(tta):>9.4f}"
            f"{fixed:>7}{broken:>7}")  # fmt: skip


def main() -> None:
    """Score every model and the ensemble both ways and print the table."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", help="MNIST folder (default: $MNIST_ZOO_DATA)")
    p.add_argument("--hub", type=Path, default=Path("hub"), help="folder of NAME folders")
    args = p.parse_args()
    start = time.perf_counter()
    models = {n: mnist_zoo.load_pretrained(args.hub / n).eval() for n in NAMES}
    val = recorded_validation_split(models["minivgg"], lambda: MNIST(args.data, split="train"))
    if val is None:
        raise SystemExit(f"{args.hub / 'minivgg'} records no validation split.")
    images, labels = val.images, val.targets
    print(f"{args.hub}: {len(labels):,} validation images; temperature applied; "
          f"TTA = the {len(mnist_zoo.inference.TTA_VIEWS)} TTA_VIEWS")  # fmt: skip
    print(f"{'model':<11}{'plain':>10}{'TTA':>10}{'NLL':>9}{'NLL TTA':>9}{'fixed':>7}{'broken':>7}")
    scores = {}
    for name, model in models.items():
        scores[name] = {tta: log_probs(model, images, tta) for tta in (False, True)}
        print(row(name, scores[name][False], scores[name][True], labels), flush=True)

    def ensemble(tta: bool) -> torch.Tensor:
        probs = torch.stack([scores[n][tta].exp() for n in NAMES]).mean(0)
        return probs.clamp_min(1e-12).log()

    print(row("ensemble", ensemble(False), ensemble(True), labels))
    print(f"({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    sys.exit(run_command(main, "tta_validation.py"))
