"""What a model or a trainer says about itself: its architecture, builder kwargs and recipe.

``registry.create_model`` and ``hub.load_pretrained`` record a model's provenance in
``model.pretrained_cfg`` (as timm does), so :func:`~mnist_zoo.hub.save_pretrained` needs no
``name=`` for such a model; a ``Trainer`` adds its config, the recipe.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from torch import nn

from ..errors import InvalidArgumentError
from ..registry import ModelEntry

__all__ = ["default_recipe", "provenance", "recipe_as_dict", "unwrap"]


def unwrap(model_or_trainer: Any) -> tuple[nn.Module, Any, dict[str, Any] | None]:
    """Split what was passed to ``save_pretrained`` into the model and what came with it.

    Args:
        model_or_trainer: A model, or a trainer: anything with an ``nn.Module`` in ``.model``
            and its recipe in ``.config`` (a ``TrainConfig``, or a method returning a dict);
            a ``resolved_config``, if the trainer has one, is preferred.

    Returns:
        The model; the trainer's recipe (``None`` for a bare model); and, when the trainer
        records which registry model it built (``model_name``, ``model_kwargs``), those as a
        fallback provenance, else ``None``.

    Raises:
        TypeError: ``model_or_trainer`` is neither a model nor a trainer.
    """
    if isinstance(model_or_trainer, nn.Module):
        return model_or_trainer, None, None
    model = getattr(model_or_trainer, "model", None)
    if not isinstance(model, nn.Module) or not hasattr(model_or_trainer, "config"):
        raise TypeError(
            "save_pretrained takes a model (nn.Module) or a Trainer (with .model and .config), "
            f"got {type(model_or_trainer).__name__}."
        )
    # A Trainer's resolved_config is the recipe as the run carried it out (the precision used
    # on its device, the global batch size): what a card should show.
    config = getattr(model_or_trainer, "resolved_config", None) or model_or_trainer.config
    if callable(config) and not dataclasses.is_dataclass(config):
        config = config()  # a trainer that gives its recipe as data through a method
    # Trainer.from_recipe records the model it built; a fallback for models without provenance.
    name = getattr(model_or_trainer, "model_name", None)
    known = {"architecture": name, "model_kwargs": getattr(model_or_trainer, "model_kwargs", {})}
    return model, config, known if isinstance(name, str) else None


def provenance(
    model: nn.Module,
    name: str | None,
    model_kwargs: dict[str, Any] | None,
    fallback: Mapping[str, Any] | None = None,
) -> tuple[str, dict[str, Any]]:
    """The registry name and builder kwargs to save a model under.

    An explicit ``name`` wins, with ``model_kwargs`` (default ``{}``). Otherwise the
    architecture and kwargs come from ``model.pretrained_cfg``, then from ``fallback``;
    explicit ``model_kwargs`` still win over the recorded ones.

    Args:
        model: The model to save.
        name: The registry name given by the caller, or ``None``.
        model_kwargs: The builder kwargs given by the caller, or ``None``.
        fallback: Provenance known from elsewhere (a trainer), used when the model has none.

    Returns:
        The registry name and the builder kwargs.

    Raises:
        InvalidArgumentError: No ``name`` and no recorded architecture.
    """
    if name is not None:
        return name, dict(model_kwargs or {})
    cfg = getattr(model, "pretrained_cfg", None)
    if not isinstance(cfg, Mapping) or not isinstance(cfg.get("architecture"), str):
        cfg = fallback
    if cfg is None:
        raise InvalidArgumentError(
            f"Cannot tell which registered architecture this {type(model).__name__} is: it has "
            "no pretrained_cfg (models from create_model() and load_pretrained() have one). "
            "Pass name=, e.g. save_pretrained(model, folder, name='simplecnn')."
        )
    if model_kwargs is None:
        model_kwargs = cfg.get("model_kwargs") or {}
    return cfg["architecture"], dict(model_kwargs)


def recipe_as_dict(recipe: Any) -> dict[str, Any]:
    """A recipe as plain data, the form ``config.json`` and the card store.

    Args:
        recipe: A ``TrainConfig`` (any dataclass instance), a mapping, or ``None``.

    Returns:
        ``dataclasses.asdict(recipe)`` for a dataclass, a copy of a mapping, ``{}`` for None.

    Raises:
        TypeError: ``recipe`` is none of these.
    """
    if recipe is None:
        return {}
    if dataclasses.is_dataclass(recipe) and not isinstance(recipe, type):
        return dataclasses.asdict(recipe)
    if isinstance(recipe, Mapping):
        return dict(recipe)
    raise TypeError(f"A recipe is a TrainConfig or a dict, got {type(recipe).__name__}.")


def default_recipe(entry: ModelEntry) -> dict[str, Any]:
    """The recipe a registered model trains with by default, as plain data.

    Args:
        entry: The model's registry entry.

    Returns:
        ``dataclasses.asdict(mnist_zoo.training.get_recipe(entry.name))``.

    Raises:
        InvalidArgumentError: The entry's registered dict recipe has an invalid setting.
    """
    # Imported here, not at the top: the hub needs training only for this default, and a
    # module-level import would tie the two packages' import order together.
    from ..training import get_recipe

    return recipe_as_dict(get_recipe(entry.name))


#: The recipe settings ``mnist-zoo train`` takes as options, with the option of each.
TRAIN_OPTIONS = {
    "epochs": "--epochs",
    "batch_size": "--batch-size",
    "lr": "--lr",
    "precision": "--precision",
    "seed": "--seed",
    "split_seed": "--split-seed",
    "val_size": "--val-size",
}


def train_command(
    entry: ModelEntry,
    recipe: Mapping[str, Any],
    *,
    release: str | None = None,
    train_images: int | None = None,
) -> str | None:
    """The ``mnist-zoo train`` command that trains ``recipe``, or ``None`` when none does.

    The command starts from the recipe of the model's default release (or of one of its other
    releases) and names, as options, the settings in which ``recipe`` differs from it; the
    starting point with the fewest options wins, ``release`` first on a tie. A recipe that
    differs in a setting the command has no option for (``appearance``, say) has no command.

    Args:
        entry: The registry entry of the architecture.
        recipe: The recipe as ``config.json`` stores it (settings it lacks are the base's).
        release: The release these weights are, tried first.
        train_images: How many training images the run was limited to (``--limit``), or
            ``None`` for all of them.

    Returns:
        The command, e.g. ``"mnist-zoo train simplecnn --release v0.1.0 --precision bf16"``;
        ``None`` for an empty ``recipe`` too.
    """
    from ..training import RELEASE_RECIPES, TrainConfig, get_recipe

    if not recipe:
        return None  # not recorded: no command is known to give it
    try:
        wanted = recipe_as_dict(TrainConfig.from_dict(recipe))
    except (InvalidArgumentError, TypeError):
        return None  # not a recipe this version can train: no command gives it
    starts = [tag for tag in entry.releases if tag in RELEASE_RECIPES and tag != release]
    starts = [release, None, *starts] if release in RELEASE_RECIPES else [None, *starts]
    best: list[str] | None = None
    for tag in starts:
        options = _options(recipe_as_dict(get_recipe(entry.name, tag)), wanted)
        if options is not None and tag not in (None, entry.default_release):
            options = ["--release", tag, *options]
        if options is not None and (best is None or len(options) < len(best)):
            best = options
    if best is None:
        return None
    limit = [] if train_images is None else ["--limit", str(train_images)]
    return " ".join(["mnist-zoo", "train", entry.name, *best, *limit])


def _options(base: Mapping[str, Any], wanted: Mapping[str, Any]) -> list[str] | None:
    """The ``mnist-zoo train`` options that turn recipe ``base`` into ``wanted``, if any do."""
    options: list[str] = []
    for key, value in wanted.items():
        if base.get(key) == value:
            continue
        if key not in TRAIN_OPTIONS or value is None:
            return None  # no option sets this setting (or sets it back to None)
        options += [TRAIN_OPTIONS[key], f"{value:g}" if isinstance(value, float) else str(value)]
    return options
