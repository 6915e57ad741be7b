"""The study, reproduced end to end: data checks, the three CNNs, test accuracy, error analysis.

Run from the repository root, with MNIST in the folder ``DIR`` (the four IDX files)::

    python examples/study.py --data DIR                    # train the three models, then report
    python examples/study.py --data DIR --epochs 30        # train as long as the study did
    python examples/study.py --data DIR --pretrained       # the published (pinned) weights
    python examples/study.py --data DIR --pretrained --hub-dir hub/   # local folders hub/NAME/
    python examples/study.py --data DIR --pretrained --hub-dir hub/ --histories runs/
    python examples/study.py --data DIR --quick            # smoke run: 500 images, 1 epoch

Without ``--data`` MNIST is read from ``$MNIST_ZOO_DATA`` (``export MNIST_ZOO_DATA=DIR``).

Training uses each model's registry recipe (``--epochs`` overrides its length), checkpoints every
epoch under ``--runs`` (default ``runs/study/NAME/``) and resumes from there, so an interrupted
run loses at most one epoch. Each trained model is saved there in Hub layout too, so
``--pretrained --hub-dir runs/study`` rebuilds the report from the weights, training curves
included. ``--pretrained`` evaluates the weights only, a few minutes on a CPU (most of them the
corruption suite); it takes them from ``hub/NAME/`` when this checkout has the pinned file (same
SHA-256), else from the Hub; for weights trained elsewhere, ``--histories FOLDER`` finds their
``FOLDER/NAME/history.csv`` (as ``mnist-zoo train --checkpoint-dir runs/NAME`` writes it) for
the training curves.

The report goes to ``--out`` (default ``report/``, with ``--quick`` ``report/quick/``):
``report.md`` and its PNG figures. Test accuracy against the study's published figures,
per-class accuracy, confusion matrices, the misclassified digits of each model, the overlap of
errors between the models (shared misclassified images and shared (true, predicted) pairs, as
the study compared them), the ensemble of the three that the study proposed as a next step,
the corruption suite (accuracy on the 15 MNIST-C corruptions of the test set, their mean, and
calibration before and after temperature scaling; also written to ``robustness.json``), and, when
histories are at hand, training curves and validation accuracy against training time.

``--quick`` trains each model on the first 500 training images for one epoch (or, with
``--pretrained``, only loads them) and evaluates on the first 200 test images (the corruption
suite on the first 20): a check that everything runs, not a result. It writes its checkpoints
to ``runs/study-quick/`` and its report to ``report/quick/``, so a smoke run never replaces a
real run's. Needs matplotlib (``pip install "mnist-zoo[plot]"``); without it the script says
so in one line and exits with status 1.
"""

from __future__ import annotations

import argparse
import itertools
import json
import shlex
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import mnist_zoo
from mnist_zoo.errors import run_command
from mnist_zoo.evaluation import EvaluationResult, confusion_matrix, evaluate_model
from mnist_zoo.hub import HubError, load_pretrained, sha256_file
from mnist_zoo.pipeline import TrainingRun, train_and_save
from mnist_zoo.registry import count_parameters, get_model_entry
from mnist_zoo.robustness import evaluate_corruptions
from mnist_zoo.training import History

#: The study's three models and their published test accuracies.
STUDY_ACCURACY = {"simplecnn": 0.9931, "deepercnn": 0.9938, "minivgg": 0.9960}
#: ``--quick`` sizes: enough images for a few batches, few enough to take seconds.
QUICK_TRAIN_IMAGES = 500
QUICK_TEST_IMAGES = 200
#: ``--quick``'s corruption suite: 16 passes over these images per model.
QUICK_SUITE_IMAGES = 20
#: Misclassified digits drawn per model; the most confident mistakes come first.
MAX_SHOWN_ERRORS = 48
#: "Converged" for the report: validation accuracy within this many points of its best.
CONVERGED_WITHIN = 0.001
DPI = 100
#: The one line printed instead of a traceback when the ``plot`` extra is not installed.
PLOT_EXTRA_MISSING = 'study.py: error: the figures need matplotlib: pip install "mnist-zoo[plot]"'
#: Figure width in inches: at ``DPI`` it is the width of the documentation's text column (about
#: 720 px), so the figures are shown at full size there and 9-point labels stay readable.
WIDTH = 7.2
#: Font size of legends, bar labels and counts; smaller text is unreadable in the page.
SMALL = 9


@dataclass
class ModelRun:
    """One model of the study: where it came from and how it scored.

    Attributes:
        name: Registry name.
        parameters: Number of parameters.
        source: Where the weights came from, for the report.
        result: Its evaluation on the test set (or the quick subset of it).
        history: Per-epoch metrics when it was trained here or the history file was found.
        train_time_s: Time spent training, when known.
        robustness: Its corruption-suite figures (``SuiteResult.to_dict()``), when scored.
    """

    name: str
    parameters: int
    source: str
    result: EvaluationResult
    history: History | None = None
    train_time_s: float | None = None
    robustness: dict[str, Any] | None = None

    @property
    def errors(self) -> set[int]:
        """Indices of the misclassified test images."""
        return set(self.result.errors())


@dataclass
class StudyModel:
    """A model of the study before it is scored: trained here or loaded.

    Attributes:
        name: Registry name.
        model: The model, on the CPU.
        history: Per-epoch metrics, when known.
        train_time_s: Time spent training, when known.
        source: Where the weights came from, for the report.
        result: Its test result when trained here (scored once, after training), else None.
        temperature: Its temperature, fitted on its validation split, when known.
        robustness: Its corruption-suite figures when training already scored them.
    """

    name: str
    model: nn.Module
    history: History | None
    train_time_s: float | None
    source: str
    result: EvaluationResult | None = None
    temperature: float | None = None
    robustness: dict[str, Any] | None = None


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse the command line.

    Args:
        argv: The arguments, without the program name; ``None`` reads ``sys.argv``.

    Returns:
        The parsed options.
    """
    parser = argparse.ArgumentParser(description="Reproduce the study and write report/.")
    parser.add_argument(
        "--pretrained", action="store_true", help="load weights instead of training"
    )
    parser.add_argument(
        "--hub-dir", type=Path, help="with --pretrained: load HUB_DIR/NAME/ instead of the Hub"
    )
    parser.add_argument(
        "--histories", type=Path, help="with --pretrained: HISTORIES/NAME/history.csv files"
    )
    parser.add_argument("--epochs", type=int, help="override the recipe's number of epochs")
    parser.add_argument(
        "--models", nargs="+", default=list(STUDY_ACCURACY), help="models (default: the three)"
    )
    parser.add_argument("--data", metavar="DIR", help="MNIST folder (default: $MNIST_ZOO_DATA)")
    parser.add_argument(
        "--out", type=Path, help="report folder (default: report, with --quick report/quick)"
    )
    parser.add_argument(
        "--runs", type=Path, help="checkpoints and trained weights (default: runs/study)"
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    parser.add_argument(
        "--quick", action="store_true", help=f"smoke run on {QUICK_TRAIN_IMAGES:,} images"
    )
    args = parser.parse_args(argv)
    if (args.hub_dir is not None or args.histories is not None) and not args.pretrained:
        parser.error("--hub-dir and --histories go with --pretrained")
    if args.runs is None:
        # Apart from the real runs, so a smoke run never resumes into (or from) them.
        args.runs = Path("runs/study-quick" if args.quick else "runs/study")
    if args.out is None:
        # Likewise, a smoke run's report never replaces the real one.
        args.out = Path("report/quick" if args.quick else "report")
    return args


# ---------------------------------------------------------------------------- models


def train_model(name: str, args: argparse.Namespace) -> TrainingRun:
    """Train ``name`` with its registry recipe, score it on the test set and save it.

    This is :func:`mnist_zoo.pipeline.train_and_save`, the path ``mnist-zoo train`` takes: it
    resumes from ``RUNS/NAME/checkpoints`` if there are checkpoints, scores the test set once
    after training and saves the model in Hub layout in ``RUNS/NAME``.

    Args:
        name: Registry name.
        args: The command-line options (data, epochs, runs folder, device, quick).

    Returns:
        The trained model (on the CPU), its history and its test result.
    """
    overrides: dict[str, Any] = {}
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    if args.quick:
        # The default 5,000-image validation split would swallow the whole subset.
        overrides.update(epochs=1, val_size=QUICK_TRAIN_IMAGES // 10)
    return train_and_save(
        name,
        data=args.data,
        out=args.runs / name,
        device=args.device,
        resume=True,
        progress="plain",
        limit=QUICK_TRAIN_IMAGES if args.quick else None,
        test_limit=QUICK_TEST_IMAGES if args.quick else None,
        suite=not args.quick,  # the corruption suite takes minutes; --quick is a smoke run
        **overrides,
    )


def training_time(history: History | None, metrics: dict[str, Any]) -> float | None:
    """Seconds spent training: the sum of the epoch times, else what the weights' config says.

    Args:
        history: The per-epoch history, if known.
        metrics: The ``metrics`` of a Hub folder's ``config.json`` (may be empty).

    Returns:
        The time in seconds, or ``None`` when nothing records it.
    """
    if history is not None and history["epoch_time_s"]:
        # Epoch times add up across resumed sessions; a wall clock around fit() would not.
        return float(sum(history["epoch_time_s"]))
    for key in ("train_time_s", "train_wall_time_s"):
        if isinstance(metrics.get(key), (int, float)):
            return float(metrics[key])
    return None


def find_history(name: str, weights_dir: Path, histories: Path | None) -> History | None:
    """The training history of a loaded model, if one can be found.

    Args:
        name: Registry name.
        weights_dir: The folder the weights were loaded from.
        histories: The ``--histories`` folder, if given.

    Returns:
        The history, or ``None``.
    """
    # This script keeps it beside the weights; mnist-zoo train --checkpoint-dir elsewhere.
    candidates = [weights_dir / "checkpoints" / "history.csv"]
    if histories is not None:
        candidates += [
            histories / name / "history.csv",
            histories / name / "checkpoints" / "history.csv",
        ]
    found = next((path for path in candidates if path.is_file()), None)
    return History.from_csv(found) if found is not None else None


def pinned_copy(name: str) -> str | Path:
    """Where ``--pretrained`` loads ``name`` from when no ``--hub-dir`` is given.

    A checkout of mnist_zoo ships the published weights under ``hub/NAME/``. When that file has
    exactly the SHA-256 the registry pins, it is the same file the Hub serves, so it is used
    and nothing is downloaded; otherwise the registry name is returned and the weights come
    from the Hub (cached, pinned and verified by ``load_pretrained``).
    """
    pin = get_model_entry(name).pretrained
    local = Path(__file__).resolve().parents[1] / "hub" / name
    weights = local / pin.filename if pin is not None else None
    if weights is not None and weights.is_file() and sha256_file(weights) == pin.sha256:
        print(f"{name}: using {local} (the pinned Hub weights, same SHA-256)")
        return local
    return name


def get_models(args: argparse.Namespace, train: mnist_zoo.MNIST) -> list[StudyModel]:
    """Train or load every model the command line names.

    Args:
        args: The command-line options.
        train: The training split (unused with ``--pretrained``).

    Returns:
        Per model: the model, its history and training time, its source and, for a model
        trained here, its test result and (without ``--quick``) its corruption-suite figures;
        a loaded one is not scored yet.

    Raises:
        HubError: A model's weights could not be loaded.
    """
    models = []
    for name in args.models:
        if args.pretrained:
            where = args.hub_dir / name if args.hub_dir is not None else pinned_copy(name)
            model = load_pretrained(where, device="cpu")
            cfg = model.pretrained_cfg
            history = find_history(name, Path(cfg["source"]).parent, args.histories)
            seconds = training_time(history, cfg.get("metrics") or {})
            source = f"loaded from `{where}`" + (f" ({cfg['repo_id']})" if cfg["repo_id"] else "")
            temperature = cfg.get("temperature")
            models.append(StudyModel(name, model, history, seconds, source, None, temperature))
            continue
        run = train_model(name, args)
        images = min(QUICK_TRAIN_IMAGES, len(train)) if args.quick else len(train)
        seconds = training_time(run.history, {})
        source = f"trained here, {len(run.history)} epoch(s) on {images:,} images"
        trained = StudyModel(name, run.model, run.history, seconds, source, run.result)
        trained.temperature = run.calibration["temperature"] if run.calibration else None
        trained.robustness = run.metrics.get("robustness")
        models.append(trained)
    return models


def score_suite(
    study_model: StudyModel, images: torch.Tensor, targets: torch.Tensor
) -> dict[str, Any]:
    """The model's corruption-suite figures on ``images``, with its temperature when known.

    A model trained here without ``--quick`` was already scored by ``train_and_save`` on the
    same test images (with the same seed and temperature); its figures are used as they are.

    Args:
        study_model: The model.
        images: The test images the suite corrupts, uint8 (N, 1, 28, 28).
        targets: Their labels.

    Returns:
        ``SuiteResult.to_dict()``: clean and per-corruption accuracy, the mean, NLL and ECE.
    """
    stored = study_model.robustness
    if stored is not None and stored.get("num_images") == len(images):
        return stored
    start = time.perf_counter()
    result = evaluate_corruptions(
        study_model.model, images, targets, temperature=study_model.temperature
    )
    print(f"{study_model.name}: corruption suite, mean accuracy "
          f"{_percent(result.mean_accuracy)} on {len(images):,} images "
          f"({time.perf_counter() - start:.0f} s)", flush=True)  # fmt: skip
    return result.to_dict()


# ---------------------------------------------------------------------------- analysis


def ensemble_result(runs: Sequence[ModelRun]) -> EvaluationResult:
    """Score the equal-weight ensemble of the models from their stored probabilities.

    This is what ``mnist_zoo.Ensemble(models)`` predicts (the mean of the members'
    probabilities), without running the models a second time.

    Args:
        runs: The evaluated models, all on the same images.

    Returns:
        The ensemble's evaluation; its loss is the negative log-likelihood of the mean.
    """
    probabilities = torch.stack([run.result.probabilities for run in runs]).mean(0)
    targets = runs[0].result.targets
    predictions = probabilities.argmax(1)
    confusion = confusion_matrix(targets, predictions, probabilities.shape[1])
    per_class = confusion.diag().double() / confusion.sum(1).clamp(min=1).double()
    log_probs = probabilities.clamp_min(1e-12).log()
    return EvaluationResult(
        accuracy=float((predictions == targets).double().mean()),
        loss=float(nn.functional.nll_loss(log_probs, targets)),
        num_images=len(targets),
        per_class_accuracy=per_class.tolist(),
        confusion=confusion,
        predictions=predictions,
        targets=targets,
        probabilities=probabilities,
    )


def converged_epoch(history: History) -> int | None:
    """The first epoch whose validation accuracy is within ``CONVERGED_WITHIN`` of the best.

    Args:
        history: A training history with ``val_acc``.

    Returns:
        The 1-based epoch, or ``None`` without validation.
    """
    accuracies = history["val_acc"]
    if not accuracies:
        return None
    best = max(accuracies)
    return next(i + 1 for i, acc in enumerate(accuracies) if acc >= best - CONVERGED_WITHIN)


def error_pairs(run: ModelRun) -> Counter[tuple[int, int]]:
    """How often each (true, predicted) mistake occurs.

    Args:
        run: An evaluated model.

    Returns:
        Counts keyed by (true label, predicted label), mistakes only.
    """
    wrong = run.result.predictions != run.result.targets
    true, predicted = run.result.targets[wrong].tolist(), run.result.predictions[wrong].tolist()
    return Counter(zip(true, predicted, strict=True))


# ---------------------------------------------------------------------------- figures


def _save(fig: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)


def _legend_above(ax: Any, ncol: int) -> None:
    # Above the axes, in one row: inside them a legend can hide a bar or a point.
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=ncol, frameon=False,
              fontsize=SMALL)  # fmt: skip


def _zoomed_limits(values: Sequence[float]) -> tuple[float, float]:
    # Accuracies near 100% differ by tenths of a point: zoom in, but never past 0 or 100.
    low = min(values)
    margin = max(0.2, (100 - low) * 0.5)
    return max(0.0, low - margin), 100.0


def plot_accuracy(runs: Sequence[ModelRun], ensemble: EvaluationResult, path: Path) -> None:
    """Test accuracy of each model beside the study's published figure.

    Args:
        runs: The evaluated models.
        ensemble: The ensemble's evaluation.
        path: Where to write the PNG.
    """
    import matplotlib.pyplot as plt

    names = [run.name for run in runs] + ["ensemble"]
    ours = [100 * run.result.accuracy for run in runs] + [100 * ensemble.accuracy]
    study = [100 * STUDY_ACCURACY[run.name] if run.name in STUDY_ACCURACY else None for run in runs]
    study.append(None)
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(WIDTH, 3.4))
    bars = ax.bar(x - 0.2, ours, 0.4, label="this run", color="tab:blue")
    ax.bar_label(bars, fmt="%.2f", fontsize=SMALL, padding=2)
    published = [(i, v) for i, v in enumerate(study) if v is not None]
    if published:
        positions, values = zip(*published, strict=True)
        bars = ax.bar(np.array(positions) + 0.2, values, 0.4, label="study", color="tab:grey")
        ax.bar_label(bars, fmt="%.2f", fontsize=SMALL, padding=2)
    low, high = _zoomed_limits(ours + [v for v in study if v is not None])
    ax.set_ylim(low, high + (high - low) * 0.08)
    ax.set_xticks(x, names)
    ax.set_ylabel("test accuracy (%)")
    _legend_above(ax, ncol=2)
    ax.spines[["top", "right"]].set_visible(False)
    _save(fig, path)


def plot_per_class(runs: Sequence[ModelRun], path: Path) -> None:
    """Per-class test accuracy of each model, one line per model.

    Args:
        runs: The evaluated models.
        path: Where to write the PNG.
    """
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(WIDTH, 3.4))
    values = []
    for run, marker in zip(runs, itertools.cycle("osD^v"), strict=False):
        accuracies = [100 * a for a in run.result.per_class_accuracy]
        values += accuracies
        ax.plot(range(10), accuracies, marker=marker, label=run.name)
    ax.set_ylim(*_zoomed_limits(values))
    ax.set_xticks(range(10))
    ax.set_xlabel("digit")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3)
    _legend_above(ax, ncol=len(runs))
    ax.spines[["top", "right"]].set_visible(False)
    _save(fig, path)


def plot_confusions(
    runs: Sequence[ModelRun], path: Path, ensemble: EvaluationResult | None = None
) -> None:
    """Confusion matrices, two per row, coloured on a log scale so rare mistakes show.

    Args:
        runs: The evaluated models.
        path: Where to write the PNG.
        ensemble: The ensemble's evaluation, drawn after the models when given.
    """
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    panels = [(run.name, run.result) for run in runs]
    if ensemble is not None:
        panels.append(("ensemble", ensemble))
    # Two per row: three side by side would shrink the cells below their four-digit counts.
    columns = min(2, len(panels))
    rows = -(-len(panels) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(WIDTH, WIDTH / columns * rows), squeeze=False)
    for ax in axes.flat[len(panels) :]:
        ax.set_axis_off()
    for ax, (name, result) in zip(axes.flat, panels, strict=False):
        confusion = result.confusion.numpy()
        norm = LogNorm(vmin=1, vmax=confusion.max() + 1)
        ax.imshow(confusion + 1, cmap="Blues", norm=norm)
        for (true, guess), count in np.ndenumerate(confusion):
            if count:
                # Light text on dark cells, dark text on light ones.
                colour = "white" if norm(count + 1) > 0.6 else "black"
                ax.text(guess, true, str(count), ha="center", va="center", fontsize=7.5,
                        color=colour)  # fmt: skip
        ax.set_xticks(range(10))
        ax.set_yticks(range(10))
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"{name}: {result.num_errors} errors", fontsize=10.5)
    fig.tight_layout()
    _save(fig, path)


def draw_digits(
    ax: Any, images: torch.Tensor, captions: Sequence[str], columns: int, caption_size: float = 8
) -> None:
    """Draw 28x28 digits in a grid on one axis, each with a caption above it.

    One image with text on top is far faster to draw than a subplot per digit.

    Args:
        ax: The matplotlib axis.
        images: uint8 images (N, 1, 28, 28).
        captions: One caption per image.
        columns: Digits per row.
        caption_size: Font size of the captions.
    """
    rows = max(1, -(-len(images) // columns))
    cell_w, cell_h, top = 30, 40, 11  # pixels: a gap between digits, room for a caption
    # Dark ink on white paper (gray_r), each digit in a light grey frame.
    mosaic = np.zeros((rows * cell_h, columns * cell_w))
    for index, (image, caption) in enumerate(zip(images, captions, strict=True)):
        row, column = divmod(index, columns)
        y, x = row * cell_h + top, column * cell_w + 1
        mosaic[y - 1 : y + 29, x - 1 : x + 29] = 0.25
        mosaic[y : y + 28, x : x + 28] = image[0].numpy() / 255
        ax.text(x + 14, y - 2, caption, ha="center", va="bottom", fontsize=caption_size)
    ax.imshow(mosaic, cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
    ax.set_axis_off()


def plot_misclassified(run: ModelRun, test_images: torch.Tensor, path: Path) -> None:
    """The model's misclassified digits, most confident mistakes first, captioned true->pred.

    Args:
        run: The evaluated model.
        test_images: The test images it was evaluated on, uint8 (N, 1, 28, 28).
        path: Where to write the PNG.
    """
    import matplotlib.pyplot as plt

    result = run.result
    wrong = sorted(run.errors, key=lambda i: -float(result.probabilities[i].max()))
    shown = wrong[:MAX_SHOWN_ERRORS]
    columns = 12
    rows = max(1, -(-len(shown) // columns))
    fig, ax = plt.subplots(figsize=(columns * 0.62, rows * 0.85 + 0.5))
    captions = [f"{int(result.targets[i])}→{int(result.predictions[i])}" for i in shown]
    draw_digits(ax, test_images[shown], captions, columns)
    more = f", the {len(shown)} most confident shown" if len(wrong) > len(shown) else ""
    ax.set_title(f"{run.name}: {len(wrong)} misclassified (true→predicted){more}", fontsize=10)
    _save(fig, path)


def plot_error_overlap(runs: Sequence[ModelRun], path: Path) -> None:
    """How many misclassified images each combination of models has in common (exclusively).

    Args:
        runs: The evaluated models.
        path: Where to write the PNG.
    """
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    errors = {run.name: run.errors for run in runs}
    everyone = set().union(*errors.values())
    groups: Counter[tuple[str, ...]] = Counter(
        tuple(name for name in errors if index in errors[name]) for index in everyone
    )
    labels = sorted(groups, key=lambda g: (len(g), [run.name for run in runs].index(g[0])))
    # Narrower than WIDTH: the combination labels to the left of the axes take the rest.
    fig, ax = plt.subplots(figsize=(WIDTH - 1.2, 0.38 * len(labels) + 1))
    bars = ax.barh(range(len(labels)), [groups[g] for g in labels], color="tab:red")
    ax.bar_label(bars, fontsize=SMALL, padding=2)
    names = [" & ".join(group) + (" only" if len(group) == 1 else "") for group in labels]
    ax.set_yticks(range(len(labels)), names)
    ax.invert_yaxis()
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("misclassified test images")
    ax.set_title("which models get the same images wrong", fontsize=10)
    ax.spines[["top", "right"]].set_visible(False)
    _save(fig, path)


def plot_shared_errors(runs: Sequence[ModelRun], test_images: torch.Tensor, path: Path) -> None:
    """The digits every model gets wrong, captioned with the true label and each prediction.

    Args:
        runs: The evaluated models.
        test_images: The test images, uint8 (N, 1, 28, 28).
        path: Where to write the PNG.
    """
    import matplotlib.pyplot as plt

    shared = sorted(set.intersection(*(run.errors for run in runs)))[:MAX_SHOWN_ERRORS]
    columns = 12
    rows = max(1, -(-len(shared) // columns))
    fig, ax = plt.subplots(figsize=(columns * 0.62, rows * 0.85 + 0.6))
    targets = runs[0].result.targets
    captions = [
        f"{int(targets[i])}:" + "".join(str(int(run.result.predictions[i])) for run in runs)
        for i in shared
    ]
    draw_digits(ax, test_images[shared], captions, columns)
    order = "/".join(run.name for run in runs)
    ax.set_title(f"misclassified by all {len(runs)} models (true: predictions of {order})",
                 fontsize=10)  # fmt: skip
    _save(fig, path)


def suite_rows(runs: Sequence[ModelRun]) -> list[tuple[str, list[float]]]:
    """Accuracy (%) of each model on the clean images, each corruption and their mean.

    Args:
        runs: The evaluated models, all with their corruption-suite figures.

    Returns:
        (row label, one accuracy per model) for clean, the 15 corruptions and the mean.
    """
    suites = [run.robustness or {} for run in runs]
    rows = [("clean", [100 * suite["clean_accuracy"] for suite in suites])]
    for name in suites[0]["corruption_accuracy"]:
        rows.append((name, [100 * suite["corruption_accuracy"][name] for suite in suites]))
    rows.append(("mean of the corruptions",
                 [100 * suite["mean_corruption_accuracy"] for suite in suites]))  # fmt: skip
    return rows


def plot_corruptions(runs: Sequence[ModelRun], path: Path) -> None:
    """Heat-map of accuracy per corruption (rows) and model (columns), each cell labelled.

    Args:
        runs: The evaluated models, all with their corruption-suite figures.
        path: Where to write the PNG.
    """
    import matplotlib.pyplot as plt

    rows = suite_rows(runs)
    values = np.array([accuracies for _, accuracies in rows])
    # Narrower than WIDTH with few models: a cell needs room for "99.53", not a whole column.
    width = min(WIDTH, 2.6 + 1.4 * len(runs))
    fig, ax = plt.subplots(figsize=(width, 0.3 * len(rows) + 1.1))
    low = max(0.0, float(values.min()) - 5)  # the whole colour scale for the range shown
    image = ax.imshow(values, cmap="RdYlGn", vmin=low, vmax=100, aspect="auto")
    for (row, column), value in np.ndenumerate(values):
        # Dark text on the light middle of the scale, light text on its dark ends.
        shade = image.norm(value)
        colour = "white" if shade < 0.15 or shade > 0.85 else "black"
        ax.text(column, row, f"{value:.2f}", ha="center", va="center", fontsize=SMALL,
                color=colour)  # fmt: skip
    for edge in (0.5, len(rows) - 1.5):  # set clean and the mean apart from the corruptions
        ax.axhline(edge, color="white", linewidth=3)
    ax.set_xticks(range(len(runs)), [run.name for run in runs])
    ax.xaxis.tick_top()
    ax.set_yticks(range(len(rows)), [label.replace("_", " ") for label, _ in rows])
    ax.tick_params(length=0)
    ax.spines[:].set_visible(False)
    n = (runs[0].robustness or {}).get("num_images", 0)
    ax.set_title(f"accuracy (%) under each corruption, {n:,} test images each",
                 fontsize=10, pad=24)  # above the model names  # fmt: skip
    _save(fig, path)


def plot_training_curves(runs: Sequence[ModelRun], path: Path) -> None:
    """Validation accuracy and losses per epoch for each model that has a history.

    Args:
        runs: The evaluated models; those without a history are left out.
        path: Where to write the PNG.
    """
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    # One above the other: side by side, each would be half the text column wide.
    fig, (acc_ax, loss_ax) = plt.subplots(2, 1, figsize=(WIDTH, 6.4), sharex=True)
    colours = itertools.cycle(plt.rcParams["axes.prop_cycle"].by_key()["color"])
    for run, colour in zip(runs, colours, strict=False):
        if run.history is None:
            continue
        epochs = run.history["epoch"]
        acc_ax.plot(epochs, [100 * a for a in run.history["val_acc"]], "o-", color=colour,
                    label=run.name, markersize=3)  # fmt: skip
        loss_ax.plot(epochs, run.history["val_loss"], "o-", color=colour, markersize=3,
                     label=f"{run.name} validation")  # fmt: skip
        loss_ax.plot(epochs, run.history["train_loss"], "x--", color=colour, markersize=4,
                     label=f"{run.name} training")  # fmt: skip
    acc_ax.set_ylabel("validation accuracy (%)")
    loss_ax.set_ylabel("loss")
    last = max(len(run.history) for run in runs if run.history is not None)
    for ax in (acc_ax, loss_ax):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        ax.set_xlim(0.5, last + 0.5)
        ax.grid(alpha=0.3)
        ax.spines[["top", "right"]].set_visible(False)
    loss_ax.set_xlabel("epoch")
    acc_ax.legend(fontsize=SMALL, loc="lower right")
    loss_ax.legend(fontsize=SMALL, ncol=2, loc="upper right")
    fig.tight_layout()
    _save(fig, path)


def plot_accuracy_vs_time(runs: Sequence[ModelRun], path: Path) -> None:
    """Validation accuracy against cumulative training time, and each final test accuracy.

    Args:
        runs: The evaluated models; those without a known training time are left out.
        path: Where to write the PNG.
    """
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(WIDTH, 3.8))
    colours = itertools.cycle(plt.rcParams["axes.prop_cycle"].by_key()["color"])
    longest = max(run.train_time_s or 0.0 for run in runs)
    unit, scale = ("minutes", 60.0) if longest >= 120 else ("seconds", 1.0)
    values = []
    for run, colour in zip(runs, colours, strict=False):
        if run.train_time_s is None:
            continue
        if run.history is not None and run.history["val_acc"]:
            elapsed = np.cumsum(run.history["epoch_time_s"]) / scale
            accuracies = [100 * a for a in run.history["val_acc"]]
            values += accuracies
            ax.plot(elapsed, accuracies, "o-", color=colour, markersize=3,
                    label=f"{run.name} validation")  # fmt: skip
        test = 100 * run.result.accuracy
        values.append(test)
        ax.plot(run.train_time_s / scale, test, "*", color=colour, markersize=12,
                label=f"{run.name} test (final)")  # fmt: skip
    ax.set_ylim(*_zoomed_limits(values))
    ax.set_xlabel(f"training time ({unit}, sum of epoch times)")
    ax.set_ylabel("accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=SMALL, ncol=2, loc="lower right")
    ax.spines[["top", "right"]].set_visible(False)
    _save(fig, path)


# ---------------------------------------------------------------------------- report


def _percent(fraction: float) -> str:
    return f"{100 * fraction:.2f}%"


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def report_markdown(
    args: argparse.Namespace,
    command: str,
    checks: str,
    runs: Sequence[ModelRun],
    ensemble: EvaluationResult,
    figures: dict[str, str],
) -> str:
    """The text of ``report.md``.

    Args:
        args: The command-line options.
        command: The command that made the report, as typed.
        checks: The formatted data-check report.
        runs: The evaluated models.
        ensemble: The ensemble's evaluation.
        figures: Figure file name by key, for those that were drawn.

    Returns:
        Markdown text.
    """
    n = runs[0].result.num_images
    lines = ["# The study, reproduced with mnist_zoo", ""]
    if args.quick:
        lines += [
            f"> **Quick mode**: models trained on {QUICK_TRAIN_IMAGES:,} images for one epoch "
            f"(or loaded), scored on the first {n:,} test images. A check that the pipeline runs; "
            "the numbers below say nothing about the models.",
            "",
        ]
    lines += [
        f"Made by `{command}` with mnist_zoo {mnist_zoo.__version__} and torch "
        f"{torch.__version__}. Test set: {n:,} images.",
        "",
        "## Data checks",
        "",
        "```text",
        checks,
        "```",
        "",
        "## Models",
        "",
        "| model | parameters | weights |",
        "| --- | ---: | --- |",
    ]
    lines += [f"| {run.name} | {run.parameters:,} | {run.source} |" for run in runs]

    lines += [
        "",
        "## Test accuracy against the study",
        "",
        "| model | errors | test accuracy | study | difference |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for run in runs:
        published = STUDY_ACCURACY.get(run.name)
        study = _percent(published) if published is not None else "-"
        diff = (
            f"{100 * (run.result.accuracy - published):+.2f} pp" if published is not None else "-"
        )
        lines.append(
            f"| {run.name} | {run.result.num_errors} | {_percent(run.result.accuracy)} | "
            f"{study} | {diff} |"
        )
    lines += [
        f"| ensemble of the {len(runs)} (mean probability) | {ensemble.num_errors} | "
        f"{_percent(ensemble.accuracy)} | not measured | - |",
        "",
        "The study's figures are its published test accuracies; the ensemble is the next step "
        "it proposed, here the equal-weight mean of the members' probabilities "
        "(`mnist_zoo.Ensemble`).",
        "",
        f"![test accuracy]({figures['accuracy']})",
        "",
        "## Per-class accuracy",
        "",
        "| digit | " + " | ".join(run.name for run in runs) + " |",
        "| ---: | " + " | ".join("---:" for _ in runs) + " |",
    ]
    for digit in range(10):
        cells = " | ".join(_percent(run.result.per_class_accuracy[digit]) for run in runs)
        lines.append(f"| {digit} | {cells} |")
    lines += [
        "",
        f"![per-class accuracy]({figures['per_class']})",
        "",
        "## Confusion matrices and the most confused pairs",
        "",
        f"![confusion matrices]({figures['confusion']})",
        "",
        "| model | most frequent mistakes (true → predicted: count) |",
        "| --- | --- |",
    ]
    for run in runs:
        pairs = ", ".join(f"{t} → {p}: {c}" for t, p, c in run.result.most_confused(5))
        lines.append(f"| {run.name} | {pairs or 'none'} |")
    lines += ["", "## Misclassified digits", ""]
    for run in runs:
        lines += [f"![{run.name} errors]({figures['errors_' + run.name]})", ""]

    lines += overlap_markdown(runs, ensemble, figures)
    lines += robustness_markdown(runs, figures, quick=args.quick)
    lines += training_markdown(runs, figures)
    return "\n".join(lines) + "\n"


def overlap_markdown(
    runs: Sequence[ModelRun], ensemble: EvaluationResult, figures: dict[str, str]
) -> list[str]:
    """The error-overlap section: shared misclassified images and shared (true, pred) pairs.

    Args:
        runs: The evaluated models.
        ensemble: The ensemble's evaluation.
        figures: Figure file name by key.

    Returns:
        Markdown lines.
    """
    lines = [
        "## Overlap of errors between the models",
        "",
        "Shared misclassified images: test images that both models get wrong (Jaccard: shared "
        "over either).",
        "",
        "| models | shared misclassified images | Jaccard | shared (true, predicted) pairs |",
        "| --- | ---: | ---: | ---: |",
    ]
    pairs = {run.name: error_pairs(run) for run in runs}
    for a, b in itertools.combinations(runs, 2):
        both, either = a.errors & b.errors, a.errors | b.errors
        jaccard = len(both) / len(either) if either else 0.0
        kinds = len(pairs[a.name].keys() & pairs[b.name].keys())
        lines.append(f"| {a.name} & {b.name} | {len(both)} | {jaccard:.2f} | {kinds} |")
    everyone = set.intersection(*(run.errors for run in runs))
    predictions = [run.result.predictions for run in runs]
    same_wrong = sum(len({int(p[i]) for p in predictions}) == 1 for i in everyone)
    shared_kinds = set.intersection(*(set(p) for p in pairs.values()))
    ensemble_wrong = set(ensemble.errors())
    lines += [
        f"| all {len(runs)} | {len(everyone)} | - | {len(shared_kinds)} |",
        "",
        f"{len(everyone)} images are misclassified by all {len(runs)} models; on {same_wrong} of "
        f"them every model predicts the same wrong digit. The ensemble gets "
        f"{len(ensemble_wrong)} images wrong, {len(ensemble_wrong & everyone)} of them among "
        "those.",
        "",
        f"![error overlap]({figures['overlap']})",
        "",
    ]
    if everyone:
        lines += [f"![shared errors]({figures['shared']})", ""]

    totals = Counter()
    for counter in pairs.values():
        totals.update(counter)
    top = [pair for pair, _ in totals.most_common(10)]
    lines += [
        "Most frequent (true, predicted) mistakes over all models, with each model's count:",
        "",
        "| true → predicted | " + " | ".join(run.name for run in runs) + " | in all |",
        "| --- | " + " | ".join("---:" for _ in runs) + " | :---: |",
    ]
    for true, guess in top:
        counts = " | ".join(str(pairs[run.name][(true, guess)]) for run in runs)
        mark = "yes" if (true, guess) in shared_kinds else ""
        lines.append(f"| {true} → {guess} | {counts} | {mark} |")
    return [*lines, ""]


def robustness_markdown(
    runs: Sequence[ModelRun], figures: dict[str, str], *, quick: bool
) -> list[str]:
    """The corruption-suite section: accuracy per corruption, the mean, and calibration.

    One column per model, so that no row starts with a model's name (the accuracy table's).

    Args:
        runs: The evaluated models, all with their corruption-suite figures.
        figures: Figure file name by key.
        quick: Whether the suite ran on the quick subset.

    Returns:
        Markdown lines.
    """
    suites = [run.robustness or {} for run in runs]
    n = suites[0]["num_images"]
    lines = [
        "## Robustness: the corruption suite",
        "",
        f"Accuracy on {n:,} test images and on 15 corrupted copies of them (MNIST-C's "
        f"corruptions, `mnist_zoo.robustness.evaluate_corruptions`, seed {suites[0]['seed']}), "
        f"and calibration on the clean images: ECE ({suites[0]['ece_bins']} bins) and NLL, "
        "before and after dividing the logits by the model's temperature, fitted on its "
        'validation split ("-" where the weights record none). The figures are also in '
        "`robustness.json`.",
        "",
    ]
    if quick:
        lines += [f"> **Quick mode**: the suite scores the first {n:,} test images only.", ""]
    lines += [
        "| test set | " + " | ".join(run.name for run in runs) + " |",
        "| --- | " + " | ".join("---:" for _ in runs) + " |",
    ]
    for label, accuracies in suite_rows(runs):
        cells = " | ".join(f"{value:.2f}%" for value in accuracies)
        lines.append(f"| {label.replace('_', ' ')} | {cells} |")

    def row(label: str, key: str, fmt: str) -> str:
        cells = [format(s[key], fmt) if s.get(key) is not None else "-" for s in suites]
        return f"| {label} | " + " | ".join(cells) + " |"

    lines += [
        row("ECE", "ece", ".2%"),
        row("ECE after temperature scaling", "ece_scaled", ".2%"),
        row("NLL (nats)", "nll", ".4f"),
        row("NLL after temperature scaling", "nll_scaled", ".4f"),
        row("temperature", "temperature", ".3f"),
        "",
        f"![accuracy per corruption]({figures['corruptions']})",
        "",
    ]
    return lines


def training_markdown(runs: Sequence[ModelRun], figures: dict[str, str]) -> list[str]:
    """The training section: time, epochs and convergence, when histories or timings exist.

    Args:
        runs: The evaluated models.
        figures: Figure file name by key.

    Returns:
        Markdown lines (none when nothing about training is known).
    """
    if all(run.history is None and run.train_time_s is None for run in runs):
        return []
    lines = [
        "## Training",
        "",
        f"Converged: the first epoch whose validation accuracy is within "
        f"{100 * CONVERGED_WITHIN:.1f} points of the run's best.",
        "",
        "| model | epochs | training time | best validation accuracy | converged at epoch |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for run in runs:
        seconds = _duration(run.train_time_s) if run.train_time_s is not None else "-"
        epochs, best, converged = "-", "-", "-"
        if run.history is not None and run.history["val_acc"]:
            epochs = str(len(run.history))
            best_row = run.history.best("val_acc")
            best = f"{_percent(best_row['val_acc'])} (epoch {int(best_row['epoch'])})"
            converged = str(converged_epoch(run.history))
        lines.append(f"| {run.name} | {epochs} | {seconds} | {best} | {converged} |")
    lines.append("")
    for key, alt in (("curves", "training curves"), ("time", "accuracy against training time")):
        if key in figures:
            lines += [f"![{alt}]({figures[key]})", ""]
    return lines


def draw_figures(
    runs: Sequence[ModelRun], ensemble: EvaluationResult, test_images: torch.Tensor, out: Path
) -> dict[str, str]:
    """Draw every figure the report shows into ``out``.

    Args:
        runs: The evaluated models.
        ensemble: The ensemble's evaluation.
        test_images: The test images they were scored on, uint8 (N, 1, 28, 28).
        out: The report folder.

    Returns:
        Figure file name by key, for those that were drawn.
    """
    figures = {
        "accuracy": "accuracy.png",
        "per_class": "per_class_accuracy.png",
        "confusion": "confusion_matrices.png",
        "overlap": "error_overlap.png",
        "corruptions": "corruptions.png",
    }
    plot_accuracy(runs, ensemble, out / figures["accuracy"])
    plot_per_class(runs, out / figures["per_class"])
    plot_confusions(runs, out / figures["confusion"], ensemble)
    plot_error_overlap(runs, out / figures["overlap"])
    plot_corruptions(runs, out / figures["corruptions"])
    for run in runs:
        figures[f"errors_{run.name}"] = f"misclassified_{run.name}.png"
        plot_misclassified(run, test_images, out / figures[f"errors_{run.name}"])
    if set.intersection(*(run.errors for run in runs)):
        figures["shared"] = "shared_errors.png"
        plot_shared_errors(runs, test_images, out / figures["shared"])
    if any(run.history is not None for run in runs):
        figures["curves"] = "training_curves.png"
        plot_training_curves(runs, out / figures["curves"])
    if any(run.train_time_s is not None for run in runs):
        figures["time"] = "accuracy_vs_time.png"
        plot_accuracy_vs_time(runs, out / figures["time"])
    return figures


# ---------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    """Check the data, train or load the models, evaluate them and write the report.

    Args:
        argv: Command-line arguments; ``None`` reads ``sys.argv``.

    Returns:
        The exit status: 0, or 1 when matplotlib is missing, a data check failed or weights
        could not be loaded.
    """
    args = parse_args(argv)
    command = shlex.join(["python", "examples/study.py", *(sys.argv[1:] if argv is None else argv)])
    try:
        import matplotlib
    except ModuleNotFoundError:
        print(PLOT_EXTRA_MISSING, file=sys.stderr)
        return 1
    matplotlib.use("Agg")  # write files, never open a window
    start = time.perf_counter()

    # Every file there, or one line naming those that are not (no table of checks not run).
    checks = mnist_zoo.check_mnist(mnist_zoo.data.require_mnist(args.data))
    print(checks.format())
    if not checks.passed:
        print("\nThe data failed a check; the study stops here.", file=sys.stderr)
        return 1
    train = mnist_zoo.MNIST(args.data, split="train")
    test = mnist_zoo.MNIST(args.data, split="test")
    limit = QUICK_TEST_IMAGES if args.quick else None
    test_images, test_targets = test.images[:limit], test.targets[:limit]

    try:
        models = get_models(args, train)
    except HubError as error:
        print(f"\nCannot load the weights: {error}", file=sys.stderr)
        return 1

    runs, suite_size = [], QUICK_SUITE_IMAGES if args.quick else len(test_images)
    for m in models:
        # The test set is scored once: a model trained here was scored after training.
        result = m.result
        if result is None:
            result = evaluate_model(m.model, test_images, test_targets)
        print(f"{m.name}: test accuracy {_percent(result.accuracy)} on {len(result.targets):,} "
              "images")  # fmt: skip
        suite = score_suite(m, test_images[:suite_size], test_targets[:suite_size])
        runs.append(ModelRun(m.name, count_parameters(m.model), m.source, result, m.history,
                             m.train_time_s, suite))  # fmt: skip
    ensemble = ensemble_result(runs)
    print(f"ensemble: test accuracy {_percent(ensemble.accuracy)}")

    args.out.mkdir(parents=True, exist_ok=True)
    figures = draw_figures(runs, ensemble, test_images, args.out)
    robustness = {"command": command, "models": {run.name: run.robustness for run in runs}}
    (args.out / "robustness.json").write_text(json.dumps(robustness, indent=2) + "\n")
    report = report_markdown(args, command, checks.format(), runs, ensemble, figures)
    (args.out / "report.md").write_text(report, encoding="utf-8")
    print(f"\nwrote {args.out / 'report.md'}, robustness.json and {len(figures)} figures "
          f"in {time.perf_counter() - start:.0f} s")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main, "study.py"))
