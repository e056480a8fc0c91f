"""Figures of cross-attention and GradCAM, drawn from computed arrays.

- :class:`AttentionGridDisplay`: one panel per token, either the (gh, gw) map as a matrix or the map
  laid on the photograph; one colour key (:mod:`blipviz.display.overlay`) with a colorbar, a shared
  or per-token scale, a tight grid, numbered repeated tokens, and a title that says the layer, the
  head reduction, whether each patch's minimum was subtracted, and the pair's ITM probability.
- :class:`HeadsTokensDisplay`: one layer's raw attention per head on the patch grid, a row of head
  maps per text token, with head labels and a colorbar; at most 12 inches tall (more tokens: pages).

No net runs here: the analyses (:mod:`blipviz.analysis.attention`) compute the maps and the ITM
probability and pass them in.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import InputError
from .labels import fit_text, number_repeats, readable_ticks, wrap_text
from .overlay import (
    OVERLAY_ALPHA,
    SCALE_PERCENTILE,
    blend,
    cropped_note,
    fading_cmap,
    overlay_crop,
    overlay_picture,
    scale_norms,
)
from .rules import LABEL, SMALL, TITLE, finish_axes, font_size, new_figure, settle_layout, wrap_to_width

__all__ = [
    "MAX_HEADS_INCHES",
    "MIN_PANEL_INCHES",
    "AttentionGridDisplay",
    "HeadsTokensDisplay",
    "describe_heads",
]

#: The smallest side of a panel of a new figure, in inches: a 24 x 24 map stays readable.
MIN_PANEL_INCHES = 2.6
#: The most height of a new heads figure, in inches: more tokens go to pages.
MAX_HEADS_INCHES = 12.0
_ROW_MAX_IN, _ROW_MIN_IN, _ROW_GAP_IN = 0.8, 0.45, 0.1  # a token's row of head maps, inches
_TITLE_IN = 0.32  # height of a panel title, inches
_LINE_IN = 0.24  # height of a line of the figure title, inches
_COLORBAR_IN = 1.1  # width taken by the colorbar and its label, inches
_CHAR_IN = 0.085  # width of a character of the figure title (10 pt DejaVu Sans), inches
_PANEL_TITLE_CHARS = 24  # panel titles (tokens) are elided in the middle beyond this
_MIN_TITLE_CHARS = 30  # the figure title's lines are at least this long (a new figure makes room)


def _percent(share: float) -> str:
    """``"18%"``, or ``"under 1%"`` (not ``"0%"`` for a share that is there)."""
    return f"{share:.0%}" if share >= 0.005 or share == 0 else "under 1%"


def describe_heads(heads: Sequence[int], n_heads: int) -> str:
    """``"mean of the 12 heads"``, ``"head 3"`` or ``"mean of heads 0, 3"``."""
    heads = list(heads)
    if len(heads) == n_heads and sorted(heads) == list(range(n_heads)):
        return f"mean of the {n_heads} heads" if n_heads > 1 else "the one head"
    if len(heads) == 1:
        return f"head {heads[0]}"
    return "mean of heads " + ", ".join(str(h) for h in heads)


def _figure_title(what: str, text: str, score: float, truncated_by: str | None, width_in: float) -> str:
    """Two or more lines: what is shown, then the text (whole up to 80 characters) and its ITM probability."""
    chars = max(_MIN_TITLE_CHARS, int(width_in / (_CHAR_IN * font_size(TITLE) / 10.0)))
    pair = f"“{fit_text(text)}”" if text else ""
    if not math.isnan(score):
        pair += f"  ·  ITM probability {score:.3f}"
    if truncated_by:
        pair += f"  (text cut by the {truncated_by} limit: maps of the tokens kept)"
    lines = [wrap_text(what, chars, max_chars=None)]
    if pair:
        lines.append(wrap_text(pair, chars, max_chars=None))
    return "\n".join(lines)


def _new_grid(n: int, ncols: int, panel_wh: tuple[float, float], title_lines: int, key_chars: int = 0):
    """A figure with ``ceil(n / ncols)`` rows of panels of ``panel_wh`` inches, at least as tall as
    a colorbar label of ``key_chars`` characters needs; unused panels hidden."""
    import matplotlib.pyplot as plt

    nrows = -(-n // ncols)
    em = font_size() / 10.0  # titles and the colorbar's label grow with rcParams["font.size"]
    width = ncols * (panel_wh[0] + 0.12) + _COLORBAR_IN * em + 0.2
    width = max(width, _MIN_TITLE_CHARS * _CHAR_IN * em + 0.6)  # room for the figure's title
    height = nrows * (panel_wh[1] + _TITLE_IN * em + 0.08) + title_lines * _LINE_IN * em + 0.3
    # the colorbar's label, upright, may wrap into twice its lines (0.55 em a character)
    key_in = 0.5 * key_chars * 0.55 * font_size(LABEL) / 72.0
    height = max(height, key_in + title_lines * _LINE_IN * em + 0.5)
    fig = plt.figure(figsize=(width, height), layout="constrained")
    grid = fig.subplots(nrows, ncols, squeeze=False)
    flat = list(grid.ravel())
    for extra in flat[n:]:
        extra.set_visible(False)
    return fig, flat[:n], [ax for ax in flat]


def _given_axes(axes, n: int):
    flat = list(np.ravel(axes))
    if len(flat) < n:
        raise InputError(f"need {n} Axes, got {len(flat)}")
    return flat[0].figure, flat[:n], flat


class AttentionGridDisplay:
    """One panel per token: the map as a matrix, or laid on the photograph; a colorbar and a title.

    Parameters
    ----------
    maps : sequence of ndarray of shape (gh, gw)
        One per panel: non-negative (negative values are drawn as 0), or any with ``signed``.
    labels : sequence of str
        The panels' tokens (repeats are numbered when drawn: ``"a (1)"``, ``"a (2)"``).
    image : PIL.Image.Image or ndarray, optional
        The photograph: panels are overlays. None: panels are matrices.
    method : {"cross-attention", "GradCAM"}
    layer, n_layers : int
        The multimodal encoder's layer (0-based) and its number of layers.
    heads : str
        The head reduction, e.g. ``"mean of the 12 heads"`` (:func:`describe_heads`).
    subtract_min : bool or None
        Cross-attention: whether each patch's minimum over the tokens was subtracted.
    text : str
    score : float
        The pair's ITM probability, computed by the analysis with the maps.
    truncated_by : {"tokens", "words", None}
    value_name : str, optional
        What the values are, for the colorbar (default: from ``method`` and ``subtract_min``).
    signed : bool, default False
        The maps have negative values that mean something (occlusion: the score rose without the
        patch; GradCAM before clipping): a diverging key centred at zero
        (:data:`~blipviz.display.overlay.SIGNED_CMAP`), each scale from ``-top`` to ``top``.
        False: the maps are drawn from 0 up (negative values as 0).
    title_chars : int, default 24
        Panel titles longer than this are elided in the middle (tokens); each is then wrapped
        between words, or elided further, to the width of its panel.

    Attributes
    ----------
    arrays_ : list of ndarray
        What each panel shows: the (gh, gw) maps, or (H, W, 3) uint8 overlays (of a photograph
        more elongated than 4:1, its middle: :func:`~blipviz.display.overlay.overlay_crop`, and
        the title says so).
    titles_ : list of str
        Panel titles (tokens, repeats numbered).
    norms_ : list of matplotlib.colors.Normalize
        Each panel's scale, from 0 (signed: ``-top``) to its top; with ``scale="shared"`` one object
        for all.
    images_ : list of matplotlib.image.AxesImage
    axes_ : ndarray of matplotlib.axes.Axes
    colorbar_ : matplotlib.colorbar.Colorbar or None
    title_ : str
    figure_ : matplotlib.figure.Figure
    """

    def __init__(
        self,
        maps: Sequence[np.ndarray],
        labels: Sequence[str],
        *,
        image: Any = None,
        method: str = "cross-attention",
        layer: int | None = None,
        n_layers: int | None = None,
        heads: str = "",
        subtract_min: bool | None = None,
        text: str = "",
        score: float = float("nan"),
        truncated_by: str | None = None,
        value_name: str | None = None,
        signed: bool = False,
        title_chars: int = _PANEL_TITLE_CHARS,
    ) -> None:
        if len(maps) != len(labels):
            raise InputError(f"got {len(maps)} maps and {len(labels)} labels")
        self.maps = [np.asarray(m, dtype=np.float64) for m in maps]
        self.labels = list(labels)
        self.image = image
        self.method = method
        self.layer = layer
        self.n_layers = n_layers
        self.heads = heads
        self.subtract_min = subtract_min
        self.text = text
        self.score = float(score)
        self.truncated_by = truncated_by
        self.value_name = value_name
        self.signed = bool(signed)
        self.title_chars = int(title_chars)

    # ------------------------------------------------------------------------------ wording
    def describe(self) -> str:
        """What the panels show: method, layer, head reduction, min-subtraction."""
        parts = [self.method]
        if self.layer is not None:
            parts.append(f"layer {self.layer}" + (f" of {self.n_layers}" if self.n_layers else ""))
        if self.method == "GradCAM":
            gradient = "gradient (not clipped)" if self.signed else "positive gradient"
            parts.append(
                f"attention × {gradient} of the ITM match logit, {self.heads or 'mean of the heads'}"
            )
        elif self.heads:
            parts.append(self.heads)
        if self.subtract_min is True:
            parts.append("each patch's minimum over the tokens subtracted")
        elif self.subtract_min is False:
            parts.append("raw probabilities")
        return ", ".join(parts)

    def value_label(self, scale: str, percentile: float) -> str:
        """The colorbar's label."""
        if self.value_name:
            value = self.value_name
        elif self.method == "GradCAM":
            value = "GradCAM value"
        elif self.subtract_min:
            value = "attention − the patch's min over tokens"
        else:
            value = "attention probability"
        of = " of |value|" if self.signed else ""
        if scale == "per-token":
            return f"{value}\n(each panel / its {percentile:g}th percentile{of})"
        return f"{value}\n(shared scale, top: {percentile:g}th percentile{of})"

    # -------------------------------------------------------------------------------- plot
    def plot(
        self,
        axes=None,
        *,
        scale: str = "shared",
        ncols: int | None = None,
        cmap: Any = None,
        alpha: float = OVERLAY_ALPHA,
        size: int | None = None,
        percentile: float = SCALE_PERCENTILE,
        panel_size: float = MIN_PANEL_INCHES,
        colorbar: bool = True,
    ) -> AttentionGridDisplay:
        """Draw the panels.

        Parameters
        ----------
        axes : array of Axes, optional
            At least one per panel; default: a new figure with ``ceil(n / ncols)`` rows.
        scale : {"shared", "per-token"}, default "shared"
            One colour scale for every panel (maps comparable), or each panel its own.
        ncols : int, optional
            Default: up to 4.
        cmap : str or Colormap, optional
            Default :data:`~blipviz.display.overlay.ATTENTION_CMAP` (reversed plasma: its top stays
            apart from red and orange content and from dark areas), or for signed maps
            :data:`~blipviz.display.overlay.SIGNED_CMAP` (any diverging colormap fits: its middle
            is zero).
        alpha : float, default :data:`~blipviz.display.overlay.OVERLAY_ALPHA`
            Opacity of the key's top colour over the photograph.
        size : int, optional
            Longest side of the overlays in pixels; default: the photograph's own, at most 384.
        percentile : float, default 99
            The scale's top is this percentile of the values (higher values get the top colour).
        panel_size : float, default 2.6
            Shorter side of each panel of a new figure, inches (at least 2.5 reads).
        colorbar : bool, default True

        Notes
        -----
        With ``axes`` given, the panels and the colorbar (which takes its room from them) are drawn
        into them and nothing else in the figure changes: the figure's title stays yours, and
        ``title_`` holds the display's (``fig.suptitle(display.title_)``). Texts are literal
        (``$`` is a dollar sign) and sized from ``rcParams["font.size"]``.
        """
        from matplotlib.cm import ScalarMappable
        from matplotlib.colors import Normalize

        n = len(self.maps)
        if n == 0:
            raise InputError("nothing to draw: no maps")
        signed = self.signed
        maps = self.maps if signed else [np.clip(m, 0.0, None) for m in self.maps]
        norms = scale_norms(maps, scale, percentile, signed=signed)
        # over a photograph the key's top is at opacity alpha; a matrix (on white) uses the full key
        on_white = fading_cmap(cmap, alpha if self.image is not None else 1.0, on_white=True, signed=signed)
        note = ""
        if self.image is not None:
            picture = overlay_picture(self.image, size)
            # a very elongated photograph: its middle, at least a quarter as wide as long
            top, bottom, left, right = crop = overlay_crop((picture.height, picture.width))
            arrays = [
                blend(picture, m, norm.vmax, cmap=cmap, alpha=alpha, signed=signed)[top:bottom, left:right]
                for m, norm in zip(maps, norms, strict=True)
            ]
            aspect = (bottom - top) / (right - left)
            note = cropped_note(picture, crop)
        else:
            arrays = list(maps)
            aspect = maps[0].shape[0] / maps[0].shape[1]
        ncols = max(1, min(n, ncols or 4))
        panel_wh = (panel_size, panel_size * aspect) if aspect <= 1 else (panel_size / aspect, panel_size)
        titles = number_repeats(self.labels)
        # a panel of a new figure is at least as wide as its title (a portrait photo's is narrow)
        title_in = max(len(fit_text(t, self.title_chars)) for t in titles) * _CHAR_IN * font_size(TITLE) / 10
        panel_wh = (max(panel_wh[0], title_in), panel_wh[1])
        own = axes is None
        if own:
            key_chars = max(map(len, self.value_label(scale, percentile).split("\n"))) if colorbar else 0
            fig, flat, grid = _new_grid(n, ncols, panel_wh, 3, key_chars)
        else:
            fig, flat, grid = _given_axes(axes, n)
        width_in = fig.get_figwidth() - 0.4
        images = []
        for ax, arr, norm, label in zip(flat, arrays, norms, titles, strict=True):
            if self.image is not None:
                images.append(ax.imshow(arr))
            else:
                images.append(ax.imshow(arr, cmap=on_white, norm=norm, interpolation="nearest"))
            ax.set_title(fit_text(label, self.title_chars), fontsize=font_size(TITLE), parse_math=False)
            ax.set_xticks([])
            ax.set_yticks([])
        what = self.describe() + (f"; {note}" if note else "")
        self.title_ = _figure_title(what, self.text, self.score, self.truncated_by, width_in)
        heading = fig.suptitle(self.title_, fontsize=font_size(TITLE)) if own else None
        self.colorbar_ = None
        if colorbar:
            over = any(float(m.max()) > norm.vmax for m, norm in zip(maps, norms, strict=True))
            under = signed and any(float(m.min()) < norm.vmin for m, norm in zip(maps, norms, strict=True))
            key = norms[0] if scale == "shared" else Normalize(-1.0 if signed else 0.0, 1.0)
            self.colorbar_ = fig.colorbar(
                ScalarMappable(norm=key, cmap=on_white),
                ax=[ax for ax in grid if ax.get_visible()],
                extend={(True, True): "both", (True, False): "max", (False, True): "min"}.get(
                    (over, under), "neither"
                ),
                fraction=0.05,
                shrink=0.6 if len(grid) > ncols else 0.9,
                aspect=25,
                panchor=False,  # the panels keep their anchor (centred, or the one a user gave)
            )
            self.colorbar_.set_label(self.value_label(scale, percentile), fontsize=font_size(LABEL))
            self.colorbar_.ax.tick_params(labelsize=font_size(SMALL))
            readable_ticks(self.colorbar_.ax.yaxis)
        finish_axes(flat + ([self.colorbar_.ax] if self.colorbar_ is not None else []), [heading])
        settle_layout(fig)
        # titles as wide as their panel at most (between words), in a figure of yours too; the
        # colorbar's label no longer than the figure is tall
        # (again after each new layout: wrapping moves the colorbar, which can leave its label less room)
        for _ in range(3):
            changed = [wrap_to_width(ax.title, ax.get_window_extent().width, elide=True) for ax in flat]
            if self.colorbar_ is not None:
                label = self.colorbar_.ax.yaxis.label
                bar, frame = self.colorbar_.ax.get_window_extent(), fig.bbox
                centre = (bar.y0 + bar.y1) / 2.0  # the label is centred on the colorbar, not the figure
                room = 2.0 * min(centre - frame.y0, frame.y1 - centre) - 0.2 * fig.dpi
                changed.append(wrap_to_width(label, max(room, 1.0), along="height"))
            if not any(changed):
                break
            settle_layout(fig)
        self.arrays_, self.titles_, self.norms_ = arrays, titles, norms
        self.figure_, self.axes_, self.images_ = fig, np.array(flat, dtype=object), images
        self.scale_ = scale
        return self


class HeadsTokensDisplay:
    """One layer's cross-attention per head, on the patch grid: one row per text token, one small map
    per head in it (the 1 + P image tokens laid back onto the gh x gw patches; the ViT's ``[CLS]``
    token, which has no place on the grid, left out and its share of the attention said).

    Parameters
    ----------
    weights : ndarray of shape (n_heads, n_tokens, 1 + P)
        The layer's attention probabilities (rows sum to 1); column 0 is the ViT's ``[CLS]``.
    tokens : sequence of str
    grid : tuple of int
        The patch grid (gh, gw), ``gh * gw == P``.
    layer, n_layers : int
    text : str
    score : float
        The pair's ITM probability.
    truncated_by : {"tokens", "words", None}

    Attributes
    ----------
    arrays_ : list of ndarray of shape (n_heads, gh, gw)
        What each row shows, per drawn token: each head's attention over the patches (divided by
        the head's maximum over the patches with ``scale="per-head"``).
    cls_share_ : ndarray of shape (n_drawn_tokens, n_heads)
        The attention each head gives the ViT's ``[CLS]`` token (not drawn).
    tokens_ : list of int
        The positions of the tokens drawn (this page's).
    page_, n_pages_ : int
        The page drawn (0-based) and how many the tokens take.
    titles_ : list of str
        The rows' tokens, repeats numbered.
    images_, axes_, colorbar_, figure_, title_, norm_, scale_
    """

    def __init__(
        self,
        weights: np.ndarray,
        tokens: Sequence[str],
        *,
        grid: tuple[int, int],
        layer: int | None = None,
        n_layers: int | None = None,
        text: str = "",
        score: float = float("nan"),
        truncated_by: str | None = None,
    ) -> None:
        weights = np.asarray(weights, dtype=np.float64)
        if weights.ndim != 3 or weights.shape[1] != len(tokens):
            raise InputError(
                f"weights must have shape (n_heads, {len(tokens)} tokens, image tokens), got {weights.shape}"
            )
        gh, gw = (int(v) for v in grid)
        if weights.shape[2] != 1 + gh * gw:
            raise InputError(
                f"weights have {weights.shape[2]} image tokens; a {gh} x {gw} grid needs {1 + gh * gw} "
                "([CLS] and the patches)"
            )
        self.weights = weights
        self.tokens = list(tokens)
        self.grid = (gh, gw)
        self.layer, self.n_layers = layer, n_layers
        self.text, self.score, self.truncated_by = text, float(score), truncated_by

    def plot(
        self,
        axes=None,
        *,
        tokens: Sequence[int] | None = None,
        page: int = 0,
        scale: str = "per-head",
        cmap: Any = None,
        width: float = 10.0,
        max_height: float = MAX_HEADS_INCHES,
        row_height: float | None = None,
    ) -> HeadsTokensDisplay:
        """Draw one row per text token, a map per head in it.

        Parameters
        ----------
        axes : array of Axes, optional
            One per token drawn (all of ``tokens``, no pages): drawn into, nothing else in the
            figure changes (no figure title: ``title_`` holds it). Default: a new figure.
        tokens : list of int, optional
            Token positions; default: all.
        page : int, default 0
            A new figure is at most ``max_height`` inches tall: when the tokens' rows do not fit at
            the smallest readable height, they are split into pages of equal size, and ``page``
            chooses one (the title says which tokens and how many pages).
        scale : {"per-head", "shared"}, default "per-head"
            ``"per-head"``: each head's map divided by its maximum over the patches (where each head
            looks most, whatever its spread); ``"shared"``: probabilities on one scale whose top is
            their 99th percentile.
        cmap : str or Colormap, default :data:`~blipviz.display.overlay.ATTENTION_CMAP` (white = 0)
        width : float, default 10
            Most width of a new figure, inches.
        max_height : float, default 12
            Most height of a new figure, inches.
        row_height : float, optional
            Height of a token's row (a head's map), inches; default: the largest up to 0.8 that fits
            the width and ``max_height``, at least 0.45 (beyond that, pages).
        """
        from matplotlib.cm import ScalarMappable
        from matplotlib.colors import Normalize
        from matplotlib.patches import Rectangle

        if scale not in ("per-head", "shared"):
            raise InputError(f"unknown scale {scale!r}; allowed values: 'per-head', 'shared'")
        n_heads, n_tokens, _ = self.weights.shape
        gh, gw = self.grid
        chosen = list(range(n_tokens)) if tokens is None else [int(t) % n_tokens for t in tokens]
        if not chosen:
            raise InputError("no tokens to draw")
        em = font_size() / 10.0
        # the mosaic of one row: the heads' gh x gw maps side by side, one patch apart
        cols = n_heads * (gw + 1) - 1
        ratio = cols / gh  # width / height of a row's map
        label_in, bar_in = 1.3 * em, 1.2 * em  # token labels on the left, the colorbar on the right
        fixed_in = (4 * _LINE_IN + 0.5) * em + 0.3  # title, head labels, the note under the rows
        own = axes is None
        if own:
            fit_width = max(0.2, (width - label_in - bar_in - 0.3) / ratio)
            if row_height is None:
                fit_height = (max_height - fixed_in) / len(chosen) - _ROW_GAP_IN
                row_h = min(_ROW_MAX_IN, fit_width, max(fit_height, _ROW_MIN_IN))
            else:
                row_h = float(row_height)
            per_page = max(1, math.floor((max_height - fixed_in) / (row_h + _ROW_GAP_IN) + 1e-6))
            n_pages = -(-len(chosen) // per_page)
            per_page = -(-len(chosen) // n_pages)  # pages of equal size
            if not 0 <= page < n_pages:
                raise InputError(
                    f"page {page} does not exist: the tokens take {n_pages} page(s), 0 to {n_pages - 1}"
                )
            index = chosen[page * per_page : (page + 1) * per_page]
            fig_w = min(width, row_h * ratio + label_in + bar_in + 0.3)
            fig_w = max(fig_w, _MIN_TITLE_CHARS * _CHAR_IN * em + 0.6)
            fig_h = len(index) * (row_h + _ROW_GAP_IN) + fixed_in
            fig_h = max(fig_h, 0.5 * 48 * 0.55 * font_size(LABEL) / 72.0 + 1.0)  # its colorbar's label
            fig = new_figure((fig_w, fig_h))
            flat = list(fig.subplots(len(index), 1, squeeze=False).ravel())
        else:
            n_pages, index = 1, chosen
            if page != 0:
                raise InputError("page= chooses the tokens of a new figure; with axes= pass tokens=")
            fig, flat, _ = _given_axes(axes, len(index))
        # (tokens, heads, gh, gw): the patches' attention; [CLS] apart
        blocks = self.weights[:, index, 1:].transpose(1, 0, 2).reshape(len(index), n_heads, gh, gw)
        cls_share = self.weights[:, index, 0].T
        if scale == "per-head":
            arrays = [b / np.maximum(b.max(axis=(1, 2), keepdims=True), 1e-12) for b in blocks]
            norm = Normalize(0.0, 1.0)
            label = "attention / the head's maximum over the patches"
            extend = "neither"
        else:
            arrays = list(blocks)
            top = float(np.percentile(blocks, SCALE_PERCENTILE))
            top = top if top > 0 else float(blocks.max()) or 1.0
            norm = Normalize(0.0, top, clip=True)
            label = f"attention probability (top: {SCALE_PERCENTILE:g}th percentile)"
            extend = "max" if float(blocks.max()) > top else "neither"
        titles = [number_repeats(self.tokens)[t] for t in index]
        on_white = fading_cmap(cmap, 1.0, on_white=True)
        images = []
        centres = [h * (gw + 1) + (gw - 1) / 2 for h in range(n_heads)]
        step = max(1, math.ceil(n_heads / 12))  # at most 12 head labels
        for ax, arr, title in zip(flat, arrays, titles, strict=True):
            mosaic = np.full((gh, cols), np.nan)
            for h in range(n_heads):
                mosaic[:, h * (gw + 1) : h * (gw + 1) + gw] = arr[h]
            images.append(ax.imshow(mosaic, cmap=on_white, norm=norm, interpolation="nearest"))
            # rows at the left of their room, next to their token labels: a layout engine then
            # leaves the labels the room they take (centred rows moved half as far as needed)
            ax.set_anchor("W")
            for h in range(n_heads):  # each head's map framed: its white (0) apart from the page's
                ax.add_patch(
                    Rectangle(
                        (h * (gw + 1) - 0.5, -0.5),
                        gw,
                        gh,
                        fill=False,
                        edgecolor="0.6",
                        linewidth=0.6,
                        clip_on=False,
                    )
                )
            ax.set_yticks([])
            ax.set_xticks(
                centres[::step], [f"head {h}" if h == 0 else str(h) for h in range(0, n_heads, step)]
            )
            ax.tick_params(axis="x", labelsize=font_size(SMALL), length=0, pad=2, labelbottom=False)
            ax.tick_params(axis="x", labeltop=ax is flat[0])
            for side in ax.spines.values():
                side.set_visible(False)
            ax.set_ylabel(
                fit_text(title, 16),
                rotation=0,
                ha="right",
                va="center",
                fontsize=font_size(LABEL),
                labelpad=4,
            )
        share = float(cls_share.mean())
        flat[-1].set_xlabel(
            f"each map: one head's attention over the {gh} × {gw} patches; "
            f"the ViT's [CLS] token not drawn ({_percent(share)} of the attention, on average)",
            fontsize=font_size(SMALL),
        )
        what = (
            f"cross-attention, layer {self.layer}"
            + (f" of {self.n_layers}" if self.n_layers else "")
            + (": the one head" if n_heads == 1 else f": the {n_heads} heads (columns)")
            + " per text token (rows)"
        )
        if n_pages > 1:
            shown = f"tokens {index[0]}–{index[-1]}" if index == list(range(index[0], index[-1] + 1)) else ""
            what += f"; page {page + 1} of {n_pages}" + (f" ({shown} of {n_tokens})" if shown else "")
            following = page + 1 if page + 1 < n_pages else 0
            what += f"; page={following} draws the {'next' if following else 'first'}"
        self.title_ = _figure_title(what, self.text, self.score, self.truncated_by, fig.get_figwidth() - 0.5)
        heading = fig.suptitle(self.title_, fontsize=font_size(TITLE)) if own else None
        self.colorbar_ = fig.colorbar(
            ScalarMappable(norm=norm, cmap=on_white),
            ax=flat,
            extend=extend,
            fraction=0.03,
            shrink=min(0.85, 4.0 / max(fig.get_figheight(), 1.0) + 0.3),  # its end ticks clear of the note
            aspect=20,
            panchor=False,  # the rows stay at the left, next to their labels
        )
        self.colorbar_.set_label(label, fontsize=font_size(LABEL))
        self.colorbar_.ax.tick_params(labelsize=font_size(SMALL))
        readable_ticks(self.colorbar_.ax.yaxis)
        finish_axes([*flat, self.colorbar_.ax], [heading])
        settle_layout(fig)
        row, frame = flat[-1].get_window_extent(), fig.bbox
        right = self.colorbar_.ax.get_window_extent().x0  # the note stays left of the colorbar
        middle = (row.x0 + row.x1) / 2.0  # the note is centred under the last row: room both ways
        width_px = 2.0 * min(middle - frame.x0, right - middle) - 0.2 * fig.dpi
        changed = [wrap_to_width(flat[-1].xaxis.label, max(min(width_px, 0.95 * row.width), 1.0))]
        bar = self.colorbar_.ax.get_window_extent()
        centre = (bar.y0 + bar.y1) / 2.0  # the label is centred on the colorbar: room both ways
        room = 2.0 * min(centre - frame.y0, frame.y1 - centre) - 0.2 * fig.dpi
        rows = flat[0].get_window_extent().y1 - flat[-1].get_window_extent().y0
        room = min(room, 0.95 * rows)  # beside the rows, clear of a title over them
        changed.append(wrap_to_width(self.colorbar_.ax.yaxis.label, max(room, 1.0), along="height"))
        # fixed-aspect rows under long token labels: the layout needs a few passes to settle
        for _ in range(3 if any(changed) else 2):
            settle_layout(fig)
        self.arrays_, self.titles_, self.images_, self.cls_share_ = arrays, titles, images, cls_share
        self.tokens_, self.page_, self.n_pages_ = index, page, n_pages
        self.figure_, self.axes_, self.norm_, self.scale_ = fig, np.array(flat, dtype=object), norm, scale
        return self
