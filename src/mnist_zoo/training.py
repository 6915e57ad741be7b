"""The Trainer: fast, resumable training of any MNIST model on CPU, CUDA or MPS.

```python
import mnist_zoo
from mnist_zoo.training import Trainer

train = mnist_zoo.MNIST(split="train")
model = mnist_zoo.create_model("simplecnn")
trainer = Trainer(model, epochs=10, checkpoint_dir="runs/simplecnn")
history = trainer.fit(train)          # carves a 5,000-image validation split from `train`
print(trainer.evaluate(mnist_zoo.MNIST(split="test")))
```

Why it is fast: a dataset that holds its images in memory (``MNIST``, or a pair of tensors)
is moved to the device once as uint8; each batch is a slice of a shuffled index, converted to
float there and augmented as a whole batch with one ``affine_grid``/``grid_sample`` call.
Any other ``Dataset`` or ``DataLoader`` still works, through the ordinary loader path.
"""

from __future__ import annotations

import copy
import csv
import json
import math
import os
import random
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .evaluation import EvaluationResult, autocast_context, evaluate_model, to_float_images

__all__ = [
    "Callback",
    "DeviceNotAvailableError",
    "EarlyStopping",
    "History",
    "ModelEMA",
    "RandomAffine",
    "Trainer",
    "seed_everything",
    "select_device",
    "select_precision",
]

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
OPTIMIZERS = ("adamw", "adam", "sgd")
SCHEDULERS = ("onecycle", "cosine", "step", "plateau", "none")
_PER_BATCH_SCHEDULERS = ("onecycle", "cosine")


class DeviceNotAvailableError(RuntimeError):
    """An explicitly requested device does not exist on this machine."""


# --------------------------------------------------------------------------- devices, precision


def _mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def select_device(device: str | torch.device = "auto") -> torch.device:
    """Resolve ``device``: "auto" picks cuda, then mps, then cpu.

    An explicit device that is not available raises :class:`DeviceNotAvailableError` instead of
    silently falling back to the CPU.
    """
    if isinstance(device, torch.device):
        device = str(device)
    if not isinstance(device, str):
        raise TypeError(f"device must be a string or torch.device, got {type(device).__name__}.")
    if device == "auto":
        if torch.cuda.is_available():
            local_rank = int(os.environ.get("LOCAL_RANK", 0))
            return torch.device("cuda", local_rank % torch.cuda.device_count())
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise ValueError(
            f"Unknown device {device!r}: use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'."
        ) from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceNotAvailableError(
                f"Device {device!r} was requested but CUDA is not available on this machine. "
                "Use device='cpu' or device='auto'."
            )
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise DeviceNotAvailableError(
                f"Device {device!r} was requested but only {torch.cuda.device_count()} "
                "CUDA device(s) exist."
            )
    elif resolved.type == "mps" and not _mps_available():
        raise DeviceNotAvailableError(
            f"Device {device!r} was requested but MPS is not available on this machine. "
            "Use device='cpu' or device='auto'."
        )
    elif resolved.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"Unsupported device {device!r}: use 'auto', 'cpu', 'cuda' or 'mps'.")
    return resolved


def _cpu_supports_bf16() -> bool:
    # Without native bf16 instructions (AVX512-BF16/AMX) autocast still works but is slower
    # than fp32, so "auto" only picks bf16 where the hardware has it.
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def select_precision(precision: str, device: torch.device) -> str:
    """Resolve ``precision`` ("auto", "fp32", "bf16", "fp16") for ``device``.

    "auto" is bf16 autocast on a CPU with native bf16 support and on CUDA devices that have it,
    fp16 with a grad scaler on older CUDA devices, fp32 otherwise (MPS included).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"Unknown precision {precision!r}: choose one of {', '.join(PRECISIONS)}.")
    if precision == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        if device.type == "cpu" and _cpu_supports_bf16():
            return "bf16"
        return "fp32"
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("precision='fp16' needs a CUDA device (it uses a grad scaler there).")
    if precision == "bf16" and device.type == "mps":
        raise ValueError("precision='bf16' is not supported on MPS; use 'fp32'.")
    return precision


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices). Call before building a model to fix its init."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# --------------------------------------------------------------------------- pieces of a recipe


@dataclass(frozen=True)
class RandomAffine:
    """Batch-wise random affine augmentation: one ``affine_grid``/``grid_sample`` per batch.

    Each image gets its own rotation in [-degrees, degrees], scale in ``scale`` and shift of up
    to ``translate`` of the image size. Works on float images in [0, 1]; the background that
    comes in from outside the frame is 0, MNIST's black.
    """

    degrees: float = 12.0
    scale: tuple[float, float] = (0.9, 1.1)
    translate: float = 0.1

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Augment a batch (N, C, H, W); random numbers come from the CPU ``generator``."""
        n = x.shape[0]
        r = torch.rand(n, 4, generator=generator).to(x.device)
        angle = (2 * r[:, 0] - 1) * math.radians(self.degrees)
        scale = self.scale[0] + r[:, 1] * (self.scale[1] - self.scale[0])
        # affine_grid maps output to input in [-1, 1] coordinates, so a shift of a fraction f
        # of the image is 2f there, and enlarging the digit by s means sampling at 1/s.
        shift = (2 * r[:, 2:] - 1) * (2 * self.translate)
        cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
        theta = torch.stack(
            [torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1
        ).to(x.dtype)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


@dataclass
class EarlyStopping:
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs.

    ``monitor`` is a validation metric: "val_loss" (lower is better) or "val_acc" (higher is
    better). With ``restore_best`` the weights of the best epoch are put back at the end.
    """

    monitor: str = "val_loss"
    patience: int = 3
    min_delta: float = 0.0
    restore_best: bool = True

    def __post_init__(self) -> None:
        if self.monitor not in ("val_loss", "val_acc"):
            raise ValueError(
                f"EarlyStopping monitors 'val_loss' or 'val_acc', not {self.monitor!r}."
            )
        if self.patience < 1:
            raise ValueError(f"EarlyStopping patience must be >= 1, got {self.patience}.")
        if self.min_delta < 0:
            raise ValueError(f"EarlyStopping min_delta must be >= 0, got {self.min_delta}.")

    @property
    def mode(self) -> str:
        """ "min" for losses, "max" for accuracies."""
        return "min" if self.monitor.endswith("loss") else "max"

    def improved(self, value: float, best: float | None) -> bool:
        """Whether ``value`` beats ``best`` by more than ``min_delta``."""
        if best is None:
            return True
        if self.mode == "min":
            return value < best - self.min_delta
        return value > best + self.min_delta


class ModelEMA:
    """An exponential moving average of a model's weights (and float buffers, e.g. BN stats).

    The decay ramps up as ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates, so the
    average is not dominated by the random initialisation early in a short run.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}.")
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay = decay
        self.updates = 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average one step towards ``model``'s current weights."""
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        ema_state, state = self.module.state_dict(), model.state_dict()
        floats = [k for k, v in ema_state.items() if v.dtype.is_floating_point]
        torch._foreach_lerp_([ema_state[k] for k in floats], [state[k] for k in floats], 1 - d)
        for k, v in ema_state.items():
            if not v.dtype.is_floating_point:
                v.copy_(state[k])

    def state_dict(self) -> dict[str, Any]:
        """The averaged weights and the update count, for checkpoints."""
        return {"module": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])


class Callback:
    """Hooks into :meth:`Trainer.fit`. Override what you need; set ``trainer.stop_training``."""

    def on_fit_start(self, trainer: Trainer) -> None:
        """Called once before the first epoch (also after a resume)."""

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        """Called after each epoch, once its checkpoint is written."""

    def on_fit_end(self, trainer: Trainer, history: History) -> None:
        """Called once after training, with the final weights in place."""


class History:
    """One row of metrics per epoch: ``history["val_acc"]`` gives a column as a list."""

    def __init__(self, rows: Sequence[dict[str, float]] = ()) -> None:
        self.rows: list[dict[str, float]] = [dict(r) for r in rows]

    def append(self, row: dict[str, float]) -> None:
        """Add one epoch's metrics."""
        self.rows.append(dict(row))

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key: str) -> list[float]:
        return [r[key] for r in self.rows if key in r]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, History) and self.rows == other.rows

    def __repr__(self) -> str:
        return f"History({len(self.rows)} epochs)"

    def best(self, monitor: str = "val_acc") -> dict[str, float]:
        """The row with the best ``monitor`` value (lowest for losses, highest otherwise)."""
        rows = [r for r in self.rows if monitor in r]
        if not rows:
            raise KeyError(f"No epoch recorded {monitor!r}.")
        pick = min if monitor.endswith("loss") else max
        return pick(rows, key=lambda r: r[monitor])

    def to_json(self, path: str | Path) -> None:
        """Write the rows as a JSON list."""
        _atomic_write_text(Path(path), json.dumps(self.rows, indent=2))

    def to_csv(self, path: str | Path) -> None:
        """Write the rows as CSV with a header."""
        keys = list(dict.fromkeys(k for r in self.rows for k in r))
        lines = [",".join(keys)]
        lines += [",".join(_csv_value(r.get(k, "")) for k in keys) for r in self.rows]
        _atomic_write_text(Path(path), "\n".join(lines) + "\n")

    @classmethod
    def from_csv(cls, path: str | Path) -> History:
        """Read a file written by :meth:`to_csv`."""
        with open(path, newline="") as f:
            return cls([{k: float(v) for k, v in r.items() if v != ""} for r in csv.DictReader(f)])


def _csv_value(v: object) -> str:
    return repr(v) if isinstance(v, float) else str(v)


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


# --------------------------------------------------------------------------- data


@dataclass
class _TensorData:
    images: torch.Tensor  # (N, 1, 28, 28), uint8 or float in [0, 1]
    targets: torch.Tensor  # (N,), int64

    def __len__(self) -> int:
        return len(self.targets)


def _in_memory(data: Any) -> _TensorData | None:
    """The images and targets of ``data`` as tensors, when it holds them in memory."""
    if (
        isinstance(data, (tuple, list))
        and len(data) == 2
        and all(isinstance(t, torch.Tensor) for t in data)
    ):
        images, targets = data
    elif isinstance(getattr(data, "images", None), torch.Tensor) and isinstance(
        getattr(data, "targets", None), torch.Tensor
    ):
        images, targets = data.images, data.targets
    elif isinstance(data, torch.utils.data.Subset):
        parent = _in_memory(data.dataset)
        if parent is None:
            return None
        idx = torch.as_tensor(list(data.indices), dtype=torch.long)
        return _TensorData(parent.images[idx], parent.targets[idx])
    else:
        return None
    if images.ndim == 3:
        images = images.unsqueeze(1)
    if images.ndim != 4 or len(images) != len(targets):
        raise ValueError(
            f"Expected images (N, 1, 28, 28) and targets (N,), got {tuple(images.shape)} "
            f"and {tuple(targets.shape)}."
        )
    return _TensorData(images, targets.long())


def _check_not_empty(data: Any, what: str) -> None:
    tensors = _in_memory(data)
    try:
        n = len(tensors if tensors is not None else data)
    except TypeError:
        return  # an iterable loader without a length: nothing to check up front
    if n == 0:
        raise ValueError(f"The {what} dataset is empty.")


# --------------------------------------------------------------------------- distributed


def _distributed_setup(device: torch.device) -> tuple[int, int]:
    """(rank, world_size); initialises the process group under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _all_reduce_sum(t: torch.Tensor, world: int) -> torch.Tensor:
    if world > 1:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


# --------------------------------------------------------------------------- the Trainer


class Trainer:
    """Train, evaluate and checkpoint an MNIST model.

    Args:
        model: any ``nn.Module`` taking float images (N, 1, 28, 28) in [0, 1].
        device: "auto" (cuda, then mps, then cpu), or an explicit device.
        precision: "auto", "fp32", "bf16" (autocast, CPU and CUDA) or "fp16" (CUDA, with a grad
            scaler). "auto" picks bf16 on a CPU or GPU that supports it.
        epochs: number of epochs (>= 1).
        batch_size: training batch size (per process under torchrun).
        optimizer: "adamw", "adam" or "sgd" (momentum 0.9, Nesterov).
        lr: learning rate; the peak rate for "onecycle" and "cosine".
        weight_decay: decoupled for AdamW, L2 for Adam and SGD.
        scheduler: "onecycle" or "cosine" (warmup then cosine; both stepped every batch),
            "step" or "plateau" (stepped every epoch), or "none".
        warmup_epochs: linear warm-up length for "cosine"; the warm-up share for "onecycle".
        label_smoothing: label smoothing of the training loss.
        augment: ``True`` for the default :class:`RandomAffine`, a ``RandomAffine``, or ``False``.
        ema_decay: decay of an EMA of the weights, evaluated and returned instead of the raw
            weights; ``None`` disables it.
        early_stopping: an :class:`EarlyStopping`, or ``None``.
        grad_clip: clip the gradient norm to this value, or ``None``.
        val_size: images carved from the training set for validation (fixed by ``seed``) when
            :meth:`fit` gets no ``val``; early stopping and checkpoints only ever look at these.
        checkpoint_dir: where ``last.pt``, ``best.pt`` and the history files go.
        resume: continue from ``checkpoint_dir/last.pt`` if it exists.
        seed: fixes data order, augmentation, dropout (and init, via :func:`seed_everything`).
        progress: a tqdm bar per epoch (``True``), one plain line per epoch (``"plain"``), nothing
            (``False``), or ``"auto"``: a bar on a terminal, plain lines otherwise.
        callbacks: :class:`Callback` objects.
        channels_last: use the channels-last memory format; ``None`` does so with autocast,
            which was faster for all three CNNs on this project's CPU.
        eval_batch_size: batch size for validation and :meth:`evaluate`.
        num_workers: DataLoader workers, for datasets that are not held in memory.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        device: str | torch.device = "auto",
        precision: str = "auto",
        epochs: int = 10,
        batch_size: int = 128,
        optimizer: str = "adamw",
        lr: float = 3e-3,
        weight_decay: float = 5e-4,
        scheduler: str = "onecycle",
        warmup_epochs: float = 1.0,
        label_smoothing: float = 0.1,
        augment: bool | RandomAffine = True,
        ema_decay: float | None = 0.999,
        early_stopping: EarlyStopping | None = None,
        grad_clip: float | None = None,
        val_size: int = 5000,
        checkpoint_dir: str | Path | None = None,
        resume: bool = False,
        seed: int = 0,
        progress: bool | str = "auto",
        callbacks: Sequence[Callback] = (),
        channels_last: bool | None = None,
        eval_batch_size: int = 1000,
        num_workers: int = 0,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
        _check_positive_int(epochs=epochs, batch_size=batch_size, eval_batch_size=eval_batch_size)
        if not lr > 0:
            raise ValueError(f"lr must be > 0, got {lr}.")
        if weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay}.")
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"Unknown optimizer {optimizer!r}: choose one of {OPTIMIZERS}.")
        if scheduler not in SCHEDULERS:
            raise ValueError(f"Unknown scheduler {scheduler!r}: choose one of {SCHEDULERS}.")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}.")
        if val_size < 0:
            raise ValueError(f"val_size must be >= 0, got {val_size}.")
        if grad_clip is not None and grad_clip <= 0:
            raise ValueError(f"grad_clip must be > 0 or None, got {grad_clip}.")
        if progress not in (True, False, "auto", "plain"):
            raise ValueError(f"progress must be True, False, 'auto' or 'plain', got {progress!r}.")
        if resume and checkpoint_dir is None:
            raise ValueError("resume=True needs a checkpoint_dir to resume from.")

        self.device = select_device(device)
        self.precision = select_precision(precision, self.device)
        self.rank, self.world_size = _distributed_setup(self.device)
        self.channels_last = self.precision != "fp32" if channels_last is None else channels_last
        self.model = model.to(self.device)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.epochs = epochs
        self.batch_size = batch_size
        self.optimizer_name = optimizer
        self.lr = lr
        self.weight_decay = weight_decay
        self.scheduler_name = scheduler
        self.warmup_epochs = warmup_epochs
        self.label_smoothing = label_smoothing
        self.augment = RandomAffine() if augment is True else (augment or None)
        self.ema_decay = ema_decay
        self.early_stopping = early_stopping
        self.grad_clip = grad_clip
        self.val_size = val_size
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.resume = resume
        self.seed = seed
        self.progress = progress
        self.callbacks = list(callbacks)
        self.eval_batch_size = eval_batch_size
        self.num_workers = num_workers
        self.history = History()
        self.stop_training = False
        self.ema: ModelEMA | None = None
        self._ddp_model: nn.Module | None = None
        self.model_name: str | None = None
        self.model_kwargs: dict[str, Any] = {}

    # ------------------------------------------------------------------ public API

    @classmethod
    def from_recipe(cls, name: str, **overrides: Any) -> Trainer:
        """A freshly initialised registry model and a Trainer set up by the model's recipe.

        ``overrides`` replace recipe entries (``epochs=1``, ``checkpoint_dir=...``); a
        ``model_kwargs`` dict is merged into the recipe's. The recipe's ``seed`` fixes the
        initialisation too. The model's name and kwargs are kept as ``trainer.model_name``
        and ``trainer.model_kwargs``, for :func:`mnist_zoo.save_pretrained`.
        """
        from .registry import create_model, get_model_entry

        entry = get_model_entry(name)
        recipe = dict(entry.recipe)
        model_kwargs = {**recipe.pop("model_kwargs", {}), **overrides.pop("model_kwargs", {})}
        recipe.update(overrides)
        seed_everything(recipe.get("seed", 0))
        trainer = cls(create_model(entry.name, **model_kwargs), **recipe)
        trainer.model_name, trainer.model_kwargs = entry.name, model_kwargs
        return trainer

    @property
    def is_main_process(self) -> bool:
        """True on rank 0 (and always when not distributed): the one that writes files."""
        return self.rank == 0

    def config(self) -> dict[str, Any]:
        """The recipe as plain data: what a checkpoint records and a model card shows."""
        return {
            "epochs": self.epochs,
            "batch_size": self.batch_size * self.world_size,
            "optimizer": self.optimizer_name,
            "lr": self.lr,
            "weight_decay": self.weight_decay,
            "scheduler": self.scheduler_name,
            "warmup_epochs": self.warmup_epochs,
            "label_smoothing": self.label_smoothing,
            "augment": asdict(self.augment) if self.augment else None,
            "ema_decay": self.ema_decay,
            "early_stopping": asdict(self.early_stopping) if self.early_stopping else None,
            "grad_clip": self.grad_clip,
            "val_size": self.val_size,
            "seed": self.seed,
            "precision": self.precision,
        }

    def fit(self, train: Any, val: Any = None) -> History:
        """Train on ``train``; validate on ``val`` or on a split carved from ``train``.

        ``train``/``val`` may be an ``MNIST`` dataset, an ``(images, targets)`` pair of tensors,
        any ``Dataset`` of ``(image, label)`` or a ``DataLoader``. Returns the :class:`History`;
        afterwards ``self.model`` holds the weights to use (the EMA, or the best epoch's when
        early stopping restores them).
        """
        _check_not_empty(train, "training")
        if val is not None:
            _check_not_empty(val, "validation")
        train, val = self._split(train, val)
        if self.early_stopping is not None and val is None:
            raise ValueError("Early stopping needs validation data: pass val or set val_size > 0.")
        seed_everything(self.seed)

        train_batches = self._batch_source(train, training=True)
        steps_per_epoch = train_batches.steps_per_epoch
        if steps_per_epoch < 1:
            raise ValueError(
                f"The training set is smaller than one batch ({self.batch_size} per process)."
            )
        self._val = self._batch_source(val, training=False) if val is not None else None

        optimizer = self._make_optimizer()
        scheduler = self._make_scheduler(optimizer, steps_per_epoch)
        scaler = torch.amp.GradScaler("cuda", enabled=self.precision == "fp16")
        self.ema = ModelEMA(self.model, self.ema_decay) if self.ema_decay else None
        self._ddp_model = self._wrap_distributed()
        best: dict[str, Any] = {"value": None, "epoch": -1, "state": None, "bad_epochs": 0}
        start_epoch = 0
        self.history = History()
        self.stop_training = False

        if self.resume:
            start_epoch = self._load_checkpoint(optimizer, scheduler, scaler, best)

        for cb in self.callbacks:
            cb.on_fit_start(self)
        for epoch in range(start_epoch, self.epochs):
            if self.stop_training:
                break
            metrics = self._train_one_epoch(epoch, train_batches, optimizer, scheduler, scaler)
            if self._val is not None:
                val_loss, val_acc = self._validate(self._eval_model())
                metrics.update(val_loss=val_loss, val_acc=val_acc)
                if self.scheduler_name == "plateau":
                    scheduler.step(val_loss)
                self._track_best(metrics, epoch, best)
            if self.scheduler_name == "step":
                scheduler.step()
            self.history.append(metrics)
            self._log_epoch(metrics)
            self._save_checkpoint(epoch, optimizer, scheduler, scaler, best)
            for cb in self.callbacks:
                cb.on_epoch_end(self, epoch, metrics)

        self._finalise(best)
        for cb in self.callbacks:
            cb.on_fit_end(self, self.history)
        return self.history

    def evaluate(
        self, data: Any, *, precision: str = "fp32", batch_size: int | None = None
    ) -> EvaluationResult:
        """Score ``self.model`` on ``data`` (any form :meth:`fit` takes); fp32 by default."""
        _check_not_empty(data, "evaluation")
        tensors = _in_memory(data) or self._materialise(data)
        return evaluate_model(
            self.model,
            tensors.images,
            tensors.targets,
            batch_size=batch_size or self.eval_batch_size,
            device=self.device,
            precision=select_precision(precision, self.device),
        )

    def predict(self, images: Any) -> Any:
        """Labels and probabilities for ``images``: see :func:`mnist_zoo.predict`."""
        from .inference import predict

        return predict(self.model, images, batch_size=self.eval_batch_size, device=self.device)

    # ------------------------------------------------------------------ building blocks

    def _split(self, train: Any, val: Any) -> tuple[Any, Any]:
        if val is not None or self.val_size == 0:
            return train, val
        if isinstance(train, DataLoader):
            raise ValueError(
                "Cannot carve a validation split out of a DataLoader: pass val=..., or "
                "val_size=0 to train without validation."
            )
        tensors = _in_memory(train)
        n = len(tensors if tensors is not None else train)
        if self.val_size >= n:
            raise ValueError(f"val_size={self.val_size} leaves no training data out of {n} images.")
        # The split depends on the seed only, so every run and resume sees the same one.
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed))
        val_idx = perm[: self.val_size].sort().values
        train_idx = perm[self.val_size :].sort().values
        if tensors is not None:
            return (
                _TensorData(tensors.images[train_idx], tensors.targets[train_idx]),
                _TensorData(tensors.images[val_idx], tensors.targets[val_idx]),
            )
        return (
            torch.utils.data.Subset(train, train_idx.tolist()),
            torch.utils.data.Subset(train, val_idx.tolist()),
        )

    def _batch_source(self, data: Any, *, training: bool) -> _Batches:
        tensors = _in_memory(data)
        if tensors is not None:
            return _TensorBatches(self, tensors, training=training)
        return _LoaderBatches(self, data, training=training)

    def _materialise(self, data: Any) -> _TensorData:
        loader = data if isinstance(data, DataLoader) else DataLoader(data, batch_size=1000)
        images, targets = zip(*((x, y) for x, y in loader), strict=True)
        return _TensorData(torch.cat(images), torch.cat(targets).long())

    def _make_optimizer(self) -> torch.optim.Optimizer:
        params = [p for p in self.model.parameters() if p.requires_grad]
        if self.optimizer_name == "adamw":
            return torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)
        if self.optimizer_name == "adam":
            return torch.optim.Adam(params, lr=self.lr, weight_decay=self.weight_decay)
        return torch.optim.SGD(
            params, lr=self.lr, momentum=0.9, nesterov=True, weight_decay=self.weight_decay
        )

    def _make_scheduler(self, optimizer: torch.optim.Optimizer, steps_per_epoch: int) -> Any:
        total = self.epochs * steps_per_epoch
        if self.scheduler_name == "onecycle":
            pct = min(0.5, max(0.05, self.warmup_epochs / self.epochs))
            return torch.optim.lr_scheduler.OneCycleLR(
                optimizer, max_lr=self.lr, total_steps=total, pct_start=pct
            )
        if self.scheduler_name == "cosine":
            warmup = min(total - 1, max(1, round(self.warmup_epochs * steps_per_epoch)))
            return torch.optim.lr_scheduler.SequentialLR(
                optimizer,
                [
                    torch.optim.lr_scheduler.LinearLR(optimizer, 0.01, 1.0, total_iters=warmup),
                    torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total - warmup),
                ],
                milestones=[warmup],
            )
        if self.scheduler_name == "step":
            step = max(1, self.epochs // 3)
            return torch.optim.lr_scheduler.StepLR(optimizer, step_size=step, gamma=0.1)
        if self.scheduler_name == "plateau":
            return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=1)
        return None

    def _wrap_distributed(self) -> nn.Module:
        if self.world_size == 1:
            return self.model
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(self.model, device_ids=ids)

    def _eval_model(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self.model

    # ------------------------------------------------------------------ one epoch

    def _train_one_epoch(
        self,
        epoch: int,
        batches: _Batches,
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
        scaler: torch.amp.GradScaler,
    ) -> dict[str, float]:
        model = self._ddp_model or self.model
        model.train()
        criterion = nn.CrossEntropyLoss(label_smoothing=self.label_smoothing)
        # Sums stay on the device: no per-batch .item() synchronisation in the hot loop.
        loss_sum = torch.zeros((), device=self.device, dtype=torch.float64)
        correct = torch.zeros((), device=self.device, dtype=torch.int64)
        seen = 0
        bar = self._progress_bar(epoch, batches.steps_per_epoch)
        start = time.perf_counter()
        for step, (x, y) in enumerate(batches.epoch(epoch)):
            with autocast_context(self.device, self.precision):
                logits = model(x)
            loss = criterion(logits.float(), y)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if self.grad_clip is not None:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            if self.scheduler_name in _PER_BATCH_SCHEDULERS:
                scheduler.step()
            if self.ema is not None:
                self.ema.update(self.model)
            loss_sum += loss.detach() * len(y)
            correct += (logits.detach().argmax(1) == y).sum()
            seen += len(y)
            if bar is not None and (step % 20 == 0 or step + 1 == batches.steps_per_epoch):
                elapsed = time.perf_counter() - start
                bar.set_postfix(
                    loss=f"{float(loss_sum) / seen:.4f}",
                    acc=f"{100 * int(correct) / seen:.2f}%",
                    img_s=f"{seen * self.world_size / max(elapsed, 1e-9):.0f}",
                    refresh=False,
                )
                bar.update(step + 1 - bar.n)
        elapsed = time.perf_counter() - start
        if bar is not None:
            bar.close()
        totals = torch.stack(
            [
                loss_sum,
                correct.double(),
                torch.tensor(seen, dtype=torch.float64, device=self.device),
            ]
        )
        loss_total, correct_total, seen_total = _all_reduce_sum(totals, self.world_size).tolist()
        return {
            "epoch": epoch + 1,
            "train_loss": loss_total / seen_total,
            "train_acc": correct_total / seen_total,
            "lr": optimizer.param_groups[0]["lr"],
            "images_per_s": seen_total / elapsed,
            "epoch_time_s": elapsed,
        }

    @torch.no_grad()
    def _validate(self, model: nn.Module) -> tuple[float, float]:
        model.eval()
        loss_sum = torch.zeros((), device=self.device, dtype=torch.float64)
        correct = torch.zeros((), device=self.device, dtype=torch.int64)
        seen = torch.zeros((), device=self.device, dtype=torch.float64)
        assert self._val is not None
        for x, y in self._val.epoch(0):
            with autocast_context(self.device, self.precision):
                logits = model(x).float()
            loss_sum += F.cross_entropy(logits, y, reduction="sum")
            correct += (logits.argmax(1) == y).sum()
            seen += len(y)
        totals = _all_reduce_sum(torch.stack([loss_sum, correct.double(), seen]), self.world_size)
        loss_total, correct_total, seen_total = totals.tolist()
        return loss_total / seen_total, correct_total / seen_total

    def _track_best(self, metrics: dict[str, float], epoch: int, best: dict[str, Any]) -> None:
        stopper = self.early_stopping or EarlyStopping(monitor="val_acc", patience=self.epochs)
        value = metrics[stopper.monitor]
        if stopper.improved(value, best["value"]):
            best.update(value=value, epoch=epoch, bad_epochs=0)
            best["state"] = {
                k: v.detach().cpu().clone() for k, v in self._eval_model().state_dict().items()
            }
        else:
            best["bad_epochs"] += 1
            if self.early_stopping is not None and best["bad_epochs"] >= stopper.patience:
                self.stop_training = True
                self._log(
                    f"early stopping: {stopper.monitor} has not improved for "
                    f"{stopper.patience} epochs (best {best['value']:.4f} at epoch "
                    f"{best['epoch'] + 1})"
                )

    def _finalise(self, best: dict[str, Any]) -> None:
        restore = self.early_stopping is not None and self.early_stopping.restore_best
        if restore and best["state"] is not None:
            self.model.load_state_dict(best["state"])
        elif self.ema is not None:
            self.model.load_state_dict(self.ema.module.state_dict())
        if self.world_size > 1:
            # BatchNorm statistics are per process; rank 0's become everyone's.
            for t in self.model.state_dict().values():
                dist.broadcast(t, src=0)
        self.model.eval()

    # ------------------------------------------------------------------ checkpoints

    def _save_checkpoint(
        self,
        epoch: int,
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
        scaler: torch.amp.GradScaler,
        best: dict[str, Any],
    ) -> None:
        if self.checkpoint_dir is None:
            return
        if self.is_main_process:
            self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
            state = {
                "format": "mnist_zoo.checkpoint/1",
                "epoch": epoch,
                "model": self.model.state_dict(),
                "ema": self.ema.state_dict() if self.ema is not None else None,
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict() if scheduler is not None else None,
                "scaler": scaler.state_dict(),
                "best": best,
                "history": self.history.rows,
                "rng": {"torch": torch.get_rng_state()},
                "config": self.config(),
                "stop_training": self.stop_training,
            }
            _atomic_torch_save(state, self.checkpoint_dir / "last.pt")
            if best["epoch"] == epoch:
                _atomic_torch_save(
                    {
                        "format": "mnist_zoo.weights/1",
                        "epoch": epoch,
                        "model": best["state"],
                        "config": self.config(),
                        "metrics": self.history.rows[-1],
                    },
                    self.checkpoint_dir / "best.pt",
                )
            self.history.to_csv(self.checkpoint_dir / "history.csv")
            self.history.to_json(self.checkpoint_dir / "history.json")
        if self.world_size > 1:
            dist.barrier()

    def _load_checkpoint(
        self,
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
        scaler: torch.amp.GradScaler,
        best: dict[str, Any],
    ) -> int:
        assert self.checkpoint_dir is not None
        path = self.checkpoint_dir / "last.pt"
        if not path.exists():
            self._log(f"resume: no checkpoint at {path}, starting from scratch")
            return 0
        state = torch.load(path, map_location=self.device, weights_only=True)
        saved = state.get("config", {})
        mine = self.config()
        differ = [
            k
            for k in ("epochs", "batch_size", "scheduler", "optimizer", "seed")
            if saved.get(k) != mine[k]
        ]
        if differ:
            raise ValueError(
                f"Cannot resume from {path}: it was written with a different "
                + ", ".join(f"{k} ({saved.get(k)!r} there, {mine[k]!r} here)" for k in differ)
                + ". Use the same settings, or another checkpoint_dir."
            )
        self.model.load_state_dict(state["model"])
        if self.ema is not None and state["ema"] is not None:
            self.ema.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None and state["scheduler"] is not None:
            scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        best.update(state["best"])
        if best["state"] is not None:
            best["state"] = {k: v.cpu() for k, v in best["state"].items()}
        self.history = History(state["history"])
        torch.set_rng_state(state["rng"]["torch"].cpu())
        self.stop_training = bool(state.get("stop_training", False))
        self._log(f"resumed from {path} after epoch {state['epoch'] + 1}/{self.epochs}")
        return int(state["epoch"]) + 1

    # ------------------------------------------------------------------ output

    def _use_bar(self) -> bool:
        if not self.is_main_process:
            return False
        if self.progress == "auto":
            return sys.stderr.isatty()
        return self.progress is True

    def _progress_bar(self, epoch: int, total: int) -> Any:
        if not self._use_bar():
            return None
        from tqdm.auto import tqdm

        return tqdm(
            total=total,
            desc=f"epoch {epoch + 1}/{self.epochs}",
            unit="batch",
            leave=False,
            dynamic_ncols=True,
        )

    def _log(self, line: str) -> None:
        if self.is_main_process and self.progress is not False:
            print(line, flush=True)

    def _log_epoch(self, m: dict[str, float]) -> None:
        line = (
            f"epoch {int(m['epoch'])}/{self.epochs}  train_loss {m['train_loss']:.4f}  "
            f"train_acc {100 * m['train_acc']:.2f}%"
        )
        if "val_loss" in m:
            line += f"  val_loss {m['val_loss']:.4f}  val_acc {100 * m['val_acc']:.2f}%"
        line += f"  lr {m['lr']:.2e}  {m['images_per_s']:.0f} img/s  {m['epoch_time_s']:.1f}s"
        self._log(line)


def _check_positive_int(**values: int) -> None:
    for name, v in values.items():
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {v!r}.")


def _atomic_torch_save(obj: Any, path: Path) -> None:
    """Write ``obj`` so that ``path`` holds either the old or the new file, never a torn one."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


# --------------------------------------------------------------------------- batch sources


class _Batches:
    """Yields (float images on the device, int64 labels on the device) for one epoch."""

    t: Trainer
    training: bool
    steps_per_epoch: int

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        raise NotImplementedError

    def _augment_generator(self, epoch: int) -> torch.Generator:
        # Depends on (seed, epoch, rank) only: a resumed run replays the same augmentation.
        t = self.t
        return torch.Generator().manual_seed((t.seed * 1_000_003 + epoch) * 31 + t.rank + 1)

    def _prepare(self, x: torch.Tensor, aug_gen: torch.Generator) -> torch.Tensor:
        """Float in [0, 1], augmented when training, in the Trainer's memory format."""
        x = to_float_images(x)
        if self.training and self.t.augment is not None:
            x = self.t.augment(x, aug_gen)
        if self.t.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x


class _TensorBatches(_Batches):
    """The fast path: the whole set on the device as uint8, batches sliced by a shuffled index."""

    def __init__(self, trainer: Trainer, data: _TensorData, *, training: bool) -> None:
        self.t = trainer
        self.training = training
        self.images = data.images.to(trainer.device)
        self.targets = data.targets.to(trainer.device)
        n = len(data)
        if training:
            # Every process gets an equal shard so that DDP steps stay in lock-step.
            self.per_rank = n // trainer.world_size
            self.steps_per_epoch = self.per_rank // trainer.batch_size
        else:
            self.steps_per_epoch = math.ceil(n / trainer.world_size / trainer.eval_batch_size)

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        t = self.t
        n = len(self.targets)
        if self.training:
            # Order and augmentation depend on (seed, epoch) only: a resumed run replays them.
            gen = torch.Generator().manual_seed(t.seed * 1_000_003 + epoch)
            order = torch.randperm(n, generator=gen)[t.rank :: t.world_size][: self.per_rank]
            bs = t.batch_size
        else:
            order = torch.arange(t.rank, n, t.world_size)
            bs = t.eval_batch_size
        order = order.to(t.device)
        aug_gen = self._augment_generator(epoch)
        for i in range(self.steps_per_epoch if self.training else math.ceil(len(order) / bs)):
            idx = order[i * bs : (i + 1) * bs]
            yield self._prepare(self.images[idx], aug_gen), self.targets[idx]


class _LoaderBatches(_Batches):
    """The general path: any Dataset of (image, label), or a DataLoader, used as given."""

    def __init__(self, trainer: Trainer, data: Any, *, training: bool) -> None:
        self.t = trainer
        self.training = training
        if isinstance(data, DataLoader):
            self.loader, self.sampler = data, None
        elif isinstance(data, Dataset):
            bs = trainer.batch_size if training else trainer.eval_batch_size
            self.sampler = torch.utils.data.DistributedSampler(
                data, num_replicas=trainer.world_size, rank=trainer.rank,
                shuffle=training, seed=trainer.seed, drop_last=training,
            )  # fmt: skip
            self.loader = DataLoader(
                data, batch_size=bs, sampler=self.sampler, drop_last=training,
                num_workers=trainer.num_workers,
            )  # fmt: skip
        else:
            raise TypeError(
                "Expected an MNIST dataset, an (images, targets) pair of tensors, a Dataset or "
                f"a DataLoader, got {type(data).__name__}."
            )
        self.steps_per_epoch = len(self.loader)

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        t = self.t
        if self.sampler is not None:
            self.sampler.set_epoch(epoch)
        aug_gen = self._augment_generator(epoch)
        for x, y in self.loader:
            x = x.to(t.device, non_blocking=True)
            if x.ndim == 3:
                x = x.unsqueeze(1)
            y = torch.as_tensor(y).to(t.device, non_blocking=True).long()
            yield self._prepare(x, aug_gen), y
