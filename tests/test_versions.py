"""Versions are data: each release tag is pinned on its own, and loads are checked against it.

The fake Hub (tests/hub_server.py) serves the checked-in archive ``hub/v0.1.0/NAME`` at tag
``v0.1.0`` and, for the tests that need a second release, a freshly saved model at ``v0.2.0``,
registered for the test only as a data-only change would: one more pin, a new default.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import logging
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import huggingface_hub
import pytest
import torch
from hub_server import FakeHub

import mnist_zoo
from mnist_zoo import hub, registry
from mnist_zoo.cli import main
from mnist_zoo.ensemble import PRETRAINED_MEMBERS
from mnist_zoo.errors import InvalidArgumentError
from mnist_zoo.models import DEFAULT_RELEASE, PRETRAINED
from mnist_zoo.registry import PretrainedWeights

ROOT = Path(__file__).resolve().parents[1]
HUB = ROOT / "hub"
V1 = "v0.1.0"
WEIGHTS, CONFIG = "model.safetensors", "config.json"


@pytest.fixture(autouse=True)
def online(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)


@pytest.fixture(scope="module")
def v2_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A "v0.2.0" simplecnn: other weights, saved as the pipeline saves them."""
    torch.manual_seed(2)
    model = mnist_zoo.create_model("simplecnn")
    folder = tmp_path_factory.mktemp("v2") / "simplecnn"
    calibration = {"temperature": 1.25, "fitted_on": {"split": "validation"}}
    metrics = {"test_accuracy": 0.996}
    return hub.save_pretrained(model, folder, metrics=metrics, calibration=calibration)


def pin_of(folder: Path, tag: str) -> PretrainedWeights:
    return PretrainedWeights(
        repo_id="mnist-zoo/simplecnn",
        revision=tag,
        sha256=hub.sha256_file(folder / WEIGHTS),
        size=(folder / WEIGHTS).stat().st_size,
        config_sha256=hub.sha256_file(folder / CONFIG),
        metrics={"test_accuracy": json.loads((folder / CONFIG).read_text())["metrics"][
            "test_accuracy"
        ]},
    )  # fmt: skip


@pytest.fixture
def two_releases(monkeypatch: pytest.MonkeyPatch, v2_folder: Path) -> dict[str, PretrainedWeights]:
    """simplecnn pinned at v0.1.0 (as published) and v0.2.0 (the default), for this test."""
    entry = registry.get_model_entry("simplecnn")
    releases = {V1: entry.releases[V1], "v0.2.0": pin_of(v2_folder, "v0.2.0")}
    two = dataclasses.replace(entry, pretrained=releases["v0.2.0"], releases=releases)
    monkeypatch.setitem(registry._REGISTRY, "simplecnn", two)
    return releases


@pytest.fixture
def server(v2_folder: Path) -> Iterator[FakeHub]:
    """mnist-zoo/NAME with v0.1.0 from hub/v0.1.0/NAME; simplecnn also v0.2.0, then main."""
    with FakeHub() as fake:
        for name in PRETRAINED_MEMBERS:
            fake.add_release(f"mnist-zoo/{name}", HUB / V1 / name, V1)
        fake.add_release("mnist-zoo/simplecnn", v2_folder, "v0.2.0")
        yield fake


@pytest.fixture
def where(server: FakeHub, tmp_path: Path) -> dict[str, object]:
    return {"endpoint": server.url, "cache_dir": tmp_path / "cache"}


def weights_of(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ----------------------------------------------------------------------------------------------
# The registry's pins and the checked-in archive


def test_every_model_pins_every_release_and_v0_3_0_is_the_default() -> None:
    assert DEFAULT_RELEASE == "v0.3.0"
    for name in PRETRAINED_MEMBERS:
        entry = registry.get_model_entry(name)
        assert entry.default_release == DEFAULT_RELEASE
        assert entry.pretrained is PRETRAINED[name][DEFAULT_RELEASE]
        assert dict(entry.releases) == PRETRAINED[name]
        assert set(PRETRAINED[name]) == {V1, "v0.2.0", "v0.3.0"}
        assert entry.release(V1) is PRETRAINED[name][V1] and entry.release("v9.9.9") is None


@pytest.mark.parametrize("name", PRETRAINED_MEMBERS)
def test_the_archive_of_v0_1_0_holds_the_pinned_bytes(name: str) -> None:
    pin = PRETRAINED[name][V1]
    folder = HUB / V1 / name
    assert hub.sha256_file(folder / WEIGHTS) == pin.sha256
    assert (folder / WEIGHTS).stat().st_size == pin.size
    assert hub.sha256_file(folder / CONFIG) == pin.config_sha256
    # hub/NAME holds the default release, no longer v0.1.0.
    assert hub.sha256_file(HUB / name / CONFIG) == PRETRAINED[name][DEFAULT_RELEASE].config_sha256
    assert hub.sha256_file(HUB / name / CONFIG) != pin.config_sha256


def test_the_archived_folder_loads_locally_without_a_temperature() -> None:
    model = mnist_zoo.load_pretrained(f"hub/{V1}/minivgg")
    assert model.pretrained_cfg["sha256"] == PRETRAINED["minivgg"][V1].sha256
    assert model.pretrained_cfg["temperature"] is None  # v0.1 configs record none


def test_list_pretrained_and_the_cli_show_every_tag_and_the_default(
    two_releases: dict, capsys: pytest.CaptureFixture[str]
) -> None:
    assert mnist_zoo.list_pretrained() == ["deepercnn", "minivgg", "simplecnn"]
    tagged = mnist_zoo.list_pretrained("simple*", tags=True)
    assert tagged == ["simplecnn@v0.1.0", "simplecnn@v0.2.0"]
    assert "minivgg@v0.1.0" in mnist_zoo.list_pretrained(tags=True)
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    rows = [line.split() for line in out.split("pinned releases")[1].splitlines()[1:]]
    assert ["simplecnn", "v0.1.0", "99.53%"] in rows
    assert ["simplecnn", "v0.2.0", "99.60%", "(default)"] in rows
    assert ["minivgg", "v0.1.0", "99.72%"] in rows
    default = PRETRAINED["minivgg"][DEFAULT_RELEASE].metrics["test_accuracy"]
    assert ["minivgg", DEFAULT_RELEASE, f"{100 * default:.2f}%", "(default)"] in rows


def test_register_model_takes_several_pins_and_needs_a_default() -> None:
    a = PretrainedWeights("o/a", "v1", "0" * 64)
    b = PretrainedWeights("o/a", "v2", "1" * 64)
    with pytest.raises(InvalidArgumentError, match="v1, v2"):
        registry.register_model(
            mnist_zoo.SimpleCNN, name="versions_a", pretrained={"v1": a, "v2": b}
        )
    with pytest.raises(InvalidArgumentError, match="'v3' is not one of the pinned tags"):
        registry.register_model(
            mnist_zoo.SimpleCNN, name="versions_a", pretrained={"v1": a}, default_release="v3"
        )
    assert "versions_a" not in registry.list_models()


# ----------------------------------------------------------------------------------------------
# Loading a release through the (fake) Hub


def test_each_tag_loads_its_own_file_checked_by_its_own_pin(
    two_releases: dict, where: dict, v2_folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    v1_state = weights_of(mnist_zoo.load_pretrained(HUB / V1 / "simplecnn"))
    v2_state = weights_of(mnist_zoo.load_pretrained(v2_folder))
    with caplog.at_level(logging.WARNING, logger="mnist_zoo.hub"):
        default = hub.load_pretrained("simplecnn", **where)
        old = hub.load_pretrained("simplecnn", revision=V1, **where)
        by_name = hub.load_pretrained("simplecnn@v0.1.0", **where)
    assert not caplog.records  # every one was a pinned release
    assert same(weights_of(default), v2_state) and default.pretrained_cfg["release"] == "v0.2.0"
    assert default.pretrained_cfg["temperature"] == 1.25
    for model in (old, by_name):
        assert same(weights_of(model), v1_state)
        assert model.pretrained_cfg["release"] == V1
        assert model.pretrained_cfg["sha256"] == two_releases[V1].sha256
        assert model.pretrained_cfg["temperature"] is None
    with pytest.raises(InvalidArgumentError, match="names release 'v0.1.0'"):
        hub.load_pretrained("simplecnn@v0.1.0", revision="v0.2.0", **where)


def test_minivgg_at_v0_1_0_is_the_archived_file(where: dict) -> None:
    model = hub.load_pretrained("minivgg", revision=V1, **where)
    assert model.pretrained_cfg["sha256"] == PRETRAINED["minivgg"][V1].sha256
    assert model.pretrained_cfg["release"] == V1
    assert Path(model.pretrained_cfg["source"]).is_relative_to(where["cache_dir"])


def test_a_file_that_is_not_the_tags_pinned_one_is_refused(
    two_releases: dict, where: dict, server: FakeHub, v2_folder: Path
) -> None:
    # The tag v0.1.0 moved to the v0.2 commit: its config is not v0.1.0's pinned one.
    server.add_tag("mnist-zoo/simplecnn", V1, server.repos["mnist-zoo/simplecnn"].refs["v0.2.0"])
    with pytest.raises(hub.ChecksumMismatchError, match=two_releases[V1].config_sha256):
        hub.load_pretrained("simplecnn", revision=V1, **where)
    # The weights at v0.2.0 swapped for v0.1.0's: v0.2.0's own pin refuses them.
    commit = server.repos["mnist-zoo/simplecnn"].refs["v0.2.0"]
    server.set_file(
        "mnist-zoo/simplecnn", commit, WEIGHTS, (HUB / V1 / "simplecnn" / WEIGHTS).read_bytes()
    )
    with pytest.raises(hub.ChecksumMismatchError, match=two_releases["v0.2.0"].sha256):
        hub.load_pretrained("simplecnn", **where)


def test_an_unpinned_tag_is_refused_with_the_pinned_ones_unless_trusted(
    two_releases: dict, where: dict, server: FakeHub, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(hub.UnverifiedWeightsError) as err:
        hub.load_pretrained("simplecnn", revision="main", **where)
    msg = str(err.value)
    assert "v0.1.0, v0.2.0 (default)" in msg and "trust_unverified=True" in msg
    assert not server.requests  # refused before asking the Hub anything
    pinned = r"v0\.1\.0, v0\.2\.0, v0\.3\.0 \(default\)"
    with pytest.raises(hub.UnverifiedWeightsError, match=pinned):
        hub.load_pretrained("minivgg@v0.9.0", **where)
    with caplog.at_level(logging.WARNING, logger="mnist_zoo.hub"):
        model = hub.load_pretrained("simplecnn", revision="main", trust_unverified=True, **where)
    assert "instead of the pinned releases (v0.1.0, v0.2.0)" in caplog.text
    assert "release" not in model.pretrained_cfg


def test_the_ensemble_of_a_release_is_that_releases_members(where: dict) -> None:
    ensemble = hub.load_pretrained(f"ensemble@{V1}", **where)
    assert ensemble.pretrained_cfg["release"] == V1
    members = ensemble.pretrained_cfg["members"]
    assert [m["name"] for m in members] == list(PRETRAINED_MEMBERS)
    assert all(m["release"] == V1 for m in members)
    assert [m["sha256"] for m in members] == [PRETRAINED[n][V1].sha256 for n in PRETRAINED_MEMBERS]
    with pytest.raises(hub.UnverifiedWeightsError, match="v0.1.0"):
        hub.load_pretrained("ensemble", revision="v0.9.0", **where)


# ----------------------------------------------------------------------------------------------
# Adding a release is a data-only change that scripts/release.py writes


def release_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("release_script", ROOT / "scripts" / "release.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["release_script"] = module
    spec.loader.exec_module(module)
    return module


def test_release_py_pins_what_models_py_holds() -> None:
    release = release_script()
    block = release.pins(HUB)
    assert block in (ROOT / "src" / "mnist_zoo" / "models.py").read_text()


def test_release_py_archives_a_new_tag_and_makes_it_the_default(tmp_path: Path) -> None:
    release = release_script()
    hub_dir = tmp_path / "hub"
    for name in (*PRETRAINED_MEMBERS, "ensemble"):
        shutil.copytree(HUB / name, hub_dir / name)
        shutil.copytree(HUB / V1 / name, hub_dir / V1 / name)
    for name in PRETRAINED_MEMBERS:  # "retrained": another config.json in hub/NAME
        config = json.loads((hub_dir / name / CONFIG).read_text())
        config["metrics"]["test_accuracy"] = 0.998
        (hub_dir / name / CONFIG).write_text(json.dumps(config))
    with pytest.raises(SystemExit, match="matches 0 archived releases"):
        release.pins(hub_dir)
    release.archive(hub_dir, "v0.2.0")
    block = release.pins(hub_dir)
    namespace: dict = {"PretrainedWeights": PretrainedWeights}
    exec(block, namespace)
    assert namespace["DEFAULT_RELEASE"] == "v0.2.0"
    pins = namespace["PRETRAINED"]
    assert pins["minivgg"][V1] == PRETRAINED["minivgg"][V1]  # the old release is untouched
    new = pins["minivgg"]["v0.2.0"]
    assert new.config_sha256 == hub.sha256_file(hub_dir / "minivgg" / CONFIG)
    assert new.revision == "v0.2.0" and new.metrics == {"test_accuracy": 0.998}
    models_py = tmp_path / "models.py"
    shutil.copy(ROOT / "src" / "mnist_zoo" / "models.py", models_py)
    release.write_pins(block, models_py)
    assert (
        block in models_py.read_text() and 'DEFAULT_RELEASE = "v0.1.0"' not in models_py.read_text()
    )
    (hub_dir / "minivgg" / CONFIG).write_text("{}")  # a frozen archive is never overwritten
    with pytest.raises(SystemExit, match="frozen"):
        release.archive(hub_dir, "v0.2.0")


def test_each_release_names_the_recipe_its_weights_were_trained_with() -> None:
    from mnist_zoo.training import BASE_RECIPE, RELEASE_RECIPES, get_recipe

    assert set(RELEASE_RECIPES) >= {tag for pins in PRETRAINED.values() for tag in pins}
    assert get_recipe("simplecnn", "v0.1.0") == BASE_RECIPE
    assert get_recipe("minivgg") == get_recipe("minivgg", DEFAULT_RELEASE)
    with pytest.raises(InvalidArgumentError, match="v0.1.0"):
        get_recipe("simplecnn", "v9.9.9")


def test_a_release_may_give_each_model_its_own_recipe(monkeypatch: pytest.MonkeyPatch) -> None:
    import dataclasses

    from mnist_zoo.training import BASE_RECIPE, RELEASE_RECIPES, get_recipe

    seeded = dataclasses.replace(BASE_RECIPE, seed=3, split_seed=0)
    monkeypatch.setitem(RELEASE_RECIPES, "v9.0.0", {"simplecnn": seeded})
    assert get_recipe("simplecnn", "v9.0.0") == seeded
    assert get_recipe("simplecnn", "v9.0.0").validation_seed == 0
    with pytest.raises(InvalidArgumentError, match="no recipe for 'minivgg'"):
        get_recipe("minivgg", "v9.0.0")


def test_train_refuses_an_unknown_release_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "simplecnn", "--release", "v9.9.9", "--out", "unused"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mnist-zoo: error: --release 'v9.9.9'") and "\n" not in err


def test_a_release_may_name_its_own_ensemble(monkeypatch: pytest.MonkeyPatch) -> None:
    from mnist_zoo import ensemble
    from mnist_zoo.hub import loading

    assert ensemble.ensemble_members("v0.1.0") == (
        "simplecnn@v0.1.0",
        "deepercnn@v0.1.0",
        "minivgg@v0.1.0",
    )
    members = ("simplecnn@v0.1.0", "simplecnn@v0.2.0", "minivgg@v0.2.0")
    monkeypatch.setitem(ensemble.PRETRAINED_ENSEMBLES, "v9.0.0", members)
    assert ensemble.ensemble_members("v9.0.0") == members
    asked: list[tuple[str, dict]] = []

    def fake_load(name: str, **kwargs: object) -> torch.nn.Module:
        asked.append((name, kwargs))
        model = mnist_zoo.create_model(name.partition("@")[0])
        model.pretrained_cfg = {**model.pretrained_cfg, "release": name.partition("@")[2]}
        return model

    monkeypatch.setattr(loading, "load_pretrained", fake_load)
    built = loading.load_pretrained_ensemble(revision="v9.0.0", device="cpu")
    assert [name for name, _ in asked] == list(members)
    assert all(kwargs == {"device": "cpu"} for _, kwargs in asked)  # the tag is in the name
    assert len(built.members) == 3 and built.pretrained_cfg["release"] == "v9.0.0"
    assert [m["release"] for m in built.pretrained_cfg["members"]] == ["v0.1.0", "v0.2.0", "v0.2.0"]
