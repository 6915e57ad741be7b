"""The fitted temperature and the corruption suite, stored in config.json and shown on the card.

One tiny training run (1,000 images after a 500-image validation split, one epoch, 100 test
images so that the suite takes seconds) stands for ``mnist-zoo train``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

import mnist_zoo
from mnist_zoo import hub, pipeline
from mnist_zoo.calibration import apply_temperature, fit_temperature, negative_log_likelihood
from mnist_zoo.cli import main
from mnist_zoo.errors import InvalidArgumentError, InvalidHubFolderError
from mnist_zoo.pipeline import TrainingRun, train_and_save
from mnist_zoo.training.batches import split_validation

TINY = dict(limit=1500, val_size=500, epochs=1, precision="fp32", device="cpu", progress=False)
TEST_IMAGES = 100


# One pytest-xdist worker runs the module, so that the run its tests read is trained once.
pytestmark = pytest.mark.xdist_group("calibration-store-run")


@pytest.fixture(scope="module")
def run(mnist_root: Path, tmp_path_factory: pytest.TempPathFactory) -> TrainingRun:
    out = tmp_path_factory.mktemp("calibrated") / "simplecnn"
    return train_and_save("simplecnn", data=mnist_root, out=out, test_limit=TEST_IMAGES, **TINY)


def config_of(folder: Path) -> dict:
    return json.loads((folder / "config.json").read_text())


def test_the_temperature_is_fitted_on_the_validation_split_and_stored(
    run: TrainingRun, mnist_root: Path
) -> None:
    section = config_of(run.out)["calibration"]
    assert section == run.calibration
    assert section["fitted_on"] == {"split": "validation", "num_images": 500, "seed": 0}
    # The same images the Trainer held out: refitting on them gives the same temperature.
    train = mnist_zoo.MNIST(mnist_root, split="train")
    pair = (train.images[: TINY["limit"]], train.targets[: TINY["limit"]])
    _, val = split_validation(pair, None, val_size=500, seed=0)
    assert section["temperature"] == pytest.approx(fit_temperature(run.model, val), rel=1e-9)
    assert section["temperature"] != pytest.approx(1.0, abs=1e-3)  # something was fitted


def test_the_test_figures_before_and_after_are_those_of_the_scored_images(
    run: TrainingRun, mnist_root: Path
) -> None:
    test = config_of(run.out)["calibration"]["test"]
    assert test["num_images"] == TEST_IMAGES and test["ece_bins"] == 15
    images = mnist_zoo.MNIST(mnist_root, split="test")
    x = images.images[:TEST_IMAGES].reshape(-1, 1, 28, 28).float() / 255
    labels = images.targets[:TEST_IMAGES]
    with torch.no_grad():
        logits = run.model.eval()(x)
    t = run.calibration["temperature"]
    assert test["nll_before"] == pytest.approx(negative_log_likelihood(logits, labels), rel=1e-4)
    scaled = apply_temperature(logits, t)
    assert test["nll_after"] == pytest.approx(negative_log_likelihood(scaled, labels), rel=1e-4)
    for key in ("ece_before", "ece_after"):
        assert 0 <= test[key] <= 1


def test_the_suite_is_stored_under_metrics_with_the_temperature(run: TrainingRun) -> None:
    suite = config_of(run.out)["metrics"]["robustness"]
    assert len(suite["corruption_accuracy"]) == 15 and suite["num_images"] == TEST_IMAGES
    assert suite["temperature"] == run.calibration["temperature"]
    assert suite["ece_scaled"] == pytest.approx(run.calibration["test"]["ece_after"], abs=1e-6)
    assert suite["clean_accuracy"] == run.result.accuracy


def test_loading_sets_the_temperature_and_the_card_shows_the_figures(run: TrainingRun) -> None:
    model = mnist_zoo.load_pretrained(run.out)
    assert model.pretrained_cfg["temperature"] == run.calibration["temperature"]
    assert model.pretrained_cfg["calibration"] == run.calibration
    card = (run.out / "README.md").read_text()
    t = f"{run.calibration['temperature']:.3f}"
    assert f"Temperature **{t}**" in card and "500-image validation split (seed 0)" in card
    before = f"{100 * run.calibration['test']['ece_before']:.2f}%"
    after = f"{100 * run.calibration['test']['ece_after']:.2f}%"
    assert f"| before temperature scaling | {before} |" in card
    assert f"| after (T = {t}) | {after} |" in card
    mean = 100 * run.metrics["robustness"]["mean_corruption_accuracy"]
    assert "## Robustness" in card and f"**{mean:.2f}%**" in card
    assert "| fog |" in card and "| zigzag |" in card


def test_save_pretrained_round_trips_the_section(run: TrainingRun, tmp_path: Path) -> None:
    model, config = mnist_zoo.load_pretrained(run.out), config_of(run.out)
    again = hub.save_pretrained(
        model, tmp_path / "again", metrics=config["metrics"], recipe=config["recipe"],
        calibration=model.pretrained_cfg["calibration"],
    )  # fmt: skip
    assert config_of(again)["calibration"] == config_of(run.out)["calibration"]
    assert (again / "README.md").read_text() == (run.out / "README.md").read_text()
    hub.write_card(again)  # re-rendered from config.json alone: the same card
    assert (again / "README.md").read_text() == (run.out / "README.md").read_text()
    # Not carried over from pretrained_cfg: a changed model would keep a stale temperature.
    plain = hub.save_pretrained(model, tmp_path / "plain")
    assert "calibration" not in config_of(plain)
    assert mnist_zoo.load_pretrained(plain).pretrained_cfg["temperature"] is None
    assert "## Calibration" not in (plain / "README.md").read_text()


@pytest.mark.parametrize("bad", [-1.0, 0, math.inf, "1.3", None])
def test_a_temperature_that_is_not_positive_is_refused(
    run: TrainingRun, tmp_path: Path, bad: object
) -> None:
    model = mnist_zoo.load_pretrained(run.out)
    with pytest.raises(InvalidArgumentError, match="temperature"):
        hub.save_pretrained(model, tmp_path / "x", calibration={"temperature": bad})
    folder = hub.save_pretrained(model, tmp_path / "y", calibration={"temperature": 2.0})
    config = config_of(folder)
    config["calibration"]["temperature"] = bad
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(InvalidHubFolderError, match="calibration temperature"):
        mnist_zoo.load_pretrained(folder)


def test_the_v0_1_cards_are_unchanged_without_a_section() -> None:
    folder = Path(__file__).resolve().parents[1] / "hub" / "v0.1.0" / "simplecnn"
    card = hub.model_card(
        config_of(folder),
        entry=mnist_zoo.registry.get_model_entry("simplecnn"),
        num_parameters=421_642,
    )
    # Byte for byte (scripts/release.py --cards-only renders the archived cards too).
    assert hub.card.card_markdown(card) == (folder / "README.md").read_text()


def test_train_prints_the_temperature_and_no_suite_skips_it(
    capsys: pytest.CaptureFixture[str],
    mnist_root: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The command scores all 10,000 test images; 100 keep this test to seconds.
    real, calls = pipeline.train_and_save, []

    def on_a_few_test_images(*args: object, **kwargs: object) -> TrainingRun:
        calls.append(kwargs)
        return real(*args, test_limit=TEST_IMAGES, **kwargs)

    monkeypatch.setattr(pipeline, "train_and_save", on_a_few_test_images)
    out = tmp_path / "cli"
    code = main([
        "train", "simplecnn", "--epochs", "1", "--limit", "1200", "--val-size", "200",
        "--data", str(mnist_root), "--out", str(out), "--no-progress", "--precision", "fp32",
        "--device", "cpu", "--no-suite",
    ])  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0 and calls[0]["suite"] is False
    section = config_of(out)["calibration"]
    assert f"temperature {section['temperature']:.3f} fitted on 200 validation images" in printed
    assert f"{100 * section['test']['ece_after']:.2f}% after" in printed
    assert "corruption suite" not in printed and "robustness" not in config_of(out)["metrics"]


def test_without_a_validation_split_nothing_is_fitted(mnist_root: Path, tmp_path: Path) -> None:
    settings = {**TINY, "val_size": 0, "suite": False}
    run = train_and_save(
        "simplecnn", data=mnist_root, out=tmp_path / "noval", test_limit=TEST_IMAGES, **settings
    )
    assert run.calibration is None and "calibration" not in config_of(run.out)
    assert mnist_zoo.load_pretrained(run.out).pretrained_cfg["temperature"] is None
