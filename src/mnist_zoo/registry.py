"""A timm-style model registry: one decorator registers a model, one call creates it.

```python
import mnist_zoo
mnist_zoo.list_models("*cnn")        # ['deepercnn', 'simplecnn']
model = mnist_zoo.create_model("minivgg")
model.pretrained_cfg                 # {'architecture': 'minivgg', 'model_kwargs': {}}
```

The registry knows names, builders, descriptions, published weights and, optionally, a model's
own training recipe. It does not import the training package: a model registered without a
recipe trains with the base recipe, which :func:`mnist_zoo.training.get_recipe` resolves.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

from torch import nn

from .errors import InvalidArgumentError, UnknownModelError

if TYPE_CHECKING:
    from .training import TrainConfig

__all__ = [
    "ModelEntry",
    "PretrainedWeights",
    "Recipe",
    "UnknownModelError",
    "count_parameters",
    "create_model",
    "get_model_entry",
    "list_models",
    "list_pretrained",
    "model_info",
    "register_model",
]

F = TypeVar("F", bound=Callable[..., nn.Module])

#: A model's own training recipe: a ``TrainConfig``, or a dict of its fields.
Recipe: TypeAlias = "TrainConfig | dict[str, Any]"


@dataclass(frozen=True)
class PretrainedWeights:
    """Where a model's published weights live and what they were measured to do.

    In the spirit of torchvision's ``Weights.meta``: the weights carry their own metadata.
    ``sha256`` and ``size`` pin the exact bytes of ``filename`` at ``revision`` of ``repo_id``,
    ``config_sha256`` those of the ``config.json`` beside it; ``scripts/release.py --pins``
    prints all three. Hashes are hex and compared case-insensitively.

    Attributes:
        repo_id: The Hub repo, ``"owner/name"``.
        revision: The tag, branch or commit the weights are pinned to.
        sha256: The SHA-256 of the weights file, as hex.
        filename: The weights file in the repo.
        metrics: What the weights measured, e.g. ``{"test_accuracy": 0.9953}``.
        size: The weights file's size in bytes, checked before a byte is read; ``None``: the
            size is not pinned, and the file is only bounded by what its architecture can hold.
        config_sha256: The SHA-256 of the repo's ``config.json`` at ``revision``; ``None``:
            the config is not pinned (its architecture must still be the registered one).
    """

    repo_id: str
    revision: str
    sha256: str
    filename: str = "model.safetensors"
    metrics: dict[str, float] = field(default_factory=dict)
    size: int | None = None
    config_sha256: str | None = None


@dataclass(frozen=True)
class ModelEntry:
    """Everything the registry knows about one model name.

    Attributes:
        name: The registered name, lower case.
        builder: The function that builds a fresh model; keyword arguments go to it.
        description: The first line of the builder's docstring.
        recipe: The model's own training recipe as given to :func:`register_model`, or
            ``None``: the model trains with the base recipe.
        pretrained: The pin of its default release (see :attr:`default_release`), or ``None``
            when it has no published weights.
        releases: Every published release, tag -> pin, oldest first; an entry given only
            ``pretrained`` holds it under its revision.
    """

    name: str
    builder: Callable[..., nn.Module]
    description: str
    recipe: Recipe | None = None
    pretrained: PretrainedWeights | None = None
    releases: Mapping[str, PretrainedWeights] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # An entry built with one pin (as before releases existed) holds it as its only release.
        if self.pretrained is not None and not self.releases:
            object.__setattr__(self, "releases", {self.pretrained.revision: self.pretrained})

    @property
    def default_release(self) -> str | None:
        """The tag whose pin is :attr:`pretrained` (what a load without a revision gets).

        Returns:
            The tag, or ``None`` when the model has no published weights.
        """
        return next((tag for tag, pin in self.releases.items() if pin is self.pretrained), None)

    def release(self, revision: str | None = None) -> PretrainedWeights | None:
        """The pin of a release: by its tag, or by the revision (tag or commit) it pins.

        Args:
            revision: A tag of :attr:`releases`, or a pin's ``revision``; ``None``: the
                default release.

        Returns:
            The pin, or ``None`` when the revision is not pinned.
        """
        if revision is None:
            return self.pretrained
        if revision in self.releases:
            return self.releases[revision]
        return next((pin for pin in self.releases.values() if pin.revision == revision), None)


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(
    fn: F | None = None,
    *,
    name: str | None = None,
    recipe: Recipe | None = None,
    pretrained: PretrainedWeights | Mapping[str, PretrainedWeights] | None = None,
    default_release: str | None = None,
) -> F | Callable[[F], F]:
    """Register a model builder under ``name`` (default: the function's name).

    Use bare (``@register_model``) or with arguments
    (``@register_model(recipe=TrainConfig(epochs=20), pretrained=PretrainedWeights(...))``).
    The builder's docstring's first line becomes the model's description. Versions are data:
    each release tag is pinned on its own, ``pretrained={"v0.1.0": ..., "v0.2.0": ...}``,
    and ``default_release`` says which one a load without a revision gets.

    Args:
        fn: The builder, when used bare as ``@register_model``.
        name: The name to register under, case-insensitive; defaults to the builder's name.
        recipe: The model's own training recipe, a ``TrainConfig`` (or a dict of its fields,
            kept as given). ``None`` (the default): it trains with the base recipe.
        pretrained: Where the model's published weights are, if it has any: one pin (its
            ``revision`` is then its tag), or a mapping of release tag -> pin.
        default_release: The tag loaded when no revision is asked for; needed when
            ``pretrained`` maps several tags.

    Returns:
        The builder unchanged, or, used with arguments, a decorator that registers and
        returns it.

    Raises:
        InvalidArgumentError: The name is already registered, or ``default_release`` is not
            one of the pinned tags (a ``ValueError``).
    """
    releases, default = _releases(pretrained, default_release)

    def decorator(builder: F) -> F:
        key = (name or builder.__name__).lower()
        if key in _REGISTRY:
            raise InvalidArgumentError(f"A model named {key!r} is already registered.")
        doc = (builder.__doc__ or "").strip().splitlines()
        _REGISTRY[key] = ModelEntry(
            name=key,
            builder=builder,
            description=doc[0] if doc else "",
            recipe=dict(recipe) if isinstance(recipe, Mapping) else recipe,
            pretrained=default,
            releases=releases,
        )
        return builder

    return decorator(fn) if fn is not None else decorator


def _releases(
    pretrained: PretrainedWeights | Mapping[str, PretrainedWeights] | None, default: str | None
) -> tuple[dict[str, PretrainedWeights], PretrainedWeights | None]:
    """register_model's pins as (tag -> pin, the default pin)."""
    if pretrained is None:
        return {}, None
    if isinstance(pretrained, PretrainedWeights):
        releases = {pretrained.revision: pretrained}
    else:
        releases = dict(pretrained)
    if default is None and len(releases) == 1:
        default = next(iter(releases))
    if default not in releases:
        raise InvalidArgumentError(
            f"default_release={default!r} is not one of the pinned tags "
            f"({', '.join(releases) or 'none'}): name the tag a load without a revision gets."
        )
    return releases, releases[default]


def list_models(pattern: str = "*", *, pretrained: bool = False) -> list[str]:
    """Names of the registered models, sorted.

    Args:
        pattern: An ``fnmatch`` pattern the names must match, case-insensitive.
        pretrained: List only models that have published weights.

    Returns:
        The matching names, sorted.
    """
    return sorted(
        n
        for n, e in _REGISTRY.items()
        if fnmatch.fnmatch(n, pattern.lower()) and (not pretrained or e.pretrained is not None)
    )


def list_pretrained(pattern: str = "*", *, tags: bool = False) -> list[str]:
    """Names of the registered models that have published weights, sorted.

    Args:
        pattern: An ``fnmatch`` pattern the names must match, case-insensitive.
        tags: List every pinned release as ``"name@tag"`` (the form :func:`load_pretrained
            <mnist_zoo.hub.load_pretrained>` takes), in each model's release order.

    Returns:
        The matching names, sorted; with ``tags``, one ``"name@tag"`` per release.
    """
    names = list_models(pattern, pretrained=True)
    if not tags:
        return names
    return [f"{n}@{tag}" for n in names for tag in _REGISTRY[n].releases]


def get_model_entry(name: str) -> ModelEntry:
    """The registry entry for ``name``.

    Args:
        name: A registered model name, case-insensitive.

    Returns:
        The entry.

    Raises:
        UnknownModelError: No model of that name is registered (a ``KeyError``); the message
            suggests the closest name and lists them all.
        TypeError: ``name`` is not a string.
    """
    if not isinstance(name, str):
        raise TypeError(f"Model name must be a string, got {type(name).__name__}.")
    try:
        return _REGISTRY[name.lower()]
    except KeyError:
        known = list_models()
        close = difflib.get_close_matches(name.lower(), known, n=1, cutoff=0.4)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise UnknownModelError(name, known, hint) from None


def create_model(name: str, *, num_classes: int | None = None, **kwargs: Any) -> nn.Module:
    """Build a freshly initialised model by registry name.

    As timm does, the model records where it came from in ``model.pretrained_cfg``:
    ``{"architecture": name, "model_kwargs": kwargs}``, which :func:`mnist_zoo.save_pretrained`
    reads, so a created model can be saved without repeating its name. A ``num_classes``
    given is recorded there too, so a saved model loads back with its head.

    Args:
        name: A registered model name, case-insensitive.
        num_classes: The number of outputs, for a task other than the ten digits (e.g. 26
            letters). ``None`` (the default) leaves it to the builder: 10 for the zoo's models,
            and nothing is recorded.
        **kwargs: Passed to the model's builder (e.g. ``batch_norm=True``). timm's
            ``pretrained=False`` is accepted and changes nothing.

    Returns:
        The new model, in training mode as PyTorch builds it.

    Raises:
        UnknownModelError: No model of that name is registered (a ``KeyError``).
        InvalidArgumentError: The builder rejects ``num_classes`` (not a positive integer), or
            ``pretrained=True`` is asked for: :func:`mnist_zoo.load_pretrained` loads weights.
        TypeError: ``name`` is not a string, or the builder rejects ``kwargs``.
    """
    entry = get_model_entry(name)
    if kwargs.pop("pretrained", False):
        # timm's spelling; the registry sits below the Hub layer, so it points there instead.
        raise InvalidArgumentError(
            f"create_model builds fresh weights; for the published ones call "
            f"mnist_zoo.load_pretrained({entry.name!r}) (num_classes= works there too)."
        )
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    model = entry.builder(**kwargs)
    model.pretrained_cfg = {"architecture": entry.name, "model_kwargs": dict(kwargs)}
    return model


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (elements, not tensors) in ``model``.

    Args:
        model: Any module.
        trainable_only: Count only parameters that require gradients.

    Returns:
        The number of elements.
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def model_info(name: str, **kwargs: Any) -> dict[str, Any]:
    """What the registry knows about a model, with its parameter count.

    Args:
        name: A registered model name, case-insensitive.
        **kwargs: Passed to the model's builder, for the parameter count.

    Returns:
        A dict with ``name``, ``description``, ``parameters`` (the count), ``recipe`` (the
        model's own recipe as a plain dict, empty when it trains with the base recipe) and
        ``pretrained`` (the default release's :class:`PretrainedWeights` or ``None``),
        ``default_release`` (its tag) and ``releases`` (tag -> pin, every release).

    Raises:
        UnknownModelError: No model of that name is registered (a ``KeyError``).
    """
    entry = get_model_entry(name)
    model = entry.builder(**kwargs)
    return {
        "name": entry.name,
        "description": entry.description,
        "parameters": count_parameters(model),
        "recipe": _as_dict(entry.recipe),
        "pretrained": entry.pretrained,
        "default_release": entry.default_release,
        "releases": dict(entry.releases),
    }


def _as_dict(recipe: Recipe | None) -> dict[str, Any]:
    if recipe is None:
        return {}
    if dataclasses.is_dataclass(recipe) and not isinstance(recipe, type):
        return dataclasses.asdict(recipe)
    return dict(recipe)
