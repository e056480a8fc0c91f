"""On-disk cache of image features and ITM logits, so that a notebook section run twice waits for
the ViT (and the multimodal encoder) once.

``load_model(..., cache_dir="features")`` (or ``model.feature_cache = FeatureCache("features")``, or
``with blipviz.store.feature_cache(model, "features"):``) makes every image-feature computation of
the net (``encode_images``, ``itm_scores``, ``cosine_scores``, ``scores``, ``rank``, ``search``)
look each image up first, and every ITM score of an (image, text) pair too.

What the cache guarantees
-------------------------
**Ownership.** A cache folder holds a marker, ``blipviz-cache.json`` (with the format version),
written when the folder is created or found empty. A non-empty folder without the marker, a marker
of another format version, or a path that is a file, is refused with
:class:`blipviz.CacheFolderError` and nothing there is read, changed or deleted. Inside its folder
the cache reads, counts (``len``) and deletes (:meth:`FeatureCache.clear`) only what it writes:
``states/<2 hex>/<64 hex>.safetensors`` files, the ``itm.sqlite3`` database (with sqlite's own
``-wal`` / ``-shm`` files), and its temporaries ``.blipviz-tmp-*`` (left behind by a killed writer;
``clear`` removes them). Other files in the folder are left alone.

**Keys.** An image entry is a SHA-256 over the cache format version; the net (name, Hub revision,
:meth:`BlipITM.fingerprint` ``("image")``, a BLAKE2b-256 of the content of the weights that produce image
features, its dtype and quantisation); the preprocessing (image size, mean, std, resampling); the
stored precision (``raw_dtype``); and the decoded pixels (mode, size, bytes), so the same picture
given as a path, bytes, PIL image or array hits the same entry and an edited file misses. ITM logits
are keyed by the image entry, the text's token ids (after normalisation and truncation), and the
net's text side: ``fingerprint("text")``, ``first_token``, dtype, quantisation and ``raw_dtype``.
Fingerprints are computed from the weights and remembered on the net object itself, never in a
table keyed by ``id()``: another net, seed, dtype (float16 and float32 nets sharing a folder) or a
quantised copy never reuses an entry. Weights edited in place after a fingerprint was taken are not
noticed: call ``model.forget_fingerprints()`` after editing them.

**Validation.** Every entry carries a BLAKE2b checksum and is checked on each read: for image
states the key, format, shape (1 + P, width), dtype, checksum and finite values; for ITM logits two
finite values of magnitude at most ``MAX_ABS_LOGIT`` and their checksum. A bad entry is never
returned: a warning is logged on the ``"blipviz"`` logger, ``stats.corrupted`` grows by one, and the
value is recomputed and stored again (when the folder is writable). An unreadable ITM database is
counted once, bypassed, and replaced by :meth:`FeatureCache.clear`.

**Read-only use.** A folder that cannot be written (permissions, a read-only file system) is used
read-only after one warning: entries are served, misses are computed and not stored. A failed write
never makes a call fail.

**Concurrency.** Image states are written to a temporary file renamed into place, so a reader never
sees half an entry; ITM logits live in an sqlite database in WAL mode (one connection per thread
and process, atomic transactions). Several processes or threads may read and write one cache at
once; everything each of them stored is served to all afterwards. sqlite's WAL mode needs a local
file system (not NFS). A database that another connection keeps write-locked (an open transaction
in another process, a database browser) is waited for at most ``_DB_LOCK_WAIT_S`` (1.5 s) once,
with one warning naming the folder; after that no call waits for it: the logits it holds are still
served, new ones are computed and not stored, until a write goes through again (then a later lock
is waited for, and reported, again).

**Provenance.** The marker records who made the folder and who wrote into it: ``provenance``,
:func:`blipviz.net.provenance.provenance` when the cache was created (the blipviz, torch and
transformers versions and the date; ``device`` and ``dtype`` are ``null`` there, since one folder
serves nets of every device and dtype), and ``written_by``, one record (``blipviz``, ``torch``,
``transformers``, ``date`` first seen) per set of versions that opened the folder writable. The
marker is rewritten only when a new set of versions opens the cache, never on every use. A cache
written by other versions opens as before and its entries are served: keys name the weights, dtype
and preprocessing, not the library versions, and scores computed by other torch or transformers
versions agree within float rounding; ``written_by`` says which versions made its entries. Each
image entry also carries the provenance of the net that computed it (with its device and dtype) in
its safetensors metadata (``provenance``, JSON). Markers of caches made before these fields existed
are accepted and gain ``written_by`` on their next writable open.

Pixel tensors given directly to the net are not cached (their preprocessing is unknown).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import math
import os
import re
import sqlite3
import struct
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import CacheFolderError, InputError, InputTypeError
from ..net.fingerprint import weights_fingerprint
from ..net.provenance import provenance
from ._atomic import TEMP_PREFIX, is_orphan, read_marker, write_atomically, write_marker

__all__ = [
    "FORMAT_VERSION",
    "MARKER_NAME",
    "MAX_ABS_LOGIT",
    "VERSION_KEYS",
    "CacheStats",
    "FeatureCache",
    "feature_cache",
    "image_content_hash",
    "weights_fingerprint",
]

logger = logging.getLogger("blipviz")

#: Version of the folder layout and of the keys; a folder of another version is refused.
FORMAT_VERSION = "2"
#: The file that marks a folder as a blipviz feature cache.
MARKER_NAME = "blipviz-cache.json"
#: The versions whose set is recorded once in the marker's ``written_by``.
VERSION_KEYS = ("blipviz", "torch", "transformers")
#: ITM logits beyond this magnitude are treated as corrupted (BLIP's are within about +-20).
MAX_ABS_LOGIT = 1e4

_MARKER_FORMAT = "blipviz feature cache"
_STATES = "states"
_DB_NAME = "itm.sqlite3"
_SHARD = re.compile(r"[0-9a-f]{2}")
_ENTRY = re.compile(r"[0-9a-f]{64}\.safetensors")
#: The longest wait, in seconds, for another connection's write lock on the ITM database; once it
#: is spent, the cache waits no more (reads, computes, does not store) until a write goes through.
_DB_LOCK_WAIT_S = 1.5
_SQL_CHUNK = 500  # text keys per SELECT (sqlite's variable limit is 999 in old builds)
_RAW_DTYPES = {torch.float32: "float32", torch.float16: "float16"}
_READ_ONLY_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS}


def _versions(record: dict[str, Any]) -> dict[str, Any]:
    """The versions and the date of a provenance record."""
    return {**{k: record.get(k) for k in VERSION_KEYS}, "date": record.get("date")}


def _versions_text(record: dict[str, Any]) -> str:
    return " ".join(f"{k} {record.get(k)}" for k in VERSION_KEYS)


def image_content_hash(rgb) -> str:
    """SHA-256 of a decoded RGB PIL image: mode, size and pixel bytes."""
    h = hashlib.sha256()
    h.update(f"{rgb.mode}|{rgb.width}x{rgb.height}|".encode())
    h.update(rgb.tobytes())
    return h.hexdigest()


@dataclass
class CacheStats:
    """Counts since the cache was built: image ``hits``, ``misses`` (computed, and stored when the
    folder is writable), ``corrupted`` entries, and ITM ``itm_hits`` / ``itm_misses`` counted per
    (image, text) pair."""

    hits: int = 0
    misses: int = 0
    corrupted: int = 0
    itm_hits: int = 0
    itm_misses: int = 0


class FeatureCache:
    """A folder of image features (one ``safetensors`` file per image) and ITM logits (an sqlite
    database), shared safely by several nets, threads and processes.

    Parameters
    ----------
    directory : str or path
        Created (with its marker) if missing or empty; otherwise it must hold the marker of this
        format version. Several nets can share one folder.
    raw_dtype : torch.float32 or torch.float16, default torch.float32
        Storage type of the raw states. ``float16`` halves the disk use (0.9 MB instead of 1.8 MB per
        ViT-B/16 image); the states come back as float32 rounded to float16 (relative error about
        5e-4), so scores move by about 1e-3: use it when disk matters more than the last digits.
        Caches of both types may share a folder; neither serves the other's entries.

    Attributes
    ----------
    stats : CacheStats
        Hits, misses and corrupted entries so far.
    writable : bool
        False when the folder cannot be written: entries are served, nothing new is stored.

    Raises
    ------
    blipviz.CacheFolderError
        ``directory`` is a file, a non-empty folder without the marker, or a cache of another
        format version.
    blipviz.InputTypeError
        ``directory`` is not a str or path (``None``, a number, ...).
    """

    def __init__(self, directory: str | os.PathLike, *, raw_dtype: torch.dtype = torch.float32) -> None:
        if not isinstance(directory, str | os.PathLike):
            raise InputTypeError(
                f"FeatureCache: directory must be a folder (a str or path), got {type(directory).__name__}"
            )
        if raw_dtype not in _RAW_DTYPES:
            raise InputError(f"raw_dtype must be torch.float32 or torch.float16, got {raw_dtype}")
        self.directory = Path(directory).expanduser()
        self.raw_dtype = raw_dtype
        self.stats = CacheStats()
        self.writable = True
        self._logged: set[str] = set()  # one-time warnings already logged
        self._local = threading.local()  # this thread's sqlite connection, with its process id
        self._db_unusable = False
        self._locked = False  # another connection holds the ITM database's write lock: wait no more
        self._open_folder()

    def __repr__(self) -> str:
        mode = "" if self.writable else ", read-only"
        return (
            f"FeatureCache({str(self.directory)!r}, raw_dtype={_RAW_DTYPES[self.raw_dtype]}{mode}, "
            f"hits={self.stats.hits}, misses={self.stats.misses}, corrupted={self.stats.corrupted})"
        )

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        del state["_local"]  # connections stay with their process
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._local = threading.local()
        self._locked = False

    # -------------------------------------------------------------------------- the folder
    def _open_folder(self) -> None:
        try:
            self._open_folder_checked()
        except CacheFolderError:
            raise
        except OSError as exc:  # a folder that cannot even be looked into (permissions)
            raise CacheFolderError(
                f"feature cache {str(self.directory)!r} cannot be read ({type(exc).__name__}: {exc}); "
                "give a folder you may read"
            ) from None

    def _open_folder_checked(self) -> None:
        d = self.directory
        if d.exists() and not d.is_dir():
            raise CacheFolderError(
                f"feature cache {str(d)!r} is a file, not a folder: give a folder path (created if missing)"
            )
        for parent in d.parents:
            if parent.exists() and not parent.is_dir():
                raise CacheFolderError(
                    f"feature cache {str(d)!r} lies under {str(parent)!r}, which is a file: give a folder "
                    "path (created if missing)"
                )
        marker = d / MARKER_NAME
        if not marker.is_file() and d.is_dir():
            foreign = sorted(
                p.name for p in d.iterdir() if p.name != MARKER_NAME and not p.name.startswith(TEMP_PREFIX)
            )
            if foreign and not marker.is_file():  # (a concurrent creator may have just written it)
                shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
                raise CacheFolderError(
                    f"{str(d)!r} is not a blipviz feature cache: it holds {len(foreign)} entries "
                    f"({shown}) and no {MARKER_NAME} marker (caches written before format version "
                    f"{FORMAT_VERSION} have none either). Nothing in it will be read or deleted; give "
                    "an empty or new folder"
                )
        if marker.is_file():
            data = self._check_marker(marker)
            self._probe_writable()
            if self.writable:
                self._record_versions(marker, data)
            return
        made = provenance()
        try:
            write_marker(
                marker,
                {
                    "note": "written by blipviz.store.FeatureCache; delete the whole folder to free it",
                    "provenance": made,
                    "written_by": [_versions(made)],
                },
                format=_MARKER_FORMAT,
                version=FORMAT_VERSION,
            )
        except OSError as exc:  # never write entries into a folder left without its marker
            self._go_read_only(exc)

    def _record_versions(self, marker: Path, data: dict[str, Any]) -> None:
        """Add this process's versions to the marker's ``written_by`` unless they are there: the
        marker is rewritten (atomically) only by a new set of versions. Two new sets opening at once
        may each write a marker without the other's record: each reads it back and adds its own again
        (three tries); the format and version fields are never touched."""
        mine = _versions(provenance())
        for _ in range(3):
            records = data.get("written_by")
            records = records if isinstance(records, list) else []
            if any(isinstance(r, dict) and all(r.get(k) == mine[k] for k in VERSION_KEYS) for r in records):
                return
            if records:
                logger.info(
                    "feature cache %s was written by %s; adding %s to its marker (its entries are served)",
                    self.directory,
                    ", ".join(_versions_text(r) for r in records if isinstance(r, dict)),
                    _versions_text(mine),
                )
            fields = {k: v for k, v in data.items() if k not in ("format", "version")}
            fields["written_by"] = [*records, mine]
            try:
                write_marker(marker, fields, format=_MARKER_FORMAT, version=FORMAT_VERSION)
                data = self._check_marker(marker)
            except (OSError, CacheFolderError) as exc:
                self._write_failed(exc, "the marker's version record")
                return

    def marker(self) -> dict[str, Any]:
        """The folder's marker, read and checked: ``format``, ``version``, ``note``, ``provenance``
        (who created the cache; absent in caches made before it was recorded) and ``written_by``
        (each set of versions that opened it writable).

        Returns
        -------
        dict
        """
        return self._check_marker(self.directory / MARKER_NAME)

    @staticmethod
    def _check_marker(marker: Path) -> dict[str, Any]:
        return read_marker(
            marker,
            format=_MARKER_FORMAT,
            version=FORMAT_VERSION,
            owner="feature cache",
            error=CacheFolderError,
            advice="Give another folder, or delete this one to start afresh (nothing in it was changed)",
        )

    def _probe_writable(self) -> None:
        try:
            fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=TEMP_PREFIX, suffix=".probe")
            os.close(fd)
            os.unlink(tmp)
        except OSError as exc:
            self._write_failed(exc, "a probe file")

    def _write_failed(self, exc: BaseException, what: str) -> None:
        """Never raise from a write: a read-only folder turns the cache read-only (one warning);
        another failure (disk full, a lock held too long) skips this write, logged once per kind."""
        read_only = isinstance(exc, PermissionError) or getattr(exc, "errno", None) in _READ_ONLY_ERRNOS
        if isinstance(exc, sqlite3.Error):
            read_only = "readonly" in str(exc) or "unable to open" in str(exc)
        if read_only:
            self._go_read_only(exc)
            return
        kind = f"{what}:{type(exc).__name__}"
        if kind not in self._logged:
            self._logged.add(kind)
            logger.warning(
                "feature cache %s: could not store %s (%s: %s); continuing without storing it",
                self.directory,
                what,
                type(exc).__name__,
                exc,
            )

    def _go_read_only(self, exc: BaseException) -> None:
        if self.writable:
            self.writable = False
            logger.warning(
                "feature cache %s is not writable (%s: %s): using it read-only; new features are "
                "computed and not stored",
                self.directory,
                type(exc).__name__,
                exc,
            )

    def _corrupted(self, what: str, why: str) -> None:
        self.stats.corrupted += 1
        logger.warning("feature cache %s: corrupted entry %s (%s); recomputing it", self.directory, what, why)

    # ------------------------------------------------------------------------------------ keys
    def _net_description(self, model) -> dict[str, str]:
        """The net's part of image keys, also written in each entry's metadata."""
        model.require_part("ImageEncoder", "caching image features")
        return {
            "model_name": str(model.name),
            "revision": str(getattr(model.config, "_commit_hash", None) or ""),
            "image_weights_sha256": model.fingerprint("image"),
            "dtype": str(model.dtype),
            "quantization": str(model.quantization or ""),
            "raw_dtype": _RAW_DTYPES[self.raw_dtype],
            "preprocessing": self._preprocessing_text(model),
        }

    def forget_model(self, model) -> None:
        """Drop the weights fingerprints remembered on ``model`` (after editing its weights in place);
        the same as ``model.forget_fingerprints()``."""
        model.forget_fingerprints()

    def _itm_net_key(self, model) -> str:
        """The net's part of ITM entries: the text side's weights and every option that changes the
        logits of given token ids and image states (first token, dtype, stored raw precision)."""
        model.require_part("MultimodalEncoder", "caching ITM logits")
        text = json.dumps(
            {
                "format": FORMAT_VERSION,
                "text_weights_sha256": model.fingerprint("text"),
                "first_token": model.first_token,
                "dtype": str(model.dtype),
                "quantization": str(model.quantization or ""),
                "raw_dtype": _RAW_DTYPES[self.raw_dtype],
            },
            sort_keys=True,
        )
        return hashlib.sha256(text.encode()).hexdigest()

    @staticmethod
    def _preprocessing_text(model) -> str:
        p = model.preprocessing
        return json.dumps(
            {"image_size": p.image_size, "mean": list(p.mean), "std": list(p.std), "resample": "bicubic-pil"}
        )

    def key(self, model, content_hash: str) -> str:
        """The entry name (64 hex digits) of an image, by :func:`image_content_hash`, for ``model``."""
        parts = {"format": FORMAT_VERSION, **self._net_description(model), "image": content_hash}
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()

    def path(self, key: str) -> Path:
        """The file of an image entry."""
        return self.directory / _STATES / key[:2] / f"{key}.safetensors"

    # ---------------------------------------------------------------------------- image states
    def load(self, model, key: str) -> torch.Tensor | None:
        """Raw states (1 + P, width) as float32, or ``None`` when missing or corrupted."""
        from safetensors import safe_open

        path = self.path(key)
        if not path.is_file():
            return None
        what = f"{path.name} (image states)"
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                raw = f.get_tensor("raw")
        except Exception as exc:
            self._corrupted(what, f"unreadable: {type(exc).__name__}: {exc}")
            return None
        expected_shape = (model.n_image_tokens, model.width)
        if meta.get("key") != key or meta.get("format") != FORMAT_VERSION:
            self._corrupted(what, "metadata does not match its key")
            return None
        if tuple(raw.shape) != expected_shape or raw.dtype != self.raw_dtype:
            self._corrupted(what, f"raw states of shape {tuple(raw.shape)} and dtype {raw.dtype}")
            return None
        if meta.get("checksum") != _checksum(raw):
            self._corrupted(what, "checksum mismatch")
            return None
        raw = raw.float()
        if not torch.isfinite(raw).all():
            self._corrupted(what, "NaN or inf values")
            return None
        return raw

    def store(self, model, key: str, raw: torch.Tensor) -> None:
        """Write the raw states (1 + P, width) of one image atomically; a failed write is logged
        (a read-only folder once), never raised."""
        from safetensors.torch import save_file

        if not self.writable:
            return
        stored = raw.detach().to(device="cpu", dtype=self.raw_dtype).contiguous()
        if not torch.isfinite(stored).all():
            return  # would be rejected on read; the net reports non-finite outputs itself
        meta = self._net_description(model)
        meta.update(key=key, format=FORMAT_VERSION, checksum=_checksum(stored))
        meta["provenance"] = json.dumps(provenance(model))  # not part of the key: not checked on read
        try:
            write_atomically(self.path(key), lambda tmp: save_file({"raw": stored}, tmp, metadata=meta))
        except Exception as exc:
            self._write_failed(exc, "image states")

    # ------------------------------------------------------------------ the net's feature store
    def image_key(self, model, rgb) -> str:
        """The entry name of a decoded RGB image (PIL) for ``model``: :meth:`key` of its content."""
        return self.key(model, image_content_hash(rgb))

    def get_states(self, model, key: str) -> torch.Tensor | None:
        """Raw states (1 + P, width) of an entry as float32, counted as a hit, or ``None``."""
        raw = self.load(model, key)
        if raw is not None:
            self.stats.hits += 1
        return raw

    def put_states(self, model, key: str, raw: torch.Tensor) -> torch.Tensor:
        """Store the states (1 + P, width) a miss computed, counted as a miss; returns them as the
        cache will serve them later (rounded to ``raw_dtype``, as float32 on the CPU), so that a first
        run and its repetition give the same numbers."""
        self.stats.misses += 1
        self.store(model, key, raw)
        return raw.detach().to(device="cpu", dtype=self.raw_dtype).float()

    # ------------------------------------------------------------------------------ ITM logits
    def _db(self) -> sqlite3.Connection | None:
        """This thread's connection to the ITM database (opened on first use; read-only when the
        folder is), or ``None`` when there is none to use."""
        local = self._local
        if self._db_unusable:
            return None
        if getattr(local, "pid", None) == os.getpid():
            return local.conn
        path = self.directory / _DB_NAME
        conn = None
        if self.writable:
            try:
                conn = sqlite3.connect(path, timeout=self._lock_wait(), isolation_level=None)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS itm (image_key TEXT NOT NULL, net_key TEXT NOT NULL, "
                    "text_key TEXT NOT NULL, logit0 REAL, logit1 REAL, checksum TEXT NOT NULL, "
                    "PRIMARY KEY (image_key, net_key, text_key)) WITHOUT ROWID"
                )
            except sqlite3.Error as exc:
                if conn is not None:
                    conn.close()
                conn = None
                if not self._db_failed(exc, "opening"):
                    return None
        if conn is None:  # read-only: sqlite needs -shm/-wal files it may not create; else immutable
            if not path.is_file():
                return None
            for mode in ("mode=ro", "immutable=1"):
                try:
                    conn = sqlite3.connect(f"{path.as_uri()}?{mode}", uri=True, timeout=self._lock_wait())
                    conn.execute("SELECT count(*) FROM itm").fetchone()
                    break
                except sqlite3.Error as exc:
                    if conn is not None:
                        conn.close()
                    conn = None
                    last = exc
            if conn is None:
                self._db_failed(last, "opening")
                return None
        local.conn, local.pid, local.wait = conn, os.getpid(), self._lock_wait()
        return conn

    def _lock_wait(self) -> float:
        """Seconds an sqlite call may wait for another connection's lock: none once one was found."""
        return 0.0 if self._locked else _DB_LOCK_WAIT_S

    def _waiting(self, conn: sqlite3.Connection) -> sqlite3.Connection:
        """``conn`` with its busy timeout set to :meth:`_lock_wait`."""
        wait = self._lock_wait()
        if getattr(self._local, "wait", None) != wait:
            conn.execute(f"PRAGMA busy_timeout = {int(wait * 1000)}")
            self._local.wait = wait
        return conn

    def _lock_found(self, exc: sqlite3.Error, doing: str) -> None:
        """Another connection holds the ITM database locked: from now on no sqlite call waits for it
        and nothing is stored (stored logits are still read), until a write goes through; one warning
        for each such stretch."""
        if self._locked:
            return
        self._locked = True
        logger.warning(
            "feature cache %s: its ITM database %s is locked by another process or connection (%s "
            "while %s, after waiting %.1f s); the ITM logits it holds are still served where it can be "
            "read, new ones are computed and not stored until the lock is released",
            self.directory,
            _DB_NAME,
            exc,
            doing,
            _DB_LOCK_WAIT_S,
        )

    def _db_failed(self, exc: sqlite3.Error, doing: str) -> bool:
        """Handle an sqlite error; True when the cache just turned read-only (the database may still
        be read)."""
        if _is_lock_error(exc):  # another connection's lock: no waiting, no storing while it lasts
            self._lock_found(exc, doing)
            return False
        if isinstance(exc, sqlite3.OperationalError):
            # a read-only folder or file: read-only from now on; disk I/O: this write is skipped
            self._write_failed(exc, "ITM logits")
            return not self.writable
        if self._db_unusable:  # another thread already counted and reported it
            return False
        self._db_unusable = True  # not a database: corrupted as a whole
        self._close_db()
        self.stats.corrupted += 1
        logger.warning(
            "feature cache %s: corrupted ITM database %s (%s while %s: %s); ITM logits are computed and "
            "not remembered until clear() replaces it",
            self.directory,
            _DB_NAME,
            type(exc).__name__,
            doing,
            exc,
        )
        return False

    def _close_db(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None and getattr(self._local, "pid", None) == os.getpid():
            conn.close()
        self._local = threading.local()

    def _read_logits(self, image_key: str, net_key: str, text_keys: list[str]) -> dict[str, tuple]:
        conn = self._db()
        if conn is None or not text_keys:
            return {}
        rows: list[tuple] = []
        try:
            self._waiting(conn)
            for start in range(0, len(text_keys), _SQL_CHUNK):
                chunk = text_keys[start : start + _SQL_CHUNK]
                rows += conn.execute(
                    "SELECT text_key, logit0, logit1, checksum FROM itm WHERE image_key = ? AND net_key = ? "
                    f"AND text_key IN ({','.join('?' * len(chunk))})",
                    (image_key, net_key, *chunk),
                ).fetchall()
        except sqlite3.Error as exc:
            self._db_failed(exc, "reading")
            return {}
        found = {}
        for text_key, a, b, checksum in rows:
            why = _logits_problem(a, b)
            if why is None and checksum != _logits_checksum(image_key, net_key, text_key, a, b):
                why = "checksum mismatch"
            if why is not None:
                self._corrupted(f"ITM entry (image {image_key[:12]}, text {text_key[:12]})", why)
                continue
            found[text_key] = (a, b)
        return found

    def _write_logits(self, rows: list[tuple]) -> None:
        if not self.writable or not rows:
            return
        conn = self._db()
        if conn is None or not self.writable:
            return
        try:
            self._waiting(conn).execute("BEGIN IMMEDIATE")
            conn.executemany("INSERT OR REPLACE INTO itm VALUES (?, ?, ?, ?, ?, ?)", rows)
            conn.execute("COMMIT")
            self._locked = False  # (no longer) locked: the next lock waits again, and is reported
        except sqlite3.Error as exc:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            self._db_failed(exc, "writing")

    def itm_logits(self, model, image_key: str, tokenized, compute) -> torch.Tensor:
        """ITM logits (n_texts, 2) of one cached image against texts, computing only the new ones.

        Parameters
        ----------
        model : BlipITM
        image_key : str
            The image's entry name (:meth:`key`).
        tokenized : blipviz.net.text.TokenizedTexts
        compute : callable
            ``compute(subset_of_tokenized) -> Tensor (n_subset, 2)`` for the texts not stored yet.

        Returns
        -------
        Tensor of shape (n_texts, 2), float32

        A text is identified by its token ids (after normalisation and truncation), so the same
        text always hits. Stored logits that fail validation are logged, counted as corrupted,
        recomputed and stored again.
        """
        net_key = self._itm_net_key(model)
        text_keys = tokenized.content_keys()
        first: dict[str, int] = {}  # each distinct text, by its first position
        for i, k in enumerate(text_keys):
            first.setdefault(k, i)
        found = self._read_logits(image_key, net_key, list(first))
        n_hits = sum(k in found for k in text_keys)
        self.stats.itm_hits += n_hits
        self.stats.itm_misses += len(text_keys) - n_hits
        missing = [i for k, i in first.items() if k not in found]
        if missing:
            computed = compute(tokenized.select(missing)).detach().float().cpu()
            rows = []
            for j, i in enumerate(missing):
                a, b = (float(x) for x in computed[j])
                found[text_keys[i]] = (a, b)
                if _logits_problem(a, b) is None:
                    rows.append(
                        (
                            image_key,
                            net_key,
                            text_keys[i],
                            a,
                            b,
                            _logits_checksum(image_key, net_key, text_keys[i], a, b),
                        )
                    )
            self._write_logits(rows)
        return torch.tensor([found[k] for k in text_keys], dtype=torch.float32).reshape(-1, 2)

    # ------------------------------------------------------------------------- housekeeping
    def _entry_files(self) -> Iterator[Path]:
        states = self.directory / _STATES
        if not states.is_dir():
            return
        for shard in sorted(states.iterdir()):
            if shard.is_dir() and _SHARD.fullmatch(shard.name):
                for p in sorted(shard.iterdir()):
                    if _ENTRY.fullmatch(p.name) and p.name.startswith(shard.name):
                        yield p

    def __len__(self) -> int:
        """The number of image entries (files this cache names; nothing else in the folder counts)."""
        return sum(1 for _ in self._entry_files())

    def clear(self) -> int:
        """Delete every entry of this cache: image states, ITM logits, and the temporaries a killed
        writer left; other files in the folder stay. The folder stays a cache (marker kept).

        Returns
        -------
        int
            The number of entries removed: image entries plus ITM logits of (image, text) pairs.
            A read-only cache removes nothing (and logs why).
        """
        if not self.writable:
            logger.warning("feature cache %s is read-only: clear() removed nothing", self.directory)
            return 0
        removed = 0
        for path in list(self._entry_files()):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed += 1
        states = self.directory / _STATES
        shards = (
            [s for s in states.iterdir() if s.is_dir() and _SHARD.fullmatch(s.name)]
            if states.is_dir()
            else []
        )
        for folder in (self.directory, states, *shards):
            if folder.is_dir():
                for p in folder.iterdir():
                    if p.name.startswith(TEMP_PREFIX) and p.is_file() and is_orphan(p):
                        with contextlib.suppress(FileNotFoundError):
                            p.unlink()
        for shard in shards:
            with contextlib.suppress(OSError):  # only when empty
                shard.rmdir()
        db = self.directory / _DB_NAME
        if db.is_file() and not self._db_unusable and (conn := self._db()) is not None:
            try:
                removed += self._waiting(conn).execute("DELETE FROM itm").rowcount
            except sqlite3.Error as exc:
                self._db_failed(exc, "clearing")
        if self._db_unusable:  # a corrupted database: replace it
            self._close_db()
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    (self.directory / (_DB_NAME + suffix)).unlink()
            self._db_unusable = False
        return removed

    # ------------------------------------------------------------------------------ iteration


def _is_lock_error(exc: BaseException) -> bool:
    """Whether an sqlite error is another connection's lock (``SQLITE_BUSY`` / ``SQLITE_LOCKED``)."""
    if not isinstance(exc, sqlite3.OperationalError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)  # Python >= 3.11
    if code is not None:
        return (code & 0xFF) in (5, 6)  # SQLITE_BUSY, SQLITE_LOCKED (and their extended codes)
    return "locked" in str(exc) or "busy" in str(exc)


def _checksum(t: torch.Tensor) -> str:
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{t.dtype}{tuple(t.shape)}".encode())
    # numpy's stubs declare ndarray.__buffer__ only for Python >= 3.12; it is a buffer on every version
    h.update(t.contiguous().reshape(-1).view(torch.uint8).numpy())  # type: ignore[arg-type]
    return h.hexdigest()


def _logits_checksum(image_key: str, net_key: str, text_key: str, a: float, b: float) -> str:
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{image_key}|{net_key}|{text_key}|".encode())
    h.update(struct.pack("<2d", a, b))
    return h.hexdigest()


def _logits_problem(a: Any, b: Any) -> str | None:
    """Why two stored ITM logits are unusable, or ``None`` (sqlite stores NaN as NULL)."""
    if a is None or b is None:
        return f"logits ({a!r}, {b!r}) are NaN or missing"
    if type(a) is not float or type(b) is not float:
        return f"logits ({a!r}, {b!r}) are not two numbers"
    if not (math.isfinite(a) and math.isfinite(b)):
        return f"logits ({a!r}, {b!r}) are not finite"
    if max(abs(a), abs(b)) > MAX_ABS_LOGIT:
        return f"logits ({a!r}, {b!r}) exceed {MAX_ABS_LOGIT:g} in magnitude"
    return None


@contextlib.contextmanager
def feature_cache(
    model, directory: str | os.PathLike | FeatureCache, **options: Any
) -> Iterator[FeatureCache]:
    """Use an on-disk feature cache for ``model`` inside the block.

    Parameters
    ----------
    model : BlipITM
    directory : str, path or FeatureCache
    **options
        Passed to :class:`FeatureCache` (``raw_dtype``).

    Yields
    ------
    FeatureCache
    """
    cache = directory if isinstance(directory, FeatureCache) else FeatureCache(directory, **options)
    previous = model.feature_cache
    model.feature_cache = cache
    try:
        yield cache
    finally:
        model.feature_cache = previous
