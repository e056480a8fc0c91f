"""Errors raised by blipviz.

Every error a user can trigger with bad input derives from :class:`BlipvizError`, and also from the
built-in exception a user would naturally catch (``ValueError`` for bad values, ``OSError`` for files
and the network, ``TypeError`` for wrong types). Messages name the offending item (a path, an index,
a checkpoint) and say what was expected.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BlipvizError",
    "CacheFolderError",
    "CollectionFolderError",
    "EngineError",
    "ImageLoadError",
    "InputError",
    "InputTypeError",
    "MissingPartError",
    "ModelLoadError",
    "NumericalError",
    "OfflineError",
    "check_choice",
    "positive_int",
]


class BlipvizError(Exception):
    """Base class of every error blipviz raises on purpose."""


class InputError(BlipvizError, ValueError):
    """An input has the right type but an unusable value (shape, range, count, option)."""


class CacheFolderError(InputError):
    """A path cannot be a feature cache: it is a file, a non-empty folder without blipviz's cache
    marker, or a cache of another format version. Nothing in it was read, changed or deleted."""


class CollectionFolderError(InputError):
    """A path cannot be (or continue) this collection: a file, a non-empty folder without a
    collection manifest, a collection of another format version, net or preprocessing, or a
    collection still being written by another run. Nothing in it was changed."""


class MissingPartError(InputError):
    """A call needs a part of the net that was not loaded (``load_part`` keeps one part's weights)."""


class InputTypeError(BlipvizError, TypeError):
    """An input has a type blipviz does not accept (for example ``None`` where an image was expected)."""


class EngineError(BlipvizError, RuntimeError):
    """The engine that runs a collection job (Ray) could not start, or lost or repeated rows. The
    message says what happened and what to do (for a slow start: give it longer, or start it first)."""


class ImageLoadError(BlipvizError, OSError):
    """An image file or buffer could not be read or decoded."""


class ModelLoadError(BlipvizError, OSError):
    """A checkpoint could not be loaded (missing, corrupt, or not a BLIP image-text matching net)."""


class OfflineError(ModelLoadError):
    """A checkpoint is not available locally and the Hugging Face Hub could not be reached."""


class NumericalError(BlipvizError, FloatingPointError):
    """The net's output is not finite (NaN or inf). Never returned as a score. The message says why:
    weights that hold NaN or inf (named; a broken or edited checkpoint, or float32 weights beyond
    float16's range), or activations that overflowed the net's dtype (in practice float16 past
    65504: load the net in float32 or bfloat16)."""


def check_choice(kind: str, value: Any, allowed: tuple[str, ...]) -> str:
    """``value`` if it is one of ``allowed``, else an :class:`InputError` listing the allowed values."""
    if value not in allowed:
        raise InputError(f"unknown {kind} {value!r}; allowed values: {', '.join(map(repr, allowed))}")
    return value


def positive_int(name: str, value: Any) -> int:
    """``value`` as an int if it is a whole number of at least 1 (a Python or numpy integer, not a
    bool), else an :class:`InputError` naming ``name``."""
    import numpy as np

    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise InputError(f"{name} must be at least 1 (a whole number), got {value!r}")
    return int(value)
