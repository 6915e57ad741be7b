"""Scoring a model on MNIST: accuracy, per-class accuracy, confusion matrix, confused pairs."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import nn

__all__ = [
    "EvaluationResult",
    "autocast_context",
    "confusion_matrix",
    "evaluate_model",
    "most_confused",
    "predict_logits",
    "to_float_images",
]

_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast_context(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """An autocast context for ``precision`` ("fp32", "bf16" or "fp16") on ``device``."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=_AUTOCAST_DTYPES[precision])


def to_float_images(images: torch.Tensor) -> torch.Tensor:
    """Images as the models take them: uint8 (MNIST's storage) scaled to float in [0, 1],
    anything else cast to float as it is."""
    return images.float().div_(255) if images.dtype == torch.uint8 else images.float()


@torch.inference_mode()
def predict_logits(
    model: nn.Module,
    images: torch.Tensor,
    *,
    batch_size: int = 1000,
    device: torch.device | str | None = None,
    precision: str = "fp32",
) -> torch.Tensor:
    """Logits (N, C) in fp32 for images (N, 1, 28, 28), uint8 or float in [0, 1].

    The model is put in eval mode for the call and its previous mode restored afterwards.
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        outputs = []
        for start in range(0, len(images), batch_size):
            batch = to_float_images(images[start : start + batch_size].to(device))
            with autocast_context(device, precision):
                outputs.append(model(batch).float())
        if not outputs:
            raise ValueError("Cannot evaluate on an empty set of images.")
        return torch.cat(outputs)
    finally:
        model.train(was_training)


def confusion_matrix(
    targets: torch.Tensor, predictions: torch.Tensor, num_classes: int = 10
) -> torch.Tensor:
    """Counts (num_classes, num_classes): row = true class, column = predicted class."""
    flat = targets.long() * num_classes + predictions.long()
    return torch.bincount(flat, minlength=num_classes**2).reshape(num_classes, num_classes)


def most_confused(confusion: torch.Tensor, k: int = 5) -> list[tuple[int, int, int]]:
    """The ``k`` most frequent mistakes as (true, predicted, count), most frequent first."""
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
    """What :func:`evaluate_model` measured. Accuracies are fractions in [0, 1]."""

    accuracy: float
    loss: float
    num_images: int
    per_class_accuracy: list[float]
    confusion: torch.Tensor
    predictions: torch.Tensor = field(repr=False)
    targets: torch.Tensor = field(repr=False)
    probabilities: torch.Tensor = field(repr=False)

    @property
    def num_errors(self) -> int:
        """Number of misclassified images."""
        return int(self.num_images - round(self.accuracy * self.num_images))

    def most_confused(self, k: int = 5) -> list[tuple[int, int, int]]:
        """The ``k`` most frequent (true, predicted, count) mistakes."""
        return most_confused(self.confusion, k)

    def errors(self) -> Iterator[int]:
        """Indices of misclassified images."""
        wrong = self.predictions != self.targets
        return iter(wrong.nonzero().flatten().tolist())

    def to_dict(self) -> dict[str, object]:
        """Plain-Python metrics, as stored in a model card's config."""
        return {
            "test_accuracy": self.accuracy,
            "test_loss": self.loss,
            "num_test_images": self.num_images,
            "per_class_accuracy": self.per_class_accuracy,
            "confused_pairs": [list(p) for p in self.most_confused(5)],
        }

    def format(self) -> str:
        """A readable report: accuracy, per-class accuracy, confusion matrix, confused pairs."""
        n = self.confusion.shape[0]
        lines = [
            f"accuracy  {100 * self.accuracy:.2f}%  "
            f"({self.num_images - self.num_errors}/{self.num_images}, {self.num_errors} errors)",
            f"loss      {self.loss:.4f}",
            "",
            "per-class accuracy",
        ]
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
) -> EvaluationResult:
    """Score ``model`` on ``images`` (N, 1, 28, 28) with integer ``targets`` (N,)."""
    if len(images) != len(targets):
        raise ValueError(f"{len(images)} images but {len(targets)} targets.")
    logits = predict_logits(
        model, images, batch_size=batch_size, device=device, precision=precision
    ).cpu()
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
    )
