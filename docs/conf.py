"""Sphinx configuration of blipviz's documentation site (built by ``docs/build.py``: ``make docs``).

The site is built offline, so no intersphinx inventory is fetched: references to numpy, torch,
pandas, PIL, matplotlib and the other libraries blipviz uses are left as text (``nitpick_ignore_regex``
below); every reference to blipviz itself must resolve (``-n -W``).
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import blipviz

project = "blipviz"
author = "the blipviz authors"
copyright = "2026, the blipviz authors"
version = release = blipviz.__version__

extensions = [
    "sphinx.ext.autodoc",
    "numpydoc",
    "myst_nb",
]
root_doc = "index"
exclude_patterns = ["_build", "**/.ipynb_checkpoints", "jupyter_execute"]
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}

# Notebooks: executed once by nbmake on the tiny offline net before Sphinx runs (docs/build.py), so
# Sphinx renders their outputs and never runs them again.
nb_execution_mode = "off"
nb_merge_streams = True
# The explorers' saved widget state (nbmake stores it) renders with ipywidgets' html-manager, served
# from the site itself (docs/_static/widgets, version 1.0.15) rather than a CDN: the site works offline.
nb_ipywidgets_js = {"widgets/embed.js": {}}
html_static_path = ["_static"]
myst_heading_anchors = 3  # the README's "#section" links
myst_enable_extensions = ["colon_fence", "deflist"]  # no dollarmath: a "$" in a caption stays a "$"

# API reference: numpydoc sections; the types are given in each docstring, so signatures omit them.
autodoc_typehints = "none"
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True}
numpydoc_show_class_members = False
numpydoc_xref_param_type = False
numpydoc_validation_checks: set[str] = set()

nitpicky = True
# Other libraries' names: no inventory offline (see the module docstring).
_EXTERNAL = (
    r"(numpy|np|torch|pandas|pd|PIL|matplotlib|mpl|datasets|transformers|ray|faiss|ipywidgets|umap"
    r"|sklearn|jscatter|pathlib|os|collections|typing|concurrent|huggingface_hub|pyarrow|IPython)(\..*)?"
)
nitpick_ignore_regex = [(r"py:.*", _EXTERNAL)]

html_theme = "pydata_sphinx_theme"
html_title = f"blipviz {release}"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "footer_start": ["copyright"],
    "footer_end": [],
}
html_show_sourcelink = False

# ------------------------------------------------------------------------------ API pages
#: The reference's sections: each public name of ``blipviz`` in the first section whose test holds.
SECTIONS = (
    ("Loading nets", lambda n, o: n in {"load_model", "load_part", "list_models", "parameters_information"}),
    (
        "The net and its parts",
        lambda n, o: n in {"BlipITM", "ImageEncoder", "TextEncoder", "MultimodalEncoder"},
    ),
    ("Errors and warnings", lambda n, o: inspect.isclass(o) and issubclass(o, Warning | Exception)),
    ("Interactive explorers", lambda n, o: n.endswith("Explorer")),
    ("Figures and tables", lambda n, o: n.endswith("Display") or n.startswith("style_")),
    ("Collections and pair scoring", lambda n, o: "ollection" in n or n == "score_pairs"),
    ("Modules", lambda n, o: inspect.ismodule(o)),
    ("Results and analyses", lambda n, o: True),
)


def _api_pages(app) -> None:
    """Write ``api.md``'s sections and one page per public name into the source folder."""
    src = Path(app.srcdir)
    (src / "api").mkdir(exist_ok=True)
    groups: dict[str, list[str]] = {title: [] for title, _ in SECTIONS}
    for name in sorted(blipviz.__all__, key=str.lower):
        obj = getattr(blipviz, name)
        title = next(t for t, test in SECTIONS if test(name, obj))
        if inspect.ismodule(obj):  # its page is the module's own, below
            groups[title].append(obj.__name__)
            continue
        groups[title].append(name)
        if inspect.isclass(obj):
            body = f".. currentmodule:: blipviz\n\n.. autoclass:: {name}\n"
            bases = obj.__mro__[1:-1]
            if bases and all(base.__module__.startswith("blipviz.") for base in bases):
                body += "   :inherited-members:\n"  # what it inherits from blipviz's own (BlipITM: BlipNet)
        else:
            body = f".. currentmodule:: blipviz\n\n.. autofunction:: {name}\n"
        head = f"blipviz.{name}"
        (src / "api" / f"{name}.rst").write_text(f"{head}\n{'=' * len(head)}\n\n{body}")
    lines = [(src / "api.md").read_text().rstrip(), ""]
    for title, names in groups.items():
        if names:
            lines += [
                f"## {title}",
                "",
                "```{toctree}",
                ":maxdepth: 1",
                "",
                *[f"api/{n}" for n in names],
                "```",
                "",
            ]
    modules = _modules()
    for name in modules:
        head = name
        # A module's page documents what it defines itself: a name it imports is documented once,
        # in the module defining it (a reference to the re-export resolves there: _canonical).
        module = importlib.import_module(name)
        options = "   :no-members:\n" if name == "blipviz" else "   :ignore-module-all:\n"
        del module
        body = f".. automodule:: {name}\n{options}"
        (src / "api" / f"{name}.rst").write_text(f"{head}\n{'=' * len(head)}\n\n{body}")
    lines += [
        "## Every module, by layer",
        "",
        "The names above live in these modules; here is each module's own public surface, the layer",
        "it belongs to in its dotted name (`net`, `store`, `analysis`, `display`, `explore`, `collection`).",
        "",
        "```{toctree}",
        ":maxdepth: 1",
        "",
        *[f"api/{n}" for n in modules],
        "```",
        "",
    ]
    (src / "api.md").write_text("\n".join(lines))


def _modules() -> list[str]:
    """Every public module of blipviz (no part of its dotted name starting with "_")."""
    import pkgutil

    found = ["blipviz"]
    for info in pkgutil.walk_packages(blipviz.__path__, "blipviz."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            found.append(info.name)
    return sorted(found)


def _resolve_short_name(app, env, node, contnode):
    """Resolve a blipviz reference written short (``InputError``, ``BlipNet.encode_texts``) in a
    module that does not define it, when exactly one documented object ends with that name (the
    top-level alias, ``blipviz.X``, wins over the module's own). Anything else stays missing, so a
    stale or ambiguous reference still fails the build."""
    if node.get("refdomain") != "py":
        return None
    target = node["reftarget"].removeprefix("~")
    domain = env.get_domain("py")
    canonical = _canonical(target)
    if canonical is not None and canonical != target and canonical in domain.objects:
        target = canonical
    found = sorted(
        {name for name in domain.objects if name == target or name.endswith("." + target)},
        key=lambda name: (name.count("."), name),
    )
    if not found:
        return None
    best = [name for name in found if name.count(".") == found[0].count(".")]
    distinct = {domain.objects[name].node_id for name in best}
    if len(distinct) > 1 and best[0] != f"blipviz.{target}":
        return None  # ambiguous: stays missing
    builder, refdoc = app.builder, node["refdoc"]
    resolved = domain.resolve_xref(env, refdoc, builder, node["reftype"], best[0], node, contnode)
    if resolved is None:  # written with another role (:func: for a method): any role will do
        found_any = domain.resolve_any_xref(env, refdoc, builder, best[0], node, contnode)
        resolved = found_any[0][1] if found_any else None
    return resolved


def _canonical(target: str) -> str | None:
    """``blipviz.a.B.c`` as the module and name that define it (a re-export's home), or None."""
    if not target.startswith("blipviz."):
        return None
    parts = target.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return None
        home = getattr(obj, "__module__", None)
        qualname = getattr(obj, "__qualname__", None)
        if inspect.ismodule(obj):
            return obj.__name__
        if home and qualname:
            return f"{home}.{qualname}"
        return None
    return None


def setup(app):
    app.connect("builder-inited", _api_pages)
    app.connect("missing-reference", _resolve_short_name)
