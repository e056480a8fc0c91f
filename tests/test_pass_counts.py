"""The passes the design promises, counted: explanations of many texts of one image, the evaluation
of explanations (every distinct perturbed image through the ViT once, the image's forward shared by
its methods and texts) and collection reranks (stored states: no ViT pass; else each candidate once,
batched). Counts come from hooks on the net, removed afterwards; results are compared with the
straightforward per-pair computation within the suite's tolerances."""

from __future__ import annotations

import contextlib
import math

import numpy as np
import pytest
import torch

import blipviz
from blipviz.analysis.cost import estimate_seconds
from blipviz.analysis.explanations import (
    baseline_pixels,
    evaluate_explanations,
    expected_evaluation_passes,
    explain,
    patch_order,
)
from blipviz.testing import assert_close, net_depth, synthetic_images

TEXTS = ["a red sweater on a wooden chair", "two cats sleeping on a red sofa", "a dog on a beach"]


@contextlib.contextmanager
def counted(model):
    """Count ViT forwards (calls and images), and backwards through the ViT and through the
    multimodal encoder (a gradient reaching each one's output), while the block runs."""
    counts = {"vit_calls": 0, "vit_images": 0, "vit_backwards": 0, "text_backwards": 0}

    def bump(name):
        def hook(grad):
            counts[name] += 1

        return hook

    def on_vit(module, args, kwargs, output):
        pixels = kwargs.get("pixel_values", args[0] if args else None)
        counts["vit_calls"] += 1
        counts["vit_images"] += int(pixels.shape[0])
        if output.last_hidden_state.requires_grad:
            output.last_hidden_state.register_hook(bump("vit_backwards"))

    def on_text(module, args, kwargs, output):
        if output.last_hidden_state.requires_grad:
            output.last_hidden_state.register_hook(bump("text_backwards"))

    handles = [
        model.hf.vision_model.register_forward_hook(on_vit, with_kwargs=True),
        model.hf.text_encoder.register_forward_hook(on_text, with_kwargs=True),
    ]
    try:
        yield counts
    finally:
        for handle in handles:
            handle.remove()


@pytest.fixture(scope="module")
def image():
    return synthetic_images(1, seed=3, size=(64, 64))[0]


# ----------------------------------------------------------------------- explain, many texts
@pytest.mark.parametrize(
    ("method", "vit_backwards", "text_backwards"),
    [("attention", 0, 0), ("rollout", 0, 0), ("gradcam", 0, 3), ("relevancy", 3, 3)],
)
def test_many_texts_take_one_vit_forward_and_one_backward_per_text(
    tiny, image, method, vit_backwards, text_backwards
):
    with counted(tiny) as counts:
        many = explain(tiny, image, method=method, texts=TEXTS)
    assert counts == {
        "vit_calls": 1,
        "vit_images": 1,
        "vit_backwards": vit_backwards,
        "text_backwards": text_backwards,
    }
    assert [e.text for e in many] == TEXTS
    depth = net_depth(tiny, "itm")
    for text, got in zip(TEXTS, many, strict=True):
        alone = explain(tiny, image, text, method)
        assert got.tokens == alone.tokens and got.options == alone.options
        assert_close(got.maps, alone.maps, depth=depth)
        assert_close(got.match_map, alone.match_map, depth=depth)
        assert_close(got.itm_probability, alone.itm_probability, depth=depth, magnitude=1.0)


def test_occlusion_of_many_texts_passes_each_window_once(tiny, image):
    gh, gw = tiny.grid
    windows = math.ceil(gh / 2) * math.ceil(gw / 2)
    with counted(tiny) as counts:
        many = explain(tiny, image, method="occlusion", texts=TEXTS, window=2, stride=2)
    assert counts["vit_images"] == windows + 1  # the whole image and each window, for all three texts
    assert counts["vit_calls"] == math.ceil((windows + 1) / tiny.default_batch_size)
    for text, got in zip(TEXTS, many, strict=True):
        alone = explain(tiny, image, text, "occlusion", window=2, stride=2)
        assert_close(got.match_map, alone.match_map, depth=net_depth(tiny, "itm"))


def test_explain_takes_one_text_or_many(tiny, image):
    assert isinstance(explain(tiny, image, TEXTS[0], "rollout"), blipviz.Explanation)
    assert len(tiny.explain(image, texts=TEXTS[:2], method="rollout")) == 2
    with pytest.raises(blipviz.BlipvizError, match="texts="):
        explain(tiny, image, TEXTS, "rollout")
    with pytest.raises(blipviz.BlipvizError, match="not both"):
        explain(tiny, image, TEXTS[0], "rollout", texts=TEXTS)
    with pytest.raises(blipviz.BlipvizError, match="needs a text"):
        explain(tiny, image, method="rollout")


# ------------------------------------------------------------------------------- evaluation
def _distinct_images(model, evaluation, pairs, steps, random_orders, seed):
    """The number of distinct perturbed images of the curves of ``pairs`` (positions of pairs of one
    image), from the definition: each order's deletion and insertion keep-masks."""
    n = model.grid[0] * model.grid[1]
    rng = np.random.default_rng(seed)
    randoms = [[rng.permutation(n) for _ in range(random_orders)] for _ in range(max(pairs) + 1)]
    counts = np.round(np.linspace(0, 1, steps + 1) * n).astype(int)
    masks = set()
    for p in pairs:
        orders = [patch_order(e[p].match_map) for e in evaluation.explanations.values()] + randoms[p]
        for order in orders:
            rank = np.argsort(order)
            for k in counts:
                masks.add((rank >= k).tobytes())  # deletion: the first k removed
                masks.add((rank < k).tobytes())  # insertion: the first k added
    return len(masks)


def _reference_curves(model, image, text, explanation_maps, randoms, steps, baseline):
    """Deletion and insertion curves of one pair, every image built and scored on its own terms."""
    pixels = model.preprocessing.pixel_values([image])
    removed = baseline_pixels(pixels, baseline)
    gh, gw = model.grid
    side = pixels.shape[-1] // gh
    n = gh * gw
    tokenized = model.tokenize([text])

    scored: dict[bytes, float] = {}

    def score(keep):
        if keep.tobytes() in scored:  # an image seen before (the whole one, the removed one)
            return scored[keep.tobytes()]
        picture = removed.clone()
        for p in np.flatnonzero(keep):
            r, c = divmod(int(p), gw)
            rows, cols = slice(r * side, (r + 1) * side), slice(c * side, (c + 1) * side)
            picture[..., rows, cols] = pixels[..., rows, cols]
        with torch.inference_mode():
            logits = model.itm_logits(tokenized, model.vision_states(picture))
        scored[keep.tobytes()] = float(logits.softmax(-1)[0, 1])
        return scored[keep.tobytes()]

    counts = np.round(np.linspace(0, 1, steps + 1) * n).astype(int)
    out = {}
    for name, orders in [*((m, [patch_order(a)]) for m, a in explanation_maps.items()), ("random", randoms)]:
        deletion, insertion = np.zeros(steps + 1), np.zeros(steps + 1)
        for order in orders:
            rank = np.argsort(order)
            deletion += [score(rank >= k) for k in counts]
            insertion += [score(rank < k) for k in counts]
        out[name] = (deletion / len(orders), insertion / len(orders))
    return out


def test_evaluation_passes_each_distinct_image_once_and_equals_the_per_pair_path(tiny):
    pictures = synthetic_images(2, seed=5, size=(64, 64))
    images = [pictures[0], pictures[1], pictures[0]]  # pairs 0 and 2: one image, two texts
    texts = TEXTS
    methods = ("attention", "gradcam", "relevancy", "rollout")
    steps, random_orders, seed, batch = 3, 2, 4, 5
    estimate_seconds(tiny, 1, itm_pairs=1)  # the progress bar's cost estimate times its passes once per net
    with counted(tiny) as counts:
        ev = evaluate_explanations(
            tiny, images, texts, methods=methods, steps=steps, random_orders=random_orders, seed=seed,
            batch_size=batch,
        )  # fmt: skip
    distinct = [_distinct_images(tiny, ev, group, steps, random_orders, seed) for group in ([0, 2], [1])]
    # each distinct image once: the whole image by the forward that made the maps, the rest batched
    assert counts["vit_images"] == sum(distinct)
    # the up-front estimate is an upper bound, reached when no two curves remove the same patches
    most = expected_evaluation_passes([2, 1], methods, steps, random_orders, tiny.grid[0] * tiny.grid[1])
    assert sum(distinct) <= most == 2 * 2 + 3 * (4 + 2) * 2 * (steps - 1)
    assert counts["vit_calls"] == sum(1 + math.ceil((d - 1) / batch) for d in distinct)
    assert counts["vit_backwards"] == 3  # relevancy, one per text
    assert counts["text_backwards"] == 3 + 3  # relevancy and GradCAM, one per text each
    depth = net_depth(tiny, "itm")
    rng = np.random.default_rng(seed)
    n = tiny.grid[0] * tiny.grid[1]
    randoms = [[rng.permutation(n) for _ in range(random_orders)] for _ in images]
    for pair, (picture, text) in enumerate(zip(images, texts, strict=True)):
        maps = {}
        for m in methods:
            alone = explain(tiny, picture, text, m)
            got = ev.explanations[m][pair]
            assert_close(got.maps, alone.maps, depth=depth)
            assert_close(got.itm_probability, alone.itm_probability, depth=depth, magnitude=1.0)
            maps[m] = alone.match_map
            assert np.array_equal(patch_order(got.match_map), patch_order(alone.match_map))
        reference = _reference_curves(tiny, picture, text, maps, randoms[pair], steps, "blur")
        for name, (deletion, insertion) in reference.items():
            part = ev.curves[(ev.curves.method == name) & (ev.curves.pair == pair)]
            for kind, expected in (("deletion", deletion), ("insertion", insertion)):
                got = part[part.kind == kind].sort_values("fraction").score.to_numpy()
                assert_close(got, expected, depth=depth, magnitude=1.0, msg=f"{name} {kind} pair {pair}")


def test_the_evaluation_s_progress_bar_says_its_cost_up_front(tiny, image, capsys):
    evaluate_explanations(
        tiny, [image], TEXTS[:1], methods="attention", steps=2, random_orders=1, progress=True
    )
    most = expected_evaluation_passes([1], ["attention"], 2, 1, tiny.grid[0] * tiny.grid[1])
    assert most == 2 + (1 + 1) * 2 * (2 - 1)  # the image, the removed one, one step of 2 curves x 2 kinds
    bar = capsys.readouterr().err
    assert "explanation curves (about " in bar and f": {most:,} ViT passes at most)" in bar


def test_occlusion_in_an_evaluation_shares_the_image_s_forward(tiny, image):
    gh, gw = tiny.grid
    estimate_seconds(tiny, 1, itm_pairs=1)  # the progress bar's estimate: its passes timed before
    with counted(tiny) as counts:
        ev = evaluate_explanations(
            tiny, [image, image], TEXTS[:2], methods="occlusion", steps=2, random_orders=1, batch_size=8
        )
    distinct = _distinct_images(tiny, ev, [0, 1], 2, 1, 0)
    # the image once, its gh * gw one-patch windows once for both texts, the curves' other images
    assert counts["vit_images"] == 1 + gh * gw + (distinct - 1)
    assert counts["vit_images"] <= expected_evaluation_passes([2], ["occlusion"], 2, 1, gh * gw)
    alone = explain(tiny, image, TEXTS[1], "occlusion")
    assert_close(ev.explanations["occlusion"][1].match_map, alone.match_map, depth=net_depth(tiny, "itm"))


@pytest.mark.slow
def test_evaluation_equals_the_per_pair_path_on_the_full_geometry(full_b):
    """One pair on ViT-B/16's geometry (24 x 24 patches, 12 + 12 layers): maps and curves within the
    suite's tolerance of each method alone and of every image scored on its own."""
    picture = synthetic_images(1, seed=7, size=(384, 384))[0]
    text = TEXTS[0]
    methods = ("attention", "gradcam", "relevancy", "rollout")
    estimate_seconds(full_b, 1, itm_pairs=1)  # the progress bar's estimate: its passes timed before
    with counted(full_b) as counts:
        ev = evaluate_explanations(full_b, [picture], [text], methods=methods, steps=2, random_orders=1)
    assert counts["vit_images"] == _distinct_images(full_b, ev, [0], 2, 1, 0)
    depth = net_depth(full_b, "itm")
    maps = {}
    for m in methods:
        alone = explain(full_b, picture, text, m)
        assert_close(ev.explanations[m][0].maps, alone.maps, depth=depth, msg=m)
        maps[m] = alone.match_map
    randoms = [np.random.default_rng(0).permutation(full_b.grid[0] * full_b.grid[1])]
    reference = _reference_curves(full_b, picture, text, maps, randoms, 2, "blur")
    for name, (deletion, insertion) in reference.items():
        part = ev.curves[ev.curves.method == name]
        for kind, expected in (("deletion", deletion), ("insertion", insertion)):
            got = part[part.kind == kind].sort_values("fraction").score.to_numpy()
            assert_close(got, expected, depth=depth, magnitude=1.0, msg=f"{name} {kind}")


# ------------------------------------------------------------------------------------ reranks
@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    from PIL import Image

    root = tmp_path_factory.mktemp("photos")
    for i, array in enumerate(synthetic_images(9, seed=2, size=(24, 32))):
        Image.fromarray(array).save(root / f"{i}.png")
    return root


def _reference_itm(model, collection, frame):
    """Each reranked (query, image) pair scored alone, as ``itm_scores`` of one image and one text."""
    return np.array(
        [
            float(model.itm_scores([collection.image(row.image)], [row.query]).values[0, 0])
            for row in frame.itertuples()
        ]
    )


def test_a_rerank_of_stored_states_runs_no_vit_pass(tiny, photos, tmp_path):
    from blipviz.collection import embed_collection

    kept = embed_collection(tiny, photos, tmp_path / "kept", progress=False, keep_states=True)
    queries = ["a photo", "a red square", "a dog"]
    with counted(tiny) as counts:
        frame = kept.search(queries, k=5, rerank=5)
    assert counts["vit_images"] == 0
    reranked = frame[frame.cosine_rank <= 5]
    assert_close(
        reranked.itm.to_numpy(), _reference_itm(tiny, kept, reranked), depth=net_depth(tiny), magnitude=1.0
    )


def test_a_rerank_without_states_passes_each_candidate_once_in_batches(tiny, photos, tmp_path):
    from blipviz.collection import embed_collection

    plain = embed_collection(tiny, photos, tmp_path / "plain", progress=False)
    queries = ["a photo", "a red square", "a dog"]
    with counted(tiny) as counts:
        frame = plain.search(queries, k=5, rerank=5, batch_size=3)
    candidates = frame[frame.cosine_rank <= 5].image.nunique()
    assert counts["vit_images"] == candidates  # an image wanted by several queries passes once
    assert counts["vit_calls"] == math.ceil(candidates / 3)
    reranked = frame[frame.cosine_rank <= 5]
    assert_close(
        reranked.itm.to_numpy(), _reference_itm(tiny, plain, reranked), depth=net_depth(tiny), magnitude=1.0
    )


# ------------------------------------------------------------------------------ zero-shot ensembles
@contextlib.contextmanager
def counted_texts(model):
    """Texts through the text encoder while the block runs: the unimodal pass (no image states)
    and the multimodal ITM pass (cross-attending to image states), one row per text."""
    counts = {"unimodal": 0, "multimodal": 0}

    def on_text(module, args, kwargs, output):
        ids = kwargs.get("input_ids", args[0] if args else None)
        counts["multimodal" if kwargs.get("encoder_hidden_states") is not None else "unimodal"] += int(
            ids.shape[0]
        )

    handle = model.hf.text_encoder.register_forward_hook(on_text, with_kwargs=True)
    try:
        yield counts
    finally:
        handle.remove()


def test_a_prompt_ensemble_passes_each_distinct_text_once(tiny):
    labels = ["dog", "cat", "bird", "car"]
    # the second template is the first one read alike after BLIP's caption normalisation, the
    # fourth repeats the third: 2 distinct texts per class
    templates = ["a photo of a {}", "A Photo of a {}.", "art of the {label}", "art of the {label}"]
    images = tiny.encode_images(synthetic_images(3, seed=5))
    with counted_texts(tiny) as texts, counted(tiny) as vit:
        clf = blipviz.ZeroShotClassifier(tiny, labels, template=templates, method="rerank", rerank_k=2)
        assert texts == {"unimodal": 8, "multimodal": 0}
        clf.predict_proba(images)
        # each image: its 2 kept classes' 2 distinct texts, once each; no text encoded again
        assert texts == {"unimodal": 8, "multimodal": 3 * 2 * 2}
        blipviz.ZeroShotClassifier(tiny, labels, template=templates).predict_proba(images)
        assert texts == {"unimodal": 16, "multimodal": 12 + 3 * 8}
    assert vit["vit_images"] == 0  # the features hold the states
