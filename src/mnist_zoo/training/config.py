"""The training recipe as data: :class:`TrainConfig`, the base recipe and a model's recipe.

```python
from dataclasses import asdict, replace
from mnist_zoo.training import BASE_RECIPE, TrainConfig, get_recipe

recipe = get_recipe("minivgg")             # the registry's recipe, or BASE_RECIPE
short = replace(recipe, epochs=3)          # a changed copy, validated again
asdict(short)                              # what checkpoints, config.json and cards store
```

A recipe says *how a model is trained*: everything that shapes the weights that come out.
How one particular run goes about it (the device, where checkpoints go, resuming, progress
output, callbacks, DataLoader workers, the memory format, the validation batch size) is not part
of it: those are the Trainer's run options.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any, Literal, TypeVar, get_args

from ..devices import PRECISIONS, Precision
from ..errors import InvalidArgumentError
from .augment import RandomAffine, RandomAppearance
from .callbacks import EarlyStopping
from .progress import PROGRESS_MODES

__all__ = [
    "CONFIG_FIELDS",
    "OPTIMIZERS",
    "SCHEDULERS",
    "RUN_OPTIONS",
    "OptimizerName",
    "SchedulerName",
    "TrainConfig",
    "apply_overrides",
    "check_names",
    "check_run_options",
]

#: The optimizers a recipe can name.
OptimizerName = Literal["adamw", "adam", "sgd"]
#: The learning-rate schedules a recipe can name.
SchedulerName = Literal["onecycle", "cosine", "step", "plateau", "none"]
OPTIMIZERS: tuple[str, ...] = get_args(OptimizerName)
SCHEDULERS: tuple[str, ...] = get_args(SchedulerName)

#: The Trainer's keyword arguments that are about one run, not about the recipe.
RUN_OPTIONS = (
    "device",
    "checkpoint_dir",
    "resume",
    "allow_recipe_change",
    "progress",
    "callbacks",
    "channels_last",
    "eval_batch_size",
    "num_workers",
)

_FLOATS = (
    "lr",
    "weight_decay",
    "warmup_epochs",
    "label_smoothing",
    "ema_decay",
    "grad_clip",
)
_OPTIONAL = ("ema_decay", "grad_clip")


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of a training recipe, validated once, when the config is made.

    The defaults are the base recipe the zoo's models are trained with (:data:`BASE_RECIPE`):
    AdamW with a OneCycle schedule, label smoothing, batch-wise random affine augmentation and
    an EMA of the weights, 10 epochs. Change one with ``dataclasses.replace(config, lr=1e-3)``.

    Args:
        epochs: Number of epochs (>= 1).
        batch_size: Training batch size per process (>= 1); under ``torchrun`` checkpoints
            and cards record the global batch, this times the number of processes.
        optimizer: "adamw", "adam" or "sgd" (momentum 0.9, Nesterov).
        lr: Learning rate, the peak rate for "onecycle" and "cosine" (finite, > 0).
        weight_decay: Decoupled for AdamW, L2 for Adam and SGD (finite, >= 0).
        scheduler: "onecycle" or "cosine" (warm-up then annealing, both stepped every batch),
            "step" or "plateau" (stepped every epoch), or "none".
        warmup_epochs: Linear warm-up length for "cosine"; the warm-up share for "onecycle"
            (``warmup_epochs / epochs``, kept within [0.05, 0.5]).
        label_smoothing: Label smoothing of the training loss, in [0, 1).
        augment: A :class:`RandomAffine` applied to every training batch, or ``None``.
            ``True``/``False`` and a dict of its fields are accepted and converted.
        appearance: A :class:`RandomAppearance` applied after ``augment`` (stroke width,
            contrast, background, noise), or ``None`` (the base recipe has none); a dict of
            its fields is converted.
        ema_decay: Decay of an EMA of the weights, which is validated, checkpointed as the best
            and returned instead of the raw weights; ``None`` (or 0) keeps no EMA.
        early_stopping: An :class:`EarlyStopping` (a dict of its fields is converted), or
            ``None`` to train all epochs.
        grad_clip: Clip the gradient norm to this value (finite, > 0), or ``None``.
        val_size: Training images held out for validation (fixed by ``split_seed``) when
            ``fit`` gets no validation set; 0 for none.
        seed: Fixes the initialisation (through ``Trainer.from_recipe``), the data order, the
            augmentation and dropout, and the validation split unless ``split_seed`` is set.
        split_seed: Fixes the validation split on its own, so runs with different seeds can
            share one split (ensemble members are compared and combined on it); ``None``:
            ``seed`` fixes it. Read it through :attr:`validation_seed`.
        precision: "auto", "fp32", "bf16" (autocast, CPU and CUDA) or "fp16" (CUDA, with a
            grad scaler); "auto" picks bf16 where the hardware supports it. Checkpoints and
            cards record the precision it resolved to.

    Raises:
        InvalidArgumentError: A setting of the wrong kind or out of its range (the message
            names it), including a non-finite number.
    """

    epochs: int = 10
    batch_size: int = 128
    optimizer: OptimizerName = "adamw"
    lr: float = 3e-3
    weight_decay: float = 5e-4
    scheduler: SchedulerName = "onecycle"
    warmup_epochs: float = 2.0
    label_smoothing: float = 0.1
    augment: RandomAffine | None = RandomAffine()
    appearance: RandomAppearance | None = None
    ema_decay: float | None = 0.999
    early_stopping: EarlyStopping | None = None
    grad_clip: float | None = None
    val_size: int = 5000
    seed: int = 0
    split_seed: int | None = None
    precision: Precision = "auto"

    def __post_init__(self) -> None:
        object.__setattr__(self, "augment", _as_augment(self.augment))
        object.__setattr__(self, "appearance", _as_appearance(self.appearance))
        object.__setattr__(self, "early_stopping", _as_early_stopping(self.early_stopping))
        for name in _FLOATS:
            object.__setattr__(self, name, _checked_float(name, getattr(self, name)))
        _check_integers(self)
        _check_choice("optimizer", self.optimizer, OPTIMIZERS)
        _check_choice("scheduler", self.scheduler, SCHEDULERS)
        _check_choice("precision", self.precision, PRECISIONS)
        _check_ranges(self)

    @property
    def validation_seed(self) -> int:
        """The seed that chooses the validation images: ``split_seed``, else ``seed``."""
        return self.seed if self.split_seed is None else self.split_seed

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """A config from plain data, as ``asdict`` wrote it; missing settings are the base's.

        Args:
            data: Settings by name; ``augment`` and ``early_stopping`` may be dicts.

        Returns:
            The config.

        Raises:
            InvalidArgumentError: An unknown setting (the message lists the known ones) or
                an invalid value.
        """
        check_names(data, "TrainConfig.from_dict()", error=InvalidArgumentError)
        return cls(**data)


def apply_overrides(
    config: TrainConfig | None, overrides: Mapping[str, Any], caller: str
) -> tuple[TrainConfig, dict[str, Any]]:
    """Apply the recipe settings among ``overrides`` to ``config``; return the rest apart.

    Args:
        config: The recipe to start from; ``None`` is the base recipe, ``TrainConfig()``.
        overrides: Keyword arguments: recipe settings and :data:`RUN_OPTIONS`.
        caller: What was called, for the message about an unknown name.

    Returns:
        ``dataclasses.replace(config, **settings)`` (``config`` itself when there are none),
        and the run options.

    Raises:
        TypeError: ``config`` is not a TrainConfig, or a name is neither a recipe setting nor
            a run option (the message lists both).
        InvalidArgumentError: A setting's value is invalid.
    """
    if config is None:
        config = TrainConfig()  # the base recipe (recipes.BASE_RECIPE)
    elif not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig or None, got {type(config).__name__}.")
    check_names(overrides, caller, also=RUN_OPTIONS)
    changes = {k: v for k, v in overrides.items() if k in CONFIG_FIELDS}
    run_options = {k: v for k, v in overrides.items() if k not in CONFIG_FIELDS}
    return (dataclasses.replace(config, **changes) if changes else config), run_options


def check_names(
    names: Iterable[str],
    caller: str,
    *,
    also: Iterable[str] = (),
    error: type[Exception] = TypeError,
) -> None:
    """Refuse setting names that are not fields of :class:`TrainConfig` (nor in ``also``).

    Args:
        names: The names given.
        caller: What was called, for the message, e.g. ``"Trainer()"``.
        also: Other names the caller accepts (its run options).
        error: The exception class to raise.

    Raises:
        Exception: ``error``, naming the unknown settings and listing the valid ones.
    """
    allowed = set(CONFIG_FIELDS) | set(also)
    unknown = [n for n in names if n not in allowed]
    if unknown:
        listed = ", ".join(CONFIG_FIELDS)
        extra = f"; run options: {', '.join(also)}" if also else ""
        raise error(
            f"{caller} got unknown setting(s) {', '.join(map(repr, unknown))}. "
            f"Recipe settings: {listed}{extra}."
        )


def check_run_options(
    *,
    progress: object,
    eval_batch_size: object,
    num_workers: object,
    resume: object,
    checkpoint_dir: object,
    allow_recipe_change: object,
) -> None:
    """Refuse a Trainer run option of the wrong kind or out of its range.

    Args:
        progress: ``True``, ``False``, ``"auto"`` or ``"plain"``.
        eval_batch_size: An integer >= 1.
        num_workers: An integer >= 0.
        resume: Whether to resume; needs a ``checkpoint_dir``.
        checkpoint_dir: The checkpoint folder, or ``None``.
        allow_recipe_change: ``True`` or ``False``.

    Raises:
        InvalidArgumentError: An option out of its range (the message names it).
    """
    if progress not in PROGRESS_MODES:
        raise InvalidArgumentError(
            f"progress must be True, False, 'auto' or 'plain', got {progress!r}."
        )
    for name, value, minimum in (
        ("eval_batch_size", eval_batch_size, 1),
        ("num_workers", num_workers, 0),
    ):
        if not _is_int(value) or value < minimum:  # type: ignore[operator]
            raise InvalidArgumentError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    if not isinstance(allow_recipe_change, bool):
        raise InvalidArgumentError(
            f"allow_recipe_change must be True or False, got {allow_recipe_change!r}."
        )
    if resume and checkpoint_dir is None:
        raise InvalidArgumentError("resume=True needs a checkpoint_dir to resume from.")


# --------------------------------------------------------------------------- validation


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _as_augment(value: object) -> RandomAffine | None:
    if value is True:
        return RandomAffine()
    if value is None or value is False:
        return None
    if isinstance(value, RandomAffine):
        return value
    if isinstance(value, Mapping):
        check = {f.name for f in fields(RandomAffine)}
        if set(value) <= check:
            return RandomAffine(**value)
    raise InvalidArgumentError(
        f"augment must be a RandomAffine, True, False or None, got {value!r}."
    )


def _as_appearance(value: object) -> RandomAppearance | None:
    return _as_settings(value, RandomAppearance, "appearance")


def _as_early_stopping(value: object) -> EarlyStopping | None:
    return _as_settings(value, EarlyStopping, "early_stopping")


SettingsT = TypeVar("SettingsT")


def _as_settings(value: object, kind: type[SettingsT], name: str) -> SettingsT | None:
    """``None``, an instance of ``kind``, or a dict of its fields (as config.json stores it)."""
    if value is None or isinstance(value, kind):
        return value
    if isinstance(value, Mapping) and set(value) <= {f.name for f in fields(kind)}:  # type: ignore[arg-type]
        return kind(**value)
    article = "an" if kind.__name__[0] in "AEIOU" else "a"
    raise InvalidArgumentError(f"{name} must be {article} {kind.__name__} or None, got {value!r}.")


def _checked_float(name: str, value: object) -> float | None:
    if value is None and name in _OPTIONAL:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        kind = "a number or None" if name in _OPTIONAL else "a number"
        raise InvalidArgumentError(f"{name} must be {kind}, got {value!r}.")
    if not math.isfinite(value):
        raise InvalidArgumentError(f"{name} must be finite, got {value!r}.")
    return float(value)


def _check_integers(config: TrainConfig) -> None:
    for name in ("epochs", "batch_size"):
        value = getattr(config, name)
        if not _is_int(value) or value < 1:
            raise InvalidArgumentError(f"{name} must be an integer >= 1, got {value!r}.")
    for name in ("val_size", "seed"):
        value = getattr(config, name)
        if not _is_int(value):
            raise InvalidArgumentError(f"{name} must be an integer, got {value!r}.")
    if config.val_size < 0:
        raise InvalidArgumentError(f"val_size must be >= 0, got {config.val_size}.")
    if config.split_seed is not None and not _is_int(config.split_seed):
        raise InvalidArgumentError(
            f"split_seed must be an integer or None, got {config.split_seed!r}."
        )


def _check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise InvalidArgumentError(f"Unknown {name} {value!r}: choose one of {', '.join(choices)}.")


def _check_ranges(config: TrainConfig) -> None:
    if not config.lr > 0:
        raise InvalidArgumentError(f"lr must be > 0, got {config.lr}.")
    for name in ("weight_decay", "warmup_epochs"):
        if getattr(config, name) < 0:
            raise InvalidArgumentError(f"{name} must be >= 0, got {getattr(config, name)}.")
    if not 0.0 <= config.label_smoothing < 1.0:
        raise InvalidArgumentError(
            f"label_smoothing must be in [0, 1), got {config.label_smoothing}."
        )
    if config.ema_decay is not None and not 0.0 <= config.ema_decay < 1.0:
        raise InvalidArgumentError(
            f"ema_decay must be in [0, 1) or None (None or 0: no EMA), got {config.ema_decay}."
        )
    if config.grad_clip is not None and config.grad_clip <= 0:
        raise InvalidArgumentError(f"grad_clip must be > 0 or None, got {config.grad_clip}.")


#: The names of the recipe's settings, in order.
CONFIG_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(TrainConfig))
