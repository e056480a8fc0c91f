"""Offline nets and data for tests, notebooks and users.

``tiny_random_hf_model()`` builds a small BLIP image-text matching net in code, with the real
30,524-token vocabulary and weights drawn by :func:`blipviz.net.random_weights.informative_init_`, so that
scores and attention maps differ from input to input. ``load_model("tiny-random")`` wraps it.

``assert_close(actual, expected, depth=...)`` compares floats with a tolerance derived from the
dtype, the depth of the computation and the magnitude of the values (:mod:`blipviz.testing.numerics`).

``write_fashion_mnist_fixture(folder)`` writes a tiny FashionMNIST-shaped dataset (same features and
label names as the Hub's, generated pictures) that :func:`blipviz.datasets.load_fashion_mnist` loads;
``write_retrieval_fixture(folder, name)`` writes a tiny COCO-Karpathy- or Flickr30k-shaped retrieval
benchmark that :func:`blipviz.datasets.load_retrieval_benchmark` loads.
"""

from __future__ import annotations

from ..net.registry import TINY_GEOMETRY, tiny_random_config
from .data import (
    COCO_FIXTURE_IMAGES,
    FASHION_MNIST_HUB_NAMES,
    MAP_CAPTIONS,
    MAP_PHOTOS,
    RetrievalFixture,
    fashion_mnist_fixture_image,
    retrieval_fixture_captions,
    retrieval_fixture_image,
    write_fashion_mnist_fixture,
    write_retrieval_fixture,
)
from .numerics import assert_close, net_depth, tolerance

__all__ = [
    "COCO_FIXTURE_IMAGES",
    "FASHION_MNIST_HUB_NAMES",
    "MAP_CAPTIONS",
    "MAP_PHOTOS",
    "TINY_GEOMETRY",
    "RetrievalFixture",
    "assert_close",
    "fashion_mnist_fixture_image",
    "net_depth",
    "retrieval_fixture_captions",
    "retrieval_fixture_image",
    "synthetic_images",
    "tiny_random_config",
    "tiny_random_hf_model",
    "tolerance",
    "write_fashion_mnist_fixture",
    "write_retrieval_fixture",
]


def tiny_random_hf_model(seed: int = 0):
    """A tiny ``BlipForImageTextRetrieval`` with informative random weights drawn from ``seed``."""
    from ..net.loading import random_hf_model

    return random_hf_model(tiny_random_config(), seed)


def synthetic_images(n: int, seed: int = 0, size: tuple[int, int] = (48, 64)) -> list:
    """``n`` distinct uint8 RGB images of shape ``(*size, 3)``: smooth colour waves plus noise.

    Returns
    -------
    list of ndarray of shape (height, width, 3), dtype uint8
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    images = []
    for _ in range(n):
        a, b, c = rng.uniform(-1, 1, 3)
        base = np.stack([np.sin(6 * a * xx + 4 * b * yy + c * k) for k in range(3)], axis=-1)
        noise = rng.normal(0, 0.15, (h, w, 3))
        images.append(np.clip((base * 0.5 + 0.5 + noise) * 255, 0, 255).astype(np.uint8))
    return images
