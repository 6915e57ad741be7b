"""Tests of mnist_zoo.hub: the real hf_hub_download against a fake Hub on 127.0.0.1.

The fake Hub (tests/hub_server.py) serves one repo, ``test/simplecnn``, with two commits of a
randomly initialised SimpleCNN: A (pinned in a test-only registry entry) and B (``main``).
Nothing here touches the internet, and no test takes the client's ~20 s retry path (a cache
miss with an unreachable server): offline cases use ``local_files_only`` or ``HF_HUB_OFFLINE``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import huggingface_hub
import pytest
import torch
from hub_server import FakeHub
from huggingface_hub import ModelCard

import mnist_zoo
from mnist_zoo import cli, cli_train, hub, registry
from mnist_zoo.errors import InvalidArgumentError
from mnist_zoo.registry import ModelEntry, PretrainedWeights, UnknownModelError
from mnist_zoo.training import BASE_RECIPE, TrainConfig, get_recipe

REPO = "test/simplecnn"
NAME = "testcnn_hub"
WEIGHTS = hub.WEIGHTS_NAME
METRICS = {
    "test_accuracy": 0.9912,
    "test_loss": 0.03,
    "num_test_images": 10000,
    "per_class_accuracy": [0.995, 0.998, 0.99, 0.99, 0.991, 0.989, 0.99, 0.987, 0.986, 0.9762],
    "confused_pairs": [[9, 4, 7], [7, 2, 5]],
}
RECIPE = {"epochs": 3, "optimizer": "adam", "lr": 0.001}


@dataclass
class Published:
    """Two saved versions of the same model and where the fake Hub puts them."""

    folder_a: Path
    folder_b: Path
    state_a: dict[str, torch.Tensor]
    state_b: dict[str, torch.Tensor]
    sha_a: str
    sha_b: str
    commit_a: str
    commit_b: str


def make_hub(published: Published | None = None, folders: tuple[Path, Path] = ()) -> FakeHub:
    """A fake Hub holding commit A then commit B (``main``) of ``test/simplecnn``."""
    fake = FakeHub()
    for folder in folders or (published.folder_a, published.folder_b):
        fake.add_folder(REPO, folder)
    return fake


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Published:
    root = tmp_path_factory.mktemp("published")
    states = []
    for seed, sub in [(0, "a"), (1, "b")]:
        torch.manual_seed(seed)
        model = mnist_zoo.create_model("simplecnn")
        hub.save_pretrained(
            model, root / sub, name="simplecnn", recipe=RECIPE, metrics=METRICS, repo_id=REPO
        )
        states.append({k: v.clone() for k, v in model.state_dict().items()})
    folders = (root / "a", root / "b")
    commits = list(make_hub(folders=folders).repos[REPO].commits)
    return Published(
        *folders,
        *states,
        hub.sha256_file(root / "a" / WEIGHTS),
        hub.sha256_file(root / "b" / WEIGHTS),
        *commits,
    )


@pytest.fixture(autouse=True)
def online(monkeypatch: pytest.MonkeyPatch) -> None:
    # huggingface_hub reads HF_HUB_OFFLINE at import; pin it so an exported one can't skew tests.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)


@pytest.fixture
def server(published: Published) -> FakeHub:
    with make_hub(published) as fake:
        yield fake


def register(monkeypatch: pytest.MonkeyPatch, published: Published, **weights: str) -> list[str]:
    """Register NAME, pinned to commit A, for this test only; returns a log of its builds."""
    builds: list[str] = []

    def builder(**kwargs: object) -> torch.nn.Module:
        builds.append(NAME)
        return mnist_zoo.SimpleCNN(**kwargs)

    size = (published.folder_a / WEIGHTS).stat().st_size
    pin = {"repo_id": REPO, "revision": published.commit_a, "sha256": published.sha_a, **weights}
    pin.setdefault("size", size)
    pretrained = PretrainedWeights(**pin, metrics={"test_accuracy": METRICS["test_accuracy"]})
    entry = ModelEntry(NAME, builder, "test-only SimpleCNN", dict(RECIPE), pretrained)
    monkeypatch.setitem(registry._REGISTRY, NAME, entry)
    return builds


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch, published: Published) -> list[str]:
    return register(monkeypatch, published)


@pytest.fixture
def load(server: FakeHub, tmp_path: Path, builds: list[str]):
    """load_pretrained pointed at the fake Hub, with a fresh cache per test."""

    def load(name: str = NAME, **kwargs: object) -> torch.nn.Module:
        kwargs = {"endpoint": server.url, "cache_dir": tmp_path / "cache", **kwargs}
        return hub.load_pretrained(name, **kwargs)

    return load


def same_weights(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> bool:
    got = model.state_dict()
    return got.keys() == state.keys() and all(torch.equal(got[k], state[k]) for k in state)


# ----------------------------------------------------------------------------------------------
# Downloading, caching, pinning


def test_first_download_then_cache_with_server_stopped(load, server, published, tmp_path):
    model = load()
    assert same_weights(model, published.state_a)
    assert not model.training
    cfg = model.pretrained_cfg
    assert cfg["name"] == NAME and cfg["architecture"] == "simplecnn"
    assert cfg["repo_id"] == REPO and cfg["revision"] == published.commit_a
    assert cfg["sha256"] == published.sha_a
    assert cfg["metrics"]["test_accuracy"] == METRICS["test_accuracy"]
    assert cfg["recipe"] == RECIPE
    assert Path(cfg["source"]).is_relative_to(tmp_path / "cache")
    # Downloads use only /resolve/ (no /api/ calls) and identify the library.
    assert {m for m, _, _ in server.requests} == {"HEAD", "GET"}
    assert all("/resolve/" in path for _, path, _ in server.requests)
    assert all(f"mnist_zoo/{mnist_zoo.__version__}" in ua for _, _, ua in server.requests)
    # Caches the ref main -> B.
    assert same_weights(load(revision="main", trust_unverified=True), published.state_b)

    server.stop()
    # A pinned commit that is cached needs no network at all; a branch needs offline mode.
    assert same_weights(load(), published.state_a)
    offline = load(revision="main", local_files_only=True, trust_unverified=True)
    assert same_weights(offline, published.state_b)


def test_pinned_revision_wins_over_main(load, published, caplog):
    with caplog.at_level(logging.WARNING, logger="mnist_zoo.hub"):
        assert same_weights(load(), published.state_a)
        assert same_weights(load(revision=published.commit_a), published.state_a)
        assert not caplog.records
        model = load(revision="main", trust_unverified=True)
    assert same_weights(model, published.state_b)
    assert model.pretrained_cfg["revision"] == published.commit_b
    assert model.pretrained_cfg["sha256"] == published.sha_b
    assert "instead of the pinned" in caplog.text and "ETag" in caplog.text


def test_tampered_file_is_refused_evicted_and_later_fixed(
    load, server, published, builds, tmp_path
):
    good = (published.folder_a / WEIGHTS).read_bytes()
    server.set_file(REPO, published.commit_a, WEIGHTS, (published.folder_b / WEIGHTS).read_bytes())
    with pytest.raises(hub.ChecksumMismatchError) as err:
        load()
    msg = str(err.value)
    assert WEIGHTS in msg and published.sha_a in msg and published.sha_b in msg
    assert "deleted from the cache" in msg
    assert builds == []  # no model was built, let alone loaded, from the bad bytes
    cached = [p.name for p in (tmp_path / "cache").rglob("*") if p.is_file() or p.is_symlink()]
    assert published.sha_b not in cached and WEIGHTS not in cached

    server.set_file(REPO, published.commit_a, WEIGHTS, good)
    assert same_weights(load(), published.state_a)
    assert builds == [NAME]


def test_corruption_in_transit_is_caught_by_the_etag(load, server, published):
    # With revision= the pin does not apply; the Hub's ETag (the LFS SHA-256) still guards.
    server.corrupt_in_transit.add(WEIGHTS)
    with pytest.raises(hub.ChecksumMismatchError, match="ETag") as err:
        load(revision="main", trust_unverified=True)
    assert published.sha_b in str(err.value)
    server.corrupt_in_transit.clear()
    assert same_weights(load(revision="main", trust_unverified=True), published.state_b)


@pytest.mark.parametrize(
    ("weights", "revision", "error", "named"),
    [
        ({"repo_id": "test/nope"}, None, hub.HubRepoNotFoundError, "test/nope"),
        ({}, "v9", hub.HubRevisionNotFoundError, "'v9'"),
        ({"filename": "other.safetensors"}, None, hub.HubFileNotFoundError, "'other.safetensors'"),
    ],
    ids=["repo", "revision", "file"],
)
def test_not_found_on_the_hub(load, monkeypatch, published, weights, revision, error, named):
    builds = register(monkeypatch, published, **weights)
    with pytest.raises(error, match=named) as err:
        load(revision=revision, trust_unverified=True)  # "v9" is pinned by no release
    assert isinstance(err.value, hub.HubNotFoundError)
    assert builds == []


def test_offline_with_empty_cache_fails_fast_with_advice(tmp_path, builds):
    start = time.perf_counter()
    with pytest.raises(hub.HubUnavailableError) as err:
        hub.load_pretrained(NAME, cache_dir=tmp_path / "empty", local_files_only=True)
    assert time.perf_counter() - start < 5
    msg = str(err.value)
    assert "HF_HUB_OFFLINE=1" in msg and "cache_dir" in msg and "local folder" in msg


SUBPROCESS_SCRIPT = """
import json, sys
from mnist_zoo import hub
from mnist_zoo.models import SimpleCNN
from mnist_zoo.registry import PretrainedWeights, register_model

repo_id, commit, sha256 = sys.argv[1:4]
register_model(SimpleCNN, name="testcnn_hub", pretrained=PretrainedWeights(repo_id, commit, sha256))
out = {"source": hub.load_pretrained("testcnn_hub").pretrained_cfg["source"]}
try:
    hub.load_pretrained("testcnn_hub", revision="never-fetched", trust_unverified=True)
except hub.HubError as err:
    out["error"] = [type(err).__name__, str(err)]
print(json.dumps(out))
"""


def run_with_env(published: Published, **env: str) -> dict:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("HF_", "HUGGINGFACE_")) and k != "TRANSFORMERS_OFFLINE"
    }
    args = [sys.executable, "-c", SUBPROCESS_SCRIPT, REPO, published.commit_a, published.sha_a]
    done = subprocess.run(
        args, env={**clean, **env}, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_hf_home_hf_endpoint_and_hf_hub_offline_are_honoured(published, tmp_path):
    home = tmp_path / "hf_home"
    with make_hub(published) as fake:
        online = run_with_env(published, HF_HOME=str(home), HF_ENDPOINT=fake.url)
        assert fake.requests  # HF_ENDPOINT was used
        dead_url = fake.url
    assert Path(online["source"]).is_relative_to(home / "hub")
    assert online["error"][0] == "HubRevisionNotFoundError"

    offline = run_with_env(published, HF_HOME=str(home), HF_ENDPOINT=dead_url, HF_HUB_OFFLINE="1")
    assert offline["source"] == online["source"]
    assert offline["error"][0] == "HubUnavailableError"
    assert "offline mode is on" in offline["error"][1]


# ----------------------------------------------------------------------------------------------
# Local folders and what can be wrong with them


def test_local_folder_loads_trusted_but_checked(published):
    for name in (str(published.folder_a), published.folder_a):
        model = hub.load_pretrained(name, device="cpu")
        assert same_weights(model, published.state_a)
        assert not model.training
        cfg = model.pretrained_cfg
        assert cfg["name"] == "simplecnn" and cfg["repo_id"] == REPO and cfg["revision"] is None
        assert cfg["sha256"] == published.sha_a
        assert cfg["source"] == str(published.folder_a / WEIGHTS)


def test_weights_of_the_wrong_shape_name_the_key_and_shapes(tmp_path):
    five_classes = mnist_zoo.create_model("simplecnn", num_classes=5)
    with pytest.raises(hub.WeightsMismatchError, match=r"classifier\.3\.weight"):
        hub.save_pretrained(five_classes, tmp_path / "bad", name="simplecnn")  # kwargs forgotten

    folder = hub.save_pretrained(
        five_classes, tmp_path / "m", name="simplecnn", model_kwargs={"num_classes": 5}
    )
    assert hub.load_pretrained(folder).classifier[3].out_features == 5
    config = json.loads((folder / "config.json").read_text())
    config["model_kwargs"] = {}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(hub.WeightsMismatchError) as err:
        hub.load_pretrained(folder)
    msg = str(err.value)
    assert "'classifier.3.weight'" in msg and "(5, 128)" in msg and "(10, 128)" in msg


def test_corrupt_or_inconsistent_local_folders(published, tmp_path):
    folder = Path(shutil.copytree(published.folder_a, tmp_path / "copy"))
    garbage = b"\x00" * 64
    (folder / WEIGHTS).write_bytes(garbage)
    with pytest.raises(hub.ChecksumMismatchError, match="do not belong together"):
        hub.load_pretrained(folder)
    assert (folder / WEIGHTS).exists()  # a user's own files are never deleted

    config = json.loads((folder / "config.json").read_text())
    config["sha256"] = hub.sha256_file(folder / WEIGHTS)
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(hub.CorruptWeightsError, match="not a valid safetensors file"):
        hub.load_pretrained(folder)

    (folder / "config.json").unlink()
    with pytest.raises(hub.InvalidHubFolderError, match="config.json"):
        hub.load_pretrained(folder)
    with pytest.raises(hub.InvalidHubFolderError, match="neither a folder nor") as info:
        hub.load_pretrained(str(tmp_path / "no" / "such"))
    assert "hf-hub:" not in str(info.value)  # a path of three parts is no repo id


def test_a_missing_folder_suggests_the_name_that_was_meant(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # outside a checkout: hub/minivgg is not here
    with pytest.raises(hub.InvalidHubFolderError) as info:
        hub.load_pretrained("hub/minivgg")
    assert f"neither a folder (relative to {tmp_path})" in str(info.value)
    assert "The published weights of minivgg load by the name 'minivgg'" in str(info.value)
    with pytest.raises(hub.InvalidHubFolderError, match="'hf-hub:someone/digits'"):
        hub.load_pretrained("someone/digits")


def test_unknown_names_and_models_without_weights(monkeypatch, builds):
    with pytest.raises(UnknownModelError, match="Did you mean 'simplecnn'") as err:
        hub.load_pretrained("simplecn")
    assert isinstance(err.value, KeyError)

    entry = ModelEntry("nopretrained", mnist_zoo.SimpleCNN, "no weights")
    monkeypatch.setitem(registry._REGISTRY, "nopretrained", entry)
    with pytest.raises(hub.NoPretrainedWeightsError, match=NAME) as err:
        hub.load_pretrained("nopretrained")
    assert "create_model('nopretrained')" in str(err.value)


def test_special_names_are_dispatched_before_the_registry(monkeypatch):
    calls = []

    def fake_loader(**kwargs: object) -> torch.nn.Module:
        calls.append(kwargs)
        return torch.nn.Identity()

    monkeypatch.setitem(hub.SPECIAL_LOADERS, "ensemble", fake_loader)
    assert isinstance(hub.load_pretrained("Ensemble", revision="v1"), torch.nn.Identity)
    assert calls[0]["revision"] == "v1" and calls[0]["local_files_only"] is False


# ----------------------------------------------------------------------------------------------
# The files save_pretrained writes


def test_model_card_config_and_atomic_save(published):
    folder = published.folder_a
    assert sorted(p.name for p in folder.iterdir()) == sorted(hub.HUB_FILES)  # no temp files

    card = ModelCard.load(folder / "README.md")
    assert card.data.license == "mit"
    assert card.data.pipeline_tag == "image-classification"
    assert card.data.datasets == ["ylecun/mnist"]
    assert {"image-classification", "mnist", "pytorch", "safetensors"} <= set(card.data.tags)
    result = card.data.eval_results[0]
    assert (result.dataset_type, result.dataset_split, result.metric_type) == (
        "ylecun/mnist",
        "test",
        "accuracy",
    )
    assert result.metric_value == 99.12
    assert "**99.12%**" in card.text and "| 9 | 97.62% |" in card.text
    assert "9 → 4: 7" in card.text and "421,642 parameters" in card.text
    assert published.sha_a in card.text

    config = json.loads((folder / "config.json").read_text())
    assert config["architecture"] == "simplecnn" and config["model_kwargs"] == {}
    assert config["metrics"] == METRICS and config["recipe"] == RECIPE
    assert config["sha256"] == published.sha_a and config["repo_id"] == REPO
    assert config["library_version"] == mnist_zoo.__version__


def test_save_pretrained_validates_metrics_and_overwrites_in_place(published, tmp_path):
    model = hub.load_pretrained(published.folder_a)
    with pytest.raises(ValueError, match="fraction"):
        hub.save_pretrained(model, tmp_path / "x", name="simplecnn", metrics={"test_accuracy": 99})
    folder = Path(shutil.copytree(published.folder_a, tmp_path / "again"))
    (folder / ".gitattributes").write_text("*.safetensors filter=lfs\n")
    hub.save_pretrained(model, folder, name="simplecnn", recipe=RECIPE, metrics=METRICS)
    assert hub.sha256_file(folder / WEIGHTS) == published.sha_a  # deterministic bytes
    assert (folder / ".gitattributes").exists()  # only our three files are replaced


# ----------------------------------------------------------------------------------------------
# Publishing (no real Hub here: check validation and what would be sent)


class RecordingApi:
    """Stands in for HfApi; records calls instead of making them."""

    calls: list[tuple[str, tuple, dict]] = []

    def __init__(self, **kwargs: object) -> None:
        self.calls.append(("__init__", (), kwargs))

    def __getattr__(self, method: str):
        def record(*args: object, **kwargs: object) -> str:
            self.calls.append((method, args, kwargs))
            return "https://hub.example/test/simplecnn/commit/abc"

        return record


def test_a_typo_in_a_folder_name_suggests_the_folder(tmp_path, monkeypatch):
    (tmp_path / "hub" / "simplecnn").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(hub.InvalidHubFolderError, match="Did you mean 'hub/simplecnn'"):
        hub.load_pretrained("hub/simplcnn")
    with pytest.raises(hub.InvalidHubFolderError, match="'hf-hub:someone/repo'") as err:
        hub.load_pretrained("someone/repo")  # no such folder here: a Hub repo was meant
    assert "Did you mean" not in str(err.value)


def test_push_to_hub_validates_before_any_network_call(monkeypatch, published, tmp_path):
    RecordingApi.calls = []
    monkeypatch.setattr(huggingface_hub, "HfApi", RecordingApi)  # push_to_hub imports it late
    with pytest.raises(hub.InvalidHubFolderError, match="not a folder"):
        hub.push_to_hub(tmp_path / "missing", REPO)
    incomplete = Path(shutil.copytree(published.folder_a, tmp_path / "incomplete"))
    (incomplete / "README.md").unlink()
    with pytest.raises(hub.InvalidHubFolderError, match="missing README.md"):
        hub.push_to_hub(incomplete, REPO)
    with pytest.raises(ValueError, match="Invalid repo_id"):
        hub.push_to_hub(published.folder_a, "not/a/repo")
    assert RecordingApi.calls == []

    commit = hub.push_to_hub(published.folder_a, REPO, revision="v1", token="hf_x")
    assert commit.endswith("/commit/abc")
    methods = [name for name, _, _ in RecordingApi.calls]
    assert methods == ["__init__", "create_repo", "create_branch", "upload_folder"]
    _, _, init = RecordingApi.calls[0]
    assert init["token"] == "hf_x" and init["library_name"] == "mnist_zoo"
    _, _, upload = RecordingApi.calls[-1]
    assert upload["repo_id"] == REPO and upload["revision"] == "v1"
    assert sorted(upload["allow_patterns"]) == sorted(hub.HUB_FILES)  # no model.onnx there


class TaggedRepo:
    """Stands in for HfApi on a repo whose tags name given weights; records what is sent."""

    tags: dict[str, str] = {}  # tag -> the SHA-256 of the tagged commit's model.safetensors
    calls: list[str] = []

    def __init__(self, **kwargs: object) -> None:
        pass

    def create_repo(self, repo_id: str, **kwargs: object) -> None:
        self.calls.append("create_repo")

    def list_repo_refs(self, repo_id: str) -> SimpleNamespace:
        refs = [
            SimpleNamespace(name=tag, target_commit=f"{i:040x}") for i, tag in enumerate(self.tags)
        ]
        return SimpleNamespace(tags=refs)

    def get_paths_info(self, repo_id: str, paths: list[str], *, revision: str) -> list:
        sha256 = list(self.tags.values())[int(revision, 16)]
        return [SimpleNamespace(path=paths[0], lfs=SimpleNamespace(sha256=sha256))]

    def upload_folder(self, **kwargs: object) -> SimpleNamespace:
        self.calls.append("upload_folder")
        return SimpleNamespace(oid="f" * 40)

    def create_tag(self, repo_id: str, *, tag: str, revision: str) -> None:
        self.calls.append(f"create_tag {tag} {revision[:4]}")


def test_a_release_tag_is_never_moved(monkeypatch, published, tmp_path):
    monkeypatch.setattr(huggingface_hub, "HfApi", TaggedRepo)
    folder = published.folder_a
    # A new tag names the new commit.
    TaggedRepo.tags, TaggedRepo.calls = {}, []
    hub.push_to_hub(folder, REPO, tag="v9.0.0")
    assert TaggedRepo.calls == ["create_repo", "upload_folder", "create_tag v9.0.0 ffff"]
    # A tag already on these weights stays where it is.
    TaggedRepo.tags, TaggedRepo.calls = {"v9.0.0": published.sha_a}, []
    hub.push_to_hub(folder, REPO, tag="v9.0.0")
    assert TaggedRepo.calls == ["create_repo", "upload_folder"]
    # A tag on other weights is refused before anything is uploaded.
    TaggedRepo.tags, TaggedRepo.calls = {"v9.0.0": "0" * 64}, []
    with pytest.raises(InvalidArgumentError, match="already has the tag 'v9.0.0'") as err:
        hub.push_to_hub(folder, REPO, tag="v9.0.0")
    assert "Nothing was uploaded" in str(err.value) and "choose a new tag" in str(err.value)
    assert TaggedRepo.calls == ["create_repo"]


def test_push_uploads_model_onnx_only_if_the_config_records_it(monkeypatch, published, tmp_path):
    monkeypatch.setattr(huggingface_hub, "HfApi", RecordingApi)
    folder = Path(shutil.copytree(published.folder_a, tmp_path / "folder"))
    (folder / "model.onnx").write_bytes(b"an export of earlier weights")
    RecordingApi.calls = []
    with pytest.raises(hub.InvalidHubFolderError, match="records none.*nothing was"):
        hub.push_to_hub(folder, REPO)
    assert RecordingApi.calls == []
    config = json.loads((folder / "config.json").read_text())
    config["onnx_sha256"] = hub.sha256_file(folder / "model.onnx")
    (folder / "config.json").write_text(json.dumps(config))
    hub.push_to_hub(folder, REPO)
    _, _, upload = RecordingApi.calls[-1]
    assert sorted(upload["allow_patterns"]) == sorted([*hub.HUB_FILES, "model.onnx"])
    RecordingApi.calls = []
    (folder / "model.onnx").unlink()
    hub.push_to_hub(folder, REPO)
    _, _, upload = RecordingApi.calls[-1]
    assert sorted(upload["allow_patterns"]) == sorted(hub.HUB_FILES)


def test_mnist_zoo_push_tags_the_release_the_folder_holds(monkeypatch, published, tmp_path, capsys):
    monkeypatch.setattr(huggingface_hub, "HfApi", TaggedRepo)
    release = Path(shutil.copytree(CHECKOUT_HUB / "simplecnn", tmp_path / "simplecnn"))
    default = registry.get_model_entry("simplecnn").default_release
    for argv, tag in [
        ([], default),  # the checkout's hub/simplecnn holds the default release's file
        (["--no-tag"], None),
        (["--tag", "v9.0.0"], "v9.0.0"),
    ]:
        TaggedRepo.tags, TaggedRepo.calls = {}, []
        assert (
            cli.main(["push", "simplecnn", "--repo-id", REPO, "--folder", str(release), *argv]) == 0
        )
        assert TaggedRepo.calls[1:] == [
            "upload_folder",
            *([f"create_tag {tag} ffff"] if tag else []),
        ]
        assert (f"tagged {tag}:" in capsys.readouterr().out) is (tag is not None)
    with pytest.raises(SystemExit):  # argparse: --tag and --no-tag exclude each other
        cli.main(["push", "simplecnn", "--repo-id", REPO, "--tag", "v9.0.0", "--no-tag"])
    assert "not allowed with argument" in capsys.readouterr().err
    # A run's own weights are no release: nothing is tagged unless --tag says so.
    TaggedRepo.tags, TaggedRepo.calls = {}, []
    assert (
        cli.main(["push", "simplecnn", "--repo-id", REPO, "--folder", str(published.folder_a)]) == 0
    )
    assert TaggedRepo.calls == ["create_repo", "upload_folder"]
    # The project's own tag on other weights: one line, status 2, and nothing uploaded.
    TaggedRepo.tags, TaggedRepo.calls = {default: "0" * 64}, []
    assert cli.main(["push", "simplecnn", "--repo-id", REPO, "--folder", str(release)]) == 2
    assert capsys.readouterr().err.count("\n") == 1 and TaggedRepo.calls == ["create_repo"]


# ----------------------------------------------------------------------------------------------
# The model card template, and what save_pretrained reads from a model or a trainer

TEMPLATE = hub.card.TEMPLATE_PATH
CHECKOUT_HUB = Path(__file__).resolve().parents[1] / "hub"


def _snippet_and_repo(folder: Path) -> tuple[str, str | None]:
    card = (folder / "README.md").read_text(encoding="utf-8")
    line = next(ln for ln in card.splitlines() if ln.startswith("model = mnist_zoo.load_"))
    return line, json.loads((folder / "config.json").read_text())["repo_id"]


def test_the_cards_snippet_loads_the_weights_the_card_describes(tmp_path):
    # A run's own weights: not the project's repo, whose name would load other weights.
    model = mnist_zoo.create_model("simplecnn")
    line, repo = _snippet_and_repo(hub.save_pretrained(model, tmp_path / "own"))
    assert repo is None and 'load_pretrained("path/to/this/folder")' in line
    assert '"hf-hub:OWNER/NAME" once it is pushed there' in line
    line, repo = _snippet_and_repo(hub.save_pretrained(model, tmp_path / "b", repo_id="me/b"))
    assert repo == "me/b" and line.endswith('load_pretrained("hf-hub:me/b")')
    # A release's own file, saved again: its repo, loaded by name (and tag, if not the default).
    for folder, name in [
        (CHECKOUT_HUB / "simplecnn", "simplecnn"),
        (CHECKOUT_HUB / "v0.1.0" / "simplecnn", "simplecnn@v0.1.0"),
    ]:
        again = hub.save_pretrained(hub.load_pretrained(folder), tmp_path / name)
        assert hub.sha256_file(again / WEIGHTS) == hub.sha256_file(folder / WEIGHTS)
        line, repo = _snippet_and_repo(again)
        assert repo == "mnist-zoo/simplecnn" and line.endswith(f'load_pretrained("{name}")')


def _train_command(folder: Path) -> str | None:
    card = (folder / "README.md").read_text(encoding="utf-8")
    found = re.findall(r"^Reproduce these weights with `(mnist-zoo train [^`]*)`", card, re.M)
    assert len(found) <= 1
    return found[0] if found else None


def _recipe_of_command(command: str) -> TrainConfig:
    """The recipe ``mnist-zoo train ...`` would train, as the CLI sets it up."""
    args = cli.build_parser().parse_args(shlex.split(command)[1:])
    return dataclasses.replace(
        get_recipe(args.name, args.release), **cli_train.recipe_overrides(args)
    )


@pytest.mark.parametrize("tag", ["", "v0.1.0", "v0.2.0", "v0.3.0"])
@pytest.mark.parametrize("name", registry.list_pretrained())
def test_each_published_card_names_the_command_that_trains_its_recipe(name, tag):
    folder = CHECKOUT_HUB / tag / name
    command = _train_command(folder)
    assert command is not None, f"{folder}'s card names no mnist-zoo train command"
    recorded = TrainConfig.from_dict(json.loads((folder / "config.json").read_text())["recipe"])
    assert _recipe_of_command(command) == recorded
    assert "--limit" not in command


def test_a_card_names_the_options_a_run_changed_or_says_no_command_gives_it(tmp_path):
    model = mnist_zoo.create_model("simplecnn")
    smoke = dataclasses.replace(get_recipe("simplecnn"), epochs=1, lr=1e-3, precision="fp32")
    metrics = {"test_accuracy": 0.5, "num_train_images": 600}
    folder = hub.save_pretrained(model, tmp_path / "smoke", recipe=smoke, metrics=metrics)
    command = _train_command(folder)
    assert command == "mnist-zoo train simplecnn --epochs 1 --lr 0.001 --precision fp32 --limit 600"
    assert _recipe_of_command(command) == smoke
    assert "on the first 600 training images" in (folder / "README.md").read_text()
    # The base recipe (Trainer(model)) is v0.1.0's, so the command starts from that release.
    base = dataclasses.replace(BASE_RECIPE, epochs=1, precision="bf16")
    command = _train_command(hub.save_pretrained(model, tmp_path / "base", recipe=base))
    assert command == "mnist-zoo train simplecnn --release v0.1.0 --epochs 1 --precision bf16"
    # No option sets the appearance augmentation to something no release used.
    odd = dataclasses.replace(smoke, appearance={"stroke": 0.25})
    folder = hub.save_pretrained(model, tmp_path / "odd", recipe=odd)
    assert _train_command(folder) is None
    card = (folder / "README.md").read_text()
    assert "No `mnist-zoo train` command gives the recipe below" in card


def test_card_is_rendered_from_the_shipped_template(published, tmp_path, monkeypatch):
    assert TEMPLATE.is_file() and "{{ card_data }}" in TEMPLATE.read_text(encoding="utf-8")
    card = ModelCard.load(published.folder_a / "README.md")
    assert card.data.library_name == "mnist-zoo"
    assert "pytorch" in card.data.tags and "mnist-zoo" in card.data.tags
    meta = huggingface_hub.metadata_load(published.folder_a / "README.md")
    assert meta["library_name"] == "mnist-zoo" and meta["model-index"][0]["name"] == "simplecnn"
    assert json.loads((published.folder_a / "config.json").read_text())["library_name"] == (
        "mnist-zoo"
    )
    # The card's body really comes from the template file: change it and the card follows.
    custom = tmp_path / "custom.md"
    custom.write_text("---\n{{ card_data }}\n---\n\n# {{ title }} from a custom template\n")
    monkeypatch.setattr(hub.card, "TEMPLATE_PATH", custom)
    model = hub.load_pretrained(published.folder_a)
    hub.save_pretrained(model, tmp_path / "m", name="simplecnn", metrics=METRICS)
    text = (tmp_path / "m" / "README.md").read_text()
    assert "# simplecnn from a custom template" in text
    assert ModelCard.load(tmp_path / "m" / "README.md").data.library_name == "mnist-zoo"


@dataclass(frozen=True)
class Augment:
    degrees: float = 12.0
    scale: tuple[float, float] = (0.9, 1.1)


@dataclass(frozen=True)
class Recipe:
    """Stands in for TrainConfig: a frozen dataclass with nested settings."""

    epochs: int = 2
    augment: Augment | None = Augment()
    early_stopping: dict | None = None
    channels_last: bool = False


def test_a_dataclass_recipe_is_stored_as_data_and_rendered_readably(tmp_path):
    model = mnist_zoo.create_model("simplecnn")
    folder = hub.save_pretrained(model, tmp_path / "m", name="simplecnn", recipe=Recipe())
    config = json.loads((folder / "config.json").read_text())
    assert config["recipe"] == {
        "epochs": 2,
        "augment": {"degrees": 12.0, "scale": [0.9, 1.1]},
        "early_stopping": None,
        "channels_last": False,
    }
    text = (folder / "README.md").read_text()
    for row in ("| epochs | 2 |", "| augment.degrees | 12.0 |", "| augment.scale | [0.9, 1.1] |"):
        assert row in text
    assert "| early_stopping | none |" in text and "| channels_last | false |" in text
    assert "{'degrees'" not in text
    assert hub.load_pretrained(folder).pretrained_cfg["recipe"] == config["recipe"]


def test_save_pretrained_without_name_reads_the_models_provenance(tmp_path):
    model = mnist_zoo.create_model("simplecnn", num_classes=5)
    model.pretrained_cfg = {"architecture": "simplecnn", "model_kwargs": {"num_classes": 5}}
    folder = hub.save_pretrained(model, tmp_path / "m", recipe=RECIPE)
    config = json.loads((folder / "config.json").read_text())
    assert config["architecture"] == "simplecnn" and config["model_kwargs"] == {"num_classes": 5}
    # A loaded model records its provenance too, so it can be saved again as it is.
    again = hub.save_pretrained(hub.load_pretrained(folder), tmp_path / "again", recipe=RECIPE)
    assert hub.sha256_file(again / WEIGHTS) == hub.sha256_file(folder / WEIGHTS)


def as_json(data: object) -> object:
    """``data`` as it reads back from config.json (tuples become lists)."""
    return json.loads(json.dumps(data))


def test_save_pretrained_from_create_model_needs_no_name(tmp_path):
    model = mnist_zoo.create_model("deepercnn", batch_norm=True)
    folder = hub.save_pretrained(model, tmp_path / "m")
    config = json.loads((folder / "config.json").read_text())
    assert config["architecture"] == "deepercnn" and config["model_kwargs"] == {"batch_norm": True}
    from mnist_zoo.training import get_recipe

    assert config["recipe"] == as_json(dataclasses.asdict(get_recipe("deepercnn")))


def test_save_pretrained_from_a_trainer_uses_its_model_and_config(tmp_path):
    trainer = mnist_zoo.Trainer(mnist_zoo.create_model("simplecnn"), epochs=1, lr=1e-3)
    folder = hub.save_pretrained(trainer, tmp_path / "m", metrics=METRICS)
    config = json.loads((folder / "config.json").read_text())
    assert config["architecture"] == "simplecnn"
    assert config["recipe"] == as_json(dataclasses.asdict(trainer.resolved_config))
    assert config["recipe"]["epochs"] == 1 and config["recipe"]["lr"] == 1e-3
    assert same_weights(hub.load_pretrained(folder), trainer.model.state_dict())


def test_save_pretrained_from_any_trainer_like_object(tmp_path):
    model = mnist_zoo.create_model("simplecnn")
    model.__dict__.pop("pretrained_cfg", None)
    trainer = SimpleNamespace(model=model, config=Recipe(epochs=7), model_name="simplecnn")
    folder = hub.save_pretrained(trainer, tmp_path / "m")
    config = json.loads((folder / "config.json").read_text())
    assert config["architecture"] == "simplecnn" and config["recipe"]["epochs"] == 7
    folder = hub.save_pretrained(trainer, tmp_path / "n", recipe={"epochs": 3})  # explicit wins
    assert json.loads((folder / "config.json").read_text())["recipe"] == {"epochs": 3}
    with pytest.raises(TypeError, match="a model"):
        hub.save_pretrained(object(), tmp_path / "x", name="simplecnn")


def test_save_pretrained_without_name_or_provenance_says_to_pass_name(tmp_path):
    model = mnist_zoo.SimpleCNN()
    model.__dict__.pop("pretrained_cfg", None)
    with pytest.raises(InvalidArgumentError, match="name=") as err:
        hub.save_pretrained(model, tmp_path / "m")
    assert isinstance(err.value, ValueError)
    assert not (tmp_path / "m").exists()


def test_a_failed_save_replaces_no_file_and_leaves_no_temporaries(published, tmp_path, monkeypatch):
    folder = Path(shutil.copytree(published.folder_a, tmp_path / "copy"))
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    real = hub.folder.atomic_writer

    def failing(path: Path):
        if Path(path).name == hub.CONFIG_NAME:
            raise OSError("disk full")
        return real(path)

    monkeypatch.setattr(hub.folder, "atomic_writer", failing)
    model = hub.load_pretrained(published.folder_b)
    with pytest.raises(OSError, match="disk full"):
        hub.save_pretrained(model, folder, name="simplecnn", metrics=METRICS)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_ensemble_does_not_import_the_hub():
    # Import mnist_zoo.ensemble without the package's __init__ (which imports everything), so
    # that sys.modules shows exactly what ensemble.py itself pulls in.
    script = (
        "import importlib.util, sys, types\n"
        "spec = importlib.util.find_spec('mnist_zoo')\n"
        "pkg = types.ModuleType('mnist_zoo')\n"
        "pkg.__path__ = list(spec.submodule_search_locations)\n"
        "sys.modules['mnist_zoo'] = pkg\n"
        "import mnist_zoo.ensemble\n"
        "print(sorted(m for m in sys.modules if m.startswith('mnist_zoo')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout.strip().replace("'", '"'))
    assert "mnist_zoo.ensemble" in loaded
    assert not [m for m in loaded if m.startswith("mnist_zoo.hub")], loaded


def test_hub_names_are_all_importable_from_the_package():
    for name in hub.__all__:
        assert getattr(hub, name) is not None
    assert hub.load_pretrained_ensemble is hub.SPECIAL_LOADERS["ensemble"]
    assert issubclass(hub.HubError, mnist_zoo.errors.MnistZooError)


# ----------------------------------------------------------------------------------------------
# Any Hub repo in the zoo's layout: load_pretrained("hf-hub:owner/name[@revision]")


def repo_files(config_from: Path, weights_from: Path, **config_changes: object) -> dict:
    """The files of a repo: ``config_from``'s config.json (changed) beside ``weights_from``'s."""
    config = {**json.loads((config_from / "config.json").read_text()), **config_changes}
    config = {k: v for k, v in config.items() if v is not None}
    return {
        "config.json": json.dumps(config).encode(),
        WEIGHTS: (weights_from / WEIGHTS).read_bytes(),
    }


@pytest.fixture
def hf_hub(server: FakeHub, published: Published, tmp_path: Path):
    """load_pretrained("hf-hub:...") against the fake Hub, with a fresh cache per test."""

    def load(spec: str, **kwargs: object) -> torch.nn.Module:
        kwargs = {"endpoint": server.url, "cache_dir": tmp_path / "cache", **kwargs}
        return hub.load_pretrained(f"hf-hub:{spec}", **kwargs)

    return load


def test_hf_hub_loads_a_repo_that_is_not_in_the_registry(hf_hub, server, published, monkeypatch):
    assert REPO not in {e.pretrained and e.pretrained.repo_id for e in registry._REGISTRY.values()}

    def no_unpickling(*args: object, **kwargs: object) -> None:
        raise AssertionError("something was unpickled")

    monkeypatch.setattr(torch, "load", no_unpickling)
    monkeypatch.setattr("pickle.loads", no_unpickling)
    model = hf_hub(REPO)
    assert same_weights(model, published.state_b) and not model.training  # main is B
    cfg = model.pretrained_cfg
    assert cfg["architecture"] == "simplecnn" and cfg["repo_id"] == REPO
    assert cfg["revision"] == published.commit_b and cfg["sha256"] == published.sha_b
    assert all("/resolve/" in path for _, path, _ in server.requests)

    server.stop()  # the same cache and offline path as the registered names
    assert same_weights(hf_hub(REPO, local_files_only=True), published.state_b)
    assert same_weights(hf_hub(f"{REPO}@{published.commit_b}"), published.state_b)


def test_hf_hub_at_a_pinned_revision(hf_hub, server, published):
    server.repos[REPO].refs["v1"] = published.commit_a
    assert same_weights(hf_hub(f"{REPO}@v1"), published.state_a)
    assert same_weights(hf_hub(f"{REPO}@{published.commit_a}"), published.state_a)
    model = hf_hub(REPO, revision="v1")
    assert same_weights(model, published.state_a)
    assert model.pretrained_cfg["revision"] == published.commit_a
    with pytest.raises(InvalidArgumentError, match="revision='main'"):
        hf_hub(f"{REPO}@v1", revision="main")
    with pytest.raises(hub.HubRevisionNotFoundError, match="'v9'"):
        hf_hub(f"{REPO}@v9")
    for bad in ("not a repo", "owner/name@", "a/b/c"):
        with pytest.raises(InvalidArgumentError, match="hf-hub:owner/name"):
            hf_hub(bad)


def test_hf_hub_refuses_a_config_whose_hash_does_not_match_its_weights(
    hf_hub, server, published, tmp_path
):
    server.add_commit("other/mixed", repo_files(published.folder_a, published.folder_b))
    with pytest.raises(hub.ChecksumMismatchError) as err:
        hf_hub("other/mixed")
    msg = str(err.value)
    assert f"the SHA-256 its config.json records is {published.sha_a}" in msg
    assert published.sha_b in msg and "do not belong together" in msg
    assert not [p for p in (tmp_path / "cache").rglob(WEIGHTS) if p.exists()]  # evicted


def test_hf_hub_needs_the_zoo_layout_and_a_known_architecture(hf_hub, server, published):
    server.add_commit("other/noconfig", {WEIGHTS: (published.folder_a / WEIGHTS).read_bytes()})
    with pytest.raises(hub.HubFileNotFoundError, match="no file 'config.json'"):
        hf_hub("other/noconfig")

    a = published.folder_a
    server.add_commit("other/resnet", repo_files(a, a, architecture="resnet50"))
    with pytest.raises(UnknownModelError, match="'resnet50'") as err:
        hf_hub("other/resnet")
    assert "hf-hub:other/resnet" in str(err.value) and "newer version" in str(err.value)

    server.add_commit("other/newer", repo_files(a, a, library_version="9.0"))
    with pytest.raises(hub.IncompatibleConfigError, match="mnist_zoo 9.0"):
        hf_hub("other/newer")

    with pytest.raises(hub.HubRepoNotFoundError):
        hf_hub("other/missing")


def test_hf_hub_without_a_recorded_sha256_needs_trust(hf_hub, server, published, caplog):
    server.add_commit(
        "other/nosha", repo_files(published.folder_a, published.folder_a, sha256=None)
    )
    with pytest.raises(hub.UnverifiedWeightsError, match="trust_unverified=True"):
        hf_hub("other/nosha")
    with caplog.at_level(logging.WARNING, logger="mnist_zoo.hub"):
        model = hf_hub("other/nosha", trust_unverified=True)
    assert same_weights(model, published.state_a)
    assert "records no SHA-256" in caplog.text and "ETag" in caplog.text


# ----------------------------------------------------------------------------------------------
# num_classes: a fresh head on pretrained weights


def test_num_classes_replaces_only_the_head(load, published, caplog, tmp_path):
    with caplog.at_level(logging.INFO, logger="mnist_zoo.hub"):
        same = load(num_classes=10)
    assert same_weights(same, published.state_a) and "head" not in caplog.text

    torch.manual_seed(0)
    with caplog.at_level(logging.INFO, logger="mnist_zoo.hub"):
        model = load(num_classes=3)
    lines = [r.getMessage() for r in caplog.records if "freshly initialised" in r.getMessage()]
    assert len(lines) == 1 and "classifier.3" in lines[0] and "3-way" in lines[0]
    state = model.state_dict()
    assert state["classifier.3.weight"].shape == (3, 128) and model.num_classes == 3
    assert all(
        torch.equal(state[k], v) for k, v in published.state_a.items() if "classifier.3" not in k
    )
    cfg = model.pretrained_cfg
    assert cfg["num_classes"] == 3 and cfg["fresh_head"] == "classifier.3"
    assert cfg["model_kwargs"] == {"num_classes": 3} and cfg["metrics"] == {}

    # The config records num_classes, so a fine-tuned model loads back with its head.
    folder = hub.save_pretrained(model, tmp_path / "finetuned")
    config = json.loads((folder / "config.json").read_text())
    assert config["num_classes"] == 3 and config["model_kwargs"] == {"num_classes": 3}
    assert same_weights(hub.load_pretrained(folder), state)
    assert same_weights(hub.load_pretrained(folder, num_classes=3), state)

    for bad in (0, -1, 2.5, True):
        with pytest.raises(InvalidArgumentError, match="num_classes"):
            load(num_classes=bad)
    with pytest.raises(InvalidArgumentError, match="does not apply"):
        hub.load_pretrained("ensemble", num_classes=3)
