"""Wall time and epochs until the test accuracy first reaches the study's figure.

    python benchmarks/time_to_accuracy.py simplecnn deepercnn   # tens of minutes on 2 cores
    python benchmarks/time_to_accuracy.py --quick                # under a minute

For each model, the study's own loop (``study_loop.py``: Adam, batch 64, fp32, per-sample
DataLoader, up to 30 epochs) and the Trainer with the model's registry recipe both train on the
55,000 non-validation training images; after every epoch the test set is scored (this is a
benchmark of speed, not a way to pick a model: the recipes were chosen on the validation split).
Training time excludes that scoring. ``--quick`` trains SimpleCNN on 10,000 images for up to
2 epochs against a 98% target, to check the script end to end.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
from study_loop import StudyLoop
from torch.utils.data import Subset

import mnist_zoo
from mnist_zoo.errors import run_command
from mnist_zoo.training import Callback, Trainer

#: Test accuracies the study published after 30 epochs.
STUDY_ACCURACY = {"simplecnn": 0.9931, "deepercnn": 0.9938, "minivgg": 0.9960}


def test_accuracy(model: torch.nn.Module, test: mnist_zoo.MNIST) -> float:
    """fp32 accuracy on the test set."""
    return mnist_zoo.evaluate_model(model, test.images, test.targets).accuracy


def study(name: str, train: Subset, test: mnist_zoo.MNIST, target: float, max_epochs: int
          ) -> tuple[int | None, float, float]:  # fmt: skip
    """(epochs to reach ``target`` or None, training seconds until then, best accuracy)."""
    loop = StudyLoop(name, train)
    seconds, best = 0.0, 0.0
    for epoch in range(1, max_epochs + 1):
        seconds += loop.train()[1]
        acc = test_accuracy(loop.model, test)
        best = max(best, acc)
        print(f"  study   {name} epoch {epoch}: test {100 * acc:.2f}%  ({seconds:.0f}s)",
              flush=True)  # fmt: skip
        if acc >= target:
            return epoch, seconds, best
    return None, seconds, best


class _Watch(Callback):
    """Scores the test set after each epoch, off the training clock."""

    def __init__(self, test: mnist_zoo.MNIST, target: float) -> None:
        self.test, self.target = test, target
        self.reached: tuple[int, float] | None = None
        self.seconds, self.best = 0.0, 0.0

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        self.seconds += metrics["epoch_time_s"]
        model = trainer.ema.module if trainer.ema is not None else trainer.model
        acc = test_accuracy(model, self.test)
        self.best = max(self.best, acc)
        print(f"  trainer epoch {epoch + 1}: test {100 * acc:.2f}%  ({self.seconds:.0f}s)",
              flush=True)  # fmt: skip
        if acc >= self.target and self.reached is None:
            self.reached = (epoch + 1, self.seconds)
            trainer.stop_training = True


def ours(name: str, train: Subset, test: mnist_zoo.MNIST, target: float, epochs: int | None
         ) -> tuple[int | None, float, float]:  # fmt: skip
    """The Trainer with the registry recipe: (epochs, training seconds, best accuracy)."""
    overrides: dict[str, object] = {"val_size": 0, "progress": False}
    if epochs is not None:
        overrides["epochs"] = epochs
    watch = _Watch(test, target)
    Trainer.from_recipe(name, callbacks=[watch], **overrides).fit(train)
    if watch.reached is None:
        return None, watch.seconds, watch.best
    return watch.reached[0], watch.reached[1], watch.best


def main() -> int:
    """Run both loops for each model and print a table."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("models", nargs="*", default=["simplecnn", "deepercnn", "minivgg"])
    p.add_argument("--data", help="MNIST folder (default: $MNIST_ZOO_DATA)")
    p.add_argument("--max-study-epochs", type=int, default=30)
    p.add_argument("--quick", action="store_true", help="SimpleCNN, 10k images, 2 epochs, 98%%")
    args = p.parse_args()

    full = mnist_zoo.MNIST(args.data, split="train")
    test = mnist_zoo.MNIST(args.data, split="test")
    # The same 55,000 images the Trainer keeps after carving its 5,000 validation images.
    perm = torch.randperm(len(full), generator=torch.Generator().manual_seed(0))
    train = Subset(full, perm[5000:].sort().values.tolist())
    models, epochs, targets = args.models, None, STUDY_ACCURACY
    if args.quick:
        train = Subset(full, perm[5000:15000].sort().values.tolist())
        models, epochs, args.max_study_epochs = ["simplecnn"], 2, 2
        targets = {"simplecnn": 0.98}

    rows = []
    for name in models:
        target = targets[name]
        print(f"{name}: target {100 * target:.2f}%", flush=True)
        start = time.perf_counter()
        s = study(name, train, test, target, args.max_study_epochs)
        o = ours(name, train, test, target, epochs)
        rows.append((name, target, s, o))
        print(f"  ({time.perf_counter() - start:.0f}s)")

    def cell(r: tuple[int | None, float, float]) -> str:
        epochs, seconds, best = r
        if epochs is None:
            return f"not reached (best {100 * best:.2f}%, {seconds / 60:.1f} min)"
        return f"{epochs} ep, {seconds / 60:.1f} min"

    print(f"\n{'model':<11}{'target':>8}  {'study loop':<38}{'trainer recipe':<38}speed-up")
    for name, target, s, o in rows:
        # A study loop that never got there still bounds the speed-up from below.
        speedup = "-" if not o[0] else f"{'' if s[0] else '> '}{s[1] / o[1]:.1f}x"
        print(f"{name:<11}{100 * target:>7.2f}%  {cell(s):<38}{cell(o):<38}{speedup}")
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main, "time_to_accuracy.py"))
