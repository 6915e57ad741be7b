"""``mnist_zoo.metrics``: the Fréchet distance between sets of digits in a zoo model's features.

The real-data tests use the published SimpleCNN (``hub/simplecnn``), the cheapest zoo model to
run: what they check, a distance of 0 to itself and a distance growing with the corruption,
does not depend on which zoo model supplies the features.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import mnist_zoo
from mnist_zoo.errors import ImageError, InvalidArgumentError
from mnist_zoo.metrics import extract_features, frechet_distance, gaussian_frechet_distance

HUB = Path(__file__).resolve().parents[1] / "hub"
pytestmark = pytest.mark.usefixtures("one_thread")


def numpy_frechet(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """The reference: FID's formula in float64 numpy, tr((Σa Σb)^½) from the eigenvalues of the
    (non-symmetric) product, which are real and non-negative for two PSD matrices."""
    a, b = features_a.astype(np.float64), features_b.astype(np.float64)
    mean_a, mean_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    eigenvalues = np.linalg.eigvals(cov_a @ cov_b)
    cross = np.sqrt(np.clip(eigenvalues.real, 0, None)).sum()
    return float(((mean_a - mean_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * cross)


class Projection(nn.Module):
    """A stand-in zoo model whose features are a fixed linear map of the pixels."""

    def __init__(self, width: int = 6) -> None:
        super().__init__()
        self.weight = nn.Parameter(
            torch.randn(784, width, generator=torch.Generator().manual_seed(0))
        )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) @ self.weight


@pytest.fixture(scope="module")
def test_images(mnist_root: Path) -> torch.Tensor:
    return mnist_zoo.MNIST(mnist_root, split="test").images[:2000]


@pytest.fixture(scope="module")
def simplecnn() -> nn.Module:
    return mnist_zoo.load_pretrained(HUB / "simplecnn")


def test_gaussian_distance_agrees_with_a_float64_numpy_reference() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(60, 8)) @ rng.normal(size=(8, 8))
    b = rng.normal(loc=0.5, size=(40, 8)) @ rng.normal(size=(8, 8))
    mean_a, mean_b = torch.from_numpy(a.mean(0)), torch.from_numpy(b.mean(0))
    cov_a = torch.from_numpy(np.cov(a, rowvar=False))
    cov_b = torch.from_numpy(np.cov(b, rowvar=False))
    got = gaussian_frechet_distance(mean_a, cov_a, mean_b, cov_b)
    assert got == pytest.approx(numpy_frechet(a, b), rel=1e-10)
    # Float32 inputs are computed in float64 all the same.
    as_float = gaussian_frechet_distance(
        mean_a.float(), cov_a.float(), mean_b.float(), cov_b.float()
    )
    assert as_float == pytest.approx(got, rel=1e-5)


def test_frechet_distance_agrees_with_the_reference_on_a_models_features() -> None:
    generator = torch.Generator().manual_seed(1)
    images_a = torch.rand(50, 1, 28, 28, generator=generator)
    images_b = torch.rand(30, 1, 28, 28, generator=generator) ** 2
    model = Projection()
    with torch.no_grad():
        reference = numpy_frechet(
            model.forward_features(images_a).numpy(), model.forward_features(images_b).numpy()
        )
    got = frechet_distance(images_a, images_b, model, batch_size=7)
    assert got == pytest.approx(reference, rel=1e-6)
    assert frechet_distance(images_b, images_a, model) == pytest.approx(got, rel=1e-6)


def test_a_set_is_at_distance_zero_from_itself(
    test_images: torch.Tensor, simplecnn: nn.Module
) -> None:
    images = test_images[:1000]
    assert frechet_distance(images, images, simplecnn) == pytest.approx(0, abs=1e-6)
    # Shuffled, in another batch size: the same statistics.
    shuffled = images[torch.randperm(1000, generator=torch.Generator().manual_seed(0))]
    assert frechet_distance(images, shuffled, simplecnn, batch_size=333) == pytest.approx(
        0, abs=1e-6
    )


@pytest.mark.parametrize("corruption", ["noise", "blur"])
def test_the_distance_grows_with_the_corruption(
    test_images: torch.Tensor, simplecnn: nn.Module, corruption: str
) -> None:
    real, other = test_images[:500], mnist_zoo.to_float_images(test_images[1000:1500])
    generator = torch.Generator().manual_seed(0)
    noise = torch.randn(other.shape, generator=generator)
    distances = []
    for level in range(5):
        if corruption == "noise":
            corrupted = (other + 0.15 * level * noise).clamp(0, 1)
        else:
            corrupted = other
            for _ in range(level):
                corrupted = F.avg_pool2d(corrupted, 3, stride=1, padding=1)
        distances.append(frechet_distance(real, corrupted, simplecnn))
    assert all(d < e for d, e in zip(distances, distances[1:], strict=False)), distances
    # Two halves of the real test set are close, compared with corrupted digits.
    assert distances[0] < 0.25 * distances[-1], distances


def test_a_name_loads_the_pretrained_model(test_images: torch.Tensor) -> None:
    images_a, images_b = test_images[:40], test_images[40:100]
    by_name = frechet_distance(images_a, images_b, model=str(HUB / "minivgg"))
    model = mnist_zoo.load_pretrained(HUB / "minivgg")
    assert by_name == frechet_distance(images_a, images_b, model)
    assert by_name > 0


def test_images_as_uint8_float_numpy_and_without_a_channel_agree(
    test_images: torch.Tensor, simplecnn: nn.Module
) -> None:
    a, b = test_images[:100], test_images[100:200]
    expected = frechet_distance(a, b, simplecnn)
    as_float = frechet_distance(
        mnist_zoo.to_float_images(a), mnist_zoo.to_float_images(b), simplecnn
    )
    as_numpy = frechet_distance(a[:, 0].numpy(), b[:, 0].numpy(), simplecnn)
    assert as_float == pytest.approx(expected, rel=1e-6) and as_numpy == expected


def test_extract_features_gives_the_models_forward_features_in_eval_mode(
    test_images: torch.Tensor,
) -> None:
    model = mnist_zoo.create_model("minivgg").train()
    features = extract_features(model, test_images[:10], batch_size=4)
    assert features.shape == (10, 512) and features.dtype == torch.float32
    assert model.training  # restored
    with torch.no_grad():
        expected = model.eval().forward_features(mnist_zoo.to_float_images(test_images[:10]))
    torch.testing.assert_close(features, expected, rtol=1e-5, atol=1e-6)


def test_bad_inputs_are_clear_errors(simplecnn: nn.Module) -> None:
    images = torch.rand(5, 1, 28, 28)
    with pytest.raises(InvalidArgumentError, match="images_b holds 1 image"):
        frechet_distance(images, images[:1], simplecnn)
    with pytest.raises(ImageError, match=r"\(N, 1, 28, 28\)"):
        frechet_distance(torch.rand(5, 3, 28, 28), images, simplecnn)
    with pytest.raises(TypeError, match="no forward_features"):
        frechet_distance(images, images, nn.Linear(784, 10))
    with pytest.raises(InvalidArgumentError, match="batch_size"):
        frechet_distance(images, images, simplecnn, batch_size=0)
    with pytest.raises(InvalidArgumentError, match=r"\(F, F\)"):
        gaussian_frechet_distance(torch.zeros(3), torch.eye(3), torch.zeros(4), torch.eye(4))
    with pytest.raises(mnist_zoo.errors.UnknownModelError):
        frechet_distance(images, images, "resnet50")
