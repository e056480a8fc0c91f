"""blipviz: look inside BLIP image-text matching nets from a notebook.

Load a net of the family (:func:`load_model`), embed images and texts, score every pair by cosine
similarity or by the image-text matching (ITM) head, and rank descriptions of an image.
"""

from __future__ import annotations

from . import cache, testing
from .errors import BlipvizError, ImageLoadError, InputError, InputTypeError, ModelLoadError, OfflineError
from .itm import BlipITM, ImageEncoder, MultimodalEncoder, TextEncoder
from .models import list_models, load_model, load_part, parameters_information
from .results import ImageFeatures, ScoreMatrix, TextFeatures
from .text import normalize_caption

__version__ = "0.1.0"

__all__ = [
    "BlipITM",
    "BlipvizError",
    "ImageEncoder",
    "ImageFeatures",
    "ImageLoadError",
    "InputError",
    "InputTypeError",
    "ModelLoadError",
    "MultimodalEncoder",
    "OfflineError",
    "ScoreMatrix",
    "TextEncoder",
    "TextFeatures",
    "cache",
    "list_models",
    "load_model",
    "load_part",
    "normalize_caption",
    "parameters_information",
    "testing",
]
