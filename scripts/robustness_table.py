"""The corruption suite for each published release, side by side, as a Markdown table.

Run from the repository root, with MNIST in the folder ``DIR`` (the four IDX files)::

    python scripts/robustness_table.py --data DIR
    python scripts/robustness_table.py --data DIR --models minivgg --folders hub/v0.1.0 hub
    python scripts/robustness_table.py --data DIR --limit 300 --json robustness.json

Without ``--data`` MNIST is read from ``$MNIST_ZOO_DATA``.

For each model and each folder root (default ``hub/v0.1.0``, the v0.1 release, then ``hub``,
the current one) it loads ``ROOT/NAME`` (a folder that does not exist is skipped, with a note),
scores the corruption suite (:func:`mnist_zoo.robustness.evaluate_corruptions`, seed 0) on the
MNIST test set in fp32, and prints one column per (model, version): clean accuracy, accuracy
under each of the 15 corruptions, their mean, and the ECE and NLL of the clean predictions
before and after temperature scaling, with the temperature. The temperature is the one the
folder's ``config.json`` records; when it records none (the v0.1 releases), one is fitted here
on the model's validation split, rebuilt from the recipe in its config (``val_size`` and
``seed``), never on the test set. Folders holding the same weights (same SHA-256) are scored
once. Every figure printed is computed by this run.

``--limit N`` scores the first N test images only: a smoke run, not a result. The full run
takes several minutes per model on a CPU.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from torch import nn

import mnist_zoo
from mnist_zoo.calibration import fit_temperature
from mnist_zoo.errors import run_command
from mnist_zoo.hub import sha256_file
from mnist_zoo.inference import stored_temperature
from mnist_zoo.pipeline import recorded_validation_split
from mnist_zoo.registry import get_model_entry
from mnist_zoo.robustness import CORRUPTIONS, evaluate_corruptions

REPO = Path(__file__).resolve().parents[1]
STUDY_MODELS = ["simplecnn", "deepercnn", "minivgg"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line.

    Args:
        argv: The arguments, without the program name; ``None`` reads ``sys.argv``.

    Returns:
        The parsed options.
    """
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", metavar="DIR", help="MNIST folder (default: $MNIST_ZOO_DATA)")
    p.add_argument("--models", nargs="+", default=STUDY_MODELS, help="registry names")
    p.add_argument("--folders", nargs="+", type=Path, default=[Path("hub/v0.1.0"), Path("hub")],
                   help="folder roots holding ROOT/NAME (default: hub/v0.1.0 hub)")  # fmt: skip
    p.add_argument("--limit", type=int, help="score the first N test images only (smoke run)")
    p.add_argument("--json", type=Path, metavar="OUT", help="also write the figures to OUT")
    args = p.parse_args(argv)
    if args.limit is not None and args.limit <= 0:
        p.error("--limit must be a positive number of images")
    return args


def temperature_for(model: nn.Module, train: mnist_zoo.MNIST) -> tuple[float | None, str]:
    """The model's temperature: its config's, else fitted on its validation split.

    Args:
        model: A model from ``load_pretrained``.
        train: MNIST's training split, out of which the recipe held the validation images.

    Returns:
        The temperature (``None`` when the recipe held out no validation split) and where it
        came from, for the table.
    """
    stored = stored_temperature(model)
    if stored is not None:
        return stored, "config.json"
    val = recorded_validation_split(model, lambda: train)
    if val is None:
        return None, "none (no validation split)"
    return fit_temperature(model, val), f"fitted here on {len(val):,} validation images"


def release_of(name: str, sha256: str, folder: Path) -> str:
    """The release tag the registry pins these weights under, else the folder's name.

    Args:
        name: Registry name.
        sha256: SHA-256 of the folder's ``model.safetensors``.
        folder: The folder, for weights no release pins.

    Returns:
        A tag such as ``v0.1.0``, or ``unpinned (FOLDER)``.
    """
    releases = getattr(get_model_entry(name), "releases", None) or {}
    tag = next((tag for tag, pin in releases.items() if pin.sha256 == sha256), None)
    return tag if tag is not None else f"unpinned ({folder})"


def score(
    folder: Path, train: mnist_zoo.MNIST, test: mnist_zoo.MNIST, limit: int | None
) -> dict[str, Any]:
    """Load ``folder`` and score the suite on the (first ``limit``) test images, in fp32.

    Args:
        folder: A Hub-layout folder.
        train: MNIST's training split, for the validation images.
        test: MNIST's test split.
        limit: Score the first ``limit`` test images only, or all of them.

    Returns:
        The version, SHA-256, temperature source and ``SuiteResult.to_dict()`` figures.
    """
    model = mnist_zoo.load_pretrained(folder, device="cpu")
    cfg = model.pretrained_cfg
    start = time.perf_counter()
    temperature, fitted = temperature_for(model, train)
    suite = evaluate_corruptions(
        model, test.images[:limit], test.targets[:limit], precision="fp32",
        temperature=temperature, seed=0,
    )  # fmt: skip
    print(f"{folder}: mean {suite.mean_accuracy:.2%} on {suite.num_images:,} images "
          f"({time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)  # fmt: skip
    return {
        "model": cfg["name"],
        "version": release_of(cfg["name"], cfg["sha256"], folder),
        "folder": str(folder),
        "sha256": cfg["sha256"],
        "temperature_source": fitted,
        **suite.to_dict(),
    }


def markdown_table(columns: list[dict[str, Any]]) -> str:
    """One column per (model, version): accuracies, their mean, calibration, temperature.

    Args:
        columns: What :func:`score` returned, one per column.

    Returns:
        The table, then one line per column saying which folder and temperature it used.
    """
    head = [f"{c['model']} {c['version']}" for c in columns]
    lines = ["| | " + " | ".join(head) + " |", "| --- |" + " ---: |" * len(columns)]

    def row(label: str, values: list[Any], fmt: str) -> None:
        cells = ["-" if v is None else format(v, fmt) for v in values]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")

    row("clean", [c["clean_accuracy"] for c in columns], ".2%")
    for name in CORRUPTIONS:
        row(name.replace("_", " "), [c["corruption_accuracy"].get(name) for c in columns], ".2%")
    row("**mean of the 15**", [c["mean_corruption_accuracy"] for c in columns], ".2%")
    row("ECE", [c["ece"] for c in columns], ".2%")
    row("ECE after temperature scaling", [c["ece_scaled"] for c in columns], ".2%")
    row("NLL (nats)", [c["nll"] for c in columns], ".4f")
    row("NLL after temperature scaling", [c["nll_scaled"] for c in columns], ".4f")
    row("temperature", [c["temperature"] for c in columns], ".3f")
    lines.append("")
    for c, label in zip(columns, head, strict=True):
        same = f"; the same weights as `{c['same_as']}`" if "same_as" in c else ""
        lines.append(f"- {label}: `{c['folder']}` (SHA-256 {c['sha256'][:12]}...), "
                     f"temperature: {c['temperature_source']}{same}")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Score every (model, folder) and print the table; 1 if no folder could be scored."""
    args = parse_args(argv)
    command = shlex.join(["python", "scripts/robustness_table.py", *(argv or sys.argv[1:])])
    train = mnist_zoo.MNIST(args.data, split="train")
    test = mnist_zoo.MNIST(args.data, split="test")
    columns: list[dict[str, Any]] = []
    scored: dict[str, dict[str, Any]] = {}  # by SHA-256: the same weights are scored once
    for name in args.models:
        for root in args.folders:
            folder = root / name
            if not (folder / "config.json").is_file():
                print(f"note: skipped {folder}: no such model folder", file=sys.stderr)
                continue
            model_sha = sha256_file(folder / "model.safetensors")
            if model_sha in scored:
                same = scored[model_sha]
                print(f"note: {folder} holds the same weights as {same['folder']}",
                      file=sys.stderr)  # fmt: skip
                columns.append({**same, "folder": str(folder), "same_as": same["folder"]})
                continue
            columns.append(score(folder, train, test, args.limit))
            scored[columns[-1]["sha256"]] = columns[-1]
    if not columns:
        print("error: no model folder found", file=sys.stderr)
        return 1
    first = columns[0]
    images = (
        f"the first {first['num_images']:,} MNIST test images (a smoke run)"
        if args.limit is not None
        else f"the {first['num_images']:,} MNIST test images"
    )
    print(f"Corruption suite on {images}, fp32, seed {first['seed']}; ECE with "
          f"{first['ece_bins']} bins. Made by `{command}`.\n")  # fmt: skip
    print(markdown_table(columns))
    if args.json is not None:
        args.json.write_text(json.dumps({"command": command, "columns": columns}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main, "robustness_table.py"))
