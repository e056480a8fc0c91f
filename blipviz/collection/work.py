"""The work both engines share: decoding a batch of rows (unreadable items recorded, never raised),
one pass of the net's input stream for the readable ones, and the progress bar in images/s."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import BlipvizError
from ..net.net import Progress
from .sources import Row, item_digest

__all__ = ["decode_rows", "embed_rows", "progress_bar"]


def _decode(model, row: Row) -> tuple[Any, str | None]:
    """The decoded RGB image of a row, or ``(None, reason)`` when it cannot be read."""
    try:
        return model.preprocessing.load(row.item, row.position), None
    except BlipvizError as exc:  # ImageLoadError, InputError, InputTypeError: the item, not the run
        return None, f"{type(exc).__name__}: {exc}"


def decode_rows(model, rows: list[Row]) -> tuple[list[Any], list[str | None]]:
    """Decode one batch of rows (errors recorded, not raised), after setting each row's ``digest``
    to what it is made from (:func:`blipviz.collection.sources.item_digest`); rows of equal bytes
    are decoded once and share one image object.

    Returns
    -------
    images : list of PIL images or None, one per row
    errors : list of str or None, one per row
    """
    decoded: list[tuple[Any, str | None]] = []
    seen: dict[str, tuple[Any, str | None]] = {}  # rows of equal bytes (captions of one image): one decode
    digests: dict[str, str | None] = {}  # rows of one path: its file read and hashed once per batch
    for row in rows:
        if isinstance(row.item, str | os.PathLike):
            path = os.fspath(row.item)
            if path not in digests:
                digests[path] = item_digest(path)
            row.digest = digests[path]
        else:
            row.digest = item_digest(row.item)
        found = seen.get(row.digest) if row.digest is not None else None
        if found is None:  # first of its bytes, or unreadable: each failure names its own row
            found = _decode(model, row)
            if row.digest is not None and found[1] is None:
                seen[row.digest] = found
        decoded.append(found)
    return [rgb for rgb, _ in decoded], [err for _, err in decoded]


def embed_rows(model, rows: list[Row]) -> tuple[np.ndarray, list[str | None]]:
    """Embed one batch of rows: decode each (errors recorded, not raised), one pass of the input stream.
    Each row's ``digest`` is set to what it was made from.

    Returns
    -------
    embeddings : ndarray of shape (n_ok, dim), float32
        L2-normalised, for the rows whose error is None, in order.
    errors : list of str or None, one per row
    """
    images, errors = decode_rows(model, rows)
    good = [rgb for rgb, err in zip(images, errors, strict=True) if err is None]
    dim = int(model.config.image_text_hidden_size)
    if not good:
        return np.zeros((0, dim), np.float32), errors
    labels = [row.id for row, err in zip(rows, errors, strict=True) if err is None]
    parts = []
    with torch.inference_mode():
        for batch in model.iter_image_states(good, len(good), False, labels):
            parts.append(F.normalize(model.image_projection(batch.states), dim=-1).cpu().numpy())
    return np.concatenate(parts).astype(np.float32, copy=False), errors


def progress_bar(show: bool | None, total: int | None, initial: int, desc: str) -> Progress:
    """A :class:`~blipviz.net.net.Progress` over a job's rows: shown by expected time by default."""
    return Progress(total, show=show, desc=desc, unit="img", initial=initial)
