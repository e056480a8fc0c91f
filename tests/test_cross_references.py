"""Every name a docstring, a comment, a notebook or the README points to exists: a Sphinx role (``:func:``,
``:class:``, ``:meth:``, ``:mod:``, ``:data:``, ``:attr:``, ``:exc:``) and every dotted
``blipviz.x.y`` resolve to a module or an attribute, so a reference left stale by a move or a
rename fails here."""

from __future__ import annotations

import ast
import builtins
import importlib
import inspect
import re
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "blipviz"

ROLE = re.compile(r":(?:py:)?(?:func|class|meth|mod|data|attr|exc|obj):`([^`]+)`")
DOTTED = re.compile(r"(?<![\w./-])blipviz(?:\.[A-Za-z_]\w*)+")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def role_target(text: str) -> str:
    """The target of a role's text: ``Title <target>`` -> target; ``~a.b`` / ``.a.b`` -> a.b."""
    match = re.search(r"<([^>]+)>\s*$", text)
    target = match.group(1) if match else text
    return target.strip().lstrip("~!.").removesuffix("()")


def resolve_dotted(name: str) -> bool:
    """Whether ``name`` (``a.b.c``) is a module or an attribute reached from the longest module prefix."""
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        return resolve_from(obj, ".".join(parts[cut:])) if cut < len(parts) else True
    return False


def instance_attributes(cls: type) -> set[str]:
    """A class's fields (annotations) and the ``self.x = ...`` of its methods, over its MRO."""
    names: set[str] = set()
    for klass in inspect.getmro(cls):
        names.update(vars(klass).get("__annotations__", {}))
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):
            continue
        for node in ast.walk(ast.parse(source)):
            targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
            for target in targets:
                if (
                    isinstance(target, ast.Attribute)
                    and isinstance(target.value, ast.Name)
                    and target.value.id == "self"
                ):
                    names.add(target.attr)
    return names


def resolve_from(namespace, name: str) -> bool:
    """Whether ``name`` (``a.b``) is reached from ``namespace`` attribute by attribute; the last one may
    be an instance attribute of a class."""
    obj = namespace
    parts = name.split(".")
    for i, attr in enumerate(parts):
        if hasattr(obj, attr):
            obj = getattr(obj, attr)
        elif i == len(parts) - 1 and inspect.isclass(obj):
            return attr in instance_attributes(obj)
        else:
            return False
    return True


def docstrings(tree: ast.Module):
    """(docstring, the names of the classes around it) for the module, each class and each function."""

    def walk(node, classes):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                inner = (*classes, child.name) if isinstance(child, ast.ClassDef) else classes
                doc = ast.get_docstring(child, clean=False)
                if doc:
                    yield doc, inner
                yield from walk(child, inner)

    doc = ast.get_docstring(tree, clean=False)
    if doc:
        yield doc, ()
    yield from walk(tree, ())


def role_references():
    """(module, classes, target) for every role in a docstring of the package."""
    for path in sorted(PACKAGE.rglob("*.py")):
        module = module_name(path)
        for doc, classes in docstrings(ast.parse(path.read_text(encoding="utf-8"))):
            for text in ROLE.findall(doc):
                yield module, classes, role_target(text)


def resolves_in_context(module: str, classes: tuple[str, ...], target: str) -> bool:
    """A target as Sphinx reads it: absolute, or relative to the enclosing class, module or package."""
    if target.startswith("blipviz.") or target == "blipviz":
        return resolve_dotted(target)
    mod = importlib.import_module(module)
    scopes = [mod]
    obj = mod
    for name in classes:  # the enclosing classes, innermost first
        obj = getattr(obj, name, None)
        if obj is not None:
            scopes.insert(0, obj)
    scopes += [importlib.import_module("blipviz"), builtins]
    if any(resolve_from(scope, target) for scope in scopes):
        return True
    return resolve_dotted(target)  # a role to another library (numpy.ndarray, PIL.Image.Image)


#: Stale references in a module being rewritten at the moment; its rewrite fixes them (then delete
#: them here: the test says so).
BEING_REWRITTEN = {"blipviz.analysis.explanations: load_image"}


def test_every_role_in_a_docstring_resolves():
    stale = {
        f"{module}: {target}"
        for module, classes, target in role_references()
        if not resolves_in_context(module, classes, target)
    }
    assert sorted(stale - BEING_REWRITTEN) == []
    assert BEING_REWRITTEN <= stale, f"fixed: delete {sorted(BEING_REWRITTEN - stale)} from BEING_REWRITTEN"


def dotted_names():
    """(file, name) for every public ``blipviz.x.y`` in the package, the benchmarks, the notebooks and
    the README: docstrings, comments, messages and strings written into files alike. A path with a
    private part (``blipviz.analysis._x``) is an internal name, possibly made at run time, and left out."""
    files = [
        *sorted(PACKAGE.rglob("*.py")),
        *sorted((ROOT / "benchmarks").glob("*.py")),
        *sorted((ROOT / "notebooks").glob("*.ipynb")),
        ROOT / "README.md",
    ]
    for path in files:
        for name in set(DOTTED.findall(path.read_text(encoding="utf-8"))):
            if not any(part.startswith("_") for part in name.split(".")):
                yield path.relative_to(ROOT).as_posix(), name


def test_every_dotted_blipviz_name_resolves():
    stale = sorted(f"{where}: {name}" for where, name in dotted_names() if not resolve_dotted(name))
    assert stale == []


@pytest.mark.parametrize(
    ("module", "classes", "target", "ok"),
    [
        ("blipviz.itm", ("BlipITM",), "gradcam", True),  # a method from its class's docstring
        ("blipviz.itm", (), "BlipITM.gradcam", True),
        ("blipviz.net.net", (), "BlipITM.scores", True),  # a top-level name from any module
        ("blipviz.net.net", (), "blipviz.BlipNet.gradcam", False),
        ("blipviz.net.net", (), "blipviz.text.TokenizedTexts", False),  # an old module path
        ("blipviz.net.net", (), "numpy.ndarray", True),
    ],
)
def test_the_resolution_itself(module, classes, target, ok):
    assert resolves_in_context(module, classes, target) is ok
    assert role_target("Title <~blipviz.load_model>") == "blipviz.load_model"
    assert DOTTED.findall("see blipviz.store.cache. And blipviz-cache.json, a/blipviz.x") == [
        "blipviz.store.cache"
    ]
