"""Export to ONNX and .pt2: every model, every published weight file, checked in ONNX Runtime.

The published weights are exported once per module (through ``mnist-zoo export``) and scored
in ONNX Runtime on the full MNIST test set: the labels must be PyTorch's, the accuracy the
card's. A file that does not reproduce the model is refused and nothing is left behind.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hub_server import FakeHub
from published_logits import HUB, fp32_logits, mnist_test_set, published_model
from torch import nn

import mnist_zoo
from mnist_zoo import cli, hub, registry
from mnist_zoo.errors import (
    ChecksumMismatchError,
    ExportError,
    HubFileNotFoundError,
    InvalidArgumentError,
    MissingDependencyError,
    UnknownModelError,
)
from mnist_zoo.export import (
    ATOL,
    CHECK_BATCH_SIZES,
    OnnxModel,
    check_images,
    compare_logits,
    export,
    weights_sha256,
    writer,
)
from mnist_zoo.hub.onnx import ONNX_NAME, ONNX_SHA256_KEY, load_onnx, write_onnx
from mnist_zoo.inference import stored_temperature
from mnist_zoo.inference.batched import batched_logits
from mnist_zoo.registry import ModelEntry

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_PATHS = sorted((REPO / "examples" / "images").glob("*.png"))
PINNED = mnist_zoo.list_pretrained()
METADATA_KEYS = {"model", "mnist_zoo_version", "labels", "input", "output", "tolerance"}


@pytest.fixture(scope="module", autouse=True)
def needs_onnx() -> None:
    try:
        writer.require("onnx", "onnxscript", "onnxruntime")
    except MissingDependencyError as err:
        pytest.skip(str(err))


def seeded(name: str) -> nn.Module:
    torch.manual_seed(0)
    return mnist_zoo.create_model(name)


def assert_no_leftovers(folder: Path, *expected: str) -> None:
    assert sorted(p.name for p in folder.iterdir()) == sorted(expected)


# --- every registered model, freshly initialised ------------------------------------------------


@pytest.mark.parametrize("name", mnist_zoo.list_models())
def test_every_registered_model_exports_with_a_dynamic_batch(name: str, tmp_path: Path) -> None:
    model = seeded(name).train()  # exported in eval mode; the model's own mode is kept
    path = export(model, tmp_path / f"{name}.onnx")
    assert model.training
    onnx_model = OnnxModel(path)
    (graph_input,) = onnx_model.session.get_inputs()
    assert graph_input.name == "images" and graph_input.shape[1:] == [1, 28, 28]
    assert isinstance(graph_input.shape[0], str)  # a named, dynamic batch axis
    # One image, then 40 in one run: the batch is not the 16 images the export traced.
    x = torch.rand(40, 1, 28, 28)
    expected = batched_logits(model, x, batch_size=40)
    compare_logits(onnx_model.logits(x[:1]), expected[:1], "batch 1")
    compare_logits(onnx_model.logits(x, batch_size=40), expected, "batch 40")
    meta = onnx_model.metadata
    assert meta.keys() >= METADATA_KEYS and meta["model"] == name == meta["architecture"]
    assert meta["weights_sha256"] == weights_sha256(model)
    assert meta["weights_source"] == "not loaded from the Hub or a Hub folder"
    assert_no_leftovers(tmp_path, f"{name}.onnx")


@pytest.mark.parametrize("name", mnist_zoo.list_models())
def test_every_registered_model_exports_to_pt2(name: str, tmp_path: Path) -> None:
    model = seeded(name).eval()
    path = export(model, tmp_path / f"{name}.pt2", format="pt2")
    extra = {"mnist_zoo.json": ""}
    program = torch.export.load(path, extra_files=extra)
    assert json.loads(extra["mnist_zoo.json"])["model"] == name
    x = torch.rand(33, 1, 28, 28)
    with torch.no_grad():
        expected = model(x)
    for n in (1, 33):
        torch.testing.assert_close(program.module()(x[:n]), expected[:n], atol=ATOL, rtol=0)


# --- the published weights, through the command line ---------------------------------------------


@pytest.fixture(scope="module")
def published_onnx(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``mnist-zoo export hub/NAME --format onnx --out FILE`` for every pinned model."""
    out = tmp_path_factory.mktemp("onnx")
    paths = {}
    for name in PINNED:
        paths[name] = out / f"{name}.onnx"
        argv = ["export", str(HUB / name), "--format", "onnx", "--out", str(paths[name])]
        assert cli.main(argv) == 0
    return paths


@pytest.mark.slow
@pytest.mark.parametrize("name", PINNED)
def test_published_weights_score_the_cards_accuracy_in_onnx_runtime(
    name: str, published_onnx: dict[str, Path], mnist_root: Path
) -> None:
    test = mnist_test_set(mnist_root)
    onnx_model = OnnxModel(published_onnx[name])
    # Raw MNIST test images, as float in [0, 1], in batches of 32 and one at a time.
    x = test.images.float() / 255
    labels = onnx_model.logits(x, batch_size=32).argmax(1)
    assert torch.equal(labels, fp32_logits(name, mnist_root).argmax(1))
    correct = int((labels == test.targets).sum())
    card = json.loads((HUB / name / "config.json").read_text())["metrics"]["test_accuracy"]
    assert correct == round(card * len(test.targets))
    pinned = registry.get_model_entry(name).pretrained.metrics["test_accuracy"]
    assert correct == round(pinned * len(test.targets))
    assert onnx_model.logits(x[:1]).argmax(1).item() == labels[0].item()


@pytest.mark.parametrize("name", PINNED)
def test_published_exports_record_their_provenance(
    name: str, published_onnx: dict[str, Path]
) -> None:
    meta = OnnxModel(published_onnx[name]).metadata
    pin = registry.get_model_entry(name).pretrained
    assert meta["model"] == meta["architecture"] == name
    assert meta["weights_sha256"] == pin.sha256  # the file the export came from
    assert meta["weights_source"].endswith("model.safetensors")
    assert meta["mnist_zoo_version"] == mnist_zoo.__version__
    assert json.loads(meta["labels"]) == [str(d) for d in range(10)]
    assert "(N, 1, 28, 28)" in meta["input"] and "[0, 1]" in meta["input"]
    assert "standardisation is inside" in meta["input"]
    assert str(list(CHECK_BATCH_SIZES)) in meta["tolerance"]


def test_onnx_predict_is_the_packages_predict(published_onnx: dict[str, Path]) -> None:
    onnx_model = OnnxModel(published_onnx["minivgg"])
    model = published_model("minivgg")
    # The file records the temperature config.json stores, and predict applies it as the
    # package's predict does (and leaves it out with calibrated=False, as that does).
    assert onnx_model.temperature == stored_temperature(model) is not None
    assert onnx_model.metadata["temperature"] == repr(stored_temperature(model))
    for images in (EXAMPLE_PATHS, torch.rand(3, 28, 28), check_images()):
        for calibrated in (True, False):
            got = onnx_model.predict(images, calibrated=calibrated)
            expected = mnist_zoo.predict(model, images, precision="fp32", calibrated=calibrated)
            assert torch.equal(got.labels, expected.labels)
            torch.testing.assert_close(got.probs, expected.probs, atol=1e-4, rtol=0)
    calibrated, raw = (
        onnx_model.predict(check_images()),
        onnx_model.predict(check_images(), calibrated=False),
    )
    assert not torch.allclose(calibrated.probs, raw.probs, atol=1e-3)
    with pytest.raises(mnist_zoo.errors.ImageError):
        onnx_model.predict(torch.rand(2, 3, 28, 28))
    with pytest.raises(InvalidArgumentError):
        onnx_model.logits(torch.rand(2, 28, 28))
    # The file refuses what the model refuses: floats in 0-255 would read as noise.
    with pytest.raises(mnist_zoo.errors.ImageError, match="Divide 0-255 values by 255"):
        onnx_model.logits(torch.rand(2, 1, 28, 28) * 255)
    assert onnx_model.logits((torch.rand(2, 1, 28, 28) * 255).to(torch.uint8)).shape == (2, 10)


@pytest.mark.slow
def test_the_ensemble_exports_as_one_graph(tmp_path: Path, mnist_root: Path) -> None:
    members = [published_model(name) for name in PINNED]
    ensemble = mnist_zoo.Ensemble(members).eval()
    ensemble.pretrained_cfg = {"name": "ensemble"}
    onnx_model = OnnxModel(export(ensemble, tmp_path / "ensemble.onnx"))
    assert len(onnx_model.session.get_inputs()) == len(onnx_model.session.get_outputs()) == 1
    meta = onnx_model.metadata
    assert meta["model"] == "ensemble"
    assert [m["weights_sha256"] for m in json.loads(meta["members"])] == [
        registry.get_model_entry(name).pretrained.sha256 for name in PINNED
    ]
    # Its outputs on 500 test images, in two batches, are the PyTorch ensemble's within the
    # export tolerance, and so are its labels (its members' fp32 logits, combined as
    # Ensemble.forward does; tests/test_fast_predict.py shows that is the same).
    test = mnist_test_set(mnist_root)
    # Each member's logits over the temperature its config.json stores, as Ensemble does: a
    # wrong temperature moves every output, not only the labels of a few close calls.
    log_probs = torch.stack([
        torch.log_softmax(fp32_logits(n, mnist_root)[:500] / _temperature(n), 1) for n in PINNED
    ])  # fmt: skip
    expected = torch.logsumexp(log_probs - math.log(len(PINNED)), dim=0)
    got = onnx_model.logits(test.images[:500], batch_size=250)
    assert torch.equal(got.argmax(1), expected.argmax(1))
    compare_logits(got, expected, "the ensemble on 500 test images")


def _temperature(name: str) -> float:
    return stored_temperature(published_model(name)) or 1.0


# --- refusals -----------------------------------------------------------------------------------


def _tampered(original: bytes) -> bytes:
    """The ONNX file with the last layer's bias shifted, as a broken exporter might write it."""
    import onnx

    proto = onnx.load_from_string(original)
    float32 = onnx.TensorProto.FLOAT
    bias = next(
        t for t in reversed(proto.graph.initializer) if len(t.dims) == 1 and t.data_type == float32
    )
    values = onnx.numpy_helper.to_array(bias) + np.float32(0.5)
    bias.CopyFrom(onnx.numpy_helper.from_array(values, bias.name))
    return proto.SerializeToString()


def test_a_file_that_does_not_reproduce_the_model_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = writer._onnx_bytes
    monkeypatch.setattr(writer, "_onnx_bytes", lambda *args: _tampered(real(*args)))
    target = tmp_path / "model.onnx"
    target.write_bytes(b"the previous export")
    with pytest.raises(ExportError, match="differ from the model's by up to 0.5"):
        export(seeded("simplecnn"), target)
    assert target.read_bytes() == b"the previous export"  # kept whole, not replaced
    assert_no_leftovers(tmp_path, "model.onnx")
    # With check=False the same file is written, and says that it was not checked.
    export(seeded("simplecnn"), target, check=False)
    assert OnnxModel(target).metadata["tolerance"] == "not checked"


@pytest.fixture(scope="module")
def simplecnn_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A seeded SimpleCNN's checked export, for the tests that only read a file (not modify it)."""
    return export(seeded("simplecnn").eval(), tmp_path_factory.mktemp("simplecnn") / "model.onnx")


def test_a_files_temperature_is_checked_and_applied(simplecnn_onnx: Path) -> None:
    import onnx

    target = simplecnn_onnx
    plain = OnnxModel(target)
    assert plain.temperature is None and "temperature" not in plain.metadata
    images = check_images()
    logits = plain.logits(images)
    assert torch.equal(plain.predict(images).probs, plain.predict(images, calibrated=False).probs)

    def with_temperature(text: str) -> bytes:
        proto = onnx.load(target)
        proto.metadata_props.add(key="temperature", value=text)
        return proto.SerializeToString()

    scaled = OnnxModel(with_temperature("2.0"))
    assert scaled.temperature == 2.0
    torch.testing.assert_close(scaled.predict(images).probs, (logits / 2).softmax(1))
    for bad in ("0", "-1.5", "nan", "inf", "warm"):
        with pytest.raises(ExportError, match="not a finite number > 0"):
            OnnxModel(with_temperature(bad))


def test_onnx_runtime_takes_its_threads_from_omp_num_threads(
    simplecnn_onnx: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def threads(**kwargs: int) -> int:
        options = OnnxModel(simplecnn_onnx, **kwargs).session.get_session_options()
        return options.intra_op_num_threads

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert threads() == 1
    assert threads(threads=2) == 2  # the argument wins over the variable
    for unusable in ("0", "-2", "two", ""):
        monkeypatch.setenv("OMP_NUM_THREADS", unusable)
        assert threads() == 0  # ONNX Runtime's own choice
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert threads() == 0


def test_a_file_onnx_runtime_cannot_load_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writer, "_onnx_bytes", lambda *args: b"not an onnx file")
    with pytest.raises(ExportError, match="ONNX Runtime cannot load"):
        export(seeded("simplecnn"), tmp_path / "model.onnx")
    assert_no_leftovers(tmp_path)


def test_a_model_the_exporter_cannot_trace_is_refused(tmp_path: Path) -> None:
    class DataDependent(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if x.sum() > 0:  # control flow on values: not one graph
                return x.flatten(1)[:, :10]
            return -x.flatten(1)[:, :10]

    for fmt in ("onnx", "pt2"):
        with pytest.raises(ExportError, match="could not export"):
            export(DataDependent(), tmp_path / f"model.{fmt}", fmt)
    assert_no_leftovers(tmp_path)


def test_bad_arguments_are_refused_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = seeded("simplecnn")
    with pytest.raises(InvalidArgumentError, match="Unknown export format"):
        export(model, tmp_path / "m.tflite", "tflite")
    with pytest.raises(InvalidArgumentError, match="opset"):
        export(model, tmp_path / "m.onnx", opset="17")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="check_images"):
        export(model, tmp_path / "m.onnx", check_images=torch.rand(4, 28, 28))
    # A file named for one format is never written in the other; a missing folder is named.
    with pytest.raises(InvalidArgumentError, match=r"m\.onnx has the \.onnx extension.*m\.pt2"):
        export(model, tmp_path / "m.onnx", "pt2")
    with pytest.raises(FileNotFoundError, match=r"No folder .*missing to write m\.onnx in"):
        export(model, tmp_path / "missing" / "m.onnx")
    argv = ["export", str(HUB / "simplecnn"), "--format", "pt2", "--out", str(tmp_path / "m.onnx")]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("mnist-zoo: error: m.onnx has the .onnx")
    assert_no_leftovers(tmp_path)


def test_a_missing_extra_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now fails
    with pytest.raises(MissingDependencyError, match=r'pip install "mnist-zoo\[export\]"'):
        export(seeded("simplecnn"), tmp_path / "m.onnx")
    with pytest.raises(ImportError, match="onnxruntime is not installed"):
        OnnxModel(b"")
    assert cli.main(["export", str(HUB / "simplecnn"), "--out", str(tmp_path / "m.onnx")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and 'pip install "mnist-zoo[export]"' in err
    # .pt2 needs only PyTorch; the extension alone asks for it.
    export(seeded("simplecnn"), tmp_path / "m.pt2")
    assert_no_leftovers(tmp_path, "m.pt2")


# --- model.onnx in Hub folders and repos ---------------------------------------------------------


@pytest.fixture(scope="module")
def onnx_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of hub/simplecnn with its model.onnx written and recorded (do not modify it)."""
    copy = tmp_path_factory.mktemp("onnx-folder") / "simplecnn"
    copy.mkdir()
    for name in ("config.json", "model.safetensors", "README.md"):
        shutil.copy(HUB / "simplecnn" / name, copy / name)
    weights = (copy / "model.safetensors").read_bytes()
    before = json.loads((copy / "config.json").read_text())
    before.pop(ONNX_SHA256_KEY, None)
    write_onnx(copy)
    after = json.loads((copy / "config.json").read_text())
    assert after.pop(ONNX_SHA256_KEY) == hashlib.sha256((copy / ONNX_NAME).read_bytes()).hexdigest()
    assert after == before and (copy / "model.safetensors").read_bytes() == weights
    return copy


@pytest.fixture
def folder(onnx_folder: Path, tmp_path: Path) -> Path:
    """A copy of :func:`onnx_folder` this test may change."""
    return Path(shutil.copytree(onnx_folder, tmp_path / "simplecnn"))


def test_a_folders_onnx_file_loads_verified(folder: Path) -> None:
    onnx_model = load_onnx(folder)
    assert (
        onnx_model.metadata["weights_sha256"]
        == registry.get_model_entry("simplecnn").pretrained.sha256
    )
    assert onnx_model.predict(check_images()).labels.tolist()[:3] == [0, 1, 2]
    with (folder / ONNX_NAME).open("ab") as f:
        f.write(b"\0")
    with pytest.raises(ChecksumMismatchError, match="not the one the folder was published with"):
        load_onnx(folder)
    config = json.loads((folder / "config.json").read_text())
    del config[ONNX_SHA256_KEY]
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(HubFileNotFoundError, match=ONNX_SHA256_KEY):
        load_onnx(folder)


def test_names_without_an_onnx_file_are_refused() -> None:
    with pytest.raises(InvalidArgumentError, match="ensemble"):
        load_onnx("ensemble")
    with pytest.raises(UnknownModelError):
        load_onnx("minivg")


def test_a_registered_names_onnx_file_is_pinned_through_its_config(
    folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with FakeHub() as server:
        commit = server.add_folder("test/onnxcnn", folder)
        config_sha = hashlib.sha256((folder / "config.json").read_bytes()).hexdigest()
        pin = registry.PretrainedWeights(
            repo_id="test/onnxcnn",
            revision=commit,
            sha256=hub.sha256_file(folder / "model.safetensors"),
            config_sha256=config_sha,
        )
        entry = ModelEntry("onnxcnn", mnist_zoo.SimpleCNN, "test-only", None, pin)
        monkeypatch.setitem(registry._REGISTRY, "onnxcnn", entry)
        where = {"endpoint": server.url, "cache_dir": tmp_path / "cache"}
        onnx_model = load_onnx("onnxcnn", **where)
        assert onnx_model.metadata["model"] == "simplecnn"
        # A tampered file on the Hub: refused and evicted, so the next call downloads afresh.
        good = (folder / ONNX_NAME).read_bytes()
        server.set_file("test/onnxcnn", commit, ONNX_NAME, good[:-1] + b"\1")
        shutil.rmtree(tmp_path / "cache")
        with pytest.raises(ChecksumMismatchError, match="the SHA-256 its config.json records"):
            load_onnx("onnxcnn", **where)
        # A config that is not the pinned one is refused before the ONNX file is fetched.
        other = dataclasses.replace(pin, config_sha256="0" * 64)
        monkeypatch.setitem(
            registry._REGISTRY, "onnxcnn", dataclasses.replace(entry, pretrained=other)
        )
        with pytest.raises(ChecksumMismatchError, match="pins"):
            load_onnx("onnxcnn", **where)


@pytest.mark.parametrize("name", PINNED)
def test_the_published_folders_carry_a_verified_onnx_file(name: str) -> None:
    config = json.loads((HUB / name / "config.json").read_text())
    assert config[ONNX_SHA256_KEY] == hub.sha256_file(HUB / name / ONNX_NAME)
    onnx_model = load_onnx(HUB / name)
    assert onnx_model.metadata["weights_sha256"] == config["sha256"]
    expected = batched_logits(published_model(name), check_images())
    compare_logits(onnx_model.logits(check_images()), expected, name)
