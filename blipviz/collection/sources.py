"""Where a collection's images come from: a Hugging Face dataset, a folder of image files, or a list of
paths, read one row at a time in a fixed order.

Every source is a sequence of *positions* 0, 1, 2, ...; each position has an id (unique in the
collection), an optional text, the item the image is decoded from (a path, encoded bytes, a PIL image
or an array: what :func:`blipviz.net.images.load_image` reads) and a *locator*, a path the image can
be read again from later (``None`` when there is none).

- ``datasets.Dataset`` / ``IterableDataset``: rows in the dataset's order (streamed; an Arrow
  dataset is memory-mapped). An ``Image`` column is read without decoding (``decode=False``: the
  encoded bytes, or the file path), so a corrupt picture is decoded, and refused, by blipviz per
  item instead of stopping the dataset's iterator. Ids come from ``id_column`` or are the row numbers.
- a folder: every image file below it (recursive; extensions :data:`IMAGE_EXTENSIONS`, any case), in
  sorted order of their relative paths, which are the ids.
- a list of paths: in the given order; the ids are the paths as given.

Each row is bound to what it was made from by :func:`item_digest`, a BLAKE2b-128 of the image's
bytes as read (the file, the encoded bytes, or the pixels of an image held in memory): a collection
resumed or re-read on another source with the same ids is refused row by row.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError, InputTypeError

__all__ = ["IMAGE_EXTENSIONS", "Row", "Source", "as_source", "item_digest"]

#: File extensions read from a folder (lower case; matched case-insensitively).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


@dataclass
class Row:
    """One position of a source."""

    position: int
    id: str
    text: str | None
    item: Any
    locator: str | None
    digest: str | None = None


def item_digest(item: Any) -> str | None:
    """What an item's image is made of, as 32 hex digits (BLAKE2b-128), or None when nothing can be
    read (a missing file): the bytes of a file or of encoded bytes (the same picture as a file and
    as bytes has one digest), or the mode, size and pixels of a PIL image or the dtype, shape and
    values of an array."""
    h = hashlib.blake2b(digest_size=16)
    if isinstance(item, bytes | bytearray | memoryview):
        h.update(item)
    elif isinstance(item, str | os.PathLike):
        try:
            with open(item, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
        except OSError:
            return None
    else:
        import numpy as np
        from PIL import Image

        if isinstance(item, Image.Image):
            h.update(f"pil:{item.mode}:{item.size}:".encode())
            h.update(item.tobytes())
        elif isinstance(item, np.ndarray):
            h.update(f"array:{item.dtype.str}:{item.shape}:".encode())
            h.update(np.ascontiguousarray(item).tobytes())
        else:
            return None
    return h.hexdigest()


class Source:
    """A source of images read in a fixed order (build it with :func:`as_source`).

    Attributes
    ----------
    kind : {"dataset", "iterable_dataset", "folder", "paths", "table"}
        ``"table"``: a CSV or Parquet file of rows (image path, text, ...), read into a dataset
        whose relative paths are resolved against the file's folder.
    count : int or None
        Number of positions; ``None`` for a streamed dataset of unknown length.
    description : dict
        What the manifest records (kind, columns, folder, count).
    """

    def __init__(
        self,
        kind: str,
        data: Any,
        *,
        count: int | None,
        image_column: str = "image",
        id_column: str | None = None,
        text_column: str | None = None,
        root: Path | None = None,
        file: Path | None = None,
    ) -> None:
        self.kind = kind
        self.data = data
        self.count = count
        self.image_column = image_column
        self.id_column = id_column
        self.text_column = text_column
        self.root = root
        self.file = file

    @property
    def description(self) -> dict[str, Any]:
        d: dict[str, Any] = {"kind": self.kind, "count": self.count}
        if self.kind in ("dataset", "iterable_dataset", "table"):
            d.update(image_column=self.image_column, id_column=self.id_column, text_column=self.text_column)
        if self.root is not None:
            d["root"] = str(self.root)
        if self.file is not None:
            d["file"] = str(self.file)
        return d

    @property
    def random_access(self) -> bool:
        """Whether a position can be read directly (everything but a streamed dataset)."""
        return self.kind != "iterable_dataset"

    def rows(self, start: int = 0) -> Iterator[Row]:
        """The rows from position ``start`` on, in order."""
        if self.kind in ("folder", "paths"):
            for i in range(start, len(self.data)):
                yield self.row(i)
            return
        data = self.data
        if start:
            data = data.skip(start)
        for i, record in enumerate(data, start=start):
            yield self.dataset_row(i, record)

    def row(self, position: int) -> Row:
        """The row at ``position`` (random-access sources only)."""
        if self.kind in ("folder", "paths"):
            path = self.data[position]
            if self.kind == "folder":
                assert self.root is not None  # a folder source is built with its root
                ident = Path(path).relative_to(self.root).as_posix()
            else:
                ident = os.fspath(path)
            return Row(position, ident, None, os.fspath(path), os.path.abspath(path))
        if self.kind not in ("dataset", "table"):
            raise InputError("a streamed dataset cannot be read at a position: pass a datasets.Dataset")
        return self.dataset_row(position, self.data[int(position)])

    def dataset_row(self, position: int, record: dict[str, Any]) -> Row:
        value = record[self.image_column]
        locator = None
        if isinstance(value, dict) and ("bytes" in value or "path" in value):  # an undecoded Image
            path, data = value.get("path"), value.get("bytes")
            if data is None and path:
                value = path
                locator = os.path.abspath(path) if os.path.isfile(path) else None
            else:
                value = data
        elif isinstance(value, str | os.PathLike):
            locator = os.path.abspath(value) if os.path.isfile(value) else None
        ident = str(record[self.id_column]) if self.id_column is not None else str(position)
        text = None if self.text_column is None else record[self.text_column]
        return Row(position, ident, None if text is None else str(text), value, locator)

    def ids_at(self, start: int, stop: int) -> list[str] | None:
        """The ids of positions ``start`` to ``stop`` (None for a streamed dataset)."""
        if not self.random_access:
            return None
        stop = min(stop, self.count if self.count is not None else stop)
        if self.kind in ("dataset", "table") and self.id_column is not None:
            return [str(v) for v in self.data[start:stop][self.id_column]]
        if self.kind in ("dataset", "table"):
            return [str(i) for i in range(start, stop)]
        return [self.row(i).id for i in range(start, stop)]


def _dataset_types():
    try:
        import datasets
    except ImportError:  # pragma: no cover - datasets is a dependency
        return ()
    return (datasets.Dataset, datasets.IterableDataset)


def _undecoded(data, image_column: str):
    """``data`` with its ``Image`` column left encoded (bytes or path), other features unchanged."""
    import datasets

    features = getattr(data, "features", None)
    if features is not None and isinstance(features.get(image_column), datasets.Image):
        return data.cast_column(image_column, datasets.Image(decode=False))
    return data


TABLE_EXTENSIONS = (".csv", ".parquet")


def _table_file(source: Any) -> Path | None:
    """The CSV or Parquet file ``source`` names: the file itself, or the one such file in a folder."""
    if not isinstance(source, str | os.PathLike):
        return None
    path = Path(source).expanduser()
    if path.is_file() and path.suffix.lower() in TABLE_EXTENSIONS:
        return path.resolve()
    if path.is_dir():
        tables = sorted(p for p in path.iterdir() if p.suffix.lower() in TABLE_EXTENSIONS and p.is_file())
        if len(tables) > 1:
            raise InputError(
                f"folder {str(path)!r} holds {len(tables)} tables ({', '.join(p.name for p in tables[:4])}); "
                "give the file to read"
            )
        return tables[0].resolve() if tables else None
    return None


def _table_source(file: Path, image_column: str, id_column: str | None, text_column: str | None) -> Source:
    import datasets
    import pandas as pd

    try:
        frame = pd.read_parquet(file) if file.suffix.lower() == ".parquet" else pd.read_csv(file)
    except Exception as exc:  # a malformed file: pandas' or pyarrow's own error
        raise InputError(f"table {str(file)!r} cannot be read ({type(exc).__name__}: {exc})") from None
    for what, name in (
        ("image_column", image_column),
        ("id_column", id_column),
        ("text_column", text_column),
    ):
        if name is not None and name not in frame.columns:
            raise InputError(
                f"{what}={name!r} is not a column of {str(file)!r}; it has: {list(frame.columns)}"
            )
    keep = [c for c in (image_column, id_column, text_column) if c is not None]
    frame = frame[keep].copy()
    root = file.parent

    def resolve(value: Any) -> Any:
        if isinstance(value, str) and value and not os.path.isabs(value):
            return str(root / value)
        return value

    frame[image_column] = [resolve(v) for v in frame[image_column]]
    if text_column is not None:
        frame[text_column] = [None if pd.isna(v) else str(v) for v in frame[text_column]]
    data = datasets.Dataset.from_pandas(frame, preserve_index=False)
    return Source(
        "table", data, count=len(data), image_column=image_column, id_column=id_column,
        text_column=text_column, file=file,
    )  # fmt: skip


def as_source(
    source: Any,
    *,
    image_column: str = "image",
    id_column: str | None = None,
    text_column: str | None = None,
    tables: bool = False,
) -> Source:
    """Wrap a dataset, folder or list of paths as a :class:`Source`.

    Parameters
    ----------
    tables : bool, default False
        Also read a CSV or Parquet file of rows (or a folder holding one such file) as a ``"table"``
        source: each row an image path (relative to the file's folder) and its text.

    Raises
    ------
    InputError
        A missing folder or column, a folder without image files, an empty list.
    InputTypeError
        Anything else.
    """
    if isinstance(source, _dataset_types()):
        import datasets

        columns = getattr(source, "column_names", None)
        if columns is not None:
            for what, name in (
                ("image_column", image_column),
                ("id_column", id_column),
                ("text_column", text_column),
            ):
                if name is not None and name not in columns:
                    raise InputError(f"{what}={name!r} is not a column of this dataset; it has: {columns}")
        keep = [c for c in (image_column, id_column, text_column) if c is not None]
        data = source.select_columns(keep) if columns is not None else source
        data = _undecoded(data, image_column)
        if isinstance(source, datasets.Dataset):
            return Source(
                "dataset", data, count=len(data), image_column=image_column, id_column=id_column,
                text_column=text_column,
            )  # fmt: skip
        return Source(
            "iterable_dataset", data, count=None, image_column=image_column, id_column=id_column,
            text_column=text_column,
        )  # fmt: skip
    if tables and (file := _table_file(source)) is not None:
        return _table_source(file, image_column, id_column, text_column)
    if isinstance(source, str | os.PathLike):
        root = Path(source).expanduser()
        if not root.is_dir():
            raise InputError(
                f"source {os.fspath(source)!r} is not a folder: give a folder of images, a list of paths "
                "or a datasets.Dataset"
            )
        root = root.resolve()
        files = sorted(
            (p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()),
            key=lambda p: p.relative_to(root).as_posix(),
        )
        if not files:
            raise InputError(f"folder {str(root)!r} holds no image files ({', '.join(IMAGE_EXTENSIONS)})")
        return Source("folder", files, count=len(files), root=root)
    if isinstance(source, Sequence) and not isinstance(source, bytes):
        paths = list(source)
        bad = [i for i, p in enumerate(paths) if not isinstance(p, str | os.PathLike)]
        if bad:
            raise InputTypeError(
                f"a list source must hold paths; item {bad[0]} is a {type(paths[bad[0]]).__name__} (for "
                "images in memory, build a datasets.Dataset with an Image column)"
            )
        if not paths:
            raise InputError("the list of paths is empty")
        return Source("paths", [os.fspath(p) for p in paths], count=len(paths))
    raise InputTypeError(
        "source must be a datasets.Dataset or IterableDataset, a folder, or a list of paths; got "
        f"{type(source).__name__}"
    )
