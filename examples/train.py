"""Train one model from scratch with its registry recipe, score it on the test set, save it.

Run from the repository root, with MNIST in the folder ``DIR`` (the four IDX files)::

    python examples/train.py --model simplecnn --epochs 1 --data DIR   # a minute or two on CPU
    python examples/train.py --model minivgg --data DIR                # the full recipe, 10 epochs
    python examples/train.py --model simplecnn --quick --data DIR      # smoke run, 5,000 images

Without ``--data`` MNIST is read from ``$MNIST_ZOO_DATA`` (``export MNIST_ZOO_DATA=DIR``).

The output folder (``--out``, default ``runs/example-NAME``) ends up in Hub layout
(``model.safetensors``, ``config.json``, ``README.md``), so ``load_pretrained`` and
``examples/quickstart.py --model runs/example-NAME`` load it. Checkpoints and the per-epoch
history go to ``OUT/checkpoints``; ``--resume`` continues an interrupted run from there.
``--quick`` trains for one epoch on 5,000 images, skips the corruption suite and writes
``runs/example-NAME-quick`` unless ``--out`` says otherwise, so a smoke run never replaces a
real one.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from mnist_zoo.errors import run_command
from mnist_zoo.pipeline import train_and_save
from mnist_zoo.registry import get_model_entry

#: ``--quick`` trains on this many images for one epoch, validating on a tenth of them.
QUICK_IMAGES = 5_000


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse the command line.

    Args:
        argv: The arguments, without the program name; ``None`` reads ``sys.argv``.

    Returns:
        The parsed options.
    """
    parser = argparse.ArgumentParser(description="Train one mnist_zoo model with its recipe.")
    parser.add_argument("--model", default="simplecnn", help="registry name (default simplecnn)")
    parser.add_argument("--epochs", type=int, help="override the recipe's number of epochs")
    parser.add_argument(
        "--out",
        type=Path,
        help="output folder (default: runs/example-MODEL, with --quick runs/example-MODEL-quick)",
    )
    parser.add_argument("--data", metavar="DIR", help="MNIST folder (default: $MNIST_ZOO_DATA)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints")
    parser.add_argument(
        "--quick", action="store_true", help=f"smoke run: {QUICK_IMAGES:,} images, 1 epoch"
    )
    args = parser.parse_args(argv)
    if args.out is None and args.quick:
        # Apart from the real run's folder, so a smoke run never replaces its weights.
        args.out = Path("runs") / f"example-{args.model}-quick"
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Train, evaluate and save the model the command line asks for.

    Args:
        argv: Command-line arguments; ``None`` reads ``sys.argv``.

    Returns:
        The exit status, 0.
    """
    args = parse_args(argv)
    entry = get_model_entry(args.model)
    out = args.out or Path("runs") / f"example-{entry.name}"
    overrides: dict[str, object] = {}
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    if args.quick:
        # The default 5,000-image validation split would swallow the whole subset.
        overrides.update(epochs=1, val_size=QUICK_IMAGES // 10)

    # The one train -> evaluate -> save path, the same as `mnist-zoo train`: the recipe's seed
    # fixes the initial weights, the test set is scored once after training, and the folder
    # gets the weights, config.json and the model card.
    run = train_and_save(
        entry.name,
        data=args.data,
        out=out,
        device=args.device,
        resume=args.resume,
        progress="auto",
        limit=QUICK_IMAGES if args.quick else None,
        suite=not args.quick,  # the corruption suite costs about a minute: not for smoke runs
        **overrides,
    )
    result = run.result
    best = run.history.best("val_acc")
    print(
        f"\n{entry.name}: test accuracy {100 * result.accuracy:.2f}% "
        f"({result.num_errors} errors in {result.num_images:,}), best validation accuracy "
        f"{100 * best['val_acc']:.2f}% at epoch {int(best['epoch'])}, "
        f"training took {run.wall_time_s:.0f} s"
    )
    print(f"weights, config and model card in {out}/, history in {out}/checkpoints/history.csv")
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main, "train.py"))
