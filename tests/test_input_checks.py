"""Options and inputs are checked before any work starts, and each bad one is a named blipviz error
(InputError / InputTypeError) that says what was wrong and which item: never a raw torch, numpy or
Python error, never after every image has passed the ViT. Each case here was reproduced by a user
(issue 22, item 4)."""

from __future__ import annotations

import dataclasses
import io
import logging
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image

import blipviz
from blipviz.analysis.explanations import evaluate_explanations
from blipviz.analysis.retrieval import evaluate_retrieval
from blipviz.errors import InputError, InputTypeError
from blipviz.net.images import load_image
from blipviz.store.cache import FeatureCache, feature_cache
from blipviz.testing import assert_close, synthetic_images

CAPTIONS = ["a dog on a beach", "two cats on a sofa", "a bowl of fruit", "a city street at night"]


@pytest.fixture
def vit_calls(tiny, monkeypatch):
    """Images seen by the tiny net's vision encoder."""
    calls = []
    original = tiny.hf.vision_model.forward

    def counting(*args, **kwargs):
        calls.append(int(kwargs.get("pixel_values", args[0] if args else None).shape[0]))
        return original(*args, **kwargs)

    monkeypatch.setattr(tiny.hf.vision_model, "forward", counting)
    return calls


def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


# ------------------------------------------------------------------------------ retrieval
@pytest.mark.parametrize(
    ("text_image", "error", "pattern"),
    [
        ([0, 5, 1, 0], InputError, r"text_image\[1\] is 5.*2 images"),  # out of range
        ([0, -1, 1, 0], InputError, r"text_image\[1\] is -1"),
        ([0, 0, 0, 0], InputError, r"images \[1\] have no text"),
        ([0, 1, 1], InputError, "one image index"),  # 3 for 4 texts
        ([0.0, 1.0, 1.0, 0.0], InputTypeError, r"text_image must hold ints.*float"),
        (None, InputTypeError, r"text_image must be a sequence of ints.*NoneType"),
        (["0", "1", "1", "0"], InputTypeError, r"text_image must hold ints"),
        ([[0], [1, 1], [1], [0]], InputError, r"text_image must hold one image index"),
    ],
)
def test_retrieval_checks_text_image_before_the_vit(tiny, vit_calls, text_image, error, pattern):
    with pytest.raises(error, match=pattern) as info:
        evaluate_retrieval(tiny, synthetic_images(2), CAPTIONS, text_image=text_image, k_test=2)
    assert vit_calls == []  # refused before any image passed the vision encoder
    if error is InputTypeError:
        assert "shape" not in str(info.value)


def test_retrieval_checks_text_image_first_for_pixels_and_features(tiny, vit_calls):
    features = tiny.encode_images(synthetic_images(2))
    pixels = tiny.preprocessing.pixel_values(synthetic_images(2))
    vit_calls.clear()
    for images in (features, pixels):
        with pytest.raises(InputError, match=r"text_image\[1\] is 7"):
            evaluate_retrieval(tiny, images, CAPTIONS, text_image=[0, 7, 1, 0], k_test=2)
    assert vit_calls == []


def test_retrieval_accepts_numpy_integer_text_image(tiny):
    ev = evaluate_retrieval(
        tiny, synthetic_images(2), CAPTIONS, text_image=np.array([0, 1, 1, 0], dtype=np.int32), k_test=2
    )
    assert ev.text_image.tolist() == [0, 1, 1, 0]


# --------------------------------------------------------------------------- explanations
def _tiny_evaluation(tiny, images, texts, **options):
    options = {"methods": "attention", "steps": 2, "random_orders": 1, **options}
    return evaluate_explanations(tiny, images, texts, **options)


def test_explanations_take_one_image_and_one_method_string(tiny):
    image = synthetic_images(1, seed=3)[0]  # one (H, W, 3) array, not a list of its rows
    one = _tiny_evaluation(tiny, image, "a red sweater")
    listed = _tiny_evaluation(tiny, [image], ["a red sweater"], methods=["attention"])
    assert list(one.table.index) == ["attention", "random"]  # not 'a', 't', 't', ...
    assert one.curves["pair"].unique().tolist() == [0]
    np.testing.assert_array_equal(one.curves["score"], listed.curves["score"])
    pixels = tiny.preprocessing.pixel_values([image])
    for single in (Image.fromarray(image), _png(image), pixels[0], pixels):  # PIL, bytes, (3, s, s), (1, ...)
        ev = _tiny_evaluation(tiny, single, "a red sweater", methods="relevancy")
        assert ev.curves["pair"].unique().tolist() == [0]


@pytest.mark.parametrize(
    ("call", "error", "pattern"),
    [
        (lambda m, im: _tiny_evaluation(m, [im], None), InputTypeError, r"texts must be a str.*NoneType"),
        (lambda m, im: _tiny_evaluation(m, [im, im], ["a", 3]), InputTypeError, r"texts\[1\] must be a str"),
        (
            lambda m, im: _tiny_evaluation(m, [im], ["a"], seed="abc"),
            InputTypeError,
            r"seed must be an int.*'abc'",
        ),
        (lambda m, im: _tiny_evaluation(m, [im], ["a"], seed=1.5), InputTypeError, r"seed must be an int"),
        (lambda m, im: _tiny_evaluation(m, [im], ["a"], seed=-1), InputError, r"seed must be .*-1"),
        (lambda m, im: _tiny_evaluation(m, [im], ["a"], methods=None), InputTypeError, r"methods must be"),
        (lambda m, im: _tiny_evaluation(m, [im], ["a"], methods=[]), InputError, r"no methods"),
        (lambda m, im: _tiny_evaluation(m, [im], ["a"], methods="atention"), InputError, r"unknown method"),
        (lambda m, im: _tiny_evaluation(m, None, ["a"]), InputTypeError, r"images must be.*None"),
        (lambda m, im: _tiny_evaluation(m, [im, None], ["a", "b"]), InputTypeError, r"image 1.*NoneType"),
        (lambda m, im: _tiny_evaluation(m, [im, "nope.png"], ["a", "b"]), blipviz.ImageLoadError, r"image 1"),
        (lambda m, im: _tiny_evaluation(m, m.encode_images([im]), ["a"]), InputError, r"ImageFeatures"),
        (lambda m, im: _tiny_evaluation(m, [im], ["a"], batch_size=0), InputError, r"batch_size"),
    ],
)
def test_explanation_evaluation_checks_everything_before_work(tiny, vit_calls, call, error, pattern):
    image = synthetic_images(1, seed=3)[0]
    with pytest.raises(error, match=pattern):
        call(tiny, image)
    # nothing explained yet: at most the ImageFeatures case's own encode_images pass
    assert len(vit_calls) <= 1


# -------------------------------------------------------------------------------- loading
@pytest.mark.parametrize(
    ("name", "dtype"),
    [
        ("float32", torch.float32),
        ("float16", torch.float16),
        ("bfloat16", torch.bfloat16),
        ("float64", torch.float64),
        ("torch.float16", torch.float16),
    ],
)
def test_load_model_takes_dtype_names(name, dtype):
    model = blipviz.load_model("tiny-random", dtype=name)
    assert model.dtype == dtype and next(model.hf.parameters()).dtype == dtype
    assert blipviz.load_model("tiny-random", dtype=dtype).dtype == dtype


@pytest.mark.parametrize(
    ("dtype", "error"),
    [("half-ish", InputError), ("int8", InputError), (torch.int8, InputError), (16, InputTypeError)],
)
def test_load_model_refuses_other_dtypes_listing_the_allowed_ones(dtype, error):
    with pytest.raises(error, match=r"dtype.*'float32', 'float16', 'bfloat16', 'float64'"):
        blipviz.load_model("tiny-random", dtype=dtype)


# ------------------------------------------------------------------------------- features
def test_text_features_holding_nan_are_refused_naming_the_texts(tiny):
    features = tiny.encode_texts(["a dog", "a cat", "a bowl of fruit"])
    bad = features.embeddings.clone()
    bad[1, 3] = float("nan")
    with pytest.raises(InputError, match=r"TextFeatures contain NaN or inf values \(texts \[1\]: 'a cat'\)"):
        dataclasses.replace(features, embeddings=bad)
    with pytest.raises(InputError, match=r"TextFeatures contain NaN or inf.*\[1\]"):
        features.embeddings = bad  # replaced afterwards, as ImageFeatures' raw states can be
    projected = features.projected.numpy().copy()
    projected[2, 0] = np.inf
    with pytest.raises(InputError, match=r"texts \[2\]: 'a bowl of fruit'"):
        dataclasses.replace(features, projected=projected)
    with pytest.raises(InputTypeError, match=r"TextFeatures.embeddings must be a Tensor"):
        dataclasses.replace(features, embeddings=[[0.0] * 256] * 3)
    # the features themselves are untouched and still score; numpy arrays become Tensors
    assert np.isfinite(np.asarray(tiny.cosine_scores(synthetic_images(1), features))).all()
    as_numpy = dataclasses.replace(features, embeddings=features.embeddings.numpy())
    assert isinstance(as_numpy.embeddings, torch.Tensor)


# ------------------------------------------------------------------------------ None paths
def test_feature_cache_and_collection_name_a_missing_folder_argument(tmp_path):
    for bad in (None, 3):
        with pytest.raises(InputTypeError, match=r"FeatureCache: directory must be .*" + type(bad).__name__):
            FeatureCache(bad)
        with pytest.raises(InputTypeError, match=r"Collection.open: out must be .*" + type(bad).__name__):
            blipviz.Collection.open(bad)
    with pytest.raises(InputTypeError, match="directory"):
        blipviz.load_model("tiny-random", cache_dir=3)


# -------------------------------------------------------------------------------- images
def test_bytearray_and_memoryview_are_encoded_images_like_bytes(tiny):
    image = synthetic_images(1, seed=2)[0]
    png = _png(image)
    expected = np.asarray(load_image(png))
    for buffer in (bytearray(png), memoryview(png)):
        np.testing.assert_array_equal(np.asarray(load_image(buffer)), expected)
    plain = tiny.encode_images(png)
    for single in (bytearray(png), memoryview(png)):
        features = tiny.encode_images(single)  # one image, not a list of ints
        assert len(features) == 1 and features.labels == ["image 0"]
        torch.testing.assert_close(features.embeddings, plain.embeddings, rtol=0, atol=0)
    assert len(tiny.encode_images([bytearray(png), memoryview(png), png])) == 3
    with pytest.raises(blipviz.ImageLoadError, match="image 1"):
        tiny.encode_images([png, bytearray(b"not a picture")])


# -------------------------------------------------------------------------- a locked cache
_LOCKER = """
import pathlib, sqlite3, sys, time
db, ready, done = sys.argv[1], pathlib.Path(sys.argv[2]), pathlib.Path(sys.argv[3])
conn = sqlite3.connect(db, isolation_level=None)
conn.execute("BEGIN EXCLUSIVE")
ready.touch()
deadline = time.monotonic() + 300
while not done.exists() and time.monotonic() < deadline:
    time.sleep(0.01)
conn.execute("ROLLBACK")
"""


def test_a_write_locked_cache_is_read_and_not_waited_for(tiny, tmp_path, caplog):
    images = synthetic_images(3)
    texts = [*CAPTIONS, "a new text"]
    plain = np.asarray(tiny.itm_scores(images, texts))
    folder = tmp_path / "features"
    with feature_cache(tiny, folder):
        tiny.itm_scores(images[:2], CAPTIONS)  # 2 images x 4 texts remembered
    ready, done = tmp_path / "ready", tmp_path / "done"
    locker = subprocess.Popen(
        [sys.executable, "-c", _LOCKER, str(folder / "itm.sqlite3"), str(ready), str(done)],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert time.monotonic() < deadline and locker.poll() is None
            time.sleep(0.01)
        with caplog.at_level(logging.WARNING, logger="blipviz"), feature_cache(tiny, folder) as cache:
            start = time.monotonic()
            itm = np.asarray(tiny.itm_scores(images, texts))
            seconds = time.monotonic() - start
            assert cache.writable  # locked for now, not read-only for good
            assert (cache.stats.itm_hits, cache.stats.itm_misses) == (2 * 4, 15 - 2 * 4)
            warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
            assert len(warnings) == 1, warnings
            assert str(folder) in warnings[0] and "locked" in warnings[0]
            done.touch()
            assert locker.wait(timeout=60) == 0
            tiny.itm_scores(images, texts)  # unlocked: this call stores what the locked one could not
            assert cache.stats.itm_hits == 2 * 4 + 2 * 4  # nothing was stored under the lock
            tiny.itm_scores(images, texts)
            assert cache.stats.itm_hits == 2 * 4 + 2 * 4 + 15
    finally:
        done.touch()
        if locker.poll() is None:
            locker.kill()
    assert seconds < 20, f"{seconds:.1f} s for 3 images: the lock was waited for per image"
    assert_close(itm, plain, depth=4, magnitude=1.0)


def test_text_features_changed_in_place_to_nan_are_refused_at_use(tiny):
    from blipviz import InputError

    features = tiny.encode_texts(["a cat", "a dog"])
    images = tiny.encode_images(synthetic_images(1, size=(16, 16)))
    features.embeddings[1, 0] = float("nan")  # after the check at construction
    with pytest.raises(InputError, match=r"texts \[1\]: 'a dog'"):
        tiny.cosine_scores(images, features)
