"""The one train -> evaluate -> save path that the CLI and the examples share."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

import mnist_zoo
from mnist_zoo.errors import InvalidArgumentError
from mnist_zoo.pipeline import TrainingRun, run_metrics, train_and_save

#: A smoke run: 2,500 training images after a 500-image validation split, one epoch.
SMALL = dict(limit=3000, val_size=500, epochs=1, precision="fp32", device="cpu", progress=False)


@pytest.fixture(scope="module")
def run(mnist_root: Path, tmp_path_factory: pytest.TempPathFactory) -> TrainingRun:
    out = tmp_path_factory.mktemp("pipeline") / "simplecnn"
    return train_and_save("simplecnn", data=mnist_root, out=out, test_limit=2000, **SMALL)


def test_the_folder_is_in_hub_layout_with_the_runs_metrics(run: TrainingRun) -> None:
    assert {"model.safetensors", "config.json", "README.md"} <= {p.name for p in run.out.iterdir()}
    assert (run.out / "checkpoints" / "history.csv").is_file()  # default: OUT/checkpoints
    config = json.loads((run.out / "config.json").read_text())
    assert config["architecture"] == "simplecnn" and config["repo_id"] == "mnist-zoo/simplecnn"
    metrics = config["metrics"]
    assert metrics == json.loads(json.dumps(run.metrics))
    assert metrics["test_accuracy"] == run.result.accuracy and 0.5 < run.result.accuracy <= 1
    assert metrics["num_test_images"] == run.result.num_images == 2000
    assert metrics["val_accuracy"] == run.history["val_acc"][-1]
    assert metrics["epochs_trained"] == 1 == len(run.history)
    # One name for the training time everywhere, summed over the epochs.
    assert metrics["train_time_s"] == round(sum(run.history["epoch_time_s"]), 1)
    assert "train_wall_time_s" not in metrics


def test_the_recipe_is_stored_as_data_with_the_resolved_precision(run: TrainingRun) -> None:
    recipe = json.loads((run.out / "config.json").read_text())["recipe"]
    expected = dataclasses.replace(
        mnist_zoo.training.get_recipe("simplecnn"), epochs=1, val_size=500, precision="fp32"
    )
    assert run.config == expected
    assert recipe == json.loads(json.dumps(dataclasses.asdict(expected)))


def test_the_saved_model_scores_what_the_run_measured(run: TrainingRun, mnist_root: Path) -> None:
    test = mnist_zoo.MNIST(mnist_root, split="test")
    loaded = mnist_zoo.load_pretrained(run.out)
    again = mnist_zoo.evaluate_model(loaded, test.images[:2000], test.targets[:2000])
    assert again.accuracy == run.result.accuracy
    assert "test accuracy" in run.summary() and str(run.out) in run.summary()


def test_resuming_a_finished_run_gives_the_same_weights(run: TrainingRun, mnist_root: Path) -> None:
    before = json.loads((run.out / "config.json").read_text())
    again = train_and_save(
        "simplecnn", data=mnist_root, out=run.out, resume=True, test_limit=2000, **SMALL
    )
    assert len(again.history) == 1  # nothing more to train
    assert json.loads((run.out / "config.json").read_text())["sha256"] == before["sha256"]


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
