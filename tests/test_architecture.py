"""The package's shape: four layers in four folders, imports that point one way, no import cycle,
and no module, test or benchmark reaching into another module's private names.

Imports are read from the source (every ``import`` statement, inside functions too); only imports
under ``if TYPE_CHECKING:`` are left out, since they never run.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "blipviz"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return skip


def _resolve(module: str, path: Path, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(module: str, path: Path | None = None) -> set[str]:
    """The blipviz modules ``module`` (its source at ``path``) imports at run time, by full name."""
    path = path or MODULES[module]
    tree = ast.parse(path.read_text(), str(path))
    skip = _type_checking_nodes(tree)
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, path, node)
            names = [f"{target}.{alias.name}" for alias in node.names] + [target]
        else:
            continue
        for name in names:
            while name and name not in MODULES:
                name = name.rpartition(".")[0]
            if name.startswith("blipviz") and name != module:
                found.add(name)
    # a package's __init__ runs when any of its modules is imported, but that is not an arrow
    # between the modules themselves; importing "blipviz" (the top) is named as such
    return found


GRAPH = {m: imports_of(m) for m in MODULES}


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "top"


def test_the_four_layers_are_folders():
    assert {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()} >= {
        "net",
        "analysis",
        "display",
        "explore",
        "store",
        "testing",
    }
    assert "blipviz.net.net" in MODULES and "blipviz.store.cache" in MODULES


def test_no_import_cycle():
    """Tarjan's strongly connected components over every run-time import (package __init__ files
    left out: they only gather names)."""
    graph = {
        m: {d for d in deps if not MODULES[d].name == "__init__.py"}
        for m, deps in GRAPH.items()
        if MODULES[m].name != "__init__.py"
    }
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    assert cycles == []


@pytest.mark.parametrize(
    ("layer", "forbidden"),
    [
        ("net", {"analysis", "display", "explore", "store", "itm", "datasets", "top"}),
        ("store", {"analysis", "display", "explore", "itm", "datasets", "top"}),
        ("analysis", {"itm", "top", "datasets", "explore"}),
        ("collection", {"display", "itm", "top", "datasets", "explore"}),
        ("display", {"analysis", "explore", "store", "collection", "itm", "top", "datasets"}),
    ],
)
def test_imports_point_down(layer, forbidden):
    wrong = {
        m: sorted(d for d in deps if _layer(d) in forbidden)
        for m, deps in GRAPH.items()
        if _layer(m) == layer
    }
    assert {m: d for m, d in wrong.items() if d} == {}


RUNS_A_NET = {"blipviz.net.net", "blipviz.net.loading", "blipviz.itm"}


def test_no_display_imports_an_analysis_or_runs_a_net():
    """Every module under ``blipviz/display`` (found by walking the folder, so a new one is checked
    too) draws computed data: it imports no analysis, no explorer, no store or collection, neither
    the net nor its loading. The explorers, which call analyses, live in ``blipviz/explore``."""
    displays = sorted(m for m in MODULES if _layer(m) == "display")
    assert "blipviz.display.plotting" in displays and len(displays) == len(
        list((PACKAGE / "display").glob("*.py"))
    )
    wrong = {
        m: sorted(
            d
            for d in GRAPH[m]
            if d in RUNS_A_NET or _layer(d) in {"analysis", "explore", "store", "collection", "top"}
        )
        for m in displays
    }
    assert {m: d for m, d in wrong.items() if d} == {}


def test_explorers_call_analyses_never_a_forward_pass_of_their_own():
    """An explorer (every module under ``blipviz/explore``) reaches the net only through analyses
    and the net's encoders; nothing but the top ``blipviz`` (lazily) imports an explorer."""
    explorers = sorted(m for m in MODULES if _layer(m) == "explore")
    assert {"blipviz.explore.widgets", "blipviz.explore.feature_space_explorer"} <= set(explorers)
    for explorer in explorers:
        assert not GRAPH[explorer] & RUNS_A_NET, explorer
    importers = {
        m
        for m, deps in GRAPH.items()
        if _layer(m) not in ("explore", "top") and any(_layer(d) == "explore" for d in deps)
    }
    assert importers == set()


def _private_definitions() -> dict[str, set[Path]]:
    """Underscore names (not dunders) defined in blipviz modules: functions, classes, methods,
    module constants."""
    names: dict[str, set[Path]] = {}
    for path in MODULES.values():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                found = [node.name]
            elif isinstance(node, ast.Assign):
                found = [t.id for t in node.targets if isinstance(t, ast.Name)]
            else:
                continue
            for name in found:
                if name.startswith("_") and not name.endswith("_"):
                    names.setdefault(name, set()).add(path)
    return names


def _source_files() -> list[Path]:
    return [
        *MODULES.values(),
        *sorted((ROOT / "tests").glob("*.py")),
        *sorted((ROOT / "benchmarks").glob("*.py")),
    ]


def test_no_one_uses_another_module_s_private_names():
    """``_name`` is private to the module that defines it: others use public ports."""
    private = _private_definitions()
    offences = []
    for path in _source_files():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.ImportFrom) and (node.module or "").startswith(("blipviz", "benchmarks"))
            ) or (isinstance(node, ast.ImportFrom) and node.level > 0):
                offences += [
                    f"{path.relative_to(ROOT)}: imports {a.name}"
                    for a in node.names
                    if a.name.startswith("_") and not a.name.endswith("__")  # dunders are not private
                ]
            if isinstance(node, ast.Attribute) and node.attr in private and path not in private[node.attr]:
                owner = ast.unparse(node.value)
                if owner not in ("self", "cls", "super()"):
                    offences.append(f"{path.relative_to(ROOT)}: {owner}.{node.attr}")
    assert offences == []


def test_the_checks_see_a_cycle_and_a_private_import(tmp_path):
    """The AST reading itself: an import inside a function counts, one under TYPE_CHECKING does not."""
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from .itm import BlipITM\n"
        "def f():\n    from ..analysis import scores\n"
    )
    path = tmp_path / "probe.py"
    path.write_text(source)
    assert imports_of("blipviz.net.probe", path) == {"blipviz.analysis.scores", "blipviz.analysis"}
