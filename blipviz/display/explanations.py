"""Deletion and insertion curves of explanation methods (:func:`blipviz.evaluate_explanations`).

The display holds computed curves only: a long DataFrame (``method``, ``pair``, ``fraction``,
``score``, ``kind``) and the AUC table; ``.plot()`` draws two panels, deletion (lower is better) and
insertion (higher is better), one line per method (the mean over pairs) with the spread over pairs
(their interquartile range) and the random-order baseline dashed in black.

It follows :mod:`blipviz.display.rules`: colours that colour-blind readers tell apart (Okabe-Ito)
with a marker shape per method, one legend beside the panels (never over a curve), literal texts
at sizes from ``rcParams["font.size"]``; the spread is a shaded band for one or two series and
interquartile bars at each method's markers beyond (six overlapping bands read as one).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .rules import (
    TITLE,
    finish_axes,
    font_size,
    legend_beside,
    line_cues,
    new_figure,
    plural,
    settle_layout,
    wrap_to_width,
)

__all__ = ["ExplanationCurvesDisplay"]

_KINDS = (
    ("deletion", "deletion: patches removed\n(lower is better)"),
    ("insertion", "insertion: patches added\n(higher is better)"),
)
_RANDOM_COLOUR = "#000000"
_MAX_BANDS = 2  # more shaded bands than this blur into one: interquartile bars instead
_MARKS = 6  # about this many markers (and bars) per curve


class ExplanationCurvesDisplay:
    """Deletion and insertion curves of the ITM match probability, one line per method.

    Parameters
    ----------
    curves : DataFrame
        Columns ``method``, ``pair``, ``fraction``, ``score``, ``kind``.
    table : DataFrame
        Indexed by method, with ``deletion_auc`` and ``insertion_auc``.
    net_name : str
    baseline : str
        How patches were removed ("blur" or "mean"), for the title.

    Attributes
    ----------
    lines_ : dict of (kind, method) to matplotlib.lines.Line2D
        The mean curves; each line's label names the method and its AUC on that panel.
    spread_ : dict of (kind, method) to artist
        The interquartile band (a PolyCollection) or bars (an ErrorbarContainer) over pairs.
    legend_ : matplotlib.legend.Legend
        One legend, beside the insertion panel: each method with both AUCs.
    title_ : str
        What the figure shows (the net, the baseline, the number of pairs, the spread); the figure's
        title when the display made the figure, else left for you (``fig.suptitle(d.title_)``).
    axes_ : list of two Axes
    figure_ : matplotlib.figure.Figure
    """

    def __init__(
        self, curves: pd.DataFrame, table: pd.DataFrame, net_name: str = "", baseline: str = ""
    ) -> None:
        self.curves = curves
        self.table = table
        self.net_name = net_name
        self.baseline = baseline

    def plot(self, axes=None, *, band: bool = True):
        """Draw the two panels; returns the display with the attributes above.

        Parameters
        ----------
        axes : sequence of two Axes, optional
            Default: a new figure (constrained layout) with a title. Given Axes are drawn into and
            nothing outside them changes (no figure title, no layout change); the legend stands to
            the right of the second, and constrained layout makes room for it.
        band : bool, default True
            Show the interquartile range over pairs (when there are at least 2 pairs): a shaded
            band with one or two series, bars at each method's markers with more.
        """
        own = axes is None
        if own:
            fig = new_figure((11.0, 4.6))
            axes = fig.subplots(1, 2, sharey=True)
        fig = axes[0].figure
        methods = [m for m in self.table.index if m != "random"]
        cues = dict(zip(methods, line_cues(len(methods)), strict=True))
        cues["random"] = {"color": _RANDOM_COLOUR, "marker": None, "linestyle": "--"}
        n_pairs = int(self.curves["pair"].nunique()) if len(self.curves) else 0
        drawn = [m for m in [*methods, "random"] if (self.curves["method"] == m).any()]
        spread = band and n_pairs >= 2
        bars = spread and len(drawn) > _MAX_BANDS
        self.lines_, self.spread_ = {}, {}
        for ax, (kind, label) in zip(axes, _KINDS, strict=True):
            part = self.curves[self.curves["kind"] == kind]
            for i, method in enumerate(drawn):
                rows = part[part["method"] == method]
                if rows.empty:
                    continue
                grid = rows.pivot_table(index="fraction", columns="pair", values="score")
                x = grid.index.to_numpy(dtype=float)
                mean = grid.mean(axis=1).to_numpy()
                auc = float(self.table.loc[method, f"{kind}_auc"])
                cue = cues[method]
                step = max(1, round(len(x) / _MARKS))
                marks = list(range(i % step, len(x), step))  # methods stagger their markers
                style = {"linewidth": 1.5} if method == "random" else {"linewidth": 2.0, "markersize": 5}
                (line,) = ax.plot(
                    x,
                    mean,
                    color=cue["color"],
                    linestyle=cue["linestyle"],
                    marker=cue["marker"],
                    markevery=marks,
                    label=f"{method} (AUC {auc:.3f})",
                    zorder=3,
                    **style,
                )
                self.lines_[(kind, method)] = line
                if not spread or grid.shape[1] < 2:
                    continue
                low, high = np.nanpercentile(grid.to_numpy(), [25, 75], axis=1)
                if bars:
                    self.spread_[(kind, method)] = ax.errorbar(
                        x[marks],
                        mean[marks],
                        yerr=np.abs([mean[marks] - low[marks], high[marks] - mean[marks]]),
                        fmt="none",
                        ecolor=cue["color"],
                        elinewidth=1.0,
                        capsize=2.5,
                        zorder=2,
                    )
                else:
                    self.spread_[(kind, method)] = ax.fill_between(
                        x, low, high, color=cue["color"], alpha=0.18, linewidth=0
                    )
            ax.set_title(label, fontsize=font_size(TITLE), parse_math=False)
            ax.set_xlabel("fraction of patches, in the map's order", parse_math=False)
            ax.set_xlim(0, 1)
            ax.set_ylim(-0.02, 1.02)
            ax.grid(alpha=0.3)
        axes[0].set_ylabel("ITM match probability", parse_math=False)
        entries = [m for m in drawn if ("deletion", m) in self.lines_]
        handles = [self.lines_[("deletion", m)] for m in entries]
        labels = [
            f"{m}\nAUC deletion {self.table.loc[m, 'deletion_auc']:.3f}, "
            f"insertion {self.table.loc[m, 'insertion_auc']:.3f}"
            for m in entries
        ]
        self.legend_ = legend_beside(axes[1], handles, labels, labelspacing=0.8)
        parts = [
            p
            for p in (
                self.net_name,
                f"baseline {self.baseline}" if self.baseline else "",
                plural(n_pairs, "pair"),
            )
            if p
        ]
        spread_note = ""
        if spread:
            spread_note = f"; {'bars' if bars else 'band'}: interquartile range over pairs"
        self.title_ = f"Which map is true? Deletion and insertion curves\n{', '.join(parts)}{spread_note}"
        title = fig.suptitle(self.title_, fontsize=font_size(TITLE + 0.1)) if own else None
        finish_axes(axes, [title])
        settle_layout(fig)
        # panel titles and axis labels as wide as their panel at most (font.size 14 made them meet)
        rewrapped = [
            wrap_to_width(text, ax.get_window_extent().width)
            for ax in axes
            for text in (ax.title, ax.xaxis.label)
        ]
        if any(rewrapped):
            settle_layout(fig)
        self.axes_ = list(axes)
        self.figure_ = fig
        return self
