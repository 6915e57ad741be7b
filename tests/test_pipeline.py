"""The one train -> evaluate -> save path that the CLI and the examples share."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import torch
from conftest import read_only_folder

import mnist_zoo
from mnist_zoo.errors import (
    CheckpointError,
    InvalidArgumentError,
    OutputFolderError,
    TrainingError,
)
from mnist_zoo.inference import batched
from mnist_zoo.pipeline import TrainingRun, calibrate, run_metrics, train_and_save

#: A smoke run: 2,500 training images after a 500-image validation split, one epoch. Every run
#: here reads ``mnist_small_root`` (the first 6,000 training and 2,000 test images of MNIST),
#: which holds all the images the limits let it use.
SMALL = dict(
    limit=3000, val_size=500, epochs=1, precision="fp32", device="cpu", progress=False, suite=False
)


# One pytest-xdist worker runs the module, so that the run its tests read is trained once.
pytestmark = pytest.mark.xdist_group("pipeline-run")


@pytest.fixture(scope="module")
def run(mnist_small_root: Path, tmp_path_factory: pytest.TempPathFactory) -> TrainingRun:
    out = tmp_path_factory.mktemp("pipeline") / "simplecnn"
    return train_and_save("simplecnn", data=mnist_small_root, out=out, test_limit=2000, **SMALL)


def test_the_folder_is_in_hub_layout_with_the_runs_metrics(run: TrainingRun) -> None:
    assert {"model.safetensors", "config.json", "README.md"} <= {p.name for p in run.out.iterdir()}
    assert (run.out / "checkpoints" / "history.csv").is_file()  # default: OUT/checkpoints
    config = json.loads((run.out / "config.json").read_text())
    # A run's own weights are meant for no repo yet (the project's repo holds the releases').
    assert config["architecture"] == "simplecnn" and config["repo_id"] is None
    metrics = config["metrics"]
    assert metrics == json.loads(json.dumps(run.metrics))
    assert metrics["test_accuracy"] == run.result.accuracy and 0.5 < run.result.accuracy <= 1
    assert metrics["num_test_images"] == run.result.num_images == 2000
    assert metrics["val_accuracy"] == run.history["val_acc"][-1]
    assert metrics["epochs_trained"] == 1 == len(run.history)
    # One name for the training time everywhere, summed over the epochs.
    assert metrics["train_time_s"] == round(sum(run.history["epoch_time_s"]), 1)
    assert "train_wall_time_s" not in metrics
    # A smoke run says so: the card's command repeats --limit, and the card names the count.
    assert metrics["num_train_images"] == 3000
    card = (run.out / "README.md").read_text()
    assert "--limit 3000` (" in card and "on the first 3,000 training images" in card


def test_the_recipe_is_stored_as_data_with_the_resolved_precision(run: TrainingRun) -> None:
    recipe = json.loads((run.out / "config.json").read_text())["recipe"]
    expected = dataclasses.replace(
        mnist_zoo.training.get_recipe("simplecnn"), epochs=1, val_size=500, precision="fp32"
    )
    assert run.config == expected
    assert recipe == json.loads(json.dumps(dataclasses.asdict(expected)))


def test_the_saved_model_scores_what_the_run_measured(
    run: TrainingRun, mnist_small_root: Path
) -> None:
    test = mnist_zoo.MNIST(mnist_small_root, split="test")
    loaded = mnist_zoo.load_pretrained(run.out)
    again = mnist_zoo.evaluate_model(loaded, test.images[:2000], test.targets[:2000])
    assert again.accuracy == run.result.accuracy
    assert "test accuracy" in run.summary() and str(run.out) in run.summary()


def test_resuming_a_finished_run_gives_the_same_weights(
    run: TrainingRun, mnist_small_root: Path
) -> None:
    before = json.loads((run.out / "config.json").read_text())
    again = train_and_save(
        "simplecnn", data=mnist_small_root, out=run.out, resume=True, test_limit=2000, **SMALL
    )
    assert len(again.history) == 1  # nothing more to train
    assert json.loads((run.out / "config.json").read_text())["sha256"] == before["sha256"]


def test_the_test_images_go_through_the_model_once(
    run: TrainingRun, mnist_small_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The accuracy, the calibration figures and the suite's clean column share one pass.
    test = mnist_zoo.MNIST(mnist_small_root, split="test").images[:200]
    passes = []
    logits_in_batches = batched._logits_in_batches

    def counted(model, images, *args, **kwargs):  # type: ignore[no-untyped-def]
        passes.append(images.shape == test.shape and torch.equal(images.cpu(), test))
        return logits_in_batches(model, images, *args, **kwargs)

    monkeypatch.setattr(batched, "_logits_in_batches", counted)
    shutil.copytree(run.out / "checkpoints", tmp_path / "checkpoints")
    again = train_and_save(
        "simplecnn", data=mnist_small_root, out=tmp_path / "out", resume=True, test_limit=200,
        checkpoint_dir=tmp_path / "checkpoints", **{**SMALL, "suite": True},
    )  # fmt: skip
    assert passes.count(True) == 1
    assert len(passes) > 15  # the validation split and the 15 corrupted sets
    suite = again.metrics["robustness"]
    assert suite["clean_accuracy"] == again.result.accuracy
    assert again.calibration is not None
    test_figures = again.calibration["test"]
    assert test_figures["num_images"] == 200
    assert test_figures["nll_before"] == pytest.approx(again.result.loss)
    assert suite["nll_scaled"] == pytest.approx(test_figures["nll_after"])


def test_calibrate_refuses_test_logits_that_are_not_one_row_per_label(
    run: TrainingRun, mnist_small_root: Path
) -> None:
    test = mnist_zoo.MNIST(mnist_small_root, split="test")
    images, labels = test.images[:100], test.targets[:100]
    val = (test.images[100:300], test.targets[100:300])
    with pytest.raises(InvalidArgumentError, match=r"test_logits of shape \(99, 10\) for 100"):
        calibrate(run.model, val, images, labels, seed=0, test_logits=torch.zeros(99, 10))


@pytest.mark.parametrize(
    "overrides,error,message",
    [
        ({"lr": float("inf")}, InvalidArgumentError, "lr must be finite"),
        ({"epochs": 0}, InvalidArgumentError, "epochs must be an integer >= 1"),
        ({"limit": 0}, InvalidArgumentError, "limit must be a positive number"),
        ({"learning_rate": 0.1}, TypeError, "'learning_rate'"),
    ],
)
def test_a_bad_setting_fails_before_anything_is_read_or_written(
    tmp_path: Path, overrides: dict[str, object], error: type[Exception], message: str
) -> None:
    # No data folder at all: the setting is refused before the data would be looked for.
    with pytest.raises(error, match=message):
        train_and_save("simplecnn", data=tmp_path / "nowhere", out=tmp_path / "out", **overrides)
    assert not (tmp_path / "out").exists()


def test_metrics_without_validation_have_no_val_accuracy(run: TrainingRun) -> None:
    history = mnist_zoo.History(
        [{"epoch": 1, "epoch_time_s": 1.5}, {"epoch": 2, "epoch_time_s": 2.0}]
    )
    metrics = run_metrics(run.result, history)
    assert "val_accuracy" not in metrics
    assert metrics["epochs_trained"] == 2 and metrics["train_time_s"] == 3.5


@pytest.mark.parametrize("which", ["out", "checkpoint_dir"])
@pytest.mark.parametrize("kind", ["file", "read-only"])
def test_a_folder_that_cannot_be_written_is_refused_before_any_data_is_read(
    tmp_path: Path, which: str, kind: str
) -> None:
    (tmp_path / "a-file").write_text("in the way")
    bad = tmp_path / "a-file" if kind == "file" else read_only_folder(tmp_path) / "run"
    folders = {"out": tmp_path / "out", "checkpoint_dir": tmp_path / "ck", which: bad}
    # No data folder: a check after reading the data would fail with MNISTNotFoundError.
    with pytest.raises(OutputFolderError, match="Cannot use .* as the (output|checkpoint) folder"):
        train_and_save("simplecnn", data=tmp_path / "nowhere", **folders)  # type: ignore[arg-type]
    assert not (tmp_path / "out").exists() and not (tmp_path / "ck").exists()


def test_a_run_of_two_steps_trains_and_saves(mnist_small_root: Path, tmp_path: Path) -> None:
    # `mnist-zoo train simplecnn --epochs 1 --limit 5300`: 300 images after the 5,000 held
    # out, two batches of 128, a one-cycle schedule of two steps.
    run = train_and_save(
        "simplecnn", data=mnist_small_root, out=tmp_path / "out", limit=5300, epochs=1,
        precision="fp32", device="cpu", progress=False, test_limit=500, suite=False,
    )  # fmt: skip
    assert (run.out / "model.safetensors").is_file() and len(run.history) == 1


def test_a_diverging_run_saves_no_model(mnist_small_root: Path, tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match="train_loss is (nan|inf)"):
        train_and_save(
            "simplecnn", data=mnist_small_root, out=tmp_path / "out", limit=1500, val_size=500,
            epochs=1, optimizer="sgd", lr=1e12, scheduler="none", precision="fp32",
            device="cpu", progress=False,
        )  # fmt: skip
    assert not (tmp_path / "out" / "model.safetensors").exists()
    assert not (tmp_path / "out" / "checkpoints" / "last.pt").exists()


def test_a_changed_recipe_on_resume_is_refused_or_allowed_and_recorded(
    run: TrainingRun, mnist_small_root: Path, tmp_path: Path
) -> None:
    checkpoints = tmp_path / "checkpoints"
    shutil.copytree(run.out / "checkpoints", checkpoints)
    settings = {**SMALL, "epochs": 2, "lr": 1e-3}
    common = dict(data=mnist_small_root, checkpoint_dir=checkpoints, resume=True, test_limit=500)
    with pytest.raises(CheckpointError, match=r"epochs \(1 there, 2 here\), lr .*--allow"):
        train_and_save("simplecnn", out=tmp_path / "refused", **common, **settings)
    assert not (tmp_path / "refused").exists()
    again = train_and_save(
        "simplecnn", out=tmp_path / "out", allow_recipe_change=True, **common, **settings
    )
    assert len(again.history) == 2
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    # The recipe the run finished with, and what changed at which epoch.
    assert config["recipe"]["lr"] == 1e-3 and config["recipe"]["epochs"] == 2
    changes = [{"epoch": 2, "changed": {"epochs": [1, 2], "lr": [0.003, 0.001]}}]
    assert config["metrics"]["recipe_changes"] == changes == again.metrics["recipe_changes"]
    assert "recipe_changes" not in json.loads((run.out / "config.json").read_text())["metrics"]
