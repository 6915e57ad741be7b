"""``mnist-zoo evaluate --suite corruptions`` and the ``--tta`` options, run in-process."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import pytest
import torch

import mnist_zoo
from mnist_zoo.calibration import TEMPERATURE_BOUNDS
from mnist_zoo.cli import main
from mnist_zoo.cli_evaluate import suite_temperature
from mnist_zoo.data import find_mnist_file
from mnist_zoo.robustness import CORRUPTIONS, evaluate_corruptions

ROOT = Path(__file__).resolve().parents[1]
LIMIT = 100  # test images per set: the suite is 16 sets of them
VAL_SIZE = 1000

pytestmark = pytest.mark.usefixtures("one_thread")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("mnist-zoo: error: "), err
    return lines[0]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """hub/simplecnn without a stored temperature, so the command has to fit one.

    Its recipe's validation split is cut from 5,000 images to the first 1,000 of the same
    permutation (same seed), a subset of the images the model never trained on: the fit then
    takes a second instead of seven.
    """
    target = tmp_path_factory.mktemp("hub") / "simplecnn"
    shutil.copytree(ROOT / "hub" / "simplecnn", target)
    config = json.loads((target / "config.json").read_text())
    config.pop("calibration", None)
    assert config["recipe"]["val_size"] == 5000
    config["recipe"]["val_size"] = VAL_SIZE
    (target / "config.json").write_text(json.dumps(config, indent=2))
    return target


@pytest.fixture(scope="module")
def test_only_root(mnist_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data folder with the test split only."""
    target = tmp_path_factory.mktemp("test-only")
    for kind in ("images", "labels"):
        source = find_mnist_file(mnist_root, "test", kind)
        shutil.copy(source, target / source.name)
    return target


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--suite", "foo"], "--suite corruptions"),
        (["--suite", "corruptions", "--limit", "0"], "--limit must be a positive"),
        (["--limit", "-5"], "--limit must be a positive"),
        (["--seed", "3"], "add --suite corruptions"),
        (["--suite", "corruptions", "--seed", "-1"], "--seed must be 0 or more"),
    ],
    ids=["unknown-suite", "limit-0", "negative-limit", "seed-without-suite", "negative-seed"],
)
def test_bad_values_are_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], needle: str
) -> None:
    # Refused before anything is loaded: the folder need not even exist.
    code, out, err = run(capsys, "evaluate", "no/such/folder", *argv)
    assert code == 2 and out == ""
    assert needle in one_error_line(err)


def test_suite_json_fits_a_temperature_on_the_validation_split(
    capsys: pytest.CaptureFixture[str], folder: Path, mnist_root: Path
) -> None:
    code, out, err = run(
        capsys, "evaluate", str(folder), "--suite", "corruptions", "--data", str(mnist_root),
        "--limit", str(LIMIT), "--json",
    )  # fmt: skip
    assert code == 0, err
    figures = json.loads(out)
    assert list(figures["corruption_accuracy"]) == list(CORRUPTIONS)
    assert figures["num_images"] == LIMIT and figures["limit"] == LIMIT
    assert figures["tta"] is False and figures["seed"] == 0
    assert figures["temperature_source"] == f"fitted on the validation split, {VAL_SIZE} images"
    temperature = figures["temperature"]
    assert TEMPERATURE_BOUNDS[0] < temperature < TEMPERATURE_BOUNDS[1] and temperature != 1
    # The recipe's label smoothing makes the raw model underconfident; the fitted temperature
    # must repair most of that on the test images it never saw.
    assert figures["ece_scaled"] < figures["ece"] / 2

    # The same figures as the library gives for the same images and temperature.
    test = mnist_zoo.MNIST(mnist_root, split="test")
    model = mnist_zoo.load_pretrained(str(folder))
    names = ["fog", "rotate", "canny_edges"]
    direct = evaluate_corruptions(
        model, test.images[:LIMIT], test.targets[:LIMIT], names, temperature=temperature
    )
    assert {name: figures["corruption_accuracy"][name] for name in names} == (
        direct.corruption_accuracy
    )
    assert figures["clean_accuracy"] == direct.clean_accuracy
    assert figures["ece_scaled"] == pytest.approx(direct.ece_scaled)


def test_suite_text_with_tta_and_no_training_split(
    capsys: pytest.CaptureFixture[str], folder: Path, test_only_root: Path
) -> None:
    code, out, err = run(
        capsys, "evaluate", str(folder), "--suite", "corruptions", "--data", str(test_only_root),
        "--limit", "20", "--tta", "--seed", "2",
    )  # fmt: skip
    assert code == 0, err
    assert "the first 20 of 10,000 images: --limit 20, a smoke run" in out
    assert "tta: true" in out and "seed 2" in out
    assert all(name in out for name in CORRUPTIONS) and "mean" in out and "ECE" in out
    assert "after temperature" not in out
    (line,) = [line for line in out.splitlines() if line.startswith("temperature: ")]
    assert line.startswith("temperature: none:") and "--data DIR" in line


def test_a_temperature_in_config_json_is_used_as_it_is(
    capsys: pytest.CaptureFixture[str], folder: Path, test_only_root: Path, tmp_path: Path
) -> None:
    stored = tmp_path / "simplecnn"
    shutil.copytree(folder, stored)
    config = json.loads((stored / "config.json").read_text())
    config["calibration"] = {"temperature": 0.5}
    (stored / "config.json").write_text(json.dumps(config, indent=2))
    # The loader's side of the contract: the stored value lands in pretrained_cfg.
    assert mnist_zoo.load_pretrained(str(stored)).pretrained_cfg["temperature"] == 0.5

    code, out, err = run(
        capsys, "evaluate", str(stored), "--suite", "corruptions", "--data", str(test_only_root),
        "--limit", "40", "--json",
    )  # fmt: skip
    assert code == 0, err
    figures = json.loads(out)
    assert figures["temperature"] == 0.5
    assert figures["temperature_source"] == "stored in config.json"
    assert figures["nll_scaled"] is not None and figures["nll_scaled"] != figures["nll"]


def test_suite_temperature_says_why_there_is_none() -> None:
    model = mnist_zoo.create_model("simplecnn")  # records no recipe and no temperature
    args = argparse.Namespace(tta=False, precision="fp32")

    def no_train() -> mnist_zoo.MNIST:
        raise AssertionError("no recipe: the training split must not be loaded")

    temperature, source = suite_temperature(model, no_train, args)
    assert temperature is None and source.startswith("none:") and "recipe" in source
    model.pretrained_cfg["temperature"] = 1.7
    assert suite_temperature(model, no_train, args) == (1.7, "stored in config.json")


def test_plain_evaluate_with_tta_and_limit(
    capsys: pytest.CaptureFixture[str], folder: Path, mnist_root: Path
) -> None:
    code, out, err = run(
        capsys, "evaluate", str(folder), "--data", str(mnist_root), "--limit", "60", "--tta",
        "--json",
    )  # fmt: skip
    assert code == 0, err
    figures = json.loads(out)
    assert figures["tta"] is True and figures["num_test_images"] == 60
    assert figures["test_accuracy"] >= 0.95
    code, out, _ = run(capsys, "evaluate", str(folder), "--data", str(mnist_root), "--limit", "60")
    assert code == 0 and "the first 60 of 10,000 images" in out and "tta" not in out


def test_predict_with_tta(capsys: pytest.CaptureFixture[str], folder: Path) -> None:
    image = ROOT / "examples" / "images" / "four.png"
    code, out, err = run(capsys, "predict", str(image), "--model", str(folder), "--tta")
    assert code == 0, err
    assert out.startswith(f"{image}: 4 (")
    model = mnist_zoo.load_pretrained(str(folder))
    expected = mnist_zoo.predict(model, image, tta=True)
    assert f"({100 * float(expected.confidence[0]):.1f}%)" in out
    plain = mnist_zoo.predict(model, image)
    assert not torch.allclose(plain.probs, expected.probs)
