"""The package's structure: layers, no import cycles, modules and functions of a readable size.

Read statically with :mod:`ast`, so nothing is imported and the whole check takes a fraction
of a second. Every ``import`` statement counts, including those inside functions (a lazy
import still ties two modules together), except those under ``if TYPE_CHECKING:``, which
only type checkers run.

The layers, bottom to top; a module may import from its own layer and the ones below::

    errors, atomic, devices < data < registry, heads, fast_layers, models < ensemble, inference
    < evaluation, calibration, robustness < training < hub < pipeline, metrics
    < mnist_zoo (the package's facade) < cli, serve, __main__
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

PACKAGE = "mnist_zoo"
SRC = Path(__file__).resolve().parents[1] / "src" / PACKAGE
MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 60

#: Top-level name under the package -> layer. A new top-level module or package must be
#: given its place here; the test says so.
LAYERS: dict[str, int] = {
    "_version": 0,
    "errors": 0,
    "atomic": 0,
    "devices": 0,
    "data": 1,
    "registry": 2,
    "models": 2,
    "heads": 2,  # ZooModel, the base class of the models
    "fast_layers": 2,  # the models' faster drop-in layers
    "ensemble": 3,
    "inference": 3,
    "evaluation": 4,
    "calibration": 4,  # scores probabilities, beside evaluation
    "robustness": 4,  # scores models on corrupted digits, beside evaluation
    "export": 4,  # runs models to compare an exported file with them, beside evaluation
    "training": 5,
    "hub": 6,
    "pipeline": 7,
    "metrics": 7,  # loads pretrained models by name through the hub
    "": 8,  # mnist_zoo/__init__.py, the public facade over everything below
    "cli": 9,
    "cli_evaluate": 9,  # the evaluate command's options and its corruption suite, beside cli
    "cli_train": 9,  # the train command's options, checked as they are parsed, and its run
    "serve": 9,
    "__main__": 9,
}


@dataclass(frozen=True)
class Module:
    name: str  # dotted, e.g. "mnist_zoo.data.mnist"
    path: Path
    is_package: bool

    @property
    def package(self) -> str:
        """The package relative imports start from."""
        return self.name if self.is_package else self.name.rpartition(".")[0]


@cache
def modules() -> dict[str, Module]:
    found = {}
    for path in sorted(SRC.rglob("*.py")):
        parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        name = ".".join(parts)
        found[name] = Module(name, path, is_package)
    return found


def layer_of(name: str) -> int | None:
    top = name.split(".")[1] if "." in name else ""
    return LAYERS.get(top)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement, skipping the bodies of ``if TYPE_CHECKING:``."""
    found: list[ast.Import | ast.ImportFrom] = []
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
            continue
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))
    return found


def _resolve(module: Module, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.package.split(".")
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


@cache
def imports_of(name: str) -> frozenset[str]:
    """The package's own modules that ``name`` imports (a ``from pkg import sub`` counts as
    importing ``pkg.sub`` when that is a module, else ``pkg``)."""
    module = modules()[name]
    tree = ast.parse(module.path.read_text(encoding="utf-8"))
    known = modules()
    targets: set[str] = set()
    for node in _import_nodes(tree):
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        else:
            base = _resolve(module, node)
            candidates = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                for alias in node.names
            ]
        for candidate in candidates:
            # "import mnist_zoo.data.mnist" names the deepest module that exists.
            while candidate and candidate not in known:
                candidate = candidate.rpartition(".")[0]
            if candidate and candidate != name:
                targets.add(candidate)
    return frozenset(targets)


MODULE_NAMES = sorted(modules())


def test_the_package_is_found() -> None:
    assert f"{PACKAGE}.errors" in MODULE_NAMES and f"{PACKAGE}.data.mnist" in MODULE_NAMES


@pytest.mark.parametrize("name", MODULE_NAMES)
def test_every_module_has_a_layer(name: str) -> None:
    assert layer_of(name) is not None, f"give {name} a layer in LAYERS of {Path(__file__).name}"


@pytest.mark.parametrize("name", MODULE_NAMES)
def test_no_module_imports_from_a_higher_layer(name: str) -> None:
    own = layer_of(name)
    if own is None:
        pytest.skip("no layer (see test_every_module_has_a_layer)")
    higher = sorted(
        f"{target} (layer {layer_of(target)})"
        for target in imports_of(name)
        if (layer_of(target) or 0) > own
    )
    assert not higher, f"{name} (layer {own}) imports from higher layers: {', '.join(higher)}"


def _cycles() -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(imports_of(node)):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for name in MODULE_NAMES:
        if name not in index:
            visit(name)
    return components


def test_no_import_cycles() -> None:
    cycles = _cycles()
    detail = "; ".join(
        " <-> ".join(f"{m} -> [{', '.join(sorted(imports_of(m) & set(c)))}]" for m in c)
        for c in cycles
    )
    assert not cycles, f"modules that import each other: {detail}"


@pytest.mark.parametrize("name", MODULE_NAMES)
def test_modules_are_at_most_450_lines(name: str) -> None:
    lines = modules()[name].path.read_text(encoding="utf-8").count("\n")
    assert lines <= MAX_MODULE_LINES, f"{name} has {lines} lines (at most {MAX_MODULE_LINES})"


def code_lines(function: ast.FunctionDef | ast.AsyncFunctionDef, source: list[str]) -> int:
    """Lines of code in a function: not blank, not only a comment, not its docstring.

    The ``def`` line counts; decorators do not. Nested functions count toward their parent.
    """
    skip: set[int] = set()
    body = function.body
    if (
        body
        and isinstance(body[0], ast.Expr)
        and isinstance(body[0].value, ast.Constant)
        and isinstance(body[0].value.value, str)
    ):
        skip.update(range(body[0].lineno, body[0].end_lineno + 1))
    count = 0
    for number in range(function.lineno, function.end_lineno + 1):
        text = source[number - 1].strip()
        if number not in skip and text and not text.startswith("#"):
            count += 1
    return count


def test_code_lines_counts_what_it_says() -> None:
    source = '''def f(x):
    """Doc.

    More doc.
    """
    # a comment

    y = x + 1  # trailing comment
    return (
        y
    )
'''
    function = ast.parse(source).body[0]
    assert isinstance(function, ast.FunctionDef)
    assert code_lines(function, source.splitlines()) == 5


@pytest.mark.parametrize("name", MODULE_NAMES)
def test_functions_are_at_most_60_lines_of_code(name: str) -> None:
    text = modules()[name].path.read_text(encoding="utf-8")
    source = text.splitlines()
    too_long = [
        f"{node.name} (line {node.lineno}): {lines} lines"
        for node in ast.walk(ast.parse(text))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and (lines := code_lines(node, source)) > MAX_FUNCTION_LINES
    ]
    assert not too_long, f"{name}: functions over {MAX_FUNCTION_LINES} lines: {too_long}"


def test_the_layer_check_sees_lazy_imports_and_skips_type_checking() -> None:
    # The registry names TrainConfig for type checkers only; a real import would break layers.
    source = """
from typing import TYPE_CHECKING
if TYPE_CHECKING:
    from .training import TrainConfig
def f():
    from .hub import load_pretrained
"""
    names = [
        (node.module, node.level)
        for node in _import_nodes(ast.parse(source))
        if isinstance(node, ast.ImportFrom)
    ]
    assert sorted(names, key=str) == [("hub", 1), ("typing", 0)]
