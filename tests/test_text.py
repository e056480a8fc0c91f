import pytest

from blipviz.errors import InputTypeError
from blipviz.net.text import blip_tokenizer, normalize_caption, tokenize


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("A Dog (brown)  on the BEACH!", "a dog brown on the beach"),
        ('He said: "hi"; then ~ left*#', "he said hi then left"),
        ("  trailing spaces   ", "trailing spaces"),
        ("ends with newline\n", "ends with newline"),
        ("...", ""),
        ("", ""),
        ("commas, and-hyphens stay", "commas, and-hyphens stay"),
        ("tab\tsingle stays", "tab\tsingle stays"),  # pre_caption collapses runs of 2+ only
        ("two\t\tspaces", "two spaces"),
        ("Dr. Who", "dr who"),
    ],
)
def test_normalize_caption_matches_pre_caption(raw, expected):
    assert normalize_caption(raw) == expected


def test_normalize_caption_keeps_at_most_50_words():
    text = " ".join(f"w{i}" for i in range(80))
    out = normalize_caption(text)
    assert out.split(" ") == [f"w{i}" for i in range(50)]
    assert normalize_caption(text, max_words=None).count(" ") == 79


def test_vocabulary_is_bert_uncased_plus_dec_and_enc():
    tok = blip_tokenizer()
    assert len(tok) == 30524
    assert tok.convert_tokens_to_ids(["[PAD]", "[CLS]", "[SEP]", "[DEC]", "[ENC]"]) == [
        0,
        101,
        102,
        30522,
        30523,
    ]
    assert tok.convert_ids_to_tokens([1037, 3899]) == ["a", "dog"]


def test_tokenize_truncates_to_35_like_the_hf_tokenizer():
    long = " ".join(["word"] * 60)
    texts = [long, "short one"]
    ours = tokenize(texts)
    ref = blip_tokenizer()(texts, padding="longest", truncation=True, max_length=35, return_tensors="pt")
    assert ours.input_ids.tolist() == ref.input_ids.tolist()
    assert ours.attention_mask.tolist() == ref.attention_mask.tolist()
    assert ours.truncated == [True, False]
    assert ours.input_ids.shape == (2, 35)
    assert ours.tokens(1) == ["[CLS]", "short", "one", "[SEP]"]


def test_tokenize_without_normalisation_or_limit():
    text = "A Dog (brown) " + " ".join(["x"] * 40)
    raw = tokenize(text, normalize=False, max_tokens=None)
    assert raw.normalized == [text]
    assert raw.input_ids.shape[1] == len(blip_tokenizer()(text).input_ids) > 35
    assert "(" in raw.tokens(0)
    assert "(" not in tokenize(text).tokens(0)


def test_empty_and_punctuation_only_texts_become_cls_sep():
    tok = tokenize(["", "   ", "...!!!"])
    for i in range(3):
        assert tok.tokens(i) == ["[CLS]", "[SEP]"]


def test_bare_string_is_one_text_and_non_strings_are_refused():
    assert len(tokenize("one text")) == 1
    with pytest.raises(InputTypeError, match=r"texts\[1\]"):
        tokenize(["fine", 3])
    with pytest.raises(InputTypeError):
        tokenize(None)


def test_select_trims_padding():
    tok = tokenize(["a very long caption with many words in it", "hi"])
    sub = tok.select([1])
    assert sub.input_ids.shape == (1, 3)
    assert sub.texts == ["hi"]


def test_word_and_token_cuts_are_both_flagged():
    sixty = " ".join(f"w{i}" for i in range(60))
    forty = " ".join(["w"] * 40)
    tok = tokenize([sixty, forty, "short"], max_tokens=None)
    assert tok.truncated == [True, False, False] and tok.truncated_by == ["words", None, None]
    tok = tokenize([sixty, forty, "short"])
    assert tok.truncated == [True, True, False] and tok.truncated_by == ["tokens", "tokens", None]
    assert tok.select([1, 0]).truncated_by == ["tokens", "tokens"]
    raw = tokenize(sixty, normalize=False, max_tokens=None)  # no normalisation: no word limit
    assert raw.truncated_by == [None]


def test_truncation_message_counts_and_names_the_limit():
    from blipviz.net.text import truncation_message

    assert truncation_message([None, None], 35) is None
    assert truncation_message(["tokens", None], 35, limit_note="BLIP's limit") == (
        "1 of 2 texts was cut to 35 tokens (BLIP's limit): texts [0]; the result's .truncated says which"
    )
    assert truncation_message(["tokens", "words", None], 512).startswith(
        "2 of 3 texts were cut: 1 to 512 tokens, 1 to 50 words (BLIP's caption normalisation)"
    )
