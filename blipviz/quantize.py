"""Opt-in int8 dynamic quantisation of a BLIP net's Linear layers, for CPU inference.

``load_model(..., quantize="int8")`` (or :func:`quantize_int8`) replaces every ``nn.Linear`` inside
the ViT's encoder layers and the text tower's encoder layers (self-attention, cross-attention, feed
-forward) by torch's dynamically quantised Linear: int8 weights (per-tensor scale), activations
quantised on the fly per batch, int32 accumulation. The patch embedding, the final LayerNorms and
the three small heads (``vision_proj``, ``text_proj``, ``itm_head``) stay float32, so the scores
are read off in full precision.

The scores then differ from float32 by the rounding of weights and activations to 8 bits; the
benchmark table (``benchmarks/README.md``) reports the speed-up and the agreement (max |diff| of
ITM probabilities, rank agreement) on the full ViT-B/16 geometry. Use it for throughput, not for
analyses that need BLIP's exact numbers.

torch 2.13 still ships eager-mode dynamic quantisation (``torch.ao.quantization.quantize_dynamic``)
but marks it deprecated in favour of ``torchao``; its deprecation warnings are silenced here, and a
clear error is raised if a future torch no longer has it.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn

from .errors import InputError

__all__ = ["QUANTIZE_MODES", "is_quantized", "quantize_int8"]

QUANTIZE_MODES = ("int8",)
_FLAG = "_blipviz_quantized"


def _quantize_dynamic():
    try:
        from torch.ao.quantization import quantize_dynamic
    except ImportError as exc:  # pragma: no cover - depends on the torch version
        raise InputError(
            f"int8 dynamic quantisation needs torch.ao.quantization.quantize_dynamic, which torch "
            f"{torch.__version__} does not provide ({exc}); install torch<=2.13 or drop quantize="
        ) from None
    return quantize_dynamic


def _targets(hf_model: nn.Module) -> list[nn.Module]:
    """The encoder stacks whose Linear layers are quantised: ViT layers and text-tower layers."""
    return [hf_model.vision_model.encoder, hf_model.text_encoder.encoder]


def quantize_int8(model: Any) -> Any:
    """Quantise the encoder Linear layers of a :class:`blipviz.BlipITM` to int8, in place.

    Parameters
    ----------
    model : BlipITM
        A float32 net on the CPU.

    Returns
    -------
    The same ``model``, with ``model.quantization == "int8"``.

    Raises
    ------
    InputError
        The net is not on the CPU, or not float32 (dynamic int8 kernels are CPU float32 only).
    """
    if model.device.type != "cpu":
        raise InputError(
            f"int8 dynamic quantisation runs on the CPU only; this net is on {model.device} "
            "(use dtype=torch.float16 or torch.bfloat16 on a GPU instead)"
        )
    if model.dtype != torch.float32:
        raise InputError(f"int8 dynamic quantisation needs a float32 net, got {model.dtype}")
    if is_quantized(model.hf):
        return model
    quantize_dynamic = _quantize_dynamic()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.ao\.quantization is deprecated.*")
        warnings.filterwarnings("ignore", message=r".*quantized tensor creation functions.*")
        for stack in _targets(model.hf):
            quantize_dynamic(stack, {nn.Linear}, dtype=torch.qint8, inplace=True)
    setattr(model.hf, _FLAG, True)
    model.quantization = "int8"
    return model


def is_quantized(hf_model: nn.Module) -> bool:
    """Whether :func:`quantize_int8` was applied to this ``BlipForImageTextRetrieval``."""
    return bool(getattr(hf_model, _FLAG, False))
