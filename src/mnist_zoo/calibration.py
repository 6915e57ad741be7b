"""Calibration: do a model's probabilities mean what they say, and temperature scaling to fix it.

```python
from mnist_zoo.calibration import (
    apply_temperature, expected_calibration_error, fit_temperature, negative_log_likelihood,
)
temperature = fit_temperature(model, (val_images, val_labels))   # validation data only
logits = apply_temperature(test_logits, temperature)             # same argmax, same accuracy
nll = negative_log_likelihood(logits, test_labels)
ece = expected_calibration_error(logits.softmax(1), test_labels)
```

The figures are those of Guo et al., "On Calibration of Modern Neural Networks" (2017): the
negative log-likelihood of the true labels, and the expected calibration error (ECE) over
:data:`ECE_BINS` equal-width confidence bins. Temperature scaling divides the logits by one
scalar T > 0 fitted to minimise the NLL on held-out validation data; dividing by a positive
number never changes which class is largest, so labels and accuracy stay as they were.

:func:`plot_reliability_diagram` needs matplotlib, the ``plot`` extra
(``pip install "mnist-zoo[plot]"``); nothing else here does.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .errors import InvalidArgumentError, MissingDependencyError
from .inference.batched import batched_logits

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = [
    "ECE_BINS",
    "TEMPERATURE_BOUNDS",
    "ReliabilityDiagram",
    "apply_temperature",
    "expected_calibration_error",
    "fit_temperature",
    "negative_log_likelihood",
    "plot_reliability_diagram",
    "reliability_diagram",
]

#: Number of equal-width confidence bins of the ECE, as in Guo et al. (2017).
ECE_BINS = 15
#: The interval :func:`fit_temperature` searches.
TEMPERATURE_BOUNDS = (0.05, 20.0)

_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0
_PLOT_HINT = 'The reliability diagram needs matplotlib: pip install "mnist-zoo[plot]"'


def _labels_for(labels: Any, rows: int, num_classes: int) -> torch.Tensor:
    targets = torch.as_tensor(labels).long().cpu()
    if targets.ndim != 1 or len(targets) != rows:
        raise InvalidArgumentError(
            f"labels must have shape ({rows},) to match the predictions, "
            f"got {tuple(targets.shape)}."
        )
    if rows == 0:
        raise InvalidArgumentError("Cannot measure calibration on an empty set.")
    if targets.min() < 0 or targets.max() >= num_classes:
        raise InvalidArgumentError(f"labels must lie in [0, {num_classes}).")
    return targets


def _matrix(values: Any, what: str) -> torch.Tensor:
    tensor = torch.as_tensor(values).detach().cpu()
    if tensor.ndim != 2 or not tensor.is_floating_point():
        raise InvalidArgumentError(
            f"{what} must be a float (N, classes) array, got {tensor.dtype} of shape "
            f"{tuple(tensor.shape)}."
        )
    return tensor.double()


def negative_log_likelihood(logits: Any, labels: Any) -> float:
    """Mean negative log-likelihood (nats) of the true labels: ``F.cross_entropy`` in float64.

    Args:
        logits: (N, C) logits (tensor or array).
        labels: (N,) integer labels.

    Returns:
        The mean NLL.

    Raises:
        InvalidArgumentError: Shapes do not match, the set is empty, or a label is out of range.
    """
    scores = _matrix(logits, "logits")
    return float(F.cross_entropy(scores, _labels_for(labels, *scores.shape)))


@dataclass
class ReliabilityDiagram:
    """Accuracy against confidence in equal-width confidence bins.

    Bin b holds the predictions whose confidence (top probability) lies in
    ``(bin_edges[b], bin_edges[b + 1]]``.

    Attributes:
        bin_edges: The ``num_bins + 1`` edges, 0 to 1.
        counts: Predictions per bin.
        accuracy: Fraction correct per bin; None for an empty bin.
        confidence: Mean confidence per bin; None for an empty bin.
        ece: The expected calibration error: the count-weighted mean of
            ``|accuracy - confidence|`` over the bins.
        num_images: Predictions in all.
    """

    bin_edges: list[float]
    counts: list[int]
    accuracy: list[float | None]
    confidence: list[float | None]
    ece: float
    num_images: int

    def to_dict(self) -> dict[str, object]:
        """The fields as plain Python, ready for JSON.

        Returns:
            A dict with one key per field.
        """
        return asdict(self)


def reliability_diagram(
    probabilities: Any, labels: Any, num_bins: int = ECE_BINS
) -> ReliabilityDiagram:
    """Bin predictions by confidence and compare each bin's accuracy with its confidence.

    Computed in float64. The confidence is the top probability and the prediction its class.

    Args:
        probabilities: (N, C) class probabilities (a softmax of logits, not the logits).
        labels: (N,) integer labels.
        num_bins: Equal-width bins over [0, 1].

    Returns:
        The per-bin figures and the ECE.

    Raises:
        InvalidArgumentError: ``num_bins`` is not a positive integer, the values are not
            probabilities, shapes do not match, or the set is empty.
    """
    if isinstance(num_bins, bool) or not isinstance(num_bins, int) or num_bins < 1:
        raise InvalidArgumentError(f"num_bins must be a positive integer, got {num_bins!r}.")
    probs = _matrix(probabilities, "probabilities")
    targets = _labels_for(labels, *probs.shape)
    if probs.min() < 0 or probs.max() > 1 + 1e-6:
        raise InvalidArgumentError(
            "probabilities must lie in [0, 1]: pass logits.softmax(1), not the logits."
        )
    confidence, predicted = probs.max(dim=1)
    correct = (predicted == targets).double()
    edges = torch.linspace(0.0, 1.0, num_bins + 1, dtype=torch.float64)
    bins = torch.bucketize(confidence, edges[1:-1])  # bin b: (edges[b], edges[b + 1]]
    counts = torch.bincount(bins, minlength=num_bins)
    correct_sum = torch.zeros(num_bins, dtype=torch.float64).index_add_(0, bins, correct)
    confidence_sum = torch.zeros(num_bins, dtype=torch.float64).index_add_(0, bins, confidence)
    ece = float((correct_sum - confidence_sum).abs().sum() / len(targets))

    def per_bin(sums: torch.Tensor) -> list[float | None]:
        return [float(s / n) if n else None for s, n in zip(sums, counts.tolist(), strict=True)]

    return ReliabilityDiagram(
        bin_edges=edges.tolist(),
        counts=counts.tolist(),
        accuracy=per_bin(correct_sum),
        confidence=per_bin(confidence_sum),
        ece=ece,
        num_images=len(targets),
    )


def expected_calibration_error(probabilities: Any, labels: Any, num_bins: int = ECE_BINS) -> float:
    """Expected calibration error over ``num_bins`` equal-width confidence bins.

    ``sum_b (n_b / N) * |accuracy_b - confidence_b|``, as defined by Guo et al. (2017).

    Args:
        probabilities: (N, C) class probabilities (a softmax of logits).
        labels: (N,) integer labels.
        num_bins: Number of bins.

    Returns:
        The ECE, a fraction in [0, 1].

    Raises:
        InvalidArgumentError: As :func:`reliability_diagram`.
    """
    return reliability_diagram(probabilities, labels, num_bins).ece


def apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Scale logits by a temperature: ``logits / temperature``.

    Args:
        logits: (N, C) logits.
        temperature: A positive, finite temperature (above 1 softens, below 1 sharpens).

    Returns:
        The scaled logits; their argmax, hence labels and accuracy, are unchanged.

    Raises:
        InvalidArgumentError: ``temperature`` is not a positive finite number.
    """
    if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real):
        raise InvalidArgumentError(f"temperature must be a number, got {temperature!r}.")
    if not (math.isfinite(temperature) and temperature > 0):
        raise InvalidArgumentError(f"temperature must be positive and finite, got {temperature}.")
    return logits / float(temperature)


def _refuse_test_split(data: Any) -> None:
    """Raise if ``data`` is, or is a subset of, a dataset marked as the test split."""
    seen = data
    while seen is not None:
        if getattr(seen, "split", None) == "test":
            raise InvalidArgumentError(
                "fit_temperature fits on validation data, never the test set: pass the "
                "validation split (images held out from training), not the MNIST test split."
            )
        seen = getattr(seen, "dataset", None)


def _images_and_labels(data: Any) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(data, (tuple, list)) and len(data) == 2:
        return torch.as_tensor(data[0]), torch.as_tensor(data[1])
    if hasattr(data, "images") and hasattr(data, "targets"):
        return torch.as_tensor(data.images), torch.as_tensor(data.targets)
    if hasattr(data, "__getitem__") and hasattr(data, "__len__"):
        loader = torch.utils.data.DataLoader(data, batch_size=1000)
        images, labels = zip(*loader, strict=True)
        return torch.cat(images), torch.cat(labels)
    raise TypeError(
        "val_data must be an (images, labels) pair or a dataset of (image, label) items, "
        f"got {type(data).__name__}."
    )


def _golden_section(f: Callable[[float], float], low: float, high: float, tol: float) -> float:
    """The minimiser of a unimodal ``f`` on [low, high], to within ``tol``."""
    a, b = low, high
    c, d = b - _GOLDEN * (b - a), a + _GOLDEN * (b - a)
    fc, fd = f(c), f(d)
    while b - a > tol:
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - _GOLDEN * (b - a)
            fc = f(c)
        else:
            a, c, fc = c, d, fd
            d = a + _GOLDEN * (b - a)
            fd = f(d)
    return (a + b) / 2


def fit_temperature(
    model_or_logits: nn.Module | torch.Tensor,
    val_data: Any,
    *,
    batch_size: int = 1000,
    device: torch.device | str | None = None,
    precision: str = "fp32",
) -> float:
    """Fit the temperature T that minimises the NLL of ``logits / T`` on VALIDATION data.

    Fit on held-out validation images only (for the zoo: the split the Trainer carved from
    the training set), never on the test set the figures are then reported on: a temperature
    fitted on the test set makes its ECE look better than it is. A dataset marked as the test
    split (``MNIST(split="test")`` or a subset of it) is refused.

    The search is a bounded golden-section search over ``log T`` in
    :data:`TEMPERATURE_BOUNDS`, to a tolerance of 1e-5 in ``log T``, in float64. The NLL of
    ``logits / T`` is convex in ``1 / T``, hence unimodal in ``log T``, so the search finds
    the global minimum deterministically, without the learning rate and line-search settings
    of LBFGS (which reaches the same optimum). An optimum beyond the bounds returns the
    nearest bound.

    Args:
        model_or_logits: A model, or the (N, C) logits a model gave on the validation images.
        val_data: With a model: the validation set, as an ``(images, labels)`` pair (uint8 or
            float images (N, 1, 28, 28)) or a dataset of ``(image, label)`` items. With logits:
            the (N,) labels of the images the logits came from.
        batch_size: Images per forward pass (with a model).
        device: Where the model runs (with a model); defaults to its parameters' device.
        precision: "fp32", "bf16" or "fp16" (with a model).

    Returns:
        The temperature, a float in :data:`TEMPERATURE_BOUNDS`.

    Raises:
        InvalidArgumentError: ``val_data`` is the test split, shapes do not match, the set is
            empty, or the logits are not finite.
        TypeError: ``model_or_logits`` is neither a module nor a tensor, or ``val_data`` is
            not one of the accepted forms.
    """
    _refuse_test_split(val_data)
    if isinstance(model_or_logits, nn.Module):
        images, labels = _images_and_labels(val_data)
        if images.ndim == 3:  # (N, 28, 28): add the channel axis the models take
            images = images.unsqueeze(1)
        logits = batched_logits(
            model_or_logits, images, batch_size=batch_size, device=device, precision=precision
        )
    elif isinstance(model_or_logits, (torch.Tensor, np.ndarray)):
        logits, labels = model_or_logits, val_data
    else:
        raise TypeError(
            f"model_or_logits must be a model or a logits tensor, got "
            f"{type(model_or_logits).__name__}."
        )
    scores = _matrix(logits, "logits")
    targets = _labels_for(labels, *scores.shape)
    if not torch.isfinite(scores).all():
        raise InvalidArgumentError("The logits must be finite to fit a temperature.")

    def nll(log_t: float) -> float:
        return float(F.cross_entropy(scores / math.exp(log_t), targets))

    low, high = (math.log(t) for t in TEMPERATURE_BOUNDS)
    return math.exp(_golden_section(nll, low, high, tol=1e-5))


def plot_reliability_diagram(
    diagram: ReliabilityDiagram, ax: Axes | None = None, *, title: str | None = None
) -> Axes:
    """Draw a reliability diagram: accuracy per confidence bin against the diagonal.

    Needs matplotlib (the ``plot`` extra); it is imported only here.

    Args:
        diagram: The figures, from :func:`reliability_diagram`.
        ax: The axes to draw on; a new 4 x 4 inch figure when None.
        title: A title; the ECE is always shown in the legend.

    Returns:
        The axes drawn on (``ax.figure`` is the figure to save).

    Raises:
        MissingDependencyError: matplotlib is not installed.
    """
    try:
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise MissingDependencyError(_PLOT_HINT) from err
    if ax is None:
        _, ax = plt.subplots(figsize=(4, 4))
    edges = np.asarray(diagram.bin_edges)
    filled = [b for b, n in enumerate(diagram.counts) if n]
    left, width = edges[filled], np.diff(edges)[filled]
    accuracy = np.array([diagram.accuracy[b] for b in filled], dtype=float)
    confidence = np.array([diagram.confidence[b] for b in filled], dtype=float)
    ax.bar(left, accuracy, width=width, align="edge", edgecolor="black", label="accuracy")
    ax.bar(
        left,
        confidence - accuracy,
        bottom=accuracy,
        width=width,
        align="edge",
        color="tab:red",
        alpha=0.3,
        label=f"gap (ECE {100 * diagram.ece:.2f}%)",
    )
    ax.plot([0, 1], [0, 1], linestyle="--", color="gray")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence", ylabel="accuracy")
    if title:
        ax.set_title(title)
    ax.legend(loc="upper left")
    return ax
