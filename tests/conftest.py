"""Shared fixtures: offline nets built in code, synthetic images. Nothing here touches the network."""

from __future__ import annotations

import pytest
import torch

import blipviz
from blipviz.testing import synthetic_images as make_images

TEXTS = [
    "a dog running on the beach",
    "two cats sleeping on a red sofa",
    "A bowl of fresh fruit on a wooden table.",
    "an empty street at night",
    "a man riding a bicycle",
]


@pytest.fixture(scope="session")
def tiny():
    return blipviz.load_model("tiny-random")


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
