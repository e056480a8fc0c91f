"""The 2-D map of image and text embeddings, drawn from computed coordinates.

:func:`blipviz.feature_space_plot` computes the map (:mod:`blipviz.analysis.feature_space`) and
draws it here; no net runs in this module.

Every thumbnail and every text callout is placed, in display pixels, by a greedy search around its
point (:func:`place_boxes`): a thumbnail sits on its point when that spot is free, else as near as
possible with a leader line; a callout sits as near its point as the boxes already placed allow.
Callouts that find no free spot inside the axes go to a column beside the axes, in the order of
their points' heights, joined to their points by leader lines; a figure made here widens to hold
that column. So no two callouts overlap, no callout covers a thumbnail, no thumbnail covers
another's centre, and everything lies inside the figure (the tests measure it). The placement holds
for the figure's size when drawn: resizing the figure afterwards moves the boxes with the data.
"""

from __future__ import annotations

import textwrap
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InputError, check_choice
from .labels import palette, wrap_text
from .plotting import add_thumbnail

__all__ = ["LAYOUTS", "FeatureSpaceDisplay", "place_boxes", "thumbnail_points"]

#: How images and texts share the map (see :func:`blipviz.feature_space_plot`).
LAYOUTS = ("joint", "per-modality", "side-by-side")

_GAP_PX = 3.0  # free space kept between two placed boxes, in points (scaled to pixels)
_PANEL_IN = (6.0, 5.0)  # axes of one map, inches
_PANEL_SIDE_IN = (5.2, 4.8)  # each of the two side-by-side axes
_MARGIN_IN = 0.15
_COLUMN_GAP_IN = 0.25


# ------------------------------------------------------------------------------------ placement
def _overlaps(cands: np.ndarray, boxes: np.ndarray, pad: float) -> np.ndarray:
    """(K, 4) x (M, 4) boxes (x0, y0, x1, y1) -> (K, M) bool: overlap by more than -pad."""
    if len(boxes) == 0:
        return np.zeros((len(cands), 0), dtype=bool)
    c = cands[:, None, :]
    b = boxes[None, :, :]
    return (
        (c[..., 0] < b[..., 2] + pad)
        & (b[..., 0] < c[..., 2] + pad)
        & (c[..., 1] < b[..., 3] + pad)
        & (b[..., 1] < c[..., 3] + pad)
    )


def _contains(boxes: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(K, 4) boxes x (P, 2) points -> (K, P) bool: the point lies inside the box."""
    if len(points) == 0:
        return np.zeros((len(boxes), 0), dtype=bool)
    b = boxes[:, None, :]
    p = points[None, :, :]
    return (
        (p[..., 0] > b[..., 0]) & (p[..., 0] < b[..., 2]) & (p[..., 1] > b[..., 1]) & (p[..., 1] < b[..., 3])
    )


def _candidates(anchor: np.ndarray, size: np.ndarray, gap: float, max_radius: float, centred: bool):
    """Candidate boxes around ``anchor``: rings of 24 directions, nearest first.

    Returns (boxes (K, 4), distance of each box's nearest edge from the anchor (K,)).
    """
    w, h = size
    angles = np.deg2rad(np.arange(0, 360, 15.0))
    u = np.stack([np.cos(angles), np.sin(angles)], axis=1)  # (A, 2)
    with np.errstate(divide="ignore"):
        reach = np.minimum(w / 2 / np.abs(u[:, 0]), h / 2 / np.abs(u[:, 1]))  # centre -> edge along u
    step = max(4.0, gap * 2)
    radii = np.arange(0.0, max_radius + step, step)
    centres = anchor + (reach[None, :, None] + gap + radii[:, None, None]) * u[None]  # (R, A, 2)
    centres = centres.reshape(-1, 2)
    dist = np.repeat(radii + gap, len(u))
    if centred:
        centres = np.concatenate([anchor[None], centres])
        dist = np.concatenate([[0.0], dist])
    boxes = np.concatenate([centres - size / 2, centres + size / 2], axis=1)
    return boxes, dist


def _leader_end(anchor: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(K, 2) the point of each box nearest ``anchor``: where its leader line ends."""
    return np.clip(anchor, boxes[:, :2], boxes[:, 2:])


def _samples(starts: np.ndarray, ends: np.ndarray, n: int = 8) -> np.ndarray:
    """(K, n, 2) points along each segment, ends excluded."""
    t = np.linspace(0.0, 1.0, n + 2)[1:-1]
    return starts[:, None, :] + t[None, :, None] * (ends - starts)[:, None, :]


def _segment_hits(anchor: np.ndarray, boxes: np.ndarray, obstacles: np.ndarray) -> np.ndarray:
    """(K,) number of ``obstacles`` crossed by the leader line from ``anchor`` to each box."""
    if len(obstacles) == 0 or len(boxes) == 0:
        return np.zeros(len(boxes))
    pts = _samples(np.broadcast_to(anchor, (len(boxes), 2)), _leader_end(anchor, boxes))  # (K, S, 2)
    hit = _contains(obstacles, pts.reshape(-1, 2)).reshape(len(obstacles), len(boxes), -1)
    return hit.any(axis=2).sum(axis=0).astype(float)


def _covered_leaders(boxes: np.ndarray, leaders: np.ndarray) -> np.ndarray:
    """(K,) number of placed leader lines (L, S, 2 sample points) that each box would cover."""
    if len(leaders) == 0 or len(boxes) == 0:
        return np.zeros(len(boxes))
    inside = _contains(boxes, leaders.reshape(-1, 2)).reshape(len(boxes), len(leaders), -1)
    return inside.any(axis=2).sum(axis=1).astype(float)


def place_boxes(
    anchors: np.ndarray,
    sizes: np.ndarray,
    region: Sequence[float],
    *,
    obstacles: np.ndarray | None = None,
    points: np.ndarray | None = None,
    gap: float = 3.0,
    centred: bool = False,
    overlap_ok: bool = False,
) -> np.ndarray:
    """Greedy placement of boxes near their anchors, in display units, with no overlap.

    Each box in turn takes the free candidate spot of least cost: the distance from its anchor,
    plus a penalty for every other point it covers, every placed box its leader line crosses and
    every placed leader line it hides.

    Parameters
    ----------
    anchors : ndarray of shape (n, 2)
        The points the boxes label.
    sizes : ndarray of shape (n, 2)
        Width and height of each box.
    region : (x0, y0, x1, y1)
        Every box lies inside it.
    obstacles : ndarray of shape (m, 4), optional
        Boxes already there (x0, y0, x1, y1): never overlapped.
    points : ndarray of shape (p, 2), optional
        Markers best left uncovered (a soft rule).
    gap : float, default 3
        Free space kept around every box.
    centred : bool, default False
        Try the box centred on its anchor first (thumbnails); else the box never covers its anchor.
    overlap_ok : bool, default False
        For boxes that find no free spot: accept one that overlaps placed boxes but covers none of
        their centres and whose centre none covers.

    Returns
    -------
    ndarray of shape (n, 4)
        The boxes (x0, y0, x1, y1); NaN rows for boxes that found no spot.
    """
    anchors = np.asarray(anchors, dtype=float).reshape(-1, 2)
    sizes = np.asarray(sizes, dtype=float).reshape(-1, 2)
    x0, y0, x1, y1 = (float(v) for v in region)
    placed = np.asarray(obstacles if obstacles is not None else np.zeros((0, 4)), dtype=float).reshape(-1, 4)
    points = np.asarray(points if points is not None else np.zeros((0, 2)), dtype=float).reshape(-1, 2)
    n_fixed = len(placed)
    leaders = np.zeros((0, 8, 2))  # sample points of the leader lines drawn so far
    out = np.full((len(anchors), 4), np.nan)
    max_radius = float(np.hypot(x1 - x0, y1 - y0))
    for i in range(len(anchors)):
        boxes, dist = _candidates(anchors[i], sizes[i], gap, max_radius, centred)
        inside = (boxes[:, 0] >= x0) & (boxes[:, 1] >= y0) & (boxes[:, 2] <= x1) & (boxes[:, 3] <= y1)
        boxes, dist = boxes[inside], dist[inside]
        if len(boxes) == 0:
            continue
        free = ~_overlaps(boxes, placed, gap).any(axis=1)
        if not free.any() and overlap_ok and len(placed) > n_fixed:
            mine = placed[n_fixed:]
            centres = (mine[:, :2] + mine[:, 2:]) / 2
            covers = _contains(boxes, centres).any(axis=1)
            own = (boxes[:, :2] + boxes[:, 2:]) / 2
            covered = _contains(mine, own).any(axis=0)
            clear = ~_overlaps(boxes, placed[:n_fixed], gap).any(axis=1)
            free = clear & ~covers & ~covered
        if not free.any():
            continue
        boxes, dist = boxes[free], dist[free]
        others = np.delete(points, np.flatnonzero(np.all(points == anchors[i], axis=1)), axis=0)
        cost = dist + 12.0 * _contains(boxes, others).sum(axis=1)
        best = np.argsort(cost, kind="stable")[:96]
        # a leader line crossing a box, or a box hiding a leader line, is hard to follow
        cost = (
            cost[best]
            + 150.0 * _segment_hits(anchors[i], boxes[best], placed)
            + 150.0 * _covered_leaders(boxes[best], leaders)
        )
        choice = best[int(np.argmin(cost))]
        out[i] = boxes[choice]
        placed = np.concatenate([placed, boxes[choice][None]])
        end = _leader_end(anchors[i], boxes[choice][None])
        if np.hypot(*(end[0] - anchors[i])) > 2.0:
            leaders = np.concatenate([leaders, _samples(anchors[i][None], end)])
    return out


def _column(anchors: np.ndarray, sizes: np.ndarray, left: float, top: float, bottom: float, gap: float):
    """Boxes stacked in columns from (left, top) down to ``bottom``, in the order of the anchors'
    heights (highest first). Returns (boxes (n, 4), right edge of the last column)."""
    out = np.full((len(anchors), 4), np.nan)
    order = np.argsort(-anchors[:, 1], kind="stable")
    x, y, width = left, top, 0.0
    for i in order:
        w, h = sizes[i]
        if y - h < bottom and y < top:  # a new column
            x, y, width = x + width + 3 * gap, top, 0.0
        out[i] = (x, y - h, x + w, y)
        y -= h + gap
        width = max(width, w)
    return out, x + width


def thumbnail_points(n_thumbnails: int, size: float | None = None) -> float:
    """Default longest side of a thumbnail, in points: 56 up to 12 thumbnails, then shrinking with
    the square root of their number (so their total area stays about constant), never below 20."""
    if size is not None:
        return float(size)
    return float(np.clip(56.0 * np.sqrt(12.0 / max(n_thumbnails, 1)), 20.0, 56.0))


# ---------------------------------------------------------------------------------------- title
def _reduction_text(reduction: dict[str, Any]) -> str:
    """``{"method": "umap", "n_neighbors": 13, ...}`` -> ``UMAP (n_neighbors=13, ...)``."""
    if not reduction:
        return ""
    names = {"umap": "UMAP", "tsne": "t-SNE", "pca": "PCA"}
    method = names.get(str(reduction.get("method", "")), str(reduction.get("method", "")).upper())
    params = ", ".join(f"{k}={v}" for k, v in reduction.items() if k != "method" and v is not None)
    return f"{method} ({params})" if params else method


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
        "umap", "tsne" or "pca".
    random_state : int or None
        Seed of the reduction, also of the choice of thumbnails and callouts when there are too many.
    layout : {"joint", "per-modality", "side-by-side"}, default "joint"
        How the map is drawn: one map, or images and texts in two panels sharing their axis limits.
    centred : bool, default False
        Whether each modality was centred on its own mean before the reduction (said in the title).
    net_name : str, default ""
        The net that embedded the items (data: a display never sees the net).
    embedding : str, default ""
        What was reduced, e.g. ``"256-d ITC embeddings"``.
    reduction : dict, optional
        The reduction's parameters as run, e.g. ``{"method": "umap", "n_neighbors": 13, ...}``.

    Attributes
    ----------
    coords_ : DataFrame
    scatter_ : matplotlib.collections.PathCollection
        All points of the first panel (every point in a one-panel map); ``scatter_.get_offsets()``
        then equals ``coords_[["x", "y"]]``.
    scatters_ : list of PathCollection
        One per panel.
    thumbnails_ : list of matplotlib.offsetbox.AnnotationBbox
        The image thumbnails drawn (at most ``max_thumbnails``).
    thumbnail_rows_ : list of int
        The ``coords_`` row of each thumbnail drawn.
    texts_ : list of matplotlib.text.Text
        The text callouts drawn (at most ``max_texts``), each in a box (``get_bbox_patch()``).
    text_rows_ : list of int
        The ``coords_`` row of each callout drawn.
    hidden_thumbnail_rows_ : list of int
        Rows whose thumbnail found no spot (only in very crowded maps): their points are drawn.
    leaders_ : list of matplotlib.lines.Line2D
        Lines from a point to its displaced thumbnail or callout.
    colors_ : dict
        Label -> RGBA colour, from :func:`blipviz.display.labels.palette`.
    legend_ : matplotlib.legend.Legend or None
    ax_ : matplotlib.axes.Axes
        The (first) panel.
    axes_ : list of matplotlib.axes.Axes
        Every panel: one, or images and texts side by side.
    figure_ : matplotlib.figure.Figure
    """

    def __init__(
        self,
        coords: pd.DataFrame,
        thumbnails: Sequence[Any] | None = None,
        *,
        method: str = "",
        random_state: int | None = 37,
        layout: str = "joint",
        centred: bool = False,
        net_name: str = "",
        embedding: str = "",
        reduction: dict[str, Any] | None = None,
    ) -> None:
        self.coords_ = coords
        self.thumbnails = list(thumbnails) if thumbnails is not None else [None] * len(coords)
        self.method = method
        self.random_state = random_state
        self.layout = check_choice("layout", layout, LAYOUTS)
        self.centred = bool(centred)
        self.net_name = net_name
        self.embedding = embedding
        self.reduction = dict(reduction) if reduction else ({"method": method} if method else {})

    # ------------------------------------------------------------------------------- title
    def title(self, width_chars: int = 90) -> str:
        """The default title: net, embedding and counts; the reduction with its parameters; and,
        when so computed, that each modality was centred on its own mean."""
        kinds = self.coords_["kind"]
        counts = [f"{int((kinds == k).sum())} {k}s" for k in ("image", "text", "point") if (kinds == k).any()]
        what = self.embedding or "embeddings"
        first = f"{what} of {' and '.join(counts)}"
        if self.net_name:
            first = f"{self.net_name}: {first}"
        parts = [first, _reduction_text(self.reduction) or self.method.upper()]
        if self.centred:
            parts.append("each modality centred on its own mean (modality gap removed)")
        lines = [line for part in parts for line in textwrap.wrap(part, width_chars)]
        return "\n".join(lines)

    # -------------------------------------------------------------------------------- plot
    def plot(
        self,
        ax=None,
        *,
        layout: str | None = None,
        max_thumbnails: int = 100,
        max_texts: int = 40,
        thumbnail_size: float | None = None,
        marker_size: float | None = None,
        max_text_chars: int | None = 80,
        wrap_width: int = 28,
        fontsize: float = 8.0,
        legend: bool | None = None,
        title: str | None = None,
    ) -> FeatureSpaceDisplay:
        """Draw the map: every item as a point coloured by label, images as thumbnails, texts as
        boxed callouts; nothing overlaps (see the module docstring).

        Parameters
        ----------
        ax : matplotlib Axes, or a pair of Axes for "side-by-side", optional
            Default: a new figure sized for the layout (widened when callouts need a side column).
        layout : {"joint", "per-modality", "side-by-side"}, optional
            Default: the layout the map was computed for. "per-modality" and "side-by-side" share
            their coordinates (each modality centred), so either draws a map computed for the other;
            "joint" coordinates are not centred, so a joint map draws only as "joint".
        max_thumbnails : int, default 100
            At most this many thumbnails (a random subset for a fixed ``random_state``); the points
            of all images are still drawn.
        max_texts : int, default 40
            At most this many text callouts.
        thumbnail_size : float, optional
            Longest side of a thumbnail, in points; default :func:`thumbnail_points` (56 for up to 12
            thumbnails, smaller for more).
        marker_size : float, optional
            Point area; default shrinks from 40 to 4 as the number of items grows.
        max_text_chars : int or None, default 80
            Texts up to this many characters are shown whole, longer ones elided in the middle at word
            boundaries (:func:`blipviz.display.labels.fit_text`); ``None``: always whole.
        wrap_width : int, default 28
            Callouts are wrapped into lines of about this many characters.
        fontsize : float, default 8
        legend : bool, optional
            Default: when there are 2 to 20 labels. Drawn below the map in a figure made here, else
            inside the given Axes where matplotlib finds room (callouts and thumbnails avoid it).
        title : str, optional
            Default: :meth:`title` (net, embedding, counts, reduction and its parameters).

        Returns
        -------
        FeatureSpaceDisplay
        """
        layout = self.layout if layout is None else check_choice("layout", layout, LAYOUTS)
        if (layout == "joint") != (self.layout == "joint"):
            raise InputError(
                f"this map was computed for layout={self.layout!r}: its coordinates "
                f"{'are' if self.centred else 'are not'} centred per modality; compute it again with "
                f"feature_space_map(..., layout={layout!r})"
            )
        c = self.coords_
        n = len(c)
        kinds = c["kind"].to_numpy()
        side = layout == "side-by-side" and (kinds == "image").any() and (kinds == "text").any()
        categories = list(dict.fromkeys(c["label"]))
        import matplotlib.colors as mcolors

        self.colors_ = {
            v: mcolors.to_rgba(h) for v, h in zip(categories, palette(len(categories)), strict=True)
        }
        colors = [self.colors_[v] for v in c["label"]]
        show_legend = legend if legend is not None else 2 <= len(categories) <= 20
        legend_rows = -(-len(categories) // min(len(categories), 5)) if show_legend and categories else 0

        rng = np.random.RandomState(self.random_state)

        def pick(index: np.ndarray, limit: int) -> np.ndarray:
            if len(index) <= limit:
                return index
            return np.sort(rng.choice(index, size=limit, replace=False))

        with_thumbs = np.array([i for i in range(n) if self.thumbnails[i] is not None], dtype=int)
        thumb_rows = pick(with_thumbs, max_thumbnails)
        text_rows = pick(np.flatnonzero(kinds == "text"), max_texts)
        thumb_pt = thumbnail_points(len(thumb_rows), thumbnail_size)

        fig, axes, own_figure, title_text = self._figure(ax, side, legend_rows, title)
        panels = [(axes[0], np.arange(n))]
        if side:
            panels = [(axes[0], np.flatnonzero(kinds != "text")), (axes[1], np.flatnonzero(kinds == "text"))]
        size = marker_size if marker_size is not None else float(np.clip(400.0 / max(n, 1), 4.0, 40.0))
        self._set_limits(axes, c, thumb_pt if len(thumb_rows) else 0.0)
        self.scatters_ = []
        for panel, rows in panels:
            self.scatters_.append(
                panel.scatter(
                    c["x"].to_numpy()[rows],
                    c["y"].to_numpy()[rows],
                    c=[colors[i] for i in rows],
                    s=size,
                    linewidths=0,
                    zorder=2,
                )
            )
            panel.set_xticks([])
            panel.set_yticks([])
        self.scatter_ = self.scatters_[0]
        if side:
            axes[0].set_title(f"images ({int((kinds == 'image').sum())})", fontsize=9)
            axes[1].set_title(f"texts ({int((kinds == 'text').sum())})", fontsize=9)

        # the title and legend first: the placement works in the figure's final size
        if side or own_figure:
            self._title_artist = fig.suptitle(title_text, fontsize=10, y=1 - 0.08 / fig.get_figheight())
            self._title_artist.set_va("top")
        else:
            self._title_artist = axes[0].set_title(title_text, fontsize=10)
        self.legend_ = None
        if show_legend:
            from matplotlib.lines import Line2D

            handles = [
                Line2D([], [], marker="o", linestyle="", color=self.colors_[v], label=str(v))
                for v in categories
            ]
            if side or own_figure:  # below the panels, in the margin made for it
                self.legend_ = fig.legend(
                    handles=handles,
                    loc="lower center",
                    bbox_to_anchor=(0.5, 0.0),
                    ncol=min(len(categories), 5),
                    fontsize=8,
                    frameon=False,
                )
            else:  # in the given Axes where matplotlib finds room, then fixed there: an obstacle
                self.legend_ = axes[0].legend(handles=handles, loc="best", fontsize=8, framealpha=0.9)
                fig.canvas.draw()
                corner = self.legend_.get_window_extent(fig.canvas.get_renderer()).p0
                self.legend_.set_loc(tuple(axes[0].transAxes.inverted().transform(corner)))

        self.thumbnails_, self.thumbnail_rows_ = [], []
        self.texts_, self.text_rows_, self.leaders_ = [], [], []
        self.hidden_thumbnail_rows_ = []
        for panel, rows in panels:
            in_panel = set(rows.tolist())
            self._draw_panel(
                fig,
                panel,
                rows,
                [i for i in thumb_rows if i in in_panel],
                [i for i in text_rows if i in in_panel],
                colors,
                thumb_pt,
                max_text_chars,
                wrap_width,
                fontsize,
                own_figure,
            )
        self.ax_ = axes[0]
        self.axes_ = list(axes)
        self.figure_ = fig
        return self

    # -------------------------------------------------------------------------- internals
    def _figure(self, ax, side: bool, legend_rows: int, title: str | None):
        """(figure, axes, made here, title): a new figure has room for the title's lines and the
        legend rows; the default title is wrapped to the figure's (or the given Axes') width."""

        def chars(width_in: float) -> int:
            return max(30, int(width_in * 72 / (0.6 * 10)))  # 10-pt characters are about 6 pt wide

        if ax is not None:
            axes = list(np.ravel(ax)) if isinstance(ax, list | tuple | np.ndarray) else [ax]
            if side and len(axes) != 2:
                raise InputError(
                    "layout='side-by-side' draws two panels: pass ax=(ax_images, ax_texts), "
                    f"got {len(axes)} Axes"
                )
            if not side and len(axes) != 1:
                raise InputError(f"this layout draws one panel: pass one Axes, got {len(axes)}")
            fig = axes[0].figure
            if title is None:
                width_in = fig.get_figwidth() if side else axes[0].get_window_extent().width / fig.dpi
                title = self.title(width_chars=chars(width_in))
            return fig, axes, False, title
        import matplotlib.pyplot as plt

        pw, ph = _PANEL_SIDE_IN if side else _PANEL_IN
        n_panels = 2 if side else 1
        width = 2 * _MARGIN_IN + n_panels * pw + (n_panels - 1) * 0.3
        if title is None:
            title = self.title(width_chars=chars(width))
        n_title_lines = title.count("\n") + 1
        top = 0.12 + 0.19 * n_title_lines + (0.3 if side else 0.08)
        bottom = _MARGIN_IN + (0.12 + 0.2 * legend_rows if legend_rows else 0.0)
        height = bottom + ph + top
        fig = plt.figure(figsize=(width, height))
        axes = []
        for k in range(n_panels):
            left = _MARGIN_IN + k * (pw + 0.3)
            axes.append(fig.add_axes((left / width, bottom / height, pw / width, ph / height)))
        if side:
            axes[1].sharex(axes[0])
            axes[1].sharey(axes[0])
        self._inches = [(_MARGIN_IN + k * (pw + 0.3), bottom, pw, ph) for k in range(n_panels)]
        return fig, axes, True, title

    @staticmethod
    def _set_limits(axes, c: pd.DataFrame, thumb_pt: float) -> None:
        """Data limits leaving room for a thumbnail (half its side) centred on an outer point."""
        fig = axes[0].figure
        box = axes[0].get_window_extent()
        pad_px = (max(thumb_pt / 2, 8.0) + 4.0) * fig.dpi / 72
        for col, extent in (("x", box.width), ("y", box.height)):
            lo, hi = float(c[col].min()), float(c[col].max())
            span = hi - lo or 1.0
            frac = min(pad_px / max(extent, 1.0), 0.3)
            pad = span * frac / (1 - 2 * frac)
            for panel in axes:
                (panel.set_xlim if col == "x" else panel.set_ylim)(lo - pad, hi + pad)

    def _draw_panel(
        self,
        fig,
        ax,
        rows,
        thumb_rows,
        text_rows,
        colors,
        thumb_pt,
        max_chars,
        wrap_width,
        fontsize,
        own_figure,
    ) -> None:
        c = self.coords_
        renderer = fig.canvas.get_renderer()
        scale = fig.dpi / 72.0
        gap = _GAP_PX * scale
        data_xy = c[["x", "y"]].to_numpy(dtype=float)
        to_px = ax.transData.transform
        to_data = ax.transData.inverted().transform
        frame = ax.get_window_extent(renderer)
        region = (frame.x0 + 2, frame.y0 + 2, frame.x1 - 2, frame.y1 - 2)
        fixed = np.zeros((0, 4))
        if self.legend_ is not None and self.legend_.axes is ax:
            fixed = np.array([self.legend_.get_window_extent(renderer).extents])
        points_px = to_px(data_xy[rows]) if len(rows) else np.zeros((0, 2))

        # thumbnails: on their point when free, else near it (measured as drawn, frame included)
        anchors = to_px(data_xy[thumb_rows]) if thumb_rows else np.zeros((0, 2))
        artists = [
            add_thumbnail(
                ax,
                self.thumbnails[i],
                tuple(data_xy[i]),
                size_pt=thumb_pt,
                frameon=True,
                pad=0.15,
                bboxprops=dict(edgecolor=colors[i], linewidth=1.5),
                zorder=3,
            )
            for i in thumb_rows
        ]
        sizes = np.array([[b.width, b.height] for b in (a.get_window_extent(renderer) for a in artists)])
        thumb_boxes = place_boxes(
            anchors,
            sizes.reshape(-1, 2) + 1.0,
            region,
            obstacles=fixed,
            points=points_px,
            gap=gap,
            centred=True,
            overlap_ok=True,
        )
        for k, i in enumerate(thumb_rows):
            box, artist = thumb_boxes[k], artists[k]
            if np.isnan(box).any():
                artist.remove()
                self.hidden_thumbnail_rows_.append(int(i))
                continue
            centre = (box[:2] + box[2:]) / 2
            artist.xy = artist.xybox = tuple(to_data(centre[None])[0])
            self.thumbnails_.append(artist)
            self.thumbnail_rows_.append(int(i))
            if np.hypot(*(centre - anchors[k])) > 1.0:
                self._leader(ax, anchors[k], box, colors[i], to_data, zorder=2.5)
        drawn = np.concatenate([fixed, thumb_boxes[~np.isnan(thumb_boxes).any(axis=1)]])

        # callouts: wrapped, boxed, as near their point as the placed boxes allow
        texts, sizes = [], []
        for i in text_rows:
            t = ax.text(
                0,
                0,
                wrap_text(c["name"].iloc[i], wrap_width, max_chars),
                transform=None,
                ha="center",
                va="center",
                fontsize=fontsize,
                linespacing=1.15,
                bbox=dict(boxstyle="round,pad=0.3", facecolor="white", edgecolor=colors[i], linewidth=1.0),
                zorder=4,
                clip_on=False,
            )
            t.get_bbox_patch().set_figure(fig)  # so that the box, too, can be measured
            texts.append(t)
        if texts:
            fig.canvas.draw()  # sizes with the renderer's font metrics
            for t in texts:
                b = t.get_bbox_patch().get_window_extent(renderer)
                sizes.append((b.width + 1.0, b.height + 1.0))
        sizes = np.array(sizes).reshape(-1, 2)
        anchors = to_px(data_xy[text_rows]) if text_rows else np.zeros((0, 2))
        order = np.argsort(-(sizes[:, 0] * sizes[:, 1]), kind="stable")
        boxes = np.full((len(texts), 4), np.nan)
        boxes[order] = place_boxes(
            anchors[order], sizes[order], region, obstacles=drawn, points=points_px, gap=gap
        )
        left = np.isnan(boxes).any(axis=1)
        if left.any():
            boxes[left] = self._column_boxes(
                fig, ax, anchors[left], sizes[left], gap, own_figure, boxes[~left]
            )
            frame = ax.get_window_extent(renderer)
        for k, (t, i) in enumerate(zip(texts, text_rows, strict=True)):
            centre = (boxes[k, :2] + boxes[k, 2:]) / 2
            t.set_transform(ax.transData)
            t.set_position(tuple(to_data(centre[None])[0]))
            self.texts_.append(t)
            self.text_rows_.append(int(i))
            self._leader(ax, anchors[k], boxes[k], colors[i], to_data, zorder=1.5)

    def _column_boxes(self, fig, ax, anchors, sizes, gap, own_figure, placed):
        """Boxes for callouts that found no spot in the axes: a column right of the axes (the figure
        widens when made here), else any free spot in the figure, else (with a warning) the column."""
        renderer = fig.canvas.get_renderer()
        frame = ax.get_window_extent(renderer)
        left = frame.x1 + _COLUMN_GAP_IN * fig.dpi
        boxes, right = _column(anchors, sizes, left, frame.y1, frame.y0, gap)
        need = right + _MARGIN_IN * fig.dpi
        if own_figure:
            if need > fig.bbox.x1:  # widen the figure; the axes keep their size and place in inches
                old_w = fig.get_figwidth()
                new_w = need / fig.dpi
                fig.set_size_inches(new_w, fig.get_figheight(), forward=True)
                for panel in fig.axes:
                    pos = panel.get_position()
                    panel.set_position(
                        (pos.x0 * old_w / new_w, pos.y0, pos.width * old_w / new_w, pos.height)
                    )
            return boxes
        if need <= fig.bbox.x1:
            return boxes
        others = [a.get_window_extent(renderer) for a in fig.axes]
        obstacles = np.concatenate([placed, np.array([[b.x0, b.y0, b.x1, b.y1] for b in others])])
        f = fig.bbox
        found = place_boxes(
            anchors, sizes, (f.x0 + 2, f.y0 + 2, f.x1 - 2, f.y1 - 2), obstacles=obstacles, gap=gap
        )
        missing = np.isnan(found).any(axis=1)
        if missing.any():
            warnings.warn(
                f"{int(missing.sum())} text callout(s) found no free spot in this figure: they are drawn "
                "beside the axes and may overlap or leave it; give a larger figure or fewer texts "
                "(max_texts=...)",
                stacklevel=4,
            )
            found[missing] = boxes[missing]
        return found

    def _leader(self, ax, anchor, box, color, to_data, zorder) -> None:
        """A thin line from ``anchor`` to the nearest point of ``box`` (display pixels)."""
        near = np.clip(anchor, box[:2], box[2:])
        if np.hypot(*(near - anchor)) < 2.0:
            return
        ends = to_data(np.stack([anchor, near]))
        from matplotlib.lines import Line2D

        line = Line2D(ends[:, 0], ends[:, 1], color=color, linewidth=0.8, zorder=zorder, clip_on=False)
        ax.add_line(line)
        self.leaders_.append(line)
