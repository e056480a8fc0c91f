"""The attention and GradCAM figures: image comparisons of fixed maps, and what a reader needs
measured on the tiny net's maps (a colorbar, panels of at least 2.5 inches, no empty rows, titles
apart and inside the figure, numbered repeats, one scale when shared, one default layer everywhere)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

import blipviz
from blipviz.analysis.attention import default_layer
from blipviz.display.labels import fit_text
from blipviz.display.overlay import blend, overlay_picture
from blipviz.net.images import ImagePreprocessing
from blipviz.testing.figures import (
    assert_inside_figure,
    assert_no_overlap,
    bump_maps,
    colorbars,
    image_comparison,
    visible_texts,
)

TEXT = "a dog on a dog"  # [ENC] a dog on a dog [SEP]: two repeated words


@pytest.fixture(scope="module")
def photo():
    """A fixed 64 x 48 picture without noise (small baselines): two gradients and a yellow block."""
    yy, xx = np.mgrid[0:48, 0:64]
    picture = np.stack([xx * 4, yy * 5, np.full_like(xx, 120)], axis=-1).astype(np.uint8)
    picture[10:30, 20:40] = (230, 200, 40)
    return picture


@pytest.fixture(scope="module")
def attention(tiny, photo):
    return tiny.cross_attention(photo, TEXT)


@pytest.fixture(scope="module")
def cam(tiny, photo):
    return tiny.gradcam(photo, TEXT)


# The image tests draw fixed maps, not the net's: their last bits follow the CPU's kernels, and a
# figure can amplify them (a colour scale's top, its ticks; blipviz.testing.figures). One peak per
# token of TEXT, in patches (row, col) of the 8 x 8 grid; both "dog"s on the yellow block.
PEAKS = [(0.5, 0.5), (1, 6), (3, 3), (6, 1), (6, 6), (3, 4), (7, 7)]
HEAD_SHIFTS = [(0, 0), (0, 1), (1, 0), (1, 1)]  # each head's peaks a patch away from the first's


@pytest.fixture(scope="module")
def fixed_attention(attention):
    """The pair's cross-attention (tokens, picture, title) with fixed weights: in every layer and head,
    each token attends to a bump at its peak (shifted by the head) and to [CLS] as much as to the peak;
    rows sum to 1. ITM probability 0.158."""
    rows = []
    for dr, dc in HEAD_SHIFTS:
        bumps = bump_maps(attention.grid, [(r + dr, c + dc) for r, c in PEAKS], spread=0.7)
        rows.append(np.concatenate([np.ones((len(PEAKS), 1)), bumps.reshape(len(PEAKS), -1)], axis=1))
    heads = np.stack(rows)  # (heads, tokens, 1 + patches)
    weights = np.stack([heads / heads.sum(axis=-1, keepdims=True)] * attention.n_layers)
    assert weights.shape == attention.weights.shape
    return dataclasses.replace(attention, weights=weights.astype(np.float32), score=0.158)


@pytest.fixture(scope="module")
def fixed_cam(cam):
    """The pair's GradCAM explanation (tokens, picture, title) with fixed maps: a bump at each
    token's peak, the match map the mean of the real tokens'. ITM probability 0.158."""
    maps = 0.04 * bump_maps(cam.grid, PEAKS, spread=0.7)
    assert maps.shape == cam.maps.shape
    match_map = maps[1:-1].mean(axis=0)
    return dataclasses.replace(
        cam, maps=maps.astype(np.float32), match_map=match_map.astype(np.float32), itm_probability=0.158
    )


@pytest.fixture(scope="module")
def three_layers():
    """A net with 3 multimodal layers: its default layer (1) is neither the first nor the last."""
    from transformers import BlipConfig, BlipForImageTextRetrieval

    from blipviz.net.random_weights import informative_init_
    from blipviz.testing import TINY_GEOMETRY

    text = dict(TINY_GEOMETRY["text"], num_hidden_layers=3)
    config = BlipConfig(text_config=text, vision_config=TINY_GEOMETRY["vision"], image_text_hidden_size=256)
    hf = informative_init_(BlipForImageTextRetrieval(config), 1)
    return blipviz.BlipITM(hf, name="three-layers", preprocessing=ImagePreprocessing(64))


def _panels(disp):
    return [ax for ax in disp.axes_ if ax.get_visible()]


def _size_in(ax):
    fig = ax.figure
    fig.canvas.draw()
    box = ax.get_window_extent()
    return box.width / fig.dpi, box.height / fig.dpi


def _rows(fig, exclude):
    """Rows of visible Axes (by their top edge), colorbars excluded."""
    fig.canvas.draw()
    tops = {round(ax.get_position().y1, 3) for ax in fig.axes if ax.get_visible() and ax not in exclude}
    return len(tops)


# ----------------------------------------------------------------------------- image tests
@image_comparison()
def test_figure_cross_attention_overlay_shared_scale(fixed_attention):
    return fixed_attention.overlay(layer=0, tokens=[1, 2, 4], ncols=3).figure_


@image_comparison()
def test_figure_cross_attention_matrices_per_token_scale(fixed_attention):
    return fixed_attention.plot(layer=0, tokens=[1, 2, 4], ncols=3, scale="per-token").figure_


@image_comparison()
def test_figure_gradcam_overlay(fixed_cam):
    return fixed_cam.overlay(tokens=["[match]", 2, 5], ncols=3).figure_


@image_comparison()
def test_figure_heads_by_image_tokens(fixed_attention):
    return fixed_attention.plot_heads(layer=0, tokens=[1, 2, 4], width=7.0).figure_


# ------------------------------------------------------------------------------- geometry
@pytest.mark.parametrize("kind", ["overlay", "matrices", "gradcam", "gradcam-matrices"])
@pytest.mark.parametrize("ncols", [None, 3])
def test_grid_geometry(attention, cam, kind, ncols):
    draw = {
        "overlay": lambda: attention.overlay(ncols=ncols),
        "matrices": lambda: attention.plot(ncols=ncols, scale="per-token"),
        "gradcam": lambda: cam.overlay(ncols=ncols),
        "gradcam-matrices": lambda: cam.plot(ncols=ncols),
    }[kind]
    disp = draw()
    fig = disp.figure_
    n = len(disp.arrays_)
    assert n == len(attention.tokens) + kind.startswith("gradcam")
    bars = colorbars(fig)
    assert len(bars) == 1 and bars[0] is disp.colorbar_ and bars[0].ax.get_ylabel()
    for ax in _panels(disp):  # the synthetic photo is 64 x 48: its long side, the maps square
        width, height = _size_in(ax)
        assert max(width, height) >= 2.5 and min(width, height) >= 2.5 * (
            0.75 if kind in ("overlay", "gradcam") else 1
        )
    expected_rows = math.ceil(n / (ncols or 4))
    assert _rows(fig, exclude=[bars[0].ax]) == expected_rows
    assert len(fig.axes) - 1 == expected_rows * (ncols or 4)  # no row of hidden panels
    texts = visible_texts(fig, include_ticks=False)
    assert_inside_figure(texts)
    assert_no_overlap(texts)


def test_repeated_tokens_are_numbered(attention, cam):
    assert attention.overlay().titles_ == ["[ENC]", "a (1)", "dog (1)", "on", "a (2)", "dog (2)", "[SEP]"]
    titles = [ax.get_title() for ax in cam.plot().axes_]
    assert titles == ["match decision", "[ENC]", "a (1)", "dog (1)", "on", "a (2)", "dog (2)", "[SEP]"]
    heads = attention.plot_heads()
    assert [ax.get_ylabel() for ax in heads.axes_] == heads.titles_ == titles[1:]


def test_shared_scale_is_one_norm_and_per_token_is_each_its_own(attention):
    maps = attention.maps(0)
    shared = attention.overlay(layer=0, scale="shared")
    assert len({id(n) for n in shared.norms_}) == 1
    assert {(n.vmin, n.vmax) for n in shared.norms_} == {(0.0, shared.colorbar_.norm.vmax)}
    assert shared.norms_[0].vmax == pytest.approx(np.percentile(maps, 99))
    picture = overlay_picture(attention.image)
    for drawn, heat in zip(shared.arrays_, maps, strict=True):  # each panel drawn on that one scale
        np.testing.assert_array_equal(drawn, blend(picture, heat, shared.norms_[0].vmax))
    per_token = attention.overlay(layer=0, scale="per-token")
    tops = [n.vmax for n in per_token.norms_]
    np.testing.assert_allclose(tops, [np.percentile(m, 99) for m in maps])
    assert len(set(tops)) == len(tops)
    assert (per_token.colorbar_.norm.vmin, per_token.colorbar_.norm.vmax) == (0.0, 1.0)
    matrices = attention.plot(0)
    assert len({(im.norm.vmin, im.norm.vmax) for im in matrices.images_}) == 1
    with pytest.raises(blipviz.InputError, match="scale"):
        attention.plot(0, scale="global")


def test_titles_say_layer_heads_min_subtraction_and_itm(attention, cam):
    n_layers, n_heads = attention.n_layers, attention.n_heads
    title = attention.overlay(layer=1).figure_.get_suptitle()
    assert f"layer 1 of {n_layers}" in title and f"mean of the {n_heads} heads" in title
    assert "minimum over the tokens subtracted" in title and f"ITM probability {attention.score:.3f}" in title
    title = attention.plot(0, heads=2, subtract_min=False).title_
    assert "head 2" in title and "raw probabilities" in title and "layer 0" in title
    title = cam.overlay().title_
    assert (
        f"GradCAM, layer {cam.options['layer']} of {n_layers}" in title
        and f"ITM probability {cam.itm_probability:.3f}" in title
    )
    heads = attention.plot_heads(1)
    assert (
        f"layer 1 of {n_layers}" in heads.title_ and f"ITM probability {attention.score:.3f}" in heads.title_
    )


def test_long_texts_are_wrapped_whole_or_elided_at_words(tiny, photo):
    long = "a small brown dog with a red collar sits on a wooden bench beside a quiet lake at dusk"
    assert 80 < len(long)
    longer = tiny.cross_attention(photo, long)
    title = " ".join(longer.overlay(tokens=[1]).title_.split())
    assert fit_text(long) in title and "…" in title  # cut in the middle, at word boundaries
    short = "a small brown dog with a red collar sits on a wooden bench by a lake"
    title = tiny.cross_attention(photo, short).overlay(tokens=[1]).title_
    assert " ".join(title.split()).count(short) == 1  # whole, wrapped between words only


def test_heads_figure_has_head_labels_colorbar_and_a_readable_scale(attention):
    disp = attention.plot_heads(layer=0)
    fig = disp.figure_
    bars = colorbars(fig)
    assert len(bars) == 1 and "head's maximum over the patches" in bars[0].ax.get_ylabel()
    gh, gw = attention.grid
    top = disp.axes_[0]
    heads = [t.get_text() for t in top.get_xticklabels()]
    assert heads == ["head 0", *[str(h) for h in range(1, attention.n_heads)]]
    for arr, t in zip(disp.arrays_, range(len(attention.tokens)), strict=True):
        patches = attention.weights[0, :, t, 1:].reshape(attention.n_heads, gh, gw)  # [CLS] apart
        np.testing.assert_allclose(arr.max(axis=(1, 2)), 1.0)  # every head reaches the top colour
        np.testing.assert_allclose(arr * patches.max(axis=(1, 2), keepdims=True), patches)
    np.testing.assert_allclose(disp.cls_share_, attention.weights[0, :, :, 0].T)
    assert "[CLS] token not drawn" in disp.axes_[-1].get_xlabel().replace("\n", " ")
    shared = attention.plot_heads(layer=0, scale="shared")
    assert "probability" in colorbars(shared.figure_)[0].ax.get_ylabel()
    texts = visible_texts(fig, include_ticks=False)
    assert_inside_figure(texts)
    assert_no_overlap(texts)


def test_heads_figure_of_35_tokens_on_the_full_grid_stays_under_12_inches():
    """12 heads x 577 image tokens per token once made 35 tokens a 43-inch figure of hairlines: the
    heads are maps on the 24 x 24 grid, rows at least 0.45 inches, and pages beyond 12 inches."""
    import matplotlib.pyplot as plt

    from blipviz.display.attention import HeadsTokensDisplay

    rng = np.random.default_rng(0)
    weights = rng.dirichlet(np.ones(577), (12, 35))
    tokens = [f"word{i}" for i in range(35)]
    pages = [
        HeadsTokensDisplay(weights, tokens, grid=(24, 24), layer=6, n_layers=12, text="$5 caption").plot(
            page=p
        )
        for p in (0, 1)
    ]
    assert [d.n_pages_ for d in pages] == [2, 2]
    assert pages[0].tokens_ + pages[1].tokens_ == list(range(35))
    for display in pages:
        width, height = display.figure_.get_size_inches()
        assert height <= 12.0 and width <= 10.0
        row = display.axes_[0].get_window_extent()
        assert row.height / display.figure_.dpi >= 0.4  # each head's map at least 0.4 inches
        assert display.arrays_[0].shape == (12, 24, 24)
        texts = visible_texts(display.figure_)
        assert_inside_figure(texts)
        assert_no_overlap(texts)
    assert "page 1 of 2" in pages[0].title_ and "page=1 draws the next" in pages[0].title_
    fig, axes = plt.subplots(3, 1, figsize=(9, 5), layout="constrained")
    fig.suptitle("mine")
    into = HeadsTokensDisplay(weights, tokens, grid=(24, 24)).plot(axes, tokens=[0, 1, 2])
    assert fig.get_suptitle() == "mine" and tuple(fig.get_size_inches()) == (9, 5)
    assert into.figure_ is fig and [t.get_text() for t in fig.texts] == ["mine"]  # no title of its own


def test_one_default_layer_for_the_api_gradcam_and_the_explorer(three_layers, photo):
    pytest.importorskip("ipywidgets")
    from blipviz.explore.widgets import AttentionExplorer

    expected = default_layer(3)
    assert expected == 1  # neither the first layer nor the last
    att = three_layers.cross_attention(photo, "a dog")
    plotted, overlaid, heads = att.plot(), att.overlay(), att.plot_heads()
    assert plotted.layer == overlaid.layer == expected and f"layer {expected} of 3" in heads.title_
    np.testing.assert_array_equal(plotted.arrays_[1], att.maps(expected)[1])
    assert three_layers.gradcam(photo, "a dog").options["layer"] == expected
    for method in ("attention", "GradCAM"):
        explorer = AttentionExplorer(three_layers, photo, "a dog", method=method)
        assert explorer.layer.value == expected and f"layer {expected}" in explorer.caption_text_


def test_small_values_have_short_colorbar_labels_and_one_power_of_ten(cam):
    import re

    disp = cam.overlay(tokens=[2, 5], ncols=3)
    bar = colorbars(disp.figure_)[0]
    disp.figure_.canvas.draw()
    top = bar.norm.vmax
    labels = [t.get_text() for t in bar.ax.get_yticklabels() if t.get_text()]
    digits = [len(re.sub(r"[^0-9]", "", re.sub(r"\\mathdefault|[{}$]", "", t))) for t in labels]
    assert labels and max(digits) <= 3, labels
    offset = bar.ax.yaxis.get_offset_text()
    assert top < 0.1  # the premise: GradCAM values of the tiny net are this small
    assert "10^{" in offset.get_text() and offset.get_visible()  # so the power is written once
    assert_inside_figure([offset])
    texts = visible_texts(disp.figure_, include_ticks=False)
    assert offset in texts
    assert_no_overlap(texts)  # the power clear of the colorbar's label and the panels' titles
