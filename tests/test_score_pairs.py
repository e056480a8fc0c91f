"""``score_pairs`` on the tiny net: equal to ``pair_scores``, every source kind, resumed after a kill
between and inside shards, another source refused, the keep mask applied to a ``datasets.Dataset``,
and Ray equal to local row for row."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from blipviz import BlipvizError, CollectionFolderError, InputError, PairCollection, score_pairs
from blipviz.testing import assert_close, net_depth, synthetic_images

N_IMAGES = 6
CAPTIONS = 3  # each image with 3 captions: COCO's shape, smaller
SHARD = 5
BATCH = 4


class Killed(Exception):
    """Stands for a kill."""


def _png(array) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def _captions() -> list[str]:
    words = ["a dog on a beach", "two cats", "a red car", "a bowl of fruit", "$5 and $10", "a city at night"]
    return [f"{words[(i + j) % len(words)]} {j}" for i in range(N_IMAGES) for j in range(CAPTIONS)]


@pytest.fixture(scope="module")
def pairs_dataset():
    """N_IMAGES images with CAPTIONS captions each, one row per pair; row 7 holds a corrupt image and
    row 11 an empty caption."""
    import datasets

    arrays = synthetic_images(N_IMAGES, size=(20, 24), seed=3)
    images = [{"bytes": _png(arrays[i]), "path": None} for i in range(N_IMAGES) for _ in range(CAPTIONS)]
    images[7] = {"bytes": b"\x89PNG\r\n\x1a\n not a png", "path": None}
    texts = _captions()
    texts[11] = ""
    return datasets.Dataset.from_dict(
        {"image": images, "text": texts, "key": [f"pair-{i:02d}" for i in range(len(texts))]},
        features=datasets.Features(
            {"image": datasets.Image(), "text": datasets.Value("string"), "key": datasets.Value("string")}
        ),
    )


def _score(model, source, out, **kw):
    kw.setdefault("batch_size", BATCH)
    kw.setdefault("shard_size", SHARD)
    return score_pairs(model, source, out, progress=False, **kw)


@pytest.fixture(scope="module")
def scored(tiny, pairs_dataset, tmp_path_factory):
    return _score(tiny, pairs_dataset, tmp_path_factory.mktemp("pairs") / "p", id_column="key")


def test_score_pairs_equals_pair_scores_row_for_row(tiny, pairs_dataset, scored):
    frame = scored.to_pandas()
    assert len(scored) == len(pairs_dataset) and frame["position"].tolist() == list(range(len(frame)))
    assert frame["id"].tolist() == pairs_dataset["key"]
    errors = scored.errors
    assert errors["position"].tolist() == [7, 11]
    assert "ImageLoadError" in errors["reason"][0] and "no text" in errors["reason"][1]
    good = [i for i in range(len(frame)) if i not in (7, 11)]
    raw = pairs_dataset.cast_column("image", __import__("datasets").Image(decode=False))
    reference = tiny.pair_scores([raw[i]["image"]["bytes"] for i in good], [raw[i]["text"] for i in good])
    depth = net_depth(tiny)
    for column in ("itm", "itm_logit", "cosine"):
        assert_close(frame[column].to_numpy()[good], getattr(reference, column), depth=depth)
    assert frame.loc[[7, 11], ["itm", "cosine"]].isna().all().all()


def test_each_distinct_image_of_a_batch_passes_the_vit_once(tiny, pairs_dataset, tmp_path, monkeypatch):
    passes = []
    real = type(tiny).iter_image_states

    def counting(self, images, *args, **kwargs):
        passes.append(len(images))
        yield from real(self, images, *args, **kwargs)

    monkeypatch.setattr(type(tiny), "iter_image_states", counting)
    _score(tiny, pairs_dataset, tmp_path / "p", id_column="key", batch_size=6, shard_size=6)
    # batches of 6 rows hold 2 images x 3 captions (one of row 7's copies is corrupt: still 2 images)
    assert passes == [2, 2, 2]


def test_the_keep_mask_selects_exactly_the_pairs_above_the_thresholds(scored, pairs_dataset):
    frame = scored.to_pandas()
    threshold = float(np.nanmedian(frame["itm"]))
    mask = scored.keep_mask(min_itm=threshold)
    assert mask.dtype == bool and mask.shape == (len(pairs_dataset),)
    kept = pairs_dataset.select(np.flatnonzero(mask))
    expected = [k for k, itm in zip(frame["id"], frame["itm"], strict=True) if itm >= threshold]
    assert kept["key"] == expected == scored.filter(min_itm=threshold)
    both = scored.keep_mask(min_itm=threshold, min_cosine=float(np.nanmedian(frame["cosine"])))
    assert (both <= mask).all() and not both[[7, 11]].any()
    assert scored.keep_mask().sum() == len(frame) - 2  # no threshold: every scored row


@pytest.mark.parametrize(
    "bad", [{"min_itm": 1.5}, {"min_itm": "0.5"}, {"min_cosine": -2}, {"min_itm": np.nan}]
)
def test_thresholds_are_checked(scored, bad):
    with pytest.raises(BlipvizError, match=next(iter(bad))):
        scored.keep_mask(**bad)


@settings(max_examples=15, deadline=None)
@given(itm=st.none() | st.floats(0, 1), cosine=st.none() | st.floats(-1, 1))
def test_the_keep_mask_is_the_conjunction_of_the_thresholds(scored, itm, cosine):
    frame = scored.to_pandas()
    expected = frame["error"].isna().to_numpy().copy()
    if itm is not None:
        expected &= frame["itm"].fillna(-np.inf).to_numpy() >= itm
    if cosine is not None:
        expected &= frame["cosine"].fillna(-np.inf).to_numpy() >= cosine
    np.testing.assert_array_equal(scored.keep_mask(min_itm=itm, min_cosine=cosine), expected)


@pytest.mark.parametrize("killed_after", [2, 3], ids=["inside a shard", "between shards"])
def test_a_killed_run_resumes_to_the_same_scores(
    tiny, pairs_dataset, scored, tmp_path, monkeypatch, killed_after
):
    out = tmp_path / "p"
    real = type(tiny).iter_image_states
    calls = {"n": 0}

    def failing(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] > killed_after:
            raise Killed
        yield from real(self, *args, **kwargs)

    monkeypatch.setattr(type(tiny), "iter_image_states", failing)
    with pytest.raises(Killed):
        _score(tiny, pairs_dataset, out, id_column="key", batch_size=2, shard_size=4)
    with pytest.raises(CollectionFolderError, match="unfinished"):
        PairCollection.open(out)
    monkeypatch.setattr(type(tiny), "iter_image_states", real)
    resumed = _score(tiny, pairs_dataset, out, id_column="key", shard_size=4).to_pandas()
    whole = scored.to_pandas()
    assert resumed["id"].tolist() == whole["id"].tolist()
    for column in ("itm", "itm_logit", "cosine"):
        assert_close(resumed[column].to_numpy(), whole[column].to_numpy(), depth=net_depth(tiny))


def test_another_source_is_refused(tiny, pairs_dataset, scored):
    other = pairs_dataset.map(lambda row: {"text": row["text"] + " again"})
    with pytest.raises(CollectionFolderError, match="rows differ"):
        _score(tiny, other, scored.folder, id_column="key")


def test_a_pairs_folder_and_a_collection_folder_are_not_confused(tiny, scored, tmp_path):
    from blipviz import Collection, embed_collection

    with pytest.raises(CollectionFolderError, match=r"PairCollection\.open"):
        Collection.open(scored.folder)
    with pytest.raises(CollectionFolderError, match="holds pairs"):
        embed_collection(tiny, [str(tmp_path)], scored.folder)


def test_a_csv_of_paths_relative_to_it_and_a_folder_holding_it(tiny, tmp_path):
    from PIL import Image

    root = tmp_path / "set"
    (root / "img").mkdir(parents=True)
    arrays = synthetic_images(3, size=(16, 16), seed=4)
    for i, a in enumerate(arrays):
        Image.fromarray(a).save(root / "img" / f"{i}.png")
    rows = [("img/0.png", "a dog"), ("img/0.png", "a cat"), ("img/1.png", "a car"), ("img/2.png", "fruit")]
    (root / "pairs.csv").write_text("image,text\n" + "".join(f"{p},{t}\n" for p, t in rows))
    from_file = _score(tiny, root / "pairs.csv", tmp_path / "a").to_pandas()
    from_folder = _score(tiny, root, tmp_path / "b").to_pandas()
    reference = tiny.pair_scores([str(root / p) for p, _ in rows], [t for _, t in rows])
    assert_close(from_file["itm"].to_numpy(), reference.itm, depth=net_depth(tiny))
    np.testing.assert_array_equal(from_file["itm"].to_numpy(), from_folder["itm"].to_numpy())
    manifest = json.loads((tmp_path / "a" / "blipviz-collection.json").read_text())
    assert manifest["job"] == "pairs" and manifest["source"]["kind"] == "table"


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda m, d, out: score_pairs(m, d, out, text_column=None), "text_column"),
        (lambda m, d, out: score_pairs(m, d, out, text_column="caption"), "text_column='caption'"),
        (lambda m, d, out: score_pairs(m, d, out, engine="spark"), "engine"),
        (lambda m, d, out: score_pairs(m, d, 3), "out must be a folder"),
    ],
)
def test_bad_options_are_named_before_any_work(tiny, pairs_dataset, tmp_path, call, match):
    with pytest.raises(BlipvizError, match=match):
        call(tiny, pairs_dataset, tmp_path / "p")
    assert not (tmp_path / "p").exists()


def test_an_image_part_cannot_score_pairs(pairs_dataset, tmp_path):
    import blipviz

    with pytest.raises(blipviz.MissingPartError, match="scoring pairs needs the MultimodalEncoder"):
        score_pairs(blipviz.load_part("ImageEncoder", "tiny-random"), pairs_dataset, tmp_path / "p")


def test_empty_text_is_a_skipped_row_not_an_error(tiny, tmp_path):
    import datasets

    data = datasets.Dataset.from_dict(
        {"image": [_png(a) for a in synthetic_images(2, size=(16, 16))], "text": ["a photo", None]}
    )
    result = score_pairs(tiny, data, tmp_path / "p", progress=False)
    assert result.errors["position"].tolist() == [1]
    with pytest.raises(InputError):
        result.keep_mask(min_itm=-0.1)


def test_rows_of_one_image_are_decoded_once_per_batch(tiny, pairs_dataset, tmp_path, monkeypatch):
    decodes = []
    real = type(tiny.preprocessing).load

    def counting(self, item, *args, **kwargs):
        if isinstance(item, bytes):  # a decode (the ViT's own call gets the decoded PIL image)
            decodes.append(item)
        return real(self, item, *args, **kwargs)

    monkeypatch.setattr(type(tiny.preprocessing), "load", counting)
    _score(tiny, pairs_dataset, tmp_path / "p", id_column="key", batch_size=6, shard_size=6)
    # 3 batches of 2 images x 3 captions: 6 images decoded once each, plus row 7's corrupt bytes
    assert len(decodes) == 7


@settings(max_examples=15)
@given(picks=st.lists(st.integers(0, 3), min_size=1, max_size=12))
def test_a_batch_reads_and_decodes_each_path_once(tiny, tmp_path_factory, picks):
    """Any rows of a batch naming files (some repeated, one missing): each distinct file is hashed
    once and decoded once, every row of it gets the file's digest and the one decoded image, and the
    missing file is an error on each of its own rows."""
    from PIL import Image

    from blipviz.collection import sources, work
    from blipviz.collection.sources import Row

    folder = tmp_path_factory.mktemp("files")
    paths = []
    for i, array in enumerate(synthetic_images(3, size=(12, 16), seed=9)):
        paths.append(folder / f"{i}.png")
        Image.fromarray(array).save(paths[-1])
    paths.append(folder / "missing.png")  # index 3: never written
    hashed, decoded = [], []
    real_digest, real_load = sources.item_digest, type(tiny.preprocessing).load

    def counting_digest(item):
        hashed.append(str(item))
        return real_digest(item)

    def counting_load(self, item, *args, **kwargs):
        decoded.append(str(item))
        return real_load(self, item, *args, **kwargs)

    rows = [
        Row(position=i, id=str(i), text="t", item=str(paths[k]), locator=None) for i, k in enumerate(picks)
    ]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(work, "item_digest", counting_digest)
        patch.setattr(type(tiny.preprocessing), "load", counting_load)
        images, errors = work.decode_rows(tiny, rows)
    distinct = sorted(set(picks))
    assert sorted(hashed) == sorted(str(paths[k]) for k in distinct)  # each file read for its digest once
    # each readable file decoded once; the missing one tried per row, so each error names its row
    missing = [str(paths[3])] * picks.count(3)
    assert sorted(decoded) == sorted([str(paths[k]) for k in distinct if k != 3] + missing)
    for row, k, image, error in zip(rows, picks, images, errors, strict=True):
        assert row.digest == real_digest(paths[k])  # None for the missing file
        assert (error is not None) == (k == 3) and (image is None) == (k == 3)
        first = picks.index(k)
        assert k == 3 or image is images[first]  # rows of one file share its one decoded image


def test_pair_scores_without_thumbnails_gives_the_same_numbers(tiny):
    images = synthetic_images(3, size=(20, 24), seed=5)
    texts = ["a dog", "two cats", "fruit"]
    full = tiny.pair_scores(list(images), texts)
    bare = tiny.pair_scores(list(images), texts, thumbnails=False)
    assert full.thumbnails is not None and len(full.thumbnails) == 3 and bare.thumbnails is None
    for name in ("itm", "itm_logit", "cosine"):
        np.testing.assert_array_equal(getattr(bare, name), getattr(full, name))
