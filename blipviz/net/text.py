"""Text side of BLIP: caption normalisation and the WordPiece tokenizer.

BLIP's retrieval code normalises every caption with ``pre_caption`` before tokenising it with the
``bert-base-uncased`` vocabulary extended by two tokens, ``[DEC]`` (30522) and ``[ENC]`` (30523),
and truncates to 35 tokens. This module reproduces both steps exactly.
"""

from __future__ import annotations

import functools
import os
import re
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from types import FrameType

import torch

from ..errors import InputError, InputTypeError

__all__ = [
    "BLIP_MAX_TEXT_TOKENS",
    "BLIP_MAX_WORDS",
    "TokenizedTexts",
    "TruncationWarning",
    "as_text_list",
    "blip_tokenizer",
    "normalize_caption",
    "tokenize",
    "truncation_message",
    "warn_truncated",
]

#: Token limit of BLIP's retrieval and ITM code (``max_length=35``).
BLIP_MAX_TEXT_TOKENS = 35
#: Word limit of BLIP's ``pre_caption`` (``max_words=50``).
BLIP_MAX_WORDS = 50


class TruncationWarning(UserWarning):
    """Some texts of a call were cut (to the word limit of BLIP's caption normalisation, or to the
    net's token limit); the result's ``truncated`` / ``truncated_by`` say which."""


_PUNCTUATION = re.compile(r"([.!\"()*#:;~])")
_WHITESPACE_RUN = re.compile(r"\s{2,}")


def normalize_caption(text: str, max_words: int | None = BLIP_MAX_WORDS) -> str:
    """Normalise a caption exactly as BLIP's ``pre_caption`` does.

    Lower-case; each of ``. ! " ( ) * # : ; ~`` becomes a space; every run of two or more whitespace
    characters becomes one space; a trailing newline and surrounding spaces are stripped; at most
    ``max_words`` space-separated words are kept.

    Parameters
    ----------
    text : str
        The caption.
    max_words : int or None, default 50
        Word limit; ``None`` keeps every word.

    Returns
    -------
    str

    Examples
    --------
    >>> normalize_caption("A Dog (brown)  on the BEACH!")
    'a dog brown on the beach'
    """
    return _normalize(text, max_words)[0]


def _normalize(text: str, max_words: int | None) -> tuple[str, bool]:
    """(normalised caption, whether words were dropped at ``max_words``)."""
    caption = _PUNCTUATION.sub(" ", text.lower())
    caption = _WHITESPACE_RUN.sub(" ", caption)
    caption = caption.rstrip("\n").strip(" ")
    if max_words is not None:
        words = caption.split(" ")
        if len(words) > max_words:
            return " ".join(words[:max_words]), True
    return caption, False


@functools.cache
def blip_tokenizer():
    """BLIP's tokenizer: ``bert-base-uncased`` WordPiece plus ``[DEC]`` (30522) and ``[ENC]`` (30523).

    Built from the vocabulary shipped inside blipviz, so no file is ever downloaded. The result is
    cached; treat it as read-only.

    Returns
    -------
    transformers.BertTokenizer
    """
    from transformers import BertTokenizer
    from transformers.models.bert.tokenization_bert import load_vocab

    with resources.as_file(resources.files("blipviz") / "data" / "vocab.txt") as path:
        vocab = load_vocab(str(path))
    tokenizer = BertTokenizer(vocab=vocab)
    tokenizer.add_special_tokens({"bos_token": "[DEC]", "additional_special_tokens": ["[ENC]"]})
    if tokenizer.convert_tokens_to_ids(["[DEC]", "[ENC]"]) != [30522, 30523] or len(tokenizer) != 30524:
        raise RuntimeError("blipviz's packaged vocabulary is damaged: expected 30,522 WordPiece entries")
    return tokenizer


def as_text_list(texts: str | Sequence[str], *, name: str = "texts") -> list[str]:
    """Accept one text or a sequence of texts; refuse anything that is not ``str``.

    A bare ``str`` means one text. Raises :class:`~blipviz.errors.InputTypeError` naming the index of
    the first item that is not a string.
    """
    if isinstance(texts, str):
        return [texts]
    if texts is None or isinstance(texts, bytes | bytearray | dict):
        raise InputTypeError(f"{name} must be a str or a sequence of str, got {type(texts).__name__}")
    try:
        texts = list(texts)  # lists, tuples, generators, pandas Series, numpy arrays of str
    except TypeError:
        raise InputTypeError(
            f"{name} must be a str or a sequence of str, got {type(texts).__name__}"
        ) from None
    out = []
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise InputTypeError(f"{name}[{i}] must be a str, got {type(t).__name__}: {t!r:.60}")
        out.append(t)
    return out


@dataclass(frozen=True)
class TokenizedTexts:
    """Token ids of a batch of texts, padded to the longest.

    Attributes
    ----------
    texts : list of str
        The texts as given by the user.
    normalized : list of str
        The texts after caption normalisation (identical to ``texts`` when it is off).
    input_ids : Tensor of shape (n_texts, n_tokens)
        ``[CLS] ... [SEP] [PAD]...`` token ids.
    attention_mask : Tensor of shape (n_texts, n_tokens)
        1 for real tokens, 0 for padding.
    truncated : list of bool
        Whether each text was cut: words dropped by the normalisation's word limit, or tokens
        dropped at the token limit.
    truncated_by : list of {"tokens", "words", None}
        Why each text was cut: ``"tokens"`` (the token limit cut it, whatever the word limit did
        before), ``"words"`` (only the word limit of :func:`normalize_caption` cut it), or ``None``.
        Default: ``"tokens"`` where ``truncated``.
    """

    texts: list[str]
    normalized: list[str]
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    truncated: list[bool]
    # None (the default) is replaced in __post_init__: the attribute is always a list
    truncated_by: list[str | None] = field(default=None, repr=False)  # type: ignore[arg-type]

    def __post_init__(self) -> None:
        if self.truncated_by is None:
            object.__setattr__(self, "truncated_by", ["tokens" if t else None for t in self.truncated])

    def __len__(self) -> int:
        return len(self.texts)

    def tokens(self, i: int) -> list[str]:
        """The WordPiece tokens of text ``i`` without padding, ``[CLS]`` first and ``[SEP]`` last."""
        n = int(self.attention_mask[i].sum())
        return blip_tokenizer().convert_ids_to_tokens(self.input_ids[i, :n].tolist())

    def content_keys(self) -> list[str]:
        """Per text, a SHA-256 of its token ids (after normalisation and truncation): equal texts get
        equal keys. Computed once per object (a feature store asks for them once per image)."""
        keys = self.__dict__.get("_content_keys")
        if keys is None:
            import hashlib
            import json

            lengths = self.attention_mask.sum(1).tolist()
            rows = self.input_ids.tolist()
            keys = [
                hashlib.sha256(json.dumps(row[: int(n)]).encode()).hexdigest()
                for row, n in zip(rows, lengths, strict=True)
            ]
            self.__dict__["_content_keys"] = keys
        return keys

    def select(self, index: Sequence[int]) -> TokenizedTexts:
        """The texts at ``index``, trimmed to their own longest length."""
        index = list(index)
        mask = self.attention_mask[index]
        n = int(mask.sum(1).max()) if len(index) else 0
        return TokenizedTexts(
            texts=[self.texts[i] for i in index],
            normalized=[self.normalized[i] for i in index],
            input_ids=self.input_ids[index, :n],
            attention_mask=mask[:, :n],
            truncated=[self.truncated[i] for i in index],
            truncated_by=[self.truncated_by[i] for i in index],
        )


def tokenize(
    texts: str | Sequence[str],
    *,
    normalize: bool = True,
    max_tokens: int | None = BLIP_MAX_TEXT_TOKENS,
    max_words: int | None = BLIP_MAX_WORDS,
) -> TokenizedTexts:
    """Normalise and tokenise texts as BLIP does.

    Parameters
    ----------
    texts : str or sequence of str
    normalize : bool, default True
        Apply :func:`normalize_caption` first (BLIP). ``False`` tokenises the raw text, as the
        Hugging Face model card does.
    max_tokens : int or None, default 35
        Truncate to this many tokens, ``[CLS]`` and ``[SEP]`` included. ``None``: no limit (a net's
        text encoder has one: :meth:`blipviz.BlipITM.tokenize` applies it).
    max_words : int or None, default 50
        Word limit of the normalisation (not applied with ``normalize=False``).

    Returns
    -------
    TokenizedTexts
        ``truncated`` / ``truncated_by`` say which texts were cut, by words or by tokens. Nothing is
        warned here; :meth:`blipviz.BlipITM.tokenize` warns (:class:`TruncationWarning`).
    """
    texts = as_text_list(texts)
    if normalize:
        pairs = [_normalize(t, max_words) for t in texts]
        normalized = [caption for caption, _ in pairs]
        word_cut = [cut for _, cut in pairs]
    else:
        normalized, word_cut = list(texts), [False] * len(texts)
    tokenizer = blip_tokenizer()
    if max_tokens is not None and (isinstance(max_tokens, bool) or not isinstance(max_tokens, int)):
        raise InputError(f"max_tokens must be a whole number or None, got {max_tokens!r}")
    if max_tokens is not None and max_tokens < 2:
        raise InputError(f"max_tokens must be at least 2 ([CLS] and [SEP]), got {max_tokens}")
    if not texts:
        empty = torch.zeros((0, 0), dtype=torch.long)
        return TokenizedTexts([], [], empty, empty.clone(), [], [])
    full = tokenizer(normalized, add_special_tokens=True)["input_ids"]
    limit = max_tokens if max_tokens is not None else max(len(ids) for ids in full)
    token_cut = [len(ids) > limit for ids in full]
    truncated_by = [
        "tokens" if t else "words" if w else None for t, w in zip(token_cut, word_cut, strict=True)
    ]
    truncated = [reason is not None for reason in truncated_by]
    rows = [ids if len(ids) <= limit else [*ids[: limit - 1], tokenizer.sep_token_id] for ids in full]
    width = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        input_ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        attention_mask[i, : len(r)] = 1
    return TokenizedTexts(texts, normalized, input_ids, attention_mask, truncated, truncated_by)


def truncation_message(
    truncated_by: Sequence[str | None],
    max_tokens: int | None,
    *,
    max_words: int | None = BLIP_MAX_WORDS,
    limit_note: str = "",
) -> str | None:
    """What a :class:`TruncationWarning` says about a batch of texts, or None when none was cut.

    Parameters
    ----------
    truncated_by : sequence of {"tokens", "words", None}
        One reason per text (``TokenizedTexts.truncated_by``).
    max_tokens, max_words : int or None
        The limits that applied.
    limit_note : str
        Where the token limit comes from, e.g. ``"BLIP's limit"``.

    Examples
    --------
    >>> truncation_message(["tokens", None, "tokens", None, None], 35, limit_note="BLIP's limit")
    "2 of 5 texts were cut to 35 tokens (BLIP's limit): texts [0, 2]; the result's .truncated says which"
    """
    reasons = list(truncated_by)
    cut = [i for i, r in enumerate(reasons) if r is not None]
    if not cut:
        return None
    n, k = len(reasons), len(cut)
    note = f" ({limit_note})" if limit_note else ""
    by_tokens = sum(r == "tokens" for r in reasons)
    by_words = k - by_tokens
    tokens_part = f"{max_tokens} tokens{note}"
    words_part = f"{max_words} words (BLIP's caption normalisation)"
    head = f"{k} of {n} {'text' if n == 1 else 'texts'} {'was' if k == 1 else 'were'} cut"
    if by_words == 0:
        head += f" to {tokens_part}"
    elif by_tokens == 0:
        head += f" to {words_part}"
    else:
        head += f": {by_tokens} to {tokens_part}, {by_words} to {words_part}"
    shown = ", ".join(map(str, cut[:10])) + (", ..." if k > 10 else "")
    return f"{head}: texts [{shown}]; the result's .truncated says which"


def _caller_stacklevel() -> int:
    """``stacklevel`` for the :func:`warnings.warn` of this function's caller that points at the first
    frame outside blipviz (the user's line)."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep  # blipviz/
    frame: FrameType | None = sys._getframe(2)
    level = 2  # level 1 is the frame that calls warnings.warn
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package):
        frame, level = frame.f_back, level + 1
    return level


def warn_truncated(
    truncated_by: Sequence[str | None],
    max_tokens: int | None,
    *,
    max_words: int | None = BLIP_MAX_WORDS,
    limit_note: str = "",
) -> None:
    """Warn (:class:`TruncationWarning`, pointing at the user's line) when some texts were cut."""
    message = truncation_message(truncated_by, max_tokens, max_words=max_words, limit_note=limit_note)
    if message is not None:
        warnings.warn(message, TruncationWarning, stacklevel=_caller_stacklevel())
