"""The on-disk feature cache: hits skip the ViT and return the same features; misses never reuse
another net's, dtype's or preprocessing's entries; corrupted entries are logged and recomputed; the
cache touches only its own files, works read-only, and loses nothing to concurrent writers."""

from __future__ import annotations

import gc
import logging
import math
import os
import sqlite3
import subprocess
import sys
import tempfile
import time

import numpy as np
import pytest
import torch

import blipviz
from blipviz.net.images import ImagePreprocessing
from blipviz.store.cache import MARKER_NAME, FeatureCache, feature_cache, weights_fingerprint
from blipviz.testing import assert_close, synthetic_images

# Scores through the cache against scores without it: the same float32 computation, possibly in
# other batches; 16 ulps per layer of the tiny net's 2 + 2 layers (blipviz.testing.assert_close).
DEPTH = 4


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
    return sorted(cache.directory.glob("states/*/*.safetensors"))


def _itm_rows(cache: FeatureCache) -> int:
    with sqlite3.connect(cache.directory / "itm.sqlite3") as db:
        return db.execute("SELECT count(*) FROM itm").fetchone()[0]


def _files(folder) -> dict:
    """Every file under ``folder`` with its bytes."""
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


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
    assert_close(second.embeddings, plain.embeddings, depth=DEPTH, magnitude=1.0)
    assert second.labels == plain.labels and len(second.thumbnails) == 4
    assert_close(itm, plain_itm, depth=DEPTH, magnitude=1.0)


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
    with blipviz.store.feature_cache(other, FeatureCache(tmp_path / "fresh")):
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
    original = tiny.itm_logits

    def counting(tokenized, states, text_batch_size=128):
        seen.append(len(tokenized))
        return original(tokenized, states, text_batch_size)

    monkeypatch.setattr(tiny, "itm_logits", counting)
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
    assert_close(first, plain, depth=DEPTH, magnitude=1.0)
    assert_close(more[:, :5], plain, depth=DEPTH, magnitude=1.0)
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
        assert_close(np.asarray(other.itm_scores(images, texts)), expected, depth=DEPTH, magnitude=1.0)


@pytest.mark.parametrize(
    ("assignment", "value", "reason"),
    [
        ("logit1 = ?", math.nan, "NaN"),  # sqlite keeps NaN as NULL
        ("logit1 = ?", -1e30, "exceed"),
        ("logit1 = logit1 + ?", 0.5, "checksum mismatch"),
        ("logit0 = ?", "high", "not two numbers"),
    ],
)
def test_bad_itm_logits_are_logged_counted_and_recomputed(
    tiny, itm_texts_seen, tmp_path, texts, caplog, assignment, value, reason
):
    image = synthetic_images(1)[0]
    plain = tiny.rank(image, texts)
    with feature_cache(tiny, tmp_path) as cache:
        tiny.rank(image, texts)
        with sqlite3.connect(tmp_path / "itm.sqlite3") as db:  # one stored pair goes bad
            (text_key,) = db.execute("SELECT text_key FROM itm LIMIT 1").fetchone()
            db.execute(f"UPDATE itm SET {assignment} WHERE text_key = ?", (value, text_key))
        itm_texts_seen.clear()
        with caplog.at_level(logging.WARNING, logger="blipviz"):
            again = tiny.rank(image, texts)  # rank used to crash inside pandas on a NaN
        assert cache.stats.corrupted == 1 and itm_texts_seen == [1]  # only the bad pair recomputed
        assert any("corrupted entry" in r.getMessage() and reason in r.getMessage() for r in caplog.records)
        tiny.rank(image, texts)  # stored again, valid
        assert itm_texts_seen == [1] and cache.stats.corrupted == 1
    assert_close(again["itm"], plain["itm"], depth=DEPTH, magnitude=1.0)
    assert again["text"].tolist() == plain["text"].tolist()


def test_a_corrupted_itm_database_is_survived_and_replaced_by_clear(tiny, tmp_path, texts, caplog):
    images = synthetic_images(2)
    plain = np.asarray(tiny.itm_scores(images, texts))
    with feature_cache(tiny, tmp_path):
        tiny.itm_scores(images, texts)
    gc.collect()  # the cache's connection closed: sqlite folds its log into the file
    assert not (tmp_path / "itm.sqlite3-wal").exists()
    (tmp_path / "itm.sqlite3").write_bytes(b"not a database" * 100)
    cache = FeatureCache(tmp_path)
    with caplog.at_level(logging.WARNING, logger="blipviz"), feature_cache(tiny, cache):
        again = np.asarray(tiny.itm_scores(images, texts))
        assert cache.stats.corrupted == 1 and "corrupted ITM database" in caplog.text
        assert cache.clear() == 2  # the two image entries; the bad database is replaced
        tiny.itm_scores(images, texts)
        tiny.itm_scores(images, texts)
        assert cache.stats.itm_hits == 10
    assert_close(again, plain, depth=DEPTH, magnitude=1.0)


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
    assert_close(cached["itm"], plain["itm"], depth=DEPTH, magnitude=1.0)
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
    assert_close(first.to_numpy(), plain.to_numpy(), depth=DEPTH, magnitude=1.0)
    np.testing.assert_array_equal(again.to_numpy(), first.to_numpy())
    kept = ~np.isnan(rerank.to_numpy())
    assert kept.sum(axis=1).tolist() == [2, 2, 2]
    assert_close(rerank.to_numpy()[kept], first.to_numpy()[kept], depth=DEPTH, magnitude=1.0)


def test_cross_attention_and_gradcam_use_the_cache(tiny, vision_calls, tmp_path):
    image = synthetic_images(1, seed=11)[0]
    plain = tiny.cross_attention(image, "a red sofa")
    with feature_cache(tiny, tmp_path):
        tiny.encode_images([image])
        vision_calls.clear()
        cached = tiny.cross_attention(image, "a red sofa")
        cam = tiny.gradcam(image, "a red sofa")
        assert vision_calls == []  # the image's states came from the cache
    assert_close(cached.weights, plain.weights, depth=DEPTH, magnitude=1.0)
    assert (cam.maps >= 0).all()


# ------------------------------------------------------------------------------------ ownership
def test_a_folder_without_the_marker_is_refused_and_left_alone(tiny, tmp_path):
    work = tmp_path / "work"
    tiny.save_pretrained(work / "my-blip")
    before = _files(work)
    for open_cache in (
        lambda: FeatureCache(work),
        lambda: blipviz.load_model("tiny-random", cache_dir=work),
    ):
        with pytest.raises(blipviz.CacheFolderError, match=r"not a blipviz feature cache.*[Nn]othing in it"):
            open_cache()
    assert _files(work) == before  # model.safetensors and the rest untouched


def test_files_and_other_versions_are_named_errors(tmp_path):
    a_file = tmp_path / "features"
    a_file.write_text("mine")
    with pytest.raises(blipviz.CacheFolderError, match="is a file"):
        FeatureCache(a_file)
    old = tmp_path / "old"
    old.mkdir()
    (old / MARKER_NAME).write_text('{"format": "blipviz feature cache", "version": "1"}')
    with pytest.raises(blipviz.CacheFolderError, match="format version '1'"):
        FeatureCache(old)
    assert a_file.read_text() == "mine" and [p.name for p in old.iterdir()] == [MARKER_NAME]


def test_clear_and_len_touch_only_the_cache_own_entries(tiny, tmp_path, texts, monkeypatch):
    images = synthetic_images(2)
    work = tmp_path / "work"
    cache = FeatureCache(work)  # a new folder: marked as a cache
    assert (work / MARKER_NAME).is_file() and len(cache) == 0
    with feature_cache(tiny, cache):
        tiny.itm_scores(images, texts)
    # the user's own files, among and inside the cache's
    tiny.save_pretrained(work / "my-blip")
    (work / "notes.tmp").write_text("mine")
    shard = _entries(cache)[0].parent
    (shard / "notes.safetensors").write_text("mine")
    (work / "itm").mkdir()
    (work / "itm" / "pairs.json").write_text("{}")
    foreign = {p: b for p, b in _files(work).items() if p.parts[0] in ("my-blip", "itm") or "notes" in p.name}
    # a writer's temporaries carry the cache's prefix; a killed writer leaves them behind
    renamed = []

    def failing_replace(src, dst):
        renamed.append(src)
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "replace", failing_replace)
    cache.store(tiny, "ab" + "0" * 62, torch.zeros(tiny.n_image_tokens, tiny.width))  # logged, not raised
    monkeypatch.undo()
    assert [os.path.basename(p)[:13] for p in renamed] == [".blipviz-tmp-"] and not os.path.exists(renamed[0])
    orphans = [work / ".blipviz-tmp-a1b2.part", shard / ".blipviz-tmp-c3d4.part"]
    for orphan in orphans:
        orphan.write_bytes(b"half an entry")

    assert len(cache) == 2
    assert cache.clear() == 2 + 10  # image entries, then (image, text) pairs of ITM logits
    assert len(cache) == 0 and not any(p.exists() for p in orphans)
    assert {p: b for p, b in _files(work).items() if p in foreign} == foreign
    assert (work / MARKER_NAME).is_file()
    with feature_cache(tiny, FeatureCache(work)) as again:  # still a cache, now empty
        tiny.itm_scores(images, texts)
    assert again.stats.misses == 2 and again.stats.itm_misses == 10


def test_entries_are_readable_by_the_folder_s_other_users(tiny, tmp_path):
    with feature_cache(tiny, tmp_path) as cache:
        tiny.encode_images(synthetic_images(1))
    umask = os.umask(0o022)
    os.umask(umask)
    for path in (tmp_path / MARKER_NAME, *_entries(cache)):
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # as open() makes them, not mkstemp's 0o600


# ---------------------------------------------------------------------------------------- keys
def test_keys_follow_the_weights_content_not_the_python_object(tmp_path):
    cache = FeatureCache(tmp_path)
    h = "0" * 64
    a, same, other = (blipviz.load_model("tiny-random", seed=s) for s in (0, 0, 1))
    assert cache.key(a, h) == cache.key(same, h) != cache.key(other, h)
    # nothing in the cache is keyed by id(): a freed net's id, reused by Python, finds nothing
    tables = [v for v in vars(cache).values() if isinstance(v, dict)]
    assert not any(isinstance(k, int) for table in tables for k in table)


def test_a_new_net_on_a_reused_object_gets_its_own_entries(tmp_path, texts):
    """What id() reuse did: a seed-1 net whose .hf was a seed-0 net's object got seed-0 scores."""
    images = synthetic_images(2)
    seed1 = blipviz.load_model("tiny-random", seed=1)
    expected = seed1.encode_images(images).raw, np.asarray(seed1.itm_scores(images, texts))
    cache = FeatureCache(tmp_path)
    first = blipviz.load_model("tiny-random", seed=0, cache_dir=cache)
    first.itm_scores(images, texts)
    first.hf.load_state_dict(seed1.hf.state_dict())  # same object, seed-1 weights
    second = blipviz.BlipITM(first.hf, name=first.name, preprocessing=first.preprocessing)
    second.feature_cache = cache
    raw = second.encode_images(images).raw
    assert cache.stats.hits == 0  # the first net's entries are not the second's
    itm = np.asarray(second.itm_scores(images, texts))
    assert cache.stats.hits == 2 and cache.stats.itm_hits == 0  # its own states, no foreign logits
    torch.testing.assert_close(raw, expected[0], rtol=0, atol=0)
    assert_close(itm, expected[1], depth=DEPTH, magnitude=1.0)
    # the first net still holds its old fingerprints until told its weights changed
    cache.forget_model(first)
    assert first.fingerprint("image") == second.fingerprint("image")


def test_float16_and_float32_nets_never_share_entries(tmp_path, texts):
    images = synthetic_images(2)
    cache = FeatureCache(tmp_path)
    net32 = blipviz.load_model("tiny-random")
    with feature_cache(net32, cache):
        net32.itm_scores(images, texts)
    # one weights object, converted in place: the nets differ only by dtype
    for dtype in (torch.float16, torch.float32):
        net = blipviz.BlipITM(net32.hf, name=net32.name, preprocessing=net32.preprocessing, dtype=dtype)
        plain_raw, plain_itm = net.encode_images(images).raw, np.asarray(net.itm_scores(images, texts))
        hits = cache.stats.hits, cache.stats.itm_hits
        with feature_cache(net, cache):
            raw, itm = net.encode_images(images).raw, np.asarray(net.itm_scores(images, texts))
        assert (cache.stats.hits, cache.stats.itm_hits) == (hits[0] + 2, hits[1])  # its own entries only
        torch.testing.assert_close(raw, plain_raw, rtol=0, atol=0)
        assert_close(itm, plain_itm, depth=DEPTH, magnitude=1.0)


def test_float16_and_float32_storage_share_a_folder_without_mixing(tiny, tmp_path):
    images = synthetic_images(2)
    plain = tiny.encode_images(images).raw
    with feature_cache(tiny, FeatureCache(tmp_path, raw_dtype=torch.float16)):
        tiny.encode_images(images)
    with feature_cache(tiny, FeatureCache(tmp_path)) as full:
        assert torch.equal(tiny.encode_images(images).raw, plain)  # never the float16-rounded states
    assert full.stats.hits == 0 and len(full) == 4


# ----------------------------------------------------------------------------------- read-only
def _refuse_writes_under(folder, monkeypatch):
    """Creating a file or folder under ``folder`` fails as on a read-only folder (the cache writes
    nothing, marker and probe included, without a temporary file; it opens its database read-only
    when it cannot write)."""
    original_mkstemp, original_mkdir = tempfile.mkstemp, os.mkdir

    def refused(path):
        return path is not None and os.fspath(path).startswith(os.fspath(folder))

    def mkstemp(*args, dir=None, **kwargs):
        if refused(dir):
            raise PermissionError(13, "Permission denied", os.fspath(dir))
        return original_mkstemp(*args, dir=dir, **kwargs)

    def mkdir(path, *args, **kwargs):
        if refused(path):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return original_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    monkeypatch.setattr(os, "mkdir", mkdir)


def test_an_unwritable_cache_serves_hits_and_computes_misses_with_one_warning(
    tiny, tmp_path, texts, caplog, monkeypatch
):
    images = synthetic_images(3)
    plain = np.asarray(tiny.itm_scores(images, [*texts, "a new text"]))
    with feature_cache(tiny, tmp_path) as cache:
        tiny.itm_scores(images[:2], texts)
    stored = _files(tmp_path)
    _refuse_writes_under(tmp_path, monkeypatch)
    with caplog.at_level(logging.WARNING, logger="blipviz"), feature_cache(tiny, tmp_path) as cache:
        itm = np.asarray(tiny.itm_scores(images, [*texts, "a new text"]))  # a new image, a new text
        itm_again = np.asarray(tiny.itm_scores(images, [*texts, "a new text"]))
        assert not cache.writable and "read-only" in repr(cache)
        # twice: 2 of 3 images and 5 of 6 texts for those 2 images are hits; the rest is never stored
        assert (cache.stats.hits, cache.stats.misses) == (2 * 2, 2 * 1)
        assert (cache.stats.itm_hits, cache.stats.itm_misses) == (2 * 10, 2 * 8)
        assert cache.clear() == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 2 and "not writable" in warnings[0] and "removed nothing" in warnings[1]
    assert_close(itm, plain, depth=DEPTH, magnitude=1.0)
    np.testing.assert_array_equal(itm_again, itm)
    monkeypatch.undo()
    assert {p: b for p, b in _files(tmp_path).items() if not p.name.endswith(("-wal", "-shm"))} == {
        p: b for p, b in stored.items() if not p.name.endswith(("-wal", "-shm"))
    }


def test_a_missing_folder_that_cannot_be_created_works_without_storing(tiny, tmp_path, caplog, monkeypatch):
    images = synthetic_images(1)
    _refuse_writes_under(tmp_path, monkeypatch)
    with (
        caplog.at_level(logging.WARNING, logger="blipviz"),
        feature_cache(tiny, tmp_path / "features") as cache,
    ):
        tiny.encode_images(images)
        tiny.encode_images(images)
    assert cache.stats.misses == 2 and len(cache) == 0 and caplog.text.count("not writable") == 1


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes through chmod")
def test_a_chmod_read_only_cache_is_used_read_only(tiny, tmp_path, texts):
    images = synthetic_images(2)
    with feature_cache(tiny, tmp_path / "c") as cache:
        plain = np.asarray(tiny.itm_scores(images, texts))
    folders = [tmp_path / "c", *(p for p in (tmp_path / "c").rglob("*") if p.is_dir())]
    for folder in folders:
        folder.chmod(0o555)
    try:
        with feature_cache(tiny, tmp_path / "c") as cache:
            itm = np.asarray(tiny.itm_scores([*images, *synthetic_images(1, seed=5)], [*texts, "new"]))
        assert not cache.writable and cache.stats.hits == 2 and cache.stats.itm_hits == 10
        assert_close(itm[:2, :5], plain, depth=DEPTH, magnitude=1.0)
    finally:
        for folder in folders:
            folder.chmod(0o755)


# --------------------------------------------------------------------------------- concurrency
_WRITER = """
import pathlib, sys, time
import blipviz
from blipviz.testing import synthetic_images

folder, go = sys.argv[1], pathlib.Path(sys.argv[2])
model = blipviz.load_model("tiny-random", cache_dir=folder)
(go.parent / "ready").touch()
while not go.exists():
    time.sleep(0.005)
for i in range(10):
    model.itm_scores(synthetic_images(3), [f"bob looks at picture {i}", "a shared description"])
"""


def _write_texts(model, name: str) -> None:
    """One text at a time: many small writes to the same images' remembered logits."""
    for i in range(10):
        model.itm_scores(synthetic_images(3), [f"{name} looks at picture {i}", "a shared description"])


def test_two_processes_writing_one_cache_lose_nothing(tiny, tmp_path):
    folder, go = tmp_path / "features", tmp_path / "go"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    bob = subprocess.Popen([sys.executable, "-c", _WRITER, str(folder), str(go)], env=env)
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "ready").exists():
            assert time.monotonic() < deadline and bob.poll() is None
            time.sleep(0.01)
        with feature_cache(tiny, folder):
            go.touch()  # both write at once: bob in his process, ann here
            _write_texts(tiny, "ann")
        assert bob.wait(timeout=120) == 0
    finally:
        if bob.poll() is None:
            bob.kill()
    texts = [f"{n} looks at picture {i}" for n in ("ann", "bob") for i in range(10)] + [
        "a shared description"
    ]
    images = synthetic_images(3)
    plain = np.asarray(tiny.itm_scores(images, texts))
    with feature_cache(tiny, folder) as cache:
        itm = np.asarray(tiny.itm_scores(images, texts))
    assert (cache.stats.misses, cache.stats.itm_misses, cache.stats.corrupted) == (0, 0, 0)
    assert cache.stats.itm_hits == 3 * 21
    assert_close(itm, plain, depth=DEPTH, magnitude=1.0)


def test_cached_images_are_decoded_by_the_net_s_exif_rule(tiny, tmp_path):
    """A net that keeps photos as stored (exif_transpose=False) gets the same states through the cache
    as without it; the upright net gets its own entry."""
    import dataclasses
    import io

    from PIL import Image

    buf = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: rotate 90 degrees clockwise on display
    Image.fromarray(synthetic_images(1, size=(40, 64))[0]).save(buf, format="JPEG", exif=exif.tobytes())
    data = buf.getvalue()
    as_stored = blipviz.BlipITM(
        tiny.hf, name="tiny", preprocessing=dataclasses.replace(tiny.preprocessing, exif_transpose=False)
    )
    expected = as_stored.encode_images([data]).raw
    with feature_cache(as_stored, tmp_path / "c") as cache:
        torch.testing.assert_close(as_stored.encode_images([data]).raw, expected, rtol=0, atol=0)
        with feature_cache(tiny, cache):
            upright = tiny.encode_images([data]).raw
    assert cache.stats.misses == 2 and len(cache) == 2
    assert not torch.allclose(upright, expected)


def test_a_live_writer_s_temporary_survives_clear_and_an_orphan_does_not(tmp_path):
    import fcntl

    cache = FeatureCache(tmp_path)
    live, orphan = tmp_path / ".blipviz-tmp-live.part", tmp_path / ".blipviz-tmp-dead.part"
    live.write_bytes(b"being written")
    orphan.write_bytes(b"left by a killed writer")
    with open(live, "rb") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)  # as _write_atomically holds it while writing
        cache.clear()
        assert live.exists() and not orphan.exists()
    cache.clear()
    assert not live.exists()


def test_a_database_corrupted_inside_is_counted_and_reported_once(tiny, tmp_path, texts, caplog):
    """Pages overwritten behind a valid header: the first read fails, and the database is then
    bypassed, not counted again for every image."""
    images = synthetic_images(3)
    plain = np.asarray(tiny.itm_scores(images, texts))
    with feature_cache(tiny, tmp_path):
        tiny.itm_scores(images, texts)
    gc.collect()
    db = tmp_path / "itm.sqlite3"
    data = bytearray(db.read_bytes())
    assert len(data) > 4096
    data[4096:] = b"\xff" * (len(data) - 4096)  # keep page 1 (header, schema), scramble the rest
    db.write_bytes(bytes(data))
    cache = FeatureCache(tmp_path)
    with caplog.at_level(logging.WARNING, logger="blipviz"), feature_cache(tiny, cache):
        first = np.asarray(tiny.itm_scores(images, texts))
        again = np.asarray(tiny.itm_scores(images, texts))
    assert cache.stats.corrupted == 1
    assert caplog.text.count("corrupted ITM database") == 1
    assert_close(first, plain, depth=DEPTH, magnitude=1.0)
    assert_close(again, plain, depth=DEPTH, magnitude=1.0)


def test_folders_that_cannot_be_used_are_named_errors(tmp_path, monkeypatch):
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    with pytest.raises(blipviz.CacheFolderError, match="which is a file"):
        FeatureCache(a_file / "sub")
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "something").write_text("x")
    real_iterdir = type(locked).iterdir

    def refuse(self):
        if self == locked:
            raise PermissionError(13, "Permission denied", str(self))
        return real_iterdir(self)

    monkeypatch.setattr(type(locked), "iterdir", refuse)
    with pytest.raises(blipviz.CacheFolderError, match="cannot be read"):
        FeatureCache(locked)


# ------------------------------------------------------------------------------------ provenance
def _versions_now() -> dict:
    import transformers

    return {
        "blipviz": blipviz.__version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }


def test_the_marker_records_who_created_the_cache_and_is_not_rewritten_on_use(tiny, tmp_path):
    import datetime
    import json

    from blipviz.net.provenance import PROVENANCE_KEYS

    cache = FeatureCache(tmp_path)
    marker = tmp_path / MARKER_NAME
    data = json.loads(marker.read_text())
    assert (data["format"], data["version"]) == ("blipviz feature cache", "2")
    made = data["provenance"]
    assert tuple(made) == PROVENANCE_KEYS
    assert {k: made[k] for k in ("blipviz", "torch", "transformers")} == _versions_now()
    assert made["device"] is None and made["dtype"] is None  # one folder serves every device and dtype
    assert datetime.datetime.fromisoformat(made["date"]).tzinfo is not None
    assert data["written_by"] == [{**_versions_now(), "date": made["date"]}]
    assert cache.marker() == data
    before = (marker.stat().st_ino, marker.stat().st_mtime_ns, marker.read_bytes())
    with feature_cache(tiny, tmp_path) as again:  # opened again and used: the marker stays as it was
        tiny.encode_images(synthetic_images(1, seed=2))
        assert again.stats.misses == 1
    assert (marker.stat().st_ino, marker.stat().st_mtime_ns, marker.read_bytes()) == before
    # each entry names the net's device and dtype and the versions that computed it
    from safetensors import safe_open

    (entry,) = _entries(cache)
    with safe_open(str(entry), framework="pt") as f:
        entry_provenance = json.loads(f.metadata()["provenance"])
    assert entry_provenance["device"] == "cpu" and entry_provenance["dtype"] == "float32"
    assert {k: entry_provenance[k] for k in ("blipviz", "torch", "transformers")} == _versions_now()


def test_a_cache_written_by_other_versions_opens_serves_and_says_who_wrote_it(tiny, tmp_path):
    import json

    image = synthetic_images(1, seed=4)
    with feature_cache(tiny, tmp_path):
        first = tiny.encode_images(image)
    marker = tmp_path / MARKER_NAME
    data = json.loads(marker.read_text())
    old = {
        "blipviz": "0.0.1",
        "torch": "2.1.0",
        "transformers": "4.40.0",
        "date": "2024-05-01T10:00:00+00:00",
    }
    data["provenance"].update(old)
    data["written_by"] = [old]
    marker.write_text(json.dumps(data))
    with feature_cache(tiny, tmp_path) as cache:
        again = tiny.encode_images(image)
        assert cache.stats.hits == 1 and cache.stats.misses == 0  # its entries are served
    assert_close(again.embeddings, first.embeddings, depth=1)
    reopened = json.loads(marker.read_text())
    assert reopened["provenance"] == data["provenance"]  # who created it: unchanged
    assert reopened["written_by"][0] == old
    assert {k: reopened["written_by"][1][k] for k in ("blipviz", "torch", "transformers")} == _versions_now()
    assert len(reopened["written_by"]) == 2
    before = marker.read_bytes()
    FeatureCache(tmp_path)  # these versions are recorded already: no rewrite
    assert marker.read_bytes() == before


def test_a_marker_from_before_provenance_opens_and_gains_the_versions(tmp_path):
    import json

    marker = tmp_path / MARKER_NAME
    marker.write_text('{"format": "blipviz feature cache", "version": "2", "note": "written by blipviz"}')
    cache = FeatureCache(tmp_path)
    data = json.loads(marker.read_text())
    assert "provenance" not in data and data["note"] == "written by blipviz"  # unknown creator stays unknown
    assert [{k: r[k] for k in ("blipviz", "torch", "transformers")} for r in data["written_by"]] == [
        _versions_now()
    ]
    assert cache.marker() == data and len(cache) == 0
