"""Train one model from scratch with its registry recipe, score it on the test set, save it.

Run from the repository root::

    python examples/train.py --model simplecnn --epochs 1     # one epoch: a minute or two on CPU
    python examples/train.py --model minivgg                  # the full recipe (10 epochs)
    python examples/train.py --model simplecnn --quick        # smoke run: 5,000 images, 1 epoch

The output folder (``--out``, default ``runs/example-NAME``) ends up in Hub layout
(``model.safetensors``, ``config.json``, ``README.md``), so ``load_pretrained`` and
``examples/quickstart.py --model runs/example-NAME`` load it. Checkpoints and the per-epoch
history go to ``OUT/checkpoints``; ``--resume`` continues an interrupted run from there.
MNIST is read from ``--data`` or ``$MNIST_ZOO_DATA``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import mnist_zoo
from mnist_zoo.evaluation import evaluate_model
from mnist_zoo.hub import save_pretrained
from mnist_zoo.registry import get_model_entry
from mnist_zoo.training import Trainer, seed_everything

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
    parser.add_argument("--out", type=Path, help="output folder (default: runs/example-MODEL)")
    parser.add_argument("--data", help="MNIST folder (default: $MNIST_ZOO_DATA)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints")
    parser.add_argument(
        "--quick", action="store_true", help=f"smoke run: {QUICK_IMAGES:,} images, 1 epoch"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Train, evaluate and save the model the command line asks for.

    Args:
        argv: Command-line arguments; ``None`` reads ``sys.argv``.

    Returns:
        The exit status, 0.
    """
    args = parse_args(argv)
    entry = get_model_entry(args.model)
    recipe = dict(entry.recipe)
    model_kwargs = recipe.pop("model_kwargs", {})
    if args.epochs is not None:
        recipe["epochs"] = args.epochs
    out = args.out or Path("runs") / f"example-{entry.name}"

    train = mnist_zoo.MNIST(args.data, split="train")
    test = mnist_zoo.MNIST(args.data, split="test")
    train_data = (train.images, train.targets)
    if args.quick:
        recipe["epochs"] = 1
        # The default 5,000-image validation split would swallow the whole subset.
        recipe["val_size"] = QUICK_IMAGES // 10
        train_data = (train.images[:QUICK_IMAGES], train.targets[:QUICK_IMAGES])

    # Seeding before building fixes the initial weights, so a rerun gives the same model.
    seed_everything(recipe.get("seed", 0))
    model = mnist_zoo.create_model(entry.name, **model_kwargs)
    trainer = Trainer(
        model,
        device=args.device,
        checkpoint_dir=out / "checkpoints",
        resume=args.resume,
        progress="auto",
        **recipe,
    )
    print(f"training {entry.name} for {trainer.epochs} epoch(s) on {trainer.device}, "
          f"precision {trainer.precision}")  # fmt: skip
    start = time.perf_counter()
    history = trainer.fit(train_data)
    wall = time.perf_counter() - start

    # The test set is scored once, after training: nothing above looked at it.
    result = evaluate_model(trainer.model, test.images, test.targets, device=trainer.device)
    metrics = result.to_dict()
    metrics.update(epochs_trained=len(history), train_wall_time_s=round(wall, 1))
    save_pretrained(
        trainer.model.cpu(),
        out,
        name=entry.name,
        model_kwargs=model_kwargs,
        recipe=trainer.config(),
        metrics=metrics,
    )
    best = history.best("val_acc")
    print(
        f"\n{entry.name}: test accuracy {100 * result.accuracy:.2f}% "
        f"({result.num_errors} errors in {result.num_images:,}), best validation accuracy "
        f"{100 * best['val_acc']:.2f}% at epoch {int(best['epoch'])}, training took {wall:.0f} s"
    )
    print(f"weights, config and model card in {out}/, history in {out}/checkpoints/history.csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
