"""The documentation: it builds without a warning, its generated tables are current, its links
resolve.

The build needs the ``docs`` extra (MkDocs Material, mkdocstrings) and is skipped without it;
the other checks need only the package.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import importlib.util
import inspect
import json
import os
import pkgutil
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import pytest
import torch
from PIL import Image

import mnist_zoo

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
    # Every member an API page lists is rendered there, under its documented path.
    unrendered = [
        f"{module}.{name}"
        for module in API_PAGES
        for name in _page_members(module)
        if f'id="{module}.{name}"'
        not in (site / "api" / module.removeprefix("mnist_zoo.") / "index.html").read_text()
    ]
    assert not unrendered, unrendered
    overview = (site / "api/index.html").read_text()
    assert (
        "#mnist_zoo.training.Trainer" in overview and "#mnist_zoo.hub.load_pretrained" in overview
    )
    assert "tests/test_layers.py" in (site / "architecture/index.html").read_text()


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


def test_sphinx_roles_link_reexports_to_the_page_that_documents_them() -> None:
    hook = _load(SCRIPTS / "sphinx_roles.py")
    # Errors are documented once, on the errors page, whichever module re-exports them.
    assert hook.resolve("HubError", "mnist_zoo.hub") == "mnist_zoo.errors.HubError"
    assert hook.resolve("mnist_zoo.hub.HubError", None) == "mnist_zoo.errors.HubError"
    assert hook.resolve("Trainer.fit", "mnist_zoo.training") == "mnist_zoo.training.Trainer.fit"
    # A submodule's path leads to the package page that documents the name.
    assert (
        hook.resolve("mnist_zoo.hub.folder.save_pretrained", None)
        == "mnist_zoo.hub.save_pretrained"
    )
    assert hook.resolve("MNIST_MEAN", "mnist_zoo.models") == "mnist_zoo.data.MNIST_MEAN"


# ---------------------------------------------------------------------------- the pages' claims

README = REPO / "README.md"
API = DOCS / "api"
QUICKSTART = DOCS / "quickstart.md"
PYTHON_BLOCK = re.compile(r"^( *)```python\n(.*?)^\1```", flags=re.M | re.S)
#: The modules with a page under docs/api/, in the order a re-exported name finds its page.
API_PAGES = _load(SCRIPTS / "sphinx_roles.py").DOCUMENTED


def _section(markdown: str, number: str) -> str:
    """The text of the section whose heading starts with ``## NUMBER.``."""
    match = re.search(rf"^## {re.escape(number)}\. .*?(?=^## |\Z)", markdown, flags=re.M | re.S)
    assert match, f"no section '## {number}.' in the page"
    return match.group(0)


def _python_blocks(markdown: str) -> list[str]:
    """The ```python blocks of a page (tabbed ones included), dedented, in page order."""
    return [
        "\n".join(line[len(indent) :] for line in body.splitlines())
        for indent, body in PYTHON_BLOCK.findall(markdown)
    ]


def _substitute(code: str, replacements: dict[str, str]) -> str:
    """``code`` with each key replaced by its value; each key must occur exactly once."""
    for old, new in replacements.items():
        assert code.count(old) == 1, f"the snippet no longer contains {old!r} exactly once"
        code = code.replace(old, new)
    return code


def test_quickstart_python_tab_saves_what_load_pretrained_loads_back(
    mnist_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Section 3 of the quickstart, as printed, on a few hundred images instead of 60,000."""
    train_code, load_code = _python_blocks(_section(QUICKSTART.read_text(), "3"))
    assert 'load_pretrained("runs/simplecnn")' in load_code
    train_code = _substitute(train_code, {
        "epochs=1,": "epochs=1, val_size=100, progress=False,",
        "trainer.fit(train)": "trainer.fit((train.images[:600], train.targets[:600]))",
        "trainer.evaluate(test)": "trainer.evaluate((test.images[:500], test.targets[:500]))",
    })  # fmt: skip
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MNIST_ZOO_DATA", str(mnist_root))
    namespace: dict[str, object] = {}
    exec(compile(train_code, str(QUICKSTART), "exec"), namespace)
    trained = namespace["trainer"].model  # type: ignore[attr-defined]
    exec(compile(load_code, str(QUICKSTART), "exec"), namespace)
    loaded = namespace["model"]

    # What the page claims: the folder holds the trained weights, and they load back.
    assert loaded is not trained
    assert loaded.pretrained_cfg["architecture"] == "simplecnn"  # type: ignore[attr-defined]
    expected = {k: v.float().cpu() for k, v in trained.state_dict().items()}
    got = loaded.state_dict()  # type: ignore[attr-defined]
    assert expected.keys() == got.keys()
    assert all(torch.equal(expected[k], got[k]) for k in expected)
    config = json.loads((tmp_path / "runs/simplecnn/config.json").read_text())
    assert config["metrics"]["test_accuracy"] == namespace["result"].accuracy  # type: ignore[attr-defined]
    # The command-line tab's recipe: the registry's, not the bare Trainer's BASE_RECIPE.
    registry_recipe = mnist_zoo.training.get_recipe("simplecnn")
    assert registry_recipe != mnist_zoo.training.BASE_RECIPE
    ran = dataclasses.replace(registry_recipe, epochs=1, val_size=100,
                              precision=config["recipe"]["precision"])  # fmt: skip
    assert config["recipe"] == json.loads(json.dumps(dataclasses.asdict(ran)))
    assert (tmp_path / "runs/simplecnn/checkpoints/last.pt").is_file()


def test_quickstart_pretrained_snippets_run_with_the_checkouts_weights(
    mnist_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sections 2 and 4, with ``hub/minivgg`` in place of the Hub repo the page names."""
    page = QUICKSTART.read_text()
    local = repr(str(REPO / "hub" / "minivgg"))
    (classify,) = _python_blocks(_section(page, "2"))
    (pictures,) = _python_blocks(_section(page, "4"))
    monkeypatch.chdir(REPO)  # the page runs from the repository root
    monkeypatch.setenv("MNIST_ZOO_DATA", str(mnist_root))
    namespace: dict[str, object] = {}
    exec(_substitute(classify, {'load_pretrained("minivgg")': f"load_pretrained({local})"}),
         namespace)  # fmt: skip
    prediction, test = namespace["prediction"], namespace["test"]
    assert prediction.labels.tolist() == test.targets[:16].tolist()  # type: ignore[attr-defined]
    exec(_substitute(pictures, {'load_pretrained("minivgg")': f"load_pretrained({local})"}),
         namespace)  # fmt: skip
    assert namespace["prediction"].labels.tolist() == [3, 4]  # type: ignore[attr-defined]


def test_the_first_load_pretrained_says_what_works_without_the_hub() -> None:
    # Where load_pretrained("minivgg") first appears, hub/minivgg and --model hub/minivgg do too.
    for page in (DOCS / "index.md", QUICKSTART, README):
        text = page.read_text()
        first = text.index('load_pretrained("minivgg")')
        following = text[first : first + 2500]
        assert 'load_pretrained("hub/minivgg")' in following, page
        assert "--model hub/minivgg" in following, page


def test_docs_speak_to_users_not_to_this_repositorys_setup() -> None:
    pages = sorted(DOCS.rglob("*.md"))
    assert [str(p.relative_to(REPO)) for p in pages if "shared/data" in p.read_text()] == []
    readme_prose = re.sub(r"```bash\n.+?\n```", "", README.read_text(), flags=re.S)
    # The README's set-up commands are this repository's CI commands; its prose names the
    # path only to explain them.
    assert readme_prose.count("shared/data") <= 1
    config = (REPO / "mkdocs.yml").read_text()
    assert re.search(r"^site_url: https://\S+/$", config, flags=re.M)
    # No repository link until the project has a public address.
    assert not re.search(r"^repo_(url|name):", config, flags=re.M)


def _table_cells(markdown: str) -> list[str]:
    prose = FENCE.sub("", markdown)
    return [cell for line in prose.splitlines() if line.startswith("|") for cell in line.split("|")]


def test_no_table_cell_holds_a_long_command() -> None:
    # Long commands wrap badly in a table cell; they belong in a code block.
    command = re.compile(r"`((?:python|mnist-zoo|pip|torchrun|hf) [^`]*)`")
    long = [
        f"{page.relative_to(REPO)}: {match}"
        for page in [README, *sorted(DOCS.rglob("*.md"))]
        for cell in _table_cells(page.read_text())
        for match in command.findall(cell)
        if len(match) > 40
    ]
    assert not long, long


#: Images that are screenshots, not figures drawn for the page.
SCREENSHOTS = {"serve.png"}


def _page_images() -> list[tuple[Path, str]]:
    return [
        (page, target)
        for page in sorted(DOCS.glob("*.md"))
        for target in _links(page.read_text())
        if target.endswith(".png")
    ]


def test_figures_fit_the_text_column_and_have_captions() -> None:
    images = _page_images()
    assert len(images) >= 15
    # Material's text column is about 760 px wide beside both sidebars: a wider figure is
    # scaled down, and its labels with it. Screenshots of a browser window are the exception:
    # they show a page at a desktop width, and the reader opens them to see details.
    too_wide = [
        f"{page.name}: {target} is {width} px wide"
        for page, target in images
        if Path(target).name not in SCREENSHOTS
        and (width := Image.open(page.parent / target).width) > 760
    ]
    assert not too_wide, too_wide
    uncaptioned = []
    for page in sorted(DOCS.glob("*.md")):
        text = FENCE.sub("", page.read_text())
        for match in re.finditer(r"!\[[^\]]*\]\(([^)]+\.png)\)", text):
            after = text[match.end() : match.end() + 600]
            if "<figcaption>" not in after.split("</figure>")[0]:
                uncaptioned.append(f"{page.name}: {match.group(1)}")
    assert not uncaptioned, uncaptioned


# ---------------------------------------------------------------------------- the API reference


def _page_members(module: str) -> list[str]:
    """The members a page of docs/api/ lists for ``::: MODULE``, in order."""
    text = (API / f"{module.removeprefix('mnist_zoo.')}.md").read_text()
    block = re.search(rf"^::: {re.escape(module)}\n((?:    .*\n)*)", text, flags=re.M)
    assert block, f"docs/api has no '::: {module}' block"
    return re.findall(r"^ {8}- (\w+)$", block.group(1), flags=re.M)


def test_every_public_name_is_on_the_api_page_of_its_module() -> None:
    roles = _load(SCRIPTS / "sphinx_roles.py")
    problems = []
    for module_name in API_PAGES:
        module = importlib.import_module(module_name)
        listed = _page_members(module_name)
        own = [
            name
            for name in module.__all__
            if roles.home(name, getattr(module, name)) == module_name
        ]
        problems += [f"{module_name}.{name}: not on its page" for name in own if name not in listed]
        problems += [f"{module_name}: lists {name}, not public there" for name in listed
                     if name not in own]  # fmt: skip
    assert not problems, problems
    nav = (REPO / "mkdocs.yml").read_text()
    for module_name in API_PAGES:
        assert f"api/{module_name.removeprefix('mnist_zoo.')}.md" in nav


def test_each_api_page_puts_its_main_entry_point_first() -> None:
    first = {page: _page_members(page)[0] for page in API_PAGES}
    assert first["mnist_zoo.hub"] == "load_pretrained"
    assert first["mnist_zoo.inference"] == "predict"
    assert first["mnist_zoo.evaluation"] == "evaluate_model"
    assert first["mnist_zoo.training"] in ("Trainer", "TrainConfig")
    assert first["mnist_zoo.registry"] == "create_model"
    assert first["mnist_zoo.data"] == "MNIST"
    assert first["mnist_zoo.pipeline"] == "train_and_save"
    assert first["mnist_zoo.errors"] == "MnistZooError"


def test_the_overview_page_lists_the_whole_top_level_namespace() -> None:
    overview = (API / "index.md").read_text()
    assert '--8<-- "generated/namespace.md"' in overview
    generated = (DOCS / "generated" / "namespace.md").read_text()
    missing = [name for name in mnist_zoo.__all__ if f"`{name}`" not in generated]
    assert not missing, f"{missing}: run python docs/scripts/gen_reference.py"


def _public_callables() -> dict[str, object]:
    """Every function, class and public method that some module's ``__all__`` exports."""
    found: dict[int, tuple[str, object]] = {}
    names = ["mnist_zoo"] + [
        info.name
        for info in pkgutil.walk_packages(mnist_zoo.__path__, "mnist_zoo.")
        if not info.name.endswith(".__main__")  # importing it would run the program
    ]
    for module_name in names:
        module = importlib.import_module(module_name)
        for name in getattr(module, "__all__", ()):
            obj = getattr(module, name)
            if not (inspect.isfunction(obj) or inspect.isclass(obj)):
                continue
            if not getattr(obj, "__module__", "").startswith("mnist_zoo"):
                continue
            found.setdefault(id(obj), (f"{obj.__module__}.{obj.__qualname__}", obj))
            if inspect.isclass(obj):
                for attr, member in vars(obj).items():
                    member = getattr(member, "__func__", member)  # static and class methods
                    if not attr.startswith("_") and inspect.isfunction(member):
                        found.setdefault(
                            id(member), (f"{obj.__module__}.{member.__qualname__}", member)
                        )
    return dict(sorted(found.values(), key=lambda item: item[0]))


def _raises_on_purpose(function: object) -> bool:
    """Whether ``function``'s own body has a ``raise SomeError`` (not a bare re-raise)."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(function)))  # type: ignore[arg-type]
    except (OSError, TypeError, SyntaxError):
        return False
    body = tree.body[0]
    stack = list(ast.iter_child_nodes(body))
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            continue  # a nested function raises on its own account
        if isinstance(node, ast.Raise) and node.exc is not None:
            return True
        stack.extend(ast.iter_child_nodes(node))
    return False


def _missing_sections(obj: object) -> list[str]:
    """The Google-style sections ``obj``'s docstring lacks: Args, Returns, Raises."""

    def has(doc: str, *sections: str) -> bool:
        return any(re.search(rf"^\s*{section}:\s*$", doc, flags=re.M) for section in sections)

    doc = inspect.cleandoc(obj.__doc__ or "")  # not inherited: an override documents itself
    if not doc:
        return ["docstring"]
    missing = []
    if inspect.isclass(obj):
        init = vars(obj).get("__init__")
        fields = getattr(obj, "__dataclass_fields__", None)
        init_doc = inspect.cleandoc(getattr(init, "__doc__", None) or "")
        if init is not None or fields:
            params = [p for p in inspect.signature(obj).parameters if p not in ("self", "cls")]
            if params and not has(doc + "\n" + init_doc, "Args", "Attributes"):
                missing.append("Args")
        if init is not None and _raises_on_purpose(init) and not has(doc + "\n" + init_doc,
                                                                     "Raises"):  # fmt: skip
            missing.append("Raises")
        return missing
    signature = inspect.signature(obj)  # type: ignore[arg-type]
    if [p for p in signature.parameters if p not in ("self", "cls")] and not has(doc, "Args"):
        missing.append("Args")
    returns = signature.return_annotation
    if returns not in (inspect.Signature.empty, None, "None", "NoReturn") and not has(
        doc, "Returns", "Yields"
    ):
        missing.append("Returns")
    if _raises_on_purpose(obj) and not has(doc, "Raises"):
        missing.append("Raises")
    return missing


def test_public_callables_document_args_returns_and_raises() -> None:
    """The API reference is built from the docstrings (Google style, by mkdocstrings)."""
    missing = [
        f"{name}: no {', '.join(sections)}"
        for name, obj in _public_callables().items()
        if (sections := _missing_sections(obj))
    ]
    assert not missing, f"{len(missing)} public callables lack sections:\n" + "\n".join(missing)


def test_the_architecture_page_has_a_line_for_every_module() -> None:
    text = (DOCS / "architecture.md").read_text()
    assert "architecture.md" in (REPO / "mkdocs.yml").read_text()
    assert "tests/test_layers.py" in text
    src = Path(mnist_zoo.__file__).parent
    modules = sorted(
        ".".join(path.relative_to(src).with_suffix("").parts)
        for path in src.rglob("*.py")
        if path.name not in ("__init__.py", "__main__.py")
    )
    missing = [name for name in modules if f"| `{name}` |" not in text]
    assert not missing, f"docs/architecture.md has no line for {missing}"


def test_the_architecture_page_shows_the_layers_the_tests_enforce() -> None:
    tree = ast.parse((REPO / "tests" / "test_layers.py").read_text())
    (layers,) = [
        ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", "") == "LAYERS"
    ]
    documented = {
        name: int(layer)
        for layer, names in re.findall(
            r"^\| +(\d+) \| (.*) \|$", (DOCS / "architecture.md").read_text(), flags=re.M
        )  # fmt: skip
        for name in re.findall(r"`(\w+)`", names)
        if name != "mnist_zoo"
    }
    expected = {name: layer for name, layer in layers.items() if name not in ("", "__main__")}
    assert documented == expected
