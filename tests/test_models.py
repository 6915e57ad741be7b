"""The registered networks: shapes, the input convention, export and save, as timm tests them.

The generic tests are parametrised over ``mnist_zoo.list_models()``, so a newly registered model
gets them without editing a list; the study's three networks also keep their exact parameter
counts.
"""

from __future__ import annotations

import hashlib
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


@pytest.mark.parametrize("name", MODELS)
def test_images_in_another_convention_are_refused_at_inference(name: str) -> None:
    model = create_model(name).eval()
    x = torch.rand(4, 1, 28, 28)
    for wrong, needle in [
        (x * 255, "Divide 0-255 values by 255"),
        ((x - 0.1307) / 0.3081, "the models standardise images themselves"),
        (x * 2 - 1, "the models standardise images themselves"),
        (torch.full_like(x, float("nan")), "NaN or infinite"),
    ]:
        with pytest.raises(mnist_zoo.errors.ImageError, match=needle):
            model(wrong)
    # A resampling's overshoot is not another convention; training is not checked (the
    # Trainer checks its data once, and a batch check per step would cost a sync on a GPU).
    assert model(x * 1.2 - 0.1).shape == (4, 10)
    assert model.train()(x * 255).shape == (4, 10)


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
    fast = {mnist_zoo.models.MaxPool2d: torch.nn.MaxPool2d}
    assert [type(m) for m in plain.features] == [fast.get(type(m), type(m)) for m in model.features]
    assert mnist_zoo.models.MaxPool2d in {type(m) for m in model.features}


@pytest.mark.parametrize("name", MODELS)
def test_fast_layers_give_bitwise_the_plain_models_logits_at_inference(name: str) -> None:
    # Without autograd MaxPool2d takes elementwise maxima instead of PyTorch's kernel.
    torch.manual_seed(0)
    model = create_model(name).eval()
    plain = mnist_zoo.models.with_plain_layers(model)
    x = torch.rand(40, 1, 28, 28)
    with torch.inference_mode():
        assert torch.equal(model(x), plain(x))
    with torch.no_grad():
        assert torch.equal(model.forward_features(x), plain.forward_features(x))


@pytest.mark.parametrize(
    "shape", [(2, 3, 28, 28), (2, 3, 7, 7), (3, 5, 5), (1, 1, 2, 2), (4, 2, 3, 2)]
)
def test_max_pool_by_maxima_is_the_kernel_to_the_bit(shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    x = torch.randn(shape)
    flat = x.view(-1)
    flat[::7], flat[::11], flat[::13] = float("nan"), float("inf"), -float("inf")
    flat[::5] = 0.0  # ties
    pool, kernel = mnist_zoo.models.MaxPool2d(2, 2), torch.nn.MaxPool2d(2, 2)
    with torch.no_grad():
        assert pool._by_maxima(x)
        assert torch.equal(pool(x).nan_to_num(), kernel(x).nan_to_num())
        assert torch.equal(pool(x).isnan(), kernel(x).isnan())


def test_max_pool_keeps_the_kernel_where_it_could_differ_or_is_fast() -> None:
    pool = mnist_zoo.models.MaxPool2d(2, 2)
    x = torch.zeros(1, 2, 4, 4)  # every window a tie
    leaf = x.clone().requires_grad_()
    assert not pool._by_maxima(leaf)  # a gradient is recorded
    pool(leaf).sum().backward()
    kernel_leaf = x.clone().requires_grad_()
    torch.nn.MaxPool2d(2, 2)(kernel_leaf).sum().backward()
    assert torch.equal(leaf.grad, kernel_leaf.grad)  # one position per window, not a quarter
    with torch.no_grad():
        assert not pool._by_maxima(x.contiguous(memory_format=torch.channels_last))
        with pytest.raises(RuntimeError):  # too small for a window: the kernel's own error
            pool(torch.zeros(1, 2, 4, 1))
    for other in (
        torch.nn.MaxPool2d(3),
        torch.nn.MaxPool2d(2, 1),
        torch.nn.MaxPool2d(2, padding=1),
        torch.nn.MaxPool2d(2, ceil_mode=True),
        torch.nn.MaxPool2d(2, return_indices=True),
    ):
        settings = {
            k: getattr(other, k)
            for k in ("kernel_size", "stride", "padding", "dilation", "return_indices", "ceil_mode")
        }
        with torch.no_grad():
            assert not mnist_zoo.models.MaxPool2d(**settings)._by_maxima(x)


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
        program = torch.export.export(model, (x,))
        assert torch.equal(program.module()(x), model(x))
    # The graph holds one max-pool per MaxPool2d, not the elementwise maxima of inference.
    pools = [n for n in program.graph.nodes if "max_pool2d" in str(n.target)]
    assert len(pools) == sum(isinstance(m, torch.nn.MaxPool2d) for m in model.modules())
    assert not [n for n in program.graph.nodes if "maximum" in str(n.target)]


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


# ---------------------------------------------------------------------------- features and heads

#: The width of forward_features' output, as each model's docstring documents it.
FEATURE_WIDTHS = {"simplecnn": 128, "deepercnn": 256, "minivgg": 512}
#: SHA-256 over the keys and bytes of ``create_model(name).state_dict()`` after
#: ``torch.manual_seed(0)``: the study's initialisation, which the head API must not change.
SEED0_STATE_DICTS = {
    "simplecnn": "445d7a859c68ba64ba092f478864902b50510e9a13ade5264b36d69313bc5e43",
    "deepercnn": "4afd1361731cc9e70848cef2525fc9c0c7290f14b78c1835e8bbaa9ae71f3f54",
    "minivgg": "8d1fc877753a0be43cd97440e4f04155f4793474af1a40e4e8f22290d2114d79",
}
HUB = Path(__file__).resolve().parents[1] / "hub"


def _state_sha256(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for key, value in model.state_dict().items():
        digest.update(key.encode())
        digest.update(value.contiguous().numpy().tobytes())
    return digest.hexdigest()


@pytest.mark.parametrize("name", sorted(SEED0_STATE_DICTS))
def test_seeded_creation_draws_the_same_initial_weights_as_the_study(name: str) -> None:
    torch.manual_seed(0)
    assert _state_sha256(create_model(name)) == SEED0_STATE_DICTS[name]


@pytest.mark.parametrize("name", sorted(SEED0_STATE_DICTS))
def test_the_published_weights_still_fit_the_default_model(name: str) -> None:
    published = load_file(HUB / name / "model.safetensors")
    state = create_model(name).state_dict()
    assert sorted(state) == sorted(published)
    assert {k: tuple(v.shape) for k, v in state.items()} == {
        k: tuple(v.shape) for k, v in published.items()
    }


@pytest.mark.parametrize("name", MODELS)
def test_forward_features_have_the_documented_shape(name: str) -> None:
    model = create_model(name).eval()
    with torch.no_grad():
        features = model.forward_features(torch.rand(3, 1, 28, 28))
    assert features.shape == (3, model.num_features)
    assert model.num_features == model.get_classifier().in_features
    if name in FEATURE_WIDTHS:
        assert model.num_features == FEATURE_WIDTHS[name]
        assert f"(N, {FEATURE_WIDTHS[name]})" in (type(model).__doc__ or "")


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("name", MODELS)
def test_forward_is_forward_head_of_forward_features_to_the_bit(name: str, train: bool) -> None:
    torch.manual_seed(0)
    model = create_model(name).train(train)
    x = torch.rand(6, 1, 28, 28)
    torch.manual_seed(1)  # the same dropout mask for both
    logits = model(x)
    torch.manual_seed(1)
    assert torch.equal(model.forward_head(model.forward_features(x)), logits)
    plain = mnist_zoo.models.with_plain_layers(model)
    torch.manual_seed(1)
    assert torch.equal(plain.forward_head(plain.forward_features(x)), logits)


def test_minivggs_dropout_belongs_to_the_head() -> None:
    # Features are deterministic in training mode too; the dropout runs in forward_head.
    model = create_model("minivgg").train()
    x = torch.rand(4, 1, 28, 28)
    torch.manual_seed(0)
    first = model.forward_features(x)
    torch.manual_seed(1)
    assert torch.equal(model.forward_features(x), first)
    assert (first >= 0).all()  # after the ReLU


@pytest.mark.parametrize("name", MODELS)
def test_get_classifier_is_the_final_linear(name: str) -> None:
    model = create_model(name)
    head = model.get_classifier()
    assert isinstance(head, torch.nn.Linear) and head is list(model.modules())[-1]
    assert model.num_classes == head.out_features == 10


@pytest.mark.parametrize("name", MODELS)
def test_reset_classifier_changes_only_the_head(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    head = model.get_classifier()
    model.reset_classifier(26)
    after = model.state_dict()
    assert list(after) == list(before)
    new_head = model.get_classifier()
    assert new_head is not head and model.num_classes == 26
    assert new_head.in_features == head.in_features
    head_keys = {k for k in after if after[k].shape != before[k].shape}
    assert head_keys == {f"classifier.{len(model.classifier) - 1}.{p}" for p in ("weight", "bias")}
    assert all(torch.equal(after[k], before[k]) for k in after if k not in head_keys)
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, 26)
    assert model.pretrained_cfg["model_kwargs"] == {"num_classes": 26}


def test_reset_classifier_keeps_the_heads_dtype_and_device() -> None:
    model = create_model("simplecnn").to(torch.float64)
    model.reset_classifier(3)
    assert model.get_classifier().weight.dtype == torch.float64
    assert model(torch.rand(1, 1, 28, 28, dtype=torch.float64)).dtype == torch.float64


@pytest.mark.parametrize("name", MODELS)
def test_num_classes_gives_that_many_logits(name: str) -> None:
    model = create_model(name, num_classes=26).eval()
    with torch.no_grad():
        assert model(torch.rand(2, 1, 28, 28)).shape == (2, 26)
    assert model.num_classes == 26
    assert model.pretrained_cfg == {"architecture": name, "model_kwargs": {"num_classes": 26}}
    # Only the head's shape differs from the ten-digit model.
    ten = {k: v.shape for k, v in create_model(name).state_dict().items()}
    other = {k: v.shape for k, v in model.state_dict().items()}
    assert list(ten) == list(other)
    assert len([k for k in ten if ten[k] != other[k]]) == 2


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "10"])
def test_num_classes_must_be_a_positive_integer(bad: object) -> None:
    with pytest.raises(mnist_zoo.errors.InvalidArgumentError, match="num_classes"):
        create_model("simplecnn", num_classes=bad)  # type: ignore[arg-type]
    model = create_model("deepercnn")
    with pytest.raises(mnist_zoo.errors.InvalidArgumentError, match="num_classes"):
        model.reset_classifier(bad)  # type: ignore[arg-type]
    assert model.num_classes == 10


def test_a_reset_head_is_saved_and_loads_back(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = create_model("deepercnn", batch_norm=True)
    model.reset_classifier(2)
    mnist_zoo.save_pretrained(model, tmp_path / "parity")
    loaded = mnist_zoo.load_pretrained(tmp_path / "parity")
    assert loaded.num_classes == 2
    assert loaded.pretrained_cfg["model_kwargs"] == {"batch_norm": True, "num_classes": 2}
    x = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(loaded(x), model.eval()(x))
