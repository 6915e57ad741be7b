"""The scripts in examples/ run as their docstrings show, in their quick forms.

Each runs as ``__main__`` with its own command line, ``MNIST_ZOO_DATA`` pointing at the real data
(skipped without it) and a temporary working folder. Most run in the test's own interpreter
(:func:`run_example`), which spares each one the start-up of a fresh one; the two checks that
are about a fresh interpreter start one: the quickstart offline with an empty cache (the Hub
client reads its settings at import) and the plot examples without matplotlib. The Hub is never
contacted: the scripts that load weights get a local Hub-layout folder, a freshly initialised
SimpleCNN or the checkout's published one.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import random
import re
import runpy
import shlex
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

import mnist_zoo
from mnist_zoo.hub import load_pretrained, save_pretrained

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
STUDY_MODELS = ("simplecnn", "deepercnn", "minivgg")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run_example(
    script: str, *args: str | Path, mnist_root: Path, cwd: Path, expect: int = 0, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run ``python examples/SCRIPT ARGS`` in this interpreter and check its exit status.

    The script runs as ``__main__`` through :func:`runpy.run_path`, with its own ``sys.argv``,
    environment and working directory, as ``python`` would run it. A fresh interpreter would
    add only its start-up: importing torch, and torch._dynamo when the script builds an
    optimizer, some seconds per script on a small CPU. What the script changes in the process
    (the random generators, torch's thread count, open figures) is put back afterwards.

    Args:
        script: File name in examples/.
        *args: Its command-line arguments.
        mnist_root: Folder with the real MNIST files, passed as ``MNIST_ZOO_DATA``.
        cwd: Working directory, so that default output folders land in the test's tmp_path.
        expect: The expected exit status.
        **env: Extra environment variables.

    Returns:
        The finished run: its exit status and what it wrote to standard output and error.
    """
    argv = [str(EXAMPLES / script), *map(str, args)]
    out, err = io.StringIO(), io.StringIO()
    with (
        pytest.MonkeyPatch.context() as mp,
        _process_state_restored(),
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
    ):
        mp.chdir(cwd)
        mp.setattr(sys, "argv", argv)
        for name, value in {"MNIST_ZOO_DATA": str(mnist_root), **env}.items():
            mp.setenv(name, value)
        try:
            runpy.run_path(argv[0], run_name="__main__")
            code = 0
        except SystemExit as exit:
            code = _exit_status(exit.code, err)
    proc = subprocess.CompletedProcess(argv, code, out.getvalue(), err.getvalue())
    assert proc.returncode == expect, f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def _exit_status(code: object, err: io.StringIO) -> int:
    """The status ``python`` exits with for ``sys.exit(code)`` (a message is printed, then 1)."""
    if code is None or isinstance(code, int):
        return code or 0
    print(code, file=err)
    return 1


@contextlib.contextmanager
def _process_state_restored() -> Iterator[None]:
    """Put back the random generators, torch's thread count and matplotlib's figures."""
    states = torch.get_rng_state(), np.random.get_state(), random.getstate()
    threads = torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_rng_state(states[0])
        np.random.set_state(states[1])
        random.setstate(states[2])
        torch.set_num_threads(threads)
        if "matplotlib.pyplot" in sys.modules:
            sys.modules["matplotlib.pyplot"].close("all")


def assert_png(path: Path) -> None:
    """``path`` is a non-trivial PNG file."""
    assert path.is_file(), f"{path} was not written"
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 1000, f"{path} is not a real PNG"


@pytest.fixture(scope="module")
def random_simplecnn(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Hub-layout folder holding a seeded, untrained SimpleCNN."""
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("hub") / "simplecnn"
    return save_pretrained(mnist_zoo.create_model("simplecnn"), folder, name="simplecnn")


def test_quickstart_predicts_the_first_16_test_digits(
    mnist_root: Path, random_simplecnn: Path, tmp_path: Path
) -> None:
    proc = run_example(
        "quickstart.py", "--model", random_simplecnn, mnist_root=mnist_root, cwd=tmp_path
    )
    rows = re.findall(r"^\s*(\d+)\s+(\d)\s+(\d)\s+[\d.]+%", proc.stdout, flags=re.M)
    assert [int(index) for index, _, _ in rows] == list(range(16))
    true_labels = mnist_zoo.MNIST(mnist_root, split="test").targets[:16].tolist()
    assert [int(true) for _, true, _ in rows] == true_labels
    assert re.search(r"^\d+ of 16 correct$", proc.stdout, flags=re.M)


def test_quickstart_explains_when_weights_cannot_be_loaded(
    mnist_root: Path, tmp_path: Path
) -> None:
    # Offline with an empty cache: fails at once whether or not minivgg's weights are pinned.
    # A fresh interpreter, as the Hub client reads HF_HUB_OFFLINE and HF_HOME when imported.
    env = {"MNIST_ZOO_DATA": str(mnist_root), "HF_HUB_OFFLINE": "1"}
    env["HF_HOME"] = str(tmp_path / "hf")
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / "quickstart.py")],
        cwd=tmp_path, env={**os.environ, **env}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Cannot load 'minivgg'" in proc.stderr
    assert "examples/train.py" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_train_quick_saves_a_loadable_model(mnist_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = run_example(
        "train.py", "--model", "simplecnn", "--quick", "--out", out,
        mnist_root=mnist_root, cwd=tmp_path,
    )  # fmt: skip
    assert "simplecnn: test accuracy" in proc.stdout
    assert (out / "checkpoints" / "history.csv").is_file()
    config = json.loads((out / "config.json").read_text())
    assert config["metrics"]["epochs_trained"] == 1
    assert config["metrics"]["num_test_images"] == 10_000
    # One epoch on 4,500 images is far from random guessing (10%).
    assert config["metrics"]["test_accuracy"] > 0.5
    assert load_pretrained(out).pretrained_cfg["name"] == "simplecnn"


def test_eda_checks_the_data_and_draws_the_figures(mnist_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "eda"
    proc = run_example("eda.py", "--out", out, mnist_root=mnist_root, cwd=tmp_path)
    assert "checks passed" in proc.stdout
    for name in ("class_distribution.png", "samples.png", "mean_digits.png"):
        assert_png(out / name)


@pytest.fixture(scope="module")
def quick_study(mnist_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder of one ``study.py --quick`` run: ``report/`` and ``runs/`` inside."""
    root = tmp_path_factory.mktemp("study")
    run_example(
        "study.py", "--quick", "--out", root / "report", "--runs", root / "runs",
        mnist_root=mnist_root, cwd=root,
    )  # fmt: skip
    return root


def report_figures(report: Path) -> list[str]:
    """The image files report.md shows."""
    return re.findall(r"!\[[^\]]*\]\(([^)]+)\)", (report / "report.md").read_text())


def accuracy_rows(report: Path) -> list[str]:
    """The rows of report.md's accuracy table, as text."""
    text = (report / "report.md").read_text()
    return re.findall(r"^\| (?:simplecnn|deepercnn|minivgg|ensemble)[^\n]*\| [\d.]+% \|.*$",
                      text, flags=re.M)  # fmt: skip


# The tests of one study.py run share a pytest-xdist worker, so that the run is made once.
STUDY_GROUP = pytest.mark.xdist_group("examples-quick-study")


@pytest.mark.slow
@STUDY_GROUP
def test_study_quick_writes_the_report(quick_study: Path) -> None:
    report = quick_study / "report"
    text = (report / "report.md").read_text()
    assert "Quick mode" in text
    assert "All 8 checks passed." in text
    for published in ("99.31%", "99.38%", "99.60%"):
        assert published in text
    assert "## Overlap of errors between the models" in text
    assert "## Training" in text
    figures = report_figures(report)
    expected = {f"misclassified_{name}.png" for name in STUDY_MODELS} | {
        "accuracy.png", "per_class_accuracy.png", "confusion_matrices.png",
        "error_overlap.png", "training_curves.png", "accuracy_vs_time.png",
    }  # fmt: skip
    assert expected <= set(figures)
    for figure in figures:
        assert_png(report / figure)
    for name in STUDY_MODELS:
        assert (quick_study / "runs" / name / "model.safetensors").is_file()


@pytest.mark.slow
@STUDY_GROUP
def test_study_pretrained_rebuilds_the_same_report_from_the_weights(
    quick_study: Path, mnist_root: Path, tmp_path: Path
) -> None:
    report = tmp_path / "report"
    run_example(
        "study.py", "--quick", "--pretrained", "--hub-dir", quick_study / "runs",
        "--out", report, mnist_root=mnist_root, cwd=tmp_path,
    )  # fmt: skip
    # Same weights, same test images: the same accuracy, errors and ensemble, to the digit.
    assert accuracy_rows(report) == accuracy_rows(quick_study / "report")
    assert len(accuracy_rows(report)) == 4
    # The histories saved beside the weights are found again.
    assert "training_curves.png" in report_figures(report)


def synthetic_digit(path: Path) -> Path:
    """Draw a '7' in dark ink on light paper, off-centre in a landscape picture."""
    image = Image.new("L", (160, 120), 235)
    ImageDraw.Draw(image).line([(30, 20), (80, 20), (50, 100)], fill=20, width=7)
    image.save(path)
    return path


def test_predict_image_draws_each_picture_and_reports_bad_files(
    mnist_root: Path, random_simplecnn: Path, tmp_path: Path
) -> None:
    pictures = sorted(EXAMPLES.glob("images/*.png")) or [synthetic_digit(tmp_path / "seven.png")]
    bad = tmp_path / "not_an_image.png"
    bad.write_text("not a picture")
    out = tmp_path / "predict"
    proc = run_example(
        "predict_image.py", *pictures, bad, "--model", random_simplecnn, "--out", out,
        mnist_root=mnist_root, cwd=tmp_path, expect=1,
    )  # fmt: skip
    for picture in pictures:
        assert re.search(rf"^{re.escape(str(picture))}: \d \([\d.]+%\), runner-up \d", proc.stdout,
                         flags=re.M)  # fmt: skip
        assert_png(out / f"{picture.stem}.png")
    assert f"{bad}: error:" in proc.stderr
    assert not (out / "not_an_image.png").exists()


def test_finetune_quick_beats_training_from_scratch_and_saves_the_new_head(
    mnist_root: Path, tmp_path: Path
) -> None:
    # The checkout's published SimpleCNN, so that pretrained features are worth something.
    pretrained = EXAMPLES.parent / "hub" / "simplecnn"
    out = tmp_path / "parity"
    proc = run_example(
        "finetune.py", "--quick", "--model", pretrained, "--out", out,
        mnist_root=mnist_root, cwd=tmp_path,
    )  # fmt: skip
    rows = dict(re.findall(r"^\| ([a-z ,]+) \| [\d,]+ \| [\d.]+ \| ([\d.]+)% \|$", proc.stdout,
                           flags=re.M))  # fmt: skip
    assert list(rows) == ["from scratch", "pretrained, head only", "pretrained, all layers"]
    scratch = float(rows.pop("from scratch"))
    assert all(float(accuracy) > scratch for accuracy in rows.values()), proc.stdout
    loaded = load_pretrained(out)
    assert loaded.num_classes == 2 and loaded.pretrained_cfg["model_kwargs"] == {"num_classes": 2}
    doc = load_example("finetune.py").__doc__ or ""
    assert "--data DIR" in doc and "$MNIST_ZOO_DATA" in doc and "--quick" in doc


# ---------------------------------------------------------------------------- as documented

#: The examples that read MNIST, so their docstrings must say where from.
READ_MNIST = ("quickstart.py", "train.py", "eda.py", "study.py", "finetune.py")
#: The examples that draw figures with matplotlib, the ``plot`` extra.
DRAW_FIGURES = ("eda.py", "study.py", "predict_image.py")
DOCSTRING_COMMAND = re.compile(r"^\s+python examples/(\w+\.py)\b([^#\n]*)", flags=re.M)


def load_example(script: str) -> ModuleType:
    """Import ``examples/SCRIPT`` as a module, without running its ``main``."""
    path = EXAMPLES / script
    spec = importlib.util.spec_from_file_location(f"example_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being defined
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("script", sorted(p.name for p in EXAMPLES.glob("*.py")))
def test_the_docstring_commands_are_valid_command_lines(script: str) -> None:
    module = load_example(script)
    commands = DOCSTRING_COMMAND.findall(module.__doc__ or "")
    assert commands, f"{script}'s docstring shows no 'python examples/{script} ...' line"
    for name, args in commands:
        assert name == script, f"{script}'s docstring runs {name}"
        module.parse_args(shlex.split(args))  # argparse exits on an unknown or bad option
    if script in READ_MNIST:
        assert "--data DIR" in module.__doc__ and "$MNIST_ZOO_DATA" in module.__doc__
        assert all("--data DIR" in args for _, args in commands), (
            f"every command in {script}'s docstring shows where MNIST comes from"
        )


def test_quick_runs_write_apart_from_real_runs() -> None:
    train = load_example("train.py")
    assert train.parse_args(["--quick"]).out == Path("runs/example-simplecnn-quick")
    assert train.parse_args(["--model", "minivgg", "--quick"]).out == Path(
        "runs/example-minivgg-quick"
    )
    assert train.parse_args(["--quick", "--out", "x"]).out == Path("x")  # an explicit --out wins
    assert train.parse_args([]).out in (None, Path("runs/example-simplecnn"))
    study = load_example("study.py")
    quick, real = study.parse_args(["--quick"]), study.parse_args([])
    assert quick.out != real.out and quick.runs != real.runs
    assert real.out == Path("report") and real.runs == Path("runs/study")


def test_plot_examples_say_in_one_line_that_matplotlib_is_missing(tmp_path: Path) -> None:
    # One interpreter runs the three scripts (torch is imported once) with matplotlib hidden:
    # a None in sys.modules makes `import matplotlib` raise ModuleNotFoundError.
    commands = [(s, ["x.png"] if s == "predict_image.py" else []) for s in DRAW_FIGURES]
    runner = textwrap.dedent(f"""
        import contextlib, io, json, runpy, sys
        sys.modules["matplotlib"] = None
        results = {{}}
        for script, args in {commands!r}:
            sys.argv = [script, *args]
            err = io.StringIO()
            with contextlib.redirect_stderr(err):
                try:
                    runpy.run_path({str(EXAMPLES)!r} + "/" + script, run_name="__main__")
                    code = 0
                except SystemExit as exit:
                    code = exit.code
            results[script] = [code, err.getvalue()]
        print(json.dumps(results))
    """)
    proc = subprocess.run(
        [sys.executable, "-c", runner], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    for script in DRAW_FIGURES:
        code, stderr = results[script]
        assert code == 1, (script, code, stderr)
        assert stderr.count("\n") == 1 and 'pip install "mnist-zoo[plot]"' in stderr, stderr
        assert "Traceback" not in stderr
    assert not list(tmp_path.iterdir()), "nothing is written before the check"


#: Each example that reads MNIST as its model is trained or scored, with arguments that would
#: write a folder if the run got that far.
NO_DATA_RUNS = {
    "train.py": ["--quick", "--out", "{out}"],
    "quickstart.py": ["--model", "{model}", "--count", "4"],
    "finetune.py": ["--model", "{model}", "--quick", "--out", "{out}"],
    "eda.py": ["--out", "{out}"],
    "study.py": ["--quick", "--out", "{out}", "--runs", "{out}/runs"],
}


@pytest.mark.parametrize("script", sorted(NO_DATA_RUNS))
def test_no_mnist_is_one_line_that_names_the_folder(
    script: str, random_simplecnn: Path, tmp_path: Path
) -> None:
    # A first run with $MNIST_ZOO_DATA pointing at a folder without MNIST: no traceback.
    empty, out = tmp_path / "empty", tmp_path / "out"
    empty.mkdir()
    args = [a.format(out=out, model=random_simplecnn) for a in NO_DATA_RUNS[script]]
    # Status 2, bad input, as mnist-zoo gives it: the scripts run through errors.run_command.
    proc = run_example(script, *args, mnist_root=empty, cwd=tmp_path, expect=2)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith(f"{script}: error: MNIST "), lines[0]
    assert f"not found in {empty}; pass --data DIR" in lines[0] and "$MNIST_ZOO_DATA" in lines[0]
    assert "download=True" not in lines[0]  # Python's advice, not this script's
    assert not out.exists()
