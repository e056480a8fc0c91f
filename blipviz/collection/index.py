"""FAISS indexes over a collection's unit-length embeddings: inner product = cosine.

==========  ======================================================================================
``flat``    exact (``IndexFlatIP``): every vector scored; equals numpy's top-k. Built in memory from
            ``embeddings.npy`` (a copy of the vectors: storing it would only copy the file again).
            Takes no options
``ivf``     ``IndexIVFFlat``: ``nlist`` k-means cells (1 to N; default ``4 sqrt(N)``, at most
            ``N // 39`` so that every cell trains on FAISS's 39 points, at least 1), ``nprobe`` of
            them searched (1 to ``nlist``; default ``max(1, nlist // 8)``); trained on at most
            ``256 nlist`` vectors; approximate: measure its recall (``benchmarks/bench_collection.py``)
``hnsw``    ``IndexHNSWFlat``: ``M`` links per vector (2 to 256, default 32), ``efSearch`` candidates
            per search (1 to 65,536, default 64): approximate, fast for millions
==========  ======================================================================================

Every option is checked before FAISS sees it (:func:`index_options`): a whole number in its range,
a known name for the index kind; anything else is an :class:`blipviz.InputError` that lists the
allowed options, raised before any memory is allocated (FAISS reads a negative ``M`` as a huge
unsigned number and allocates until the machine runs out).

A search returns ``min(k, N)`` neighbours per query whatever the options: a query whose ``nprobe``
cells hold fewer than ``k`` vectors is searched again with more cells (all of them at the end), and
one that an HNSW graph leaves short is answered by the exact search over the stored vectors.

The approximate indexes are built once and stored in the collection folder (``index-ivf.faiss``,
``index-hnsw.faiss``) with their options and the checksum of the embeddings they index.
"""

from __future__ import annotations

import difflib
import math
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, check_choice, positive_int

__all__ = [
    "INDEX_KINDS",
    "INDEX_OPTIONS",
    "build_index",
    "default_nlist",
    "index_options",
    "load_index",
    "save_index",
    "search_index",
]

INDEX_KINDS = ("flat", "ivf", "hnsw")

#: The options each index kind takes; ``nprobe`` and ``efSearch`` may also be given per search.
INDEX_OPTIONS: dict[str, tuple[str, ...]] = {
    "flat": (),
    "ivf": ("nlist", "nprobe"),
    "hnsw": ("M", "efSearch"),
}

#: HNSW's ``M`` range: 1 makes FAISS's level multiplier 1 / log(1); beyond 256 the graph alone takes
#: over 2 kB per vector for no gain in recall.
M_RANGE = (2, 256)
#: Largest ``efSearch``: FAISS allocates a candidate heap of ``efSearch`` entries per search thread
#: (1.5 GB at 10^8); recall stops improving long before 65,536.
EF_SEARCH_MAX = 65_536


def _faiss():
    try:
        import faiss
    except ImportError:  # pragma: no cover - faiss-cpu is a dependency
        raise ImportError("searching a collection needs FAISS: pip install faiss-cpu") from None
    return faiss


def default_nlist(n: int) -> int:
    """The default number of IVF cells for ``n`` vectors: ``4 sqrt(n)``, at most ``n // 39`` (FAISS
    wants 39 training points per cell), at least 1. One cell below 78 vectors (an exact search)."""
    return max(1, min(round(4 * math.sqrt(max(n, 1))), n // 39))


def _whole(kind: str, name: str, value: Any, low: int, high: int | None = None, why: str = "") -> int:
    """``value`` as an int if it is a whole number from ``low`` to ``high`` (None: no upper bound),
    else an :class:`InputError` naming the option and its range."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise InputError(f"{kind} index option {name} must be a whole number, got {value!r}")
    if value < low or (high is not None and value > high):
        bounds = f"at least {low}" if high is None else f"between {low} and {high}{why}"
        raise InputError(f"{kind} index option {name} must be {bounds}, got {int(value)}")
    return int(value)


def _check_names(kind: str, options: dict[str, Any], allowed: tuple[str, ...], what: str = "") -> None:
    """Refuse option names that ``what`` (default: the index of ``kind``) does not take, listing
    those it takes (and the likely one for a misspelt name)."""
    what = what or f"the {kind} index"
    unknown = sorted(set(options) - set(allowed))
    if not unknown:
        return
    if not allowed:
        raise InputError(
            f"{what} takes no options, got {', '.join(map(repr, unknown))} (nlist and nprobe "
            "are the ivf index's, M and efSearch the hnsw index's: pass index='ivf' or index='hnsw')"
        )
    guesses = [difflib.get_close_matches(u, allowed, n=1, cutoff=0.6) for u in unknown]
    hint = "".join(f"; did you mean {g[0]!r} for {u!r}?" for u, g in zip(unknown, guesses, strict=True) if g)
    raise InputError(
        f"unknown {kind} index option{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
        f"{what} takes {', '.join(map(repr, allowed))}{hint}"
    )


def index_options(kind: str, n: int, **options: Any) -> dict[str, Any]:
    """The options of an index of ``kind`` over ``n`` vectors, checked, with defaults filled in
    (an option given as None takes its default).

    Raises
    ------
    InputError
        An unknown index kind, an option name the kind does not take (the message lists those it
        takes), or a value that is not a whole number in its range: ``nlist`` 1 to ``n``, ``nprobe``
        1 to ``nlist``, ``M`` 2 to 256, ``efSearch`` 1 to 65,536.
    """
    check_choice("index", kind, INDEX_KINDS)
    _check_names(kind, options, INDEX_OPTIONS[kind])
    given = {k: v for k, v in options.items() if v is not None}
    if kind == "ivf":
        size = max(int(n), 1)
        if "nlist" in given:
            nlist = _whole(kind, "nlist", given["nlist"], 1, size, f" (the number of vectors, {n})")
        else:
            nlist = default_nlist(int(n))
        if "nprobe" in given:
            nprobe = _whole(
                kind, "nprobe", given["nprobe"], 1, nlist, f" (nlist, the number of cells: {nlist})"
            )
        else:
            nprobe = max(1, nlist // 8)
        return {"nlist": nlist, "nprobe": nprobe}
    if kind == "hnsw":
        m = _whole(kind, "M", given["M"], *M_RANGE) if "M" in given else 32
        ef = _whole(kind, "efSearch", given["efSearch"], 1, EF_SEARCH_MAX) if "efSearch" in given else 64
        return {"M": m, "efSearch": ef}
    return {}


def build_index(embeddings: np.ndarray, kind: str = "flat", *, seed: int = 0, **options: Any):
    """A FAISS index of ``kind`` over ``embeddings`` of shape (n, d), float32 unit vectors.

    ``options`` are checked by :func:`index_options` before anything is allocated.

    Returns
    -------
    faiss.Index
        Its ``search(queries, k)`` returns (scores (m, k), row indices (m, k)); :func:`search_index`
        adds the guarantee of ``min(k, n)`` neighbours.

    Raises
    ------
    InputError
        An unknown kind or option, an option out of its range, embeddings that are not a 2-d array,
        or an ivf index over no vectors (k-means needs at least one).
    """
    x = np.ascontiguousarray(embeddings, dtype=np.float32)
    if x.ndim != 2:
        raise InputError(f"embeddings must be a 2-d array (n, d), got shape {x.shape}")
    n, d = x.shape
    opts = index_options(kind, n, **options)
    if kind == "ivf" and n == 0:
        raise InputError("an ivf index needs at least one vector to train its cells on; this set is empty")
    faiss = _faiss()
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
        if opts["nlist"] == 1:  # one cell is the mean: no "provide at least 39 points" warning
            index.cp.min_points_per_centroid = 1
        index.train(sample)
        index.nprobe = opts["nprobe"]
    else:
        index = faiss.IndexHNSWFlat(d, opts["M"], faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efSearch = opts["efSearch"]
    index.add(x)
    return index


def _kind_of(index) -> str:
    faiss = _faiss()
    if isinstance(index, faiss.IndexIVF):
        return "ivf"
    if isinstance(index, faiss.IndexHNSW):
        return "hnsw"
    return "flat"


def search_index(index, queries: np.ndarray, k: int, **options: Any) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` (scores, rows) of each query, best first: arrays of shape (m, min(k, n)) for an index
    of n vectors, every row a real neighbour (never FAISS's -1).

    ``nprobe`` (ivf: cells searched first; more than ``nlist`` searches them all) or ``efSearch``
    (hnsw, 1 to 65,536) override the index's for this search. A query left with fewer than ``k``
    neighbours is searched again: with twice the cells until it has them (all cells at most), or,
    in an HNSW graph, exactly over the stored vectors.

    Raises
    ------
    InputError
        ``k`` below 1, an option the index kind does not take (the message lists those it takes) or
        out of its range, or queries that are not of shape (m, d).
    """
    kind = _kind_of(index)
    _check_names(kind, options, INDEX_OPTIONS[kind][1:], f"a search of the {kind} index")
    given = {key: v for key, v in options.items() if v is not None}
    k = min(positive_int("k", k), int(index.ntotal))
    q = np.ascontiguousarray(queries, dtype=np.float32)
    if q.ndim != 2 or q.shape[1] != index.d:
        raise InputError(f"queries must be an array of shape (m, {index.d}), got shape {q.shape}")
    faiss = _faiss()
    if kind == "ivf":
        nlist = int(index.nlist)
        nprobe = min(
            _whole(kind, "nprobe", given["nprobe"], 1) if "nprobe" in given else int(index.nprobe), nlist
        )
    elif kind == "hnsw":
        ef = given.get("efSearch", int(index.hnsw.efSearch))
        ef = _whole(kind, "efSearch", ef, 1, EF_SEARCH_MAX)
    if k == 0 or len(q) == 0:
        return np.zeros((len(q), k), np.float32), np.zeros((len(q), k), np.int64)
    if kind == "ivf":
        scores, rows = index.search(q, k, params=faiss.SearchParametersIVF(nprobe=nprobe))
        short = np.flatnonzero((rows < 0).any(axis=1))
        while short.size and nprobe < nlist:  # its cells hold fewer than k vectors: more cells
            nprobe = min(nlist, 2 * nprobe)
            more = faiss.SearchParametersIVF(nprobe=nprobe)
            scores[short], rows[short] = index.search(q[short], k, params=more)
            short = short[(rows[short] < 0).any(axis=1)]
    elif kind == "hnsw":
        scores, rows = index.search(q, k, params=faiss.SearchParametersHNSW(efSearch=ef))
        short = np.flatnonzero((rows < 0).any(axis=1))
        if short.size:  # a part of the graph the search cannot reach: the exact answer
            scores[short], rows[short] = faiss.downcast_index(index.storage).search(q[short], k)
    else:
        scores, rows = index.search(q, k)
    if (rows < 0).any():  # pragma: no cover - every branch above ends with k neighbours
        raise RuntimeError("FAISS returned fewer than k neighbours after an exhaustive search")
    return scores, rows


def save_index(index, path: Path) -> None:
    """Write an index atomically."""
    from .shards import write_atomically

    faiss = _faiss()
    write_atomically(path, lambda tmp: faiss.write_index(index, tmp))


def load_index(path: Path):
    """Read an index written by :func:`save_index`."""
    return _faiss().read_index(str(path))
