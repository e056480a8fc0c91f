"""The text and colour rules every figure follows, and the image-test harness itself."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from blipviz.display.labels import (
    MAX_LABEL_CHARS,
    cielab,
    fit_text,
    number_repeats,
    palette,
    palette_size,
    wrap_text,
)
from blipviz.testing.figures import (
    assert_inside_figure,
    assert_no_overlap,
    colorbars,
    image_comparison,
    visible_texts,
)

TEA = "two ladies in a park drinking tea while their dog sleeps under a large oak tree near the lake"
PIZZA = "two ladies in a park eating pizza while their dog sleeps under a large oak tree near the lake"


def test_texts_up_to_80_characters_are_whole():
    text = "x" * 10 + " " + "a photograph of a red bicycle leaning on a wall beside a blue door"
    assert len(text) <= MAX_LABEL_CHARS
    assert fit_text(text) == text


def test_long_texts_keep_whole_words_from_both_ends():
    short = fit_text(TEA + " at dusk in autumn")
    assert len(short) <= MAX_LABEL_CHARS
    head, tail = short.split(" … ")
    assert TEA.startswith(head) and (TEA + " at dusk in autumn").endswith(tail)
    words = set(TEA.split()) | {"at", "dusk", "in", "autumn"}
    assert all(word in words for word in head.split() + tail.split())


def test_hard_negatives_stay_apart_when_elided():
    assert fit_text(TEA, 40) != fit_text(PIZZA, 40) or "tea" in TEA[:40]
    assert fit_text(TEA, 40).startswith("two ladies")


def test_one_long_word_is_elided_inside():
    out = fit_text("a" * 100, 20)
    assert len(out) == 20 and "…" in out


@given(st.text(alphabet=st.sampled_from("ab cde  fgh"), max_size=200), st.integers(3, 120))
def test_fit_text_never_exceeds_its_budget(text, budget):
    out = fit_text(text, budget)
    assert len(out) <= budget
    words = text.split()
    if len(" ".join(words)) <= budget:
        assert out == " ".join(words)
    elif all(len(w) < budget - 3 for w in words):
        for part in out.replace("…", " ").split():
            assert part in words  # never a word cut in two


def test_wrap_text_lines():
    wrapped = wrap_text(TEA, 24)
    assert all(len(line) <= 24 for line in wrapped.split("\n"))
    assert wrapped.replace("\n", " ") == fit_text(TEA)


def test_repeated_tokens_are_numbered():
    assert number_repeats(["[ENC]", "a", "cat", "on", "a", "mat"]) == [
        "[ENC]",
        "a (1)",
        "cat",
        "on",
        "a (2)",
        "mat",
    ]


def test_palette_has_no_near_identical_pair():
    colours = palette(palette_size())  # every colour it serves (then they repeat)
    assert len(set(colours)) == len(colours) == 7
    lab = cielab(colours)
    gaps = [np.linalg.norm(lab[i] - lab[j]) for i, j in itertools.combinations(range(len(colours)), 2)]
    assert min(gaps) >= 20.0
    # tab20 fails the same rule (its blue / light blue pair)
    tab20 = ["#1f77b4", "#aec7e8"]
    assert np.linalg.norm(np.subtract(*cielab(tab20))) < 40 and "#aec7e8" not in palette(30)


def test_geometry_checks_catch_overlap_and_spill():
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3, 2))
    a = ax.text(0.5, 0.5, "first label")
    b = ax.text(0.5, 0.5, "second label")
    with pytest.raises(AssertionError, match="overlapping"):
        assert_no_overlap([a, b])
    b.set_position((0.1, 0.1))
    assert_no_overlap([a, b])
    c = ax.text(1.5, 0.5, "outside")
    with pytest.raises(AssertionError, match="outside"):
        assert_inside_figure([c])
    assert {t.get_text() for t in visible_texts(fig, include_ticks=False)} == {
        "first label",
        "second label",
        "outside",
    }
    assert colorbars(fig) == []
    fig.colorbar(ax.imshow(np.eye(3)), ax=ax)
    assert len(colorbars(fig)) == 1


@image_comparison()
def test_figure_harness_pins_the_style():
    """A baseline drawn under the pinned style: text, a colormap and a line."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3, 2))
    im = ax.imshow(np.arange(12).reshape(3, 4), cmap="viridis")
    ax.plot([0, 3], [0, 2], color=palette(1)[0])
    ax.set_title("harness: pinned style")
    fig.colorbar(im, ax=ax)
    return fig


def test_format_number_never_shows_minus_zero():
    from blipviz.display.labels import format_number

    cases = {
        (-0.001, ".2f"): "0.00",
        (-0.0, ".2f"): "0.00",
        (-0.0001, ".1%"): "0.0%",
        (-0.001, ">7.2f"): "   0.00",
        (-0.3, ".1%"): "-30.0%",
        (-1234.5, ",.1f"): "-1,234.5",
        (-0.006, ".2f"): "-0.01",
        (0.004, ".3g"): "0.004",
    }
    assert {key: format_number(*key) for key in cases} == cases


@pytest.mark.parametrize(
    ("top", "power", "labels"),
    [(2e-4, "-4", None), (0.05, "-2", ["0", "1", "2", "3", "4", "5"]), (1.0, None, None), (2e4, "4", None)],
)
def test_readable_ticks_write_a_small_or_large_power_once(top, power, labels):
    import re

    import matplotlib.pyplot as plt
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    from blipviz.display.labels import readable_ticks

    fig, ax = plt.subplots()
    bar = fig.colorbar(ScalarMappable(Normalize(0, top)), ax=ax)
    readable_ticks(bar.ax.yaxis)
    fig.canvas.draw()
    shown = [re.sub(r"\\mathdefault|[{}$]", "", t.get_text()) for t in bar.ax.get_yticklabels()]
    offset = bar.ax.yaxis.get_offset_text().get_text().replace("\N{MINUS SIGN}", "-")
    assert all(len(re.sub(r"[^0-9]", "", t)) <= 3 for t in shown), shown
    if power is None:
        assert offset == ""
    else:
        assert f"10^{{{power}}}" in offset, offset
    if labels is not None:
        assert shown == labels
    plt.close(fig)
