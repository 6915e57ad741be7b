"""mnist_zoo: a small, well-engineered PyTorch model zoo for MNIST.

``import mnist_zoo`` gives the names a user reaches for first; each lives in the module its
name says (see the docs' "How the code is organised" page):

```python
import mnist_zoo
model = mnist_zoo.load_pretrained("hub/minivgg")       # or "minivgg" once the Hub repos exist
mnist_zoo.predict(model, "four.png").labels
```
"""

from __future__ import annotations

from . import metrics, models  # noqa: F401  (models registers the models)
from ._version import __version__
from .data import MNIST, check_mnist, read_idx, to_float_images, write_idx
from .ensemble import Ensemble
from .errors import IDXFormatError, MnistZooError, UnknownModelError
from .evaluation import EvaluationResult, evaluate_model
from .hub import load_pretrained, push_to_hub, save_pretrained
from .inference import Prediction, load_image, predict, preprocess
from .models import MNIST_MEAN, MNIST_STD, DeeperCNN, MiniVGG, SimpleCNN
from .pipeline import TrainingRun, train_and_save
from .registry import (
    PretrainedWeights,
    count_parameters,
    create_model,
    list_models,
    list_pretrained,
    model_info,
    register_model,
)
from .training import BASE_RECIPE, EarlyStopping, History, TrainConfig, Trainer

__all__ = [
    "BASE_RECIPE",
    "MNIST",
    "MNIST_MEAN",
    "MNIST_STD",
    "DeeperCNN",
    "EarlyStopping",
    "Ensemble",
    "EvaluationResult",
    "History",
    "IDXFormatError",
    "MiniVGG",
    "MnistZooError",
    "Prediction",
    "PretrainedWeights",
    "SimpleCNN",
    "TrainConfig",
    "Trainer",
    "TrainingRun",
    "UnknownModelError",
    "__version__",
    "check_mnist",
    "count_parameters",
    "create_model",
    "evaluate_model",
    "list_models",
    "list_pretrained",
    "load_image",
    "load_pretrained",
    "model_info",
    "predict",
    "preprocess",
    "push_to_hub",
    "read_idx",
    "register_model",
    "save_pretrained",
    "to_float_images",
    "train_and_save",
    "write_idx",
]
