"""Two-stage retrieval equals the full ITM ranking restricted to the cosine top k."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from blipviz.errors import InputError
from blipviz.testing import assert_close, net_depth, synthetic_images

# Search scores only the top k of each query again, in other batches than the full matrices: they agree
# within blipviz.testing.assert_close (16 float32 ulps per layer of the ViT and the text tower).


@pytest.fixture(scope="module")
def collection():
    return synthetic_images(7, seed=11)


@pytest.fixture(scope="module")
def full(tiny, collection):
    """Every pair scored the expensive way: ITM probabilities, ITM logits and cosines."""
    from tests.conftest import TEXTS

    itm, cos = tiny.scores(collection, TEXTS)
    feats = tiny.encode_images(collection)
    tok = tiny.tokenize(TEXTS)
    with torch.inference_mode():
        logits = torch.stack([tiny.itm_logits(tok, feats.raw[i : i + 1])[:, 1] for i in range(len(feats))])
    return np.asarray(itm), np.asarray(cos), logits.double().numpy(), feats


def _expected(itm, cos, logits, k, score):
    """Ranked candidate indices per query, from full matrices of shape (n_queries, n_candidates)."""
    ranked = []
    for q in range(itm.shape[0]):
        top = np.argsort(-cos[q], kind="stable")[:k]
        final = itm[q, top] if score == "itm" else logits[q, top] + cos[q, top]
        ranked.append(top[np.argsort(-final, kind="stable")])
    return ranked


@pytest.mark.parametrize("score", ["itm", "itm+cosine"])
@pytest.mark.parametrize("k", [1, 3, 7])
def test_search_images_equals_full_ranking_restricted_to_top_k(tiny, collection, full, texts, k, score):
    itm, cos, logits, _ = full
    frame = tiny.search(texts, collection, k=k, score=score, batch_size=3)  # streamed in 3 batches
    expected = _expected(itm.T, cos.T, logits.T, k, score)
    assert len(frame) == len(texts) * k
    for q, group in frame.groupby("query_index"):
        assert group["query"].iloc[0] == texts[q]
        assert group["rank"].tolist() == list(range(1, k + 1))
        assert group["image_index"].tolist() == expected[q].tolist()
        i = group["image_index"].to_numpy()
        assert_close(group["itm"], itm[i, q], depth=net_depth(tiny), magnitude=1.0)
        assert_close(group["cosine"], cos[i, q], depth=net_depth(tiny), magnitude=1.0)
        assert_close(group["itm_logit"], logits[i, q], depth=net_depth(tiny), magnitude=np.abs(logits).max())
        assert group["image"].tolist() == [f"image {j}" for j in i]
        assert set(group["cosine_rank"]) == set(range(1, k + 1))
    if score == "itm+cosine":
        np.testing.assert_allclose(frame["score"], frame["itm_logit"] + frame["cosine"])
    else:
        np.testing.assert_allclose(frame["score"], frame["itm"])


def test_search_images_from_features_equals_streamed(tiny, collection, full, texts):
    feats = full[3]
    a = tiny.search_images(texts, feats, k=4)
    b = tiny.search_images(texts, collection, k=4)
    assert a["image_index"].tolist() == b["image_index"].tolist()
    assert_close(a["itm"], b["itm"], depth=net_depth(tiny), magnitude=1.0)


@pytest.mark.parametrize("score", ["itm", "itm+cosine"])
def test_search_texts_equals_full_ranking_restricted_to_top_k(tiny, collection, full, texts, score):
    itm, cos, logits, _ = full
    k = 3
    frame = tiny.search_texts(collection, texts, k=k, score=score)
    expected = _expected(itm, cos, logits, k, score)
    assert len(frame) == len(collection) * k
    for q, group in frame.groupby("query_index"):
        assert group["text_index"].tolist() == expected[q].tolist()
        t = group["text_index"].to_numpy()
        assert_close(group["itm"], itm[q, t], depth=net_depth(tiny), magnitude=1.0)
        assert group["text"].tolist() == [texts[j] for j in t]


def test_multimodal_stage_grows_with_k_not_with_the_collection(tiny, collection, texts, monkeypatch):
    """The ITM pass sees k texts per image query, and at most n_queries x k image candidates."""
    seen = []
    original = tiny.itm_logits

    def counting(tokenized, states, *args, **kwargs):
        seen.append(len(tokenized))
        return original(tokenized, states, *args, **kwargs)

    monkeypatch.setattr(tiny, "itm_logits", counting)
    tiny.search_texts(collection[:2], texts, k=2)
    assert seen == [2, 2]
    seen.clear()
    tiny.search_images(texts[:1], collection, k=2)
    assert sum(seen) == 2 and len(seen) == 2


def test_search_options_are_checked(tiny, collection, texts):
    with pytest.raises(InputError, match="k must be"):
        tiny.search(texts, collection, k=0)
    with pytest.raises(InputError, match="unknown score"):
        tiny.search(texts, collection, score="cosine")
    frame = tiny.search("a dog", collection[:2], k=5)  # k larger than the collection
    assert len(frame) == 2 and frame["query"].tolist() == ["a dog", "a dog"]


def test_search_takes_image_labels(tiny, collection, texts):
    names = [f"photo {i}" for i in range(len(collection))]
    by_images = tiny.search_images(texts[:2], collection, k=3, labels=names)
    assert by_images["image"].tolist() == [names[i] for i in by_images["image_index"]]
    feats = tiny.encode_images(collection)
    by_features = tiny.search(texts[:2], feats, k=3, labels=names)
    assert by_features["image"].tolist() == by_images["image"].tolist()
    reverse = tiny.search_texts(collection[:2], texts, k=2, labels=names[:2])
    assert reverse["image"].tolist() == [names[0]] * 2 + [names[1]] * 2
    with pytest.raises(InputError, match="got 2 labels for"):
        tiny.search_images(texts[:2], collection, k=3, labels=names[:2])
