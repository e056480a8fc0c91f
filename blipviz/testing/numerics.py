"""Float comparisons whose tolerance is derived, not guessed.

Two computations of the same numbers by different kernels (AVX2, AVX-512, AMX, a GPU), batch
positions or reduction orders differ in the last bits, and the difference grows with the depth of
the computation and the size of the values. :func:`tolerance` states that bound once:

    atol = ulps * eps(dtype) * depth * magnitude

- ``eps(dtype)``: the spacing of the dtype at 1 (1.19e-7 for float32, 7.8e-3 for bfloat16);
- ``depth``: the number of layers the values went through (each layer's LayerNorm, matmuls and
  softmax re-round what it is given; errors add up about linearly over layers, and post-LayerNorm
  nets do not amplify them much);
- ``magnitude``: the size of the largest compared value (or of the intermediates it came from:
  probabilities come from logits of order one);
- ``ulps``: the budget per layer, 16 by default: a layer's reductions of a few hundred terms,
  summed in another order or in another SIMD width, move a result by a few ulps of the largest
  term, and 16 keeps a margin for LayerNorm and softmax amplifying that a little.

A bug moves results by far more than this (a wrong token, a wrong mask or a wrong weight moves a
probability by 1e-3 or more), so the bound still catches what it is meant to catch.

Exact equality (``torch.equal``) is for the very same kernels computing the very same values, e.g.
a result and its cached copy; ``compare in float64`` where the claim is "the same computation" of a
formula.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = ["assert_close", "net_depth", "tolerance"]

DEFAULT_ULPS = 16


def _eps(dtype: Any) -> float:
    if isinstance(dtype, torch.dtype):
        return float(torch.finfo(dtype).eps)
    return float(np.finfo(dtype).eps)


def tolerance(
    dtype: torch.dtype | np.dtype | type = torch.float32,
    *,
    depth: int = 1,
    magnitude: float = 1.0,
    ulps: float = DEFAULT_ULPS,
) -> float:
    """Absolute tolerance between two computations of the same values by different kernels.

    Parameters
    ----------
    dtype : torch.dtype or numpy dtype, default torch.float32
        The dtype the values were *computed* in (scores are returned as float64 but computed in the
        net's dtype).
    depth : int, default 1
        Layers the values went through.
    magnitude : float, default 1.0
        Size of the largest compared value, or of the intermediates it was computed from.
    ulps : float, default 16
        Units in the last place allowed per layer.

    Returns
    -------
    float
        ``ulps * eps(dtype) * depth * magnitude``.
    """
    if depth < 1:
        raise ValueError(f"depth must be at least 1, got {depth}")
    return float(ulps * _eps(dtype) * depth * max(float(magnitude), 0.0))


def net_depth(model: Any, path: str = "itm") -> int:
    """Layers on the way to a net's output, the ``depth`` of :func:`tolerance`.

    Parameters
    ----------
    model : blipviz.BlipITM
    path : {"image", "text", "itm"}
        ``"image"``: the ViT (raw states, image embeddings); ``"text"``: the text tower (text
        embeddings); ``"itm"``: both in a row (ITM logits and probabilities from images, and cosine
        scores, whose error is the sum of the two towers').
    """
    n_vision = int(model.config.vision_config.num_hidden_layers)
    n_text = int(model.config.text_config.num_hidden_layers)
    layers = {"image": n_vision, "text": n_text, "itm": n_vision + n_text}
    if path not in layers:
        raise ValueError(f"path must be one of {sorted(layers)}, got {path!r}")
    return layers[path]


def _as_numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


def assert_close(
    actual: Any,
    expected: Any,
    *,
    dtype: torch.dtype | np.dtype | type = torch.float32,
    depth: int = 1,
    magnitude: float | None = None,
    ulps: float = DEFAULT_ULPS,
    msg: str = "",
) -> float:
    """Assert that two arrays agree within :func:`tolerance`; returns the largest difference.

    Parameters
    ----------
    actual, expected : Tensor, ndarray or array-like (a ScoreMatrix works) of the same shape
    dtype : dtype the values were computed in, default torch.float32
    depth : int, default 1
        Layers the values went through.
    magnitude : float, optional
        Size of the values behind the comparison; default the largest ``|expected|`` (at least
        the smallest normal number, so all-zero arrays compare exactly).
    ulps : float, default 16
    msg : str
        Added to the failure message.

    Raises
    ------
    AssertionError
        On a shape mismatch, a NaN or an infinity in one array only (or infinities of other signs),
        or a difference above the tolerance of the finite values; the
        message gives the largest difference, where it is, and the tolerance with its terms.
    """
    a, b = _as_numpy(actual), _as_numpy(expected)
    if a.shape != b.shape:
        raise AssertionError(f"shapes differ: {a.shape} and {b.shape}. {msg}".strip())
    nan_a, nan_b = np.isnan(a), np.isnan(b)
    if (nan_a != nan_b).any():
        raise AssertionError(f"NaN in one array only, at {np.argwhere(nan_a != nan_b)[:5].tolist()}. {msg}")
    inf_a, inf_b = np.isinf(a), np.isinf(b)
    if (inf_a != inf_b).any() or (a[inf_a] != b[inf_b]).any():
        where = np.argwhere((inf_a != inf_b) | (inf_a & (a != b)))[:5].tolist()
        raise AssertionError(f"infinities differ (place or sign), at {where}. {msg}".strip())
    finite = np.isfinite(a) & np.isfinite(b)
    if magnitude is None:
        magnitude = float(np.abs(b[finite]).max()) if finite.any() else 0.0
        magnitude = max(magnitude, float(np.finfo(np.float32).tiny))
    atol = tolerance(dtype, depth=depth, magnitude=magnitude, ulps=ulps)
    with np.errstate(invalid="ignore"):  # inf - inf where both are the same infinity
        diff = np.where(finite, np.abs(a - b), 0.0)
    worst = float(diff.max()) if diff.size else 0.0
    if worst > atol:
        where = np.unravel_index(int(diff.argmax()), diff.shape)
        raise AssertionError(
            f"largest difference {worst:.3g} at {tuple(int(i) for i in where)} exceeds the tolerance "
            f"{atol:.3g} = {ulps:g} ulps x eps({dtype}) {_eps(dtype):.3g} x depth {depth} x magnitude "
            f"{magnitude:.3g}; {int((diff > atol).sum())} of {diff.size} values differ more. {msg}".strip()
        )
    return worst
