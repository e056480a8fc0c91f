"""Shared fixtures: offline nets built in code, synthetic images; every figure closed after each test.

Nothing here touches the network.
"""

from __future__ import annotations

import os

os.environ.setdefault("MPLBACKEND", "Agg")

import numpy as np
import pytest
import torch

# Generated inputs: `make test` (and CI) draws the same examples on every run (the "ci" profile:
# seeded from each test's name, so a failure on one machine fails on all); the default profile
# draws new ones each run, and `make test-figures-long` draws many (BLIPVIZ_EXAMPLE_SCALE).
from hypothesis import settings as _hypothesis_settings

import blipviz
from blipviz.testing import synthetic_images as make_images

# No deadline: a test's speed is not what it checks, and 2 shared cores make any deadline a flake.
_hypothesis_settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
_hypothesis_settings.register_profile("explore", deadline=None, print_blob=True)
_hypothesis_settings.load_profile(os.environ.get("BLIPVIZ_HYPOTHESIS", "explore"))


def examples(n: int) -> int:
    """``n`` generated examples, times ``BLIPVIZ_EXAMPLE_SCALE`` (default 1)."""
    return max(1, round(n * float(os.environ.get("BLIPVIZ_EXAMPLE_SCALE", "1"))))


TEXTS = [
    "a dog running on the beach",
    "two cats sleeping on a red sofa",
    "A bowl of fresh fruit on a wooden table.",
    "an empty street at night",
    "a man riding a bicycle",
]


@pytest.fixture(scope="session")
def tiny():
    """The tiny offline net (64 px images, 8 x 8 patch grid, 2 layers, 4 heads per tower)."""
    return blipviz.load_model("tiny-random")


@pytest.fixture(scope="session")
def tiny_model(tiny):
    return tiny


@pytest.fixture(scope="session")
def full_b():
    """Full ViT-B/16 geometry with random weights (about 224M parameters)."""
    torch.manual_seed(0)
    return blipviz.load_model(pretrained=False)


@pytest.fixture
def images():
    return make_images(4)


@pytest.fixture
def texts():
    return list(TEXTS)


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
