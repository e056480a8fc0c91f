"""Text side of BLIP: caption normalisation and the WordPiece tokenizer.

BLIP's retrieval code normalises every caption with ``pre_caption`` before tokenising it with the
``bert-base-uncased`` vocabulary extended by two tokens, ``[DEC]`` (30522) and ``[ENC]`` (30523),
and truncates to 35 tokens. This module reproduces both steps exactly.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources

import torch

from .errors import InputError, InputTypeError

__all__ = [
    "BLIP_MAX_TEXT_TOKENS",
    "BLIP_MAX_WORDS",
    "TokenizedTexts",
    "as_text_list",
    "blip_tokenizer",
    "normalize_caption",
    "tokenize",
]

#: Token limit of BLIP's retrieval and ITM code (``max_length=35``).
BLIP_MAX_TEXT_TOKENS = 35
#: Word limit of BLIP's ``pre_caption`` (``max_words=50``).
BLIP_MAX_WORDS = 50

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
    caption = _PUNCTUATION.sub(" ", text.lower())
    caption = _WHITESPACE_RUN.sub(" ", caption)
    caption = caption.rstrip("\n").strip(" ")
    if max_words is not None:
        words = caption.split(" ")
        if len(words) > max_words:
            caption = " ".join(words[:max_words])
    return caption


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
        Whether each text lost tokens to the token limit.
    """

    texts: list[str]
    normalized: list[str]
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    truncated: list[bool]

    def __len__(self) -> int:
        return len(self.texts)

    def tokens(self, i: int) -> list[str]:
        """The WordPiece tokens of text ``i`` without padding, ``[CLS]`` first and ``[SEP]`` last."""
        n = int(self.attention_mask[i].sum())
        return blip_tokenizer().convert_ids_to_tokens(self.input_ids[i, :n].tolist())

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
        Truncate to this many tokens, ``[CLS]`` and ``[SEP]`` included. ``None``: no limit.
    max_words : int or None, default 50
        Word limit of the normalisation.

    Returns
    -------
    TokenizedTexts
    """
    texts = as_text_list(texts)
    normalized = [normalize_caption(t, max_words) for t in texts] if normalize else list(texts)
    tokenizer = blip_tokenizer()
    if max_tokens is not None and max_tokens < 2:
        raise InputError(f"max_tokens must be at least 2 ([CLS] and [SEP]), got {max_tokens}")
    if not texts:
        empty = torch.zeros((0, 0), dtype=torch.long)
        return TokenizedTexts([], [], empty, empty.clone(), [])
    full = tokenizer(normalized, add_special_tokens=True)["input_ids"]
    limit = max_tokens if max_tokens is not None else max(len(ids) for ids in full)
    truncated = [len(ids) > limit for ids in full]
    rows = [ids if len(ids) <= limit else [*ids[: limit - 1], tokenizer.sep_token_id] for ids in full]
    width = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        input_ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        attention_mask[i, : len(r)] = 1
    return TokenizedTexts(texts, normalized, input_ids, attention_mask, truncated)
