"""blipviz: look inside BLIP image-text matching nets from a notebook.

Load a net of the family (:func:`load_model`), embed images and texts, score every pair by cosine
similarity or by the image-text matching (ITM) head, and rank descriptions of an image. Classify
images zero-shot (:class:`ZeroShotClassifier`, :func:`evaluate_zero_shot`); data to try it on lives
in :mod:`blipviz.datasets` (FashionMNIST, and real photographs shipped with installed packages).
"""

from __future__ import annotations

from . import (
    datasets,  # the submodule: blipviz.datasets.load_fashion_mnist, sample_images
    testing,
)
from .errors import BlipvizError, ImageLoadError, InputError, InputTypeError, ModelLoadError, OfflineError
from .itm import BlipITM, ImageEncoder, MultimodalEncoder, TextEncoder
from .models import list_models, load_model, load_part, parameters_information
from .results import ImageFeatures, ScoreMatrix, TextFeatures
from .text import normalize_caption
from .zero_shot import ZeroShotClassifier, ZeroShotEvaluation, evaluate_zero_shot

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
    "ZeroShotClassifier",
    "ZeroShotEvaluation",
    "datasets",
    "evaluate_zero_shot",
    "list_models",
    "load_model",
    "load_part",
    "normalize_caption",
    "parameters_information",
    "testing",
]
