"""The published weights in hub/: served by a fake Hub, loaded by name, scored on real MNIST.

Each model's accuracy on the 10,000 test images (fp32) must be the one its card states, to the
hundredth of a percent, and the ensemble must reach what its card states (>= 99.70%).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace

import huggingface_hub
import pytest
import safetensors.torch
import torch
from hub_server import FakeHub
from huggingface_hub import ModelCard
from published_logits import folder_of, fp32_logits, published_model

import mnist_zoo
from mnist_zoo import hub
from mnist_zoo.ensemble import PRETRAINED_MEMBERS, ensemble_members
from mnist_zoo.evaluation import result_from_logits
from mnist_zoo.hub import sha256_file
from mnist_zoo.hub.card import card_markdown, ensemble_card
from mnist_zoo.inference import stored_temperature
from mnist_zoo.inference.batched import batched_logits
from mnist_zoo.models import DEFAULT_RELEASE
from mnist_zoo.registry import get_model_entry

HUB = Path(__file__).resolve().parents[1] / "hub"
REQUIRED = {"simplecnn": 0.9940, "deepercnn": 0.9950, "minivgg": 0.9965, "ensemble": 0.9970}


@pytest.fixture(scope="module")
def fake_hub() -> FakeHub:
    """hub/NAME served as repo ``entry.pretrained.repo_id`` with the pinned tag, and the other
    tags the default ensemble's members name."""
    fake = FakeHub()
    for name in PRETRAINED_MEMBERS:
        pin = get_model_entry(name).pretrained
        assert pin is not None, f"{name} has no pinned weights in the registry"
        commit = fake.add_folder(pin.repo_id, HUB / name)
        fake.repos[pin.repo_id].refs[pin.revision] = commit
    for member in ensemble_members(DEFAULT_RELEASE):
        name, _, tag = member.partition("@")
        pin = get_model_entry(name).releases[tag]
        if tag not in fake.repos[pin.repo_id].refs:
            fake.add_release(pin.repo_id, folder_of(member), tag)
    with fake:
        yield fake


@pytest.fixture(scope="module")
def loaded(fake_hub: FakeHub, tmp_path_factory: pytest.TempPathFactory) -> dict:
    cache = tmp_path_factory.mktemp("hf-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
        return {
            name: mnist_zoo.load_pretrained(name, endpoint=fake_hub.url, cache_dir=cache)
            for name in PRETRAINED_MEMBERS
        } | {"cache": cache}


@pytest.fixture(scope="module")
def scored(loaded: dict, mnist_root: Path) -> dict[str, mnist_zoo.EvaluationResult]:
    test = mnist_zoo.MNIST(mnist_root, split="test")
    results = {}
    for name in PRETRAINED_MEMBERS:
        # The models loaded through the Hub are the files of hub/NAME, whose fp32 logits the
        # session computes once (tests/published_logits.py); one labels slice confirms it.
        logits = fp32_logits(name, mnist_root)
        with torch.no_grad():
            head = loaded[name](test.images[:200].float() / 255)
        torch.testing.assert_close(head, logits[:200], atol=1e-4, rtol=1e-4)
        results[name] = result_from_logits(logits, test.targets)
    return results


def card_accuracy(name: str) -> float:
    return json.loads((HUB / name / "config.json").read_text())["metrics"]["test_accuracy"]


@pytest.mark.parametrize("name", PRETRAINED_MEMBERS)
def test_registry_pins_the_files_in_hub(name: str) -> None:
    pin = get_model_entry(name).pretrained
    assert pin is not None
    assert pin.sha256 == sha256_file(HUB / name / pin.filename)
    assert pin.size == (HUB / name / pin.filename).stat().st_size
    assert pin.config_sha256 == sha256_file(HUB / name / "config.json"), (
        "hub/ configs changed: run python scripts/release.py --write-pins"
    )
    assert pin.revision == DEFAULT_RELEASE
    assert pin.metrics["test_accuracy"] == card_accuracy(name)
    card = (HUB / name / "README.md").read_text()
    assert f"{100 * card_accuracy(name):.2f}%" in card
    assert "model-index" in card and "license: mit" in card


@pytest.mark.parametrize("name", PRETRAINED_MEMBERS)
def test_pretrained_accuracy_is_what_the_card_says(
    name: str, scored: dict[str, mnist_zoo.EvaluationResult], loaded: dict
) -> None:
    measured = scored[name].accuracy
    assert round(100 * measured, 2) == round(100 * card_accuracy(name), 2)
    assert measured >= REQUIRED[name]
    model = loaded[name]
    assert not model.training
    assert model.pretrained_cfg["metrics"]["test_accuracy"] == card_accuracy(name)


def test_ensemble_reaches_its_card(
    scored: dict[str, mnist_zoo.EvaluationResult], fake_hub: FakeHub, loaded: dict,
    mnist_root: Path,
) -> None:  # fmt: skip
    test = mnist_zoo.MNIST(mnist_root, split="test")
    members = json.loads((HUB / "ensemble" / "config.json").read_text())["members"]
    # Releases before per-release ensembles name their members without the (own) tag.
    tagged = tuple(m if "@" in m else f"{m}@{DEFAULT_RELEASE}" for m in members)
    assert tagged == ensemble_members(DEFAULT_RELEASE)
    # The ensemble averages its members' calibrated probabilities: each member's logits over
    # the temperature its config.json stores (none for v0.1).
    temperatures = {m: stored_temperature(published_model(m)) or 1.0 for m in members}
    probs = torch.stack(
        [(fp32_logits(m, mnist_root) / temperatures[m]).softmax(1) for m in members]
    ).mean(0)
    accuracy = float((probs.argmax(1) == test.targets).double().mean())
    card = json.loads((HUB / "ensemble" / "config.json").read_text())["metrics"]
    assert round(100 * accuracy, 2) == round(100 * card["test_accuracy"], 2)
    assert accuracy >= REQUIRED["ensemble"]

    # load_pretrained("ensemble") is the same model: check it on a slice of the test set.
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
        ensemble = mnist_zoo.load_pretrained(
            "ensemble", endpoint=fake_hub.url, cache_dir=loaded["cache"]
        )
    with torch.no_grad():
        got = ensemble(test.images[:300].float() / 255).softmax(1)
    torch.testing.assert_close(got, probs[:300], atol=1e-5, rtol=1e-4)


def test_readme_one_liner_from_a_fresh_cache_with_env_vars(
    fake_hub: FakeHub, tmp_path: Path, mnist_root: Path
) -> None:
    """As a user would: HF_ENDPOINT and HF_HOME set, nothing cached, `load_pretrained(name)`."""
    script = (
        "import mnist_zoo, torch\n"
        'model = mnist_zoo.load_pretrained("minivgg")\n'
        f"test = mnist_zoo.MNIST({str(mnist_root)!r}, split='test')\n"
        "with torch.no_grad(): print(model(test.images[:100].float() / 255).argmax(1).tolist())\n"
        "print(model.pretrained_cfg['sha256'])\n"
    )
    env = {**os.environ, "HF_ENDPOINT": fake_hub.url, "HF_HOME": str(tmp_path / "hf")}
    env.pop("HF_HUB_OFFLINE", None)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    labels, sha = proc.stdout.strip().splitlines()[-2:]
    assert sha == get_model_entry("minivgg").pretrained.sha256
    # The checkout's file read the same 100 images (its full test-set logits are shared).
    assert json.loads(labels) == fp32_logits("minivgg", mnist_root)[:100].argmax(1).tolist()
    assert (tmp_path / "hf" / "hub").is_dir()  # cached where HF_HOME says


def test_cli_predict_reads_the_handwritten_examples(capsys: pytest.CaptureFixture[str]) -> None:
    images = sorted((HUB.parent / "examples" / "images").glob("*.png"))
    assert images
    from mnist_zoo.cli import main

    assert main(["predict", *map(str, images), "--model", str(HUB / "minivgg")]) == 0
    out = capsys.readouterr().out.splitlines()
    words = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    for path, line in zip(images, out, strict=True):
        stem = path.stem.split("_")[0]
        truth = int(stem) if stem.isdigit() else words.index(stem)
        assert line.startswith(f"{path}: {truth} ("), line


def load_release_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("release", HUB.parent / "scripts" / "release.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", [*PRETRAINED_MEMBERS, "ensemble"])
def test_published_cards_are_rendered_by_the_current_template(name: str, tmp_path: Path) -> None:
    """The cards in hub/ are what the template makes of their config.json (see release.py)."""
    config = json.loads((HUB / name / "config.json").read_text())
    assert config["library_name"] == "mnist-zoo"
    copy = tmp_path / name
    copy.mkdir()
    shutil.copy(HUB / name / "config.json", copy)
    hub.write_card(copy)
    committed = (HUB / name / "README.md").read_text(encoding="utf-8")
    assert (copy / "README.md").read_text(encoding="utf-8") == committed, (
        "hub/ cards are stale: run python scripts/release.py --cards-only"
    )
    card = ModelCard.load(HUB / name / "README.md")
    assert card.data.library_name == "mnist-zoo" and "pytorch" in card.data.tags
    assert card.data.license == "mit" and card.data.datasets == ["ylecun/mnist"]
    assert card.data.eval_results[0].metric_value == round(100 * card_accuracy(name), 2)


def test_release_writes_the_ensemble_card_from_the_template(tmp_path: Path) -> None:
    release = load_release_script()
    metrics = json.loads((HUB / "ensemble" / "config.json").read_text())["metrics"]
    result = SimpleNamespace(
        to_dict=lambda: {k: v for k, v in metrics.items() if k != "images_per_s"}
    )
    members = ["simplecnn@v0.2.0", "simplecnn@v0.3.0-seed1", "minivgg@v0.3.0"]
    rows = [(members[0], 0.99, 4000.0), (members[1], 0.995, 2000.0), (members[2], 0.997, 400.4)]
    release.write_ensemble(tmp_path / "ensemble", members, result, 321.0, rows)

    config = json.loads((tmp_path / "ensemble" / "config.json").read_text())
    assert config["members"] == members
    assert config["library_name"] == "mnist-zoo" and config["metrics"]["images_per_s"] == 321
    text = (tmp_path / "ensemble" / "README.md").read_text(encoding="utf-8")
    assert text == card_markdown(ensemble_card(config))
    card = ModelCard.load(tmp_path / "ensemble" / "README.md")
    assert card.data.library_name == "mnist-zoo" and "ensemble" in card.data.tags
    ensemble_row = f"| **ensemble** | **{100 * metrics['test_accuracy']:.2f}%** | 321 |"
    assert "| minivgg@v0.3.0 | 99.70% | 400 |" in text and ensemble_row in text
    assert "| simplecnn@v0.3.0-seed1 | 99.50% | 2,000 |" in text
    assert 'load_pretrained("ensemble")' in text


def test_release_cards_only_keeps_the_weights(tmp_path: Path) -> None:
    release = load_release_script()
    hub_dir = Path(shutil.copytree(HUB, tmp_path / "hub"))
    config = json.loads((hub_dir / "simplecnn" / "config.json").read_text())
    (hub_dir / "simplecnn" / "config.json").write_text(
        json.dumps({**config, "library_name": "mnist_zoo"}, indent=2) + "\n"
    )
    (hub_dir / "ensemble" / "README.md").write_text("stale\n")
    cards = release.refresh_cards(hub_dir)
    assert sorted(c.parent.name for c in cards) == sorted([*PRETRAINED_MEMBERS, "ensemble"])
    # The archived releases' cards are rendered by this version's template too.
    tags = release.release_tags(hub_dir)
    assert tags and all(release.refresh_cards(hub_dir / tag) for tag in tags)
    for folder in ("", *tags):
        for name in [*PRETRAINED_MEMBERS, "ensemble"]:
            for file in ("README.md", "config.json", "model.safetensors"):
                committed, refreshed = HUB / folder / name / file, hub_dir / folder / name / file
                if committed.exists():
                    assert refreshed.read_bytes() == committed.read_bytes(), refreshed


def test_release_pins_are_the_registrys(tmp_path: Path) -> None:
    release = load_release_script()
    block = release.pins(HUB)
    models_py = Path(mnist_zoo.models.__file__)
    assert block in models_py.read_text(encoding="utf-8"), (
        "the pins in models.py are stale: run python scripts/release.py --write-pins"
    )
    copy = tmp_path / "models.py"
    copy.write_text(models_py.read_text(encoding="utf-8").replace("size=1_687_280", "size=1"))
    release.write_pins(block, copy)
    assert copy.read_text(encoding="utf-8") == models_py.read_text(encoding="utf-8")


def test_the_ensemble_folder_explains_itself() -> None:
    with pytest.raises(hub.InvalidHubFolderError) as err:
        mnist_zoo.load_pretrained(HUB / "ensemble")
    msg = str(err.value)
    members = json.loads((HUB / "ensemble" / "config.json").read_text())["members"]
    assert err.value.members == tuple(members) and len(members) >= 3
    assert f"ensemble of the {len(members)} pinned models ({', '.join(members)})" in msg
    assert "load_pretrained('ensemble')" in msg
    assert "save_pretrained" not in msg


def test_hf_hub_name_gives_the_local_folders_predictions(
    fake_hub: FakeHub, tmp_path: Path, mnist_root: Path
) -> None:
    """Issue 13's acceptance line: the repo by its id and tag, against the folder it came from."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
        by_id = mnist_zoo.load_pretrained(
            f"hf-hub:mnist-zoo/minivgg@{DEFAULT_RELEASE}",
            endpoint=fake_hub.url,
            cache_dir=tmp_path / "c",
        )
    images = mnist_zoo.MNIST(mnist_root, split="test").images[:500]
    # hub/minivgg's labels: its fp32 logits on the test set, computed once per session.
    local = fp32_logits("minivgg", mnist_root)[:500].argmax(1)
    assert torch.equal(batched_logits(by_id, images).argmax(1), local)
    assert by_id.pretrained_cfg["sha256"] == get_model_entry("minivgg").pretrained.sha256
    assert by_id.pretrained_cfg["repo_id"] == "mnist-zoo/minivgg"


def test_num_classes_26_keeps_every_pinned_tensor_but_the_head(
    fake_hub: FakeHub, loaded: dict, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 13's acceptance line: a 26-way head on the pinned MiniVGG."""
    with pytest.MonkeyPatch.context() as mp, caplog.at_level("INFO", logger="mnist_zoo.hub"):
        mp.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
        model = mnist_zoo.load_pretrained(
            "minivgg", num_classes=26, endpoint=fake_hub.url, cache_dir=loaded["cache"]
        )
    pinned = safetensors.torch.load_file(HUB / "minivgg" / "model.safetensors")
    state = model.state_dict()
    head = {k for k in state if k.startswith("classifier.4.")}
    assert head == {"classifier.4.weight", "classifier.4.bias"}
    assert state["classifier.4.weight"].shape == (26, 512) and model.num_classes == 26
    assert state.keys() == pinned.keys()
    assert all(torch.equal(state[k], pinned[k]) for k in pinned if k not in head)
    lines = [r.getMessage() for r in caplog.records if "freshly initialised" in r.getMessage()]
    assert len(lines) == 1 and "classifier.4" in lines[0] and "26-way" in lines[0]
    with torch.no_grad():
        assert model(torch.rand(2, 1, 28, 28)).shape == (2, 26)
