"""Tables that render styled in notebooks: the ranking of descriptions of an image.

:meth:`blipviz.BlipITM.rank` returns a :class:`blipviz.Ranking`, a plain ``pandas.DataFrame`` in every
respect except that Jupyter shows it through :func:`style_ranking`: the ITM probability and the
cosine similarity side by side, each with a bar (or a colour gradient) so the two orders can be
compared at a glance. Frames derived from it (``.head()``, ``.sort_values()``, ...) are ordinary
DataFrames; call :func:`style_ranking` on them to style them again.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from ..errors import InputError

__all__ = ["style_ranking"]

_SCORE_RANGES = {"itm": (0.0, 1.0), "cosine": (None, None)}
_COLORS = {"itm": "#6baed6", "cosine": "#fd8d3c"}


def style_ranking(
    frame: pd.DataFrame,
    *,
    style: str = "bar",
    columns: Sequence[str] | None = None,
    cmap: str = "viridis",
    precision: int = 3,
    caption: str | None = None,
):
    """Style a ranking table: a bar or a colour gradient in each score column.

    Parameters
    ----------
    frame : DataFrame
        A table from :meth:`blipviz.BlipITM.rank` (columns ``text``, ``itm``, ``cosine``,
        ``itm_rank``, ``cosine_rank``), or any frame with numeric score columns.
    style : {"bar", "gradient"}, default "bar"
        Bars in the cells (ITM on its [0, 1] scale, cosine on the data range), or background colours.
    columns : sequence of str, optional
        Score columns to style; default: ``itm`` and ``cosine`` where present.
    cmap : str, default "viridis"
        Colormap of the gradient style.
    precision : int, default 3
        Decimals shown for floats.
    caption : str, optional

    Returns
    -------
    pandas.io.formats.style.Styler
        Its data is ``frame`` unchanged.
    """
    if style not in ("bar", "gradient"):
        raise InputError(f"unknown style {style!r}; allowed values: 'bar', 'gradient'")
    if columns is None:
        columns = [c for c in _SCORE_RANGES if c in frame.columns]
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InputError(f"columns {missing} are not in the table (it has {list(frame.columns)})")
    styler = frame.style.format(precision=precision)
    for column in columns:
        vmin, vmax = _SCORE_RANGES.get(column, (None, None))
        if style == "bar":
            styler = styler.bar(
                subset=[column],
                color=_COLORS.get(column, "#9ecae1"),
                vmin=vmin,
                vmax=vmax,
                height=70,
                width=100,
            )
        else:
            styler = styler.background_gradient(subset=[column], cmap=cmap, vmin=vmin, vmax=vmax)
    if "text" in frame.columns:
        styler = styler.set_properties(subset=["text"], **{"text-align": "left"})
    if caption:
        styler = styler.set_caption(caption)
    return styler
