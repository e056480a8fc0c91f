"""Data for notebooks and tests: FashionMNIST and the retrieval benchmarks through their real loading
paths (offline fixtures), the offline errors, and the gallery of real photographs shipped in
installed packages."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import os
import subprocess
import sys
import time
from pathlib import Path

import datasets
import numpy as np
import pytest
from PIL import Image

import blipviz
from blipviz import InputError, InputTypeError, OfflineError
from blipviz.datasets import (
    FASHION_MNIST_HUB_ID,
    FASHION_MNIST_LABELS,
    RETRIEVAL_BENCHMARKS,
    LabelledImages,
    RetrievalBenchmark,
    load_fashion_mnist,
    load_retrieval_benchmark,
    sample_images,
)
from blipviz.testing import FASHION_MNIST_HUB_NAMES, write_fashion_mnist_fixture
from blipviz.testing.data import retrieval_fixture_captions, write_retrieval_fixture


@pytest.fixture(scope="module")
def fixture_folder(tmp_path_factory):
    return write_fashion_mnist_fixture(tmp_path_factory.mktemp("fmnist"), n_per_class=2, seed=3)


@pytest.fixture
def cache(tmp_path):
    return tmp_path / "hf-cache"


def _pixels(images):
    return np.stack([np.asarray(im) for im in images])


# ------------------------------------------------------------------------------------ FashionMNIST


def test_fixture_has_the_hub_features(fixture_folder):
    loaded = datasets.load_from_disk(str(fixture_folder))
    assert set(loaded) == {"train", "test"}
    features = loaded["test"].features
    assert isinstance(features["image"], datasets.Image)
    assert isinstance(features["label"], datasets.ClassLabel)
    assert features["label"].names == list(FASHION_MNIST_HUB_NAMES)
    assert FASHION_MNIST_HUB_NAMES[0] == "T - shirt / top"


def test_fixture_goes_through_load_fashion_mnist(fixture_folder):
    result = load_fashion_mnist(source=fixture_folder)
    assert isinstance(result, LabelledImages)
    images, labels, names = result  # unpacks as a tuple
    assert names == list(FASHION_MNIST_LABELS)
    assert names == [
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
    ]
    assert labels == names * 2
    assert len(images) == 20
    assert all(isinstance(im, Image.Image) and im.mode == "L" and im.size == (28, 28) for im in images)
    assert _pixels(images).std() > 10
    train = load_fashion_mnist("train", source=fixture_folder)
    assert not np.array_equal(_pixels(train.images), _pixels(images))


def test_fixture_is_reproducible_and_limit_keeps_the_first_images(fixture_folder, tmp_path):
    again = write_fashion_mnist_fixture(tmp_path / "again", n_per_class=2, seed=3)
    full = load_fashion_mnist(source=fixture_folder)
    np.testing.assert_array_equal(_pixels(load_fashion_mnist(source=again).images), _pixels(full.images))
    first = load_fashion_mnist(limit=7, source=fixture_folder)
    assert first.labels == full.labels[:7]
    np.testing.assert_array_equal(_pixels(first.images), _pixels(full.images[:7]))
    assert load_fashion_mnist(limit=0, source=fixture_folder).images == []


def test_parquet_layout_loads_the_same_data(fixture_folder, tmp_path, cache):
    folder = write_fashion_mnist_fixture(tmp_path / "pq", n_per_class=2, seed=3, format="parquet")
    assert (folder / "fashion_mnist" / "test-00000-of-00001.parquet").is_file()
    disk = load_fashion_mnist(source=fixture_folder)
    for source in (folder, folder / "fashion_mnist" / "test-00000-of-00001.parquet"):
        loaded = load_fashion_mnist(source=source, cache_dir=cache)
        assert loaded.labels == disk.labels and loaded.label_names == disk.label_names
        np.testing.assert_array_equal(_pixels(loaded.images), _pixels(disk.images))


def test_already_loaded_datasets_are_accepted(fixture_folder):
    loaded = datasets.load_from_disk(str(fixture_folder))
    from_dict = load_fashion_mnist("train", source=loaded)
    from_dataset = load_fashion_mnist(source=loaded["train"], limit=3)
    assert from_dict.labels[:3] == from_dataset.labels
    np.testing.assert_array_equal(_pixels(from_dict.images[:3]), _pixels(from_dataset.images))


def test_integer_labels_without_names_use_the_reference_names():
    data = datasets.Dataset.from_dict(
        {"image": [Image.new("L", (28, 28), 9)] * 2, "label": [9, 0]},
        features=datasets.Features({"image": datasets.Image(), "label": datasets.Value("int64")}),
    )
    assert load_fashion_mnist(source=data).labels == ["ankle boot", "t-shirt/top"]


def test_rgb_images_come_back_grayscale():
    data = datasets.Dataset.from_dict(
        {"image": [Image.new("RGB", (28, 28), (200, 10, 10))], "label": [1]},
        features=datasets.Features(
            {"image": datasets.Image(), "label": datasets.ClassLabel(names=["A", "B"])}
        ),
    )
    result = load_fashion_mnist(source=data)
    assert result.images[0].mode == "L" and result.label_names == ["a", "b"] and result.labels == ["b"]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"split": "validation"}, InputError, "no split 'validation'"),
        ({"limit": -1}, InputError, "limit"),
        ({"limit": 2.5}, InputError, "limit"),
    ],
)
def test_bad_split_or_limit(fixture_folder, kwargs, error, match):
    with pytest.raises(error, match=match):
        load_fashion_mnist(source=fixture_folder, **kwargs)


def test_bad_sources(tmp_path, cache):
    with pytest.raises(InputError, match="no such file"):
        load_fashion_mnist(source=tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="neither"):
        load_fashion_mnist(source=tmp_path / "empty")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(InputError, match="parquet"):
        load_fashion_mnist(source=tmp_path / "notes.txt")
    with pytest.raises(InputTypeError):
        load_fashion_mnist(source=42)
    with pytest.raises(InputError, match="'label'"):
        load_fashion_mnist(source=datasets.Dataset.from_dict({"image": [Image.new("L", (28, 28))]}))
    pq = write_fashion_mnist_fixture(tmp_path / "pq", splits=("train",), format="parquet")
    with pytest.raises(InputError, match=r"splits \['train'\]"):
        load_fashion_mnist(source=pq, cache_dir=cache)


def _offline_env(monkeypatch, **env):
    for var in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)


@pytest.mark.filterwarnings("ignore:A test tried to use socket:UserWarning")  # the Hub probe
@pytest.mark.parametrize(
    ("env", "reason"),
    [
        ({"HF_DATASETS_OFFLINE": "1"}, "HF_DATASETS_OFFLINE is set"),
        ({"HF_HUB_OFFLINE": "1"}, "HF_HUB_OFFLINE is set"),
        # Sockets are disabled in tests: the Hub cannot be reached.
        ({}, "could not be reached"),
    ],
)
def test_offline_with_nothing_cached_fails_fast_with_a_way_forward(monkeypatch, cache, env, reason):
    _offline_env(monkeypatch, **env)
    start = time.perf_counter()
    with pytest.raises(OfflineError) as info:
        load_fashion_mnist(cache_dir=cache)
    assert time.perf_counter() - start < 10
    message = str(info.value)
    assert FASHION_MNIST_HUB_ID in message and reason in message
    assert "source=" in message and "write_fashion_mnist_fixture" in message
    assert isinstance(info.value, OSError)
    assert datasets.config.HF_HUB_OFFLINE is False  # the temporary offline switch is undone


def test_hub_path_asks_datasets_for_the_split_and_limit(monkeypatch, fixture_folder):
    """The Hub path without a network: ``datasets.load_dataset`` is replaced by the fixture."""
    split = datasets.load_from_disk(str(fixture_folder))["test"]
    seen = []

    def fake_load_dataset(path, split=None, cache_dir=None, **kwargs):
        seen.append((path, split, datasets.config.HF_HUB_OFFLINE))
        return split_data.select(range(5)) if split.endswith("[:5]") else split_data

    split_data = split
    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    monkeypatch.setattr("blipviz.net.hub.hub_reachable", lambda timeout=3.0: True)
    _offline_env(monkeypatch)
    result = load_fashion_mnist(limit=5)
    assert seen[-1] == (FASHION_MNIST_HUB_ID, "test[:5]", False)
    assert result.labels == list(FASHION_MNIST_LABELS[:5])
    # Offline: the same call, made with datasets' offline switch on (the cache only).
    _offline_env(monkeypatch, HF_HUB_OFFLINE="1")
    load_fashion_mnist("train", source="someone/fashion_mnist_mirror")
    assert seen[-1] == ("someone/fashion_mnist_mirror", "train", True)


# ------------------------------------------------------------------------------- sample images


def test_sample_images_are_real_distinct_labelled_photographs():
    gallery = sample_images()
    assert len(gallery) >= 10
    assert len(set(gallery.names)) == len(gallery)
    assert {"skimage", "sklearn", "matplotlib"} <= {s.package for s in gallery}
    hashes, thumbs = set(), []
    for item in gallery:
        assert isinstance(item.label, str) and item.label.strip()
        image = item.image
        assert isinstance(image, Image.Image) and image.mode == "RGB"
        assert min(image.size) >= 256, item.name
        gray = np.asarray(image.convert("L"))
        assert gray.std() > 10, f"{item.name} is flat"
        assert len(np.unique(gray)) > 100, f"{item.name} has too few gray levels for a photograph"
        hashes.add(hashlib.sha256(image.tobytes()).hexdigest())
        thumbs.append(np.asarray(image.convert("L").resize((32, 32)), dtype=np.float64))
        # Bundled in the installed package, not downloaded to a cache.
        package_dir = Path(importlib.util.find_spec(item.package).submodule_search_locations[0])
        assert item.path.is_file() and package_dir in item.path.parents
    assert len(hashes) == len(gallery)
    distances = [np.abs(a - b).mean() for i, a in enumerate(thumbs) for b in thumbs[i + 1 :]]
    assert min(distances) > 10  # no two are near-duplicates
    labels = dict(zip(gallery.names, gallery.labels, strict=True))
    assert labels["chelsea"] == "cat" and labels["astronaut"] == "astronaut"


def test_sample_images_selection_size_and_table():
    gallery = sample_images(["rocket", "flower"], max_size=64)
    assert gallery.names == ["rocket", "flower"] and gallery.labels == ["rocket", "flower"]
    assert all(max(im.size) == 64 for im in gallery.images)
    frame = gallery.to_pandas()
    assert list(frame.columns) == ["name", "label", "package", "width", "height", "path"]
    assert list(frame["width"]) == [64, 64]
    assert "rocket" in repr(gallery[0])
    # Fresh copies every call: editing one does not change the next.
    gallery.images[0].paste((0, 0, 0), (0, 0, 64, 64))
    assert np.asarray(sample_images(["rocket"], max_size=64).images[0]).std() > 10
    with pytest.raises(InputError, match="no sample image named 'unicorn'"):
        sample_images(["unicorn"])
    with pytest.raises(InputError):
        sample_images(max_size=0)


def test_import_blipviz_stays_light_and_exposes_the_datasets_submodule():
    assert blipviz.datasets.load_fashion_mnist is load_fashion_mnist
    code = (
        "import sys, blipviz; "
        "assert blipviz.datasets.__name__ == 'blipviz.datasets'; "
        "heavy = [m for m in ('datasets', 'matplotlib', 'sklearn', 'skimage') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(blipviz.__file__).parents[1])}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120)


# ------------------------------------------------------------------------- retrieval benchmarks


def _blip_index(annotation):
    """BLIP's coco_karpathy_retrieval_eval / flickr30k_retrieval_eval loop over its annotation file
    ([{"image": ..., "caption": [...]}, ...]): text, img2txt and txt2img."""
    text, img2txt, txt2img, txt_id = [], {}, {}, 0
    for img_id, ann in enumerate(annotation):
        img2txt[img_id] = []
        for caption in ann["caption"]:
            text.append(caption)
            img2txt[img_id].append(txt_id)
            txt2img[txt_id] = img_id
            txt_id += 1
    return text, img2txt, txt2img


@pytest.mark.parametrize("fmt", ["disk", "parquet"])
@pytest.mark.parametrize("name", ["flickr30k", "coco-karpathy"])
def test_retrieval_benchmark_from_the_offline_fixture(tmp_path, cache, name, fmt):
    fixture = write_retrieval_fixture(tmp_path, name, n_images=4, captions_per_image=5, n_other=2, format=fmt)
    bench = load_retrieval_benchmark(name, path=fixture.path, images_root=fixture.images_root)
    assert isinstance(bench, RetrievalBenchmark) and bench.split == "test"
    assert len(bench.images) == len(bench.image_names) == 4  # the 2 rows of another split left out
    assert len(bench.captions) == 4 * 5 + 1  # all captions kept: the first image has 6
    expected = [retrieval_fixture_captions(i, 6 if i == 0 else 5) for i in range(4)]
    text, img2txt, txt2img = _blip_index([{"caption": c} for c in expected])
    assert bench.captions == text
    assert bench.text_image == [txt2img[t] for t in range(len(text))]
    assert bench.image_captions == [img2txt[i] for i in range(4)]
    pictures = [Image.open(io.BytesIO(x) if isinstance(x, bytes) else x) for x in bench.images]
    assert all(p.size == (64, 48) for p in pictures)
    if name == "coco-karpathy":
        assert all(Path(p).parent == fixture.images_root / "val2014" for p in bench.images)
        assert bench.image_names[0].startswith("COCO_val2014_")
    first = load_retrieval_benchmark(name, path=fixture.path, images_root=fixture.images_root, limit=2)
    assert first.captions == bench.captions[:11] and first.text_image == bench.text_image[:11]
    assert "first 2 images" in first.title


def test_coco_validation_split_and_loaded_datasets(tmp_path):
    fixture = write_retrieval_fixture(tmp_path, "coco-karpathy", n_images=3, n_other=2)
    val = load_retrieval_benchmark("coco-karpathy", "val", fixture.path, images_root=fixture.images_root)
    assert len(val.images) == 2 and val.split == "val"
    loaded = datasets.load_from_disk(str(fixture.path))
    from_dict = load_retrieval_benchmark("coco-karpathy", path=loaded, images_root=fixture.images_root)
    from_split = load_retrieval_benchmark(
        "coco-karpathy", path=loaded["test"], images_root=fixture.images_root
    )
    assert from_dict.captions == from_split.captions and len(from_dict.images) == 3


def test_retrieval_benchmark_bad_inputs_are_named(tmp_path):
    coco = write_retrieval_fixture(tmp_path / "coco", "coco-karpathy", n_images=2)
    with pytest.raises(InputError, match="images_root"):
        load_retrieval_benchmark("coco-karpathy", path=coco.path)
    (coco.images_root / "val2014").rename(tmp_path / "elsewhere")
    with pytest.raises(InputError, match="2 of 2 image files are missing"):
        load_retrieval_benchmark("coco-karpathy", path=coco.path, images_root=coco.images_root)
    with pytest.raises(InputError, match="unknown benchmark 'mscoco'"):
        load_retrieval_benchmark("mscoco")
    with pytest.raises(InputError, match="unknown split"):
        load_retrieval_benchmark("flickr30k", "dev", path=coco.path)
    with pytest.raises(InputError, match="no such file"):
        load_retrieval_benchmark("flickr30k", path=tmp_path / "missing")
    with pytest.raises(InputError, match="'image'"):
        load_retrieval_benchmark("flickr30k", path=coco.path)
    with pytest.raises(InputError, match="limit"):
        load_retrieval_benchmark("flickr30k", path=coco.path, limit=0)


@pytest.mark.filterwarnings("ignore:A test tried to use socket:UserWarning")  # the Hub probe
@pytest.mark.parametrize("name", sorted(RETRIEVAL_BENCHMARKS))
@pytest.mark.parametrize("env", [{"HF_DATASETS_OFFLINE": "1"}, {}])
def test_retrieval_benchmark_offline_with_nothing_cached(monkeypatch, cache, name, env):
    _offline_env(monkeypatch, **env)
    start = time.perf_counter()
    with pytest.raises(OfflineError) as info:
        load_retrieval_benchmark(name, cache_dir=cache)
    assert time.perf_counter() - start < 10
    message = str(info.value)
    assert RETRIEVAL_BENCHMARKS[name].hub_id in message
    assert "path=" in message and "write_retrieval_fixture" in message
    assert ("images_root" in message) == (name == "coco-karpathy")
    assert datasets.config.HF_HUB_OFFLINE is False
