"""Displays of a retrieval evaluation: recall@K curves of both directions, and the table of the
worst queries with what ranked above their true target (HTML with thumbnails in a notebook).

They hold computed data only (recall arrays, a DataFrame, thumbnails) and never run a net; build
them with :meth:`blipviz.RetrievalEvaluation.plot` and :meth:`~blipviz.RetrievalEvaluation.failures`.
"""

from __future__ import annotations

import base64
import html
import io
import itertools
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InputError
from .labels import fit_text
from .plotting import new_axes
from .rules import (
    NO_MATHJAX,
    TITLE,
    finish_axes,
    fit_title,
    font_size,
    legend_beside,
    line_cues,
    plural,
    settle_layout,
)

__all__ = ["DIRECTION_NAMES", "RecallCurveDisplay", "RetrievalFailures"]

#: How each direction is named in figures: BLIP's "text retrieval" (an image queries the texts)
#: and "image retrieval" (a text queries the images).
DIRECTION_NAMES = {
    "i2t": "image → text (TR)",
    "t2i": "text → image (IR)",
}
_MARKED_K = (1, 5, 10)


def _title(what: str, model_name: str, benchmark: str, n_images: int, n_texts: int) -> str:
    where = benchmark or "evaluation set"
    return (
        fit_text(f"{what}: {model_name or 'net'} on {where}")
        + f"\n{plural(n_images, 'image')}, {plural(n_texts, 'caption')}"
    )


class RecallCurveDisplay:
    """Recall@K against K, one curve per direction, BLIP's R@1, R@5 and R@10 marked.

    Parameters
    ----------
    curves : mapping of {"i2t", "t2i"} to ndarray of shape (max_k,)
        Recall@K in percent for K = 1 .. max_k (each direction its own length).
    model_name, benchmark : str
        For the title.
    n_images, n_texts, k_test : int
    score : str
        The score that ranked the candidates (``"itm+itc"``, ...), for the subtitle.

    Attributes
    ----------
    lines_ : dict of direction to matplotlib.lines.Line2D
    markers_ : dict of direction to matplotlib.lines.Line2D
        The R@1 / R@5 / R@10 points.
    legend_ : matplotlib.legend.Legend
    ax_ : matplotlib.axes.Axes
    figure_ : matplotlib.figure.Figure
    """

    def __init__(
        self,
        curves: Mapping[str, np.ndarray],
        *,
        model_name: str = "",
        benchmark: str = "",
        n_images: int = 0,
        n_texts: int = 0,
        k_test: int = 0,
        score: str = "itm+itc",
    ) -> None:
        unknown = sorted(set(curves) - set(DIRECTION_NAMES))
        if unknown or not curves:
            raise InputError(f"curves must be keyed by 'i2t' and/or 't2i', got {sorted(curves)}")
        self.curves = {d: np.asarray(c, dtype=np.float64) for d, c in curves.items()}
        for d, c in self.curves.items():
            if c.ndim != 1 or len(c) == 0:
                raise InputError(f"the {d} curve must be a non-empty 1-d array, got shape {c.shape}")
        self.model_name, self.benchmark = model_name, benchmark
        self.n_images, self.n_texts, self.k_test, self.score = n_images, n_texts, k_test, score

    @staticmethod
    def legend_label(direction: str, curve: np.ndarray) -> str:
        """The legend's label of a direction, two lines (the legend stands beside the Axes): its
        name, then its recall at the marked Ks the curve reaches ("R@1 97.3, R@5 99.9, R@10 100.0")."""
        values = ", ".join(f"R@{k} {curve[k - 1]:.1f}" for k in _MARKED_K if k <= len(curve))
        return f"{DIRECTION_NAMES[direction]}\n{values}"

    def plot(self, ax=None, *, log_x: bool = True, title: str | None = None) -> RecallCurveDisplay:
        """Draw the curves.

        Parameters
        ----------
        ax : matplotlib.axes.Axes, optional
            Default: a new 8 x 4.2 inch figure (constrained layout). The legend stands to the
            right of the Axes, never over the curves; in a figure of yours, constrained layout
            (``layout="constrained"``) makes room for it.
        log_x : bool, default True
            K on a log scale (K = 1 .. 256 reads best so).
        title : str, optional
            Default: "Recall@K: <net> on <benchmark>", with the counts, k_test and score below.

        Returns
        -------
        RecallCurveDisplay
            ``self``, with the attributes above set.
        """
        from matplotlib.ticker import MaxNLocator

        fig, ax = new_axes((8.0, 4.2), ax)
        # colour-blind-safe colours, and two more cues: line style and the R@K markers' shape
        cues = dict(zip(DIRECTION_NAMES, line_cues(len(DIRECTION_NAMES)), strict=True))
        styles = {"i2t": "-", "t2i": "--"}
        self.lines_, self.markers_ = {}, {}
        longest = 1
        for direction, curve in self.curves.items():
            ks = np.arange(1, len(curve) + 1)
            longest = max(longest, len(curve))
            cue = cues[direction]
            (self.lines_[direction],) = ax.plot(
                ks,
                curve,
                linestyle=styles[direction],
                color=cue["color"],
                linewidth=1.8,
                label="_nolegend_",
            )
            marked = [k for k in _MARKED_K if k <= len(curve)]
            (self.markers_[direction],) = ax.plot(
                marked,
                curve[np.array(marked) - 1],
                linestyle="none",
                marker=cue["marker"],
                color=cue["color"],
                markersize=5,
            )
        handles = [(self.lines_[d], self.markers_[d]) for d in self.curves]
        labels = [self.legend_label(d, c) for d, c in self.curves.items()]
        for direction, label in zip(self.curves, labels, strict=True):
            self.lines_[direction].set_label(label)
        self.legend_ = legend_beside(ax, handles, labels, handlelength=2.6, labelspacing=0.9)
        if log_x:
            ax.set_xscale("log")
            ax.minorticks_off()
        if log_x:
            ax.set_xlim(0.9, longest * 1.1)
        else:  # K from 1: whole numbers, none at the corner where recall's 0 is written
            ax.set_xlim(0.5, longest + 0.5)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        ax.set_ylim(0, 103)
        ax.set_xlabel("K (rank cut-off)")
        ax.set_ylabel("recall@K (% of queries)")
        ax.grid(True, alpha=0.3)
        if title is None:
            title = _title("Recall@K", self.model_name, self.benchmark, self.n_images, self.n_texts)
            title += f", k_test={self.k_test}, score {self.score}"
        ax.set_title(title, fontsize=font_size(TITLE), parse_math=False)
        if log_x:  # as many K labels as the Axes' width, once the layout has set it, holds apart
            settle_layout(fig)
            ticks = _log_ticks(longest, ax.get_position().width * fig.get_figwidth(), font_size() / 10.0)
            ax.set_xticks(ticks, [f"{k:,}" for k in ticks])
        finish_axes([ax])
        settle_layout(fig)
        if fit_title(ax):  # the legend narrows the Axes: a long title wraps to stay in the figure
            settle_layout(fig)
        self.ax_, self.figure_ = ax, fig
        return self


def _log_ticks(longest: int, axis_in: float, em: float = 1.0) -> list[int]:
    """Ticks of a log K axis from 1 to ``longest``, ``axis_in`` inches wide: the densest of the
    1-2-5, 1-5 and 1-10 steps whose labels (about 0.09 inch a character and 0.12 inch apart at
    10 pt, times ``em``: ``rcParams["font.size"] / 10``) do not touch, and ``longest`` itself,
    where the curves end, when its label fits."""
    char_in, pad_in = 0.09 * em, 0.12 * em
    span = np.log10(longest * 1.1 / 0.9)  # the axis limits plot() sets

    def apart(a: int, b: int) -> bool:
        gap = np.log10(b / a) / span * axis_in
        return bool(gap >= (len(f"{a:,}") + len(f"{b:,}")) / 2 * char_in + pad_in)

    for steps in ((1, 2, 5), (1, 5), (1,)):
        ticks = [m * 10**e for e in range(9) for m in steps if m * 10**e <= longest]
        if all(apart(a, b) for a, b in itertools.pairwise(ticks)):
            break
    if longest > ticks[-1] and apart(ticks[-1], longest):
        ticks.append(longest)
    return ticks


def _png_data_uri(image: Any, size: int) -> str:
    from PIL import Image

    thumb = image.convert("RGB") if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))
    thumb.thumbnail((size, size))
    buf = io.BytesIO()
    thumb.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


class RetrievalFailures:
    """The worst queries of one direction, their true targets and what ranked above them.

    Build it with :meth:`blipviz.RetrievalEvaluation.failures`. ``to_pandas()`` returns the data;
    in a notebook it shows as an HTML table with thumbnails (images: the query for ``"i2t"``, the
    true and the ranked-above targets for ``"t2i"``).

    Parameters
    ----------
    frame : DataFrame
        Columns :attr:`COLUMNS`, one row per query, worst first.
    direction : {"i2t", "t2i"}
    thumbnails : mapping of int to PIL.Image.Image, optional
        Thumbnails of the images the table shows, by image index.
    model_name, benchmark : str
    candidates : int
        Candidates per query (``k_test`` clipped); ranks beyond it are among the -100 fill.
    """

    #: The table's columns, in order.
    COLUMNS = (
        "query",
        "query_item",
        "rank",
        "true",
        "true_item",
        "true_score",
        "above",
        "above_items",
        "above_scores",
    )

    def __init__(
        self,
        frame: pd.DataFrame,
        *,
        direction: str,
        thumbnails: Mapping[int, Any] | None = None,
        model_name: str = "",
        benchmark: str = "",
        candidates: int = 0,
    ) -> None:
        if direction not in DIRECTION_NAMES:
            raise InputError(f"direction must be 'i2t' or 't2i', got {direction!r}")
        missing = [c for c in self.COLUMNS if c not in frame.columns]
        if missing:
            raise InputError(f"the failures table lacks the columns {missing}")
        self.frame = frame
        self.direction = direction
        self.thumbnails = dict(thumbnails) if thumbnails is not None else None
        self.model_name, self.benchmark, self.candidates = model_name, benchmark, candidates

    def __len__(self) -> int:
        return len(self.frame)

    def __repr__(self) -> str:
        return f"RetrievalFailures({self.direction!r}, {len(self)} queries, ranks {list(self.frame['rank'])})"

    def to_pandas(self) -> pd.DataFrame:
        """A copy of the table (columns :attr:`COLUMNS`)."""
        return self.frame.copy()

    # ------------------------------------------------------------------------------------- HTML
    def _image_cell(self, index: int, caption: str, size: int) -> str:
        """A thumbnail with ``caption`` below it; the caption alone when there is no thumbnail."""
        caption = html.escape(caption)
        if self.thumbnails is None or index not in self.thumbnails:
            return f"<div>{caption}</div>"
        uri = _png_data_uri(self.thumbnails[index], size)
        return (
            f'<figure style="margin:0 6px 4px 0;display:inline-block;text-align:center;vertical-align:top">'
            f'<img src="{uri}" alt="{caption}" style="max-width:{size}px;max-height:{size}px">'
            f'<figcaption style="font-size:80%">{caption}</figcaption></figure>'
        )

    @staticmethod
    def _score(score: float) -> str:
        return f'<span style="color:#666">({score:.3f})</span>'

    def to_html(self, thumbnail_size: int = 72) -> str:
        """The table as HTML: rank, the query, its true target with its score, and the items
        ranked above it with their scores, best first (images as inline PNG thumbnails, side by
        side; texts as a numbered list)."""
        query_is_image = self.direction == "i2t"
        size = thumbnail_size
        # HTML wraps: each name is kept whole up to 80 characters (not the title as a whole)
        title = f"Worst queries, {DIRECTION_NAMES[self.direction]}: {fit_text(self.model_name or 'net')}"
        title += f" on {fit_text(self.benchmark)}" if self.benchmark else ""
        head = "".join(
            f"<th>{h}</th>"
            for h in ("rank", "query", "true target (score)", "ranked above it (score), best first")
        )
        rows = []
        for r in self.frame.itertuples(index=False):
            if query_is_image:  # an image queries the captions
                query = self._image_cell(r.query, fit_text(r.query_item, 40), size)
                true = f"{html.escape(fit_text(r.true_item))} {self._score(r.true_score)}"
                items = "".join(
                    f"<li>{html.escape(fit_text(item))} {self._score(s)}</li>"
                    for item, s in zip(r.above_items, r.above_scores, strict=True)
                )
                above = f'<ol style="margin:0;padding-left:1.4em">{items}</ol>'
            else:  # a caption queries the images
                query = html.escape(fit_text(r.query_item))
                true = self._image_cell(r.true, f"{fit_text(r.true_item, 40)} ({r.true_score:.3f})", size)
                above = "".join(
                    self._image_cell(i, f"{n}. {fit_text(item, 40)} ({s:.3f})", size)
                    for n, (i, item, s) in enumerate(
                        zip(r.above, r.above_items, r.above_scores, strict=True), 1
                    )
                )
            more = r.rank - 1 - len(r.above)
            if more > 0:
                above += f'<div style="font-size:85%;color:#666">… and {more} more</div>'
            cell = '<td style="vertical-align:top;text-align:left">'
            wide = cell if query_is_image else cell.replace('left"', 'left;white-space:nowrap"')
            rows.append(f"<tr>{cell}{r.rank}</td>{cell}{query}</td>{cell}{true}</td>{wide}{above}</td></tr>")
        note = "rank 1 = first"
        if self.candidates:
            note += (
                f"; {self.candidates} candidates per query (the top by cosine) were re-scored, the"
                " others rank below them (score -100)"
            )
        return (
            f'<div class="blipviz-retrieval-failures {NO_MATHJAX}"><p><b>{html.escape(title)}</b><br>'
            f'<span style="font-size:85%">{html.escape(note)}</span></p>'
            f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
        )

    def _repr_html_(self) -> str:
        return self.to_html()
