"""Tables that render styled in notebooks: the ranking of descriptions of an image.

:meth:`blipviz.BlipITM.rank` returns a :class:`blipviz.Ranking`, a plain ``pandas.DataFrame`` in every
respect except that Jupyter shows it through :func:`style_ranking`: the ITM probability and the
cosine similarity side by side, each with a bar (or a colour gradient) so the two orders can be
compared at a glance. Frames derived from it (``.head()``, ``.sort_values()``, ...) are ordinary
DataFrames; call :func:`style_ranking` on them to style them again.

How a bar reads. Each score cell holds its number, right-aligned, and beside it (never under it) a
track of fixed width: the scale of the column. The bar fills the track from its left end up to the
value, so a higher score always has a longer bar, whatever its sign. A dark line marks 0 on the
track; the part of a bar beyond 0 has the column's colour, the part below 0 a pale grey, so the
sign shows at a glance. ITM probabilities use the fixed scale [0, 1]. Cosines (and any other column)
use 0 to the highest value when every value is positive; with negative values the track starts
below the lowest value (by 15 % of the values' span, so the lowest still has a visible bar) and
ends at the highest value or at 0, whichever is higher. The caption states each column's scale.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..errors import InputError
from .rules import NO_MATHJAX

__all__ = ["RANKING_HEADERS", "bar_scale", "ranking_caption", "style_ranking"]

#: Column headers of the styled ranking table.
RANKING_HEADERS = {
    "text": "description",
    "itm": "ITM probability",
    "cosine": "cosine",
    "itm_rank": "ITM rank",
    "cosine_rank": "cosine rank",
}
_FIXED_SCALES = {"itm": (0.0, 1.0)}
_COLORS = {"itm": "#4a90c8", "cosine": "#f07f2d"}
_DEFAULT_COLOR = "#6a9f58"
_NEGATIVE_COLOR = "#c9ced6"  # the part of a bar below 0
_TRACK_COLOR = "#eef0f3"
_ZERO_COLOR = "#333333"
_TRACK_EM = 7.0  # width of a bar's track
_MARGIN = 0.15  # with negative values, the track starts this share of the values' span below the lowest


def bar_scale(column: str, values: Sequence[float]) -> tuple[float, float]:
    """The (low, high) ends of a column's bar track (see the module docstring).

    Parameters
    ----------
    column : str
        ``"itm"`` has the fixed scale (0, 1).
    values : sequence of float
        The column's values; NaN and inf are ignored.

    Returns
    -------
    (float, float)
        ``low < high``; ``low <= 0 <= high`` (the track always shows 0).
    """
    if column in _FIXED_SCALES:
        return _FIXED_SCALES[column]
    arr = np.asarray(values, dtype=np.float64)
    arr = arr[np.isfinite(arr)]
    if arr.size == 0:
        return 0.0, 1.0
    low, high = float(arr.min()), float(arr.max())
    top = max(0.0, high)
    bottom = 0.0 if low >= 0 else low - _MARGIN * (top - low)
    if top <= bottom:  # every value is 0
        return 0.0, 1.0
    return bottom, top


def _bar_css(value: float, low: float, high: float, color: str) -> str:
    """CSS of one score cell: the number on the left, the bar's track on the right (see module)."""
    zero = 100.0 * (0.0 - low) / (high - low)
    layers = [
        # the zero line, 2 px wide
        f"linear-gradient(90deg, transparent calc({zero:.2f}% - 1px), {_ZERO_COLOR} calc({zero:.2f}% - 1px), "
        f"{_ZERO_COLOR} calc({zero:.2f}% + 1px), transparent calc({zero:.2f}% + 1px))",
    ]
    if np.isfinite(value):
        end = float(np.clip(100.0 * (value - low) / (high - low), 0.0, 100.0))
        below = min(end, zero)  # the part of the bar below 0
        layers.append(
            f"linear-gradient(90deg, {_NEGATIVE_COLOR} 0%, {_NEGATIVE_COLOR} {below:.2f}%, "
            f"{color} {below:.2f}%, {color} {end:.2f}%, transparent {end:.2f}%)"
        )
    layers.append(f"linear-gradient({_TRACK_COLOR}, {_TRACK_COLOR})")
    return (
        f"background-image: {', '.join(layers)}; "
        f"background-size: {_TRACK_EM}em 1.1em; "
        "background-position: right 0.9em center; "
        "background-repeat: no-repeat; "
        f"padding-right: {_TRACK_EM + 1.4}em; "
        "padding-left: 1.2em; "
        "text-align: right; "
        "white-space: nowrap; "
        "font-variant-numeric: tabular-nums"
    )


def _number(x: float) -> str:
    return f"{x:.2f}".replace("-", "\N{MINUS SIGN}")


def ranking_caption(
    *,
    image_label: str | None = None,
    model_name: str | None = None,
    sorted_by: str | None = "itm",
    scales: dict[str, tuple[float, float]] | None = None,
    truncated_by: dict[str, str] | None = None,
) -> str:
    """The caption of a styled ranking table, as HTML (its parts escaped).

    ``Descriptions of 'astronaut' ranked by ITM probability. Net: Salesforce/blip-itm-base-coco``,
    then a smaller line with the bars' scales and the texts that were cut.
    """
    what = "Descriptions"
    if image_label is not None:
        what += f" of \N{LEFT SINGLE QUOTATION MARK}{image_label}\N{RIGHT SINGLE QUOTATION MARK}"
    head = what + (f" ranked by {RANKING_HEADERS.get(sorted_by, sorted_by)}" if sorted_by else "")
    if model_name:
        head += f". Net: {model_name}"
    notes = []
    if scales:
        spans = [
            f"{RANKING_HEADERS.get(c, c)} on [{_number(lo)}, {_number(hi)}]" for c, (lo, hi) in scales.items()
        ]
        notes.append("Bars: " + "; ".join(spans) + "; the dark line marks 0.")
    if truncated_by:
        n = len(truncated_by)
        shown = "; ".join(f"{t[:40]!r} (by {r})" for t, r in list(truncated_by.items())[:5])
        notes.append(f"{n} {'text was' if n == 1 else 'texts were'} cut before scoring: {shown}")
    text = f"<b>{html.escape(head)}</b>"
    if notes:
        text += "<br><small>" + html.escape(" ".join(notes)) + "</small>"
    return text


def style_ranking(
    frame: pd.DataFrame,
    *,
    style: str = "bar",
    columns: Sequence[str] | None = None,
    cmap: str = "viridis",
    precision: int = 3,
    caption: str | None = None,
    image_label: str | None = None,
    model_name: str | None = None,
):
    """Style a ranking table: a bar or a colour gradient in each score column, human headers, and a
    caption naming the image and the net.

    Parameters
    ----------
    frame : DataFrame
        A table from :meth:`blipviz.BlipITM.rank` (columns ``text``, ``itm``, ``cosine``,
        ``itm_rank``, ``cosine_rank``), or any frame with numeric score columns.
    style : {"bar", "gradient"}, default "bar"
        Bars beside the numbers (a higher value always has a longer bar; a line marks 0; see the
        module docstring for the scales), or background colours on the same scales.
    columns : sequence of str, optional
        Score columns to style; default: ``itm`` and ``cosine`` where present.
    cmap : str, default "viridis"
        Colormap of the gradient style.
    precision : int, default 3
        Decimals shown for floats.
    caption : str, optional
        Replaces the default caption (treated as HTML).
    image_label, model_name : str, optional
        Named in the default caption; default: ``frame.attrs["image_label"]`` and
        ``frame.attrs["model_name"]`` (set by :meth:`blipviz.BlipITM.rank`).

    Returns
    -------
    pandas.io.formats.style.Styler
        Its data is ``frame`` unchanged; headers are relabelled (:data:`RANKING_HEADERS`).
    """
    if style not in ("bar", "gradient"):
        raise InputError(f"unknown style {style!r}; allowed values: 'bar', 'gradient'")
    if columns is None:
        columns = [c for c in ("itm", "cosine") if c in frame.columns]
    columns = list(columns)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InputError(f"columns {missing} are not in the table (it has {list(frame.columns)})")
    not_numeric = [c for c in columns if not pd.api.types.is_numeric_dtype(frame[c])]
    if not_numeric:
        raise InputError(f"columns {not_numeric} are not numeric: only score columns can have bars")
    styler = frame.style.format(precision=precision, escape="html")
    scales = {c: bar_scale(c, frame[c].to_numpy(dtype=np.float64)) for c in columns}
    for column in columns:
        low, high = scales[column]
        if style == "bar":
            color = _COLORS.get(column, _DEFAULT_COLOR)
            styler = styler.apply(
                lambda s, lo=low, hi=high, c=color: [_bar_css(float(v), lo, hi, c) for v in s],
                subset=[column],
                axis=0,
            )
        else:
            styler = styler.background_gradient(subset=[column], cmap=cmap, vmin=low, vmax=high)
    styler = styler.format_index(lambda c: RANKING_HEADERS.get(c, c), axis=1)
    table_styles = [
        {"selector": "caption", "props": "caption-side: top; text-align: left; padding-bottom: 0.4em;"},
        {"selector": "th.col_heading", "props": "text-align: center; padding: 0 0.8em;"},
    ]
    if "text" in frame.columns:
        styler = styler.set_properties(subset=["text"], **{"text-align": "left"})
        position = list(frame.columns).index("text")
        table_styles.append({"selector": f"th.col_heading.col{position}", "props": "text-align: left;"})
    ranks = [c for c in frame.columns if str(c).endswith("_rank")]
    if ranks:
        styler = styler.set_properties(subset=ranks, **{"text-align": "center", "padding": "0 0.8em"})
    styler = styler.set_table_styles(table_styles)
    # texts are data: Jupyter's MathJax typesets "$...$" in HTML outputs ("costs $5 and $10")
    styler = styler.set_table_attributes(f'class="{NO_MATHJAX}"')
    if caption is None:
        caption = ranking_caption(
            image_label=image_label if image_label is not None else frame.attrs.get("image_label"),
            model_name=model_name if model_name is not None else frame.attrs.get("model_name"),
            sorted_by=frame.attrs.get("sorted_by", "itm" if "itm_rank" in frame.columns else None),
            scales=scales if style == "bar" else None,
            truncated_by=frame.attrs.get("truncated_by"),
        )
    if caption:
        styler = styler.set_caption(caption)
    return styler
