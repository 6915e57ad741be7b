"""Fine-tune a pretrained zoo model on a new, small digit task; compare with training from scratch.

The task is MNIST relabelled: ``parity`` (even or odd) or ``at-least-5`` (is the digit 5 or
more?), two classes the pretrained models never saw as such. The labelled images come from
the slice of MNIST's training set the published weights held back for validation (their
recipe's ``val_size`` and ``seed`` fix it), so the pretrained model has never trained on them;
the accuracy is measured on the test set, relabelled the same way.

Run from the repository root, with MNIST in the folder ``DIR`` (the four IDX files)::

    python examples/finetune.py --data DIR                          # parity, hub/simplecnn
    python examples/finetune.py --data DIR --task at-least-5 --labelled 50
    python examples/finetune.py --data DIR --model hub/minivgg --out runs/parity-minivgg
    python examples/finetune.py --data DIR --quick                  # a smoke run, seconds

Without ``--data`` MNIST is read from ``$MNIST_ZOO_DATA`` (``export MNIST_ZOO_DATA=DIR``).

Three models train for the same number of steps on the same batches, with the same optimizer:
the architecture from scratch (``create_model(NAME, num_classes=2)``), the pretrained model
with a new head and everything else frozen (a linear probe), and the pretrained model with a
new head, every layer trained (fine-tuning). ``load_pretrained(MODEL, num_classes=2)`` gives
the new head (as ``model.reset_classifier(2)`` on the loaded model would). It prints a
Markdown table of their test accuracies. ``--model`` takes a Hub-layout folder (``hub/NAME``
in a checkout) or a registry name, downloaded from the Hub; ``--out`` saves the fine-tuned
model, whose ``config.json`` records ``num_classes``, so ``load_pretrained(OUT)`` gives it
back with its two-way head. With SimpleCNN it takes well under a minute on two CPU cores.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import mnist_zoo
from mnist_zoo.errors import MnistZooError, run_command
from mnist_zoo.evaluation import evaluate_model
from mnist_zoo.training.batches import split_validation

#: The new tasks: a name -> the new label of each digit label.
TASKS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "parity": lambda digits: digits % 2,
    "at-least-5": lambda digits: (digits >= 5).long(),
}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse the command line.

    Args:
        argv: The arguments, without the program name; ``None`` reads ``sys.argv``.

    Returns:
        The parsed options.
    """
    parser = argparse.ArgumentParser(description="Fine-tune a pretrained zoo model.")
    parser.add_argument(
        "--model", default="hub/simplecnn", help="Hub folder or name (default hub/simplecnn)"
    )
    parser.add_argument("--task", choices=sorted(TASKS), default="parity")
    parser.add_argument("--labelled", type=int, default=200, help="training images (200)")
    parser.add_argument("--steps", type=int, default=100, help="optimizer steps (100)")
    parser.add_argument("--batch-size", type=int, default=32, help="images per step (32)")
    parser.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate (1e-3)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", metavar="DIR", help="MNIST folder (default: $MNIST_ZOO_DATA)")
    parser.add_argument("--out", type=Path, help="save the fine-tuned model in Hub layout here")
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 60 steps, 2,000 test images"
    )
    return parser.parse_args(argv)


def held_back_slice(train: mnist_zoo.MNIST, recipe: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """The training images the pretrained model's recipe held back for validation.

    Args:
        train: MNIST's training split.
        recipe: The pretrained model's recipe (``model.pretrained_cfg["recipe"]``).

    Returns:
        Their images (uint8) and digit labels.
    """
    _, val = split_validation(
        (train.images, train.targets), None,
        val_size=recipe.get("val_size") or 5000, seed=recipe.get("seed", 0),
    )  # fmt: skip
    return val.images, val.targets


def train_steps(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, args: argparse.Namespace
) -> float:
    """Train ``model``'s trainable parameters for ``args.steps`` AdamW steps.

    The batches are drawn with a generator seeded by ``args.seed``, so every model sees the
    same images in the same order.

    Args:
        model: The model; parameters with ``requires_grad=False`` stay as they are.
        images: The labelled images, uint8.
        labels: Their labels for the task.
        args: The command line (``steps``, ``batch_size``, ``lr``, ``seed``).

    Returns:
        The seconds it took.
    """
    start = time.perf_counter()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=args.lr)
    generator = torch.Generator().manual_seed(args.seed)
    model.train()
    for _ in range(args.steps):
        batch = torch.randint(len(images), (args.batch_size,), generator=generator)
        loss = F.cross_entropy(model(mnist_zoo.to_float_images(images[batch])), labels[batch])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start


def candidates(source: str, seed: int) -> list[tuple[str, nn.Module]]:
    """The three models to compare, each with a fresh two-way head.

    Args:
        source: What to load with ``load_pretrained``: a Hub folder or a registry name.
        seed: Seeds the new heads (the same for both pretrained models) and the model from
            scratch.

    Returns:
        ``(description, model)`` for: from scratch, linear probe, fine-tuned.
    """
    models = []
    for description in ("pretrained, head only", "pretrained, all layers"):
        torch.manual_seed(seed)
        # The backbone's weights, and a freshly initialised 2-way head in place of the
        # 10-way one: the same as load_pretrained(source) then model.reset_classifier(2).
        models.append((description, mnist_zoo.load_pretrained(source, num_classes=2)))
    probe = models[0][1]
    probe.requires_grad_(False)
    probe.get_classifier().requires_grad_(True)  # a linear probe: only the head trains
    torch.manual_seed(seed)
    scratch = mnist_zoo.create_model(probe.pretrained_cfg["architecture"], num_classes=2)
    return [("from scratch", scratch), *models]


def main(argv: Sequence[str] | None = None) -> int:
    """Build the task, train the three models, print their test accuracies as a table.

    Args:
        argv: Command-line arguments; ``None`` reads ``sys.argv``.

    Returns:
        The exit status: 0 on success, 1 when the pretrained model cannot be loaded.
    """
    args = parse_args(argv)
    if args.quick:
        args.steps = min(args.steps, 60)
    torch.set_num_threads(min(torch.get_num_threads(), 2))
    try:
        models = candidates(args.model, args.seed)
    except MnistZooError as error:
        print(f"Cannot load {args.model!r}: {error}", file=sys.stderr)
        print("From a checkout of mnist_zoo, --model hub/simplecnn loads its weights.",
              file=sys.stderr)  # fmt: skip
        return 1
    relabel = TASKS[args.task]
    pool, digits = held_back_slice(
        mnist_zoo.MNIST(args.data, split="train"), models[-1][1].pretrained_cfg["recipe"]
    )
    chosen = torch.randperm(len(pool), generator=torch.Generator().manual_seed(args.seed))
    chosen = chosen[: args.labelled]
    images, labels = pool[chosen], relabel(digits[chosen])
    test = mnist_zoo.MNIST(args.data, split="test")
    count = 2000 if args.quick else len(test)
    test_images, test_labels = test.images[:count], relabel(test.targets[:count])

    print(
        f"Task {args.task!r}: {len(images)} labelled images, {args.steps} steps of "
        f"{args.batch_size}, AdamW lr {args.lr}; accuracy on {count:,} test images.\n"
    )
    print("| model | trained parameters | seconds | test accuracy |")
    print("| --- | ---: | ---: | ---: |")
    for description, model in models:
        seconds = train_steps(model, images, labels, args)
        result = evaluate_model(model, test_images, test_labels)
        trained = mnist_zoo.count_parameters(model, trainable_only=True)
        print(f"| {description} | {trained:,} | {seconds:.1f} | {100 * result.accuracy:.2f}% |")
    if args.out is not None:
        mnist_zoo.save_pretrained(models[-1][1].eval(), args.out)
        print(
            f"\nThe fine-tuned model is in {args.out}: mnist_zoo.load_pretrained({str(args.out)!r})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main, "finetune.py"))
