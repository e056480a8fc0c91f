"""Inputs are never misread: features are tied to the net that made them, cut texts are flagged and
warned about, and the token limit is the text encoder's own."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import blipviz
from blipviz.errors import InputError
from blipviz.testing import assert_close, net_depth, synthetic_images

LONG = " ".join(f"word{i}" for i in range(60))  # 60 words: cut to 50 words, then to 35 tokens
SHORT = "a dog running on the beach"


@pytest.fixture(scope="module")
def other():
    """The tiny net with other random weights: same geometry, another net."""
    return blipviz.load_model("tiny-random", seed=1)


@pytest.fixture(scope="module")
def gallery():
    return synthetic_images(2, seed=5)


def _truncation_warnings(record) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, blipviz.TruncationWarning)]


# ------------------------------------------------------------------------------- fingerprints
def test_features_carry_the_fingerprint_of_their_net(tiny, gallery):
    image_features = tiny.encode_images(gallery)
    text_features = tiny.encode_texts([SHORT, "a cat"])
    assert image_features.fingerprint == tiny.fingerprint("image")
    assert text_features.fingerprint == tiny.fingerprint("text")
    assert image_features[1:].fingerprint == image_features.fingerprint
    assert text_features[1].fingerprint == text_features.fingerprint
    assert text_features[1].texts == ["a cat"] and len(text_features[1].tokenized) == 1


def test_image_features_of_another_net_are_refused_naming_both_nets(tiny, other, gallery):
    foreign = other.encode_images(gallery)
    short = tiny.fingerprint("image")[:12], other.fingerprint("image")[:12]
    for call in (
        lambda: tiny.itm_scores(foreign, SHORT),
        lambda: tiny.cosine_scores(foreign, SHORT),
        lambda: tiny.scores(foreign, SHORT),
        lambda: tiny.match_probabilities(SHORT, foreign[:1]),
        lambda: tiny.rank(foreign[:1], [SHORT]),
        lambda: tiny.cross_attention(foreign[:1], SHORT),
        lambda: tiny.gradcam(foreign[:1], SHORT),
        lambda: tiny.search(SHORT, foreign, k=1),
        lambda: blipviz.ZeroShotClassifier(tiny, ["dog", "cat"]).predict(foreign),
    ):
        with pytest.raises(InputError, match="another net") as info:
            call()
        message = str(info.value)
        assert "'tiny-random'" in message and short[0] in message and short[1] in message


def test_text_features_of_another_net_are_refused(tiny, other, gallery):
    foreign = other.encode_texts([SHORT, "a cat"])
    for call in (
        lambda: tiny.cosine_scores(gallery, foreign),
        lambda: tiny.itm_scores(gallery, foreign),
        lambda: tiny.scores(gallery, foreign),
        lambda: tiny.match_probabilities(foreign, tiny.encode_images(gallery[:1])),
        lambda: tiny.search_texts(gallery, foreign, k=1),
        lambda: tiny.search(foreign, gallery, k=1),
    ):
        with pytest.raises(InputError, match=r"TextFeatures.*another net"):
            call()


def test_features_of_the_same_weights_and_hand_built_features_are_accepted(tiny, gallery):
    twin = blipviz.load_model("tiny-random")  # the same seed: the same weights, another object
    features = twin.encode_images(gallery)
    assert_close(tiny.itm_scores(features, SHORT), tiny.itm_scores(gallery, SHORT), depth=net_depth(tiny))
    image_part = blipviz.load_part("ImageEncoder", "tiny-random")
    multimodal = blipviz.load_part("MultimodalEncoder", "tiny-random")
    assert multimodal(SHORT, image_part(gallery[:1])).shape == (1, 2)
    own = tiny.encode_images(gallery)
    by_hand = blipviz.ImageFeatures(own.embeddings, own.projected, own.raw, own.labels)
    assert by_hand.fingerprint == ""
    tiny.itm_scores(by_hand, SHORT)


def test_an_int8_copy_is_another_net(tiny, gallery):
    quantized = blipviz.load_model("tiny-random", quantize="int8")
    with pytest.raises(InputError, match="another net"):
        quantized.itm_scores(tiny.encode_images(gallery), SHORT)


# --------------------------------------------------------------------------------- truncation
def test_word_cut_is_flagged_when_the_token_limit_does_not_cut():
    tokenized = blipviz.net.text.tokenize([LONG, SHORT], max_tokens=None)
    assert tokenized.truncated == [True, False]
    assert tokenized.truncated_by == ["words", None]
    tokenized = blipviz.net.text.tokenize([LONG, SHORT])
    assert tokenized.truncated_by == ["tokens", None]


def test_itm_scores_flags_cut_texts_and_warns_once(tiny, gallery):
    with pytest.warns(blipviz.TruncationWarning, match=r"1 of 2 texts was cut to 35 tokens") as record:
        itm = tiny.itm_scores(gallery, [SHORT, LONG])
    assert len(_truncation_warnings(record)) == 1
    assert itm.truncated == [False, True] and itm.truncated_by == [None, "tokens"]
    with pytest.warns(blipviz.TruncationWarning) as record:
        itm, cosine = tiny.scores(gallery, [LONG, SHORT, LONG])
    assert _truncation_warnings(record) == [
        "2 of 3 texts were cut to 35 tokens (BLIP's limit): texts [0, 2]; the result's .truncated says which"
    ]
    assert itm.truncated == cosine.truncated == [True, False, True]
    with pytest.warns(blipviz.TruncationWarning) as record:
        assert tiny.cosine_scores(gallery, LONG).truncated == [True]
    assert len(_truncation_warnings(record)) == 1
    with pytest.warns(blipviz.TruncationWarning) as record:
        assert tiny.encode_texts([LONG]).truncated_by == ["tokens"]
    assert len(_truncation_warnings(record)) == 1


def test_the_warning_points_at_the_callers_line(tiny, gallery):
    with pytest.warns(blipviz.TruncationWarning) as record:
        tiny.itm_scores(gallery, LONG)
    assert record[0].filename == __file__


def test_texts_within_the_limits_give_no_warning(tiny, gallery):
    with warnings.catch_warnings():
        warnings.simplefilter("error", blipviz.TruncationWarning)
        assert tiny.itm_scores(gallery, [SHORT]).truncated == [False]
        tiny.rank(gallery[0], [SHORT, "a cat"])


def test_rank_marks_cut_texts_and_warns_once(tiny, gallery):
    with pytest.warns(blipviz.TruncationWarning) as record:
        table = tiny.rank(gallery[0], [SHORT, LONG])
    assert len(_truncation_warnings(record)) == 1
    assert dict(zip(table["text"], table.truncated, strict=True)) == {SHORT: False, LONG: True}
    assert list(table.columns) == ["text", "itm", "cosine", "itm_rank", "cosine_rank"]


def test_attention_results_say_the_text_was_cut(tiny, gallery):
    with pytest.warns(blipviz.TruncationWarning, match="1 of 1 text was cut to 35 tokens") as record:
        attention = tiny.cross_attention(gallery[0], LONG)
    assert len(_truncation_warnings(record)) == 1
    assert attention.truncated and attention.truncated_by == "tokens"
    assert len(attention.tokens) == 35
    with pytest.warns(blipviz.TruncationWarning):
        cam = tiny.gradcam(gallery[0], LONG)
    assert cam.truncated and cam.truncated_by == "tokens"
    assert not tiny.cross_attention(gallery[0], SHORT).truncated


# ----------------------------------------------------------------------------- token limit
def test_no_token_limit_means_the_text_encoders_positions(gallery):
    model = blipviz.load_model("tiny-random", max_text_tokens=None, normalize_text=False)
    assert model.text_token_limit == model.config.text_config.max_position_embeddings == 512
    very_long = " ".join(["word"] * 600)  # 602 tokens with [CLS] and [SEP]
    with pytest.warns(blipviz.TruncationWarning, match=r"cut to 512 tokens \(the text encoder's"):
        itm = model.itm_scores(gallery, [very_long, SHORT])
    assert itm.truncated_by == ["tokens", None] and np.isfinite(itm.values).all()
    with pytest.warns(blipviz.TruncationWarning):
        assert model.tokenize(very_long).input_ids.shape == (1, 512)


def test_the_50_word_cut_is_flagged_without_a_token_limit(gallery):
    model = blipviz.load_model("tiny-random", max_text_tokens=None)
    with pytest.warns(blipviz.TruncationWarning, match="cut to 50 words"):
        features = model.encode_texts([LONG, SHORT])
    assert features.truncated == [True, False] and features.truncated_by == ["words", None]


def test_a_token_limit_above_the_positions_is_refused(tiny):
    with pytest.raises(InputError, match=r"max_text_tokens.*513.*512 positions"):
        blipviz.load_model("tiny-random", max_text_tokens=513)
    with pytest.raises(InputError, match="max_text_tokens"):
        blipviz.BlipITM(tiny.hf, name="x", preprocessing=tiny.preprocessing, max_text_tokens=1)
    assert blipviz.load_model("tiny-random", max_text_tokens=512).text_token_limit == 512


def test_token_limit_set_after_loading_is_checked_too():
    model = blipviz.load_model("tiny-random")
    model.max_text_tokens = 1000
    with pytest.raises(InputError, match="512 positions"):
        model.itm_scores(synthetic_images(1), SHORT)


def test_score_matrix_takes_a_bare_str_as_one_text():
    s = blipviz.ScoreMatrix(np.zeros((2, 1)), "one text", ["a", "b"])
    assert s.texts == ["one text"] and s.truncated == [False]
    with pytest.raises(InputError, match="truncation flags"):
        blipviz.ScoreMatrix(np.zeros((1, 1)), ["x"], ["a"], truncated_by=[None, None])


def test_search_tables_say_which_texts_were_cut(tiny, gallery):
    with pytest.warns(blipviz.TruncationWarning) as record:
        frame = tiny.search([SHORT, LONG], gallery, k=1)
    assert len(_truncation_warnings(record)) == 1
    assert frame.attrs["truncated_by"] == {LONG: "tokens"}
    with pytest.warns(blipviz.TruncationWarning):
        assert tiny.search_texts(gallery, [LONG, SHORT], k=1).attrs["truncated_by"] == {LONG: "tokens"}


def test_zero_shot_results_say_which_class_texts_were_cut(tiny, gallery):
    labels = ["dog", "a " + "very " * 60 + "long class name"]
    with pytest.warns(blipviz.TruncationWarning, match="1 of 2 texts"):
        clf = blipviz.ZeroShotClassifier(tiny, labels)
    assert clf.truncated_by == {labels[1]: "tokens"}
    assert clf.predict_proba(gallery).attrs["truncated_by"] == {labels[1]: "tokens"}
    assert clf.top_k(gallery[0], k=2).attrs["truncated_by"] == {labels[1]: "tokens"}
    assert blipviz.ZeroShotClassifier(tiny, ["dog", "cat"]).predict_proba(gallery).attrs["truncated_by"] == {}


def test_the_feature_space_map_says_which_texts_were_cut(tiny, gallery):
    long = "a " + "very " * 60 + "long caption"
    with pytest.warns(blipviz.TruncationWarning):
        disp = blipviz.feature_space_map(model=tiny, images=gallery[:2], texts=["a dog", long], method="pca")
    assert disp.coords_["truncated_by"].tolist() == [None, None, None, "tokens"]
