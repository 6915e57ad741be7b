"""The one way to train a registered model, score it on the test set once and save it.

```python
from mnist_zoo.pipeline import train_and_save

run = train_and_save("simplecnn", data="data/mnist", out="runs/simplecnn", epochs=3)
print(run.summary())                 # test accuracy, epochs, training time, where it went
run.metrics["train_time_s"]          # what config.json and the model card record
```

``mnist-zoo train``, ``examples/train.py`` and ``examples/study.py`` all go through
:func:`train_and_save`, so a model trained by any of them is saved the same way: weights,
``config.json`` (the recipe as data, the precision resolved) and a model card, in the layout
of its Hub repo, with the same metrics.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .calibration import (
    ECE_BINS,
    apply_temperature,
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
)
from .errors import InvalidArgumentError
from .evaluation import EvaluationResult, check_logits, result_from_logits
from .inference.batched import batched_logits
from .robustness import evaluate_corruptions
from .training import History, TrainConfig, Trainer
from .training.batches import split_validation
from .training.verify import check_writable_folder

__all__ = [
    "HUB_OWNER",
    "TrainingRun",
    "calibrate",
    "recorded_validation_split",
    "run_metrics",
    "train_and_save",
]

#: The Hub account that publishes this project's weights (``scripts/release.py`` gives each
#: release folder its repo, ``HUB_OWNER/NAME``).
HUB_OWNER = "mnist-zoo"


@dataclass
class TrainingRun:
    """What :func:`train_and_save` did.

    Attributes:
        name: The registry name of the model.
        model: The trained model (on the CPU, in eval mode).
        history: The per-epoch metrics, resumed epochs included.
        result: The test-set evaluation (fp32), scored once after training.
        metrics: What ``config.json`` records: the test metrics, ``val_accuracy`` (when
            there was validation), ``epochs_trained`` and ``train_time_s``, and
            ``recipe_changes`` when a resume changed the recipe (as ``Trainer.recipe_changes``
            lists them).
        config: The recipe as the run carried it out (precision resolved, global batch).
        out: The folder the model was saved to, in Hub layout.
        wall_time_s: Wall-clock seconds of this call's training (a resumed run's earlier
            sessions are not in it; ``metrics["train_time_s"]`` sums every epoch).
        calibration: ``config.json``'s calibration section (see :func:`calibrate`), or
            ``None`` when the run held out no validation split.
    """

    name: str
    model: nn.Module
    history: History
    result: EvaluationResult
    metrics: dict[str, Any]
    config: TrainConfig
    out: Path
    wall_time_s: float
    calibration: dict[str, Any] | None = None

    def summary(self) -> str:
        """One line: test accuracy, epochs, training time and where the weights are.

        Returns:
            The line, as ``mnist-zoo train`` prints it.
        """
        return (
            f"{self.name}: test accuracy {100 * self.result.accuracy:.2f}% after "
            f"{len(self.history)} epochs; training {self.metrics['train_time_s'] / 60:.1f} min "
            f"over all epochs, this run's wall time {self.wall_time_s / 60:.1f} min. "
            f"Weights in {self.out}/"
        )


def run_metrics(result: EvaluationResult, history: History) -> dict[str, Any]:
    """The metrics a trained model is saved with.

    Args:
        result: The test-set evaluation.
        history: The training history.

    Returns:
        ``result.to_dict()`` plus ``val_accuracy`` (the last epoch's, when validated),
        ``epochs_trained`` and ``train_time_s`` (the epoch times summed, so a resumed run
        counts every epoch, rounded to 0.1 s).
    """
    metrics = result.to_dict()
    if history["val_acc"]:
        metrics["val_accuracy"] = history["val_acc"][-1]
    metrics["epochs_trained"] = len(history)
    metrics["train_time_s"] = round(sum(history["epoch_time_s"]), 1)
    return metrics


def train_and_save(
    name: str,
    *,
    out: str | os.PathLike[str],
    data: str | os.PathLike[str] | None = None,
    download: bool = False,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    resume: bool = False,
    allow_recipe_change: bool = False,
    device: str = "auto",
    progress: bool | str = "auto",
    limit: int | None = None,
    test_limit: int | None = None,
    model_kwargs: dict[str, Any] | None = None,
    suite: bool = True,
    release: str | None = None,
    **overrides: Any,
) -> TrainingRun:
    """Train ``name`` with its recipe, score the test set once in fp32, save it in Hub layout.

    The model and its Trainer are built first (``Trainer.from_recipe``), so a bad setting
    fails before any data is read or any file written. After training, a temperature is fitted
    on the validation split the Trainer held out (never the test set) and recorded with its
    test-set ECE and NLL before and after in ``config.json``'s ``calibration`` section (see
    :func:`calibrate`); the corruption suite's result goes to ``metrics["robustness"]``.

    Args:
        name: A registered model name.
        out: The folder to save the model to (weights, ``config.json``, model card).
        data: The folder with the MNIST files; ``None`` reads ``$MNIST_ZOO_DATA`` (or the
            default cache folder).
        download: Download MNIST into ``data`` first if it is missing.
        checkpoint_dir: Checkpoints and history; default ``OUT/checkpoints``.
        resume: Continue from the checkpoints, if there are any.
        allow_recipe_change: On resume, continue with settings that differ from the
            checkpoint's instead of refusing; ``config.json`` then records the recipe the run
            finished with and, in ``metrics["recipe_changes"]``, what changed at which epoch.
        device: "auto", "cpu", "cuda", "cuda:N" or "mps".
        progress: As :class:`~mnist_zoo.training.Trainer` takes it; anything but ``False``
            also prints one line about the run before it starts.
        limit: Train on the first ``limit`` training images only (smoke runs); the
            validation split comes out of these.
        test_limit: Score on the first ``test_limit`` test images only (smoke runs).
        model_kwargs: Builder kwargs of the model, e.g. ``{"batch_norm": True}``.
        suite: Score the corruption suite
            (:func:`~mnist_zoo.robustness.evaluate_corruptions`, with the fitted temperature)
            on the test images and record it as ``metrics["robustness"]``; it takes about a
            minute on 10,000 images on a CPU. ``False`` for smoke runs.
        release: Train with the recipe of this release's weights (e.g. ``"v0.1.0"``, see
            :data:`~mnist_zoo.training.RELEASE_RECIPES`); ``None``: the model's recipe.
        **overrides: Recipe settings replacing the registry recipe's (``epochs=1``,
            ``val_size=500``, ``precision="fp32"``, ...).

    Returns:
        The trained model, its history, test result and metrics, and where it went.

    Raises:
        UnknownModelError: ``name`` is not registered.
        InvalidArgumentError: A bad setting, limit or release, or a validation split that leaves no
            training images.
        OutputFolderError: ``out`` or ``checkpoint_dir`` is a file or cannot be written
            (found before any data is read).
        MNISTNotFoundError: The MNIST files are not in ``data`` and ``download`` is false.
        CheckpointError: ``resume`` meets checkpoints that are damaged, of another model, or
            of another recipe (unless ``allow_recipe_change``).
        TrainingError: The loss stopped being finite; nothing is saved to ``out``.
        OSError: A folder cannot be written.
    """
    from .data import MNIST
    from .registry import get_model_entry

    entry = get_model_entry(name)
    _check_limit("limit", limit)
    _check_limit("test_limit", test_limit)
    out = Path(out)
    checkpoints = Path(checkpoint_dir) if checkpoint_dir is not None else out / "checkpoints"
    trainer = Trainer.from_recipe(
        entry.name, model_kwargs=model_kwargs, release=release, device=device,
        checkpoint_dir=checkpoints,
        resume=resume, allow_recipe_change=allow_recipe_change, progress=progress, **overrides,
    )  # fmt: skip
    if trainer.is_main_process:  # the one that writes: before any data is read
        check_writable_folder(out, "the output folder")
        check_writable_folder(checkpoints, "the checkpoint folder")
    train = MNIST(data, split="train", download=download)
    test = MNIST(data, split="test")
    if progress is not False and trainer.is_main_process:
        print(
            f"training {entry.name} for {trainer.config.epochs} epoch(s) on {trainer.device}, "
            f"precision {trainer.precision}",
            flush=True,
        )
    start = time.perf_counter()
    fitted = train if limit is None else (train.images[:limit], train.targets[:limit])
    history = trainer.fit(fitted)
    wall = time.perf_counter() - start
    # The test set is scored once, after training (nothing above looked at it), in one fp32
    # pass that the result, the calibration figures and the suite's clean column all use: for
    # MiniVGG on a CPU each pass is half a minute.
    images, labels = test.images[:test_limit], test.targets[:test_limit]
    logits = batched_logits(trainer.model, images, device=trainer.device).cpu()
    result = result_from_logits(logits, labels)
    metrics = {**run_metrics(result, history), **_run_notes(trainer, limit, len(train))}
    model, calibration, scored = trainer.model.cpu(), None, (images, labels, logits)
    if trainer.is_main_process:
        calibration = _calibrate_and_suite(model, trainer, fitted, scored, metrics, suite)
        _save(model, trainer, entry, out, metrics, calibration)
    return TrainingRun(
        entry.name, model, history, result, metrics, trainer.resolved_config, out, wall,
        calibration,
    )  # fmt: skip


def _run_notes(trainer: Trainer, limit: int | None, available: int) -> dict[str, Any]:
    """What a run's metrics record besides its scores: the recipe changes a resume allowed,
    and the number of training images when ``limit`` cut the set (the card then says so)."""
    notes: dict[str, Any] = {}
    if trainer.recipe_changes:
        notes["recipe_changes"] = trainer.recipe_changes
    if limit is not None and limit < available:
        notes["num_train_images"] = limit
    return notes


def _calibrate_and_suite(
    model: nn.Module,
    trainer: Trainer,
    fitted: Any,
    test: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    metrics: dict[str, Any],
    suite: bool,
) -> dict[str, Any] | None:
    """The calibration section, fitted on the Trainer's own split; the suite into ``metrics``.

    ``test`` is the test images, their labels and the model's fp32 logits on them.
    """
    images, labels, logits = test
    config = trainer.resolved_config
    # split_validation depends on the data, val_size and its seed only: the Trainer's very split.
    split_seed = config.validation_seed
    _, val = split_validation(fitted, None, val_size=config.val_size, seed=split_seed)
    calibration = calibrate(model, val, images, labels, seed=split_seed, test_logits=logits)
    if suite:
        temperature = calibration["temperature"] if calibration else None
        scored = evaluate_corruptions(
            model, images, labels, temperature=temperature, clean_logits=logits
        )
        metrics["robustness"] = scored.to_dict()
    return calibration


def recorded_validation_split(model: nn.Module, load_train: Callable[[], Any]) -> Any | None:
    """The validation images a loaded model's recorded recipe held out of ``train``.

    ``split_validation`` depends on the data, ``val_size`` and its seed only (``split_seed``,
    else ``seed``), so the recipe in
    ``model.pretrained_cfg`` (as ``config.json`` stores it) rebuilds the very split the model
    was validated (and its temperature fitted) on.

    Args:
        model: A model from :func:`~mnist_zoo.load_pretrained`.
        load_train: Returns MNIST's training split (in any form ``Trainer.fit`` takes); only
            called when the recipe records a split, so nothing is read for nothing.

    Returns:
        The validation split, or ``None`` when the model records no recipe with a
        ``val_size`` > 0 and an integer ``seed``.

    Raises:
        MNISTNotFoundError: ``load_train`` found no training split.
    """
    cfg = getattr(model, "pretrained_cfg", None)
    recipe = cfg.get("recipe") if isinstance(cfg, dict) else None
    if not isinstance(recipe, dict) or not recipe.get("val_size"):
        return None
    split_seed = recipe.get("split_seed")
    if split_seed is None:
        split_seed = recipe.get("seed")
    if not isinstance(split_seed, int):
        return None
    _, val = split_validation(load_train(), None, val_size=recipe["val_size"], seed=split_seed)
    return val


def calibrate(
    model: nn.Module,
    val: Any,
    test_images: torch.Tensor,
    test_labels: torch.Tensor,
    *,
    seed: int,
    test_logits: torch.Tensor | None = None,
) -> dict[str, Any] | None:
    """Fit a temperature on the validation split; measure ECE and NLL on the test set.

    This is the ``calibration`` section :func:`train_and_save` writes to ``config.json``::

        {"temperature": 1.31,
         "fitted_on": {"split": "validation", "num_images": 5000, "seed": 0},
         "test": {"num_images": 10000, "ece_bins": 15, "ece_before": 0.041,
                  "ece_after": 0.004, "nll_before": 0.099, "nll_after": 0.021}}

    Args:
        model: The trained model, in any mode (it is scored in eval mode).
        val: The validation split the Trainer held out (``split_validation``'s), or ``None``.
        test_images: The test images the model was scored on, uint8 (N, 28, 28).
        test_labels: Their labels.
        seed: The recipe's seed that chose the validation images (``validation_seed``).
        test_logits: The model's fp32 logits on ``test_images``, if already computed (as
            :func:`train_and_save` has them): used instead of a second pass over the images.

    Returns:
        The section, or ``None`` when there is no validation split to fit on.

    Raises:
        InvalidArgumentError: ``val`` is the test split (it never is here), or
            ``test_logits`` is not one row of logits per test label.
    """
    if val is None:
        return None
    temperature = fit_temperature(model, val)
    if test_logits is None:
        images = test_images.unsqueeze(1) if test_images.ndim == 3 else test_images
        logits = batched_logits(model, images).cpu()
    else:
        logits = check_logits(test_logits, len(test_labels), "test_logits")
    scaled = apply_temperature(logits, temperature)
    return {
        "temperature": temperature,
        "fitted_on": {"split": "validation", "num_images": len(val), "seed": seed},
        "test": {
            "num_images": len(test_labels),
            "ece_bins": ECE_BINS,
            "ece_before": expected_calibration_error(logits.softmax(1), test_labels),
            "ece_after": expected_calibration_error(scaled.softmax(1), test_labels),
            "nll_before": negative_log_likelihood(logits, test_labels),
            "nll_after": negative_log_likelihood(scaled, test_labels),
        },
    }


def _save(
    model: nn.Module,
    trainer: Trainer,
    entry: Any,
    out: Path,
    metrics: dict,
    calibration: dict[str, Any] | None,
) -> None:
    from .hub import save_pretrained

    save_pretrained(
        model,
        out,
        name=entry.name,
        model_kwargs=trainer.model_kwargs,
        recipe=trainer.resolved_config,
        metrics=metrics,
        # No repo_id: a run that reproduces a release's file gets the project's repo, any other
        # names none, so its card does not load the project's weights in its place.
        calibration=calibration,
    )


def _check_limit(name: str, value: object) -> None:
    if value is None:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InvalidArgumentError(f"{name} must be a positive number of images, got {value!r}.")
