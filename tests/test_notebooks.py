"""The notebooks' own rules: the documented set exists, each is committed stripped, and each reads
its net from ``BLIPVIZ_MODEL`` in a first code cell tagged ``parameters``.

Running them is nbmake's job (``pytest --nbmake notebooks/``); these checks are cheap and run with
the unit tests.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"

#: One notebook per documented section; 07 (the widgets explorer) may be present too.
REQUIRED = (
    "01_basic_usage.ipynb",
    "02_image_text_matrix.ipynb",
    "03_feature_space.ipynb",
    "04_zero_shot_classification.ipynb",
    "05_cross_attention.ipynb",
    "06_net_information.ipynb",
)

READS_MODEL = re.compile(r"""os\.environ\.get\(\s*["']BLIPVIZ_MODEL["']""")
READS_FASHION_MNIST = re.compile(r"""os\.environ\.get\(\s*["']BLIPVIZ_FASHION_MNIST["']""")


def _paths() -> list[Path]:
    return sorted(NOTEBOOKS.glob("*.ipynb"))


def _read(path: Path):
    return nbformat.read(path, as_version=4)


def _first_code_cell(nb):
    return next(cell for cell in nb.cells if cell.cell_type == "code")


def test_every_documented_section_has_its_notebook():
    present = {p.name for p in _paths()}
    missing = [name for name in REQUIRED if name not in present]
    assert not missing, f"missing notebooks: {missing}"


@pytest.mark.parametrize("path", _paths(), ids=lambda p: p.name)
def test_notebook_is_valid_and_stripped(path):
    nb = _read(path)
    nbformat.validate(nb)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert code, "a notebook without code"
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        assert cell.get("outputs") == [], f"cell {index} has outputs: commit the notebook stripped"
        assert cell.get("execution_count") is None, f"cell {index} has an execution count"
    assert "widgets" not in nb.metadata, "saved widget state: commit the notebook stripped"


@pytest.mark.parametrize("path", _paths(), ids=lambda p: p.name)
def test_first_code_cell_is_tagged_parameters_and_reads_the_model(path):
    first = _first_code_cell(_read(path))
    assert "parameters" in first.metadata.get("tags", []), "the first code cell must be tagged 'parameters'"
    assert READS_MODEL.search(first.source), "the parameters cell must read os.environ.get('BLIPVIZ_MODEL')"


def test_zero_shot_notebook_reads_its_data_location_as_a_parameter():
    first = _first_code_cell(_read(NOTEBOOKS / "04_zero_shot_classification.ipynb"))
    assert READS_FASHION_MNIST.search(first.source)


def test_the_notebook_table_lists_every_notebook():
    readme = (NOTEBOOKS / "README.md").read_text()
    for path in _paths():
        assert path.name in readme, f"{path.name} is not in notebooks/README.md"
