"""The module paths of blipviz before its layers had folders, kept importable.

``import blipviz.cache`` (now :mod:`blipviz.store.cache`), ``from blipviz.images import load_image``
(now :mod:`blipviz.net.images`) and the like keep working: each old path is an alias of the module
that holds its contents now (the same module object, not a copy).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

__all__ = ["MOVED", "install_moved_module_aliases"]

#: Old module path -> where its contents live now.
MOVED = {
    "blipviz.attention": "blipviz.analysis.attention",
    "blipviz.cache": "blipviz.store.cache",
    "blipviz.fast_attention": "blipviz.net.fast_attention",
    "blipviz.feature_space": "blipviz.analysis.feature_space",
    "blipviz.fingerprint": "blipviz.net.fingerprint",
    "blipviz.images": "blipviz.net.images",
    "blipviz.info": "blipviz.analysis.info",
    "blipviz.models": "blipviz.net.registry",
    "blipviz.plotting": "blipviz.display.plotting",
    "blipviz.quantize": "blipviz.net.quantize",
    "blipviz.random_weights": "blipviz.net.random_weights",
    "blipviz.results": "blipviz.analysis.scores",
    "blipviz.search": "blipviz.analysis.search",
    "blipviz.tables": "blipviz.display.tables",
    "blipviz.text": "blipviz.net.text",
    "blipviz.widgets": "blipviz.display.widgets",
    "blipviz.zero_shot": "blipviz.analysis.zero_shot",
}


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports an old path as the module that holds its contents now."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname in MOVED:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        return importlib.import_module(MOVED[spec.name])

    def exec_module(self, module) -> None:
        """Nothing to run: the module was imported under its own name."""


def install_moved_module_aliases() -> None:
    """Make the old module paths importable (once per process)."""
    if not any(isinstance(finder, _MovedModules) for finder in sys.meta_path):
        sys.meta_path.append(_MovedModules())
