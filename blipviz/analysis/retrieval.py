"""Image-text retrieval evaluation with BLIP's own protocol (``train_retrieval.py``: ``evaluation``
and ``itm_eval``), computing each (image, text) pair's ITM logit once.

The protocol:

- captions are normalised as BLIP's retrieval datasets do, ``pre_caption(caption, max_words=30)``
  (30 words, not the 50 of ``pre_caption``'s default), and tokenised to at most 35 tokens;
- ITC similarities: unit image embeddings times unit text embeddings, (n_images, n_texts), no
  temperature;
- image to text: for each image its ``k_test`` most similar texts are scored by the ITM logit of
  "match" (before softmax, ``[ENC]`` first) plus the similarity; every other text scores -100. Text to
  image: the same for each text over its ``k_test`` most similar images;
- ``itm_eval``: an image's rank is the best rank of any of its true captions, a text's rank that of
  its one true image; recalls at 1, 5 and 10 in percent, and BLIP's means.

BLIP's code computes the ITM logit of a pair that is a candidate in both directions twice, and
repeats an image's keys and values for each of its candidate texts; here each pair is scored once,
and all candidate texts of an image go through the multimodal encoder as one batch against that
image's states (broadcast over the texts).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from ..errors import InputError, check_choice, positive_int
from ..net.features import ImageFeatures
from ..net.images import as_image_list
from ..net.net import PROGRESS_MIN_IMAGES, BlipNet, Images
from ..net.text import BLIP_MAX_TEXT_TOKENS, as_text_list, tokenize, warn_truncated
from .scores import cosine_matrix

__all__ = [
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
_FILL = -100.0  # BLIP's score of a pair outside the candidates


def _ranks(scores: np.ndarray, truths: Sequence[Sequence[int]]) -> np.ndarray:
    """Per row, the best 0-based rank of any of its true columns, in BLIP's order:
    ``np.argsort(score)[::-1]`` (numpy's default sort, reversed; so ties fall as they fall in BLIP)."""
    ranks = np.zeros(len(scores), dtype=np.int64)
    for row, (score, true) in enumerate(zip(scores, truths, strict=True)):
        order = np.argsort(score)[::-1]
        position = np.empty_like(order)
        position[order] = np.arange(len(order))
        ranks[row] = min(int(position[t]) for t in true)
    return ranks


def itm_eval(
    score_i2t: np.ndarray, score_t2i: np.ndarray, text_image: Sequence[int]
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
    text_image = np.asarray(text_image, dtype=np.int64)
    n_images, n_texts = score_i2t.shape
    if score_t2i.shape != (n_texts, n_images) or text_image.shape != (n_texts,):
        raise InputError(
            f"score_i2t {score_i2t.shape}, score_t2i {score_t2i.shape} and text_image {text_image.shape} "
            "do not fit: expected (n_images, n_texts), (n_texts, n_images) and (n_texts,)"
        )
    captions: list[list[int]] = [[] for _ in range(n_images)]
    for text, image in enumerate(text_image.tolist()):
        captions[image].append(text)
    ranks_i2t = _ranks(score_i2t, captions)
    ranks_t2i = _ranks(score_t2i, [[i] for i in text_image.tolist()])

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
    score_i2t : ndarray of shape (n_images, n_texts)
        BLIP's image-to-text scores; -100 outside each image's ``k_test`` candidates.
    score_t2i : ndarray of shape (n_texts, n_images)
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

    def __repr__(self) -> str:
        m = self.metrics
        return (
            f"RetrievalEvaluation(n_images={self.score_i2t.shape[0]}, n_texts={self.score_i2t.shape[1]}, "
            f"k_test={self.k_test}, score={self.score!r}, txt_r1={m['txt_r1']:.1f}, "
            f"img_r1={m['img_r1']:.1f}, r_mean={m['r_mean']:.1f})"
        )

    def to_pandas(self) -> pd.DataFrame:
        """The metrics as one row, columns :data:`METRIC_KEYS`."""
        return pd.DataFrame([self.metrics], columns=list(METRIC_KEYS))


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
        Candidates re-scored by ITM per query (BLIP's ``k_test``). Larger than the collection:
        clipped to it (every candidate is scored).
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

    Returns
    -------
    RetrievalEvaluation
        ``.score_i2t`` (n_images, n_texts), ``.score_t2i`` (n_texts, n_images), ``.metrics``
        (BLIP's keys), ``.ranks_i2t``, ``.ranks_t2i``.

    Notes
    -----
    Each image passes the ViT once. Without a feature cache the raw states of all images are held
    in memory for the ITM stage (1.8 MB per ViT-B/16 image); with one (``model.feature_cache``) the
    second stage reads them back from it instead. The ITM pass always puts ``[ENC]`` first, as BLIP
    does, also for a net loaded with ``first_token="cls"``; the net's options are restored afterwards.
    """
    with _blip_protocol(model, exif_transpose):
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
) -> RetrievalEvaluation:
    check_choice("score", score, RETRIEVAL_SCORES)
    k_test = positive_int("k_test", k_test)
    texts = as_text_list(texts)
    text_image_arr = np.asarray(text_image)
    if text_image_arr.shape != (len(texts),) or text_image_arr.dtype.kind not in "iu":
        raise InputError(
            f"text_image must hold one image index (an int) per text: got shape {text_image_arr.shape} "
            f"for {len(texts)} texts"
        )
    tokenized = tokenize(
        texts, normalize=True, max_tokens=BLIP_MAX_TEXT_TOKENS, max_words=RETRIEVAL_MAX_WORDS
    )
    warn_truncated(
        tokenized.truncated_by,
        BLIP_MAX_TEXT_TOKENS,
        max_words=RETRIEVAL_MAX_WORDS,
        limit_note="BLIP's retrieval limits",
    )
    with torch.inference_mode():
        text_emb = F.normalize(model.text_projections(tokenized, text_batch_size), dim=-1)
        if not isinstance(images, ImageFeatures | torch.Tensor):
            images = as_image_list(images)  # read twice with a feature cache: never a spent generator
        # stage 1: image embeddings (and raw states on the CPU, kept unless a store holds them)
        keep = score != "itc" and (
            model.feature_cache is None or isinstance(images, ImageFeatures | torch.Tensor)
        )
        image_emb, raw, labels = [], [], []
        for batch in model.iter_image_states(images, batch_size, progress):
            image_emb.append(F.normalize(model.image_projection(batch.states).cpu(), dim=-1))
            if keep:
                raw.append(batch.states.cpu())
            labels.extend(batch.labels)
        n_images, n_texts = len(labels), len(texts)
        if n_images == 0 or n_texts == 0:
            raise InputError(f"nothing to evaluate: {n_images} images and {n_texts} texts")
        if text_image_arr.min() < 0 or text_image_arr.max() >= n_images:
            raise InputError(f"text_image holds indices outside 0..{n_images - 1}")
        missing = sorted(set(range(n_images)) - set(text_image_arr.tolist()))
        if missing:
            raise InputError(f"images {missing[:10]} have no text: every image needs at least one caption")
        sims = torch.from_numpy(cosine_matrix(torch.cat(image_emb), text_emb))  # (n_images, n_texts)
        k_i2t, k_t2i = min(k_test, n_texts), min(k_test, n_images)
        top_i2t = _candidates(sims, k_i2t)  # (n_images, k)
        top_t2i = _candidates(sims.T, k_t2i)  # (n_texts, k)
        wanted: list[set[int]] = [set(row) for row in top_i2t.tolist()]
        for text, row in enumerate(top_t2i.tolist()):
            for image in row:
                wanted[image].add(text)
        # stage 2: each candidate pair's ITM logit once, an image's texts in one broadcast batch
        logits = np.full((n_images, n_texts), np.nan)
        if score != "itc":
            states_of = torch.cat(raw) if keep else None
            stream = (
                ((i, states_of[i : i + 1], None) for i in range(n_images))
                if keep
                else (
                    (start + b, batch.states[b : b + 1], batch.keys[b])
                    for start, batch in _enumerate_batches(model.iter_image_states(images, batch_size, False))
                    for b in range(batch.states.shape[0])
                )
            )
            show = n_images >= PROGRESS_MIN_IMAGES if progress is None else progress
            if show:
                from tqdm.auto import tqdm

                stream = tqdm(stream, desc="ITM candidates", unit="image", total=n_images)
            for i, states, key in stream:
                cand = sorted(wanted[i])
                out = model.itm_logits_of_image(tokenized.select(cand), states, key, text_batch_size)
                logits[i, cand] = out[:, 1].double().cpu().numpy()
    if score != "itc" and any(np.isnan(logits[i, sorted(w)]).any() for i, w in enumerate(wanted)):
        raise InputError("the images changed between the two passes (a generator or a changing source?)")
    itm_pairs = sum(len(w) for w in wanted) if score != "itc" else 0
    sims_np = sims.numpy()
    value = {"itm+itc": logits + sims_np, "itm": logits, "itc": sims_np}[score]
    score_i2t = np.full((n_images, n_texts), _FILL)
    rows = np.arange(n_images)[:, None]
    score_i2t[rows, top_i2t.numpy()] = value[rows, top_i2t.numpy()]
    score_t2i = np.full((n_texts, n_images), _FILL)
    cols = np.arange(n_texts)[:, None]
    score_t2i[cols, top_t2i.numpy()] = value.T[cols, top_t2i.numpy()]
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
        image_labels=labels,
    )


def _enumerate_batches(batches: Any):
    """(index of the batch's first image, batch) for a stream of ImageBatch."""
    start = 0
    for batch in batches:
        yield start, batch
        start += batch.states.shape[0]
