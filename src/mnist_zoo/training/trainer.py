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

Why it is fast: an in-memory dataset (``MNIST``, or a pair of tensors) goes to the device
once as uint8; each batch is a slice of a shuffled index, made float and augmented there as a
whole batch (:mod:`mnist_zoo.training.batches`). Other datasets use the ordinary loader path.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..atomic import remove_stale_temporaries
from ..devices import seed_everything, select_device, select_precision
from ..errors import CheckpointError, InvalidArgumentError
from ..evaluation import EvaluationResult, evaluate_model
from . import distributed
from .augment import compose
from .batches import (
    BatchSource,
    batch_source,
    check_not_empty,
    in_memory,
    materialise,
    split_validation,
)
from .callbacks import BestSoFar, Callback, EarlyStopping
from .checkpoint import LAST_NAME, Resumed, TrainState, load_checkpoint, save_checkpoint
from .config import TrainConfig, apply_overrides, check_run_options
from .ema import ModelEMA
from .epoch import Placement, check_finite, train_one_epoch, validate
from .history import History
from .optim import make_optimizer, make_scheduler
from .progress import Reporter
from .recipes import registered_recipe
from .verify import check_writable_folder, describe_model

__all__ = ["Trainer"]


class Trainer:
    """Train, evaluate and checkpoint an MNIST model with a recipe (a :class:`TrainConfig`).

    ``Trainer(model)`` trains with exactly :data:`BASE_RECIPE` (v0.1.0's; :meth:`from_recipe`
    takes a model's own). Keyword arguments named like a recipe setting change it:
    ``Trainer(model, epochs=3)`` trains ``dataclasses.replace(BASE_RECIPE, epochs=3)``.

    Args:
        model: Any ``nn.Module`` taking float images (N, 1, 28, 28) in [0, 1].
        config: The recipe; ``None`` is :data:`BASE_RECIPE`.
        device: "auto" (cuda, then mps, then cpu), or an explicit device.
        checkpoint_dir: Where ``last.pt``, ``best.pt`` and the history files go; ``None``
            writes nothing.
        resume: Continue from ``checkpoint_dir/last.pt`` if it exists.
        allow_recipe_change: On resume, continue with a recipe that differs from the
            checkpoint's (from the resumed epoch on; recorded in ``recipe_changes``) instead of
            refusing it. ``seed``, ``split_seed``, ``val_size`` must match even so.
        progress: A tqdm bar per epoch (``True``), one plain line per epoch (``"plain"``),
            nothing (``False``), or ``"auto"``: a bar on a terminal, plain lines otherwise.
        callbacks: :class:`Callback` objects.
        channels_last: Use the channels-last memory format; ``None`` does so with autocast,
            which was faster for all three CNNs on this project's CPU.
        eval_batch_size: Batch size for validation and :meth:`evaluate`.
        num_workers: DataLoader workers, for datasets that are not held in memory.
        **overrides: Recipe settings (fields of :class:`TrainConfig`) replacing ``config``'s.

    Attributes:
        model: The model, on the device; after :meth:`fit` the weights to use.
        config: The recipe, as given (``precision`` may be "auto").
        device: The resolved device.
        precision: The resolved precision: "fp32", "bf16" or "fp16".
        rank: This process's rank under ``torchrun``, else 0.
        world_size: The number of processes, else 1.
        history: The per-epoch metrics of the last :meth:`fit`.
        ema: The EMA of the weights during and after :meth:`fit`, or ``None``.
        stop_training: Set it to ``True`` (from a callback) to end training after the epoch.
        model_name: The registry name when built by :meth:`from_recipe`, else ``None``.
        model_kwargs: The builder kwargs when built by :meth:`from_recipe`, else ``{}``.
        recipe_changes: The changes of recipe the last :meth:`fit` went through on resume:
            ``{"epoch": first epoch (1-based) trained with it, "changed": {setting: [before,
            after]}}``, oldest first; empty when the whole run had one recipe.

    Raises:
        TypeError: ``model`` is not an ``nn.Module``, ``config`` not a TrainConfig, or an
            override is not a recipe setting (the message lists the valid ones).
        InvalidArgumentError: A recipe setting or run option out of its range.
        DeviceNotAvailableError: An explicit device this machine does not have.
    """

    def __init__(
        self,
        model: nn.Module,
        config: TrainConfig | None = None,
        *,
        device: str | torch.device = "auto",
        checkpoint_dir: str | Path | None = None,
        resume: bool = False,
        allow_recipe_change: bool = False,
        progress: bool | str = "auto",
        callbacks: Sequence[Callback] = (),
        channels_last: bool | None = None,
        eval_batch_size: int = 1000,
        num_workers: int = 0,
        **overrides: Any,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
        self.config, _ = apply_overrides(config, overrides, "Trainer()")
        check_run_options(
            progress=progress, eval_batch_size=eval_batch_size, num_workers=num_workers,
            resume=resume, checkpoint_dir=checkpoint_dir, allow_recipe_change=allow_recipe_change,
        )  # fmt: skip
        self.device = select_device(device)
        self.precision = select_precision(self.config.precision, self.device)
        self.rank, self.world_size = distributed.setup(self.device)
        self.channels_last = self.precision != "fp32" if channels_last is None else channels_last
        self.model = model.to(self.device)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.resume = resume
        self.allow_recipe_change = allow_recipe_change
        self.recipe_changes: list[dict[str, Any]] = []
        self.progress = progress
        self.callbacks = list(callbacks)
        self.eval_batch_size = eval_batch_size
        self.num_workers = num_workers
        self.history = History()
        self.stop_training = False
        self.ema: ModelEMA | None = None
        self.model_name: str | None = None
        self.model_kwargs: dict[str, Any] = {}
        self._reporter = Reporter(
            progress, epochs=self.config.epochs, main_process=self.is_main_process
        )
        self._ddp_model: nn.Module | None = None
        self._val: BatchSource | None = None

    # ------------------------------------------------------------------ public API

    @classmethod
    def from_recipe(
        cls, name: str, *, model_kwargs: dict[str, Any] | None = None,
        release: str | None = None, **overrides: Any,
    ) -> Trainer:  # fmt: skip
        """A freshly initialised registry model and a Trainer set up by the model's recipe.

        The config is ``dataclasses.replace(get_recipe(name, release), **recipe_overrides)``; the
        recipe's ``seed`` fixes the initialisation too. The model's name and kwargs are kept
        as ``trainer.model_name`` and ``trainer.model_kwargs``, for
        :func:`mnist_zoo.save_pretrained`.

        Args:
            name: A registered model name.
            model_kwargs: Builder kwargs, e.g. ``{"batch_norm": True}``.
            release: Train with the recipe of this release's weights, e.g. ``"v0.1.0"``;
                ``None``: the model's recipe (see :func:`~mnist_zoo.training.get_recipe`).
            **overrides: Recipe settings (``epochs=1``) and run options
                (``checkpoint_dir=...``, ``device="cpu"``).

        Returns:
            The trainer, its model built and on the device.

        Raises:
            UnknownModelError: ``name`` is not registered.
            TypeError: An override that is neither a recipe setting nor a run option.
            InvalidArgumentError: An invalid setting or an unknown release.
        """
        from ..registry import create_model, get_model_entry

        entry = get_model_entry(name)
        recipe, recipe_kwargs = registered_recipe(entry, release)
        config, run_options = apply_overrides(recipe, overrides, "Trainer.from_recipe()")
        kwargs = {**recipe_kwargs, **(model_kwargs or {})}
        seed_everything(config.seed)
        trainer = cls(create_model(entry.name, **kwargs), config, **run_options)
        trainer.model_name, trainer.model_kwargs = entry.name, kwargs
        return trainer

    @property
    def is_main_process(self) -> bool:
        """True on rank 0 (and always when not distributed): the one that writes files."""
        return self.rank == 0

    @property
    def resolved_config(self) -> TrainConfig:
        """The recipe as this run carries it out: what checkpoints record and cards show.

        ``precision`` is the one resolved for the device, and ``batch_size`` the global batch
        (per process times the number of processes).
        """
        return dataclasses.replace(
            self.config,
            precision=self.precision,
            batch_size=self.config.batch_size * self.world_size,
        )

    def fit(self, train: Any, val: Any = None) -> History:
        """Train on ``train``; validate on ``val`` or on a split carved from ``train``.

        Args:
            train: An ``MNIST`` dataset, an ``(images, targets)`` pair of tensors, any
                ``Dataset`` of ``(image, label)`` or a ``DataLoader``.
            val: Validation data in any of those forms; ``None`` holds out
                ``config.val_size`` training images (fixed by the seed).

        Returns:
            The :class:`History`. Afterwards ``self.model`` holds the weights to use (the EMA,
            or the best epoch's when early stopping restores them), in eval mode.

        Raises:
            InvalidArgumentError: Empty data, a validation split that leaves no training
                data, a training set smaller than one batch, or early stopping without
                validation.
            CheckpointError: ``resume`` meets a checkpoint that is damaged, of another model,
                or of another recipe (unless ``allow_recipe_change``).
            OutputFolderError: ``checkpoint_dir`` is a file or cannot be written.
            TrainingError: The loss or the weights stopped being finite; the checkpoints
                keep the last finite epoch.
        """
        train_batches, state = self._setup(train, val)
        steps = train_batches.steps_per_epoch
        start_epoch = self._load_checkpoint(state, steps) if self.resume else 0
        for cb in self.callbacks:
            cb.on_fit_start(self)
        for epoch in range(start_epoch, self.config.epochs):
            if self.stop_training:
                break
            bar = self._reporter.epoch_bar(epoch, train_batches.steps_per_epoch, self.world_size)
            metrics = train_one_epoch(
                self.model, train_batches, state, self.config, self._placement,
                epoch=epoch, bar=bar, step_model=self._ddp_model,
            )  # fmt: skip
            if self._val is not None:
                val_loss, val_acc = validate(self._eval_model(), self._val, self._placement)
                metrics.update(val_loss=val_loss, val_acc=val_acc)
            check_finite(metrics, self.model, self.config)
            if self._val is not None:
                if self.config.scheduler == "plateau":
                    state.scheduler.step(metrics["val_loss"])
                self._track_best(metrics, epoch, state.best)
            if self.config.scheduler == "step":
                state.scheduler.step()
            self.history.append(metrics)
            self._reporter.log_epoch(metrics)
            self._save_checkpoint(epoch, state)
            for cb in self.callbacks:
                cb.on_epoch_end(self, epoch, metrics)

        self._finalise(state.best)
        for cb in self.callbacks:
            cb.on_fit_end(self, self.history)
        return self.history

    def evaluate(
        self, data: Any, *, precision: str = "fp32", batch_size: int | None = None
    ) -> EvaluationResult:
        """Score ``self.model`` on ``data``.

        Args:
            data: Any form :meth:`fit` takes.
            precision: "fp32" (the default, so test accuracy does not depend on the
                hardware), "bf16", "fp16" or "auto".
            batch_size: Default: the trainer's ``eval_batch_size``.

        Returns:
            Accuracy, loss, per-class accuracy, confusion matrix and predictions.

        Raises:
            InvalidArgumentError: ``data`` is empty, or the precision does not fit the device.
        """
        check_not_empty(data, "evaluation")
        tensors = in_memory(data) or materialise(data)
        return evaluate_model(
            self.model,
            tensors.images,
            tensors.targets,
            batch_size=batch_size or self.eval_batch_size,
            device=self.device,
            precision=select_precision(precision, self.device),
        )

    def predict(self, images: Any) -> Any:
        """Labels and probabilities for ``images``: see :func:`mnist_zoo.predict`.

        Args:
            images: What :func:`mnist_zoo.predict` takes: paths, arrays, tensors, PIL images.

        Returns:
            A :class:`mnist_zoo.Prediction`.
        """
        from ..inference import predict

        return predict(self.model, images, batch_size=self.eval_batch_size, device=self.device)

    # ------------------------------------------------------------------ setting up

    def _setup(self, train: Any, val: Any) -> tuple[BatchSource, TrainState]:
        """Check and split the data, seed, build the batch sources and the training state."""
        config = self.config
        if self.checkpoint_dir is not None and self.is_main_process:
            check_writable_folder(self.checkpoint_dir, "the checkpoint folder")
        check_not_empty(train, "training", getattr(self.model, "num_classes", None))
        if val is not None:
            check_not_empty(val, "validation", getattr(self.model, "num_classes", None))
        seed = config.validation_seed
        train, val = split_validation(train, val, val_size=config.val_size, seed=seed)
        if config.early_stopping is not None and val is None:
            raise InvalidArgumentError(
                "Early stopping needs validation data: pass val or set val_size > 0."
            )
        seed_everything(config.seed)

        train_batches = self._batch_source(train, training=True)
        steps_per_epoch = train_batches.steps_per_epoch
        if steps_per_epoch < 1:
            raise InvalidArgumentError(
                f"The training set is smaller than one batch ({config.batch_size} per process)."
            )
        self._val = self._batch_source(val, training=False) if val is not None else None

        optimizer = make_optimizer(self.model, config)
        scheduler = make_scheduler(optimizer, config, steps_per_epoch)
        scaler = torch.amp.GradScaler("cuda", enabled=self.precision == "fp16")
        self.ema = ModelEMA(self.model, config.ema_decay) if config.ema_decay else None
        self._ddp_model = distributed.wrap(self.model, self.device, self.world_size)
        self._placement = Placement(self.device, self.precision, self.world_size)
        self.history = History()
        self.stop_training = False
        self.recipe_changes = []
        return train_batches, TrainState(optimizer, scheduler, scaler, self.ema, BestSoFar())

    def _batch_source(self, data: Any, *, training: bool) -> BatchSource:
        return batch_source(
            data,
            training=training,
            device=self.device,
            batch_size=self.config.batch_size if training else self.eval_batch_size,
            seed=self.config.seed,
            rank=self.rank,
            world_size=self.world_size,
            augment=compose(self.config.augment, self.config.appearance) if training else None,
            channels_last=self.channels_last,
            num_workers=self.num_workers,
        )

    def _eval_model(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self.model

    def _track_best(self, metrics: dict[str, float], epoch: int, best: BestSoFar) -> None:
        early = self.config.early_stopping
        stopper = early or EarlyStopping(monitor="val_acc", patience=self.config.epochs)
        if best.update(metrics[stopper.monitor], epoch, self._eval_model(), stopper):
            return
        if early is not None and best.bad_epochs >= stopper.patience:
            self.stop_training = True
            self._reporter.log(
                f"early stopping: {stopper.monitor} has not improved for "
                f"{stopper.patience} epochs (best {best.value:.4f} at epoch {best.epoch + 1})"
            )

    def _finalise(self, best: BestSoFar) -> None:
        early = self.config.early_stopping
        if early is not None and early.restore_best and best.state is not None:
            self.model.load_state_dict(best.state)
        elif self.ema is not None:
            self.model.load_state_dict(self.ema.module.state_dict())
        # BatchNorm statistics are per process; rank 0's become everyone's.
        distributed.broadcast_weights(self.model, self.world_size)
        self.model.eval()

    # ------------------------------------------------------------------ checkpoints

    def _architecture(self) -> dict[str, Any]:
        return describe_model(self.model, self.model_name, self.model_kwargs or None)

    def _save_checkpoint(self, epoch: int, state: TrainState) -> None:
        if self.checkpoint_dir is None:
            return
        if self.is_main_process:
            save_checkpoint(
                self.checkpoint_dir, epoch=epoch, model=self.model, state=state,
                history=self.history, config=dataclasses.asdict(self.resolved_config),
                stop_training=self.stop_training, architecture=self._architecture(),
                recipe_changes=self.recipe_changes,
            )  # fmt: skip
        distributed.barrier(self.world_size)

    def _load_checkpoint(self, state: TrainState, steps_per_epoch: int) -> int:
        assert self.checkpoint_dir is not None
        path = self.checkpoint_dir / LAST_NAME
        if self.is_main_process:
            remove_stale_temporaries(self.checkpoint_dir)  # a kill mid-write leaves them
        resumed: Resumed | CheckpointError | None
        try:
            resumed = load_checkpoint(
                path, device=self.device, model=self.model, state=state,
                config=self.resolved_config, architecture=self._architecture(),
                allow_recipe_change=self.allow_recipe_change, steps_per_epoch=steps_per_epoch,
                repair=self.is_main_process,
            )  # fmt: skip
        except CheckpointError as err:
            resumed = err
        _agree_on_checkpoint(resumed, self.checkpoint_dir, self.world_size)
        if resumed is None:
            self._reporter.log(f"resume: no checkpoint at {path}, starting from scratch")
            return 0
        assert isinstance(resumed, Resumed)
        self.history = resumed.history
        self.stop_training = resumed.stop_training
        self.recipe_changes = resumed.recipe_changes
        self._reporter.log(
            f"resumed from {path} after epoch {resumed.next_epoch}/{self.config.epochs}"
        )
        return resumed.next_epoch


def _agree_on_checkpoint(
    resumed: Resumed | CheckpointError | None, folder: Path, world_size: int
) -> None:
    """Raise on every process unless all of them found the same checkpoint (or none)."""
    if isinstance(resumed, Resumed):
        mine = f"epoch {resumed.next_epoch} ({resumed.checksum[:12]})"
    else:
        mine = "no checkpoint" if resumed is None else "an unreadable checkpoint"
    found = distributed.all_gather(mine, world_size)
    if isinstance(resumed, CheckpointError):
        raise resumed
    if len(set(found)) > 1:
        seen = ", ".join(f"rank {rank}: {what}" for rank, what in enumerate(found))
        raise CheckpointError(
            f"The processes found different checkpoints in {folder} ({seen}). Put the "
            "checkpoint folder on storage that every machine reads, the same for all."
        )
