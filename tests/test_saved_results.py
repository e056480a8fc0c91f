"""Results saved to a folder and loaded back without the net: the same arrays, texts, labels,
thumbnails (PNG, lossless) and provenance, so the loaded result's tables and figures equal the
original's; and the errors of a wrong path or a wrong class."""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from conftest import examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import blipviz
from blipviz import InputError, PairScores, Ranking, RetrievalEvaluation, ScoreMatrix
from blipviz.analysis.retrieval import itm_eval
from blipviz.net.provenance import PROVENANCE_KEYS

TEXT = st.text(max_size=30)
REASON = st.sampled_from([None, "tokens", "words"])
SETTINGS = settings(max_examples=examples(15), deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _thumbnails(draw, n: int):
    if not draw(st.booleans()):
        return None
    rs = np.random.RandomState(draw(st.integers(0, 2**16)))
    sizes = [(int(rs.randint(1, 12)), int(rs.randint(1, 12))) for _ in range(n)]
    return [Image.fromarray(rs.randint(0, 256, (h, w, 3)).astype(np.uint8)) for h, w in sizes]


def _same_thumbnails(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return len(a) == len(b) and all(
        x.mode == y.mode and np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a, b, strict=True)
    )


def _pixels(display) -> np.ndarray:
    figure = display.figure_
    figure.canvas.draw()
    return np.asarray(figure.canvas.buffer_rgba()).copy()


@st.composite
def score_matrices(draw):
    n_images, n_texts = draw(st.integers(0, 4)), draw(st.integers(0, 4))
    values = draw(
        st.lists(
            st.floats(-1e6, 1e6, allow_nan=False), min_size=n_images * n_texts, max_size=n_images * n_texts
        )
    )
    true_pairs = None
    if draw(st.booleans()):
        true_pairs = np.array(
            draw(st.lists(st.booleans(), min_size=n_images * n_texts, max_size=n_images * n_texts)),
            dtype=bool,
        ).reshape(n_images, n_texts)
    return ScoreMatrix(
        np.array(values, dtype=np.float64).reshape(n_images, n_texts),
        texts=draw(st.lists(TEXT, min_size=n_texts, max_size=n_texts)),
        image_labels=draw(st.lists(TEXT, min_size=n_images, max_size=n_images)),
        kind=draw(st.sampled_from(["itm", "cosine"])),
        thumbnails=_thumbnails(draw, n_images),
        truncated_by=draw(st.lists(REASON, min_size=n_texts, max_size=n_texts)),
        model_name=draw(st.none() | TEXT),
        true_pairs=true_pairs,
        provenance=draw(st.none() | st.fixed_dictionaries({k: st.none() | TEXT for k in PROVENANCE_KEYS})),
    )


@SETTINGS
@given(score_matrices())
def test_score_matrix_round_trip(matrix):
    with tempfile.TemporaryDirectory() as folder:
        matrix.save(Path(folder) / "scores")
        loaded = ScoreMatrix.load(Path(folder) / "scores")
    assert loaded.values.dtype == np.float64 and np.array_equal(loaded.values, matrix.values)
    assert loaded.shape == matrix.shape
    assert (loaded.texts, loaded.image_labels, loaded.kind) == (
        matrix.texts,
        matrix.image_labels,
        matrix.kind,
    )
    assert (loaded.truncated_by, loaded.model_name) == (matrix.truncated_by, matrix.model_name)
    if matrix.true_pairs is None:
        assert loaded.true_pairs is None
    else:
        assert np.array_equal(loaded.true_pairs, matrix.true_pairs)
    assert _same_thumbnails(loaded.thumbnails, matrix.thumbnails)
    if matrix.provenance is None:  # built by hand: versions and date of saving, no device or dtype
        assert set(loaded.provenance) == set(PROVENANCE_KEYS) and loaded.provenance["device"] is None
        assert loaded.provenance["blipviz"] == blipviz.__version__
    else:
        assert loaded.provenance == matrix.provenance
    pd.testing.assert_frame_equal(loaded.to_pandas(), matrix.to_pandas())


def _styled_html(table) -> str:
    return re.sub(r"T_[0-9a-f]{5}", "T_", table.style_().to_html())


@SETTINGS
@given(st.data())
def test_ranking_round_trip(data):
    n = data.draw(st.integers(1, 6))
    texts = data.draw(st.lists(TEXT, min_size=n, max_size=n))
    scores = st.lists(st.floats(-1, 1, allow_nan=False), min_size=n, max_size=n)
    table = blipviz.analysis.scores.ranking(
        texts,
        data.draw(scores),
        data.draw(scores),
        by=data.draw(st.sampled_from(["itm", "cosine"])),
        truncated_by=data.draw(st.lists(REASON, min_size=n, max_size=n)),
        image_label=data.draw(st.none() | TEXT),
        model_name=data.draw(st.none() | TEXT),
    )
    with tempfile.TemporaryDirectory() as folder:
        table.save(folder)
        loaded = Ranking.load(folder)
    assert type(loaded) is Ranking
    pd.testing.assert_frame_equal(loaded, table)
    assert {k: v for k, v in loaded.attrs.items() if k != "provenance"} == {
        k: v for k, v in table.attrs.items() if k != "provenance"
    }
    assert loaded.attrs["provenance"]["blipviz"] == blipviz.__version__
    assert loaded.truncated.equals(table.truncated)
    assert _styled_html(loaded) == _styled_html(table)


def test_scores_of_a_net_record_their_provenance_and_redraw_the_same_figure(tiny, images, texts, tmp_path):
    itm = tiny.itm_scores(images, texts).with_true_pairs([(0, 0), (1, 2)])
    assert itm.provenance["device"] == "cpu" and itm.provenance["dtype"] == "float32"
    assert itm.provenance["blipviz"] == blipviz.__version__
    itm.save(tmp_path / "itm")
    record = json.loads((tmp_path / "itm" / "blipviz-result.json").read_text())
    assert record["kind"] == "ScoreMatrix" and record["provenance"] == itm.provenance
    loaded = ScoreMatrix.load(tmp_path / "itm")
    assert loaded.provenance == itm.provenance
    first, second = _pixels(itm.plot()), _pixels(loaded.plot())
    plt.close("all")
    assert np.array_equal(first, second)

    table = tiny.rank(images[0], texts)
    assert table.attrs["provenance"]["device"] == "cpu"
    table.save(tmp_path / "ranking")
    loaded = Ranking.load(tmp_path / "ranking")
    assert loaded.attrs == table.attrs and _styled_html(loaded) == _styled_html(table)


def test_save_and_load_errors_name_the_path_and_the_way_forward(tmp_path):
    matrix = ScoreMatrix(np.zeros((1, 1)), ["a"], ["x"])
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(InputError, match="it is a file"):
        matrix.save(tmp_path / "file.txt")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(InputError, match="not empty and holds no saved blipviz result"):
        matrix.save(tmp_path / "mine")
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]
    matrix.save(tmp_path / "saved")
    with pytest.raises(InputError, match="overwrite=True"):
        matrix.save(tmp_path / "saved")
    other = ScoreMatrix(np.ones((2, 1)), ["b"], ["y", "z"], thumbnails=None)
    other.save(tmp_path / "saved", overwrite=True)
    assert ScoreMatrix.load(tmp_path / "saved").shape == (2, 1)
    with pytest.raises(InputError, match="no such folder"):
        ScoreMatrix.load(tmp_path / "nothing")
    with pytest.raises(InputError, match="not a saved blipviz result"):
        ScoreMatrix.load(tmp_path / "mine")
    with pytest.raises(
        InputError, match=r"holds a saved ScoreMatrix, not a Ranking: load it with blipviz\.ScoreMatrix\.load"
    ):
        Ranking.load(tmp_path / "saved")


@st.composite
def retrieval_evaluations(draw):
    n_images = draw(st.integers(1, 4))
    text_image = list(range(n_images)) + draw(st.lists(st.integers(0, n_images - 1), max_size=4))
    n_texts = len(text_image)
    rs = np.random.RandomState(draw(st.integers(0, 2**16)))
    score_i2t = rs.randn(n_images, n_texts).astype(np.float32)
    score_t2i = rs.randn(n_texts, n_images).astype(np.float32)
    score_i2t[rs.rand(n_images, n_texts) < 0.3] = -100.0  # BLIP's fill outside the candidates
    metrics, ranks_i2t, ranks_t2i = itm_eval(score_i2t, score_t2i, text_image)
    return RetrievalEvaluation(
        score_i2t=score_i2t,
        score_t2i=score_t2i,
        text_image=np.array(text_image, dtype=np.int64),
        metrics=metrics,
        ranks_i2t=ranks_i2t,
        ranks_t2i=ranks_t2i,
        k_test=draw(st.integers(1, 300)),
        score=draw(st.sampled_from(["itm+itc", "itc", "itm"])),
        itm_pairs=draw(st.integers(0, 100)),
        texts=draw(st.lists(TEXT, min_size=n_texts, max_size=n_texts)),
        image_labels=draw(st.just([]) | st.lists(TEXT, min_size=n_images, max_size=n_images)),
        thumbnails=_thumbnails(draw, n_images),
        model_name=draw(TEXT),
        benchmark=draw(TEXT),
    )


@SETTINGS
@given(retrieval_evaluations())
def test_retrieval_evaluation_round_trip(evaluation):
    with tempfile.TemporaryDirectory() as folder:
        evaluation.save(folder)
        loaded = RetrievalEvaluation.load(folder)
    for name in ("score_i2t", "score_t2i", "text_image", "ranks_i2t", "ranks_t2i"):
        mine, theirs = getattr(loaded, name), getattr(evaluation, name)
        assert mine.dtype == theirs.dtype and np.array_equal(mine, theirs), name
    assert loaded.metrics == evaluation.metrics
    for name in ("k_test", "score", "itm_pairs", "texts", "image_labels", "model_name", "benchmark"):
        assert getattr(loaded, name) == getattr(evaluation, name), name
    assert _same_thumbnails(loaded.thumbnails, evaluation.thumbnails)
    for direction in ("i2t", "t2i"):
        assert np.array_equal(loaded.recall_curve(direction), evaluation.recall_curve(direction))
        pd.testing.assert_frame_equal(
            loaded.failures(direction).to_pandas(), evaluation.failures(direction).to_pandas()
        )


@st.composite
def pair_scores(draw):
    n = draw(st.integers(1, 5))
    n_distinct = draw(st.integers(1, n))
    image_index = list(range(n_distinct)) + draw(
        st.lists(st.integers(0, n_distinct - 1), min_size=n - n_distinct, max_size=n - n_distinct)
    )
    values = st.lists(st.floats(-50, 50, allow_nan=False), min_size=n, max_size=n)
    return PairScores(
        texts=draw(st.lists(TEXT, min_size=n, max_size=n)),
        image_labels=draw(st.lists(TEXT, min_size=n, max_size=n)),
        itm=draw(values),
        itm_logit=draw(values),
        cosine=draw(values),
        truncated_by=draw(st.lists(REASON, min_size=n, max_size=n)),
        image_index=np.array(image_index),
        thumbnails=_thumbnails(draw, n_distinct),
        model_name=draw(st.none() | TEXT),
    )


@SETTINGS
@given(pair_scores())
def test_pair_scores_round_trip(pairs):
    with tempfile.TemporaryDirectory() as folder:
        pairs.save(folder)
        loaded = PairScores.load(folder)
    pd.testing.assert_frame_equal(loaded.to_pandas(), pairs.to_pandas())
    assert np.array_equal(loaded.image_index, pairs.image_index)
    assert (loaded.truncated_by, loaded.model_name) == (pairs.truncated_by, pairs.model_name)
    assert _same_thumbnails(loaded.thumbnails, pairs.thumbnails)
    pd.testing.assert_frame_equal(loaded.worst(3), pairs.worst(3))


def test_retrieval_and_pairs_of_a_net_redraw_the_same_figures(tiny, images, texts, tmp_path):
    evaluation = blipviz.evaluate_retrieval(tiny, images, texts[:4], text_image=[0, 1, 2, 3], k_test=2)
    assert evaluation.provenance["device"] == "cpu" and evaluation.provenance["dtype"] == "float32"
    evaluation.save(tmp_path / "retrieval")
    loaded = RetrievalEvaluation.load(tmp_path / "retrieval")
    assert loaded.provenance == evaluation.provenance and loaded.metrics == evaluation.metrics
    first, second = _pixels(evaluation.plot()), _pixels(loaded.plot())
    assert np.array_equal(first, second)
    assert loaded.failures("t2i")._repr_html_() == evaluation.failures("t2i")._repr_html_()

    pairs = tiny.pair_scores([images[0], images[1], images[0]], texts[:3])
    assert pairs.provenance["blipviz"] == blipviz.__version__
    pairs.save(tmp_path / "pairs")
    loaded = PairScores.load(tmp_path / "pairs")
    assert loaded.provenance == pairs.provenance
    first, second = _pixels(pairs.plot_worst(3)), _pixels(loaded.plot_worst(3))
    assert np.array_equal(first, second)
    first = _pixels(pairs.plot_distribution(threshold=0.5))
    second = _pixels(loaded.plot_distribution(threshold=0.5))
    plt.close("all")
    assert np.array_equal(first, second)


def test_a_save_that_cannot_complete_writes_nothing_and_says_why(tmp_path):
    """The record is checked before any file is written: numpy numbers are kept as numbers, a value
    JSON cannot hold stops the save with nothing written; an unwritable place is a named error."""
    table = blipviz.analysis.scores.ranking(["a", "b"], [0.5, 0.1], [0.2, 0.3], by="itm")
    table.attrs["threshold"] = np.float32(1.5)
    table.save(tmp_path / "kept")
    assert Ranking.load(tmp_path / "kept").attrs["threshold"] == 1.5
    table.attrs["threshold"] = object()
    with pytest.raises(InputError, match="nothing was written"):
        table.save(tmp_path / "refused")
    assert not (tmp_path / "refused").exists()
    (tmp_path / "blocked").write_text("a file where a folder would go")
    with pytest.raises(InputError, match="cannot save to"):
        ScoreMatrix(np.zeros((1, 1)), ["a"], ["x"]).save(tmp_path / "blocked" / "result")


def _same_explanation(a, b) -> None:
    """Every field of two explanations equal: arrays exact with their dtype, the image's pixels."""
    for name in ("maps", "match_map", "signed_maps"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), name
        if x is not None:
            assert x.dtype == y.dtype and np.array_equal(x, y), name
    for name in (
        "method",
        "tokens",
        "itm_probability",
        "text",
        "image_label",
        "grid",
        "options",
        "truncated_by",
    ):
        assert getattr(a, name) == getattr(b, name), name
    assert (a.image is None) == (b.image is None)
    if a.image is not None:
        assert a.image.mode == b.image.mode and np.array_equal(np.asarray(a.image), np.asarray(b.image))


def test_explanation_evaluation_round_trip_redraws_without_the_net(tiny, images, texts, tmp_path):
    """Every field comes back equal (curves, tables, per-pair AUCs, each explanation with its image,
    options and provenance), and the curves, the table and an explanation's overlay draw the same
    pixels from the loaded evaluation."""
    import dataclasses

    from blipviz import ExplanationEvaluation

    evaluation = blipviz.evaluate_explanations(
        tiny,
        [images[0], images[1], images[0]],
        [texts[0], texts[1], texts[2]],
        methods=("attention", "gradcam", "occlusion"),
        steps=2,
        random_orders=2,
        resamples=50,
    )
    # one explanation computed from pixels (no image) travels too
    first = evaluation.explanations["attention"][0]
    evaluation.explanations["attention"][0] = dataclasses.replace(first, image=None)
    assert evaluation.provenance["device"] == "cpu"
    evaluation.save(tmp_path / "explanations")
    record = json.loads((tmp_path / "explanations" / "blipviz-result.json").read_text())
    assert record["kind"] == "ExplanationEvaluation" and record["provenance"] == evaluation.provenance
    loaded = ExplanationEvaluation.load(tmp_path / "explanations")
    pd.testing.assert_frame_equal(loaded.curves, evaluation.curves)
    pd.testing.assert_frame_equal(loaded.table, evaluation.table)
    pd.testing.assert_frame_equal(loaded.pair_aucs, evaluation.pair_aucs)
    for name in ("steps", "baseline", "net_name", "confidence", "resamples", "seed", "provenance", "note"):
        assert getattr(loaded, name) == getattr(evaluation, name), name
    assert list(loaded.explanations) == list(evaluation.explanations)
    for method, made in evaluation.explanations.items():
        assert len(loaded.explanations[method]) == len(made) == 3
        for a, b in zip(made, loaded.explanations[method], strict=True):
            _same_explanation(a, b)
    # pairs of one image share one picture, stored once
    assert loaded.explanations["gradcam"][0].image is loaded.explanations["gradcam"][2].image
    first, second = _pixels(evaluation.plot()), _pixels(loaded.plot())
    assert np.array_equal(first, second)
    original, again = evaluation.explanations["gradcam"][1], loaded.explanations["gradcam"][1]
    first, second = _pixels(original.overlay(tokens="[match]")), _pixels(again.overlay(tokens="[match]"))
    plt.close("all")
    assert np.array_equal(first, second)
    assert repr(loaded) == repr(evaluation)


def test_explanation_evaluation_load_errors_are_named(tmp_path):
    from blipviz import ExplanationEvaluation

    with pytest.raises(InputError, match=r"cannot load ExplanationEvaluation from .*: no such folder"):
        ExplanationEvaluation.load(tmp_path / "nothing")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(InputError, match="not a saved blipviz result"):
        ExplanationEvaluation.load(tmp_path / "mine")
    ScoreMatrix(np.zeros((1, 1)), ["a"], ["x"]).save(tmp_path / "scores")
    with pytest.raises(
        InputError,
        match=r"a saved ScoreMatrix, not a ExplanationEvaluation: load it with blipviz\.ScoreMatrix\.load",
    ):
        ExplanationEvaluation.load(tmp_path / "scores")
