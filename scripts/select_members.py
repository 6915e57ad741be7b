"""Choose a release's models and ensemble on the validation split (never the test set).

    python scripts/select_members.py --data DIR --reference hub/v0.1.0 \\
        --candidates hub/v0.2.0 runs/v0.3 --json runs/v0.3/selection.json

Every candidate is a Hub-layout folder written by ``mnist-zoo train`` (a folder of such folders
is searched one level down). All must have held out the same validation images (the same
``val_size`` and ``split_seed``, else ``seed``): ``mnist-zoo train NAME --seed S --split-seed 0``
trains another seed on seed 0's split. Each model is scored once on those 5,000 images and on
the 15 MNIST-C corruptions of them (seed 0), with its stored temperature.

The rule, fixed before the seed search's candidates finished training (docs/benchmarks.md,
"More seeds of the v0.2.0 recipe, chosen on validation"), and applied again to choose v0.3.0
("v0.3.0: the full stroke range for DeeperCNN and MiniVGG"):

1. Per architecture, the candidates whose validation accuracy on no corruption is more than
   one point below the reference (the v0.1 model of that architecture) are *eligible*; the
   published model is the eligible one with the highest clean validation accuracy (ties: the
   higher suite mean). With none eligible, the one with the highest clean validation accuracy.
2. The ensemble is either the three chosen models or every candidate, whichever has the higher
   clean validation accuracy (ties: the three, which cost a third as much).

The printed table and ``--json`` hold every figure the rule used.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

import mnist_zoo
from mnist_zoo.calibration import apply_temperature
from mnist_zoo.data import MNIST
from mnist_zoo.errors import run_command
from mnist_zoo.inference import batched_logits, stored_temperature
from mnist_zoo.pipeline import recorded_validation_split
from mnist_zoo.robustness import CORRUPTIONS, corrupted_test_set
from mnist_zoo.training import TrainConfig


def folders(paths: list[Path]) -> list[Path]:
    """The Hub-layout folders among ``paths`` and their immediate subfolders."""
    found = []
    for path in paths:
        if (path / "config.json").is_file():
            found.append(path)
        else:
            found += sorted(p for p in path.iterdir() if (p / "config.json").is_file())
    return [p for p in found if "ensemble" not in p.name]


def split_key(model: torch.nn.Module) -> tuple[int, int]:
    """(val_size, the seed that chose the validation images) of a loaded model's recipe."""
    config = TrainConfig.from_dict(model.pretrained_cfg["recipe"])
    return config.val_size, config.validation_seed


def score(model: torch.nn.Module, sets: dict[str, torch.Tensor], labels: torch.Tensor) -> dict:
    """Calibrated probabilities and accuracy of ``model`` on every set."""
    temperature = stored_temperature(model) or 1.0
    probs = {
        name: apply_temperature(batched_logits(model, images).cpu(), temperature).softmax(1)
        for name, images in sets.items()
    }
    return {"probs": probs, "accuracy": accuracies(probs, labels)}


def accuracies(probs: dict[str, torch.Tensor], labels: torch.Tensor) -> dict[str, float]:
    """Accuracy per set, and the mean over the corruptions as ``suite_mean``."""
    acc = {name: float((p.argmax(1) == labels).double().mean()) for name, p in probs.items()}
    corrupted = [acc[name] for name in CORRUPTIONS]
    return {**acc, "suite_mean": sum(corrupted) / len(corrupted)}


def ensemble_accuracy(members: list[dict], labels: torch.Tensor) -> dict[str, float]:
    """Accuracy of the mean of the members' calibrated probabilities (what ``Ensemble`` does)."""
    names = members[0]["probs"]
    mean = {n: torch.stack([m["probs"][n] for m in members]).mean(0) for n in names}
    return accuracies(mean, labels)


def worst_drop(candidate: dict, reference: dict) -> tuple[str, float]:
    """The corruption where ``candidate`` is furthest below ``reference``, and by how much."""
    drops = {n: reference["accuracy"][n] - candidate["accuracy"][n] for n in CORRUPTIONS}
    name = max(drops, key=drops.get)
    return name, drops[name]


def choose(candidates: list[dict], reference: dict | None) -> dict:
    """Rule 1: the eligible candidate with the best clean, then suite, validation accuracy."""
    eligible = [c for c in candidates if reference is None or worst_drop(c, reference)[1] <= 0.01]
    pool = eligible or candidates
    return max(pool, key=lambda c: (c["accuracy"]["clean"], c["accuracy"]["suite_mean"]))


def main() -> None:
    """Score every candidate and reference, apply the rule, print and save the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, help="folder with MNIST's IDX files")
    parser.add_argument("--candidates", nargs="+", type=Path, required=True)
    parser.add_argument("--reference", nargs="+", type=Path, default=[])
    parser.add_argument("--json", type=Path, help="write every figure here")
    args = parser.parse_args()

    models = {p: mnist_zoo.load_pretrained(str(p)) for p in folders(args.candidates)}
    references = {p: mnist_zoo.load_pretrained(str(p)) for p in folders(args.reference)}
    keys = {split_key(m) for m in [*models.values(), *references.values()]}
    if len(keys) != 1:
        raise SystemExit(f"The models held out different validation splits: {sorted(keys)}.")
    val = recorded_validation_split(next(iter(models.values())), lambda: MNIST(args.data, "train"))
    images, labels = val.images, val.targets  # (N, 1, 28, 28) uint8 and (N,)
    sets = {"clean": images}
    for name in CORRUPTIONS:
        sets[name] = corrupted_test_set(images, labels, name, seed=0)[0]

    scored = [{"folder": str(p), "name": m.pretrained_cfg["name"], "seed":
               m.pretrained_cfg["recipe"]["seed"], **score(m, sets, labels)}
              for p, m in models.items()]  # fmt: skip
    refs = {m.pretrained_cfg["name"]: score(m, sets, labels) for m in references.values()}

    print(f"{'candidate':<36}{'clean':>8}{'suite':>8}  worst drop vs reference")
    for c in scored:
        ref = refs.get(c["name"])
        if ref is not None:
            worst, by = worst_drop(c, ref)
            c["worst_drop"] = {"corruption": worst, "points": 100 * by}
        drop = f"{worst} {-100 * by:+.2f}" if ref is not None else ""
        print(f"{c['folder']:<36}{100 * c['accuracy']['clean']:>7.2f}%"
              f"{100 * c['accuracy']['suite_mean']:>7.2f}%  {drop}")  # fmt: skip

    chosen = {}
    for name in dict.fromkeys(c["name"] for c in scored):
        chosen[name] = choose([c for c in scored if c["name"] == name], refs.get(name))
    ensembles = {
        "chosen": ensemble_accuracy(list(chosen.values()), labels),
        "all": ensemble_accuracy(scored, labels),
    }
    pick = "all" if ensembles["all"]["clean"] > ensembles["chosen"]["clean"] else "chosen"
    for key, acc in ensembles.items():
        size = len(chosen) if key == "chosen" else len(scored)
        print(f"ensemble of {key} ({size}): clean {100 * acc['clean']:.2f}%, "
              f"suite {100 * acc['suite_mean']:.2f}%")  # fmt: skip
    print("chosen:", ", ".join(f"{n} = {c['folder']}" for n, c in chosen.items()))
    print(f"ensemble: {pick}")
    if args.json:
        strip = [{k: v for k, v in c.items() if k != "probs"} for c in scored]
        args.json.write_text(json.dumps({
            "validation": {"num_images": len(labels), "split": sorted(keys)[0]},
            "candidates": strip,
            "references": {n: r["accuracy"] for n, r in refs.items()},
            "chosen": {n: c["folder"] for n, c in chosen.items()},
            "ensembles": ensembles,
            "ensemble": pick,
        }, indent=2) + "\n")  # fmt: skip


if __name__ == "__main__":
    sys.exit(run_command(main, "select_members.py"))
