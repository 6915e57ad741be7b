"""torch.hub entry points: ``torch.hub.load("mnist-zoo/mnist_zoo", "minivgg", pretrained=True)``.

One entry point per registered model, generated from the registry (``torch.hub.list`` shows
them, ``torch.hub.help`` prints their docstrings), as timm and torchvision provide them::

    import torch
    model = torch.hub.load("mnist-zoo/mnist_zoo", "minivgg", pretrained=True)   # from GitHub
    model = torch.hub.load(".", "minivgg", source="local", pretrained=False)    # a checkout
    model = torch.hub.load(".", "minivgg", source="local", weights="hub/minivgg")

``pretrained=True`` calls :func:`mnist_zoo.load_pretrained`, so the weights come through the
package's one download, cache, offline and SHA-256 verification path; ``pretrained=False``
calls :func:`mnist_zoo.create_model`. An installed ``mnist_zoo`` is used as it is; otherwise
this file imports the package from the ``src/`` folder beside it.

torch.hub fetches this repository from GitHub, whose API limits anonymous requests (60 an
hour); for production, ``pip install mnist-zoo`` and call ``mnist_zoo.load_pretrained``.
"""

from __future__ import annotations

import importlib.util as _importlib_util
import sys as _sys
from pathlib import Path as _Path
from typing import Any as _Any

#: What torch.hub checks is importable before calling an entry point (import names of the
#: package's dependencies in pyproject.toml).
dependencies = ["torch", "numpy", "huggingface_hub", "safetensors", "tqdm", "PIL", "jinja2"]

_SRC = _Path(__file__).resolve().parent / "src"


def _import_package() -> _Any:
    """``mnist_zoo``: the installed one, else the one in ``src/`` beside this file."""
    if _importlib_util.find_spec("mnist_zoo") is not None:
        import mnist_zoo

        return mnist_zoo
    _sys.path.insert(0, str(_SRC))
    try:
        import mnist_zoo
    except ModuleNotFoundError as err:
        missing = (err.name or str(err)).partition(".")[0]
        raise ModuleNotFoundError(
            f"mnist_zoo's hubconf needs {missing!r}, one of its dependencies "
            f"({', '.join(dependencies)}): pip install mnist-zoo"
        ) from err
    finally:
        # Once imported, the package finds its own modules; leave sys.path as it was.
        if str(_SRC) in _sys.path:
            _sys.path.remove(str(_SRC))
    return mnist_zoo


_mnist_zoo = _import_package()


def _entry_point(name: str) -> _Any:
    """The torch.hub entry point for the registered model ``name``."""

    def entry(
        pretrained: bool = False,
        *,
        weights: str | None = None,
        num_classes: int | None = None,
        **kwargs: _Any,
    ) -> _Any:
        if not pretrained and weights is None:
            return _mnist_zoo.create_model(name, num_classes=num_classes, **kwargs)
        # Another num_classes: the backbone loads strictly, the head is fresh.
        model = _mnist_zoo.load_pretrained(weights or name, num_classes=num_classes, **kwargs)
        architecture = model.pretrained_cfg.get("architecture")
        if architecture != name:
            raise _mnist_zoo.errors.InvalidArgumentError(
                f"weights={weights!r} holds a {architecture!r} model, not {name!r}: "
                f"torch.hub.load(..., {architecture!r}, weights={weights!r})."
            )
        return model

    description = _mnist_zoo.registry.get_model_entry(name).description
    entry.__name__ = entry.__qualname__ = name
    entry.__doc__ = f"""{description}

    Args:
        pretrained: Load the published weights with ``mnist_zoo.load_pretrained({name!r})``
            (pinned repo, revision and SHA-256), in eval mode. Default: a freshly
            initialised model from ``mnist_zoo.create_model({name!r})``, in training mode.
        weights: A local Hub folder (e.g. ``"hub/{name}"``) to load instead of the
            published weights; implies ``pretrained=True``.
        num_classes: The number of outputs. With pretrained weights, a head of another
            width is freshly initialised and every other tensor loaded.
        **kwargs: Passed to ``load_pretrained`` when pretrained (``revision``, ``device``,
            ``cache_dir``, ``local_files_only``, ``endpoint``), else to the builder
            (e.g. ``batch_norm=True`` for deepercnn, ``dropout=0.3`` for minivgg).

    Returns:
        The model: ``model.pretrained_cfg`` says where it came from.
    """
    return entry


for _name in _mnist_zoo.list_models():
    globals()[_name] = _entry_point(_name)
del _name
