"""Two-stage retrieval equals the full ITM ranking restricted to the cosine best; the net's search
and a collection's search mean the same by ``k`` and ``rerank`` and agree on the same images."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from blipviz.analysis.search import SCORES
from blipviz.errors import InputError
from blipviz.testing import assert_close, net_depth, synthetic_images
from tests.conftest import TEXTS, examples

# Search scores only the best of each query again, in other batches than the full matrices: they agree
# within blipviz.testing.assert_close (16 float32 ulps per layer of the ViT and the text tower).

COLUMNS = ["query", "query_index", "rank", "image", "image_index", "score", "itm", "itm_logit", "cosine"]
COLUMNS += ["cosine_rank"]


@pytest.fixture(scope="module")
def collection():
    return synthetic_images(7, seed=11)


@pytest.fixture(scope="module")
def full(tiny, collection):
    """Every pair scored the expensive way: ITM probabilities, ITM logits and cosines."""
    itm, cos = tiny.scores(collection, TEXTS)
    feats = tiny.encode_images(collection)
    tok = tiny.tokenize(TEXTS)
    with torch.inference_mode():
        logits = torch.stack([tiny.itm_logits(tok, feats.raw[i : i + 1])[:, 1] for i in range(len(feats))])
    return np.asarray(itm), np.asarray(cos), logits.double().numpy(), feats


def _expected(itm, cos, logits, k, rerank, score):
    """Ranked candidate indices per query, from full matrices of shape (n_queries, n_candidates):
    the ``rerank`` best by cosine ordered by the final score, then the rest by cosine, ``k`` kept."""
    n = k if rerank is None else rerank
    ranked = []
    for q in range(itm.shape[0]):
        top = np.argsort(-cos[q], kind="stable")[: max(k, n)]
        scored, rest = top[:n], top[n:]
        final = itm[q, scored] if score == "itm" else logits[q, scored] + cos[q, scored]
        ranked.append(np.concatenate([scored[np.argsort(-final, kind="stable")], rest])[:k])
    return ranked


@pytest.mark.parametrize("score", SCORES)
@pytest.mark.parametrize(("k", "rerank"), [(1, None), (3, None), (7, None), (3, 0), (3, 1), (2, 5), (5, 9)])
def test_search_equals_full_ranking_restricted_to_the_reranked(
    tiny, collection, full, texts, k, rerank, score
):
    itm, cos, logits, _ = full
    frame = tiny.search(texts, collection, k=k, rerank=rerank, score=score, batch_size=3)  # 3 batches
    expected = _expected(itm.T, cos.T, logits.T, k, rerank, score)
    n = k if rerank is None else rerank
    assert list(frame.columns) == COLUMNS
    assert len(frame) == len(texts) * min(k, len(collection))
    for q, group in frame.groupby("query_index"):
        assert group["query"].iloc[0] == texts[q]
        assert group["rank"].tolist() == list(range(1, min(k, len(collection)) + 1))
        assert group["image_index"].tolist() == expected[q].tolist()
        i = group["image_index"].to_numpy()
        scored = group["cosine_rank"].to_numpy() <= n
        assert group["itm"].notna().tolist() == scored.tolist()  # exactly the re-scored have ITM
        assert_close(group["itm"][scored], itm[i[scored], q], depth=net_depth(tiny), magnitude=1.0)
        assert_close(group["cosine"], cos[i, q], depth=net_depth(tiny), magnitude=1.0)
        assert_close(
            group["itm_logit"][scored],
            logits[i[scored], q],
            depth=net_depth(tiny),
            magnitude=np.abs(logits).max(),
        )
        assert group["image"].tolist() == [f"image {j}" for j in i]
    if score == "itm+cosine":
        np.testing.assert_allclose(frame["score"], frame["itm_logit"] + frame["cosine"])
    else:
        np.testing.assert_allclose(frame["score"], frame["itm"])


def test_search_from_features_equals_streamed(tiny, collection, full, texts):
    feats = full[3]
    a = tiny.search(texts, feats, k=4)
    b = tiny.search(texts, collection, k=4)
    assert a["image_index"].tolist() == b["image_index"].tolist()
    assert_close(a["itm"], b["itm"], depth=net_depth(tiny), magnitude=1.0)


def test_a_cosine_only_search_takes_features_without_raw_states(tiny, collection, texts):
    slim = tiny.encode_images(collection, keep_raw=False)
    frame = tiny.search(texts, slim, k=3, rerank=0)
    assert frame[["score", "itm", "itm_logit"]].isna().all().all()
    assert frame["cosine_rank"].tolist() == [1, 2, 3] * len(texts)
    with pytest.raises(InputError):  # the ITM head needs the raw states
        tiny.search(texts, slim, k=3)


@pytest.mark.parametrize("score", SCORES)
@pytest.mark.parametrize(("k", "rerank"), [(3, None), (3, 1), (2, 4)])
def test_search_texts_equals_full_ranking_restricted_to_the_reranked(
    tiny, collection, full, texts, score, k, rerank
):
    itm, cos, logits, _ = full
    frame = tiny.search_texts(collection, texts, k=k, rerank=rerank, score=score)
    expected = _expected(itm, cos, logits, k, rerank, score)
    assert len(frame) == len(collection) * k
    for q, group in frame.groupby("query_index"):
        assert group["text_index"].tolist() == expected[q].tolist()
        t = group["text_index"].to_numpy()
        scored = group["itm"].notna().to_numpy()
        assert_close(group["itm"][scored], itm[q, t[scored]], depth=net_depth(tiny), magnitude=1.0)
        assert group["text"].tolist() == [texts[j] for j in t]


def test_multimodal_stage_grows_with_rerank_not_with_the_collection(tiny, collection, texts, monkeypatch):
    """The ITM pass sees ``rerank`` texts per image query, and at most n_queries x rerank image
    candidates; ``rerank=0`` runs none."""
    seen = []
    original = tiny.itm_logits

    def counting(tokenized, states, *args, **kwargs):
        seen.append(len(tokenized))
        return original(tokenized, states, *args, **kwargs)

    monkeypatch.setattr(tiny, "itm_logits", counting)
    tiny.search_texts(collection[:2], texts, k=2)
    assert seen == [2, 2]
    seen.clear()
    tiny.search(texts[:1], collection, k=2)
    assert sum(seen) == 2 and len(seen) == 2
    seen.clear()
    tiny.search(texts[:1], collection, k=5, rerank=1)
    assert seen == [1]
    seen.clear()
    tiny.search(texts[:2], collection, k=5, rerank=0)
    tiny.search_texts(collection[:2], texts, k=5, rerank=0)
    assert seen == []


def test_search_options_are_checked(tiny, collection, texts):
    with pytest.raises(InputError, match="k must be"):
        tiny.search(texts, collection, k=0)
    for rerank in (-1, 1.5, True, "all"):
        with pytest.raises(InputError, match="rerank must be None or a whole number"):
            tiny.search(texts, collection, rerank=rerank)
    with pytest.raises(InputError, match="unknown score"):
        tiny.search(texts, collection, score="cosine")
    frame = tiny.search("a dog", collection[:2], k=5)  # k larger than the collection
    assert len(frame) == 2 and frame["query"].tolist() == ["a dog", "a dog"]


def test_search_takes_image_labels(tiny, collection, texts):
    names = [f"photo {i}" for i in range(len(collection))]
    by_images = tiny.search(texts[:2], collection, k=3, labels=names)
    assert by_images["image"].tolist() == [names[i] for i in by_images["image_index"]]
    feats = tiny.encode_images(collection)
    by_features = tiny.search(texts[:2], feats, k=3, labels=names)
    assert by_features["image"].tolist() == by_images["image"].tolist()
    reverse = tiny.search_texts(collection[:2], texts, k=2, labels=names[:2])
    assert reverse["image"].tolist() == [names[0]] * 2 + [names[1]] * 2
    with pytest.raises(InputError, match="got 2 labels for"):
        tiny.search(texts[:2], collection, k=3, labels=names[:2])


# ------------------------------------------------------------- the net's search and a collection's
@pytest.fixture(scope="module")
def on_disk(tiny, collection, tmp_path_factory):
    """The same seven images as PNG files (lossless) and a collection embedded from them, with the
    ViT states kept (its rerank reads them back), and how far apart the scores of the pairs are."""
    from PIL import Image

    from blipviz.collection import embed_collection

    root = tmp_path_factory.mktemp("search")
    (root / "photos").mkdir()
    for i, array in enumerate(collection):
        Image.fromarray(array).save(root / "photos" / f"{i}.png")
    paths = sorted((root / "photos").glob("*.png"))
    made = embed_collection(tiny, root / "photos", root / "c", progress=False, keep_states=True)
    assert made.ids == [p.name for p in paths]
    return paths, made


def _gaps(values: np.ndarray) -> float:
    """Smallest difference between two values of a query, over the queries (rows)."""
    return float(np.diff(np.sort(values, axis=1), axis=1).min())


def test_the_shared_images_have_no_near_ties(full):
    """The agreement below compares orders: two pairs closer than the rounding of float32 embeddings
    (the collection's) would make it compare rounding, so the fixture keeps them apart."""
    itm, cos, logits, _ = full
    assert min(_gaps(cos.T), _gaps(itm.T), _gaps(logits.T + cos.T)) > 1e-4


@settings(max_examples=examples(12), suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    k=st.integers(1, 9),
    rerank=st.none() | st.integers(0, 9),
    score=st.sampled_from(SCORES),
    queries=st.lists(st.sampled_from(TEXTS), min_size=1, max_size=3, unique=True),
)
def test_the_net_s_search_and_a_collection_s_search_agree(tiny, on_disk, k, rerank, score, queries):
    paths, made = on_disk
    by_net = tiny.search(queries, paths, k=k, rerank=rerank, score=score)
    by_collection = made.search(queries, k=k, rerank=rerank, score=score)
    assert list(by_net.columns) == list(by_collection.columns) == COLUMNS
    pd.testing.assert_series_equal(by_net.dtypes, by_collection.dtypes)
    same = ["query", "query_index", "rank", "image", "image_index", "cosine_rank"]
    pd.testing.assert_frame_equal(by_net[same], by_collection[same])
    n = k if rerank is None else rerank
    assert len(by_net) == len(queries) * min(k, len(paths))
    assert by_net["itm"].notna().tolist() == (by_net["cosine_rank"] <= n).tolist()
    for column in ("score", "itm", "itm_logit"):
        assert by_net[column].isna().tolist() == by_collection[column].isna().tolist()
    scored = by_net["itm"].notna()
    for column in ("score", "itm", "itm_logit", "cosine"):
        rows = scored if column != "cosine" else slice(None)
        got, expected = by_net[column][rows].to_numpy(), by_collection[column][rows].to_numpy()
        magnitude = max(1.0, float(np.abs(expected).max(initial=0.0)))
        assert_close(got, expected, depth=net_depth(tiny), magnitude=magnitude)
