"""Shared fixtures: one tiny offline net per session; every figure closed after each test."""

from __future__ import annotations

import os

os.environ.setdefault("MPLBACKEND", "Agg")

import numpy as np
import pytest


@pytest.fixture(scope="session")
def tiny_model():
    """The tiny offline net (64 px images, 8 x 8 patch grid, 2 layers, 4 heads per tower)."""
    import blipviz

    return blipviz.load_model("tiny-random")


@pytest.fixture(scope="session")
def small_images():
    """Three RGB images of different sizes and contents (uint8 arrays)."""
    rs = np.random.RandomState(0)
    return [
        rs.randint(0, 255, (48, 64, 3)).astype(np.uint8),
        np.full((70, 50, 3), 200, dtype=np.uint8),
        (np.linspace(0, 255, 40 * 40 * 3).reshape(40, 40, 3)).astype(np.uint8),
    ]


@pytest.fixture(autouse=True)
def _close_figures():
    """Close every matplotlib figure a test opened."""
    yield
    import sys

    if "matplotlib.pyplot" in sys.modules:
        import matplotlib.pyplot as plt

        plt.close("all")
