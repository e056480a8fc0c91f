"""The feature-space figure as a reader sees it: image comparisons of each layout on fixed inputs
(synthetic images, texts some longer than 80 characters, fixed 2-D coordinates), and geometric rules
measured on the maps (PCA, UMAP) of the tiny net's embeddings: callouts apart from each other and
from the thumbnails, no thumbnail covering another's centre, everything inside the figure, texts
whole up to 80 characters and elided in the middle beyond, colours from the palette, a title naming
the net, the embedding and the reduction.
"""

from __future__ import annotations

import matplotlib.colors as mcolors
import numpy as np
import pytest

import blipviz
from blipviz.analysis.feature_space import centre_per_modality, feature_space_map, reduction_parameters
from blipviz.display.feature_space import LAYOUTS, FeatureSpaceDisplay, thumbnail_points
from blipviz.display.labels import MAX_LABEL_CHARS, fit_text, palette
from blipviz.testing import MAP_CAPTIONS, MAP_PHOTOS, assert_close, synthetic_images
from blipviz.testing.figures import assert_inside_figure, assert_no_overlap, image_comparison, visible_texts

TEXTS = [
    "a red square",
    "two cats sleeping on a red sofa",
    "the Statue of Liberty in the harbour",
    "the Manhattan skyline seen from the river",
    # 83 and 121 characters: elided in the middle
    "a rocket on its launch pad at Cape Canaveral, minutes before lift-off, with its tower",
    "a portrait of a woman in a navy uniform, photographed in a studio in front of a dark backdrop "
    "and a flag with stars",
]


@pytest.fixture(scope="module")
def pictures():
    return synthetic_images(4, seed=3, size=(36, 48))


@pytest.fixture(scope="module")
def features(tiny, pictures):
    return tiny.encode_images(pictures), tiny.encode_texts(TEXTS)


@pytest.fixture(scope="module")
def smooth_features(tiny):
    """The image tests' items: four noise-free 36 x 48 pictures, a gradient and a coloured block each
    (a thumbnail moved by a pixel changes few pixels of the comparison; noise would change them all),
    and the texts."""
    yy, xx = np.mgrid[0:36, 0:48]
    pictures = []
    for k, colour in enumerate([(230, 60, 40), (40, 160, 70), (240, 200, 40), (60, 90, 220)]):
        picture = np.stack([xx * 5, yy * 7, np.full_like(xx, 50 + 60 * k)], axis=-1).astype(np.uint8)
        picture[6 + 4 * k : 20 + 4 * k, 8 + 6 * k : 24 + 6 * k] = colour
        pictures.append(picture)
    return tiny.encode_images(pictures), tiny.encode_texts(TEXTS)


def _boxes(artists) -> np.ndarray:
    """(n, 4) display extents (x0, y0, x1, y1) of drawn artists."""
    fig = artists[0].figure
    renderer = fig.canvas.get_renderer()
    return np.array([list(a.get_window_extent(renderer).extents) for a in artists]).reshape(-1, 4)


def check_geometry(disp) -> None:
    """The placement rules, measured on the drawn figure."""
    fig = disp.figure_
    fig.canvas.draw()
    patches = [t.get_bbox_patch() for t in disp.texts_]
    # texts (and their boxes) never overlap each other, the title, the legend or a panel title
    assert_no_overlap(visible_texts(fig, include_ticks=False), what="texts")
    assert_no_overlap(patches, what="callout boxes")
    if disp.legend_ is not None and disp.legend_.axes is not None:  # a legend inside the Axes
        assert_no_overlap(patches + disp.thumbnails_ + [disp.legend_], what="callouts and the legend")
    # every callout, thumbnail and title lies inside the figure
    assert_inside_figure(visible_texts(fig, include_ticks=False))
    assert_inside_figure(patches + disp.thumbnails_)
    # the title sits above the panels and their titles
    title = fig._suptitle if fig._suptitle is not None else disp.ax_.title
    for ax in disp.axes_:
        top = ax.get_window_extent().y1
        if ax.title.get_text() and ax.title is not title:
            top = ax.title.get_window_extent().y1
        assert title.get_window_extent().y0 >= top - 0.5
    thumbs = _boxes(disp.thumbnails_) if disp.thumbnails_ else np.zeros((0, 4))
    centres = (thumbs[:, :2] + thumbs[:, 2:]) / 2
    # no thumbnail covers another's centre
    for i, box in enumerate(thumbs):
        inside = (
            (centres[:, 0] > box[0])
            & (centres[:, 0] < box[2])
            & (centres[:, 1] > box[1])
            & (centres[:, 1] < box[3])
        )
        inside[i] = False
        assert not inside.any(), f"thumbnail {disp.thumbnail_rows_[i]} covers the centre of another"
    # no callout covers a thumbnail's centre (nor any part of a thumbnail)
    if patches and len(thumbs):
        assert_no_overlap(patches + disp.thumbnails_, what="callouts and thumbnails")
        labels = _boxes(patches)
        covered = (
            (centres[None, :, 0] > labels[:, None, 0])
            & (centres[None, :, 0] < labels[:, None, 2])
            & (centres[None, :, 1] > labels[:, None, 1])
            & (centres[None, :, 1] < labels[:, None, 3])
        )
        assert not covered.any()


def check_texts(disp) -> None:
    """Each callout is its text, whole up to 80 characters, elided in the middle at words beyond."""
    names = disp.coords_["name"].to_numpy()
    assert disp.text_rows_, "no callout drawn"
    for text, row in zip(disp.texts_, disp.text_rows_, strict=True):
        shown = " ".join(text.get_text().split())
        original = names[row]
        if len(original) <= MAX_LABEL_CHARS:
            assert shown == original
        else:
            assert shown == fit_text(original) and len(shown) <= MAX_LABEL_CHARS
            head, tail = shown.split(" … ")
            words = original.split()
            assert original.startswith(head) and original.endswith(tail)
            assert head.split()[-1] in words and tail.split()[0] in words  # no word cut


# ---------------------------------------------------------------------------- image comparisons
# Fixed coordinates of the 4 pictures and 6 texts of smooth_features (their PCA by the tiny net,
# rounded): the image tests draw these, not a reduction, whose last bits follow the CPU's kernels and
# can move a callout or a thumbnail (blipviz.testing.figures). Joint: the modality gap shows, the
# images crowd on one side; centred per modality (per-modality and side-by-side): both kinds spread.
FIXED_XY = {
    "joint": [
        (0.717, -0.026), (0.746, -0.019), (0.769, 0.018), (0.66, -0.092), (-0.509, -0.256),
        (-0.483, -0.051), (-0.547, -0.294), (-0.499, -0.11), (-0.519, 0.069), (-0.335, 0.762),
    ],
    "centred": [
        (0.019, -0.493), (0.027, -0.294), (0.05, 0.245), (-0.096, 0.543), (-0.273, -0.015),
        (-0.072, 0.084), (-0.32, -0.023), (-0.127, -0.088), (0.036, -0.014), (0.756, 0.055),
    ],
}  # fmt: skip


def at_fixed_coordinates(disp: FeatureSpaceDisplay, xy) -> FeatureSpaceDisplay:
    """The map ``disp`` (items, thumbnails, title) with the given coordinates in place of its own."""
    xy = np.asarray(xy, dtype=np.float64)
    return FeatureSpaceDisplay(
        disp.coords_.assign(x=xy[:, 0], y=xy[:, 1]),
        disp.thumbnails,
        method=disp.method,
        random_state=disp.random_state,
        layout=disp.layout,
        centred=disp.centred,
        net_name=disp.net_name,
        embedding=disp.embedding,
        reduction=disp.reduction,
    )


@pytest.mark.parametrize("layout", LAYOUTS)
@image_comparison()
def test_figure_feature_space_layout(smooth_features, layout):
    computed = feature_space_map(list(smooth_features), method="pca", layout=layout)
    xy = FIXED_XY["joint" if layout == "joint" else "centred"]
    return at_fixed_coordinates(computed, xy).plot().figure_


def test_fixed_coordinates_keep_the_map_but_its_coordinates(features):
    computed = feature_space_map(list(features), method="pca", layout="side-by-side")
    fixed = at_fixed_coordinates(computed, FIXED_XY["centred"])
    assert fixed.title() == computed.title() and fixed.thumbnails == computed.thumbnails
    assert fixed.coords_.drop(columns=["x", "y"]).equals(computed.coords_.drop(columns=["x", "y"]))
    assert fixed.coords_[["x", "y"]].to_numpy().tolist() == [list(p) for p in FIXED_XY["centred"]]


# ------------------------------------------------------------------------------------ geometry
@pytest.mark.parametrize("method", ["pca", "umap"])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_layout_keeps_labels_apart_and_inside(features, layout, method):
    disp = blipviz.feature_space_map(list(features), method=method, layout=layout).plot()
    check_geometry(disp)
    check_texts(disp)
    assert len(disp.thumbnails_) == 4 and len(disp.texts_) == len(TEXTS)
    assert len(disp.axes_) == (2 if layout == "side-by-side" else 1)


def test_long_texts_are_elided_in_the_middle_and_short_ones_whole(features):
    disp = blipviz.feature_space_map(list(features), method="pca").plot()
    shown = {" ".join(t.get_text().split()) for t in disp.texts_}
    assert set(TEXTS[:4]) <= shown
    assert TEXTS[4] not in shown and TEXTS[5] not in shown
    assert fit_text(TEXTS[4]) in shown and fit_text(TEXTS[5]) in shown
    assert all(len(s) <= MAX_LABEL_CHARS for s in shown)
    assert max(len(line) for t in disp.texts_ for line in t.get_text().split("\n")) < 40  # wrapped


def test_colours_come_from_the_palette(tiny, pictures):
    groups = ["cat", "dog", "cat", "bird", "cat", "dog", "fish", "bird", "dog", "cat"]
    disp = blipviz.feature_space_map(
        model=tiny, images=pictures, texts=TEXTS, labels=groups, method="pca", layout="joint"
    ).plot()
    order = list(dict.fromkeys(groups))
    assert {k: mcolors.to_hex(v) for k, v in disp.colors_.items()} == dict(
        zip(order, palette(4), strict=True)
    )
    faces = [mcolors.to_hex(c) for c in disp.scatter_.get_facecolors()]
    assert faces == [mcolors.to_hex(disp.colors_[g]) for g in groups]
    edges = [mcolors.to_hex(t.get_bbox_patch().get_edgecolor()) for t in disp.texts_]
    assert edges == [mcolors.to_hex(disp.colors_[groups[r]]) for r in disp.text_rows_]
    assert [t.get_text() for t in disp.legend_.get_texts()] == order


def test_title_names_the_net_the_embedding_and_the_reduction(features):
    images, texts = features
    disp = blipviz.feature_space_map([images, texts], method="umap", n_neighbors=5).plot()
    title = disp.figure_._suptitle.get_text().replace("\n", " ")
    assert "tiny-random" in title and "256-d ITC embeddings of 4 images and 6 texts" in title
    assert "UMAP (n_neighbors=5, min_dist=0.1, metric=cosine, random_state=37)" in title
    assert "each modality centred on its own mean" in title
    joint = blipviz.feature_space_map([images, texts], method="tsne", layout="joint").plot()
    title = joint.figure_._suptitle.get_text().replace("\n", " ")
    params = reduction_parameters(10, "tsne")
    assert f"t-SNE (perplexity={params['perplexity']}, metric=cosine" in title
    assert "centred" not in title
    mine = blipviz.feature_space_map(embeddings=np.eye(5, 8), method="pca").plot(title="my map")
    assert mine.figure_._suptitle.get_text() == "my map"
    assert "8-d embeddings of 5 points" in mine.title() and "ITC" not in mine.title()


def test_thumbnails_are_large_and_sized_in_points(features):
    disp = blipviz.feature_space_map(list(features), method="pca").plot()
    boxes = _boxes(disp.thumbnails_)
    longest_pt = np.max(boxes[:, 2:] - boxes[:, :2], axis=1) * 72 / disp.figure_.dpi
    assert (longest_pt >= thumbnail_points(4)).all() and thumbnail_points(4) >= 48
    assert thumbnail_points(100) < thumbnail_points(30) < thumbnail_points(12) == 56
    small = blipviz.feature_space_map(list(features), method="pca").plot(thumbnail_size=30)
    boxes = _boxes(small.thumbnails_)
    longest_pt = np.max(boxes[:, 2:] - boxes[:, :2], axis=1) * 72 / small.figure_.dpi
    assert (longest_pt >= 30).all() and (longest_pt < 36).all()  # 30 pt plus the frame


# ---------------------------------------------------------------------------------------- layouts
def test_per_modality_centres_each_modality_on_its_own_mean():
    rs = np.random.RandomState(0)
    x = np.concatenate([rs.randn(3, 8) + 5.0, rs.randn(4, 8) - 5.0])
    kinds = ["image"] * 3 + ["text"] * 4
    centred, done = centre_per_modality(x, kinds)
    assert done
    size = float(np.abs(x).max())  # the means come from values of this size
    assert_close(centred[:3].mean(axis=0), np.zeros(8), dtype=np.float64, magnitude=size)
    assert_close(centred[3:].mean(axis=0), np.zeros(8), dtype=np.float64, magnitude=size)
    assert_close(centred[1] - centred[0], x[1] - x[0], dtype=np.float64)  # within a modality unchanged
    same, done = centre_per_modality(x[:4], kinds[:4])  # one text: nothing to centre on
    assert not done and np.array_equal(same, x[:4])


def test_layouts_compute_and_draw_as_said(features):
    images, texts = features
    joint = feature_space_map([images, texts], method="pca", layout="joint")
    per = feature_space_map([images, texts], method="pca", layout="per-modality")
    assert not joint.centred and per.centred
    emb = np.concatenate([images.embeddings.double().numpy(), texts.embeddings.double().numpy()])
    from sklearn.decomposition import PCA

    expected = PCA(2).fit(centre_per_modality(emb, ["image"] * 4 + ["text"] * 6)[0])
    assert_close(
        np.abs(per.coords_[["x", "y"]].to_numpy()),
        np.abs(expected.transform(centre_per_modality(emb, ["image"] * 4 + ["text"] * 6)[0])),
        dtype=np.float32,
    )
    # the per-modality coordinates draw side by side too; joint ones do not
    side = per.plot(layout="side-by-side")
    a, b = side.axes_
    assert a.get_xlim() == b.get_xlim() and a.get_ylim() == b.get_ylim()
    assert len(side.thumbnails_) == 4 and all(t.axes is a for t in side.thumbnails_)
    assert all(t.axes is b for t in side.texts_) and len(side.texts_) == 6
    assert [s.get_offsets().shape[0] for s in side.scatters_] == [4, 6]
    with pytest.raises(blipviz.InputError, match="layout='joint'"):
        per.plot(layout="joint")
    with pytest.raises(blipviz.InputError, match="layout"):
        feature_space_map([images, texts], layout="overlaid")
    with pytest.raises(blipviz.InputError, match="two panels"):
        per.plot(ax=side.ax_, layout="side-by-side")


# ---------------------------------------------------------------------------------- crowding
def test_crowded_callouts_stay_inside_the_axes_and_the_rest_are_counted(tiny):
    texts = [
        f"sentence number {i} about a {w} photograph of the harbour at dawn"
        for i, w in enumerate("abcdefghijklmnopqrstuvwxyz")
    ]
    disp = blipviz.feature_space_map(model=tiny, texts=texts, method="pca", layout="joint").plot()
    check_geometry(disp)
    check_texts(disp)
    frame = disp.ax_.get_window_extent().extents
    boxes = _boxes([t.get_bbox_patch() for t in disp.texts_])
    assert (boxes[:, :2] >= frame[:2]).all() and (boxes[:, 2:] <= frame[2:]).all()  # no side column
    assert disp.figure_.get_figwidth() == 6.3  # the figure is not widened
    assert len(disp.leaders_) == len(disp.texts_)  # every callout joined to its point
    if len(disp.texts_) < 26:
        (note,) = disp.notes_
        assert note.get_text() == f"{len(disp.texts_)} of 26 texts labelled"


def test_a_given_axes_with_room_beside_it(tiny):
    import matplotlib.pyplot as plt

    texts = [f"caption {i}: a long description of a scene, {i} of many" for i in range(12)]
    fig = plt.figure(figsize=(9, 4))
    ax = fig.add_axes((0.05, 0.1, 0.4, 0.75))
    groups = ["harbour", "street"] * 6
    disp = blipviz.feature_space_map(
        model=tiny, texts=texts, labels=groups, method="pca", layout="joint"
    ).plot(ax=ax)
    assert disp.legend_ is not None and disp.legend_.axes is ax
    assert disp.figure_ is fig and fig.get_figwidth() == 9  # a given figure keeps its size
    assert fig._suptitle is None and not fig.texts and not fig.legends  # nothing outside the Axes
    check_geometry(disp)
    frame = ax.get_window_extent().extents
    boxes = _boxes([t.get_bbox_patch() for t in disp.texts_])
    assert (boxes[:, :2] >= frame[:2]).all() and (boxes[:, 2:] <= frame[2:]).all()  # the room is not used


def test_a_figure_too_small_for_its_callouts_says_so(tiny):
    import matplotlib.pyplot as plt

    texts = [f"caption {i}: a long description of a scene, {i} of many" for i in range(12)]
    _, ax = plt.subplots(figsize=(3, 2))
    disp = blipviz.feature_space_map(model=tiny, texts=texts, method="pca").plot(ax=ax)
    assert len(disp.texts_) < 12
    assert " ".join(n.get_text() for n in disp.notes_) == f"{len(disp.texts_)} of 12 texts labelled"
    # labels and the note inside the Axes (its three-line title is the user's small figure's)
    disp.figure_.canvas.draw()
    boxes = _boxes([t.get_bbox_patch() for t in disp.texts_ + disp.notes_])
    frame = ax.get_window_extent().extents
    assert (boxes[:, :2] >= frame[:2]).all() and (boxes[:, 2:] <= frame[2:]).all()
    assert_no_overlap([t.get_bbox_patch() for t in disp.texts_ + disp.notes_], what="callouts and note")


# -------------------------------------------------------------------------------- full geometry
@pytest.mark.slow
def test_full_geometry_on_photographs_in_every_layout(full_b):
    gallery = blipviz.datasets.sample_images(list(MAP_PHOTOS), max_size=256)
    images = full_b.encode_images(gallery.images, labels=gallery.names)
    texts = full_b.encode_texts(list(MAP_CAPTIONS))
    for layout in LAYOUTS:
        disp = blipviz.feature_space_map([images, texts], layout=layout).plot()
        check_geometry(disp)
        check_texts(disp)
        assert len(disp.thumbnails_) == len(gallery) and len(disp.texts_) == len(MAP_CAPTIONS)
        assert full_b.name in disp.title() and "256-d ITC embeddings" in disp.title()
