"""MkDocs hook: turn the Sphinx roles in docstrings into links of the API reference.

The docstrings are Google style but name other objects the Sphinx way, as in
``:func:`save_pretrained```, which Markdown renders as the text ":func:" before the code
``save_pretrained``. This hook (``hooks:`` in ``mkdocs.yml``) replaces each such role with a
mkdocs-autorefs cross-reference to the object's entry in the API reference, showing just the
code. Names are resolved against the module of the page they are on, then against every
documented module, and a re-exported name links to the page of the module that documents it
(its *home*), so ``mnist_zoo.predict`` links to ``mnist_zoo.inference.predict`` and
``mnist_zoo.hub.HubError`` to ``mnist_zoo.errors.HubError``. A name that is not documented
stays plain code, without a warning (the reference is "optional").

:func:`home` is also what ``docs/scripts/gen_reference.py`` and ``tests/test_docs.py`` use to
decide which API page documents a name.
"""

from __future__ import annotations

import importlib
import re
from typing import Any

#: The modules that have a page under docs/api/, bottom layer first. A name several of them
#: export is documented on the page of the first one (its home).
DOCUMENTED = [
    "mnist_zoo.errors",
    "mnist_zoo.atomic",
    "mnist_zoo.devices",
    "mnist_zoo.data",
    "mnist_zoo.registry",
    "mnist_zoo.models",
    "mnist_zoo.inference",
    "mnist_zoo.ensemble",
    "mnist_zoo.evaluation",
    "mnist_zoo.export",
    "mnist_zoo.training",
    "mnist_zoo.hub",
    "mnist_zoo.pipeline",
    "mnist_zoo.metrics",
]
ROLE = re.compile(
    r":(?:py:)?(?:func|class|meth|attr|data|mod|exc|obj|const):<code>(~?)([\w.]+)</code>"
)
_MISSING = object()


def _lookup(path: str) -> Any:
    """The object ``path`` names (a module, or an attribute reachable from one), or _MISSING."""
    parts = path.split(".")
    for split in range(len(parts), 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        try:
            for attribute in parts[split:]:
                obj = getattr(obj, attribute)
        except AttributeError:
            return _MISSING
        return obj
    return _MISSING


def _exists(path: str) -> bool:
    """Whether ``path`` names an importable module or an attribute reachable from one."""
    return _lookup(path) is not _MISSING


def home(name: str, obj: Any) -> str | None:
    """The documented module whose page shows ``obj``, exported under ``name``.

    Args:
        name: The public name, e.g. ``"load_pretrained"``.
        obj: The object that name refers to.

    Returns:
        The first module of :data:`DOCUMENTED` that lists ``name`` in its ``__all__`` as this
        very object, or ``None`` when none does.
    """
    for module_name in DOCUMENTED:
        module = importlib.import_module(module_name)
        if name in getattr(module, "__all__", ()) and getattr(module, name, _MISSING) is obj:
            return module_name
    return None


def resolve(name: str, page_module: str | None) -> str:
    """The documented path of ``name`` as written on a page about ``page_module``.

    Args:
        name: The name inside the role, e.g. ``save_pretrained`` or ``mnist_zoo.predict``.
        page_module: The module the page documents, or ``None`` for other pages.

    Returns:
        The path of the entry that documents it (``module.Name`` or ``module.Class.member``,
        on the page of the name's :func:`home`), else the first candidate that exists, else
        ``name`` unchanged.
    """
    bare = name.removeprefix("mnist_zoo.")
    modules = ([page_module] if page_module else []) + DOCUMENTED + ["mnist_zoo"]
    for module in modules:
        path = f"{module}.{bare}"
        if not _exists(path):
            continue
        # Find the public name in the path (a submodule or a class may come before or after
        # it) and move the path to that name's home page.
        parts = bare.split(".")
        for index, part in enumerate(parts):
            where = home(part, _lookup(".".join([module, *parts[: index + 1]])))
            if where is not None:
                return ".".join([where, *parts[index:]])
        return path
    return name


def on_page_content(html: str, page: Any, **kwargs: Any) -> str:
    """Replace every Sphinx role in a rendered page with an optional cross-reference."""
    uri = page.file.src_uri
    page_module = None
    if uri.startswith("api/") and uri != "api/index.md":
        page_module = f"mnist_zoo.{uri[4:-3]}"

    def link(match: re.Match[str]) -> str:
        short, name = match.groups()
        identifier = resolve(name, page_module)
        title = name.rsplit(".", 1)[-1] if short else name
        return f'<autoref identifier="{identifier}" optional><code>{title}</code></autoref>'

    return ROLE.sub(link, html)
