"""Explanation figures: deletion and insertion curves of explanation methods
(:func:`blipviz.evaluate_explanations`), and the methods' maps of one pair side by side
(:func:`blipviz.compare_explanations`).

:class:`ExplanationComparisonDisplay` draws one panel per method, each map laid on the photograph
(or as a matrix), on a per-method scale (each with its own colorbar, in its own units) or one shared
scale (each map divided by its top, one colorbar); signed maps (occlusion, GradCAM before
clipping) on a diverging key centred at zero; each method's deletion and insertion AUC in its
panel's title when the pair was evaluated.

The curves display holds computed curves only: a long DataFrame (``method``, ``pair``, ``fraction``,
``score``, ``kind``) and the AUC table; ``.plot()`` draws two panels, deletion (lower is better) and
insertion (higher is better), one line per method (the mean over pairs) with the spread over pairs
(their interquartile range) and the random-order baseline dashed in black.

It follows :mod:`blipviz.display.rules`: colours that colour-blind readers tell apart (Okabe-Ito)
with a marker shape per method, one legend beside the panels (never over a curve), literal texts
at sizes from ``rcParams["font.size"]``; the spread is a shaded band for one or two series and
interquartile bars at each method's markers beyond (six overlapping bands read as one).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InputError
from .labels import fit_text, readable_ticks, wrap_text
from .overlay import (
    ATTENTION_CMAP,
    OVERLAY_ALPHA,
    SCALE_PERCENTILE,
    SIGNED_CMAP,
    blend,
    cropped_note,
    fading_cmap,
    overlay_crop,
    overlay_picture,
    robust_max,
)
from .rules import (
    LABEL,
    SMALL,
    TITLE,
    colorbar_below,
    finish_axes,
    fit_colorbar,
    font_size,
    legend_beside,
    line_cues,
    new_figure,
    plural,
    settle_layout,
    wrap_to_width,
)

__all__ = ["COMPARISON_SCALES", "ExplanationComparisonDisplay", "ExplanationCurvesDisplay"]

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


# ------------------------------------------------------------------------------- comparison
_MIN_BAR_IN = 1.5  # the least width of a panel's colorbar, inches at font.size 10
#: ``"per-method"``: each panel its own scale, in its method's units, with its own colorbar;
#: ``"shared"``: every map divided by its own top (the percentile of its absolute values), on one
#: scale and one colorbar (the methods' units differ: only their patterns compare).
COMPARISON_SCALES = ("per-method", "shared")


class ExplanationComparisonDisplay:
    """The maps of several explanation methods for one (image, text) pair, one panel per method.

    Parameters
    ----------
    maps : sequence of ndarray of shape (gh, gw)
        One map per method (its match map).
    methods : sequence of str
        The panels' names (the methods).
    image : PIL.Image.Image or ndarray, optional
        The photograph: panels are overlays. None: matrices.
    signed : sequence of bool, optional
        Per map: drawn on the diverging key centred at zero (its negative values mean something).
        Default: none signed (negative values drawn as 0).
    value_names : sequence of str, optional
        Per map: what its values are (a per-method colorbar's label).
    aucs : mapping of method to (deletion AUC, insertion AUC), optional
        Written under the method's name in its panel's title.
    random_auc : (deletion AUC, insertion AUC), optional
        The random order's, for the title.
    text : str
    score : float
        The pair's ITM probability.
    net_name : str

    Attributes
    ----------
    axes_ : list of Axes
        One per method.
    images_ : list of matplotlib.image.AxesImage
    arrays_ : list of ndarray
        What each panel shows: (H, W, 3) uint8 overlays, or the maps (shared scale: divided by
        their tops).
    norms_ : list of matplotlib.colors.Normalize
        Each panel's scale; signed ones run from ``-top`` to ``top``.
    colorbars_ : list of matplotlib.colorbar.Colorbar
        One per panel (``"per-method"``) or one for all (``"shared"``).
    titles_ : list of str
        The panels' titles.
    title_ : str
        What the figure shows; the figure's title when the display made the figure, else yours to
        use (``fig.suptitle(display.title_)``).
    scale_ : str
    figure_ : matplotlib.figure.Figure
    explanations_ : dict of str to blipviz.Explanation
        The explanations drawn, by method, when :func:`blipviz.compare_explanations` made the
        display; empty otherwise.
    evaluation_ : blipviz.ExplanationEvaluation or None
        The evaluation whose AUCs the titles give, when :func:`blipviz.compare_explanations` made
        one; None otherwise.
    """

    def __init__(
        self,
        maps: Sequence[np.ndarray],
        methods: Sequence[str],
        *,
        image: Any = None,
        signed: Sequence[bool] | None = None,
        value_names: Sequence[str] | None = None,
        aucs: Mapping[str, tuple[float, float]] | None = None,
        random_auc: tuple[float, float] | None = None,
        text: str = "",
        score: float = float("nan"),
        net_name: str = "",
    ) -> None:
        if len(maps) != len(methods):
            raise InputError(f"got {len(maps)} maps and {len(methods)} methods")
        if not len(maps):
            raise InputError("nothing to draw: no maps")
        self.maps = [np.asarray(m, dtype=np.float64) for m in maps]
        self.methods = [str(m) for m in methods]
        self.image = image
        self.signed = [False] * len(maps) if signed is None else [bool(v) for v in signed]
        self.value_names = ["value"] * len(maps) if value_names is None else list(value_names)
        if len(self.signed) != len(maps) or len(self.value_names) != len(maps):
            raise InputError("signed and value_names need one entry per map")
        self.aucs = dict(aucs or {})
        self.random_auc = random_auc
        self.text = text
        self.score = float(score)
        self.net_name = net_name
        self.explanations_: dict[str, Any] = {}
        self.evaluation_: Any = None

    def _title(self, scale: str, percentile: float, note: str = "") -> str:
        what = "Explanations of one ITM match" + (f", {self.net_name}" if self.net_name else "")
        if scale == "shared":
            what += f": each map / its {percentile:g}th percentile of |value|, one scale"
        else:
            what += ": each map on its own scale"
        if note:
            what += f"; {note}"
        pair = f"“{fit_text(self.text)}”" if self.text else ""
        if not math.isnan(self.score):
            pair += ("  ·  " if pair else "") + f"ITM probability {self.score:.3f}"
        lines = [what] + ([pair] if pair else [])
        if self.aucs:
            note = (
                "AUC under the deletion (del., lower is better) and insertion curves (ins., higher is better)"
            )
            if self.random_auc is not None:
                note += f"; random order: del. {self.random_auc[0]:.3f} · ins. {self.random_auc[1]:.3f}"
            lines.append(note)
        return "\n".join(lines)

    def _panel_title(self, method: str) -> str:
        if method not in self.aucs:
            return method
        deletion, insertion = self.aucs[method]
        return f"{method}\nAUC del. {deletion:.3f} · ins. {insertion:.3f}"

    def plot(
        self,
        axes=None,
        *,
        figure=None,
        scale: str = "per-method",
        ncols: int | None = None,
        cmap: Any = None,
        signed_cmap: Any = None,
        alpha: float = OVERLAY_ALPHA,
        size: int | None = None,
        percentile: float = SCALE_PERCENTILE,
        panel_size: float = 2.4,
    ) -> ExplanationComparisonDisplay:
        """Draw one panel per method.

        Parameters
        ----------
        axes : sequence of Axes, optional
            One per method, drawn into (each with its colorbar under it, or one colorbar beside
            them all); nothing else in the figure changes: no figure title (``title_`` holds
            it), no size or layout change.
        figure : Figure or SubFigure, optional
            Make the panels inside it (a SubFigure of your figure: the comparison beside other
            panels). Default (neither given): a new figure, with the title.
        scale : {"per-method", "shared"}, default "per-method"
            Each map on its own scale in its method's units, or every map divided by its top on one
            shared scale (see :data:`COMPARISON_SCALES`).
        ncols : int, optional
            Panels per row; default: all in one row, up to 5.
        cmap : str or Colormap, optional
            The key of unsigned maps; default :data:`~blipviz.display.overlay.ATTENTION_CMAP`.
        signed_cmap : str or Colormap, optional
            The key of signed maps (a diverging one); default
            :data:`~blipviz.display.overlay.SIGNED_CMAP`.
        alpha, size, percentile
            As :meth:`blipviz.AttentionGridDisplay.plot`.
        panel_size : float, default 2.4
            Longer side of a panel of a new figure, inches.
        """
        from matplotlib.cm import ScalarMappable
        from matplotlib.colors import Normalize

        if scale not in COMPARISON_SCALES:
            raise InputError(
                f"unknown scale {scale!r}; allowed values: {', '.join(map(repr, COMPARISON_SCALES))}"
            )
        n = len(self.maps)
        cmap = ATTENTION_CMAP if cmap is None else cmap
        signed_cmap = SIGNED_CMAP if signed_cmap is None else signed_cmap
        shared = scale == "shared"
        any_signed = any(self.signed)
        # what each panel draws: (values, norm, signed key?, the norm's top)
        panels: list[tuple[np.ndarray, Normalize, bool, float]] = []
        for values, signed in zip(self.maps, self.signed, strict=True):
            values = values if signed else np.clip(values, 0.0, None)
            top = robust_max(np.abs(values), percentile)
            if shared:  # units differ between methods: each map / its top, on one scale
                values = values / top
                top = 1.0
            diverging = signed or (shared and any_signed)
            panels.append((values, Normalize(-top if diverging else 0.0, top, clip=True), diverging, top))
        ncols = max(1, min(n, ncols or min(n, 5)))
        nrows = -(-n // ncols)
        note = ""
        if self.image is not None:
            picture = overlay_picture(self.image, size)
            # a very elongated photograph: its middle, at least a quarter as wide as long
            top_row, bottom_row, left, right = crop = overlay_crop((picture.height, picture.width))
            aspect = (bottom_row - top_row) / (right - left)
            note = cropped_note(picture, crop)
        else:
            aspect = self.maps[0].shape[0] / self.maps[0].shape[1]
        em = font_size() / 10.0
        own = axes is None and figure is None
        if own:
            panel_wh = (panel_size, panel_size * aspect) if aspect <= 1 else (panel_size / aspect, panel_size)
            char_in, line_in = 0.55 * font_size(TITLE) / 72.0, 1.3 * font_size(TITLE) / 72.0
            lines = 2 if self.aucs else 1  # of a panel's title
            bar_in = 0.0 if shared else 0.62 * em  # a colorbar, its ticks and its label under a panel
            column = max(
                panel_wh[0],
                0.0 if shared else _MIN_BAR_IN * em,  # a colorbar's least width
                28 * char_in if self.aucs else 0.0,  # the AUCs' line of the title
            )
            width = max(ncols * (column + 0.15) + (1.0 * em if shared else 0.0) + 0.2, 5.0)
            chars = _heading_chars(width)
            heading_lines = sum(
                len(wrap_text(line, chars, max_chars=None).split("\n"))
                for line in self._title(scale, percentile, note).split("\n")
            )
            height = nrows * (panel_wh[1] + lines * line_in + bar_in + 0.12) + heading_lines * line_in + 0.2
            height = max(height, 2.6 * em + heading_lines * line_in)  # room for a shared colorbar's label
            figure = new_figure((width, height))
        if axes is None:
            grid = list(np.ravel(figure.subplots(nrows, ncols, squeeze=False)))
            for extra in grid[n:]:
                extra.set_visible(False)
            flat = grid[:n]
        else:
            flat = list(np.ravel(axes))
            if len(flat) < n:
                raise InputError(f"need {n} Axes (one per method), got {len(flat)}")
            flat = flat[:n]
        fig = flat[0].figure
        opacity = alpha if self.image is not None else 1.0
        keys = {
            False: fading_cmap(cmap, opacity, on_white=True),
            True: fading_cmap(signed_cmap, opacity, on_white=True, signed=True),
        }
        images, arrays, titles = [], [], []
        for ax, method, (values, norm, diverging, top) in zip(flat, self.methods, panels, strict=True):
            if self.image is not None:
                key = signed_cmap if diverging else cmap
                arr = blend(picture, values, top, cmap=key, alpha=alpha, signed=diverging)
                arr = arr[top_row:bottom_row, left:right]
                images.append(ax.imshow(arr))
            else:
                arr = values
                images.append(ax.imshow(arr, cmap=keys[diverging], norm=norm, interpolation="nearest"))
            arrays.append(arr)
            title = self._panel_title(method)
            titles.append(title)
            ax.set_title(title, fontsize=font_size(TITLE), parse_math=False)
            ax.set_xticks([])
            ax.set_yticks([])
        bars = []
        if shared:
            norm = panels[0][1]
            over = any(float(v.max()) > 1.0 for v, _, _, _ in panels)
            under = any_signed and any(float(v.min()) < -1.0 for v, _, _, _ in panels)
            bar = fig.colorbar(
                ScalarMappable(norm=norm, cmap=keys[any_signed]),
                ax=flat,
                extend=_extend(over, under),
                fraction=0.05,
                shrink=0.9,
                aspect=25,
                panchor=False,  # the panels keep their anchor (centred, or the one a user gave)
            )
            of = "|value|" if any_signed else "value"
            bar.set_label(
                f"value / its map's top\n({percentile:g}th percentile of {of})", fontsize=font_size(LABEL)
            )
            bars.append(bar)
        else:
            for ax, (values, norm, diverging, top), name in zip(flat, panels, self.value_names, strict=True):
                over = float(values.max()) > top
                under = diverging and float(values.min()) < -top
                bar = fig.colorbar(
                    ScalarMappable(norm=norm, cmap=keys[diverging]),
                    cax=colorbar_below(ax, 0.06 * em, 0.12 * em, min_width_in=_MIN_BAR_IN * em),
                    orientation="horizontal",
                    extend=_extend(over, under),
                )
                bar.set_label(name, fontsize=font_size(SMALL))
                bars.append(bar)
        for bar in bars:
            bar.ax.tick_params(labelsize=font_size(SMALL))
            if bar.orientation == "horizontal":
                _power_ticks(bar)
            else:
                readable_ticks(bar.ax.yaxis)
        self.title_ = self._title(scale, percentile, note)
        heading = None
        if own:
            chars = _heading_chars(fig.get_figwidth())
            heading = fig.suptitle(
                "\n".join(wrap_text(line, chars, max_chars=None) for line in self.title_.split("\n")),
                fontsize=font_size(TITLE),
            )
        finish_axes(flat + [bar.ax for bar in bars], [heading])
        settle_layout(fig)
        # titles and colorbar labels no wider than their panel (between words, or elided)
        changed = [
            wrap_to_width(
                ax.title,
                max(ax.get_window_extent().width, bar.ax.get_window_extent().width),
                elide=True,
                keep_lines=True,
            )
            for ax, bar in zip(flat, bars if not shared else [bars[0]] * n, strict=True)
        ]
        for bar in bars:  # a label no longer than its colorbar (and the panel over it)
            box = bar.ax.get_window_extent()
            horizontal = bar.orientation == "horizontal"
            changed.append(fit_colorbar(bar))
            if horizontal:
                length = box.width + 0.1 * fig.dpi
            else:  # beside the panels, clear of a title over them
                boxes = [ax.get_window_extent() for ax in flat]
                length = 0.95 * (max(b.y1 for b in boxes) - min(b.y0 for b in boxes))
            along = "width" if horizontal else "height"
            changed.append(
                wrap_to_width(
                    bar.ax.xaxis.label if horizontal else bar.ax.yaxis.label, length, elide=True, along=along
                )
            )
        # the colorbars under fixed-aspect panels follow them: the layout needs passes to settle
        for _ in range(3 if any(changed) else 2):
            settle_layout(fig)
        self.axes_, self.images_, self.arrays_ = flat, images, arrays
        self.norms_ = [norm for _, norm, _, _ in panels]
        self.colorbars_, self.titles_, self.scale_ = bars, titles, scale
        self.figure_ = fig
        return self


def _heading_chars(width_in: float) -> int:
    """Characters of a line of a figure title as wide as ``width_in`` inches allows."""
    return max(30, int((width_in - 0.4) * 72 / (0.55 * font_size(TITLE))))


def _extend(over: bool, under: bool) -> str:
    return {(True, True): "both", (True, False): "max", (False, True): "min"}.get((over, under), "neither")


_SUPERSCRIPTS = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def _power_ticks(bar) -> None:
    """A horizontal colorbar's ticks of a few digits (as :func:`~blipviz.display.labels.readable_ticks`
    does): values below 0.01 or from 10,000 up share a power of ten, written in the label
    (``GradCAM value (×10⁻³)``), not at the axis's end where it would meet the label under it."""
    from matplotlib.ticker import FuncFormatter

    top = max(abs(float(bar.norm.vmin)), abs(float(bar.norm.vmax)))
    power = math.floor(math.log10(top)) if top > 0 and (top < 0.01 or top >= 1e4) else 0
    scale = 10.0**power

    def tick(value: float, _position=None) -> str:
        return f"{value / scale:.6g}".replace("-", "−")

    bar.ax.xaxis.set_major_formatter(FuncFormatter(tick))
    if power:
        label = bar.ax.xaxis.label
        label.set_text(f"{label.get_text()} (×10{str(power).translate(_SUPERSCRIPTS)})")
