"""The model layer: the family registry, loading, the wrapped net with its public ports, and the
preprocessing of images and texts. It knows no analysis, no store and no screen.

==================  =============================================================================
``registry``        the family table, every geometry, config corrections, constants, token ids
``hub``             hub ids, reachability, the offline message
``loading``         :func:`load_net`: checkpoints and random weights, fused attention, int8
``net``             :class:`BlipNet` and its ports (``vision_states``, ``itm_logits``, ...)
``features``        :class:`ImageFeatures`, :class:`TextFeatures`
``images``          decoding and BLIP's image preprocessing
``text``            caption normalisation and tokenisation
``fast_attention``  fused attention and one image's keys and values shared by its texts
``quantize``        int8 dynamic quantisation of the linear layers
``random_weights``  informative random weights for a net built without a checkpoint
``fingerprint``     hashes of the weights that name a net's features
``provenance``      versions, device, dtype and date recorded with every saved result
==================  =============================================================================
"""

from __future__ import annotations

from .features import ImageFeatures, TextFeatures
from .loading import load_net
from .net import BlipNet, ImageBatch

__all__ = ["BlipNet", "ImageBatch", "ImageFeatures", "TextFeatures", "load_net"]
