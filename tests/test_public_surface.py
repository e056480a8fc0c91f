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
