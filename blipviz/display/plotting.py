"""Figures of computed results: the ITM / cosine heatmap, and helpers shared by every plot.

Displays follow scikit-learn's pattern: they hold computed data only; ``.plot(ax=None, ...)`` draws
onto a given Axes (or a new figure), stores ``ax_``, ``figure_`` (and ``im_`` for images) and returns
the display. No model runs here, ``plt.show()`` is never called, and matplotlib is imported inside
the functions that draw.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from ..errors import InputError

if TYPE_CHECKING:
    from ..analysis.scores import ScoreMatrix

__all__ = ["ScoreMatrixDisplay", "blend_heatmap", "shorten"]

_SORT_OPTIONS = (None, "rows", "columns", "both")
_KIND_LABELS = {"itm": "ITM match probability", "cosine": "cosine similarity"}


# ------------------------------------------------------------------------------------ helpers
def shorten(text: str, max_chars: int | None) -> str:
    """``text`` cut to ``max_chars`` characters with an ellipsis (``None``: unchanged)."""
    text = str(text)
    if max_chars is None or len(text) <= max_chars:
        return text
    return text[: max(1, max_chars - 1)].rstrip() + "…"


def _rgb_array(image: Any) -> np.ndarray:
    """PIL image or array -> uint8 array of shape (H, W, 3)."""
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    arr = np.asarray(image)
    if np.issubdtype(arr.dtype, np.floating):
        arr = np.round(np.clip(arr, 0.0, 1.0) * 255.0).astype(np.uint8)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    return np.ascontiguousarray(arr[:, :, :3].astype(np.uint8))


def new_axes(figsize: tuple[float, float], ax=None):
    """The given Axes and its figure, or a new figure with one Axes."""
    if ax is not None:
        return ax.figure, ax
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=figsize)
    return fig, ax


def add_thumbnail(ax, image: Any, xy, *, size_pt: float, xycoords="data", box_alignment=(0.5, 0.5), **kw):
    """Draw ``image`` (longest side ``size_pt`` points) at ``xy``; returns the AnnotationBbox."""
    from matplotlib.offsetbox import AnnotationBbox, OffsetImage

    arr = _rgb_array(image)
    zoom = size_pt / max(arr.shape[:2])
    box = AnnotationBbox(
        OffsetImage(arr, zoom=zoom),
        xy,
        xycoords=xycoords,
        box_alignment=box_alignment,
        frameon=kw.pop("frameon", False),
        pad=kw.pop("pad", 0.0),
        annotation_clip=False,
        **kw,
    )
    ax.add_artist(box)
    return box


def blend_heatmap(
    image: Any, heatmap: np.ndarray, *, alpha: float = 0.6, size: int | None = None
) -> np.ndarray:
    """Blend a map onto an image: red where the map is high, the image where it is low.

    Parameters
    ----------
    image : PIL.Image.Image or ndarray of shape (H, W, 3)
    heatmap : ndarray of shape (gh, gw)
        Any non-negative scale; it is divided by its maximum and resized (bilinear) to the image.
    alpha : float, default 0.6
        Opacity of the red at the map's maximum.
    size : int, optional
        Resize the image first so that its longest side is ``size`` pixels.

    Returns
    -------
    ndarray of shape (H, W, 3), uint8
    """
    rgb = Image.fromarray(_rgb_array(image))
    if size is not None and max(rgb.size) != size:
        scale = size / max(rgb.size)
        rgb = rgb.resize((max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale))))
    heat = np.asarray(heatmap, dtype=np.float32)
    heat = heat - min(0.0, float(heat.min()))
    top = float(heat.max())
    heat = heat / top if top > 0 else np.zeros_like(heat)
    resized = np.asarray(Image.fromarray(heat, mode="F").resize(rgb.size, Image.Resampling.BILINEAR))
    weight = np.clip(resized, 0.0, 1.0)[:, :, None] * alpha
    base = np.asarray(rgb, dtype=np.float32)
    red = np.array([255.0, 0.0, 0.0], dtype=np.float32)
    return np.round(base * (1.0 - weight) + red * weight).astype(np.uint8)


def _grid_axes(n: int, ncols: int | None, panel_in: float, axes=None):
    """A figure with ``n`` panels in a grid (or the given Axes, flattened); unused panels hidden."""
    if axes is not None:
        flat = list(np.ravel(axes))
        if len(flat) < n:
            raise InputError(f"need {n} Axes, got {len(flat)}")
        return flat[0].figure, flat[:n]
    import matplotlib.pyplot as plt

    ncols = ncols or min(n, 6)
    nrows = -(-n // ncols)
    fig, grid = plt.subplots(
        nrows, ncols, figsize=(panel_in * ncols, panel_in * nrows + 0.4), squeeze=False, layout="constrained"
    )
    flat = list(grid.ravel())
    for extra in flat[n:]:
        extra.set_axis_off()
    return fig, flat[:n]


def panel_grid(
    panels: Sequence[np.ndarray], titles: Sequence[str], *, ncols, axes, panel_in, title, **imshow_kw
):
    """Draw arrays as a labelled grid of images. Returns (figure, axes, images)."""
    fig, flat = _grid_axes(len(panels), ncols, panel_in, axes)
    images = []
    for ax, arr, label in zip(flat, panels, titles, strict=True):
        images.append(ax.imshow(arr, **imshow_kw))
        ax.set_title(label, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=10)
    return fig, np.array(flat, dtype=object), images


# --------------------------------------------------------------------------------- heatmap
def _cell_inches(n_texts: int, n_images: int) -> float:
    """Side of one heatmap cell, in inches: smaller for bigger matrices, within [0.28, 0.6]."""
    return float(np.clip(7.0 / max(n_texts, n_images, 1), 0.28, 0.6))


def score_matrix_figsize(
    scores: ScoreMatrix, *, max_label_chars: int | None = 40, colorbar: bool = True, thumbnails: bool = True
) -> tuple[float, float]:
    """(width, height) in inches of a figure that holds the heatmap of ``scores`` with its labels,
    thumbnails and colorbar (what :meth:`ScoreMatrixDisplay.plot` uses when given no Axes)."""
    n_images, n_texts = scores.shape
    cell = _cell_inches(n_texts, n_images)
    labels = [shorten(t, max_label_chars) for t in scores.texts] or [""]
    label_in = 0.07 * max(len(t) for t in labels) + 0.3
    image_label_in = 0.07 * max(len(str(t)) for t in scores.image_labels) if n_images > 1 else 0.3
    width = label_in + n_images * cell + (1.3 if colorbar else 0.3)
    height = n_texts * cell + (cell * 1.3 + 0.2 if thumbnails else 0) + min(image_label_in, 2.0) + 0.6
    return max(width, 3.0), max(height, 2.2)


class ScoreMatrixDisplay:
    """Heatmap of a :class:`~blipviz.ScoreMatrix`: texts as rows, images as columns.

    Build it with :meth:`blipviz.ScoreMatrix.plot` (or ``ScoreMatrixDisplay(scores).plot()``).

    Parameters
    ----------
    scores : ScoreMatrix of shape (n_images, n_texts)

    Attributes
    ----------
    im_ : matplotlib.image.AxesImage
        The heatmap; ``im_.get_array()`` is :attr:`values_`.
    values_ : ndarray of shape (n_texts, n_images)
        The scores as drawn: ``scores.values.T[row_order_][:, column_order_]``.
    row_order_ : ndarray of shape (n_texts,)
        Text index of each row, top to bottom.
    column_order_ : ndarray of shape (n_images,)
        Image index of each column, left to right.
    thumbnails_ : list of matplotlib.offsetbox.AnnotationBbox
        One image thumbnail above each column (empty when the scores carry no thumbnails).
    text_ : ndarray of shape (n_texts, n_images) of matplotlib.text.Text, or None
        The value annotations.
    colorbar_ : matplotlib.colorbar.Colorbar or None
    ax_ : matplotlib.axes.Axes
    figure_ : matplotlib.figure.Figure
    """

    def __init__(self, scores: ScoreMatrix) -> None:
        self.scores = scores

    def plot(
        self,
        ax=None,
        *,
        sort: str | None = None,
        annotate: bool | None = None,
        cmap: str = "viridis",
        vmin: float | None = None,
        vmax: float | None = None,
        thumbnails: bool = True,
        thumbnail_size: float | None = None,
        colorbar: bool = True,
        max_label_chars: int | None = 40,
        values_format: str = ".2f",
        title: str | None = None,
    ) -> ScoreMatrixDisplay:
        """Draw the heatmap.

        Parameters
        ----------
        ax : matplotlib Axes, optional
            Where to draw; default: a new figure sized for the matrix.
        sort : {None, "rows", "columns", "both"}, default None
            Order texts (rows) and/or images (columns) by their mean score, best first.
        annotate : bool, optional
            Write each value in its cell; default: when the matrix is at most 12 x 12.
        cmap : str or Colormap, default "viridis"
        vmin, vmax : float, optional
            Colour range; default [0, 1] for ITM probabilities, the data range for cosine scores.
        thumbnails : bool, default True
            Draw the image thumbnails above the columns (when the scores carry them).
        thumbnail_size : float, optional
            Longest side of a thumbnail in points; default: the column width (at most 56 pt).
        colorbar : bool, default True
        max_label_chars : int or None, default 40
            Row labels (texts) longer than this are shortened with an ellipsis.
        values_format : str, default ".2f"
            Format of the annotations.
        title : str, optional

        Returns
        -------
        ScoreMatrixDisplay
            ``self``, with the attributes above set.
        """
        if sort not in _SORT_OPTIONS:
            raise InputError(f"unknown sort {sort!r}; allowed values: {', '.join(map(repr, _SORT_OPTIONS))}")
        s = self.scores
        values = np.asarray(s.values, dtype=np.float64).T  # (n_texts, n_images)
        n_texts, n_images = values.shape
        if n_texts == 0 or n_images == 0:
            raise InputError(f"nothing to plot: the score matrix has shape {s.shape}")
        rows = np.arange(n_texts)
        cols = np.arange(n_images)
        if sort in ("rows", "both"):
            rows = np.argsort(-values.mean(axis=1), kind="stable")
        if sort in ("columns", "both"):
            cols = np.argsort(-values.mean(axis=0), kind="stable")
        shown = values[rows][:, cols]

        thumbs = s.thumbnails if thumbnails and s.thumbnails and len(s.thumbnails) == n_images else None
        if ax is None:
            figsize = score_matrix_figsize(
                s, max_label_chars=max_label_chars, colorbar=colorbar, thumbnails=thumbs is not None
            )
            fig, ax = new_axes(figsize)
            fig.set_layout_engine("constrained")
        else:
            fig = ax.figure

        if vmin is None and vmax is None and s.kind == "itm":
            vmin, vmax = 0.0, 1.0
        self.im_ = ax.imshow(shown, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto", interpolation="nearest")
        self.values_ = shown
        self.row_order_ = rows
        self.column_order_ = cols

        ax.set_yticks(np.arange(n_texts), [shorten(s.texts[i], max_label_chars) for i in rows])
        ax.set_xticks(np.arange(n_images), [str(s.image_labels[j]) for j in cols])
        small = 8 if max(n_texts, n_images) > 20 else 9
        ax.tick_params(axis="both", labelsize=small)
        if n_images > 4 or max(len(str(t)) for t in s.image_labels) > 12:
            for label in ax.get_xticklabels():
                label.set_rotation(60)
                label.set_horizontalalignment("right")
                label.set_rotation_mode("anchor")

        self.thumbnails_ = []
        if thumbs is not None:
            if thumbnail_size is None:
                col_pt = ax.get_position().width * fig.get_figwidth() * 72.0 / n_images
                thumbnail_size = float(np.clip(0.9 * col_pt, 8.0, 56.0))
            for x, j in enumerate(cols):
                self.thumbnails_.append(
                    add_thumbnail(
                        ax,
                        thumbs[j],
                        (x, 1.0),
                        size_pt=thumbnail_size,
                        xycoords=("data", "axes fraction"),
                        box_alignment=(0.5, 0.0),
                        xybox=(0.0, 3.0),
                        boxcoords="offset points",
                    )
                )

        if annotate is None:
            annotate = max(n_texts, n_images) <= 12
        self.text_ = None
        if annotate:
            norm = self.im_.norm
            cm = self.im_.cmap
            self.text_ = np.empty(shown.shape, dtype=object)
            for i in range(n_texts):
                for j in range(n_images):
                    r, g, b, _ = cm(norm(shown[i, j]))
                    dark = 0.299 * r + 0.587 * g + 0.114 * b < 0.5
                    self.text_[i, j] = ax.text(
                        j,
                        i,
                        format(shown[i, j], values_format),
                        ha="center",
                        va="center",
                        fontsize=small - 1,
                        color="white" if dark else "black",
                    )

        self.colorbar_ = None
        if colorbar:
            self.colorbar_ = fig.colorbar(self.im_, ax=ax, fraction=0.046, pad=0.03)
            self.colorbar_.set_label(_KIND_LABELS.get(s.kind, s.kind))
        if title:
            ax.set_title(title, pad=(thumbnail_size or 0) + 8 if self.thumbnails_ else 6)
        self.ax_ = ax
        self.figure_ = fig
        return self
