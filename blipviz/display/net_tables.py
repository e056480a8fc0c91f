"""Tables of counts that read at a glance: thousands separators, shapes as ``3,072 × 768``, and every
row reachable.

:func:`style_counts` styles any frame of counts (the net-information tables of
:func:`blipviz.net_information`, or one a notebook builds from them) for display only: its data stay
numbers. A long table shows every row in a scrolling box (JupyterLab and the classic notebook both
honour it); ``max_rows`` shows the first rows and says how many are hidden and where the rest are.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InputError

__all__ = ["SCROLL_ROWS", "format_count", "format_shape", "style_counts"]

#: Tables longer than this scroll inside a box of about this many rows.
SCROLL_ROWS = 25


def format_count(value: Any) -> str:
    """An integer with thousands separators (``224,000,000``); anything else as ``str``."""
    if isinstance(value, bool | np.bool_):
        return str(value)
    if isinstance(value, int | np.integer):
        return f"{int(value):,}"
    if isinstance(value, float | np.floating) and np.isfinite(value) and float(value).is_integer():
        return f"{int(value):,}"
    return str(value)


def format_shape(shape: Any) -> str:
    """A weight shape as ``3,072 × 768`` (``scalar`` for ``()``)."""
    if not isinstance(shape, tuple | list):
        return str(shape)
    return " × ".join(format_count(int(d)) for d in shape) if len(shape) else "scalar"


def style_counts(
    frame: pd.DataFrame | pd.Series,
    *,
    caption: str | None = None,
    max_rows: int | None = None,
    more: str = "",
    scroll_rows: int = SCROLL_ROWS,
    headers: Mapping[str, str] | None = None,
):
    """Style a table of counts: integers with thousands separators, shapes with ``×``.

    Parameters
    ----------
    frame : DataFrame or Series
        Integer columns (``elements``, ``arrays``, ``count``, ...) get separators; a ``shape``
        column of tuples reads ``3,072 × 768``; other columns are shown as they are.
    caption : str, optional
    max_rows : int, optional
        Show only the first ``max_rows`` rows, and say so in the caption ("10 of 472 rows shown");
        default: every row, in a box that scrolls when there are more than ``scroll_rows``.
    more : str, default ""
        Where to find the hidden rows, added to that caption (``"use info.arrays() for all"``).
    scroll_rows : int, default 25
        Height of the scrolling box, in rows.
    headers : mapping, optional
        Display names of columns (``{"quantized_elements": "int8 elements"}``); the data keep
        theirs. The index's name heads the index column, in the one header row.

    Returns
    -------
    pandas.io.formats.style.Styler
        Its data are the rows shown, numbers unchanged; the index's name is moved to the columns'
        axis (``data.columns.name``) so that it heads the index column in the one header row.
    """
    if isinstance(frame, pd.Series):
        frame = frame.to_frame()
    if not isinstance(frame, pd.DataFrame):
        raise InputError(f"style_counts takes a DataFrame or a Series, got {type(frame).__name__}")
    if max_rows is not None and (not isinstance(max_rows, int) or max_rows < 1):
        raise InputError(f"max_rows must be None or a positive int, got {max_rows!r}")
    total = len(frame)
    shown = frame if max_rows is None or total <= max_rows else frame.iloc[:max_rows]
    formats: dict[Any, Callable[[Any], str]] = {}
    for column in shown.columns:
        values = shown[column]
        if pd.api.types.is_bool_dtype(values):
            continue
        if pd.api.types.is_integer_dtype(values):
            formats[column] = format_count
        elif pd.api.types.is_float_dtype(values):
            formats[column] = lambda v: format_count(v) if float(v).is_integer() else f"{v:,.3g}"
        elif column == "shape":
            formats[column] = format_shape
    from pandas.io.formats.style import Styler

    if shown.index.nlevels == 1 and shown.columns.nlevels == 1 and shown.index.name is not None:
        # the index's name in the header row's corner (not a second header row); names aside, the
        # frame is the same (``equals`` holds)
        shown = shown.rename_axis(index=None, columns=shown.index.name)
    styler = Styler(shown, cell_ids=False).format(formats)
    if headers:
        styler = styler.relabel_index([headers.get(c, c) for c in shown.columns], axis="columns")
    # one rule per column (not one per cell: a 472-row table stays small)
    styler = styler.set_table_styles(
        {c: [{"selector": "td", "props": "text-align: right;"}] for c in formats if c != "shape"}
    ).set_table_styles(
        [
            {"selector": "th.row_heading", "props": "text-align: left;"},
            {"selector": "td, th", "props": "white-space: nowrap; padding: 0.15em 0.6em;"},
        ],
        overwrite=False,
    )
    notes = [caption] if caption else []
    if len(shown) < total:
        notes.append(f"{len(shown):,} of {total:,} rows shown" + (f": {more}" if more else ""))
    elif total > scroll_rows:
        notes.append(f"all {total:,} rows; scroll the table")
        height = f"{1.75 * (scroll_rows + 2):.1f}em"
        styler = styler.set_table_styles(
            [{"selector": "", "props": f"display: block; max-height: {height}; overflow: auto;"}],
            overwrite=False,
        ).set_sticky(axis="columns")
    if notes:
        styler = styler.set_caption(" — ".join(notes))
    return styler
