"""The on-disk format of a collection folder: a manifest, Parquet shards, and the files built from them.

A collection folder ``out`` holds

==================================  ==============================================================
``blipviz-collection.json``         the manifest (JSON): format version, the net (name, how to
                                    reload it, weights fingerprints), the preprocessing, the source,
                                    shard size, and, once complete, the count and every file's
                                    BLAKE2b checksum
``shards/shard-000000.parquet``     one shard per ``shard_size`` source positions: columns
                                    ``position`` (int64), ``id``, ``text``, ``locator`` (a path the
                                    image can be re-read from, or null), ``embedding``
                                    (``fixed_size_list<float32>[256]``, null for a skipped item) and
                                    ``error`` (null, or why the item was skipped)
``embeddings.npy``                  all embeddings of the readable items, (N, 256) float32, in
                                    position order: written once at the end from the shards, and
                                    memory-mapped by :class:`blipviz.collection.Collection`
``index-<kind>.faiss``              a FAISS index built on first search with ``index="ivf"`` /
                                    ``"hnsw"`` (the exact ``"flat"`` index is built in memory)
``states/``                         with ``keep_states=True``: a :class:`blipviz.store.FeatureCache`
                                    of the raw image states, so an ITM rerank skips the ViT
==================================  ==============================================================

Safety, the feature cache's rules: every file is written to a temporary in the same folder and
renamed into place, so a shard is either whole or absent; the manifest is rewritten the same way
after each shard. One run at a time holds an exclusive lock on ``.blipviz-lock`` (temporaries found
by a run that holds the lock were left by a killed run and are removed). A non-empty folder without
the manifest, or one whose manifest names another net or preprocessing, is refused with
:class:`CollectionFolderError` and nothing in it is changed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CollectionFolderError, InputError

__all__ = [
    "EMBEDDINGS_NAME",
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "ShardRows",
    "checksum_file",
    "folder_lock",
    "read_manifest",
    "read_shard",
    "remove_temporaries",
    "shard_path",
    "write_atomically",
    "write_manifest",
    "write_shard",
]

#: Version of the folder layout; a folder of another version is refused.
FORMAT_VERSION = "1"
MANIFEST_NAME = "blipviz-collection.json"
EMBEDDINGS_NAME = "embeddings.npy"
SHARDS_DIR = "shards"
LOCK_NAME = ".blipviz-lock"
TEMP_PREFIX = ".blipviz-tmp-"
MANIFEST_FORMAT = "blipviz collection"


@dataclass
class ShardRows:
    """The rows of one shard, in position order.

    Attributes
    ----------
    positions : ndarray of shape (n,), int64
        Positions in the source (0-based).
    ids, texts, locators, errors : list of str or None, length n
        ``errors[i]`` is None for an embedded item, else why it was skipped.
    embeddings : ndarray of shape (n_ok, dim), float32
        Embeddings of the rows whose error is None, in order.
    """

    positions: np.ndarray
    ids: list[str]
    texts: list[str | None]
    locators: list[str | None]
    errors: list[str | None]
    embeddings: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)


# ------------------------------------------------------------------------------ files, safely
def new_file_mode() -> int:
    """The mode ``open()`` gives a new file: 0o666 less the process's umask."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def write_atomically(path: Path, write: Callable[[str], None]) -> None:
    """``write(temporary_path)`` then rename into ``path``: readers see the old file or the new one,
    never half of one; a failed write leaves no temporary (a killed one does: see
    :func:`remove_temporaries`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=TEMP_PREFIX, suffix=".part")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, new_file_mode())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def remove_temporaries(folder: Path) -> int:
    """Delete the temporaries a killed run left in ``folder`` and its ``shards/``; call it only while
    holding :func:`folder_lock`. Returns how many were removed."""
    removed = 0
    for where in (folder, folder / SHARDS_DIR):
        if where.is_dir():
            for p in where.iterdir():
                if p.name.startswith(TEMP_PREFIX) and p.is_file():
                    with contextlib.suppress(FileNotFoundError):
                        p.unlink()
                        removed += 1
    return removed


@contextlib.contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on the collection folder (a second writer is refused at once)."""
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: no lock
            fcntl = None
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                raise CollectionFolderError(
                    f"collection {str(folder)!r} is being written by another run (it holds {LOCK_NAME}); "
                    "wait for it to finish, or give another folder"
                ) from None
        yield
    finally:
        os.close(fd)


def checksum_file(path: Path) -> str:
    """BLAKE2b-256 of a file's bytes (64 hex digits), read in 1 MiB blocks."""
    h = hashlib.blake2b(digest_size=32)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ----------------------------------------------------------------------------------- manifest
def read_manifest(folder: Path) -> dict[str, Any] | None:
    """The manifest of ``folder``; ``None`` for a missing or empty folder (a new collection).

    Raises
    ------
    CollectionFolderError
        ``folder`` is a file, a non-empty folder without a manifest, or a manifest that is
        unreadable or of another format version.
    """
    if folder.exists() and not folder.is_dir():
        raise CollectionFolderError(f"collection {str(folder)!r} is a file, not a folder: give a folder path")
    path = folder / MANIFEST_NAME
    if not path.is_file():
        if folder.is_dir():
            foreign = sorted(p.name for p in folder.iterdir() if p.name not in (LOCK_NAME, SHARDS_DIR))
            foreign = [n for n in foreign if not n.startswith(TEMP_PREFIX)]
            shards = folder / SHARDS_DIR
            if foreign or (shards.is_dir() and any(shards.iterdir())):
                shown = ", ".join(foreign[:3]) or SHARDS_DIR
                raise CollectionFolderError(
                    f"{str(folder)!r} is not a blipviz collection: it holds files ({shown}) and no "
                    f"{MANIFEST_NAME}. Nothing in it was changed; give an empty or new folder"
                )
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CollectionFolderError(f"collection manifest {str(path)!r} is unreadable: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
        raise CollectionFolderError(f"{str(path)!r} is not a blipviz collection manifest")
    if str(data.get("version")) != FORMAT_VERSION:
        raise CollectionFolderError(
            f"collection {str(folder)!r} has format version {data.get('version')!r}; this blipviz reads "
            f"version {FORMAT_VERSION}. Give another folder (nothing in this one was changed)"
        )
    return data


def write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    """Write the manifest atomically (format and version filled in)."""
    manifest = {"format": MANIFEST_FORMAT, "version": FORMAT_VERSION, **manifest}
    text = json.dumps(manifest, indent=1, sort_keys=False) + "\n"
    write_atomically(folder / MANIFEST_NAME, lambda tmp: Path(tmp).write_text(text))


# ------------------------------------------------------------------------------------- shards
def shard_path(folder: Path, index: int) -> Path:
    """The file of shard ``index``."""
    return folder / SHARDS_DIR / f"shard-{index:06d}.parquet"


def _schema(dim: int):
    import pyarrow as pa

    return pa.schema(
        [
            ("position", pa.int64()),
            ("id", pa.string()),
            ("text", pa.string()),
            ("locator", pa.string()),
            ("embedding", pa.list_(pa.float32(), dim)),
            ("error", pa.string()),
        ]
    )


def write_shard(folder: Path, index: int, start: int, stop: int, rows: ShardRows, dim: int) -> str:
    """Write shard ``index`` (source positions ``start`` to ``stop``) atomically; returns its checksum.

    Parameters
    ----------
    rows : ShardRows
        ``rows.embeddings`` of shape (number of rows without error, dim), float32.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    ok = np.array([e is None for e in rows.errors], dtype=bool)
    if rows.embeddings.shape != (int(ok.sum()), dim):
        raise InputError(
            f"shard {index}: {rows.embeddings.shape} embeddings for {int(ok.sum())} embedded rows"
        )
    full = np.zeros((len(rows), dim), dtype=np.float32)
    full[ok] = rows.embeddings
    values = pa.array(full.reshape(-1), type=pa.float32())
    embedding = pa.FixedSizeListArray.from_arrays(values, dim, mask=pa.array(~ok))
    meta = {"shard": index, "start": start, "stop": stop, "format": FORMAT_VERSION}
    schema = _schema(dim).with_metadata({"blipviz": json.dumps(meta)})
    table = pa.table(
        [
            pa.array(np.asarray(rows.positions, dtype=np.int64)),
            pa.array(rows.ids, type=pa.string()),
            pa.array(rows.texts, type=pa.string()),
            pa.array(rows.locators, type=pa.string()),
            embedding,
            pa.array(rows.errors, type=pa.string()),
        ],
        schema=schema,
    )
    path = shard_path(folder, index)
    write_atomically(path, lambda tmp: pq.write_table(table, tmp, compression="zstd"))
    return checksum_file(path)


def read_shard_meta(path: Path) -> dict[str, Any]:
    """The shard's own record (``shard``, ``start``, ``stop``, ``format``) from its Parquet footer."""
    import pyarrow.parquet as pq

    meta = pq.read_schema(path).metadata or {}
    return json.loads(meta[b"blipviz"])


def read_shard(path: Path, columns: list[str] | None = None):
    """A shard as a ``pyarrow.Table`` (only ``columns`` if given)."""
    import pyarrow.parquet as pq

    return pq.read_table(path, columns=columns)


def shard_embeddings(table) -> np.ndarray:
    """The embeddings of a shard table's rows without error: ndarray of shape (n_ok, dim), float32."""
    column = table.column("embedding").combine_chunks()
    ok = np.asarray(column.is_valid())
    dim = column.type.list_size
    flat = column.flatten().to_numpy(zero_copy_only=False) if len(column) else np.zeros(0, np.float32)
    # flatten() skips null entries of a FixedSizeListArray: what is left are the valid rows
    return flat.reshape(-1, dim)[: int(ok.sum())].astype(np.float32, copy=False)
