"""What the encoders return: features of images and of texts.

They hold computed arrays plus labels and the fingerprint of the net that made them; no model runs
inside them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..errors import InputError, InputTypeError

__all__ = ["ImageFeatures", "TextFeatures", "index_list"]


def index_list(index: int | slice | Sequence[int], n: int) -> list[int]:
    """Positions picked by an int, a slice or a sequence of ints among ``n`` items."""
    if isinstance(index, int | np.integer):
        i = int(index)
        if not -n <= i < n:
            raise IndexError(f"index {i} out of range for {n} items")
        return [i % n]
    if isinstance(index, slice):
        return list(range(n))[index]
    return [int(i) for i in index]


@dataclass(eq=False)
class ImageFeatures:
    """Features of a batch of images, from the image encoder.

    Attributes
    ----------
    embeddings : Tensor of shape (n_images, 256)
        ``vision_proj`` of the image ``[CLS]`` state, L2-normalised: the "Output" port.
    projected : Tensor of shape (n_images, 256)
        The same before normalisation.
    raw : Tensor of shape (n_images, 1 + n_patches, width) or None
        Last hidden state of the vision transformer: the "RawFeatures" port (577 x 768 for
        ViT-B/16, 577 x 1024 for ViT-L/16), the keys and values of the multimodal encoder's
        cross-attention. ``None`` when not kept.
    labels : list of str
        One label per image (file name, or ``"image i"``).
    thumbnails : list of PIL.Image.Image or None
        Small RGB copies of the images, for plots.
    model_name : str
        Name of the net that computed them.
    fingerprint : str
        ``model.fingerprint("image")`` of that net: a BLAKE2b-256 of its image weights. A net refuses
        features whose fingerprint is not its own (:meth:`blipviz.BlipITM.check_origin`); ``""``
        (features built by hand) is accepted by every net.
    """

    embeddings: torch.Tensor
    projected: torch.Tensor
    raw: torch.Tensor | None
    labels: list[str]
    thumbnails: list[Any] | None = None
    model_name: str = ""
    fingerprint: str = field(default="", repr=False)

    def __len__(self) -> int:
        return int(self.embeddings.shape[0])

    @property
    def width(self) -> int | None:
        """Width of the raw features (768 for ViT-B/16, 1024 for ViT-L/16), or None."""
        return None if self.raw is None else int(self.raw.shape[-1])

    def __getitem__(self, index: int | slice | Sequence[int]) -> ImageFeatures:
        idx = index_list(index, len(self))
        return ImageFeatures(
            embeddings=self.embeddings[idx],
            projected=self.projected[idx],
            raw=None if self.raw is None else self.raw[idx],
            labels=[self.labels[i] for i in idx],
            thumbnails=None if self.thumbnails is None else [self.thumbnails[i] for i in idx],
            model_name=self.model_name,
            fingerprint=self.fingerprint,
        )

    def __repr__(self) -> str:
        raw = "not kept" if self.raw is None else tuple(self.raw.shape)
        return f"ImageFeatures(n={len(self)}, embeddings={tuple(self.embeddings.shape)}, raw={raw})"


_CHECKED_TEXT_ARRAYS = ("embeddings", "projected")


def _checked_text_array(features: TextFeatures, name: str, value: Any) -> torch.Tensor:
    """``value`` for ``TextFeatures.<name>``: a Tensor (a numeric numpy array becomes one over the
    same memory where it can) of finite values; else :class:`InputTypeError` or, for NaN or inf,
    :class:`InputError` naming the texts (as ImageFeatures with NaN are refused)."""
    if isinstance(value, np.ndarray) and value.dtype.kind in "iuf":
        if not (value.flags.writeable and value.flags.c_contiguous):
            value = np.array(value, order="C")
        value = torch.from_numpy(value)
    if not isinstance(value, torch.Tensor):
        kind = (
            f"a numpy array of dtype {value.dtype}" if isinstance(value, np.ndarray) else type(value).__name__
        )
        raise InputTypeError(f"TextFeatures.{name} must be a Tensor or a numeric numpy array, got {kind}")
    if value.ndim == 0 or bool(torch.isfinite(value).all()):
        return value
    bad = (~torch.isfinite(value.reshape(len(value), -1))).any(1).nonzero().flatten().tolist()
    texts = getattr(features, "texts", None)
    named = ""
    if isinstance(texts, list) and len(texts) == len(value):
        named = (
            ": " + ", ".join(f"{str(texts[i])!r:.50}" for i in bad[:5]) + (", ..." if len(bad) > 5 else "")
        )
    raise InputError(f"TextFeatures contain NaN or inf values (texts {bad[:10]}{named}) in .{name}")


@dataclass(eq=False)
class TextFeatures:
    """Features of a batch of texts, from the unimodal text encoder.

    Attributes
    ----------
    embeddings : Tensor of shape (n_texts, 256)
        ``text_proj`` of the text ``[CLS]`` state, L2-normalised.
    projected : Tensor of shape (n_texts, 256)
        The same before normalisation.
    texts : list of str
        The texts as given.
    normalized : list of str
        The texts after caption normalisation.
    tokens : list of list of str
        WordPiece tokens of each text, ``[CLS]`` first and ``[SEP]`` last.
    truncated : list of bool
        Whether each text was cut (by the word limit of the caption normalisation or at the token
        limit).
    tokenized : blipviz.net.text.TokenizedTexts
        The token ids, reused by the multimodal encoder.
    model_name : str
        Name of the net that computed them.
    fingerprint : str
        ``model.fingerprint("text")`` of that net: a BLAKE2b-256 of its text tower and ITM head. A net
        refuses features whose fingerprint is not its own; ``""`` is accepted by every net.
    truncated_by : list of {"tokens", "words", None}
        Why each text was cut (see :class:`blipviz.net.text.TokenizedTexts`); default: ``"tokens"``
        where ``truncated``.

    ``embeddings`` and ``projected`` are checked when the features are built and when either is
    replaced: a numeric numpy array becomes a Tensor, NaN or inf is an :class:`blipviz.InputError`
    naming the texts, another type an :class:`blipviz.InputTypeError`.
    """

    embeddings: torch.Tensor
    projected: torch.Tensor
    texts: list[str]
    normalized: list[str]
    tokens: list[list[str]]
    truncated: list[bool]
    tokenized: Any = field(repr=False, default=None)
    model_name: str = ""
    fingerprint: str = field(default="", repr=False)
    # None (the default) is replaced in __post_init__: the attribute is always a list
    truncated_by: list[str | None] = field(default=None, repr=False)  # type: ignore[arg-type]

    def __post_init__(self) -> None:
        if self.truncated_by is None:
            self.truncated_by = ["tokens" if t else None for t in self.truncated]
        for name in _CHECKED_TEXT_ARRAYS:
            object.__setattr__(self, name, _checked_text_array(self, name, getattr(self, name)))

    def __setattr__(self, name: str, value: Any) -> None:
        # arrays replaced after construction are checked as at construction (once it is complete)
        if name in _CHECKED_TEXT_ARRAYS and "truncated_by" in self.__dict__:
            value = _checked_text_array(self, name, value)
        object.__setattr__(self, name, value)

    def __len__(self) -> int:
        return int(self.embeddings.shape[0])

    def __getitem__(self, index: int | slice | Sequence[int]) -> TextFeatures:
        idx = index_list(index, len(self))
        return TextFeatures(
            embeddings=self.embeddings[idx],
            projected=self.projected[idx],
            texts=[self.texts[i] for i in idx],
            normalized=[self.normalized[i] for i in idx],
            tokens=[self.tokens[i] for i in idx],
            truncated=[self.truncated[i] for i in idx],
            tokenized=None if self.tokenized is None else self.tokenized.select(idx),
            model_name=self.model_name,
            fingerprint=self.fingerprint,
            truncated_by=[self.truncated_by[i] for i in idx],
        )

    def __repr__(self) -> str:
        return f"TextFeatures(n={len(self)}, embeddings={tuple(self.embeddings.shape)})"
