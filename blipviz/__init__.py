"""blipviz: look inside BLIP image-text matching nets from a notebook.

Load a net of the family (:func:`load_model`), embed images and texts, score every pair by cosine
similarity or by the image-text matching (ITM) head, and rank descriptions of an image. Classify
images zero-shot (:class:`ZeroShotClassifier`, :func:`evaluate_zero_shot`); data to try it on lives
in :mod:`blipviz.datasets` (FashionMNIST, and real photographs shipped with installed packages).
"""

from __future__ import annotations

from . import (
    cache,
    datasets,  # the submodule: blipviz.datasets.load_fashion_mnist, sample_images
    testing,
)
from .attention import AttentionGridDisplay, CrossAttention, GradCAM
from .errors import (
    BlipvizError,
    CacheFolderError,
    ImageLoadError,
    InputError,
    InputTypeError,
    MissingPartError,
    ModelLoadError,
    NumericalError,
    OfflineError,
)
from .feature_space import FeatureSpaceDisplay, feature_space_plot
from .info import NetInformation, net_information
from .itm import BlipITM, ImageEncoder, MultimodalEncoder, TextEncoder
from .models import list_models, load_model, load_part, parameters_information
from .plotting import ScoreMatrixDisplay
from .results import ImageFeatures, ScoreMatrix, TextFeatures
from .tables import Ranking, style_ranking
from .text import TruncationWarning, normalize_caption
from .zero_shot import ZeroShotClassifier, ZeroShotEvaluation, evaluate_zero_shot

__version__ = "0.1.0"

_WIDGETS = ("AttentionExplorer", "MatrixExplorer", "RankingExplorer")


def __getattr__(name: str):
    """The interactive explorers, imported on first use (``blipviz.widgets`` needs ipywidgets)."""
    if name in _WIDGETS:
        from . import widgets

        return getattr(widgets, name)
    raise AttributeError(f"module 'blipviz' has no attribute {name!r}")


__all__ = [
    "AttentionExplorer",
    "AttentionGridDisplay",
    "BlipITM",
    "BlipvizError",
    "CacheFolderError",
    "CrossAttention",
    "FeatureSpaceDisplay",
    "GradCAM",
    "ImageEncoder",
    "ImageFeatures",
    "ImageLoadError",
    "InputError",
    "InputTypeError",
    "MatrixExplorer",
    "MissingPartError",
    "ModelLoadError",
    "MultimodalEncoder",
    "NetInformation",
    "NumericalError",
    "OfflineError",
    "Ranking",
    "RankingExplorer",
    "ScoreMatrix",
    "ScoreMatrixDisplay",
    "TextEncoder",
    "TextFeatures",
    "TruncationWarning",
    "ZeroShotClassifier",
    "ZeroShotEvaluation",
    "cache",
    "datasets",
    "evaluate_zero_shot",
    "feature_space_plot",
    "list_models",
    "load_model",
    "load_part",
    "net_information",
    "normalize_caption",
    "parameters_information",
    "style_ranking",
    "testing",
]
