"""What a computation will cost on this machine, from one measured pass of the net.

A notebook cell that runs the vision transformer (ViT) hundreds of times can take seconds on a GPU
and many minutes on a laptop's CPU. :func:`estimate_seconds` times one ViT pass of one image on the
net's own device (and, when asked, what one (text, image) pair costs the multimodal encoder), then
multiplies by the passes and pairs the cell will make; :func:`expected_time` says the same in a
sentence to print before the cell runs::

    print(blipviz.expected_time(model, vit_passes=4 * 164, what="the curves"))
    # the curves: 656 ViT passes x 0.71 s (measured on cpu, 2 threads) = about 8 min

The measurement runs random pixels at the net's input size (no preprocessing, no feature cache,
nothing stored): one warm-up pass, then the mean of ``repeats`` timed passes, so a busy machine shows
in it as it will in the cell. It is kept per net, device and dtype: later estimates for the same net
cost nothing. An estimate leaves out decoding images, the text encoder and the figures, small beside
the ViT on the full geometry, and the machine's load may change between the measurement and the
cell.
"""

from __future__ import annotations

import time
import weakref
from typing import Any

import torch

from ..errors import InputError, InputTypeError

__all__ = ["estimate_seconds", "expected_time", "format_duration", "pass_seconds"]

# net -> {(kind, device, dtype, quantization): seconds}
_MEASURED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_ITM_BATCH = 8  # texts against one image when an ITM pair is timed


def _net(model: Any):
    """The :class:`blipviz.net.BlipNet` behind ``model`` (a net, or a part of one)."""
    net = getattr(model, "model", model)  # ImageEncoder / TextEncoder / MultimodalEncoder wrap a net
    if not (hasattr(net, "vision_states") and hasattr(net, "hf")):
        raise InputTypeError(
            f"model must be a blipviz net (load_model or load_part), got {type(model).__name__}"
        )
    return net


def _count(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InputTypeError(f"{name} must be a number, got {type(value).__name__} {value!r:.60}")
    if not value >= 0 or value == float("inf"):
        raise InputError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device: torch.device, repeats: int) -> float:
    with torch.inference_mode():
        fn()  # warm-up: kernels chosen, buffers allocated
        _synchronize(device)
        start = time.perf_counter()
        for _ in range(repeats):
            fn()
        _synchronize(device)
    return (time.perf_counter() - start) / repeats


def pass_seconds(model: Any, kind: str = "vit", *, repeats: int = 1, refresh: bool = False) -> float:
    """Seconds one pass of ``model`` takes on its device, measured on first use and then remembered.

    Parameters
    ----------
    model : BlipITM, BlipNet or a part from load_part
    kind : {"vit", "itm"}
        ``"vit"``: one image (batch 1) through the vision transformer. ``"itm"``: one (text, image)
        pair through the multimodal encoder to the ITM head, timed as 8 short texts against one
        image's states and divided by 8 (the image's keys and values shared, as when several texts
        are scored against an image; a pair scored alone costs more).
    repeats : int, default 1
        Timed passes after one warm-up pass; their mean counts. The default keeps the measurement
        at two passes, small beside the work it prices.
    refresh : bool, default False
        Measure again even if this net (on this device, in this dtype) was measured before.

    Returns
    -------
    float
        Seconds per pass.
    """
    if kind not in ("vit", "itm"):
        raise InputError(f"kind must be 'vit' or 'itm', got {kind!r}")
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise InputError(f"repeats must be an int >= 1, got {repeats!r}")
    net = _net(model)
    key = (kind, str(net.device), str(net.dtype), str(getattr(net, "quantization", None)))
    known = _MEASURED.setdefault(net, {})
    if key in known and not refresh:
        return known[key]
    size = int(net.config.vision_config.image_size)
    pixels = torch.rand(1, 3, size, size, device=net.device, dtype=net.dtype)
    if kind == "vit":
        seconds = _timed(lambda: net.vision_states(pixels), net.device, repeats)
    else:
        net.require_part("MultimodalEncoder", "timing an ITM pass")
        with torch.inference_mode():
            states = torch.zeros(1, net.n_image_tokens, net.width, device=net.device, dtype=net.dtype)
        tokenized = net.tokenize(["a photograph of a dog sitting on a sofa"] * _ITM_BATCH, warn=False)
        seconds = _timed(lambda: net.itm_logits(tokenized, states), net.device, repeats) / _ITM_BATCH
    known[key] = seconds
    return seconds


def estimate_seconds(model: Any, vit_passes: float = 0, *, itm_pairs: float = 0) -> float:
    """Expected seconds of work that makes ``vit_passes`` ViT passes and scores ``itm_pairs`` pairs.

    Each is timed once on this machine (:func:`pass_seconds`: one image through the ViT; a (text,
    image) pair through the multimodal encoder) and multiplied by its count. Images batched
    together cost a little less each (a few percent on a CPU, much less on a GPU), so the estimate
    errs on the long side there; a pair scored alone (one text for its image) costs more than in a
    batch, so the estimate errs on the short side there.

    Parameters
    ----------
    model : BlipITM, BlipNet or a part from load_part
    vit_passes : number, default 0
        Images through the vision transformer (one per image, perturbed copy or crop).
    itm_pairs : number, keyword-only, default 0
        (text, image) pairs through the multimodal encoder and the ITM head.

    Returns
    -------
    float
        Seconds.

    Examples
    --------
    >>> import blipviz
    >>> model = blipviz.load_model("tiny-random")
    >>> blipviz.estimate_seconds(model, vit_passes=10) > 0
    True
    """
    vit = _count("vit_passes", vit_passes)
    itm = _count("itm_pairs", itm_pairs)
    seconds = 0.0
    if vit:
        seconds += vit * pass_seconds(model, "vit")
    if itm:
        seconds += itm * pass_seconds(model, "itm")
    return seconds


def format_duration(seconds: float) -> str:
    """A duration for people: ``"under a second"``, ``"12 s"``, ``"about 3.5 min"``, ``"about 2.1 h"``."""
    seconds = _count("seconds", seconds)
    if seconds < 1:
        return "under a second"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"about {seconds / 60:.1f} min" if seconds < 600 else f"about {seconds / 60:.0f} min"
    return f"about {seconds / 3600:.1f} h"


def expected_time(model: Any, vit_passes: float = 0, *, itm_pairs: float = 0, what: str = "this cell") -> str:
    """One line saying what ``what`` will cost: the passes, the measured time of one, the total.

    Parameters
    ----------
    model : BlipITM, BlipNet or a part from load_part
    vit_passes, itm_pairs : number
        As for :func:`estimate_seconds`.
    what : str, default "this cell"
        What is estimated, the sentence's start.

    Returns
    -------
    str
        e.g. ``"the curves: 656 ViT passes x 0.71 s (measured on cpu, 2 threads) = about 8 min"``.
    """
    if not isinstance(what, str):
        raise InputTypeError(f"what must be a str, got {type(what).__name__}")
    total = estimate_seconds(model, vit_passes, itm_pairs=itm_pairs)
    net = _net(model)
    parts = []
    if vit_passes:
        parts.append(f"{_number(vit_passes)} ViT passes x {pass_seconds(net, 'vit'):.2g} s")
    if itm_pairs:
        parts.append(f"{_number(itm_pairs)} ITM pairs x {pass_seconds(net, 'itm'):.2g} s")
    where = str(net.device) + (f", {torch.get_num_threads()} threads" if net.device.type == "cpu" else "")
    work = " + ".join(parts) if parts else "no passes"
    return f"{what}: {work} (measured on {where}) = {format_duration(total)}"


def _number(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"
