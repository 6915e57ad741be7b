"""Project hygiene: CI runs the README's test command; public API has docstrings and hints."""

from __future__ import annotations

import inspect
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import mnist_zoo

REPO = Path(__file__).resolve().parents[1]


def _readme_commands() -> list[str]:
    readme = (REPO / "README.md").read_text()
    return re.findall(r"```bash\n(.+?)\n```", readme, flags=re.S)


def test_readme_has_exactly_two_setup_commands_and_ci_runs_the_test_one() -> None:
    commands = _readme_commands()
    assert len(commands) == 2, commands
    main_job, tests = commands
    assert "pip install torch==2.13.0" in main_job and "pip install torch==2.13.0" in tests
    assert "pytest" in tests
    ci = (REPO / ".ci" / "run").read_text()
    assert tests in ci.splitlines(), "the CI script must run the README's test command verbatim"


def test_version() -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+", mnist_zoo.__version__)


def test_every_public_function_has_a_docstring_and_type_hints() -> None:
    missing = []
    for name in mnist_zoo.__all__:
        obj = getattr(mnist_zoo, name)
        if not (inspect.isfunction(obj) or inspect.isclass(obj)):
            continue
        if not inspect.getdoc(obj):
            missing.append(f"{name}: no docstring")
        if inspect.isfunction(obj):
            sig = inspect.signature(obj)
            if sig.return_annotation is inspect.Signature.empty:
                missing.append(f"{name}: no return annotation")
            missing += [
                f"{name}({p}): no annotation"
                for p, v in sig.parameters.items()
                if v.annotation is inspect.Parameter.empty and v.kind not in (v.VAR_KEYWORD,)
            ]
    assert not missing, missing


def test_every_benchmark_script_imports_and_parses_its_arguments() -> None:
    # The benchmarks are not run by the tests (they time things); this keeps them from rotting.
    scripts = sorted((REPO / "benchmarks").glob("*.py"))
    # One interpreter runs each script's --help, so torch is imported once.
    runner = (
        "import runpy, sys\n"
        f"sys.path.insert(0, {str(REPO / 'benchmarks')!r})\n"
        f"for path in {[str(p) for p in scripts]!r}:\n"
        "    sys.argv = [path, '--help']\n"
        "    try:\n"
        "        runpy.run_path(path, run_name='__main__')\n"
        "    except SystemExit as e:\n"
        "        assert e.code in (0, None), (path, e.code)\n"
        "    print('imported and parsed:', path)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", runner], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("imported and parsed:") == len(scripts) >= 6, out.stdout


def test_the_wheel_ships_py_typed_and_the_card_template(tmp_path: Path) -> None:
    # Built from a copy, so that the build leaves nothing behind in the checkout.
    project = tmp_path / "project"
    project.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, project / name)
    shutil.copytree(
        REPO / "src", project / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    assert (project / "src/mnist_zoo/py.typed").is_file()
    build = "from setuptools import build_meta; print(build_meta.build_wheel('dist'))"
    proc = subprocess.run(
        [sys.executable, "-c", build], cwd=project, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    wheel = project / "dist" / proc.stdout.strip().splitlines()[-1]
    names = zipfile.ZipFile(wheel).namelist()
    assert "mnist_zoo/py.typed" in names  # PEP 561: type checkers use the package's hints
    assert "mnist_zoo/hub/templates/model_card.md" in names
