"""blipviz: look inside BLIP image-text matching nets from a notebook.

Load a net of the family (:func:`load_model`), embed images and texts, score every pair by cosine
similarity or by the image-text matching (ITM) head, and rank descriptions of an image. Classify
images zero-shot (:class:`ZeroShotClassifier`, :func:`evaluate_zero_shot`); data to try it on lives
in :mod:`blipviz.datasets` (FashionMNIST, and real photographs shipped with installed packages).

The package has four layers, each a folder (the README's "How blipviz is built"):
:mod:`blipviz.net` (the model layer), :mod:`blipviz.store` (the feature cache),
:mod:`blipviz.analysis` (what is computed from a net) and :mod:`blipviz.display` (figures and
tables), with :mod:`blipviz.explore` (the interactive explorers) above them; :class:`BlipITM` puts
every analysis one method away from a net.
"""

from __future__ import annotations

from . import datasets, store, testing  # blipviz.datasets.sample_images, blipviz.store.FeatureCache, ...
from ._version import __version__ as __version__  # written once, in _version.py
from .analysis.attention import CrossAttention
from .analysis.cost import estimate_seconds, expected_time
from .analysis.explanation_comparison import compare_explanations
from .analysis.explanations import Explanation, ExplanationEvaluation, evaluate_explanations
from .analysis.feature_space import feature_space_map
from .analysis.info import NetInformation, net_information
from .analysis.pairs import PairScores
from .analysis.retrieval import RetrievalEvaluation, evaluate_retrieval
from .analysis.scores import Ranking, ScoreMatrix
from .analysis.zero_shot import ZeroShotClassifier, ZeroShotEvaluation, evaluate_zero_shot
from .collection import Collection, PairCollection, embed_collection, score_pairs
from .collection.netspec import set_net_class
from .display.attention import AttentionGridDisplay, HeadsTokensDisplay
from .display.explanations import ExplanationComparisonDisplay, ExplanationCurvesDisplay
from .display.feature_space import FeatureSpaceDisplay
from .display.pairs import PairDistributionDisplay, PairRowsDisplay
from .display.plotting import ScoreMatrixDisplay
from .display.retrieval import RecallCurveDisplay
from .display.tables import style_ranking
from .display.zero_shot import TopKDisplay
from .errors import (
    BlipvizError,
    CacheFolderError,
    CollectionFolderError,
    EngineError,
    ImageLoadError,
    InputError,
    InputTypeError,
    MissingPartError,
    ModelLoadError,
    NumericalError,
    OfflineError,
)
from .itm import BlipITM, ImageEncoder, MultimodalEncoder, TextEncoder, load_model, load_part
from .net.features import ImageFeatures, TextFeatures
from .net.registry import list_models, parameters_information
from .net.text import TruncationWarning, normalize_caption

set_net_class(BlipITM)  # a collection reopened without a net loads the class load_model returns


_WIDGETS = ("AttentionExplorer", "MatrixExplorer", "RankingExplorer")
_SCATTER = ("FeatureSpaceExplorer",)


def __getattr__(name: str):
    """The interactive explorers, imported on first use (``blipviz.explore.widgets`` needs ipywidgets)."""
    if name in _WIDGETS:
        from .explore import widgets

        return getattr(widgets, name)
    if name in _SCATTER:  # jupyter-scatter: pip install 'blipviz[explorer]'
        from .explore import feature_space_explorer

        return getattr(feature_space_explorer, name)
    raise AttributeError(f"module 'blipviz' has no attribute {name!r}")


__all__ = [
    "AttentionExplorer",
    "AttentionGridDisplay",
    "BlipITM",
    "BlipvizError",
    "CacheFolderError",
    "Collection",
    "CollectionFolderError",
    "CrossAttention",
    "EngineError",
    "Explanation",
    "ExplanationComparisonDisplay",
    "ExplanationCurvesDisplay",
    "ExplanationEvaluation",
    "FeatureSpaceDisplay",
    "FeatureSpaceExplorer",
    "HeadsTokensDisplay",
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
    "PairCollection",
    "PairDistributionDisplay",
    "PairRowsDisplay",
    "PairScores",
    "Ranking",
    "RankingExplorer",
    "RecallCurveDisplay",
    "RetrievalEvaluation",
    "ScoreMatrix",
    "ScoreMatrixDisplay",
    "TextEncoder",
    "TextFeatures",
    "TopKDisplay",
    "TruncationWarning",
    "ZeroShotClassifier",
    "ZeroShotEvaluation",
    "compare_explanations",
    "datasets",
    "embed_collection",
    "estimate_seconds",
    "evaluate_explanations",
    "evaluate_retrieval",
    "evaluate_zero_shot",
    "expected_time",
    "feature_space_map",
    "list_models",
    "load_model",
    "load_part",
    "net_information",
    "normalize_caption",
    "parameters_information",
    "score_pairs",
    "store",
    "style_ranking",
    "testing",
]
