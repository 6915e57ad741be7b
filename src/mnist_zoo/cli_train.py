"""The ``mnist-zoo train`` command: its options, checked as they are parsed, and its run.

:mod:`mnist_zoo.cli` adds the command with :func:`add_train_parser` and runs it with
:func:`run_train`, which hands the options to :func:`mnist_zoo.pipeline.train_and_save`.
Every number and the device are checked by argparse, so a bad one is a usage error that names
the option, before any data is read; a ``--limit`` or ``--val-size`` that would leave no
training images is refused before training starts.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import InvalidArgumentError, MnistZooError

__all__ = ["add_train_parser", "recipe_overrides", "run_train"]


def _at_least(low: int) -> Callable[[str], int]:
    """An argparse type: an integer >= ``low``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be an integer >= {low}, got {value}")
        return value

    parse.__name__ = f"integer >= {low}"  # argparse names the type in its own messages
    return parse


def _positive_float(text: str) -> float:
    """An argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text}")
    return value


def _device(text: str) -> str:
    """An argparse type: a device this machine has (``auto``, ``cpu``, ``cuda[:N]``, ``mps``)."""
    if text == "auto":
        return text
    from .devices import select_device

    try:
        select_device(text)
    except MnistZooError as err:
        raise argparse.ArgumentTypeError(str(err).rstrip(".")) from None
    return text


def _check_split(
    name: str, limit: int | None, val_size: int | None, release: str | None = None
) -> None:
    """Refuse a --limit or --val-size that leaves no training images, in the command's terms."""
    from .data import SPLIT_SIZES
    from .training import get_recipe

    recipe_val_size = get_recipe(name, release).val_size
    held_out = recipe_val_size if val_size is None else val_size
    images = SPLIT_SIZES["train"] if limit is None else limit
    if held_out < images:
        return
    if limit is None:
        raise InvalidArgumentError(
            f"--val-size {held_out} leaves no training images out of MNIST's {images:,}: pass "
            f"a smaller --val-size (the recipe holds out {recipe_val_size:,})."
        )
    raise InvalidArgumentError(
        f"--limit {limit} leaves no training images after the {held_out:,}-image validation "
        f"split: pass --val-size N with N < {limit} (e.g. --val-size {max(limit // 10, 1)}), "
        "or a larger --limit."
    )


def _check_release(release: str | None) -> None:
    """Refuse an unknown --release before anything is built, naming the known ones."""
    from .training import RELEASE_RECIPES

    if release is not None and release not in RELEASE_RECIPES:
        raise InvalidArgumentError(
            f"--release {release!r} is not a release: choose one of {', '.join(RELEASE_RECIPES)}."
        )


def run_train(args: argparse.Namespace) -> int:
    """Run ``mnist-zoo train``: check the options, train, score, save, and print the summary.

    Args:
        args: What :func:`mnist_zoo.cli.build_parser` parsed for ``train``.

    Returns:
        0.

    Raises:
        InvalidArgumentError: An unknown ``--release``, or a ``--limit`` or ``--val-size``
            that leaves no training images.
        MNISTNotFoundError: No MNIST in the data folder (the caller words it in its options).
    """
    from .pipeline import train_and_save

    _check_release(args.release)
    _check_split(args.name, args.limit, args.val_size, args.release)
    run = train_and_save(
        args.name,
        data=args.data,
        download=args.download,
        out=Path(args.out or f"runs/{args.name.lower()}"),
        checkpoint_dir=args.checkpoint_dir,
        resume=args.resume,
        allow_recipe_change=args.allow_recipe_change,
        device=args.device or "auto",
        limit=args.limit,
        progress="plain" if args.no_progress else "auto",
        suite=not args.no_suite,
        release=args.release,
        **recipe_overrides(args),
    )
    print(run.summary())
    _print_calibration(run.calibration, run.metrics.get("robustness"))
    return 0


def recipe_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The recipe settings a parsed ``mnist-zoo train`` command line sets.

    Args:
        args: What ``build_parser().parse_args(["train", ...])`` returned.

    Returns:
        The settings given as options (``--epochs 1`` gives ``{"epochs": 1}``), by the name of
        the ``TrainConfig`` field; model cards name the same options (``TRAIN_OPTIONS``).
    """
    from .hub.provenance import TRAIN_OPTIONS

    given = {s: getattr(args, option[2:].replace("-", "_")) for s, option in TRAIN_OPTIONS.items()}
    return {setting: value for setting, value in given.items() if value is not None}


def _print_calibration(calibration: dict | None, suite: dict | None) -> None:
    """The train command's lines on the fitted temperature and the corruption suite."""
    if calibration is None:
        print("calibration: no validation split (--val-size 0), so no temperature was fitted.")
    else:
        test = calibration["test"]
        print(
            f"calibration: temperature {calibration['temperature']:.3f} fitted on "
            f"{calibration['fitted_on']['num_images']:,} validation images; test ECE "
            f"{100 * test['ece_before']:.2f}% before, {100 * test['ece_after']:.2f}% after"
        )
    if suite is not None:
        print(
            f"corruption suite: mean accuracy {100 * suite['mean_corruption_accuracy']:.2f}% over "
            f"{len(suite['corruption_accuracy'])} corruptions (clean "
            f"{100 * suite['clean_accuracy']:.2f}%)"
        )


def add_train_parser(sub: Any, data_help: str, download_help: str) -> argparse.ArgumentParser:
    """Add the ``train`` command and its options to ``mnist-zoo``'s sub-parsers.

    Numbers are checked as they are parsed, so a bad one is argparse's usage error naming the
    option (``--epochs: must be an integer >= 1, got -1``).

    Args:
        sub: The sub-parsers of :func:`mnist_zoo.cli.build_parser`.
        data_help: The help of ``--data``, shared with the other commands.
        download_help: The help of ``--download``.

    Returns:
        The ``train`` parser.
    """
    p = sub.add_parser("train", help="train a model with its registry recipe")
    p.add_argument("name", help="model name, see `mnist-zoo list`")
    p.add_argument("--epochs", type=_at_least(1), help="override the recipe's epochs")
    p.add_argument("--batch-size", type=_at_least(1), help="override the recipe's batch size")
    p.add_argument("--lr", type=_positive_float, help="override the recipe's (peak) learning rate")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"])
    p.add_argument("--device", type=_device, help="auto, cpu, cuda, cuda:N or mps (default: auto)")
    p.add_argument("--seed", type=int, help="override the recipe's seed")
    p.add_argument(
        "--split-seed",
        type=int,
        metavar="N",
        help="choose the validation images with this seed instead of --seed, so runs with "
        "different seeds share one split",
    )
    p.add_argument(
        "--release",
        metavar="TAG",
        help="train with the recipe of this release's weights, e.g. v0.1.0 "
        "(default: the release `load_pretrained(NAME)` loads)",
    )
    p.add_argument("--out", help="folder for the trained model in Hub layout (default: runs/NAME)")
    p.add_argument("--checkpoint-dir", help="checkpoints and history (default: OUT/checkpoints)")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoints")
    p.add_argument(
        "--allow-recipe-change",
        action="store_true",
        help="with --resume: continue with settings that differ from the checkpoint's",
    )
    p.add_argument("--data", help=data_help)
    p.add_argument("--download", action="store_true", help=download_help)
    p.add_argument("--no-progress", action="store_true", help="plain log lines, no bars")
    p.add_argument(
        "--limit", type=_at_least(1), help="train on the first N training images (smoke runs)"
    )
    p.add_argument(
        "--val-size",
        type=_at_least(0),
        help="training images held out for validation (default: the recipe's 5,000)",
    )
    p.add_argument(
        "--no-suite",
        action="store_true",
        help="skip the corruption suite after training (about a minute on a CPU; smoke runs)",
    )
    return p
