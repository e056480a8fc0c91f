"""Tiny offline datasets shaped like the real ones, for tests and notebooks in CI.

:func:`write_fashion_mnist_fixture` writes a dataset with the features of the Hugging Face Hub's
``zalando-datasets/fashion_mnist`` (``image``: ``Image``, ``label``: ``ClassLabel`` with the Hub's
ten names) and generated 28 x 28 grayscale pictures, so that
:func:`blipviz.datasets.load_fashion_mnist` runs its real loading path without a network.

:func:`write_retrieval_fixture` does the same for the retrieval benchmarks of
:func:`blipviz.datasets.load_retrieval_benchmark`: the columns of ``nlphuji/flickr30k`` (images in
the rows) or of ``yerevann/coco-karpathy`` (JPEG files in a COCO-like image folder), with generated
pictures of coloured shapes and captions that name them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageDraw

__all__ = [
    "COCO_FIXTURE_IMAGES",
    "FASHION_MNIST_HUB_NAMES",
    "MAP_CAPTIONS",
    "MAP_PHOTOS",
    "RetrievalFixture",
    "fashion_mnist_fixture_image",
    "retrieval_fixture_captions",
    "retrieval_fixture_image",
    "write_fashion_mnist_fixture",
    "write_retrieval_fixture",
]

#: A crowded feature-space map: six photographs of :func:`blipviz.datasets.sample_images` and eight
#: captions, some long (the layout test on the full geometry and the gallery draw the same scene).
MAP_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "motorcycle", "grace_hopper")
MAP_CAPTIONS = (
    "an astronaut in a white suit",
    "a ginger cat",
    "a cup of coffee on a saucer",
    "the Statue of Liberty",
    "the Manhattan skyline seen from the river",
    "a rocket on its launch pad at Cape Canaveral, minutes before lift-off, with the service tower beside it",
    "a red motorcycle parked in a garage next to a workbench",
    "a portrait of Grace Hopper in her navy uniform, photographed in the studio in front of a dark "
    "backdrop and an American flag",
)

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


# ----------------------------------------------------------------------------- retrieval benchmarks
_COLOURS = (("red", (200, 30, 30)), ("green", (30, 160, 60)), ("blue", (40, 70, 200)),
            ("yellow", (220, 200, 40)), ("purple", (130, 50, 160)), ("orange", (240, 130, 20)))  # fmt: skip
_FORMS = ("circle", "square", "triangle")
_PHRASES = (
    "a {c} {f} on a dark background",
    "a picture of a {c} {f}",
    "one {c} {f} in the middle",
    "a small {c} {f} on grey noise",
    "the shape is a {c} {f}",
    "a {f} painted {c}",
    "an image with a single {c} {f}",
)

#: The folder, inside a COCO fixture, that plays COCO's image root (holding ``val2014/``).
COCO_FIXTURE_IMAGES = "coco-images"


class RetrievalFixture(NamedTuple):
    """What :func:`write_retrieval_fixture` wrote: ``path`` (for ``load_retrieval_benchmark(path=)``)
    and ``images_root`` (COCO's image folder; None for Flickr30k, whose rows carry the images)."""

    path: Path
    images_root: Path | None


def retrieval_fixture_image(
    index: int, rng: np.random.Generator, size: tuple[int, int] = (64, 48)
) -> Image.Image:
    """One generated RGB picture: shape ``index % 3`` in colour ``index % 6`` on grey noise."""
    w, h = size
    pixels = np.clip(rng.normal(90, 25, (h, w, 3)), 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels, mode="RGB")
    draw = ImageDraw.Draw(image)
    _, rgb = _COLOURS[index % len(_COLOURS)]
    dx, dy = rng.integers(-4, 5, size=2)
    box = [w * 0.25 + dx, h * 0.2 + dy, w * 0.75 + dx, h * 0.8 + dy]
    form = _FORMS[index % len(_FORMS)]
    if form == "circle":
        draw.ellipse(box, fill=rgb)
    elif form == "square":
        draw.rectangle(box, fill=rgb)
    else:
        draw.polygon([(box[0], box[3]), ((box[0] + box[2]) / 2, box[1]), (box[2], box[3])], fill=rgb)
    return image


def retrieval_fixture_captions(index: int, n: int) -> list[str]:
    """``n`` captions (at most 7) of picture ``index``: its colour and shape in different words."""
    colour, _ = _COLOURS[index % len(_COLOURS)]
    form = _FORMS[index % len(_FORMS)]
    return [p.format(c=colour, f=form) for p in _PHRASES[:n]]


def write_retrieval_fixture(
    folder: str | os.PathLike,
    name: str = "flickr30k",
    *,
    n_images: int = 6,
    captions_per_image: int = 5,
    extra_captions: int = 1,
    n_other: int = 2,
    seed: int = 0,
    format: str = "disk",
) -> RetrievalFixture:
    """Write a tiny dataset with the columns of a retrieval benchmark's Hub dataset.

    ``"flickr30k"``: the layout of ``nlphuji/flickr_1k_test_image_text_retrieval`` /
    ``nlphuji/flickr30k``: one Hub split ``test`` whose rows have ``image`` (JPEG), ``caption``
    (list of str), ``sentids`` (list of str), ``split``, ``img_id`` and ``filename``; ``n_other``
    rows of split ``"train"`` come first, as in ``nlphuji/flickr30k``, where the column picks the
    Karpathy split. ``"coco-karpathy"``: the layout of ``yerevann/coco-karpathy``: Hub splits
    ``test`` and ``validation`` with ``filepath`` (``"val2014"``), ``sentids``, ``filename``
    (``COCO_val2014_<id>.jpg``), ``imgid``, ``split`` (``"test"`` / ``"val"``), ``sentences``,
    ``cocoid`` and ``url``, and the JPEG files under ``folder/coco-images/val2014/``.

    The ``n_images`` test images are generated shapes (:func:`retrieval_fixture_image`), each with
    ``captions_per_image`` captions naming its colour and shape; the first ``extra_captions``
    images get one caption more (COCO's test split has a few images with 6 or 7).

    Parameters
    ----------
    folder : str or os.PathLike
        Created if missing.
    name : {"flickr30k", "coco-karpathy"}
    n_images : int, default 6
    captions_per_image : int, default 5
    extra_captions : int, default 1
    n_other : int, default 2
        Rows of another split (``"train"`` for Flickr30k, ``"val"`` for COCO), which the loader
        must leave out.
    seed : int, default 0
    format : {"disk", "parquet"}, default "disk"
        ``"disk"``: a ``DatasetDict.save_to_disk`` folder ``folder/data``; ``"parquet"``:
        ``folder/data/<split>-00000-of-00001.parquet``.

    Returns
    -------
    RetrievalFixture
        ``(path, images_root)``.
    """
    import datasets

    from ..errors import InputError

    if name not in ("flickr30k", "coco-karpathy"):
        raise InputError(f"name must be 'flickr30k' or 'coco-karpathy', got {name!r}")
    if format not in ("disk", "parquet"):
        raise InputError(f"format must be 'disk' or 'parquet', got {format!r}")
    if n_images < 1 or not 1 <= captions_per_image < len(_PHRASES) or n_other < 0:
        raise InputError(
            f"need n_images >= 1, 1 <= captions_per_image < {len(_PHRASES)} and n_other >= 0, got "
            f"{n_images}, {captions_per_image}, {n_other}"
        )
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    # (split, picture index) of every row: the other split's rows first, then the test rows
    other = "train" if name == "flickr30k" else "val"
    rows = [(other, n_images + i) for i in range(n_other)] + [("test", i) for i in range(n_images)]
    records: dict[str, list] = {}
    sentid = 0
    images_root: Path | None = None
    if name == "coco-karpathy":
        images_root = folder / COCO_FIXTURE_IMAGES
        (images_root / "val2014").mkdir(parents=True, exist_ok=True)
    for number, (split, index) in enumerate(rows):
        n_caps = captions_per_image + (1 if split == "test" and index < extra_captions else 0)
        captions = retrieval_fixture_captions(index, n_caps)
        sentids = list(range(sentid, sentid + n_caps))
        sentid += n_caps
        picture = retrieval_fixture_image(index, rng)
        if name == "flickr30k":
            row = {
                "image": picture,
                "caption": captions,
                "sentids": [str(s) for s in sentids],
                "split": split,
                "img_id": str(number),
                "filename": f"{1000000 + number}.jpg",
            }
        else:
            cocoid = 391895 + 7 * number
            filename = f"COCO_val2014_{cocoid:012d}.jpg"
            assert images_root is not None  # set above for COCO
            picture.save(images_root / "val2014" / filename, quality=92)
            row = {
                "filepath": "val2014",
                "sentids": sentids,
                "filename": filename,
                "imgid": number,
                "split": split,
                "sentences": captions,
                "cocoid": cocoid,
                "url": f"http://images.cocodataset.org/val2014/{filename}",
            }
        for key, value in row.items():
            records.setdefault(key, []).append(value)
    if name == "flickr30k":
        features = datasets.Features(
            {
                "image": datasets.Image(),
                "caption": datasets.Sequence(datasets.Value("string")),
                "sentids": datasets.Sequence(datasets.Value("string")),
                "split": datasets.Value("string"),
                "img_id": datasets.Value("string"),
                "filename": datasets.Value("string"),
            }
        )
        parts = {"test": datasets.Dataset.from_dict(records, features=features)}
    else:
        table = datasets.Dataset.from_dict(records)
        parts = {
            hub: table.select([i for i, s in enumerate(records["split"]) if s == split])
            for hub, split in (("test", "test"), ("validation", "val"))
        }
    bars_were_off = datasets.utils.are_progress_bars_disabled()
    datasets.utils.disable_progress_bars()
    try:
        if format == "disk":
            datasets.DatasetDict(parts).save_to_disk(str(folder / "data"))
            path = folder / "data"
        else:
            (folder / "data").mkdir(exist_ok=True)
            for split, part in parts.items():
                part.to_parquet(str(folder / "data" / f"{split}-00000-of-00001.parquet"))
            path = folder / "data"
    finally:
        if not bars_were_off:
            datasets.utils.enable_progress_bars()
    return RetrievalFixture(path, images_root)
