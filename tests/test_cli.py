"""The mnist-zoo command line, run in-process through its entry point."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from mnist_zoo.cli import main
from mnist_zoo.data import find_mnist_file, write_idx


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


def _console_script() -> Path:
    # Beside the interpreter running the tests, not whatever `mnist-zoo` PATH finds first.
    return Path(sys.executable).with_name("mnist-zoo")


def test_console_script_is_installed() -> None:
    exe = _console_script()
    assert exe.is_file(), "pip install -e . should put mnist-zoo beside the venv's python"
    proc = subprocess.run([str(exe), "--version"], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.startswith("mnist-zoo ")


def test_check_data_passes_on_the_real_data(
    capsys: pytest.CaptureFixture[str], mnist_root: Path
) -> None:
    code, out, _ = run(capsys, "check-data", str(mnist_root))
    assert code == 0, out
    assert "60,000" in out or "60000" in out


def test_check_data_names_missing_files_and_reports_failed_checks(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mnist_root: Path
) -> None:
    for kind in ("images", "labels"):
        real = find_mnist_file(mnist_root, "test", kind)
        (tmp_path / real.name).symlink_to(real)  # type: ignore[union-attr]
    # Without the training files there is nothing to check: one line, bad input.
    code, out, err = run(capsys, "check-data", str(tmp_path))
    assert code == 2 and out == ""
    _assert_one_error_line(err, "MNIST train images, train labels not found in", "--download")
    # With all four files present but one wrong, the report says which check failed.
    real = find_mnist_file(mnist_root, "train", "images")
    (tmp_path / real.name).symlink_to(real)  # type: ignore[union-attr]
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(10, dtype=np.uint8))
    code, out, _ = run(capsys, "check-data", str(tmp_path))
    assert code == 1
    assert re.search(r"^counts +FAIL +train: 60,000 images, 10 labels", out, re.MULTILINE), out


def test_unknown_model_is_one_clear_line(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "evaluate", "minivg")
    assert code == 2
    assert "did you mean 'minivgg'?" in err.lower()
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("option", "value", "needle"),
    [
        ("--epochs", "0", "argument --epochs: must be an integer >= 1, got 0"),
        ("--batch-size", "x", "argument --batch-size: must be an integer, got 'x'"),
        ("--lr", "-1", "argument --lr: must be a number > 0, got -1"),
        ("--val-size", "-3", "argument --val-size: must be an integer >= 0, got -3"),
        ("--limit", "0", "argument --limit: must be an integer >= 1, got 0"),
        ("--device", "tpu", "argument --device: Unknown device 'tpu'"),
    ],
)
def test_a_bad_train_option_is_a_usage_error_naming_it(
    capsys: pytest.CaptureFixture[str], mnist_root: Path, option: str, value: str, needle: str
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["train", "simplecnn", option, value, "--data", str(mnist_root)])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.rstrip().splitlines()[-1].startswith(
        f"mnist-zoo train: error: {needle}"
    )


def test_a_validation_split_as_large_as_mnist_is_refused_before_training(
    capsys: pytest.CaptureFixture[str], mnist_root: Path, tmp_path: Path
) -> None:
    code, out, err = run(capsys, "train", "simplecnn", "--val-size", "60000", "--data",
                         str(mnist_root), "--out", str(tmp_path / "out"))  # fmt: skip
    assert code == 2 and "training" not in out and not (tmp_path / "out").exists()
    _assert_one_error_line(err, "--val-size 60000 leaves no training images", "--val-size")


def test_train_then_evaluate_then_predict(
    capsys: pytest.CaptureFixture[str], mnist_small_root: Path, tmp_path: Path
) -> None:
    # 5,000 images to train on (1,000 held out), scored on the first 2,000 test images: enough
    # for a model far from guessing, whose saved weights score again exactly as recorded.
    mnist_root = mnist_small_root
    out_dir = tmp_path / "run"
    code, out, err = run(
        capsys, "train", "simplecnn", "--epochs", "1", "--limit", "6000", "--val-size", "1000",
        "--data", str(mnist_root), "--out", str(out_dir), "--no-progress", "--precision", "fp32",
        "--no-suite",
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
        capsys, "train", "simplecnn", "--epochs", "1", "--limit", "6000", "--val-size", "1000",
        "--data", str(mnist_root), "--out", str(out_dir), "--no-progress", "--precision", "fp32",
        "--no-suite",
        "--resume",
    )  # fmt: skip
    assert code == 0 and "resumed" in out
    assert json.loads((out_dir / "config.json").read_text())["sha256"] == config["sha256"]


def test_python_dash_m_entry_point() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "mnist_zoo", "list", "--help"], capture_output=True, text=True
    )
    assert proc.returncode == 0 and proc.stdout.startswith("usage: mnist-zoo list")


# --- failures: one line on standard error, the right exit status, never a traceback ---------

ROOT = Path(__file__).resolve().parents[1]
IMAGE = str(ROOT / "examples" / "images" / "four.png")


def _offline_env(tmp_path: Path) -> dict[str, str]:
    # An empty Hub cache in offline mode: the Hub is "unreachable" at once, with no retries.
    import os

    env = dict(os.environ, HF_HOME=str(tmp_path / "hf"), HF_HUB_OFFLINE="1")
    env.pop("MNIST_ZOO_DATA", None)
    return env


def _assert_one_error_line(err: str, *needles: str) -> None:
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("mnist-zoo: error: "), err
    for needle in needles:
        assert needle in lines[0], (needle, err)


@pytest.mark.parametrize(
    ("argv", "status", "needles"),
    [
        (["check-data", "{empty}/nowhere"], 2,
         ["train images, train labels, test images, test labels not found", "check-data DIR",
          "--download"]),
        (["train", "simplecnn", "--data", "{empty}", "--no-progress"], 2,
         ["--data DIR", "--download"]),
        (["evaluate", "no/such/folder"], 2, ["no/such/folder"]),
        (["evaluate", "minivgg", "--data", "{empty}"], 1,
         ["mnist-zoo evaluate hub/minivgg"]),
        (["predict", IMAGE], 1, ["--model DIR", "hub/minivgg"]),
        (["evaluate", "deepercnn@v0.1.0", "--data", "{empty}"], 1,
         ["mnist-zoo evaluate hub/v0.1.0/deepercnn"]),
        (["push", "simplecnn", "--repo-id", "someone/simplecnn", "--folder", "{empty}"], 2,
         ["is missing"]),
        (["serve", "--model", "no/such/folder", "--port", "0"], 2, ["no/such/folder"]),
    ],
    ids=["check-data-no-folder", "train-no-data", "evaluate-no-folder", "evaluate-hub-down",
         "predict-hub-down", "evaluate-tag-hub-down", "push-bad-folder", "serve-no-folder"],
)  # fmt: skip
def test_each_command_fails_with_one_line_through_the_console_script(
    tmp_path: Path, argv: list[str], status: int, needles: list[str]
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    argv = [a.replace("{empty}", str(empty)) for a in argv]
    proc = subprocess.run(
        [str(_console_script()), *argv],
        capture_output=True, text=True, env=_offline_env(tmp_path), timeout=120,
    )  # fmt: skip
    assert proc.returncode == status, proc.stderr
    _assert_one_error_line(proc.stderr, *needles)


def test_list_with_no_match_fails_without_a_traceback(tmp_path: Path) -> None:
    proc = subprocess.run(
        [str(_console_script()), "list", "resnet*"],
        capture_output=True, text=True, env=_offline_env(tmp_path), timeout=120,
    )  # fmt: skip
    assert proc.returncode == 1 and "No model matches" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_evaluate_the_ensemble_folder_explains_what_it_is(
    capsys: pytest.CaptureFixture[str], mnist_root: Path
) -> None:
    code, _, err = run(
        capsys, "evaluate", str(ROOT / "hub" / "ensemble"), "--data", str(mnist_root)
    )
    members = json.loads((ROOT / "hub" / "ensemble" / "config.json").read_text())["members"]
    assert code == 2
    _assert_one_error_line(
        err,
        f"ensemble of the {len(members)} pinned models ({members[0]}, ",
        "mnist-zoo evaluate ensemble",
    )


def test_evaluate_without_data_names_the_options(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = run(capsys, "evaluate", str(ROOT / "hub" / "simplecnn"), "--data", str(tmp_path))
    assert code == 2
    _assert_one_error_line(err, "--data DIR", "--download")


def test_limit_smaller_than_the_validation_split_names_val_size(
    capsys: pytest.CaptureFixture[str], mnist_root: Path
) -> None:
    code, _, err = run(capsys, "train", "simplecnn", "--limit", "3000", "--data", str(mnist_root))
    assert code == 2
    _assert_one_error_line(err, "--val-size")


def test_non_finite_learning_rate_is_refused_up_front(
    capsys: pytest.CaptureFixture[str], mnist_root: Path, tmp_path: Path
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["train", "simplecnn", "--lr", "inf", "--data", str(mnist_root),
              "--out", str(tmp_path / "out")])  # fmt: skip
    assert (
        exit_.value.code == 2
        and "argument --lr: must be a number > 0, got inf" in capsys.readouterr().err
    )
    assert not (tmp_path / "out").exists()


def test_absent_device_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    code, _, err = run(capsys, "predict", IMAGE, "--model", str(ROOT / "hub" / "simplecnn"),
                       "--device", "cuda")  # fmt: skip
    assert code == 1
    _assert_one_error_line(err, "CUDA")


def test_a_bug_keeps_its_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    import mnist_zoo.cli as cli

    def broken(args: object) -> int:
        raise TypeError("a bug, not a user error")

    parser = cli.build_parser()
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    parser._subparsers._group_actions[0].choices["list"].set_defaults(func=broken)  # type: ignore[union-attr]
    with pytest.raises(TypeError, match="a bug"):
        cli.main(["list"])


def test_run_command_is_one_line_for_the_package_and_a_traceback_for_a_bug(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from mnist_zoo.errors import MNISTNotFoundError, UnknownModelError, run_command

    def raises(error: BaseException) -> Callable[[], int]:
        def body() -> int:
            raise error

        return body

    assert run_command(lambda: None, "p") == 0 and run_command(lambda: 3, "p") == 3
    assert run_command(raises(UnknownModelError("resnet", ["minivgg"])), "p") == 2
    assert capsys.readouterr().err.startswith("p: error: Unknown model 'resnet'")
    assert run_command(raises(OSError(28, "No space left on device")), "p") == 1
    assert capsys.readouterr().err == "p: error: [Errno 28] No space left on device\n"
    assert run_command(raises(KeyboardInterrupt()), "p") == 130
    assert capsys.readouterr().err == "p: interrupted\n"
    # A broken pipe that is not standard output's (a socket's, say) is an error like any other.
    assert run_command(raises(BrokenPipeError(32, "Broken pipe")), "p") == 1
    assert capsys.readouterr().err == "p: error: [Errno 32] Broken pipe\n"
    missing = MNISTNotFoundError("Pass download=True.", root=tmp_path, missing=["test labels"])
    assert run_command(raises(missing), "p", data_option="--mnist DIR") == 2
    err = capsys.readouterr().err
    assert err.startswith(f"p: error: MNIST test labels not found in {tmp_path}; pass --mnist DIR")
    assert run_command(raises(missing), "p", data_option=None) == 2
    assert capsys.readouterr().err == "p: error: Pass download=True.\n"
    with pytest.raises(TypeError):  # a bug is not the caller's fault: it keeps its traceback
        run_command(raises(TypeError("bug")), "p")


def test_a_reader_that_stops_early_is_not_an_error(tmp_path: Path) -> None:
    # `mnist-zoo list | head -0`: the pipe is closed before the command writes a byte.
    proc = subprocess.Popen(
        [str(_console_script()), "list"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_offline_env(tmp_path),
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141, err
    assert err == ""  # no "Broken pipe" line, no "Exception ignored" from the last flush
