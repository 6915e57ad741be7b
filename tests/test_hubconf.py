"""``hubconf.py``: torch.hub's entry points, loaded from this checkout with ``source="local"``.

The GitHub form, ``torch.hub.load("OWNER/mnist_zoo", ...)``, downloads the same file from a
repository snapshot; here the checkout stands in for it, and the fake Hub of ``hub_server``
stands in for the Hugging Face Hub that ``pretrained=True`` downloads from.
"""

from __future__ import annotations

import importlib.util
import inspect
import re
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import huggingface_hub
import pytest
import tomllib
import torch
from hub_server import FakeHub
from safetensors.torch import load_file

import mnist_zoo
from mnist_zoo.registry import get_model_entry

REPO = Path(__file__).resolve().parents[1]
HUB = REPO / "hub"
#: pyproject's distribution names where the import name differs.
IMPORT_NAMES = {"pillow": "PIL"}


def _hubconf() -> ModuleType:
    spec = importlib.util.spec_from_file_location("hubconf_under_test", REPO / "hubconf.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _load(model: str, **kwargs: object) -> torch.nn.Module:
    return torch.hub.load(str(REPO), model, source="local", trust_repo=True, **kwargs)


def _entry_points(module: ModuleType) -> list[str]:
    # What torch.hub.list reports: every public callable of the module.
    return sorted(n for n in dir(module) if callable(getattr(module, n)) and not n.startswith("_"))


def test_there_is_one_entry_point_per_registered_model_with_a_docstring() -> None:
    hubconf = _hubconf()
    assert _entry_points(hubconf) == mnist_zoo.list_models()
    for name in mnist_zoo.list_models():
        doc = inspect.getdoc(getattr(hubconf, name))
        assert doc and doc.splitlines()[0] == get_model_entry(name).description
        assert "pretrained:" in doc and "num_classes:" in doc


def test_dependencies_are_the_packages_dependencies() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    names = [re.split(r"[<>=!~\[ ;]", spec, maxsplit=1)[0] for spec in project["dependencies"]]
    expected = sorted(IMPORT_NAMES.get(n.lower(), n) for n in names)
    assert sorted(_hubconf().dependencies) == expected
    assert all(importlib.util.find_spec(name) for name in expected)


@pytest.mark.parametrize("name", mnist_zoo.list_models())
def test_local_load_without_weights_returns_the_registrys_model(name: str) -> None:
    torch.manual_seed(0)
    model = _load(name, pretrained=False)
    torch.manual_seed(0)
    expected = mnist_zoo.create_model(name)
    assert type(model) is type(expected) and model.training
    assert model.pretrained_cfg == expected.pretrained_cfg
    state, want = model.state_dict(), expected.state_dict()
    assert list(state) == list(want) and all(torch.equal(state[k], want[k]) for k in state)


def test_builder_kwargs_and_num_classes_reach_the_builder() -> None:
    model = _load("deepercnn", batch_norm=True, num_classes=26)
    assert model.num_classes == 26
    assert model.pretrained_cfg["model_kwargs"] == {"batch_norm": True, "num_classes": 26}


def test_weights_from_a_local_hub_folder_match_load_pretrained() -> None:
    model = _load("minivgg", weights=str(HUB / "minivgg"))
    expected = mnist_zoo.load_pretrained(HUB / "minivgg")
    assert not model.training
    x = torch.rand(8, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(model(x), expected(x))
    assert model.pretrained_cfg["sha256"] == expected.pretrained_cfg["sha256"]


def test_a_new_head_on_pretrained_weights_keeps_every_other_tensor() -> None:
    model = _load("simplecnn", weights=str(HUB / "simplecnn"), num_classes=26)
    published = load_file(HUB / "simplecnn" / "model.safetensors")
    state = model.state_dict()
    head = {"classifier.3.weight", "classifier.3.bias"}
    assert model.num_classes == 26 and state["classifier.3.weight"].shape == (26, 128)
    assert all(torch.equal(state[k], published[k]) for k in state if k not in head)
    same = _load("simplecnn", weights=str(HUB / "simplecnn"), num_classes=10)
    assert torch.equal(same.state_dict()["classifier.3.weight"], published["classifier.3.weight"])


def test_weights_of_another_architecture_are_refused() -> None:
    with pytest.raises(mnist_zoo.errors.InvalidArgumentError, match="holds a 'simplecnn' model"):
        _load("minivgg", weights=str(HUB / "simplecnn"))


@pytest.fixture(scope="module")
def fake_hub() -> Iterator[FakeHub]:
    """hub/minivgg served as its pinned repo and tag."""
    fake = FakeHub()
    pin = get_model_entry("minivgg").pretrained
    assert pin is not None
    commit = fake.add_folder(pin.repo_id, HUB / "minivgg")
    fake.repos[pin.repo_id].refs[pin.revision] = commit
    with fake:
        yield fake


def test_pretrained_loads_the_pinned_weights_through_load_pretrained(
    fake_hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    model = _load("minivgg", pretrained=True, endpoint=fake_hub.url, cache_dir=tmp_path)
    expected = mnist_zoo.load_pretrained(HUB / "minivgg")
    x = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(model(x), expected(x))
    pin = get_model_entry("minivgg").pretrained
    assert model.pretrained_cfg["repo_id"] == pin.repo_id
    assert model.pretrained_cfg["sha256"] == pin.sha256
    assert any("/resolve/" in path for _, path, _ in fake_hub.requests)


def test_pretrained_offline_with_an_empty_cache_says_so(tmp_path: Path) -> None:
    with pytest.raises(mnist_zoo.errors.HubError, match="minivgg"):
        _load("minivgg", pretrained=True, local_files_only=True, cache_dir=tmp_path)


def test_hubconf_imports_the_package_from_its_src_when_it_is_not_installed(
    tmp_path: Path,
) -> None:
    # A copy of the checkout, in a process where the installed mnist_zoo is hidden: only the
    # hubconf's own src/ can provide it.
    checkout = tmp_path / "checkout"
    shutil.copytree(REPO / "src", checkout / "src", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "hubconf.py", checkout / "hubconf.py")
    script = textwrap.dedent(f"""
        import importlib.util, os, sys
        sys.path[:] = [p for p in sys.path if not os.path.isdir(os.path.join(p, "mnist_zoo"))]
        sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
        assert importlib.util.find_spec("mnist_zoo") is None, "mnist_zoo is still importable"
        import torch
        path_before = list(sys.path)
        model = torch.hub.load({str(checkout)!r}, "minivgg", source="local", trust_repo=True)
        import mnist_zoo
        assert mnist_zoo.__file__.startswith({str(checkout / "src")!r}), mnist_zoo.__file__
        assert sys.path == path_before, "hubconf left its src/ on sys.path"
        assert type(model).__name__ == "MiniVGG" and model.num_classes == 10
        print("ok", model.pretrained_cfg)
    """)
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith("ok {'architecture': 'minivgg'")


def test_a_missing_dependency_is_named_with_the_install_command(tmp_path: Path) -> None:
    checkout = tmp_path / "checkout"
    shutil.copytree(REPO / "src", checkout / "src", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "hubconf.py", checkout / "hubconf.py")
    script = textwrap.dedent(f"""
        import os, sys
        sys.path[:] = [p for p in sys.path if not os.path.isdir(os.path.join(p, "mnist_zoo"))]
        sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
        sys.modules["safetensors"] = None  # as if not installed
        import torch
        try:
            torch.hub.load({str(checkout)!r}, "minivgg", source="local", trust_repo=True)
        except ModuleNotFoundError as err:
            print(err)
    """)
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "needs 'safetensors'" in proc.stdout and "pip install mnist-zoo" in proc.stdout


def test_importing_the_hubconf_draws_no_random_numbers() -> None:
    # Seeding before torch.hub.load must give the same weights as before create_model.
    state = torch.get_rng_state()
    _hubconf()
    assert torch.equal(torch.get_rng_state(), state)
