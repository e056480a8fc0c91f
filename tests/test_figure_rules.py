"""The rules every figure follows (blipviz.display.rules), on generated inputs: texts with ``$``,
``_``, ``^``, Greek, Cyrillic, Hebrew, Chinese and emoji of 1 to 150 characters; counts from 1 to
30; images from 1:20 to 20:1; the default and dark_background styles; font.size 8 and 14; each
figure alone and inside a constrained-layout grid of a user's figure.

Measured on the drawn figures (blipviz.testing.figures): no text overlaps another text, a thumbnail
or a colorbar; everything inside the figure; texts literal (what was given, or its fitted form, with
``parse_math`` off); font sizes relative to ``rcParams["font.size"]``; legends beside the data;
colours distinct under simulated colour blindness, with markers beside them; given Axes drawn into
without a figure title or size change. Every example draws a figure: few examples, no shrinking.
"""

from __future__ import annotations

import contextlib
import io
import re
import warnings

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from conftest import examples
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

import blipviz
from blipviz.display.attention import AttentionGridDisplay
from blipviz.display.explanations import ExplanationCurvesDisplay
from blipviz.display.labels import fit_text
from blipviz.display.retrieval import RecallCurveDisplay
from blipviz.display.rules import (
    CATEGORICAL,
    CVD_MATRICES,
    MARKERS,
    MIN_THUMBNAIL_SHARE,
    MissingGlyphWarning,
    editable_text,
    line_cues,
    min_delta_e,
    missing_glyphs,
    plural,
    thumbnail_crop,
)
from blipviz.display.zero_shot import TopKDisplay, plot_confusion_matrix
from blipviz.testing.figures import assert_inside_figure, assert_no_overlap, colorbars, visible_texts

FIGURES = settings(
    max_examples=examples(8),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
)
# Latin with TeX's special characters, Greek, Cyrillic, Hebrew, CJK and emoji (drawn as boxes where
# the font lacks them, but measured all the same), digits and spaces
_ALPHABET = list("abcdefghijklmnopqrstuvwxyz ABC $$$___^^{}\\%#&~") + list("αβγδ жзий שלום 猫狗红 0123🤖😀")
TEXT = st.text(alphabet=st.sampled_from(_ALPHABET), min_size=1, max_size=150).filter(str.strip)
SHORT = st.text(alphabet=st.sampled_from(_ALPHABET), min_size=1, max_size=40).filter(str.strip)
STYLES = st.sampled_from(["default", "dark_background"])
FONT_SIZES = st.sampled_from([8, 14])
# (height, width) of the thumbnails: 1:20 to 20:1, 16 px to 320 px (larger ones: thumbnail_crop)
SHAPES = st.sampled_from([(16, 320), (320, 16), (48, 64), (80, 36), (16, 16), (200, 120)])
RELATIVE_SIZES = (0.59, 1.16)  # every text's size / font.size: from 0.6 (dense ticks) to 1.1 (titles)
USER_TITLE = "a user's own figure"
# what a tick formatter writes: numbers, or maths of its own (\mathdefault, \times 10^k)
NUMBER = re.compile(r"[\s\d.,−\-+%]*|\$.*\\(mathdefault|times).*\$")


@contextlib.contextmanager
def drawing(style: str, font_size: float):
    """The style and font size, and no warnings for the glyphs the font lacks (tested apart)."""
    with plt.style.context(style), plt.rc_context({"font.size": font_size}), warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingGlyphWarning)
        warnings.filterwarnings("ignore", "Glyph .* missing from font")
        yield


def _picture(shape, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 255, (*shape, 3), dtype=np.uint8)


def _grid(figsize=(14.0, 6.0), ncols=2, nrows=1):
    fig, axes = plt.subplots(nrows, ncols, figsize=figsize, layout="constrained", squeeze=False)
    fig.suptitle(USER_TITLE)
    return fig, axes.ravel()


def _undrawn_ticks(fig) -> set[int]:
    """Tick labels of inset Axes (a heatmap's colorbar) outside their view: never drawn, though
    ``visible_texts`` (which looks at the figure's own Axes) counts them."""
    hidden: set[int] = set()
    for bar in colorbars(fig):
        for axis in (bar.ax.xaxis, bar.ax.yaxis):
            low, high = sorted(axis.get_view_interval())
            for tick in axis.majorTicks + axis.minorTicks:
                if not low - 1e-9 <= tick.get_loc() <= high + 1e-9:
                    hidden |= {id(tick.label1), id(tick.label2)}
    return hidden


def check_rules(fig, *, obstacles=(), font_size: float) -> list:
    """The geometric and text rules on a drawn figure; returns its visible texts."""
    texts = visible_texts(fig)
    undrawn = _undrawn_ticks(fig)
    texts = [t for t in texts if id(t) not in undrawn]
    bars = [cb.ax for cb in colorbars(fig)]
    assert_inside_figure([*texts, *obstacles, *bars])
    assert_no_overlap([*texts, *obstacles, *bars], what="texts, thumbnails and colorbars")
    for text in texts:  # sizes follow rcParams["font.size"]
        if text.get_text() == USER_TITLE:
            continue
        ratio = text.get_fontsize() / font_size
        assert RELATIVE_SIZES[0] <= ratio <= RELATIVE_SIZES[1], (text.get_text(), text.get_fontsize())
        if text.get_parse_math():  # only a tick formatter's numbers are typeset
            assert NUMBER.fullmatch(text.get_text()), text.get_text()
    return texts


def _literal(artist, expected: str) -> None:
    assert artist.get_text() == expected
    assert artist.get_parse_math() is False


def _unchanged_user_figure(fig, size) -> None:
    assert fig.get_suptitle() == USER_TITLE
    assert tuple(fig.get_size_inches()) == pytest.approx(size)
    assert fig.get_layout_engine() is not None


def _assert_anchored(axes, anchor) -> None:
    """Each panel keeps ``anchor`` and sits in its layout slot where that anchor puts it."""
    for ax in axes:
        assert ax.get_anchor() == anchor
        drawn, slot = ax.get_position(original=False), ax.get_position(original=True)
        expected = drawn.anchored(anchor, container=slot)
        assert np.allclose(drawn.extents, expected.extents, atol=1e-6), (anchor, drawn, slot)


# ---------------------------------------------------------------------------------- plain rules
def test_plural_counts():
    assert [plural(n, "pair") for n in (0, 1, 2, 1000)] == ["0 pairs", "1 pair", "2 pairs", "1,000 pairs"]
    assert plural(1, "class", "classes") == "1 class" and plural(3, "class", "classes") == "3 classes"


def test_categorical_colours_stay_apart_for_colour_blind_readers():
    """Okabe-Ito (without yellow) under Machado et al.'s simulations: no pair closer than ΔE 15."""
    assert min_delta_e(CATEGORICAL) >= 25
    for kind in CVD_MATRICES:
        assert min_delta_e(CATEGORICAL, kind) >= 15, kind
    # the palette it replaced fails: tab10's green and red merge for deuteranopes
    assert min_delta_e(["#2ca02c", "#d62728"], "deuteranopia") < 10
    # simulation sanity: greys are seen as they are; pure red and green merge under deuteranopia
    assert min_delta_e(["#777777", "#777777"]) == 0
    assert min_delta_e(["#ff0000", "#00ff00"], "deuteranopia") < min_delta_e(["#ff0000", "#00ff00"]) / 2


_BACKGROUNDS = st.one_of(
    st.none(),
    st.sampled_from(["white", "black", "#e5e5e5", "#303030", "#eaeaf2"]),
    st.tuples(*[st.floats(0.0, 1.0)] * 3),
)


@given(n=st.integers(0, 80), background=_BACKGROUNDS)
def test_palette_stays_distinct_for_colour_blind_readers_then_adds_markers(n, background):
    """The shared palette (every categorical figure's) for any number of categories: as many as it
    serves are distinct seen normally (ΔE >= 25) and under simulated deuteranopia, protanopia and
    tritanopia (ΔE >= 15, Machado et al. 2009), and stand out from the background; beyond, colours
    repeat and each category's (colour, marker) pair stays its own."""
    from blipviz.display.labels import cielab, palette, palette_size
    from blipviz.display.rules import category_cues

    colours, served = palette(n, background), palette_size(background)
    assert len(colours) == n and 6 <= served <= len(CATEGORICAL)
    distinct = colours[:served]
    assert len(set(distinct)) == len(distinct)
    assert min_delta_e(distinct) >= 25
    for kind in CVD_MATRICES:
        assert min_delta_e(distinct, kind) >= 15, kind
    if background is not None:
        behind = cielab([matplotlib.colors.to_hex(background)])[0]
        assert all(np.linalg.norm(lab - behind) >= 20 for lab in cielab(distinct))
    assert colours == [colours[i % served] for i in range(n)]  # then they repeat, in order
    cues = category_cues(n, background)
    assert [c["color"] for c in cues] == colours
    pairs = [(c["color"], c["marker"]) for c in cues]
    unique = min(n, served * len(MARKERS))
    assert len(set(pairs[:unique])) == unique  # a second cue tells repeated colours apart
    assert len({c["marker"] for c in cues[:served]}) == min(n, served)  # a marker per colour


@given(st.integers(1, 30))
def test_line_cues_never_repeat(n):
    cues = line_cues(n)
    assert len({(c["color"], c["marker"], str(c["linestyle"])) for c in cues}) == n
    first = cues[: len(MARKERS)]
    assert len({c["marker"] for c in first}) == len(first)  # a marker per colour


@given(
    side=st.integers(16, 4000),
    ratio=st.floats(1 / 20, 20),
    box=st.tuples(st.floats(0.1, 10.0), st.floats(0.1, 10.0)),
)
def test_thumbnails_are_readable_whatever_their_aspect_ratio(side, ratio, box):
    """16 px to 4,000 px, 1:20 to 20:1: never a sliver, never distorted, always inside the box."""
    h, w = (side, max(1, round(side * ratio))) if ratio >= 1 else (max(1, round(side / ratio)), side)
    (top, bottom, left, right), (dw, dh) = thumbnail_crop((h, w), box)
    assert 0 <= top < bottom <= h and 0 <= left < right <= w
    assert dw <= box[0] * (1 + 1e-9) and dh <= box[1] * (1 + 1e-9)
    crop_h, crop_w = bottom - top, right - left
    # the shorter drawn side: at least the share of the box, unless the whole image is smaller
    short = min(dw, dh)
    whole = min(box[0] / w, box[1] / h) * min(h, w)
    assert short >= min(MIN_THUMBNAIL_SHARE * min(box), whole) * (1 - 1e-9) - 1e-9
    # not distorted: the crop's aspect ratio is the drawn one, within a pixel's rounding
    scale_w, scale_h = dw / crop_w, dh / crop_h
    assert scale_w == pytest.approx(scale_h, rel=1.0 / min(crop_w, crop_h) + 1e-6)
    # centred
    assert abs((top + bottom) - h) <= 1 and abs((left + right) - w) <= 1
    if crop_h == h and crop_w == w:  # shown whole: as large as the box allows
        assert max(dw / box[0], dh / box[1]) == pytest.approx(1.0)


# ------------------------------------------------------------------------------ overlay key
@pytest.mark.parametrize(
    "content",
    [(220, 30, 30), (255, 0, 0), (40, 160, 40), (30, 60, 200), (240, 220, 40), (255, 255, 255), (0, 0, 0)],
)
def test_overlay_key_survives_any_content(content):
    """The red key vanished over red content (a red car, a ginger cat): the default key's top, and
    its middle, stand apart from the photograph under them whatever its colour."""
    from PIL import Image

    from blipviz.display.labels import cielab
    from blipviz.display.overlay import ATTENTION_CMAP, blend, fading_cmap

    picture = Image.fromarray(np.full((4, 4, 3), content, dtype=np.uint8))
    bare, middle, top = (blend(picture, np.full((1, 1), v), 1.0)[0, 0] for v in (0.0, 0.5, 1.0))
    lab = cielab(["#{:02x}{:02x}{:02x}".format(*c) for c in (bare, middle, top)])
    assert np.linalg.norm(lab[2] - lab[0]) >= 60
    assert np.linalg.norm(lab[1] - lab[0]) >= 20
    # on white (matrices, the colorbar) the key darkens steadily from white: one direction to read
    on_white = np.asarray(fading_cmap(ATTENTION_CMAP, on_white=True)(np.linspace(0, 1, 11)))[:, :3]
    lightness = cielab(["#{:02x}{:02x}{:02x}".format(*np.round(c * 255).astype(int)) for c in on_white])[:, 0]
    assert lightness[0] > 99 and np.all(np.diff(lightness) < 0)


# ------------------------------------------------------------------------------- missing glyphs
def test_missing_glyphs_warn_once_per_text_naming_the_setting():
    assert missing_glyphs("costs $5 and $10 — café, αβγ, жзий") == ""
    assert missing_glyphs("日本語の猫 🤖") == "日本語の猫🤖"
    scores = blipviz.ScoreMatrix(
        np.full((2, 2), 0.5), ["日本語の猫", "a robot 🤖"], ["日本語の猫", "image"], kind="itm"
    )
    with pytest.warns(MissingGlyphWarning) as caught, warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Glyph .* missing from font")
        scores.plot(ax=plt.subplots()[1])
    messages = [str(w.message) for w in caught if issubclass(w.category, MissingGlyphWarning)]
    assert len(messages) == 2  # the Japanese text is drawn twice (row and column), warned about once
    japanese = next(m for m in messages if "日本語の猫" in m)
    assert "font.family" in japanese and "Noto Sans CJK JP" in japanese and "DejaVu Sans" in japanese
    assert any("'a robot 🤖'" in m and "Noto Emoji" in m for m in messages)
    with warnings.catch_warnings():
        warnings.simplefilter("error", MissingGlyphWarning)
        blipviz.ScoreMatrix(np.ones((1, 1)), ["costs $5 and $10"], ["x"]).plot()  # nothing missing


def test_pdf_and_svg_keep_text_editable_inside_the_context():
    display = blipviz.ScoreMatrix(np.eye(2), ["costs $5 and $10", "a"], ["x", "y"]).plot()
    before = dict(matplotlib.rcParams)
    with editable_text():
        pdf, svg = io.BytesIO(), io.BytesIO()
        display.figure_.savefig(pdf, format="pdf")
        display.figure_.savefig(svg, format="svg")
    assert b"/FontFile2" in pdf.getvalue() and b"/Type3" not in pdf.getvalue()  # TrueType, not Type 3
    assert b"costs $5 and $10" in svg.getvalue()  # a <text> element, the dollars included
    assert matplotlib.rcParams["pdf.fonttype"] == before["pdf.fonttype"]
    assert matplotlib.rcParams["svg.fonttype"] == before["svg.fonttype"]


# ------------------------------------------------------------------------------------- heatmap
@FIGURES
@given(
    texts=st.lists(TEXT, min_size=1, max_size=30),
    n_images=st.integers(1, 4),
    shapes=st.lists(SHAPES, min_size=4, max_size=4),
    kind=st.sampled_from(["itm", "cosine"]),
    style=STYLES,
    font_size=FONT_SIZES,
    in_grid=st.booleans(),
    seed=st.integers(0, 100),
)
def test_heatmap_rules(texts, n_images, shapes, kind, style, font_size, in_grid, seed):
    rng = np.random.default_rng(seed)
    if in_grid:  # two heatmaps side by side: labels of the right one once covered the left colorbar
        texts = texts[:8]
    low = -0.3 if kind == "cosine" else 0.0
    scores = blipviz.ScoreMatrix(
        rng.uniform(low, 1.0, (n_images, len(texts))),
        texts,
        [f"$x_{i}$.jpg" for i in range(n_images)],
        kind=kind,
        thumbnails=[_picture(shapes[i], i) for i in range(n_images)],
        model_name="net_$1$",
        true_pairs=[(0, 0)],
    )
    with drawing(style, font_size):
        if in_grid:
            fig, axes = _grid((16.0, 7.0))
            displays = [scores.plot(ax=axes[0]), scores.plot(ax=axes[1], sort="rows")]
            _unchanged_user_figure(fig, (16.0, 7.0))
        else:
            displays = [scores.plot()]
            fig = displays[0].figure_
        thumbs = [t for d in displays for t in d.thumbnails_]
        check_rules(fig, obstacles=thumbs, font_size=font_size)
        for display in displays:
            rows = display.ax_.get_yticklabels()
            for label, i in zip(rows, display.row_order_, strict=True):
                assert label.get_parse_math() is False
                assert label.get_text().replace("\n", " ").startswith(fit_text(texts[i])[:1])
                if len(" ".join(texts[i].split())) <= 60 and texts.count(texts[i]) == 1:
                    _literal(label, " ".join(texts[i].split()))  # whole and literal
            _literal(display.ax_.get_xticklabels()[0], "$x_" + str(display.column_order_[0]) + "$.jpg")
            assert display.ax_.title.get_parse_math() is False and "net_$1$" in display.ax_.get_title()
            assert display.colorbar_.ax.get_ylabel().startswith(("ITM", "cosine"))
            if kind == "cosine":  # diverging, centred at zero
                vmin, vmax = display.im_.get_clim()
                assert vmin == -vmax and display.im_.get_cmap().name == "RdBu_r"
            renderer = fig.canvas.get_renderer()
            cell = abs(
                display.ax_.transData.transform((1, 0))[0] - display.ax_.transData.transform((0, 0))[0]
            )
            for thumb in display.thumbnails_:  # never a sliver
                box = thumb.get_window_extent(renderer)
                assert min(box.width, box.height) >= 0.9 * MIN_THUMBNAIL_SHARE * 0.86 * cell
        plt.close(fig)


# -------------------------------------------------------------------------------- recall@K
@FIGURES
@given(
    lengths=st.tuples(st.integers(1, 30), st.integers(1, 30)),
    names=st.tuples(SHORT, SHORT),
    counts=st.tuples(st.integers(1, 30), st.integers(1, 30)),
    style=STYLES,
    font_size=FONT_SIZES,
    in_grid=st.booleans(),
    log_x=st.booleans(),
)
@example(  # a scene CI drew: a title wider than the room left of the legend, centred on the Axes
    lengths=(14, 17),
    names=("1%🤖βsqyiβוcwзl_ם狗~kfaжl_", "δ🤖q{δ2C%_לl"),
    counts=(8, 10),
    style="default",
    font_size=14,
    in_grid=False,
    log_x=False,
)
def test_recall_curve_rules(lengths, names, counts, style, font_size, in_grid, log_x):
    curves = {
        d: np.linspace(10.0 * (1 + k), 100.0, n)
        for k, (d, n) in enumerate(zip(("i2t", "t2i"), lengths, strict=True))
    }
    with drawing(style, font_size):
        display = RecallCurveDisplay(
            curves, model_name=names[0], benchmark=names[1], n_images=counts[0], n_texts=counts[1]
        )
        if in_grid:
            fig, axes = _grid((13.0, 4.5))
            axes[0].plot([0, 1], [0, 1])
            display.plot(ax=axes[1], log_x=log_x)
            _unchanged_user_figure(fig, (13.0, 4.5))
        else:
            fig = display.plot(log_x=log_x).figure_
        check_rules(fig, font_size=font_size)
        ax = display.ax_
        # the legend never covers the data: it lies beside the Axes
        legend = display.legend_.get_window_extent()
        data = ax.get_window_extent()
        assert legend.x0 >= data.x1 or legend.y1 <= data.y0 or legend.y0 >= data.y1
        title = ax.get_title()
        assert ax.title.get_parse_math() is False and fit_text(names[0]) in title.replace("\n", " ")
        assert plural(counts[0], "image") in title and plural(counts[1], "caption") in title
        assert all(t.get_parse_math() is False for t in display.legend_.get_texts())
        markers = {display.markers_[d].get_marker() for d in curves}
        assert len(markers) == 2
        plt.close(fig)


# ----------------------------------------------------------------------- explanation curves
METHOD_NAMES = ["attention", "gradcam", "relevancy", "rollout", "occlusion", "$z$_method"]


@FIGURES
@given(
    n_methods=st.integers(1, 6),
    n_pairs=st.integers(1, 4),
    steps=st.integers(2, 20),
    style=STYLES,
    font_size=FONT_SIZES,
    in_grid=st.booleans(),
    seed=st.integers(0, 100),
)
def test_explanation_curve_rules(n_methods, n_pairs, steps, style, font_size, in_grid, seed):
    rng = np.random.default_rng(seed)
    methods = [*METHOD_NAMES[:n_methods], "random"]
    fractions = np.linspace(0, 1, steps + 1)
    rows = []
    for k, method in enumerate(methods):
        for pair in range(n_pairs):
            for kind, sign in (("deletion", -1.0), ("insertion", 1.0)):
                curve = (
                    0.5
                    + sign * 0.4 * (1 - np.exp(-(1 + k) * fractions))
                    + rng.normal(0, 0.03, len(fractions))
                )
                rows += [
                    dict(method=method, pair=pair, fraction=f, score=float(s), kind=kind)
                    for f, s in zip(fractions, np.clip(curve, 0, 1), strict=True)
                ]
    curves = pd.DataFrame(rows)
    table = pd.DataFrame(
        {"deletion_auc": rng.uniform(0, 1, len(methods)), "insertion_auc": rng.uniform(0, 1, len(methods))},
        index=methods,
    )
    with drawing(style, font_size):
        display = ExplanationCurvesDisplay(curves, table, net_name="net $v$", baseline="blur")
        if in_grid:
            fig, axes = _grid((14.0, 5.0))
            display.plot(axes)
            _unchanged_user_figure(fig, (14.0, 5.0))
        else:
            fig = display.plot().figure_
            assert fig.get_suptitle() == display.title_
        check_rules(fig, font_size=font_size)
        legend = display.legend_.get_window_extent()
        for ax in display.axes_:  # beside both panels, over neither
            data = ax.get_window_extent()
            assert legend.x0 >= data.x1 or legend.x1 <= data.x0
        lines = [display.lines_[("deletion", m)] for m in methods]
        colours = [matplotlib.colors.to_hex(line.get_color()) for line in lines]
        for kind in CVD_MATRICES:
            assert min_delta_e(colours, kind) >= 15
        cues = {(line.get_marker(), str(line.get_linestyle())) for line in lines}
        assert len(cues) == len(lines)  # a second cue beside colour
        assert plural(n_pairs, "pair") in display.title_ and "1 pairs" not in display.title_
        plt.close(fig)


# ------------------------------------------------------------------------------- zero-shot
@FIGURES
@given(
    texts=st.lists(TEXT, min_size=1, max_size=12),
    shape=SHAPES,
    style=STYLES,
    font_size=FONT_SIZES,
    in_grid=st.booleans(),
    seed=st.integers(0, 100),
)
def test_top_k_rules(texts, shape, style, font_size, in_grid, seed):
    rng = np.random.default_rng(seed)
    k = len(texts)
    display = TopKDisplay(
        _picture(shape, seed),
        texts,
        np.sort(rng.uniform(0, 1, k))[::-1],
        labels=[f"class {i}" for i in range(k)],
        net="net_$1$",
        image_label="$photo$",
        true_label="class 0",
        n_classes=k + int(rng.integers(0, 3)),
    )
    with drawing(style, font_size):
        if in_grid:
            fig, axes = _grid((15.0, max(3.0, 0.45 * k + 2.0)))
            display.plot(axes=axes)
            _unchanged_user_figure(fig, (15.0, max(3.0, 0.45 * k + 2.0)))
            heading = display.ax_.title
        else:
            fig = display.plot().figure_
            heading = next(t for t in visible_texts(fig) if "$photo$" in t.get_text())
        check_rules(fig, obstacles=[display.im_], font_size=font_size)
        for label, text in zip(display.ax_.get_yticklabels(), texts, strict=True):
            _literal(label, fit_text(text))
        assert heading.get_parse_math() is False and "net_$1$" in heading.get_text()
        drawn = display.im_.get_window_extent(fig.canvas.get_renderer())
        assert min(drawn.width, drawn.height) >= 0.2 * fig.dpi or in_grid  # never a sliver
        plt.close(fig)


@FIGURES
@given(
    labels=st.lists(SHORT, min_size=1, max_size=12),
    style=STYLES,
    font_size=FONT_SIZES,
    seed=st.integers(0, 9),
)
def test_confusion_matrix_rules(labels, style, font_size, seed):
    rng = np.random.default_rng(seed)
    n = len(labels)
    with drawing(style, font_size):
        display = plot_confusion_matrix(rng.integers(0, 5, (n, n)), labels, title=["a $5$ title", "x"])
        check_rules(display.figure_, font_size=font_size)
        for label, text in zip(display.ax_.get_yticklabels(), labels, strict=True):
            _literal(label, fit_text(text))
        assert display.ax_.title.get_parse_math() is False
        plt.close(display.figure_)


# ------------------------------------------------------------------------------- attention grid
@FIGURES
@given(
    tokens=st.lists(SHORT, min_size=1, max_size=6),
    text=TEXT,
    shape=st.one_of(st.none(), SHAPES),
    style=STYLES,
    font_size=FONT_SIZES,
    in_grid=st.booleans(),
    anchor=st.sampled_from(["C", "W", "NE", "S"]),
    seed=st.integers(0, 100),
)
def test_attention_grid_rules(tokens, text, shape, style, font_size, in_grid, anchor, seed):
    """Panels keep their anchor: centred in a figure made here, the user's own in a user's grid (the
    colorbar once anchored every panel to the right of its slot, the user's Axes too)."""
    rng = np.random.default_rng(seed)
    maps = [rng.uniform(0, 1, (4, 4)) for _ in tokens]
    display = AttentionGridDisplay(
        maps,
        tokens,
        image=None if shape is None else _picture(shape, seed),
        layer=1,
        n_layers=2,
        heads="mean of the 4 heads",
        text=text,
        score=0.5,
    )
    with drawing(style, font_size):
        if in_grid:
            size = (16.0, 9.0)
            fig, axes = _grid(size, ncols=4, nrows=2)
            for ax in axes:
                ax.set_anchor(anchor)
                ax.set(xticks=[], yticks=[])  # the user's empty panels (their corner ticks meet at 14 pt)
            display.plot(axes=axes[: len(tokens)])
            _unchanged_user_figure(fig, size)
        else:
            fig = display.plot().figure_
            assert fig.get_suptitle() == display.title_
            anchor = "C"
        titles = [ax.title for ax in display.axes_]
        assert_no_overlap(titles, what="panel titles")
        check_rules(fig, font_size=font_size)
        _assert_anchored(display.axes_, anchor)
        for title in titles:
            assert title.get_parse_math() is False
        assert fit_text(text) in display.title_.replace("\n", " ") or len(text) > 80
        plt.close(fig)


@FIGURES
@given(
    longest=st.integers(16, 4000),
    ratio=st.floats(1 / 20, 20),
    n=st.integers(1, 3),
    comparison=st.booleans(),
    seed=st.integers(0, 100),
)
def test_overlays_are_readable_whatever_the_photograph_aspect_ratio(longest, ratio, n, comparison, seed):
    """A 1:20 strip or a 20:1 panorama of 16 to 4,000 px: each overlay panel (attention grids and
    the explanation comparison) shows the photograph whole when it is at most 4:1, else its middle
    at 4:1 (the title says so), never distorted; no panel is drawn as a sliver."""
    from blipviz.display.explanations import ExplanationComparisonDisplay
    from blipviz.display.overlay import MAX_OVERLAY_RATIO

    h, w = (
        (longest, max(1, round(longest / ratio))) if ratio >= 1 else (max(1, round(longest * ratio)), longest)
    )
    picture = _picture((h, w), seed)
    maps = [np.random.default_rng(seed + k).uniform(0, 1, (6, 6)) for k in range(n)]
    names = [f"token {k}" for k in range(n)]
    with drawing("default", 10):
        if comparison:
            display = ExplanationComparisonDisplay(
                maps, names, image=picture, text="a strip", score=0.5
            ).plot()
        else:
            display = AttentionGridDisplay(maps, names, image=picture, text="a strip", score=0.5).plot()
        arrays, title = display.arrays_, display.title_
        fig = display.figure_
        fig.canvas.draw()
        elongation = max(h, w) / min(h, w)  # cropped beyond 4:1 (either way within rounding)
        cropped = "the middle of the" in title.replace("\n", " ")
        if elongation > 1.02 * MAX_OVERLAY_RATIO:
            assert cropped, (h, w, title)
        elif elongation < 0.98 * MAX_OVERLAY_RATIO:
            assert not cropped, (h, w, title)
        for ax, arr in zip(display.axes_, arrays, strict=True):
            ah, aw = arr.shape[:2]
            assert max(ah, aw) <= MAX_OVERLAY_RATIO * min(ah, aw) + 1, (h, w, arr.shape)
            if not cropped:  # whole, at its own proportions
                assert abs(aw / ah - w / h) <= 1.0 / min(ah, aw) * (aw / ah) + 1e-9
            box = ax.get_window_extent()
            short, long_ = sorted((box.width, box.height))
            assert short >= long_ / MAX_OVERLAY_RATIO - 2.0, (h, w, box)  # not a sliver
            assert short >= 0.5 * fig.dpi, (h, w, box)  # half an inch at least
            assert box.width / box.height == pytest.approx(aw / ah, rel=0.02)  # not distorted
        plt.close(fig)


# ------------------------------------------------------------------------- reported cases, fixed
def _every_display(texts, font_size):
    """Each display once, drawing ``texts`` (a caption, a token, a class, a name) at ``font_size``."""
    first, second = texts
    with drawing("default", font_size):
        yield blipviz.ScoreMatrix(np.eye(2), [first, second], [first, "b.jpg"], model_name=second).plot()
        curves = {"i2t": np.linspace(50, 100, 12), "t2i": np.linspace(40, 100, 12)}
        yield RecallCurveDisplay(curves, model_name=first, benchmark=second, n_images=1, n_texts=1).plot()
        yield TopKDisplay(
            _picture((32, 32)), [first, second], [0.9, 0.1], net=second, image_label=first
        ).plot()
        yield plot_confusion_matrix(np.eye(2, dtype=int), [first, second], title=[second])
        yield AttentionGridDisplay(
            [np.eye(3), np.ones((3, 3))], [first, second], text=second, score=0.5
        ).plot()
        frame = pd.DataFrame(
            [
                dict(method=m, pair=0, fraction=f, score=1 - f, kind=k)
                for m in (first, "random")
                for k in ("deletion", "insertion")
                for f in (0.0, 0.5, 1.0)
            ]
        )
        table = pd.DataFrame(
            {"deletion_auc": [0.5, 0.5], "insertion_auc": [0.5, 0.5]}, index=[first, "random"]
        )
        yield ExplanationCurvesDisplay(frame, table, net_name=second).plot()


def _figure(display):
    return display.figure_ if hasattr(display, "figure_") else display.ax_.figure


def test_dollar_signs_are_text_everywhere_and_sizes_follow_font_size():
    """ "costs $5 and $10" was drawn as maths ("costs 5*and*10"), "$z$" as an italic z; sizes were
    fixed at 8-10 pt, so font.size 14 mixed 10-pt titles with 14-pt ticks."""
    texts = ("costs $5 and $10", "$z$")
    sizes = {}
    for font_size in (8, 14):
        for k, display in enumerate(_every_display(texts, font_size)):
            fig = _figure(display)
            drawn = check_rules(fig, font_size=font_size)
            shown = [t for t in drawn if "$" in t.get_text() and not NUMBER.fullmatch(t.get_text())]
            assert shown, type(display).__name__
            assert all(t.get_parse_math() is False for t in shown), [t.get_text() for t in shown]
            sizes[(font_size, k)] = sorted(t.get_fontsize() for t in shown)
            plt.close(fig)
    for k in range(6):  # the same texts, 14/8 times larger
        assert np.allclose(np.multiply(sizes[(8, k)], 14 / 8), sizes[(14, k)]), k


def test_html_tables_are_not_typeset_by_jupyter():
    """Jupyter's MathJax typesets "$...$" in HTML outputs: the ranking table and the retrieval
    failures carry the classes that turn it off, and show the dollars escaped as written."""
    from blipviz.display.retrieval import RetrievalFailures
    from blipviz.display.rules import NO_MATHJAX
    from blipviz.display.tables import style_ranking

    frame = pd.DataFrame({"text": ["costs $5 and $10", "$z$"], "itm": [0.9, 0.1], "cosine": [0.3, -0.1]})
    page = style_ranking(frame).to_html()
    assert f'class="{NO_MATHJAX}"' in page and "costs $5 and $10" in page
    failures = pd.DataFrame(
        [dict(query=0, query_item="$z$", rank=2, true=1, true_item="costs $5", true_score=0.5,
              above=[0], above_items=["$y$"], above_scores=[0.9])]
    )  # fmt: skip
    html = RetrievalFailures(failures, direction="t2i").to_html()
    assert NO_MATHJAX in html and "$z$" in html


def test_two_heatmaps_side_by_side_keep_their_labels_apart():
    """ScoreMatrix.plot(ax=) in a 1 x 2 grid drew the right heatmap's labels over the left colorbar
    (constrained layout's first pass placed the fixed-aspect Axes and their inset colorbars)."""
    scores = blipviz.ScoreMatrix(
        np.random.default_rng(0).random((3, 3)),
        ["a dog running on the beach with a red ball", "two cats sleeping on a sofa", "costs $5 and $10"],
        ["a.jpg", "b.jpg", "c.jpg"],
        thumbnails=[_picture((32, 32), i) for i in range(3)],
        model_name="tiny",
    )
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
    left, right = scores.plot(ax=axes[0]), scores.plot(ax=axes[1])
    check_rules(fig, obstacles=left.thumbnails_ + right.thumbnails_, font_size=plt.rcParams["font.size"])
    assert tuple(fig.get_size_inches()) == (10, 4)


def test_displays_on_a_bare_figure_without_a_drawing_canvas():
    """A ``matplotlib.figure.Figure()`` (no pyplot, a canvas that cannot measure): drawn all the
    same, the measured adjustments left out."""
    from matplotlib.figure import Figure

    fig = Figure()
    scores = blipviz.ScoreMatrix(np.eye(1) * 0.3, ["a"], ["x"], kind="cosine", true_pairs=[(0, 0)])
    assert scores.plot(ax=fig.add_subplot(1, 2, 1), fit=True).figure_ is fig
    AttentionGridDisplay([np.eye(3)], ["a"]).plot(axes=[fig.add_subplot(1, 2, 2)])
    plot_confusion_matrix(np.eye(2, dtype=int), ["a", "b"], ax=Figure().add_subplot())


# ------------------------------------------------------------- explanation maps and comparison
SIGNED_CONTENT = [
    (220, 30, 30),
    (255, 0, 0),
    (230, 140, 40),
    (40, 160, 40),
    (30, 60, 200),
    (255, 255, 255),
    (0, 0, 0),
]


@pytest.mark.parametrize("content", SIGNED_CONTENT)
def test_signed_key_survives_any_content(content):
    """The diverging key of signed maps: both ends (ΔE >= 60) and both middles (>= 20) stand apart
    from any photograph colour under them, red and orange included, and the two ends from each other
    for colour-blind readers; on white each side darkens steadily from white at zero."""
    from PIL import Image

    from blipviz.display.labels import cielab
    from blipviz.display.overlay import blend, fading_cmap

    picture = Image.fromarray(np.full((4, 4, 3), content, dtype=np.uint8))
    drawn = [blend(picture, np.full((1, 1), v), 1.0, signed=True)[0, 0] for v in (0.0, -1.0, -0.5, 0.5, 1.0)]
    lab = cielab(["#{:02x}{:02x}{:02x}".format(*c) for c in drawn])
    gaps = np.linalg.norm(lab[1:] - lab[0], axis=1)
    assert gaps[0] >= 60 and gaps[3] >= 60, gaps
    assert gaps[1] >= 20 and gaps[2] >= 20, gaps
    on_white = np.asarray(fading_cmap(signed=True, on_white=True)(np.linspace(0, 1, 21)))[:, :3]
    hexes = ["#{:02x}{:02x}{:02x}".format(*np.round(c * 255).astype(int)) for c in on_white]
    lightness = cielab(hexes)[:, 0]
    assert lightness[10] > 99  # zero is white
    assert np.all(np.diff(lightness[:11]) > 0) and np.all(np.diff(lightness[10:]) < 0)
    for kind in CVD_MATRICES:
        assert min_delta_e([hexes[0], hexes[-1]], kind) >= 30, kind


def _explanation(method, tokens, text, shape, seed):
    """An Explanation of generated maps (no net): signed maps for occlusion and GradCAM."""
    from blipviz import Explanation

    rng = np.random.default_rng(seed)
    grid = (6, 6)
    if method == "occlusion":
        tokens = ["[match]"]
    maps = rng.uniform(0.0, 1.0, (len(tokens), *grid)).astype(np.float32)
    signed_maps = None
    if method == "occlusion":
        maps = maps - 0.4
    elif method == "gradcam":
        signed_maps = (maps - 0.5).astype(np.float32)
        maps = np.clip(signed_maps, 0, None)
    match_map = maps[0] if method in ("relevancy", "occlusion") else maps.mean(axis=0)
    return Explanation(
        method=method,
        tokens=list(tokens),
        maps=maps,
        match_map=match_map,
        itm_probability=0.5,
        text=text,
        image_label="$x$.jpg",
        grid=grid,
        options={"layer": 1, "n_layers": 2} if method == "gradcam" else {},
        image=None if shape is None else _picture(shape, seed),
        signed_maps=signed_maps,
    )


def _others_unchanged(fig, given, before):
    """The user's other Axes keep their artists and titles (nothing drawn outside the given ones)."""
    for ax, (title, count) in before.items():
        if ax in given:
            continue
        assert ax.get_title() == title and len(ax.get_children()) == count


@FIGURES
@given(
    method=st.sampled_from(["relevancy", "gradcam", "occlusion"]),
    tokens=st.lists(SHORT, min_size=1, max_size=5),
    text=TEXT,
    shape=st.one_of(st.none(), SHAPES),
    signed=st.booleans(),
    style=STYLES,
    font_size=FONT_SIZES,
    in_grid=st.booleans(),
    seed=st.integers(0, 100),
)
def test_explanation_map_rules(method, tokens, text, shape, signed, style, font_size, in_grid, seed):
    """One explanation map alone (its own figure) or in one Axes of a user's constrained grid:
    literal title naming the method, a colorbar, signed maps centred at zero, nothing else changed."""
    explanation = _explanation(method, ["[ENC]", *tokens], text, shape, seed)
    signed = signed and explanation.signed
    draw = explanation.plot if shape is None else explanation.overlay
    with drawing(style, font_size):
        if in_grid:
            size = (12.0, 4.5)
            fig, axes = _grid(size, ncols=3)
            axes[2].plot([0, 1], [1, 0])  # the user's own panels (no ticks: their corner ticks meet at 14 pt)
            for ax in axes[1:]:
                ax.set(xticks=[], yticks=[])
            before = {ax: (ax.get_title(), len(ax.get_children())) for ax in axes}
            display = draw(tokens="[match]", ax=axes[0], signed=signed)
            _unchanged_user_figure(fig, size)
            _others_unchanged(fig, [axes[0]], before)
            assert list(display.axes_) == [axes[0]]
            title = display.axes_[0].title.get_text().replace("\n", " ")  # elided over a sliver
            assert title.startswith(("relevancy", "GradCAM", "occlusion")) or "…" in title
        else:
            display = draw(tokens="[match]", signed=signed)
            fig = display.figure_
            assert fig.get_suptitle() == display.title_
        check_rules(fig, font_size=font_size)
        assert display.axes_[0].title.get_parse_math() is False
        assert display.colorbar_ is not None and len(colorbars(fig)) == 1
        norm = display.norms_[0]
        if signed:  # a diverging key centred at zero
            assert norm.vmin == -norm.vmax and norm.vmax > 0
        else:
            assert norm.vmin == 0
        plt.close(fig)


@FIGURES
@given(
    names=st.lists(SHORT, min_size=1, max_size=5),
    flags=st.lists(st.booleans(), min_size=5, max_size=5),
    text=TEXT,
    shape=st.one_of(st.none(), SHAPES),
    scale=st.sampled_from(["per-method", "shared"]),
    evaluated=st.booleans(),
    style=STYLES,
    font_size=FONT_SIZES,
    where=st.sampled_from(["alone", "axes", "subfigure"]),
    seed=st.integers(0, 100),
)
def test_explanation_comparison_rules(
    names, flags, text, shape, scale, evaluated, style, font_size, where, seed
):
    """compare_explanations' display: 1 to 5 methods of any names, signed or not, on each scale,
    alone, in a user's Axes or in a SubFigure of a user's figure."""
    from blipviz.display.explanations import ExplanationComparisonDisplay

    rng = np.random.default_rng(seed)
    n = len(names)
    signed = flags[:n]
    maps = [rng.uniform(-0.5 if s else 0.0, 1.0, (6, 6)) * 10.0 ** rng.integers(-4, 2) for s in signed]
    aucs = {m: tuple(rng.uniform(0, 1, 2)) for m in names} if evaluated else None
    display = ExplanationComparisonDisplay(
        maps,
        names,
        image=None if shape is None else _picture(shape, seed),
        signed=signed,
        value_names=[f"value of {m}" for m in names],
        aucs=aucs,
        random_auc=(0.5, 0.5) if evaluated else None,
        text=text,
        score=0.5,
        net_name="net_$1$",
    )
    with drawing(style, font_size):
        if where == "alone":
            fig = display.plot(scale=scale).figure_
            assert fig.get_suptitle().split("\n")[0].startswith("Explanations of one ITM match, net_$1$")
        else:
            size = (15.0, 8.0)
            fig = plt.figure(figsize=size, layout="constrained")
            fig.suptitle(USER_TITLE)
            if where == "axes":
                axes = fig.subplots(2, 3).ravel()
                for ax in axes[n:]:  # the user's empty panels (their corner ticks meet at 14 pt)
                    ax.set(xticks=[], yticks=[])
                display.plot(axes[:n], scale=scale)
                given = list(axes[:n])
            else:
                top, bottom = fig.subfigures(2, 1)
                bottom.subplots().set(xticks=[], yticks=[])
                display.plot(figure=top, scale=scale)
                given = display.axes_
            _unchanged_user_figure(fig, size)
            assert all(ax in given for ax in display.axes_)
        check_rules(fig, font_size=font_size)
        _assert_anchored(display.axes_, "C")  # a shared colorbar once anchored them right
        for title, name in zip(display.titles_, names, strict=True):
            assert title.split("\n")[0] == name
        for ax, name in zip(display.axes_, names, strict=True):  # literal, wrapped or elided
            assert ax.title.get_parse_math() is False
            shown, whole = " ".join(ax.title.get_text().split()), " ".join(name.split())
            assert shown.startswith(whole) or "…" in shown, (shown, whole)
        bars = display.colorbars_
        assert len(bars) == (1 if scale == "shared" else n) and len(colorbars(fig)) == len(bars)
        for norm, is_signed in zip(display.norms_, signed, strict=True):
            if is_signed or (scale == "shared" and any(signed)):
                assert norm.vmin == -norm.vmax and norm.vmax > 0
            else:
                assert norm.vmin == 0
        if evaluated:
            assert all("AUC del." in t for t in display.titles_)
        plt.close(fig)


@FIGURES
@given(
    tokens=st.lists(SHORT, min_size=1, max_size=40),
    n_heads=st.integers(1, 12),
    side=st.sampled_from([4, 8, 24]),
    text=TEXT,
    style=STYLES,
    font_size=FONT_SIZES,
    in_grid=st.booleans(),
    seed=st.integers(0, 100),
)
def test_heads_rules(tokens, n_heads, side, text, style, font_size, in_grid, seed):
    """plot_heads at any token count: at most 12 inches tall (pages beyond), head maps on the grid,
    literal token labels; in a user's Axes without a figure title of its own."""
    from blipviz.display.attention import HeadsTokensDisplay

    rng = np.random.default_rng(seed)
    weights = rng.dirichlet(np.ones(1 + side * side), (n_heads, len(tokens)))
    display = HeadsTokensDisplay(
        weights, tokens, grid=(side, side), layer=1, n_layers=2, text=text, score=0.5
    )
    with drawing(style, font_size):
        if in_grid:
            size = (12.0, 7.0)
            fig, axes = _grid(size, ncols=2, nrows=3)
            used = list(axes[0::2][: min(3, len(tokens))])
            for ax in axes:  # the user's empty panels (their corner ticks meet at 14 pt)
                if ax not in used:
                    ax.set(xticks=[], yticks=[])
            display.plot(used, tokens=range(len(used)))
            _unchanged_user_figure(fig, size)
            assert [t.get_text() for t in fig.texts] == [USER_TITLE]
        else:
            display.plot()
            fig = display.figure_
            assert fig.get_figheight() <= 12.0 + 1e-9 and fig.get_figwidth() <= 10.0 + 1e-9
            assert len(display.tokens_) * display.n_pages_ >= len(tokens)
        check_rules(fig, font_size=font_size)
        for ax, title in zip(display.axes_, display.titles_, strict=True):
            _literal(ax.yaxis.label, fit_text(title, 16))
        assert display.arrays_[0].shape == (n_heads, side, side)
        plt.close(fig)
