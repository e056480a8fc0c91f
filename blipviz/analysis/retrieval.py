"""Image-text retrieval evaluation with BLIP's own protocol (``train_retrieval.py``: ``evaluation``
and ``itm_eval``), computing each (image, text) pair's ITM logit once.

The protocol:

- captions are normalised as BLIP's retrieval datasets do, ``pre_caption(caption, max_words=30)``
  (30 words, not the 50 of ``pre_caption``'s default), and tokenised to at most 35 tokens;
- ITC similarities: unit image embeddings times unit text embeddings, (n_images, n_texts), no
  temperature, in float32 as BLIP computes them;
- image to text: for each image its ``k_test`` most similar texts are scored by the ITM logit of
  "match" (before softmax, ``[ENC]`` first) plus the similarity, added in float32 as BLIP adds them;
  every other text scores -100. Text to image: the same for each text over its ``k_test`` most
  similar images;
- ``itm_eval``: an image's rank is the best rank of any of its true captions, a text's rank that of
  its one true image; recalls at 1, 5 and 10 in percent, and BLIP's means.

BLIP's code computes the ITM logit of a pair that is a candidate in both directions twice, and
repeats an image's keys and values for each of its candidate texts; here each pair is scored once,
and all candidate texts of an image go through the multimodal encoder as one batch against that
image's states (broadcast over the texts).

Memory: the ITM stage needs every image's raw ViT states (1.8 MB per ViT-B/16 image, 2.4 MB per
ViT-L/16 one: 9 GB for COCO's 5,000 test images at ViT-B). They are held in memory up to
``max_states_gb``; the images beyond pass the input stream again in the ITM stage, where a writable
feature cache serves their states, or else the ViT runs again for them (for COCO at ``k_test=256``:
1-2% of the ITM stage's time on a CPU, about 7% on an H200; ``benchmarks/bench_retrieval.py``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from ..errors import InputError, InputTypeError, check_choice, positive_int
from ..net.features import ImageFeatures
from ..net.images import as_image_list
from ..net.net import PROGRESS_MIN_IMAGES, BlipNet, Images
from ..net.provenance import provenance
from ..net.text import BLIP_MAX_TEXT_TOKENS, as_text_list, tokenize, warn_truncated

__all__ = [
    "DIRECTIONS",
    "METRIC_KEYS",
    "RETRIEVAL_MAX_WORDS",
    "RETRIEVAL_SCORES",
    "RetrievalEvaluation",
    "evaluate_retrieval",
    "itm_eval",
]

#: Word limit of BLIP's retrieval datasets (``pre_caption(caption, max_words=30)``).
RETRIEVAL_MAX_WORDS = 30
#: ``"itm+itc"``: BLIP's score (ITM logit + similarity); ``"itc"`` and ``"itm"``: each alone, on the
#: same candidates (ablations).
RETRIEVAL_SCORES = ("itm+itc", "itc", "itm")
#: The keys of BLIP's ``itm_eval`` result, in its order.
METRIC_KEYS = (
    "txt_r1",
    "txt_r5",
    "txt_r10",
    "txt_r_mean",
    "img_r1",
    "img_r5",
    "img_r10",
    "img_r_mean",
    "r_mean",
)
#: Retrieval directions: ``"i2t"`` (an image queries the texts: BLIP's text retrieval, TR) and
#: ``"t2i"`` (a text queries the images: image retrieval, IR).
DIRECTIONS = ("i2t", "t2i")
#: Raw states held in memory between the two stages by default, in GB.
DEFAULT_MAX_STATES_GB = 2.0
_FILL = np.float32(-100.0)  # BLIP's score of a pair outside the candidates


def _order(score: np.ndarray) -> np.ndarray:
    """BLIP's ranking of one row: ``np.argsort(score)[::-1]`` (numpy's default sort, reversed; so
    ties fall as they fall in BLIP)."""
    return np.argsort(score)[::-1]


def _ranks(scores: np.ndarray, truths: Sequence[Sequence[int]]) -> np.ndarray:
    """Per row, the best 0-based rank of any of its true columns, in BLIP's order (:func:`_order`)."""
    ranks = np.zeros(len(scores), dtype=np.int64)
    for row, (score, true) in enumerate(zip(scores, truths, strict=True)):
        order = _order(score)
        position = np.empty_like(order)
        position[order] = np.arange(len(order))
        ranks[row] = min(int(position[t]) for t in true)
    return ranks


def _image_captions(text_image: np.ndarray, n_images: int) -> list[list[int]]:
    """BLIP's ``img2txt``: each image's text indices, in text order."""
    captions: list[list[int]] = [[] for _ in range(n_images)]
    for text, image in enumerate(text_image.tolist()):
        captions[image].append(text)
    return captions


def itm_eval(
    score_i2t: np.ndarray, score_t2i: np.ndarray, text_image: Sequence[int] | np.ndarray
) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
    """BLIP's ``itm_eval``: recalls of both directions from the two score matrices.

    Parameters
    ----------
    score_i2t : ndarray of shape (n_images, n_texts)
    score_t2i : ndarray of shape (n_texts, n_images)
    text_image : sequence of int, length n_texts
        The index of each text's image.

    Returns
    -------
    metrics : dict
        :data:`METRIC_KEYS`, recalls in percent.
    ranks_i2t : ndarray of shape (n_images,)
        0-based rank of each image's best-ranked true caption.
    ranks_t2i : ndarray of shape (n_texts,)
        0-based rank of each text's image.
    """
    score_i2t, score_t2i = np.asarray(score_i2t), np.asarray(score_t2i)
    image_of_text = np.asarray(text_image, dtype=np.int64)
    n_images, n_texts = score_i2t.shape
    if score_t2i.shape != (n_texts, n_images) or image_of_text.shape != (n_texts,):
        raise InputError(
            f"score_i2t {score_i2t.shape}, score_t2i {score_t2i.shape} and text_image "
            f"{image_of_text.shape} do not fit: expected (n_images, n_texts), (n_texts, n_images) and "
            "(n_texts,)"
        )
    ranks_i2t = _ranks(score_i2t, _image_captions(image_of_text, n_images))
    ranks_t2i = _ranks(score_t2i, [[i] for i in image_of_text.tolist()])

    def recall(ranks: np.ndarray, k: int) -> float:
        return 100.0 * len(np.where(ranks < k)[0]) / len(ranks)

    tr1, tr5, tr10 = (recall(ranks_i2t, k) for k in (1, 5, 10))
    ir1, ir5, ir10 = (recall(ranks_t2i, k) for k in (1, 5, 10))
    tr_mean, ir_mean = (tr1 + tr5 + tr10) / 3, (ir1 + ir5 + ir10) / 3
    values = (tr1, tr5, tr10, tr_mean, ir1, ir5, ir10, ir_mean, (tr_mean + ir_mean) / 2)
    return dict(zip(METRIC_KEYS, values, strict=True)), ranks_i2t, ranks_t2i


@dataclass(eq=False)
class RetrievalEvaluation:
    """Scores, ranks and recalls of one retrieval evaluation (:func:`evaluate_retrieval`).

    Attributes
    ----------
    score_i2t : ndarray of shape (n_images, n_texts), float32
        BLIP's image-to-text scores; -100 outside each image's ``k_test`` candidates.
    score_t2i : ndarray of shape (n_texts, n_images), float32
        Text-to-image scores; -100 outside each text's ``k_test`` candidates.
    text_image : ndarray of shape (n_texts,)
        The index of each text's image.
    metrics : dict
        BLIP's ``itm_eval`` keys (:data:`METRIC_KEYS`), recalls in percent.
    ranks_i2t : ndarray of shape (n_images,)
        0-based rank of each image's best true caption.
    ranks_t2i : ndarray of shape (n_texts,)
        0-based rank of each text's image.
    k_test : int
    score : str
    itm_pairs : int
        ITM passes done (each candidate pair once); BLIP's code does ``n_images * k + n_texts * k``.
    texts : list of str
    image_labels : list of str
    thumbnails : list of PIL.Image.Image or None
        Small copies of the images (longest side 96 px) for the failure tables; None for pixel
        tensors or when the evaluation was asked not to keep them.
    model_name : str
        The net's name, for titles.
    benchmark : str
        The benchmark's name (``"flickr30k test"``), for titles; empty when not given.
    provenance : dict or None
        Where the evaluation came from (:func:`blipviz.net.provenance.provenance`): the blipviz,
        torch and transformers versions, the net's device and dtype, and the date.

    :meth:`save` writes the whole evaluation (scores, ranks, texts, labels, thumbnails as PNG) to a
    folder and :meth:`load` reads it back, so that :meth:`plot` and :meth:`failures` give the
    same figure and tables without the net.
    """

    score_i2t: np.ndarray
    score_t2i: np.ndarray
    text_image: np.ndarray
    metrics: dict[str, float]
    ranks_i2t: np.ndarray
    ranks_t2i: np.ndarray
    k_test: int
    score: str
    itm_pairs: int
    texts: list[str] = field(default_factory=list)
    image_labels: list[str] = field(default_factory=list)
    thumbnails: list[Any] | None = None
    model_name: str = ""
    benchmark: str = ""
    provenance: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def n_images(self) -> int:
        return int(self.score_i2t.shape[0])

    @property
    def n_texts(self) -> int:
        return int(self.score_i2t.shape[1])

    def __repr__(self) -> str:
        m = self.metrics
        return (
            f"RetrievalEvaluation(n_images={self.n_images}, n_texts={self.n_texts}, "
            f"k_test={self.k_test}, score={self.score!r}, txt_r1={m['txt_r1']:.1f}, "
            f"img_r1={m['img_r1']:.1f}, r_mean={m['r_mean']:.1f})"
        )

    def to_pandas(self) -> pd.DataFrame:
        """The metrics as one row, columns :data:`METRIC_KEYS`."""
        return pd.DataFrame([self.metrics], columns=list(METRIC_KEYS))

    # ------------------------------------------------------------------------------ saving
    def save(self, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write the evaluation to a folder that :meth:`load` reads back, without the net.

        Parquet tables: both score matrices (float32, one row per query), the images (label,
        rank) and texts (text, its image, rank), the thumbnails as PNG (lossless); and
        ``blipviz-result.json``: the metrics, ``k_test``, ``score``, ``itm_pairs``, the net's name,
        the benchmark and :attr:`provenance`.

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

        from ._saved import matrix_table, save_result, thumbnails_table

        def strings(values: list[str], n: int):
            return pa.array(list(values) if values else [None] * n, pa.string())

        tables = {
            "score_i2t": matrix_table(np.asarray(self.score_i2t)),
            "score_t2i": matrix_table(np.asarray(self.score_t2i)),
            "images": pa.table(
                {
                    "image": strings(self.image_labels, self.n_images),
                    "rank_i2t": pa.array(np.asarray(self.ranks_i2t, dtype=np.int64)),
                }
            ),
            "texts": pa.table(
                {
                    "text": strings(self.texts, self.n_texts),
                    "image": pa.array(np.asarray(self.text_image, dtype=np.int64)),
                    "rank_t2i": pa.array(np.asarray(self.ranks_t2i, dtype=np.int64)),
                }
            ),
        }
        if self.thumbnails is not None:
            tables["thumbnails"] = thumbnails_table(self.thumbnails)
        fields = {
            "metrics": {k: float(v) for k, v in self.metrics.items()},
            "k_test": int(self.k_test),
            "score": self.score,
            "itm_pairs": int(self.itm_pairs),
            "model_name": self.model_name,
            "benchmark": self.benchmark,
            "texts": bool(self.texts),
            "image_labels": bool(self.image_labels),
        }
        return save_result(path, "RetrievalEvaluation", fields, tables, self.provenance, overwrite=overwrite)

    @classmethod
    def load(cls, path: str | os.PathLike) -> RetrievalEvaluation:
        """The evaluation :meth:`save` wrote to ``path``, with its provenance.

        Raises
        ------
        InputError
            No such folder, not a saved result, or a result of another class (named).
        """
        from ._saved import load_result, matrix_of, saved_thumbnails

        fields, tables, made_by = load_result(path, "RetrievalEvaluation")
        images, texts = tables["images"], tables["texts"]
        n_images, n_texts = images.num_rows, texts.num_rows
        thumbnails = saved_thumbnails(tables)
        return cls(
            score_i2t=matrix_of(tables["score_i2t"], (n_images, n_texts), np.float32),
            score_t2i=matrix_of(tables["score_t2i"], (n_texts, n_images), np.float32),
            text_image=texts.column("image").to_numpy().astype(np.int64),
            metrics=dict(fields["metrics"]),
            ranks_i2t=images.column("rank_i2t").to_numpy().astype(np.int64),
            ranks_t2i=texts.column("rank_t2i").to_numpy().astype(np.int64),
            k_test=int(fields["k_test"]),
            score=fields["score"],
            itm_pairs=int(fields["itm_pairs"]),
            texts=texts.column("text").to_pylist() if fields.get("texts") else [],
            image_labels=images.column("image").to_pylist() if fields.get("image_labels") else [],
            thumbnails=thumbnails,
            model_name=fields.get("model_name", ""),
            benchmark=fields.get("benchmark", ""),
            provenance=made_by,
        )

    # ------------------------------------------------------------------------------ recall curves
    def candidates(self, direction: str) -> int:
        """Candidates re-scored per query in ``direction``: ``k_test`` clipped to the collection.
        Ranks beyond it fall among the -100 fill, in the order of numpy's sort: not meaningful."""
        check_choice("direction", direction, DIRECTIONS)
        return min(self.k_test, self.n_texts if direction == "i2t" else self.n_images)

    def recall_curve(self, direction: str, max_k: int | None = None) -> np.ndarray:
        """Recall@K in percent for K = 1 .. ``max_k`` (default: :meth:`candidates`).

        Returns
        -------
        ndarray of shape (max_k,)
            Entry K - 1 is the percentage of queries whose best true target ranks within the top K;
            entries 0, 4 and 9 are BLIP's R@1, R@5 and R@10.
        """
        ranks = self.ranks_i2t if direction == "i2t" else self.ranks_t2i
        limit = self.candidates(direction)
        max_k = limit if max_k is None else positive_int("max_k", max_k)
        counts = np.bincount(np.minimum(ranks, max_k), minlength=max_k + 1)[:max_k]
        return 100.0 * np.cumsum(counts) / len(ranks)

    def plot(self, ax=None, *, max_k: int | None = None, **kwargs: Any):
        """Recall@K curves of both directions (:class:`blipviz.display.retrieval.RecallCurveDisplay`).

        Parameters
        ----------
        ax : matplotlib.axes.Axes, optional
        max_k : int, optional
            Last K drawn; default: the candidates of each direction (``k_test``, clipped), beyond
            which ranks are not meaningful.
        **kwargs
            Passed to :meth:`blipviz.display.retrieval.RecallCurveDisplay.plot`.

        Returns
        -------
        RecallCurveDisplay
            With ``ax_``, ``figure_`` and ``lines_`` set.
        """
        from ..display.retrieval import RecallCurveDisplay

        curves = {d: self.recall_curve(d, max_k) for d in DIRECTIONS}
        return RecallCurveDisplay(
            curves,
            model_name=self.model_name,
            benchmark=self.benchmark,
            n_images=self.n_images,
            n_texts=self.n_texts,
            k_test=self.k_test,
            score=self.score,
        ).plot(ax=ax, **kwargs)

    # ---------------------------------------------------------------------------------- failures
    def failures(self, direction: str = "i2t", n: int = 10, *, n_above: int = 5):
        """The ``n`` worst queries of ``direction``: their true target and what ranked above it.

        Worst = largest rank of the best true target; equal ranks by the larger gap between the
        first-ranked score and the true target's, then by query index.

        Parameters
        ----------
        direction : {"i2t", "t2i"}
            ``"i2t"``: images query the texts (BLIP's TR); ``"t2i"``: texts query the images (IR).
        n : int, default 10
        n_above : int, default 5
            How many of the items ranked above the true target are listed (best first).

        Returns
        -------
        RetrievalFailures
            ``.to_pandas()``: one row per query, columns ``query``, ``query_item`` (its text, or its
            image label), ``rank`` (1-based: 1 = first), ``true`` (the best-ranked true target's
            index), ``true_item``, ``true_score``, ``above`` (indices ranked above it, best first,
            at most ``n_above``), ``above_items``, ``above_scores``; shown as an HTML table with
            thumbnails in a notebook.
        """
        from ..display.retrieval import RetrievalFailures

        check_choice("direction", direction, DIRECTIONS)
        n, n_above = positive_int("n", n), positive_int("n_above", n_above)
        i2t = direction == "i2t"
        scores = self.score_i2t if i2t else self.score_t2i
        ranks = self.ranks_i2t if i2t else self.ranks_t2i
        truths = (
            _image_captions(self.text_image, self.n_images) if i2t else [[int(i)] for i in self.text_image]
        )
        labels = self.image_labels or [f"image {i}" for i in range(self.n_images)]
        query_items, target_items = (labels, self.texts) if i2t else (self.texts, labels)
        best = scores.max(axis=1)
        gaps = [float(best[q] - scores[q, truths[q]].max()) for q in range(len(ranks))]
        worst = sorted(range(len(ranks)), key=lambda q: (-int(ranks[q]), -gaps[q], q))[:n]
        records: list[dict[str, Any]] = []
        for q in worst:
            rank, order = int(ranks[q]), _order(scores[q])
            true = int(order[rank])  # the best-ranked true target sits at the query's rank
            above = [int(t) for t in order[: min(rank, n_above)]]
            records.append(
                {
                    "query": q,
                    "query_item": query_items[q],
                    "rank": rank + 1,
                    "true": true,
                    "true_item": target_items[true],
                    "true_score": float(scores[q, true]),
                    "above": above,
                    "above_items": [target_items[t] for t in above],
                    "above_scores": [float(scores[q, t]) for t in above],
                }
            )
        frame = pd.DataFrame.from_records(records, columns=RetrievalFailures.COLUMNS)
        thumbs = None
        if self.thumbnails is not None:
            needed = set(frame["query"]) if i2t else {t for r in records for t in [r["true"], *r["above"]]}
            thumbs = {int(i): self.thumbnails[i] for i in needed}
        return RetrievalFailures(
            frame,
            direction=direction,
            thumbnails=thumbs,
            model_name=self.model_name,
            benchmark=self.benchmark,
            candidates=self.candidates(direction),
        )


def _candidates(sims: torch.Tensor, k: int) -> torch.Tensor:
    """Per row, the indices of the ``k`` largest values (``torch.topk``, as BLIP's code)."""
    return sims.topk(k=k, dim=1).indices


def evaluate_retrieval(
    model: BlipNet,
    images: Images,
    texts: Sequence[str],
    *,
    text_image: Sequence[int],
    k_test: int = 256,
    score: str = "itm+itc",
    batch_size: int | None = None,
    text_batch_size: int = 128,
    progress: bool | None = None,
    exif_transpose: bool = False,
    labels: Sequence[str] | None = None,
    benchmark: str = "",
    max_states_gb: float = DEFAULT_MAX_STATES_GB,
    keep_thumbnails: bool = True,
    compile: bool = False,
    autocast: str | None = None,
) -> RetrievalEvaluation:
    """Evaluate image-text retrieval with BLIP's protocol (see the module documentation).

    Parameters
    ----------
    model : BlipNet (or BlipITM)
    images : images, pixel Tensor, or ImageFeatures (with raw states)
    texts : sequence of str
        Raw captions (normalised here with BLIP's 30-word retrieval limit).
    text_image : sequence of int, length len(texts)
        ``text_image[j]`` is the index of text j's image; every image needs at least one text.
    k_test : int, default 256
        Candidates re-scored by ITM per query (BLIP's ``k_test``: 256 in its COCO config, 128 in its
        Flickr30k one). Larger than the collection: clipped to it (every candidate is scored).
    score : {"itm+itc", "itc", "itm"}, default "itm+itc"
        BLIP's score, or the similarity / the ITM logit alone on the same candidates.
    batch_size : int, optional
        Images per ViT pass; default :attr:`BlipNet.default_batch_size`.
    text_batch_size : int, default 128
        Texts per multimodal pass.
    progress : bool, optional
        Progress bars over both stages; default for 64 images or more.
    exif_transpose : bool, default False
        Turn photos upright by their EXIF tag. BLIP's retrieval loaders do not, so the protocol does
        not either, whatever the net's own preprocessing says.
    labels : sequence of str, optional
        One label per image (file names by default), for the failure tables.
    benchmark : str, optional
        The benchmark's name, for titles.
    max_states_gb : float, default 2.0
        Raw ViT states held in memory between the two stages, at most (2 GB: about 1,100 ViT-B/16
        or 840 ViT-L/16 images). The images beyond pass the input stream again in the ITM stage:
        served by the feature cache when one is set and writable (then nothing is held), else
        through the ViT again. ``float("inf")``: hold them all.
    keep_thumbnails : bool, default True
        Keep a 96-pixel copy of each image for :meth:`RetrievalEvaluation.failures`.
    compile : bool, default False
        Compile the ViT with ``torch.compile`` (once per net: seconds to a minute before the first
        batch; :mod:`blipviz.net.accelerate`); scores agree with eager ones within float32 rounding.
        Needs a C++ compiler on a CPU.
    autocast : {None, "bfloat16"}
        Run the ViT, text and multimodal passes under bfloat16 autocast; scores stay float32.
        Refused on a CPU without native bfloat16 (``BLIPVIZ_FORCE_BF16=1`` forces it), and with a
        writable feature cache set on the net (it would keep bfloat16-computed states as the
        float32 net's). Both are recorded in the result's ``provenance``.

    Returns
    -------
    RetrievalEvaluation
        ``.score_i2t`` (n_images, n_texts), ``.score_t2i`` (n_texts, n_images), ``.metrics``
        (BLIP's keys), ``.ranks_i2t``, ``.ranks_t2i``; ``.plot()``, ``.failures()``.

    Notes
    -----
    Each image passes the ViT once when its states fit in ``max_states_gb`` or a writable feature
    cache holds them; a read-only cache serves what it has and the states held in memory cover
    the rest. The ITM pass always puts ``[ENC]`` first, as BLIP does, also for a net loaded with
    ``first_token="cls"``; the net's options are restored afterwards. Similarities, ITM logits and
    their sums are float32, as in BLIP, so equal scores (ties) fall as in BLIP's float32 matrices.
    """
    if isinstance(max_states_gb, bool) or not isinstance(max_states_gb, int | float) or max_states_gb < 0:
        raise InputError(f"max_states_gb must be a number >= 0, got {max_states_gb!r}")
    store = model.feature_cache
    if autocast is not None and store is not None and getattr(store, "writable", True):
        raise InputError(
            f"autocast={autocast!r} with a writable feature cache on the net would store states "
            "computed in bfloat16 under the float32 net's name: set model.feature_cache = None for this "
            "evaluation, or leave autocast out"
        )
    with _blip_protocol(model, exif_transpose), model.accelerated(compile, autocast):
        return _evaluate(
            model,
            images,
            texts,
            text_image=text_image,
            k_test=k_test,
            score=score,
            batch_size=batch_size,
            text_batch_size=text_batch_size,
            progress=progress,
            labels=labels,
            benchmark=str(benchmark),
            max_states_bytes=float(max_states_gb) * 1e9,
            keep_thumbnails=keep_thumbnails,
        )


@contextlib.contextmanager
def _blip_protocol(model: BlipNet, exif_transpose: bool) -> Iterator[None]:
    """The net with BLIP's retrieval settings ([ENC] first, BLIP's EXIF rule) inside the block."""
    saved = model.first_token, model.preprocessing
    model.first_token = "enc"
    model.preprocessing = dataclasses.replace(model.preprocessing, exif_transpose=bool(exif_transpose))
    try:
        yield
    finally:
        model.first_token, model.preprocessing = saved


def _evaluate(
    model: BlipNet,
    images: Images,
    texts: Sequence[str],
    *,
    text_image: Sequence[int],
    k_test: int,
    score: str,
    batch_size: int | None,
    text_batch_size: int,
    progress: bool | None,
    labels: Sequence[str] | None,
    benchmark: str,
    max_states_bytes: float,
    keep_thumbnails: bool,
) -> RetrievalEvaluation:
    check_choice("score", score, RETRIEVAL_SCORES)
    k_test = positive_int("k_test", k_test)
    text_batch_size = positive_int("text_batch_size", text_batch_size)
    batch_size = model.resolve_batch_size(batch_size)
    texts = as_text_list(texts)
    in_memory = isinstance(images, ImageFeatures)  # raw states given: held already, nothing to copy
    if isinstance(images, ImageFeatures):
        n_given = len(images)
    elif isinstance(images, torch.Tensor):
        n_given = len(model.check_pixels(images))
    else:
        images = as_image_list(images)  # read twice in the ITM stage: never a spent generator
        n_given = len(images)
    text_image_arr = _check_text_image(text_image, len(texts), n_given)  # before any image is read
    tokenized = tokenize(
        texts, normalize=True, max_tokens=BLIP_MAX_TEXT_TOKENS, max_words=RETRIEVAL_MAX_WORDS
    )
    warn_truncated(
        tokenized.truncated_by,
        BLIP_MAX_TEXT_TOKENS,
        max_words=RETRIEVAL_MAX_WORDS,
        limit_note="BLIP's retrieval limits",
    )
    need_itm = score != "itc"
    store = model.feature_cache
    budget = 0.0 if (store is not None and getattr(store, "writable", True)) else max_states_bytes
    with torch.inference_mode():
        text_emb = F.normalize(model.text_projections(tokenized, text_batch_size).float(), dim=-1).cpu()
        # stage 1: image embeddings; raw states held (a prefix of the images) while they fit
        image_emb, held, keys, names, thumbs = [], [], [], [], []
        held_bytes, holding = 0, need_itm
        for batch in model.iter_image_states(images, batch_size, progress, labels):
            image_emb.append(F.normalize(model.image_projection(batch.states).float(), dim=-1).cpu())
            size = batch.states.numel() * batch.states.element_size()
            holding = holding and (in_memory or held_bytes + size <= budget)
            if holding:
                held.append(batch.states.cpu())
                held_bytes += size
            keys.extend(batch.keys)
            names.extend(batch.labels)
            if keep_thumbnails and batch.thumbnails is not None:
                thumbs.extend(batch.thumbnails)
        n_images, n_texts = len(names), len(texts)
        if n_images != n_given:
            raise InputError(f"the images changed while they were read: {n_given} given, {n_images} read")
        sims = torch.cat(image_emb) @ text_emb.T  # (n_images, n_texts), float32 as BLIP's sims_matrix
        k_i2t, k_t2i = min(k_test, n_texts), min(k_test, n_images)
        top_i2t = _candidates(sims, k_i2t).numpy()  # (n_images, k)
        top_t2i = _candidates(sims.T, k_t2i).numpy()  # (n_texts, k)
        wanted: list[set[int]] = [set(row) for row in top_i2t.tolist()]
        for text, row in enumerate(top_t2i.tolist()):
            for image in row:
                wanted[image].add(text)
        # stage 2: each candidate pair's ITM logit once, an image's texts in one broadcast batch
        logits = np.full((n_images, n_texts), np.nan, dtype=np.float32)
        if need_itm:
            stream: Any = _states_stream(model, images, held, keys, n_images, batch_size)
            show = n_images >= PROGRESS_MIN_IMAGES if progress is None else progress
            if show:
                from tqdm.auto import tqdm

                stream = tqdm(stream, desc="ITM candidates", unit="image", total=n_images)
            for i, states, key in stream:
                cand = sorted(wanted[i])
                out = model.itm_logits_of_image(tokenized.select(cand), states, key, text_batch_size)
                logits[i, cand] = out[:, 1].float().cpu().numpy()
    if need_itm and any(np.isnan(logits[i, sorted(w)]).any() for i, w in enumerate(wanted)):
        raise InputError("the images changed between the two passes (a generator or a changing source?)")
    itm_pairs = sum(len(w) for w in wanted) if need_itm else 0
    sims_np = sims.numpy()
    score_i2t = _scores(sims_np, logits, top_i2t, score)
    score_t2i = _scores(sims_np.T, logits.T, top_t2i, score)
    metrics, ranks_i2t, ranks_t2i = itm_eval(score_i2t, score_t2i, text_image_arr)
    return RetrievalEvaluation(
        score_i2t=score_i2t,
        score_t2i=score_t2i,
        text_image=text_image_arr.astype(np.int64),
        metrics=metrics,
        ranks_i2t=ranks_i2t,
        ranks_t2i=ranks_t2i,
        k_test=min(k_test, max(n_images, n_texts)),
        score=score,
        itm_pairs=itm_pairs,
        texts=texts,
        image_labels=names,
        thumbnails=thumbs if keep_thumbnails and len(thumbs) == n_images else None,
        model_name=str(model.name),
        benchmark=benchmark,
        provenance=provenance(model),
    )


def _check_text_image(text_image: Any, n_texts: int, n_images: int) -> np.ndarray:
    """``text_image`` as an int array of shape (n_texts,) whose every index lies in 0..n_images - 1
    and that names every image; else an :class:`InputError` (or :class:`InputTypeError` for values
    that are not ints) naming the first offending entry. Checked before any image is read."""
    if n_images == 0 or n_texts == 0:
        raise InputError(f"nothing to evaluate: {n_images} images and {n_texts} texts")
    try:
        arr = np.asarray(text_image)
    except (ValueError, TypeError):  # ragged nesting
        arr = None
    if (
        text_image is None
        or isinstance(text_image, str | bytes | dict)
        or (arr is not None and arr.ndim == 0)
    ):
        raise InputTypeError(
            f"text_image must be a sequence of ints (the index of each text's image), got "
            f"{type(text_image).__name__}"
        )
    if arr is None or arr.ndim != 1 or arr.shape != (n_texts,):
        shape = "a ragged sequence" if arr is None else f"shape {arr.shape}"
        raise InputError(
            f"text_image must hold one image index (an int) per text: got {shape} for {n_texts} texts"
        )
    if arr.dtype.kind not in "iu":
        given = list(text_image)
        first = next(
            (i for i, v in enumerate(given) if isinstance(v, bool) or not isinstance(v, int | np.integer)), 0
        )
        raise InputTypeError(
            f"text_image must hold ints (image indices), got {arr.dtype} values: text_image[{first}] is "
            f"{given[first]!r}"
        )
    outside = np.flatnonzero((arr < 0) | (arr >= n_images))
    if outside.size:
        i = int(outside[0])
        raise InputError(
            f"text_image[{i}] is {int(arr[i])}, outside 0..{n_images - 1} ({n_images} images); "
            f"{outside.size} of {n_texts} indices are outside"
        )
    missing = sorted(set(range(n_images)) - set(arr.tolist()))
    if missing:
        raise InputError(f"images {missing[:10]} have no text: every image needs at least one caption")
    return arr.astype(np.int64)


def _scores(sims: np.ndarray, logits: np.ndarray, top: np.ndarray, score: str) -> np.ndarray:
    """A score matrix of one direction: -100 everywhere but each row's candidates ``top``, which
    get the ITM logit + the similarity (float32 + float32, as BLIP), or either alone."""
    rows = np.arange(top.shape[0])[:, None]
    sim, logit = sims[rows, top], logits[rows, top]
    value = {"itm+itc": logit + sim, "itm": logit, "itc": sim}[score]
    out = np.full(sims.shape, _FILL, dtype=np.float32)
    out[rows, top] = value
    return out


def _states_stream(
    model: BlipNet,
    images: Any,
    held: list[torch.Tensor],
    keys: list[str | None],
    n_images: int,
    batch_size: int | None,
) -> Iterator[tuple[int, torch.Tensor, str | None]]:
    """(image index, states of shape (1, 1 + P, width), store key) for every image: the held prefix
    from memory, the rest through the input stream again (the feature cache, else the ViT)."""
    start = 0
    for states in held:
        for b in range(states.shape[0]):
            yield start + b, states[b : b + 1], keys[start + b]
        start += states.shape[0]
    if start < n_images:
        for offset, batch in _enumerate_batches(model.iter_image_states(images[start:], batch_size, False)):
            for b in range(batch.states.shape[0]):
                yield start + offset + b, batch.states[b : b + 1], batch.keys[b]


def _enumerate_batches(batches: Any):
    """(index of the batch's first image, batch) for a stream of ImageBatch."""
    start = 0
    for batch in batches:
        yield start, batch
        start += batch.states.shape[0]
