"""Scores of given (image, caption) pairs: each image against its own caption, as BLIP's CapFilt
filter scores them.

:func:`pair_scores` pairs text i with image i. It runs the same ports as the score matrix
(:func:`blipviz.analysis.scores.itm_scores`), without computing the pairs nobody asked for:

- each *distinct* image passes the ViT once, however many of its captions follow (an image given
  again as the same path or the same Python object, or as equal encoded bytes, is one image);
- an image with several captions gives its states with batch 1 to the multimodal pass
  (:meth:`blipviz.net.BlipNet.itm_logits_of_image`), so its cross-attention keys and values are
  computed once per layer for all of them;
- images with one caption each are gathered: text i against image state i, as one multimodal batch
  (:meth:`blipviz.net.BlipNet.itm_logits` with states of batch n_texts).

The result, :class:`PairScores`, holds the scores, the captions, the image labels and the distinct
images' thumbnails, so that its tables and figures need no net.
"""

from __future__ import annotations

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
from ..net.features import ImageFeatures, TextFeatures
from ..net.images import as_image_list, image_label
from ..net.net import BlipNet, Images, Texts
from ..net.provenance import provenance
from ..net.text import as_text_list

__all__ = ["PAIR_COLUMNS", "PairScores", "distinct_images", "pair_scores"]

#: Columns of :meth:`PairScores.to_pandas`, in order.
PAIR_COLUMNS = ("image", "text", "itm", "itm_logit", "cosine", "truncated")

# Texts per multimodal pass (as itm_scores' default text_batch_size).
_TEXT_BATCH = 128


@dataclass(eq=False)
class PairScores:
    """Scores of n (image, text) pairs: text i with image i.

    Build it with :meth:`blipviz.BlipITM.pair_scores`. No net is needed afterwards: the tables and
    figures read the arrays and thumbnails held here.

    Attributes
    ----------
    texts : list of str, length n
        The captions as given.
    image_labels : list of str, length n
        Each pair's image label, as the score matrix labels images (file name, or ``"image i"``);
        an image given again keeps the label of its first position.
    itm : ndarray of shape (n,)
        ITM match probability, ``softmax(logits)[1]``, in [0, 1].
    itm_logit : ndarray of shape (n,)
        The match logit (``logits[1]``), the term BLIP's retrieval score adds to the cosine.
    cosine : ndarray of shape (n,)
        Cosine similarity of the image and text embeddings, in [-1, 1].
    truncated_by : list of {"tokens", "words", None}, length n
        Why each caption was cut before scoring (BLIP's token limit, or the normalisation's word
        limit), or ``None``; :attr:`truncated` is the same as booleans.
    image_index : ndarray of shape (n,), int
        Each pair's distinct image, an index into :attr:`thumbnails`; default ``arange(n)``.
    thumbnails : list of PIL.Image.Image or None
        Small copies of the distinct images (longest side 96 px), for figures; ``None`` when the
        images were pixel tensors or features without thumbnails.
    model_name : str or None
        The net that scored the pairs; figures name it in their title.
    provenance : dict or None
        Where the scores came from (:func:`blipviz.net.provenance.provenance`): the blipviz, torch
        and transformers versions, the net's device and dtype, and the date.

    :meth:`save` writes the scores, captions, labels and thumbnails (as PNG) to a folder and
    :meth:`load` reads them back, so the tables and figures are redrawn without the net.
    """

    texts: list[str]
    image_labels: list[str]
    itm: np.ndarray
    itm_logit: np.ndarray
    cosine: np.ndarray
    # None (the default) is replaced in __post_init__: both attributes are always set
    truncated_by: list[str | None] = field(default=None, repr=False)  # type: ignore[arg-type]
    image_index: np.ndarray = field(default=None, repr=False)  # type: ignore[arg-type]
    thumbnails: list[Any] | None = field(default=None, repr=False)
    model_name: str | None = None
    provenance: dict[str, Any] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.texts = as_text_list(self.texts)
        self.image_labels = [str(label) for label in self.image_labels]
        n = len(self.texts)
        for name in ("itm", "itm_logit", "cosine"):
            values = np.asarray(getattr(self, name), dtype=np.float64).reshape(-1)
            setattr(self, name, values)
        lengths = {
            "image_labels": len(self.image_labels),
            "itm": len(self.itm),
            "itm_logit": len(self.itm_logit),
            "cosine": len(self.cosine),
        }
        if self.truncated_by is None:
            self.truncated_by = [None] * n
        self.truncated_by = list(self.truncated_by)
        lengths["truncated_by"] = len(self.truncated_by)
        wrong = {k: v for k, v in lengths.items() if v != n}
        if wrong:
            raise InputError(f"PairScores has {n} texts, but {wrong} (each must have one entry per pair)")
        if self.image_index is None:
            self.image_index = np.arange(n)
        self.image_index = np.asarray(self.image_index, dtype=np.int64).reshape(-1)
        if len(self.image_index) != n:
            raise InputError(f"image_index has {len(self.image_index)} entries for {n} pairs")
        if self.thumbnails is not None:
            self.thumbnails = list(self.thumbnails)
            if n and (self.image_index.min() < 0 or self.image_index.max() >= len(self.thumbnails)):
                raise InputError(
                    f"image_index must lie in [0, {len(self.thumbnails)}) (one thumbnail per distinct "
                    f"image), got values in [{self.image_index.min()}, {self.image_index.max()}]"
                )

    # ------------------------------------------------------------------------------- data
    def __len__(self) -> int:
        return len(self.texts)

    def __repr__(self) -> str:
        n_images = len(np.unique(self.image_index))
        return (
            f"PairScores({len(self)} pairs of {n_images} distinct images, "
            f"model_name={self.model_name!r}, mean itm={float(np.mean(self.itm)) if len(self) else 0:.3f})"
        )

    @property
    def truncated(self) -> np.ndarray:
        """ndarray of shape (n,), bool: whether each caption was cut before it was scored."""
        return np.array([reason is not None for reason in self.truncated_by], dtype=bool)

    def thumbnail(self, i: int) -> Any:
        """The thumbnail of pair ``i``'s image, or ``None`` when none is held."""
        if self.thumbnails is None:
            return None
        return self.thumbnails[int(self.image_index[i])]

    def to_pandas(self) -> pd.DataFrame:
        """One row per pair, in input order (index ``pair``: 0..n-1).

        Returns
        -------
        DataFrame
            Columns ``image`` (label), ``text``, ``itm`` (probability), ``itm_logit``, ``cosine``,
            ``truncated`` (bool).
        """
        frame = pd.DataFrame(
            {
                "image": pd.Series(self.image_labels, dtype=object),
                "text": pd.Series(self.texts, dtype=object),
                "itm": self.itm,
                "itm_logit": self.itm_logit,
                "cosine": self.cosine,
                "truncated": self.truncated,
            },
            columns=list(PAIR_COLUMNS),
        )
        frame.index = pd.RangeIndex(len(frame), name="pair")
        return frame

    def save(self, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write the pairs to a folder that :meth:`load` reads back, without the net.

        Parquet tables: one row per pair (image label, caption, ``itm``, ``itm_logit``,
        ``cosine``, why it was cut, its distinct image) and the distinct images' thumbnails as PNG
        (lossless); ``blipviz-result.json``: the net's name and :attr:`provenance`.

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

        from ._saved import save_result, thumbnails_table

        tables = {
            "pairs": pa.table(
                {
                    "image": pa.array(self.image_labels, pa.string()),
                    "text": pa.array(self.texts, pa.string()),
                    "itm": pa.array(self.itm, pa.float64()),
                    "itm_logit": pa.array(self.itm_logit, pa.float64()),
                    "cosine": pa.array(self.cosine, pa.float64()),
                    "truncated_by": pa.array(self.truncated_by, pa.string()),
                    "image_index": pa.array(self.image_index, pa.int64()),
                }
            )
        }
        if self.thumbnails is not None:
            tables["thumbnails"] = thumbnails_table(self.thumbnails)
        fields = {"model_name": self.model_name}
        return save_result(path, "PairScores", fields, tables, self.provenance, overwrite=overwrite)

    @classmethod
    def load(cls, path: str | os.PathLike) -> PairScores:
        """The pairs :meth:`save` wrote to ``path``, with their provenance.

        Raises
        ------
        InputError
            No such folder, not a saved result, or a result of another class (named).
        """
        from ._saved import load_result, saved_thumbnails

        fields, tables, made_by = load_result(path, "PairScores")
        pairs = tables["pairs"]
        thumbnails = saved_thumbnails(tables)

        def floats(name: str) -> np.ndarray:
            return np.asarray(pairs.column(name).to_numpy(), dtype=np.float64)

        return cls(
            texts=pairs.column("text").to_pylist(),
            image_labels=pairs.column("image").to_pylist(),
            itm=floats("itm"),
            itm_logit=floats("itm_logit"),
            cosine=floats("cosine"),
            truncated_by=pairs.column("truncated_by").to_pylist(),
            image_index=np.asarray(pairs.column("image_index").to_numpy(), dtype=np.int64),
            thumbnails=thumbnails,
            model_name=fields.get("model_name"),
            provenance=made_by,
        )

    def _order(self, worst: bool) -> np.ndarray:
        """Pair positions by ITM probability, lowest (``worst``) or highest first; ties keep the
        input order."""
        key = self.itm if worst else -self.itm
        return np.argsort(key, kind="stable")

    def worst(self, n: int = 10) -> pd.DataFrame:
        """The ``n`` pairs of lowest ITM probability, lowest first (ties in input order).

        Returns
        -------
        DataFrame
            Rows of :meth:`to_pandas` (index: the pair's position in the input).
        """
        n = positive_int("n", n)
        return self.to_pandas().iloc[self._order(worst=True)[:n]]

    def best(self, n: int = 10) -> pd.DataFrame:
        """The ``n`` pairs of highest ITM probability, highest first (ties in input order).

        Returns
        -------
        DataFrame
            Rows of :meth:`to_pandas` (index: the pair's position in the input).
        """
        n = positive_int("n", n)
        return self.to_pandas().iloc[self._order(worst=False)[:n]]

    def kept(self, threshold: float, *, score: str = "itm") -> np.ndarray:
        """Which pairs a filter keeps: ``score >= threshold``.

        Parameters
        ----------
        threshold : float
        score : {"itm", "cosine"}, default "itm"

        Returns
        -------
        ndarray of shape (n,), bool
        """
        if score not in ("itm", "cosine"):
            raise InputError(f"score must be 'itm' or 'cosine', got {score!r}")
        return getattr(self, score) >= float(threshold)

    # ---------------------------------------------------------------------------- figures
    def _rows_display(self, n: int, worst: bool):
        from ..display.pairs import PairRowsDisplay

        n = positive_int("n", n)
        order = self._order(worst)[:n]
        return PairRowsDisplay(
            texts=[self.texts[i] for i in order],
            image_labels=[self.image_labels[i] for i in order],
            itm=self.itm[order],
            cosine=self.cosine[order],
            thumbnails=None if self.thumbnails is None else [self.thumbnail(i) for i in order],
            truncated_by=[self.truncated_by[i] for i in order],
            pairs=order,
            n_total=len(self),
            model_name=self.model_name,
            which="worst" if worst else "best",
        )

    def plot_worst(self, n: int = 10, ax=None, **kwargs: Any):
        """A slide of the ``n`` pairs of lowest ITM probability, one row per pair.

        Each row: the image's thumbnail, its caption (whole up to 80 characters, wrapped; drawn
        literally, ``$`` included) with the image label below, and the ITM probability and the
        cosine similarity as bars with their numbers. Sizes follow ``rcParams["font.size"]``.

        Parameters
        ----------
        n : int, default 10
        ax : matplotlib.axes.Axes, optional
            Default: a new figure sized to the rows. A given Axes is filled (its axis turned off);
            the rows are scaled down to fit it when it is smaller.
        **kwargs
            Passed to :meth:`blipviz.display.pairs.PairRowsDisplay.plot` (``wrap_chars``, ``title``).

        Returns
        -------
        blipviz.display.pairs.PairRowsDisplay
            ``caption_texts_``, ``value_texts_``, ``images_``, ``ax_``, ``figure_``.
        """
        return self._rows_display(n, worst=True).plot(ax=ax, **kwargs)

    def plot_best(self, n: int = 10, ax=None, **kwargs: Any):
        """The same slide as :meth:`plot_worst` for the ``n`` pairs of highest ITM probability."""
        return self._rows_display(n, worst=False).plot(ax=ax, **kwargs)

    def plot_distribution(self, threshold: Any = None, group: Any = None, ax=None, **kwargs: Any):
        """Histograms of the ITM probability and of the cosine similarity of the pairs.

        Parameters
        ----------
        threshold : float or mapping {"itm": float, "cosine": float}, optional
            A filter's threshold: a float is on the ITM probability (CapFilt keeps a pair when its
            ITM probability reaches it). Drawn as a line; the legend gives the share of pairs
            kept (``score >= threshold``), per group.
        group : str or array-like of shape (n,), optional
            A column of :meth:`to_pandas` (``"truncated"``, ``"image"``), or one group per pair
            (the source of each caption, ...): one histogram per group, as the share of the
            group's pairs, each group with its own share kept.
        ax : matplotlib Axes or pair of Axes, optional
            Default: a new figure with both panels. A pair of Axes gets (ITM, cosine); a single
            Axes gets the ITM histogram alone.
        **kwargs
            Passed to :meth:`blipviz.display.pairs.PairDistributionDisplay.plot` (``bins``).

        Returns
        -------
        blipviz.display.pairs.PairDistributionDisplay
            ``axes_``, ``figure_``, ``kept_`` (per group and score: share kept).
        """
        from ..display.pairs import PairDistributionDisplay

        groups, group_name = None, None
        if group is not None:
            if isinstance(group, str):
                frame = self.to_pandas()
                if group not in frame.columns:
                    raise InputError(f"no column {group!r}; the columns are {list(frame.columns)}")
                groups, group_name = frame[group].to_numpy(), group
            else:
                groups = np.asarray(list(group), dtype=object)
                group_name = getattr(group, "name", None)
                if len(groups) != len(self):
                    raise InputError(f"group has {len(groups)} entries for {len(self)} pairs")
        return PairDistributionDisplay(
            itm=self.itm,
            cosine=self.cosine,
            groups=groups,
            group_name=group_name,
            threshold=threshold,
            model_name=self.model_name,
        ).plot(ax=ax, **kwargs)


# -------------------------------------------------------------------------------- computing
def distinct_images(items: Sequence[Any]) -> tuple[list[int], np.ndarray]:
    """The distinct images of a list: one per path (``os.fspath``), per equal encoded bytes, or per
    Python object (PIL images and arrays by identity).

    Parameters
    ----------
    items : sequence of images (paths, bytes, PIL images, arrays)

    Returns
    -------
    first : list of int
        Position of each distinct image's first occurrence, in order.
    index : ndarray of shape (len(items),), int
        Each item's distinct image (an index into ``first``).
    """
    seen: dict[Any, int] = {}
    first: list[int] = []
    index = np.empty(len(items), dtype=np.int64)
    for i, item in enumerate(items):
        if isinstance(item, str | os.PathLike):
            key: Any = ("path", os.fspath(item))
        elif isinstance(item, bytes):
            key = ("bytes", item)
        else:
            key = ("object", id(item))
        if key not in seen:
            seen[key] = len(first)
            first.append(i)
        index[i] = seen[key]
    return first, index


def pair_scores(
    model: BlipNet,
    images: Images,
    texts: Texts,
    *,
    batch_size: int | None = None,
    progress: bool | None = None,
    thumbnails: bool = True,
) -> PairScores:
    """Score text i with image i: ITM probability and logit, and cosine similarity.

    The diagonal of :func:`~blipviz.analysis.scores.itm_scores` and
    :func:`~blipviz.analysis.scores.cosine_scores` of the same inputs (to float rounding), without
    the other pairs. Each distinct image passes the ViT once; an image's cross-attention keys and
    values are computed once for all its captions (see the module's notes).

    Parameters
    ----------
    images : sequence of images, pixel Tensor of shape (n, 3, s, s), or ImageFeatures (with raw states)
        PIL images, paths, encoded bytes, numpy arrays; an image may repeat (same path, same
        object). Pixel tensors and features are taken row by row, without looking for repeats.
    texts : sequence of str, or TextFeatures
        One caption per image, in the same order. Captions over the token limit are cut and
        flagged (:class:`blipviz.TruncationWarning`).
    batch_size : int, optional
        Distinct images per vision-encoder pass; default 4 on CPU, 16 on a GPU.
    progress : bool, optional
        Progress bar over image batches; by default shown once the pace foresees more than 5 s.
    thumbnails : bool, default True
        Keep a small copy of each distinct image for the figures (:meth:`PairScores.plot_worst`);
        ``False`` when only the numbers are wanted (:func:`blipviz.score_pairs` does so).

    Returns
    -------
    PairScores
        ``to_pandas()`` columns ``image``, ``text``, ``itm``, ``itm_logit``, ``cosine``,
        ``truncated``.

    Raises
    ------
    InputError
        No pairs, or as many images as texts not given (the message names both counts).
    """
    if isinstance(images, ImageFeatures):
        items: Any = images
        n_images = len(images)
    elif isinstance(images, torch.Tensor):
        items = model.check_pixels(images)
        n_images = len(items)
    else:
        items = as_image_list(images)
        n_images = len(items)
    n_texts = len(texts) if isinstance(texts, TextFeatures) else len(as_text_list(texts))
    if n_images == 0 or n_texts == 0:
        raise InputError(f"pair_scores needs at least one pair, got {n_images} images and {n_texts} texts")
    if n_images != n_texts:
        raise InputError(
            f"pair_scores pairs text i with image i and needs as many texts as images; got {n_images} "
            f"images and {n_texts} texts (for every image against every text use itm_scores)"
        )
    if isinstance(items, list):
        first, index = distinct_images(items)
        unique: Any = [items[i] for i in first]
        labels: list[str] | None = [image_label(items[i], i) for i in first]
    else:
        first, index = list(range(n_images)), np.arange(n_images)
        unique, labels = items, None

    text_features = model.text_features(texts)
    tokenized = text_features.tokenized
    by_image: list[list[int]] = [[] for _ in first]
    for pair, u in enumerate(index.tolist()):
        by_image[u].append(pair)

    logits = torch.zeros((n_texts, 2), dtype=torch.float32)
    embeddings, names, thumbs = [], [], []
    with torch.inference_mode():
        start = 0
        for states, batch_labels, batch_thumbs, keys in model.iter_image_states(
            unique, batch_size, progress, labels, thumbnails
        ):
            embeddings.append(F.normalize(model.image_projection(states).cpu(), dim=-1))
            names.extend(batch_labels)
            thumbs.extend(batch_thumbs or [])
            # one caption, no remembered logits: gathered, text i against image state i, one pass
            single = [b for b in range(len(states)) if len(by_image[start + b]) == 1 and keys[b] is None]
            if single:
                pairs = [by_image[start + b][0] for b in single]
                out = model.itm_logits(tokenized.select(pairs), states[single], _TEXT_BATCH)
                logits[pairs] = out.float().cpu()
            # several captions (or a feature store): the image's states broadcast over its texts
            for b in range(len(states)):
                if b in single:
                    continue
                pairs = by_image[start + b]
                out = model.itm_logits_of_image(
                    tokenized.select(pairs), states[b : b + 1], keys[b], _TEXT_BATCH
                )
                logits[pairs] = out.float().cpu()
            start += len(states)
    image_emb = torch.cat(embeddings)[torch.as_tensor(index)]
    cosine = (image_emb.double() * text_features.embeddings.double()).sum(-1).numpy()
    pair_labels = [names[u] for u in index.tolist()]
    return PairScores(
        texts=list(tokenized.texts),
        image_labels=pair_labels,
        itm=logits.softmax(dim=-1)[:, 1].double().numpy(),
        itm_logit=logits[:, 1].double().numpy(),
        cosine=cosine,
        truncated_by=list(tokenized.truncated_by),
        image_index=index,
        thumbnails=thumbs if thumbs and len(thumbs) == len(names) else None,
        model_name=model.name,
        provenance=provenance(model),
    )
