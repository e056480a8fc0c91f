"""Tables that render styled in notebooks: the ranking of descriptions of an image.

:meth:`blipviz.BlipITM.rank` returns a :class:`Ranking`, a plain ``pandas.DataFrame`` in every
respect except that Jupyter shows it through :func:`style_ranking`: the ITM probability and the
cosine similarity side by side, each with a bar (or a colour gradient) so the two orders can be
compared at a glance. Frames derived from it (``.head()``, ``.sort_values()``, ...) are ordinary
DataFrames; call :func:`style_ranking` on them to style them again.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from .errors import InputError

__all__ = ["Ranking", "ranking", "style_ranking"]

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


def ranking(
    texts: Sequence[str],
    itm: Sequence[float],
    cosine: Sequence[float],
    *,
    by: str = "itm",
    truncated_by: Sequence[str | None] | None = None,
) -> Ranking:
    """The ranking table of one image's descriptions from its two rows of scores.

    Parameters
    ----------
    texts : sequence of str
    itm, cosine : sequence of float, each of length len(texts)
    by : {"itm", "cosine"}, default "itm"
        Score the rows are sorted by (descending; ties keep the texts' order).
    truncated_by : sequence of {"tokens", "words", None}, optional
        Per text, whether it was cut before scoring (see :class:`blipviz.text.TokenizedTexts`).

    Returns
    -------
    Ranking
        Columns ``text``, ``itm``, ``cosine``, ``itm_rank``, ``cosine_rank`` (1 = best); index
        ``rank`` 1..n. ``.truncated`` says which texts were cut.
    """
    texts = list(texts)
    frame = pd.DataFrame({"text": texts, "itm": itm, "cosine": cosine})
    frame["itm_rank"] = frame["itm"].rank(ascending=False, method="first").astype(int)
    frame["cosine_rank"] = frame["cosine"].rank(ascending=False, method="first").astype(int)
    frame = frame.sort_values(by, ascending=False, kind="stable", ignore_index=True)
    frame.index = pd.RangeIndex(1, len(frame) + 1, name="rank")
    table = Ranking(frame)
    reasons = [None] * len(texts) if truncated_by is None else list(truncated_by)
    if len(reasons) != len(texts):
        raise InputError(f"got {len(reasons)} truncation flags for {len(texts)} texts")
    table.attrs["truncated_by"] = {t: r for t, r in zip(texts, reasons, strict=True) if r is not None}
    return table


class Ranking(pd.DataFrame):
    """A ranking of texts for one image: a ``pandas.DataFrame`` that notebooks show styled.

    Columns ``text``, ``itm``, ``cosine``, ``itm_rank``, ``cosine_rank``; index ``rank`` (1..n). Its
    HTML form is ``style_ranking(self)``: bars of the ITM probability and of the cosine similarity
    side by side, and a caption naming the texts that were cut. Every DataFrame operation works;
    derived frames are plain DataFrames. ``attrs["truncated_by"]`` maps each text that was cut to
    ``"tokens"`` or ``"words"``.
    """

    @property
    def _constructor(self):
        return pd.DataFrame

    @property
    def truncated(self) -> pd.Series:
        """Per row, whether its text was cut (by words or by tokens) before it was scored."""
        cut = self.attrs.get("truncated_by", {})
        return pd.Series([t in cut for t in self["text"]], index=self.index, name="truncated", dtype=bool)

    def _caption(self) -> str | None:
        cut = self.attrs.get("truncated_by", {})
        if not cut:
            return None
        n = len(cut)
        return f"{n} {'text was' if n == 1 else 'texts were'} cut before scoring: " + "; ".join(
            f"{text[:40]!r} (by {reason})" for text, reason in list(cut.items())[:5]
        )

    def style_(self, **kwargs):
        """The styled table, :func:`style_ranking` of this frame (same options)."""
        return style_ranking(self, **kwargs)

    def _repr_html_(self) -> str | None:
        try:
            return style_ranking(pd.DataFrame(self), caption=self._caption()).to_html()
        except ImportError:  # jinja2 missing: pandas' plain table
            return pd.DataFrame(self)._repr_html_()
