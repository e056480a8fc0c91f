import numpy as np
import pytest
from matplotlib.image import AxesImage
from PIL import Image

import blipviz
from blipviz.display.labels import fit_text, wrap_text
from blipviz.display.plotting import ScoreMatrixDisplay


def _scores(n_images, n_texts, kind="itm", thumbs=True, seed=0):
    rs = np.random.RandomState(seed)
    thumbnails = (
        [Image.fromarray(rs.randint(0, 255, (30, 45, 3)).astype(np.uint8)) for _ in range(n_images)]
        if thumbs
        else None
    )
    return blipviz.ScoreMatrix(
        rs.rand(n_images, n_texts),
        [f"text {i}" for i in range(n_texts)],
        [f"img{i}.jpg" for i in range(n_images)],
        kind,
        thumbnails,
    )


@pytest.mark.parametrize(("n_images", "n_texts"), [(1, 1), (3, 4), (50, 50)])
def test_heatmap_array_ticks_and_thumbnails(n_images, n_texts):
    s = _scores(n_images, n_texts)
    disp = s.plot()
    assert isinstance(disp, ScoreMatrixDisplay)
    np.testing.assert_array_equal(disp.im_.get_array(), s.values.T)
    assert [t.get_text() for t in disp.ax_.get_yticklabels()] == s.texts
    assert [t.get_text() for t in disp.ax_.get_xticklabels()] == s.image_labels
    thumbs = [im for im in disp.ax_.images if im is not disp.im_]
    assert thumbs == disp.thumbnails_ and len(thumbs) == n_images
    assert all(isinstance(t, AxesImage) for t in thumbs)
    assert disp.figure_ is disp.ax_.figure
    assert disp.colorbar_ is not None
    # annotations only where legible
    assert (disp.text_ is not None) == (max(n_images, n_texts) <= 12)


def test_heatmap_annotations_hold_the_values():
    s = _scores(2, 3)
    disp = s.plot(annotate=True, values_format=".3f")
    assert disp.text_.shape == (3, 2)
    for i in range(3):
        for j in range(2):
            assert disp.text_[i, j].get_text() == format(s.values[j, i], ".3f")


def test_heatmap_sorting_orders_rows_and_columns_by_mean_score():
    s = _scores(4, 5, seed=3)
    disp = s.plot(sort="both", annotate=False)
    shown = disp.im_.get_array()
    assert np.all(np.diff(shown.mean(axis=1)) <= 1e-12)
    assert np.all(np.diff(shown.mean(axis=0)) <= 1e-12)
    np.testing.assert_array_equal(shown, s.values.T[disp.row_order_][:, disp.column_order_])
    assert [t.get_text() for t in disp.ax_.get_yticklabels()] == [s.texts[i] for i in disp.row_order_]
    labels = [t.get_text() for t in disp.ax_.get_xticklabels()]
    assert labels == [s.image_labels[j] for j in disp.column_order_]


def test_heatmap_on_given_axes_without_thumbnails_and_options():
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    s = _scores(2, 2, kind="cosine", thumbs=False)
    disp = s.plot(ax=ax, cmap="magma", colorbar=False)
    assert disp.ax_ is ax and disp.figure_ is fig
    assert disp.thumbnails_ == [] and list(ax.images) == [disp.im_]
    assert disp.im_.get_cmap().name == "magma"
    assert disp.colorbar_ is None
    # cosine: a diverging scale centred at zero, as wide as the largest magnitude; itm: [0, 1]
    top = np.abs(s.values).max()
    assert disp.im_.get_clim() == (-top, top)
    assert s.plot().im_.get_cmap().name == "RdBu_r"
    assert _scores(2, 2).plot().im_.get_clim() == (0.0, 1.0)
    assert _scores(2, 2).plot().im_.get_cmap().name == "viridis"


def test_heatmap_rejects_bad_options_and_empty_matrix():
    with pytest.raises(ValueError, match="sort"):
        _scores(2, 2).plot(sort="diagonal")
    empty = blipviz.ScoreMatrix(np.zeros((0, 2)), ["a", "b"], [], "itm")
    with pytest.raises(ValueError, match="nothing to plot"):
        empty.plot()


def test_long_texts_are_elided_in_the_middle():
    text = " ".join(f"word{i}" for i in range(30))
    s = blipviz.ScoreMatrix(np.ones((1, 1)) / 2, [text], ["x"], "itm")
    label = s.plot(max_label_chars=20).ax_.get_yticklabels()[0].get_text()
    assert label == wrap_text(fit_text(text, 20), 40, None)
    assert " … " in label and label.startswith("word0") and label.endswith("word29")
    assert len(label) <= 20
    # the default keeps 80 characters whole
    whole = "a man with a red umbrella walking his brown dog along a wet street in the rain"
    assert len(whole) <= 80
    shown = blipviz.ScoreMatrix(np.ones((1, 1)) / 2, [whole], ["x"], "itm").plot().ax_.get_yticklabels()
    assert " ".join(shown[0].get_text().split()) == whole


def test_heatmap_from_the_model(tiny_model, small_images):
    s = tiny_model.itm_scores(small_images, ["a red square", "noise", "a gradient", "a cat"])
    disp = s.plot()
    np.testing.assert_array_equal(disp.im_.get_array(), s.values.T)
    assert len(disp.thumbnails_) == 3
    assert disp.ax_.get_title() == f"ITM match probability — {tiny_model.name}"


def test_import_stays_light():
    import subprocess
    import sys

    code = (
        "import sys, blipviz; "
        "print([m for m in ('matplotlib', 'umap', 'sklearn', 'ipywidgets') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
