"""Compare training recipes on the validation split, over several seeds (never the test set).

    python benchmarks/recipes.py simplecnn --variants base lr1e-2 --seeds 0 1
    python benchmarks/recipes.py simplecnn --quick     # 1 epoch, 1 seed: a smoke run

Each run trains on the 55,000 non-validation training images with the model's registry recipe,
changed as the variant says, and reports the final validation accuracy of the weights the
Trainer returns, and (with ``--suite``) their mean accuracy over the 15 MNIST-C corruptions of
the same validation images: the recipe is chosen for clean accuracy and robustness together,
never on the test set. Runs checkpoint under ``runs/recipes/`` and resume, so a killed session
loses at most one epoch; a finished run's figures are kept in ``RUN_DIR/result.json`` and not
recomputed. The last line names the variant with the best mean validation accuracy.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

import mnist_zoo
from mnist_zoo.errors import run_command
from mnist_zoo.robustness import evaluate_corruptions
from mnist_zoo.training import RandomAffine, RandomAppearance, Trainer, get_recipe
from mnist_zoo.training.batches import in_memory, split_validation

#: The appearance changes the v0.2 search tries: thicker and thinner strokes, faded ink,
#: a grey page and sensor noise, each on half the images.
APPEARANCE = RandomAppearance(stroke=0.5, contrast=0.5, background=0.5, noise=0.1)
#: The same changes, weaker and on 30 % of the images.
MILD_APPEARANCE = RandomAppearance(stroke=0.3, contrast=0.4, background=0.5, noise=0.08, p=0.3)
ELASTIC = RandomAffine(elastic=2.0)
#: The v0.2 appearance changes plus random erasing on half, a tenth, or 3 % of the images.
ERASE_APPEARANCE = dataclasses.replace(APPEARANCE, erase=0.5)
MILD_ERASE_APPEARANCE = dataclasses.replace(APPEARANCE, erase=0.1)
RARE_ERASE_APPEARANCE = dataclasses.replace(APPEARANCE, erase=0.03)
#: The v0.2 appearance changes with twice the stroke range: up to the full 3 x 3 dilation or
#: erosion, for thin outlines such as the canny-edges corruption's.
STROKE_APPEARANCE = dataclasses.replace(APPEARANCE, stroke=1.0)

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
    "appearance": {"appearance": APPEARANCE},
    "elastic": {"augment": ELASTIC},
    "appearance-elastic": {"appearance": APPEARANCE, "augment": ELASTIC},
    "appearance-e20": {"appearance": APPEARANCE, "epochs": 20},
    "appearance-e30": {"appearance": APPEARANCE, "epochs": 30},
    "appearance-mild": {"appearance": MILD_APPEARANCE},
    "appearance-mild-e20": {"appearance": MILD_APPEARANCE, "epochs": 20},
    "appearance-erase-e20": {"appearance": ERASE_APPEARANCE, "epochs": 20},
    "appearance-erase10-e20": {"appearance": MILD_ERASE_APPEARANCE, "epochs": 20},
    "appearance-erase10-e30": {"appearance": MILD_ERASE_APPEARANCE, "epochs": 30},
    "appearance-erase3-e20": {"appearance": RARE_ERASE_APPEARANCE, "epochs": 20},
    "appearance-stroke1-e20": {"appearance": STROKE_APPEARANCE, "epochs": 20},
}


def run(
    name: str,
    variant: str,
    seed: int,
    epochs: int | None,
    data: str | None,
    out: Path,
    suite: bool,
    split_seed: int | None = None,
) -> dict[str, float]:
    """Train one (model, variant, seed); return its validation accuracy (and suite mean)."""
    overrides = dict(VARIANTS[variant], seed=seed, split_seed=split_seed)
    overrides["epochs"] = epochs or overrides.get("epochs") or get_recipe(name).epochs
    split = "" if split_seed is None else f"-split{split_seed}"
    run_dir = out / f"{name}-{variant}-s{seed}-e{overrides['epochs']}{split}"
    saved = run_dir / "result.json"
    if saved.is_file():
        result = json.loads(saved.read_text())
        if not suite or "suite_mean" in result:
            return result
    trainer = Trainer.from_recipe(
        name, checkpoint_dir=run_dir, resume=True, progress="plain", **overrides
    )
    train = mnist_zoo.MNIST(data, split="train")
    start = time.perf_counter()
    history = trainer.fit(train)
    result = {"val_acc": history["val_acc"][-1], "wall_s": time.perf_counter() - start}
    if suite:
        config = trainer.config
        held_out = config.validation_seed
        _, val = split_validation(in_memory(train), None, val_size=config.val_size, seed=held_out)
        scored = evaluate_corruptions(trainer.model, val.images, val.targets, seed=held_out)
        result["suite_mean"] = scored.mean_accuracy
        result["corruptions"] = scored.corruption_accuracy
        result["val_ece"] = scored.ece
    saved.write_text(json.dumps(result, indent=1))
    return result


def main() -> None:
    """Parse arguments, run every (variant, seed), print a table."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("model")
    p.add_argument("--variants", nargs="+", default=["base"], choices=sorted(VARIANTS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    p.add_argument("--epochs", type=int, help="override the recipe's epochs")
    p.add_argument("--data", help="MNIST folder (default: $MNIST_ZOO_DATA)")
    p.add_argument(
        "--split-seed",
        type=int,
        help="hold out this seed's validation images in every run (default: each run's seed)",
    )
    p.add_argument("--out", default="runs/recipes", type=Path)
    p.add_argument("--quick", action="store_true", help="1 epoch, seed 0: a smoke run")
    p.add_argument(
        "--suite", action="store_true", help="also score the corruptions of the validation split"
    )
    args = p.parse_args()
    if args.quick:
        args.epochs, args.seeds = 1, [0]

    results: dict[str, list[dict[str, float]]] = {}
    for variant in args.variants:
        for seed in args.seeds:
            start = time.perf_counter()
            r = run(args.model, variant, seed, args.epochs, args.data, args.out, args.suite,
                    args.split_seed)  # fmt: skip
            results.setdefault(variant, []).append(r)
            suite = f" suite_mean={100 * r['suite_mean']:.2f}%" if "suite_mean" in r else ""
            print(f"RUN {args.model} {variant} seed={seed} val_acc={100 * r['val_acc']:.2f}%"
                  f"{suite} ({time.perf_counter() - start:.0f}s)", flush=True)  # fmt: skip

    def mean(runs: list[dict[str, float]], key: str) -> str:
        values = [r[key] for r in runs if key in r]
        return f"{100 * statistics.mean(values):.2f}%" if len(values) == len(runs) else "-"

    print(f"\n{'variant':<24}{'seeds':>6}{'mean val acc':>14}{'min':>9}{'max':>9}{'suite':>9}")
    for variant, runs in results.items():
        accs = [r["val_acc"] for r in runs]
        low, high, suite = 100 * min(accs), 100 * max(accs), mean(runs, "suite_mean")
        print(f"{variant:<24}{len(accs):>6}{mean(runs, 'val_acc'):>14}"
              f"{low:>8.2f}%{high:>8.2f}%{suite:>9}")  # fmt: skip
    best = max(results, key=lambda v: statistics.mean(r["val_acc"] for r in results[v]))
    print(f"best for {args.model}: {best} ({mean(results[best], 'val_acc')} mean val acc)")


if __name__ == "__main__":
    sys.exit(run_command(main, "recipes.py"))
