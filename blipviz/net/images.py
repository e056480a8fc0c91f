"""Image side of BLIP: reading images and turning them into the pixel tensors the ViT expects.

BLIP's test transform is ``Resize((s, s), BICUBIC)`` on a PIL image, ``ToTensor()`` and
``Normalize(mean, std)``; this module does the same with PIL and numpy only (no torchvision).

One difference, on by default and switchable: a photograph whose EXIF ``Orientation`` tag says it
is stored rotated is turned upright first (``ImageOps.exif_transpose``, as transformers'
``load_image`` does), so the net sees what a viewer shows. BLIP's dataset code
(``Image.open(path).convert("RGB")``) and ``BlipImageProcessor`` do not; for their exact pixels use
``ImagePreprocessing(..., exif_transpose=False)``. Images without the tag are unaffected.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import ImageLoadError, InputError, InputTypeError
from .registry import BLIP_IMAGE_MEAN, BLIP_IMAGE_STD, IMAGE_SIZE

__all__ = [
    "BLIP_IMAGE_MEAN",
    "BLIP_IMAGE_STD",
    "THUMBNAIL_SIZE",
    "ImageLike",
    "ImagePreprocessing",
    "as_image_list",
    "image_label",
    "load_image",
    "thumbnail",
    "to_rgb",
]

#: Longest side of the thumbnails kept with features for plots, in pixels.
THUMBNAIL_SIZE = 96

ImageLike = Image.Image | str | os.PathLike | np.ndarray | bytes | bytearray | memoryview
#: Buffers holding an encoded image file (PNG, JPEG, ...).
_ENCODED = bytes | bytearray | memoryview


def _describe(item: Any, index: int | None) -> str:
    where = f"image {index}" if index is not None else "image"
    if isinstance(item, str | os.PathLike):
        return f"{where} ({os.fspath(item)!r})"
    return where


def to_rgb(image: Image.Image, *, exif_transpose: bool = True) -> Image.Image:
    """Convert any PIL mode to RGB the way ``Image.convert("RGB")`` does in BLIP's dataset code.

    Modes with more than 8 bits per channel (``I;16``, ``I``, ``F``) are first scaled to 0-255 from
    their type's range (``I;16``: 0-65535; ``I``: 0-65535 clipped; ``F``: 0-1 clipped), since Pillow
    would otherwise clip them to white. Alpha is dropped (not composited), as BLIP's ``convert`` does.
    With ``exif_transpose=True`` (default) the EXIF orientation is applied first (BLIP does not).
    """
    if exif_transpose:
        image = ImageOps.exif_transpose(image)
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(image, dtype=np.float64)
        arr = np.clip(arr / 65535.0, 0.0, 1.0)
        image = Image.fromarray(np.round(arr * 255.0).astype(np.uint8))
    elif mode == "F":
        arr = np.clip(np.asarray(image, dtype=np.float64), 0.0, 1.0)
        image = Image.fromarray(np.round(arr * 255.0).astype(np.uint8))
    if image.mode != "RGB":
        image = image.convert("RGB")
    return image


def _from_array(arr: np.ndarray, where: str) -> Image.Image:
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (1, 3, 4)):
        raise InputError(
            f"{where}: a numpy image must have shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), "
            f"got {arr.shape}"
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise InputError(f"{where}: the array has no pixels (shape {arr.shape})")
    if arr.dtype == np.uint8:
        pixels = arr
    elif np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)):
            raise InputError(f"{where}: a float image contains NaN or inf")
        lo, hi = float(arr.min()), float(arr.max())
        if lo < 0.0 or hi > 1.0:
            raise InputError(
                f"{where}: a float image must lie in [0, 1], got values in [{lo:.4g}, {hi:.4g}]; "
                "pass uint8 for 0-255 data"
            )
        pixels = np.round(arr * 255.0).astype(np.uint8)
    elif arr.dtype == np.bool_:
        pixels = arr.astype(np.uint8) * 255
    else:
        raise InputError(f"{where}: numpy images must be uint8 (0-255) or float (0-1), got dtype {arr.dtype}")
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    return Image.fromarray(np.ascontiguousarray(pixels))  # L, RGB or RGBA from the shape


def load_image(item: ImageLike, index: int | None = None, *, exif_transpose: bool = True) -> Image.Image:
    """Read one image into an RGB PIL image.

    Parameters
    ----------
    item : PIL.Image.Image, str, os.PathLike, bytes, bytearray, memoryview or ndarray
        A PIL image, a path, the encoded bytes of an image file (``bytes``, ``bytearray`` or
        ``memoryview``), or a numpy array of shape (H, W),
        (H, W, 3) or (H, W, 4), uint8 in 0-255 or float in [0, 1].
    index : int, optional
        Position of the item in the caller's list, used in error messages.
    exif_transpose : bool, default True
        Turn the image upright by its EXIF ``Orientation`` tag (as transformers' ``load_image``
        does); ``False`` keeps the stored pixels, as BLIP's dataset code and ``BlipImageProcessor``
        do. A net's own loading follows ``ImagePreprocessing(exif_transpose=...)``.

    Returns
    -------
    PIL.Image.Image
        Mode ``"RGB"``.

    Raises
    ------
    ImageLoadError
        The file is missing, unreadable, truncated, not an image, or a decompression bomb.
    InputError
        An array of unusable shape, dtype or range.
    InputTypeError
        Anything else (``None``, numbers, ...).
    """
    where = _describe(item, index)
    if isinstance(item, Image.Image):
        image = item
    elif isinstance(item, str | os.PathLike | _ENCODED):
        source = io.BytesIO(bytes(item)) if isinstance(item, _ENCODED) else Path(item)
        if isinstance(source, Path) and not source.is_file():
            raise ImageLoadError(f"{where}: no such file")
        try:
            with Image.open(source) as opened:
                opened.load()
                if opened.width == 0 or opened.height == 0:
                    raise InputError(f"{where}: the image has no pixels")
                return to_rgb(opened, exif_transpose=exif_transpose)
        except Image.DecompressionBombError as exc:
            raise ImageLoadError(f"{where}: refused as a decompression bomb ({exc})") from None
        except UnidentifiedImageError:
            raise ImageLoadError(f"{where}: not a readable image file") from None
        except (OSError, SyntaxError, ValueError) as exc:
            if isinstance(exc, InputError):
                raise
            raise ImageLoadError(f"{where}: could not be decoded ({exc})") from None
    elif isinstance(item, np.ndarray):
        image = _from_array(item, where)
    else:
        raise InputTypeError(
            f"{where}: expected a PIL image, a path, bytes (an encoded image file) or a numpy array, "
            f"got {type(item).__name__}"
        )
    if image.width == 0 or image.height == 0:
        raise InputError(f"{where}: the image has no pixels ({image.width}x{image.height})")
    try:
        return to_rgb(image, exif_transpose=exif_transpose)
    except (OSError, ValueError) as exc:
        raise ImageLoadError(f"{where}: could not be converted to RGB ({exc})") from None


def image_label(item: Any, index: int) -> str:
    """The label of an image in plots and tables: its file name, or ``"image {index}"``."""
    if isinstance(item, str | os.PathLike):
        return Path(item).name
    name = getattr(item, "filename", "") if not isinstance(item, np.ndarray | _ENCODED) else ""
    return Path(name).name if name else f"image {index}"


def thumbnail(rgb: Image.Image, size: int = THUMBNAIL_SIZE) -> Image.Image:
    """A copy of ``rgb`` whose longest side is at most ``size`` pixels (aspect kept)."""
    thumb = rgb.copy()
    thumb.thumbnail((size, size))
    return thumb


def as_image_list(images: ImageLike | Sequence[ImageLike]) -> list[ImageLike]:
    """Accept one image or a sequence of images and return a list (no decoding yet)."""
    if isinstance(images, Image.Image | str | os.PathLike | _ENCODED):  # one image, not its bytes
        return [images]
    if isinstance(images, np.ndarray):
        if images.ndim == 4:  # a stack of images
            return list(images)
        return [images]
    if images is None:
        raise InputTypeError("images must be an image or a sequence of images, got None")
    try:
        return list(images)
    except TypeError:
        raise InputTypeError(
            f"images must be an image or a sequence of images, got {type(images).__name__}"
        ) from None


@dataclass(frozen=True)
class ImagePreprocessing:
    """BLIP's test-time image transform.

    Attributes
    ----------
    image_size : int
        Side of the square the image is resized to (384 for every net of the family).
    mean, std : tuple of 3 floats
        Per-channel normalisation.
    exif_transpose : bool, default True
        Turn photographs upright by their EXIF ``Orientation`` tag when loading them (what a viewer
        shows; transformers' ``load_image`` does the same). BLIP's dataset code and
        ``BlipImageProcessor`` do not: ``False`` gives their exact pixels for tagged photographs.
        Change a loaded net's with ``model.preprocessing = dataclasses.replace(model.preprocessing,
        exif_transpose=False)``.
    """

    image_size: int = IMAGE_SIZE
    mean: tuple[float, float, float] = BLIP_IMAGE_MEAN
    std: tuple[float, float, float] = BLIP_IMAGE_STD
    exif_transpose: bool = True

    def load(self, item: ImageLike, index: int | None = None) -> Image.Image:
        """Read one image into an RGB PIL image with this preprocessing's EXIF rule (see
        :func:`load_image`)."""
        return load_image(item, index, exif_transpose=self.exif_transpose)

    def __call__(self, image: Image.Image) -> torch.Tensor:
        """One RGB PIL image -> float32 tensor of shape (3, image_size, image_size)."""
        resized = image.resize((self.image_size, self.image_size), Image.Resampling.BICUBIC)
        arr = np.asarray(resized, dtype=np.float32) / np.float32(255.0)
        arr = (arr - np.asarray(self.mean, dtype=np.float32)) / np.asarray(self.std, dtype=np.float32)
        return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))

    def pixel_values(self, images: Sequence[ImageLike], start: int = 0) -> torch.Tensor:
        """Load and transform images -> tensor of shape (n, 3, image_size, image_size).

        ``start`` is the index of ``images[0]`` in the caller's list, for error messages.
        """
        if not images:
            return torch.zeros((0, 3, self.image_size, self.image_size))
        return torch.stack([self(self.load(im, start + i)) for i, im in enumerate(images)])
