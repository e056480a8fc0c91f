"""``BlipITM``: a BLIP image-text matching net with every analysis one method away.

:class:`BlipITM` is a :class:`blipviz.net.BlipNet` (the model layer: weights, encoders, public
ports) whose score, attention and search methods are one-line calls of the analyses in
:mod:`blipviz.analysis`. :func:`load_model` and :func:`load_part` are the doors in.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import pandas as pd
import torch

from .analysis import scores as _scores
from .errors import check_choice
from .net.features import ImageFeatures
from .net.images import THUMBNAIL_SIZE, ImageLike
from .net.loading import load_net
from .net.net import BlipNet, ImageEncoder, Images, MultimodalEncoder, NetPart, TextEncoder, Texts
from .net.registry import DEFAULT_ARCHITECTURE, DEFAULT_DATASET, DEFAULT_PART, ENC_TOKEN_ID, PARTS

__all__ = [
    "ENC_TOKEN_ID",
    "THUMBNAIL_SIZE",
    "BlipITM",
    "ImageEncoder",
    "MultimodalEncoder",
    "TextEncoder",
    "load_model",
    "load_part",
]


class BlipITM(BlipNet):
    """A BLIP image-text matching net: image encoder, text encoder and multimodal encoder.

    Build it with :func:`blipviz.load_model`. The parts are ``.image_encoder``, ``.text_encoder``
    and ``.multimodal_encoder``; ``.hf`` is the wrapped ``BlipForImageTextRetrieval``. The model
    layer's ports and encoders come from :class:`blipviz.net.BlipNet`; the methods below call the
    analyses of :mod:`blipviz.analysis`.
    """

    # ------------------------------------------------------------------------------- scores
    def cosine_scores(
        self,
        images: Images,
        texts: Texts,
        *,
        batch_size: int | None = None,
        labels: Sequence[str] | None = None,
        progress: bool | None = None,
    ) -> _scores.ScoreMatrix:
        return _scores.cosine_scores(
            self, images, texts, batch_size=batch_size, labels=labels, progress=progress
        )

    def itm_scores(
        self,
        images: Images,
        texts: Texts,
        *,
        batch_size: int | None = None,
        text_batch_size: int = 128,
        labels: Sequence[str] | None = None,
        progress: bool | None = None,
    ) -> _scores.ScoreMatrix:
        return _scores.itm_scores(
            self,
            images,
            texts,
            batch_size=batch_size,
            text_batch_size=text_batch_size,
            labels=labels,
            progress=progress,
        )

    def scores(
        self,
        images: Images,
        texts: Texts,
        *,
        batch_size: int | None = None,
        text_batch_size: int = 128,
        labels: Sequence[str] | None = None,
        progress: bool | None = None,
    ) -> tuple[_scores.ScoreMatrix, _scores.ScoreMatrix]:
        return _scores.scores(
            self,
            images,
            texts,
            batch_size=batch_size,
            text_batch_size=text_batch_size,
            labels=labels,
            progress=progress,
        )

    def rank(self, image: ImageLike | ImageFeatures, texts: Texts) -> _scores.Ranking:
        return _scores.rank(self, image, texts)

    cosine_scores.__doc__ = _scores.cosine_scores.__doc__
    itm_scores.__doc__ = _scores.itm_scores.__doc__
    scores.__doc__ = _scores.scores.__doc__
    rank.__doc__ = _scores.rank.__doc__

    # ------------------------------------------------------------------------------- pairs
    def pair_scores(
        self,
        images: Images,
        texts: Texts,
        *,
        batch_size: int | None = None,
        progress: bool | None = None,
        thumbnails: bool = True,
    ):
        """Score each image against its own caption: text i with image i (BLIP's CapFilt use).

        Each distinct image (a path or an object given again is one image) passes the ViT once, and
        its cross-attention keys and values are computed once for all its captions. The scores equal
        the diagonal of :meth:`itm_scores` and :meth:`cosine_scores` of the same inputs.

        Parameters
        ----------
        images : sequence of n images (paths, PIL images, arrays, bytes), pixel Tensor (n, 3, s, s),
            or ImageFeatures of n images (with raw states)
        texts : sequence of n str, or TextFeatures
        batch_size : int, optional
            Distinct images per vision-encoder pass; default 4 on CPU, 16 on a GPU.
        progress : bool, optional
            Progress bar over image batches; by default shown once the pace foresees more than 5 s.
        thumbnails : bool, default True
            Keep a small copy of each distinct image for the figures; ``False`` when only the
            numbers are wanted.

        Returns
        -------
        blipviz.PairScores
            ``.to_pandas()`` columns ``image``, ``text``, ``itm``, ``itm_logit``, ``cosine``,
            ``truncated``; ``.worst(n)``, ``.best(n)``, ``.plot_worst(n)``, ``.plot_distribution()``.

        Raises
        ------
        InputError
            No pairs, or not as many texts as images (names both counts).

        See :func:`blipviz.analysis.pairs.pair_scores` for how the passes are batched.
        """
        from .analysis.pairs import pair_scores

        return pair_scores(
            self, images, texts, batch_size=batch_size, progress=progress, thumbnails=thumbnails
        )

    # ---------------------------------------------------------------------------- attention
    def cross_attention(self, image: ImageLike | ImageFeatures | torch.Tensor, text: str):
        """Cross-attention probabilities of the ITM pass for one image and one text.

        The pass is the one that scores the pair (``[ENC]`` first, image states with batch 1).

        Parameters
        ----------
        image : image, ImageFeatures of one image (with raw states), or Tensor of shape (1, 3, s, s)
        text : str

        Returns
        -------
        blipviz.CrossAttention
            ``.weights`` of shape (n_layers, n_heads, n_tokens, 1 + P), ``.tokens``, ``.grid``;
            ``.maps(layer)``, ``.plot(layer)``, ``.overlay(image, layer)``.
        """
        from .analysis.attention import cross_attention

        return cross_attention(self, image, text)

    def gradcam(self, image: ImageLike | ImageFeatures | torch.Tensor, text: str, layer: int | None = None):
        """GradCAM of the ITM match logit at one cross-attention layer (LAVIS's method).

        Parameters
        ----------
        image : image, ImageFeatures of one image (with raw states), or Tensor of shape (1, 3, s, s)
        text : str
        layer : int, optional
            Layer of the multimodal encoder, 0-based (negative counts from the end). Default: the
            middle one, ``n_layers // 2`` (6 for the 12-layer nets of the family, as in LAVIS), but
            never the last layer (0 for the 2-layer tiny net). Out of range: ``ValueError`` listing
            the valid range.

        Returns
        -------
        blipviz.Explanation
            The one ``explain(image, text, method="gradcam", layer=layer)`` returns: ``.maps`` of
            shape (n_tokens, gh, gw), non-negative; ``.match_map`` (gh, gw), the mean of the words'
            maps; ``.signed_maps`` before the gradient is clipped; ``.options["layer"]``;
            ``.overlay()``, ``.plot()``.
        """
        from .analysis.explanations import gradcam

        return gradcam(self, image, text, layer)

    def explain(
        self,
        image: ImageLike | torch.Tensor,
        text: str | None = None,
        method: str = "relevancy",
        *,
        texts: Sequence[str] | None = None,
        **options: Any,
    ):
        """Explain the ITM decision for one image and one text (or many) with one of five methods.

        Parameters
        ----------
        image : image (path, PIL image, array) or Tensor of shape (1, 3, s, s)
        text : str
        method : {"relevancy", "attention", "gradcam", "rollout", "occlusion"}, default "relevancy"
            See :mod:`blipviz.analysis.explanations` for each method's exact rules and sources.
        texts : sequence of str, optional
            Many texts of the one image instead of ``text``: one ViT forward for all of them, then
            each text's own pass (and, for GradCAM and relevancy, one backward).
        **options
            ``layer`` (attention, GradCAM); ``window``, ``stride``, ``baseline``, ``batch_size``
            (occlusion).

        Returns
        -------
        blipviz.Explanation, or a list of them (one per text) with ``texts``
            ``.maps`` (n_tokens, gh, gw), ``.match_map`` (gh, gw), ``.tokens``, ``.itm_probability``.
        """
        from .analysis.explanations import explain

        return explain(self, image, text, method, texts=texts, **options)

    # ----------------------------------------------------------------------------- retrieval
    def search(
        self, texts: Texts, images: Images, *, k: int = 10, rerank: int | None = None, **options: Any
    ) -> pd.DataFrame:
        """Images that best match each text: cosine over all images, ITM re-scoring of the best.

        ``k`` rows per query; ``rerank`` of each query's best by cosine re-scored by the ITM head
        (``None``: ``k``, BLIP's two-stage retrieval; ``0``: cosine only). The same ``k``,
        ``rerank``, defaults and columns as :meth:`blipviz.Collection.search`; see
        :func:`blipviz.analysis.search.search` for the options and the columns.
        """
        from .analysis.search import search

        return search(self, texts, images, k=k, rerank=rerank, **options)

    def search_texts(
        self, images: Images, texts: Texts, *, k: int = 10, rerank: int | None = None, **options: Any
    ) -> pd.DataFrame:
        """Texts that best describe each image: :meth:`search` the other way round.

        See :func:`blipviz.analysis.search.search_texts` for the options and the columns.
        """
        from .analysis.search import search_texts

        return search_texts(self, images, texts, k=k, rerank=rerank, **options)


def load_model(
    name_or_path: str | os.PathLike | None = None,
    *,
    architecture: str = DEFAULT_ARCHITECTURE,
    dataset: str = DEFAULT_DATASET,
    pretrained: bool = True,
    device: str | torch.device | None = None,
    dtype: torch.dtype | str | None = None,
    first_token: str = "enc",
    normalize_text: bool = True,
    max_text_tokens: int | None = 35,
    seed: int = 0,
    cache_dir: str | os.PathLike | Any | None = None,
    fast_attention: bool = True,
    quantize: str | None = None,
) -> BlipITM:
    """Load a BLIP image-text matching net: all three parts over one set of weights.

    Parameters
    ----------
    name_or_path : str or path, optional
        A Hugging Face hub id (``"Salesforce/blip-itm-base-coco"``), a local folder in
        ``save_pretrained`` layout, or ``"tiny-random"`` (a small offline net for tests and demos).
        Default: the checkpoint of ``architecture`` and ``dataset``.
    architecture : {"ViT-B/16", "ViT-L/16"}
    dataset : {"COCO", "Flickr30k"}
    pretrained : bool, default True
        ``False`` builds the same architecture with random weights from the registry's geometry;
        nothing is downloaded. The random weights are scaled so that scores differ between inputs
        (see :func:`blipviz.net.random_weights.informative_init_`), drawn from ``seed``.
    device : str or torch.device, optional
        Default ``"cpu"``. ``"cuda"`` works where a CUDA GPU is present, ``"mps"`` on a Mac with an
        Apple GPU; a device this machine lacks raises :class:`blipviz.InputError` listing those it has.
    dtype : torch.dtype or str, optional
        Default ``torch.float32`` (BLIP's numbers); also ``torch.float64``, or any of these four by
        name (``"float32"``, ``"float16"``, ``"bfloat16"``, ``"float64"``; another value is an
        :class:`blipviz.InputError` listing them). ``torch.float16`` / ``torch.bfloat16`` on GPU;
        ``torch.bfloat16`` also on CPUs with bfloat16 instructions (about 2.5x faster there, scores
        within about 0.03 of float32). Scores are always returned as float64; a half-precision overflow raises
        :class:`blipviz.NumericalError`.
    first_token : {"enc", "cls"}, default "enc"
        First token of the ITM pass. ``"enc"`` is BLIP's ``[ENC]`` (30523); ``"cls"`` reproduces the
        Hugging Face model card, which keeps ``[CLS]``.
    normalize_text : bool, default True
        Apply BLIP's caption normalisation (:func:`blipviz.normalize_caption`).
    max_text_tokens : int or None, default 35
        BLIP's token limit; ``None`` means the text encoder's own limit (its 512 positions); a larger
        value raises :class:`blipviz.InputError`. Cut texts are flagged and warned about
        (:class:`blipviz.TruncationWarning`).
    seed : int, default 0
        Seed of the random weights when ``pretrained=False`` or ``"tiny-random"`` (an int, not
        ``None``).
    cache_dir : str, path or blipviz.store.FeatureCache, optional
        Keep image features on disk there and look every image up first (see :mod:`blipviz.store.cache`):
        a second run over the same images skips the vision encoder.
    fast_attention : bool, default True
        Use torch's fused ``scaled_dot_product_attention`` in the ViT whenever no attention weights
        are requested (equal to transformers' attention to float32 rounding; see
        :mod:`blipviz.net.fast_attention`). ``False`` keeps transformers' attention everywhere.
    quantize : {None, "int8"}, default None
        ``"int8"``: dynamic int8 quantisation of the encoder Linear layers, CPU only; faster, not
        exact (see :mod:`blipviz.net.quantize`).

    Returns
    -------
    BlipITM

    Raises
    ------
    InputError
        Unknown architecture, dataset or option (lists the allowed values), a dtype among them; a
        device this machine does not have (lists those it has); a seed out of torch's range.
    InputTypeError
        ``seed`` that is not an int; ``device`` that is neither a str nor a ``torch.device``;
        ``dtype`` that is neither a str nor a ``torch.dtype``.
    OfflineError
        A hub id that is not cached while the Hub cannot be reached. When the string could also be
        a relative folder (``"models/blip"``), the message says that no such folder exists either.
    ModelLoadError
        A missing folder (``"no such folder: <absolute path>"``), a corrupt one, a checkpoint that
        is not a BLIP ITM net, or pickle weights (``pytorch_model.bin``) that torch's safe loader
        refuses: only safetensors or weights loadable with ``weights_only=True`` are accepted.
    """
    model = load_net(
        name_or_path,
        architecture=architecture,
        dataset=dataset,
        pretrained=pretrained,
        device=device,
        dtype=dtype,
        first_token=first_token,
        normalize_text=normalize_text,
        max_text_tokens=max_text_tokens,
        seed=seed,
        fast_attention=fast_attention,
        quantize=quantize,
        net_class=BlipITM,
    )
    if cache_dir is not None:
        from .store.cache import FeatureCache

        model.feature_cache = cache_dir if isinstance(cache_dir, FeatureCache) else FeatureCache(cache_dir)
    return model


def load_part(part: str = DEFAULT_PART, name_or_path: str | os.PathLike | None = None, **options) -> NetPart:
    """Load one part of a net: ``"ImageEncoder"``, ``"TextEncoder"`` or ``"MultimodalEncoder"``.

    Takes the same options as :func:`load_model` and returns ``model.image_encoder``,
    ``model.text_encoder`` or ``model.multimodal_encoder``. The weights the part does not use are
    freed after loading (:meth:`BlipITM.keep_only_part`): an ImageEncoder of ViT-B/16 keeps 86M of
    the net's 224M parameters. The MultimodalEncoder takes image features from an ImageEncoder.
    """
    check_choice("part", part, PARTS)
    model = load_model(name_or_path, **options).keep_only_part(part)
    return {
        "ImageEncoder": model.image_encoder,
        "TextEncoder": model.text_encoder,
        "MultimodalEncoder": model.multimodal_encoder,
    }[part]
