"""The figures and tables of a retrieval evaluation: recall@K curves (image test and geometry) and
the failure table's HTML with thumbnails. The image test draws fixed ranks."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import blipviz
from blipviz.analysis.retrieval import METRIC_KEYS
from blipviz.display.retrieval import DIRECTION_NAMES, RecallCurveDisplay, RetrievalFailures
from blipviz.testing.data import retrieval_fixture_captions, retrieval_fixture_image
from blipviz.testing.figures import assert_inside_figure, assert_no_overlap, image_comparison, visible_texts

N_IMAGES, N_CAPTIONS = 8, 4


@pytest.fixture(scope="module")
def evaluation(tiny):
    rng = np.random.default_rng(5)
    images = [retrieval_fixture_image(i, rng) for i in range(N_IMAGES)]
    captions = [c for i in range(N_IMAGES) for c in retrieval_fixture_captions(i, N_CAPTIONS)]
    text_image = [i for i in range(N_IMAGES) for _ in range(N_CAPTIONS)]
    labels = [f"shape {i}.jpg" for i in range(N_IMAGES)]
    return blipviz.evaluate_retrieval(
        tiny, images, captions, text_image=text_image, k_test=16, labels=labels, benchmark="fixture shapes"
    )


# The image test draws fixed ranks (the tiny net's), not the net's: their scores' last bits follow the
# CPU's kernels, and equal or near-equal scores can rank the other way (blipviz.testing.figures).
FIXED_RANKS_I2T = [1, 2, 4, 5, 0, 0, 12, 13]
FIXED_RANKS_T2I = [  # the 4 captions of each image in turn
    0, 1, 0, 3,  1, 3, 1, 0,  4, 6, 5, 4,  7, 5, 6, 1,  3, 0, 7, 6,  5, 7, 2, 0,  2, 3, 2, 2,  7, 7, 7, 6,
]  # fmt: skip


def with_ranks(evaluation, ranks_i2t, ranks_t2i):
    """The evaluation with the given ranks and the recalls they give (BLIP's itm_eval)."""
    ranks_i2t, ranks_t2i = np.asarray(ranks_i2t), np.asarray(ranks_t2i)
    tr = [100.0 * np.mean(ranks_i2t < k) for k in (1, 5, 10)]
    ir = [100.0 * np.mean(ranks_t2i < k) for k in (1, 5, 10)]
    tr_mean, ir_mean = sum(tr) / 3, sum(ir) / 3
    values = [*tr, tr_mean, *ir, ir_mean, (tr_mean + ir_mean) / 2]
    metrics = dict(zip(METRIC_KEYS, values, strict=True))
    return dataclasses.replace(evaluation, ranks_i2t=ranks_i2t, ranks_t2i=ranks_t2i, metrics=metrics)


def test_with_ranks_gives_the_evaluations_recalls(evaluation):
    same = with_ranks(evaluation, evaluation.ranks_i2t, evaluation.ranks_t2i)
    assert same.metrics == pytest.approx(evaluation.metrics)


@image_comparison()
def test_recall_curves_figure(evaluation):
    return with_ranks(evaluation, FIXED_RANKS_I2T, FIXED_RANKS_T2I).plot().figure_


def test_recall_curves_show_both_directions_with_legend_beside_and_labels_apart(evaluation):
    display = evaluation.plot()
    fig, ax = display.figure_, display.ax_
    assert isinstance(display, RecallCurveDisplay)
    for direction in ("i2t", "t2i"):
        np.testing.assert_array_equal(
            display.lines_[direction].get_ydata(), evaluation.recall_curve(direction)
        )
        assert display.lines_[direction].get_xdata()[-1] == evaluation.candidates(direction)
    i2t_r1 = evaluation.metrics["txt_r1"]
    legend = [t.get_text() for t in display.legend_.get_texts()]
    assert legend[0].startswith(DIRECTION_NAMES["i2t"]) and f"R@1 {i2t_r1:.1f}" in legend[0]
    assert display.lines_["i2t"].get_color() != display.lines_["t2i"].get_color()
    title = ax.get_title()
    assert "tiny-random" in title and "fixture shapes" in title and f"{N_IMAGES} images" in title
    assert ax.get_xlabel() and ax.get_ylabel()
    texts = visible_texts(fig)
    assert_inside_figure(texts)
    assert_inside_figure([display.legend_])
    assert_no_overlap(visible_texts(fig, include_ticks=False))
    # the legend stands beside the data (it once hid the R@5 markers), its entries say line and marker
    legend_box = display.legend_.get_window_extent()
    assert legend_box.x0 >= ax.get_window_extent().x1
    for direction in ("i2t", "t2i"):
        assert display.markers_[direction].get_marker() != "None"
    assert display.markers_["i2t"].get_marker() != display.markers_["t2i"].get_marker()
    assert display.lines_["i2t"].get_linestyle() != display.lines_["t2i"].get_linestyle()


def test_recall_curves_on_given_axes_and_bad_curves(evaluation):
    import matplotlib.pyplot as plt

    _, ax = plt.subplots()
    display = evaluation.plot(ax=ax, max_k=10, log_x=False)
    assert display.ax_ is ax and len(display.lines_["t2i"].get_xdata()) == 10
    with pytest.raises(blipviz.InputError, match="keyed"):
        RecallCurveDisplay({"both": np.ones(3)})


@pytest.mark.parametrize("direction", ["i2t", "t2i"])
def test_failure_table_html_has_thumbnails_and_texts(evaluation, direction):
    failures = evaluation.failures(direction, n=3)
    assert isinstance(failures, RetrievalFailures) and len(failures) == 3
    page = failures._repr_html_()
    table = failures.to_pandas()
    images_shown = 3 if direction == "i2t" else sum(1 + len(a) for a in table["above"])
    assert page.count("<img ") == images_shown
    assert page.count("<tr>") == 1 + 3
    for row in table.itertuples(index=False):
        text = row.true_item if direction == "i2t" else row.query_item
        assert text in page
    assert "rank 1 = first" in page and f"{evaluation.candidates(direction)} candidates" in page


def test_failure_title_keeps_a_long_net_name_whole(evaluation):
    failures = evaluation.failures("t2i", n=2)
    failures.model_name = "Salesforce/blip-itm-large-flickr (random weights, int8, bfloat16 on cuda:0)"
    failures.benchmark = "Flickr30k 1K test split, karpathy annotations"
    page = failures.to_html()
    assert failures.model_name in page and failures.benchmark in page and "…" not in page.split("</b>")[0]


def test_recall_axis_ticks_reach_where_the_curves_end(evaluation):
    ax = evaluation.plot().ax_
    ticks = [int(t) for t in ax.get_xticks()]
    longest = max(evaluation.candidates(d) for d in ("i2t", "t2i"))
    assert ticks[:3] == [1, 2, 5] and ticks[-1] <= longest < 2 * ticks[-1]


@pytest.mark.parametrize(
    ("longest", "last"),
    [(8, ["2", "5", "8"]), (128, ["20", "50", "100"]), (1_000, ["500", "1,000"]),
     (5_000, ["100", "1,000", "5,000"]), (25_000, ["100", "1,000", "10,000"])],
)  # fmt: skip
def test_recall_axis_labels_stay_apart_whatever_the_length(longest, last):
    import matplotlib.pyplot as plt

    curve = np.linspace(0, 100, longest)
    display = RecallCurveDisplay({"i2t": curve, "t2i": curve[: max(1, longest // 5)]}).plot()
    labels = [t.get_text() for t in display.ax_.get_xticklabels()]
    assert labels[0] == "1" and labels[-len(last) :] == last, labels  # separators, where the curves end
    assert_no_overlap(visible_texts(display.figure_))
    plt.close(display.figure_)
