"""mnist_zoo: a small, well-engineered PyTorch model zoo for MNIST."""

from __future__ import annotations

__version__ = "0.1.0"

from . import models  # noqa: F401  (registers the models)
from .data import MNIST, IDXFormatError, check_mnist, read_idx, write_idx
from .ensemble import Ensemble
from .evaluation import EvaluationResult, evaluate_model
from .hub import load_pretrained, push_to_hub, save_pretrained
from .inference import Prediction, load_image, predict, preprocess
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
from .training import EarlyStopping, History, Trainer

__all__ = [
    "Ensemble",
    "Prediction",
    "load_image",
    "load_pretrained",
    "predict",
    "preprocess",
    "push_to_hub",
    "save_pretrained",
    "MNIST",
    "EarlyStopping",
    "EvaluationResult",
    "History",
    "IDXFormatError",
    "Trainer",
    "check_mnist",
    "evaluate_model",
    "read_idx",
    "write_idx",
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
