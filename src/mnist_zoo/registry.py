"""A timm-style model registry: one decorator registers a model, one call creates it.

```python
import mnist_zoo
mnist_zoo.list_models("*cnn")        # ['deepercnn', 'simplecnn']
model = mnist_zoo.create_model("minivgg")
```
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from torch import nn

__all__ = [
    "ModelEntry",
    "PretrainedWeights",
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


@dataclass(frozen=True)
class PretrainedWeights:
    """Where a model's published weights live and what they were measured to do.

    In the spirit of torchvision's ``Weights.meta``: the weights carry their own metadata.
    ``sha256`` pins the exact bytes of ``filename`` at ``revision`` of ``repo_id``.
    """

    repo_id: str
    revision: str
    sha256: str
    filename: str = "model.safetensors"
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelEntry:
    """Everything the registry knows about one model name."""

    name: str
    builder: Callable[..., nn.Module]
    description: str
    recipe: dict[str, Any] = field(default_factory=dict)
    pretrained: PretrainedWeights | None = None


class UnknownModelError(KeyError):
    """Raised for a model name the registry does not know; lists the known names."""

    def __init__(self, name: str, known: list[str]) -> None:
        self.name = name
        self.known = known
        close = difflib.get_close_matches(name.lower(), known, n=1, cutoff=0.4)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        self.message = f"Unknown model {name!r}.{hint} Known models: {', '.join(known) or 'none'}."
        super().__init__(self.message)

    def __str__(self) -> str:  # KeyError would repr() the message, quoting it twice
        return self.message


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(
    fn: F | None = None,
    *,
    name: str | None = None,
    recipe: dict[str, Any] | None = None,
    pretrained: PretrainedWeights | None = None,
) -> F | Callable[[F], F]:
    """Register a model builder under ``name`` (default: the function's name).

    Use bare (``@register_model``) or with arguments
    (``@register_model(recipe={...}, pretrained=PretrainedWeights(...))``). The builder's
    docstring's first line becomes the model's description. Registering a taken name raises
    ``ValueError``.
    """

    def decorator(builder: F) -> F:
        key = (name or builder.__name__).lower()
        if key in _REGISTRY:
            raise ValueError(f"A model named {key!r} is already registered.")
        doc = (builder.__doc__ or "").strip().splitlines()
        _REGISTRY[key] = ModelEntry(
            name=key,
            builder=builder,
            description=doc[0] if doc else "",
            recipe=dict(recipe or {}),
            pretrained=pretrained,
        )
        return builder

    return decorator(fn) if fn is not None else decorator


def list_models(pattern: str = "*", *, pretrained: bool = False) -> list[str]:
    """Sorted names of registered models matching the fnmatch ``pattern``.

    With ``pretrained=True`` only models that have published weights are listed.
    """
    return sorted(
        n
        for n, e in _REGISTRY.items()
        if fnmatch.fnmatch(n, pattern.lower()) and (not pretrained or e.pretrained is not None)
    )


def list_pretrained(pattern: str = "*") -> list[str]:
    """Sorted names of registered models that have published weights."""
    return list_models(pattern, pretrained=True)


def get_model_entry(name: str) -> ModelEntry:
    """The registry entry for ``name``; raises ``UnknownModelError`` if there is none."""
    if not isinstance(name, str):
        raise TypeError(f"Model name must be a string, got {type(name).__name__}.")
    try:
        return _REGISTRY[name.lower()]
    except KeyError:
        raise UnknownModelError(name, list_models()) from None


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a freshly initialised model by registry name; ``kwargs`` go to its builder."""
    return get_model_entry(name).builder(**kwargs)


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (elements) in ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def model_info(name: str, **kwargs: Any) -> dict[str, Any]:
    """Name, description, parameter count, recipe and pretrained info of a registered model."""
    entry = get_model_entry(name)
    model = entry.builder(**kwargs)
    return {
        "name": entry.name,
        "description": entry.description,
        "parameters": count_parameters(model),
        "recipe": dict(entry.recipe),
        "pretrained": entry.pretrained,
    }
