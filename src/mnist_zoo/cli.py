"""The ``mnist-zoo`` command line: list, check-data, train, evaluate, predict, export, serve, push.

Run ``mnist-zoo COMMAND --help`` for each command's options. Every error the package raises on
purpose (a :class:`mnist_zoo.errors.MnistZooError`) and every ``OSError`` ends the command with
one line on standard error, ``mnist-zoo: error: ...``, and exit status 2 when the input was
wrong or 1 when an operation failed. Messages name the command's own options (``--data``,
``--model``), not the Python arguments behind them.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import (
    EnsembleFolderError,
    HubUnavailableError,
    MNISTNotFoundError,
    MnistZooError,
    exit_status,
    one_line,
    run_command,
)

if TYPE_CHECKING:  # the data module (and torch) load only when a command needs them
    from torch import nn

    from .data import MNIST

__all__ = ["build_parser", "main"]

_DATA_HINT = (
    "pass --data DIR (a folder with the four MNIST IDX files), set $MNIST_ZOO_DATA, "
    "or add --download"
)
_CHECK_DATA_HINT = (
    "pass the folder with the four MNIST IDX files (mnist-zoo check-data DIR), set "
    "$MNIST_ZOO_DATA, or add --download"
)


def _cmd_list(args: argparse.Namespace) -> int:
    from .registry import get_model_entry, list_models, model_info

    names = list_models(args.pattern)
    if not names:
        print(f"No model matches {args.pattern!r}.", file=sys.stderr)
        return 1
    print(f"{'model':<12}{'parameters':>12}  {'pretrained':<11}description")
    releases = []
    for name in names:
        info = model_info(name)
        entry = get_model_entry(name)
        pre = _accuracy_of(entry.pretrained) or ("yes" if entry.pretrained else "-")
        print(f"{name:<12}{info['parameters']:>12,}  {pre:<11}{info['description']}")
        for tag, pin in entry.releases.items():
            default = "  (default)" if tag == entry.default_release else ""
            releases.append(f"{name:<12}{tag:<10}{_accuracy_of(pin) or '-':>7}{default}")
    if releases:
        print("\npinned releases (load one as NAME@TAG, e.g. minivgg@v0.1.0):")
        print("\n".join(releases))
    return 0


def _accuracy_of(pin: Any) -> str:
    acc = pin.metrics.get("test_accuracy") if pin is not None else None
    return f"{100 * acc:.2f}%" if acc else ""


def _cmd_check_data(args: argparse.Namespace) -> int:
    from .data import check_mnist, download_mnist, require_mnist

    if args.download:
        download_mnist(args.root)
    try:
        root = require_mnist(args.root)
    except MNISTNotFoundError as err:
        # Nothing to check: one line in this command's terms, not a table of checks not run.
        raise _missing_data(err, _CHECK_DATA_HINT) from None
    report = check_mnist(root)
    print(report.format())
    return 0 if report.passed else 1


def _missing_data(err: MNISTNotFoundError, hint: str = _DATA_HINT) -> MNISTNotFoundError:
    """``err`` retold with this command's options instead of Python arguments."""
    return MNISTNotFoundError(err.retold(hint), root=err.root, missing=err.missing)


def _load_split(root: str | None, split: str, download: bool = False) -> MNIST:
    """One MNIST split, with a missing-files error that names this command's options."""
    from .data import MNIST

    try:
        return MNIST(root, split=split, download=download)
    except MNISTNotFoundError as err:
        raise _missing_data(err) from err


def _load_model(name: str, device: str, instead: str) -> nn.Module:
    """A pretrained model by name or folder; an unreachable Hub's error says what to do."""
    from .devices import select_device
    from .hub import load_pretrained
    from .hub.reading import ensemble_of

    resolved = select_device(device)  # an absent device is one clear line, not an assertion
    try:
        return load_pretrained(name, device=resolved)
    except EnsembleFolderError as err:
        raise EnsembleFolderError(
            f"{name} describes the {ensemble_of(err.members)} and holds no weights of its own: "
            "run `mnist-zoo evaluate ensemble` (it needs the published Hub repos), or evaluate "
            "the members' folders one by one.",
            members=err.members,
        ) from err
    except HubUnavailableError as err:
        # "hf-hub:owner/minivgg@v1" and "minivgg" both suggest the checkout's hub/minivgg; a
        # pinned tag, "minivgg@v0.1.0", its archived copy hub/v0.1.0/minivgg.
        base, _, tag = name.partition("@")
        folder = f"hub/{Path(base).name.lower()}"
        if tag and not base.startswith("hf-hub:"):
            folder = f"hub/{tag}/{Path(base).name.lower()}"
        # The Python advice (cache_dir=, load_pretrained(...)) is replaced by the CLI's own.
        what = str(err).split(" To work offline")[0]
        raise HubUnavailableError(
            f"{what} Load it once with network access (this fills the cache), or "
            f"{instead.format(folder=folder)} (a folder in Hub layout: a checkout of mnist_zoo "
            "has hub/NAME, and `mnist-zoo train` writes one)."
        ) from err


def _cmd_train(args: argparse.Namespace) -> int:
    from .cli_train import run_train

    try:
        return run_train(args)
    except MNISTNotFoundError as err:
        raise _missing_data(err) from err


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from .cli_evaluate import check_evaluate_options, limit_note, run_suite
    from .evaluation import evaluate_model

    check_evaluate_options(args)
    model = _load_model(
        args.model,
        args.device,
        "pass a folder instead of the name, e.g. `mnist-zoo evaluate {folder}`",
    )
    test = _load_split(args.data, "test", args.download)
    if args.suite is not None:
        return run_suite(args, model, test, lambda: _load_split(args.data, "train", args.download))
    n = len(test) if args.limit is None else args.limit
    result = evaluate_model(
        model, test.images[:n], test.targets[:n], precision=args.precision, tta=args.tta
    )
    if args.json:
        print(json.dumps({**result.to_dict(), "tta": args.tta}, indent=2))
    else:
        tta = "; tta: true" if args.tta else ""
        print(f"{args.model} on the MNIST test set ({limit_note(args.limit, len(test))}{tta})\n")
        print(result.format())
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from .inference import predict

    model = _load_model(args.model, args.device, "pass --model DIR, e.g. --model {folder}")
    status = 0
    for path in args.images:
        try:
            pred = predict(model, path, tta=args.tta)
        except (MnistZooError, OSError) as err:
            # One bad picture does not stop the others; each gets its own line.
            print(f"mnist-zoo: error: {path}: {one_line(err)}", file=sys.stderr)
            status = max(status, exit_status(err))
            continue
        print(f"{path}: {int(pred.labels[0])} ({100 * float(pred.probs[0].max()):.1f}%)")
    return status


def _cmd_push(args: argparse.Namespace) -> int:
    from .hub.push import push_to_hub, release_of

    folder = Path(args.folder or f"hub/{args.name}")
    tag = None if args.no_tag else args.tag or release_of(folder)
    url = push_to_hub(folder, args.repo_id, token=args.token, commit_message=args.message, tag=tag)
    print(f"Pushed {folder} to {args.repo_id}{f', tagged {tag}' if tag else ''}: {url}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from .export import ATOL, RTOL, export

    model = _load_model(
        args.model, "cpu", "pass a folder instead of the name, e.g. `mnist-zoo export {folder}`"
    )
    out = Path(args.out or f"{Path(args.model).name.lower()}.{args.format or 'onnx'}")
    path = export(model, out, args.format, opset=args.opset, check=not args.no_check)
    checked = (
        f"checked: logits within {ATOL:g} + {RTOL:g} * |logit| of PyTorch's, same labels"
        if not args.no_check
        else "not checked (--no-check)"
    )
    print(f"Wrote {path} ({path.stat().st_size:,} bytes, dynamic batch axis); {checked}.")
    return 0


def _add_export_parser(sub: Any) -> None:
    """The ``export`` command's options."""
    p = sub.add_parser("export", help="export a model to ONNX or torch.export (.pt2)")
    p.add_argument("model", metavar="NAME_OR_DIR", help="pretrained model name or Hub folder")
    p.add_argument("--format", choices=["onnx", "pt2"], help="default: --out's extension, or onnx")
    p.add_argument("--out", help="the file to write (default: NAME.FORMAT here)")
    p.add_argument("--opset", type=int, help="ONNX opset (default: the exporter's)")
    p.add_argument(
        "--no-check", action="store_true", help="skip running the file against PyTorch's logits"
    )
    p.set_defaults(func=_cmd_export)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``mnist-zoo`` (exposed for the docs and for tests).

    Returns:
        The parser, with one sub-parser per command; each sets ``func`` to its handler.
    """
    from ._version import __version__

    parser = argparse.ArgumentParser(prog="mnist-zoo", description="A PyTorch model zoo for MNIST.")
    parser.add_argument("--version", action="version", version=f"mnist-zoo {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    data_help = "folder with the MNIST IDX files (default: $MNIST_ZOO_DATA)"
    download_help = "download MNIST into the data folder if it is missing"

    p = sub.add_parser(
        "list", help="list the models with their parameter counts and pinned releases"
    )
    p.add_argument("pattern", nargs="?", default="*", help="fnmatch pattern, e.g. '*cnn'")
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser("check-data", help="run the study's data checks on an MNIST folder")
    p.add_argument("root", nargs="?", default=None, help=data_help)
    p.add_argument("--download", action="store_true", help=download_help)
    p.set_defaults(func=_cmd_check_data)

    from .cli_train import add_train_parser

    add_train_parser(sub, data_help, download_help).set_defaults(func=_cmd_train)

    from .cli_evaluate import add_evaluate_options

    p = sub.add_parser("evaluate", help="score a model on the MNIST test set")
    p.add_argument("model", metavar="NAME_OR_DIR", help="pretrained model name or Hub folder")
    p.add_argument("--data", help=data_help)
    p.add_argument("--download", action="store_true", help=download_help)
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    add_evaluate_options(p)
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("predict", help="predict the digit in image files")
    p.add_argument("images", nargs="+", help="image files (PNG, JPEG, ...)")
    p.add_argument("--model", default="minivgg", help="name or Hub-layout folder")
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--tta", action="store_true", help="average over 1-pixel shifts and 8-degree rotations"
    )
    p.set_defaults(func=_cmd_predict)

    _add_export_parser(sub)

    from .serve import add_serve_parser

    add_serve_parser(sub)

    p = sub.add_parser("push", help="upload hub/NAME to the Hugging Face Hub")
    p.add_argument("name", help="model name; uploads hub/NAME unless --folder is given")
    p.add_argument("--repo-id", required=True, help="OWNER/NAME on the Hub")
    p.add_argument("--folder", help="folder to upload (default: hub/NAME)")
    p.add_argument("--token", help="Hub token (default: the logged-in one)")
    p.add_argument("--message", default="Upload mnist_zoo weights", help="commit message")
    tagging = p.add_mutually_exclusive_group()
    tagging.add_argument(
        "--tag",
        help="tag the new commit (default: the release whose pinned weights the folder holds, "
        "e.g. v0.3.0 for hub/minivgg; none for other weights)",
    )
    tagging.add_argument("--no-tag", action="store_true", help="tag nothing")
    p.set_defaults(func=_cmd_push)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``mnist-zoo``; returns the exit status.

    Args:
        argv: The arguments without the program name; ``None`` reads ``sys.argv``.

    Returns:
        0 on success; 1 when an operation failed (a data check, the Hub, a download, the
        disk); 2 for bad input (an unknown model, missing files, a bad option value, also
        argparse's own usage errors); 130 when interrupted. Errors are one line on standard
        error (see :func:`mnist_zoo.errors.run_command`); an exception the package did not
        raise on purpose (a bug) keeps its traceback.
    """
    args = build_parser().parse_args(argv)
    # Each command words missing data in its own options (check-data has no --data).
    return run_command(lambda: args.func(args), "mnist-zoo", data_option=None)


if __name__ == "__main__":
    sys.exit(main())
