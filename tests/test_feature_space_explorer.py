"""FeatureSpaceExplorer on the tiny net: its map is the analysis's, a selection lists exactly the
selected items, the ITM ranking equals blipviz's ITM scores, a new query never re-runs the ViT, and
the payload sent to the browser holds the points only. No browser needed (the widget's Python side is
driven directly: ``scatter.selection(...)``, ``scatter.widget.hovering``, ``query.value``)."""

from __future__ import annotations

import html
import io
import re
import sys

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("jscatter")

from blipviz import InputError, InputTypeError
from blipviz.analysis.feature_space import feature_space_map
from blipviz.display.labels import fit_text, palette
from blipviz.explore.feature_space_explorer import KINDS, FeatureSpaceExplorer, payload_bytes
from blipviz.net.images import thumbnail
from blipviz.testing import assert_close, synthetic_images

TEXTS = [
    "a dog running on the beach",
    "two cats sleeping on a red sofa",
    "a bowl of fresh fruit on a wooden table",
    "an empty street at night",
    "a man riding a bicycle",
    "a plate of <b>pasta</b> & wine",
    "a child flying a kite in a park",
    "an astronaut floating above the earth in a white suit, seen from the hatch of the station "
    "while the sun rises",  # over 80 characters: elided in lists, whole on hover
]


@pytest.fixture(scope="module")
def pictures():
    return [Image.fromarray(a) for a in synthetic_images(8, seed=3, size=(120, 160))]


@pytest.fixture
def counted(tiny, monkeypatch):
    """The tiny net with its ViT port and its ITM port counted (calls, images)."""
    calls = {"vision": 0, "vision_images": 0, "itm": 0}
    vision, itm = tiny.vision_states, tiny.itm_logits

    def vision_states(pixels):
        calls["vision"] += 1
        calls["vision_images"] += int(pixels.shape[0])
        return vision(pixels)

    def itm_logits(*args, **kwargs):
        calls["itm"] += 1
        return itm(*args, **kwargs)

    monkeypatch.setattr(tiny, "vision_states", vision_states)
    monkeypatch.setattr(tiny, "itm_logits", itm_logits)
    return tiny, calls


@pytest.fixture
def explorer(tiny, pictures):
    return FeatureSpaceExplorer(tiny, images=pictures, texts=TEXTS, method="pca")


def _list_rows(explorer) -> tuple[list[str], list[str]]:
    """(image names, texts) listed in the selection list, in order, as shown (unescaped)."""
    value = explorer.selection_list.value
    names = re.findall(r"<td style=\"text-align:left;padding:2px 6px\">(.*?)</td>", value)
    texts = re.findall(r"<li title=\"[^\"]*\">(.*?)(?: <span|</li>)", value)
    return [html.unescape(n) for n in names], [html.unescape(t) for t in texts]


# ----------------------------------------------------------------------------------------- data
def test_the_widget_shows_the_analysis_map(tiny, pictures, explorer):
    reference = feature_space_map(model=tiny, images=pictures, texts=TEXTS, method="pca").coords_
    coords = explorer.coords_
    assert len(coords) == 16 and list(coords["kind"]) == ["image"] * 8 + ["text"] * 8
    assert list(coords["kind"]) == list(reference["kind"])
    assert list(coords["name"]) == list(reference["name"])
    assert_close(coords[["x", "y"]].to_numpy(), reference[["x", "y"]].to_numpy(), dtype=np.float64)

    data = explorer.scatter.widget.data  # what the points and tooltips are made of
    assert_close(data[["x", "y"]].to_numpy(), coords[["x", "y"]].to_numpy(), dtype=np.float64)
    assert list(data["kind"].astype(str)) == list(coords["kind"])
    assert list(data["name"]) == [fit_text(n) for n in coords["name"]]
    assert data["name"].iloc[15] != TEXTS[7] and len(data["name"].iloc[15]) <= 80  # elided in the tooltip
    assert explorer.scatter.widget.tooltip_enable
    assert list(explorer.scatter.widget.tooltip_properties) == ["kind", "name"]
    assert explorer.colors_ == dict(zip(KINDS, palette(2), strict=True))
    assert explorer.scatter.widget.color_by == "valueA"  # coloured by the kind column
    assert len(explorer.scatter.widget.points) == 16


def test_a_selection_lists_exactly_the_selected_items(explorer):
    chosen = [0, 3, 5, 9, 13, 15]
    explorer.scatter.selection(chosen)  # what a lasso does: the widget's selection changes
    assert explorer.error_ is None
    assert explorer.selection_.tolist() == chosen
    assert explorer.selected_.index.tolist() == chosen
    names, texts = _list_rows(explorer)
    assert names == ["image 0", "image 3", "image 5"]
    assert texts == [fit_text(TEXTS[i - 8]) for i in (9, 13, 15)]
    assert explorer.ranking_ is None  # no query yet
    assert "6 selected</b>: 3 images, 3 texts" in explorer.selection_list.value

    explorer.select([])
    assert explorer.selection_.tolist() == [] and "no selection yet" in explorer.selection_list.value


def test_texts_are_escaped_and_whole_on_hover(explorer):
    explorer.select([13, 15])
    value = explorer.selection_list.value
    assert "<b>pasta</b>" not in value and "&lt;b&gt;pasta&lt;/b&gt; &amp; wine" in value
    assert html.escape(TEXTS[7], quote=True) in value  # the whole text in the title attribute
    explorer.scatter.widget.hovering = 13
    assert "<b>pasta</b>" not in explorer.hover_text.value
    assert "&lt;b&gt;pasta&lt;/b&gt; &amp; wine" in explorer.hover_text.value
    explorer.scatter.widget.hovering = 15
    assert html.escape(TEXTS[7]) in explorer.hover_text.value  # whole, not elided
    assert explorer.hover_image.layout.display == "none"


def test_hovering_an_image_shows_a_large_thumbnail(tiny, pictures):
    big = [Image.fromarray(a) for a in synthetic_images(2, seed=4, size=(300, 400))]
    explorer = FeatureSpaceExplorer(tiny, images=big, texts="a dog", method="pca")
    explorer.scatter.widget.hovering = 1
    assert explorer.hovered_ == 1 and explorer.error_ is None
    shown = np.asarray(Image.open(io.BytesIO(explorer.hover_image.value)))
    assert shown.shape == (192, 256, 3)  # longest side 256
    assert np.array_equal(shown, np.asarray(thumbnail(big[1], 256)))
    assert explorer.hover_image.layout.display is None


def test_the_drag_buttons_set_the_mouse_mode(explorer):
    widget = explorer.scatter.widget
    assert widget.mouse_mode == "panZoom"
    explorer.drag.value = "rectangle"
    assert (widget.mouse_mode, widget.lasso_type) == ("lasso", "rectangle")
    explorer.drag.value = "lasso"
    assert (widget.mouse_mode, widget.lasso_type) == ("lasso", "freeform")
    explorer.drag.value = "pan & zoom"
    assert widget.mouse_mode == "panZoom" and explorer.error_ is None


# -------------------------------------------------------------------------------------- ranking
def test_the_ranking_is_blipviz_itm(tiny, pictures, explorer):
    query = "a dog running on the beach"
    explorer.select([1, 2, 6, 10])
    explorer.query.value = query
    assert explorer.error_ is None
    ranking = explorer.ranking_
    assert sorted(ranking["point"]) == [1, 2, 6]
    expected = np.asarray(tiny.itm_scores([pictures[p] for p in ranking["point"]], query))[:, 0]
    assert_close(ranking["itm"].to_numpy(), expected)  # float32 nets: ViT batches of 4 here, of 3 there
    cosine = np.asarray(tiny.cosine_scores([pictures[p] for p in ranking["point"]], query))[:, 0]
    assert_close(ranking["cosine"].to_numpy(), cosine)
    assert list(ranking["itm"]) == sorted(ranking["itm"], reverse=True)
    assert ranking.index.tolist() == [1, 2, 3] and ranking.attrs["candidates"] == "all"
    names, _ = _list_rows(explorer)
    assert names == list(ranking["name"])  # listed in rank order
    assert f"{ranking['itm'].iloc[0]:.3f}" in explorer.selection_list.value


def test_a_new_query_reranks_without_the_vit(counted, pictures):
    tiny, calls = counted
    explorer = FeatureSpaceExplorer(tiny, images=pictures, texts=TEXTS[:3], method="pca")
    assert calls["vision_images"] == 8  # each image once, at construction
    explorer.select([0, 1, 2, 3, 4])
    explorer.query.value = "a bowl of fresh fruit"
    first = explorer.ranking_
    assert calls["vision_images"] == 8 and calls["itm"] == 5  # one ITM pass per image
    explorer.query.value = "a man riding a bicycle"
    assert calls["vision_images"] == 8 and calls["itm"] == 10
    assert explorer.ranking_.attrs["query"] == "a man riding a bicycle"
    assert not np.array_equal(first["itm"].to_numpy(), explorer.ranking_.sort_values("point")["itm"])
    explorer.query.value = "a bowl of fresh fruit"  # seen before: nothing is computed
    explorer.select([0, 1, 2])
    assert calls["vision_images"] == 8 and calls["itm"] == 10
    assert_close(
        explorer.ranking_.set_index("point")["itm"].to_numpy(),
        first.set_index("point").loc[explorer.ranking_["point"], "itm"].to_numpy(),
        dtype=np.float64,
    )


def test_more_images_than_max_ranked_are_chosen_by_cosine(tiny, pictures):
    query = "a red square"
    explorer = FeatureSpaceExplorer(tiny, images=pictures, max_ranked=3, method="pca")
    explorer.select(range(8))
    explorer.query.value = query
    ranking = explorer.ranking_
    cosine = np.asarray(tiny.cosine_scores(pictures, query))[:, 0]
    assert sorted(ranking["point"]) == sorted(np.argsort(-cosine, kind="stable")[:3].tolist())
    assert ranking.attrs["candidates"] == "cosine" and ranking.attrs["selected_images"] == 8
    assert "the 3 of 8 closest to the query by cosine" in explorer.selection_list.value
    names, _ = _list_rows(explorer)
    assert len(names) == 8  # the 5 others are listed, unranked
    assert explorer.selection_list.value.count("not ranked") == 5


# ----------------------------------------------------------------------------- from coordinates
def test_from_coordinates_fetches_images_only_when_needed(counted, pictures):
    tiny, calls = counted
    fetched = []

    def image_fn(key):
        fetched.append(key)
        return pictures[int(key[4:])]

    rng = np.random.default_rng(0)
    kinds = ["image"] * 6 + ["text"] * 3
    names = [f"photo {i}.png" for i in range(6)] + TEXTS[:3]
    explorer = FeatureSpaceExplorer.from_coordinates(
        tiny,
        rng.normal(size=(9, 2)),
        kinds,
        names,
        image_fn=image_fn,
        ids=[f"img-{i}" for i in range(6)] + [None] * 3,
        max_ranked=2,
    )
    assert fetched == [] and calls["vision"] == 0
    explorer.select([1, 4, 5, 7])
    assert calls["vision"] == 0 and sorted(set(fetched)) == ["img-1", "img-4", "img-5"]  # thumbnails
    explorer.query.value = "a dog"
    ranking = explorer.ranking_
    assert ranking.attrs["candidates"] == "first" and ranking["point"].tolist() != []
    assert sorted(ranking["point"]) == [1, 4]  # no embeddings: the first max_ranked selected
    assert calls["vision_images"] == 2
    explorer.query.value = "a cat"
    assert calls["vision_images"] == 2  # states kept
    expected = np.asarray(tiny.itm_scores([pictures[p] for p in ranking["point"]], "a dog"))[:, 0]
    assert_close(ranking["itm"].to_numpy(), expected)


def test_states_beyond_max_cached_images_are_dropped(counted, pictures):
    tiny, calls = counted
    explorer = FeatureSpaceExplorer.from_coordinates(
        tiny,
        np.zeros((4, 2)),
        ["image"] * 4,
        list("abcd"),
        image_fn=pictures.__getitem__,
        max_cached_images=2,
    )
    explorer.query.value = "a dog"
    explorer.select([0, 1])
    explorer.select([2, 3])
    assert calls["vision_images"] == 4
    explorer.query.value = "a cat"  # 2 and 3 are kept
    assert calls["vision_images"] == 4
    explorer.select([0])  # 0 was dropped: its states are computed again
    assert calls["vision_images"] == 5


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"coords": np.zeros((3, 3))}, InputError, r"shape \(n, 2\)"),
        ({"coords": np.array([[0, 0], [np.nan, 1], [1, 1]])}, InputError, r"points \[1\]"),
        ({"kinds": ["image", "point", "text"]}, InputError, r"kinds\[1\] is 'point'"),
        ({"names": ["a", "b"]}, InputError, "got 2 names for 3 points"),
        ({"names": ["a", 2, "c"]}, InputTypeError, r"names\[1\]"),
        ({"image_fn": None}, InputTypeError, "image_fn must be a callable"),
        ({"embeddings": np.zeros((2, 4))}, InputError, r"embeddings must have shape \(3, d\)"),
    ],
)
def test_from_coordinates_refuses_bad_input(tiny, kwargs, error, match):
    args = {
        "coords": np.zeros((3, 2)),
        "kinds": ["image", "text", "text"],
        "names": ["a", "b", "c"],
        "image_fn": lambda i: np.zeros((8, 8, 3), np.uint8),
        **kwargs,
    }
    with pytest.raises(error, match=match):
        FeatureSpaceExplorer.from_coordinates(tiny, **args)


def test_errors_in_callbacks_show_in_the_widget(tiny, explorer):
    with pytest.raises(InputError, match="points \\[99\\] do not exist"):
        explorer.select([1, 99])

    def broken(_):
        raise OSError("disk gone")

    lazy = FeatureSpaceExplorer.from_coordinates(
        tiny, np.zeros((2, 2)), ["image"] * 2, ["a", "b"], image_fn=broken
    )
    lazy.select([0])
    assert isinstance(lazy.error_, OSError) and "disk gone" in lazy.message.value
    lazy.select([])
    assert lazy.error_ is None and lazy.message.value == ""


def test_nothing_to_explore_is_an_input_error(tiny):
    with pytest.raises(InputError, match="nothing to explore"):
        FeatureSpaceExplorer(tiny)


# -------------------------------------------------------------------------------------- payload
def test_10000_points_send_16_bytes_a_point_and_no_text(tiny):
    """A design property, not a timing: the browser gets x, y, colour and opacity as float32 per point;
    names, texts and thumbnails stay in the kernel (sent for the hovered or listed items only)."""
    rng = np.random.default_rng(1)
    sizes = {}
    for n in (100, 10_000):
        kinds = np.where(rng.random(n) < 0.5, "image", "text").tolist()
        names = [f"caption number {i} of the collection" for i in range(n)]
        explorer = FeatureSpaceExplorer.from_coordinates(
            tiny, rng.normal(size=(n, 2)), kinds, names, image_fn=lambda i: np.zeros((8, 8, 3), np.uint8)
        )
        sizes[n] = payload_bytes(explorer.scatter.widget)
        assert sizes[n]["buffers"] == 16 * n
    assert sizes[10_000]["json"] - sizes[100]["json"] < 2_000  # nothing per point in the JSON
    assert sizes[10_000]["script"] == sizes[100]["script"]
    assert sizes[10_000]["total"] < 16 * 10_000 + sizes[100]["total"]


def test_without_jupyter_scatter_the_error_says_what_to_install(tiny, monkeypatch):
    monkeypatch.setitem(sys.modules, "jscatter", None)  # import jscatter now raises ImportError
    with pytest.raises(ImportError, match=re.escape("pip install 'blipviz[explorer]'")):
        FeatureSpaceExplorer(tiny, texts=["a dog"])
    with pytest.raises(ImportError, match="jupyter-scatter"):
        FeatureSpaceExplorer.from_coordinates(tiny, np.zeros((1, 2)), ["text"], ["a dog"])
