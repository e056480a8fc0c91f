"""Scores of every (image, text) pair, by cosine similarity and by the ITM head, and the ranking of
one image's descriptions.

Every function takes a :class:`blipviz.net.BlipNet` and uses only its public ports; ``BlipITM``'s
methods of the same names call them. Each image passes the ViT once per call, however many texts.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from ..errors import InputError, positive_int
from ..net.features import ImageFeatures
from ..net.images import ImageLike, as_image_list
from ..net.net import BlipNet, Images, Texts
from ..net.provenance import provenance
from ..net.text import TokenizedTexts, as_text_list

__all__ = [
    "Ranking",
    "ScoreMatrix",
    "cosine_matrix",
    "cosine_scores",
    "itm_scores",
    "rank",
    "ranking",
    "scores",
]


@dataclass(eq=False)
class ScoreMatrix:
    """Scores of every (image, text) pair.

    ``numpy.asarray(s)`` gives the float array of shape (n_images, n_texts).

    Attributes
    ----------
    values : ndarray of shape (n_images, n_texts)
        ITM match probabilities in [0, 1], or cosine similarities in [-1, 1].
    texts : list of str
    image_labels : list of str
    kind : {"itm", "cosine"}
    thumbnails : list of PIL.Image.Image or None
        Small copies of the images, for plots.
    truncated_by : list of {"tokens", "words", None}
        Per text: cut at the token limit, by the word limit of the caption normalisation, or not
        cut; default: none cut. :attr:`truncated` is the same as booleans.
    model_name : str or None
        The net that computed the scores (its ``model.name``, e.g.
        ``"Salesforce/blip-itm-base-coco"``); figures name it in their title.
    true_pairs : ndarray of shape (n_images, n_texts), bool, or None
        Which (image, text) pairs are known to match, for figures to outline; ``None``: not known.
        Given as ``"diagonal"`` (image i with text i: the texts were written for the images, in the
        same order and number), a sequence of ``(image_index, text_index)`` pairs, or a boolean
        mask; stored as the mask (see :meth:`pair_mask`). blipviz never assumes it: equal numbers
        of images and texts alone mark nothing.
    provenance : dict or None
        Where the scores came from (:func:`blipviz.net.provenance.provenance`): the blipviz, torch
        and transformers versions, the net's device and dtype, and the date; ``None`` when built by
        hand. Kept by :meth:`save`.

    :meth:`save` writes the scores to a folder and :meth:`load` reads them back, thumbnails
    included, so that :meth:`plot` redraws the same figure without the net.
    """

    values: np.ndarray
    texts: list[str]
    image_labels: list[str]
    kind: str = "itm"
    thumbnails: list[Any] | None = None
    # None (the default) is replaced in __post_init__: the attribute is always a list
    truncated_by: list[str | None] = field(default=None, repr=False)  # type: ignore[arg-type]
    model_name: str | None = None
    true_pairs: Any = field(default=None, repr=False)
    provenance: dict[str, Any] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.texts = as_text_list(self.texts)  # a bare str is one text
        self.values = np.asarray(self.values, dtype=np.float64)
        expected = (len(self.image_labels), len(self.texts))
        if self.values.shape != expected:
            raise InputError(
                f"score values have shape {self.values.shape}, but there are {expected[0]} image labels "
                f"and {expected[1]} texts"
            )
        if self.truncated_by is None:
            self.truncated_by = [None] * len(self.texts)
        self.truncated_by = list(self.truncated_by)
        if len(self.truncated_by) != len(self.texts):
            raise InputError(f"got {len(self.truncated_by)} truncation flags for {len(self.texts)} texts")
        if self.true_pairs is not None:
            self.true_pairs = self.pair_mask(self.true_pairs)

    def pair_mask(self, pairs: Any) -> np.ndarray:
        """Pairs of this matrix as a boolean mask.

        Parameters
        ----------
        pairs : "diagonal", sequence of (image_index, text_index), or bool array of shape (n_images, n_texts)
            ``"diagonal"``: image i with text i, for as many images as texts (else
            :class:`blipviz.InputError`). Negative indices count from the end, as in numpy.

        Returns
        -------
        ndarray of shape (n_images, n_texts), bool
        """
        n_images, n_texts = self.shape
        if isinstance(pairs, str):
            if pairs != "diagonal":
                raise InputError(
                    f"unknown pairs {pairs!r}: give 'diagonal', (image, text) index pairs or a mask"
                )
            if n_images != n_texts:
                raise InputError(
                    f"pairs='diagonal' needs as many texts as images (one written for each, in order); "
                    f"got {n_images} images and {n_texts} texts"
                )
            return np.eye(n_images, dtype=bool)
        arr = np.asarray(pairs)
        if arr.dtype == bool:
            if arr.shape != self.shape:
                raise InputError(f"a pair mask must have shape {self.shape} (images, texts), got {arr.shape}")
            return arr.copy()
        if arr.size == 0:
            return np.zeros(self.shape, dtype=bool)
        if arr.ndim != 2 or arr.shape[1] != 2 or not np.issubdtype(arr.dtype, np.integer):
            raise InputError(
                "pairs must be 'diagonal', a boolean mask, or (image_index, text_index) int pairs; "
                f"got an array of shape {arr.shape} and dtype {arr.dtype}"
            )
        mask = np.zeros(self.shape, dtype=bool)
        for k, (i, j) in enumerate(arr.tolist()):
            if not (-n_images <= i < n_images and -n_texts <= j < n_texts):
                raise InputError(
                    f"pair {k} is (image {i}, text {j}), outside the {n_images} images x {n_texts} texts"
                )
            mask[i, j] = True
        return mask

    def with_true_pairs(self, pairs: Any) -> ScoreMatrix:
        """A copy of the scores that knows which pairs match (see ``true_pairs``).

        ``itm.with_true_pairs("diagonal").plot()`` outlines image i with text i.
        """
        return dataclasses.replace(self, true_pairs=None if pairs is None else self.pair_mask(pairs))

    @property
    def truncated(self) -> list[bool]:
        """Whether each text was cut (by words or by tokens) before it was scored."""
        return [reason is not None for reason in self.truncated_by]

    @property
    def shape(self) -> tuple[int, int]:
        return self.values.shape

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        return self.values if dtype is None else self.values.astype(dtype)

    def __repr__(self) -> str:
        return f"ScoreMatrix(kind={self.kind!r}, shape={self.shape})"

    def to_pandas(self) -> pd.DataFrame:
        """Long form: one row per pair with columns ``image``, ``text``, ``score``,
        ``image_index``, ``text_index``."""
        n_images, n_texts = self.shape
        return pd.DataFrame(
            {
                "image": np.repeat(self.image_labels, n_texts) if n_images else [],
                "text": np.tile(self.texts, n_images) if n_texts else [],
                "score": self.values.reshape(-1),
                "image_index": np.repeat(np.arange(n_images), n_texts),
                "text_index": np.tile(np.arange(n_texts), n_images),
            }
        )

    def to_frame(self) -> pd.DataFrame:
        """Wide form: images as rows, texts as columns."""
        return pd.DataFrame(self.values, index=self.image_labels, columns=self.texts)

    def save(self, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write the scores to a folder that :meth:`load` reads back, without the net.

        The folder holds Parquet tables (the scores in float64, the texts and how each was cut, the
        image labels, the known true pairs, the thumbnails as PNG: lossless) and
        ``blipviz-result.json`` (the kind, the net's name and :attr:`provenance`; a matrix built by
        hand records the versions and the date of saving, with no device or dtype).

        Parameters
        ----------
        path : str or os.PathLike
            A new or empty folder, or one holding a saved result (replaced only with
            ``overwrite=True``).
        overwrite : bool, default False

        Returns
        -------
        pathlib.Path
            The folder.

        Raises
        ------
        InputError
            ``path`` is a file, a non-empty folder that is not a saved result, or a saved result
            and ``overwrite`` is false. Nothing is written then.
        """
        import pyarrow as pa

        from ._saved import matrix_table, save_result, thumbnails_table

        tables = {
            "images": pa.table({"image": pa.array(self.image_labels, pa.string())}),
            "texts": pa.table(
                {
                    "text": pa.array(self.texts, pa.string()),
                    "truncated_by": pa.array(self.truncated_by, pa.string()),
                }
            ),
            "scores": matrix_table(self.values),
        }
        if self.true_pairs is not None:
            tables["true_pairs"] = matrix_table(self.true_pairs)
        if self.thumbnails is not None:
            tables["thumbnails"] = thumbnails_table(self.thumbnails)
        fields = {"kind": self.kind, "model_name": self.model_name}
        return save_result(path, "ScoreMatrix", fields, tables, self.provenance, overwrite=overwrite)

    @classmethod
    def load(cls, path: str | os.PathLike) -> ScoreMatrix:
        """The scores :meth:`save` wrote to ``path``, with their provenance.

        Raises
        ------
        InputError
            No such folder, not a saved result, or a result of another class (named).
        """
        from ._saved import load_result, matrix_of, saved_thumbnails

        fields, tables, made_by = load_result(path, "ScoreMatrix")
        labels = tables["images"].column("image").to_pylist()
        texts = tables["texts"].column("text").to_pylist()
        shape = (len(labels), len(texts))
        true_pairs = None
        if "true_pairs" in tables:
            true_pairs = matrix_of(tables["true_pairs"], shape, bool)
        thumbnails = saved_thumbnails(tables)
        return cls(
            matrix_of(tables["scores"], shape, np.float64),
            texts=texts,
            image_labels=labels,
            kind=fields["kind"],
            thumbnails=thumbnails,
            truncated_by=tables["texts"].column("truncated_by").to_pylist(),
            model_name=fields.get("model_name"),
            true_pairs=true_pairs,
            provenance=made_by,
        )

    def plot(self, ax=None, **kwargs: Any):
        """Heatmap with texts as rows and image thumbnails as columns.

        See :meth:`blipviz.display.plotting.ScoreMatrixDisplay.plot` for the options (``sort``,
        ``annotate``, ``cmap``, ...).

        Returns
        -------
        blipviz.display.plotting.ScoreMatrixDisplay
            ``.im_.get_array()`` holds the scores as drawn, of shape (n_texts, n_images).
        """
        from ..display.plotting import ScoreMatrixDisplay

        return ScoreMatrixDisplay(self).plot(ax=ax, **kwargs)


def cosine_matrix(image_embeddings: torch.Tensor, text_embeddings: torch.Tensor) -> np.ndarray:
    """Cosine similarities of L2-normalised embeddings, in float64.

    Parameters
    ----------
    image_embeddings : Tensor of shape (n_images, 256)
    text_embeddings : Tensor of shape (n_texts, 256)

    Returns
    -------
    ndarray of shape (n_images, n_texts)
    """
    return (image_embeddings.double() @ text_embeddings.double().T).numpy()


def cosine_scores(
    model: BlipNet,
    images: Images,
    texts: Texts,
    *,
    batch_size: int | None = None,
    labels: Sequence[str] | None = None,
    progress: bool | None = None,
) -> ScoreMatrix:
    """Cosine similarity of the unimodal embeddings of every (image, text) pair.

    Parameters
    ----------
    images : images, pixel Tensor, or ImageFeatures
    texts : str, sequence of str, or TextFeatures
    batch_size : int, optional
        Images per vision-encoder pass; default 4 on CPU, 16 on a GPU
        (:attr:`BlipNet.default_batch_size`).
    labels : sequence of str, optional
        One label per image; default: file names, or ``"image i"``.
    progress : bool, optional
        Progress bar over images; by default shown once the pace foresees more than 5 s
        (:class:`blipviz.net.net.Progress`).

    Returns
    -------
    ScoreMatrix of shape (n_images, n_texts), values in [-1, 1].
    """
    if isinstance(images, ImageFeatures):
        model.check_features(images, need_raw=False)
        image_features = images
        if labels is not None:
            image_features = images[:]
            image_features.labels = model.check_labels(labels, len(images))
    else:
        image_features = model.encode_images(
            images, batch_size=batch_size, keep_raw=False, labels=labels, progress=progress
        )
    text_features = model.text_features(texts)
    values = cosine_matrix(image_features.embeddings, text_features.embeddings)
    return ScoreMatrix(
        values,
        texts=list(text_features.texts),
        image_labels=list(image_features.labels),
        kind="cosine",
        thumbnails=image_features.thumbnails,
        truncated_by=list(text_features.truncated_by),
        model_name=model.name,
        provenance=provenance(model),
    )


def _score_pass(
    model: BlipNet,
    images: Images,
    tokenized: TokenizedTexts,
    *,
    cosine: bool,
    batch_size: int | None,
    text_batch_size: int,
    progress: bool | None,
    labels: Sequence[str] | None,
) -> tuple[np.ndarray, torch.Tensor | None, list[str], list[Any] | None]:
    """One pass over the images: ITM probabilities (and image embeddings for cosine)."""
    text_batch_size = positive_int("text_batch_size", text_batch_size)
    itm_rows, emb, names, thumbs = [], [], [], []
    with torch.inference_mode():
        for states, batch_labels, batch_thumbs, keys in model.iter_image_states(
            images, batch_size, progress, labels
        ):
            if cosine:
                emb.append(F.normalize(model.image_projection(states).cpu(), dim=-1))
            for b in range(states.shape[0]):
                logits = model.itm_logits_of_image(tokenized, states[b : b + 1], keys[b], text_batch_size)
                itm_rows.append(logits.softmax(dim=-1)[:, 1].double().cpu())
            names.extend(batch_labels)
            thumbs.extend(batch_thumbs or [])
    itm = torch.stack(itm_rows).numpy() if itm_rows else np.zeros((0, len(tokenized)))
    dim = int(model.config.image_text_hidden_size)
    image_emb = (torch.cat(emb) if emb else torch.zeros((0, dim))) if cosine else None
    return itm, image_emb, names, (thumbs if thumbs and len(thumbs) == len(names) else None)


def itm_scores(
    model: BlipNet,
    images: Images,
    texts: Texts,
    *,
    batch_size: int | None = None,
    text_batch_size: int = 128,
    labels: Sequence[str] | None = None,
    progress: bool | None = None,
) -> ScoreMatrix:
    """ITM match probability of every (image, text) pair.

    Each image passes the vision encoder once; all texts of an image go through the multimodal
    encoder as one batch (``text_batch_size`` at most) with that image's cross-attention keys and
    values computed once per layer. Raw image states are dropped batch by batch.

    Parameters
    ----------
    images : images, pixel Tensor, or ImageFeatures (with raw states)
    texts : str, sequence of str, or TextFeatures
    batch_size : int, optional
        Images per vision-encoder pass; default 4 on CPU, 16 on a GPU
        (:attr:`BlipNet.default_batch_size`).
    text_batch_size : int, default 128
        Texts per multimodal pass.
    labels : sequence of str, optional
        One label per image; default: file names, or ``"image i"``.
    progress : bool, optional
        Progress bar over images; by default shown once the pace foresees more than 5 s
        (:class:`blipviz.net.net.Progress`).

    Returns
    -------
    ScoreMatrix of shape (n_images, n_texts), values in [0, 1].
    """
    tokenized = model.tokenized(texts)
    itm, _, names, thumbs = _score_pass(
        model,
        images,
        tokenized,
        cosine=False,
        batch_size=batch_size,
        text_batch_size=text_batch_size,
        progress=progress,
        labels=labels,
    )
    return ScoreMatrix(
        itm,
        list(tokenized.texts),
        names,
        "itm",
        thumbs,
        list(tokenized.truncated_by),
        model_name=model.name,
        provenance=provenance(model),
    )


def scores(
    model: BlipNet,
    images: Images,
    texts: Texts,
    *,
    batch_size: int | None = None,
    text_batch_size: int = 128,
    labels: Sequence[str] | None = None,
    progress: bool | None = None,
) -> tuple[ScoreMatrix, ScoreMatrix]:
    """Both score matrices, ``(itm, cosine)``, from one pass of each image through the ViT."""
    text_features = model.text_features(texts)
    tokenized = text_features.tokenized
    itm, image_emb, names, thumbs = _score_pass(
        model,
        images,
        tokenized,
        cosine=True,
        batch_size=batch_size,
        text_batch_size=text_batch_size,
        progress=progress,
        labels=labels,
    )
    assert image_emb is not None  # cosine=True
    cos = cosine_matrix(image_emb, text_features.embeddings)
    texts_list, cut = list(tokenized.texts), list(text_features.truncated_by)
    made_by = provenance(model)
    return (
        ScoreMatrix(itm, texts_list, names, "itm", thumbs, cut, model_name=model.name, provenance=made_by),
        ScoreMatrix(
            cos, texts_list, names, "cosine", thumbs, cut, model_name=model.name, provenance=dict(made_by)
        ),
    )


def rank(model: BlipNet, image: ImageLike | ImageFeatures, texts: Texts) -> Ranking:
    """Rank descriptions of one image by ITM probability, with the cosine score beside it.

    Returns
    -------
    blipviz.Ranking (a DataFrame)
        One row per text, sorted by ``itm`` (descending), columns ``text``, ``itm``,
        ``cosine``, ``itm_rank``, ``cosine_rank`` (1 = best); index 1..n. Notebooks show it
        styled, with bars of both scores side by side (see :func:`blipviz.style_ranking`).
    """
    if isinstance(image, ImageFeatures):
        if len(image) != 1:
            raise InputError(f"rank takes one image, got ImageFeatures of {len(image)} images")
    elif isinstance(image, torch.Tensor):
        if image.ndim == 4 and image.shape[0] != 1:
            raise InputError(f"rank takes one image, got pixel values of shape {tuple(image.shape)}")
    elif len(as_image_list(image)) != 1:
        raise InputError("rank takes one image; use itm_scores for several")
    itm, cos = scores(model, image, texts)
    table = ranking(
        itm.texts,
        itm.values[0],
        cos.values[0],
        truncated_by=itm.truncated_by,
        image_label=itm.image_labels[0],
        model_name=model.name,
    )
    table.attrs["provenance"] = itm.provenance
    return table


def ranking(
    texts: Sequence[str],
    itm: Sequence[float],
    cosine: Sequence[float],
    *,
    by: str = "itm",
    truncated_by: Sequence[str | None] | None = None,
    image_label: str | None = None,
    model_name: str | None = None,
) -> Ranking:
    """The ranking table of one image's descriptions from its two rows of scores.

    Parameters
    ----------
    texts : sequence of str
    itm, cosine : sequence of float, each of length len(texts)
    by : {"itm", "cosine"}, default "itm"
        Score the rows are sorted by (descending; ties keep the texts' order).
    truncated_by : sequence of {"tokens", "words", None}, optional
        Per text, whether it was cut before scoring (see :class:`blipviz.net.text.TokenizedTexts`).
    image_label : str, optional
        The image the texts describe; the styled table names it in its caption.
    model_name : str, optional
        The net that computed the scores; named in the caption too.

    Returns
    -------
    Ranking
        Columns ``text``, ``itm``, ``cosine``, ``itm_rank``, ``cosine_rank`` (1 = best); index
        ``rank`` 1..n. ``.truncated`` says which texts were cut. ``attrs`` holds
        ``truncated_by``, ``image_label``, ``model_name``, ``sorted_by`` (``by``) and
        ``provenance`` (``None`` here; :func:`rank` records the net's).
    """
    if by not in ("itm", "cosine"):
        raise InputError(f"unknown by {by!r}; allowed values: 'itm', 'cosine'")
    texts = list(texts)
    frame = pd.DataFrame({"text": texts, "itm": itm, "cosine": cosine})
    frame["itm_rank"] = frame["itm"].rank(ascending=False, method="first").astype(int)
    frame["cosine_rank"] = frame["cosine"].rank(ascending=False, method="first").astype(int)
    frame = frame.sort_values(by, ascending=False, kind="stable", ignore_index=True)
    frame.index = pd.RangeIndex(1, len(frame) + 1, name="rank")
    table = Ranking(frame)
    reasons = [None] * len(texts) if truncated_by is None else list(truncated_by)
    if len(reasons) != len(texts):
        raise InputError(f"got {len(reasons)} truncation flags for {len(texts)} texts")
    table.attrs["truncated_by"] = {t: r for t, r in zip(texts, reasons, strict=True) if r is not None}
    table.attrs["image_label"] = None if image_label is None else str(image_label)
    table.attrs["model_name"] = None if model_name is None else str(model_name)
    table.attrs["sorted_by"] = by
    table.attrs["provenance"] = None
    return table


class Ranking(pd.DataFrame):
    """A ranking of texts for one image: a ``pandas.DataFrame`` that notebooks show styled.

    Columns ``text``, ``itm``, ``cosine``, ``itm_rank``, ``cosine_rank``; index ``rank`` (1..n). Its
    HTML form is ``style_ranking(self)``: bars of the ITM probability and of the cosine similarity
    side by side, human headers, and a caption naming the image, the net and the texts that were
    cut. Every DataFrame operation works; derived frames are plain DataFrames.
    ``attrs["truncated_by"]`` maps each text that was cut to ``"tokens"`` or ``"words"``;
    ``attrs["image_label"]`` and ``attrs["model_name"]`` name the image and the net;
    ``attrs["provenance"]`` says where the scores came from
    (:func:`blipviz.net.provenance.provenance`). :meth:`save` and :meth:`load` keep the table and
    its ``attrs``, so that the styled table is redrawn without the net.
    """

    @property
    def _constructor(self):
        return pd.DataFrame

    @property
    def truncated(self) -> pd.Series:
        """Per row, whether its text was cut (by words or by tokens) before it was scored."""
        cut = self.attrs.get("truncated_by", {})
        return pd.Series([t in cut for t in self["text"]], index=self.index, name="truncated", dtype=bool)

    def save(self, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write the ranking to a folder that :meth:`load` reads back: the table as Parquet, its
        ``attrs`` (the texts that were cut, the image label, the net's name, the sort, the
        provenance) in ``blipviz-result.json``.

        Parameters
        ----------
        path : str or os.PathLike
            A new or empty folder, or one holding a saved result (replaced only with
            ``overwrite=True``).
        overwrite : bool, default False

        Returns
        -------
        pathlib.Path
            The folder.
        """
        import pyarrow as pa

        from ._saved import save_result

        frame = pd.DataFrame(self).copy()
        frame.attrs = {}
        attrs = dict(self.attrs)
        made_by = attrs.pop("provenance", None)
        table = pa.Table.from_pandas(frame, preserve_index=True)
        fields = {"attrs": attrs}
        return save_result(path, "Ranking", fields, {"ranking": table}, made_by, overwrite=overwrite)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Ranking:
        """The ranking :meth:`save` wrote to ``path``, with its ``attrs``."""
        from ._saved import load_result

        fields, tables, made_by = load_result(path, "Ranking")
        table = cls(tables["ranking"].to_pandas())
        table.attrs.update(fields.get("attrs", {}))
        table.attrs["provenance"] = made_by
        return table

    def style_(self, **kwargs):
        """The styled table, :func:`blipviz.style_ranking` of this frame (same options)."""
        from ..display.tables import style_ranking

        return style_ranking(self, **kwargs)

    def _repr_html_(self) -> str | None:
        from ..display.tables import style_ranking

        try:
            return style_ranking(self).to_html()
        except ImportError:  # jinja2 missing: pandas' plain table
            return pd.DataFrame(self)._repr_html_()
