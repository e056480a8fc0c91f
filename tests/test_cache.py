"""The on-disk feature cache: hits skip the ViT and return the same features; misses never reuse
another net's or another preprocessing's entries; corrupted entries are logged and recomputed."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

import blipviz
from blipviz.cache import FeatureCache, feature_cache, weights_fingerprint
from blipviz.images import ImagePreprocessing
from blipviz.testing import synthetic_images


@pytest.fixture
def vision_calls(tiny, monkeypatch):
    """Batch sizes seen by the tiny net's vision encoder."""
    calls = []
    original = tiny.hf.vision_model.forward

    def counting(*args, **kwargs):
        calls.append(int(kwargs.get("pixel_values", args[0] if args else None).shape[0]))
        return original(*args, **kwargs)

    monkeypatch.setattr(tiny.hf.vision_model, "forward", counting)
    return calls


def _entries(cache: FeatureCache) -> list:
    return sorted(cache.directory.glob("*/*.safetensors"))


def test_hit_returns_identical_features_and_skips_the_vision_encoder(tiny, vision_calls, tmp_path, texts):
    images = synthetic_images(4)
    plain = tiny.encode_images(images)
    plain_itm = np.asarray(tiny.itm_scores(images, texts))
    vision_calls.clear()
    with feature_cache(tiny, tmp_path) as cache:
        first = tiny.encode_images(images)
        assert vision_calls == [4] and cache.stats.misses == 4 and len(cache) == 4
        second = tiny.encode_images(images)
        assert vision_calls == [4] and cache.stats.hits == 4  # no new vision pass
        itm = np.asarray(tiny.itm_scores(images, texts))
        assert vision_calls == [4]
        # one new image among known ones: only it goes through the ViT
        tiny.encode_images([*images[:2], *synthetic_images(1, seed=9)])
        assert vision_calls == [4, 1]
    assert tiny.feature_cache is None  # the context restores the previous state
    assert torch.equal(second.raw, first.raw) and torch.equal(first.raw, plain.raw)
    assert torch.equal(second.embeddings, first.embeddings)
    torch.testing.assert_close(second.embeddings, plain.embeddings, rtol=0, atol=1e-6)
    assert second.labels == plain.labels and len(second.thumbnails) == 4
    np.testing.assert_allclose(itm, plain_itm, rtol=0, atol=1e-6)


def test_same_pixels_hit_whatever_the_input_form(tiny, vision_calls, tmp_path):
    from PIL import Image

    array = synthetic_images(1, seed=4)[0]
    path = tmp_path / "photo.png"
    Image.fromarray(array).save(path)
    with feature_cache(tiny, tmp_path / "cache"):
        a = tiny.encode_images([array])
        b = tiny.encode_images([path])
    assert vision_calls == [1]
    assert b.labels == ["photo.png"]
    assert torch.equal(a.raw, b.raw)


def test_model_change_misses(tiny, tmp_path):
    images = synthetic_images(2)
    cache = FeatureCache(tmp_path)
    with feature_cache(tiny, cache):
        tiny.encode_images(images)
    other = blipviz.load_model("tiny-random", seed=1, cache_dir=cache)
    assert weights_fingerprint(other.hf) != weights_fingerprint(tiny.hf)
    feats = other.encode_images(images)
    assert cache.stats.hits == 0 and cache.stats.misses == 4 and len(cache) == 4
    with blipviz.cache.feature_cache(other, FeatureCache(tmp_path / "fresh")):
        torch.testing.assert_close(other.encode_images(images).raw, feats.raw, rtol=0, atol=0)


def test_quantized_net_misses(tiny, tmp_path):
    images = synthetic_images(1)
    cache = FeatureCache(tmp_path)
    with feature_cache(tiny, cache):
        tiny.encode_images(images)
    quantized = blipviz.load_model("tiny-random", quantize="int8", cache_dir=cache)
    quantized.encode_images(images)
    assert cache.stats.hits == 0 and len(cache) == 2


def test_preprocessing_change_misses(tiny, tmp_path):
    images = synthetic_images(2)
    cache = FeatureCache(tmp_path)
    with feature_cache(tiny, cache):
        tiny.encode_images(images)
    other_norm = blipviz.BlipITM(
        tiny.hf, name=tiny.name, preprocessing=ImagePreprocessing(64, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    )
    other_norm.feature_cache = cache
    other_norm.encode_images(images)
    assert cache.stats.hits == 0 and cache.stats.misses == 4


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage", "swap"])
def test_corrupted_entry_is_recomputed_and_logged(tiny, tmp_path, caplog, damage):
    images = synthetic_images(2)
    cache = FeatureCache(tmp_path)
    with feature_cache(tiny, cache):
        good = tiny.encode_images(images)
    target, other = _entries(cache)
    data = target.read_bytes()
    if damage == "truncate":
        target.write_bytes(data[: len(data) // 2])
    elif damage == "flip":  # one bit of the stored states
        target.write_bytes(data[:-100] + bytes([data[-100] ^ 0x10]) + data[-99:])
    elif damage == "garbage":
        target.write_bytes(b"not a safetensors file")
    else:  # a valid entry of another image under this name
        target.write_bytes(other.read_bytes())
    with caplog.at_level(logging.WARNING, logger="blipviz"), feature_cache(tiny, cache):
        again = tiny.encode_images(images)
    assert cache.stats.corrupted == 1 and cache.stats.misses == 2 + 1
    assert any("corrupted entry" in r.getMessage() and target.name in r.getMessage() for r in caplog.records)
    assert torch.equal(again.raw, good.raw)
    with feature_cache(tiny, cache):  # stored again, whole
        tiny.encode_images(images)
    assert cache.stats.hits == 1 + 2 and cache.stats.corrupted == 1


def test_float16_raw_storage(tiny, tmp_path):
    images = synthetic_images(2)
    full = FeatureCache(tmp_path / "f32")
    half = FeatureCache(tmp_path / "f16", raw_dtype=torch.float16)
    with feature_cache(tiny, full):
        a = tiny.encode_images(images)
    with feature_cache(tiny, half):
        b1 = tiny.encode_images(images)
        b2 = tiny.encode_images(images)
    assert half.stats.hits == 2
    assert torch.equal(b1.raw, b2.raw)  # first and later runs see the same (rounded) states
    assert b1.raw.dtype == torch.float32
    torch.testing.assert_close(b1.raw, a.raw, rtol=1e-3, atol=1e-3)  # float16: 11 significant bits
    size = lambda c: sum(p.stat().st_size for p in _entries(c))  # noqa: E731
    assert size(half) < 0.6 * size(full)
    with pytest.raises(blipviz.InputError):
        FeatureCache(tmp_path, raw_dtype=torch.int8)


@pytest.fixture
def itm_texts_seen(tiny, monkeypatch):
    """Number of texts in each multimodal pass of the tiny net."""
    seen = []
    original = tiny._itm_logits

    def counting(tokenized, states, text_batch_size=128):
        seen.append(len(tokenized))
        return original(tokenized, states, text_batch_size)

    monkeypatch.setattr(tiny, "_itm_logits", counting)
    return seen


def test_itm_logits_are_remembered_per_image_and_text(tiny, vision_calls, itm_texts_seen, tmp_path, texts):
    images = synthetic_images(3)
    plain = np.asarray(tiny.itm_scores(images, texts))
    vision_calls.clear()
    itm_texts_seen.clear()
    with feature_cache(tiny, tmp_path) as cache:
        first = np.asarray(tiny.itm_scores(images, texts))
        assert vision_calls == [3] and itm_texts_seen == [5, 5, 5]
        second = np.asarray(tiny.itm_scores(images, texts))
        assert vision_calls == [3] and itm_texts_seen == [5, 5, 5]  # nothing recomputed
        assert cache.stats.itm_hits == 15 and cache.stats.itm_misses == 15
        # a new description among known ones: only it goes through the multimodal encoder
        more = np.asarray(tiny.itm_scores(images, [*texts, "a kite above the sea"]))
        assert itm_texts_seen == [5, 5, 5, 1, 1, 1]
        # the same texts normalise to the same tokens: a hit
        tiny.itm_scores(images, [t.upper() + "!" for t in texts])
        assert itm_texts_seen == [5, 5, 5, 1, 1, 1]
        itm, _ = tiny.scores(images, texts)
        assert itm_texts_seen == [5, 5, 5, 1, 1, 1]
    np.testing.assert_array_equal(second, first)
    np.testing.assert_allclose(first, plain, rtol=0, atol=1e-6)
    np.testing.assert_allclose(more[:, :5], plain, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(itm), first)


def test_itm_entries_are_not_shared_across_text_weights_or_first_token(tiny, tmp_path, texts):
    images = synthetic_images(2)
    cache = FeatureCache(tmp_path)
    tiny_cached = blipviz.load_model("tiny-random", cache_dir=cache)
    tiny_cached.itm_scores(images, texts)
    for other in (
        blipviz.load_model("tiny-random", seed=3, cache_dir=cache),
        blipviz.load_model("tiny-random", first_token="cls", cache_dir=cache),
    ):
        expected = np.asarray(
            blipviz.load_model(
                "tiny-random", seed=3 if other.first_token == "enc" else 0, first_token=other.first_token
            ).itm_scores(images, texts)
        )
        np.testing.assert_allclose(np.asarray(other.itm_scores(images, texts)), expected, rtol=0, atol=1e-6)


def test_corrupted_itm_entry_is_logged_and_recomputed(tiny, tmp_path, texts, caplog):
    images = synthetic_images(2)
    with feature_cache(tiny, tmp_path) as cache:
        first = np.asarray(tiny.itm_scores(images, texts))
        entries = sorted((tmp_path / "itm").glob("*/*.json"))
        assert len(entries) == 2
        entries[0].write_text('{"abc": [1.0')
        entries[1].write_text('{"abc": "not logits"}')
        with caplog.at_level(logging.WARNING, logger="blipviz"):
            again = np.asarray(tiny.itm_scores(images, texts))
        assert cache.stats.corrupted == 2
        assert "corrupted entry" in caplog.text and "ITM entry" in caplog.text
        assert cache.clear() == 4 and len(cache) == 0
    np.testing.assert_allclose(again, first, rtol=0, atol=1e-6)


def test_search_reuses_remembered_itm_logits(tiny, itm_texts_seen, tmp_path, texts):
    images = synthetic_images(4)
    plain = tiny.search(texts, images, k=2)
    with feature_cache(tiny, tmp_path):
        tiny.itm_scores(images, texts)  # every pair scored and remembered
        itm_texts_seen.clear()
        cached = tiny.search(texts, images, k=2)
        reverse = tiny.search_texts(images, texts, k=3)
        assert itm_texts_seen == []  # every reranked pair came from the cache
    assert cached[["query", "image", "rank"]].equals(plain[["query", "image", "rank"]])
    np.testing.assert_allclose(cached["itm"], plain["itm"], rtol=0, atol=1e-6)
    assert len(reverse) == 4 * 3


def test_zero_shot_reuses_remembered_itm_logits(tiny, vision_calls, itm_texts_seen, tmp_path):
    images = synthetic_images(3)
    labels = ["dog", "cat", "car", "tree"]
    plain = blipviz.ZeroShotClassifier(tiny, labels).predict_proba(images)
    with feature_cache(tiny, tmp_path):
        clf = blipviz.ZeroShotClassifier(tiny, labels)
        first = clf.predict_proba(images)
        vision_calls.clear()
        itm_texts_seen.clear()
        again = clf.predict_proba(images)
        rerank = blipviz.ZeroShotClassifier(tiny, labels, method="rerank", rerank_k=2).predict_proba(images)
        assert vision_calls == [] and itm_texts_seen == []  # neither the ViT nor the ITM pass ran
    np.testing.assert_allclose(first.to_numpy(), plain.to_numpy(), rtol=0, atol=1e-6)
    np.testing.assert_array_equal(again.to_numpy(), first.to_numpy())
    kept = ~np.isnan(rerank.to_numpy())
    assert kept.sum(axis=1).tolist() == [2, 2, 2]
    np.testing.assert_allclose(rerank.to_numpy()[kept], first.to_numpy()[kept], rtol=0, atol=1e-6)


def test_cross_attention_and_gradcam_use_the_cache(tiny, vision_calls, tmp_path):
    image = synthetic_images(1, seed=11)[0]
    plain = tiny.cross_attention(image, "a red sofa")
    with feature_cache(tiny, tmp_path):
        tiny.encode_images([image])
        vision_calls.clear()
        cached = tiny.cross_attention(image, "a red sofa")
        cam = tiny.gradcam(image, "a red sofa")
        assert vision_calls == []  # the image's states came from the cache
    np.testing.assert_allclose(cached.weights, plain.weights, rtol=0, atol=1e-6)
    assert (cam.maps >= 0).all()
