"""Two-stage retrieval, BLIP's own protocol: cosine over every candidate, ITM rerank of the best.

BLIP's retrieval evaluation ranks all candidates by the cosine of the unimodal embeddings, then runs
the multimodal encoder on the best few only, and ranks those by the ITM head. Its final score adds
the ITM *logit* of the "match" class and the cosine (``score + topk_sim`` in BLIP's
``evaluation``); ``score="itm+cosine"`` gives that, ``score="itm"`` (default) the ITM probability.

Two numbers say how much of it a search does, with the same meaning here and in
:meth:`blipviz.Collection.search` (:func:`check_search_options`, :func:`search_frame`):

- ``k``: rows returned per query, the best ``k``;
- ``rerank``: how many of each query's best by cosine the ITM head re-scores. ``None`` (default):
  ``k``, so every row returned has its ITM score; ``0``: none, the rows keep the cosine order with
  ``score``, ``itm`` and ``itm_logit`` NaN; an int ``n``: the ``n`` best by cosine are re-scored and
  come first, ordered by ``score``; below ``k`` the rest follow in cosine order with NaN scores,
  above ``k`` only the best ``k`` of the ``n`` are returned.

Cost: the cheap stage (one ViT pass per image, one text pass per text, one dot product per pair)
grows with the collection; the expensive multimodal stage grows with ``rerank`` only: ``rerank``
text passes per query, and for text queries one set of cross-attention keys and values per
candidate image. Images are streamed batch by batch; raw image states are kept only for the images
currently in some query's ``rerank`` best, so memory is bounded by ``n_queries x rerank`` images,
not by the collection. With a feature cache (``load_model(..., cache_dir=...)``) a repeated search
skips the ViT.
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

__all__ = ["SCORES", "check_search_options", "search", "search_frame", "search_texts"]

#: Final ranking of the re-scored candidates: ITM probability, or BLIP's ITM logit + cosine.
SCORES = ("itm", "itm+cosine")


def check_search_options(k: Any, rerank: Any, score: Any) -> tuple[int, int]:
    """Check a search's ``k``, ``rerank`` and ``score``; returns ``(k, n_rerank)``.

    Parameters
    ----------
    k : int
        Rows per query, at least 1.
    rerank : int or None
        Candidates per query re-scored by the ITM head: ``None`` for ``k``, or a whole number
        of at least 0.
    score : {"itm", "itm+cosine"}

    Returns
    -------
    tuple of (int, int)
        ``k`` and the number of candidates re-scored per query (``rerank``, or ``k`` for None).

    Raises
    ------
    InputError
        Naming the option that is wrong.
    """
    k = positive_int("k", k)
    if rerank is None:
        n_rerank = k
    elif isinstance(rerank, bool) or not isinstance(rerank, int | np.integer) or rerank < 0:
        raise InputError(f"rerank must be None or a whole number of at least 0, got {rerank!r}")
    else:
        n_rerank = int(rerank)
    if score not in SCORES:
        raise InputError(f"unknown score {score!r}; allowed values: {', '.join(map(repr, SCORES))}")
    return k, n_rerank


def search_frame(
    rows: list[dict[str, Any]], query_col: str, item_col: str, *, k: int, n_rerank: int, score: str
) -> pd.DataFrame:
    """The result of a search from its candidates, ordered and cut to ``k`` rows per query.

    Parameters
    ----------
    rows : list of dict
        One per (query, candidate): ``query_col``, ``"query_index"``, ``item_col``,
        ``item_col + "_index"``, ``"cosine"``, ``"cosine_rank"`` (1 = best cosine of the query),
        ``"itm"`` and ``"itm_logit"`` (NaN for a candidate not re-scored).
    query_col, item_col : str
        ``"query"`` and ``"image"`` for images found by texts, ``"image"`` and ``"text"`` the reverse.
    k : int
        Rows kept per query.
    n_rerank : int
        Candidates re-scored per query: those of ``cosine_rank <= n_rerank``.
    score : {"itm", "itm+cosine"}

    Returns
    -------
    DataFrame
        Columns ``query_col``, ``query_index``, ``rank`` (1 = best), ``item_col``,
        ``item_col + "_index"``, ``score``, ``itm``, ``itm_logit``, ``cosine``, ``cosine_rank``;
        sorted by query, then the re-scored candidates by ``score``, then the others by cosine.
    """
    index_col = f"{item_col}_index"
    columns = [query_col, "query_index", "rank", item_col, index_col, "score", "itm", "itm_logit"]
    columns += ["cosine", "cosine_rank"]
    frame = pd.DataFrame(rows, columns=columns)
    frame = frame.astype(
        {"query_index": "int64", index_col: "int64", "cosine_rank": "int64"}
        | {"itm": "float64", "itm_logit": "float64", "cosine": "float64"}
    )
    frame["score"] = frame["itm"] if score == "itm" else frame["itm_logit"] + frame["cosine"]
    frame["_later"] = frame["cosine_rank"] > n_rerank  # not re-scored: after the re-scored, by cosine
    frame = frame.sort_values(
        ["query_index", "_later", "score", "cosine_rank"],
        ascending=[True, True, False, True],
        kind="stable",
        na_position="last",
    )
    frame = frame.groupby("query_index", sort=False).head(k).reset_index(drop=True)
    frame["rank"] = (frame.groupby("query_index").cumcount() + 1).astype("int64")
    return frame[columns]


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


def _pair(row: torch.Tensor | None) -> tuple[float, float]:
    """ITM probability and match logit of a (2,) logit row; NaN for a pair not re-scored."""
    if row is None:
        return np.nan, np.nan
    row = row.double()
    return float(row.softmax(-1)[1]), float(row[1])


def search(
    model,
    texts,
    images,
    *,
    k: int = 10,
    rerank: int | None = None,
    score: str = "itm",
    batch_size: int | None = None,
    progress: bool | None = None,
    labels: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Find the images that best match each text, BLIP's two-stage way.

    Parameters
    ----------
    model : BlipITM
    texts : str, sequence of str, or TextFeatures
        The queries (a str is one query).
    images : images, or ImageFeatures (with raw states when ``rerank`` is not 0)
        The images searched.
    k : int, default 10
        Rows per query: the best ``k`` images (all of them if fewer).
    rerank : int or None, default None
        How many of each query's best by cosine the ITM head re-scores: ``None`` for ``k`` (every
        row has its ITM score), ``0`` for none (cosine order, ``score``/``itm``/``itm_logit`` NaN),
        or ``n``: those ``n`` come first ordered by ``score``, the rest in cosine order.
    score : {"itm", "itm+cosine"}, default "itm"
        Ranking of the re-scored: ITM probability, or BLIP's ITM logit + cosine.
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
    DataFrame with ``k`` rows per query (fewer if there are fewer images), sorted by query then
    ``rank`` (1 = best): ``query``, ``query_index``, ``rank``, ``image`` (label), ``image_index``,
    ``score``, ``itm`` (probability), ``itm_logit`` (match logit), ``cosine``, ``cosine_rank``; the
    same columns as :meth:`blipviz.Collection.search`. ``attrs["truncated_by"]`` maps each query
    that was cut to ``"tokens"`` or ``"words"``.
    """
    k, n_rerank = check_search_options(k, rerank, score)
    n_found = max(k, n_rerank)
    text_features = _text_features(model, texts)
    tokenized = text_features.tokenized
    queries = text_features.embeddings.double()  # (n_queries, 256)
    n_queries = len(text_features)

    sims_parts: list[np.ndarray] = []
    names: list[str] = []
    kept: dict[int, torch.Tensor] = {}  # image index -> raw states (1 + P, width), only for re-scored images
    keys: list[str | None] = []  # feature-cache entry names, for remembered ITM logits
    with torch.inference_mode():
        if isinstance(images, ImageFeatures):
            model.check_features(images, need_raw=n_rerank > 0)
            sims_parts.append(cosine_matrix(images.embeddings, queries))
            names = list(images.labels) if labels is None else model.check_labels(labels, len(images))
            if n_rerank:
                assert images.raw is not None  # check_features(need_raw=True)
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
                if not n_rerank:
                    continue
                for b in range(states.shape[0]):
                    kept[start + b] = states[b]
                sims_so_far = np.concatenate(sims_parts)
                wanted = {int(i) for q in range(n_queries) for i in _top_k(sims_so_far[:, q], n_rerank)}
                kept = {i: s for i, s in kept.items() if i in wanted}
        sims = np.concatenate(sims_parts) if sims_parts else np.zeros((0, n_queries))
        found = [_top_k(sims[:, q], n_found) for q in range(n_queries)]

        # Multimodal stage: per re-scored image, all queries that want it, in one batch.
        by_image: dict[int, list[int]] = {}
        for q, cand in enumerate(found):
            for i in cand[:n_rerank]:
                by_image.setdefault(int(i), []).append(q)
        logits: dict[tuple[int, int], torch.Tensor] = {}
        for i, qs in by_image.items():
            out = model.itm_logits_of_image(tokenized.select(qs), kept[i].unsqueeze(0), keys[i])
            for q, row in zip(qs, out, strict=True):
                logits[(q, i)] = row
    rows = []
    for q, cand in enumerate(found):
        for r, i in enumerate(map(int, cand)):
            itm, itm_logit = _pair(logits.get((q, i)))
            rows.append(
                {
                    "query": text_features.texts[q],
                    "query_index": q,
                    "image": names[i],
                    "image_index": i,
                    "itm": itm,
                    "itm_logit": itm_logit,
                    "cosine": float(sims[i, q]),
                    "cosine_rank": r + 1,
                }
            )
    frame = search_frame(rows, "query", "image", k=k, n_rerank=n_rerank, score=score)
    frame.attrs["truncated_by"] = _cut_texts(text_features)
    return frame


def search_texts(
    model,
    images,
    texts,
    *,
    k: int = 10,
    rerank: int | None = None,
    score: str = "itm",
    batch_size: int | None = None,
    progress: bool | None = None,
    labels: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Find the texts that best describe each image, BLIP's two-stage way (:func:`search` reversed).

    Parameters
    ----------
    model : BlipITM
    images : images, or ImageFeatures (with raw states when ``rerank`` is not 0)
        The queries.
    texts : sequence of str, or TextFeatures
        The texts searched.
    k : int, default 10
        Rows per query image: the best ``k`` texts (all of them if fewer).
    rerank : int or None, default None
        How many of each image's best texts by cosine the ITM head re-scores; as in :func:`search`.
    score : {"itm", "itm+cosine"}, default "itm"
        Ranking of the re-scored: ITM probability, or BLIP's ITM logit + cosine.
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
    k, n_rerank = check_search_options(k, rerank, score)
    n_found = max(k, n_rerank)
    text_features = _text_features(model, texts)
    tokenized = text_features.tokenized
    text_emb = text_features.embeddings.double()
    rows = []
    batches: Iterable[tuple[torch.Tensor, list[str], list[str | None]]]
    with torch.inference_mode():
        if isinstance(images, ImageFeatures):
            model.check_features(images, need_raw=True)
            assert images.raw is not None  # check_features(need_raw=True)
            names = list(images.labels) if labels is None else model.check_labels(labels, len(images))
            batches = [(images.raw, names, [None] * len(images))]
        else:
            batches = (
                (states, names, keys)
                for states, names, _, keys in model.iter_image_states(images, batch_size, progress, labels)
            )
        q = 0
        for states, names, keys in batches:
            emb = F.normalize(model.image_projection(states).cpu(), dim=-1).double()
            sims = cosine_matrix(emb, text_emb)
            for b in range(states.shape[0]):
                cand = [int(t) for t in _top_k(sims[b], n_found)]
                scored = cand[:n_rerank]
                out = (
                    model.itm_logits_of_image(tokenized.select(scored), states[b : b + 1], keys[b])
                    if scored
                    else []
                )
                logits = dict(zip(scored, out, strict=True))
                for r, t in enumerate(cand):
                    itm, itm_logit = _pair(logits.get(t))
                    rows.append(
                        {
                            "image": names[b],
                            "query_index": q,
                            "text": text_features.texts[t],
                            "text_index": t,
                            "itm": itm,
                            "itm_logit": itm_logit,
                            "cosine": float(sims[b, t]),
                            "cosine_rank": r + 1,
                        }
                    )
                q += 1
    frame = search_frame(rows, "image", "text", k=k, n_rerank=n_rerank, score=score)
    frame.attrs["truncated_by"] = _cut_texts(text_features)
    return frame
