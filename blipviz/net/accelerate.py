"""Opt-in speed for long jobs: the vision encoder compiled with ``torch.compile``, and the encoders'
passes under bfloat16 autocast. One way in: :meth:`blipviz.net.BlipNet.accelerated` (a context
manager), which :func:`blipviz.embed_collection`, :func:`blipviz.score_pairs` and
:func:`blipviz.evaluate_retrieval` enter with their ``compile=`` and ``autocast=`` options.

- ``compile=True``: the ViT's forward (``vision_model`` up to its last hidden state) is compiled
  once per net with torch's default backend (inductor), with the batch marked dynamic, so one
  compilation serves every batch size of 2 and more; a batch of one image is padded to two (the
  compiled code specialises batch 1 otherwise, a second compilation). The text and multimodal
  passes stay eager: their shapes change with every batch's texts (count and longest text), and
  each new shape would compile again. Scores agree with eager ones within float32 rounding (a
  fused kernel sums in another order). Inductor writes C++ for the CPU and needs a C++ compiler;
  without one, ``compile=True`` is refused before anything runs.
- ``autocast="bfloat16"``: the three encoders' transformer passes (ViT, text encoder, multimodal
  encoder) run under ``torch.autocast`` in bfloat16 (matmuls and attention in bfloat16, LayerNorm
  and softmax as autocast decides); the projections and the ITM head stay in the net's float32,
  and every output (states, embeddings, logits, scores) is float32. On a CPU it is accepted only
  where the CPU has native bfloat16 arithmetic (AVX512-BF16 or AMX-BF16 on x86, BF16 on Arm): it
  is slower than float32 elsewhere, emulated. ``BLIPVIZ_FORCE_BF16=1`` in the environment runs it
  anyway (tests, or a measurement of the emulation).

What a job was computed with is recorded: ``net.acceleration`` inside the block, read by
:func:`blipviz.net.provenance.provenance` (keys ``compile`` and ``autocast``).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from ..errors import InputError, InputTypeError

if TYPE_CHECKING:
    from .net import BlipNet

__all__ = [
    "AUTOCAST_DTYPES",
    "EAGER",
    "FORCE_BF16_ENV",
    "Acceleration",
    "accelerated",
    "check_acceleration",
    "compiled_vision_states",
    "cpu_bf16_support",
    "cxx_compiler",
]

#: The values ``autocast=`` takes, besides None, and their torch dtypes.
AUTOCAST_DTYPES = {"bfloat16": torch.bfloat16}
#: Environment variable that lets bfloat16 autocast run on a CPU without native bfloat16.
FORCE_BF16_ENV = "BLIPVIZ_FORCE_BF16"
#: torch.compile's backend; ``"inductor"`` (generated C++ on a CPU, Triton on a GPU).
COMPILE_BACKEND = "inductor"
_COMPILED_ATTR = "_blipviz_compiled_vision"


@dataclass(frozen=True)
class Acceleration:
    """How a net's passes run: ``compile`` (the ViT compiled) and ``autocast`` (None or
    ``"bfloat16"``)."""

    compile: bool = False
    autocast: str | None = None

    def describe(self) -> dict[str, Any]:
        """``{"compile": bool, "autocast": str or None}``, as manifests and provenance record it."""
        return {"compile": bool(self.compile), "autocast": self.autocast}

    @classmethod
    def from_record(cls, record: Any) -> Acceleration:
        """The acceleration a manifest records (a folder written before the options existed: eager)."""
        if not isinstance(record, dict):
            return EAGER
        return cls(bool(record.get("compile", False)), record.get("autocast"))

    def __str__(self) -> str:
        return f"compile={bool(self.compile)}, autocast={self.autocast!r}"


#: Plain eager float passes: what a net does outside :func:`accelerated`.
EAGER = Acceleration()


def cpu_bf16_support() -> list[str]:
    """The native bfloat16 instruction sets of this CPU: ``"avx512_bf16"``, ``"amx_bf16"`` (x86),
    ``"bf16"`` (Arm), from torch's own checks and ``/proc/cpuinfo``; empty when it has none."""
    found: list[str] = []
    checks = {"avx512_bf16": "_is_avx512_bf16_supported", "amx_bf16": "_is_amx_tile_supported"}
    for name, check in checks.items():
        fn = getattr(torch.cpu, check, None)
        try:
            if fn is not None and fn():
                found.append(name)
        except Exception:  # pragma: no cover - a torch build without the probe
            pass
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            flags = set()
            for line in f:
                key = line.split(":", 1)[0].strip().lower()
                if key in ("flags", "features"):
                    flags.update(line.split(":", 1)[1].split())
    except OSError:
        flags = set()
    for name in ("avx512_bf16", "amx_bf16", "bf16"):
        if name in flags and name not in found:
            found.append(name)
    return found


def cxx_compiler() -> str | None:
    """The C++ compiler torch.compile's CPU backend (inductor) would use (``$CXX``, ``g++``, ...), or
    None when there is none."""
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler

        return str(get_cpp_compiler())
    except Exception:
        return None


def _forced() -> bool:
    return os.environ.get(FORCE_BF16_ENV, "").strip().lower() in ("1", "true", "yes")


def check_acceleration(
    model: BlipNet, compile: Any = False, autocast: Any = None, *, force_bf16: bool = False
) -> Acceleration:
    """``compile`` and ``autocast`` checked for ``model`` on this machine, as an :class:`Acceleration`.

    ``force_bf16=True`` skips the check for native bfloat16 (as ``BLIPVIZ_FORCE_BF16=1`` does): for
    a Ray worker running what its driver checked.

    Raises
    ------
    InputTypeError
        ``compile`` is not a bool.
    InputError
        An unknown ``autocast``; either option on an int8 net; autocast on a net that is not
        float32; bfloat16 autocast on a CPU (or GPU) without native bfloat16 (unless
        ``BLIPVIZ_FORCE_BF16=1``); ``compile=True`` on a CPU without a C++ compiler.
    """
    if not isinstance(compile, bool):
        raise InputTypeError(f"compile must be True or False, got {type(compile).__name__} {compile!r}")
    if autocast is not None and (not isinstance(autocast, str) or autocast not in AUTOCAST_DTYPES):
        allowed = ", ".join(["None", *map(repr, AUTOCAST_DTYPES)])
        raise InputError(f"unknown autocast {autocast!r}; allowed values: {allowed} (a string)")
    options = Acceleration(compile, autocast)
    if options == EAGER:
        return options
    if model.quantization:
        raise InputError(
            f"{options} is for a float net; this net is quantised ({model.quantization}): leave compile "
            "and autocast out, or use the float net"
        )
    device = model.device.type
    if autocast is not None:
        dtype = str(model.dtype).replace("torch.", "")
        if model.dtype != torch.float32:
            raise InputError(
                f"autocast={autocast!r} runs a float32 net's passes in {autocast}; this net is {dtype} "
                "already: leave autocast out, or load the net with dtype=torch.float32"
            )
        if not (force_bf16 or _forced()):
            if device == "cpu" and not cpu_bf16_support():
                capability = torch.backends.cpu.get_cpu_capability()
                raise InputError(
                    f"autocast={autocast!r} needs a CPU with native bfloat16 arithmetic (AVX512-BF16 or "
                    f"AMX-BF16 on x86, BF16 on Arm); this CPU has none (torch's kernels: {capability}), so "
                    f"bfloat16 would be emulated and slower than float32. Leave autocast out, or set "
                    f"{FORCE_BF16_ENV}=1 in the environment to run it anyway"
                )
            if device == "cuda" and not torch.cuda.is_bf16_supported():
                raise InputError(
                    f"autocast={autocast!r}: this GPU has no native bfloat16; leave autocast out, or set "
                    f"{FORCE_BF16_ENV}=1 in the environment to run it anyway"
                )
    if compile and device == "cpu" and cxx_compiler() is None:
        raise InputError(
            "compile=True needs a C++ compiler: torch.compile's CPU backend (inductor) writes C++ and "
            "found none ($CXX, g++, c++, clang++). Install one (e.g. apt-get install g++), or leave "
            "compile out; nothing was computed"
        )
    return options


def _vision_last_state(vision_model: torch.nn.Module, pixels: torch.Tensor) -> torch.Tensor:
    return vision_model(pixel_values=pixels).last_hidden_state


def compiled_vision_states(model: BlipNet, pixels: torch.Tensor) -> torch.Tensor:
    """(n, 3, s, s) pixels -> (n, 1 + P, width) through the net's compiled ViT (compiled on first
    use and kept on the net; a batch of 1 is padded to 2, the batch dimension marked dynamic)."""
    compiled = getattr(model.hf, _COMPILED_ATTR, None)
    if compiled is None:
        compiled = torch.compile(_vision_last_state, backend=COMPILE_BACKEND)
        setattr(model.hf, _COMPILED_ATTR, compiled)
    n = pixels.shape[0]
    if n == 1:
        pixels = pixels.expand(2, *pixels.shape[1:])
    pixels = pixels.contiguous()
    torch._dynamo.maybe_mark_dynamic(pixels, 0)
    return compiled(model.hf.vision_model, pixels)[:n]


def autocast_context(model: BlipNet) -> contextlib.AbstractContextManager[Any]:
    """``torch.autocast`` for the net's device in the acceleration's dtype, or a no-op."""
    name = model.acceleration.autocast
    if name is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=model.device.type, dtype=AUTOCAST_DTYPES[name])


@contextlib.contextmanager
def accelerated(
    model: BlipNet, compile: Any = False, autocast: Any = None, *, force_bf16: bool = False
) -> Iterator[Acceleration]:
    """Inside the block, ``model``'s passes run with the given options (checked first:
    :func:`check_acceleration`); the previous ones are restored after."""
    options = check_acceleration(model, compile, autocast, force_bf16=force_bf16)
    previous = model.acceleration
    model.acceleration = options
    try:
        yield options
    finally:
        model.acceleration = previous
