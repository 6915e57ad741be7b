"""The study's three CNNs: SimpleCNN, DeeperCNN and MiniVGG.

Every model takes MNIST images as the study prepared them: float in [0, 1], shape
(N, 1, 28, 28), and returns (N, 10) logits. Standardisation with MNIST's training mean and
std happens inside the model (:class:`Standardize`), so ``model(x)`` is right on the dataset's
output and on a user's own array alike. All 3x3 convolutions use padding 1; every max-pool is
2x2 with stride 2 (28 -> 14 -> 7, and MiniVGG's third pool 7 -> 3).
"""

from __future__ import annotations

import torch
from torch import nn

from .data import MNIST_MEAN, MNIST_STD, check_pixels
from .errors import ImageError
from .fast_layers import Features, Flatten, MaxPool2d, with_plain_layers
from .heads import ZooModel, check_num_classes
from .registry import PretrainedWeights, register_model

__all__ = [
    "MNIST_MEAN",
    "MNIST_STD",
    "DeeperCNN",
    "Features",
    "Flatten",
    "MaxPool2d",
    "MiniVGG",
    "SimpleCNN",
    "Standardize",
    "ZooModel",
    "with_plain_layers",
]


def _tracing() -> bool:
    """Whether the forward is being traced (export, compile): no data-dependent checks then."""
    return (
        torch.jit.is_tracing()
        or torch.compiler.is_compiling()
        or torch.compiler.is_exporting()
        or torch.fx._symbolic_trace.is_fx_symbolic_tracing()
    )


class Standardize(nn.Module):
    """Check the (N, 1, 28, 28) input convention, then map [0, 1] pixels to zero mean, unit std.

    The constants are not buffers, so they add nothing to a state dict or parameter count.

    Args:
        mean: The pixel mean to subtract; MNIST's training mean by default.
        std: The pixel std to divide by; MNIST's training std by default.
    """

    def __init__(self, mean: float = MNIST_MEAN, std: float = MNIST_STD) -> None:
        super().__init__()
        self.mean = mean
        self.std = std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Standardise a batch of images after checking its shape and dtype.

        Args:
            x: Float images in [0, 1], shape (N, 1, 28, 28).

        Returns:
            ``(x - mean) / std``, of the same shape.

        Raises:
            ImageError: ``x`` is not of shape (N, 1, 28, 28), or (in eval mode) holds NaN,
                infinite values or values more than 0.5 outside [0, 1] (a ``ValueError``).
            TypeError: ``x`` is not a float tensor.
        """
        if x.ndim != 4 or tuple(x.shape[1:]) != (1, 28, 28):
            raise ImageError(
                f"Expected images of shape (N, 1, 28, 28), got {tuple(x.shape)}. "
                "Use mnist_zoo.predict() for single images or numpy arrays."
            )
        if not x.is_floating_point():
            raise TypeError(
                f"Expected float images in [0, 1], got dtype {x.dtype}; divide uint8 by 255."
            )
        if not self.training and not _tracing():
            # Images in another convention (0-255, standardised) would give wrong answers
            # without an error: refuse them at inference, where no data check ran before.
            check_pixels(x, tolerance=0.5)
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        """The constants, shown when the model is printed.

        Returns:
            ``"mean=..., std=..."``.
        """
        return f"mean={self.mean}, std={self.std}"


def _conv(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=3, padding=1)


def _pool() -> MaxPool2d:
    return MaxPool2d(kernel_size=2, stride=2)


class SimpleCNN(ZooModel):
    """Two conv layers and two dense layers: the study's baseline (421,642 parameters).

    ``forward_features`` gives (N, 128): the dense layer's output, after its ReLU.

    Args:
        num_classes: The number of outputs.

    Raises:
        InvalidArgumentError: ``num_classes`` is not a positive integer (a ``ValueError``).
    """

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.normalize = Standardize()
        self.features = Features(
            _conv(1, 32), nn.ReLU(inplace=True), _pool(),
            _conv(32, 64), nn.ReLU(inplace=True), _pool(),
        )  # fmt: skip
        self.classifier = nn.Sequential(
            Flatten(),
            nn.Linear(64 * 7 * 7, 128),
            nn.ReLU(inplace=True),
            nn.Linear(128, check_num_classes(num_classes)),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Classify a batch of images.

        Args:
            x: Float images in [0, 1], shape (N, 1, 28, 28).

        Returns:
            Logits of shape (N, num_classes).
        """
        return self.classifier(self.features(self.normalize(x)))


class DeeperCNN(ZooModel):
    """Two blocks of two convs each, then dense 256 (870,634 parameters without batch norm).

    As in the study, a block's two convolutions are followed by a single ReLU.
    ``forward_features`` gives (N, 256): the dense layer's output, after its ReLU.

    Args:
        num_classes: The number of outputs.
        batch_norm: Add a BatchNorm2d after each convolution.

    Raises:
        InvalidArgumentError: ``num_classes`` is not a positive integer (a ``ValueError``).
    """

    def __init__(self, num_classes: int = 10, batch_norm: bool = False) -> None:
        super().__init__()
        self.normalize = Standardize()

        def conv(cin: int, cout: int) -> list[nn.Module]:
            return [_conv(cin, cout), nn.BatchNorm2d(cout)] if batch_norm else [_conv(cin, cout)]

        self.features = Features(
            *conv(1, 32), *conv(32, 32), nn.ReLU(inplace=True), _pool(),
            *conv(32, 64), *conv(64, 64), nn.ReLU(inplace=True), _pool(),
        )  # fmt: skip
        self.classifier = nn.Sequential(
            Flatten(),
            nn.Linear(64 * 7 * 7, 256),
            nn.ReLU(inplace=True),
            nn.Linear(256, check_num_classes(num_classes)),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Classify a batch of images.

        Args:
            x: Float images in [0, 1], shape (N, 1, 28, 28).

        Returns:
            Logits of shape (N, num_classes).
        """
        return self.classifier(self.features(self.normalize(x)))


class MiniVGG(ZooModel):
    """Three VGG blocks (64, 128, 256 x3) with BatchNorm, dense 512 (2,921,930 parameters).

    ``forward_features`` gives (N, 512): the dense layer's output, after its ReLU and before
    the dropout, which belongs to the head.

    Args:
        num_classes: The number of outputs.
        dropout: The dropout probability before the last layer.

    Raises:
        InvalidArgumentError: ``num_classes`` is not a positive integer (a ``ValueError``).
    """

    def __init__(self, num_classes: int = 10, dropout: float = 0.5) -> None:
        super().__init__()
        self.normalize = Standardize()

        def cbr(cin: int, cout: int) -> list[nn.Module]:
            return [_conv(cin, cout), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

        self.features = Features(
            *cbr(1, 64), *cbr(64, 64), _pool(),
            *cbr(64, 128), *cbr(128, 128), _pool(),
            *cbr(128, 256), *cbr(256, 256), *cbr(256, 256), _pool(),
        )  # fmt: skip
        self.classifier = nn.Sequential(
            Flatten(),
            nn.Linear(256 * 3 * 3, 512),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(512, check_num_classes(num_classes)),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Classify a batch of images.

        Args:
            x: Float images in [0, 1], shape (N, 1, 28, 28).

        Returns:
            Logits of shape (N, num_classes).
        """
        return self.classifier(self.features(self.normalize(x)))


#: Versions are data: the published weights of each release, by model and tag, each pinned by
#: the SHA-256 and size of its file and the SHA-256 of its config.json. All were trained by
#: `mnist-zoo train NAME` with the recipe their config.json records. hub/TAG/NAME/ holds each
#: tag's files and hub/NAME/ the default's; `python scripts/release.py --write-pins` writes this
#: block from them. Load a tag with load_pretrained("minivgg", revision="v0.1.0") or
#: load_pretrained("minivgg@v0.1.0"); DEFAULT_RELEASE is what a load without a tag gets.
DEFAULT_RELEASE = "v0.3.0"
PRETRAINED = {
    "simplecnn": {
        "v0.1.0": PretrainedWeights(
            repo_id="mnist-zoo/simplecnn",
            revision="v0.1.0",
            sha256="cde1eb2e64b8175c623cf000a970efd6dfdbd41b959cfc8a39d609b2255682df",
            size=1_687_280,
            config_sha256="fc7195f55398c43de4d72d152725327f6a379e5da641cd5e5d9008c797376891",
            metrics={"test_accuracy": 0.9953},
        ),
        "v0.2.0": PretrainedWeights(
            repo_id="mnist-zoo/simplecnn",
            revision="v0.2.0",
            sha256="1f2d5481c676d0f65987c492124e44263c3ed1ede1bf4f95be08d835ee527754",
            size=1_687_280,
            config_sha256="57cc5081bade597307db984b41741e20930d7695b3b9cadce1cf8cd3282569aa",
            metrics={"test_accuracy": 0.9963},
        ),
        "v0.3.0": PretrainedWeights(
            repo_id="mnist-zoo/simplecnn",
            revision="v0.3.0",
            sha256="1f2d5481c676d0f65987c492124e44263c3ed1ede1bf4f95be08d835ee527754",
            size=1_687_280,
            config_sha256="fc03be0cca2336b69a9dd06d0aebe3136d9f7e67f5c6e0e71df3fcb5bd5404fa",
            metrics={"test_accuracy": 0.9963},
        ),
    },
    "deepercnn": {
        "v0.1.0": PretrainedWeights(
            repo_id="mnist-zoo/deepercnn",
            revision="v0.1.0",
            sha256="9147624059de80bfa3c5739e64325e15fb40488fce4b9dd72ae2a8975182a597",
            size=3_483_584,
            config_sha256="7f1f9b8a5ab1261fa1479d788c8a6d8cee1ccafe052745def5667ac25c2ffb79",
            metrics={"test_accuracy": 0.9961},
        ),
        "v0.2.0": PretrainedWeights(
            repo_id="mnist-zoo/deepercnn",
            revision="v0.2.0",
            sha256="7dd855fdede609003c3690719b2d8fadeb4fdcb698dd8eec36b792b16c5df4f3",
            size=3_483_584,
            config_sha256="85a7063702f643e9a7bf9f2296fafe9140b197c650f44d7bc266756b666ae42a",
            metrics={"test_accuracy": 0.9967},
        ),
        "v0.3.0": PretrainedWeights(
            repo_id="mnist-zoo/deepercnn",
            revision="v0.3.0",
            sha256="8b4162979312a0c58100eb024376d8766296a8d762e3f7616a95597eaaf14883",
            size=3_483_584,
            config_sha256="cf0b1860d0d35f6d3f803393438c884826f93ff6588dfcfa526c8698e5cd53a3",
            metrics={"test_accuracy": 0.9962},
        ),
    },
    "minivgg": {
        "v0.1.0": PretrainedWeights(
            repo_id="mnist-zoo/minivgg",
            revision="v0.1.0",
            sha256="12cb3c6bc85ba2d7dff25c86f431889772fef46b0962f5891c5c7bfed85ed8ab",
            size=11_701_584,
            config_sha256="3437c682741ae74550dc9923f24f49dcc21d08573477e2d1291fef4afb1e5374",
            metrics={"test_accuracy": 0.9972},
        ),
        "v0.2.0": PretrainedWeights(
            repo_id="mnist-zoo/minivgg",
            revision="v0.2.0",
            sha256="26023d81d87a9e58c96701f1bfed413a654832180e5b973c367086a642865e80",
            size=11_701_584,
            config_sha256="397a3bdf15ca74dc110db85aa34aa8a69b30258e45083fe0811267f27f042c5e",
            metrics={"test_accuracy": 0.9971},
        ),
        "v0.3.0": PretrainedWeights(
            repo_id="mnist-zoo/minivgg",
            revision="v0.3.0",
            sha256="15905d050b63a3905a82f164fd45f052866b4c0519bebaa463d8c011a93f0baf",
            size=11_701_584,
            config_sha256="59e507535a20e4ce2ad63c9d29d4f8c727d3bec599adbff59af28e77152e14de",
            metrics={"test_accuracy": 0.9973},
        ),
    },
}


@register_model(pretrained=PRETRAINED["simplecnn"], default_release=DEFAULT_RELEASE)
def simplecnn(num_classes: int = 10, **kwargs: object) -> SimpleCNN:
    """SimpleCNN: conv 32, conv 64, dense 128; the study's baseline.

    Args:
        num_classes: The number of outputs (the head's width); the published weights have 10.
        **kwargs: Passed to :class:`SimpleCNN`.

    Returns:
        A freshly initialised :class:`SimpleCNN`.
    """
    return SimpleCNN(num_classes, **kwargs)  # type: ignore[arg-type]


@register_model(pretrained=PRETRAINED["deepercnn"], default_release=DEFAULT_RELEASE)
def deepercnn(num_classes: int = 10, **kwargs: object) -> DeeperCNN:
    """DeeperCNN: two double-conv blocks (32, 64), dense 256; optional batch norm.

    Args:
        num_classes: The number of outputs (the head's width); the published weights have 10.
        **kwargs: Passed to :class:`DeeperCNN`.

    Returns:
        A freshly initialised :class:`DeeperCNN`.
    """
    return DeeperCNN(num_classes, **kwargs)  # type: ignore[arg-type]


@register_model(pretrained=PRETRAINED["minivgg"], default_release=DEFAULT_RELEASE)
def minivgg(num_classes: int = 10, **kwargs: object) -> MiniVGG:
    """MiniVGG: VGG-style blocks 64-128-256 with BatchNorm, dense 512 with dropout.

    Args:
        num_classes: The number of outputs (the head's width); the published weights have 10.
        **kwargs: Passed to :class:`MiniVGG`.

    Returns:
        A freshly initialised :class:`MiniVGG`.
    """
    return MiniVGG(num_classes, **kwargs)  # type: ignore[arg-type]
