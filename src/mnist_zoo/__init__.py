"""mnist_zoo: a small, well-engineered PyTorch model zoo for MNIST."""

from __future__ import annotations

__version__ = "0.1.0"

from . import models  # noqa: F401  (registers the models)
from .models import MNIST_MEAN, MNIST_STD, DeeperCNN, MiniVGG, SimpleCNN
from .registry import (
    PretrainedWeights,
    UnknownModelError,
    count_parameters,
    create_model,
    list_models,
    list_pretrained,
    model_info,
    register_model,
)

__all__ = [
    "MNIST_MEAN",
    "MNIST_STD",
    "DeeperCNN",
    "MiniVGG",
    "PretrainedWeights",
    "SimpleCNN",
    "UnknownModelError",
    "__version__",
    "count_parameters",
    "create_model",
    "list_models",
    "list_pretrained",
    "model_info",
    "register_model",
]
