"""Every pinned release as it is checked in: hub/TAG/NAME matches the registry's pins, hub/NAME is
the default release, and each card's calibration and corruption-suite figures are reproduced.

The corruption suite runs each model on 150,000 corrupted test images (minutes on 2 cores), so
that test runs only when ``MNIST_ZOO_RELEASE_TESTS=1``, as does the calibration check of an
archived release's file that the default release does not share; ``scripts/release.py`` users
run them before tagging a release:

    MNIST_ZOO_RELEASE_TESTS=1 pytest tests/test_releases.py
"""

from __future__ import annotations

import dataclasses
import filecmp
import json
import os
from pathlib import Path

import pytest
from published_logits import fp32_logits, published_model

import mnist_zoo
from mnist_zoo.calibration import (
    apply_temperature,
    expected_calibration_error,
    negative_log_likelihood,
)
from mnist_zoo.hub import sha256_file
from mnist_zoo.models import DEFAULT_RELEASE, PRETRAINED
from mnist_zoo.robustness import evaluate_corruptions
from mnist_zoo.training import TrainConfig, get_recipe

HUB = Path(__file__).resolve().parents[1] / "hub"
RELEASES = [(tag, name) for name, pins in PRETRAINED.items() for tag in pins]
SLOW = os.environ.get("MNIST_ZOO_RELEASE_TESTS") == "1"


def config_of(tag: str, name: str) -> dict:
    return json.loads((HUB / tag / name / "config.json").read_text())


@pytest.mark.parametrize(("tag", "name"), RELEASES)
def test_each_release_archive_is_what_the_registry_pins(tag: str, name: str) -> None:
    pin, folder = PRETRAINED[name][tag], HUB / tag / name
    assert pin.revision == tag
    assert pin.sha256 == sha256_file(folder / pin.filename)
    assert pin.size == (folder / pin.filename).stat().st_size
    assert pin.config_sha256 == sha256_file(folder / "config.json")
    assert pin.metrics["test_accuracy"] == config_of(tag, name)["metrics"]["test_accuracy"]


@pytest.mark.parametrize("name", list(PRETRAINED) + ["ensemble"])
def test_hub_name_holds_the_default_release(name: str) -> None:
    archive, current = HUB / DEFAULT_RELEASE / name, HUB / name
    files = sorted(p.name for p in archive.iterdir())
    assert files == sorted(p.name for p in current.iterdir())
    _, mismatch, errors = filecmp.cmpfiles(archive, current, files, shallow=False)
    assert not mismatch and not errors


@pytest.fixture(scope="module")
def test_set(mnist_root: Path) -> mnist_zoo.MNIST:
    return mnist_zoo.MNIST(mnist_root, split="test")


CALIBRATED = [(t, n) for t, n in RELEASES if "calibration" in config_of(t, n)]


@pytest.mark.parametrize(("tag", "name"), CALIBRATED)
def test_calibration_figures_are_what_the_card_says(
    tag: str, name: str, test_set: mnist_zoo.MNIST
) -> None:
    if not SLOW and PRETRAINED[name][tag].sha256 != PRETRAINED[name][DEFAULT_RELEASE].sha256:
        # A frozen archive, pinned by its SHA-256: its figures were checked when it was the
        # default, and MiniVGG's fp32 pass over the test set alone takes half a minute.
        pytest.skip("an archived release's own file: set MNIST_ZOO_RELEASE_TESTS=1")
    calibration = config_of(tag, name)["calibration"]
    model = published_model(f"{name}@{tag}")
    temperature = calibration["temperature"]
    assert model.pretrained_cfg["temperature"] == temperature
    assert calibration["fitted_on"]["split"] == "validation"
    # fp32, computed once per weights file (a tag that copies another's file shares it).
    logits = fp32_logits(f"{name}@{tag}", test_set.root)
    scaled = apply_temperature(logits, temperature)
    stored = calibration["test"]
    assert stored["num_images"] == len(test_set)
    assert expected_calibration_error(logits.softmax(1), test_set.targets) == pytest.approx(
        stored["ece_before"], abs=1e-4
    )
    assert expected_calibration_error(scaled.softmax(1), test_set.targets) == pytest.approx(
        stored["ece_after"], abs=1e-4
    )
    assert negative_log_likelihood(scaled, test_set.targets) == pytest.approx(
        stored["nll_after"], abs=1e-4
    )
    assert stored["ece_after"] < stored["ece_before"]
    readme = (HUB / tag / name / "README.md").read_text()
    assert f"{100 * stored['ece_before']:.2f}%" in readme
    assert f"{100 * stored['ece_after']:.2f}%" in readme


SUITED = [(t, n) for t, n in RELEASES if "robustness" in config_of(t, n)["metrics"]]


@pytest.mark.skipif(not SLOW, reason="minutes per model: set MNIST_ZOO_RELEASE_TESTS=1")
@pytest.mark.parametrize(("tag", "name"), SUITED)
def test_corruption_suite_is_what_the_card_says(
    tag: str, name: str, test_set: mnist_zoo.MNIST
) -> None:
    stored = config_of(tag, name)["metrics"]["robustness"]
    model = mnist_zoo.load_pretrained(str(HUB / tag / name))
    result = evaluate_corruptions(
        model, test_set.images, test_set.targets, seed=stored["seed"],
        temperature=stored["temperature"],
    )  # fmt: skip
    # fp32 on another CPU may move an image or two across the decision boundary.
    assert result.mean_accuracy == pytest.approx(stored["mean_corruption_accuracy"], abs=2e-4)
    for corruption, accuracy in stored["corruption_accuracy"].items():
        assert result.corruption_accuracy[corruption] == pytest.approx(accuracy, abs=3e-4)
    assert result.ece_scaled == pytest.approx(stored["ece_scaled"], abs=1e-4)
    readme = (HUB / tag / name / "README.md").read_text()
    assert f"{100 * stored['mean_corruption_accuracy']:.2f}%" in readme


@pytest.mark.parametrize(("tag", "name"), RELEASES)
def test_each_release_was_trained_with_its_release_recipe(tag: str, name: str) -> None:
    stored = TrainConfig.from_dict(config_of(tag, name)["recipe"])
    # The recipe says "auto"; config.json records what it resolved to on the machine.
    assert dataclasses.replace(get_recipe(name, tag), precision=stored.precision) == stored
