"""FAISS indexes over a collection's unit-length embeddings: inner product = cosine.

==========  ======================================================================================
``flat``    exact (``IndexFlatIP``): every vector scored; equals numpy's top-k. Built in memory from
            ``embeddings.npy`` (a copy of the vectors: storing it would only copy the file again)
``ivf``     ``IndexIVFFlat``: ``nlist`` k-means cells (default ``4 sqrt(N)``), ``nprobe`` of them
            searched (default ``max(1, nlist // 8)``); trained on at most ``256 nlist`` vectors;
            approximate: measure its recall (``benchmarks/bench_collection.py``)
``hnsw``    ``IndexHNSWFlat`` (``M=32``, ``efSearch`` default 64): approximate, fast for millions
==========  ======================================================================================

The approximate indexes are built once and stored in the collection folder (``index-ivf.faiss``,
``index-hnsw.faiss``) with their options and the checksum of the embeddings they index.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, check_choice

__all__ = ["INDEX_KINDS", "build_index", "index_options", "load_index", "save_index", "search_index"]

INDEX_KINDS = ("flat", "ivf", "hnsw")


def _faiss():
    try:
        import faiss
    except ImportError:  # pragma: no cover - faiss-cpu is a dependency
        raise ImportError("searching a collection needs FAISS: pip install faiss-cpu") from None
    return faiss


def index_options(kind: str, n: int, **options: Any) -> dict[str, Any]:
    """The options of an index of ``kind`` over ``n`` vectors (defaults filled in)."""
    check_choice("index", kind, INDEX_KINDS)
    if kind == "ivf":
        nlist = int(options.get("nlist") or max(1, min(n, round(4 * math.sqrt(max(n, 1))))))
        return {"nlist": nlist, "nprobe": int(options.get("nprobe") or max(1, nlist // 8))}
    if kind == "hnsw":
        return {"M": int(options.get("M") or 32), "efSearch": int(options.get("efSearch") or 64)}
    return {}


def build_index(embeddings: np.ndarray, kind: str = "flat", *, seed: int = 0, **options: Any):
    """A FAISS index of ``kind`` over ``embeddings`` of shape (n, d), float32 unit vectors.

    Returns
    -------
    faiss.Index
        Its ``search(queries, k)`` returns (scores (m, k), row indices (m, k)).
    """
    faiss = _faiss()
    x = np.ascontiguousarray(embeddings, dtype=np.float32)
    n, d = x.shape
    opts = index_options(kind, n, **options)
    if kind == "flat":
        index = faiss.IndexFlatIP(d)
    elif kind == "ivf":
        quantizer = faiss.IndexFlatIP(d)
        index = faiss.IndexIVFFlat(quantizer, d, opts["nlist"], faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(seed)
        sample = (
            x if n <= 256 * opts["nlist"] else x[np.sort(rng.choice(n, 256 * opts["nlist"], replace=False))]
        )
        index.cp.seed = seed
        index.train(sample)
        index.nprobe = opts["nprobe"]
    else:
        index = faiss.IndexHNSWFlat(d, opts["M"], faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efSearch = opts["efSearch"]
    index.add(x)
    return index


def search_index(index, queries: np.ndarray, k: int, **options: Any) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` (scores, rows) of each query, best first: arrays of shape (m, k); ``k`` at most the
    index size. ``nprobe`` (ivf) or ``efSearch`` (hnsw) override the index's for this search."""
    faiss = _faiss()
    q = np.ascontiguousarray(queries, dtype=np.float32)
    k = min(int(k), int(index.ntotal))
    params = None
    if options.get("nprobe") is not None:
        params = faiss.SearchParametersIVF(nprobe=int(options["nprobe"]))
    elif options.get("efSearch") is not None:
        params = faiss.SearchParametersHNSW(efSearch=int(options["efSearch"]))
    scores, rows = index.search(q, k, params=params) if params is not None else index.search(q, k)
    if (rows < 0).any() and k:
        raise InputError(
            "the approximate index found fewer than k neighbours for some query: raise nprobe / efSearch"
        )
    return scores, rows


def save_index(index, path: Path) -> None:
    """Write an index atomically."""
    from .shards import write_atomically

    faiss = _faiss()
    write_atomically(path, lambda tmp: faiss.write_index(index, tmp))


def load_index(path: Path):
    """Read an index written by :func:`save_index`."""
    return _faiss().read_index(str(path))
