"""Predict the digit in your own pictures, and see what the model actually looks at.

Run from the repository root::

    python examples/predict_image.py examples/images/*.png --model hub/minivgg   # this checkout's
    python examples/predict_image.py my_digit.jpg --out report/predict           # minivgg (Hub)

It takes a few seconds, so there is no separate quick mode. For each picture it prints the
predicted digit with its probability and the runner-up, and writes ``OUT/<picture name>.png``
(default ``report/predict/``): the picture as given, the 28x28 image ``mnist_zoo.preprocess``
makes of it (a white digit on black, 20 px on its longer side, centred by mass, as in MNIST),
and the model's probability for each digit. Each picture should show one digit. It reads no
MNIST data. ``--model`` takes a registry name (downloaded from the Hub) or a folder in Hub
layout such as ``hub/minivgg``, which a checkout of mnist_zoo holds. Needs matplotlib
(``pip install "mnist-zoo[plot]"``); without it the script says so in one line and exits with
status 1.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

import mnist_zoo
from mnist_zoo.errors import MnistZooError, run_command

#: The one line printed instead of a traceback when the ``plot`` extra is not installed.
PLOT_EXTRA_MISSING = (
    'predict_image.py: error: the figures need matplotlib: pip install "mnist-zoo[plot]"'
)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse the command line.

    Args:
        argv: The arguments, without the program name; ``None`` reads ``sys.argv``.

    Returns:
        The parsed options.
    """
    parser = argparse.ArgumentParser(description="Predict digits in image files.")
    parser.add_argument("images", nargs="+", type=Path, help="image files (PNG, JPEG, ...)")
    parser.add_argument(
        "--model", default="minivgg", help="registry name or Hub-layout folder (default: minivgg)"
    )
    parser.add_argument(
        "--out", type=Path, default=Path("report/predict"), help="folder for the figures"
    )
    return parser.parse_args(argv)


def plot_prediction(
    path: Path, model_input: torch.Tensor, prediction: mnist_zoo.Prediction, out: Path
) -> None:
    """Draw the picture, its preprocessed 28x28 version and the class probabilities.

    Args:
        path: The picture file.
        model_input: What :func:`mnist_zoo.preprocess` made of it, (1, 28, 28).
        prediction: The model's prediction for that one image.
        out: Where to write the PNG.
    """
    import matplotlib.pyplot as plt

    picture = mnist_zoo.load_image(path)
    probs = prediction.probs[0].numpy()
    label = int(prediction.labels[0])

    fig, (before, after, bars) = plt.subplots(
        1, 3, figsize=(7.2, 2.6), gridspec_kw={"width_ratios": [1, 1, 1.6]}
    )
    before.imshow(picture, cmap="gray" if picture.mode == "L" else None)
    before.set_title(f"{path.name}\n{picture.width}x{picture.height}", fontsize=9)
    after.imshow(model_input[0].numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    after.set_title("preprocess(): 28x28", fontsize=9)
    for ax in (before, after):
        ax.set_xticks([])
        ax.set_yticks([])
    colours = ["tab:blue" if digit == label else "lightgrey" for digit in range(10)]
    bars.bar(range(10), probs, color=colours)
    bars.set_xticks(range(10))
    bars.set_ylim(0, 1)
    bars.set_xlabel("digit")
    bars.set_title(f"predicted {label} ({100 * probs[label]:.1f}%)", fontsize=9)
    bars.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    fig.savefig(out, dpi=100, bbox_inches="tight")
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    """Predict every picture on the command line and draw one figure per picture.

    Args:
        argv: Command-line arguments; ``None`` reads ``sys.argv``.

    Returns:
        The exit status: 0, or 1 when matplotlib is missing or the model or a picture could not
        be used.
    """
    args = parse_args(argv)
    try:
        import matplotlib
    except ModuleNotFoundError:
        print(PLOT_EXTRA_MISSING, file=sys.stderr)
        return 1
    matplotlib.use("Agg")  # write files, never open a window

    try:
        model = mnist_zoo.load_pretrained(args.model)
    except MnistZooError as error:
        print(f"Cannot load {args.model!r}: {error}", file=sys.stderr)
        print("From a checkout of mnist_zoo, --model hub/minivgg loads the weights it holds.",
              file=sys.stderr)  # fmt: skip
        return 1
    args.out.mkdir(parents=True, exist_ok=True)

    status = 0
    for path in args.images:
        try:
            model_input = mnist_zoo.preprocess(path)
        # One unreadable or blank picture should not stop the others.
        except (OSError, ValueError) as error:
            print(f"{path}: error: {error}", file=sys.stderr)
            status = 1
            continue
        # Already 28x28, so predict() uses it as it is: exactly the image shown in the figure.
        prediction = mnist_zoo.predict(model, model_input)
        probs = prediction.probs[0]
        first, second = probs.topk(2).indices.tolist()
        figure = args.out / f"{path.stem}.png"
        plot_prediction(path, model_input, prediction, figure)
        print(
            f"{path}: {first} ({100 * float(probs[first]):.1f}%), runner-up {second} "
            f"({100 * float(probs[second]):.1f}%); figure: {figure}"
        )
    return status


if __name__ == "__main__":
    sys.exit(run_command(main, "predict_image.py"))
