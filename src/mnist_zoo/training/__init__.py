"""Training: the recipe as data (:class:`TrainConfig`) and the :class:`Trainer` that runs it.

```python
import mnist_zoo
from mnist_zoo.training import Trainer

trainer = Trainer.from_recipe("simplecnn", epochs=3, checkpoint_dir="runs/simplecnn")
history = trainer.fit(mnist_zoo.MNIST(split="train"))
print(trainer.evaluate(mnist_zoo.MNIST(split="test")).format())
```

One module per job: ``config`` (the recipe), ``trainer`` (the loop), ``batches`` (batch
sources), ``augment`` (:class:`RandomAffine`), ``ema`` (:class:`ModelEMA`), ``callbacks``
(:class:`Callback`, :class:`EarlyStopping`), ``history`` (:class:`History`), ``checkpoint``
(save, load, compare recipes), ``optim`` (optimizer and schedule), ``progress`` (output) and
``distributed`` (``torchrun``). Devices, precision and seeding live in :mod:`mnist_zoo.devices`
and are re-exported here.
"""

from __future__ import annotations

from ..devices import (
    PRECISIONS,
    DeviceNotAvailableError,
    autocast_context,
    seed_everything,
    select_device,
    select_precision,
)
from .augment import RandomAffine, RandomAppearance
from .callbacks import BestSoFar, Callback, EarlyStopping
from .config import CONFIG_FIELDS, OPTIMIZERS, RUN_OPTIONS, SCHEDULERS, TrainConfig
from .ema import ModelEMA
from .history import History
from .recipes import BASE_RECIPE, RELEASE_RECIPES, get_recipe
from .trainer import Trainer

__all__ = [
    "BASE_RECIPE",
    "RELEASE_RECIPES",
    "CONFIG_FIELDS",
    "OPTIMIZERS",
    "PRECISIONS",
    "RUN_OPTIONS",
    "SCHEDULERS",
    "BestSoFar",
    "Callback",
    "DeviceNotAvailableError",
    "EarlyStopping",
    "History",
    "ModelEMA",
    "RandomAffine",
    "RandomAppearance",
    "TrainConfig",
    "Trainer",
    "autocast_context",
    "get_recipe",
    "seed_everything",
    "select_device",
    "select_precision",
]
