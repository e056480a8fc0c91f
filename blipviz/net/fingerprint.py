"""Content fingerprints of a net's weights: what identifies the net that computed a feature.

A fingerprint is a BLAKE2b-256 (as collision-resistant as SHA-256, and twice as fast on CPUs
without SHA instructions) over the names, dtypes, shapes and bytes of the weights of some sub-modules
of the wrapped ``BlipForImageTextRetrieval`` (int8-packed weights included, by their integer values,
scales and zero points). Two nets with equal fingerprints compute the same features; a different
checkpoint, revision, random seed, dtype or a quantised copy never shares one. The feature cache
keys its entries with them, and :class:`blipviz.ImageFeatures` / :class:`blipviz.TextFeatures`
carry the fingerprint of the net that made them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import torch

__all__ = ["WEIGHT_GROUPS", "weights_fingerprint"]

#: The weights behind each kind of feature: image features (raw states and embeddings) come from
#: ``"image"``; text embeddings and ITM logits (given image states) from ``"text"``.
WEIGHT_GROUPS: dict[str, tuple[str, ...]] = {
    "image": ("vision_model", "vision_proj"),
    "text": ("text_encoder", "text_proj", "itm_head"),
}


def _update_with(h, value: Any) -> None:
    if isinstance(value, torch.Tensor):
        t = value.detach()
        if t.is_quantized:
            if t.qscheme() in (torch.per_tensor_affine, torch.per_tensor_symmetric):
                h.update(f"q{t.q_scale()!r},{t.q_zero_point()}".encode())
            else:
                _update_with(h, t.q_per_channel_scales())
                _update_with(h, t.q_per_channel_zero_points())
            t = t.int_repr()
        t = t.to("cpu").contiguous()
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy())
    elif isinstance(value, tuple | list):
        for v in value:
            _update_with(h, v)
    else:
        h.update(repr(value).encode())


def weights_fingerprint(hf_model, parts: Sequence[str] = WEIGHT_GROUPS["image"]) -> str:
    """BLAKE2b-256 of the weights of some sub-modules, by default those that produce image features.

    Parameters
    ----------
    hf_model : transformers.BlipForImageTextRetrieval
        Float or int8-quantised (packed int8 weights are hashed by value, scale and zero point).
    parts : sequence of str, default ("vision_model", "vision_proj")
        Attribute names of the sub-modules to hash (see :data:`WEIGHT_GROUPS`).

    Returns
    -------
    str
        64 hexadecimal digits.
    """
    h = hashlib.blake2b(digest_size=32)
    for part in parts:
        prefix, module = part + ".", getattr(hf_model, part)
        for name, value in sorted(module.state_dict(keep_vars=False).items()):
            h.update((prefix + name).encode())
            _update_with(h, value)
    return h.hexdigest()
