"""The 2-D map of image and text embeddings, drawn from computed coordinates.

:func:`blipviz.feature_space_map` computes the map (:mod:`blipviz.analysis.feature_space`) and
its ``.plot()`` draws it here; :meth:`FeatureSpaceDisplay.from_coordinates` draws coordinates
computed elsewhere. No net runs in this module.

Every item is a point of its group's colour and marker: Okabe & Ito's colours, distinct under the
common colour-vision deficiencies, and a marker beside them
(:func:`blipviz.display.rules.category_cues`). Images are labelled by thumbnails and texts by boxed
callouts, placed in display pixels by a greedy search around their points (:class:`LabelPlacer`),
with these rules for any scene, from one item to tens of thousands:

- a thumbnail sits centred on its point, or beside it joined by a leader line; a callout sits beside
  its point, joined by a leader line. Each leader starts at its own point and ends on its own box;
- no box overlaps another box, the legend or the count note; no leader crosses a box, another
  leader or another labelled point; no box covers a labelled point or a leader; boxes avoid
  covering unlabelled points where they can (a cost, not a rule);
- everything lies inside the Axes drawn into, and nothing is drawn or changed outside it;
- when not every item can be labelled, a subset chosen for coverage is: items are tried in
  farthest-point order in screen space (:func:`coverage_order`: outliers and every region first;
  thumbnails and callouts in turn), a label in the way of one that finds no spot may move, and an
  item that still finds none within a short leader's reach is left a point. A small map (at most 48
  labels) that does not fit whole is tried again in other orders, with longer leaders, then with
  smaller thumbnails. A note in a corner of the Axes says how many are labelled ("12 of 300 texts
  labelled"); ``label=`` chooses which items may be; :class:`blipviz.FeatureSpaceExplorer` shows
  every item by hover and selection.

Texts are drawn literally (``parse_math=False``: "$5 and $10" is not mathematics), at sizes relative
to ``rcParams["font.size"]``, in the active style's colours: a callout's box is filled with the
Axes' face colour and its text has a contrast of at least 4.5:1 against it
(:func:`blipviz.display.labels.readable_text_colour`).

The labels are placed again whenever the Axes' size in pixels, the dpi or the view limits change
(a constrained layout that moves the Axes when another panel is drawn, ``savefig(dpi=...)``,
zooming): the rules hold for the figure as drawn.
"""

from __future__ import annotations

import functools
import textwrap
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..errors import InputError, InputTypeError, check_choice
from .labels import MAX_LABEL_CHARS, readable_text_colour, wrap_text
from .pairs import caption_lines
from .plotting import rgb_array
from .rules import SMALL, TITLE, category_cues, finish_axes, font_size, plural

if TYPE_CHECKING:
    from matplotlib.lines import Line2D
    from matplotlib.offsetbox import AnnotationBbox
    from matplotlib.text import Text

__all__ = [
    "LAYOUTS",
    "FeatureSpaceDisplay",
    "LabelPlacer",
    "callout_text",
    "coverage_order",
    "segments_cross",
    "segments_hit_boxes",
    "thumbnail_points",
]

#: How images and texts share the map (see :func:`blipviz.feature_space_map`).
LAYOUTS = ("joint", "per-modality", "side-by-side")

_GAP_PT = 3.0  # free space kept around every box, in points
_CLEAR_PT = 2.0  # free space between a point's marker and a box or another leader, in points
_TEXT_REACH_EM = 9.0  # longest leader of a callout, in callout font sizes
_THUMB_REACH = 1.5  # longest leader of a thumbnail, in thumbnail sides
_MAX_TEXTS = 40  # default caps when the labels are chosen automatically
_MAX_THUMBNAILS = 48
_GIVE_UP = 60  # consecutive failed tries after which a panel is taken as full
_FEW = 48  # maps of at most this many labels shrink their thumbnails to label every item
_SHRINK = (1.0, 0.8, 0.64, 0.5)  # the thumbnail scales tried
_OUTWARD = 8.0  # cost of a label on its point's crowded side, in gaps
_PASS_BUDGET = 80  # labels tried in the extra passes of a small map that does not fit whole
_SWAPS = 3  # labels nearby tried out of the way of one that finds no spot
_SWAP_BUDGET = 12  # such tries per pass
_STRETCH = 2.5  # longer leaders for a small map that does not fit whole
_MIN_THUMB_PT = 20.0
_BOX_PAD = 0.3  # callout box padding, in font sizes
_PANEL_IN = (6.0, 5.0)  # axes of one map, inches
_PANEL_SIDE_IN = (5.2, 4.8)  # each of the two side-by-side axes
_MARGIN_IN = 0.15


# ------------------------------------------------------------------------------------ geometry
def _overlaps(cands: np.ndarray, boxes: np.ndarray, pad: float) -> np.ndarray:
    """(K, 4) x (M, 4) boxes (x0, y0, x1, y1) -> (K, M) bool: closer than ``pad`` or overlapping."""
    if len(boxes) == 0 or len(cands) == 0:
        return np.zeros((len(cands), len(boxes)), dtype=bool)
    c = cands[:, None, :]
    b = boxes[None, :, :]
    return (
        (c[..., 0] < b[..., 2] + pad)
        & (b[..., 0] < c[..., 2] + pad)
        & (c[..., 1] < b[..., 3] + pad)
        & (b[..., 1] < c[..., 3] + pad)
    )


def _contains(boxes: np.ndarray, points: np.ndarray, pad: float = 0.0) -> np.ndarray:
    """(K, 4) boxes x (P, 2) points -> (K, P) bool: the point lies inside the box grown by ``pad``."""
    if len(points) == 0 or len(boxes) == 0:
        return np.zeros((len(boxes), len(points)), dtype=bool)
    b = boxes[:, None, :]
    p = points[None, :, :]
    return (
        (p[..., 0] > b[..., 0] - pad)
        & (p[..., 0] < b[..., 2] + pad)
        & (p[..., 1] > b[..., 1] - pad)
        & (p[..., 1] < b[..., 3] + pad)
    )


def _nearest_on_boxes(point: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(K, 2) the point of each box nearest ``point``: where a leader from it ends."""
    return np.clip(point, boxes[:, :2], boxes[:, 2:])


def segments_hit_boxes(p0: np.ndarray, p1: np.ndarray, boxes: np.ndarray, pad: float = 0.0) -> np.ndarray:
    """Which segments meet which boxes (the slab test).

    Parameters
    ----------
    p0, p1 : ndarray of shape (K, 2)
        Segment ends.
    boxes : ndarray of shape (M, 4)
        (x0, y0, x1, y1), grown by ``pad`` on every side.

    Returns
    -------
    ndarray of shape (K, M), bool
    """
    p0 = np.asarray(p0, dtype=float).reshape(-1, 2)
    p1 = np.asarray(p1, dtype=float).reshape(-1, 2)
    boxes = np.asarray(boxes, dtype=float).reshape(-1, 4)
    if len(p0) == 0 or len(boxes) == 0:
        return np.zeros((len(p0), len(boxes)), dtype=bool)
    t0 = np.zeros((len(p0), len(boxes)))
    t1 = np.ones((len(p0), len(boxes)))
    for axis in (0, 1):
        start = p0[:, axis][:, None]
        delta = (p1[:, axis] - p0[:, axis])[:, None]
        lo = boxes[:, axis][None, :] - pad
        hi = boxes[:, axis + 2][None, :] + pad
        flat = np.abs(delta) < 1e-12
        with np.errstate(divide="ignore", invalid="ignore"):
            a = (lo - start) / delta
            b = (hi - start) / delta
        enter = np.where(flat, np.where((start >= lo) & (start <= hi), -np.inf, np.inf), np.minimum(a, b))
        leave = np.where(flat, np.where((start >= lo) & (start <= hi), np.inf, -np.inf), np.maximum(a, b))
        t0 = np.maximum(t0, enter)
        t1 = np.minimum(t1, leave)
    return t0 <= t1


def segments_cross(p0, p1, q0, q1) -> np.ndarray:
    """(K, L) bool: segment k (``p0[k]``-``p1[k]``) crosses segment l (``q0[l]``-``q1[l]``) properly,
    each passing strictly between the other's ends (touching at a shared end is not crossing)."""
    p0, p1, q0, q1 = (np.asarray(v, dtype=float).reshape(-1, 2) for v in (p0, p1, q0, q1))
    if len(p0) == 0 or len(q0) == 0:
        return np.zeros((len(p0), len(q0)), dtype=bool)

    def orient(a, b, c):  # sign of (b - a) x (c - a), broadcast
        return (b[..., 0] - a[..., 0]) * (c[..., 1] - a[..., 1]) - (b[..., 1] - a[..., 1]) * (
            c[..., 0] - a[..., 0]
        )

    P0, P1 = p0[:, None, :], p1[:, None, :]
    Q0, Q1 = q0[None, :, :], q1[None, :, :]
    d1, d2 = orient(Q0, Q1, P0), orient(Q0, Q1, P1)
    d3, d4 = orient(P0, P1, Q0), orient(P0, P1, Q1)
    scale = 1e-9 * (1.0 + np.abs(P1 - P0).sum(-1) * np.abs(Q1 - Q0).sum(-1))
    return (d1 * d2 < -scale * scale) & (d3 * d4 < -scale * scale)


def _point_segment_distance(p0: np.ndarray, p1: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(K, P) distance from each point to each segment ``p0[k]``-``p1[k]``."""
    if len(points) == 0 or len(p0) == 0:
        return np.zeros((len(p0), len(points)))
    d = (p1 - p0)[:, None, :]
    rel = points[None, :, :] - p0[:, None, :]
    length2 = (d * d).sum(-1)
    t = np.clip(np.where(length2 > 0, (rel * d).sum(-1) / np.where(length2 > 0, length2, 1.0), 0.0), 0, 1)
    return np.hypot(*np.moveaxis(rel - t[..., None] * d, -1, 0))


def coverage_order(points: np.ndarray, limit: int | None = None) -> np.ndarray:
    """Farthest-point order of ``points``: the one farthest from their centroid first, then each
    next the one farthest from all taken so far (ties: the lowest index). The first k of the order
    spread over the points' whole extent: outliers and every cluster early, a dense cluster's
    members late.

    Parameters
    ----------
    points : ndarray of shape (n, 2)
        Positions, best in display units (the order should follow what the reader sees).
    limit : int, optional
        Stop after this many.

    Returns
    -------
    ndarray of shape (min(n, limit),), int
    """
    return np.fromiter(_coverage(np.asarray(points, dtype=float).reshape(-1, 2), limit), dtype=int)


def _coverage(points: np.ndarray, limit: int | None = None) -> Iterator[int]:
    n = len(points)
    if n == 0:
        return
    limit = n if limit is None else min(int(limit), n)
    dist = np.hypot(*(points - points.mean(axis=0)).T)
    for _ in range(limit):
        pick = int(np.argmax(dist))
        yield pick
        dist = np.minimum(dist, np.hypot(*(points - points[pick]).T))
        dist[pick] = -np.inf


def _interleaved(points: np.ndarray, kinds: Sequence[str]) -> Iterator[int]:
    """The coverage order of each kind of label (thumbnails, callouts), taken in turn: a few
    thumbnails among many texts are tried early, not after every text."""

    def stream(rows: np.ndarray) -> Iterator[int]:
        for k in _coverage(points[rows]):
            yield int(rows[k])

    streams = [stream(np.flatnonzero(np.asarray(kinds) == kind)) for kind in dict.fromkeys(kinds)]
    while streams:
        for rows_left in list(streams):
            k = next(rows_left, None)
            if k is None:
                streams.remove(rows_left)
            else:
                yield int(k)


def callout_text(text: str, wrap_width: int = 28, max_chars: int | None = MAX_LABEL_CHARS) -> str:
    """A text as its callout shows it: whole up to ``max_chars`` characters, else elided in the
    middle at word boundaries (:func:`~blipviz.display.labels.fit_text`), wrapped into lines of about
    ``wrap_width`` characters (Latin words never broken), lines of Chinese or Japanese broken between
    characters (:func:`~blipviz.display.pairs.caption_lines`). Drawn literally: ``$`` is a dollar."""
    lines = wrap_text(text, wrap_width, max_chars).split("\n")
    return "\n".join(
        caption_lines(line, wrap_width) if len(line) <= MAX_LABEL_CHARS else line for line in lines
    )


class LabelPlacer:
    """Greedy placement of labels (boxes) next to their points, in display pixels.

    Each call to :meth:`place` puts one box, or none, at the spot of least cost among the allowed
    ones (:meth:`remove` and :meth:`restore` take one out and put it back). Allowed: inside
    ``region``; at least ``gap`` from every box placed (and every fixed box); covering no labelled
    point (within ``clear``) and no leader; with a leader (from the point to the box's nearest point,
    at most ``reach`` long) that crosses no box, no other leader and passes no labelled point closer
    than ``radius``. The cost is the leader's length plus penalties for the unlabelled points the box
    or its leader covers (more for points still to be labelled), for hemming in points still to be
    labelled, and for a label on the crowded side of its point.

    Parameters
    ----------
    region : (x0, y0, x1, y1)
    points : ndarray of shape (n, 2)
        Every point of the panel (the labelled ones and the others).
    fixed : ndarray of shape (m, 4), optional
        Boxes already there (a legend, a note): never overlapped nor crossed.
    gap : float
        Free space around boxes.
    clear : float
        Free space between a box and a labelled point's centre (its marker's radius and a little
        more).
    radius : float, optional
        The markers' radius: no leader passes closer than this (and a pixel) to another labelled
        point. Default ``clear``.
    waiting : ndarray of shape (n,), bool, optional
        Points still to be labelled: covering one costs more (it could not be labelled after).

    Attributes
    ----------
    boxes : ndarray of shape (m + placed, 4)
    leaders : ndarray of shape (l, 4)
        (x0, y0, x1, y1) of each leader, from the point to its box.
    """

    def __init__(
        self, region, points, fixed=None, *, gap: float, clear: float, radius=None, waiting=None
    ) -> None:
        self.region = np.asarray(region, dtype=float)
        self.points = np.asarray(points, dtype=float).reshape(-1, 2)
        self.boxes = np.asarray(fixed if fixed is not None else np.zeros((0, 4)), dtype=float).reshape(-1, 4)
        self.leaders = np.zeros((0, 4))
        self._box_owner = np.full(len(self.boxes), -1)  # the point each box labels (-1: fixed)
        self._leader_owner = np.zeros(0, dtype=int)
        self.labelled = np.zeros(len(self.points), dtype=bool)
        n = len(self.points)
        self.waiting = np.zeros(n, dtype=bool) if waiting is None else np.array(waiting, dtype=bool)
        self.gap, self.clear = float(gap), float(clear)
        self.radius = self.clear if radius is None else float(radius)
        self._by_x = np.argsort(self.points[:, 0], kind="stable")  # for finding the points near one
        self._xs = self.points[self._by_x, 0]
        # the points counted on a grid of cells about a gap wide, in summed-area tables (kept up to
        # date as labels come and go): the soft costs (points a box or a leader covers) are sums
        # over cells, whatever the number of points
        self._cell = max(3.0, self.gap, self.radius)
        x0, y0, x1, y1 = self.region
        self._origin = np.array([x0, y0]) - self._cell
        self._shape = (int((y1 - y0) / self._cell) + 3, int((x1 - x0) / self._cell) + 3)
        ij = np.floor((self.points - self._origin) / self._cell).astype(int)
        self._ci = np.clip(ij[:, 0], 0, self._shape[1] - 1)
        self._cj = np.clip(ij[:, 1], 0, self._shape[0] - 1)
        self._sums: tuple[np.ndarray, ...] | None = None

    def _weights(self, i: int) -> tuple[float, float]:
        """Point i's weight among the points a label should not cover (a point still to be labelled
        weighs 25, a labelled one nothing), and among the points still to be labelled."""
        if self.labelled[i]:
            return 0.0, 0.0
        return (25.0, 1.0) if self.waiting[i] else (1.0, 0.0)

    def _tables(self) -> tuple[np.ndarray, ...]:
        """Summed-area tables of the two weights, and of every point (made when first needed)."""
        if self._sums is None:
            free = ~self.labelled
            wait = free & self.waiting
            flat = self._cj * self._shape[1] + self._ci
            out = []
            for weights in (np.where(wait, 25.0, free * 1.0), wait * 1.0, np.ones(len(free))):
                grid = np.bincount(flat, weights=weights, minlength=self._shape[0] * self._shape[1])
                table = np.zeros((self._shape[0] + 1, self._shape[1] + 1))
                table[1:, 1:] = grid.reshape(self._shape).cumsum(axis=0).cumsum(axis=1)
                out.append(table)
            self._sums = tuple(out)
        return self._sums

    def _count(self, i: int, sign: float) -> None:
        """Add point i's weights (``sign`` -1: take them away) to the tables."""
        if self._sums is None:
            return
        j, k = self._cj[i] + 1, self._ci[i] + 1
        for table, weight in zip(self._sums[:2], self._weights(i), strict=True):
            if weight:
                table[j:, k:] += sign * weight

    def _box_sums(self, which: int, boxes: np.ndarray, skip: int | None = None) -> np.ndarray:
        """(K,) the sum of table ``which`` (0: points not to cover, 1: points still to be
        labelled, 2: every point) over the cells each box (K, 4) touches, without point ``skip``."""
        table = self._tables()[which]
        lo = np.floor((boxes[:, :2] - self._origin) / self._cell).astype(int)
        hi = np.ceil((boxes[:, 2:] - self._origin) / self._cell).astype(int)
        i0, i1 = np.clip(lo[:, 0], 0, self._shape[1]), np.clip(hi[:, 0], 0, self._shape[1])
        j0, j1 = np.clip(lo[:, 1], 0, self._shape[0]), np.clip(hi[:, 1], 0, self._shape[0])
        sums = table[j1, i1] - table[j0, i1] - table[j1, i0] + table[j0, i0]
        if skip is not None:
            weight = (*self._weights(skip), 1.0)[which]
            ci, cj = self._ci[skip], self._cj[skip]
            sums = sums - weight * ((i0 <= ci) & (ci < i1) & (j0 <= cj) & (cj < j1))
        return sums

    def _near(self, window: np.ndarray) -> np.ndarray:
        """Indices of the points inside ``window`` (x0, y0, x1, y1)."""
        lo, hi = np.searchsorted(self._xs, [window[0], window[2]])
        rows = self._by_x[lo:hi]
        y = self.points[rows, 1]
        return rows[(y >= window[1]) & (y <= window[3])]

    def _candidates(self, a: np.ndarray, size: np.ndarray, centred: bool, reach: float):
        w, h = size
        angles = np.deg2rad(np.arange(0.0, 360.0, 15.0))
        u = np.stack([np.cos(angles), np.sin(angles)], axis=1)
        with np.errstate(divide="ignore"):
            half = np.minimum(w / 2 / np.abs(u[:, 0]), h / 2 / np.abs(u[:, 1]))
        step = max(2.0, self.gap, reach / 24.0)  # at most about 24 rings
        radii = np.arange(0.0, reach + step / 2, step)
        centres = (a + (half[None, :, None] + self.clear + radii[:, None, None]) * u[None]).reshape(-1, 2)
        boxes = np.concatenate([centres - size / 2, centres + size / 2], axis=1)
        dist = np.hypot(*(_nearest_on_boxes(a, boxes) - a).T)
        keep = (dist >= self.clear - 1e-6) & (dist <= reach + self.clear)
        boxes, dist = boxes[keep], dist[keep]
        if centred:
            boxes = np.concatenate([np.concatenate([a - size / 2, a + size / 2])[None], boxes])
            dist = np.concatenate([[0.0], dist])
        order = np.argsort(dist, kind="stable")
        return boxes[order], dist[order]

    def place(self, index: int, size, *, centred: bool = False, reach: float) -> tuple | None:
        """Place the box of point ``index`` (``size`` = (width, height)).

        ``centred``: try the box centred on its point first (thumbnails); otherwise, and for every
        other spot, the box keeps ``clear`` from its point and a leader joins them.

        Returns
        -------
        (box, leader_end) or None
            The box (x0, y0, x1, y1) and where its leader ends (None for a centred box); None when
            no allowed spot exists.
        """
        a = self.points[index]
        size = np.asarray(size, dtype=float)
        x0, y0, x1, y1 = self.region
        if size[0] > x1 - x0 or size[1] > y1 - y0:
            return None
        boxes, dist = self._candidates(a, size, centred, reach)
        inside = (boxes[:, 0] >= x0) & (boxes[:, 1] >= y0) & (boxes[:, 2] <= x1) & (boxes[:, 3] <= y1)
        boxes, dist = boxes[inside], dist[inside]
        if len(boxes) == 0:
            return None
        # what lies near: placed boxes, leaders, labelled points and other points in reach
        r = reach + self.clear + float(size.max()) + 2 * self.gap
        window = np.concatenate([a - r, a + r])
        near_boxes = self.boxes[_overlaps(self.boxes, window[None], 0.0)[:, 0]]
        lead = self.leaders
        if len(lead):
            lo, hi = np.minimum(lead[:, :2], lead[:, 2:]), np.maximum(lead[:, :2], lead[:, 2:])
            lead = lead[_overlaps(np.concatenate([lo, hi], axis=1), window[None], 0.0)[:, 0]]
        near = self._near(window)
        near = near[near != index]
        taken = near[self.labelled[near]]
        anchors = self.points[taken[~np.all(self.points[taken] == a, axis=1)]]
        ok = ~_overlaps(boxes, near_boxes, self.gap).any(axis=1)
        ok &= ~_contains(boxes, anchors, self.clear).any(axis=1)
        if len(lead):
            ok &= ~segments_hit_boxes(lead[:, :2], lead[:, 2:], boxes, pad=1.0).any(axis=0)
        boxes, dist = boxes[ok], dist[ok]
        if len(boxes) == 0:
            return None
        ends = _nearest_on_boxes(a, boxes)
        led = dist > 0
        if led.any():
            starts = np.broadcast_to(a, (int(led.sum()), 2))
            bad = segments_hit_boxes(starts, ends[led], near_boxes, pad=1.0).any(axis=1)
            if len(lead):
                bad |= segments_cross(starts, ends[led], lead[:, :2], lead[:, 2:]).any(axis=1)
            bad |= (_point_segment_distance(starts, ends[led], anchors) < self.radius + 1.0).any(axis=1)
            keep = np.ones(len(boxes), dtype=bool)
            keep[np.flatnonzero(led)[bad]] = False
            boxes, dist, ends, led = boxes[keep], dist[keep], ends[keep], led[keep]
        if len(boxes) == 0:
            return None
        # the points a box covers (those still to be labelled could not be after)
        grown = boxes + np.array([-1.0, -1.0, 1.0, 1.0]) * self.clear
        cost = dist + self.gap * np.minimum(self._box_sums(0, grown, index), 250)
        # a leader over another point's marker reads as that point's; over one still to be labelled
        # it also blocks that one's own leader
        if led.any():
            t = np.linspace(0.0, 1.0, 12)[1:]
            along = a + t[None, :, None] * (ends[led] - a)[:, None, :]  # (K, 11, 2)
            r = self.radius + 1.0
            spots = np.concatenate([along - r, along + r], axis=2).reshape(-1, 4)
            over = self._box_sums(0, spots, index).reshape(len(along), -1).sum(axis=1)
            cost[led] += self.gap * np.minimum(over, 250)
        # a label nearer other points than its own reads as theirs
        halo = boxes + np.maximum(dist - self.clear, 0.0)[:, None] * np.array([-1.0, -1.0, 1.0, 1.0])
        cost += 3.0 * self.gap * np.minimum(self._box_sums(2, halo, index), 8)
        # a moat: points still to be labelled need room beside them for their leaders to get out
        moat = boxes + np.array([-1.0, -1.0, 1.0, 1.0]) * 5 * self.clear
        cost += 8.0 * self.gap * np.minimum(self._box_sums(1, moat, index), 10)
        # away from the crowd: a label beyond its neighbours, on the far side of its point from
        # them, leaves their leaders a way out (a leader as long as the crowd is wide costs nothing)
        crowd = self.points[near]
        far = np.hypot(*(crowd - a).T)
        crowd, far = crowd[far < 12 * self.gap], far[far < 12 * self.gap]
        if len(crowd):
            cost += np.maximum(0.0, min(float(far.max()) + self.gap, reach / 2) - dist)
            out = a - crowd.mean(axis=0)
            norm = np.hypot(*out)
            if norm > 1e-9:
                way = (boxes[:, :2] + boxes[:, 2:]) / 2 - a
                way /= np.maximum(np.hypot(*way.T), 1e-9)[:, None]
                cost += _OUTWARD * self.gap * (1.0 - way @ (out / norm))
        k = int(np.argmin(cost))
        box = boxes[k]
        end = ends[k] if led[k] else None
        self.restore(index, (box, end))
        return box, end

    def remove(self, index: int) -> tuple | None:
        """Take point ``index``'s label away (it is again to be labelled); returns what
        :meth:`restore` puts back, or None when it had none."""
        if not self.labelled[index]:
            return None
        (k,) = np.flatnonzero(self._box_owner == index)
        box = self.boxes[k]
        keep = self._box_owner != index
        self.boxes, self._box_owner = self.boxes[keep], self._box_owner[keep]
        mine = self._leader_owner == index
        end = self.leaders[mine][0, 2:] if mine.any() else None
        self.leaders, self._leader_owner = self.leaders[~mine], self._leader_owner[~mine]
        self.labelled[index] = False
        self.waiting[index] = True
        self._count(index, 1.0)
        return box, end

    def restore(self, index: int, placed: tuple) -> None:
        """Put a label (box, leader end or None) of point ``index`` in."""
        box, end = placed
        self.boxes = np.concatenate([self.boxes, np.asarray(box, dtype=float)[None]])
        self._box_owner = np.append(self._box_owner, index)
        self._count(index, -1.0)
        self.labelled[index] = True
        self.waiting[index] = False
        if end is not None:
            segment = np.concatenate([self.points[index], end])[None]
            self.leaders = np.concatenate([self.leaders, segment])
            self._leader_owner = np.append(self._leader_owner, index)

    def neighbours(self, index: int, limit: int) -> list[int]:
        """The labelled points whose labels lie nearest point ``index`` (box or leader), nearest
        first: the ones most likely in its way."""
        a = self.points[index]
        owners = self._box_owner >= 0
        boxes, who = self.boxes[owners], self._box_owner[owners]
        d_box = np.hypot(*(_nearest_on_boxes(a, boxes) - a).T) if len(boxes) else np.zeros(0)
        d_lead = _point_segment_distance(self.leaders[:, :2], self.leaders[:, 2:], a[None])[:, 0]
        dist: dict[int, float] = {}
        for i, d in [*zip(who, d_box, strict=True), *zip(self._leader_owner, d_lead, strict=True)]:
            dist[int(i)] = min(dist.get(int(i), np.inf), float(d))
        return sorted(dist, key=lambda i: (dist[i], i))[:limit]


def thumbnail_points(n_thumbnails: int, size: float | None = None) -> float:
    """Default longest side of a thumbnail, in points: 56 up to 12 thumbnails, then shrinking with
    the square root of their number (so their total area stays about constant), never below 20."""
    if size is not None:
        return float(size)
    return float(np.clip(56.0 * np.sqrt(12.0 / max(n_thumbnails, 1)), 20.0, 56.0))


def _points(size: Any) -> float:
    """A font size (points or a name such as ``"small"``) in points, under the current rcParams."""
    from matplotlib.font_manager import FontProperties

    return float(FontProperties(size=size).get_size_in_points())


def _marker_paths(markers: Sequence[str]) -> list:
    """The path of each marker, scaled as ``scatter`` scales its marker (a unit-sized glyph)."""
    from matplotlib.markers import MarkerStyle

    made: dict[str, Any] = {}
    for marker in dict.fromkeys(markers):
        style = MarkerStyle(marker)
        made[marker] = style.get_path().transformed(style.get_transform())
    return [made[m] for m in markers]


def _opaque(colour, below=(1.0, 1.0, 1.0, 1.0)) -> tuple:
    """``colour`` composited over ``below`` (a translucent or "none" face seen on what is under it)."""
    import matplotlib.colors as mcolors

    r, g, b, alpha = mcolors.to_rgba(colour)
    under = np.array(mcolors.to_rgba(below)[:3])
    rgb = alpha * np.array([r, g, b]) + (1 - alpha) * under
    return (*(float(v) for v in rgb), 1.0)


def _renderer(fig):
    """The figure's renderer, or a standalone Agg renderer at its dpi."""
    get = getattr(fig.canvas, "get_renderer", None)
    if get is not None:
        return get()
    from matplotlib.backends.backend_agg import RendererAgg

    return RendererAgg(1, 1, fig.dpi)


def _corner_boxes(region, size, gap) -> list[tuple[str, np.ndarray]]:
    """Boxes of ``size`` in the four corners of ``region``, lower right first."""
    x0, y0, x1, y1 = region
    w, h = size
    spots = {
        "lower right": (x1 - gap - w, y0 + gap),
        "lower left": (x0 + gap, y0 + gap),
        "upper right": (x1 - gap - w, y1 - gap - h),
        "upper left": (x0 + gap, y1 - gap - h),
    }
    return [(name, np.array([x, y, x + w, y + h])) for name, (x, y) in spots.items()]


# ------------------------------------------------------------------------------- panel labels
class _PanelLabels:
    """The thumbnails, callouts, leaders and count note of one panel, placed in display pixels
    (again whenever the panel's size, the dpi or the view changed) and drawn by an artist of the
    Axes (:func:`_layer_artist`)."""

    def __init__(self, ax, rows, candidates, caps, style) -> None:
        self.ax = ax
        self.rows = np.asarray(rows, dtype=int)  # coords_ rows drawn as points in this panel
        self.candidates = candidates  # coords_ rows that may be labelled, with their kind
        self.caps = caps  # {"thumbnail": int | None, "callout": int | None}
        self.style = style  # everything the drawing needs (colours, sizes, texts, thumbnails)
        self._key: tuple[float, ...] | None = None
        self._texts: dict[int, Any] = {}
        self._thumb_images: dict[int, Any] = {}
        self.scale = 1.0  # of the thumbnails: smaller when a small map does not fit whole
        self._note_lines = 1
        self._thumbs: dict[int, Any] = {}
        # (row, pixels per point, scale) -> the label's box size and offset (see _size)
        self._sizes: dict[tuple[int, float, float], tuple[np.ndarray, np.ndarray]] = {}
        self.texts: list[Text] = []
        self.text_rows: list[int] = []
        self.thumbnails: list[AnnotationBbox] = []
        self.thumbnail_rows: list[int] = []
        self.leaders: list[Line2D] = []
        self.leader_rows: list[int] = []
        self.note: Text | None = None
        self.axis_note, self.axis_note_set = None, False

    # -- artists, made once per row
    def _callout(self, row: int):
        if row not in self._texts:
            from matplotlib.text import Text

            s = self.style
            t = Text(
                0.0,
                0.0,
                s["callout_text"](row),
                fontsize=s["fontsize"],
                ha="center",
                va="center",
                linespacing=1.15,
                color=s["text_colour"],
                parse_math=False,
                clip_on=False,
                bbox=dict(
                    boxstyle=f"round,pad={_BOX_PAD}",
                    facecolor=s["face"],
                    edgecolor=s["colours"][row],
                    linewidth=1.0,
                ),
            )
            t.set_figure(self.ax.figure)
            patch = t.get_bbox_patch()
            assert patch is not None  # made with bbox=
            patch.set_figure(self.ax.figure)  # so that the box, too, can be measured
            t.axes = self.ax
            self._texts[row] = t
        return self._texts[row]

    def _thumbnail(self, row: int):
        if row not in self._thumbs:
            from matplotlib.offsetbox import AnnotationBbox, OffsetImage

            s = self.style
            arr = rgb_array(s["thumbnails"][row])
            box = AnnotationBbox(
                OffsetImage(arr, zoom=self.scale * s["thumb_pt"] / max(arr.shape[:2])),
                (0.0, 0.0),
                xycoords="data",
                frameon=True,
                pad=0.15,
                annotation_clip=False,
                bboxprops=dict(edgecolor=s["colours"][row], facecolor=s["face"], linewidth=1.5),
            )
            box.set_figure(self.ax.figure)
            box.axes = self.ax
            self._thumbs[row] = box
            self._thumb_images[row] = box.offsetbox
        return self._thumbs[row]

    def _zoom(self, row: int) -> None:
        """The thumbnail's image at the panel's current scale."""
        image = self._thumb_images[row]
        image.set_zoom(self.scale * self.style["thumb_pt"] / max(image.get_data().shape[:2]))

    def _size(self, row: int, kind: str, renderer) -> tuple[np.ndarray, np.ndarray]:
        """(width, height) of the label's box in pixels, and the offset from the artist's position
        to the box's lower-left corner (both at the renderer's dpi)."""
        key = (row, float(renderer.points_to_pixels(1.0)), self.scale if kind == "thumbnail" else 1.0)
        if key not in self._sizes:
            from matplotlib.transforms import Bbox, IdentityTransform

            if kind == "thumbnail":
                artist = self._thumbnail(row)
                self._zoom(row)
                artist.xycoords = artist.boxcoords = IdentityTransform()
                artist.xy = artist.xybox = (0.0, 0.0)
                box = artist.get_window_extent(renderer)
                artist.xycoords = artist.boxcoords = "data"
            else:  # the text's extent, grown by the box's padding (the round corners stay inside)
                artist = self._callout(row)
                artist.set_transform(IdentityTransform())
                artist.set_position((0.0, 0.0))
                text = artist.get_window_extent(renderer)
                artist.set_transform(self.ax.transData)
                pad = _BOX_PAD * float(renderer.points_to_pixels(self.style["fontsize"]))
                box = Bbox.from_extents(text.x0 - pad, text.y0 - pad, text.x1 + pad, text.y1 + pad)
            self._sizes[key] = (np.array([box.width, box.height]) + 1.0, np.array([box.x0, box.y0]) - 0.5)
        return self._sizes[key]

    # -- placement
    def place(self, renderer, *, force: bool = False) -> None:
        ax = self.ax
        box = ax.get_window_extent(renderer)
        key: tuple[float, ...] = (
            round(box.width, 3),
            round(box.height, 3),
            float(renderer.points_to_pixels(1.0)),
        )
        key += tuple(ax.get_xlim()) + tuple(ax.get_ylim())
        if key == self._key and not force:
            return
        self._key = key
        s = self.style
        px = float(renderer.points_to_pixels(1.0))
        region = np.array([box.x0 + 2, box.y0 + 2, box.x1 - 2, box.y1 - 2])
        data_xy = s["xy"]
        points = ax.transData.transform(data_xy[self.rows]) if len(self.rows) else np.zeros((0, 2))
        fixed = []
        legend = s["legend"]
        if legend is not None and legend.axes is ax:
            fixed.append(legend.get_window_extent(renderer).extents)
        if not self.candidates:
            self._apply([], None, None)
            return
        has_thumbs = any(k == "thumbnail" for _, k in self.candidates)
        few = len(self.candidates) <= _FEW and all(
            cap is None or cap >= len(self.candidates) for cap in self.caps.values()
        )

        def attempt(note_box):
            """The placement with the most labels: in coverage order with thumbnails at full size;
            when some labels of a small map find no spot, more passes (a small map is best
            labelled whole): the labels that found no spot first, the others shuffled (seeded), with
            longer leaders in the second half, then smaller thumbnails."""
            self.scale = 1.0
            placed, failed, order = self._place_all(renderer, region, points, fixed, note_box, px)
            best = (1.0, placed, failed)
            if not failed or not few:
                return placed
            rng = np.random.default_rng(0)
            passes = int(np.clip(_PASS_BUDGET // len(self.candidates), 3, 8))
            shrink = [v for v in _SHRINK[1:] if has_thumbs and s["thumb_pt"] * v >= _MIN_THUMB_PT]
            tries = [(1.0, 1.0), (1.0, _STRETCH)] * (passes // 2) + [(v, 1.0) for v in shrink]
            idle = 0  # passes in a row that labelled no more
            for scale, stretch in tries:
                if not self._unlabelled(best[1]):
                    break
                if scale == 1.0 and idle >= 4:
                    continue  # on to smaller thumbnails
                if scale != 1.0 and not any(self.candidates[k][1] == "thumbnail" for k in best[2]):
                    break  # only thumbnails get smaller
                first = list(best[2])
                rest = [k for k in range(len(self.candidates)) if k not in set(first)]
                order = [*rng.permutation(first), *rng.permutation(rest)]
                self.scale = scale
                again = self._place_all(renderer, region, points, fixed, note_box, px, order, stretch=stretch)
                idle += 1
                if len(again[0]) > len(best[1]):
                    best, idle = (scale, again[0], again[1]), 0
            self.scale = best[0]
            return best[1]

        note_box = self._note_box(renderer, region, points, fixed) if self._note_certain() else None
        placed = attempt(note_box)
        if self._unlabelled(placed) and note_box is None:
            # the note in a corner the labels left free, else the labels again around it
            note_box = self._note_box(renderer, region, points, fixed, placed)
            if note_box is None:
                note_box = self._note_box(renderer, region, points, fixed)
                placed = attempt(note_box)
        note_text = self._note_words(placed) if self._unlabelled(placed) else None
        self._apply(placed, note_box, note_text)

    def _note_certain(self) -> bool:
        """Whether some items will be left without labels whatever the room: more candidates than a
        cap, or fewer candidates than items of their kind."""
        for kind, cap in self.caps.items():
            n = sum(1 for _, k in self.candidates if k == kind)
            if cap is not None and n > cap:
                return True
        return any(self.style["totals"][k] > self._candidates_of_kind[k] for k in self._candidates_of_kind)

    @functools.cached_property
    def _candidates_of_kind(self) -> dict[str, int]:
        """Item kind ("text", "image", "point") -> number of candidates of that kind."""
        kinds = self.style["kinds"]
        out: dict[str, int] = {}
        for row, _ in self.candidates:
            out[kinds[row]] = out.get(kinds[row], 0) + 1
        return out

    def _unlabelled(self, placed) -> bool:
        done = self._labelled_counts(placed)
        return any(done.get(k, 0) < self.style["totals"][k] for k in self._candidates_of_kind)

    def _labelled_counts(self, placed) -> dict[str, int]:
        kinds = self.style["kinds"]
        out: dict[str, int] = {}
        for row, *_ in placed:
            out[kinds[row]] = out.get(kinds[row], 0) + 1
        return out

    def _note_words(self, placed, template: bool = False) -> str:
        """ "12 of 300 texts and 40 of 150 images labelled" (on two lines where the panel is narrow);
        ``template``: every count at its largest, to measure."""
        done = self._labelled_counts(placed)
        totals = self.style["totals"]
        parts = []
        for kind in ("text", "image", "point"):
            if kind in self._candidates_of_kind:
                n = totals[kind]
                k = n if template else done.get(kind, 0)
                if k < n or template:
                    parts.append(f"{k:,} of {plural(n, kind)}")
        if not parts:
            return ""
        return (" and\n" if self._note_lines == 2 else " and ").join(parts) + " labelled"

    def _note_artist(self, text: str):
        if self.note is None:
            from matplotlib.text import Text

            s = self.style
            self.note = Text(
                0.0,
                0.0,
                text,
                fontsize=s["note_size"],
                ha="left",
                va="bottom",
                color=s["text_colour"],
                parse_math=False,
                clip_on=False,
                bbox=dict(boxstyle="square,pad=0.25", facecolor=s["face"], edgecolor="none"),
            )
            self.note.set_figure(self.ax.figure)
            self.note.axes = self.ax
        self.note.set_text(text)
        return self.note

    def _note_box(self, renderer, region, points, fixed, placed=None):
        """The corner of the panel for the count note: free of the legend (and, given ``placed``,
        of those labels, their leaders and their points), covering fewest points; None if no corner
        is free. The note takes two lines where one is wider than the panel."""
        from matplotlib.transforms import IdentityTransform

        gap = _GAP_PT * float(renderer.points_to_pixels(1.0))
        for lines in (1, 2):
            self._note_lines = lines
            note = self._note_artist(self._note_words([], template=True))
            note.set_transform(IdentityTransform())
            note.set_position((0.0, 0.0))
            note.update_bbox_position_size(renderer)
            ext = note.get_bbox_patch().get_window_extent(renderer)
            note.set_transform(self.ax.transData)
            if ext.width + 2 * gap <= region[2] - region[0] or lines == 2:
                break
        size = np.array([ext.width, ext.height]) + 1.0
        blocks = np.array(fixed).reshape(-1, 4)
        leaders = np.zeros((0, 4))
        anchors = np.zeros((0, 2))
        if placed:
            position = {int(r): k for k, r in enumerate(self.rows)}
            blocks = np.concatenate([blocks, np.array([p[2] for p in placed])])
            anchors = points[[position[p[0]] for p in placed]]
            ends = [(anchors[i], p[3]) for i, p in enumerate(placed) if p[3] is not None]
            leaders = np.array([np.concatenate(e) for e in ends]).reshape(-1, 4)
        best, best_cost = None, None
        for _, corner in _corner_boxes(region, size, 1.0):
            if corner[0] < region[0] or corner[1] < region[1]:
                continue
            if _overlaps(corner[None], blocks, gap).any() or _contains(corner[None], anchors, gap).any():
                continue
            if segments_hit_boxes(leaders[:, :2], leaders[:, 2:], corner[None], pad=1.0).any():
                continue
            cost = int(_contains(corner[None], points, gap).sum())
            if best_cost is None or cost < best_cost:
                best, best_cost = corner, cost
        self._note_offset = np.array([ext.x0, ext.y0]) - 0.5
        return best

    def _place_all(self, renderer, region, points, fixed, note_box, px, order=None, *, stretch=1.0) -> tuple:
        """One greedy pass: the candidates in ``order`` (default: coverage order), each placed
        where it fits. Returns (placed, the candidates that found no spot, the order tried)."""
        s = self.style
        obstacles = list(fixed) + ([note_box] if note_box is not None else [])
        placer = LabelPlacer(
            region,
            points,
            np.array(obstacles).reshape(-1, 4),
            gap=_GAP_PT * px,
            clear=s["clear_pt"] * px,
            radius=s["marker_radius_pt"] * px,
        )
        position = {int(r): k for k, r in enumerate(self.rows)}
        rows = np.array([r for r, _ in self.candidates], dtype=int)
        index = np.array([position[r] for r in rows], dtype=int)
        placer.waiting[index] = True
        kinds = [k for _, k in self.candidates]
        counts = {"thumbnail": 0, "callout": 0}
        caps = self.caps

        def full(kind: str) -> bool:
            return caps[kind] is not None and counts[kind] >= caps[kind]

        placed: dict[int, tuple] = {}  # candidate -> (row, kind, box, leader end, offset)
        failed, tried, failures, swaps = [], [], 0, 0
        k_of = {int(i): k for k, i in enumerate(index)}

        def put(k: int):
            kind = kinds[k]
            size, offset = self._size(int(rows[k]), kind, renderer)
            if kind == "thumbnail":
                reach = _THUMB_REACH * s["thumb_pt"] * self.scale * px * stretch
            else:
                reach = _TEXT_REACH_EM * s["fontsize"] * px * stretch
            got = placer.place(index[k], size, centred=kind == "thumbnail", reach=reach)
            return None if got is None else (int(rows[k]), kind, got[0], got[1], offset)

        for k in _interleaved(points[index], kinds) if order is None else order:
            tried.append(k)
            kind = kinds[k]
            if full(kind):
                if all(full(c) for c in set(kinds)):
                    break
                continue
            got = put(k)
            # no spot: a label nearby moved out of the way, this one placed, that one again
            for other in placer.neighbours(index[k], _SWAPS) if got is None and swaps < _SWAP_BUDGET else []:
                swaps += 1
                j = k_of[other]
                saved = placer.remove(other)
                got = put(k)
                again = put(j) if got is not None else None
                if again is not None:
                    placed[j] = again
                    break
                if got is not None:
                    placer.remove(index[k])
                    got = None
                assert saved is not None  # a neighbour is a placed label
                placer.restore(other, saved)
            if got is None:
                failed.append(k)
                failures += 1
                if failures >= _GIVE_UP:  # the panel is full
                    break
                continue
            failures = 0
            counts[kind] += 1
            placed[k] = got
        return list(placed.values()), failed, tried

    def _apply(self, placed, note_box, note_text) -> None:
        """Move the artists to their boxes (data coordinates of the current view)."""
        from matplotlib.lines import Line2D

        ax, s = self.ax, self.style
        to_data = ax.transData.inverted().transform
        self.texts, self.text_rows, self.thumbnails, self.thumbnail_rows = [], [], [], []
        self.leaders, self.leader_rows = [], []
        for row, kind, box, end, offset in placed:
            if kind == "thumbnail":
                artist = self._thumbnail(row)
                self._zoom(row)
                centre = (box[:2] + box[2:]) / 2
                artist.xy = artist.xybox = tuple(to_data(centre[None])[0])
                self.thumbnails.append(artist)
                self.thumbnail_rows.append(row)
            else:
                artist = self._callout(row)
                artist.set_position(tuple(to_data((box[:2] - offset)[None])[0]))
                self.texts.append(artist)
                self.text_rows.append(row)
            if end is not None:
                ends = np.stack([s["xy"][row], to_data(end[None])[0]])
                line = Line2D(
                    ends[:, 0],
                    ends[:, 1],
                    color=s["colours"][row],
                    linewidth=s["leader_width"],
                    solid_capstyle="butt",
                    clip_on=False,
                )
                line.set_figure(ax.figure)
                line.axes = ax
                line.set_transform(ax.transData)
                self.leaders.append(line)
                self.leader_rows.append(row)
        note, self.note, self.axis_note = self.note, None, None
        if note_text and note_box is not None:
            self.note = note if note is not None else self._note_artist(note_text)
            self.note.set_text(note_text)
            self.note.set_transform(ax.transData)
            self.note.set_position(tuple(to_data((note_box[:2] - self._note_offset)[None])[0]))
        elif note_text:  # no corner of a very small panel is free: below it, as its x label
            ax.set_xlabel(note_text, fontsize=s["note_size"], parse_math=False)
            self.axis_note = ax.xaxis.label
        elif self.axis_note_set:
            ax.set_xlabel("")
        self.axis_note_set = self.axis_note is not None

    def children(self) -> list:
        return [*self.leaders, *self.thumbnails, *self.texts] + ([self.note] if self.note is not None else [])


@functools.cache
def _layer_artist():
    """The Artist class that draws a panel's labels, placing them again first when the panel's
    size, the dpi or the view changed (made when first needed: matplotlib is imported lazily)."""
    from matplotlib.artist import Artist

    class FeatureSpaceLabels(Artist):
        """Thumbnails, callouts, leaders and the count note of one feature-space panel."""

        def __init__(self, labels: _PanelLabels) -> None:
            super().__init__()
            self.labels = labels
            self.set_in_layout(False)
            self.set_zorder(2.5)

        def get_children(self):
            return self.labels.children()

        def draw(self, renderer):
            if not self.get_visible():
                return
            self.labels.place(renderer)
            for artist in self.labels.children():
                artist.draw(renderer)
            self.stale = False

    # findable by pickle (a figure pickled and loaded again keeps its labels)
    FeatureSpaceLabels.__module__ = __name__
    FeatureSpaceLabels.__qualname__ = FeatureSpaceLabels.__name__ = "_FeatureSpaceLabels"
    globals()["_FeatureSpaceLabels"] = FeatureSpaceLabels
    return FeatureSpaceLabels


def __getattr__(name: str):
    if name == "_FeatureSpaceLabels":  # unpickling a figure before any was drawn here
        return _layer_artist()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ---------------------------------------------------------------------------------------- title
def _reduction_text(reduction: dict[str, Any]) -> str:
    """``{"method": "umap", "n_neighbors": 13, ...}`` -> ``UMAP (n_neighbors=13, ...)``."""
    if not reduction:
        return ""
    names = {"umap": "UMAP", "tsne": "t-SNE", "pca": "PCA"}
    method = names.get(str(reduction.get("method", "")), str(reduction.get("method", "")).upper())
    params = ", ".join(f"{k}={v}" for k, v in reduction.items() if k != "method" and v is not None)
    return f"{method} ({params})" if params else method


def _callout_of(names, wrap_width: int, max_chars: int | None, row: int) -> str:
    return callout_text(names[row], wrap_width, max_chars)


def _chosen_rows(label: Any, n: int) -> np.ndarray | None:
    """``label=``: None, a boolean mask of length n, or row indices -> sorted unique rows."""
    if label is None:
        return None
    arr = np.asarray(label)
    if arr.dtype == bool:
        if arr.shape != (n,):
            raise InputError(
                f"label as a boolean mask must have one entry per item ({n}), got shape {arr.shape}"
            )
        return np.flatnonzero(arr)
    if arr.ndim == 0:
        arr = arr[None]
    if arr.size == 0:
        return np.zeros(0, dtype=int)
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        raise InputTypeError(
            f"label must be row indices (ints) or a boolean mask of length {n}, "
            f"got {arr.dtype} of shape {arr.shape}"
        )
    if arr.min() < 0 or arr.max() >= n:
        raise InputError(f"label indices must lie in [0, {n - 1}], got {arr.min()} to {arr.max()}")
    return np.unique(arr)


# -------------------------------------------------------------------------------------- display
class FeatureSpaceDisplay:
    """A 2-D map of image and text embeddings.

    Build it with :func:`blipviz.feature_space_map` (computes the coordinates) or
    :meth:`from_coordinates` (coordinates computed elsewhere), then ``.plot(ax=None, ...)``.

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
        Seed of the reduction.
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
        The image thumbnails drawn.
    thumbnail_rows_ : list of int
        The ``coords_`` row of each thumbnail drawn.
    texts_ : list of matplotlib.text.Text
        The callouts drawn (texts; names of points chosen with ``label=``), each in a box
        (``get_bbox_patch()``).
    text_rows_ : list of int
        The ``coords_`` row of each callout drawn.
    hidden_thumbnail_rows_ : list of int
        Rows of images with a thumbnail that is not drawn (beyond what fits): their points are.
    leaders_ : list of matplotlib.lines.Line2D
        Lines from a point (their first vertex, in data coordinates) to its label's box.
    leader_rows_ : list of int
        The ``coords_`` row of each leader.
    notes_ : list of matplotlib.text.Text
        The count notes drawn ("12 of 300 texts labelled"), one per panel that left items unlabelled.
    colors_ : dict
        Label -> RGBA colour, from :func:`blipviz.display.labels.palette` (colours that vanish on
        the Axes' face left out).
    markers_ : dict
        Label -> marker of its points and legend entry: a second cue beside colour
        (:func:`blipviz.display.rules.category_cues`).
    legend_ : matplotlib.legend.Legend or None
    ax_ : matplotlib.axes.Axes
        The (first) panel.
    axes_ : list of matplotlib.axes.Axes
        Every panel: one, or images and texts side by side.
    figure_ : matplotlib.figure.Figure

    The label attributes describe the figure as last drawn (labels are placed again when the Axes'
    size in pixels, the dpi or the view changed).
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
        self._panels: list[_PanelLabels] = []

    @classmethod
    def from_coordinates(
        cls,
        xy: Any,
        *,
        kinds: Sequence[str] | None = None,
        names: Sequence[str] | None = None,
        labels: Sequence[Any] | None = None,
        thumbnails: Sequence[Any] | None = None,
        layout: str = "joint",
        centred: bool = False,
        net_name: str = "",
        embedding: str = "2-D map",
        method: str = "",
        reduction: dict[str, Any] | None = None,
    ) -> FeatureSpaceDisplay:
        """A map of coordinates computed elsewhere (a collection's map, a saved UMAP, fixed test
        layouts): nothing is reduced, nothing embedded.

        Parameters
        ----------
        xy : array-like of shape (n, 2)
            Finite coordinates, one row per item.
        kinds : sequence of str of length n, optional
            "image", "text" or "point" per item; default "image" where a thumbnail is given, else
            "point".
        names : sequence of str of length n, optional
            Texts of texts, file names of images; default ``"point i"``.
        labels : sequence of length n, optional
            Colour groups; default the kinds.
        thumbnails : sequence of PIL images, arrays or None, of length n, optional
        layout, centred, net_name, embedding, method, reduction
            As in the constructor (they only change the title); ``layout="per-modality"`` or
            ``"side-by-side"`` say the coordinates were centred per modality.

        Returns
        -------
        FeatureSpaceDisplay
        """
        xy = np.asarray(xy, dtype=np.float64)
        if xy.ndim != 2 or xy.shape[1] != 2 or len(xy) == 0:
            raise InputError(f"xy must have shape (n, 2) with n >= 1, got {xy.shape}")
        if not np.isfinite(xy).all():
            raise InputError("xy contains NaN or inf values")
        n = len(xy)

        def per_item(name, values):
            values = list(values)
            if len(values) != n:
                raise InputError(f"got {len(values)} {name} for {n} items")
            return values

        thumbs = per_item("thumbnails", thumbnails) if thumbnails is not None else [None] * n
        if kinds is None:
            kinds = ["image" if t is not None else "point" for t in thumbs]
        kinds = per_item("kinds", kinds)
        for k in kinds:
            check_choice("kind", k, ("image", "text", "point"))
        names = per_item("names", names) if names is not None else [f"point {i}" for i in range(n)]
        groups = per_item("labels", [str(v) for v in labels]) if labels is not None else list(kinds)
        coords = pd.DataFrame(
            {
                "x": xy[:, 0],
                "y": xy[:, 1],
                "kind": kinds,
                "label": groups,
                "name": [str(v) for v in names],
                "truncated_by": pd.Series([None] * n, dtype=object),
            }
        )
        return cls(
            coords,
            thumbs,
            method=method,
            random_state=None,
            layout=layout,
            centred=centred or layout != "joint",
            net_name=net_name,
            embedding=embedding,
            reduction=reduction,
        )

    # ------------------------------------------------------------------------------- title
    def title(self, width_chars: int = 90) -> str:
        """The default title: net, embedding and counts; the reduction with its parameters; and,
        when so computed, that each modality was centred on its own mean."""
        kinds = self.coords_["kind"]
        counts = [
            f"{int((kinds == k).sum()):,} {k}s" for k in ("image", "text", "point") if (kinds == k).any()
        ]
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
        label: Any = None,
        max_thumbnails: int | None = None,
        max_texts: int | None = None,
        thumbnail_size: float | None = None,
        marker_size: float | None = None,
        max_text_chars: int | None = 80,
        wrap_width: int = 28,
        fontsize: float | str | None = None,
        legend: bool | None = None,
        title: str | None = None,
    ) -> FeatureSpaceDisplay:
        """Draw the map: every item as a point coloured by label, images as thumbnails, texts as
        boxed callouts, each at or joined to its own point, none overlapping (see the module
        docstring for the rules).

        When not every label fits, a subset chosen for coverage is drawn (farthest-point order in
        screen space: outliers and every region first) and a note in a corner says how many, e.g.
        "12 of 300 texts and 40 of 150 images labelled". To see every item, hover over the map in
        :class:`blipviz.FeatureSpaceExplorer`; to choose which items are labelled, pass ``label=``.

        Parameters
        ----------
        ax : matplotlib Axes, or a pair of Axes for "side-by-side", optional
            Drawn into, and nothing outside it is changed (the title is the Axes' title, the legend
            and every label lie inside it; labels are placed again when a layout engine moves it).
            Default: a new figure sized for the layout.
        layout : {"joint", "per-modality", "side-by-side"}, optional
            Default: the layout the map was computed for. "per-modality" and "side-by-side" share
            their coordinates (each modality centred), so either draws a map computed for the other;
            "joint" coordinates are not centred, so a joint map draws only as "joint".
        label : sequence of int, or bool array of shape (n,), optional
            The items that may be labelled: ``coords_`` row indices, or a mask with one entry per
            item. Images with a thumbnail get their thumbnail; texts, points and images without a
            thumbnail get a callout of their ``name``. Those that fit are drawn (all, when there is
            room), and the note counts the rest. Default: texts and images with thumbnails, at most
            ``max_texts`` and ``max_thumbnails`` of them.
        max_thumbnails : int, optional
            At most this many thumbnails; default 48 (no cap with ``label=``). The points of all
            images are drawn.
        max_texts : int, optional
            At most this many callouts; default 40 (no cap with ``label=``).
        thumbnail_size : float, optional
            Longest side of a thumbnail, in points; default :func:`thumbnail_points` (56 for up to 12
            thumbnails, smaller for more).
        marker_size : float, optional
            Point area; default shrinks from 40 to 4 as the number of items grows.
        max_text_chars : int or None, default 80
            Texts up to this many characters are shown whole, longer ones elided in the middle at word
            boundaries (:func:`callout_text`); ``None``: always whole.
        wrap_width : int, default 28
            Callouts are wrapped into lines of about this many characters.
        fontsize : float or str, optional
            Of the callouts: points, or a name relative to ``rcParams["font.size"]`` ("small");
            default ``0.8 * rcParams["font.size"]`` (:data:`blipviz.display.rules.SMALL`), the
            size of the legend and the note too. Titles are ``rcParams["font.size"]``.
        legend : bool, optional
            Default: when there are 2 to 20 labels. Drawn below the map in a figure made here, else
            in the corner of the given Axes that covers fewest points (labels avoid it).
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
        import matplotlib.colors as mcolors

        c = self.coords_
        n = len(c)
        kinds = c["kind"].to_numpy()
        names = c["name"].astype(str).to_numpy()
        side = layout == "side-by-side" and (kinds == "image").any() and (kinds == "text").any()
        categories = list(dict.fromkeys(c["label"]))
        show_legend = legend if legend is not None else 2 <= len(categories) <= 20

        # which items may be labelled, and how
        has_thumb = np.array([t is not None for t in self.thumbnails], dtype=bool)
        as_thumb = (kinds == "image") & has_thumb
        has_words = np.array([bool(s.strip()) for s in names], dtype=bool)
        chosen = _chosen_rows(label, n)
        if chosen is None:
            eligible = np.flatnonzero(as_thumb | ((kinds == "text") & has_words))
            caps: dict[str, int | None] = {
                "thumbnail": _MAX_THUMBNAILS if max_thumbnails is None else int(max_thumbnails),
                "callout": _MAX_TEXTS if max_texts is None else int(max_texts),
            }
        else:
            eligible = chosen[as_thumb[chosen] | has_words[chosen]]
            caps = {"thumbnail": max_thumbnails, "callout": max_texts}
        n_thumbs = int(as_thumb[eligible].sum())
        if caps["thumbnail"] is not None:
            n_thumbs = min(n_thumbs, caps["thumbnail"])
        # sized for the thumbnails and for the crowd around them: a third of the labels
        crowd = min(len(eligible) // 3, caps["thumbnail"] or len(eligible)) if n_thumbs else 0
        thumb_pt = thumbnail_points(max(n_thumbs, crowd), thumbnail_size)
        size = marker_size if marker_size is not None else float(np.clip(400.0 / max(n, 1), 4.0, 40.0))

        fig, axes, own_figure, title_text = self._figure(ax, side, show_legend, len(categories), title)
        face = _opaque(axes[0].get_facecolor(), below=_opaque(fig.get_facecolor()))
        # a colour and a marker per category: colour-blind-safe colours that stand out on the face
        cues = dict(zip(categories, category_cues(len(categories), background=face), strict=True))
        self.colors_ = {v: mcolors.to_rgba(cue["color"]) for v, cue in cues.items()}
        self.markers_ = {v: cue["marker"] for v, cue in cues.items()}
        colours = [self.colors_[v] for v in c["label"]]
        paths = _marker_paths([self.markers_[v] for v in c["label"]])
        panels = [(axes[0], np.arange(n))]
        if side:
            panels = [(axes[0], np.flatnonzero(kinds != "text")), (axes[1], np.flatnonzero(kinds == "text"))]
        self._set_limits(axes, c, thumb_pt if n_thumbs else 0.0)
        self.scatters_ = []
        for panel, rows in panels:
            points = panel.scatter(
                c["x"].to_numpy()[rows],
                c["y"].to_numpy()[rows],
                c=[colours[i] for i in rows],
                s=size,
                linewidths=0,
                zorder=2,
            )
            points.set_paths([paths[i] for i in rows])  # each point its category's marker
            self.scatters_.append(points)
            panel.set_xticks([])
            panel.set_yticks([])
        self.scatter_ = self.scatters_[0]
        panel_titles = [""] * len(axes)
        if side:
            panel_titles = [
                f"images ({int((kinds == 'image').sum())})",
                f"texts ({int((kinds == 'text').sum())})",
            ]
        title_pt = font_size(TITLE)
        if own_figure:
            self._title_artist = fig.suptitle(
                title_text, fontsize=title_pt, y=1 - 0.08 / fig.get_figheight(), va="top", parse_math=False
            )
            for panel, words in zip(axes, panel_titles, strict=True):
                if words:
                    panel.set_title(words, fontsize=font_size(SMALL), parse_math=False)
        else:  # the given Axes' own titles: nothing drawn outside them
            first = title_text + (f"\n{panel_titles[0]}" if panel_titles[0] else "")
            self._title_artist = axes[0].set_title(first, fontsize=title_pt, parse_math=False)
            if side:
                axes[1].set_title(panel_titles[1], fontsize=title_pt, parse_math=False)

        self.legend_ = None
        if show_legend:
            self.legend_ = self._legend(fig, axes, categories, own_figure)

        # the layout engine (if any) first: the labels are placed for the Axes' final size
        engine = fig.get_layout_engine()
        if engine is not None and not own_figure:
            engine.execute(fig)
        xy = c[["x", "y"]].to_numpy(dtype=float)
        style = {
            "xy": xy,
            "colours": colours,
            "kinds": kinds,
            "thumbnails": self.thumbnails,
            "thumb_pt": thumb_pt,
            "fontsize": font_size(SMALL) if fontsize is None else _points(fontsize),
            "note_size": font_size(SMALL),
            "face": face,
            "text_colour": readable_text_colour(face),
            "clear_pt": float(np.sqrt(size)) / 2 + _CLEAR_PT,
            "marker_radius_pt": float(np.sqrt(size)) / 2,
            "leader_width": 0.8,
            "legend": self.legend_,
        }
        style["callout_text"] = functools.partial(_callout_of, names, wrap_width, max_text_chars)
        self._panels = []
        layer = _layer_artist()
        for panel, rows in panels:
            in_panel = np.zeros(n, dtype=bool)
            in_panel[rows] = True
            candidates = [
                (int(r), "thumbnail" if as_thumb[r] else "callout") for r in eligible if in_panel[r]
            ]
            totals = {k: int(((kinds == k) & in_panel).sum()) for k in ("image", "text", "point")}
            labels = _PanelLabels(panel, rows, candidates, caps, {**style, "totals": totals})
            panel.add_artist(layer(labels))
            self._panels.append(labels)
        renderer = _renderer(fig)
        for labels in self._panels:
            labels.place(renderer, force=True)
        # every text literal, and one warning per drawn text (title, legend, callout, note) whose
        # characters the font lacks, naming the font setting that draws them
        shown = [self._title_artist]
        if self.legend_ is not None and own_figure:
            shown += [*self.legend_.get_texts(), self.legend_.get_title()]
        finish_axes(axes, shown)
        self.ax_ = axes[0]
        self.axes_ = list(axes)
        self.figure_ = fig
        return self

    # ------------------------------------------------------------------ labels as last drawn
    @property
    def texts_(self) -> list:
        return [t for p in self._panels for t in p.texts]

    @property
    def text_rows_(self) -> list[int]:
        return [r for p in self._panels for r in p.text_rows]

    @property
    def thumbnails_(self) -> list:
        return [t for p in self._panels for t in p.thumbnails]

    @property
    def thumbnail_rows_(self) -> list[int]:
        return [r for p in self._panels for r in p.thumbnail_rows]

    @property
    def hidden_thumbnail_rows_(self) -> list[int]:
        shown = set(self.thumbnail_rows_)
        return [r for p in self._panels for r, k in p.candidates if k == "thumbnail" and r not in shown]

    @property
    def leaders_(self) -> list:
        return [t for p in self._panels for t in p.leaders]

    @property
    def leader_rows_(self) -> list[int]:
        return [r for p in self._panels for r in p.leader_rows]

    @property
    def notes_(self) -> list:
        return [n for p in self._panels for n in (p.note, p.axis_note) if n is not None]

    # -------------------------------------------------------------------------- internals
    def _legend(self, fig, axes, categories, own_figure):
        """Below the panels in a figure made here; else inside the first given Axes, in the corner
        whose box covers fewest points (fixed there: the labels avoid it)."""
        from matplotlib.lines import Line2D

        handles = [
            Line2D([], [], marker=self.markers_[v], linestyle="", color=self.colors_[v], label=str(v))
            for v in categories
        ]
        small = font_size(SMALL)
        if own_figure:
            legend = fig.legend(
                handles=handles,
                loc="lower center",
                bbox_to_anchor=(0.5, 0.0),
                ncol=min(len(categories), 5),
                fontsize=small,
                frameon=False,
            )
        else:
            ax = axes[0]
            engine = fig.get_layout_engine()
            if engine is not None:
                engine.execute(fig)
            legend = ax.legend(handles=handles, loc="upper right", fontsize=small, framealpha=0.9)
            for t in legend.get_texts():
                t.set_parse_math(False)
            renderer = _renderer(fig)
            ext = legend.get_window_extent(renderer)
            frame = ax.get_window_extent(renderer)
            pad = legend.borderaxespad * renderer.points_to_pixels(small)
            region = np.array([frame.x0 + pad, frame.y0 + pad, frame.x1 - pad, frame.y1 - pad])
            points = ax.transData.transform(self.coords_[["x", "y"]].to_numpy(dtype=float))
            best = min(
                _corner_boxes(region, (ext.width, ext.height), 0.0),
                key=lambda spot: int(_contains(spot[1][None], points)[0].sum()),
            )
            legend.set_loc(best[0])
        for t in legend.get_texts():
            t.set_parse_math(False)
        return legend

    def _figure(self, ax, side: bool, show_legend: bool, n_categories: int, title: str | None):
        """(figure, axes, made here, title): a new figure has room for the title's lines and the
        legend rows; the default title is wrapped to the figure's (or the given Axes') width."""
        title_pt = font_size(TITLE)

        def chars(width_in: float) -> int:
            return max(30, int(width_in * 72 / (0.6 * title_pt)))  # characters are about 0.6 em wide

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
                width_in = axes[0].get_window_extent().width / fig.dpi
                title = self.title(width_chars=chars(width_in))
            return fig, axes, False, title
        import matplotlib.pyplot as plt

        pw, ph = _PANEL_SIDE_IN if side else _PANEL_IN
        n_panels = 2 if side else 1
        width = 2 * _MARGIN_IN + n_panels * pw + (n_panels - 1) * 0.3
        if title is None:
            title = self.title(width_chars=chars(width))
        n_title_lines = title.count("\n") + 1
        small = font_size(SMALL)
        top = 0.12 + 1.3 * title_pt / 72 * n_title_lines + (1.6 * small / 72 + 0.1 if side else 0.08)
        legend_rows = -(-n_categories // min(max(n_categories, 1), 5)) if show_legend else 0
        bottom = _MARGIN_IN + (0.1 + 2.0 * small / 72 * legend_rows if legend_rows else 0.0)
        height = bottom + ph + top
        fig = plt.figure(figsize=(width, height))
        axes = []
        for k in range(n_panels):
            left = _MARGIN_IN + k * (pw + 0.3)
            axes.append(fig.add_axes((left / width, bottom / height, pw / width, ph / height)))
        if side:
            axes[1].sharex(axes[0])
            axes[1].sharey(axes[0])
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
