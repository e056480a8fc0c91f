"""The project's own promises: dependencies in one place, a working README, a light import."""

from __future__ import annotations

import contextlib
import io
import re
import subprocess
import sys
from pathlib import Path

import tomllib
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_environment_yml_mirrors_pyproject():
    project = _pyproject()["project"]
    wanted = project["dependencies"] + project["optional-dependencies"]["dev"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    pinned = [p for p in pip if not p.startswith("-e")]
    assert sorted(pinned) == sorted(wanted)
    python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python"))
    assert python == "python" + project["requires-python"]


def _readme_blocks(lang):
    return re.findall(rf"```{lang}\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)


def test_readme_quickstart_runs_and_prints_what_it_says():
    blocks = _readme_blocks("python")
    quickstart = blocks[0]
    expected = _readme_blocks("text")[0]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(quickstart, "README quickstart", "exec"), {})
    assert out.getvalue() == expected


def test_readme_figures_block_runs_after_the_quickstart():
    blocks = _readme_blocks("python")
    figures = next(b for b in blocks if b.startswith("gallery = blipviz.datasets.sample_images()"))
    namespace: dict = {}
    with contextlib.redirect_stdout(io.StringIO()):
        exec(compile(blocks[0], "README quickstart", "exec"), namespace)
        exec(compile(figures, "README figures", "exec"), namespace)
    att = namespace["att"]
    assert att.weights.ndim == 4 and att.maps(layer=-1).shape[1:] == namespace["model"].grid


def test_readme_has_exactly_the_two_make_commands():
    setup = _readme_blocks("bash")[0]
    commands = [line.split("#")[0].strip() for line in setup.strip().splitlines()]
    assert commands == ["make demo", "make test"]
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^demo:", makefile, re.M) and re.search(r"^test:", makefile, re.M)
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_import_is_light():
    code = (
        "import sys, blipviz; heavy = [m for m in ('matplotlib', 'umap', 'ipywidgets', 'sklearn', "
        "'datasets', 'transformers') if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_version_is_written_once():
    """pyproject reads ``blipviz._version.__version__``, statically: building the package imports none
    of it; ``blipviz.__version__`` is the same string."""
    config = _pyproject()
    assert "version" not in config["project"] and "version" in config["project"]["dynamic"]
    assert config["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "blipviz._version.__version__"}
    code = (
        "import sys; sys.modules['torch'] = None; "
        "from setuptools.config.pyprojecttoml import read_configuration as read; "
        "print(read('pyproject.toml', expand=True)['project']['version'], 'blipviz' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    import blipviz

    assert out.stdout.split() == [blipviz.__version__, "False"]


def test_vocabulary_is_package_data():
    vocab = ROOT / "blipviz" / "data" / "vocab.txt"
    lines = vocab.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 30522 and lines[101] == "[CLS]" and lines[102] == "[SEP]"
    assert "data/*" in _pyproject()["tool"]["setuptools"]["package-data"]["blipviz"]


def test_demo_fails_cleanly_offline():
    env = {"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-m", "blipviz"], capture_output=True, text=True, env=env, cwd=ROOT)
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    assert "Salesforce/blip-itm-base-coco" in out.stderr and "HF_HUB_OFFLINE" in out.stderr


def test_demo_runs_on_the_offline_net():
    out = subprocess.run(
        [sys.executable, "-m", "blipviz", "--model", "tiny-random"], capture_output=True, text=True, cwd=ROOT
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[0].startswith("tiny-random: descriptions of")
    assert len(lines) == 2 + 1 + 6  # title, header, index name, six descriptions
