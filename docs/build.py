"""Build blipviz's documentation site offline: ``python docs/build.py [assemble|execute|html|all]``.

The site's sources are the repository's own files, never copies kept in git: the README is the
user guide, ``notebooks/*.ipynb`` are its sections, ``docs/gallery`` its figure gallery and the
docstrings its API reference. ``assemble`` lays them out in ``docs/_source`` (the README's
relative links then resolve as they do on GitHub); ``execute`` runs every notebook there with nbmake
on the tiny offline net (``--overwrite`` keeps the outputs; ``make test`` does this step as its
notebook check, so each notebook runs once); ``html`` runs Sphinx with warnings as errors and
nitpicky cross-references into ``docs/_build/html``. ``all`` (``make docs``) does the three.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
from html import escape
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
BUILD = DOCS / "_build"
SRC = DOCS / "_source"  # not under _build: nbmake skips any path with a "_build" folder
HTML = BUILD / "html"

#: The docs' own pages (Markdown), laid out at the site's root beside the README.
PAGES = ("index.md", "reading-the-numbers.md", "api.md", "notebooks.md")


def assemble() -> Path:
    """Lay the sources out in ``docs/_source``; returns that folder."""
    if SRC.exists():
        shutil.rmtree(SRC)
    SRC.mkdir(parents=True)
    shutil.copy2(ROOT / "README.md", SRC / "README.md")
    for page in PAGES:
        shutil.copy2(DOCS / page, SRC / page)
    (SRC / "notebooks").mkdir()
    for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
        shutil.copy2(notebook, SRC / "notebooks" / notebook.name)
    shutil.copy2(ROOT / "notebooks" / "README.md", SRC / "notebooks" / "README.md")
    shutil.copytree(DOCS / "gallery", SRC / "docs" / "gallery")
    shutil.copy2(DOCS / "gallery.py", SRC / "docs" / "gallery.py")  # linked from the gallery's page
    shutil.copytree(
        ROOT / "benchmarks", SRC / "benchmarks", ignore=shutil.ignore_patterns("__pycache__", "*.json")
    )
    return SRC


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", BLIPVIZ_MODEL=env.get("BLIPVIZ_MODEL", "tiny-random")
    )
    return env


def _starts_ray(notebook: Path) -> bool:
    """Whether a notebook starts a local Ray cluster (its code names the ``"ray"`` engine)."""
    return any(
        cell.get("cell_type") == "code"
        and re.search(r"""engine\s*=\s*["']ray["']|import ray""", "".join(cell["source"]))
        for cell in json.loads(notebook.read_text())["cells"]
    )


def execute() -> None:
    """Run every assembled notebook with nbmake, keeping its outputs.

    Two at a time (a kernel spends much of its time starting and importing on one core; each
    notebook writes only into its own temporary folders), except those that start Ray: they run
    after the others, one at a time, since Ray's start-up can time out on a busy 2-core machine.
    All of them run even when one fails; the step then fails.
    """
    notebooks = sorted((SRC / "notebooks").glob("*.ipynb"))
    ray = [nb for nb in notebooks if _starts_ray(nb)]
    rest = [nb for nb in notebooks if nb not in ray]
    command = [sys.executable, "-m", "pytest", "--nbmake", "--overwrite", "--nbmake-timeout=300"]
    command += ["-p", "no:cacheprovider", "-q", "--rootdir", str(ROOT)]
    failed = False
    for group, workers in ((rest, min(2, os.cpu_count() or 1)), (ray, 0)):
        if group:
            parallel = ["-n", str(workers)] if workers > 1 else []
            run = subprocess.run([*command, *parallel, *map(str, group)], cwd=ROOT, env=_env())
            failed |= run.returncode != 0
    if failed:
        raise SystemExit("docs/build.py execute: a notebook failed (above)")
    for notebook in notebooks:
        static_widgets(notebook)


#: What a saved widget whose code the site cannot load shows, named by its package (``{module}``;
#: jupyter-scatter's WebGL map is an ``anywidget``).
NEEDS_KERNEL = (
    "<i>This widget ({module}) needs a live kernel: run this notebook to use it. "
    "The other controls here show the state the notebook left them in.</i>"
)
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"


def static_widgets(notebook: Path) -> int:
    """Make an executed notebook's saved widget state renderable without a kernel or a CDN.

    ipywidgets' own widgets render from the state nbmake saved, with the html-manager the site
    serves (``docs/_static/widgets``). A widget from another package (its ``model_module`` is not
    ``@jupyter-widgets/...``) cannot be loaded offline; it becomes an HTML widget saying so (its
    layout and style taken from an HTML widget of the same notebook). Returns how many were replaced.
    """
    nb = json.loads(notebook.read_text())
    state = nb.get("metadata", {}).get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    foreign = [
        key for key, model in state.items() if not model["model_module"].startswith("@jupyter-widgets/")
    ]
    template = next((m for m in state.values() if m["model_name"] == "HTMLModel"), None)
    if not foreign or template is None:
        return 0
    for key in foreign:
        module = state[key]["model_module"]
        state[key] = copy.deepcopy(template)
        state[key]["state"]["value"] = NEEDS_KERNEL.format(module=escape(module))
    notebook.write_text(json.dumps(nb, ensure_ascii=False, indent=1) + "\n")
    return len(foreign)


def html() -> Path:
    """Sphinx, warnings as errors, nitpicky; returns the HTML folder."""
    command = [sys.executable, "-m", "sphinx", "-b", "html", "-W", "--keep-going", "-n", "-q"]
    command += ["-c", str(DOCS), str(SRC), str(HTML)]
    subprocess.run(command, check=True, cwd=ROOT, env=_env())
    return HTML


def main(argv: list[str]) -> int:
    steps = argv or ["all"]
    unknown = [step for step in steps if step not in ("assemble", "execute", "html", "all")]
    if unknown:  # before any step runs
        print(f"unknown step {unknown[0]!r}: assemble, execute, html or all", file=sys.stderr)
        return 2
    for step in steps:
        if step in ("assemble", "all"):
            assemble()
        if step in ("execute", "all"):
            execute()
        if step in ("html", "all"):
            html()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
