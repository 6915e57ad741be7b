"""The ``mnist-zoo evaluate`` command's options and its corruption suite (``--suite corruptions``).

:mod:`mnist_zoo.cli` loads the model and the test split and hands them over; this module checks
the evaluate options, scores the MNIST-C suite with
:func:`mnist_zoo.robustness.evaluate_corruptions`, and finds the temperature the calibration
figures are scaled with: the one ``config.json`` stores, else one fitted on the model's own
validation split (rebuilt from the recipe it records), else none, with a line saying how to get
one.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .errors import InvalidArgumentError, MNISTNotFoundError

if TYPE_CHECKING:  # torch and the data module load only when the command runs
    from torch import nn

    from .data import MNIST

__all__ = [
    "SUITES",
    "add_evaluate_options",
    "check_evaluate_options",
    "limit_note",
    "run_suite",
    "suite_temperature",
]

#: The values ``--suite`` takes.
SUITES = ("corruptions",)

#: Where the temperature came from when ``config.json`` stores one.
STORED = "stored in config.json"


def add_evaluate_options(parser: argparse.ArgumentParser) -> None:
    """Add the suite, seed, limit and TTA options to the ``evaluate`` parser.

    Args:
        parser: The ``evaluate`` sub-parser.
    """
    parser.add_argument(
        "--suite",
        metavar="SUITE",
        help="report a robustness suite instead: 'corruptions' (accuracy under MNIST-C's 15 "
        "corruptions of the test set, NLL and ECE before and after temperature scaling)",
    )
    parser.add_argument(
        "--seed", type=int, help="with --suite: seed of the corrupted test sets (default: 0)"
    )
    parser.add_argument("--limit", type=int, help="score the first N test images only (smoke runs)")
    parser.add_argument(
        "--tta",
        action="store_true",
        help="test-time augmentation: average over 1-pixel shifts and 8-degree rotations",
    )


def check_evaluate_options(args: argparse.Namespace) -> None:
    """Refuse bad ``--suite``, ``--seed`` and ``--limit`` values before any model is loaded.

    Args:
        args: The parsed ``evaluate`` options.

    Raises:
        InvalidArgumentError: An unknown suite, a negative seed or one without ``--suite``,
            or a limit below 1.
    """
    if args.suite is not None and args.suite not in SUITES:
        raise InvalidArgumentError(
            f"--suite {args.suite!r} is not a suite: use --suite {' or '.join(SUITES)}."
        )
    if args.seed is not None and args.suite is None:
        raise InvalidArgumentError(
            "--seed sets the seed of the corrupted test sets: add --suite corruptions."
        )
    if args.seed is not None and args.seed < 0:
        raise InvalidArgumentError(f"--seed must be 0 or more, got {args.seed}.")
    if args.limit is not None and args.limit < 1:
        raise InvalidArgumentError(
            f"--limit must be a positive number of test images, got {args.limit}."
        )


def limit_note(limit: int | None, total: int) -> str:
    """How many test images are scored, as the output's header says it.

    Args:
        limit: The ``--limit`` value, or ``None``.
        total: The test split's size.

    Returns:
        E.g. ``"10,000 images"`` or ``"the first 500 of 10,000 images: --limit 500, a smoke
        run"``.
    """
    if limit is None or limit >= total:
        return f"{total:,} images"
    return f"the first {limit:,} of {total:,} images: --limit {limit}, a smoke run"


def _fitted_temperature(
    model: nn.Module, load_train: Callable[[], MNIST], args: argparse.Namespace
) -> tuple[float | None, str]:
    """A temperature fitted on the model's validation split, or None and why not."""
    from .calibration import fit_temperature
    from .inference import TTAModel
    from .pipeline import recorded_validation_split

    try:
        val = recorded_validation_split(model, load_train)
    except MNISTNotFoundError:
        return None, (
            "none: the training split, which the validation split is carved from, is not in "
            "the data folder; pass --data DIR with all four MNIST files to fit one"
        )
    if val is None:
        return None, (
            "none: the model records no validation split to fit one on (its config.json has "
            "no temperature, and no recipe with val_size and seed)"
        )
    scored = TTAModel(model) if args.tta else model
    temperature = fit_temperature(scored, val, precision=args.precision)
    return temperature, f"fitted on the validation split, {len(val)} images"


def suite_temperature(
    model: nn.Module, load_train: Callable[[], MNIST], args: argparse.Namespace
) -> tuple[float | None, str]:
    """The temperature for the suite's scaled figures, and a sentence saying where it came from.

    Args:
        model: The loaded model.
        load_train: Loads the training split (raising ``MNISTNotFoundError`` without it).
        args: The parsed ``evaluate`` options (``--tta`` and ``--precision`` are used).

    Returns:
        ``(temperature, source)``: ``source`` is ``"stored in config.json"``, ``"fitted on the
        validation split, N images"``, or a sentence starting ``"none: "`` that says how to
        get one.
    """
    from .inference import stored_temperature

    stored = stored_temperature(model)
    if stored is not None:
        return stored, STORED
    return _fitted_temperature(model, load_train, args)


def run_suite(
    args: argparse.Namespace, model: nn.Module, test: MNIST, load_train: Callable[[], MNIST]
) -> int:
    """Score ``model`` on the corruption suite and print the figures (text or ``--json``).

    Args:
        args: The parsed ``evaluate`` options.
        model: The loaded model, on its device.
        test: The MNIST test split.
        load_train: Loads the training split, for fitting a temperature on validation images.

    Returns:
        0, the command's exit status.
    """
    from .robustness import evaluate_corruptions

    limit = len(test) if args.limit is None else args.limit
    temperature, source = suite_temperature(model, load_train, args)
    result = evaluate_corruptions(
        model,
        test.images[:limit],
        test.targets[:limit],
        seed=0 if args.seed is None else args.seed,
        precision=args.precision,
        temperature=temperature,
        tta=args.tta,
    )
    if args.json:
        figures: dict[str, Any] = {
            "model": args.model,
            **result.to_dict(),
            "temperature_source": source,
            "precision": args.precision,
            "limit": args.limit,
        }
        print(json.dumps(figures, indent=2))
        return 0
    print(
        f"{args.model} on the MNIST-C corruption suite, made from the MNIST test set "
        f"({limit_note(args.limit, len(test))})\n"
        f"precision {args.precision}, tta: {'true' if args.tta else 'false'}\n"
    )
    print(result.format())
    print(f"temperature: {source}")
    return 0
