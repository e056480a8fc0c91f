"""The on-disk format of a collection folder: a manifest, Parquet shards, and the files built from them.

A collection folder ``out`` holds

==================================  ==============================================================
``blipviz-collection.json``         the manifest (JSON): format version, the net (name, how to
                                    reload it, weights fingerprints), the preprocessing, the source,
                                    shard size, and, once complete, the count and every file's
                                    BLAKE2b checksum
``shards/shard-000000.parquet``     one shard per ``shard_size`` source positions: columns
                                    ``position`` (int64), ``id``, ``text``, ``locator`` (a path the
                                    image can be re-read from, or null), ``digest`` (BLAKE2b-128 of
                                    the image's bytes as read: the file, the encoded bytes, or the
                                    pixels of an image held in memory; null when nothing could be
                                    read), ``embedding`` (``fixed_size_list<float32>[256]``, null for
                                    a skipped item) and ``error`` (null, or why the item was skipped)
``embeddings.npy``                  all embeddings of the readable items, (N, 256) float32, in
                                    position order: written once at the end from the shards, and
                                    memory-mapped by :class:`blipviz.collection.Collection`
``index-<kind>.faiss``              a FAISS index built on first search with ``index="ivf"`` /
                                    ``"hnsw"`` (the exact ``"flat"`` index is built in memory)
``states/``                         with ``keep_states=True``: a :class:`blipviz.store.FeatureCache`
                                    of the raw image states, so an ITM rerank skips the ViT
==================================  ==============================================================

Safety:

- every file is written to a temporary in the same folder and renamed into place, so a shard is
  either whole or absent; the manifest is rewritten the same way after each shard. A temporary is
  named ``.blipviz-tmp-<uid>-XXXXXXXX.part`` with the collection's random ``uid`` (from its
  manifest), and only such names are ever removed (a killed run's leftovers, by the next run that
  holds the lock);
- one run at a time holds an exclusive lock on ``.blipviz-lock``;
- the manifest is validated against a JSON schema (:mod:`blipviz.collection.schema`) whenever it
  is read, and every file blipviz opens, replaces or deletes is one of the fixed names above,
  inside the folder (``shards/`` must not be a symbolic link);
- a file at a shard's name that the manifest does not list is replaced only when its Parquet
  footer carries this collection's ``uid`` (a shard written by a killed run); anything else in
  the folder is never touched;
- a non-empty folder without the manifest, or one whose manifest names another net, preprocessing
  or source, is refused with :class:`CollectionFolderError` and nothing in it is changed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CollectionFolderError
from ..store._atomic import TEMP_PREFIX, lock_file, read_marker, write_marker
from ..store._atomic import write_atomically as write_file_atomically

__all__ = [
    "EMBEDDINGS_NAME",
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "ROW_COLUMNS",
    "ShardRows",
    "checksum_file",
    "folder_lock",
    "inside",
    "new_uid",
    "open_finished",
    "read_manifest",
    "read_rows",
    "read_shard",
    "read_shard_meta",
    "remove_temporaries",
    "shard_path",
    "write_atomically",
    "write_manifest",
    "write_shard",
]

#: Version of the folder layout; a folder of another version is refused.
FORMAT_VERSION = "2"
MANIFEST_NAME = "blipviz-collection.json"
EMBEDDINGS_NAME = "embeddings.npy"
SHARDS_DIR = "shards"
LOCK_NAME = ".blipviz-lock"
MANIFEST_FORMAT = "blipviz collection"
#: A temporary of blipviz's own: the prefix, a collection's 32-hex uid, mkstemp's random part.
_TEMPORARY = re.compile(r"^\.blipviz-tmp-([0-9a-f]{32})-[A-Za-z0-9_]{1,16}\.part$")
_SHARD_NAME = re.compile(r"^shard-([0-9]{6})\.parquet$")


@dataclass
class ShardRows:
    """The rows of one shard, in position order.

    Attributes
    ----------
    positions : ndarray of shape (n,), int64
        Positions in the source (0-based).
    ids, texts, locators, digests, errors : list of str or None, length n
        ``errors[i]`` is None for a row that was computed, else why it was skipped; ``digests[i]``
        what the item was made from (:func:`blipviz.collection.sources.item_digest`).
    values : dict of str to pyarrow.Array, each of length n
        The job's own columns (an embedding, or a pair's scores), null where ``errors[i]`` is set.
    """

    positions: np.ndarray
    ids: list[str]
    texts: list[str | None]
    locators: list[str | None]
    digests: list[str | None]
    errors: list[str | None]
    values: dict[str, Any]

    def __len__(self) -> int:
        return len(self.ids)


def new_uid() -> str:
    """A collection's random identity (32 hex digits): in its manifest, its shards' footers and
    its temporaries' names."""
    return secrets.token_hex(16)


# ------------------------------------------------------------------------------ files, safely
def _folder_error(folder: Path, exc: OSError, doing: str) -> CollectionFolderError:
    name = exc.filename if getattr(exc, "filename", None) else folder
    return CollectionFolderError(
        f"collection {str(folder)!r}: cannot {doing} ({type(exc).__name__}: {exc.strerror or exc} on "
        f"{str(name)!r}); give a folder this process may write"
    )


def inside(folder: Path, relative: str) -> Path:
    """``folder / relative``, refused unless it stays inside ``folder`` (no ``..``, no symbolic link
    out of it): the only way a name read from a manifest becomes a path."""
    path = folder / relative
    try:
        root = folder.resolve()
        resolved = path.resolve()
    except OSError as exc:  # pragma: no cover - a loop of links
        raise CollectionFolderError(
            f"collection {str(folder)!r}: {relative!r} cannot be resolved ({exc})"
        ) from None
    if resolved != root and root not in resolved.parents:
        raise CollectionFolderError(
            f"collection {str(folder)!r}: {relative!r} leads outside the folder (to {str(resolved)!r}); "
            "blipviz reads and writes only inside a collection folder"
        )
    return path


def _shards_dir(folder: Path) -> Path:
    shards = folder / SHARDS_DIR
    if shards.is_symlink():
        raise CollectionFolderError(
            f"collection {str(folder)!r}: {SHARDS_DIR}/ is a symbolic link; blipviz writes and deletes "
            "shards only in a real folder inside the collection (nothing was changed)"
        )
    return shards


def _temporary_prefix(uid: str | None) -> str:
    return f"{TEMP_PREFIX}{uid or 'x'}-"


def write_atomically(path: Path, write: Callable[[str], None], uid: str | None = None) -> None:
    """``write(temporary_path)`` then rename into ``path``: readers see the old file or the new one,
    never half of one; a failed write leaves no temporary (a killed one leaves
    ``.blipviz-tmp-<uid>-*.part``: see :func:`remove_temporaries`; without a ``uid``, one that is
    never removed). A folder or temporary that cannot be created is a :class:`CollectionFolderError`."""
    write_file_atomically(
        path,
        write,
        prefix=_temporary_prefix(uid),
        folder_error=lambda exc: _folder_error(path.parent, exc, f"write {path.name}"),
    )


def is_temporary(name: str, uid: str | None = None) -> bool:
    """Whether ``name`` is a temporary of blipviz's own (of the collection ``uid``, if given)."""
    found = _TEMPORARY.match(name)
    return found is not None and (uid is None or found.group(1) == uid)


def remove_temporaries(folder: Path, uid: str) -> int:
    """Delete the temporaries a killed run of collection ``uid`` left in ``folder`` and its
    ``shards/``; call it only while holding :func:`folder_lock`. Nothing else is touched. Returns how
    many were removed."""
    removed = 0
    for where in (folder, _shards_dir(folder)):
        if where.is_dir():
            for p in where.iterdir():
                if is_temporary(p.name, uid) and p.is_file() and not p.is_symlink():
                    with contextlib.suppress(FileNotFoundError):
                        p.unlink()
                        removed += 1
    return removed


@contextlib.contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on the collection folder (a second writer is refused at once)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        raise _folder_error(folder, exc, "create or lock the folder") from None
    try:
        if not lock_file(fd, wait=False):
            raise CollectionFolderError(
                f"collection {str(folder)!r} is being written by another run (it holds {LOCK_NAME}); "
                "wait for it to finish, or give another folder"
            )
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
    """The manifest of ``folder``, validated (:func:`blipviz.collection.schema.validate_manifest`);
    ``None`` for a missing or empty folder (a new collection).

    Raises
    ------
    CollectionFolderError
        ``folder`` is a file, a non-empty folder without a manifest, or a manifest that is
        unreadable, damaged, or of another format version.
    """
    if folder.exists() and not folder.is_dir():
        raise CollectionFolderError(f"collection {str(folder)!r} is a file, not a folder: give a folder path")
    path = folder / MANIFEST_NAME
    if not path.is_file():
        if folder.is_dir():
            try:
                names = sorted(p.name for p in folder.iterdir())
                shards = folder / SHARDS_DIR
                inner = sorted(p.name for p in shards.iterdir()) if shards.is_dir() else []
            except OSError as exc:
                raise _folder_error(folder, exc, "list the folder") from None
            foreign = [n for n in names if n not in (LOCK_NAME, SHARDS_DIR) and not is_temporary(n)]
            foreign += [f"{SHARDS_DIR}/{n}" for n in inner if not is_temporary(n)]
            if shards.is_symlink() or (shards.exists() and not shards.is_dir()):
                foreign.append(SHARDS_DIR)
            if foreign:
                raise CollectionFolderError(
                    f"{str(folder)!r} is not a blipviz collection: it holds files ({', '.join(foreign[:3])}) "
                    f"and no {MANIFEST_NAME}. Nothing in it was changed; give an empty or new folder"
                )
        return None
    data = read_marker(
        path,
        format=MANIFEST_FORMAT,
        version=FORMAT_VERSION,
        owner="collection",
        noun="manifest",
        error=CollectionFolderError,
        advice="Give another folder (nothing in this one was changed)",
    )
    from .schema import validate_manifest

    validate_manifest(data, repr(str(path)))
    return data


def write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    """Write the manifest atomically (format and version filled in)."""
    fields = {k: v for k, v in manifest.items() if k not in ("format", "version")}
    write_marker(
        folder / MANIFEST_NAME,
        fields,
        format=MANIFEST_FORMAT,
        version=FORMAT_VERSION,
        prefix=_temporary_prefix(manifest["uid"]),
        folder_error=lambda exc: _folder_error(folder, exc, f"write {MANIFEST_NAME}"),
    )


# ------------------------------------------------------------------------------------- shards
def shard_path(folder: Path, index: int) -> Path:
    """The file of shard ``index`` (``shards/`` checked to be a real folder)."""
    return _shards_dir(folder) / f"shard-{index:06d}.parquet"


def shard_files(folder: Path) -> dict[int, Path]:
    """The files in ``shards/`` named like a shard, by index (other names are not blipviz's)."""
    shards = _shards_dir(folder)
    if not shards.is_dir():
        return {}
    found = {}
    for p in shards.iterdir():
        m = _SHARD_NAME.match(p.name)
        if m is not None:
            found[int(m.group(1))] = p
    return found


#: The columns every shard starts with; a job's own columns follow (``ShardRows.values``).
ROW_COLUMNS = ("position", "id", "text", "locator", "digest")


def write_shard(folder: Path, index: int, start: int, stop: int, rows: ShardRows, uid: str) -> str:
    """Write shard ``index`` (source positions ``start`` to ``stop``) atomically; returns its checksum.

    Parameters
    ----------
    rows : ShardRows
        The rows, with the job's columns in ``rows.values`` (written after the row columns, before
        ``error``).
    uid : str
        The collection's uid, written in the shard's footer (the shard is blipviz's own).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    meta = {"shard": index, "start": start, "stop": stop, "format": FORMAT_VERSION, "uid": uid}
    columns = {
        "position": pa.array(np.asarray(rows.positions, dtype=np.int64)),
        "id": pa.array(rows.ids, type=pa.string()),
        "text": pa.array(rows.texts, type=pa.string()),
        "locator": pa.array(rows.locators, type=pa.string()),
        "digest": pa.array(rows.digests, type=pa.string()),
        **rows.values,
        "error": pa.array(rows.errors, type=pa.string()),
    }
    table = pa.table(columns).replace_schema_metadata({"blipviz": json.dumps(meta)})
    path = shard_path(folder, index)
    write_atomically(path, lambda tmp: pq.write_table(table, tmp, compression="zstd"), uid)
    return checksum_file(path)


def read_shard_meta(path: Path) -> dict[str, Any]:
    """The shard's own record (``shard``, ``start``, ``stop``, ``format``, ``uid``) from its Parquet
    footer; ``{}`` for a file that is not a readable blipviz shard."""
    import pyarrow.parquet as pq

    try:
        meta = pq.read_schema(path).metadata or {}
        found = json.loads(meta[b"blipviz"])
    except Exception:  # not Parquet, truncated, or not ours: all mean "not a shard of this collection"
        return {}
    return found if isinstance(found, dict) else {}


def read_shard(path: Path, columns: list[str] | None = None):
    """A shard as a ``pyarrow.Table`` (only ``columns`` if given).

    Raises
    ------
    CollectionFolderError
        The file is missing, truncated or not a shard (naming it).
    """
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path, columns=columns)
    except Exception as exc:  # pyarrow's ArrowInvalid, OSError, KeyError of a missing column, ...
        raise CollectionFolderError(
            f"collection shard {str(path)!r} is unreadable ({type(exc).__name__}: {exc}); the folder "
            "was damaged after it was written: embed into a new folder, or run embed_collection on an "
            "unfinished one to write it again"
        ) from None


_JOB_DOORS = {
    "embeddings": ("collection", "embed_collection", "blipviz.Collection.open"),
    "pairs": ("pairs folder", "score_pairs", "blipviz.PairCollection.open"),
}


def open_finished(out: Any, job: str, caller: str, verify: bool) -> tuple[Path, dict[str, Any]]:
    """The folder and validated manifest of a finished folder of ``job`` (``"embeddings"``,
    ``"pairs"``); with ``verify``, every file's checksum checked.

    Raises
    ------
    InputTypeError
        ``out`` is not a str or path.
    CollectionFolderError
        Not such a folder (another job's, or none), an unfinished one, or a changed file.
    """
    from ..errors import InputTypeError

    what, maker, _ = _JOB_DOORS[job]
    if not isinstance(out, str | os.PathLike):
        raise InputTypeError(f"{caller}: out must be a {what} (a str or path), got {type(out).__name__}")
    folder = Path(out).expanduser()
    manifest = read_manifest(folder)
    if manifest is None:
        raise CollectionFolderError(f"{str(folder)!r} is not a blipviz {what} (no manifest)")
    if manifest["job"] != job:
        _, their_maker, door = _JOB_DOORS[manifest["job"]]
        raise CollectionFolderError(
            f"{str(folder)!r} holds {manifest['job']} ({their_maker}), not {job}: open it with {door}"
        )
    if manifest["state"] != "complete":
        raise CollectionFolderError(
            f"{what} {str(folder)!r} is unfinished ({len(manifest['shards'])} shards written): run {maker} "
            "with the same arguments again to finish it"
        )
    if verify:
        files = [(s["file"], s["checksum"]) for s in manifest["shards"]]
        if "embeddings" in manifest:
            files.append((manifest["embeddings"]["file"], manifest["embeddings"]["checksum"]))
        for name, expected in files:
            if checksum_file(inside(folder, name)) != expected:
                raise CollectionFolderError(
                    f"{what} {str(folder)!r}: {name} changed since it was written (checksum)"
                )
    return folder, manifest


def read_rows(folder: Path, manifest: dict[str, Any], columns: list[str]):
    """Every shard's ``columns`` in position order, as one DataFrame; each shard's row count checked
    against the manifest (a replaced file is a :class:`CollectionFolderError` naming it)."""
    import pandas as pd
    import pyarrow as pa

    tables = []
    for entry in manifest["shards"]:
        table = read_shard(inside(folder, entry["file"]), columns)
        if table.num_rows != entry["rows"]:
            raise CollectionFolderError(
                f"{str(folder)!r}: {entry['file']} holds {table.num_rows} rows, its manifest says "
                f"{entry['rows']} (the file was replaced after it was written)"
            )
        tables.append(table)
    frame = pa.concat_tables(tables).to_pandas() if tables else pd.DataFrame(columns=columns)
    return frame.reset_index(drop=True)


def shard_embeddings(table) -> np.ndarray:
    """The embeddings of a shard table's rows without error: ndarray of shape (n_ok, dim), float32."""
    column = table.column("embedding").combine_chunks()
    ok = np.asarray(column.is_valid())
    dim = column.type.list_size
    flat = column.flatten().to_numpy(zero_copy_only=False) if len(column) else np.zeros(0, np.float32)
    # flatten() skips null entries of a FixedSizeListArray: what is left are the valid rows
    return flat.reshape(-1, dim)[: int(ok.sum())].astype(np.float32, copy=False)
