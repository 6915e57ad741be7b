"""The corruption suite: MNIST-C's corrupted test sets, and a model's accuracy on each of them.

```python
import mnist_zoo
from mnist_zoo.robustness import corrupted_test_set, evaluate_corruptions

test = mnist_zoo.MNIST(split="test")
fogged, labels = corrupted_test_set(test.images, test.targets, "fog", seed=0)
result = evaluate_corruptions(model, test.images, test.targets)
result.mean_accuracy, result.corruption_accuracy["fog"], result.ece
print(result.format())
```

Every corrupted set is generated from the images given, with one generator per corruption
seeded from ``seed`` and the corruption's name, so the same images and seed give the same
sets byte for byte. The labels are never touched: a corruption keeps the digit's class.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch
from torch import nn

from ..calibration import (
    ECE_BINS,
    apply_temperature,
    expected_calibration_error,
    negative_log_likelihood,
)
from ..errors import InvalidArgumentError
from ..evaluation import check_logits
from ..inference.batched import batched_logits
from ..inference.tta import TTAModel
from .corruptions import CORRUPTIONS, Corruption

__all__ = [
    "SuiteResult",
    "corrupt",
    "corrupted_test_set",
    "corruption_rng",
    "evaluate_corruptions",
]

ImagesT = TypeVar("ImagesT", np.ndarray, torch.Tensor)
LabelsT = TypeVar("LabelsT")


@dataclass
class SuiteResult:
    """What :func:`evaluate_corruptions` measured. Accuracies are fractions in [0, 1].

    Attributes:
        clean_accuracy: Accuracy on the uncorrupted images.
        corruption_accuracy: Accuracy on each corrupted set, by corruption name, in suite order.
        nll: Mean negative log-likelihood of the true labels on the clean images (nats).
        ece: Expected calibration error on the clean images (15 equal-width bins).
        num_images: Images per set.
        seed: The base seed the corrupted sets were generated with.
        temperature: The temperature the scaled figures used, or None.
        nll_scaled: ``nll`` after dividing the logits by ``temperature``, or None.
        ece_scaled: ``ece`` after dividing the logits by ``temperature``, or None.
        tta: Whether every figure is of probabilities averaged over test-time augmentation
            views (:mod:`mnist_zoo.inference.tta`).
    """

    clean_accuracy: float
    corruption_accuracy: dict[str, float]
    nll: float
    ece: float
    num_images: int
    seed: int
    temperature: float | None = None
    nll_scaled: float | None = None
    ece_scaled: float | None = None
    tta: bool = False

    @property
    def mean_accuracy(self) -> float:
        """Mean accuracy over the corruptions (the clean set not included)."""
        return float(np.mean(list(self.corruption_accuracy.values())))

    def to_dict(self) -> dict[str, object]:
        """Plain-Python figures, ready for JSON or a model card's config.

        Returns:
            The fields, plus ``mean_corruption_accuracy`` and ``ece_bins``.
        """
        return {
            "clean_accuracy": self.clean_accuracy,
            "mean_corruption_accuracy": self.mean_accuracy,
            "corruption_accuracy": dict(self.corruption_accuracy),
            "nll": self.nll,
            "ece": self.ece,
            "ece_bins": ECE_BINS,
            "temperature": self.temperature,
            "nll_scaled": self.nll_scaled,
            "ece_scaled": self.ece_scaled,
            "num_images": self.num_images,
            "seed": self.seed,
            "tta": self.tta,
        }

    def format(self) -> str:
        """A readable report: accuracy per corruption and its drop, the mean, calibration.

        Returns:
            Several lines of text.
        """
        width = max(len(name) for name in (*self.corruption_accuracy, "clean"))
        lines = [f"{'clean':<{width}}  {100 * self.clean_accuracy:6.2f}%", ""]
        for name, acc in self.corruption_accuracy.items():
            drop = 100 * (acc - self.clean_accuracy)
            lines.append(f"{name:<{width}}  {100 * acc:6.2f}%  ({drop:+.2f})")
        lines += [
            "",
            f"{'mean':<{width}}  {100 * self.mean_accuracy:6.2f}%  "
            f"({len(self.corruption_accuracy)} corruptions, {self.num_images} images each, "
            f"seed {self.seed}, tta: {'true' if self.tta else 'false'})",
            "",
            f"calibration on clean images: NLL {self.nll:.4f}, ECE {100 * self.ece:.2f}% "
            f"({ECE_BINS} bins)",
        ]
        if self.temperature is not None:
            lines.append(
                f"after temperature {self.temperature:.3f}: NLL {self.nll_scaled:.4f}, "
                f"ECE {100 * self.ece_scaled:.2f}%"
            )
        return "\n".join(lines)


def _check_name(name: str) -> Corruption:
    try:
        return CORRUPTIONS[name]
    except (KeyError, TypeError):
        raise InvalidArgumentError(
            f"Unknown corruption {name!r}. Known corruptions: {', '.join(CORRUPTIONS)}."
        ) from None


def corruption_rng(name: str, seed: int = 0) -> np.random.Generator:
    """The random generator a corruption runs with, for a base ``seed``.

    The stream depends on the seed and the corruption's name (through SHA-256, stable across
    runs and platforms, unlike Python's salted ``hash``), so each corruption has its own.

    Args:
        name: A key of :data:`CORRUPTIONS`.
        seed: A non-negative base seed.

    Returns:
        A fresh generator.

    Raises:
        InvalidArgumentError: Unknown name, or a seed that is not a non-negative integer.
    """
    _check_name(name)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InvalidArgumentError(f"seed must be a non-negative integer, got {seed!r}.")
    key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "little")
    return np.random.default_rng([int(seed), key])


def corrupt(images: np.ndarray, name: str, seed: int = 0) -> np.ndarray:
    """Apply corruption ``name`` to a batch with its generator for ``seed``.

    Args:
        images: uint8 (N, 28, 28) MNIST images.
        name: A key of :data:`CORRUPTIONS`.
        seed: The base seed (see :func:`corruption_rng`).

    Returns:
        The corrupted uint8 (N, 28, 28) images: the same bytes for the same inputs.

    Raises:
        InvalidArgumentError: Unknown name, bad seed, or images not uint8 (N, 28, 28).
    """
    return _check_name(name)(images, corruption_rng(name, seed))


def _as_batch(images: np.ndarray | torch.Tensor) -> np.ndarray:
    """uint8 (N, 28, 28) numpy view of images given as (N, 28, 28) or (N, 1, 28, 28)."""
    array = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else images
    if not isinstance(array, np.ndarray):
        raise TypeError(f"images must be a numpy array or a tensor, got {type(images).__name__}.")
    if array.ndim == 4 and array.shape[1] == 1:
        array = array[:, 0]
    if array.dtype != np.uint8 or array.shape[1:] != (28, 28):
        raise InvalidArgumentError(
            "images must be uint8 MNIST images of shape (N, 28, 28) or (N, 1, 28, 28), "
            f"got {array.dtype} of shape {tuple(images.shape)}."
        )
    return array


def corrupted_test_set(
    images: ImagesT, labels: LabelsT, name: str, seed: int = 0
) -> tuple[ImagesT, LabelsT]:
    """One corrupted copy of a test set: corruption ``name`` applied to every image.

    Args:
        images: uint8 images, (N, 28, 28) or (N, 1, 28, 28), as a numpy array or a tensor
            (for example ``MNIST(split="test").images``).
        labels: The N labels, returned as they are.
        name: A key of :data:`~mnist_zoo.robustness.corruptions.CORRUPTIONS`.
        seed: The base seed; the corruption's generator is derived from it and ``name``.

    Returns:
        The corrupted images, of the same type, shape and device as ``images``, and
        ``labels`` itself: corruptions never change the class.

    Raises:
        InvalidArgumentError: Unknown name, bad seed, images that are not uint8 28 x 28, or a
            number of labels that differs from the number of images.
    """
    if len(images) != len(labels):
        raise InvalidArgumentError(f"{len(images)} images but {len(labels)} labels.")
    corrupted = corrupt(_as_batch(images), name, seed).reshape(images.shape)
    if isinstance(images, torch.Tensor):
        return torch.from_numpy(corrupted).to(images.device), labels
    return corrupted, labels


def _check_names(names: Sequence[str] | None) -> list[str]:
    if names is None:
        return list(CORRUPTIONS)
    if isinstance(names, str):
        names = [names]
    chosen = list(dict.fromkeys(names))
    if not chosen:
        raise InvalidArgumentError("names must name at least one corruption (or be None).")
    unknown = [name for name in chosen if name not in CORRUPTIONS]
    if unknown:
        raise InvalidArgumentError(
            f"Unknown corruption(s) {', '.join(map(repr, unknown))}. "
            f"Known corruptions: {', '.join(CORRUPTIONS)}."
        )
    return chosen


def _accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return float((logits.argmax(1).cpu() == labels).double().mean())


def evaluate_corruptions(
    model: nn.Module,
    images: np.ndarray | torch.Tensor,
    labels: np.ndarray | torch.Tensor,
    names: Sequence[str] | None = None,
    *,
    batch_size: int = 1000,
    seed: int = 0,
    device: torch.device | str | None = None,
    precision: str = "fp32",
    temperature: float | None = None,
    tta: bool = False,
    clean_logits: torch.Tensor | None = None,
) -> SuiteResult:
    """Score ``model`` on the clean test images and on each corrupted copy of them.

    Args:
        model: A classifier taking (N, 1, 28, 28) images in [0, 1] and returning logits.
        images: The clean uint8 test images, (N, 28, 28) or (N, 1, 28, 28).
        labels: Their N labels.
        names: Corruptions to run, in order; all 15 of MNIST-C by default.
        batch_size: Images per forward pass.
        seed: Base seed of the corrupted sets (see :func:`corrupted_test_set`).
        device: Where the model runs; defaults to the device of its parameters.
        precision: "fp32", "bf16" or "fp16" (autocast).
        temperature: A temperature fitted on validation data (see
            :func:`mnist_zoo.calibration.fit_temperature`): the result then also holds NLL
            and ECE of the scaled logits. Accuracy never depends on it.
        tta: Score every set with the probabilities averaged over the test-time augmentation
            views of :mod:`mnist_zoo.inference.tta` (shifts and small rotations, no flips).
        clean_logits: The model's logits on the clean ``images``, if already computed with
            the same precision and ``tta``: used instead of a pass over them (on a CPU a pass
            of MiniVGG over the test set takes half a minute).

    Returns:
        Clean and per-corruption accuracy, and NLL and ECE on the clean images.

    Raises:
        InvalidArgumentError: Unknown corruption names, bad seed, batch size or temperature,
            images that are not uint8 28 x 28, or labels (or ``clean_logits``) that do not
            match the images.
    """
    chosen = _check_names(names)
    batch = _as_batch(images)
    scored = TTAModel(model) if tta else model
    targets = torch.as_tensor(labels).long().cpu()
    if targets.ndim != 1 or len(targets) != len(batch):
        raise InvalidArgumentError(
            f"{len(batch)} images but labels of shape {tuple(targets.shape)}."
        )

    def logits_of(array: np.ndarray) -> torch.Tensor:
        tensor = torch.from_numpy(array).unsqueeze(1)
        return batched_logits(
            scored, tensor, batch_size=batch_size, device=device, precision=precision
        ).cpu()

    if clean_logits is None:
        clean = logits_of(batch)
    else:
        clean = check_logits(clean_logits, len(batch), "clean_logits").float()
    scaled: dict[str, float | None] = {"nll_scaled": None, "ece_scaled": None}
    if temperature is not None:
        logits_t = apply_temperature(clean, temperature)
        scaled = {
            "nll_scaled": negative_log_likelihood(logits_t, targets),
            "ece_scaled": expected_calibration_error(logits_t.softmax(1), targets),
        }
    accuracy = {name: _accuracy(logits_of(corrupt(batch, name, seed)), targets) for name in chosen}
    return SuiteResult(
        clean_accuracy=_accuracy(clean, targets),
        corruption_accuracy=accuracy,
        nll=negative_log_likelihood(clean, targets),
        ece=expected_calibration_error(clean.softmax(1), targets),
        num_images=len(batch),
        seed=int(seed),
        temperature=None if temperature is None else float(temperature),
        **scaled,
        tta=bool(tta),
    )
