"""The rules every blipviz figure follows, built once: the figure modules draw through these helpers.

- **Literal text.** Captions, tokens, labels and titles are data: every text blipviz draws has
  ``parse_math=False`` (``"costs $5 and $10"`` shows its dollar signs, ``"$z$"`` is not an italic
  z). :func:`literal_texts` turns it off on what a display drew, tick labels included; numbers a
  tick formatter writes (``10⁻⁵``, log ticks) keep matplotlib's typesetting. HTML tables carry
  :data:`NO_MATHJAX`, so Jupyter does not typeset them either.
- **Sizes from rcParams.** Font sizes are multiples of ``rcParams["font.size"]`` (:func:`font_size`
  with :data:`TITLE`, :data:`LABEL`, :data:`SMALL`, :data:`TINY`): with ``font.size: 14`` the whole
  figure grows, and the layouts that measure text grow with it.
- **Missing glyphs.** A text with characters that the fonts of ``rcParams["font.family"]`` lack
  (Japanese, most emoji, with matplotlib's DejaVu Sans) is drawn as empty boxes; :func:`check_glyphs`
  gives one :class:`MissingGlyphWarning` per such text, naming it and the setting that fixes it.
- **Legends beside the data**, never over it (:func:`legend_beside`).
- **Colour without confusion.** :data:`CATEGORICAL` (Okabe & Ito's palette, without its yellow)
  stays distinct under deuteranopia, protanopia and tritanopia (:func:`simulate_cvd`, Machado et
  al. 2009); every categorical figure draws from it (:func:`blipviz.display.labels.palette`) and
  adds a second cue: a marker and a line style per series of a line plot (:func:`line_cues`), a
  marker per category of a scatter (:func:`category_cues`).
- **Counts read right**: "1 pair", "2 pairs" (:func:`plural`).
- **Thumbnails of any shape are readable**: a 1:20 strip is not drawn as a 2-pixel sliver but as
  its middle, cropped, at least :data:`MIN_THUMBNAIL_SHARE` of its box (:func:`thumbnail_crop`).
- **A figure function draws into the Axes it is given** and changes nothing outside them: no
  figure title, no figure size, no layout change on a user's figure. Figures blipviz makes use
  constrained layout (:func:`new_figure`), settled once before they are returned
  (:func:`settle_layout`).
- **PDF and SVG keep their text as text** when saved inside :func:`editable_text`
  (``pdf.fonttype: 42``, ``ps.fonttype: 42``, ``svg.fonttype: "none"``); blipviz itself saves only
  PNGs, so it never changes these settings for you::

      with blipviz.display.rules.editable_text():
          display.figure_.savefig("heatmap.pdf")

matplotlib is imported inside the functions that need it.
"""

from __future__ import annotations

import contextlib
import itertools
import unicodedata
import warnings
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from .labels import CATEGORICAL, cielab, fit_text

__all__ = [
    "CATEGORICAL",
    "CVD_MATRICES",
    "LABEL",
    "MARKERS",
    "MIN_THUMBNAIL_SHARE",
    "NO_MATHJAX",
    "SMALL",
    "TINY",
    "TITLE",
    "MissingGlyphWarning",
    "category_cues",
    "check_glyphs",
    "colorbar_axes",
    "colorbar_below",
    "editable_text",
    "finish_axes",
    "fit_colorbar",
    "fit_title",
    "font_size",
    "legend_beside",
    "line_cues",
    "literal_texts",
    "missing_glyphs",
    "new_figure",
    "plural",
    "settle_layout",
    "simulate_cvd",
    "thumbnail_crop",
    "wrap_to_width",
]

# ------------------------------------------------------------------------------------- sizes
#: Font sizes, as multiples of ``rcParams["font.size"]`` (10 pt by default: titles 10 pt, labels
#: 9 pt, small text 8 pt, tick labels of dense axes 7 pt).
TITLE = 1.0
#: Axis labels and legends: 0.9 x ``font.size``.
LABEL = 0.9
#: Small text (callouts, notes, colorbar ticks): 0.8 x ``font.size``.
SMALL = 0.8
#: Tick labels of dense axes: 0.7 x ``font.size``.
TINY = 0.7


def font_size(scale: float = 1.0) -> float:
    """``scale`` times ``rcParams["font.size"]``, in points (the size of every text blipviz draws)."""
    import matplotlib as mpl

    return float(mpl.rcParams["font.size"]) * float(scale)


# ---------------------------------------------------------------------------------- counting
def plural(n: int, noun: str, nouns: str | None = None) -> str:
    """``"1 pair"``, ``"2 pairs"``, ``"1,000 images"``; ``nouns`` for an irregular plural."""
    n = int(n)
    return f"{n:,} {noun if n == 1 else (nouns or noun + 's')}"


# ------------------------------------------------------------------------------ literal text
#: HTML classes that keep Jupyter's MathJax (versions 2 and 3) from typesetting ``$...$`` inside an
#: element: blipviz's HTML tables and reports carry them, so their texts read as written.
NO_MATHJAX = "tex2jax_ignore mathjax_ignore"


def _given_labels(formatter, locator) -> bool:
    """Whether an axis's tick labels are strings it was given (``set_xticks(ticks, labels)``: a
    FixedFormatter, or matplotlib >= 3.10's FuncFormatter over a FixedLocator), not numbers."""
    from matplotlib.ticker import FixedFormatter, FixedLocator, FuncFormatter

    return isinstance(formatter, FixedFormatter) or (
        isinstance(formatter, FuncFormatter) and isinstance(locator, FixedLocator)
    )


def _formatted_texts(ax) -> set[int]:
    """Ids of the texts a tick formatter writes in ``ax`` (numbers, possibly math): left alone."""
    ids: set[int] = set()
    for axis in (ax.xaxis, ax.yaxis):
        ids.add(id(axis.offsetText))
        for ticks, formatter, locator in (  # every tick the axis draws now (created if need be)
            (axis.get_major_ticks(), axis.get_major_formatter(), axis.get_major_locator()),
            (axis.get_minor_ticks(), axis.get_minor_formatter(), axis.get_minor_locator()),
        ):
            if not _given_labels(formatter, locator):
                ids.update(id(t) for tick in ticks for t in (tick.label1, tick.label2))
    return ids


def _axes_texts(axes: Iterable) -> list:
    """Every Text artist in ``axes`` and their inset Axes (colorbars), but those of tick formatters."""
    from matplotlib.text import Text

    tree, seen = [], set()
    stack = list(axes)
    while stack:  # the Axes and their inset Axes (whose texts an Axes' findobj finds too)
        ax = stack.pop(0)
        if id(ax) in seen:
            continue
        seen.add(id(ax))
        tree.append(ax)
        stack.extend(ax.child_axes)
    skip: set[int] = set()
    for ax in tree:
        for axis in (ax.xaxis, ax.yaxis):  # tick labels get their text from the formatter: now
            axis.get_majorticklabels()
            axis.get_minorticklabels()
        skip |= _formatted_texts(ax)
    found = [t for ax in tree for t in ax.findobj(Text, include_self=False) if id(t) not in skip]
    unique = {id(t): t for t in found}
    return list(unique.values())


def literal_texts(artists: Iterable) -> None:
    """``parse_math=False`` on each Text in ``artists``: drawn as written, ``$`` included."""
    for artist in artists:
        artist.set_parse_math(False)


def _renderer(fig):
    """The renderer of ``fig``'s canvas, or None when the canvas cannot draw (a bare
    ``matplotlib.figure.Figure``): measured adjustments are then left out."""
    get = getattr(fig.canvas, "get_renderer", None)
    return get() if get is not None else None


def wrap_to_width(
    artist, width_px: float, *, elide: bool = False, along: str = "width", keep_lines: bool = False
) -> bool:
    """Wrap a Text's lines (between words, never inside one) until it is at most ``width_px``
    display pixels wide, as measured on its figure's renderer (``along="height"``: as tall, for
    an upright text such as a colorbar's label). Returns whether it was changed.

    A text that no wrap makes narrow enough (one long word) keeps its narrowest wrap, or with
    ``elide`` is shortened in the middle (:func:`~blipviz.display.labels.fit_text`) until it fits,
    down to 5 characters. ``keep_lines``: the text's own line breaks stay (a title's subtitle line
    keeps its line) and each of its lines is wrapped or elided alike."""
    from .labels import wrap_text

    renderer = _renderer(artist.figure)
    if renderer is None:
        return False

    def fits() -> bool:
        return getattr(artist.get_window_extent(renderer), along) <= width_px

    text = artist.get_text()
    if not text or fits():
        return False
    parts = [" ".join(line.split()) for line in text.split("\n")] if keep_lines else [" ".join(text.split())]
    for chars in range(max(len(line) for line in text.split("\n")) - 1, 7, -1):
        artist.set_text("\n".join(wrap_text(part, chars, max_chars=None) for part in parts))
        if fits():
            return True
    if elide:
        for chars in range(max(map(len, parts)) - 1, 4, -1):
            artist.set_text("\n".join(fit_text(part, chars) for part in parts))
            if fits():
                break
    return True


def fit_title(ax, *, margin_px: float = 4.0) -> bool:
    """Wrap ``ax``'s centred title between words until it stays inside its figure (or subfigure):
    a title centred over an Axes that a legend or colorbar pushed aside has less room on one side
    than the figure's width suggests. Call it once the layout has placed the Axes (after
    :func:`settle_layout`) and settle the layout again when it returns True."""
    title = ax.title
    if not title.get_text() or _renderer(ax.figure) is None:
        return False
    box, frame = ax.get_window_extent(), ax.figure.bbox
    centre = (box.x0 + box.x1) / 2.0
    room = 2.0 * min(centre - frame.x0, frame.x1 - centre) - 2.0 * margin_px
    return wrap_to_width(title, max(room, 1.0), keep_lines=True)


# ---------------------------------------------------------------------------- missing glyphs
class MissingGlyphWarning(UserWarning):
    """A text has characters that no font of ``rcParams["font.family"]`` can draw."""


_CHARMAPS: dict[tuple[str, int], frozenset[int]] = {}


def _font_paths(prop) -> list:
    """The font files matplotlib draws ``prop`` with: its families in order, as fallbacks."""
    from matplotlib import font_manager

    find_all = getattr(font_manager.fontManager, "_find_fonts_by_props", None)
    if find_all is not None:
        return list(find_all(prop))
    return [font_manager.findfont(prop)]


def _charmap(path) -> frozenset[int]:
    from matplotlib import font_manager

    key = (str(getattr(path, "path", path)), int(getattr(path, "face_index", 0)))
    if key not in _CHARMAPS:
        _CHARMAPS[key] = frozenset(font_manager.get_font(path).get_charmap())
    return _CHARMAPS[key]


def _family_name(path) -> str:
    from matplotlib import font_manager

    return str(font_manager.get_font(path).family_name)


def _drawable(char: str) -> bool:
    """Whether a character needs a glyph: not spaces, controls, joiners or variation selectors."""
    if char.isspace():
        return False
    if unicodedata.category(char) in ("Cc", "Cf", "Zs", "Zl", "Zp"):
        return False
    code = ord(char)
    return not (0xFE00 <= code <= 0xFE0F or 0xE0100 <= code <= 0xE01EF)


def missing_glyphs(text: str, fontproperties=None) -> str:
    """The characters of ``text`` (in order, each once) that no font of ``fontproperties`` has.

    Parameters
    ----------
    text : str
    fontproperties : matplotlib.font_manager.FontProperties, optional
        Default: ``rcParams``' font (``font.family`` and its fallbacks).
    """
    from matplotlib.font_manager import FontProperties

    prop = fontproperties if fontproperties is not None else FontProperties()
    charmaps = [_charmap(p) for p in _font_paths(prop)]
    missing = []
    for char in dict.fromkeys(str(text)):
        if _drawable(char) and not any(ord(char) in cm for cm in charmaps):
            missing.append(char)
    return "".join(missing)


def _fix_for(missing: str) -> str:
    """The ``font.family`` advice for the scripts of the missing characters."""
    names = " ".join(unicodedata.name(c, "") for c in missing)
    if any(w in names for w in ("CJK", "HIRAGANA", "KATAKANA", "HANGUL", "IDEOGRAPH")):
        font = "Noto Sans CJK JP"  # Chinese, Japanese and Korean in one font
    elif any(ord(c) >= 0x1F000 for c in missing):
        font = "Noto Emoji"  # monochrome: matplotlib's renderers draw no colour fonts
    else:
        font = "a Noto font of that script"
    return (
        f'set rcParams["font.family"] to a list whose later fonts have them, e.g. '
        f'plt.rcParams["font.family"] = ["DejaVu Sans", "{font}"] (installed on this machine)'
    )


def check_glyphs(texts: Iterable) -> list[str]:
    """Warn once per text whose characters the fonts in use cannot draw.

    Parameters
    ----------
    texts : iterable of matplotlib.text.Text
        The drawn texts; equal strings are checked and warned about once.

    Returns
    -------
    list of str
        The texts warned about (:class:`MissingGlyphWarning`, naming the text, the characters,
        the fonts and the ``rcParams["font.family"]`` setting that fixes it).
    """
    warned: dict[str, str] = {}
    for artist in texts:
        string = artist.get_text()
        if not string or string in warned or not any(ord(c) > 127 for c in string):
            continue
        missing = missing_glyphs(string, artist.get_fontproperties())
        if not missing:
            continue
        warned[string] = missing
        fonts = ", ".join(dict.fromkeys(_family_name(p) for p in _font_paths(artist.get_fontproperties())))
        shown = fit_text(string.replace("\n", " "))
        warnings.warn(
            f"the text {shown!r} has characters that the font(s) of rcParams['font.family'] "
            f"({fonts}) lack: {', '.join(repr(c) for c in missing[:8])}"
            f"{' …' if len(missing) > 8 else ''}; they are drawn as empty boxes. To draw them, "
            + _fix_for(missing),
            MissingGlyphWarning,
            stacklevel=3,
        )
    return list(warned)


def finish_axes(axes: Iterable, texts: Iterable = ()) -> None:
    """The text rules on what a display drew: every text of ``axes`` (titles, labels, tick labels
    but a formatter's numbers, legends, annotations, colorbars) and of ``texts`` (figure titles)
    drawn literally, and one :class:`MissingGlyphWarning` per text with missing glyphs."""
    found = _axes_texts(axes) + [t for t in texts if t is not None]
    literal_texts(found)
    check_glyphs([t for t in found if t.get_visible()])


# -------------------------------------------------------------------------------- colours
#: Okabe & Ito's colour-blind-safe palette (2008) without its yellow (it vanishes on white): blue,
#: orange, bluish green, reddish purple, sky blue, vermillion, black. Under Machado et al.'s
#: simulations of deuteranopia, protanopia and tritanopia no two are closer than ΔE 16 (CIELAB).
#: Markers of line plots' series, one per colour of :data:`CATEGORICAL` (a cue beside colour).
MARKERS = ("o", "s", "^", "D", "v", "P", "X")
_LINESTYLES = ("-", (0, (5, 2)), (0, (1, 1.5)), (0, (6, 2, 1, 2)))

#: Machado, Oliveira & Fernandes (2009), severity 1.0: linear-RGB matrices simulating dichromacy.
CVD_MATRICES = {
    "protanopia": np.array(
        [[0.152286, 1.052583, -0.204868], [0.114503, 0.786281, 0.099216], [-0.003882, -0.048116, 1.051998]]
    ),
    "deuteranopia": np.array(
        [[0.367322, 0.860646, -0.227968], [0.280085, 0.672501, 0.047413], [-0.011820, 0.042940, 0.968881]]
    ),
    "tritanopia": np.array(
        [[1.255528, -0.076749, -0.178779], [-0.078411, 0.930809, 0.147602], [0.004733, 0.691367, 0.303900]]
    ),
}


def simulate_cvd(hex_colours: Sequence[str], kind: str) -> list[str]:
    """How ``hex_colours`` look to a reader with ``kind`` ("protanopia", "deuteranopia",
    "tritanopia"): Machado et al.'s matrices applied in linear RGB. Returns hex colours."""
    from matplotlib.colors import to_rgb

    matrix = CVD_MATRICES[kind]
    rgb = np.array([to_rgb(c) for c in hex_colours])
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    seen = np.clip(linear @ matrix.T, 0.0, 1.0)
    srgb = np.where(seen <= 0.0031308, 12.92 * seen, 1.055 * seen ** (1 / 2.4) - 0.055)
    return ["#{:02x}{:02x}{:02x}".format(*np.round(c * 255).astype(int)) for c in srgb]


def min_delta_e(hex_colours: Sequence[str], kind: str | None = None) -> float:
    """The smallest CIELAB distance (CIE76) between two of ``hex_colours``, as seen normally
    (``kind=None``) or under a simulated dichromacy."""
    if len(hex_colours) < 2:
        return float("inf")
    colours = list(hex_colours) if kind is None else simulate_cvd(hex_colours, kind)
    lab = cielab(colours)
    gaps = np.linalg.norm(lab[:, None, :] - lab[None, :, :], axis=-1)
    return float(gaps[np.triu_indices(len(lab), 1)].min())


def line_cues(n: int) -> list[dict[str, Any]]:
    """``n`` series styles (``color``, ``marker``, ``linestyle``) for line plots: the colours of
    :data:`CATEGORICAL` with a marker each; beyond 7 series the colours repeat with other markers
    and another line style, so no two of the first 196 series share all three."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    k = len(CATEGORICAL)
    return [
        {
            "color": CATEGORICAL[i % k],
            "marker": MARKERS[(i + i // k) % len(MARKERS)],
            "linestyle": _LINESTYLES[(i // k) % len(_LINESTYLES)],
        }
        for i in range(n)
    ]


def category_cues(n: int, background=None) -> list[dict[str, str]]:
    """``n`` category styles (``color``, ``marker``) for scatter plots: the colours of
    :func:`blipviz.display.labels.palette` (on ``background``), each with its own marker of
    :data:`MARKERS`; beyond the palette's colours they repeat with other markers, so no two of
    the first ``7 * palette_size(background)`` categories (49 on white) share both."""
    from .labels import palette, palette_size

    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    k = palette_size(background)
    return [
        {"color": colour, "marker": MARKERS[(i % k + i // k) % len(MARKERS)]}
        for i, colour in enumerate(palette(n, background))
    ]


# -------------------------------------------------------------------------------- legends
def legend_beside(ax, handles=None, labels=None, *, title: str | None = None, **kw: Any):
    """A legend to the right of ``ax``, outside its data area (so never over a curve), top-aligned,
    its texts literal and of :data:`SMALL` size. Under constrained layout the Axes make room for it.
    """
    args = [] if handles is None else [handles] if labels is None else [handles, labels]
    options = {
        "loc": "upper left",
        "bbox_to_anchor": (1.02, 1.0),
        "borderaxespad": 0.0,
        "frameon": False,
        "fontsize": font_size(SMALL),
        "title_fontsize": font_size(SMALL),
    }
    options.update(kw)
    legend = ax.legend(*args, title=title, **options)
    literal_texts([*legend.get_texts(), legend.get_title()])
    return legend


class _BesideData:
    """Axes locator: ``gap_in`` inches right of data x ``x_data`` of ``parent``, ``width_in`` inches
    wide, over ``span`` (bottom, top) as fractions of the parent's height, wherever the layout
    puts the parent."""

    def __init__(self, parent, x_data: float, gap_in: float, width_in: float, span) -> None:
        self.parent, self.x_data, self.gap_in, self.width_in = parent, x_data, gap_in, width_in
        self.span = tuple(span)

    def __call__(self, ax, renderer):
        from matplotlib.transforms import Bbox

        parent = self.parent
        parent.apply_aspect()
        dpi = parent.figure.dpi
        x0 = parent.transData.transform((self.x_data, 0.0))[0] + self.gap_in * dpi
        (_, y0), (_, y1) = parent.transAxes.transform([(0.0, self.span[0]), (0.0, self.span[1])])
        box = Bbox.from_extents(x0, y0, x0 + self.width_in * dpi, y1)
        return box.transformed(parent.figure.transSubfigure.inverted())


def fit_colorbar(colorbar, label_length_px: float | None = None) -> bool:
    """A colorbar readable at its drawn size: fewer ticks when their labels would touch (a short
    colorbar of a one-row heatmap at font.size 14), and its label wrapped to at most
    ``label_length_px`` (between words). Measured on the figure as drawn last; returns whether
    anything changed (then lay the figure out again)."""
    from matplotlib.ticker import MaxNLocator

    ax = colorbar.ax
    renderer = _renderer(ax.figure)
    if renderer is None:
        return False
    vertical = colorbar.orientation == "vertical"
    axis = ax.yaxis if vertical else ax.xaxis
    low, high = sorted(axis.get_view_interval())
    labels = [
        t.label2 if vertical and t.label2.get_visible() else t.label1
        for t in axis.get_major_ticks()
        if low - 1e-9 <= t.get_loc() <= high + 1e-9
    ]
    boxes = sorted(
        (b.y0, b.y1) if vertical else (b.x0, b.x1)
        for b in (t.get_window_extent(renderer) for t in labels if t.get_text())
    )
    changed = False
    if any(b[0] < a[1] + 1.0 for a, b in itertools.pairwise(boxes)):
        size = max(b - a for a, b in boxes)
        span = ax.get_window_extent(renderer)
        length = span.height if vertical else span.width
        colorbar.locator = MaxNLocator(nbins=max(1, int(length // (1.8 * size))))
        changed = True
    if label_length_px is not None:
        label = axis.label
        changed |= wrap_to_width(label, label_length_px, along="height" if vertical else "width")
    return changed


def colorbar_axes(ax, x_data: float, gap_in: float, width_in: float, span=(0.0, 1.0)):
    """An inset Axes for a colorbar beside the data of ``ax`` (an image): ``gap_in`` inches right
    of data x ``x_data`` and ``width_in`` inches wide, whatever size the layout gives ``ax``, over
    ``span`` (bottom, top) of its height. It belongs to ``ax`` (its tight box, hence constrained
    layout and :func:`blipviz.display.plotting.fit_figure_to_axes`, include it)."""
    cax = ax.inset_axes((1.0, span[0], 0.05, span[1] - span[0]))
    cax.set_axes_locator(_BesideData(ax, x_data, gap_in, width_in, span))
    return cax


class _BelowAxes:
    """Axes locator: ``gap_in`` inches under ``parent`` as drawn (after its aspect is applied),
    ``height_in`` inches tall, as wide as the parent and at least ``min_width_in`` (centred)."""

    def __init__(self, parent, gap_in: float, height_in: float, min_width_in: float = 0.0) -> None:
        self.parent, self.gap_in, self.height_in = parent, gap_in, height_in
        self.min_width_in = min_width_in

    def __call__(self, ax, renderer):
        from matplotlib.transforms import Bbox

        parent = self.parent
        parent.apply_aspect()
        dpi = parent.figure.dpi
        (x0, y0), (x1, _) = parent.transAxes.transform([(0.0, 0.0), (1.0, 1.0)])
        grow = max(0.0, self.min_width_in * dpi - (x1 - x0)) / 2.0
        top = y0 - self.gap_in * dpi
        box = Bbox.from_extents(x0 - grow, top - self.height_in * dpi, x1 + grow, top)
        return box.transformed(parent.figure.transSubfigure.inverted())


def colorbar_below(ax, gap_in: float = 0.08, height_in: float = 0.12, min_width_in: float = 0.0):
    """An inset Axes for a horizontal colorbar right under ``ax`` as drawn (an image whose aspect
    leaves its layout slot taller than it): ``gap_in`` inches below it, ``height_in`` inches tall,
    as wide as it (at least ``min_width_in``, centred under a narrow image), wherever the layout
    puts it. It belongs to ``ax``, so a layout engine makes room for it and its labels."""
    cax = ax.inset_axes((0.0, -0.2, 1.0, 0.05))
    cax.set_axes_locator(_BelowAxes(ax, gap_in, height_in, min_width_in))
    return cax


# ------------------------------------------------------------------------------ thumbnails
#: A thumbnail's shorter drawn side is at least this share of its box's shorter side: an image
#: of extreme aspect ratio (1:20; beyond about 1:4 in a square box) is cropped to its middle
#: rather than drawn as a sliver.
MIN_THUMBNAIL_SHARE = 0.25


def thumbnail_crop(
    shape: tuple[int, int], box: tuple[float, float], *, min_share: float = MIN_THUMBNAIL_SHARE
) -> tuple[tuple[int, int, int, int], tuple[float, float]]:
    """What part of an image a thumbnail shows, and how large, in a ``box``.

    The image is scaled whole into the box (aspect ratio kept). When its shorter side would then be
    less than ``min_share`` of the box's shorter side (a 1:20 strip, a 20:1 panorama), it is scaled
    up to that and its longer side cropped to the box, around the middle. Never distorted.

    Parameters
    ----------
    shape : (height, width)
        The image's size in pixels (any size: 16 px to 4,000 px and more).
    box : (width, height)
        The room, in any unit.
    min_share : float, default :data:`MIN_THUMBNAIL_SHARE`

    Returns
    -------
    crop : (top, bottom, left, right)
        Pixel rows ``top:bottom`` and columns ``left:right`` to draw.
    size : (width, height)
        The drawn size, in the box's unit: within the box, the crop's aspect ratio.
    """
    h, w = (int(v) for v in shape[:2])
    bw, bh = (float(v) for v in box)
    if h <= 0 or w <= 0 or bw <= 0 or bh <= 0:
        raise ValueError(f"need a non-empty image and box, got shape {shape} and box {box}")
    scale = min(bw / w, bh / h)
    scale = max(scale, min_share * min(bw, bh) / min(w, h))
    crop_w = min(w, max(1, round(bw / scale)))
    crop_h = min(h, max(1, round(bh / scale)))
    left, top = (w - crop_w) // 2, (h - crop_h) // 2
    size = (min(bw, crop_w * scale), min(bh, crop_h * scale))
    return (top, top + crop_h, left, left + crop_w), size


# ----------------------------------------------------------------------------- figures
def new_figure(figsize: tuple[float, float], **kw: Any):
    """A new figure of ``figsize`` inches with constrained layout (never pyplot's global state
    beyond creating it)."""
    import matplotlib.pyplot as plt

    return plt.figure(figsize=figsize, layout=kw.pop("layout", "constrained"), **kw)


def settle_layout(fig) -> None:
    """Run the figure's constrained layout once now, so that the first time it is shown or saved
    is its second pass: fixed-aspect Axes (heatmaps, images) and their inset colorbars then sit
    where the layout means them to, even in a user's grid of several displays. A figure without
    a layout engine, or whose canvas cannot draw, is left alone."""
    root = fig.canvas.figure  # a SubFigure's root figure
    if root.get_layout_engine() is None or not hasattr(root.canvas, "get_renderer"):
        return
    root.draw_without_rendering()


@contextlib.contextmanager
def editable_text() -> Iterator[None]:
    """Within it, PDF, PostScript and SVG files keep their text as text (TrueType fonts embedded,
    ``pdf.fonttype`` and ``ps.fonttype`` 42; SVG ``<text>`` elements, ``svg.fonttype`` "none"),
    so a journal's editor can select and change it; the settings are restored afterwards."""
    import matplotlib as mpl

    with mpl.rc_context({"pdf.fonttype": 42, "ps.fonttype": 42, "svg.fonttype": "none"}):
        yield
