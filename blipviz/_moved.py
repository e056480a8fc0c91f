"""The module paths of blipviz before its layers had folders, kept importable.

``import blipviz.cache``, ``from blipviz.images import load_image``, ``from blipviz.models import
load_model`` and the like keep working: each old path is a module of its own that re-exports every
public name of the modules now holding its contents (the same objects, not copies). The modules
themselves keep their own names and specs.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import types

__all__ = ["MOVED", "install_moved_module_aliases"]

#: Old module path -> the modules whose public names it re-exports (the first one holding a name wins).
MOVED: dict[str, tuple[str, ...]] = {
    "blipviz.attention": ("blipviz.analysis.attention", "blipviz.display.attention"),
    "blipviz.cache": ("blipviz.store.cache",),
    "blipviz.fast_attention": ("blipviz.net.fast_attention",),
    "blipviz.feature_space": ("blipviz.analysis.feature_space", "blipviz.display.feature_space"),
    "blipviz.fingerprint": ("blipviz.net.fingerprint",),
    "blipviz.images": ("blipviz.net.images",),
    "blipviz.info": ("blipviz.analysis.info",),
    "blipviz.models": ("blipviz.net.registry", "blipviz.net.hub", "blipviz.itm"),
    "blipviz.plotting": ("blipviz.display.plotting",),
    "blipviz.quantize": ("blipviz.net.quantize",),
    "blipviz.random_weights": ("blipviz.net.random_weights",),
    "blipviz.results": ("blipviz.net.features", "blipviz.analysis.scores"),
    "blipviz.search": ("blipviz.analysis.search",),
    "blipviz.tables": ("blipviz.display.tables", "blipviz.analysis.scores"),
    "blipviz.text": ("blipviz.net.text",),
    "blipviz.widgets": ("blipviz.display.widgets",),
    "blipviz.zero_shot": ("blipviz.analysis.zero_shot",),
}


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Builds an old path as a module re-exporting the public names of its new homes."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname in MOVED:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        return types.ModuleType(spec.name, f"Moved: see {', '.join(MOVED[spec.name])}.")

    def exec_module(self, module) -> None:
        for target in reversed(MOVED[module.__name__]):  # the first module wins on a shared name
            source = importlib.import_module(target)
            public = getattr(source, "__all__", None) or [n for n in vars(source) if not n.startswith("_")]
            for name in public:
                setattr(module, name, getattr(source, name))


def install_moved_module_aliases() -> None:
    """Make the old module paths importable (once per process)."""
    if not any(isinstance(finder, _MovedModules) for finder in sys.meta_path):
        sys.meta_path.append(_MovedModules())
