"""MkDocs hook: turn the Sphinx roles in docstrings into links of the API reference.

The docstrings are Google style but name other objects the Sphinx way, as in
``:func:`save_pretrained```, which Markdown renders as the text ":func:" before the code
``save_pretrained``. This hook (``hooks:`` in ``mkdocs.yml``) replaces each such role with a
mkdocs-autorefs cross-reference to the object's entry in the API reference, showing just the
code. Names are resolved against the module of the page they are on, then against every
documented module, so ``mnist_zoo.predict`` links to ``mnist_zoo.inference.predict``. A name
that is not documented stays plain code, without a warning (the reference is "optional").
"""

from __future__ import annotations

import importlib
import re
from typing import Any

#: The modules that have a page under docs/api/, in the order names are looked up in them.
DOCUMENTED = [
    "mnist_zoo.data",
    "mnist_zoo.models",
    "mnist_zoo.registry",
    "mnist_zoo.training",
    "mnist_zoo.evaluation",
    "mnist_zoo.hub",
    "mnist_zoo.inference",
    "mnist_zoo.ensemble",
]
ROLE = re.compile(
    r":(?:py:)?(?:func|class|meth|attr|data|mod|exc|obj|const):<code>(~?)([\w.]+)</code>"
)


def _exists(path: str) -> bool:
    """Whether ``path`` names an importable module or an attribute reachable from one."""
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
            return False
        return True
    return False


def resolve(name: str, page_module: str | None) -> str:
    """The documented path of ``name`` as written on a page about ``page_module``.

    Args:
        name: The name inside the role, e.g. ``save_pretrained`` or ``mnist_zoo.predict``.
        page_module: The module the page documents, or ``None`` for other pages.

    Returns:
        The first candidate that exists, else ``name`` unchanged.
    """
    bare = name.removeprefix("mnist_zoo.")
    modules = ([page_module] if page_module else []) + DOCUMENTED
    # The documented modules first: mnist_zoo.predict exists too, but has no page of its own.
    candidates = [f"{module}.{bare}" for module in modules] + [name]
    return next((path for path in candidates if _exists(path)), name)


def on_page_content(html: str, page: Any, **kwargs: Any) -> str:
    """Replace every Sphinx role in a rendered page with an optional cross-reference."""
    uri = page.file.src_uri
    page_module = f"mnist_zoo.{uri[4:-3]}" if uri.startswith("api/") else None

    def link(match: re.Match[str]) -> str:
        short, name = match.groups()
        identifier = resolve(name, page_module)
        title = name.rsplit(".", 1)[-1] if short else name
        return f'<autoref identifier="{identifier}" optional><code>{title}</code></autoref>'

    return ROLE.sub(link, html)
