"""Two-stage retrieval, BLIP's own protocol: cosine over every candidate, ITM rerank of the top k.

BLIP's retrieval evaluation ranks all candidates by the cosine of the unimodal embeddings, then runs
the multimodal encoder on the ``k`` best only, and ranks those by the ITM head. Its final score adds
the ITM *logit* of the "match" class and the cosine (``score + topk_sim`` in BLIP's
``evaluation``); ``score="itm+cosine"`` gives that, ``score="itm"`` (default) the ITM probability.

Cost: the cheap stage (one ViT pass per image, one text pass per text, one dot product per pair)
grows with the collection; the expensive multimodal stage grows with ``k`` only: ``k`` text passes
per query, and for text queries one set of cross-attention keys and values per candidate image.
Images are streamed batch by batch; raw image states are kept only for the images currently in
some query's top ``k``, so memory is bounded by ``n_queries x k`` images, not by the collection.
With a feature cache (``load_model(..., cache_dir=...)``) a repeated search skips the ViT.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from ..errors import InputError, positive_int
from ..net.features import ImageFeatures, TextFeatures
from .scores import cosine_matrix

__all__ = ["SCORES", "search_images", "search_texts"]

SCORES = ("itm", "itm+cosine")


def _check_options(k: int, score: str) -> None:
    positive_int("k", k)
    if score not in SCORES:
        raise InputError(f"unknown score {score!r}; allowed values: {', '.join(map(repr, SCORES))}")


def _top_k(sims: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest values, best first; ties keep the candidates' order."""
    return np.argsort(-sims, kind="stable")[:k]


def _text_features(model, texts) -> TextFeatures:
    if isinstance(texts, TextFeatures):
        if texts.tokenized is None:
            raise InputError("these TextFeatures carry no token ids; compute them with model.encode_texts")
        model.check_origin(texts)
        return texts
    return model.encode_texts(texts)  # a str is one text


def _cut_texts(features: TextFeatures) -> dict[str, str]:
    """Text -> "tokens" or "words" for the texts that were cut (the frame's ``attrs``)."""
    return {t: r for t, r in zip(features.texts, features.truncated_by, strict=True) if r is not None}


def _frame(rows: list[dict[str, Any]], query_col: str, item_col: str, score: str) -> pd.DataFrame:
    columns = [
        query_col,
        "query_index",
        "rank",
        item_col,
        f"{item_col}_index",
        "score",
        "itm",
        "itm_logit",
        "cosine",
        "cosine_rank",
    ]
    frame = pd.DataFrame(rows, columns=columns)
    if frame.empty:
        return frame
    frame["score"] = frame["itm"] if score == "itm" else frame["itm_logit"] + frame["cosine"]
    frame = frame.sort_values(
        ["query_index", "score", "cosine_rank"],
        ascending=[True, False, True],
        kind="stable",
        ignore_index=True,
    )
    frame["rank"] = frame.groupby("query_index").cumcount() + 1
    return frame


def search_images(
    model,
    query_texts,
    images,
    *,
    k: int = 10,
    score: str = "itm",
    batch_size: int | None = None,
    progress: bool | None = None,
    labels: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Find the images that best match each text query, BLIP's two-stage way.

    Parameters
    ----------
    model : BlipITM
    query_texts : str, sequence of str, or TextFeatures
    images : images, or ImageFeatures with raw states
        The collection searched.
    k : int, default 10
        Candidates per query passed to the multimodal encoder (all images if fewer).
    score : {"itm", "itm+cosine"}, default "itm"
        Final ranking: ITM probability, or BLIP's ITM logit + cosine.
    batch_size : int, optional
        Images per vision-encoder pass; default 4 on CPU, 16 on a GPU
        (:attr:`BlipITM.default_batch_size`).
    progress : bool, optional
        Progress bar over images; by default shown once the pace foresees more than 5 s
        (:class:`blipviz.net.net.Progress`).
    labels : sequence of str, optional
        Names of the images in the ``image`` column (default: file names, ``"image i"``, or the
        labels of the ImageFeatures).

    Returns
    -------
    DataFrame with ``k`` rows per query (fewer if the collection is smaller), sorted by query then
    ``rank`` (1 = best): ``query``, ``query_index``, ``rank``, ``image`` (label), ``image_index``,
    ``score``, ``itm`` (probability), ``itm_logit`` (match logit), ``cosine``, ``cosine_rank``.
    ``attrs["truncated_by"]`` maps each query that was cut to ``"tokens"`` or ``"words"``.
    """
    _check_options(k, score)
    text_features = _text_features(model, query_texts)
    tokenized = text_features.tokenized
    queries = text_features.embeddings.double()  # (n_queries, 256)
    n_queries = len(text_features)

    sims_parts: list[np.ndarray] = []
    names: list[str] = []
    kept: dict[int, torch.Tensor] = {}  # image index -> raw states (1 + P, width), only for top-k images
    keys: list[str | None] = []  # feature-cache entry names, for remembered ITM logits
    with torch.inference_mode():
        if isinstance(images, ImageFeatures):
            model.check_features(images, need_raw=True)
            assert images.raw is not None  # check_features(need_raw=True)
            sims_parts.append(cosine_matrix(images.embeddings, queries))
            names = list(images.labels) if labels is None else model.check_labels(labels, len(images))
            kept = {i: images.raw[i] for i in range(len(images))}
            keys = [None] * len(images)
        else:
            for states, batch_labels, _, batch_keys in model.iter_image_states(
                images, batch_size, progress, labels
            ):
                start = len(names)
                emb = F.normalize(model.image_projection(states).cpu(), dim=-1).double()
                sims_parts.append(cosine_matrix(emb, queries))
                names.extend(batch_labels)
                keys.extend(batch_keys)
                for b in range(states.shape[0]):
                    kept[start + b] = states[b]
                sims_so_far = np.concatenate(sims_parts)
                wanted = {int(i) for q in range(n_queries) for i in _top_k(sims_so_far[:, q], k)}
                kept = {i: s for i, s in kept.items() if i in wanted}
        sims = np.concatenate(sims_parts) if sims_parts else np.zeros((0, n_queries))
        candidates = [_top_k(sims[:, q], k) for q in range(n_queries)]
        cosine_rank = [{int(i): r + 1 for r, i in enumerate(c)} for c in candidates]

        # Multimodal stage: per candidate image, all queries that want it, in one batch.
        by_image: dict[int, list[int]] = {}
        for q, cand in enumerate(candidates):
            for i in cand:
                by_image.setdefault(int(i), []).append(q)
        logits: dict[tuple[int, int], torch.Tensor] = {}
        for i, qs in by_image.items():
            out = model.itm_logits_of_image(tokenized.select(qs), kept[i].unsqueeze(0), keys[i])
            for q, row in zip(qs, out, strict=True):
                logits[(q, i)] = row
    rows = []
    for q, cand in enumerate(candidates):
        for i in map(int, cand):
            row = logits[(q, i)].double()
            rows.append(
                {
                    "query": text_features.texts[q],
                    "query_index": q,
                    "image": names[i],
                    "image_index": i,
                    "itm": float(row.softmax(-1)[1]),
                    "itm_logit": float(row[1]),
                    "cosine": float(sims[i, q]),
                    "cosine_rank": cosine_rank[q][i],
                }
            )
    frame = _frame(rows, "query", "image", score)
    frame.attrs["truncated_by"] = _cut_texts(text_features)
    return frame


def search_texts(
    model,
    query_images,
    texts,
    *,
    k: int = 10,
    score: str = "itm",
    batch_size: int | None = None,
    progress: bool | None = None,
    labels: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Find the texts that best describe each query image, BLIP's two-stage way.

    Parameters
    ----------
    model : BlipITM
    query_images : images, or ImageFeatures with raw states
    texts : sequence of str, or TextFeatures
        The collection searched.
    k : int, default 10
        Candidates per image passed to the multimodal encoder (all texts if fewer).
    score : {"itm", "itm+cosine"}, default "itm"
        Final ranking: ITM probability, or BLIP's ITM logit + cosine.
    batch_size : int, optional
        Query images per vision-encoder pass; default 4 on CPU, 16 on a GPU
        (:attr:`BlipITM.default_batch_size`).
    progress : bool, optional
    labels : sequence of str, optional
        Names of the query images in the ``image`` column.

    Returns
    -------
    DataFrame with ``k`` rows per query image, sorted by query then ``rank`` (1 = best): ``image``
    (label), ``query_index``, ``rank``, ``text``, ``text_index``, ``score``, ``itm``, ``itm_logit``,
    ``cosine``, ``cosine_rank``. ``attrs["truncated_by"]`` maps each text that was cut to
    ``"tokens"`` or ``"words"``.
    """
    _check_options(k, score)
    text_features = _text_features(model, texts)
    tokenized = text_features.tokenized
    text_emb = text_features.embeddings.double()
    rows = []
    batches: Iterable[tuple[torch.Tensor, list[str], list[str | None]]]
    with torch.inference_mode():
        if isinstance(query_images, ImageFeatures):
            model.check_features(query_images, need_raw=True)
            assert query_images.raw is not None  # check_features(need_raw=True)
            names = (
                list(query_images.labels) if labels is None else model.check_labels(labels, len(query_images))
            )
            batches = [(query_images.raw, names, [None] * len(query_images))]
        else:
            batches = (
                (states, names, keys)
                for states, names, _, keys in model.iter_image_states(
                    query_images, batch_size, progress, labels
                )
            )
        q = 0
        for states, names, keys in batches:
            emb = F.normalize(model.image_projection(states).cpu(), dim=-1).double()
            sims = cosine_matrix(emb, text_emb)
            for b in range(states.shape[0]):
                cand = [int(t) for t in _top_k(sims[b], k)]
                out = (
                    model.itm_logits_of_image(tokenized.select(cand), states[b : b + 1], keys[b])
                    if cand
                    else []
                )
                for r, (t, row) in enumerate(zip(cand, out, strict=True)):
                    row = row.double()
                    rows.append(
                        {
                            "image": names[b],
                            "query_index": q,
                            "text": text_features.texts[t],
                            "text_index": t,
                            "itm": float(row.softmax(-1)[1]),
                            "itm_logit": float(row[1]),
                            "cosine": float(sims[b, t]),
                            "cosine_rank": r + 1,
                        }
                    )
                q += 1
    frame = _frame(rows, "image", "text", score)
    frame.attrs["truncated_by"] = _cut_texts(text_features)
    return frame
