import pandas as pd
import pytest

import blipviz
from blipviz import Ranking, style_ranking

TEXTS = ["a dog", "a cat on a mat", "two birds in the sky"]


@pytest.fixture(scope="module")
def ranking(tiny_model, small_images):
    return tiny_model.rank(small_images[0], TEXTS)


def test_rank_returns_a_dataframe_that_renders_styled(ranking):
    assert isinstance(ranking, pd.DataFrame) and isinstance(ranking, Ranking)
    assert list(ranking.columns) == ["text", "itm", "cosine", "itm_rank", "cosine_rank"]
    html = ranking._repr_html_()
    # one bar per score cell, both scores side by side
    assert html.count("linear-gradient") == 2 * len(TEXTS)
    assert "two birds in the sky" in html
    # derived frames are ordinary DataFrames
    assert type(ranking.head(2)) is pd.DataFrame


def test_style_ranking_keeps_data_and_styles_score_columns(ranking):
    styler = blipviz.style_ranking(ranking)
    pd.testing.assert_frame_equal(styler.data, ranking)
    ctx = styler._compute().ctx
    itm_col = list(ranking.columns).index("itm")
    cos_col = list(ranking.columns).index("cosine")
    for row in range(len(ranking)):
        for col in (itm_col, cos_col):
            assert any("linear-gradient" in v for _, v in ctx[(row, col)])
    assert not any(k[1] == list(ranking.columns).index("itm_rank") for k in ctx)


def test_style_ranking_gradient_and_errors(ranking):
    ctx = style_ranking(ranking, style="gradient")._compute().ctx
    itm_col = list(ranking.columns).index("itm")
    assert any(p == "background-color" for p, _ in ctx[(0, itm_col)])
    with pytest.raises(ValueError, match="style"):
        style_ranking(ranking, style="pie")
    with pytest.raises(ValueError, match="not in the table"):
        style_ranking(ranking, columns=["score"])
