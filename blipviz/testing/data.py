"""Tiny offline datasets shaped like the real ones, for tests and notebooks in CI.

:func:`write_fashion_mnist_fixture` writes a dataset with the features of the Hugging Face Hub's
``zalando-datasets/fashion_mnist`` (``image``: ``Image``, ``label``: ``ClassLabel`` with the Hub's
ten names) and generated 28 x 28 grayscale pictures, so that
:func:`blipviz.datasets.load_fashion_mnist` runs its real loading path without a network.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["FASHION_MNIST_HUB_NAMES", "fashion_mnist_fixture_image", "write_fashion_mnist_fixture"]

#: The ``ClassLabel`` names of ``zalando-datasets/fashion_mnist``, in class order, spelled as on the Hub.
FASHION_MNIST_HUB_NAMES = (
    "T - shirt / top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

# One rough silhouette per class: (kind, box as fractions of the 28 px side).
_SHAPES = (
    ("rectangle", (0.2, 0.15, 0.8, 0.85)),  # t-shirt/top
    ("rectangle", (0.35, 0.05, 0.65, 0.95)),  # trouser
    ("ellipse", (0.1, 0.1, 0.9, 0.9)),  # pullover
    ("polygon", (0.5, 0.05, 0.85, 0.95)),  # dress
    ("rectangle", (0.1, 0.05, 0.9, 0.95)),  # coat
    ("rectangle", (0.05, 0.6, 0.95, 0.75)),  # sandal
    ("ellipse", (0.2, 0.05, 0.8, 0.95)),  # shirt
    ("polygon", (0.05, 0.45, 0.95, 0.8)),  # sneaker
    ("rectangle", (0.15, 0.3, 0.85, 0.9)),  # bag
    ("polygon", (0.1, 0.15, 0.9, 0.9)),  # ankle boot
)


def fashion_mnist_fixture_image(label: int, rng: np.random.Generator) -> Image.Image:
    """One generated 28 x 28 grayscale (mode ``"L"``) picture of class ``label`` (0-9).

    A bright class-dependent silhouette, jittered in position and brightness, on a dark noisy
    background: it looks nothing like clothing, but has FashionMNIST's format.
    """
    side = 28
    kind, (x0, y0, x1, y1) = _SHAPES[label]
    dx, dy = rng.integers(-2, 3, size=2)
    box = [x0 * side + dx, y0 * side + dy, x1 * side + dx, y1 * side + dy]
    image = Image.new("L", (side, side), 0)
    draw = ImageDraw.Draw(image)
    fill = int(rng.integers(140, 256))
    if kind == "rectangle":
        draw.rectangle(box, fill=fill)
    elif kind == "ellipse":
        draw.ellipse(box, fill=fill)
    else:
        draw.polygon([(box[0], box[3]), ((box[0] + box[2]) / 2, box[1]), (box[2], box[3])], fill=fill)
    pixels = np.asarray(image, dtype=np.int16) + rng.integers(0, 30, size=(side, side))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), mode="L")


def write_fashion_mnist_fixture(
    folder: str | os.PathLike,
    *,
    n_per_class: int = 2,
    seed: int = 0,
    splits: tuple[str, ...] = ("train", "test"),
    format: str = "disk",
) -> Path:
    """Write a tiny FashionMNIST-shaped dataset to ``folder``.

    The features are those of ``zalando-datasets/fashion_mnist``: ``image`` (``datasets.Image``,
    PNG-encoded 28 x 28 grayscale) and ``label`` (``datasets.ClassLabel`` with the names in
    :data:`FASHION_MNIST_HUB_NAMES`). Each split holds ``n_per_class`` images of every class, in
    the order 0, 1, ..., 9, 0, 1, ...

    Parameters
    ----------
    folder : str or os.PathLike
        Created if missing.
    n_per_class : int, default 2
    seed : int, default 0
        Seed of the generated pictures; the same seed writes the same pixels.
    splits : tuple of str, default ("train", "test")
    format : {"disk", "parquet"}, default "disk"
        ``"disk"``: a ``DatasetDict.save_to_disk`` folder. ``"parquet"``: the Hub's layout,
        ``folder/fashion_mnist/<split>-00000-of-00001.parquet``.

    Returns
    -------
    pathlib.Path
        ``folder``, to pass to ``load_fashion_mnist(source=...)``.
    """
    import datasets

    from ..errors import InputError

    if format not in ("disk", "parquet"):
        raise InputError(f"format must be 'disk' or 'parquet', got {format!r}")
    if n_per_class < 1:
        raise InputError(f"n_per_class must be at least 1, got {n_per_class}")
    if not splits:
        raise InputError("splits must name at least one split")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    features = datasets.Features(
        {"image": datasets.Image(), "label": datasets.ClassLabel(names=list(FASHION_MNIST_HUB_NAMES))}
    )
    parts = {}
    for number, split in enumerate(splits):
        rng = np.random.default_rng([seed, number])
        labels = [c for _ in range(n_per_class) for c in range(len(FASHION_MNIST_HUB_NAMES))]
        images = [fashion_mnist_fixture_image(c, rng) for c in labels]
        parts[split] = datasets.Dataset.from_dict({"image": images, "label": labels}, features=features)
    bars_were_off = datasets.utils.are_progress_bars_disabled()
    datasets.utils.disable_progress_bars()
    try:
        if format == "disk":
            datasets.DatasetDict(parts).save_to_disk(str(folder))
        else:
            (folder / "fashion_mnist").mkdir(exist_ok=True)
            for split, part in parts.items():
                part.to_parquet(str(folder / "fashion_mnist" / f"{split}-00000-of-00001.parquet"))
    finally:
        if not bars_were_off:
            datasets.utils.enable_progress_bars()
    return folder
