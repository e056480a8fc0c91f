"""Explanations of the ITM decision: relevancy and rollout against references written here from
the rules (explicit per-layer, per-head loops in float64 numpy), occlusion against brute force
and on a constructed case, deletion / insertion curves against their definitions."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
import torch

import blipviz
from blipviz.analysis.explanations import (
    METHODS,
    baseline_pixels,
    evaluate_explanations,
    explain,
    paired_bootstrap,
    patch_order,
)
from blipviz.errors import InputError
from blipviz.testing import assert_close, net_depth, synthetic_images

TEXT = "a red sweater on a wooden chair"


@pytest.fixture(scope="module")
def pair():
    return synthetic_images(1, seed=3, size=(64, 64))[0], TEXT


def _inputs(model, image, text):
    pixels = model.preprocessing.pixel_values([image])
    tokenized = model.tokenize([text])
    return pixels, model.itm_input_ids(tokenized), tokenized.attention_mask


def _captured(model, image, text):
    """Attention maps and their gradients, by ``retain_grad`` and ``backward`` (float64 numpy)."""
    pixels, ids, mask = _inputs(model, image, text)
    with torch.enable_grad():
        vision = model.hf.vision_model(pixel_values=pixels, output_attentions=True)
        out = model.hf.text_encoder(
            input_ids=ids,
            attention_mask=mask,
            encoder_hidden_states=vision.last_hidden_state,
            output_attentions=True,
        )
        maps = [*vision.attentions, *out.attentions, *out.cross_attentions]
        for a in maps:
            a.retain_grad()
        logit = model.hf.itm_head(out.last_hidden_state[:, 0, :])[0, 1]
        logit.backward()
    model.hf.zero_grad(set_to_none=True)
    n_v, n_t = len(vision.attentions), len(out.attentions)

    def arrays(group):
        return [(a.detach()[0].double().numpy(), a.grad[0].double().numpy()) for a in group]

    return arrays(maps[:n_v]), arrays(maps[n_v : n_v + n_t]), arrays(maps[n_v + n_t :])


def _clipped_head_mean(a, g):
    heads = [np.maximum(g[h] * a[h], 0.0) for h in range(a.shape[0])]
    return sum(heads) / len(heads)


def _residual_normalised(r):
    n = r.shape[0]
    s = r - np.eye(n)
    out = np.zeros_like(s)
    for i in range(n):
        total = s[i].sum()
        if total != 0:
            out[i] = s[i] / total
    return out + np.eye(n)


def reference_relevancy(vision, text_self, text_cross):
    """Chefer et al.'s rules as the issue spells them, one layer at a time."""
    n_image = vision[0][0].shape[-1]
    n_text = text_self[0][0].shape[-1]
    r_ii = np.eye(n_image)
    for a, g in vision:
        r_ii = r_ii + _clipped_head_mean(a, g) @ r_ii
    r_tt = np.eye(n_text)
    r_ti = np.zeros((n_text, n_image))
    for layer in range(len(text_self)):
        a_bar = _clipped_head_mean(*text_self[layer])
        new_tt = r_tt + a_bar @ r_tt
        new_ti = r_ti + a_bar @ r_ti
        r_tt, r_ti = new_tt, new_ti
        c_bar = _clipped_head_mean(*text_cross[layer])
        r_ti = r_ti + _residual_normalised(r_tt).T @ c_bar @ _residual_normalised(r_ii)
    return r_ti


def _rolled(layers):
    joint = np.eye(layers[0].shape[-1])
    for a in layers:
        mean = a.mean(axis=0) + np.eye(a.shape[-1])
        mean = mean / mean.sum(axis=1, keepdims=True)
        joint = mean @ joint
    return joint


def test_relevancy_equals_the_rules(tiny, pair):
    image, text = pair
    vision, text_self, text_cross = _captured(tiny, image, text)
    expected = reference_relevancy(vision, text_self, text_cross)[:, 1:].reshape(-1, *tiny.grid)
    got = explain(tiny, image, text, "relevancy")
    assert got.maps.shape == expected.shape == (len(got.tokens), *tiny.grid)
    assert_close(got.maps, expected, depth=net_depth(tiny, "itm"))
    assert np.abs(got.maps - expected).max() < 1e-5
    assert_close(got.match_map, expected[0], depth=net_depth(tiny, "itm"))
    # the clip is per head, before the mean: clipping after the mean gives another map
    mean_first = [(a.mean(0, keepdims=True), g.mean(0, keepdims=True)) for a, g in vision]
    other = reference_relevancy(mean_first, text_self, text_cross)[:, 1:].reshape(expected.shape)
    assert np.abs(other - expected).max() > 1e-4


def test_rollout_equals_the_rules(tiny, pair):
    image, text = pair
    vision, text_self, text_cross = _captured(tiny, image, text)
    r_ii = _rolled([a for a, _ in vision])
    r_tt = _rolled([a for a, _ in text_self])
    expected = (r_tt.T @ text_cross[-1][0].mean(axis=0) @ r_ii)[:, 1:].reshape(-1, *tiny.grid)
    got = explain(tiny, image, text, "rollout")
    assert_close(got.maps, expected, depth=net_depth(tiny, "itm"))
    assert_close(got.match_map, expected[0], depth=net_depth(tiny, "itm"))


def test_every_method_gives_maps_on_the_grid_and_the_pair_s_probability(tiny, pair):
    image, text = pair
    probability = float(tiny.itm_scores([image], [text]).values[0, 0])
    for method in METHODS:
        got = explain(tiny, image, text, method)
        assert got.method == method
        assert got.match_map.shape == tiny.grid
        assert got.maps.shape[1:] == tiny.grid
        assert len(got.tokens) == len(got.maps)
        assert_close(got.itm_probability, probability, depth=net_depth(tiny, "itm"))
        frame = got.to_pandas()
        assert len(frame) == got.maps.size and set(frame.columns) >= {"token", "row", "col", "value"}
    occlusion = explain(tiny, image, text, "occlusion")
    assert occlusion.tokens == ["[match]"] and occlusion.maps.shape == (1, *tiny.grid)


def test_attention_and_gradcam_match_maps_leave_out_enc_and_sep(tiny, pair):
    image, text = pair
    got = explain(tiny, image, text, "gradcam")
    np.testing.assert_array_equal(got.match_map, got.maps[1:-1].mean(axis=0))
    att = explain(tiny, image, text, "attention", layer=1)
    assert att.options == {"layer": 1, "n_layers": 2}
    np.testing.assert_array_equal(att.match_map, att.maps[1:-1].mean(axis=0))


@pytest.mark.parametrize("layer", [None, 1, -2])
def test_gradcam_is_the_explanation_explain_returns(tiny, pair, layer):
    """One result type for one task: ``model.gradcam`` returns the Explanation that
    ``explain(method="gradcam")`` returns, every field equal."""
    image, text = pair
    options = {} if layer is None else {"layer": layer}
    cam = tiny.gradcam(image, text, layer)
    got = explain(tiny, image, text, "gradcam", **options)
    assert type(cam) is blipviz.Explanation and cam.method == "gradcam"
    for name in ("maps", "match_map", "signed_maps"):
        np.testing.assert_array_equal(getattr(cam, name), getattr(got, name))
        assert getattr(cam, name).dtype == np.float32
    for name in ("tokens", "itm_probability", "text", "image_label", "grid", "options", "truncated_by"):
        assert getattr(cam, name) == getattr(got, name), name
    assert cam.options == {"layer": 0 if layer is None else layer % 2, "n_layers": 2, "n_heads": 4}
    assert not hasattr(blipviz, "GradCAM")


def _logits(model, pixels, text):
    """ITM logits (1, 2) of one text and one image given as pixels."""
    with torch.inference_mode():
        return model.itm_logits(model.tokenize([text]), model.vision_states(pixels))


def _match_logit(model, pixels, text):
    return float(_logits(model, pixels, text)[0, 1])


def test_occlusion_is_the_drop_of_the_match_logit(tiny, pair):
    image, text = pair
    got = explain(tiny, image, text, "occlusion", window=2, stride=2, baseline="mean")
    pixels = tiny.preprocessing.pixel_values([image])
    removed = baseline_pixels(pixels, "mean")
    full = _match_logit(tiny, pixels, text)
    gh, gw = tiny.grid
    side = pixels.shape[-1] // gh
    expected = np.zeros((gh, gw))
    with torch.inference_mode():
        for r in range(0, gh, 2):
            for c in range(0, gw, 2):
                hole = pixels.clone()
                rows, cols = slice(r * side, (r + 2) * side), slice(c * side, (c + 2) * side)
                hole[..., rows, cols] = removed[..., rows, cols]
                expected[r : r + 2, c : c + 2] = full - _match_logit(tiny, hole, text)
    assert_close(got.match_map, expected, depth=net_depth(tiny, "itm"), magnitude=abs(full) + 1)


def test_occlusion_ranks_the_one_region_the_score_depends_on_first(tiny):
    """An image equal to its baseline everywhere but one patch: only that patch can change the
    score. The net is oriented (its ITM head's rows swapped if needed) so that removing the patch
    lowers the match logit; occlusion must then rank that patch first, all others near 0."""
    gh, gw = tiny.grid
    size = tiny.preprocessing.image_size
    side = size // gh
    image = np.full((size, size, 3), 120, dtype=np.uint8)
    r, c = 5, 2  # the region, off the diagonal so a transposed map would fail
    yy, xx = np.mgrid[0:side, 0:side]
    # checkerboards of +-100 (zero mean per channel): the image's mean colour stays 120
    texture = np.stack([((yy // k + xx // k) % 2) * 200 - 100 for k in (1, 2, 4)], axis=-1)
    image[r * side : (r + 1) * side, c * side : (c + 1) * side] = 120 + texture
    pixels = tiny.preprocessing.pixel_values([image])
    removed = baseline_pixels(pixels, "mean")
    other = (removed - pixels).abs()
    other[..., r * side : (r + 1) * side, c * side : (c + 1) * side] = 0
    assert float(other.max()) < 1e-5  # the image equals its baseline outside the region
    net = blipviz.load_model("tiny-random")
    if _match_logit(net, pixels, TEXT) < _match_logit(net, removed, TEXT):
        with torch.no_grad():
            net.hf.itm_head.weight.copy_(net.hf.itm_head.weight.flip(0))
            net.hf.itm_head.bias.copy_(net.hf.itm_head.bias.flip(0))
    got = explain(net, image, TEXT, "occlusion", baseline="mean").match_map
    assert patch_order(got)[0] == r * gw + c
    rest = np.delete(got.reshape(-1), r * gw + c)
    assert got[r, c] > 0 and np.abs(rest).max() < 1e-3 * got[r, c]


def test_curves_start_and_end_where_they_must(tiny):
    images = synthetic_images(2, seed=5, size=(64, 64))
    texts = [TEXT, "two cats sleeping on a red sofa"]
    ev = evaluate_explanations(
        tiny, images, texts, methods=("relevancy", "rollout"), steps=4, baseline="blur"
    )
    curves = ev.curves
    assert list(curves.columns) == ["method", "pair", "fraction", "score", "kind"]
    assert set(curves.method) == {"relevancy", "rollout", "random"}
    assert sorted(set(np.round(curves.fraction, 6))) == [0.0, 0.25, 0.5, 0.75, 1.0]
    for pair, (image, text) in enumerate(zip(images, texts, strict=True)):
        probability = float(tiny.itm_scores([image], [text]).values[0, 0])
        pixels = tiny.preprocessing.pixel_values([image])
        removed = float(_logits(tiny, baseline_pixels(pixels, "blur"), text).softmax(-1)[0, 1])
        for method in ("relevancy", "rollout", "random"):
            part = curves[(curves.method == method) & (curves.pair == pair)]
            deletion = part[part.kind == "deletion"].sort_values("fraction").score.to_numpy()
            insertion = part[part.kind == "insertion"].sort_values("fraction").score.to_numpy()
            assert len(deletion) == len(insertion) == 5
            assert_close(deletion[0], probability, depth=net_depth(tiny, "itm"))
            assert_close(deletion[-1], removed, depth=net_depth(tiny, "itm"))
            assert_close(insertion[0], removed, depth=net_depth(tiny, "itm"))
            assert_close(insertion[-1], probability, depth=net_depth(tiny, "itm"))
    for method in ("relevancy", "rollout", "random"):
        for kind in ("deletion", "insertion"):
            areas = []
            for _, g in curves[(curves.method == method) & (curves.kind == kind)].groupby("pair"):
                y, x = g.sort_values("fraction").score.to_numpy(), np.sort(g.fraction.to_numpy())
                areas.append(sum((x[i + 1] - x[i]) * (y[i] + y[i + 1]) / 2 for i in range(len(x) - 1)))
            assert ev.table.loc[method, f"{kind}_auc"] == pytest.approx(np.mean(areas), abs=1e-12)
    assert np.isnan(ev.table.loc["random", "seconds_per_pair"])
    assert (ev.table.loc[["relevancy", "rollout"], "seconds_per_pair"] > 0).all()


def test_curves_follow_the_map_s_order(tiny, pair):
    """The second deletion point removes exactly the top patches of the match map."""
    image, text = pair
    ev = evaluate_explanations(tiny, [image], [text], methods=("relevancy",), steps=4, baseline="mean")
    exp = ev.explanations["relevancy"][0]
    gh, gw = tiny.grid
    n = round(0.25 * gh * gw)
    top = patch_order(exp.match_map)[:n]
    pixels = tiny.preprocessing.pixel_values([image])
    removed = baseline_pixels(pixels, "mean")
    side = pixels.shape[-1] // gh
    hole = pixels.clone()
    for p in top:
        r, c = divmod(int(p), gw)
        hole[..., r * side : (r + 1) * side, c * side : (c + 1) * side] = removed[
            ..., r * side : (r + 1) * side, c * side : (c + 1) * side
        ]
    expected = float(_logits(tiny, hole, text).softmax(-1)[0, 1])
    curve = ev.curves[(ev.curves.method == "relevancy") & (ev.curves.kind == "deletion")]
    assert_close(curve.sort_values("fraction").score.to_numpy()[1], expected, depth=net_depth(tiny, "itm"))


def test_evaluation_is_deterministic(tiny, pair):
    image, text = pair
    a = evaluate_explanations(tiny, [image], [text], methods=("rollout",), steps=3, random_orders=3)
    b = evaluate_explanations(tiny, [image], [text], methods=("rollout",), steps=3, random_orders=3)
    pd.testing.assert_frame_equal(a.curves, b.curves)


# ------------------------------------------------------------------- difference from random
@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("n", [2, 5, 40])
def test_bootstrap_interval_contains_the_mean_and_is_reproducible(seed, n):
    rng = np.random.default_rng(seed)
    differences = rng.normal(0.1, 0.2, n)
    mean, low, high = paired_bootstrap(differences, resamples=500, seed=seed)
    assert mean == pytest.approx(differences.mean(), abs=1e-12)
    assert low <= mean <= high and low < high
    assert paired_bootstrap(differences, resamples=500, seed=seed) == (mean, low, high)
    if n > 2:  # two pairs have three resampled means, so their quantiles rarely move with the seed
        assert paired_bootstrap(differences, resamples=500, seed=seed + 1) != (mean, low, high)
    wider = paired_bootstrap(differences, resamples=500, seed=seed, confidence=0.99)
    assert wider[1] <= low and high <= wider[2]


def test_bootstrap_interval_shrinks_with_more_pairs():
    """Differences drawn from one distribution: the interval narrows as 1 / sqrt(n), about as wide
    as the normal approximation's 2 x 1.96 standard errors."""
    widths = []
    for n in (10, 40, 160, 640):
        differences = np.random.default_rng(n).normal(-0.05, 0.3, n)
        _, low, high = paired_bootstrap(differences, resamples=2000, seed=1)
        widths.append(high - low)
        normal = 2 * 1.96 * differences.std(ddof=1) / np.sqrt(n)
        assert 0.75 < (high - low) / normal < 1.15
    assert all(a > b for a, b in itertools.pairwise(widths))


def test_bootstrap_of_one_pair_is_undefined_and_bad_options_are_named():
    mean, low, high = paired_bootstrap([0.25])
    assert mean == 0.25 and np.isnan(low) and np.isnan(high)
    assert all(np.isnan(v) for v in paired_bootstrap([]))
    with pytest.raises(InputError, match="confidence must be strictly between 0 and 1"):
        paired_bootstrap([0.1, 0.2], confidence=95)
    with pytest.raises(InputError, match="resamples"):
        paired_bootstrap([0.1, 0.2], resamples=0)


def test_table_gives_each_method_s_difference_from_random_with_its_interval(tiny):
    images = synthetic_images(3, seed=7, size=(64, 64))
    texts = [TEXT, "two cats sleeping on a red sofa", "a bowl of fruit"]
    ev = evaluate_explanations(tiny, images, texts, methods=("attention", "rollout"), steps=3, resamples=300)
    assert ev.n_pairs == 3 and ev.note == "" and (ev.confidence, ev.resamples, ev.seed) == (0.95, 300, 0)
    aucs = ev.pair_aucs
    assert list(aucs.columns) == ["method", "pair", "deletion_auc", "insertion_auc"]
    assert len(aucs) == 3 * 3 and aucs.pair.tolist() == [0, 1, 2] * 3
    random = aucs[aucs.method == "random"].set_index("pair")
    for method in ("attention", "rollout"):
        mine = aucs[aucs.method == method].set_index("pair")
        row = ev.table.loc[method]
        for kind in ("deletion", "insertion"):
            assert row[f"{kind}_auc"] == pytest.approx(mine[f"{kind}_auc"].mean(), abs=1e-12)
            differences = (mine[f"{kind}_auc"] - random[f"{kind}_auc"]).to_numpy()
            expected = paired_bootstrap(differences, resamples=300, seed=0)
            got = (row[f"{kind}_vs_random"], row[f"{kind}_vs_random_low"], row[f"{kind}_vs_random_high"])
            assert got == pytest.approx(expected, abs=1e-12)
            assert got[1] <= got[0] <= got[2]
    assert ev.table.loc["random", ["deletion_vs_random", "insertion_vs_random_high"]].isna().all()


def test_one_pair_reports_undefined_intervals_with_a_note(tiny, pair):
    image, text = pair
    ev = evaluate_explanations(tiny, [image], [text], methods=("rollout",), steps=2, random_orders=2)
    row = ev.table.loc["rollout"]
    assert np.isfinite(row["deletion_vs_random"]) and np.isfinite(row["insertion_vs_random"])
    assert np.isnan(row["deletion_vs_random_low"]) and np.isnan(row["insertion_vs_random_high"])
    assert "one pair" in ev.note and "undefined (NaN)" in ev.note and ev.note in repr(ev)
    with pytest.raises(InputError, match="confidence"):
        evaluate_explanations(tiny, [image], [text], methods=("rollout",), confidence=1.0)


def test_patch_order_breaks_ties_by_position():
    assert patch_order(np.array([[0.5, 1.0], [1.0, 0.0]])).tolist() == [1, 2, 0, 3]


def test_bad_input_is_named(tiny, pair):
    image, text = pair
    with pytest.raises(InputError, match="method"):
        explain(tiny, image, text, "saliency")
    with pytest.raises(InputError, match="no option"):
        explain(tiny, image, text, "rollout", layer=1)
    with pytest.raises(InputError, match="pairs"):
        evaluate_explanations(tiny, [image, image], [text])
    with pytest.raises(InputError, match="baseline"):
        evaluate_explanations(tiny, [image], [text], baseline="noise")
    with pytest.raises(InputError, match="ImageFeatures"):
        explain(tiny, tiny.encode_images([image]), text, "relevancy")
    with pytest.raises(InputError, match="window"):
        explain(tiny, image, text, "occlusion", window=99)
