"""Data for notebooks, examples and tests: FashionMNIST, and a gallery of real photographs.

- :func:`load_fashion_mnist` reads the FashionMNIST test (or train) set through Hugging Face
  ``datasets``: from the Hub (``zalando-datasets/fashion_mnist``) or its local cache, from a local
  copy (a ``save_to_disk`` folder or parquet files), or from an already loaded ``datasets.Dataset``.
- :func:`load_retrieval_benchmark` reads the test (or validation) split of BLIP's retrieval
  benchmarks, COCO (Karpathy split) and Flickr30k, the same ways: Hub, local copy, loaded dataset.
- :func:`sample_images` returns real photographs that ship inside packages installed with blipviz
  (scikit-image, scikit-learn, matplotlib), so that it works offline.

Hugging Face ``datasets`` is imported inside the functions that use it, so ``import blipviz`` stays
light; imports here are absolute, so this module (``blipviz.datasets``) never hides that package.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import pandas as pd
from PIL import Image

from blipviz.errors import InputError, InputTypeError, OfflineError
from blipviz.net import hub
from blipviz.net.hub import HUB_ID, offline_message
from blipviz.net.images import to_rgb

if TYPE_CHECKING:
    import datasets as hf_datasets

__all__ = [
    "FASHION_MNIST_HUB_ID",
    "FASHION_MNIST_LABELS",
    "RETRIEVAL_BENCHMARKS",
    "Gallery",
    "LabelledImages",
    "RetrievalBenchmark",
    "RetrievalBenchmarkSource",
    "SampleImage",
    "load_fashion_mnist",
    "load_retrieval_benchmark",
    "sample_images",
]

#: Hub id of the FashionMNIST dataset that :func:`load_fashion_mnist` reads by default.
FASHION_MNIST_HUB_ID = "zalando-datasets/fashion_mnist"

#: FashionMNIST's class names in class order (0-9), spelled as the reference spells them.
FASHION_MNIST_LABELS = (
    "t-shirt/top",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle boot",
)

_TRUE = {"1", "ON", "YES", "TRUE"}


# ------------------------------------------------------------------------------------ FashionMNIST


class LabelledImages(NamedTuple):
    """Images with their class labels; unpacks as ``images, labels, label_names``.

    Attributes
    ----------
    images : list of PIL.Image.Image
        Grayscale (mode ``"L"``) pictures, 28 x 28 for FashionMNIST, in dataset order.
    labels : list of str
        The class name of each image, one of ``label_names``.
    label_names : list of str
        Every class name, in the dataset's class order (index = integer label).
    """

    images: list[Image.Image]
    labels: list[str]
    label_names: list[str]


def _label_name(name: str) -> str:
    """Hub class name -> reference spelling: ``'T - shirt / top'`` -> ``'t-shirt/top'``."""
    name = re.sub(r"\s*([-/])\s*", r"\1", name.strip())
    return re.sub(r"\s+", " ", name).lower()


def _offline_reason() -> str | None:
    """Why the Hub must not be asked, or None. ``HF_DATASETS_OFFLINE`` overrides ``HF_HUB_OFFLINE``
    (as in ``datasets``); the environment is read now, not when ``datasets`` was imported."""
    value = os.environ.get("HF_DATASETS_OFFLINE")
    if value is not None:
        return "HF_DATASETS_OFFLINE is set" if value.upper() in _TRUE else None
    if os.environ.get("HF_HUB_OFFLINE", "").upper() in _TRUE:
        return "HF_HUB_OFFLINE is set"
    import datasets

    if datasets.config.HF_HUB_OFFLINE:
        return "Hugging Face offline mode is on"
    return None


_DATASET_WAYS_FORWARD = (
    "load it once on a machine with access (it is then cached), or pass a local copy with "
    "load_fashion_mnist(source=...): a folder written by Dataset.save_to_disk / "
    "DatasetDict.save_to_disk, parquet files (e.g. a clone of the Hub repository), or an already "
    "loaded datasets.Dataset; for tests, blipviz.testing.write_fashion_mnist_fixture(folder) "
    "writes a tiny dataset of the same shape."
)


def _offline_message(repo: str, reason: str, ways_forward: str = _DATASET_WAYS_FORWARD) -> str:
    return offline_message("dataset", repo, "Hugging Face datasets cache", reason, ways_forward)


@contextlib.contextmanager
def _datasets_offline() -> Iterator[None]:
    """Turn on ``datasets``' offline switch for a call. It reads ``HF_DATASETS_OFFLINE`` once, at
    import, so setting the environment now would not reach it; with the switch on it makes no
    network request (not even its download-count ping for local parquet files)."""
    import datasets

    saved = datasets.config.HF_HUB_OFFLINE
    datasets.config.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE = saved


def _from_hub(
    repo: str,
    split: str,
    limit: int | None,
    cache_dir: str | None,
    *,
    revision: str | None = None,
    ways_forward: str = _DATASET_WAYS_FORWARD,
) -> hf_datasets.Dataset:
    import datasets

    spec = split if limit is None else f"{split}[:{limit}]"
    options: dict[str, Any] = {"split": spec, "cache_dir": cache_dir}
    if revision is not None:
        options["revision"] = revision
    reason = _offline_reason()
    if reason is None and not hub.hub_reachable():
        reason = "the Hugging Face Hub could not be reached"
    if reason is None:
        return datasets.load_dataset(repo, **options)
    # Offline: the cache only, with no network request (and no retry).
    with _datasets_offline():
        try:
            return datasets.load_dataset(repo, **options)
        except OSError as exc:
            # ConnectionError, FileNotFoundError, DatasetNotFoundError: nothing cached.
            raise OfflineError(_offline_message(repo, reason, ways_forward)) from exc


def _pick_split(loaded: Any, split: str, where: str) -> hf_datasets.Dataset:
    if split not in loaded:
        raise InputError(f"{where} has no split {split!r}; it has {sorted(loaded)}")
    return loaded[split]


def _parquet_split(path: Path) -> str:
    """``test-00000-of-00001.parquet`` (the Hub's naming) or ``test.parquet`` -> ``"test"``."""
    return path.stem.split("-")[0]


def _from_local(path: Path, split: str, cache_dir: str | None) -> hf_datasets.Dataset:
    import datasets

    where = f"source {str(path)!r}"
    if path.is_dir() and ((path / "dataset_dict.json").is_file() or (path / "state.json").is_file()):
        loaded = datasets.load_from_disk(str(path))
        return loaded if isinstance(loaded, datasets.Dataset) else _pick_split(loaded, split, where)
    if path.is_file():
        if path.suffix != ".parquet":
            raise InputError(f"{where}: expected a .parquet file or a folder, got a {path.suffix!r} file")
        files = [path]
    else:
        found = sorted(path.rglob("*.parquet"))
        if not found:
            raise InputError(f"{where} holds neither a dataset written by save_to_disk nor parquet files")
        files = [f for f in found if _parquet_split(f) == split]
        if not files:
            splits = sorted({_parquet_split(f) for f in found})
            raise InputError(f"{where} has parquet files for the splits {splits}, not for {split!r}")
    with _datasets_offline():  # local files: nothing to ask the Hub
        return datasets.load_dataset(
            "parquet", data_files={split: [str(f) for f in files]}, split=split, cache_dir=cache_dir
        )


def _as_split(source: Any, split: str, limit: int | None, cache_dir: str | None) -> hf_datasets.Dataset:
    import datasets

    if source is None:
        return _from_hub(FASHION_MNIST_HUB_ID, split, limit, cache_dir)
    if isinstance(source, datasets.Dataset):
        return source
    if isinstance(source, datasets.DatasetDict):
        return _pick_split(source, split, "the given DatasetDict")
    if isinstance(source, str | os.PathLike):
        path = Path(source).expanduser()
        if path.exists():
            return _from_local(path, split, cache_dir)
        if isinstance(source, str) and HUB_ID.fullmatch(source):
            return _from_hub(source, split, limit, cache_dir)
        raise InputError(f"source {str(path)!r}: no such file or folder")
    raise InputTypeError(
        "source must be None (the Hub), a path, a Hub id, a datasets.Dataset or a datasets.DatasetDict, "
        f"got {type(source).__name__}"
    )


def load_fashion_mnist(
    split: str = "test",
    limit: int | None = None,
    source: str | os.PathLike | hf_datasets.Dataset | hf_datasets.DatasetDict | None = None,
    *,
    cache_dir: str | os.PathLike | None = None,
) -> LabelledImages:
    """Load FashionMNIST: grayscale 28 x 28 pictures of clothing in ten classes.

    Parameters
    ----------
    split : str, default "test"
        ``"test"`` (10,000 images) or ``"train"`` (60,000).
    limit : int, optional
        Keep only the first ``limit`` images of the split.
    source : str, os.PathLike, datasets.Dataset or datasets.DatasetDict, optional
        Where to read from. ``None``: the Hub dataset :data:`FASHION_MNIST_HUB_ID` (from the local
        cache when offline). A path: a folder written by ``save_to_disk`` (a ``Dataset`` or a
        ``DatasetDict`` with ``split``), a ``.parquet`` file, or a folder of parquet files named
        ``<split>-*.parquet`` or ``<split>.parquet`` (such as a clone of the Hub repository). A Hub
        id (``owner/name``) of a mirror. Or an already loaded ``Dataset`` (used as is) or
        ``DatasetDict``. The dataset needs an ``image`` column and a ``label`` column
        (``ClassLabel``, or integers 0-9).
    cache_dir : str or os.PathLike, optional
        Hugging Face datasets cache to use instead of the default one.

    Returns
    -------
    LabelledImages
        A named tuple ``(images, labels, label_names)``: PIL images (mode ``"L"``), the class name
        of each, and the ten class names in class order: t-shirt/top, trouser, pullover, dress,
        coat, sandal, shirt, sneaker, bag, ankle boot (the Hub's ``"T - shirt / top"`` becomes
        ``"t-shirt/top"``, and names are lower-cased).

    Raises
    ------
    OfflineError
        ``source`` is a Hub id (or None), the dataset is not cached, and the Hub is unreachable or
        offline mode is on (``HF_DATASETS_OFFLINE`` / ``HF_HUB_OFFLINE``). Raised within seconds.
    InputError
        A missing path, a missing split, or a dataset without ``image`` and ``label`` columns.

    Examples
    --------
    >>> images, labels, names = load_fashion_mnist(limit=100)  # doctest: +SKIP
    """
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise InputError(f"limit must be None or a non-negative int, got {limit!r}")
    if not isinstance(split, str) or not split:
        raise InputError(f"split must be a split name such as 'test', got {split!r}")
    cache = None if cache_dir is None else os.fspath(cache_dir)
    data = _as_split(source, split, limit, cache)
    return _labelled_images(data, limit)


def _labelled_images(data: hf_datasets.Dataset, limit: int | None) -> LabelledImages:
    import datasets

    missing = [c for c in ("image", "label") if c not in data.column_names]
    if missing:
        raise InputError(
            f"the dataset has no {' and '.join(repr(c) for c in missing)} column (it has "
            f"{data.column_names}); expected FashionMNIST's 'image' and 'label'"
        )
    if limit is not None and limit < len(data):
        data = data.select(range(limit))
    feature = data.features["label"]
    if isinstance(feature, datasets.ClassLabel):
        names = [_label_name(n) for n in feature.names]
    else:
        names = list(FASHION_MNIST_LABELS)
    ids = [int(i) for i in data["label"]]
    bad = [i for i in ids if not 0 <= i < len(names)]
    if bad:
        raise InputError(f"labels must lie in 0..{len(names) - 1}, got {bad[0]}")
    images = []
    for image in data["image"]:
        images.append(image if image.mode == "L" else image.convert("L"))
    return LabelledImages(images, [names[i] for i in ids], names)


# ----------------------------------------------------------------------------- retrieval benchmarks


@dataclass(frozen=True)
class RetrievalBenchmarkSource:
    """Where a retrieval benchmark comes from on the Hub, and its layout.

    Attributes
    ----------
    name : str
        ``"coco-karpathy"`` or ``"flickr30k"``.
    hub_id : str
        The Hugging Face Hub dataset read by default.
    revision : str or None
        The Hub revision read (``"refs/convert/parquet"``: the Hub's own parquet export of a
        repository whose loading script ``datasets`` >= 4 no longer runs).
    layout : {"karpathy", "images"}
        ``"karpathy"``: one row per image with ``filepath``, ``filename``, ``sentences`` (list of
        str) and ``split``, and no pixels (the images come from ``images_root``). ``"images"``: one
        row per image with ``image`` (``datasets.Image``), ``caption`` (list of str), ``filename``
        and ``split``.
    n_images, n_texts : int
        Size of the Karpathy test split.
    title : str
        How figures name its test split.
    """

    name: str
    hub_id: str
    revision: str | None
    layout: str
    n_images: int
    n_texts: int
    title: str


#: The benchmarks :func:`load_retrieval_benchmark` knows, by name.
RETRIEVAL_BENCHMARKS = {
    "coco-karpathy": RetrievalBenchmarkSource(
        "coco-karpathy", "yerevann/coco-karpathy", None, "karpathy", 5000, 25010, "COCO 5k test"
    ),
    "flickr30k": RetrievalBenchmarkSource(
        "flickr30k",
        "nlphuji/flickr_1k_test_image_text_retrieval",
        "refs/convert/parquet",
        "images",
        1000,
        5000,
        "Flickr30k 1k test",
    ),
}
_KARPATHY_SPLITS = {"test": "test", "val": "val", "validation": "val", "train": "train"}
_HUB_SPLITS = {"test": "test", "val": "validation", "train": "train"}


@dataclass(frozen=True, eq=False)
class RetrievalBenchmark:
    """One split of a retrieval benchmark, in BLIP's order.

    Built like BLIP's ``coco_karpathy_retrieval_eval`` / ``flickr30k_retrieval_eval`` datasets:
    images in the order of the annotation rows, each image's captions in their order, text ``j``
    belonging to image ``text_image[j]`` (BLIP's ``txt2img``); :attr:`image_captions` is BLIP's
    ``img2txt``. Captions are raw (``evaluate_retrieval`` applies BLIP's ``pre_caption`` with 30
    words); images are file paths or encoded bytes, decoded only when scored.

    Attributes
    ----------
    name : str
    split : str
        The Karpathy split (``"test"``, ``"val"``).
    images : list of str or bytes
        One entry per image: a file path (COCO, under ``images_root``) or the encoded file
        (Flickr30k: the dataset carries the JPEG bytes).
    captions : list of str
    text_image : list of int
        The image index of each caption.
    image_names : list of str
        The file name of each image.
    title : str
        ``"Flickr30k 1k test"`` (with the image count when ``limit`` cut it), for figures.
    """

    name: str
    split: str
    images: list[Any]
    captions: list[str]
    text_image: list[int]
    image_names: list[str]
    title: str

    @property
    def image_captions(self) -> list[list[int]]:
        """BLIP's ``img2txt``: each image's caption indices."""
        captions: list[list[int]] = [[] for _ in self.images]
        for text, image in enumerate(self.text_image):
            captions[image].append(text)
        return captions

    def __repr__(self) -> str:
        return (
            f"RetrievalBenchmark({self.name!r}, split={self.split!r}, {len(self.images)} images, "
            f"{len(self.captions)} captions)"
        )


def _retrieval_ways_forward(source: RetrievalBenchmarkSource) -> str:
    images = (
        " The COCO images are not in that dataset: pass images_root=, the folder holding val2014/."
        if source.layout == "karpathy"
        else ""
    )
    return (
        f"load it once on a machine with access (it is then cached), or pass a local copy with "
        f"load_retrieval_benchmark({source.name!r}, path=...): a folder written by save_to_disk, "
        "parquet files with the same columns, or an already loaded datasets.Dataset; for tests, "
        f"blipviz.testing.data.write_retrieval_fixture(folder, {source.name!r}) writes a tiny dataset "
        f"of the same layout.{images}"
    )


def _retrieval_split(
    source: RetrievalBenchmarkSource, split: str, path: Any, cache_dir: str | None
) -> hf_datasets.Dataset:
    """The rows of ``split`` (not yet filtered by a ``split`` column) from the Hub or ``path``."""
    import datasets

    hub_split = _HUB_SPLITS[_KARPATHY_SPLITS[split]]
    if path is None:
        if source.layout == "images":  # one Hub split holds every row; the column tells the split
            hub_split = "test"
        return _from_hub(
            source.hub_id,
            hub_split,
            None,
            cache_dir,
            revision=source.revision,
            ways_forward=_retrieval_ways_forward(source),
        )
    if isinstance(path, datasets.Dataset):
        return path
    if isinstance(path, datasets.DatasetDict):
        return _one_split(path, split, hub_split, "the given DatasetDict")
    if isinstance(path, str | os.PathLike):
        where = Path(path).expanduser()
        if not where.exists():
            raise InputError(f"path {str(where)!r}: no such file or folder")
        if where.is_dir() and (where / "dataset_dict.json").is_file():
            return _one_split(datasets.load_from_disk(str(where)), split, hub_split, f"path {str(where)!r}")
        if where.is_dir() and not (where / "state.json").is_file():
            found = sorted(where.rglob("*.parquet"))
            splits = {_parquet_split(f) for f in found}
            if len(splits) == 1 and hub_split not in splits and split not in splits:
                return _from_local(where, splits.pop(), cache_dir)  # one file set: its column decides
            return _from_local(where, hub_split if hub_split in splits else split, cache_dir)
        return _from_local(where, hub_split, cache_dir)
    raise InputTypeError(
        "path must be None (the Hub), a folder or parquet file, a datasets.Dataset or a "
        f"datasets.DatasetDict, got {type(path).__name__}"
    )


def _one_split(loaded: Any, split: str, hub_split: str, where: str) -> hf_datasets.Dataset:
    for name in (hub_split, split):
        if name in loaded:
            return loaded[name]
    if len(loaded) == 1:  # a single split holding every row (the split column tells them apart)
        return next(iter(loaded.values()))
    raise InputError(f"{where} has no split {split!r}; it has {sorted(loaded)}")


def _caption_list(value: Any, row: int) -> list[str]:
    """A row's captions: a list of str, or Karpathy's list of {"raw": ...} dicts."""
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise InputError(f"row {row}: captions must be a list of str, got {type(value).__name__}")
    captions = [c["raw"] if isinstance(c, Mapping) else c for c in value]
    if not captions or not all(isinstance(c, str) and c.strip() for c in captions):
        raise InputError(f"row {row}: every image needs at least one non-empty caption, got {value!r}")
    return captions


def load_retrieval_benchmark(
    name: str,
    split: str = "test",
    path: str | os.PathLike | hf_datasets.Dataset | hf_datasets.DatasetDict | None = None,
    *,
    images_root: str | os.PathLike | None = None,
    limit: int | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> RetrievalBenchmark:
    """Load a split of BLIP's retrieval benchmarks: images, captions and the caption-to-image index.

    ``"coco-karpathy"``: COCO 2014 images with the Karpathy split, test 5,000 images and 25,010
    captions (every caption of Karpathy's file is kept: most images have 5, a few 6 or 7; BLIP's
    loader also appends every caption its annotation file lists). Read from the Hub dataset
    ``yerevann/coco-karpathy`` (parquet; columns ``filepath`` such as ``"val2014"``, ``filename``,
    ``sentences``: list of str, ``split``: ``"test"`` / ``"val"`` / ``"train"`` / ``"restval"``,
    ``sentids``, ``imgid``, ``cocoid``, ``url``; Hub splits ``train``, ``validation``, ``test``).
    It has no pixels: ``images_root`` is the folder holding ``val2014/`` (COCO's 2014 images).

    ``"flickr30k"``: the Karpathy test split of Flickr30k, 1,000 images and 5,000 captions. Read
    from ``nlphuji/flickr_1k_test_image_text_retrieval`` through the Hub's parquet export
    (revision ``refs/convert/parquet``; the repository's own loading script no longer runs under
    ``datasets`` >= 4), columns ``image`` (JPEG), ``caption`` (list of str), ``sentids``,
    ``split``, ``img_id``, ``filename``. A copy of ``nlphuji/flickr30k`` (all 31,783 images, the
    same columns) works as ``path``: the ``split`` column picks the test rows.

    Parameters
    ----------
    name : {"coco-karpathy", "flickr30k"}
    split : {"test", "val"}, default "test"
        The Karpathy split; a ``split`` column, when the data has one, selects its rows.
    path : str, os.PathLike, datasets.Dataset or datasets.DatasetDict, optional
        A local copy with the Hub dataset's columns: a ``save_to_disk`` folder, parquet files
        (``<split>-*.parquet`` or ``<split>.parquet``), or an already loaded dataset. ``None``:
        the Hub dataset (from the local cache when offline).
    images_root : str or os.PathLike, optional
        COCO only: the folder under which ``filepath/filename`` are the image files.
    limit : int, optional
        Keep the first ``limit`` images of the split and their captions (a quick run).
    cache_dir : str or os.PathLike, optional
        Hugging Face datasets cache to use instead of the default one.

    Returns
    -------
    RetrievalBenchmark
        ``images``, ``captions``, ``text_image``, ``image_names``, ``image_captions``, ``title``.

    Raises
    ------
    OfflineError
        ``path`` is None, the dataset is not cached, and the Hub is unreachable or offline mode is
        on; the message names the Hub id and the ways forward. Raised within seconds.
    InputError
        An unknown benchmark or split, a missing path, missing columns, COCO without
        ``images_root`` or with image files missing under it.

    Examples
    --------
    >>> bench = load_retrieval_benchmark("flickr30k")  # doctest: +SKIP
    >>> ev = blipviz.evaluate_retrieval(model, bench.images, bench.captions,
    ...                                 text_image=bench.text_image, labels=bench.image_names,
    ...                                 benchmark=bench.title, k_test=128)  # doctest: +SKIP
    """
    if name not in RETRIEVAL_BENCHMARKS:
        raise InputError(f"unknown benchmark {name!r}; known: {sorted(RETRIEVAL_BENCHMARKS)}")
    if split not in _KARPATHY_SPLITS:
        raise InputError(f"unknown split {split!r}; allowed: 'test', 'val'")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise InputError(f"limit must be None or a positive int, got {limit!r}")
    source = RETRIEVAL_BENCHMARKS[name]
    data = _retrieval_split(source, split, path, None if cache_dir is None else os.fspath(cache_dir))
    return _benchmark_rows(source, data, _KARPATHY_SPLITS[split], images_root, limit)


def _benchmark_rows(
    source: RetrievalBenchmarkSource,
    data: hf_datasets.Dataset,
    split: str,
    images_root: str | os.PathLike | None,
    limit: int | None,
) -> RetrievalBenchmark:
    import datasets

    karpathy = source.layout == "karpathy"
    needed = ("filepath", "filename", "sentences") if karpathy else ("image", "caption", "filename")
    missing = [c for c in needed if c not in data.column_names]
    if missing:
        raise InputError(
            f"the {source.name} data has no {', '.join(map(repr, missing))} column (it has "
            f"{data.column_names}); expected the columns of {source.hub_id}"
        )
    if "split" in data.column_names:
        keep = [i for i, s in enumerate(data["split"]) if s == split]
        if not keep:
            raise InputError(f"the {source.name} data has no rows of split {split!r}")
        data = data.select(keep)
    if limit is not None and limit < len(data):
        data = data.select(range(limit))
    names = [str(f) for f in data["filename"]]
    if karpathy:
        if images_root is None:
            raise InputError(
                f"{source.hub_id} holds no pixels: pass images_root=, the folder holding the COCO 2014 "
                "images (val2014/COCO_val2014_....jpg)"
            )
        root = Path(images_root).expanduser()
        images: list[Any] = [str(root / d / f) for d, f in zip(data["filepath"], names, strict=True)]
        absent = [p for p in images if not Path(p).is_file()]
        if absent:
            raise InputError(f"{len(absent)} of {len(images)} image files are missing, first: {absent[0]}")
        raw_captions = data["sentences"]
    else:
        encoded = data.cast_column("image", datasets.Image(decode=False))["image"]
        images = [e["bytes"] if e.get("bytes") is not None else e["path"] for e in encoded]
        raw_captions = data["caption"]
    captions: list[str] = []
    text_image: list[int] = []
    for image, value in enumerate(raw_captions):  # BLIP's loop: img2txt / txt2img in this order
        for caption in _caption_list(value, image):
            captions.append(caption)
            text_image.append(image)
    if split == "test" and len(images) == source.n_images:
        title = source.title
    else:
        first = "first " if limit is not None else ""
        title = f"{source.title.split()[0]} {split}, {first}{len(images)} images"
    return RetrievalBenchmark(source.name, split, images, captions, text_image, names, title)


# ------------------------------------------------------------------------------- sample images


@dataclass(frozen=True, eq=False)
class SampleImage:
    """One photograph of the sample gallery.

    Attributes
    ----------
    name : str
        Short unique name (``"chelsea"``).
    label : str
        What it shows, usable as a zero-shot class (``"cat"``).
    image : PIL.Image.Image
        The photograph, mode ``"RGB"``.
    package : str
        The installed package it comes from (``"skimage"``, ``"sklearn"``, ``"matplotlib"``).
    path : pathlib.Path
        The file inside that package.
    """

    name: str
    label: str
    image: Image.Image
    package: str
    path: Path

    def __repr__(self) -> str:
        w, h = self.image.size
        return f"SampleImage({self.name!r}, label={self.label!r}, {w}x{h}, package={self.package!r})"


class Gallery(list):
    """A list of :class:`SampleImage` with column-like accessors.

    ``gallery.images``, ``gallery.labels`` and ``gallery.names`` are lists in gallery order, ready
    for ``model.itm_scores(gallery.images, ...)``.
    """

    @property
    def images(self) -> list[Image.Image]:
        return [s.image for s in self]

    @property
    def labels(self) -> list[str]:
        return [s.label for s in self]

    @property
    def names(self) -> list[str]:
        return [s.name for s in self]

    def to_pandas(self) -> pd.DataFrame:
        """One row per photograph: ``name``, ``label``, ``package``, ``width``, ``height``, ``path``."""
        return pd.DataFrame(
            {
                "name": self.names,
                "label": self.labels,
                "package": [s.package for s in self],
                "width": [s.image.width for s in self],
                "height": [s.image.height for s in self],
                "path": [str(s.path) for s in self],
            }
        )


# (name, label, package, file inside the package). Only files bundled in the packages' wheels:
# scikit-image's legacy data folder (never its pooch downloads), scikit-learn's sample images,
# matplotlib's sample data.
_GALLERY = (
    ("astronaut", "astronaut", "skimage", "data/astronaut.png"),
    ("cameraman", "cameraman", "skimage", "data/camera.png"),
    ("chelsea", "cat", "skimage", "data/chelsea.png"),
    ("coffee", "coffee", "skimage", "data/coffee.png"),
    ("coins", "coins", "skimage", "data/coins.png"),
    ("hubble_deep_field", "galaxies", "skimage", "data/hubble_deep_field.jpg"),
    ("moon", "moon surface", "skimage", "data/moon.png"),
    ("motorcycle", "motorcycle", "skimage", "data/motorcycle_left.png"),
    ("retina", "retina", "skimage", "data/retina.jpg"),
    ("rocket", "rocket", "skimage", "data/rocket.jpg"),
    ("china", "pagoda", "sklearn", "datasets/images/china.jpg"),
    ("flower", "flower", "sklearn", "datasets/images/flower.jpg"),
    ("grace_hopper", "woman", "matplotlib", "mpl-data/sample_data/grace_hopper.jpg"),
)


def _package_file(package: str, relative: str) -> Path | None:
    """The file inside an installed package, found without importing the package; or None."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        path = Path(root) / relative
        if path.is_file():
            return path
    return None


def sample_images(names: Sequence[str] | None = None, *, max_size: int | None = None) -> Gallery:
    """A small labelled gallery of real photographs shipped inside installed packages.

    Works offline: the files are those bundled in the wheels of scikit-image (astronaut, cameraman,
    chelsea the cat, coffee, coins, Hubble deep field, moon, motorcycle, retina, rocket),
    scikit-learn (china, flower) and matplotlib (grace_hopper). Photographs of a package that is
    not installed are left out.

    Parameters
    ----------
    names : sequence of str, optional
        Names of the photographs to return, in that order; default: all.
    max_size : int, optional
        Shrink each photograph (keeping its aspect ratio) to fit ``max_size`` x ``max_size``.

    Returns
    -------
    Gallery
        A list of :class:`SampleImage` (``name``, ``label``, ``image`` in RGB, ``package``,
        ``path``), with ``.images``, ``.labels``, ``.names`` and ``.to_pandas()``.

    Examples
    --------
    >>> gallery = sample_images()
    >>> gallery.names[:3]
    ['astronaut', 'cameraman', 'chelsea']
    """
    table = {row[0]: row for row in _GALLERY}
    if names is None:
        wanted = list(table)
    else:
        if isinstance(names, str):
            names = [names]
        wanted = list(names)
        unknown = [n for n in wanted if n not in table]
        if unknown:
            raise InputError(f"no sample image named {unknown[0]!r}; the gallery has {list(table)}")
    if max_size is not None and (not isinstance(max_size, int) or max_size < 1):
        raise InputError(f"max_size must be None or a positive int, got {max_size!r}")
    gallery = Gallery()
    for name in wanted:
        _, label, package, relative = table[name]
        path = _package_file(package, relative)
        if path is None:
            if names is not None:
                raise InputError(
                    f"sample image {name!r} comes with the package {package!r}, which is not installed "
                    f"(or lacks {relative})"
                )
            continue
        with Image.open(path) as opened:
            opened.load()
            image = to_rgb(opened).copy()
        if max_size is not None:
            image.thumbnail((max_size, max_size))
        gallery.append(SampleImage(name, label, image, package, path))
    if not gallery:
        raise InputError("no sample photographs found: install scikit-image, scikit-learn or matplotlib")
    return gallery
