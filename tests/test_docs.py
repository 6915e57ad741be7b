"""The documentation: it builds without a warning, its generated tables are current, its links
resolve.

The build needs the ``docs`` extra (MkDocs Material, mkdocstrings) and is skipped without it;
the other checks need only the package.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
SCRIPTS = DOCS / "scripts"
DOCS_PACKAGES = ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python")

# A Markdown link or image: [text](target) or [text](target "title").
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^( *)(```|~~~).*?^\1\2", flags=re.M | re.S)
INLINE_CODE = re.compile(r"`[^`\n]*`")


def _load(path: Path) -> ModuleType:
    """Import a script of docs/scripts/ as a module."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _missing_docs_packages() -> list[str]:
    missing = []
    for name in DOCS_PACKAGES:
        try:
            found = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:  # the parent of a dotted name is missing
            found = False
        if not found:
            missing.append(name)
    return missing


def test_mkdocs_build_strict(tmp_path: Path) -> None:
    missing = _missing_docs_packages()
    if missing:
        pytest.skip(
            f"the docs extra is not installed (missing {', '.join(missing)}): "
            'pip install -e ".[docs]" to build the documentation'
        )
    site = tmp_path / "site"
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(REPO / "mkdocs.yml"),
         "-d", str(site)],
        cwd=REPO, capture_output=True, text=True, timeout=600,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-5000:]
    # mkdocstrings really rendered the API, and the snippets were included.
    assert 'id="mnist_zoo.hub.load_pretrained"' in (site / "api/hub/index.html").read_text()
    assert "features.0" in (site / "models/index.html").read_text()
    assert "mnist-zoo train" in (site / "cli/index.html").read_text()


def test_generated_reference_is_up_to_date() -> None:
    generator = _load(SCRIPTS / "gen_reference.py")
    stale = [str(path.relative_to(REPO)) for path in generator.stale_files()]
    assert not stale, (
        f"{', '.join(stale)} no longer match the code: run python docs/scripts/gen_reference.py"
    )


def _links(markdown: str) -> list[str]:
    """Link targets outside code blocks and code spans."""
    prose = INLINE_CODE.sub("", FENCE.sub("", markdown))
    return LINK.findall(prose)


def test_relative_links_point_at_files_in_docs() -> None:
    broken = []
    pages = sorted(DOCS.rglob("*.md"))
    assert pages, "no Markdown pages in docs/"
    for page in pages:
        for target in _links(page.read_text(encoding="utf-8")):
            if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
                continue  # a URL or an anchor on the same page
            path = (page.parent / target.split("#")[0]).resolve()
            # A file outside docs/ is not part of the site, so the link would break there.
            if not path.is_file() or DOCS.resolve() not in path.parents:
                broken.append(f"{page.relative_to(REPO)}: {target}")
    assert not broken, broken


def test_link_pattern_finds_links_and_images_but_not_code() -> None:
    text = 'See [a](a.md#x), ![b](img/b.png "t").\n`[c](c.md)`\n```text\n[d](d.md)\n```\n'
    assert _links(text) == ["a.md#x", "img/b.png"]


def test_sphinx_roles_resolve_to_documented_objects() -> None:
    hook = _load(SCRIPTS / "sphinx_roles.py")
    assert hook.resolve("save_pretrained", "mnist_zoo.hub") == "mnist_zoo.hub.save_pretrained"
    assert hook.resolve("mnist_zoo.data.read_idx", None) == "mnist_zoo.data.read_idx"
    # Re-exports link to the page of the module that documents them.
    assert hook.resolve("mnist_zoo.create_model", None) == "mnist_zoo.registry.create_model"
    assert hook.resolve("no_such_thing", "mnist_zoo.hub") == "no_such_thing"
