"""Figures of pair scores (:class:`blipviz.PairScores`): a slide of the worst (or best) pairs, one
row per pair, and the distributions of both scores with a filter's threshold.

- :class:`PairRowsDisplay`: per row the image's thumbnail, its caption (whole up to 80 characters,
  wrapped by :func:`caption_lines`: Latin words never broken, Chinese or Japanese text broken
  between characters) with the pair's position and image label below,
  and the ITM probability and the cosine similarity as bars on a grey track of their whole range,
  with their numbers. The layout is measured, not guessed: captions and numbers are laid out at the
  sizes of ``rcParams["font.size"]`` and the columns are as wide as their widest text.
- :class:`PairDistributionDisplay`: histograms of the ITM probability and of the cosine similarity,
  one per group, with the threshold drawn and the share of pairs it keeps in the legend.

Every text is drawn literally (``parse_math=False``): a caption with ``$5 and $10`` shows its dollar
signs. They draw computed data only (no net runs here); matplotlib is imported when drawing.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InputError, positive_int
from .labels import fit_text, format_number, palette, wrap_text
from .plotting import rgb_array

__all__ = ["MAX_GROUPS", "SCORE_NAMES", "PairDistributionDisplay", "PairRowsDisplay", "caption_lines"]

#: How each score is named in figures.
SCORE_NAMES = {"itm": "ITM probability", "cosine": "cosine similarity"}
#: Most groups :class:`PairDistributionDisplay` draws (more would be a legend nobody reads).
MAX_GROUPS = 12

_WRAP_CHARS = 44  # caption lines of about this many characters: two lines for 80
# a line style per group beside its colour (the second cue), none of them the thresholds' dashes
_GROUP_LINESTYLES: tuple[Any, ...] = ("-", (0, (1, 1.5)), (0, (6, 2, 1, 2)), (0, (3, 1, 1, 1, 1, 1)))
_LABEL_CHARS = 48  # image labels (file names) elided beyond this
_CUT_NOTES = {"tokens": "caption cut at the token limit", "words": "caption cut at the word limit"}
# Layout of the rows, in em of the caption font:
_PAD = 0.6  # between columns, and above and below a row's content
_THUMB = 3.6  # side of the square a thumbnail is fitted into
_TRACK = 6.0  # width of a bar's track
_BAR = 1.0  # height of a bar
_MIN_CAPTION = 12.0  # narrowest caption column
_SLACK = 1.05  # text measured at the figure's dpi is drawn a little wider at a coarser one (hinting)


def _points(size: Any) -> float:
    """A font size (points or a name such as ``"small"``) in points, under the current rcParams."""
    from matplotlib.font_manager import FontProperties

    return float(FontProperties(size=size).get_size_in_points())


def _renderer(fig):
    """The figure's renderer, or a standalone Agg renderer at its dpi (for measuring text)."""
    get = getattr(fig.canvas, "get_renderer", None)
    if get is not None:
        return get()
    from matplotlib.backends.backend_agg import RendererAgg

    return RendererAgg(1, 1, fig.dpi)


def _wide(char: str) -> bool:
    return unicodedata.east_asian_width(char) in ("W", "F")


def caption_lines(text: str, wrap_chars: int = _WRAP_CHARS) -> str:
    """A caption as the slide shows it: :func:`~blipviz.display.labels.wrap_text` (whole up to 80
    characters, lines of about ``wrap_chars``, Latin words never broken), then lines of East Asian
    wide characters (Chinese, Japanese, Korean; about two Latin characters wide each, and written
    without spaces in Chinese and Japanese) broken beside a wide character, where those scripts
    allow a line break. A break at a space replaces the space.

    Returns
    -------
    str
        Lines joined with ``"\\n"``.
    """
    out: list[str] = []
    for line in wrap_text(text, wrap_chars).split("\n"):
        widths = [2 if _wide(c) else 1 for c in line]
        if sum(widths) <= wrap_chars * 1.2 or not any(w == 2 for w in widths):
            out.append(line)
            continue
        current, used = "", 0
        for c, w in zip(line, widths, strict=True):
            if used + w > wrap_chars and current and (w == 2 or _wide(current[-1])):
                out.append(current.rstrip(" "))
                current, used = "", 0
                if c == " ":
                    continue
            current += c
            used += w
        out.append(current)
    return "\n".join(out)


def _wrap_lines(lines: Sequence[str], chars: int) -> str:
    return "\n".join(wrap_text(line, max(chars, 20), max_chars=None) for line in lines if line)


# ------------------------------------------------------------------------------------ rows
class PairRowsDisplay:
    """A slide of pairs, one row each: thumbnail, caption, ITM probability and cosine as bars.

    Build it with :meth:`blipviz.PairScores.plot_worst` or :meth:`~blipviz.PairScores.plot_best`.

    Parameters
    ----------
    texts, image_labels : sequence of str, length k
        The rows' captions (as given) and image labels, top row first.
    itm, cosine : array-like of shape (k,)
    thumbnails : sequence of PIL images or arrays, length k, optional
        Without them the thumbnail column is left out.
    truncated_by : sequence of {"tokens", "words", None}, optional
        Cut captions are noted under the caption.
    pairs : array-like of shape (k,), int, optional
        Each row's position among all pairs (shown as "pair 17"); default 0..k-1.
    n_total : int, optional
        How many pairs the rows were picked from (title: "10 of 250 pairs"); default k.
    model_name : str, optional
    which : {"worst", "best"}, default "worst"

    Attributes
    ----------
    caption_texts_, note_texts_ : list of matplotlib.text.Text
        Per row, the caption and the line below it (pair, image label, cut note).
    value_texts_ : list of matplotlib.text.Text
        Per row, the ITM number then the cosine number (2k texts).
    header_texts_ : list of matplotlib.text.Text
    bars_ : dict of {"itm", "cosine"} to list of matplotlib.patches.Rectangle
        The value bars, top row first (a bar's width is its value on the track).
    images_ : list of matplotlib.image.AxesImage
        The thumbnails, top row first (empty without thumbnails).
    ax_ : matplotlib.axes.Axes
    figure_ : matplotlib.figure.Figure
    """

    def __init__(
        self,
        texts: Sequence[str],
        image_labels: Sequence[str],
        itm: Any,
        cosine: Any,
        *,
        thumbnails: Sequence[Any] | None = None,
        truncated_by: Sequence[str | None] | None = None,
        pairs: Any = None,
        n_total: int | None = None,
        model_name: str | None = None,
        which: str = "worst",
    ) -> None:
        self.texts = [str(t) for t in texts]
        k = len(self.texts)
        if k == 0:
            raise InputError("a pair figure needs at least one pair")
        self.image_labels = [str(label) for label in image_labels]
        self.itm = np.asarray(itm, dtype=np.float64).reshape(-1)
        self.cosine = np.asarray(cosine, dtype=np.float64).reshape(-1)
        self.thumbnails = None if thumbnails is None else list(thumbnails)
        self.truncated_by = [None] * k if truncated_by is None else list(truncated_by)
        self.pairs = np.arange(k) if pairs is None else np.asarray(pairs, dtype=np.int64).reshape(-1)
        for name in ("image_labels", "itm", "cosine", "thumbnails", "truncated_by", "pairs"):
            values = getattr(self, name)
            if values is not None and len(values) != k:
                raise InputError(f"{name} has {len(values)} entries for {k} captions")
        if which not in ("worst", "best"):
            raise InputError(f"which must be 'worst' or 'best', got {which!r}")
        self.n_total = k if n_total is None else int(n_total)
        self.model_name = model_name
        self.which = which

    def title_lines(self) -> list[str]:
        """What the slide shows (which pairs, of how many, by which score) and the net."""
        k = len(self.texts)
        lowest = "lowest" if self.which == "worst" else "highest"
        pairs = "pair" if self.n_total == 1 else "pairs"
        if k < self.n_total:
            first = (
                f"The {k} {self.which} of {self.n_total:,} image-caption {pairs} ({lowest} ITM probability)"
            )
        else:
            first = f"All {k:,} image-caption {pairs}, {lowest} ITM probability first"
        return [first, f"net: {fit_text(self.model_name or 'unnamed net')}"]

    def _notes(self) -> list[str]:
        notes = []
        for pair, label, cut in zip(self.pairs, self.image_labels, self.truncated_by, strict=True):
            parts = [f"pair {int(pair)}", fit_text(label, _LABEL_CHARS)]
            if cut is not None:
                parts.append(_CUT_NOTES.get(cut, "caption cut"))
            notes.append(" · ".join(parts))
        return notes

    def plot(self, ax=None, *, wrap_chars: int = _WRAP_CHARS, title: str | None = None) -> PairRowsDisplay:
        """Draw the rows.

        Parameters
        ----------
        ax : matplotlib.axes.Axes, optional
            Default: a new figure exactly as large as the rows and the title. A given Axes is
            filled from its top left corner (axis turned off); when it is smaller than the rows
            need, the whole slide, text included, is scaled down to fit it.
        wrap_chars : int, default 44
            Caption lines of about this many characters (words are never broken).
        title : str, optional
            Replaces the default title (which pairs, of how many, the net).

        Returns
        -------
        PairRowsDisplay
            ``self``, with the attributes above set.
        """
        import matplotlib.pyplot as plt
        from matplotlib.patches import Rectangle

        wrap_chars = positive_int("wrap_chars", wrap_chars)
        own = ax is None
        if own:
            fig = plt.figure(figsize=(8.0, 6.0))
            ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
        fig = ax.figure
        ax.set_axis_off()
        ax.set_xticks([])  # no tick labels left behind an axis that is off
        ax.set_yticks([])
        fs, small, title_fs = _points("medium"), _points("small"), _points(plt.rcParams["axes.titlesize"])
        em = fs
        k = len(self.texts)
        base, second = palette(2)

        def text(s: str, size: float, **kw):
            return ax.text(0.0, 0.0, s, fontsize=size, parse_math=False, clip_on=False, **kw)

        captions = [caption_lines(t, wrap_chars) for t in self.texts]
        self.caption_texts_ = [text(c, fs, va="top", ha="left", color="0.05") for c in captions]
        self.note_texts_ = [text(n, small, va="top", ha="left", color="0.35") for n in self._notes()]
        numbers = [
            (format_number(a, ".3f"), format_number(b, ".3f"))
            for a, b in zip(self.itm, self.cosine, strict=True)
        ]
        self.value_texts_ = [text(s, small, va="center", ha="left") for pair in numbers for s in pair]
        cos_lo = -1.0 if np.nanmin(self.cosine) < 0 else 0.0
        headers = [f"{SCORE_NAMES['itm']} (0 to 1)", f"{SCORE_NAMES['cosine']} ({cos_lo:g} to 1)"]
        headers = [h.replace("-", "\u2212") for h in headers]
        self.header_texts_ = [text(h, small, va="bottom", ha="left", color="0.2") for h in headers]

        # measure every text at its natural size, in points
        renderer = _renderer(fig)
        to_pt = 72.0 / fig.dpi

        def size_pt(t) -> tuple[float, float]:
            if not t.get_text():
                return 0.0, 0.0
            box = t.get_window_extent(renderer)
            return box.width * to_pt, box.height * to_pt

        cap_sizes = [size_pt(t) for t in self.caption_texts_]
        note_sizes = [size_pt(t) for t in self.note_texts_]
        value_w = max(size_pt(t)[0] for t in self.value_texts_)
        header_sizes = [size_pt(t) for t in self.header_texts_]

        pad = _PAD * em
        has_thumbs = self.thumbnails is not None
        thumb = _THUMB * em if has_thumbs else 0.0
        cap_x = thumb + pad if has_thumbs else 0.0
        cap_w = max([_MIN_CAPTION * em] + [w for w, _ in cap_sizes] + [w for w, _ in note_sizes]) * _SLACK
        gap = 0.25 * em  # between a caption and its note
        blocks = [c[1] + gap + n[1] for c, n in zip(cap_sizes, note_sizes, strict=True)]
        # each row as tall as its content (a four-line caption does not stretch the others)
        row_h = [max(thumb, _BAR * em * 2.0, block) + 2 * pad for block in blocks]
        header_h = max(h for _, h in header_sizes) + pad
        tops = header_h + np.concatenate([[0.0], np.cumsum(row_h)])
        track = _TRACK * em
        col_x, col_w = [], []
        x = cap_x + cap_w + 2 * pad
        for header_w, _ in header_sizes:
            col_x.append(x)
            col_w.append(max(track + 0.4 * em + value_w, header_w) * _SLACK)
            x += col_w[-1] + 2 * pad
        width = x - 2 * pad
        height = float(tops[-1])

        # the scale of a given Axes (1 data unit = 1 point at scale 1)
        if own:
            scale = 1.0
            x_max, y_max = width, height
        else:
            box = ax.get_window_extent(renderer)
            ax_w, ax_h = box.width * to_pt, box.height * to_pt
            scale = min(1.0, ax_w / width, ax_h / height)
            x_max, y_max = ax_w / scale, ax_h / scale
        ax.set_xlim(0.0, x_max)
        ax.set_ylim(y_max, 0.0)  # rows top down

        for t in self.caption_texts_:
            t.set_fontsize(fs * scale)
        for t in self.note_texts_ + self.value_texts_ + self.header_texts_:
            t.set_fontsize(small * scale)

        for header, x0 in zip(self.header_texts_, col_x, strict=True):
            header.set_position((x0, header_h - 0.5 * pad))
        self.images_ = []
        self.bars_: dict[str, list[Rectangle]] = {"itm": [], "cosine": []}
        ranges = {"itm": (0.0, 1.0), "cosine": (cos_lo, 1.0)}
        for i in range(k):
            top = float(tops[i])
            middle = top + row_h[i] / 2
            ax.plot([0.0, width], [top, top], color="0.85", linewidth=0.6 * scale, solid_capstyle="butt")
            if has_thumbs:
                assert self.thumbnails is not None  # has_thumbs
                rgb = rgb_array(self.thumbnails[i])
                h, w = rgb.shape[:2]
                bw, bh = (thumb, thumb * h / w) if w >= h else (thumb * w / h, thumb)
                x0, y0 = (thumb - bw) / 2, middle - bh / 2
                self.images_.append(
                    ax.imshow(
                        rgb, extent=(x0, x0 + bw, y0 + bh, y0), aspect="auto", interpolation="antialiased"
                    )
                )
            block_top = middle - blocks[i] / 2
            self.caption_texts_[i].set_position((cap_x, block_top))
            self.note_texts_[i].set_position((cap_x, block_top + cap_sizes[i][1] + gap))
            for j, (score, value) in enumerate((("itm", self.itm[i]), ("cosine", self.cosine[i]))):
                lo, hi = ranges[score]
                x0 = col_x[j]
                y0 = middle - _BAR * em / 2
                ax.add_patch(Rectangle((x0, y0), track, _BAR * em, color="0.9", linewidth=0))
                zero = x0 + (0.0 - lo) / (hi - lo) * track
                end = x0 + (float(np.clip(value, lo, hi)) - lo) / (hi - lo) * track
                bar = Rectangle(
                    (min(zero, end), y0), abs(end - zero), _BAR * em, color=(base, second)[j], linewidth=0
                )
                ax.add_patch(bar)
                self.bars_[score].append(bar)
                if lo < 0:
                    ax.plot(
                        [zero, zero],
                        [y0 - 0.15 * em, y0 + 1.15 * _BAR * em],
                        color="0.3",
                        linewidth=0.8 * scale,
                    )
                self.value_texts_[2 * i + j].set_position((x0 + track + 0.4 * em, middle))
        ax.plot([0.0, width], [height, height], color="0.85", linewidth=0.6 * scale)

        if title is None:
            title = _wrap_lines(self.title_lines(), int(width / (0.55 * title_fs)))
        ax.set_title(title, fontsize=title_fs * scale, parse_math=False)
        if own:
            from .plotting import fit_figure_to_axes

            fit_figure_to_axes(ax, (width / 72.0, height / 72.0))
        self.ax_, self.figure_ = ax, fig
        return self


# ---------------------------------------------------------------------------- distribution
def _thresholds(threshold: Any) -> dict[str, float]:
    if threshold is None:
        return {}
    if isinstance(threshold, Mapping):
        unknown = sorted(set(threshold) - set(SCORE_NAMES))
        if unknown:
            raise InputError(f"threshold keys must be 'itm' and/or 'cosine', got {unknown}")
        items = dict(threshold)
    else:
        items = {"itm": threshold}
    out = {}
    for score, value in items.items():
        if value is None:
            continue
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise InputError(f"the {score} threshold must be a number, got {value!r}") from None
        if not np.isfinite(value):
            raise InputError(f"the {score} threshold must be finite, got {value}")
        out[score] = value
    return out


class PairDistributionDisplay:
    """Histograms of the ITM probability and the cosine similarity of pairs, per group, with a
    filter's threshold and the share of pairs it keeps.

    Build it with :meth:`blipviz.PairScores.plot_distribution`.

    Parameters
    ----------
    itm, cosine : array-like of shape (n,)
    groups : array-like of shape (n,), optional
        One group per pair (any values; shown as text). At most :data:`MAX_GROUPS` groups.
    group_name : str, optional
        What the groups are, for the title.
    threshold : float or mapping {"itm": float, "cosine": float}, optional
        A float is on the ITM probability. A pair is kept when its score is at least the threshold.
    model_name : str, optional

    Attributes
    ----------
    kept_ : DataFrame
        One row per group (``"all pairs"`` without groups): ``pairs``, and per thresholded score
        the share kept (``itm``, ``cosine``, in [0, 1]).
    axes_ : list of matplotlib.axes.Axes
        The ITM panel, then the cosine panel (when drawn).
    legend_ : matplotlib.legend.Legend or None
    figure_ : matplotlib.figure.Figure
    """

    def __init__(
        self,
        itm: Any,
        cosine: Any,
        *,
        groups: Any = None,
        group_name: str | None = None,
        threshold: Any = None,
        model_name: str | None = None,
    ) -> None:
        self.scores = {
            "itm": np.asarray(itm, dtype=np.float64).reshape(-1),
            "cosine": np.asarray(cosine, dtype=np.float64).reshape(-1),
        }
        n = len(self.scores["itm"])
        if n == 0 or len(self.scores["cosine"]) != n:
            raise InputError(f"need as many cosines as ITM probabilities, at least one; got {n}")
        if groups is None:
            self.groups = None
            self.group_names = ["all pairs"]
            self.group_index = np.zeros(n, dtype=np.int64)
        else:
            values = pd.Series(list(groups), dtype=object)
            if len(values) != n:
                raise InputError(f"groups has {len(values)} entries for {n} pairs")
            codes, uniques = pd.factorize(values, sort=False, use_na_sentinel=False)
            if len(uniques) > MAX_GROUPS:
                raise InputError(
                    f"at most {MAX_GROUPS} groups can be drawn, got {len(uniques)}: "
                    "group the pairs more coarsely"
                )
            self.groups = values.to_numpy()
            self.group_names = [str(u) for u in uniques]
            self.group_index = np.asarray(codes, dtype=np.int64)
        self.group_name = group_name
        self.thresholds = _thresholds(threshold)
        self.model_name = model_name
        rows = []
        for g, name in enumerate(self.group_names):
            member = self.group_index == g
            row: dict[str, Any] = {"group": name, "pairs": int(member.sum())}
            for score, t in self.thresholds.items():
                row[score] = float(np.mean(self.scores[score][member] >= t))
            rows.append(row)
        self.kept_ = pd.DataFrame(rows).set_index("group")

    def _bins(self, score: str, bins: int) -> np.ndarray:
        if score == "itm":
            return np.linspace(0.0, 1.0, bins + 1)
        values = self.scores[score]
        lo, hi = float(np.nanmin(values)), float(np.nanmax(values))
        if self.thresholds.get(score) is not None:
            lo, hi = min(lo, self.thresholds[score]), max(hi, self.thresholds[score])
        if hi - lo < 1e-6:
            lo, hi = lo - 0.05, hi + 0.05
        return np.linspace(lo, hi, bins + 1)

    def _legend_label(self, g: int) -> str:
        name = fit_text(self.group_names[g], 40)
        n = int(self.kept_["pairs"].iloc[g])
        label = f"{name} ({n:,} {'pair' if n == 1 else 'pairs'})"
        if self.thresholds:
            shares = ", ".join(
                f"{'ITM' if s == 'itm' else 'cosine'} {format_number(100 * self.kept_[s].iloc[g], '.0f')}%"
                for s in self.thresholds
            )
            label += f": kept {shares}"
        return label

    def title_lines(self) -> list[str]:
        n = len(self.scores["itm"])
        what = f"Scores of {n:,} image-caption {'pair' if n == 1 else 'pairs'}"
        if self.groups is not None:
            what += f" by {self.group_name}" if self.group_name else f" in {len(self.group_names)} groups"
        return [what, f"net: {fit_text(self.model_name or 'unnamed net')}"]

    def plot(self, ax=None, *, bins: int = 20) -> PairDistributionDisplay:
        """Draw the histograms.

        Parameters
        ----------
        ax : matplotlib Axes or pair of Axes, optional
            Default: a new figure with the ITM panel and the cosine panel side by side, the legend
            below them. A pair gets (ITM, cosine); a single Axes the ITM histogram alone.
        bins : int, default 20

        Returns
        -------
        PairDistributionDisplay
            ``self``, with ``axes_``, ``legend_``, ``figure_``.
        """
        import matplotlib.pyplot as plt
        from matplotlib.lines import Line2D
        from matplotlib.ticker import MaxNLocator

        bins = positive_int("bins", bins)
        own = ax is None
        if own:
            grow = max(1.0, _points("medium") / 10.0)  # room for larger fonts
            rows = -(-(len(self.group_names) + len(self.thresholds)) // 2) if self.groups is not None else 1
            size = (9.0 * grow, (3.4 + 0.22 * rows) * grow)
            fig, axes = plt.subplots(1, 2, figsize=size, layout="constrained")
            axes = list(axes)
        else:
            axes = list(np.ravel(np.asarray(ax, dtype=object)))
            if len(axes) not in (1, 2):
                raise InputError(f"ax must be one Axes or a pair of Axes, got {len(axes)}")
            fig = axes[0].figure
        colours = palette(max(len(self.group_names), 1), background=axes[0].get_facecolor())
        styles = [_GROUP_LINESTYLES[g % len(_GROUP_LINESTYLES)] for g in range(len(colours))]
        many = self.groups is not None
        for axis, score in zip(axes, ("itm", "cosine"), strict=False):
            edges = self._bins(score, bins)
            for g in range(len(self.group_names)):
                values = self.scores[score][self.group_index == g]
                if many:
                    axis.hist(
                        values,
                        edges,
                        weights=np.full(len(values), 100.0 / max(len(values), 1)),
                        histtype="step",
                        linewidth=1.8,
                        color=colours[g],
                        linestyle=styles[g],
                    )
                else:
                    axis.hist(values, edges, color=colours[0], edgecolor="white", linewidth=0.5)
            if score in self.thresholds:
                axis.axvline(self.thresholds[score], color="0.1", linestyle="--", linewidth=1.3)
            axis.set_xlabel(SCORE_NAMES[score])
            axis.set_ylabel("% of the group's pairs" if many else "pairs")
            axis.spines[["top", "right"]].set_visible(False)
            # axes set a little apart (as seaborn's despine(offset=...)): the first x and y tick
            # labels never meet in the corner
            for side in ("left", "bottom"):
                axis.spines[side].set_position(("outward", 0.4 * _points("medium")))
            if not own:
                n = len(self.scores[score])
                axis.set_title(f"{SCORE_NAMES[score]}, {n:,} pairs", parse_math=False)
            if not many:
                axis.yaxis.set_major_locator(MaxNLocator(integer=True))
        handles, labels = [], []
        if many:
            for g in range(len(self.group_names)):
                handles.append(Line2D([], [], color=colours[g], linestyle=styles[g], linewidth=1.8))
                labels.append(self._legend_label(g))
        for score, t in self.thresholds.items():
            if not any(s == score for s in ("itm", "cosine")[: len(axes)]):
                continue
            handles.append(Line2D([], [], color="0.1", linestyle="--", linewidth=1.3))
            label = f"threshold: {SCORE_NAMES[score]} \u2265 {format_number(t, 'g')}"
            if not many:
                share = float(self.kept_[score].iloc[0])
                n = int(self.kept_["pairs"].iloc[0])
                k = int(np.sum(self.scores[score] >= t))
                label += f" keeps {format_number(100 * share, '.1f')}% ({k:,} of {n:,})"
            labels.append(label)
        self.legend_ = None
        if handles:
            ncols = 2 if own and len(handles) > 3 else 1
            if own:
                self.legend_ = fig.legend(
                    handles, labels, loc="outside lower center", ncols=ncols, fontsize="small", frameon=False
                )
            else:
                self.legend_ = axes[0].legend(handles, labels, fontsize="small", loc="best")
            for legend_text in self.legend_.get_texts():
                legend_text.set_parse_math(False)
        if own:
            fs = _points(plt.rcParams["figure.titlesize"])
            chars = int(fig.get_figwidth() * 72 / (0.55 * fs))
            fig.suptitle(_wrap_lines(self.title_lines(), chars), fontsize=fs, parse_math=False)
        self.axes_, self.figure_ = axes, fig
        return self
