"""The image x text heatmap as a reader sees it: thumbnails letterboxed into their columns, whole
and distinct row labels, true pairs outlined, a colorbar and a title naming the score and the net.

Image tests (``@image_comparison``) draw fixed scores and compare with ``tests/baseline``; the
geometric tests measure the drawn artists of the net's scores in display pixels.
"""

import dataclasses

import numpy as np
import pytest
from matplotlib.image import AxesImage
from matplotlib.patches import Rectangle

import blipviz
from blipviz.display.labels import fit_text
from blipviz.display.plotting import THUMBNAIL_GAP, heatmap_row_labels, heatmap_title, letterbox
from blipviz.testing.figures import (
    assert_inside_figure,
    assert_no_overlap,
    colorbars,
    image_comparison,
    visible_texts,
)

# (height, width) of the fixed synthetic photographs: landscape, portrait, square, panorama
SHAPES = [(48, 72), (80, 36), (50, 50), (24, 96)]
LABELS = ["landscape.jpg", "portrait.jpg", "square.jpg", "panorama.jpg"]
# hard negatives: pairs that differ only in their last words, two of them beyond 80 characters
HARD_NEGATIVES = [
    "two ladies in a park drinking tea",
    "two ladies in a park eating pizza",
    "an astronaut holding a helmet in front of a flag, smiling at the camera on a sunny day",
    "an astronaut holding a helmet in front of a flag, smiling at the camera on a rainy day",
    "a cup of coffee",
]
PAIRS = [(0, 0), (1, 1), (2, 2), (3, 4)]  # (image, text)


def _photos():
    return [blipviz.testing.synthetic_images(1, seed=10 + k, size=shape)[0] for k, shape in enumerate(SHAPES)]


@pytest.fixture(scope="module")
def itm(tiny):
    return tiny.itm_scores(_photos(), HARD_NEGATIVES, labels=LABELS)


# The image tests draw fixed scores (the tiny net's, rounded), not the net's: their last bits follow
# the CPU's kernels, and a figure can turn them into another printed digit or another sort order
# (blipviz.testing.figures). Rows: images, columns: texts.
FIXED_ITM = [
    [0.838, 0.988, 0.307, 0.641, 0.858],
    [0.952, 0.976, 0.862, 0.880, 0.774],
    [0.993, 0.923, 0.918, 0.943, 0.767],
    [0.757, 0.979, 0.874, 0.868, 0.897],
]
FIXED_COSINE = [
    [0.0019, -0.0305, -0.0348],
    [0.0326, -0.0395, -0.0425],
    [-0.0515, -0.0813, -0.0818],
]


def _column_box(disp, x):
    """Display-pixel (left, right) of drawn column ``x`` and the top of the heatmap cells."""
    transform = disp.ax_.transData
    (left, top), (right, _) = transform.transform([(x - 0.5, -0.5), (x + 0.5, -0.5)])
    return left, right, top


# ----------------------------------------------------------------------------------- images
@image_comparison()
def test_figure_heatmap_mixed_thumbnails_hard_negatives_highlight(itm):
    fixed = dataclasses.replace(itm, values=FIXED_ITM)
    return fixed.with_true_pairs(PAIRS).plot().figure_


@image_comparison()
def test_figure_heatmap_cosine_sorted_with_diagonal(tiny):
    photos = _photos()[:3]
    texts = HARD_NEGATIVES[1:4]
    cosine = tiny.cosine_scores(photos, texts, labels=LABELS[:3])
    fixed = dataclasses.replace(cosine, values=FIXED_COSINE)
    return fixed.plot(highlight="diagonal", sort="rows").figure_


# -------------------------------------------------------------------------------- geometry
def test_thumbnails_are_letterboxed_inside_their_columns_with_a_gap(itm):
    disp = itm.plot(sort="columns")
    fig = disp.figure_
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    assert len(disp.thumbnails_) == len(SHAPES)
    assert all(isinstance(t, AxesImage) for t in disp.thumbnails_)
    centres_y = []
    for x, (thumb, j) in enumerate(zip(disp.thumbnails_, disp.column_order_, strict=True)):
        box = thumb.get_window_extent(renderer)
        left, right, heatmap_top = _column_box(disp, x)
        half_gap = THUMBNAIL_GAP * (right - left) / 2.0
        # inside its column, a gap on each side (1 px for rounding), above the cells
        assert box.x0 >= left + half_gap - 1.0, (LABELS[j], box, left)
        assert box.x1 <= right - half_gap + 1.0, (LABELS[j], box, right)
        assert box.y0 >= heatmap_top + half_gap - 1.0
        # centred on its column, its own aspect ratio kept
        assert abs((box.x0 + box.x1) / 2.0 - (left + right) / 2.0) <= 1.0
        h, w = SHAPES[j]
        assert abs(box.width / box.height - w / h) <= 2.0 / min(box.height, box.width) * (w / h + 1)
        assert thumb.get_array().shape[:2] == itm.thumbnails[j].size[::-1]
        centres_y.append((box.y0 + box.y1) / 2.0)
    # one row: every thumbnail centred on the same line, none overlapping another
    assert max(centres_y) - min(centres_y) <= 1.0
    assert_no_overlap(disp.thumbnails_, pad_px=0.0, what="thumbnails")


def test_letterbox_fits_the_box_whatever_the_aspect_ratio():
    for h, w in [(10, 40), (40, 10), (25, 25)]:
        left, right, bottom, top = letterbox((h, w), (3.0, -1.0), (0.8, 1.2))
        assert right - left <= 0.8 + 1e-12 and bottom - top <= 1.2 + 1e-12
        assert max(right - left == pytest.approx(0.8), bottom - top == pytest.approx(1.2))  # fills one side
        assert (right - left) / (bottom - top) == pytest.approx(w / h)
        assert (left + right) / 2 == pytest.approx(3.0) and (top + bottom) / 2 == pytest.approx(-1.0)


def test_labels_are_apart_and_inside_the_figure(itm):
    disp = itm.with_true_pairs(PAIRS).plot()
    texts = visible_texts(disp.figure_)
    assert_no_overlap(texts)
    assert_inside_figure(texts)
    # the thumbnails, colorbar and legend are inside the figure too
    assert_inside_figure([*disp.thumbnails_, disp.colorbar_.ax, disp.legend_])
    # no thumbnail covers a label
    assert_no_overlap([*disp.thumbnails_, *texts], what="thumbnails and labels")


def test_hard_negatives_keep_the_words_that_tell_them_apart(itm):
    disp = itm.plot()
    shown = [t.get_text() for t in disp.ax_.get_yticklabels()]
    flat = [" ".join(label.split()) for label in shown]
    assert len(set(flat)) == len(HARD_NEGATIVES)
    for text, label in zip(HARD_NEGATIVES, flat, strict=True):
        if len(text) <= 80:  # whole, wrapped at spaces only
            assert label == text
        else:  # middle-elided at word boundaries: the first and the last words kept
            assert label == fit_text(text) and "…" in label
            assert label.endswith(" ".join(text.split()[-2:]))
            assert label.startswith(" ".join(text.split()[:3]))
    # wrapped onto at most two lines, each shorter than the whole text
    assert all(label.count("\n") <= 1 for label in shown)
    assert any("\n" in label for label in shown)


def test_equal_labels_are_numbered_and_long_words_never_cut():
    labels = heatmap_row_labels(["a cat", "a dog", "a cat"])
    assert labels == ["a cat (1)", "a dog", "a cat (2)"]
    text = "x" * 30 + " " + "y" * 30  # two long words: wrapped between them, neither cut
    assert heatmap_row_labels([text]) == ["x" * 30 + "\n" + "y" * 30]


def test_colorbar_and_default_title_name_the_score_and_the_net(tiny, itm):
    disp = itm.plot()
    # the colorbar sits in an inset Axes of the heatmap (to align it with the cells), which
    # Figure.axes does not list: colorbars() looks in inset Axes too
    bars = colorbars(disp.figure_)
    assert len(bars) == 1 and bars[0] is disp.colorbar_
    assert disp.colorbar_.ax.get_ylabel() == "ITM match probability"
    assert disp.colorbar_.mappable is disp.im_
    title = " ".join(disp.ax_.get_title().split())
    assert title == f"ITM match probability — {tiny.name}"
    assert itm.model_name == tiny.name
    # the colorbar is as tall as the cells, not the thumbnail band
    fig = disp.figure_
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    bar = disp.colorbar_.ax.get_window_extent(renderer)
    cells = disp.im_.get_window_extent(renderer)
    assert abs(bar.y0 - cells.y0) <= 1.0 and abs(bar.y1 - cells.y1) <= 1.0
    # a title given, or none
    assert itm.plot(title="mine").ax_.get_title() == "mine"
    assert itm.plot(title="").ax_.get_title() == ""


def test_cosine_title_and_unknown_net():
    s = blipviz.ScoreMatrix(np.zeros((1, 1)), ["a"], ["x"], "cosine")
    assert s.plot().ax_.get_title() == "cosine similarity"


def test_sorted_title_says_so_and_no_cell_reads_minus_zero():
    values = np.array([[-0.001, 0.2], [-0.3, 0.004]])  # (images, texts)
    s = blipviz.ScoreMatrix(values, ["t1", "t2"], ["a", "b"], "cosine", model_name="net-x")
    for sort, phrase in [("rows", "texts sorted by mean"), ("both", "texts and images sorted by mean")]:
        disp = s.plot(sort=sort)
        title = disp.ax_.get_title()
        assert title.startswith("cosine similarity") and phrase in title and "net-x" in title
        cells = {t.get_text() for t in disp.text_.ravel()}
        assert cells == {"0.00", "0.20", "-0.30"}  # -0.001 reads 0.00; -0.30 keeps its sign
    assert "sorted" not in s.plot().ax_.get_title()
    # one image, both orders and a long net name: three lines, all inside the figure
    one = blipviz.ScoreMatrix(
        values[:1], ["t1", "t2"], ["a"], "itm", model_name="Salesforce/blip-itm-large-flickr"
    )
    disp = one.plot(sort="both")
    assert disp.ax_.get_title().count("\n") == 2
    assert_inside_figure(visible_texts(disp.figure_))
    with pytest.raises(blipviz.InputError, match="unknown sort"):
        heatmap_title("itm", "net", sort="bogus")


def _outlined_cells(disp):
    cells = []
    for patch in disp.ax_.patches:
        if isinstance(patch, Rectangle) and not patch.get_fill():
            x, y = patch.get_xy()
            cells.append((round(y + patch.get_height() / 2), round(x + patch.get_width() / 2)))
            # inside its own cell
            assert x > round(x + patch.get_width() / 2) - 0.5 and x + patch.get_width() < round(x) + 1.5
    return sorted(cells)


@pytest.mark.parametrize("sort", [None, "both"])
def test_highlighted_cells_are_outlined_exactly(itm, sort):
    disp = itm.plot(highlight=PAIRS, sort=sort)
    rows = list(disp.row_order_)
    cols = list(disp.column_order_)
    expected = sorted((rows.index(text), cols.index(image)) for image, text in PAIRS)
    assert _outlined_cells(disp) == expected
    assert len(disp.highlights_) == len(PAIRS)
    np.testing.assert_array_equal(np.argwhere(disp.highlighted_), np.array(expected))
    assert [t.get_text() for t in disp.legend_.get_texts()] == ["true pair"]
    # a boolean mask is the same as the pairs; the scores' own pairs are the default
    mask = np.zeros(itm.shape, dtype=bool)
    mask[tuple(np.array(PAIRS).T)] = True
    assert _outlined_cells(itm.plot(highlight=mask, sort=sort)) == expected
    assert _outlined_cells(itm.with_true_pairs(PAIRS).plot(sort=sort)) == expected
    assert _outlined_cells(itm.with_true_pairs(PAIRS).plot(sort=sort, highlight=False)) == []


def test_no_outline_unless_asked_even_for_a_square_matrix(tiny):
    square = tiny.itm_scores(_photos()[:2], HARD_NEGATIVES[:2])
    disp = square.plot()
    assert disp.highlights_ == [] and disp.legend_ is None and square.true_pairs is None
    assert _outlined_cells(square.plot(highlight="diagonal")) == [(0, 0), (1, 1)]


def test_bad_highlights_raise_named_errors(itm):
    with pytest.raises(blipviz.InputError, match="as many texts as images"):
        itm.plot(highlight="diagonal")  # 4 images, 5 texts
    with pytest.raises(blipviz.InputError, match=r"pair 1 is \(image 7, text 0\)"):
        itm.plot(highlight=[(0, 0), (7, 0)])
    with pytest.raises(blipviz.InputError, match="shape"):
        itm.plot(highlight=np.ones((5, 4), dtype=bool))
    with pytest.raises(blipviz.InputError, match="unknown pairs"):
        itm.with_true_pairs("anti-diagonal")
    with pytest.raises(blipviz.InputError, match="int pairs"):
        itm.plot(highlight=[(0.5, 1.0)])
    with pytest.raises(blipviz.InputError, match="thumbnail_height"):
        itm.plot(thumbnail_height=0)


def test_true_pairs_are_stored_as_a_mask_and_kept_by_copies(itm):
    marked = itm.with_true_pairs(PAIRS)
    assert marked.true_pairs.dtype == bool and marked.true_pairs.shape == itm.shape
    assert int(marked.true_pairs.sum()) == len(PAIRS)
    assert itm.true_pairs is None  # the original is unchanged
    assert marked.model_name == itm.model_name and marked.texts == itm.texts
    built = blipviz.ScoreMatrix(np.zeros((2, 2)), ["a", "b"], ["x", "y"], true_pairs="diagonal")
    np.testing.assert_array_equal(built.true_pairs, np.eye(2, dtype=bool))


def test_scores_carry_the_net_name(tiny, small_images):
    itm, cosine = tiny.scores(small_images[:1], ["a dog"])
    assert itm.model_name == cosine.model_name == tiny.name
    assert tiny.cosine_scores(small_images[:1], ["a dog"]).model_name == tiny.name


def test_given_axes_are_used_and_labels_fit(itm):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from blipviz.display.plotting import score_matrix_figsize

    fig = Figure(figsize=score_matrix_figsize(itm), layout="constrained")  # as the explorer draws it
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    disp = itm.plot(ax=ax)
    assert disp.ax_ is ax and disp.figure_ is fig
    texts = visible_texts(fig)
    assert_no_overlap(texts)
    assert_inside_figure(texts)
