"""The Fréchet distance between two sets of digit images, in a zoo model's feature space.

FID, the usual score of generated images, is the Fréchet distance between Gaussians fitted to
two sets' features in an ImageNet network (Inception-v3), which has never seen a handwritten
digit. This is its MNIST counterpart: the same formula, in the feature space of a zoo model
trained on MNIST (:meth:`~mnist_zoo.models.ZooModel.forward_features`, 512 features for
MiniVGG).

```python
from mnist_zoo.metrics import frechet_distance
test = mnist_zoo.MNIST(split="test")
frechet_distance(generated, test.images[:5000])               # MiniVGG's published weights
frechet_distance(generated, real, model="hub/minivgg")        # a local Hub folder
frechet_distance(generated, real, model=my_model)             # any zoo model, as it is
```

Like FID, the value is the *squared* distance: 0 for identical statistics, growing as the sets
differ; it depends on the model and on the number of images (use the same model and the same
sizes, thousands of images, to compare numbers). The statistics are computed in float64.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from torch import nn

from .errors import InvalidArgumentError
from .hub import load_pretrained
from .inference.batched import batched_logits

__all__ = ["extract_features", "frechet_distance", "gaussian_frechet_distance"]


def frechet_distance(
    images_a: torch.Tensor | np.ndarray,
    images_b: torch.Tensor | np.ndarray,
    model: str | os.PathLike[str] | nn.Module = "minivgg",
    *,
    batch_size: int = 500,
    device: str | torch.device | None = None,
) -> float:
    """The Fréchet distance between two sets of images, in a zoo model's feature space.

    Each set's features (:func:`extract_features`) are summarised by their mean and
    covariance, and :func:`gaussian_frechet_distance` compares the two Gaussians.

    Args:
        images_a: The first set: (N, 1, 28, 28) or (N, 28, 28), uint8 0-255 or float in
            [0, 1], as a tensor or a numpy array; at least 2 images.
        images_b: The second set, in the same forms; its size may differ.
        model: A zoo model (anything with ``forward_features``), used as it is; or a name
            :func:`~mnist_zoo.load_pretrained` loads: a registered name (the default,
            ``"minivgg"``, MiniVGG's published weights) or a local Hub folder.
        batch_size: How many images go through the model at once.
        device: Where the model runs. A model given as a module is not moved (default: its
            device); a name is loaded onto ``device`` (default: the CPU).

    Returns:
        The squared Fréchet distance, as FID reports it: 0 for identical statistics.

    Raises:
        InvalidArgumentError: A set has fewer than 2 images, or ``batch_size`` is not a
            positive integer (a ``ValueError``).
        ImageError: The images are not of shape (N, 1, 28, 28) or (N, 28, 28).
        TypeError: ``model`` has no ``forward_features``.
        HubError: ``model`` names weights that cannot be loaded (a subclass says why).
    """
    sets = [_as_images(images) for images in (images_a, images_b)]
    for which, images in zip("ab", sets, strict=True):
        if len(images) < 2:
            raise InvalidArgumentError(
                f"images_{which} holds {len(images)} image(s); a covariance needs at least 2 "
                "(and the distance is only stable with thousands)."
            )
    if not isinstance(model, nn.Module):
        model = load_pretrained(model, device=device or "cpu")
        device = None
    (mean_a, cov_a), (mean_b, cov_b) = (
        _statistics(extract_features(model, images, batch_size=batch_size, device=device))
        for images in sets
    )
    return gaussian_frechet_distance(mean_a, cov_a, mean_b, cov_b)


def extract_features(
    model: nn.Module,
    images: torch.Tensor | np.ndarray,
    *,
    batch_size: int = 500,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """A zoo model's penultimate features for many images, in batches, in eval mode.

    Runs ``model.forward_features`` the way :func:`mnist_zoo.inference.batched.batched_logits`
    runs a model: eval mode (restored after), no autograd, uint8 scaled to [0, 1].

    Args:
        model: A zoo model: anything with ``forward_features`` (see
            :class:`~mnist_zoo.models.ZooModel`). It is not moved.
        images: (N, 1, 28, 28) or (N, 28, 28) images, uint8 0-255 or float in [0, 1], as a
            tensor or a numpy array.
        batch_size: How many images go through the model at once.
        device: Where the batches go; defaults to the device of the model's parameters.

    Returns:
        (N, F) float32 features on ``device``: F is 128 for SimpleCNN, 256 for DeeperCNN and
        512 for MiniVGG.

    Raises:
        TypeError: ``model`` has no ``forward_features``.
        InvalidArgumentError: ``images`` is empty or ``batch_size`` is not a positive integer.
        ImageError: The images are not of shape (N, 1, 28, 28) or (N, 28, 28).
    """
    if not callable(getattr(model, "forward_features", None)):
        raise TypeError(
            f"{type(model).__name__} has no forward_features(): pass a zoo model (e.g. "
            "mnist_zoo.load_pretrained('minivgg')) or the name of one."
        )
    return batched_logits(
        _FeaturesOf(model), _as_images(images), batch_size=batch_size, device=device
    )


def gaussian_frechet_distance(
    mean_a: torch.Tensor, cov_a: torch.Tensor, mean_b: torch.Tensor, cov_b: torch.Tensor
) -> float:
    """The squared Fréchet (2-Wasserstein) distance between two Gaussians, in float64.

    ``|mean_a - mean_b|² + tr(cov_a) + tr(cov_b) - 2 tr((S cov_b S)^½)`` with ``S = cov_a^½``:
    the same value as FID's ``tr((cov_a cov_b)^½)``, computed from two eigendecompositions
    of symmetric matrices instead of a general matrix square root, so it needs no SciPy and
    stays real. Eigenvalues that rounding makes slightly negative are taken as 0.

    Args:
        mean_a: The first mean, shape (F,).
        cov_a: The first covariance, shape (F, F), symmetric positive semi-definite.
        mean_b: The second mean, shape (F,).
        cov_b: The second covariance, shape (F, F).

    Returns:
        The squared distance, at least 0.

    Raises:
        InvalidArgumentError: The shapes do not fit together.
    """
    mean_a, cov_a, mean_b, cov_b = (t.detach().to("cpu", torch.float64)
                                    for t in (mean_a, cov_a, mean_b, cov_b))  # fmt: skip
    width = mean_a.shape[0] if mean_a.ndim == 1 else -1
    if mean_b.shape != (width,) or cov_a.shape != (width, width) or cov_b.shape != cov_a.shape:
        raise InvalidArgumentError(
            f"Means of shape (F,) and covariances of shape (F, F) are needed, got "
            f"{tuple(mean_a.shape)}, {tuple(cov_a.shape)}, {tuple(mean_b.shape)}, "
            f"{tuple(cov_b.shape)}."
        )
    root_a = _psd_sqrt(cov_a)
    middle = root_a @ cov_b @ root_a
    cross = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp(min=0).sqrt().sum()
    distance = (mean_a - mean_b).square().sum() + cov_a.trace() + cov_b.trace() - 2 * cross
    return max(float(distance), 0.0)


class _FeaturesOf(nn.Module):
    """A view of a model whose forward is the model's forward_features."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_features(x)


def _as_images(images: torch.Tensor | np.ndarray) -> torch.Tensor:
    """A tensor of images, (N, 28, 28) given a channel: (N, 1, 28, 28)."""
    images = images if torch.is_tensor(images) else torch.from_numpy(np.asarray(images))
    return images.unsqueeze(1) if images.ndim == 3 else images


def _statistics(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean and the (unbiased) covariance of (N, F) features, in float64."""
    features = features.detach().to("cpu", torch.float64)
    return features.mean(0), torch.cov(features.T)


def _psd_sqrt(matrix: torch.Tensor) -> torch.Tensor:
    """The symmetric square root of a symmetric positive semi-definite matrix."""
    values, vectors = torch.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * values.clamp(min=0).sqrt()) @ vectors.T
