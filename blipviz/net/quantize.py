"""Opt-in int8 dynamic quantisation of a BLIP net's Linear layers, for CPU inference.

``load_model(..., quantize="int8")`` (or :func:`quantize_int8`) replaces every ``nn.Linear`` inside
the ViT's encoder layers and the text tower's encoder layers (self-attention, cross-attention, feed
-forward) by torch's dynamically quantised Linear: int8 weights (per-tensor scale), activations
quantised on the fly per batch, int32 accumulation. The patch embedding, the final LayerNorms and
the three small heads (``vision_proj``, ``text_proj``, ``itm_head``) stay float32, so the scores
are read off in full precision.

The scores then differ from float32 by the rounding of weights and activations to 8 bits; the
benchmark table (``benchmarks/README.md``) reports the speed-up and the agreement (the largest
absolute difference of ITM probabilities, rank agreement) on the full ViT-B/16 geometry. Use it for
throughput, not for analyses that need BLIP's exact numbers.

The packed int8 weights live outside ``nn.Parameter`` (inside each quantised Linear's
``_packed_params``), so ``named_parameters()`` no longer lists them: :func:`held_weights` lists what
a net holds, packed weights included, under the names the float weights had.

torch 2.13 still ships eager-mode dynamic quantisation (``torch.ao.quantization.quantize_dynamic``)
but marks it deprecated in favour of ``torchao``; its deprecation warnings are silenced here, and a
clear error is raised if a future torch no longer has it.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..errors import InputError

if TYPE_CHECKING:
    from transformers import BlipForImageTextRetrieval

__all__ = [
    "QUANTIZE_MODES",
    "HeldWeight",
    "held_weights",
    "is_packed_linear",
    "is_quantized",
    "part_weight_names",
    "quantize_int8",
]

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


def _targets(hf_model: BlipForImageTextRetrieval) -> list[nn.Module]:
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


@dataclass(frozen=True)
class HeldWeight:
    """One weight array a net holds.

    Attributes
    ----------
    name : str
        Its name in the float net (``"vision_model.encoder.layers.0.self_attn.qkv.weight"``), also
        for an int8-packed weight.
    shape : tuple of int
    dtype : str
        ``"float32"``, ``"bfloat16"``, ..., or ``"qint8"`` for a packed int8 weight.
    quantized : bool
        Whether the array is stored as int8 (with a scale and a zero point).
    """

    name: str
    shape: tuple[int, ...]
    dtype: str
    quantized: bool

    @property
    def elements(self) -> int:
        n = 1
        for side in self.shape:
            n *= int(side)
        return n


def is_packed_linear(module: nn.Module) -> bool:
    """Whether ``module`` is a dynamically quantised Linear (``torch.ao.nn.quantized.dynamic.Linear``
    and kin), which holds its int8 weight and its bias packed outside ``nn.Parameter``."""
    return hasattr(module, "_packed_params") and hasattr(module, "_weight_bias")


def _held(name: str, tensor: torch.Tensor) -> HeldWeight:
    quantized = bool(tensor.is_quantized)
    return HeldWeight(
        name, tuple(int(d) for d in tensor.shape), str(tensor.dtype).replace("torch.", ""), quantized
    )


def held_weights(module: nn.Module) -> Iterator[HeldWeight]:
    """Every weight array ``module`` holds, in registration order, shared arrays once.

    Float weights are its ``nn.Parameter`` s; a dynamically quantised Linear (after
    :func:`quantize_int8`) holds its int8 weight and float bias packed outside ``nn.Parameter``:
    they are listed as ``"<linear>.weight"`` (``quantized=True``) and ``"<linear>.bias"``, the names
    they had before quantisation, so the counts of a float net and of its int8 copy agree.

    Parameters
    ----------
    module : torch.nn.Module
        A ``BlipForImageTextRetrieval`` or any module (also on the ``meta`` device).

    Yields
    ------
    HeldWeight
    """
    seen: set[int] = set()
    packed: list[str] = []  # the packed Linears met so far: their inner modules are not looked at
    for prefix, sub in module.named_modules():
        if any(prefix.startswith(f"{p}.") for p in packed):
            continue
        dot = f"{prefix}." if prefix else ""
        for leaf, param in sub._parameters.items():
            if param is None or id(param) in seen:
                continue
            seen.add(id(param))
            yield _held(dot + leaf, param)
        if is_packed_linear(sub):
            packed.append(prefix)
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=r".*torch\.ao\.quantization is deprecated.*")
                weight, bias = sub._weight_bias()
            yield _held(f"{dot}weight", weight)
            if bias is not None:
                yield _held(f"{dot}bias", bias)


class _Names:
    """What :func:`blipviz.net.registry.part_parameter_names` reads of a net: the names of its weights."""

    def __init__(self, names: list[str]) -> None:
        self._names = names

    def named_parameters(self):
        return ((n, None) for n in self._names)


def part_weight_names(hf_model: nn.Module, part: str) -> list[str]:
    """Names of the weights (packed int8 ones included) that ``part`` of ``hf_model`` uses.

    The same selection as :func:`blipviz.net.registry.part_parameter_names`, over :func:`held_weights`
    instead of ``named_parameters()``.
    """
    from .registry import part_parameter_names

    return part_parameter_names(_Names([w.name for w in held_weights(hf_model)]), part)
