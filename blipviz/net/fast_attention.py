"""Fused attention for the ViT of a BLIP net, without forking transformers' model code.

transformers' ``BlipAttention`` (the vision tower's self-attention) computes
``softmax(q k^T * scale) v`` by hand, materialising the (batch, heads, 577, 577) probabilities.
When nobody asks for those probabilities, ``torch.nn.functional.scaled_dot_product_attention`` gives
the same numbers (to float32 rounding: a fused kernel sums in another order) with less memory
traffic. :func:`enable_fast_attention` replaces the ``forward`` of each ``BlipAttention`` *instance*
(not the class) with ``_fused_forward``, which falls back to transformers' own
``BlipAttention.forward`` whenever attention weights are requested:

- ``output_attentions=True`` reaches the module (``vision_model(..., output_attentions=True)``),
- transformers' output collector is recording ``attentions`` (the same request, seen from inside),
- the module is in training mode with attention dropout,
- or inside :func:`exact_attention` (for code that reads ``output[1]`` with its own forward hooks).

In the fused path the second output is ``None``, as in transformers' own SDPA attention classes.

The same switch folds the multimodal encoder's cross-attention: when the image states have batch 1
and the texts batch n (one image's texts scored together), transformers' ``torch.matmul`` broadcasts
the image's keys and values by expanding and copying them for every text in every layer. Queries
of cross-attention do not interact, so the n texts' T tokens are passed to transformers' own
``BlipTextSelfAttention.forward`` as one sequence of n * T queries against the single image, and the
outputs are reshaped back: the same products, without the copies. The attention probabilities are
still returned, as (n, heads, T, 1 + P).
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from transformers.models.blip.modeling_blip import BlipAttention

__all__ = [
    "cross_attention_folded",
    "cross_attention_modules",
    "disable_fast_attention",
    "enable_fast_attention",
    "exact_attention",
    "fast_attention_enabled",
]

_FLAG = "_blipviz_fast_attention"
_FOLD_FLAG = "_blipviz_folded_cross_attention"


def _blip_attention_class() -> type[nn.Module]:
    from transformers.models.blip.modeling_blip import BlipAttention

    return BlipAttention


def _attention_requested(module: BlipAttention, kwargs: dict[str, Any]) -> bool:
    if kwargs.get("output_attentions"):
        return True
    if module.training and module.dropout.p > 0:
        return True
    try:
        from transformers.utils.output_capturing import _active_collector
    except ImportError:  # pragma: no cover - older/newer transformers: rely on the kwarg alone
        return False
    collected = _active_collector.get()
    return bool(collected) and "attentions" in collected


def _fused_forward(self: BlipAttention, hidden_states: torch.Tensor, **kwargs: Any):
    """``BlipAttention.forward`` with fused attention; the exact path when weights are asked for."""
    if _attention_requested(self, kwargs):
        return type(self).forward(self, hidden_states, **kwargs)
    bsz, tgt_len, embed_dim = hidden_states.shape
    qkv = self.qkv(hidden_states).reshape(bsz, tgt_len, 3, self.num_heads, self.head_dim)
    query, key, value = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (bsz, heads, tokens, head_dim)
    context = F.scaled_dot_product_attention(query, key, value, scale=self.scale)
    context = context.transpose(1, 2).reshape(bsz, tgt_len, embed_dim)
    return self.projection(context), None


def _folded_cross_forward(
    self: nn.Module,
    hidden_states: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    encoder_hidden_states: torch.Tensor | None = None,
    encoder_attention_mask: torch.Tensor | None = None,
    **kwargs: Any,
):
    """``BlipTextSelfAttention.forward`` of a cross-attention, with one image's texts folded into
    one query sequence; transformers' own forward for anything else."""
    forward = type(self).forward
    foldable = (
        encoder_hidden_states is not None
        and encoder_hidden_states.shape[0] == 1
        and hidden_states.shape[0] > 1
        and encoder_attention_mask is None
        and kwargs.get("cache") is None
    )
    if not foldable:
        return forward(
            self,
            hidden_states,
            attention_mask=attention_mask,
            encoder_hidden_states=encoder_hidden_states,
            encoder_attention_mask=encoder_attention_mask,
            **kwargs,
        )
    n, t, width = hidden_states.shape
    context, probs = forward(
        self,
        hidden_states.reshape(1, n * t, width),
        attention_mask=attention_mask,  # ignored by transformers for cross-attention
        encoder_hidden_states=encoder_hidden_states,
        **kwargs,
    )
    heads = probs.shape[1]
    return context.reshape(n, t, -1), probs.reshape(heads, n, t, -1).transpose(0, 1)


def cross_attention_modules(model: nn.Module) -> list[nn.Module]:
    """The attention modules inside a BLIP text tower's cross-attention blocks
    (``BlipTextLayer.crossattention.self``), in layer order; empty for a tower without them."""
    from transformers.models.blip.modeling_blip_text import BlipTextLayer

    return [
        m.crossattention.self
        for m in model.modules()
        if isinstance(m, BlipTextLayer) and hasattr(m, "crossattention")
    ]


def _attention_modules(model: nn.Module) -> list[nn.Module]:
    cls = _blip_attention_class()
    return [m for m in model.modules() if isinstance(m, cls)]


def cross_attention_folded(module: nn.Module) -> bool:
    """Whether a cross-attention module (of :func:`cross_attention_modules`) folds one image's texts
    into one query sequence."""
    return bool(getattr(module, _FOLD_FLAG, False))


def enable_fast_attention(model: nn.Module) -> int:
    """Use fused attention in every ViT self-attention of ``model`` (any BLIP module); idempotent.

    Returns
    -------
    int
        Number of attention modules now using the fused path.
    """
    modules = _attention_modules(model)
    for module in modules:
        module.forward = types.MethodType(_fused_forward, module)
        setattr(module, _FLAG, True)
    for module in cross_attention_modules(model):
        module.forward = types.MethodType(_folded_cross_forward, module)
        setattr(module, _FOLD_FLAG, True)
    return len(modules)


def disable_fast_attention(model: nn.Module) -> int:
    """Restore transformers' own attention in every ViT self-attention of ``model``.

    Returns
    -------
    int
        Number of attention modules that were using the fused path.
    """
    count = 0
    for module in _attention_modules(model):
        if getattr(module, _FLAG, False):
            del module.forward  # the instance attribute; the class's forward shows through again
            delattr(module, _FLAG)
            count += 1
    for module in cross_attention_modules(model):
        if getattr(module, _FOLD_FLAG, False):
            del module.forward
            delattr(module, _FOLD_FLAG)
    return count


def fast_attention_enabled(model: nn.Module) -> bool:
    """Whether any ViT self-attention of ``model`` uses the fused path."""
    return any(getattr(m, _FLAG, False) for m in _attention_modules(model))


@contextlib.contextmanager
def exact_attention(model: Any) -> Iterator[None]:
    """Run transformers' exact attention inside the block, restoring the previous state after.

    ``model`` is a :class:`blipviz.BlipITM` or any BLIP ``nn.Module``.
    """
    module = getattr(model, "hf", model)
    disabled = disable_fast_attention(module)
    try:
        yield
    finally:
        if disabled:
            enable_fast_attention(module)
