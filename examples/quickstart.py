"""Load a pretrained model and classify the first 16 digits of the MNIST test set.

Run from the repository root, with MNIST in the folder ``DIR`` (the four IDX files)::

    python examples/quickstart.py --data DIR                        # minivgg's weights (Hub)
    python examples/quickstart.py --data DIR --model hub/minivgg    # this checkout's copy
    python examples/quickstart.py --data DIR --model runs/example-simplecnn --count 32

Without ``--data`` MNIST is read from ``$MNIST_ZOO_DATA`` (``export MNIST_ZOO_DATA=DIR``).

It takes a few seconds, so there is no separate quick mode. ``--model`` takes a registry name,
whose weights are downloaded from the Hugging Face Hub, or a folder in Hub layout: ``hub/NAME``
in a checkout of mnist_zoo holds the same weights, and ``mnist_zoo.save_pretrained``,
``examples/train.py`` and ``mnist-zoo train`` write such folders.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import mnist_zoo
from mnist_zoo.errors import MnistZooError, run_command


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse the command line.

    Args:
        argv: The arguments, without the program name; ``None`` reads ``sys.argv``.

    Returns:
        The parsed options.
    """
    parser = argparse.ArgumentParser(description="Classify MNIST test digits with a model.")
    parser.add_argument(
        "--model", default="minivgg", help="registry name or Hub-layout folder (default: minivgg)"
    )
    parser.add_argument("--count", type=int, default=16, help="how many test digits (default 16)")
    parser.add_argument("--data", metavar="DIR", help="MNIST folder (default: $MNIST_ZOO_DATA)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Load the model, predict ``--count`` test digits and print them beside the true labels.

    Args:
        argv: Command-line arguments; ``None`` reads ``sys.argv``.

    Returns:
        The exit status: 0 on success, 1 when the model cannot be loaded.
    """
    args = parse_args(argv)
    try:
        model = mnist_zoo.load_pretrained(args.model)
    except MnistZooError as error:
        # Say what to do next instead of dumping a traceback on a first-time user.
        print(f"Cannot load {args.model!r}: {error}", file=sys.stderr)
        print(
            "From a checkout of mnist_zoo, --model hub/minivgg loads the weights it holds; or "
            "train weights of your own with `python examples/train.py --model simplecnn` and "
            "pass the folder it writes with --model.",
            file=sys.stderr,
        )
        return 1

    test = mnist_zoo.MNIST(args.data, split="test")
    count = min(args.count, len(test))
    # MNIST stores uint8 pixels; predict() takes them as they are, 28x28 needs no preprocessing.
    images, labels = test.images[:count], test.targets[:count]
    prediction = mnist_zoo.predict(model, images)

    source = model.pretrained_cfg.get("source", args.model)
    print(f"{model.pretrained_cfg['name']} from {source}\n")
    print(f"{'index':>5}  {'true':>4}  {'predicted':>9}  {'confidence':>10}")
    for index in range(count):
        true, guess = int(labels[index]), int(prediction.labels[index])
        mark = "" if true == guess else "  <- wrong"
        confidence = 100 * float(prediction.confidence[index])
        print(f"{index:>5}  {true:>4}  {guess:>9}  {confidence:>9.1f}%{mark}")
    correct = int((prediction.labels == labels).sum())
    print(f"\n{correct} of {count} correct")
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main, "quickstart.py"))
