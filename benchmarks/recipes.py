"""Compare training recipes on the validation split, over several seeds (never the test set).

    python benchmarks/recipes.py simplecnn --variants base lr1e-2 --seeds 0 1
    python benchmarks/recipes.py simplecnn --quick     # 1 epoch, 1 seed: a smoke run

Each run trains on the 55,000 non-validation training images with the model's registry recipe,
changed as the variant says, and reports the final validation accuracy of the weights the
Trainer returns. Runs checkpoint under ``runs/recipes/`` and resume, so a killed session loses
at most one epoch. The last line names the variant with the best mean validation accuracy.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import mnist_zoo
from mnist_zoo.training import RandomAffine, Trainer, get_recipe

#: Named changes to a registry recipe.
VARIANTS: dict[str, dict[str, object]] = {
    "base": {},
    "lr1e-3": {"lr": 1e-3},
    "lr1e-2": {"lr": 1e-2},
    "no-augment": {"augment": False},
    "no-ema": {"ema_decay": None},
    "no-smoothing": {"label_smoothing": 0.0},
    "strong-augment": {"augment": RandomAffine(degrees=15, scale=(0.85, 1.15), translate=0.12)},
    "bs256": {"batch_size": 256},
    "wd5e-2": {"weight_decay": 5e-2},
}


def run(
    name: str, variant: str, seed: int, epochs: int | None, data: str | None, out: Path
) -> float:
    """Train one (model, variant, seed) and return its final validation accuracy."""
    overrides = dict(VARIANTS[variant], seed=seed)
    overrides["epochs"] = epochs or get_recipe(name).epochs
    run_dir = out / f"{name}-{variant}-s{seed}-e{overrides['epochs']}"
    trainer = Trainer.from_recipe(
        name, checkpoint_dir=run_dir, resume=True, progress="plain", **overrides
    )
    history = trainer.fit(mnist_zoo.MNIST(data, split="train"))
    return history["val_acc"][-1]


def main() -> None:
    """Parse arguments, run every (variant, seed), print a table."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("model")
    p.add_argument("--variants", nargs="+", default=["base"], choices=sorted(VARIANTS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    p.add_argument("--epochs", type=int, help="override the recipe's epochs")
    p.add_argument("--data", help="MNIST folder (default: $MNIST_ZOO_DATA)")
    p.add_argument("--out", default="runs/recipes", type=Path)
    p.add_argument("--quick", action="store_true", help="1 epoch, seed 0: a smoke run")
    args = p.parse_args()
    if args.quick:
        args.epochs, args.seeds = 1, [0]

    results: dict[str, list[float]] = {}
    for variant in args.variants:
        for seed in args.seeds:
            start = time.perf_counter()
            acc = run(args.model, variant, seed, args.epochs, args.data, args.out)
            results.setdefault(variant, []).append(acc)
            print(f"RUN {args.model} {variant} seed={seed} val_acc={100 * acc:.2f}% "
                  f"({time.perf_counter() - start:.0f}s)", flush=True)  # fmt: skip

    print(f"\n{'variant':<16}{'seeds':>6}{'mean val acc':>14}{'min':>9}{'max':>9}")
    for variant, accs in results.items():
        print(f"{variant:<16}{len(accs):>6}{100 * statistics.mean(accs):>13.2f}%"
              f"{100 * min(accs):>8.2f}%{100 * max(accs):>8.2f}%")  # fmt: skip
    best = max(results, key=lambda v: statistics.mean(results[v]))
    mean = 100 * statistics.mean(results[best])
    print(f"best for {args.model}: {best} ({mean:.2f}% mean val acc)")


if __name__ == "__main__":
    main()
