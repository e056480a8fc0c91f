"""Collections on the tiny net: embedding a dataset into shards, resuming after an interruption,
skipped items, refusing another net's folder, opening and searching (FAISS against numpy)."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from blipviz.collection import Collection, CollectionFolderError, embed_collection
from blipviz.collection.index import build_index, search_index
from blipviz.testing import assert_close, net_depth, synthetic_images

N = 200
SHARD = 64
BATCH = 16


class Interrupt(Exception):
    """Stands for a kill: raised from inside the job."""


def _png(array) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def dataset():
    """N small generated images in an Arrow dataset, with ids and captions; item 37 is corrupt."""
    import datasets

    encoded = [{"bytes": _png(a), "path": None} for a in synthetic_images(N, size=(24, 32))]
    encoded[37] = {"bytes": b"\x89PNG\r\n\x1a\n not really a png", "path": None}
    features = datasets.Features(
        {"image": datasets.Image(), "name": datasets.Value("string"), "caption": datasets.Value("string")}
    )
    return datasets.Dataset.from_dict(
        {
            "image": encoded,
            "name": [f"img-{i:03d}" for i in range(N)],
            "caption": [f"picture {i}" for i in range(N)],
        },
        features=features,
    )


def _embed(tiny, dataset, out, **kw):
    return embed_collection(
        tiny, dataset, out, id_column="name", text_column="caption", batch_size=BATCH, shard_size=SHARD,
        progress=False, **kw,
    )  # fmt: skip


@pytest.fixture(scope="module")
def whole(tiny, dataset, tmp_path_factory):
    """One uninterrupted run."""
    return _embed(tiny, dataset, tmp_path_factory.mktemp("whole") / "c")


def test_a_run_writes_every_readable_item_once_with_the_net_s_embeddings(tiny, dataset, whole):
    ids = [f"img-{i:03d}" for i in range(N) if i != 37]
    assert whole.ids == ids
    assert len(whole) == N - 1
    assert isinstance(whole.embeddings, np.memmap) and whole.embeddings.shape == (N - 1, 256)
    assert whole.texts[:2] == ["picture 0", "picture 1"]
    # the same numbers as encode_images over the readable images, in the same batches
    first = [dataset[i]["image"] for i in range(32)]
    expected = tiny.encode_images(first, batch_size=BATCH).embeddings
    assert_close(whole.embeddings[:32], expected)
    manifest = json.loads((whole.folder / "blipviz-collection.json").read_text())
    assert manifest["count"] == N - 1 and manifest["errors"] == 1
    assert manifest["net"]["image_fingerprint"] == tiny.fingerprint("image")
    assert [s["start"] for s in manifest["shards"]] == [0, 64, 128, 192]
    assert all(len(s["checksum"]) == 64 for s in manifest["shards"])


def test_a_corrupt_item_is_skipped_and_reported_with_its_id(whole):
    errors = whole.errors
    assert errors["id"].tolist() == ["img-037"]
    assert errors["position"].tolist() == [37]
    assert "ImageLoadError" in errors["reason"].iat[0]


@pytest.mark.parametrize("stop_after_batches", [8, 6], ids=["between shards", "inside a shard"])
def test_a_resumed_run_equals_one_run(tiny, dataset, whole, tmp_path, monkeypatch, stop_after_batches):
    """Killed after 8 batches (shards 0 and 1 written, nothing of shard 2) or after 6 (inside shard
    1: its first two batches lost); the second run continues and gives the same collection."""
    out = tmp_path / "c"
    real = type(tiny).iter_image_states
    calls = {"n": 0}

    def failing(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] > stop_after_batches:
            raise Interrupt
        yield from real(self, *args, **kwargs)

    monkeypatch.setattr(type(tiny), "iter_image_states", failing)
    with pytest.raises(Interrupt):
        _embed(tiny, dataset, out)
    written = sorted(p.name for p in (out / "shards").iterdir())
    assert (
        written == ["shard-000000.parquet", "shard-000001.parquet"][: (stop_after_batches * BATCH) // SHARD]
    )
    with pytest.raises(CollectionFolderError, match="unfinished"):
        Collection.open(out)
    monkeypatch.setattr(type(tiny), "iter_image_states", real)
    calls["n"] = 0
    resumed = _embed(tiny, dataset, out)
    assert resumed.ids == whole.ids
    np.testing.assert_array_equal(resumed.embeddings, whole.embeddings)
    assert resumed.errors.equals(whole.errors)


def test_a_half_written_shard_is_written_again(tiny, dataset, whole, tmp_path):
    out = tmp_path / "c"
    _embed(tiny, dataset, out)
    manifest = json.loads((out / "blipviz-collection.json").read_text())
    manifest["state"] = "running"
    (out / "blipviz-collection.json").write_text(json.dumps(manifest))
    (out / "shards" / "shard-000002.parquet").write_bytes(b"cut off")  # never happens with renames
    left = f".blipviz-tmp-{manifest['uid']}-k1ll3d_x.part"  # as write_atomically names them
    (out / "shards" / left).write_bytes(b"left by a killed run")
    again = _embed(tiny, dataset, out)
    np.testing.assert_array_equal(again.embeddings, whole.embeddings)
    assert not list((out / "shards").glob(".blipviz-tmp-*"))


def test_another_net_s_folder_is_refused(dataset, whole):
    import blipviz

    other = blipviz.load_model("tiny-random", seed=1)
    with pytest.raises(CollectionFolderError, match="made by the net"):
        _embed(other, dataset, whole.folder)
    with pytest.raises(CollectionFolderError, match="made by the net"):
        Collection.open(whole.folder, model=other)


def test_a_collection_reloads_the_net_it_names_seed_and_dtype_included(tmp_path):
    import torch

    import blipviz

    seeded = blipviz.load_model("tiny-random", seed=3, dtype=torch.float64, max_text_tokens=20)
    assert seeded.load_options == {"name_or_path": "tiny-random", "seed": 3}
    for i, array in enumerate(synthetic_images(5, size=(24, 32))):
        (tmp_path / f"{i}.png").write_bytes(_png(array))
    made = embed_collection(seeded, sorted(tmp_path.glob("*.png")), tmp_path / "c", progress=False)
    opened = Collection.open(tmp_path / "c")  # no model: the manifest's net, built again and checked
    reloaded = opened.model
    seed_0 = blipviz.load_model("tiny-random", dtype=torch.float64)
    assert reloaded.fingerprint("image") == seeded.fingerprint("image") != seed_0.fingerprint("image")
    assert reloaded.dtype == torch.float64 and reloaded.max_text_tokens == 20
    found = opened.search(["a picture"], k=2)
    given = Collection.open(tmp_path / "c", model=seeded).search(["a picture"], k=2)
    assert list(found["image"]) == list(given["image"])
    assert len(made) == 5


def test_another_preprocessing_and_a_foreign_folder_are_refused(tiny, dataset, whole, tmp_path):
    import copy
    import dataclasses

    changed = copy.copy(tiny)
    changed.preprocessing = dataclasses.replace(tiny.preprocessing, exif_transpose=False)
    with pytest.raises(CollectionFolderError, match="preprocessing"):
        _embed(changed, dataset, whole.folder)
    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "todo.txt").write_text("mine")
    with pytest.raises(CollectionFolderError, match="not a blipviz collection"):
        _embed(tiny, dataset, foreign)
    assert [p.name for p in foreign.iterdir()] == ["todo.txt"]


def test_open_search_equals_numpy_top_k(tiny, whole, texts):
    opened = Collection.open(whole.folder, model=tiny, verify=True)
    frame = opened.search(texts, k=5, rerank=0)  # cosine only: no image read again
    assert list(frame.columns) == [
        "query", "query_index", "rank", "image", "image_index",
        "score", "itm", "itm_logit", "cosine", "cosine_rank",
    ]  # fmt: skip
    assert frame[["score", "itm", "itm_logit"]].isna().all().all()
    q = tiny.encode_texts(texts).embeddings.numpy()
    sims = np.asarray(opened.embeddings, dtype=np.float64) @ q.T.astype(np.float64)
    for i, text in enumerate(texts):
        got = frame[frame["query"] == text]
        top = np.argsort(-sims[:, i], kind="stable")[:5]
        assert got["image"].tolist() == [opened.ids[j] for j in top]
        assert_close(got["cosine"].to_numpy(), sims[top, i])
        assert got["rank"].tolist() == [1, 2, 3, 4, 5]


def test_rerank_scores_the_cosine_top_with_the_itm_head(tiny, dataset, whole, texts):
    opened = Collection.open(whole.folder, model=tiny, source=dataset)
    frame = opened.search(texts[:2], k=4, rerank=6)
    for q, text in enumerate(texts[:2]):
        got = frame[frame["query_index"] == q]
        assert len(got) == 4 and got["cosine_rank"].max() <= 6
        assert (np.diff(got["itm"].to_numpy()) <= 0).all()  # ordered by the ITM head
        best = got.iloc[0]
        image = opened.image(best["image"])
        expected = tiny.match_probabilities([text], tiny.encode_images([image]))[0, 1]
        assert_close(best["itm"], float(expected), depth=net_depth(tiny))


def test_a_dataset_held_in_memory_must_be_given_again_to_reread_images(whole, tiny):
    opened = Collection.open(whole.folder, model=tiny)
    with pytest.raises(Exception, match="source="):
        opened.image(opened.ids[0])


def test_faiss_ivf_recall_is_measured_against_the_exact_index():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 256)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q = x[:20] + 0.1 * rng.normal(size=(20, 256)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    exact_scores, exact = search_index(build_index(x, "flat"), q, 10)
    brute = np.argsort(-(x @ q.T), axis=0, kind="stable")[:10].T
    np.testing.assert_array_equal(exact, brute)
    assert_close(exact_scores, np.take_along_axis(x @ q.T, brute.T, axis=0).T)
    _, approx = search_index(build_index(x, "ivf", nlist=16), q, 10, nprobe=4)
    recall = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approx, exact, strict=True)])
    assert 0.0 < recall <= 1.0  # measured (benchmarks/bench_collection.py reports it), never assumed exact


def test_feature_space_maps_a_sample(whole):
    mapped = whole.feature_space("pca", sample=50)
    assert len(mapped) == 50 and mapped["id"].is_unique
    assert set(mapped["id"]) <= set(whole.ids)
    rows = mapped["row"].to_numpy()
    assert (np.diff(rows) > 0).all()
    from blipviz.analysis.feature_space import reduce_to_2d

    assert_close(mapped[["x", "y"]].to_numpy(), reduce_to_2d(whole.embeddings[rows], "pca"))
    assert mapped["x"].var() >= mapped["y"].var()  # PCA's first axis carries the most variance


def test_a_folder_source_has_relative_path_ids_and_rereads_images(tiny, tmp_path):
    from PIL import Image

    root = tmp_path / "photos"
    (root / "b").mkdir(parents=True)
    arrays = synthetic_images(5, size=(24, 32))
    names = ["a1.png", "b/b2.png", "c3.PNG", "b/d4.jpg", "e5.png"]
    for name, arr in zip(names, arrays, strict=True):
        Image.fromarray(arr).save(root / name)
    (root / "missing.png").write_bytes(b"")  # an empty file: unreadable
    c = embed_collection(tiny, root, tmp_path / "c", progress=False)
    assert c.ids == sorted(names)
    assert c.errors["id"].tolist() == ["missing.png"]
    assert np.asarray(c.image("a1.png")).shape == (24, 32, 3)
    frame = c.search("a photo", k=2, rerank=2)
    assert len(frame) == 2 and frame["itm"].notna().all()
    kept = embed_collection(tiny, root, tmp_path / "kept", progress=False, keep_states=True)
    assert len(list((tmp_path / "kept" / "states").rglob("*.safetensors"))) == len(names)
    again = kept.search("a photo", k=2, rerank=2)  # states read back, not recomputed
    assert again["image"].tolist() == frame["image"].tolist()
    assert_close(again["itm"].to_numpy(), frame["itm"].to_numpy(), depth=net_depth(tiny))


def test_the_feature_space_explorer_opens_a_collection(tiny, tmp_path):
    """The explorer maps the collection's embeddings, fetches an image only when it is shown, and
    ranks a selection by ITM equal to the net's own scores."""
    pytest.importorskip("jscatter")
    from PIL import Image

    from blipviz.explore.feature_space_explorer import FeatureSpaceExplorer

    root = tmp_path / "photos"
    root.mkdir()
    arrays = synthetic_images(6, size=(24, 32))
    for i, arr in enumerate(arrays):
        Image.fromarray(arr).save(root / f"{i}.png")
    c = embed_collection(tiny, root, tmp_path / "c", progress=False)
    fetched = []
    image = c.image
    c.image = lambda ident: fetched.append(ident) or image(ident)
    ex = FeatureSpaceExplorer.from_collection(c, tiny, method="pca")
    assert fetched == []  # nothing read before it is needed
    mapped = c.feature_space("pca")
    assert_close(ex.coords_[["x", "y"]].to_numpy(), mapped[["x", "y"]].to_numpy())
    ex.select([0, 1, 2])
    ex.query.value = "a photo"
    ids = [mapped["id"][i] for i in range(3)]
    expected = tiny.itm_scores([root / i for i in ids], ["a photo"]).values[:, 0]
    got = ex.ranking_.set_index("name").loc[ids, "itm"].to_numpy()
    assert_close(got, expected, depth=net_depth(tiny))
    assert sorted(set(fetched)) == sorted(ids)
