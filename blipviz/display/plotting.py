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

from ..errors import InputError
from .labels import MAX_LABEL_CHARS, fit_text, format_number, number_repeats, wrap_text
from .rules import (
    LABEL,
    SMALL,
    TITLE,
    colorbar_axes,
    finish_axes,
    fit_colorbar,
    font_size,
    settle_layout,
    thumbnail_crop,
)

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType

    from ..analysis.scores import ScoreMatrix

__all__ = [
    "THUMBNAIL_GAP",
    "ScoreMatrixDisplay",
    "fit_figure_to_axes",
    "heatmap_row_labels",
    "heatmap_title",
    "letterbox",
    "score_matrix_figsize",
]

_SORT_OPTIONS = (None, "rows", "columns", "both")
_KIND_LABELS = {"itm": "ITM match probability", "cosine": "cosine similarity"}
_SORT_PHRASES = {
    "rows": "texts sorted by mean",
    "columns": "images sorted by mean",
    "both": "texts and images sorted by mean",
}


# ------------------------------------------------------------------------------------ helpers
def rgb_array(image: Any) -> np.ndarray:
    """An image as the figures draw it: ndarray of shape (H, W, 3), uint8.

    Parameters
    ----------
    image : PIL image, or ndarray of shape (H, W), (H, W, 3) or (H, W, 4)
        uint8, or float in [0, 1] (clipped, rounded).

    Raises
    ------
    InputError
        An array of another shape.
    """
    if hasattr(image, "convert"):
        return np.asarray(image.convert("RGB"))
    arr = np.asarray(image)
    if np.issubdtype(arr.dtype, np.floating):
        arr = np.round(np.clip(arr, 0.0, 1.0) * 255.0)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise InputError(f"image must have shape (H, W), (H, W, 3) or (H, W, 4), got {arr.shape}")
    return np.ascontiguousarray(arr[:, :, :3].astype(np.uint8))


def new_axes(figsize: tuple[float, float], ax=None):
    """The given Axes and its figure, or a new figure (constrained layout) with one Axes."""
    if ax is not None:
        return ax.figure, ax
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=figsize, layout="constrained")
    return fig, ax


def add_thumbnail(ax, image: Any, xy, *, size_pt: float, xycoords="data", box_alignment=(0.5, 0.5), **kw):
    """Draw ``image`` (longest side ``size_pt`` points) at ``xy``; returns the AnnotationBbox."""
    from matplotlib.offsetbox import AnnotationBbox, OffsetImage

    arr = rgb_array(image)
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


# --------------------------------------------------------------------------------- heatmap
#: Share of a column's width (and of the thumbnail band's height) left free around each thumbnail,
#: so that neighbouring thumbnails never touch.
THUMBNAIL_GAP = 0.14
_BAND_CELLS = 1.4  # default height of the thumbnail band, in cells: room for portrait photographs
_MAX_LABEL_LINES = 2
_ONE_LINE_CHARS = 60  # row labels up to this long are never wrapped
_CHAR_EM = 0.53  # mean advance of a DejaVu Sans character, in em (lower-case text)
_LINE_EM = 1.25  # line height of wrapped labels, in em
_COLORBAR_CELLS = 0.3  # colorbar width, in cells
_HIGHLIGHT_INSET = 0.07  # an outline sits this share of a cell inside its cell


def _cell_inches(n_texts: int, n_images: int) -> float:
    """Side of one heatmap cell, in inches: smaller for bigger matrices, within [0.28, 0.6]."""
    return float(np.clip(7.0 / max(n_texts, n_images, 1), 0.28, 0.6))


def _text_inches(n_chars: int, fontsize: float) -> float:
    return n_chars * _CHAR_EM * fontsize / 72.0


def heatmap_row_labels(
    texts: Sequence[str],
    *,
    max_chars: int | None = MAX_LABEL_CHARS,
    max_lines: int = _MAX_LABEL_LINES,
    one_line: int = _ONE_LINE_CHARS,
) -> list[str]:
    """Row labels of a heatmap, each text whole and legible.

    Each text is kept whole up to ``max_chars`` characters and middle-elided at word boundaries
    beyond (:func:`blipviz.display.labels.fit_text`: the first and the last words stay, so hard
    negatives that differ at the end stay apart); equal labels are numbered (``"a cat (1)"``,
    ``"a cat (2)"``). A label of at most ``one_line`` characters, or one as short as the label
    column that the others need, stays on one line; a longer one is wrapped into at most
    ``max_lines`` lines of about equal length, never inside a word.

    Returns
    -------
    list of str, one per text, lines joined by ``"\\n"``.
    """
    fitted = number_repeats([fit_text(t, max_chars) for t in texts])
    lines = max(1, max_lines)

    def balanced(text: str) -> int:  # the narrowest wrap width giving at most ``lines`` lines
        width = max(1, -(-len(text) // lines))
        while width < len(text) and len(wrap_text(text, width, None).split("\n")) > lines:
            width += 1
        return width

    widths = [len(t) if len(t) <= one_line or lines == 1 else balanced(t) for t in fitted]
    column = max(widths, default=0)
    return [t if len(t) <= column else wrap_text(t, w, None) for t, w in zip(fitted, widths, strict=True)]


def _image_labels(labels: Sequence[str]) -> list[str]:
    return number_repeats([fit_text(str(t), 40) for t in labels])


def _heatmap_geometry(
    scores: ScoreMatrix,
    *,
    max_label_chars: int | None,
    colorbar: bool,
    thumbnails: bool,
    thumbnail_height: float,
    title: str | None,
) -> dict[str, Any]:
    """Cell size, fonts, labels and figure size of the heatmap of ``scores``."""
    n_images, n_texts = scores.shape
    cell = _cell_inches(n_texts, n_images)
    fontsize = font_size(SMALL if max(n_texts, n_images) > 20 else LABEL)
    em = font_size() / 10.0  # text grows with rcParams["font.size"] (10 pt: the sizes below)
    line_in = _LINE_EM * fontsize / 72.0
    max_lines = int(np.clip((0.92 * cell) // line_in, 1, _MAX_LABEL_LINES))
    rows = heatmap_row_labels(scores.texts, max_chars=max_label_chars, max_lines=max_lines)
    columns = _image_labels(scores.image_labels)
    row_chars = max(len(line) for label in rows for line in label.split("\n"))
    column_chars = max(len(t) for t in columns)
    rotate = _text_inches(column_chars, fontsize) > 0.95 * cell
    band = thumbnail_height if thumbnails else 0.0
    label_in = _text_inches(row_chars, fontsize) + 0.25
    right_in = 1.25 * em if colorbar else 0.2
    width = label_in + n_images * cell + right_in + 0.2
    column_label_in = (_text_inches(column_chars, fontsize) + 0.1 if rotate else line_in) + 0.15
    title_lines = 0 if not title else title.count("\n") + 1
    height = (n_texts + band) * cell + column_label_in + 0.3 * em * title_lines + 0.25
    return {
        "cell": cell,
        "fontsize": fontsize,
        "row_labels": rows,
        "column_labels": columns,
        "rotate": rotate,
        "figsize": (max(width, 3.0), max(height, 2.0)),
    }


def heatmap_title(
    kind: str, model_name: str | None, *, max_chars: int | None = None, sort: str | None = None
) -> str:
    """The default title of a score heatmap: what is shown, in which order, and by which net.

    ``"ITM match probability — Salesforce/blip-itm-base-coco"``; with ``sort``, the order follows
    the score (``"cosine similarity, texts sorted by mean — ..."``); the net, then the order, on a
    line of their own when a line would be longer than ``max_chars``; without the net when it is
    not known.
    """
    if sort is not None and sort not in _SORT_PHRASES:
        raise InputError(f"unknown sort {sort!r}; allowed values: {', '.join(map(repr, _SORT_OPTIONS))}")
    parts = [_KIND_LABELS.get(kind, kind)] + ([_SORT_PHRASES[sort]] if sort is not None else [])
    what = ", ".join(parts)
    lines = [what] if max_chars is None or len(what) <= max_chars else parts
    if model_name:
        one_line = f"{lines[0]} \N{EM DASH} {model_name}"
        if len(lines) == 1 and (max_chars is None or len(one_line) <= max_chars):
            return one_line
        lines.append(model_name)
    return "\n".join(lines)


def score_matrix_figsize(
    scores: ScoreMatrix,
    *,
    max_label_chars: int | None = MAX_LABEL_CHARS,
    colorbar: bool = True,
    thumbnails: bool = True,
    thumbnail_height: float = _BAND_CELLS,
    title: str | None = None,
    sort: str | None = None,
) -> tuple[float, float]:
    """(width, height) in inches of a figure that holds the heatmap of ``scores`` with its labels,
    thumbnails, colorbar and title (what :meth:`ScoreMatrixDisplay.plot` uses when given no Axes).
    ``title=None``: the default title (:func:`heatmap_title`, which names the ``sort``)."""
    thumbs = bool(thumbnails and scores.thumbnails)
    geometry = _heatmap_geometry(
        scores,
        max_label_chars=max_label_chars,
        colorbar=colorbar,
        thumbnails=thumbs,
        thumbnail_height=thumbnail_height,
        title=title,
    )
    if title is None:  # the default title: two lines when it is wider than the room over the cells
        room = _title_room(geometry, scores.shape[0])
        geometry = _heatmap_geometry(
            scores,
            max_label_chars=max_label_chars,
            colorbar=colorbar,
            thumbnails=thumbs,
            thumbnail_height=thumbnail_height,
            title=heatmap_title(scores.kind, scores.model_name, max_chars=_title_chars(room), sort=sort),
        )
    return geometry["figsize"]


def _title_room(geometry: dict[str, Any], n_images: int) -> float:
    """Width (inches) a title centred over the cells may take: the cells and a margin each side."""
    return n_images * geometry["cell"] + 2 * 1.2


def _title_chars(width_in: float, fontsize: float | None = None) -> int:
    """How many title characters fit in ``width_in`` inches (with a margin), at ``fontsize``
    (default: the title's, :data:`~blipviz.display.rules.TITLE` of ``rcParams["font.size"]``)."""
    fontsize = font_size(TITLE) if fontsize is None else fontsize
    return int((width_in - 0.3) / (_CHAR_EM * 1.05 * fontsize / 72.0))


def letterbox(image_shape: tuple[int, int], center: tuple[float, float], box: tuple[float, float]):
    """Extent of an image of ``image_shape`` (height, width) scaled to fit ``box`` (width, height)
    whole, keeping its aspect ratio, centred at ``center`` (x, y).

    Returns
    -------
    (left, right, bottom, top) : tuple of float
        For ``imshow(extent=...)`` on an axis with y growing downwards (as a heatmap's):
        ``bottom > top``.
    """
    h, w = image_shape
    scale = min(box[0] / w, box[1] / h)
    half_w, half_h = w * scale / 2.0, h * scale / 2.0
    cx, cy = center
    return cx - half_w, cx + half_w, cy + half_h, cy - half_h


class ScoreMatrixDisplay:
    """Heatmap of a :class:`~blipviz.ScoreMatrix`: texts as rows, images as columns.

    Build it with :meth:`blipviz.ScoreMatrix.plot` (or ``ScoreMatrixDisplay(scores).plot()``).

    What it draws: square cells on one colour scale with a colorbar; each image's thumbnail in a
    band above its column, letterboxed (scaled whole, aspect ratio kept, centred) into the column's
    width and the band's height less :data:`THUMBNAIL_GAP`, so that thumbnails of any shape sit in a
    row and never touch; row labels whole up to 80 characters, wrapped, middle-elided beyond
    (:func:`heatmap_row_labels`: hard negatives that differ only in their last words stay apart);
    the true pairs outlined (``highlight``); a title naming the score and the net.

    Parameters
    ----------
    scores : ScoreMatrix of shape (n_images, n_texts)

    Attributes
    ----------
    im_ : matplotlib.image.AxesImage
        The heatmap; ``im_.get_array()`` is ``values_``.
    values_ : ndarray of shape (n_texts, n_images)
        The scores as drawn: ``scores.values.T[row_order_][:, column_order_]``.
    row_order_ : ndarray of shape (n_texts,)
        Text index of each row, top to bottom.
    column_order_ : ndarray of shape (n_images,)
        Image index of each column, left to right.
    thumbnails_ : list of matplotlib.image.AxesImage
        The thumbnail of each column, left to right (empty when the scores carry no thumbnails).
    highlighted_ : ndarray of shape (n_texts, n_images), bool
        Which drawn cells are outlined.
    highlights_ : list of matplotlib.patches.Rectangle
        The outlines, one per highlighted cell, row by row.
    text_ : ndarray of shape (n_texts, n_images) of matplotlib.text.Text, or None
        The value annotations.
    colorbar_ : matplotlib.colorbar.Colorbar or None
    legend_ : matplotlib.legend.Legend or None
        Says what an outline means (when there is one).
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
        cmap: Any = None,
        vmin: float | None = None,
        vmax: float | None = None,
        thumbnails: bool = True,
        thumbnail_height: float = _BAND_CELLS,
        colorbar: bool = True,
        highlight: Any = None,
        max_label_chars: int | None = MAX_LABEL_CHARS,
        values_format: str = ".2f",
        title: str | None = None,
        fit: bool | None = None,
    ) -> ScoreMatrixDisplay:
        """Draw the heatmap.

        Parameters
        ----------
        ax : matplotlib Axes, optional
            Where to draw (its aspect is set to equal: square cells); default: a new figure sized
            for the matrix (:func:`score_matrix_figsize`).
        sort : {None, "rows", "columns", "both"}, default None
            Order texts (rows) and/or images (columns) by their mean score, best first.
        annotate : bool, optional
            Write each value in its cell; default: when the matrix is at most 12 x 12.
        cmap : str or Colormap, optional
            Default: "viridis" for ITM probabilities; for cosine similarities the diverging "RdBu_r"
            (blue below zero, red above; safe for colour-blind readers), centred at zero.
        vmin, vmax : float, optional
            Colour range; default [0, 1] for ITM probabilities, and for cosine similarities
            [-m, m] with m the largest absolute value, so that zero is the scale's white middle.
        thumbnails : bool, default True
            Draw the image thumbnails above the columns (when the scores carry them).
        thumbnail_height : float, default 1.4
            Height of the thumbnail band, in cells (a thumbnail is at most one column wide).
        colorbar : bool, default True
        highlight : "diagonal", (image_index, text_index) pairs, bool array (n_images, n_texts), or False
            Pairs to outline. Default (``None``): ``scores.true_pairs``, the pairs the scores know
            to be true (:meth:`blipviz.ScoreMatrix.with_true_pairs`), else none: equal numbers of
            images and texts alone never mark the diagonal. ``"diagonal"``: image i with text i
            (needs as many texts as images). ``False``: no outline.
        max_label_chars : int or None, default 80
            Row labels (texts) longer than this are elided in the middle at word boundaries;
            ``None``: never.
        values_format : str, default ".2f"
            Format of the annotations.
        title : str, optional
            Default: the score and the net, e.g. ``"ITM match probability — Salesforce/blip-itm-base-coco"``
            (:func:`heatmap_title`); ``""``: no title.
        fit : bool, optional
            Resize the figure to its content (:func:`fit_figure_to_axes`): cells of the size
            :func:`score_matrix_figsize` plans, every label inside the figure, no margin to spare.
            Default: when the display makes the figure (``ax=None``); pass ``True`` with an Axes
            that is alone in its figure to have that figure fitted too.

        Returns
        -------
        ScoreMatrixDisplay
            ``self``, with the attributes above set.
        """
        from matplotlib import patheffects
        from matplotlib.patches import Patch, Rectangle
        from matplotlib.transforms import blended_transform_factory

        if sort not in _SORT_OPTIONS:
            raise InputError(f"unknown sort {sort!r}; allowed values: {', '.join(map(repr, _SORT_OPTIONS))}")
        if not np.isfinite(thumbnail_height) or thumbnail_height <= 0:
            raise InputError(f"thumbnail_height must be a positive number of cells, got {thumbnail_height!r}")
        s = self.scores
        values = np.asarray(s.values, dtype=np.float64).T  # (n_texts, n_images)
        n_texts, n_images = values.shape
        if n_texts == 0 or n_images == 0:
            raise InputError(f"nothing to plot: the score matrix has shape {s.shape}")
        if highlight is None:
            pairs = s.true_pairs if s.true_pairs is not None else np.zeros(s.shape, dtype=bool)
        elif highlight is False:
            pairs = np.zeros(s.shape, dtype=bool)
        else:
            pairs = s.pair_mask(highlight)  # (n_images, n_texts)
        rows = np.arange(n_texts)
        cols = np.arange(n_images)
        if sort in ("rows", "both"):
            rows = np.argsort(-values.mean(axis=1), kind="stable")
        if sort in ("columns", "both"):
            cols = np.argsort(-values.mean(axis=0), kind="stable")
        shown = values[rows][:, cols]

        thumbs = s.thumbnails if thumbnails and s.thumbnails and len(s.thumbnails) == n_images else None
        band = float(thumbnail_height) if thumbs is not None else 0.0

        def layout(title_text):
            return _heatmap_geometry(
                s,
                max_label_chars=max_label_chars,
                colorbar=colorbar,
                thumbnails=thumbs is not None,
                thumbnail_height=band,
                title=title_text,
            )

        geometry = layout(title)
        if title is None:  # the default title is fitted to the room the first layout leaves
            title = heatmap_title(
                s.kind, s.model_name, max_chars=_title_chars(_title_room(geometry, n_images)), sort=sort
            )
            if ax is None:
                geometry = layout(title)
        if fit is None:
            fit = ax is None
        if ax is None:
            fig, ax = new_axes(geometry["figsize"])
        else:
            fig = ax.figure
        fontsize = geometry["fontsize"]

        if vmin is None and vmax is None and s.kind == "itm":
            vmin, vmax = 0.0, 1.0
        elif vmin is None and vmax is None and s.kind == "cosine":  # diverging, centred at zero
            top = float(np.nanmax(np.abs(shown))) if np.isfinite(shown).any() else 1.0
            vmin, vmax = -(top or 1.0), top or 1.0
        if cmap is None:
            cmap = "RdBu_r" if s.kind == "cosine" else "viridis"
        self.im_ = ax.imshow(shown, cmap=cmap, vmin=vmin, vmax=vmax, aspect="equal", interpolation="nearest")
        self.values_ = shown
        self.row_order_ = rows
        self.column_order_ = cols

        row_labels = geometry["row_labels"]
        column_labels = geometry["column_labels"]
        ax.set_yticks(np.arange(n_texts), [row_labels[i] for i in rows], parse_math=False)
        ax.set_xticks(np.arange(n_images), [column_labels[j] for j in cols], parse_math=False)
        ax.tick_params(axis="both", labelsize=fontsize, length=2)
        smaller = fontsize - font_size(0.1)
        ax.xaxis.tick_bottom()
        for spine in ("top", "right", "bottom", "left"):
            ax.spines[spine].set_visible(False)
        if geometry["rotate"]:  # upright: side by side whatever their length, never overlapping
            _upright(ax.get_xticklabels())

        self.thumbnails_ = []
        if thumbs is not None:
            box = (1.0 - THUMBNAIL_GAP, band - THUMBNAIL_GAP)
            for x, j in enumerate(cols):
                arr = rgb_array(thumbs[j])
                # a strip of extreme aspect ratio shows its middle at a readable size, not a sliver
                (top, bottom, left, right), drawn = thumbnail_crop(arr.shape[:2], box)
                arr = arr[top:bottom, left:right]
                extent = letterbox(arr.shape[:2], (float(x), -0.5 - band / 2.0), drawn)
                self.thumbnails_.append(ax.imshow(arr, extent=extent, interpolation="antialiased"))
        ax.set_xlim(-0.5, n_images - 0.5)
        ax.set_ylim(n_texts - 0.5, -0.5 - band)
        ax.set_aspect("equal")

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
                        format_number(shown[i, j], values_format),
                        ha="center",
                        va="center",
                        fontsize=smaller,
                        color="white" if dark else "black",
                        parse_math=False,
                    )

        # outlines: white with a black halo, visible on every colour of the map
        self.highlighted_ = pairs.T[rows][:, cols]
        halo = [patheffects.withStroke(linewidth=3.6, foreground="black")]
        side = 1.0 - 2 * _HIGHLIGHT_INSET
        self.highlights_ = []
        for i, j in zip(*np.nonzero(self.highlighted_), strict=True):
            outline = Rectangle(
                (j - 0.5 + _HIGHLIGHT_INSET, i - 0.5 + _HIGHLIGHT_INSET),
                side,
                side,
                fill=False,
                edgecolor="white",
                linewidth=1.6,
                path_effects=halo,
                zorder=3,
            )
            ax.add_patch(outline)
            self.highlights_.append(outline)

        # colorbar beside the rows only (not the thumbnail band), as tall as the heatmap
        beside_rows = blended_transform_factory(ax.transData, ax.transAxes)
        x_side = n_images - 0.5 + 0.25
        self.colorbar_ = None
        if colorbar:
            # gap and width in inches (those of the planned cells): in a large Axes of a user's
            # grid the cells grow, the colorbar does not
            cell_in = geometry["cell"]
            cax = colorbar_axes(
                ax,
                n_images - 0.5,
                0.25 * cell_in,
                _COLORBAR_CELLS * cell_in,
                (0.0, n_texts / (n_texts + band)),
            )
            self.colorbar_ = fig.colorbar(self.im_, cax=cax)
            self.colorbar_.set_label(_KIND_LABELS.get(s.kind, s.kind), fontsize=fontsize, parse_math=False)
            self.colorbar_.ax.tick_params(labelsize=smaller)
        self.legend_ = None
        if self.highlights_:
            key = Patch(
                facecolor="none", edgecolor="white", linewidth=1.6, path_effects=halo, label="true pair"
            )
            # beside the thumbnails; without them under the colorbar (the title's row is the title's)
            anchor_y = (n_texts + band / 2.0) / (n_texts + band) if band else 0.0
            self.legend_ = ax.legend(
                handles=[key],
                loc="center left" if band else "upper left",
                bbox_to_anchor=(x_side - 0.1, anchor_y),
                bbox_transform=beside_rows,
                fontsize=smaller,
                frameon=False,
                handlelength=1.0,
                handleheight=1.0,
                borderaxespad=0.0 if band else 0.8,
            )
        if title:
            # without thumbnails the colorbar reaches the top: clear its top tick label
            pad = _rc("axes.titlepad") + (0.6 * smaller if colorbar and not band else 0.0)
            ax.set_title(title, fontsize=font_size(TITLE), loc="center", parse_math=False, pad=pad)
        finish_axes([ax])  # every text literal; a warning for glyphs the font lacks
        size_in = (n_images * geometry["cell"], (n_texts + band) * geometry["cell"])
        if fit:
            fit_figure_to_axes(ax, size_in)
        else:  # an Axes of a user's figure: its cells may come out smaller than planned
            settle_layout(fig)
            if _fit_labels_to_cells(ax, self.text_, [row_labels[i] for i in rows], fontsize, smaller):
                settle_layout(fig)
        # a short colorbar's ticks apart, its label no longer than the rows and twice the band
        room = (n_texts + 2 * band) / (n_texts + band) * ax.get_window_extent().height
        if self.colorbar_ is not None and fit_colorbar(self.colorbar_, room):
            fit_figure_to_axes(ax, size_in) if fit else settle_layout(fig)
        if self.legend_ is not None and self.colorbar_ is not None:
            if _clear_of_colorbar(ax, self.legend_, self.colorbar_, anchor_y, beside_rows):
                fit_figure_to_axes(ax, size_in) if fit else settle_layout(fig)
        self.ax_ = ax
        self.figure_ = fig
        return self


def _clear_of_colorbar(ax, legend, colorbar, anchor_y: float, transform) -> bool:
    """Move the "true pair" key right of the colorbar and its label when the label, taller than a
    colorbar of few rows, reaches up to the key (measured on the drawn figure). Returns whether
    the key moved."""
    root = ax.figure.canvas.figure
    if not hasattr(root.canvas, "get_renderer"):
        return False
    root.draw_without_rendering()
    renderer = root.canvas.get_renderer()
    key = legend.get_window_extent(renderer)
    bar = colorbar.ax.get_tightbbox(renderer)
    if key.x0 >= bar.x1 or key.x1 <= bar.x0 or key.y0 >= bar.y1 or key.y1 <= bar.y0:
        return False
    pad = 0.3 * font_size()  # points to pixels below
    x = ax.transData.inverted().transform((bar.x1 + pad * root.dpi / 72.0, 0.0))[0]
    legend.set_bbox_to_anchor((x, anchor_y), transform=transform)
    return True


def _rc(name: RcKeyType) -> float:
    import matplotlib as mpl

    return float(mpl.rcParams[name])


def _upright(labels) -> None:
    """Column labels turned to read upwards, each centred under its column."""
    for label in labels:
        label.set_rotation(90)
        label.set_horizontalalignment("center")
        label.set_rotation_mode("default")


def _cell_pixels(ax) -> tuple[float, float]:
    """(width, height) of one heatmap cell in display pixels."""
    (x0, y0), (x1, y1) = ax.transData.transform([(0.0, 0.0), (1.0, 1.0)])
    return abs(x1 - x0), abs(y1 - y0)


def _widest(texts, renderer, side: str) -> float:
    boxes = [t.get_window_extent(renderer) for t in texts if t.get_visible() and t.get_text()]
    return max((getattr(b, side) for b in boxes), default=0.0)


def _fit_labels_to_cells(ax, annotations, row_labels: Sequence[str], fontsize: float, smaller: float) -> bool:
    """In an Axes the display did not size (a grid of a user's figure), fit the labels to the
    cells as drawn: column labels wider than a column turned upright; row labels taller than a
    row put on one line, then smaller (down to 0.6 of ``rcParams["font.size"]``); values that do
    not fit their cells smaller, else left out (the colorbar still reads). Returns whether anything
    changed."""
    get_renderer = getattr(ax.figure.canvas, "get_renderer", None)
    if get_renderer is None:
        return False
    renderer = get_renderer()
    cell_w, cell_h = _cell_pixels(ax)
    changed = False
    columns = ax.get_xticklabels()
    if columns and columns[0].get_rotation() != 90 and _widest(columns, renderer, "width") > 0.95 * cell_w:
        _upright(columns)
        changed = True
    if _widest(ax.get_yticklabels(), renderer, "height") > cell_h:
        flat = [" ".join(label.split("\n")) for label in row_labels]
        ax.set_yticks(np.arange(len(flat)), flat, parse_math=False)
        tallest = _widest(ax.get_yticklabels(), renderer, "height")
        if tallest > cell_h:
            ax.tick_params(axis="y", labelsize=max(font_size(0.6), fontsize * cell_h / tallest))
        changed = True
    if annotations is not None:
        values = list(annotations.ravel())
        size = smaller
        while size > font_size(0.6) and (
            _widest(values, renderer, "width") > 0.95 * cell_w or _widest(values, renderer, "height") > cell_h
        ):
            size = max(font_size(0.6), size * 0.85)
            for value in values:
                value.set_fontsize(size)
            changed = True
        if _widest(values, renderer, "width") > 0.95 * cell_w:
            for value in values:
                value.set_visible(False)
            changed = True
    return changed


def fit_figure_to_axes(ax, size_in: tuple[float, float], *, pad_in: float = 0.08, rounds: int = 2) -> bool:
    """Resize ``ax``'s figure so that ``ax`` is ``size_in`` (width, height) inches and everything it
    draws (tick labels, title, legend, inset colorbar) lies inside the figure, ``pad_in`` from its
    edges; ``ax`` is placed accordingly and the figure's layout engine is removed.

    The extents are measured on a drawn figure, so nothing is estimated: the figure is as small as
    its content allows. Meant for a figure holding ``ax`` alone.

    Returns
    -------
    bool
        False when the figure's canvas cannot give a renderer (nothing is changed then).
    """
    fig = ax.figure
    get_renderer = getattr(fig.canvas, "get_renderer", None)
    if get_renderer is None:
        return False
    fig.set_layout_engine("none")
    width_in, height_in = size_in
    for _ in range(max(1, rounds)):  # the title's overhang depends on the axes' width: measure twice
        fig.canvas.draw()
        renderer = get_renderer()
        box = ax.get_window_extent(renderer)
        tight = ax.get_tightbbox(renderer)
        dpi = fig.dpi
        left = max(0.0, box.x0 - tight.x0) / dpi
        right = max(0.0, tight.x1 - box.x1) / dpi
        bottom = max(0.0, box.y0 - tight.y0) / dpi
        top = max(0.0, tight.y1 - box.y1) / dpi
        fig_w = left + width_in + right + 2 * pad_in
        fig_h = bottom + height_in + top + 2 * pad_in
        fig.set_size_inches(fig_w, fig_h)
        ax.set_position(
            ((pad_in + left) / fig_w, (pad_in + bottom) / fig_h, width_in / fig_w, height_in / fig_h)
        )
    return True
