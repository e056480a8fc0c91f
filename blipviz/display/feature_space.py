"""The 2-D map of image and text embeddings, drawn from computed coordinates.

:func:`blipviz.feature_space_plot` computes the map (:mod:`blipviz.analysis.feature_space`) and
draws it here; no net runs in this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from .plotting import add_thumbnail, new_axes, shorten

__all__ = ["FeatureSpaceDisplay"]


def _palette(categories: Sequence[str]) -> dict[str, tuple[float, ...]]:
    import matplotlib as mpl

    n = len(categories)
    if n <= 10:
        colors = [mpl.colormaps["tab10"](i) for i in range(n)]
    elif n <= 20:
        colors = [mpl.colormaps["tab20"](i) for i in range(n)]
    else:
        colors = [mpl.colormaps["turbo"](v) for v in np.linspace(0.05, 0.95, n)]
    return dict(zip(categories, colors, strict=True))


# -------------------------------------------------------------------------------------- display
class FeatureSpaceDisplay:
    """A 2-D map of image and text embeddings.

    Build it with :func:`blipviz.feature_space_plot` (computes and draws) or
    :func:`blipviz.analysis.feature_space.feature_space_map` (computes only), then ``.plot(ax=None, ...)``.

    Parameters
    ----------
    coords : DataFrame
        One row per item: ``x``, ``y``, ``kind`` ("image", "text" or "point"), ``label`` (the
        colour group) and ``name`` (file name or text).
    thumbnails : list of PIL.Image.Image or None, optional
        Per item (None for texts and points).
    method : str
    random_state : int or None

    Attributes
    ----------
    coords_ : DataFrame
    scatter_ : matplotlib.collections.PathCollection
        All points; ``scatter_.get_offsets()`` equals ``coords_[["x", "y"]]``.
    thumbnails_ : list of matplotlib.offsetbox.AnnotationBbox
        The image thumbnails drawn (at most ``max_thumbnails``).
    texts_ : list of matplotlib.text.Annotation
        The text callouts drawn (at most ``max_texts``).
    colors_ : dict
        Label -> RGBA colour.
    legend_ : matplotlib.legend.Legend or None
    ax_ : matplotlib.axes.Axes
    figure_ : matplotlib.figure.Figure
    """

    def __init__(
        self,
        coords: pd.DataFrame,
        thumbnails: Sequence[Any] | None = None,
        *,
        method: str = "",
        random_state: int | None = 37,
    ) -> None:
        self.coords_ = coords
        self.thumbnails = list(thumbnails) if thumbnails is not None else [None] * len(coords)
        self.method = method
        self.random_state = random_state

    def plot(
        self,
        ax=None,
        *,
        max_thumbnails: int = 100,
        max_texts: int = 40,
        thumbnail_size: float = 28.0,
        marker_size: float | None = None,
        max_text_chars: int = 32,
        legend: bool | None = None,
        title: str | None = None,
    ) -> FeatureSpaceDisplay:
        """Draw the map: every item as a point coloured by label, images as thumbnails, texts as
        callout labels.

        Parameters
        ----------
        ax : matplotlib Axes, optional
        max_thumbnails : int, default 100
            At most this many thumbnails (a random subset for a fixed ``random_state``); the points
            of all images are still drawn.
        max_texts : int, default 40
            At most this many text callouts.
        thumbnail_size : float, default 28
            Longest side of a thumbnail, in points.
        marker_size : float, optional
            Point area; default shrinks from 40 to 4 as the number of items grows.
        max_text_chars : int, default 32
            Callouts longer than this are shortened.
        legend : bool, optional
            Default: when there are 2 to 20 labels.
        title : str, optional

        Returns
        -------
        FeatureSpaceDisplay
        """
        c = self.coords_
        n = len(c)
        fig, ax = new_axes((7.0, 6.0), ax)
        categories = list(dict.fromkeys(c["label"]))
        self.colors_ = _palette(categories)
        colors = [self.colors_[v] for v in c["label"]]
        size = marker_size if marker_size is not None else float(np.clip(400.0 / max(n, 1), 4.0, 40.0))
        self.scatter_ = ax.scatter(c["x"], c["y"], c=colors, s=size, linewidths=0, zorder=2)
        rng = np.random.RandomState(self.random_state)

        def pick(index: np.ndarray, limit: int) -> np.ndarray:
            if len(index) <= limit:
                return index
            return np.sort(rng.choice(index, size=limit, replace=False))

        self.thumbnails_ = []
        with_thumbs = np.array([i for i in range(n) if self.thumbnails[i] is not None], dtype=int)
        for i in pick(with_thumbs, max_thumbnails):
            self.thumbnails_.append(
                add_thumbnail(
                    ax,
                    self.thumbnails[i],
                    (c["x"].iloc[i], c["y"].iloc[i]),
                    size_pt=thumbnail_size,
                    frameon=True,
                    pad=0.15,
                    bboxprops=dict(edgecolor=colors[i], linewidth=1.5),
                    zorder=3,
                )
            )
        self.texts_ = []
        text_rows = np.flatnonzero((c["kind"] == "text").to_numpy())
        for k, i in enumerate(pick(text_rows, max_texts)):
            dx, dy = [(12, 10), (-12, 10), (12, -10), (-12, -10)][k % 4]
            self.texts_.append(
                ax.annotate(
                    shorten(c["name"].iloc[i], max_text_chars),
                    (c["x"].iloc[i], c["y"].iloc[i]),
                    xytext=(dx, dy),
                    textcoords="offset points",
                    ha="left" if dx > 0 else "right",
                    fontsize=8,
                    bbox=dict(boxstyle="round,pad=0.25", facecolor="white", edgecolor=colors[i], alpha=0.9),
                    arrowprops=dict(arrowstyle="-", color=colors[i], linewidth=0.8),
                    zorder=4,
                )
            )
        self.legend_ = None
        if legend if legend is not None else 2 <= len(categories) <= 20:
            from matplotlib.lines import Line2D

            handles = [
                Line2D([], [], marker="o", linestyle="", color=self.colors_[v], label=str(v))
                for v in categories
            ]
            self.legend_ = ax.legend(handles=handles, loc="best", fontsize=8, framealpha=0.8)
        pad_x = 0.08 * (np.ptp(c["x"]) or 1.0)
        pad_y = 0.08 * (np.ptp(c["y"]) or 1.0)
        ax.set_xlim(c["x"].min() - pad_x, c["x"].max() + pad_x)
        ax.set_ylim(c["y"].min() - pad_y, c["y"].max() + pad_y)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(title if title is not None else f"{self.method.upper()} of {n} embeddings", fontsize=10)
        self.ax_ = ax
        self.figure_ = fig
        return self
