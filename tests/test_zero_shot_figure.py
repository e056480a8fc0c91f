"""Zero-shot figures: an image beside its top-k class texts, and the confusion matrix.

Image tests (fixed synthetic pictures, fixed scores) pin the drawings; geometric tests measure what
a reader needs: labels apart and inside the figure, the image itself, a colorbar, titles naming the
net and the method. A slow test renders both on sample photographs with the full ViT-B/16 geometry.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.colors import to_rgba
from matplotlib.image import AxesImage

import blipviz
from blipviz import InputError, InputTypeError, ZeroShotClassifier, ZeroShotEvaluation, evaluate_zero_shot
from blipviz.display.rules import CATEGORICAL
from blipviz.display.zero_shot import TopKDisplay, confusion_title, plot_confusion_matrix
from blipviz.testing import assert_close
from blipviz.testing.data import retrieval_fixture_image
from blipviz.testing.figures import (
    assert_inside_figure,
    assert_no_overlap,
    colorbars,
    image_comparison,
    visible_texts,
)

LABELS = ["cat", "astronaut", "coffee", "rocket", "dog", "car"]
TEMPLATE = "a photo of a {}"


@pytest.fixture(scope="module")
def model():
    return blipviz.load_model("tiny-random")


@pytest.fixture(scope="module")
def pictures():
    """Six 64 x 48 RGB pictures: coloured shapes on grey noise (fixed seed)."""
    rng = np.random.default_rng(0)
    return [retrieval_fixture_image(i, rng) for i in range(6)]


@pytest.fixture(scope="module")
def classifier(model):
    return ZeroShotClassifier(model, LABELS, template=TEMPLATE)


def _check_readable(fig) -> None:
    texts = visible_texts(fig)
    assert_no_overlap(texts)
    assert_inside_figure(texts)


# ------------------------------------------------------------------------------------ top k


def test_top_k_figure_shows_the_image_beside_its_ranked_class_texts(classifier, pictures):
    display = classifier.plot_top_k(pictures[0], k=4, true_label="Cat")
    table = classifier.top_k(pictures[0], k=4)
    # the same ranking as top_k, which still returns its DataFrame
    assert display.table.equals(table) and list(table.columns) == ["label", "score"]
    shown = [t.get_text() for t in display.ax_.get_yticklabels()]
    assert shown == [TEMPLATE.format(label) for label in table["label"]]
    np.testing.assert_allclose([bar.get_width() for bar in display.bars_], table["score"])
    assert [t.get_text() for t in display.value_texts_] == [f"{v:.3f}" for v in table["score"]]
    # the image itself, at its own size
    images = [a for a in display.ax_image_.get_children() if isinstance(a, AxesImage)]
    assert images == [display.im_]
    assert display.im_.get_array().shape == (48, 64, 3)
    np.testing.assert_array_equal(display.im_.get_array(), np.asarray(pictures[0]))
    # the true class stands out by colour and hatching; the title names the image, the net, the
    # method and the score kind
    base, highlight = (to_rgba(c) for c in CATEGORICAL[:2])
    for bar, label in zip(display.bars_, table["label"], strict=True):
        assert bar.get_facecolor() == (highlight if label == "cat" else base), label
        assert bool(bar.get_hatch()) == (label == "cat")
    title = display.figure_.get_suptitle()
    rank = list(classifier.top_k(pictures[0], k=6)["label"]).index("cat") + 1
    for part in ("image 0", "top 4 of 6 classes", f"true class: cat, rank {rank}", "tiny-random", "ITM"):
        assert part in title, part
    assert "ITM match probability" in title
    _check_readable(display.figure_)


def test_top_k_figure_of_each_method_names_its_scores(model, pictures):
    for method, words in (("cosine", "cosine similarity"), ("rerank", "ITM rerank of the best 2")):
        clf = ZeroShotClassifier(model, LABELS, method=method, rerank_k=2)
        display = clf.plot_top_k(pictures[1], k=6)
        assert words in display.figure_.get_suptitle()
        assert "all 6 classes ranked" in display.figure_.get_suptitle()
        table = clf.top_k(pictures[1], k=6)
        values = [t.get_text() for t in display.value_texts_]
        if method == "rerank":  # four classes were not scored by ITM: no bar, their cosine written
            assert table["score"].isna().sum() == 4
            assert sum(v.startswith("not reranked (cosine ") for v in values) == 4
        else:  # cosines may be negative: the zero line is drawn and every value stays in the axes
            assert values == [f"{v:.3f}" for v in table["score"]]
            lo, hi = display.ax_.get_xlim()
            assert lo <= min(0.0, table["score"].min()) and hi >= max(0.0, table["score"].max())
        _check_readable(display.figure_)
        plt.close(display.figure_)


def test_top_k_figure_fits_long_class_texts(model, pictures):
    long_label = "spotted brown and white long haired domestic cat sitting on a windowsill in the afternoon"
    clf = ZeroShotClassifier(model, ["cat", long_label])
    display = clf.plot_top_k(pictures[2], k=2)
    shown = [t.get_text() for t in display.ax_.get_yticklabels()]
    assert max(len(s) for s in shown) <= 80 and any("…" in s for s in shown)
    _check_readable(display.figure_)


def test_top_k_figure_from_features_and_on_given_axes(model, classifier, pictures):
    features = model.encode_images(pictures[3])
    fig, axes = plt.subplots(1, 2, figsize=(7, 3))
    fig.suptitle("my figure")
    display = classifier.plot_top_k(features, k=3, axes=axes, image_label="shape 3")
    assert display.figure_ is fig and display.ax_image_ is axes[0] and display.ax_ is axes[1]
    assert display.im_.get_array().shape[:2] == features.thumbnails[0].size[::-1]
    # a given figure keeps its title and size: the display's title goes over its bar chart
    assert "shape 3" in display.ax_.get_title() and fig.get_suptitle() == "my figure"
    assert tuple(fig.get_size_inches()) == (7, 3)
    assert_close(
        display.table["score"].to_numpy(),
        classifier.top_k(pictures[3], k=3)["score"].to_numpy(),
        depth=2,
        magnitude=1.0,
    )


def test_top_k_figure_refuses_what_it_cannot_draw(model, classifier, pictures):
    pixels = model.preprocessing(pictures[0])
    with pytest.raises(InputTypeError, match="preprocessed pixels"):
        classifier.plot_top_k(pixels)
    with pytest.raises(InputError, match="one image"):
        classifier.plot_top_k(pictures[:2])
    with pytest.raises(InputError, match="'bird' is not one of the labels"):
        classifier.plot_top_k(pictures[0], true_label="bird")
    with pytest.raises(InputError):
        classifier.plot_top_k(pictures[0], k=0)
    features = model.encode_images(pictures[0])
    features.thumbnails = None
    with pytest.raises(InputError, match="no thumbnail"):
        classifier.plot_top_k(features)
    with pytest.raises(InputError, match="3 entries for 2"):
        TopKDisplay(pictures[0], ["a", "b"], [0.1, 0.2, 0.3])
    with pytest.raises(InputError, match="method"):
        TopKDisplay(pictures[0], ["a"], [0.1], method="softmax")


def test_top_k_figure_draws_no_net(classifier, pictures):
    """A display draws computed data: the same data drawn twice gives the same figure."""
    table = classifier.top_k(pictures[0], k=3)
    first = TopKDisplay(pictures[0], table["label"], table["score"]).plot()
    second = TopKDisplay(pictures[0], table["label"], table["score"]).plot()
    assert [t.get_text() for t in visible_texts(first.figure_)] == [
        t.get_text() for t in visible_texts(second.figure_)
    ]


# The image tests draw fixed scores (the tiny net's, rounded), not the net's: their last bits follow
# the CPU's kernels, and a figure can turn them into another printed digit or another order
# (blipviz.testing.figures). Rows: the six pictures, columns: LABELS.
FIXED_SCORES = np.array(
    [
        [0.382, 0.192, 0.157, 0.780, 0.376, 0.588],
        [0.830, 0.840, 0.775, 0.944, 0.890, 0.850],
        [0.187, 0.347, 0.026, 0.168, 0.358, 0.219],
        [0.951, 0.961, 0.888, 0.936, 0.999, 0.946],
        [0.921, 0.302, 0.456, 0.902, 0.772, 0.504],
        [0.555, 0.938, 0.117, 0.422, 0.857, 0.822],
    ]
)


@image_comparison()
def test_top_k_figure_image(classifier, pictures):
    """What ``classifier.plot_top_k(pictures[0], k=4, true_label="cat", image_label="red circle")``
    draws, from the fixed scores of picture 0."""
    order = np.argsort(-FIXED_SCORES[0], kind="stable")
    best = [LABELS[i] for i in order[:4]]
    display = TopKDisplay(
        pictures[0],
        [TEMPLATE.format(label) for label in best],
        FIXED_SCORES[0, order[:4]],
        labels=best,
        method=classifier.method,
        net=classifier.model.name,
        image_label="red circle",
        true_label="cat",
        n_classes=len(LABELS),
        true_rank=int(np.flatnonzero(order == LABELS.index("cat"))[0]) + 1,
    )
    return display.plot().figure_


# ------------------------------------------------------------------------------ confusion matrix


@pytest.fixture(scope="module")
def evaluation(classifier, pictures):
    return evaluate_zero_shot(classifier, pictures, LABELS)


def test_confusion_matrix_names_net_method_and_template(evaluation):
    assert (evaluation.net, evaluation.template, evaluation.method) == ("tiny-random", TEMPLATE, "itm")
    display = evaluation.plot()
    title = display.ax_.get_title()
    assert "zero-shot confusion — tiny-random, ITM, template 'a photo of a {}'" in title
    assert "6 images" in title
    np.testing.assert_array_equal(display.im_.get_array(), evaluation.confusion_matrix)
    assert colorbars(display.figure_) == [display.colorbar_]
    assert display.colorbar_.ax.get_ylabel() == "images"
    assert [t.get_text() for t in display.ax_.get_xticklabels()] == LABELS
    assert all(t.get_rotation() == 90 for t in display.ax_.get_xticklabels())
    _check_readable(display.figure_)


def test_confusion_matrix_normalised_and_long_labels():
    labels = ["a", "b", "a class name that is far longer than eighty characters, " + "x " * 30 + "end"]
    scores = np.eye(3)[[0, 1, 2, 2, 0]]
    ev = ZeroShotEvaluation.from_scores(scores, [0, 1, 2, 1, 0], labels, method="rerank", rerank_k=2)
    display = ev.plot(normalize="true")
    assert "cosine + ITM rerank of the best 2" in display.ax_.get_title()
    # wrapped to the height of the 3 x 3 matrix: the title sits where a longer label would reach
    assert display.colorbar_.ax.get_ylabel().replace("\n", " ") == "fraction of the true class's images"
    ticks = [t.get_text() for t in display.ax_.get_yticklabels()]
    assert ticks[:2] == ["a", "b"] and len(ticks[2]) <= 80 and ticks[2].endswith("end")
    np.testing.assert_allclose(np.diag(display.im_.get_array()), ev.per_class_accuracy.to_numpy())
    _check_readable(display.figure_)
    fig, ax = plt.subplots()
    bare = ev.plot(ax=ax, colorbar=False, title="mine")
    assert bare.colorbar_ is None and colorbars(fig) == [] and ax.get_title() == "mine"
    with pytest.raises(InputError):
        ev.plot(normalize="rows")
    with pytest.raises(InputError, match="shape"):
        plot_confusion_matrix(np.eye(2), labels)


def test_confusion_title_without_a_net():
    assert confusion_title() == ["zero-shot confusion", "rows: true class, columns: predicted class"]


@image_comparison()
def test_confusion_matrix_image(evaluation):
    fixed = ZeroShotEvaluation.from_scores(
        FIXED_SCORES,
        evaluation.true,
        evaluation.labels,
        image_labels=evaluation.image_labels,
        method=evaluation.method,
        net=evaluation.net,
        template=evaluation.template,
    )
    return fixed.plot().figure_


# ---------------------------------------------------------------------------- full geometry


@pytest.mark.slow
def test_figures_on_sample_photographs_with_the_full_geometry(full_b):
    gallery = blipviz.datasets.sample_images(["chelsea", "astronaut", "coffee", "rocket"])
    clf = ZeroShotClassifier(full_b, LABELS, template=TEMPLATE)
    top = clf.plot_top_k(gallery.images[0], k=6, image_label="chelsea", true_label="cat")
    assert top.im_.get_array().shape == (*gallery.images[0].size[::-1], 3)
    assert "random weights" in top.figure_.get_suptitle()
    _check_readable(top.figure_)
    with torch.inference_mode():
        ev = evaluate_zero_shot(clf, gallery.images, ["cat", "astronaut", "coffee", "rocket"])
    confusion = ev.plot()
    assert confusion.im_.get_array().sum() == 4
    _check_readable(confusion.figure_)
