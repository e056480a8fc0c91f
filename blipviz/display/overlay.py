"""Maps on photographs: one colour key for attention and GradCAM, shared or per-panel scales.

The key is a sequential, perceptually ordered colormap whose opacity grows with the value: a value
of 0 leaves the photograph untouched, the scale's top covers it with the key's strongest colour at
opacity ``alpha``. On a white background (matrices, the colorbar) the same key reads as a white-to-
colour stretch, so a matrix, an overlay and their colorbar use one scale.

Signed maps (occlusion's drops and rises of the score, GradCAM before its gradient is clipped) use a
diverging key centred at zero (:data:`SIGNED_CMAP`): 0 leaves the photograph untouched, positive
and negative values grow into two hues apart for colour-blind readers, on a scale from ``-top`` to
``top``.

The scale's top is a high percentile of the values shown (captum's habit: one hot patch does not
wash out the rest); values above it are drawn at the top colour and the colorbar says so with an
arrow.

Pure numpy and PIL except :func:`fading_cmap`, :func:`key_colormap` and :func:`scale_norms` (matplotlib,
imported there).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

__all__ = [
    "ATTENTION_CMAP",
    "MAX_OVERLAY_RATIO",
    "MAX_OVERLAY_SIDE",
    "OVERLAY_ALPHA",
    "PHOTO_FLOOR",
    "PHOTO_SATURATION",
    "SCALES",
    "SCALE_PERCENTILE",
    "SIGNED_CMAP",
    "SIGNED_COLOURS",
    "blend",
    "fading_cmap",
    "key_colormap",
    "overlay_crop",
    "overlay_picture",
    "robust_max",
    "scale_norms",
]

#: The colour key of every attention and GradCAM figure (matplotlib's name): plasma reversed, a
#: perceptually uniform map whose part used here runs from light orange to deep indigo, lightness
#: falling monotonically, so it reads on white (matrices) and on a photograph. Unlike a one-hue
#: red key it stays visible over red content (a red car, a ginger cat): its top differs from any
#: muted photograph colour by ΔE > 60 (CIELAB). Every figure takes ``cmap=`` to choose another.
ATTENTION_CMAP = "plasma_r"
#: Opacity of the key's top colour over a photograph.
OVERLAY_ALPHA = 0.85
#: The scale's top: this percentile of the values shown (values above it get the top colour).
SCALE_PERCENTILE = 99.0
#: ``"shared"``: one scale for every panel (maps comparable); ``"per-token"``: each panel its own.
SCALES = ("shared", "per-token")
#: Default longest side of an overlay of a large photograph, in pixels.
MAX_OVERLAY_SIDE = 384
#: An overlay's longer side is at most this many times its shorter: of a photograph more elongated
#: than that (a 1:20 strip, a 20:1 panorama) the middle is shown (:func:`overlay_crop`), not a
#: sliver; a thumbnail's share of a square box
#: (:data:`blipviz.display.rules.MIN_THUMBNAIL_SHARE`).
MAX_OVERLAY_RATIO = 4.0
#: Colour kept in the photograph under an overlay (0: grey, 1: as taken). A muted photograph lets
#: the key read on any hue (red on an orange suit, on a ginger cat).
PHOTO_SATURATION = 0.3
#: Darkest grey level of the photograph under an overlay (0-255): black areas are lifted so that
#: the key's colours read there too.
PHOTO_FLOOR = 60.0

#: The diverging key of signed maps: a name :func:`key_colormap` knows (any matplotlib diverging
#: colormap name, or a Colormap, can be passed as ``cmap=`` instead).
SIGNED_CMAP = "blipviz-signed"
#: The signed key's colours: (negative end, negative near 0, positive near 0, positive end). Vivid
#: blue and magenta ends stand apart from any muted photograph colour under them (ΔE > 60, red and
#: orange content included) and from each other under the common colour-vision deficiencies;
#: lighter sky blue and amber near zero, where the key is nearly transparent.
SIGNED_COLOURS = ("#0000ff", "#56b4e9", "#ffaa00", "#ff00cc")

_KEY_RANGE = (0.3, 0.9)  # the part of the base map used: not its white start, not its near-black end


def robust_max(values: np.ndarray, percentile: float = SCALE_PERCENTILE) -> float:
    """The top of a scale for non-negative ``values``: their ``percentile``, or their maximum when the
    percentile is 0 (a sparse map), or 1.0 when every value is 0."""
    values = np.asarray(values, dtype=np.float64)
    top = float(np.percentile(values, percentile)) if values.size else 0.0
    if top <= 0.0:
        top = float(values.max()) if values.size else 0.0
    return top if top > 0.0 else 1.0


def scale_norms(
    maps: Sequence[np.ndarray], scale: str, percentile: float = SCALE_PERCENTILE, *, signed: bool = False
) -> list:
    """One ``matplotlib.colors.Normalize`` per map, from 0 (``signed``: from ``-top``) to the top of
    its scale.

    Parameters
    ----------
    maps : sequence of ndarray of shape (gh, gw)
    scale : {"shared", "per-token"}
        ``"shared"``: one Normalize object, repeated (the top: the percentile of all values);
        ``"per-token"``: each map its own.
    percentile : float, default 99
    signed : bool, default False
        Maps with negative values: the top is the percentile of the absolute values and the scale
        runs from ``-top`` to ``top`` (``vmin == -vmax``: zero in the middle of the key).

    Returns
    -------
    list of Normalize, one per map.
    """
    from matplotlib.colors import Normalize

    from ..errors import InputError

    if scale not in SCALES:
        raise InputError(f"unknown scale {scale!r}; allowed values: {', '.join(map(repr, SCALES))}")

    def norm(values: np.ndarray):
        if signed:
            top = robust_max(np.abs(values), percentile)
            return Normalize(-top, top, clip=True)
        return Normalize(0.0, robust_max(values, percentile), clip=True)

    if scale == "shared":
        stacked = np.concatenate([np.ravel(m) for m in maps]) if len(maps) else np.zeros(0)
        return [norm(stacked)] * len(maps)
    return [norm(np.ravel(m)) for m in maps]


def _signed_base(n: int = 256) -> np.ndarray:
    """RGB of :data:`SIGNED_CMAP`, shape (2n, 3): negative end to near 0, near 0 to positive end."""
    from matplotlib.colors import to_rgb

    neg_end, neg_zero, pos_zero, pos_end = (np.array(to_rgb(c)) for c in SIGNED_COLOURS)
    t = np.linspace(0.0, 1.0, n)[:, None]
    return np.concatenate([neg_end + (neg_zero - neg_end) * t, pos_zero + (pos_end - pos_zero) * t])


def key_colormap(cmap: Any):
    """A colormap by name (matplotlib's, or :data:`SIGNED_CMAP`) or as given (a Colormap)."""
    import matplotlib
    from matplotlib.colors import Colormap, ListedColormap

    if isinstance(cmap, Colormap):
        return cmap
    if cmap == SIGNED_CMAP:
        return ListedColormap(_signed_base(), name=SIGNED_CMAP)
    return matplotlib.colormaps[cmap]


def _name(cmap: Any) -> str:
    return str(getattr(cmap, "name", cmap))


def _key_colours(cmap: Any, n: int = 256, *, signed: bool = False) -> np.ndarray:
    """RGB of the key in [0, 1]: shape (n, 3), the base map over ``_KEY_RANGE``; ``signed``: shape
    (2n + 1, 3) for the levels -1 to 1, the base map's two halves from its middle to its ends."""
    base = key_colormap(cmap)
    if signed:
        return np.asarray(base(np.linspace(0.0, 1.0, 2 * n + 1)))[:, :3]
    return np.asarray(base(np.linspace(*_KEY_RANGE, n)))[:, :3]


def fading_cmap(
    cmap: Any = None, alpha: float = OVERLAY_ALPHA, *, on_white: bool = False, signed: bool = False
):
    """The key as a matplotlib colormap.

    ``on_white=False``: RGBA, opacity rising linearly from 0 to ``alpha`` (for drawing over a photo);
    ``on_white=True``: the same key composited on white, opaque (for matrices and colorbars).
    ``signed``: the diverging key from -1 (the map's 0) through 0 (its middle, transparent or white)
    to 1 (its 1), opacity growing with the absolute value. ``cmap`` None: :data:`ATTENTION_CMAP`,
    or :data:`SIGNED_CMAP` when ``signed``.
    """
    from matplotlib.colors import ListedColormap

    if cmap is None:
        cmap = SIGNED_CMAP if signed else ATTENTION_CMAP
    rgb = _key_colours(cmap, signed=signed)
    if signed:
        ramp = np.abs(np.linspace(-alpha, alpha, len(rgb)))[:, None]
    else:
        ramp = np.linspace(0.0, alpha, len(rgb))[:, None]
    if on_white:
        return ListedColormap(1.0 - ramp + rgb * ramp, name=f"{_name(cmap)}-on-white")
    return ListedColormap(np.concatenate([rgb, ramp], axis=1), name=f"{_name(cmap)}-fading")


def _rgb(image: Any) -> Image.Image:
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    arr = np.asarray(image)
    if np.issubdtype(arr.dtype, np.floating):
        arr = np.round(np.clip(arr, 0.0, 1.0) * 255.0)
    arr = arr.astype(np.uint8)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    return Image.fromarray(np.ascontiguousarray(arr[:, :, :3]))


def overlay_crop(shape: tuple[int, int]) -> tuple[int, int, int, int]:
    """What part of an overlay of ``shape`` (height, width) is drawn, as ``(top, bottom, left,
    right)``: all of it when its longer side is at most :data:`MAX_OVERLAY_RATIO` times its
    shorter, else its middle at that ratio, the longer side cropped (never distorted). A 1:20
    strip is drawn as a readable 1:4 middle instead of a 2-pixel sliver."""
    from .rules import thumbnail_crop

    crop, _ = thumbnail_crop(shape, (1.0, 1.0), min_share=1.0 / MAX_OVERLAY_RATIO)
    return crop


def overlay_picture(image: Any, size: int | None = None) -> Image.Image:
    """The RGB photograph an overlay is drawn on, whole: the longest side of the part drawn
    (:func:`overlay_crop`: all of it, or the middle of a very elongated photograph) ``size``
    pixels, or its own size capped at :data:`MAX_OVERLAY_SIDE` when ``size`` is None."""
    rgb = _rgb(image)
    shown = min(max(rgb.size), MAX_OVERLAY_RATIO * min(rgb.size))  # the drawn part's longest side
    target = size if size is not None else min(shown, MAX_OVERLAY_SIDE)
    if target != shown:
        scale = target / shown
        rgb = rgb.resize((max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale))))
    return rgb


def cropped_note(picture: Image.Image, crop: tuple[int, int, int, int]) -> str:
    """``""`` when ``crop`` is the whole picture, else what the panels show ("the middle of the
    1:20 photograph"), for a figure's title."""
    top, bottom, left, right = crop
    if (bottom - top, right - left) == (picture.height, picture.width):
        return ""
    ratio = picture.width / picture.height
    sides = f"{ratio:.3g}:1" if ratio >= 1 else f"1:{1 / ratio:.3g}"
    return f"the middle of the {sides} photograph shown"


def blend(
    picture: Image.Image,
    heat: np.ndarray,
    vmax: float,
    *,
    cmap: Any = None,
    alpha: float = OVERLAY_ALPHA,
    saturation: float = PHOTO_SATURATION,
    signed: bool = False,
) -> np.ndarray:
    """Lay a map onto a photograph with the key: opacity and colour grow with the value.

    Parameters
    ----------
    picture : PIL.Image.Image
        RGB; see :func:`overlay_picture`.
    heat : ndarray of shape (gh, gw)
        Non-negative values (``signed``: any); each patch drawn as a block of the picture
        (nearest-neighbour resize: a hot patch is a square of the key's colour, not a faint dot).
    vmax : float
        The scale's top: values at or above it get the key's top colour at opacity ``alpha``; 0 (or
        below) leaves the photograph as it is. ``signed``: values at or below ``-vmax`` get the
        key's other end.
    cmap : str or Colormap, optional
        Default :data:`ATTENTION_CMAP`, or :data:`SIGNED_CMAP` when ``signed``.
    alpha : float, default :data:`OVERLAY_ALPHA`
    saturation : float, default :data:`PHOTO_SATURATION`
        Colour kept in the photograph (0: grey, 1: unchanged).
    signed : bool, default False
        A diverging key centred at zero: opacity grows with the absolute value.

    Returns
    -------
    ndarray of shape (H, W, 3), uint8
    """
    heat = np.asarray(heat, dtype=np.float32)
    resized = np.asarray(Image.fromarray(heat, mode="F").resize(picture.size, Image.Resampling.NEAREST))
    if cmap is None:
        cmap = SIGNED_CMAP if signed else ATTENTION_CMAP
    level = np.clip(resized / np.float32(vmax if vmax > 0 else 1.0), -1.0 if signed else 0.0, 1.0)
    colours = _key_colours(cmap, signed=signed).astype(np.float32) * 255.0
    position = (level + 1.0) / 2.0 if signed else level
    index = np.round(position * (len(colours) - 1)).astype(np.intp)
    weight = (np.abs(level) * np.float32(alpha))[:, :, None]
    base = np.asarray(picture, dtype=np.float32)
    if saturation != 1.0:
        grey = base @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        base = grey[:, :, None] + np.float32(saturation) * (base - grey[:, :, None])
    base = np.float32(PHOTO_FLOOR) + base * np.float32(1.0 - PHOTO_FLOOR / 255.0)
    return np.round(base * (1.0 - weight) + colours[index] * weight).astype(np.uint8)
