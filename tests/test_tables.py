import re

import numpy as np
import pandas as pd
import pytest

import blipviz
from blipviz import Ranking, style_ranking
from blipviz.analysis.scores import ranking as make_ranking
from blipviz.display.tables import RANKING_HEADERS, bar_scale

TEXTS = ["a dog", "a cat on a mat", "two birds in the sky"]
# the bar layer of a score cell: grey up to 0 (or the value), the column's colour from 0 to the value
_BAR = re.compile(
    r"linear-gradient\(90deg, (#\w+) 0%, \1 ([\d.]+)%, (#\w+) \2%, \3 ([\d.]+)%, transparent \4%\)"
)


@pytest.fixture(scope="module")
def ranking(tiny_model, small_images):
    return tiny_model.rank(small_images[0], TEXTS)


def _cell_css(html: str, row: int, col: int) -> str:
    """The CSS block of one data cell of a Styler's HTML."""
    blocks = re.findall(r"([^{}]+)\{([^{}]*)\}", html)
    found = [body for selectors, body in blocks if re.search(rf"_row{row}_col{col}\b", selectors)]
    return " ".join(found)


def _bar_end(html: str, row: int, col: int) -> float:
    """Where the bar of a cell ends, in percent of its track."""
    match = _BAR.search(_cell_css(html, row, col))
    assert match is not None, _cell_css(html, row, col)
    return float(match.group(4))


def test_rank_returns_a_dataframe_that_renders_styled(ranking):
    assert isinstance(ranking, pd.DataFrame) and isinstance(ranking, Ranking)
    assert list(ranking.columns) == ["text", "itm", "cosine", "itm_rank", "cosine_rank"]
    html = ranking._repr_html_()
    # one bar per score cell, both scores side by side
    assert len(_BAR.findall(html)) == 2 * len(TEXTS)
    assert "two birds in the sky" in html
    # derived frames are ordinary DataFrames
    assert type(ranking.head(2)) is pd.DataFrame


def test_style_ranking_keeps_data_and_styles_score_columns(ranking):
    styler = blipviz.style_ranking(ranking)
    pd.testing.assert_frame_equal(styler.data, ranking)
    html = styler.to_html()
    itm_col = list(ranking.columns).index("itm")
    cos_col = list(ranking.columns).index("cosine")
    for row in range(len(ranking)):
        for col in (itm_col, cos_col):
            _bar_end(html, row, col)  # a bar in every score cell
        assert _BAR.search(_cell_css(html, row, list(ranking.columns).index("itm_rank"))) is None


def test_bars_grow_with_the_value_whatever_its_sign():
    cosines = [0.31, -0.12, 0.05, -0.02, 0.2]
    table = make_ranking([f"text {i}" for i in range(5)], [0.9, 0.7, 0.5, 0.3, 0.1], cosines)
    html = style_ranking(table).to_html()
    cos_col = list(table.columns).index("cosine")
    ends = {float(table.cosine.iloc[row]): _bar_end(html, row, cos_col) for row in range(len(table))}
    values = sorted(ends)
    assert [ends[v] for v in values] == sorted(ends.values())  # longer bar, higher value
    assert len(set(ends.values())) == len(ends)
    # the negative cosine's bar is shorter than the larger positive one's; the lowest still shows
    assert ends[-0.02] < ends[0.05] and ends[-0.12] < ends[0.31]
    assert 0 < ends[-0.12] and ends[0.31] == 100.0
    # ITM on its fixed [0, 1] scale: the bar ends at the probability
    itm_col = list(table.columns).index("itm")
    assert [_bar_end(html, row, itm_col) for row in range(5)] == [90.0, 70.0, 50.0, 30.0, 10.0]


def test_all_negative_cosines_give_the_highest_the_longest_bar():
    cosines = [-0.05, -0.02, -0.09]
    table = make_ranking(["a", "b", "c"], [0.3, 0.2, 0.1], cosines)
    html = style_ranking(table).to_html()
    cos_col = list(table.columns).index("cosine")
    ends = [_bar_end(html, row, cos_col) for row in range(3)]
    order = np.argsort(table.cosine.to_numpy())
    assert list(np.array(ends)[order]) == sorted(ends)
    assert ends[list(table.cosine).index(-0.02)] == max(ends)
    # the track ends at 0 (all values below it) and starts below the lowest value
    low, high = bar_scale("cosine", cosines)
    assert high == 0.0 and low < min(cosines)


def test_the_number_is_never_under_its_bar():
    table = make_ranking(["a", "b"], [0.6, 0.2], [0.3, -0.1])
    html = style_ranking(table).to_html()
    for col in (1, 2):
        css = _cell_css(html, 0, col)
        track = float(re.search(r"background-size: ([\d.]+)em", css).group(1))
        offset = float(re.search(r"background-position: right ([\d.]+)em", css).group(1))
        padding = float(re.search(r"padding-right: ([\d.]+)em", css).group(1))
        assert "background-repeat: no-repeat" in css
        # the text box ends where the track (plus its offset from the cell's edge) begins
        assert padding >= track + offset
        # a zero line on the track
        assert "#333333 calc(" in css


def test_headers_are_human_and_the_caption_names_image_and_net(tiny_model, small_images):
    features = tiny_model.encode_images(small_images[0], labels=["astronaut"])
    table = tiny_model.rank(features, TEXTS)
    assert table.attrs["image_label"] == "astronaut" and table.attrs["model_name"] == tiny_model.name
    html = table._repr_html_()
    headers = re.findall(r'<th [^>]*class="col_heading[^"]*"[^>]*>([^<]*)</th>', html)
    assert headers == [RANKING_HEADERS[c] for c in table.columns]
    assert "ITM probability" in headers and "cosine" in headers and "itm" not in headers
    caption = re.search(r"<caption>(.*?)</caption>", html, re.S).group(1)
    assert "astronaut" in caption and tiny_model.name in caption
    assert "ranked by ITM probability" in caption
    # given names win over the table's own
    caption = style_ranking(table, image_label="cat", model_name="my net").caption
    assert "cat" in caption and "my net" in caption and "astronaut" not in caption


def test_texts_are_shown_as_text_not_html():
    table = make_ranking(["a <b>bold</b> dog"], [0.5], [0.1], image_label="<img>")
    html = style_ranking(table).to_html()
    assert "a &lt;b&gt;bold&lt;/b&gt; dog" in html and "<b>bold</b>" not in html
    assert "&lt;img&gt;" in html


def test_style_ranking_gradient_and_errors(ranking):
    html = style_ranking(ranking, style="gradient").to_html()
    itm_col = list(ranking.columns).index("itm")
    assert "background-color" in _cell_css(html, 0, itm_col)
    with pytest.raises(ValueError, match="style"):
        style_ranking(ranking, style="pie")
    with pytest.raises(ValueError, match="not in the table"):
        style_ranking(ranking, columns=["score"])
    with pytest.raises(ValueError, match="not numeric"):
        style_ranking(ranking, columns=["text"])
    with pytest.raises(ValueError, match="unknown by"):
        make_ranking(["a"], [0.5], [0.1], by="score")
