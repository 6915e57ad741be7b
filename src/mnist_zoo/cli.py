"""The ``mnist-zoo`` command line: list, check-data, train, evaluate, predict, push.

Run ``mnist-zoo COMMAND --help`` for each command's options.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the data module (and torch) load only when a command needs them
    from .data import MNIST

__all__ = ["HUB_OWNER", "build_parser", "main"]

#: The Hub account that publishes this project's weights.
HUB_OWNER = "mnist-zoo"


def _cmd_list(args: argparse.Namespace) -> int:
    from .registry import get_model_entry, list_models, model_info

    names = list_models(args.pattern)
    if not names:
        print(f"No model matches {args.pattern!r}.", file=sys.stderr)
        return 1
    print(f"{'model':<12}{'parameters':>12}  {'pretrained':<11}description")
    for name in names:
        info = model_info(name)
        weights = get_model_entry(name).pretrained
        acc = weights.metrics.get("test_accuracy") if weights else None
        pre = f"{100 * acc:.2f}%" if acc else ("yes" if weights else "-")
        print(f"{name:<12}{info['parameters']:>12,}  {pre:<11}{info['description']}")
    return 0


def _cmd_check_data(args: argparse.Namespace) -> int:
    from .data import check_mnist

    report = check_mnist(args.root)
    print(report.format())
    return 0 if report.passed else 1


def _load_split(root: str | None, split: str, download: bool = False) -> MNIST:
    from .data import MNIST

    return MNIST(root, split=split, download=download)


def _cmd_train(args: argparse.Namespace) -> int:
    from .evaluation import evaluate_model
    from .hub import save_pretrained
    from .registry import get_model_entry
    from .training import Trainer

    entry = get_model_entry(args.name)
    out = Path(args.out or f"runs/{entry.name}")
    train = _load_split(args.data, "train", args.download)
    test = _load_split(args.data, "test")
    if args.limit is not None:
        from torch.utils.data import Subset

        train = Subset(train, range(min(args.limit, len(train))))
    overrides = {
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "precision": args.precision,
        "device": args.device,
        "seed": args.seed,
    }
    trainer = Trainer.from_recipe(
        entry.name,
        checkpoint_dir=Path(args.checkpoint_dir) if args.checkpoint_dir else out / "checkpoints",
        resume=args.resume,
        progress="plain" if args.no_progress else "auto",
        **{k: v for k, v in overrides.items() if v is not None},
    )
    start = time.perf_counter()
    history = trainer.fit(train)
    wall = time.perf_counter() - start
    # The test set is scored once, after training; nothing above looked at it.
    result = evaluate_model(trainer.model, test.images, test.targets, device=trainer.device)
    metrics = result.to_dict()
    metrics.update(
        val_accuracy=history.rows[-1].get("val_acc", float("nan")),
        epochs_trained=len(history),
        # Summed over epochs from the history, so a resumed run still counts all of them.
        train_time_s=round(sum(history["epoch_time_s"]), 1),
    )
    save_pretrained(
        trainer.model.cpu(),
        out,
        name=entry.name,
        model_kwargs=trainer.model_kwargs,
        recipe=trainer.config(),
        metrics=metrics,
        repo_id=entry.pretrained.repo_id if entry.pretrained else f"{HUB_OWNER}/{entry.name}",
    )
    print(
        f"{entry.name}: test accuracy {100 * result.accuracy:.2f}% after {len(history)} epochs; "
        f"training {metrics['train_time_s'] / 60:.1f} min over all epochs, this run's wall time "
        f"{wall / 60:.1f} min. Weights in {out}/"
    )
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluation import evaluate_model
    from .hub import load_pretrained

    model = load_pretrained(args.model, device=args.device)
    test = _load_split(args.data, "test")
    result = evaluate_model(model, test.images, test.targets, precision=args.precision)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print(f"{args.model} on the MNIST test set ({result.num_images} images)\n")
        print(result.format())
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from .hub import load_pretrained
    from .inference import predict

    model = load_pretrained(args.model, device=args.device)
    status = 0
    for path in args.images:
        try:
            pred = predict(model, path)
        except (OSError, ValueError) as err:
            print(f"{path}: error: {err}", file=sys.stderr)
            status = 1
            continue
        print(f"{path}: {int(pred.labels[0])} ({100 * float(pred.probs[0].max()):.1f}%)")
    return status


def _cmd_push(args: argparse.Namespace) -> int:
    from .hub import push_to_hub

    folder = Path(args.folder or f"hub/{args.name}")
    url = push_to_hub(
        folder, args.repo_id, token=args.token, commit_message=args.message, tag=args.tag
    )
    print(f"Pushed {folder} to {args.repo_id}: {url}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``mnist-zoo`` (exposed for the docs and for tests)."""
    from . import __version__

    parser = argparse.ArgumentParser(prog="mnist-zoo", description="A PyTorch model zoo for MNIST.")
    parser.add_argument("--version", action="version", version=f"mnist-zoo {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    data_help = "folder with the MNIST IDX files (default: $MNIST_ZOO_DATA)"

    p = sub.add_parser("list", help="list the models with their parameter counts")
    p.add_argument("pattern", nargs="?", default="*", help="fnmatch pattern, e.g. '*cnn'")
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser("check-data", help="run the study's data checks on an MNIST folder")
    p.add_argument("root", nargs="?", default=None, help=data_help)
    p.set_defaults(func=_cmd_check_data)

    p = sub.add_parser("train", help="train a model with its registry recipe")
    p.add_argument("name", help="model name, see `mnist-zoo list`")
    p.add_argument("--epochs", type=int, help="override the recipe's epochs")
    p.add_argument("--batch-size", type=int, help="override the recipe's batch size")
    p.add_argument("--lr", type=float, help="override the recipe's (peak) learning rate")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"])
    p.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps (default: auto)")
    p.add_argument("--seed", type=int, help="override the recipe's seed")
    p.add_argument("--out", help="folder for the trained model in Hub layout (default: runs/NAME)")
    p.add_argument("--checkpoint-dir", help="checkpoints and history (default: OUT/checkpoints)")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoints")
    p.add_argument("--data", help=data_help)
    p.add_argument("--download", action="store_true", help="download MNIST if missing")
    p.add_argument("--no-progress", action="store_true", help="plain log lines, no bars")
    p.add_argument("--limit", type=int, help="train on the first N training images (smoke runs)")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("evaluate", help="score a model on the MNIST test set")
    p.add_argument("model", help="pretrained model name or a folder in Hub layout")
    p.add_argument("--data", help=data_help)
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("predict", help="predict the digit in image files")
    p.add_argument("images", nargs="+", help="image files (PNG, JPEG, ...)")
    p.add_argument("--model", default="minivgg", help="name or Hub-layout folder")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser("push", help="upload hub/NAME to the Hugging Face Hub")
    p.add_argument("name", help="model name; uploads hub/NAME unless --folder is given")
    p.add_argument("--repo-id", required=True, help="OWNER/NAME on the Hub")
    p.add_argument("--folder", help="folder to upload (default: hub/NAME)")
    p.add_argument("--token", help="Hub token (default: the logged-in one)")
    p.add_argument("--message", default="Upload mnist_zoo weights", help="commit message")
    p.add_argument(
        "--tag", default=f"v{__version__}", help="tag the new commit (default: %(default)s)"
    )
    p.set_defaults(func=_cmd_push)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``mnist-zoo``; returns the exit status.

    Expected failures (bad names, missing files, bad data) print one clear line, no traceback.
    """
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (KeyError, ValueError, OSError, RuntimeError, TypeError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"mnist-zoo {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
