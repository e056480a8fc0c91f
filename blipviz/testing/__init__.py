"""Offline nets and data for tests, notebooks and users.

``tiny_random_hf_model()`` builds a small BLIP image-text matching net in code, with the real
30,524-token vocabulary and weights drawn by :func:`blipviz.random_weights.informative_init_`, so that
scores and attention maps differ from input to input. ``load_model("tiny-random")`` wraps it.

``assert_close(actual, expected, depth=...)`` compares floats with a tolerance derived from the
dtype, the depth of the computation and the magnitude of the values (:mod:`blipviz.testing.numerics`).

``write_fashion_mnist_fixture(folder)`` writes a tiny FashionMNIST-shaped dataset (same features and
label names as the Hub's, generated pictures) that :func:`blipviz.datasets.load_fashion_mnist` loads.
"""

from __future__ import annotations

from .data import FASHION_MNIST_HUB_NAMES, fashion_mnist_fixture_image, write_fashion_mnist_fixture
from .numerics import assert_close, net_depth, tolerance

__all__ = [
    "FASHION_MNIST_HUB_NAMES",
    "TINY_GEOMETRY",
    "assert_close",
    "fashion_mnist_fixture_image",
    "net_depth",
    "synthetic_images",
    "tiny_random_config",
    "tiny_random_hf_model",
    "tolerance",
    "write_fashion_mnist_fixture",
]

#: Geometry of the tiny net: 64 px images in 8 px patches (an 8 x 8 grid, 65 image tokens), two
#: layers of width 64 with 4 heads in each tower, the real vocabulary and the 256-d joint space.
TINY_GEOMETRY = {
    "vision": dict(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=64,
        patch_size=8,
        layer_norm_eps=1e-6,
    ),
    "text": dict(
        vocab_size=30524,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=512,
        layer_norm_eps=1e-12,
    ),
    "image_text_hidden_size": 256,
}


def tiny_random_config():
    """``transformers.BlipConfig`` of the tiny offline net (see :data:`TINY_GEOMETRY`)."""
    from transformers import BlipConfig

    config = BlipConfig(
        text_config=dict(TINY_GEOMETRY["text"]),
        vision_config=dict(TINY_GEOMETRY["vision"]),
        image_text_hidden_size=TINY_GEOMETRY["image_text_hidden_size"],
    )
    config.architectures = ["BlipForImageTextRetrieval"]
    return config


def tiny_random_hf_model(seed: int = 0):
    """A tiny ``BlipForImageTextRetrieval`` with informative random weights drawn from ``seed``."""
    from transformers import BlipForImageTextRetrieval

    from ..random_weights import informative_init_

    model = BlipForImageTextRetrieval(tiny_random_config())
    return informative_init_(model, seed).eval()


def synthetic_images(n: int, seed: int = 0, size: tuple[int, int] = (48, 64)) -> list:
    """``n`` distinct uint8 RGB images of shape (*size, 3): smooth colour waves plus noise.

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
