"""Figures of zero-shot classification: one image beside its best classes, and the confusion matrix.

Both draw computed data only; no net runs here.

- :class:`TopKDisplay`: the image on the left, a horizontal bar chart of its ``k`` best classes on
  the right, each bar labelled with the class text the net scored ("This is a photo of a cat",
  :func:`blipviz.display.labels.fit_text`) and its value; the title names the image, the net, the
  method and the score kind. :meth:`blipviz.ZeroShotClassifier.plot_top_k` builds it.
- :func:`plot_confusion_matrix`: scikit-learn's ``ConfusionMatrixDisplay`` with class names that
  fit (``fit_text``, x labels vertical so they never collide), a labelled colorbar and a title that
  names the net, the method and the template (or how many templates an ensemble averaged).
  :meth:`blipviz.ZeroShotEvaluation.plot` calls it.

Both follow :mod:`blipviz.display.rules`: literal texts at sizes from ``rcParams["font.size"]``,
colour-blind-safe colours with a second cue (the true class's bar hatched, its label bold), an image
of extreme aspect ratio shown by its middle at a readable size, and given Axes drawn into without a
figure title. matplotlib and scikit-learn are imported when a figure is drawn.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import InputError
from .labels import MAX_LABEL_CHARS, fit_text, format_number, wrap_text
from .plotting import fit_figure_to_axes, rgb_array
from .rules import (
    CATEGORICAL,
    LABEL,
    SMALL,
    TINY,
    TITLE,
    colorbar_axes,
    finish_axes,
    fit_colorbar,
    font_size,
    plural,
    settle_layout,
    thumbnail_crop,
    wrap_to_width,
)

__all__ = [
    "METHOD_NAMES",
    "SCORE_KINDS",
    "TopKDisplay",
    "confusion_title",
    "method_name",
    "plot_confusion_matrix",
]

#: How each zero-shot method is named in titles.
METHOD_NAMES = {"itm": "ITM", "cosine": "cosine", "rerank": "cosine + ITM rerank"}
#: What each method's scores are (the value axis of the top-k chart).
SCORE_KINDS = {
    "itm": "ITM match probability",
    "cosine": "cosine similarity",
    "rerank": "ITM match probability",
}

# Width of one character of 9-10 pt DejaVu Sans, in inches (figure sizing only; layout is measured).
_CHAR_IN = 0.075
_FONT_SIZE = 9


def _char_in(fontsize: float | None = None) -> float:
    """Width of one character of text at ``fontsize`` (default: the labels'), in inches."""
    return _CHAR_IN * (font_size(LABEL) if fontsize is None else fontsize) / _FONT_SIZE


def method_name(method: str, rerank_k: int | None = None) -> str:
    """``"ITM"``, ``"cosine"``, ``"cosine + ITM rerank of the best 5"``, or ``method`` itself."""
    name = METHOD_NAMES.get(method, method)
    if method == "rerank" and rerank_k is not None:
        name += f" of the best {rerank_k}"
    return name


def _wrap_title(lines: Sequence[str], width_in: float, fontsize: float) -> str:
    """Title lines wrapped (never cut) to about ``width_in`` inches of ``fontsize`` text: at the
    `` · `` between the parts of a line first, inside a part only when it alone is too long."""
    chars = max(20, int(width_in / _char_in(fontsize)))
    pieces: list[str] = []
    for line in lines:
        current = ""
        for part in str(line).split(" · "):
            joined = f"{current} · {part}" if current else part
            if len(joined) <= chars or not current:
                current = joined
            else:
                pieces.append(current)
                current = part
        if current:
            pieces.append(current)
    return "\n".join(wrap_text(piece, chars, max_chars=None) for piece in pieces)


# ------------------------------------------------------------------------------------ top k
class TopKDisplay:
    """One image beside a bar chart of its ``k`` best classes.

    Build it with :meth:`blipviz.ZeroShotClassifier.plot_top_k`, or from computed data:
    ``TopKDisplay(image, texts, scores, ...).plot()``.

    Parameters
    ----------
    image : PIL.Image.Image or ndarray of shape (H, W) or (H, W, 3)
        The classified image, drawn as given (grayscale shown as RGB).
    texts : sequence of str, length k
        The class texts the net scored, best first ("This is a photo of a cat", ...).
    scores : array-like of shape (k,)
        Their scores; NaN for a class that was not scored (``method="rerank"`` beyond ``rerank_k``).
    labels : sequence of str, optional
        The class names of the bars (to find ``true_label``); default ``texts``.
    cosine : array-like of shape (k,), optional
        Cosines of the classes (``method="rerank"``): written on the bars that ITM did not score.
    method : {"itm", "cosine", "rerank"}, default "itm"
    rerank_k : int, optional
        Classes reranked by ITM (``method="rerank"``), for the title.
    net : str, default ""
        Name of the net, for the title.
    image_label : str, default ""
        Name of the image (file name, ``"image 0"``), for the title.
    true_label : str, optional
        The image's true class: its bar is drawn in a second colour, and the title names it.
    n_classes : int, optional
        How many classes were ranked (title: "top 5 of 10 classes"); default ``k``.
    true_rank : int, optional
        Rank of the true class among all ``n_classes`` (1 = best), for the title: the true class
        may lie beyond the ``k`` bars shown.
    n_templates : int, default 1
        Templates averaged per class (a prompt ensemble); the title names their number when more
        than one.

    Attributes
    ----------
    table : DataFrame or None
        The ranking drawn, as :meth:`blipviz.ZeroShotClassifier.top_k` returns it (set by
        ``plot_top_k``; None when the display was built by hand).
    im_ : matplotlib.image.AxesImage
        The image; ``im_.get_array()`` has the image's shape (H, W, 3), or that of its middle when
        an extreme aspect ratio (beyond about 1:4) would draw it as a sliver
        (:func:`blipviz.display.rules.thumbnail_crop`; "centre crop" above it then says so).
    bars_ : matplotlib.container.BarContainer
        One bar per class, best at the top.
    value_texts_ : list of matplotlib.text.Text
        The value written beside each bar.
    ax_image_, ax_ : matplotlib.axes.Axes
        The image panel and the bar chart.
    figure_ : matplotlib.figure.Figure
    """

    def __init__(
        self,
        image: Any,
        texts: Sequence[str],
        scores: Any,
        *,
        labels: Sequence[str] | None = None,
        cosine: Any = None,
        method: str = "itm",
        rerank_k: int | None = None,
        net: str = "",
        image_label: str = "",
        true_label: str | None = None,
        n_classes: int | None = None,
        true_rank: int | None = None,
        n_templates: int = 1,
    ) -> None:
        self.image = rgb_array(image)
        self.texts = [str(t) for t in texts]
        self.scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        self.labels = list(self.texts if labels is None else labels)
        self.cosine = None if cosine is None else np.asarray(cosine, dtype=np.float64).reshape(-1)
        k = len(self.texts)
        if k == 0:
            raise InputError("a top-k figure needs at least one class")
        for name, values in (("scores", self.scores), ("labels", self.labels), ("cosine", self.cosine)):
            if values is not None and len(values) != k:
                raise InputError(f"{name} has {len(values)} entries for {k} class texts")
        if method not in METHOD_NAMES:
            raise InputError(f"method must be one of {tuple(METHOD_NAMES)}, got {method!r}")
        self.method = method
        self.rerank_k = rerank_k
        self.net = net
        self.image_label = image_label
        self.true_label = true_label
        self.n_classes = k if n_classes is None else int(n_classes)
        self.true_rank = true_rank
        self.n_templates = int(n_templates)
        if self.n_templates < 1:
            raise InputError(f"n_templates must be at least 1, got {n_templates!r}")
        self.table = None

    @property
    def title(self) -> list[str]:
        """The title's lines: the image and what is ranked; the net, the method and the score."""
        k = len(self.texts)
        classes = plural(self.n_classes, "class", "classes")
        what = (
            f"top {k} of {classes}" if k < self.n_classes else f"all {plural(k, 'class', 'classes')} ranked"
        )
        first = f"{self.image_label}: {what}" if self.image_label else f"zero-shot: {what}"
        if self.true_label is not None:
            rank = "" if self.true_rank is None else f", rank {self.true_rank}"
            first += f" (true class: {self.true_label}{rank})"
        how = f"zero-shot by {method_name(self.method, self.rerank_k)}"
        if self.n_templates > 1:
            how += f", mean of {self.n_templates} templates"
        second = " · ".join(p for p in (self.net, how, f"score: {SCORE_KINDS[self.method]}") if p)
        return [first, second]

    def _value_range(self) -> tuple[float, float]:
        """The value axis: [0, 1] for probabilities; the data range, with 0, for cosines."""
        if self.method in ("itm", "rerank"):
            return 0.0, 1.0
        finite = self.scores[np.isfinite(self.scores)]
        lo = min(0.0, float(finite.min())) if finite.size else 0.0
        hi = max(0.0, float(finite.max())) if finite.size else 1.0
        return lo, hi if hi > lo else lo + 1.0

    def plot(
        self,
        axes=None,
        *,
        max_label_chars: int | None = MAX_LABEL_CHARS,
        values_format: str = ".3f",
        color: str | None = None,
        true_color: str | None = None,
        title: str | None = None,
    ) -> TopKDisplay:
        """Draw the image and the bars.

        Parameters
        ----------
        axes : pair of matplotlib Axes, optional
            (image panel, bar chart); default: a new figure sized for ``k`` and the texts, with the
            title above both. Given Axes are drawn into (the title over the bar chart) and nothing
            outside them changes.
        max_label_chars : int or None, default 80
            Bar labels longer than this are elided in the middle (:func:`fit_text`).
        values_format : str, default ".3f"
            Format of the values written beside the bars.
        color, true_color : str, optional
            Colours of the bars and of the true class's bar (also hatched); default the first two
            of :data:`blipviz.display.labels.CATEGORICAL` (blue, orange).
        title : str, optional
            Replaces the default title (image, classes, net, method, score kind).

        Returns
        -------
        TopKDisplay
            ``self``, with ``im_``, ``bars_``, ``value_texts_``, ``ax_image_``, ``ax_``, ``figure_``.
        """
        import matplotlib.pyplot as plt
        from matplotlib.ticker import MaxNLocator

        k = len(self.texts)
        shown = [fit_text(t, max_label_chars) for t in self.texts]
        base, highlight = CATEGORICAL[:2]
        color = color or base
        true_color = true_color or highlight
        em = font_size() / 10.0
        fs, small = font_size(LABEL), font_size(SMALL)
        label_in = max(len(t) for t in shown) * _char_in() + 0.3
        height = max(2.6, 0.3 * k * em + 1.5 * em)
        h, w = self.image.shape[:2]
        # a strip of extreme aspect ratio shows its middle, at least a quarter of the panel's side
        (top, bottom, left, right), (image_in, _) = thumbnail_crop((h, w), (4.0, height - 1.2 * em))
        picture = self.image[top:bottom, left:right]
        cropped = picture.shape[:2] != (h, w)
        image_in = max(1.2, image_in)
        if cropped:  # a line above the image says so
            height += 0.3 * em
        own = axes is None
        if own:
            bars_in = 3.2
            width = image_in + label_in + bars_in + 0.6
            fig = plt.figure(figsize=(width, height), layout="constrained")
            grid = fig.add_gridspec(1, 2, width_ratios=[image_in, bars_in])
            ax_image, ax = fig.add_subplot(grid[0]), fig.add_subplot(grid[1])
        else:
            ax_image, ax = axes
            fig = ax.figure

        interpolation = "nearest" if max(h, w) <= 128 else "antialiased"
        self.im_ = ax_image.imshow(picture, interpolation=interpolation)
        ax_image.set_axis_off()
        ax_image.set_xticks([])  # no tick labels left behind an axis that is off
        ax_image.set_yticks([])
        note = None
        if cropped:
            note = ax_image.set_title("centre crop", fontsize=small, parse_math=False)

        lo, hi = self._value_range()
        pad = 0.2 * (hi - lo)
        y = np.arange(k)
        heights = np.where(np.isfinite(self.scores), self.scores, 0.0)
        colours = [true_color if lab == self.true_label else color for lab in self.labels]
        self.bars_ = ax.barh(y, heights, height=0.7, color=colours)
        for bar, lab in zip(self.bars_, self.labels, strict=True):
            if lab == self.true_label:  # a second cue beside colour
                bar.set_hatch("///")
                bar.set_edgecolor("white")
        self.value_texts_ = []
        for i, value in enumerate(self.scores):
            if np.isfinite(value):
                text, x, ha = (
                    format_number(value, values_format),
                    float(value),
                    "left" if value >= 0 else "right",
                )
                x += (0.015 if value >= 0 else -0.015) * (hi - lo)
                style = "normal"
            else:
                cos = (
                    "" if self.cosine is None else f" (cosine {format_number(self.cosine[i], values_format)})"
                )
                text, x, ha, style = f"not reranked{cos}", lo + 0.015 * (hi - lo), "left", "italic"
            self.value_texts_.append(
                ax.text(x, i, text, va="center", ha=ha, fontsize=small, style=style, parse_math=False)
            )
        ax.set_yticks(y, shown, fontsize=fs, parse_math=False)
        for tick, lab in zip(ax.get_yticklabels(), self.labels, strict=True):
            if lab == self.true_label:
                tick.set_color(true_color)
                tick.set_fontweight("bold")
        ax.set_ylim(k - 0.5, -0.5)  # best at the top
        ticks = MaxNLocator(5).tick_values(lo, hi)
        ax.set_xticks([t for t in ticks if lo - 1e-9 <= t <= hi + 1e-9])
        ax.set_xlim(lo - (pad if lo < 0 else 0.0), hi + pad)  # room for the values
        ax.set_xlabel(SCORE_KINDS[self.method], fontsize=fs, parse_math=False)
        if lo < 0:
            ax.axvline(0.0, color="0.3", linewidth=0.8)
        ax.spines[["top", "right"]].set_visible(False)
        ax.tick_params(axis="x", labelsize=small)

        if own:
            text = title or _wrap_title(self.title, fig.get_figwidth() - 0.3, font_size(TITLE))
            heading = fig.suptitle(text, fontsize=font_size(TITLE))
        else:  # a figure of yours keeps its title: this one goes over the bar chart
            width_in = ax.get_position().width * fig.get_figwidth()
            text = title or _wrap_title(self.title, max(width_in, 2.5), font_size(TITLE))
            heading = ax.set_title(text, fontsize=font_size(TITLE))
        finish_axes([ax_image, ax], [heading])
        settle_layout(fig)
        if note is not None and wrap_to_width(note, ax_image.get_window_extent().width):
            settle_layout(fig)
        self.ax_image_, self.ax_, self.figure_ = ax_image, ax, fig
        return self


# ------------------------------------------------------------------------------ confusion matrix
def confusion_title(
    *,
    net: str = "",
    method: str = "",
    template: str | Sequence[str] = "",
    n_images: int | None = None,
    rerank_k=None,
) -> list[str]:
    """The confusion matrix's title lines: what, which net, method and template; how many images.

    One template is quoted; several (a prompt ensemble) are named by their number ("3 templates"),
    never listed.

    Examples
    --------
    >>> confusion_title(net="tiny-random", method="itm", template="a photo of a {}", n_images=12)
    ["zero-shot confusion — tiny-random, ITM, template 'a photo of a {}'", '12 images; rows: true class, columns: predicted class']
    """  # noqa: E501
    parts = [p for p in (net, method_name(method, rerank_k) if method else "") if p]
    templates = [template] if isinstance(template, str) else list(template)
    if len(templates) == 1 and templates[0]:
        parts.append(f"template {templates[0]!r}")
    elif len(templates) > 1:
        parts.append(plural(len(templates), "template"))
    first = "zero-shot confusion" + (f" — {', '.join(parts)}" if parts else "")
    second = "rows: true class, columns: predicted class"
    if n_images is not None:
        second = f"{plural(n_images, 'image')}; {second}"
    return [first, second]


_COLORBAR_LABELS = {
    None: "images",
    "true": "fraction of the true class's images",
    "pred": "fraction of the predicted class's images",
    "all": "fraction of all images",
}


def plot_confusion_matrix(
    matrix: Any,
    labels: Sequence[str],
    *,
    ax=None,
    normalize: str | None = None,
    title: str | Sequence[str] | None = None,
    colorbar: bool = True,
    max_label_chars: int | None = MAX_LABEL_CHARS,
    include_values: bool | None = None,
    cmap: str = "Blues",
    **kwargs: Any,
):
    """Draw a confusion matrix: readable class names, a labelled colorbar, a title.

    Parameters
    ----------
    matrix : array-like of shape (n_labels, n_labels)
        Row: true class, column: predicted class; counts, or fractions when ``normalize`` says how
        they were divided.
    labels : sequence of str
        Class names, elided beyond ``max_label_chars`` (:func:`fit_text`).
    ax : matplotlib Axes, optional
        Default: a new figure sized for the number of classes and the length of their names.
    normalize : {None, "true", "pred", "all"}
        How ``matrix`` was normalised; names the colorbar.
    title : str or sequence of str, optional
        Lines of the title (wrapped to the figure), e.g. :func:`confusion_title`.
    colorbar : bool, default True
    include_values : bool, optional
        Write each cell's value; default when there are at most 20 classes.
    cmap : str, default "Blues"
    **kwargs
        Passed to ``sklearn.metrics.ConfusionMatrixDisplay.plot`` (``values_format``, ``im_kw``,
        ``text_kw``, ``xticks_rotation``).

    Returns
    -------
    sklearn.metrics.ConfusionMatrixDisplay
        With ``ax_``, ``figure_``, ``im_``, ``text_`` (None without values) and ``colorbar_``
        (None without a colorbar).
    """
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator
    from sklearn.metrics import ConfusionMatrixDisplay

    values = np.asarray(matrix)
    n = len(labels)
    if values.shape != (n, n):
        raise InputError(f"matrix has shape {values.shape} for {n} labels; expected ({n}, {n})")
    if normalize not in _COLORBAR_LABELS:
        raise InputError(f"normalize must be None, 'true', 'pred' or 'all', got {normalize!r}")
    shown = [fit_text(label, max_label_chars) for label in labels]
    if include_values is None:
        include_values = n <= 20
    cell_in = min(0.6, max(0.22, 6.0 / max(n, 1)))
    fs = font_size(LABEL)
    own = ax is None
    if own:
        label_in = max(len(s) for s in shown) * _char_in() + 0.2
        side = n * cell_in
        fig, ax = plt.subplots(figsize=(side + label_in + 2.0, side + label_in + 1.4), layout="constrained")
    kwargs.setdefault("xticks_rotation", "vertical")
    text_kw = dict(kwargs.pop("text_kw", None) or {})
    text_kw.setdefault("fontsize", fs if cell_in >= 0.4 else font_size(TINY))
    display = ConfusionMatrixDisplay(values, display_labels=shown).plot(
        ax=ax,
        cmap=cmap,
        colorbar=False,
        include_values=include_values,
        text_kw=text_kw,
        **kwargs,
    )
    fig = display.figure_
    im_kw = kwargs.get("im_kw") or {}
    if "vmin" not in im_kw and "vmax" not in im_kw and "norm" not in im_kw:  # the scale starts at 0
        top = float(np.nanmax(values)) if values.size and np.isfinite(values).any() else 0.0
        display.im_.set_clim(0.0, max(top, 1.0) if normalize is None else 1.0)
    ax.tick_params(labelsize=fs)
    ax.set_xlabel("predicted class", fontsize=font_size(TITLE))
    ax.set_ylabel("true class", fontsize=font_size(TITLE))
    display.colorbar_ = None
    if colorbar:
        # beside the matrix, 80% of its height, its width in inches whatever the matrix's size
        cax = colorbar_axes(ax, n - 0.5, 0.15 * font_size() / 10.0, 0.2, (0.1, 0.9))
        display.colorbar_ = fig.colorbar(display.im_, cax=cax)
        display.colorbar_.set_label(_COLORBAR_LABELS[normalize], fontsize=fs)
        display.colorbar_.ax.tick_params(labelsize=font_size(SMALL))
        if normalize is None:  # counts: whole numbers only
            display.colorbar_.locator = MaxNLocator(integer=True)
    if title is not None:
        lines = [title] if isinstance(title, str) else list(title)
        ax.set_title(
            _wrap_title(lines, max(fig.get_figwidth() - 0.4, 3.0), font_size(TITLE)),
            fontsize=font_size(TITLE),
        )
    finish_axes([ax])  # the colorbar is an inset of ax
    size_in = (n * cell_in, n * cell_in)
    if own:  # the figure as large as the matrix, its labels and its colorbar, measured
        fit_figure_to_axes(ax, size_in)
    else:
        settle_layout(fig)
    # the colorbar's ticks apart and its label no taller than the matrix (a small matrix's title
    # sits where a longer label would reach)
    if display.colorbar_ is not None and fit_colorbar(display.colorbar_, ax.get_window_extent().height):
        fit_figure_to_axes(ax, size_in) if own else settle_layout(fig)
    return display
