"""The mnist-zoo command line, run in-process through its entry point."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mnist_zoo.cli import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_list_prints_the_three_models_with_parameter_counts(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(capsys, "list")
    assert code == 0
    for name, params in [("simplecnn", "421,642"), ("deepercnn", "870,634"),
                         ("minivgg", "2,921,930")]:  # fmt: skip
        line = next(ln for ln in out.splitlines() if ln.startswith(name))
        assert params in line
    code, out, _ = run(capsys, "list", "*vgg*")
    assert code == 0 and "minivgg" in out and "simplecnn" not in out
    code, _, err = run(capsys, "list", "resnet*")
    assert code == 1 and "No model matches" in err


def test_console_script_is_installed() -> None:
    exe = shutil.which("mnist-zoo")
    assert exe is not None, "pip install -e . should put mnist-zoo on PATH"
    proc = subprocess.run([exe, "--version"], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.startswith("mnist-zoo ")


def test_check_data_passes_on_the_real_data(
    capsys: pytest.CaptureFixture[str], mnist_root: Path
) -> None:
    code, out, _ = run(capsys, "check-data", str(mnist_root))
    assert code == 0, out
    assert "60,000" in out or "60000" in out


def test_check_data_fails_on_an_empty_folder(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, _ = run(capsys, "check-data", str(tmp_path))
    assert code == 1
    assert "FAIL" in out.upper()


def test_unknown_model_is_one_clear_line(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "evaluate", "minivg")
    assert code == 2
    assert "did you mean 'minivgg'?" in err.lower()
    assert "Traceback" not in err


def test_bad_epochs_is_a_clear_error(capsys: pytest.CaptureFixture[str], mnist_root: Path) -> None:
    code, _, err = run(capsys, "train", "simplecnn", "--epochs", "0", "--data", str(mnist_root))
    assert code == 2 and "epochs must be an integer >= 1" in err


def test_train_then_evaluate_then_predict(
    capsys: pytest.CaptureFixture[str], mnist_root: Path, tmp_path: Path
) -> None:
    out_dir = tmp_path / "run"
    code, out, err = run(
        capsys, "train", "simplecnn", "--epochs", "1", "--limit", "12000", "--data",
        str(mnist_root), "--out", str(out_dir), "--no-progress", "--precision", "fp32",
    )  # fmt: skip
    assert code == 0, err
    assert "test accuracy" in out
    assert {"model.safetensors", "config.json", "README.md"} <= {p.name for p in out_dir.iterdir()}
    config = json.loads((out_dir / "config.json").read_text())
    trained_acc = config["metrics"]["test_accuracy"]
    assert 0.85 < trained_acc <= 1.0

    code, out, _ = run(capsys, "evaluate", str(out_dir), "--data", str(mnist_root), "--json")
    assert code == 0
    # Re-scoring the saved weights in fp32 gives exactly what training recorded.
    assert json.loads(out)["test_accuracy"] == pytest.approx(trained_acc, abs=1e-12)

    code, out, _ = run(capsys, "evaluate", str(out_dir), "--data", str(mnist_root))
    assert code == 0 and "confusion matrix" in out and "most confused pairs" in out

    # Resuming a finished run trains nothing more and gives the same weights.
    code, out, _ = run(
        capsys, "train", "simplecnn", "--epochs", "1", "--limit", "12000", "--data",
        str(mnist_root), "--out", str(out_dir), "--no-progress", "--precision", "fp32",
        "--resume",
    )  # fmt: skip
    assert code == 0 and "resumed" in out
    assert json.loads((out_dir / "config.json").read_text())["sha256"] == config["sha256"]


def test_python_dash_m_entry_point() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "mnist_zoo.cli", "list"], capture_output=True, text=True
    )
    assert proc.returncode == 0 and "minivgg" in proc.stdout
