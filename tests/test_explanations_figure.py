"""The deletion / insertion figure: an image test on fixed curves, and geometric checks; the
relevancy overlay: an image test on fixed maps, and the panels of the tiny net's explanations."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from blipviz.display.explanations import ExplanationCurvesDisplay
from blipviz.display.rules import line_cues
from blipviz.testing.figures import (
    assert_inside_figure,
    assert_no_overlap,
    bump_maps,
    colorbars,
    image_comparison,
    visible_texts,
)


def _curves():
    """Three methods and the random baseline over 3 pairs, 11 points each (no net involved)."""
    fractions = np.linspace(0, 1, 11)
    rows = []
    shapes = {"relevancy": 3.0, "rollout": 1.5, "occlusion": 5.0, "random": 1.0}
    for method, speed in shapes.items():
        for pair in range(3):
            start, end = 0.9 - 0.1 * pair, 0.2
            drop = start + (end - start) * (1 - np.exp(-speed * fractions)) / (1 - np.exp(-speed))
            rise = end + (start - end) * (1 - np.exp(-speed * fractions)) / (1 - np.exp(-speed))
            rows += [
                dict(method=method, pair=pair, fraction=f, score=s, kind="deletion")
                for f, s in zip(fractions, drop, strict=True)
            ]
            rows += [
                dict(method=method, pair=pair, fraction=f, score=s, kind="insertion")
                for f, s in zip(fractions, rise, strict=True)
            ]
    curves = pd.DataFrame(rows)
    table = pd.DataFrame(
        {
            kind + "_auc": {
                m: float(
                    np.mean(
                        [
                            np.trapezoid(g.score, g.fraction)
                            for _, g in curves[(curves.method == m) & (curves.kind == kind)].groupby("pair")
                        ]
                    )
                )
                for m in shapes
            }
            for kind in ("deletion", "insertion")
        }
    )
    return curves, table


def test_curves_figure_reads():
    curves, table = _curves()
    disp = ExplanationCurvesDisplay(curves, table, net_name="tiny-random", baseline="blur").plot()
    fig = disp.figure_
    texts = visible_texts(fig)
    assert_inside_figure(texts)
    titles = [t for t in texts if t.get_text().startswith(("deletion", "insertion", "Which map"))]
    assert len(titles) == 3
    assert_no_overlap(titles, what="titles")
    assert_no_overlap(visible_texts(fig, include_ticks=False))
    # one line per method and kind, the method's AUC in its label, random dashed
    assert len(disp.lines_) == 8
    line = disp.lines_[("deletion", "relevancy")]
    assert f"{table.loc['relevancy', 'deletion_auc']:.3f}" in line.get_label()
    assert disp.lines_[("insertion", "random")].get_linestyle() == "--"
    cues = line_cues(3)
    assert line.get_color() == cues[0]["color"] and line.get_marker() == cues[0]["marker"]
    markers = {disp.lines_[("deletion", m)].get_marker() for m in ("relevancy", "rollout", "occlusion")}
    assert len(markers) == 3  # a second cue beside colour
    mean = (
        curves[(curves.method == "relevancy") & (curves.kind == "deletion")].groupby("fraction").score.mean()
    )
    np.testing.assert_allclose(line.get_ydata(), mean.to_numpy())
    # one legend, beside the data (it once covered the best curve), naming both AUCs
    assert [ax.get_legend() for ax in disp.axes_] == [None, disp.legend_]
    legend_box = disp.legend_.get_window_extent()
    assert all(legend_box.x0 >= ax.get_window_extent().x1 for ax in disp.axes_)
    assert_inside_figure([disp.legend_])
    entry = disp.legend_.get_texts()[0].get_text()
    assert entry.startswith("relevancy") and f"{table.loc['relevancy', 'insertion_auc']:.3f}" in entry
    # 3 pairs, 4 series: interquartile bars at the markers, not four shaded bands
    assert len(disp.spread_) == 8 and "3 pairs; bars: interquartile range" in disp.title_


def test_curves_of_one_pair_and_into_given_axes():
    """One pair: "1 pair", no spread; given Axes: drawn into, and no figure title nor layout change."""
    import matplotlib.pyplot as plt

    curves, table = _curves()
    one = curves[(curves.pair == 0) & curves.method.isin(["relevancy", "random"])]
    fig, axes = plt.subplots(1, 2, figsize=(9, 4), layout="constrained")
    fig.suptitle("my figure")
    disp = ExplanationCurvesDisplay(one, table.loc[["relevancy", "random"]], net_name="n").plot(axes)
    assert disp.figure_ is fig and list(disp.axes_) == list(axes)
    assert fig.get_suptitle() == "my figure" and tuple(fig.get_size_inches()) == (9, 4)
    assert fig.get_layout_engine() is not None and "1 pair" in disp.title_ and "1 pairs" not in disp.title_
    assert disp.spread_ == {}
    two = ExplanationCurvesDisplay(curves[curves.method.isin(["relevancy", "random"])], table).plot()
    assert "band: interquartile range over pairs" in two.title_ and len(two.spread_) == 4


@image_comparison()
def test_curves_figure_image():
    curves, table = _curves()
    return ExplanationCurvesDisplay(curves, table, net_name="tiny-random", baseline="blur").plot().figure_


def _picture():
    """A fixed, noise-free 64 x 64 picture: two colour blocks on a gradient."""
    yy, xx = np.mgrid[0:64, 0:64]
    image = np.stack([xx * 4, yy * 4, np.full_like(xx, 90)], axis=-1).astype(np.uint8)
    image[8:24, 40:56] = (230, 40, 40)
    image[40:56, 8:28] = (30, 160, 60)
    return image


def test_explanation_panels_titles_and_colorbar(tiny):
    text = "a red square and a green block"
    rel = tiny.explain(_picture(), text, "relevancy")
    disp = rel.overlay()
    assert len(disp.arrays_) == len(rel.tokens)  # the match map is the [ENC] row: not drawn twice
    assert disp.titles_[0].endswith("match decision")
    assert "relevancy" in disp.title_ and f"{rel.itm_probability:.3f}" in disp.title_
    assert len(colorbars(disp.figure_)) == 1
    assert disp.scale_ == "per-token"  # its match row would dwarf the token maps on one scale
    assert rel.overlay(scale="shared").scale_ == "shared"
    assert_inside_figure(visible_texts(disp.figure_))
    assert_no_overlap([ax.title for ax in disp.axes_ if ax.get_visible()], what="panel titles")
    cam = tiny.explain(_picture(), text, "gradcam")
    cam_display = cam.plot()
    assert len(cam_display.arrays_) == len(cam.tokens) + 1  # its match map is a mean: its own panel
    assert cam_display.scale_ == "shared"
    occ = tiny.explain(_picture(), text, "occlusion", window=2, stride=2)
    lone = occ.overlay()
    assert len(lone.arrays_) == 1 and lone.figure_.get_figwidth() >= 4.0
    # signed: drops and rises of the score on a diverging key centred at zero
    assert occ.signed and lone.norms_[0].vmin == -lone.norms_[0].vmax
    assert "drop of the ITM match logit (< 0: it rose)" in lone.colorbar_.ax.get_ylabel().replace("\n", " ")
    clipped = occ.overlay(signed=False)
    assert clipped.norms_[0].vmin == 0 and "rises drawn as 0" in clipped.colorbar_.ax.get_ylabel()


# Peaks (row, col) of the fixed relevancy maps on the 8 x 8 grid, one per token of "[ENC] a red square
# and a green block [SEP]": "red" and "square" on the red block, "green" and "block" on the green
# one, the match decision ([ENC]) on both.
RED, GREEN = (1.5, 5.5), (5.5, 2.0)
RELEVANCY_PEAKS = [RED, (0, 2), RED, (2, 6), (4, 4), (7, 7), GREEN, (6, 2.5), (3, 0)]


@image_comparison()
def test_relevancy_overlay_image(tiny):
    """The relevancy overlay of fixed maps (the net's last bits follow the CPU's kernels, and the
    figure's per-panel scales would carry them: blipviz.testing.figures)."""
    rel = tiny.explain(_picture(), "a red square and a green block", "relevancy")
    maps = bump_maps(rel.grid, RELEVANCY_PEAKS, spread=0.8)
    maps[0] += bump_maps(rel.grid, [GREEN], spread=0.8)[0]
    assert maps.shape == rel.maps.shape
    fixed = dataclasses.replace(rel, maps=maps, match_map=maps[0], itm_probability=0.869)
    return fixed.overlay().figure_


def test_one_map_into_one_axes_of_a_user_figure(tiny):
    """An explanation's match map once could not be drawn alone ("need 9 Axes, got 1"): now it goes
    into one Axes, titled with its method, its colorbar beside it, nothing else changed."""
    import matplotlib.pyplot as plt
    import pytest

    from blipviz.errors import InputError

    rel = tiny.explain(_picture(), "a red square and a green block", "relevancy")
    fig, axes = plt.subplots(1, 3, figsize=(12, 4), layout="constrained")
    fig.suptitle("my figure")
    axes[2].plot([0, 1], [0, 1])
    alone = rel.overlay(tokens="[match]", ax=axes[0])
    assert alone.figure_ is fig and list(alone.axes_) == [axes[0]]
    assert alone.titles_ == ["relevancy (Chefer et al. 2021): match decision"]
    np.testing.assert_array_equal(alone.arrays_[0], rel.overlay(tokens=0).arrays_[0])
    matrix = rel.plot(tokens="red", ax=axes[1])
    assert matrix.titles_ == ["relevancy (Chefer et al. 2021): red"]
    np.testing.assert_array_equal(matrix.arrays_[0], rel.maps[2])
    assert rel.plot(tokens=[3, "[match]"]).titles_ == ["square", "[ENC]: match decision"]
    assert fig.get_suptitle() == "my figure" and tuple(fig.get_size_inches()) == (12, 4)
    assert len(colorbars(fig)) == 2
    assert_inside_figure([ax.title for ax in alone.axes_])
    with pytest.raises(InputError, match="no token 'dog'"):
        rel.overlay(tokens="dog")
    with pytest.raises(InputError, match="has no signed maps"):
        rel.overlay(signed=True)
    with pytest.raises(InputError, match="not both"):
        rel.overlay(ax=axes[0], axes=axes)


def _drawn_texts(fig):
    """Visible texts but the tick labels of colorbars outside their view (never drawn)."""
    hidden = set()
    for bar in colorbars(fig):
        axis = bar.ax.xaxis if bar.orientation == "horizontal" else bar.ax.yaxis
        low, high = sorted(axis.get_view_interval())
        ticks = axis.get_major_ticks()
        hidden |= {id(t.label1) for t in ticks if not low - 1e-9 <= t.get_loc() <= high + 1e-9}
    return [t for t in visible_texts(fig) if id(t) not in hidden]


def test_compare_explanations_five_methods_with_their_aucs(tiny):
    import blipviz

    assert "compare_explanations" in blipviz.__all__
    text = "a red square and a green block"
    display = blipviz.compare_explanations(tiny, _picture(), text, evaluate=True, steps=2)
    table = display.evaluation_.table
    assert [t.split("\n")[0].split(",")[0] for t in display.titles_] == [
        "cross-attention",
        "GradCAM",
        "relevancy",
        "rollout",
        "occlusion",
    ]
    for title, method in zip(display.titles_, display.explanations_, strict=True):
        assert f"del. {table.loc[method, 'deletion_auc']:.3f}" in title
        assert f"ins. {table.loc[method, 'insertion_auc']:.3f}" in title
    assert f"{table.loc['random', 'deletion_auc']:.3f}" in display.figure_.get_suptitle()
    assert len(display.colorbars_) == 5 and len(colorbars(display.figure_)) == 5
    occlusion = display.norms_[-1]
    assert occlusion.vmin == -occlusion.vmax  # signed: drops and rises, centred at zero
    assert all(norm.vmin == 0 for norm in display.norms_[:-1])
    np.testing.assert_array_equal(display.explanations_["occlusion"].match_map, display.maps[-1])
    texts = _drawn_texts(display.figure_)
    assert_inside_figure(texts)
    assert_no_overlap(texts + [bar.ax for bar in display.colorbars_])
    shared = blipviz.compare_explanations(tiny, _picture(), text, ["relevancy", "occlusion"], scale="shared")
    assert len(shared.colorbars_) == 1 and shared.norms_[0].vmin == -1.0 and shared.norms_[0].vmax == 1.0
    assert "AUC" not in " ".join(shared.titles_)


def test_gradcam_keeps_its_signed_maps_before_clipping(tiny):
    """GradCAM clips the gradient at 0 (LAVIS's recipe); its maps before clipping are kept and drawn
    on the diverging key centred at zero on request, whether made by explain or by model.gradcam."""
    text = "a red square and a green block"
    cam = tiny.explain(_picture(), text, "gradcam")
    assert cam.signed and cam.signed_maps.shape == cam.maps.shape
    assert np.all(cam.maps >= cam.signed_maps - 1e-6)  # clipping the gradient only raises a map
    assert (cam.signed_maps < 0).any()
    np.testing.assert_allclose(cam.signed_match_map, cam.signed_maps[1:-1].mean(axis=0), rtol=1e-6)
    default = cam.overlay(tokens="[match]")
    assert default.norms_[0].vmin == 0  # LAVIS's GradCAM as it is unless asked
    signed = cam.overlay(tokens="[match]", signed=True)
    assert signed.norms_[0].vmin == -signed.norms_[0].vmax
    assert "not clipped" in signed.colorbar_.ax.get_ylabel()
    assert "gradient (not clipped)" in signed.title_ and "positive gradient" in default.title_
    result = tiny.gradcam(_picture(), text)
    np.testing.assert_array_equal(result.signed_maps, cam.signed_maps)
    grid = result.plot(signed=True, tokens=[2])
    assert all(norm.vmin == -norm.vmax for norm in grid.norms_)


def test_compare_explanations_draws_explanations_already_computed(tiny):
    import pytest

    import blipviz
    from blipviz.errors import InputError

    text = "a red square and a green block"
    made = {m: tiny.explain(_picture(), text, m) for m in ("rollout", "relevancy")}
    display = blipviz.compare_explanations(tiny, _picture(), text, explanations=made)
    assert display.explanations_ == made and display.titles_ == ["rollout", "relevancy"]
    np.testing.assert_array_equal(display.maps[0], made["rollout"].match_map)
    with pytest.raises(InputError, match="not the text given"):
        blipviz.compare_explanations(tiny, _picture(), "another text", explanations=made)
    with pytest.raises(InputError, match="evaluate=True"):
        blipviz.compare_explanations(tiny, _picture(), text, explanations=made, evaluate=True)
