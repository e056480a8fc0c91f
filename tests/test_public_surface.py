"""One way per task: one name for one thing across the public functions."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "blipviz"


def test_the_net_argument_is_named_model_everywhere():
    """A public function or method that takes a net calls it ``model`` (as ``load_model`` returns it)."""
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) or node.name.startswith("_"):
                continue
            args = node.args
            for arg in [*args.posonlyargs, *args.args, *args.kwonlyargs]:
                annotation = ast.unparse(arg.annotation) if arg.annotation is not None else ""
                takes_a_net = any(name in annotation for name in ("BlipNet", "BlipITM"))
                if (takes_a_net and arg.arg != "model") or (arg.arg == "net" and annotation != "str"):
                    wrong.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name}({arg.arg})")
    assert wrong == []


def _display_classes() -> dict[str, str]:
    """Every public class named ``...Display`` defined anywhere in the package -> its module."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if (
                isinstance(node, ast.ClassDef)
                and node.name.endswith("Display")
                and not node.name.startswith("_")
            ):
                found[node.name] = module
    return found


def test_every_display_class_is_exported_documented_and_in_the_reference():
    """Display classes are exported all or none: all, each in ``blipviz.__all__`` (which the API
    reference lists, docs/conf.py), the very class of its module, with a numpydoc docstring. Found
    by reading every module, so a new Display cannot be left out."""
    import importlib

    import blipviz

    displays = _display_classes()
    assert len(displays) >= 10  # the scan finds them (ScoreMatrixDisplay, ..., RecallCurveDisplay)
    for name, module in displays.items():
        cls = getattr(importlib.import_module(module), name)
        assert name in blipviz.__all__, f"{module}.{name} is not exported by blipviz"
        assert getattr(blipviz, name) is cls, name
        doc = cls.__doc__ or ""
        assert "Parameters\n    ----------" in doc and "Attributes\n    ----------" in doc, name
    assert sorted(n for n in blipviz.__all__ if n.endswith("Display")) == sorted(displays)
