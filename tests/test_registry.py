"""The timm-style registry: list, create, register, info, and helpful errors."""

from __future__ import annotations

import dataclasses

import pytest
from torch import nn

import mnist_zoo
from mnist_zoo import registry


def test_list_models_all_and_patterns() -> None:
    assert mnist_zoo.list_models() == ["deepercnn", "minivgg", "simplecnn"]
    assert mnist_zoo.list_models("*vgg*") == ["minivgg"]
    assert mnist_zoo.list_models("*cnn") == ["deepercnn", "simplecnn"]
    assert mnist_zoo.list_models("nothing*") == []


def test_create_model_returns_the_right_class_and_passes_kwargs() -> None:
    assert isinstance(mnist_zoo.create_model("MiniVGG"), mnist_zoo.MiniVGG)
    model = mnist_zoo.create_model("simplecnn", num_classes=3)
    assert model.classifier[-1].out_features == 3


def test_model_info() -> None:
    info = mnist_zoo.model_info("deepercnn")
    assert info["name"] == "deepercnn"
    assert info["parameters"] == 870_634
    assert "DeeperCNN" in info["description"]


def test_unknown_model_suggests_the_closest_name() -> None:
    with pytest.raises(mnist_zoo.UnknownModelError) as err:
        mnist_zoo.create_model("minivg")
    assert isinstance(err.value, KeyError)
    message = str(err.value)
    assert "did you mean 'minivgg'?" in message.lower()
    assert "deepercnn, minivgg, simplecnn" in message


def test_unknown_model_without_close_match_still_lists_names() -> None:
    with pytest.raises(KeyError, match="Known models: deepercnn, minivgg, simplecnn") as err:
        mnist_zoo.model_info("resnet152")
    assert "did you mean" not in str(err.value).lower()


def test_non_string_name_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="must be a string"):
        mnist_zoo.create_model(3)  # type: ignore[arg-type]


def test_register_model_decorator_bare_and_with_arguments() -> None:
    try:

        @mnist_zoo.register_model
        def tiny_test_net() -> nn.Module:
            """A tiny test net."""
            return nn.Sequential(nn.Flatten(), nn.Linear(784, 10))

        @mnist_zoo.register_model(name="tiny_test_net2", recipe={"epochs": 1})
        def _builder() -> nn.Module:
            return nn.Linear(1, 1)

        assert "tiny_test_net" in mnist_zoo.list_models("tiny*")
        assert mnist_zoo.model_info("tiny_test_net")["description"] == "A tiny test net."
        assert mnist_zoo.model_info("tiny_test_net")["parameters"] == 7850
        assert registry.get_model_entry("tiny_test_net2").recipe == {"epochs": 1}
        with pytest.raises(ValueError, match="already registered"):
            mnist_zoo.register_model(tiny_test_net)
    finally:
        registry._REGISTRY.pop("tiny_test_net", None)
        registry._REGISTRY.pop("tiny_test_net2", None)


def test_unknown_model_error_is_the_packages_error() -> None:
    assert registry.UnknownModelError is mnist_zoo.errors.UnknownModelError
    assert mnist_zoo.UnknownModelError is mnist_zoo.errors.UnknownModelError
    with pytest.raises(mnist_zoo.errors.MnistZooError) as err:
        mnist_zoo.create_model("simplecn")
    assert err.value.name == "simplecn"
    assert err.value.known == ["deepercnn", "minivgg", "simplecnn"]
    assert str(err.value) == (
        "Unknown model 'simplecn'. Did you mean 'simplecnn'? "
        "Known models: deepercnn, minivgg, simplecnn."
    )


def test_registering_a_taken_name_is_an_invalid_argument() -> None:
    with pytest.raises(mnist_zoo.errors.InvalidArgumentError, match="'simplecnn' is already"):
        mnist_zoo.register_model(name="SimpleCNN")(lambda: nn.Linear(1, 1))


def test_timms_pretrained_flag_is_understood() -> None:
    fresh = mnist_zoo.create_model("minivgg", pretrained=False)  # as timm: fresh weights
    assert fresh.pretrained_cfg["model_kwargs"] == {}  # not passed on, not recorded
    with pytest.raises(mnist_zoo.errors.InvalidArgumentError) as info:
        mnist_zoo.create_model("MiniVGG", pretrained=True)
    assert "mnist_zoo.load_pretrained('minivgg')" in str(info.value)  # not a builder TypeError


def test_create_model_records_its_provenance() -> None:
    kwargs = {"num_classes": 3}
    model = mnist_zoo.create_model("SimpleCNN", **kwargs)
    assert model.pretrained_cfg == {"architecture": "simplecnn", "model_kwargs": {"num_classes": 3}}
    kwargs["num_classes"] = 4  # the record is the model's own copy
    assert model.pretrained_cfg["model_kwargs"] == {"num_classes": 3}
    assert "pretrained_cfg" not in model.state_dict()


@dataclasses.dataclass(frozen=True)
class _Config:
    """Stands in for mnist_zoo.training.TrainConfig, which the registry does not import."""

    epochs: int = 10
    lr: float = 3e-3


def test_a_recipe_object_is_kept_as_given_and_reported_as_data() -> None:
    recipe = _Config(epochs=20)
    try:
        mnist_zoo.register_model(name="tiny_recipe_net", recipe=recipe)(lambda: nn.Linear(1, 1))
        assert registry.get_model_entry("tiny_recipe_net").recipe is recipe
        assert mnist_zoo.model_info("tiny_recipe_net")["recipe"] == {"epochs": 20, "lr": 3e-3}
    finally:
        registry._REGISTRY.pop("tiny_recipe_net", None)


@pytest.mark.parametrize("name", ["simplecnn", "deepercnn", "minivgg"])
def test_the_studys_models_train_with_the_base_recipe(name: str) -> None:
    # No recipe of their own: mnist_zoo.training.get_recipe gives them the base recipe.
    assert registry.get_model_entry(name).recipe is None
    info = mnist_zoo.model_info(name)
    assert info["recipe"] == {}
    assert list(info) == [
        "name",
        "description",
        "parameters",
        "recipe",
        "pretrained",
        "default_release",
        "releases",
    ]


def test_create_model_passes_num_classes_only_when_given() -> None:
    try:

        @mnist_zoo.register_model
        def tiny_headless_net() -> nn.Module:
            """A builder that takes no num_classes."""
            return nn.Linear(1, 1)

        model = mnist_zoo.create_model("tiny_headless_net")
        assert model.pretrained_cfg == {"architecture": "tiny_headless_net", "model_kwargs": {}}
        with pytest.raises(TypeError, match="num_classes"):
            mnist_zoo.create_model("tiny_headless_net", num_classes=3)
    finally:
        registry._REGISTRY.pop("tiny_headless_net", None)


def test_create_model_records_num_classes_beside_the_other_kwargs() -> None:
    model = mnist_zoo.create_model("deepercnn", num_classes=26, batch_norm=True)
    assert model.num_classes == 26
    assert model.pretrained_cfg["model_kwargs"] == {"batch_norm": True, "num_classes": 26}
    assert mnist_zoo.create_model("deepercnn").pretrained_cfg["model_kwargs"] == {}
