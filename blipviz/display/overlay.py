"""Maps on photographs: one colour key for attention and GradCAM, shared or per-panel scales.

The key is a sequential, perceptually ordered colormap whose opacity grows with the value: a value
of 0 leaves the photograph untouched, the scale's top covers it with the key's strongest colour at
opacity ``alpha``. On a white background (matrices, the colorbar) the same key reads as a white-to-
colour stretch, so a matrix, an overlay and their colorbar use one scale.

The scale's top is a high percentile of the values shown (captum's habit: one hot patch does not
wash out the rest); values above it are drawn at the top colour and the colorbar says so with an
arrow.

Pure numpy and PIL except :func:`fading_cmap` and :func:`scale_norms` (matplotlib, imported there).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

__all__ = [
    "ATTENTION_CMAP",
    "MAX_OVERLAY_SIDE",
    "OVERLAY_ALPHA",
    "PHOTO_FLOOR",
    "PHOTO_SATURATION",
    "SCALES",
    "SCALE_PERCENTILE",
    "blend",
    "fading_cmap",
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
#: Colour kept in the photograph under an overlay (0: grey, 1: as taken). A muted photograph lets
#: the key read on any hue (red on an orange suit, on a ginger cat).
PHOTO_SATURATION = 0.3
#: Darkest grey level of the photograph under an overlay (0-255): black areas are lifted so that
#: the key's colours read there too.
PHOTO_FLOOR = 60.0

_KEY_RANGE = (0.3, 0.9)  # the part of the base map used: not its white start, not its near-black end


def robust_max(values: np.ndarray, percentile: float = SCALE_PERCENTILE) -> float:
    """The top of a scale for non-negative ``values``: their ``percentile``, or their maximum when the
    percentile is 0 (a sparse map), or 1.0 when every value is 0."""
    values = np.asarray(values, dtype=np.float64)
    top = float(np.percentile(values, percentile)) if values.size else 0.0
    if top <= 0.0:
        top = float(values.max()) if values.size else 0.0
    return top if top > 0.0 else 1.0


def scale_norms(maps: Sequence[np.ndarray], scale: str, percentile: float = SCALE_PERCENTILE) -> list:
    """One ``matplotlib.colors.Normalize`` per map, from 0 to the top of its scale.

    Parameters
    ----------
    maps : sequence of ndarray of shape (gh, gw)
    scale : {"shared", "per-token"}
        ``"shared"``: one Normalize object, repeated (the top: the percentile of all values);
        ``"per-token"``: each map its own.
    percentile : float, default 99

    Returns
    -------
    list of Normalize, one per map.
    """
    from matplotlib.colors import Normalize

    from ..errors import InputError

    if scale not in SCALES:
        raise InputError(f"unknown scale {scale!r}; allowed values: {', '.join(map(repr, SCALES))}")
    if scale == "shared":
        stacked = np.concatenate([np.ravel(m) for m in maps]) if len(maps) else np.zeros(0)
        norm = Normalize(0.0, robust_max(stacked, percentile), clip=True)
        return [norm] * len(maps)
    return [Normalize(0.0, robust_max(m, percentile), clip=True) for m in maps]


def _key_colours(cmap: str, n: int = 256) -> np.ndarray:
    """RGB of the key, shape (n, 3) in [0, 1]: the base map over ``_KEY_RANGE``."""
    import matplotlib

    base = matplotlib.colormaps[cmap]
    return np.asarray(base(np.linspace(*_KEY_RANGE, n)))[:, :3]


def fading_cmap(cmap: str = ATTENTION_CMAP, alpha: float = OVERLAY_ALPHA, *, on_white: bool = False):
    """The key as a matplotlib colormap.

    ``on_white=False``: RGBA, opacity rising linearly from 0 to ``alpha`` (for drawing over a photo);
    ``on_white=True``: the same key composited on white, opaque (for matrices and colorbars).
    """
    from matplotlib.colors import ListedColormap

    rgb = _key_colours(cmap)
    ramp = np.linspace(0.0, alpha, len(rgb))[:, None]
    if on_white:
        return ListedColormap(1.0 - ramp + rgb * ramp, name=f"{cmap}-on-white")
    return ListedColormap(np.concatenate([rgb, ramp], axis=1), name=f"{cmap}-fading")


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


def overlay_picture(image: Any, size: int | None = None) -> Image.Image:
    """The RGB photograph an overlay is drawn on: longest side ``size`` pixels, or its own size capped
    at :data:`MAX_OVERLAY_SIDE` when ``size`` is None."""
    rgb = _rgb(image)
    side = max(rgb.size)
    target = size if size is not None else min(side, MAX_OVERLAY_SIDE)
    if target != side:
        scale = target / side
        rgb = rgb.resize((max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale))))
    return rgb


def blend(
    picture: Image.Image,
    heat: np.ndarray,
    vmax: float,
    *,
    cmap: str = ATTENTION_CMAP,
    alpha: float = OVERLAY_ALPHA,
    saturation: float = PHOTO_SATURATION,
) -> np.ndarray:
    """Lay a map onto a photograph with the key: opacity and colour grow with the value.

    Parameters
    ----------
    picture : PIL.Image.Image
        RGB; see :func:`overlay_picture`.
    heat : ndarray of shape (gh, gw)
        Non-negative values; each patch drawn as a block of the picture (nearest-neighbour resize:
        a hot patch is a square of the key's colour, not a faint dot).
    vmax : float
        The scale's top: values at or above it get the key's top colour at opacity ``alpha``; 0 (or
        below) leaves the photograph as it is.
    cmap : str, default :data:`ATTENTION_CMAP`
    alpha : float, default :data:`OVERLAY_ALPHA`
    saturation : float, default :data:`PHOTO_SATURATION`
        Colour kept in the photograph (0: grey, 1: unchanged).

    Returns
    -------
    ndarray of shape (H, W, 3), uint8
    """
    heat = np.asarray(heat, dtype=np.float32)
    resized = np.asarray(Image.fromarray(heat, mode="F").resize(picture.size, Image.Resampling.NEAREST))
    level = np.clip(resized / np.float32(vmax if vmax > 0 else 1.0), 0.0, 1.0)
    colours = _key_colours(cmap).astype(np.float32) * 255.0
    index = np.round(level * (len(colours) - 1)).astype(np.intp)
    weight = (level * np.float32(alpha))[:, :, None]
    base = np.asarray(picture, dtype=np.float32)
    if saturation != 1.0:
        grey = base @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        base = grey[:, :, None] + np.float32(saturation) * (base - grey[:, :, None])
    base = np.float32(PHOTO_FLOOR) + base * np.float32(1.0 - PHOTO_FLOOR / 255.0)
    return np.round(base * (1.0 - weight) + colours[index] * weight).astype(np.uint8)
