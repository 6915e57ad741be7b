"""The registered networks: shapes, the input convention, export and save, as timm tests them.

The generic tests are parametrised over ``mnist_zoo.list_models()``, so a newly registered model
gets them without editing a list; the study's three networks also keep their exact parameter
counts.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import mnist_zoo
from mnist_zoo import count_parameters, create_model

STUDY_PARAMETERS = {"simplecnn": 421_642, "deepercnn": 870_634, "minivgg": 2_921_930}
#: Every registered model, read at collection time (as timm's tests do).
MODELS = mnist_zoo.list_models()
PRETRAINED = mnist_zoo.list_pretrained()


def test_the_studys_models_are_registered() -> None:
    assert set(STUDY_PARAMETERS) <= set(MODELS)


@pytest.mark.parametrize("name,expected", sorted(STUDY_PARAMETERS.items()))
def test_parameter_counts_match_the_study(name: str, expected: int) -> None:
    assert count_parameters(create_model(name)) == expected


def test_deepercnn_batch_norm_adds_only_bn_parameters() -> None:
    # Four BatchNorm2d layers (32, 32, 64, 64 channels), two parameters per channel.
    extra = 2 * (32 + 32 + 64 + 64)
    assert count_parameters(create_model("deepercnn", batch_norm=True)) == 870_634 + extra


@pytest.mark.parametrize("name", MODELS)
def test_forward_shape_and_batch_independence(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name).eval()
    x = torch.rand(5, 1, 28, 28)
    with torch.no_grad():
        out = model(x)
        one = model(x[2:3])
    assert out.shape == (5, 10)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out[2:3], one, rtol=1e-4, atol=1e-5)


def test_pooling_geometry_minivgg_reaches_3x3() -> None:
    model = create_model("minivgg").eval()
    with torch.no_grad():
        feats = model.features(model.normalize(torch.rand(2, 1, 28, 28)))
    assert feats.shape == (2, 256, 3, 3)


@pytest.mark.parametrize("name", ["simplecnn", "deepercnn"])
def test_pooling_geometry_cnns_reach_7x7(name: str) -> None:
    model = create_model(name).eval()
    with torch.no_grad():
        feats = model.features(model.normalize(torch.rand(2, 1, 28, 28)))
    assert feats.shape == (2, 64, 7, 7)


def test_normalisation_lives_inside_the_model() -> None:
    model = create_model("simplecnn")
    x = torch.full((1, 1, 28, 28), mnist_zoo.MNIST_MEAN)
    assert torch.allclose(model.normalize(x), torch.zeros_like(x), atol=1e-7)
    # Nothing about normalisation is saved with the weights.
    assert not any("normalize" in k for k in model.state_dict())


@pytest.mark.parametrize(
    "shape", [(1, 28, 28), (2, 3, 28, 28), (2, 1, 32, 32), (2, 28, 28, 1)], ids=str
)
def test_wrong_input_shape_is_a_clear_error(shape: tuple[int, ...]) -> None:
    model = create_model("simplecnn")
    with pytest.raises(ValueError, match=r"Expected images of shape \(N, 1, 28, 28\)"):
        model(torch.rand(shape))


def test_uint8_input_is_a_clear_error() -> None:
    model = create_model("simplecnn")
    with pytest.raises(TypeError, match="float images in \\[0, 1\\]"):
        model(torch.zeros(1, 1, 28, 28, dtype=torch.uint8))


def test_minivgg_dropout_is_configurable() -> None:
    model = create_model("minivgg", dropout=0.25)
    drops = [m for m in model.modules() if isinstance(m, torch.nn.Dropout)]
    assert [d.p for d in drops] == [0.25]


def test_models_work_in_channels_last_and_bf16() -> None:
    model = create_model("deepercnn").eval().to(memory_format=torch.channels_last)
    x = torch.rand(4, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
    assert out.shape == (4, 10)


@pytest.mark.parametrize("precision", ["fp32", "bf16-channels-last"])
@pytest.mark.parametrize("name", MODELS)
def test_fast_layers_give_bitwise_the_plain_models_outputs_and_gradients(
    name: str, precision: str
) -> None:
    # Features pools before its ReLU and Flatten returns channels-last gradients: both must be
    # pure speed-ups, or the published weights would no longer be reproducible.
    torch.manual_seed(0)
    model = create_model(name)
    plain = mnist_zoo.models.with_plain_layers(model)
    bf16 = precision.startswith("bf16")
    x, y = torch.rand(16, 1, 28, 28), torch.randint(0, 10, (16,))
    results = []
    for m in (model, plain):
        if bf16:
            m.to(memory_format=torch.channels_last)
        torch.manual_seed(1)  # the same dropout mask for both
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = m(x)
        torch.nn.functional.cross_entropy(out.float(), y).backward()
        results.append((out, [p.grad for p in m.parameters()]))
    (out, grads), (plain_out, plain_grads) = results
    assert torch.equal(out, plain_out)
    assert all(torch.equal(g, h) for g, h in zip(grads, plain_grads, strict=True))
    assert list(model.state_dict()) == list(plain.state_dict())


def test_flatten_returns_the_gradient_in_its_inputs_memory_format() -> None:
    leaf = torch.rand(2, 4, 3, 3, requires_grad=True)
    x = leaf.contiguous(memory_format=torch.channels_last)
    out = mnist_zoo.models.Flatten()(x)
    seen: list[bool] = []
    x.register_hook(lambda g: seen.append(g.is_contiguous(memory_format=torch.channels_last)))
    out.sum().backward()
    assert seen == [True]
    assert torch.equal(out, torch.flatten(x, 1))


def test_features_print_in_the_studys_order() -> None:
    layers = [type(m).__name__ for m in create_model("simplecnn").features]
    assert layers == ["Conv2d", "ReLU", "MaxPool2d"] * 2


def test_with_plain_layers_swaps_only_the_fast_layers() -> None:
    model = create_model("minivgg")
    plain = mnist_zoo.models.with_plain_layers(model)
    assert type(plain.features) is torch.nn.Sequential
    assert type(plain.classifier[0]) is torch.nn.Flatten
    assert type(model.features) is mnist_zoo.models.Features  # the original is left alone
    assert [type(m) for m in plain.features] == [type(m) for m in model.features]


def test_features_keeps_a_pool_that_returns_indices_after_its_relu() -> None:
    layers = (torch.nn.ReLU(), torch.nn.MaxPool2d(2, return_indices=True))
    x = torch.randn(1, 2, 4, 4)
    values, indices = mnist_zoo.models.Features(*layers)(x)
    plain_values, plain_indices = torch.nn.Sequential(*layers)(x)
    assert torch.equal(values, plain_values) and torch.equal(indices, plain_indices)


@pytest.mark.parametrize("name", MODELS)
def test_models_export_with_the_fast_layers(name: str) -> None:
    # Users export zoo models; the fast layers must not get in torch.export's way.
    torch.manual_seed(0)
    model = create_model(name).eval()
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(torch.export.export(model, (x,)).module()(x), model(x))


@pytest.mark.parametrize("name", MODELS)
def test_uint8_and_wrong_shape_errors_for_every_model(name: str) -> None:
    model = create_model(name)
    with pytest.raises(TypeError, match="float images in \\[0, 1\\]"):
        model(torch.zeros(1, 1, 28, 28, dtype=torch.uint8))
    with pytest.raises(mnist_zoo.errors.ImageError, match=r"\(N, 1, 28, 28\)"):
        model(torch.rand(1, 28, 28))


@pytest.mark.parametrize("name", MODELS)
def test_state_dict_round_trips_through_safetensors(name: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = create_model(name).eval()
    save_file(model.state_dict(), tmp_path / "model.safetensors")
    torch.manual_seed(1)
    fresh = create_model(name).eval()
    fresh.load_state_dict(load_file(tmp_path / "model.safetensors"))
    x = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(fresh(x), model(x))


@pytest.mark.parametrize("name", MODELS)
def test_created_models_record_their_provenance(name: str) -> None:
    assert create_model(name).pretrained_cfg == {"architecture": name, "model_kwargs": {}}


def test_provenance_holds_the_builders_arguments() -> None:
    model = create_model("DeeperCNN", batch_norm=True)
    assert model.pretrained_cfg == {
        "architecture": "deepercnn",
        "model_kwargs": {"batch_norm": True},
    }


@pytest.mark.parametrize("name", PRETRAINED)
def test_pretrained_weights_are_pinned(name: str) -> None:
    weights = mnist_zoo.registry.get_model_entry(name).pretrained
    assert weights is not None
    assert re.fullmatch(r"[0-9a-f]{64}", weights.sha256)
    assert weights.repo_id.count("/") == 1 and weights.revision
    assert weights.filename.endswith(".safetensors")
    assert 0.9 < weights.metrics["test_accuracy"] <= 1


def test_the_pixel_statistics_come_from_the_data_layer() -> None:
    assert mnist_zoo.models.MNIST_MEAN == mnist_zoo.data.MNIST_MEAN == 0.1307
    assert mnist_zoo.models.MNIST_STD == mnist_zoo.data.MNIST_STD == 0.3081
    standardize = mnist_zoo.models.Standardize()
    assert (standardize.mean, standardize.std) == (0.1307, 0.3081)
