"""Issue 10's Hub findings, each reproduced: what a planted cache entry, a lying config, a
stalled Hub or a killed save could do, and what loading and saving do about it now.

Nothing here touches the internet: the Hub is tests/hub_server.py on 127.0.0.1, or a cache
planted by hand and read offline (``local_files_only=True``), as ``HF_HUB_OFFLINE=1`` would.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import time
import types
from pathlib import Path

import huggingface_hub
import pytest
import safetensors.torch
import torch
from hub_server import FakeHub
from huggingface_hub import file_download

import mnist_zoo
from mnist_zoo import hub
from mnist_zoo.errors import InvalidArgumentError
from mnist_zoo.models import DEFAULT_RELEASE
from mnist_zoo.registry import get_model_entry

HUB = Path(__file__).resolve().parents[1] / "hub"
WEIGHTS, CONFIG = hub.WEIGHTS_NAME, hub.CONFIG_NAME
COMMIT = "c0ffee00" * 5  # any 40-hex commit a planted ref can point to


@pytest.fixture(autouse=True)
def online(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)


def plant(cache: Path, repo_id: str, ref: str, files: dict[str, Path | bytes]) -> Path:
    """Put ``files`` in the Hub cache as snapshot entries of ``ref``; a Path becomes a link."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / ref).write_text(COMMIT)
    snapshot = repo / "snapshots" / COMMIT
    snapshot.mkdir(parents=True, exist_ok=True)
    for name, target in files.items():
        if isinstance(target, Path):
            (snapshot / name).symlink_to(target)
        else:
            (snapshot / name).write_bytes(target)
    return snapshot


def load_offline(name: str, cache: Path, **kwargs: object) -> torch.nn.Module:
    return hub.load_pretrained(name, cache_dir=cache, local_files_only=True, **kwargs)


#: The tag a load without a revision gets: the files of hub/NAME.
TAG = DEFAULT_RELEASE


def real_config(name: str = "simplecnn") -> bytes:
    return (HUB / name / CONFIG).read_bytes()


# ----------------------------------------------------------------------------------------------
# Eviction touches nothing outside the cache's own blobs/


@pytest.mark.parametrize("victim_size", ["small", "pinned size"])
def test_eviction_never_deletes_a_file_outside_the_cache(tmp_path: Path, victim_size: str) -> None:
    # The reproduction: refs/TAG -> a commit whose model.safetensors is a link to a
    # file of the user's. Before the fix, the failed check deleted that file.
    victim = tmp_path / "victim.txt"
    if victim_size == "small":
        victim.write_text("my thesis, the only copy\n")
    else:  # the pinned size, so that only the SHA-256 tells it apart
        with open(victim, "wb") as f:
            f.truncate(get_model_entry("simplecnn").pretrained.size)
    before = victim.read_bytes()
    cache = tmp_path / "cache"
    plant(cache, "mnist-zoo/simplecnn", TAG, {CONFIG: real_config(), WEIGHTS: victim})

    with pytest.raises(hub.ChecksumMismatchError) as err:
        load_offline("simplecnn", cache)
    msg = str(err.value)
    assert str(victim) in msg and "nothing was deleted" in msg
    assert victim.read_bytes() == before
    assert (cache / "models--mnist-zoo--simplecnn" / "snapshots" / COMMIT / WEIGHTS).is_symlink()


def test_eviction_deletes_a_bad_blob_of_the_cache(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    repo = cache / "models--mnist-zoo--simplecnn"
    blob = repo / "blobs" / ("ab" * 32)
    blob.parent.mkdir(parents=True)
    blob.write_bytes(b"\0" * get_model_entry("simplecnn").pretrained.size)
    plant(cache, "mnist-zoo/simplecnn", TAG, {CONFIG: real_config(), WEIGHTS: blob})
    with pytest.raises(hub.ChecksumMismatchError, match="deleted from the cache"):
        load_offline("simplecnn", cache)
    assert not blob.exists()
    assert not (repo / "snapshots" / COMMIT / WEIGHTS).is_symlink()


# ----------------------------------------------------------------------------------------------
# Sizes are checked before a byte is read


def sparse_file(path: Path, size: int) -> Path:
    with open(path, "wb") as f:
        f.truncate(size)  # takes no disk space; reading it would take `size` bytes of memory
    return path


@pytest.mark.parametrize("target", ["/dev/zero", "huge file"])
def test_a_planted_link_to_a_device_or_a_huge_file_is_never_read(
    tmp_path: Path, target: str
) -> None:
    cache = tmp_path / "cache"
    link_to = Path("/dev/zero") if target == "/dev/zero" else sparse_file(tmp_path / "big", 8 << 30)
    plant(cache, "mnist-zoo/simplecnn", TAG, {CONFIG: real_config(), WEIGHTS: link_to})
    start = time.perf_counter()
    with pytest.raises((hub.CorruptWeightsError, hub.ChecksumMismatchError)) as err:
        load_offline("simplecnn", cache)
    assert time.perf_counter() - start < 5
    assert "was not read" in str(err.value) and str(link_to) in str(err.value)
    assert link_to.exists()


def test_an_unpinned_file_is_bounded_by_its_architecture(tmp_path: Path) -> None:
    # An hf-hub: repo has no pin: the file may hold no more than its architecture's tensors.
    cache = tmp_path / "cache"
    config = json.loads(real_config())
    big = sparse_file(tmp_path / "big", 64 << 20)
    plant(cache, "someone/cnn", "main", {CONFIG: json.dumps(config).encode(), WEIGHTS: big})
    with pytest.raises(hub.CorruptWeightsError, match="more than the") as err:
        load_offline("hf-hub:someone/cnn", cache)
    assert "was not read" in str(err.value)


@pytest.mark.parametrize("kind", ["/dev/zero", "fifo", "huge file"])
def test_a_local_folder_with_a_device_pipe_or_huge_file_is_refused(
    tmp_path: Path, kind: str
) -> None:
    folder = Path(shutil.copytree(HUB / "simplecnn", tmp_path / "m"))
    (folder / WEIGHTS).unlink()
    if kind == "/dev/zero":
        (folder / WEIGHTS).symlink_to("/dev/zero")
    elif kind == "fifo":
        os.mkfifo(folder / WEIGHTS)  # opening it for reading would block until a writer came
    else:
        sparse_file(folder / WEIGHTS, 4 << 30)
    start = time.perf_counter()
    with pytest.raises(hub.CorruptWeightsError, match="not a regular file|more than the"):
        hub.load_pretrained(folder)
    assert time.perf_counter() - start < 5


def test_a_huge_config_json_is_refused_unread(tmp_path: Path) -> None:
    folder = Path(shutil.copytree(HUB / "simplecnn", tmp_path / "m"))
    (folder / CONFIG).unlink()
    (folder / CONFIG).symlink_to("/dev/zero")
    with pytest.raises(hub.InvalidHubFolderError, match="not a regular file"):
        hub.load_pretrained(folder)


# ----------------------------------------------------------------------------------------------
# Nothing loads unverified by accident; hashes compare in any case


@pytest.mark.parametrize("recorded", ["missing", "empty"])
def test_a_folder_without_a_sha256_loads_only_when_trusted(
    tmp_path: Path, recorded: str, caplog: pytest.LogCaptureFixture
) -> None:
    folder = Path(shutil.copytree(HUB / "simplecnn", tmp_path / "m"))
    config = json.loads((folder / CONFIG).read_text())
    if recorded == "missing":
        del config["sha256"]
    else:
        config["sha256"] = ""
    (folder / CONFIG).write_text(json.dumps(config))
    with pytest.raises(hub.UnverifiedWeightsError, match="trust_unverified=True") as err:
        hub.load_pretrained(folder)
    assert isinstance(err.value, hub.InvalidHubFolderError)

    with caplog.at_level(logging.WARNING, logger="mnist_zoo.hub"):
        model = hub.load_pretrained(folder, trust_unverified=True)
    assert "unverified" in caplog.text and str(folder / WEIGHTS) in caplog.text
    assert model.pretrained_cfg["sha256"] == get_model_entry("simplecnn").pretrained.sha256


def test_recorded_hashes_compare_case_insensitively(tmp_path: Path) -> None:
    folder = Path(shutil.copytree(HUB / "simplecnn", tmp_path / "m"))
    config = json.loads((folder / CONFIG).read_text())
    config["sha256"] = config["sha256"].upper()
    (folder / CONFIG).write_text(json.dumps(config))
    assert hub.load_pretrained(folder).pretrained_cfg["sha256"] == config["sha256"].lower()


# ----------------------------------------------------------------------------------------------
# A registered name's config cannot relabel its weights


def serve_simplecnn(fake: FakeHub, config: dict) -> str:
    """mnist-zoo/simplecnn: the default release as published; ``main``: ``config`` beside it."""
    pinned = fake.add_folder("mnist-zoo/simplecnn", HUB / "simplecnn")
    fake.repos["mnist-zoo/simplecnn"].refs[TAG] = pinned
    weights = (HUB / "simplecnn" / WEIGHTS).read_bytes()
    return fake.add_commit(
        "mnist-zoo/simplecnn", {WEIGHTS: weights, CONFIG: json.dumps(config).encode()}
    )


def test_a_config_claiming_another_architecture_is_refused(tmp_path: Path) -> None:
    # The example: a config that says minivgg, at 100% accuracy, beside SimpleCNN weights.
    lie = {**json.loads(real_config()), "architecture": "minivgg", "metrics": {"test_accuracy": 1}}
    with FakeHub() as fake:
        serve_simplecnn(fake, lie)
        where = {"endpoint": fake.url, "cache_dir": tmp_path / "cache"}
        with pytest.raises(hub.IncompatibleConfigError, match="'minivgg'") as err:
            hub.load_pretrained("simplecnn", revision="main", trust_unverified=True, **where)
        assert "'simplecnn'" in str(err.value) and "relabel" in str(err.value)
        # At the pinned revision the config is pinned too: as published, it loads.
        model = hub.load_pretrained("simplecnn", **where)
    assert model.pretrained_cfg["architecture"] == "simplecnn"
    assert model.pretrained_cfg["metrics"] == json.loads(real_config())["metrics"]


def test_the_pinned_config_json_is_checked_against_its_pin(tmp_path: Path) -> None:
    lie = {**json.loads(real_config()), "metrics": {"test_accuracy": 1.0}}
    with FakeHub() as fake:
        commit = serve_simplecnn(fake, lie)
        fake.repos["mnist-zoo/simplecnn"].refs[TAG] = commit  # the tag moved to the lie
        with pytest.raises(hub.ChecksumMismatchError, match="config.json") as err:
            hub.load_pretrained("simplecnn", endpoint=fake.url, cache_dir=tmp_path / "cache")
    assert get_model_entry("simplecnn").pretrained.config_sha256 in str(err.value)
    assert "deleted from the cache" in str(err.value)


def test_a_config_from_a_newer_mnist_zoo_is_refused(tmp_path: Path) -> None:
    folder = Path(shutil.copytree(HUB / "simplecnn", tmp_path / "m"))
    config = json.loads((folder / CONFIG).read_text())
    (folder / CONFIG).write_text(json.dumps({**config, "library_version": "99.0.0"}))
    with pytest.raises(hub.IncompatibleConfigError, match="99.0.0") as err:
        hub.load_pretrained(folder)
    assert "pip install -U mnist-zoo" in str(err.value)
    (folder / CONFIG).write_text(json.dumps({**config, "library_version": "0.0.9"}))
    assert hub.load_pretrained(folder).pretrained_cfg["library_version"] == "0.0.9"


# ----------------------------------------------------------------------------------------------
# Weights of the wrong dtype, or not finite


def rewrite_weights(folder: Path, change) -> None:
    """Apply ``change`` to the folder's state dict and record the new file's SHA-256."""
    state = safetensors.torch.load_file(folder / WEIGHTS)
    safetensors.torch.save_file(change(state), folder / WEIGHTS)
    config = json.loads((folder / CONFIG).read_text())
    config["sha256"] = hub.sha256_file(folder / WEIGHTS)
    (folder / CONFIG).write_text(json.dumps(config))


@pytest.mark.parametrize(
    ("dtype", "error", "match"),
    [
        (torch.float16, hub.WeightsMismatchError, "dtype mismatch.*torch.float16"),
        (torch.int8, hub.WeightsMismatchError, "dtype mismatch.*torch.int8"),
        (torch.bool, hub.WeightsMismatchError, "dtype mismatch.*torch.bool"),
        ("nan", hub.CorruptWeightsError, "NaN or infinite"),
        ("inf", hub.CorruptWeightsError, "NaN or infinite"),
    ],
    ids=["fp16", "int8", "bool", "nan", "inf"],
)
def test_weights_of_another_dtype_or_not_finite_are_refused(
    tmp_path: Path, dtype: object, error: type, match: str
) -> None:
    folder = Path(shutil.copytree(HUB / "simplecnn", tmp_path / "m"))

    def change(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if isinstance(dtype, torch.dtype):
            return {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
        state["features.0.bias"][3] = float(dtype)
        return state

    rewrite_weights(folder, change)
    with pytest.raises(error, match=match):
        hub.load_pretrained(folder)


def test_save_pretrained_refuses_non_finite_weights(tmp_path: Path) -> None:
    model = mnist_zoo.create_model("simplecnn")
    with torch.no_grad():
        model.classifier[1].weight[0, 0] = float("nan")
    with pytest.raises(InvalidArgumentError, match="NaN or infinite"):
        hub.save_pretrained(model, tmp_path / "m")
    assert not (tmp_path / "m" / WEIGHTS).exists()


# ----------------------------------------------------------------------------------------------
# A stalled or unreachable Hub is HubUnavailableError


def test_a_stalled_download_is_hub_unavailable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # huggingface_hub reads HF_HUB_DOWNLOAD_TIMEOUT into this constant at import; set it as the
    # variable would, small, and skip the client's one-second pause before each of its retries.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_DOWNLOAD_TIMEOUT", 0.3)
    no_pause = types.SimpleNamespace(**{**vars(time), "sleep": lambda seconds: None})
    monkeypatch.setattr(file_download, "time", no_pause)
    with FakeHub() as fake:
        serve_simplecnn(fake, json.loads(real_config()))
        fake.stall[WEIGHTS] = 20.0
        start = time.perf_counter()
        with pytest.raises(hub.HubUnavailableError) as err:
            hub.load_pretrained("simplecnn", endpoint=fake.url, cache_dir=tmp_path / "cache")
        assert time.perf_counter() - start < 15
    msg = str(err.value)
    assert "stalled" in msg and "HF_HUB_DOWNLOAD_TIMEOUT = 0.3 s" in msg
    assert isinstance(err.value, ConnectionError)


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def test_push_to_an_unreachable_hub_is_hub_unavailable(tmp_path: Path) -> None:
    folder = shutil.copytree(HUB / "simplecnn", tmp_path / "m")
    url = closed_port_url()
    with pytest.raises(hub.HubUnavailableError, match="could not be reached") as err:
        hub.push_to_hub(folder, "someone/cnn", endpoint=url, token="hf_x")
    assert url in str(err.value)


# ----------------------------------------------------------------------------------------------
# A save killed at any point leaves a consistent set, and the next save cleans up

KILLED_SAVES = """
import json, os, sys
import torch
torch.set_num_threads(1)  # no thread pool, so that forking is safe
from mnist_zoo import hub

model = hub.load_pretrained(sys.argv[1])
status = {}
for kill_at, folder in enumerate(sys.argv[2:], start=1):
    pid = os.fork()
    if pid == 0:  # the child saves, and is killed at its kill_at-th rename
        calls, real_replace = [0], os.replace

        def replace(src, dst):
            calls[0] += 1
            if calls[0] == kill_at:
                os._exit(9)  # as SIGKILL: no cleanup, no finally
            real_replace(src, dst)

        os.replace = replace
        hub.save_pretrained(model, folder, recipe={"epochs": 1}, metrics={"test_accuracy": 0.5})
        os._exit(0)
    status[folder] = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
print(json.dumps(status))
"""


def test_a_save_killed_at_any_rename_leaves_a_consistent_set(tmp_path: Path) -> None:
    old, new = HUB / "simplecnn", tmp_path / "new"
    torch.manual_seed(0)
    hub.save_pretrained(mnist_zoo.create_model("simplecnn"), new)
    old_sha, new_sha = hub.sha256_file(old / WEIGHTS), hub.sha256_file(new / WEIGHTS)
    # The three files save_pretrained writes (the published folder also holds model.onnx).
    keep = shutil.ignore_patterns("model.onnx")
    folders = [Path(shutil.copytree(old, tmp_path / f"kill{k}", ignore=keep)) for k in range(1, 9)]
    for folder in folders:
        (folder / ".gitattributes").write_text("*.safetensors filter=lfs\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", KILLED_SAVES, str(new), *map(str, folders)],
        capture_output=True, text=True, timeout=300, check=False, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    status = json.loads(done.stdout.strip().splitlines()[-1])
    outcomes = []
    for folder in folders:
        model = hub.load_pretrained(folder)  # the old set or the new one, never a mix
        sha = model.pretrained_cfg["sha256"]
        assert sha in (old_sha, new_sha)
        config = json.loads((folder / CONFIG).read_text())
        assert config["sha256"] == sha
        assert (config["metrics"] == {"test_accuracy": 0.5}) == (sha == new_sha)
        outcomes.append(sha == new_sha)
        hub.complete_save(folder)  # what the next save (or push) does first
        names = sorted(p.name for p in folder.iterdir())
        assert names == sorted([*hub.HUB_FILES, ".gitattributes"]), names
        assert hub.sha256_file(folder / WEIGHTS) == sha
    codes = [status[str(folder)] for folder in folders]
    assert 9 in codes and codes[-1] == 0  # some saves were killed, the last one finished
    assert outcomes == sorted(outcomes)  # old, ..., old, new, ..., new: one switch
    assert False in outcomes and outcomes.count(True) >= 2


def test_complete_save_removes_stale_temporaries_only(tmp_path: Path) -> None:
    folder = Path(shutil.copytree(HUB / "simplecnn", tmp_path / "m"))
    stale = [folder / ".config.json.x1y2.tmp", folder / f".{WEIGHTS}.{'0' * 64}.staged"]
    kept = [folder / ".last.pt.abc.tmp", folder / "notes.txt"]
    for path in stale + kept:
        path.write_text("x")
    hub.complete_save(folder)
    assert not any(p.exists() for p in stale) and all(p.exists() for p in kept)
