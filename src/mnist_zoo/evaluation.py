"""Scoring a model on MNIST: accuracy, per-class accuracy, confusion matrix, confused pairs.

```python
import mnist_zoo
test = mnist_zoo.MNIST(split="test")
result = mnist_zoo.evaluate_model(model, test.images, test.targets)
print(result.format())            # accuracy, per-class accuracy, confusion matrix
result.to_dict()["test_accuracy"]
```

The model runs through :func:`mnist_zoo.inference.batched.batched_logits`, the primitive
:func:`mnist_zoo.predict` uses too. ``evaluate_model(..., tta=True)`` scores the probabilities
averaged over the test-time augmentation views of :mod:`mnist_zoo.inference.tta`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import nn

# autocast_context lives in devices now; re-exported for code that imported it from here.
from .devices import autocast_context
from .errors import InvalidArgumentError
from .inference.batched import batched_logits
from .inference.preprocessing import check_pixels
from .inference.tta import TTAModel

__all__ = [
    "EvaluationResult",
    "autocast_context",
    "check_logits",
    "check_targets",
    "confusion_matrix",
    "evaluate_model",
    "most_confused",
    "result_from_logits",
]


def confusion_matrix(
    targets: torch.Tensor, predictions: torch.Tensor, num_classes: int = 10
) -> torch.Tensor:
    """Count how often each true class was predicted as each class.

    Args:
        targets: (N,) true class indices.
        predictions: (N,) predicted class indices.
        num_classes: The number of classes C.

    Returns:
        (C, C) int64 counts: row = true class, column = predicted class.
    """
    flat = targets.long() * num_classes + predictions.long()
    return torch.bincount(flat, minlength=num_classes**2).reshape(num_classes, num_classes)


def most_confused(confusion: torch.Tensor, k: int = 5) -> list[tuple[int, int, int]]:
    """The most frequent mistakes in a confusion matrix.

    Args:
        confusion: (C, C) counts as :func:`confusion_matrix` returns them.
        k: How many pairs to return at most.

    Returns:
        Up to ``k`` tuples (true, predicted, count), most frequent first; pairs never
        confused are left out.
    """
    off = confusion.clone()
    off.fill_diagonal_(0)
    counts, flat = off.flatten().sort(descending=True)
    n = off.shape[0]
    return [
        (int(i) // n, int(i) % n, int(c))
        for c, i in zip(counts.tolist(), flat.tolist(), strict=True)
        if c > 0
    ][:k]


@dataclass
class EvaluationResult:
    """What :func:`evaluate_model` measured. Accuracies are fractions in [0, 1].

    Attributes:
        accuracy: The fraction of images classified right.
        loss: The mean cross-entropy of the logits.
        num_images: How many images were scored.
        per_class_accuracy: The accuracy on each true class, in class order.
        confusion: (C, C) counts, row = true class, column = predicted class.
        predictions: (N,) predicted class per image.
        targets: (N,) true class per image.
        probabilities: (N, C) softmax probabilities per image.
        tta: Whether the probabilities were averaged over test-time augmentation views.
    """

    accuracy: float
    loss: float
    num_images: int
    per_class_accuracy: list[float]
    confusion: torch.Tensor
    predictions: torch.Tensor = field(repr=False)
    targets: torch.Tensor = field(repr=False)
    probabilities: torch.Tensor = field(repr=False)
    tta: bool = False

    @property
    def num_errors(self) -> int:
        """Number of misclassified images."""
        return int(self.num_images - round(self.accuracy * self.num_images))

    def most_confused(self, k: int = 5) -> list[tuple[int, int, int]]:
        """The most frequent mistakes (see :func:`most_confused`).

        Args:
            k: How many pairs to return at most.

        Returns:
            Up to ``k`` tuples (true, predicted, count), most frequent first.
        """
        return most_confused(self.confusion, k)

    def errors(self) -> Iterator[int]:
        """The misclassified images.

        Returns:
            An iterator over their indices, in increasing order.
        """
        wrong = self.predictions != self.targets
        return iter(wrong.nonzero().flatten().tolist())

    def to_dict(self) -> dict[str, object]:
        """Plain-Python metrics, as stored in a model card's config.

        Returns:
            ``test_accuracy``, ``test_loss``, ``num_test_images``, ``per_class_accuracy`` and
            ``confused_pairs`` (the five most frequent, as [true, predicted, count] lists);
            also ``tta: True`` when the figures are test-time augmented, so they are never
            taken for a plain evaluation's.
        """
        metrics: dict[str, object] = {
            "test_accuracy": self.accuracy,
            "test_loss": self.loss,
            "num_test_images": self.num_images,
            "per_class_accuracy": self.per_class_accuracy,
            "confused_pairs": [list(p) for p in self.most_confused(5)],
        }
        if self.tta:
            metrics["tta"] = True
        return metrics

    def format(self) -> str:
        """A readable report: accuracy, per-class accuracy, confusion matrix, confused pairs.

        A line ``tta  true`` follows the loss when the figures are test-time augmented.

        Returns:
            The report, lines separated by newlines.
        """
        n = self.confusion.shape[0]
        lines = [
            f"accuracy  {100 * self.accuracy:.2f}%  "
            f"({self.num_images - self.num_errors}/{self.num_images}, {self.num_errors} errors)",
            f"loss      {self.loss:.4f}",
        ]
        if self.tta:
            lines.append("tta       true (probabilities averaged over shifted and rotated views)")
        lines += ["", "per-class accuracy"]
        for c, acc in enumerate(self.per_class_accuracy):
            lines.append(f"  {c}  {100 * acc:6.2f}%  ({int(self.confusion[c].sum())} images)")
        lines += ["", "confusion matrix (rows: true, columns: predicted)"]
        lines.append("     " + "".join(f"{c:>6}" for c in range(n)))
        for c in range(n):
            lines.append(f"  {c}  " + "".join(f"{int(v):>6}" for v in self.confusion[c]))
        lines += ["", "most confused pairs (true -> predicted: count)"]
        lines += [f"  {t} -> {p}: {k}" for t, p, k in self.most_confused(5)] or ["  none"]
        return "\n".join(lines)


def evaluate_model(
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor,
    *,
    batch_size: int = 1000,
    device: torch.device | str | None = None,
    precision: str = "fp32",
    tta: bool = False,
) -> EvaluationResult:
    """Score ``model`` on labelled images.

    The model runs in eval mode, each submodule's training flag restored afterwards (see
    :func:`mnist_zoo.inference.batched.batched_logits`).

    Args:
        model: A classifier taking (N, 1, 28, 28) float images in [0, 1], returning logits.
            It is not moved: it must already be on ``device``.
        images: (N, 1, 28, 28) images, uint8 0-255 (as :class:`mnist_zoo.MNIST` stores them)
            or float in [0, 1].
        targets: (N,) integer class labels.
        batch_size: How many images go through the model at once.
        device: Where to run; defaults to the device of the model's parameters.
        precision: ``"fp32"``, ``"bf16"`` or ``"fp16"`` (autocast).
        tta: Average the probabilities over the views of
            :data:`mnist_zoo.inference.tta.TTA_VIEWS` (shifts and small rotations, no flips);
            the loss is then the cross-entropy of the averaged probabilities.

    Returns:
        The metrics, with the predictions and probabilities per image (on the CPU).

    Raises:
        InvalidArgumentError: ``images`` and ``targets`` differ in length, there are no
            images, a target is not a class of the model (see :func:`check_targets`),
            ``batch_size`` is not a positive integer, or the model does not return
            (N, classes) logits (a ``ValueError``).
        ImageError: Float images with values outside [0, 1], NaN or infinity (a
            ``ValueError``): a score of them would mean nothing.
        TypeError: Integer images other than uint8.
    """
    if len(images) != len(targets):
        raise InvalidArgumentError(f"{len(images)} images but {len(targets)} targets.")
    check_pixels(images)
    check_targets(targets, getattr(model, "num_classes", None))  # before the model runs
    logits = batched_logits(
        TTAModel(model) if tta else model,
        images,
        batch_size=batch_size,
        device=device,
        precision=precision,
    ).cpu()
    return result_from_logits(logits, targets, tta=tta)


def check_targets(targets: torch.Tensor, num_classes: int | None = None) -> None:
    """Refuse labels that are not class indices, which would train or score silently wrong.

    Args:
        targets: (N,) class labels.
        num_classes: How many classes there are; ``None`` checks only that the labels are
            integers of at least 0.

    Raises:
        InvalidArgumentError: A float or bool dtype (3.7 would be read as class 3), or a label
            below 0 or not below ``num_classes`` (a ``ValueError``).
    """
    if targets.is_floating_point() or targets.is_complex() or targets.dtype == torch.bool:
        raise InvalidArgumentError(
            f"Targets must be integer class labels, got {targets.dtype}: convert whole-number "
            "labels with .long()."
        )
    if targets.numel() == 0:
        return
    low, high = int(targets.min()), int(targets.max())
    if low < 0 or (num_classes is not None and high >= num_classes):
        allowed = f"0 to {num_classes - 1}" if num_classes is not None else "0 or more"
        raise InvalidArgumentError(
            f"Targets must be class labels {allowed}, got labels from {low} to {high}."
        )


def check_logits(logits: torch.Tensor, rows: int, name: str = "logits") -> torch.Tensor:
    """``logits`` on the CPU, once it is known to hold one row of class scores per image.

    Args:
        logits: Logits computed elsewhere, expected (rows, C).
        rows: How many images they must be of.
        name: The argument's name, for the message.

    Returns:
        ``logits``, detached, on the CPU.

    Raises:
        InvalidArgumentError: ``logits`` is not 2-D with ``rows`` rows.
    """
    if logits.ndim != 2 or len(logits) != rows:
        raise InvalidArgumentError(
            f"{name} of shape {tuple(logits.shape)} for {rows} images: expected ({rows}, C), "
            "one row of class scores per image."
        )
    return logits.detach().cpu()


def result_from_logits(
    logits: torch.Tensor, targets: torch.Tensor, *, tta: bool = False
) -> EvaluationResult:
    """The metrics of logits already computed, as :func:`evaluate_model` reports them.

    Args:
        logits: (N, C) logits (or log-probabilities) of N images.
        targets: (N,) integer class labels.
        tta: Whether the logits came from test-time augmentation (recorded in the result).

    Returns:
        The metrics, with the predictions and probabilities per image (on the CPU).

    Raises:
        InvalidArgumentError: ``logits`` is not (N, C) for the N targets, or a target is not
            one of the C classes (see :func:`check_targets`).
    """
    logits = check_logits(logits, len(targets))
    check_targets(targets, logits.shape[1])
    targets = targets.cpu().long()
    num_classes = logits.shape[1]
    predictions = logits.argmax(1)
    confusion = confusion_matrix(targets, predictions, num_classes)
    per_class = (confusion.diag().double() / confusion.sum(1).clamp(min=1).double()).tolist()
    return EvaluationResult(
        accuracy=float((predictions == targets).double().mean()),
        loss=float(nn.functional.cross_entropy(logits, targets)),
        num_images=len(targets),
        per_class_accuracy=per_class,
        confusion=confusion,
        predictions=predictions,
        targets=targets,
        probabilities=logits.softmax(1),
        tta=bool(tta),
    )
