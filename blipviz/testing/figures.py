"""Geometric checks of drawn figures, for the cases an image diff is too blunt for: labels that do
not overlap and lie inside the figure, thumbnails inside their cells, a colorbar where values matter.

Every function draws the figure first (``fig.canvas.draw()``) so that extents are final, and
measures in display pixels.

Image tests (:func:`image_comparison`) draw fixed inputs, never a net's outputs nor a reduction's
(UMAP, PCA, t-SNE): their last bits follow the CPU's kernels (AVX-512 or AVX2, oneDNN, BLAS), and a
figure can amplify a last-bit change into a large image difference (a callout placed on the other side,
two equal scores sorted the other way, a tick moved, a noise thumbnail shifted by a pixel). A test
computes its result with the net (names, tokens, thumbnails) and replaces the numbers by fixed ones:
literal tables, or arrays made with ``+``, ``-``, ``*``, ``/`` alone (:func:`bump_maps`), which IEEE
arithmetic rounds alike on every CPU. What a net computes is drawn under the geometric checks only.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

__all__ = [
    "FIGURE_STYLE",
    "FIGURE_TOLERANCE",
    "assert_inside_figure",
    "assert_no_overlap",
    "bump_maps",
    "colorbars",
    "image_comparison",
    "overlapping_pairs",
    "visible_texts",
    "window_extent",
]

#: The pinned style of blipviz's image tests (as matplotlib's own tests pin theirs): matplotlib's
#: bundled DejaVu Sans, no hinting, fixed DPI; baselines then match on any machine within a tolerance.
FIGURE_STYLE = str(Path(__file__).with_name("figure_tests.mplstyle"))


def _drawn(fig):
    fig.canvas.draw()
    return fig.canvas.get_renderer()


def window_extent(artist, renderer=None):
    """The artist's extent in display pixels (a ``matplotlib.transforms.Bbox``)."""
    fig = artist.figure
    renderer = renderer or _drawn(fig)
    return artist.get_window_extent(renderer)


def visible_texts(fig, *, include_ticks: bool = True) -> list:
    """Every visible, non-empty Text artist in ``fig`` (titles, labels, annotations, tick labels)."""
    from matplotlib.text import Text

    _drawn(fig)
    ticks: set[int] = set()  # tick labels; those of ticks outside the view are never drawn
    hidden: set[int] = set()
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            low, high = sorted(axis.get_view_interval())
            pad = 1e-9 * max(1.0, abs(high - low))
            for tick in axis.majorTicks + axis.minorTicks:
                labels = {id(tick.label1), id(tick.label2)}
                ticks |= labels
                loc = tick.get_loc()
                if loc is None or not low - pad <= loc <= high + pad:
                    hidden |= labels
    found = []
    for artist in fig.findobj(Text):
        if not artist.get_visible() or not artist.get_text().strip() or id(artist) in hidden:
            continue
        if not include_ticks and id(artist) in ticks:
            continue
        axes = artist.axes
        if axes is not None and not axes.get_visible():
            continue
        found.append(artist)
    return found


def overlapping_pairs(artists: Sequence, *, pad_px: float = 0.0) -> list[tuple]:
    """Pairs of artists whose display extents overlap by more than ``pad_px`` pixels each way."""
    if not artists:
        return []
    renderer = _drawn(artists[0].figure)
    boxes = [a.get_window_extent(renderer) for a in artists]
    pairs = []
    for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
            a, b = boxes[i], boxes[j]
            dx = min(a.x1, b.x1) - max(a.x0, b.x0)
            dy = min(a.y1, b.y1) - max(a.y0, b.y0)
            if dx > pad_px and dy > pad_px:
                pairs.append((artists[i], artists[j]))
    return pairs


def assert_no_overlap(artists: Sequence, *, pad_px: float = 0.5, what: str = "labels") -> None:
    """Raise AssertionError naming the first overlapping pairs of ``artists``."""
    pairs = overlapping_pairs(artists, pad_px=pad_px)
    if pairs:
        shown = "; ".join(f"{_name(a)!r} / {_name(b)!r}" for a, b in pairs[:5])
        raise AssertionError(f"{len(pairs)} overlapping pair(s) of {what}: {shown}")


def assert_inside_figure(artists: Iterable, *, tol_px: float = 0.5) -> None:
    """Raise AssertionError when an artist reaches outside its figure."""
    artists = list(artists)
    if not artists:
        return
    fig = artists[0].figure
    renderer = _drawn(fig)
    frame = fig.bbox
    outside = []
    for artist in artists:
        box = artist.get_window_extent(renderer)
        if (
            box.x0 < frame.x0 - tol_px
            or box.y0 < frame.y0 - tol_px
            or box.x1 > frame.x1 + tol_px
            or box.y1 > frame.y1 + tol_px
        ):
            outside.append(_name(artist))
    if outside:
        raise AssertionError(f"{len(outside)} artist(s) outside the figure: {outside[:5]}")


def colorbars(fig) -> list:
    """The colorbars drawn in ``fig`` (``matplotlib.colorbar.Colorbar`` objects)."""
    found = []
    stack = list(fig.axes)
    seen: set[int] = set()
    while stack:  # the figure's Axes and their inset (child) Axes
        ax = stack.pop(0)
        if id(ax) in seen:
            continue
        seen.add(id(ax))
        bar = getattr(ax, "_colorbar", None)
        if bar is not None:
            found.append(bar)
        stack.extend(getattr(ax, "child_axes", []))
    return found


def _name(artist) -> str:
    get_text = getattr(artist, "get_text", None)
    if get_text is not None:
        return get_text()
    return type(artist).__name__


#: RMS tolerance (0-255 scale) of the image tests: text antialiasing moves a few pixels between
#: machines; a changed layout, colour or label moves far more. It does not absorb a figure drawn from
#: a net's numbers: their last bits can move a whole callout (see the module docstring).
FIGURE_TOLERANCE = 3.0


def bump_maps(
    grid: tuple[int, int], peaks: Sequence[tuple[float, float]], *, spread: float = 1.0
) -> np.ndarray:
    """Smooth maps over a patch grid, one per peak, for image tests: the same bits on every CPU.

    Map k is ``1 / (1 + d**2 / spread**2)``, d the distance in patches of each cell from
    ``peaks[k] = (row, col)`` (fractions allowed): 1 at the peak, 1/2 at ``spread`` patches. Only
    +, -, * and / are used, which IEEE arithmetic rounds alike everywhere (unlike a net's outputs, or
    ``exp``, whose last bits follow the CPU's kernels).

    Parameters
    ----------
    grid : (gh, gw)
    peaks : sequence of (row, col)
    spread : float, default 1

    Returns
    -------
    ndarray of shape (len(peaks), gh, gw), float64
    """
    gh, gw = grid
    rows = np.arange(gh, dtype=np.float64)[:, None]
    cols = np.arange(gw, dtype=np.float64)[None, :]
    maps = np.empty((len(peaks), gh, gw))
    for k, (row, col) in enumerate(peaks):
        dr, dc = rows - row, cols - col
        maps[k] = 1.0 / (1.0 + (dr * dr + dc * dc) / (spread * spread))
    return maps


def image_comparison(**options):
    """The pytest mark of blipviz's image tests: pytest-mpl's ``mpl_image_compare`` with the pinned
    style, the tolerance and the baselines in ``tests/baseline``. The test returns its figure, drawn
    from fixed inputs (see the module docstring): never from a net's or a reduction's numbers.

    Regenerate baselines (then open every changed PNG) with
    ``pytest tests -k figure --mpl-generate-path=tests/baseline``.
    """
    import pytest

    settings = {
        "style": FIGURE_STYLE,
        "tolerance": FIGURE_TOLERANCE,
        "baseline_dir": "baseline",
        "savefig_kwargs": {"dpi": 72},
        "deterministic": True,
    }
    settings.update(options)
    return pytest.mark.mpl_image_compare(**settings)
