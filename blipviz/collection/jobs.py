"""What a run over a source computes for each row, and what a finished folder adds: the one part
that differs between a collection of embeddings (:func:`blipviz.embed_collection`) and a folder of
scored pairs (:func:`blipviz.score_pairs`). Everything else (sources, shards, the manifest, binding
to the source, resuming, validation, the engines) is the same machinery.

A job has a ``name`` (recorded in the manifest as ``job``), computes one batch of rows
(``compute``: a value per row, or the reason it was skipped), turns the values of one shard into
Parquet columns (``arrays``) and finishes the folder (``finalize``).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, cast

import numpy as np

from .sources import Row
from .work import decode_rows, embed_rows

__all__ = ["JOBS", "EmbeddingJob", "Job", "PairJob"]


class Job:
    """Base class: see the module's notes."""

    name = ""
    #: Whether the row's image is decoded and passed through the ViT (always, so far).
    needs_text = False

    def __init__(self, dim: int) -> None:
        self.dim = dim

    def compute(self, model, rows: list[Row]) -> tuple[list[Any], list[str | None]]:
        """Values of one batch: ``values[i]`` for a row whose ``errors[i]`` is None."""
        raise NotImplementedError

    def arrays(self, values: list[Any], errors: list[str | None]) -> dict[str, Any]:
        """The job's Parquet columns of one shard (null where a row has an error)."""
        raise NotImplementedError

    #: Names of the numpy columns a Ray actor returns for each row (:meth:`transport`).
    columns: tuple[str, ...] = ()

    def transport(self, values: list[Any], errors: list[str | None]) -> dict[str, np.ndarray]:
        """One batch's values as numpy columns (what a Ray actor returns)."""
        raise NotImplementedError

    def value_of(self, record: dict[str, Any]) -> Any:
        """One row's value back from its :meth:`transport` columns."""
        raise NotImplementedError

    def finalize(self, folder: Path, manifest: dict[str, Any], read_table) -> None:
        """Anything the finished folder holds beyond its shards (in ``manifest``, updated)."""


class EmbeddingJob(Job):
    """A collection: each row's L2-normalised image embedding, ``embedding``
    (``fixed_size_list<float32>[dim]``), and ``embeddings.npy`` once finished."""

    name = "embeddings"
    columns = ("embedding",)

    def transport(self, values, errors):
        full = np.zeros((len(errors), self.dim), dtype=np.float32)
        for i, v in enumerate(values):
            if v is not None:
                full[i] = v
        return {"embedding": full}

    def value_of(self, record):
        return np.asarray(record["embedding"], dtype=np.float32)

    def compute(self, model, rows: list[Row]) -> tuple[list[Any], list[str | None]]:
        embeddings, errors = embed_rows(model, rows)
        values: list[Any] = [None] * len(rows)
        at = 0
        for i, error in enumerate(errors):
            if error is None:
                values[i] = embeddings[at]
                at += 1
        return values, errors

    def arrays(self, values, errors):
        import pyarrow as pa

        ok = np.array([e is None for e in errors], dtype=bool)
        full = np.zeros((len(errors), self.dim), dtype=np.float32)
        for i in np.flatnonzero(ok):
            full[i] = np.asarray(values[i], dtype=np.float32).reshape(self.dim)
        flat = pa.array(full.reshape(-1), type=pa.float32())
        return {"embedding": pa.FixedSizeListArray.from_arrays(flat, self.dim, mask=pa.array(~ok))}

    def finalize(self, folder, manifest, read_table):
        from .shards import EMBEDDINGS_NAME, checksum_file, inside, shard_embeddings, write_atomically

        dim = self.dim
        n_ok = sum(s["rows"] - s["errors"] for s in manifest["shards"])

        def write(tmp: str) -> None:
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n_ok, dim))
            at = 0
            for entry in manifest["shards"]:
                emb = shard_embeddings(read_table(inside(folder, entry["file"]), ["embedding"]))
                out[at : at + len(emb)] = emb
                at += len(emb)
            out.flush()
            del out

        write_atomically(folder / EMBEDDINGS_NAME, write, manifest["uid"])
        manifest.update(
            count=n_ok,
            embeddings={
                "file": EMBEDDINGS_NAME,
                "shape": [n_ok, dim],
                "dtype": "float32",
                "checksum": checksum_file(folder / EMBEDDINGS_NAME),
            },
        )


#: The scores of a pair, in the order of a shard's columns.
PAIR_SCORES = ("itm", "itm_logit", "cosine", "truncated")


class PairJob(Job):
    """Scored pairs: each row's image against its own text (:func:`blipviz.analysis.pairs.pair_scores`):
    ``itm`` (probability), ``itm_logit``, ``cosine`` (float64) and ``truncated`` (bool). A row
    without text, or with an unreadable image, is skipped with its reason. Within a batch, rows of
    the same image (equal bytes) share one ViT pass and one set of keys and values."""

    name = "pairs"
    needs_text = True
    columns = PAIR_SCORES

    def transport(self, values, errors):
        out = {}
        for k, name in enumerate(PAIR_SCORES):
            kind = bool if name == "truncated" else np.float64
            out[name] = np.array([(v[k] if v is not None else 0) for v in values], dtype=kind)
        return out

    def value_of(self, record):
        value = tuple(
            bool(record[name]) if name == "truncated" else float(record[name]) for name in PAIR_SCORES
        )
        self.n_truncated += value[-1]  # counted where the rows arrive (a Ray actor has its own job)
        return value

    def __init__(self, dim: int) -> None:
        super().__init__(dim)
        self.n_truncated = 0

    def compute(self, model, rows: list[Row]) -> tuple[list[Any], list[str | None]]:
        from ..analysis.pairs import pair_scores

        decoded, errors = decode_rows(model, rows)
        for i, row in enumerate(rows):
            if errors[i] is None and not (isinstance(row.text, str) and row.text.strip()):
                errors[i] = "InputError: no text to score the image against (text_column is empty)"
        good = [i for i, e in enumerate(errors) if e is None]
        values: list[Any] = [None] * len(rows)
        if not good:
            return values, errors
        images = [decoded[i] for i in good]  # equal bytes share one object (decode_rows): one ViT pass
        with warnings.catch_warnings():
            from ..net.text import TruncationWarning

            warnings.simplefilter("ignore", TruncationWarning)  # recorded per row: ``truncated``
            texts = cast("list[str]", [rows[i].text for i in good])  # each one a str (checked above)
            # the folder keeps the numbers only: no thumbnails made
            scores = pair_scores(model, images, texts, batch_size=len(images), thumbnails=False)
        truncated = scores.truncated
        for at, i in enumerate(good):
            values[i] = (
                float(scores.itm[at]),
                float(scores.itm_logit[at]),
                float(scores.cosine[at]),
                bool(truncated[at]),
            )
        self.n_truncated += int(np.sum(truncated))
        return values, errors

    def arrays(self, values, errors):
        import pyarrow as pa

        columns = {}
        for k, name in enumerate(PAIR_SCORES):
            kind = pa.bool_() if name == "truncated" else pa.float64()
            columns[name] = pa.array([None if v is None else v[k] for v in values], type=kind)
        return columns


JOBS = {job.name: job for job in (EmbeddingJob, PairJob)}
