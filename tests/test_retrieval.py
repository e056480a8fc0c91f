"""Retrieval evaluation equals BLIP's protocol written out with plain loops, as train_retrieval.py
does it (every candidate pair through the ITM pass with the image states repeated per text)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import blipviz
from blipviz.analysis.retrieval import METRIC_KEYS, evaluate_retrieval, itm_eval
from blipviz.net.text import blip_tokenizer, normalize_caption
from blipviz.testing import assert_close, net_depth, synthetic_images

LONG = "a man " + "walking slowly " * 14 + "with a red umbrella in the rain at night"  # > 30 words
CAPTIONS = [
    "a dog running on the beach",
    "two cats sleeping on a red sofa",
    "an empty street at night",
    "a bowl of fruit on a wooden table",
    LONG,
    "a child flying a kite in a park",
    "a red car parked near a tree",
    "mountains covered with snow",
    "a plate of pasta with tomato sauce",
    "people crossing a busy road",
]
TEXT_IMAGE = [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]  # two captions per image


def _blip_reference(model, images, captions, text_image, k_test):
    """train_retrieval.py's evaluation and itm_eval, with BLIP's loops and padding."""
    tok = blip_tokenizer()(
        [normalize_caption(c, max_words=30) for c in captions],
        padding="max_length",
        truncation=True,
        max_length=35,
        return_tensors="pt",
    )
    ids, mask = tok.input_ids.clone(), tok.attention_mask
    with torch.inference_mode():
        feats = model.encode_images(images)
        text_embeds = F.normalize(model.text_projection(ids, mask), dim=-1)
        # float32 throughout, as BLIP: sims_matrix, the -100 matrices and score + topk_sim
        sims = feats.embeddings.float() @ text_embeds.float().T  # (n_images, n_texts)
        ids[:, 0] = 30523  # [ENC]
        n_images, n_texts = sims.shape
        i2t = torch.full((n_images, n_texts), -100.0)
        for i in range(n_images):
            top_sim, top = sims[i].topk(k=min(k_test, n_texts))
            states = feats.raw[i : i + 1].repeat(len(top), 1, 1)
            out = model.itm_forward(ids[top], mask[top], states).last_hidden_state
            i2t[i, top] = model.hf.itm_head(out[:, 0, :])[:, 1].float() + top_sim
        t2i = torch.full((n_texts, n_images), -100.0)
        for t in range(n_texts):
            top_sim, top = sims[:, t].topk(k=min(k_test, n_images))
            out = model.itm_forward(ids[t].repeat(len(top), 1), mask[t].repeat(len(top), 1), feats.raw[top])
            t2i[t, top] = model.hf.itm_head(out.last_hidden_state[:, 0, :])[:, 1].float() + top_sim
    i2t, t2i = i2t.numpy(), t2i.numpy()
    # itm_eval, as written in BLIP
    img2txt = [[t for t, i in enumerate(text_image) if i == image] for image in range(n_images)]
    ranks = np.zeros(n_images)
    for index, score in enumerate(i2t):
        inds = np.argsort(score)[::-1]
        ranks[index] = min(np.where(inds == i)[0][0] for i in img2txt[index])
    tr = [100.0 * len(np.where(ranks < k)[0]) / len(ranks) for k in (1, 5, 10)]
    ranks_t = np.zeros(n_texts)
    for index, score in enumerate(t2i):
        inds = np.argsort(score)[::-1]
        ranks_t[index] = np.where(inds == text_image[index])[0][0]
    ir = [100.0 * len(np.where(ranks_t < k)[0]) / len(ranks_t) for k in (1, 5, 10)]
    tr_mean, ir_mean = sum(tr) / 3, sum(ir) / 3
    metrics = dict(zip(METRIC_KEYS, [*tr, tr_mean, *ir, ir_mean, (tr_mean + ir_mean) / 2], strict=True))
    return i2t, t2i, metrics, ranks, ranks_t


@pytest.fixture(scope="module")
def photos():
    return synthetic_images(5, seed=21)


@pytest.mark.parametrize(
    ("fixture", "k_test"),
    [("tiny", 3), ("tiny", 256), pytest.param("full_b", 3, marks=pytest.mark.slow)],
)
def test_evaluation_equals_blip_s_loops(fixture, k_test, photos, request):
    model = request.getfixturevalue(fixture)
    with pytest.warns(blipviz.TruncationWarning, match="1 of 10 texts"):
        ev = blipviz.evaluate_retrieval(model, photos, CAPTIONS, text_image=TEXT_IMAGE, k_test=k_test)
    i2t, t2i, metrics, ranks, ranks_t = _blip_reference(model, photos, CAPTIONS, TEXT_IMAGE, k_test)
    magnitude = np.abs(i2t[i2t > -100]).max()
    assert_close(ev.score_i2t, i2t, depth=net_depth(model), magnitude=magnitude)
    assert_close(ev.score_t2i, t2i, depth=net_depth(model), magnitude=magnitude)
    assert ev.metrics == pytest.approx(metrics, abs=1e-12)
    np.testing.assert_array_equal(ev.ranks_i2t, ranks)
    np.testing.assert_array_equal(ev.ranks_t2i, ranks_t)
    assert list(ev.metrics) == list(METRIC_KEYS)
    assert ev.score_i2t.dtype == ev.score_t2i.dtype == np.float32  # BLIP's matrices are float32
    filled = (ev.score_i2t == -100).sum()
    if k_test == 3:  # the -100 fill matters: 5 images x (10 - 3) texts outside the candidates
        assert filled == 5 * 7 and (ev.score_t2i == -100).sum() == 10 * 2
        assert ev.itm_pairs < 5 * 3 + 10 * 3  # pairs in both directions scored once
    else:
        assert filled == 0 and ev.itm_pairs == 5 * 10


def test_the_thirty_word_cut_matters(tiny):
    assert len(normalize_caption(LONG).split()) > 30 == len(normalize_caption(LONG, max_words=30).split())
    tok30 = blipviz.net.text.tokenize([LONG], max_words=30)
    tok50 = blipviz.net.text.tokenize([LONG], max_words=50)
    assert not torch.equal(tok30.input_ids, tok50.input_ids)


def test_ablations_score_the_same_candidates(tiny, photos):
    with pytest.warns(blipviz.TruncationWarning):
        both = evaluate_retrieval(tiny, photos, CAPTIONS, text_image=TEXT_IMAGE, k_test=4)
        itc = evaluate_retrieval(tiny, photos, CAPTIONS, text_image=TEXT_IMAGE, k_test=4, score="itc")
        itm = evaluate_retrieval(tiny, photos, CAPTIONS, text_image=TEXT_IMAGE, k_test=4, score="itm")
    kept = both.score_i2t > -100
    np.testing.assert_array_equal(kept, itc.score_i2t > -100)
    assert_close(
        both.score_i2t[kept], itc.score_i2t[kept] + itm.score_i2t[kept], depth=net_depth(tiny), magnitude=10
    )
    assert itc.itm_pairs == 0 and itm.itm_pairs == both.itm_pairs


def test_itm_eval_edge_cases():
    """An image with five captions takes its best-ranked one; ties follow BLIP's reversed argsort."""
    i2t = np.array([[0.1, 0.9, 0.2, 0.3, 0.0, 0.5], [0.7, 0.1, 0.1, 0.1, 0.1, 0.2]])
    t2i = np.array([[0.5, 0.5]] * 6)  # every text ties between the two images
    text_image = [0, 0, 0, 0, 0, 1]
    metrics, ranks_i2t, ranks_t2i = itm_eval(i2t, t2i, text_image)
    assert ranks_i2t.tolist() == [0, 1]  # image 0: caption 1 is first; image 1: caption 5 second
    assert ranks_t2i.tolist() == [1, 1, 1, 1, 1, 0]  # argsort [0, 1] reversed puts image 1 first
    assert metrics["txt_r1"] == 50.0 and metrics["img_r1"] == pytest.approx(100 / 6)
    assert metrics["r_mean"] == pytest.approx((metrics["txt_r_mean"] + metrics["img_r_mean"]) / 2)


@pytest.mark.filterwarnings("ignore::blipviz.TruncationWarning")
def test_bad_inputs_are_named_errors(tiny, photos):
    with pytest.raises(blipviz.InputError, match="one image index"):
        evaluate_retrieval(tiny, photos, CAPTIONS, text_image=TEXT_IMAGE[:-1])
    with pytest.raises(blipviz.InputError, match="no text"):
        evaluate_retrieval(tiny, photos, CAPTIONS[:8], text_image=TEXT_IMAGE[:8])
    with pytest.raises(blipviz.InputError, match="outside"):
        evaluate_retrieval(tiny, photos, CAPTIONS[:2], text_image=[0, 7])
    with pytest.raises(blipviz.InputError, match="unknown score"):
        evaluate_retrieval(tiny, photos, CAPTIONS, text_image=TEXT_IMAGE, score="itm+cos")
    with pytest.raises(blipviz.InputError, match="k_test"):
        evaluate_retrieval(tiny, photos, CAPTIONS, text_image=TEXT_IMAGE, k_test=0)


def test_a_feature_cache_gives_the_same_evaluation_and_remembers_the_pairs(tiny, photos, tmp_path):
    with pytest.warns(blipviz.TruncationWarning):
        plain = evaluate_retrieval(tiny, photos, CAPTIONS, text_image=TEXT_IMAGE, k_test=4)
        with blipviz.store.feature_cache(tiny, tmp_path) as cache:
            first = evaluate_retrieval(tiny, photos, CAPTIONS, text_image=TEXT_IMAGE, k_test=4)
            again = evaluate_retrieval(tiny, photos, CAPTIONS, text_image=TEXT_IMAGE, k_test=4)
            spent = (p for p in photos)  # a generator is read once, and kept for the second stage
            generated = evaluate_retrieval(tiny, spent, CAPTIONS, text_image=TEXT_IMAGE, k_test=4)
    assert cache.stats.itm_misses == plain.itm_pairs and cache.stats.itm_hits == 2 * plain.itm_pairs
    np.testing.assert_array_equal(generated.score_i2t, again.score_i2t)
    assert_close(first.score_i2t, plain.score_i2t, depth=net_depth(tiny), magnitude=10)
    np.testing.assert_array_equal(again.score_i2t, first.score_i2t)
    assert again.metrics == first.metrics


@pytest.mark.filterwarnings("ignore::blipviz.TruncationWarning")
def test_the_protocol_puts_enc_first_and_keeps_photos_as_stored(tiny, photos):
    """BLIP's ITM pass starts with [ENC] and its loaders ignore EXIF tags, whatever the net's own
    options; the net's options come back afterwards."""
    import io

    from PIL import Image

    reference = evaluate_retrieval(tiny, photos, CAPTIONS, text_image=TEXT_IMAGE, k_test=3)
    card = blipviz.BlipITM(tiny.hf, name="card", preprocessing=tiny.preprocessing, first_token="cls")
    as_card = evaluate_retrieval(card, photos, CAPTIONS, text_image=TEXT_IMAGE, k_test=3)
    np.testing.assert_array_equal(as_card.score_i2t, reference.score_i2t)
    assert card.first_token == "cls" and card.preprocessing.exif_transpose
    sideways = []
    for photo in photos:
        buf = io.BytesIO()
        exif = Image.Exif()
        exif[0x0112] = 6  # rotate 90 degrees clockwise on display
        Image.fromarray(photo).save(buf, format="PNG", exif=exif.tobytes())
        sideways.append(buf.getvalue())
    stored = evaluate_retrieval(tiny, sideways, CAPTIONS, text_image=TEXT_IMAGE, k_test=3)
    np.testing.assert_array_equal(stored.score_i2t, reference.score_i2t)
    upright = evaluate_retrieval(
        tiny, sideways, CAPTIONS, text_image=TEXT_IMAGE, k_test=3, exif_transpose=True
    )
    assert not np.array_equal(upright.score_i2t, reference.score_i2t)


# --------------------------------------------------------------- memory: what the ITM stage holds


def _count_vit_images(model, monkeypatch):
    """Count the images that go through the net's ViT."""
    seen = []
    original = model.vision_states

    def counting(pixels):
        seen.append(pixels.shape[0])
        return original(pixels)

    monkeypatch.setattr(model, "vision_states", counting)
    return seen


@pytest.mark.filterwarnings("ignore::blipviz.TruncationWarning")
def test_states_over_the_budget_pass_the_vit_again_with_equal_scores(tiny, photos, monkeypatch):
    seen = _count_vit_images(tiny, monkeypatch)
    held = evaluate_retrieval(tiny, photos, CAPTIONS, text_image=TEXT_IMAGE, k_test=3, batch_size=2)
    assert sum(seen) == 5  # everything fits in 2 GB: each image through the ViT once
    seen.clear()
    budget = 1.5 * 2 * tiny.n_image_tokens * tiny.width * 4 / 1e9  # one batch of 2 images, not two
    part = evaluate_retrieval(
        tiny, photos, CAPTIONS, text_image=TEXT_IMAGE, k_test=3, batch_size=2, max_states_gb=budget
    )
    assert sum(seen) == 5 + 3  # the 3 images beyond the first batch pass again in the ITM stage
    seen.clear()
    none = evaluate_retrieval(tiny, photos, CAPTIONS, text_image=TEXT_IMAGE, k_test=3, max_states_gb=0)
    assert sum(seen) == 10
    # equal within float32 rounding: a ViT pass need not repeat its last bit (threads, batch size)
    assert_close(part.score_i2t, held.score_i2t, depth=net_depth(tiny), magnitude=10)
    assert_close(none.score_t2i, held.score_t2i, depth=net_depth(tiny), magnitude=10)
    np.testing.assert_array_equal(part.ranks_t2i, held.ranks_t2i)
    with pytest.raises(blipviz.InputError, match="max_states_gb"):
        evaluate_retrieval(tiny, photos, CAPTIONS, text_image=TEXT_IMAGE, max_states_gb=-1)


@pytest.mark.filterwarnings("ignore::blipviz.TruncationWarning")
def test_a_read_only_cache_does_not_run_the_vit_twice(tiny, photos, tmp_path, monkeypatch):
    with blipviz.store.feature_cache(tiny, tmp_path) as cache:
        cache.writable = False  # as after a failed write: hits served, nothing stored
        seen = _count_vit_images(tiny, monkeypatch)
        ev = evaluate_retrieval(tiny, photos, CAPTIONS, text_image=TEXT_IMAGE, k_test=3)
    assert sum(seen) == 5 and cache.stats.misses == 5 and len(cache) == 0
    assert ev.itm_pairs > 0


# ------------------------------------------------------------------ recall curves and failures


@pytest.fixture(scope="module")
def evaluation(tiny, photos):
    with pytest.warns(blipviz.TruncationWarning):
        return evaluate_retrieval(
            tiny, photos, CAPTIONS, text_image=TEXT_IMAGE, k_test=4, benchmark="five photos"
        )


def test_recall_curves_hold_blip_s_recalls(evaluation):
    m = evaluation.metrics
    tr, ir = evaluation.recall_curve("i2t"), evaluation.recall_curve("t2i")
    assert len(tr) == evaluation.candidates("i2t") == 4 and len(ir) == evaluation.candidates("t2i") == 4
    assert tr[0] == m["txt_r1"] and ir[0] == m["img_r1"]
    longer = evaluation.recall_curve("t2i", max_k=10)
    assert longer[4] == m["img_r5"] and longer[9] == m["img_r10"] == 100.0
    assert np.all(np.diff(longer) >= 0)
    with pytest.raises(blipviz.InputError, match="direction"):
        evaluation.recall_curve("both")


@pytest.mark.parametrize("direction", ["i2t", "t2i"])
def test_failures_are_the_worst_queries_with_what_ranked_above(evaluation, direction):
    ev = evaluation
    failures = ev.failures(direction, n=3, n_above=2)
    table = failures.to_pandas()
    ranks = ev.ranks_i2t if direction == "i2t" else ev.ranks_t2i
    scores = ev.score_i2t if direction == "i2t" else ev.score_t2i
    assert len(table) == 3 and list(table.columns) == list(failures.COLUMNS)
    # the worst: no query outside the table ranks its true target lower
    assert sorted(table["rank"], reverse=True) == list(table["rank"])
    assert table["rank"].min() - 1 >= np.delete(ranks, table["query"].to_numpy()).max()
    for row in table.itertuples(index=False):
        assert row.rank == ranks[row.query] + 1
        order = np.argsort(scores[row.query])[::-1]  # BLIP's ranking of the row
        assert row.true == order[row.rank - 1]
        assert row.above == order[: min(row.rank - 1, 2)].tolist()
        assert row.above_scores == [float(scores[row.query, t]) for t in row.above]
        if direction == "i2t":
            assert ev.text_image[row.true] == row.query and row.true_item == ev.texts[row.true]
            assert all(ev.text_image[t] != row.query for t in row.above)  # all wrong captions
            assert row.query_item == ev.image_labels[row.query]
        else:
            assert row.true == ev.text_image[row.query] and row.query_item == ev.texts[row.query]
            assert row.above_items == [ev.image_labels[i] for i in row.above]
