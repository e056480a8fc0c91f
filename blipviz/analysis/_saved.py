"""Results saved as one folder, so that their tables and figures can be redrawn without the net.

A saved result is a folder holding Parquet tables (the arrays, the texts, the image labels and the
thumbnails as PNG bytes) and ``blipviz-result.json``: the result's class, the format version, its
other fields and its provenance (:func:`blipviz.net.provenance.provenance`). The JSON file is
written last, each file whole or not at all, so a folder with it is complete.
"""

from __future__ import annotations

import datetime
import functools
import io
import json
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..net.provenance import provenance as current_provenance
from ..store._atomic import write_atomically

RESULT_FILE = "blipviz-result.json"
FORMAT = "blipviz result"
FORMAT_VERSION = 1


def _path(path: Any) -> Path:
    import os

    try:
        return Path(os.fspath(path)).expanduser()
    except TypeError:
        raise InputError(f"path must be a str or os.PathLike, got {type(path).__name__}") from None


def save_result(
    path: Any,
    kind: str,
    fields: Mapping[str, Any],
    tables: Mapping[str, Any],
    made_by: Mapping[str, Any] | None,
    *,
    overwrite: bool = False,
) -> Path:
    """Write ``tables`` (name -> ``pyarrow.Table``) as ``name.parquet`` and the JSON file last.

    A folder that already holds a saved result is replaced only with ``overwrite=True``; a file, or a
    non-empty folder that is not a saved result, is refused with nothing written.
    """
    import pyarrow.parquet as pq

    folder = _path(path)
    # the record first: a value JSON cannot hold stops the save before anything is written
    record = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "kind": kind,
        "provenance": dict(made_by) if made_by is not None else current_provenance(None),
        "saved": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "tables": sorted(tables),
        "fields": dict(fields),
    }
    try:
        text = json.dumps(record, indent=1, ensure_ascii=False, default=_plain)
    except (TypeError, ValueError) as error:
        raise InputError(f"cannot save this {kind}: {error}; nothing was written") from None
    if folder.exists() and not folder.is_dir():
        raise InputError(f"cannot save to {str(folder)!r}: it is a file (give a folder path)")
    if folder.is_dir() and any(folder.iterdir()):
        if not (folder / RESULT_FILE).is_file():
            raise InputError(
                f"cannot save to {str(folder)!r}: the folder is not empty and holds no saved blipviz "
                "result; nothing was written (give a new or empty folder)"
            )
        if not overwrite:
            raise InputError(
                f"{str(folder)!r} already holds a saved result; pass overwrite=True to replace it"
            )
        _remove_saved(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for name, table in tables.items():
            write_atomically(folder / f"{name}.parquet", functools.partial(pq.write_table, table))
        write_atomically(folder / RESULT_FILE, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    except OSError as error:
        raise InputError(f"cannot save to {str(folder)!r}: {error}") from None
    return folder


def _plain(value: Any) -> Any:
    """numpy scalars and arrays as Python numbers and lists, for the JSON record."""
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} {value!r} cannot be written to JSON")


def _remove_saved(folder: Path) -> None:
    """Remove what an earlier save wrote (its JSON file and the tables it names), nothing else."""
    try:
        record = json.loads((folder / RESULT_FILE).read_text(encoding="utf-8"))
        names = [f"{name}.parquet" for name in record.get("tables", [])]
    except (OSError, ValueError, AttributeError):
        names = []
    (folder / RESULT_FILE).unlink()
    for name in names:
        target = folder / name
        if target.is_file():
            target.unlink()
        elif target.is_dir():  # pragma: no cover - never written by blipviz
            shutil.rmtree(target)


def load_result(path: Any, kind: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """``(fields, tables, provenance)`` of the result saved at ``path``, checked to be a ``kind``.

    Raises
    ------
    InputError
        No such folder, not a saved blipviz result, a result of another class (the message names the
        class to load it with) or of a newer format version.
    """
    import pyarrow.parquet as pq

    folder = _path(path)
    if not folder.exists():
        raise InputError(f"cannot load {kind} from {str(folder)!r}: no such folder")
    marker = folder / RESULT_FILE
    if not marker.is_file():
        raise InputError(
            f"{str(folder)!r} is not a saved blipviz result (it has no {RESULT_FILE}); results are "
            "saved with their .save(path)"
        )
    try:
        record = json.loads(marker.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise InputError(f"{str(marker)!r} is not valid JSON ({exc})") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise InputError(f"{str(marker)!r} is not a saved blipviz result")
    if record.get("kind") != kind:
        raise InputError(
            f"{str(folder)!r} holds a saved {record.get('kind')}, not a {kind}: load it with "
            f"blipviz.{record.get('kind')}.load"
        )
    if not isinstance(record.get("version"), int) or record["version"] > FORMAT_VERSION:
        raise InputError(
            f"{str(folder)!r} was saved in result format version {record.get('version')!r}; this "
            f"blipviz reads version {FORMAT_VERSION} and older: update blipviz to load it"
        )
    tables = {}
    for name in record.get("tables", []):
        file = folder / f"{name}.parquet"
        if not file.is_file():
            raise InputError(f"saved result {str(folder)!r} is incomplete: {file.name} is missing")
        tables[name] = pq.read_table(file)
    return dict(record.get("fields", {})), tables, dict(record.get("provenance") or {})


# ------------------------------------------------------------------------------------ columns
def png_bytes(image: Any) -> bytes:
    """A thumbnail as PNG bytes (lossless; a mode PNG cannot hold is stored as RGB)."""
    from PIL import Image

    if not isinstance(image, Image.Image):
        image = Image.fromarray(np.asarray(image))
    if image.mode not in ("1", "L", "LA", "P", "RGB", "RGBA", "I;16"):
        image = image.convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def from_png(data: bytes) -> Any:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        image.load()
        return image.copy()


def thumbnails_table(thumbnails: Sequence[Any]):
    """The ``thumbnails`` table of a saved result: one PNG (lossless) per thumbnail, in order."""
    import pyarrow as pa

    return pa.table({"png": pa.array([png_bytes(t) for t in thumbnails], pa.binary())})


def saved_thumbnails(tables: Mapping[str, Any]) -> list[Any] | None:
    """The thumbnails a saved result kept (:func:`thumbnails_table`), or None when it kept none."""
    if "thumbnails" not in tables:
        return None
    return [from_png(b) for b in tables["thumbnails"].column("png").to_pylist()]


def matrix_table(values: np.ndarray, column: str = "scores"):
    """A 2-d array as a table of one list column, one row per array row (exact, dtype kept)."""
    import pyarrow as pa

    values = np.ascontiguousarray(values)
    rows, cols = values.shape
    flat = pa.array(values.reshape(-1), type=pa.from_numpy_dtype(values.dtype))
    offsets = pa.array(np.arange(rows + 1, dtype=np.int64) * cols, type=pa.int64())
    return pa.table({column: pa.LargeListArray.from_arrays(offsets, flat)})


def matrix_of(table, shape: tuple[int, int], dtype: Any, column: str = "scores") -> np.ndarray:
    """The array :func:`matrix_table` stored."""
    col = table.column(column).combine_chunks()
    flat = col.flatten().to_numpy(zero_copy_only=False)
    return np.asarray(flat, dtype=dtype).reshape(shape)
