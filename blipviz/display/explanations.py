"""Deletion and insertion curves of explanation methods (:func:`blipviz.evaluate_explanations`).

The display holds computed curves only: a long DataFrame (``method``, ``pair``, ``fraction``,
``score``, ``kind``) and the AUC table; ``.plot()`` draws two panels, deletion (lower is better) and
insertion (higher is better), one line per method (the mean over pairs) with a band over pairs
(their interquartile range) and the random-order baseline dashed in grey.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .labels import palette
from .plotting import new_axes

__all__ = ["ExplanationCurvesDisplay"]

_KINDS = (
    ("deletion", "deletion: patches removed (lower is better)"),
    ("insertion", "insertion: patches added (higher is better)"),
)
_RANDOM_COLOUR = "#7f7f7f"


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
    """

    def __init__(
        self, curves: pd.DataFrame, table: pd.DataFrame, net_name: str = "", baseline: str = ""
    ) -> None:
        self.curves = curves
        self.table = table
        self.net_name = net_name
        self.baseline = baseline

    def plot(self, axes=None, *, band: bool = True):
        """Draw the two panels; returns the display with ``axes_``, ``figure_`` and ``lines_``.

        Parameters
        ----------
        axes : sequence of two Axes, optional
        band : bool, default True
            Shade the interquartile range over pairs (drawn when there are at least 2 pairs).
        """
        if axes is None:
            fig, first = new_axes((10.0, 4.2))
            fig.delaxes(first)
            axes = fig.subplots(1, 2, sharey=True)
        fig = axes[0].figure
        methods = [m for m in self.table.index if m != "random"]
        colours = dict(zip(methods, palette(len(methods)), strict=True))
        colours["random"] = _RANDOM_COLOUR
        n_pairs = int(self.curves["pair"].nunique()) if len(self.curves) else 0
        self.lines_ = {}
        for ax, (kind, label) in zip(axes, _KINDS, strict=True):
            part = self.curves[self.curves["kind"] == kind]
            for method in [*methods, "random"]:
                rows = part[part["method"] == method]
                if rows.empty:
                    continue
                grid = rows.pivot_table(index="fraction", columns="pair", values="score")
                x = grid.index.to_numpy(dtype=float)
                mean = grid.mean(axis=1).to_numpy()
                auc = float(self.table.loc[method, f"{kind}_auc"])
                style = {"linestyle": "--", "linewidth": 1.5} if method == "random" else {"linewidth": 2.0}
                (line,) = ax.plot(x, mean, color=colours[method], label=f"{method} (AUC {auc:.3f})", **style)
                self.lines_[(kind, method)] = line
                if band and grid.shape[1] >= 2:
                    low, high = np.nanpercentile(grid.to_numpy(), [25, 75], axis=1)
                    ax.fill_between(x, low, high, color=colours[method], alpha=0.1, linewidth=0)
            ax.set_title(label, fontsize=10)
            ax.set_xlabel("fraction of patches, in the map's order")
            ax.set_xlim(0, 1)
            ax.set_ylim(-0.02, 1.02)
            ax.grid(alpha=0.3)
            ax.legend(loc="best", fontsize=8, frameon=True)
        axes[0].set_ylabel("ITM match probability")
        parts = [
            p
            for p in (self.net_name, f"baseline {self.baseline}" if self.baseline else "", f"{n_pairs} pairs")
            if p
        ]
        band_note = "; band: interquartile range over pairs" if band and n_pairs >= 2 else ""
        fig.suptitle(
            f"Which map is true? Deletion and insertion curves\n{', '.join(parts)}{band_note}", fontsize=11
        )
        fig.tight_layout()
        self.axes_ = list(axes)
        self.figure_ = fig
        return self
