"""Why a caption matched: five explanation maps of BLIP's ITM decision, and a measured answer to
"which map is true?" (deletion and insertion curves).

Methods (``explain(model, image, text, method=...)``), for one (image, text) pair, maps over the
ViT's patch grid (``gh x gw``):

``"attention"``
    The multimodal encoder's cross-attention at one layer, mean over heads, the per-patch minimum
    over tokens subtracted (as BLIP's demo page does).
``"gradcam"``
    LAVIS's GradCAM of the ITM match logit at one cross-attention layer.
``"relevancy"``
    Chefer, Gur & Wolf, "Generic Attention-model Explainability for Interpreting Bi-Modal and
    Encoder-Decoder Transformers", ICCV 2021 (rules 5, 6, 7, 10 and the normalisation of eqs. 8-9;
    the authors' code: github.com/hila-chefer/Transformer-MM-Explainability,
    ``lxmert/lxmert/src/ExplanationGenerator.py``, ``GeneratorOurs`` without LRP), applied to BLIP's
    ITM. Gradients are of the ITM match logit (index 1, before softmax). For every attention map
    ``A`` (heads, queries, keys) and its gradient, ``Ā = mean_h max(0, ∇A ⊙ A)`` (each head's product
    clipped at 0, then the mean). Start ``R_ii = I`` (1 + P image tokens), ``R_tt = I`` (text tokens),
    ``R_ti = 0``. Through the ViT's self-attention layers: ``R_ii += Ā_ii R_ii``. Through each text
    layer in BERT's order, self-attention: ``R_tt += Ā_tt R_tt`` and ``R_ti += Ā_tt R_ti``; then
    cross-attention: ``R_ti += R̄_ttᵀ Ā_ti R̄_ii``, where ``R̄ = S + I`` and ``S`` is ``R - I`` with each
    row divided by its sum (a row summing to 0 stays 0). The image never attends to the text, so rule
    11 adds nothing. Token maps: the rows of ``R_ti`` without the image ``[CLS]`` column.
``"rollout"``
    Attention rollout (Abnar & Zuidema, "Quantifying Attention Flow in Transformers", ACL 2020)
    carried into the text as the same authors' bi-modal rollout baseline does
    (``GeneratorBaselines.generate_rollout``): ``R_ii`` = rollout of the ViT's head-mean
    self-attention (each layer ``A + I``, rows normalised, multiplied from the first layer up),
    ``R_tt`` = rollout of the text encoder's self-attention likewise, and
    ``R_ti = R_ttᵀ Ā_ti R_ii`` with ``Ā_ti`` the head-mean cross-attention of the last layer.
    No gradient.
``"occlusion"``
    The drop of the ITM match logit when a window of ``window x window`` patches (moved by
    ``stride`` patches) is replaced by the baseline image; each patch gets the mean drop over the
    windows that cover it. A perturbation method: slow (one ViT pass per window), the reference the
    others are judged by. It has no per-token maps.

``Explanation.match_map`` is the map of the match decision: the first-token row for relevancy and
rollout, the mean over the text tokens without ``[ENC]`` / ``[SEP]`` for attention and GradCAM,
occlusion's own map.

:func:`evaluate_explanations` measures each method with deletion and insertion curves of the ITM
match probability (patches removed from, or added to, the image in the order of ``match_map``)
against random orders.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from ..errors import InputError, InputTypeError, check_choice, positive_int
from ..net.images import ImageLike, as_image_list, image_label
from ..net.text import as_text_list

if TYPE_CHECKING:
    from ..net.net import BlipNet

__all__ = [
    "BASELINES",
    "BOOTSTRAP_RESAMPLES",
    "METHODS",
    "Explanation",
    "ExplanationEvaluation",
    "baseline_pixels",
    "evaluate_explanations",
    "expected_evaluation_passes",
    "explain",
    "gradcam",
    "paired_bootstrap",
    "patch_order",
    "relevancy_from_attentions",
    "rollout_from_attentions",
]

METHODS = ("attention", "gradcam", "relevancy", "rollout", "occlusion")
BASELINES = ("blur", "mean")
_OPTIONS = {
    "attention": {"layer"},
    "gradcam": {"layer"},
    "relevancy": set(),
    "rollout": set(),
    "occlusion": {"window", "stride", "baseline", "batch_size"},
}


# ------------------------------------------------------------------------------------- result
@dataclass(eq=False)
class Explanation:
    """One explanation of the ITM decision for one (image, text) pair.

    Made by :meth:`blipviz.BlipITM.explain` (any method) and :meth:`blipviz.BlipITM.gradcam` (the
    same as ``explain(..., method="gradcam")``).

    Attributes
    ----------
    method : str
        One of ``METHODS``.
    tokens : list of str
        The text's tokens (``[ENC]`` first, ``[SEP]`` last); ``["[match]"]`` for occlusion.
    maps : ndarray of shape (n_tokens, gh, gw)
        One map per token (occlusion: the match map alone, shape (1, gh, gw)).
    match_map : ndarray of shape (gh, gw)
        The map of the match decision (see the module docstring).
    itm_probability : float
        The ITM match probability of the pair.
    text, image_label : str
    grid : tuple of int
        (gh, gw).
    options : dict
        The method's options as used, and the geometry its titles name: attention ``{"layer": 6,
        "n_layers": 12}``, GradCAM the same and ``"n_heads"``; occlusion ``window``, ``stride``,
        ``baseline``; empty for relevancy and rollout.
    image : PIL.Image.Image or None
        The image the maps were computed from (for overlays).
    truncated_by : {"tokens", "words", None}
        Whether the text was cut before the pass.
    signed_maps : ndarray of shape (n_tokens, gh, gw) or None
        GradCAM: the maps before the gradient is clipped at 0 (attention × gradient, mean over
        heads), where a negative value speaks against the match; None for the other methods
        (occlusion's maps are signed as they are). See :attr:`signed`.
    """

    method: str
    tokens: list[str]
    maps: np.ndarray
    match_map: np.ndarray
    itm_probability: float
    text: str
    image_label: str
    grid: tuple[int, int]
    options: dict = field(default_factory=dict)
    image: Any = field(default=None, repr=False)
    truncated_by: str | None = None
    signed_maps: np.ndarray | None = field(default=None, repr=False)

    @property
    def truncated(self) -> bool:
        """Whether the text was cut before the pass (the maps cover only the tokens kept)."""
        return self.truncated_by is not None

    def __repr__(self) -> str:
        return (
            f"Explanation(method={self.method!r}, text={self.text!r}, maps={self.maps.shape}, "
            f"itm_probability={self.itm_probability:.3f})"
        )

    @property
    def signed(self) -> bool:
        """Whether the method yields signed maps (negative values mean something): occlusion (the
        score rose without the patch) and GradCAM (``signed_maps``: before the gradient is clipped)."""
        return self.method == "occlusion" or self.signed_maps is not None

    @property
    def signed_match_map(self) -> np.ndarray | None:
        """The match map with its sign where the method yields one (occlusion's own; GradCAM's mean
        of the real tokens' signed maps), else None."""
        return self._sources(True)[1] if self.signed else None

    def _sources(self, signed: bool) -> tuple[np.ndarray, np.ndarray]:
        """(token maps, match map) to draw: signed ones, or the method's own."""
        if not signed or self.method == "occlusion":
            return self.maps, self.match_map
        if self.signed_maps is None:
            raise InputError(
                f"method {self.method!r} has no signed maps (only occlusion and GradCAM have): "
                "pass signed=False"
            )
        signed_maps = np.asarray(self.signed_maps)
        return signed_maps, _real_token_mean(signed_maps)

    def _panels(self, tokens: Any, include_match: bool, signed: bool) -> tuple[list, list[str]]:
        """The maps and labels of the panels: every map (``tokens`` None) or the chosen ones."""
        from ..display.labels import number_repeats

        maps, match_map = self._sources(signed)
        numbered = number_repeats(self.tokens)
        match_row = self.method in ("relevancy", "rollout", "occlusion")  # the match map is row 0
        if match_row:
            first = "match decision" if self.method == "occlusion" else f"{self.tokens[0]}: match decision"
            numbered = [first, *numbered[1:]]
        if tokens is None:
            if match_row or not include_match:
                return list(maps), numbered
            return [match_map, *maps], ["match decision", *numbered]
        chosen = [tokens] if isinstance(tokens, str | int | np.integer) else list(tokens)
        if not chosen:
            raise InputError("tokens is empty: name one or more tokens, or '[match]' for the match map")
        out_maps, out_labels = [], []
        for token in chosen:
            if isinstance(token, str) and token == "[match]":
                out_maps.append(match_map)
                out_labels.append(numbered[0] if match_row else "match decision")
                continue
            index = _token_position(token, self.tokens, numbered)
            out_maps.append(maps[index])
            out_labels.append(numbered[index])
        return out_maps, out_labels

    def _display(
        self, image: Any, include_match: bool, tokens: Any = None, signed: bool | None = None, alone=False
    ):
        from ..display.attention import AttentionGridDisplay

        signed = self.method == "occlusion" if signed is None else bool(signed)
        maps, labels = self._panels(tokens, include_match, signed)
        if alone and len(maps) == 1:  # a lone panel in your figure names its method
            label = "match decision" if labels[0].endswith("match decision") else labels[0]
            labels = [f"{_METHOD_TITLES[self.method]}: {label}"]
        layer = self.options.get("layer")
        value = _SIGNED_VALUE_NAMES[self.method] if signed else _VALUE_NAMES[self.method]
        return AttentionGridDisplay(
            maps,
            labels,
            image=image,
            method=_METHOD_TITLES[self.method],
            layer=layer,
            n_layers=self.options.get("n_layers"),
            heads=_METHOD_DETAILS[self.method](self.options),
            text=self.text,
            score=self.itm_probability,
            truncated_by=self.truncated_by,
            value_name=value,
            signed=signed,
            title_chars=80 if alone and len(maps) == 1 else 24,
        )

    def _scale(self, scale: str | None) -> str:
        # relevancy and rollout: the match row carries most of the mass, so on one shared scale
        # the token maps would fade away; each panel gets its own scale unless asked otherwise
        if scale is None:
            return "per-token" if self.method in ("relevancy", "rollout") else "shared"
        return scale

    def plot(
        self,
        *,
        tokens: Any = None,
        include_match: bool = True,
        scale: str | None = None,
        signed: bool | None = None,
        ax=None,
        axes=None,
        ncols=None,
        **kw: Any,
    ):
        """Draw the match map, then each token's map, as matrices with a colorbar.

        Parameters
        ----------
        tokens : str, int or sequence of them, optional
            The maps to draw: ``"[match]"`` (the match map), a token as written in :attr:`tokens`
            (a repeated one numbered as the panels title it: ``"a (2)"``) or its position.
            Default: the match map, then every token's.
        include_match : bool, default True
            With ``tokens`` None: the match map (``match_map``) as the first panel (relevancy and
            rollout: it is the first token's map, so that panel is labelled so and not repeated).
        scale : {"shared", "per-token"}, optional
            Default: "per-token" for relevancy and rollout (their match row dwarfs the token maps),
            "shared" for the others.
        signed : bool, optional
            Draw the signed maps on a diverging key centred at zero (occlusion's drops and rises;
            GradCAM's attention × gradient before the gradient is clipped). Default: True for
            occlusion, False for the others (their maps as the method defines them, from 0 up).
        ax : matplotlib Axes, optional
            One Axes for one map (``tokens="[match]"``): drawn into it with its colorbar beside it,
            its title naming the method; nothing else in the figure changes.
        axes, ncols, **kw
            See :meth:`blipviz.AttentionGridDisplay.plot` (``cmap=``, ``percentile=``, ...).

        Returns
        -------
        AttentionGridDisplay
        """
        axes, alone = _one_axes(ax, axes)
        display = self._display(None, include_match, tokens, signed, alone)
        return display.plot(axes, scale=self._scale(scale), ncols=ncols, **_panel_size(display, kw))

    def overlay(
        self,
        image: Any = None,
        *,
        tokens: Any = None,
        include_match: bool = True,
        scale: str | None = None,
        signed: bool | None = None,
        ax=None,
        axes=None,
        ncols=None,
        **kw,
    ):
        """Lay the match map, then each token's map, on the photograph (the attention displays' colour
        scale and rules); ``image`` defaults to the one the maps were computed from. The other
        parameters are those of :meth:`plot`: ``overlay(tokens="[match]", ax=ax)`` draws the match
        map alone into one Axes of your figure.

        Returns
        -------
        AttentionGridDisplay
        """
        picture = image if image is not None else self.image
        if picture is None:
            raise InputError(
                "no image to draw on: pass image=... (this explanation was computed from pixels)"
            )
        axes, alone = _one_axes(ax, axes)
        display = self._display(picture, include_match, tokens, signed, alone)
        return display.plot(axes, scale=self._scale(scale), ncols=ncols, **_panel_size(display, kw))

    def to_pandas(self) -> pd.DataFrame:
        """One row per (token, patch): columns ``token``, ``position``, ``row``, ``col``, ``value``."""
        n, gh, gw = self.maps.shape
        rows, cols = np.divmod(np.arange(gh * gw), gw)
        return pd.DataFrame(
            {
                "token": np.repeat(self.tokens, gh * gw),
                "position": np.repeat(np.arange(n), gh * gw),
                "row": np.tile(rows, n),
                "col": np.tile(cols, n),
                "value": self.maps.reshape(-1),
            }
        )


_METHOD_TITLES = {
    "attention": "cross-attention",
    "gradcam": "GradCAM",
    "relevancy": "relevancy (Chefer et al. 2021)",
    "rollout": "attention rollout",
    "occlusion": "occlusion",
}
_METHOD_DETAILS = {
    "attention": lambda o: "mean of the heads, each patch's minimum over the tokens subtracted",
    "gradcam": lambda o: (
        f"mean of the {o['n_heads']} heads" if o.get("n_heads", 1) > 1 else "mean of the heads"
    ),
    "relevancy": lambda o: "gradient-weighted attention through the ViT and the text encoder",
    "rollout": lambda o: "head means through the ViT and text self-attention, last cross-attention",
    "occlusion": lambda o: (
        f"{o.get('window', 1)} x {o.get('window', 1)}-patch windows, stride {o.get('stride', 1)}, "
        f"{o.get('baseline', 'blur')} baseline"
    ),
}
_VALUE_NAMES = {
    "attention": "attention − the patch's min over tokens",
    "gradcam": "GradCAM value",
    "relevancy": "relevancy",
    "rollout": "rollout",
    "occlusion": "drop of the ITM match logit (rises drawn as 0)",
}


_SIGNED_VALUE_NAMES = {
    "attention": "attention",
    "gradcam": "attention × gradient (not clipped)",
    "relevancy": "relevancy",
    "rollout": "rollout",
    "occlusion": "drop of the ITM match logit (< 0: it rose)",
}


def _token_position(token: Any, tokens: list[str], numbered: list[str]) -> int:
    """The position of ``token`` (a position, a numbered label or a token met once) in ``tokens``."""
    if isinstance(token, bool) or not isinstance(token, str | int | np.integer):
        raise InputTypeError(f"a token is named by a str or an int position, got {type(token).__name__}")
    if not isinstance(token, str):
        if not -len(tokens) <= int(token) < len(tokens):
            raise InputError(f"token position {int(token)} is out of range: {len(tokens)} tokens")
        return int(token) % len(tokens)
    if token in numbered:
        return numbered.index(token)
    found = [i for i, t in enumerate(tokens) if t == token]
    if len(found) == 1:
        return found[0]
    if found:
        raise InputError(
            f"token {token!r} occurs {len(found)} times: name one as "
            + ", ".join(repr(numbered[i]) for i in found)
            + " or by its position"
        )
    raise InputError(f"no token {token!r}; the tokens: " + ", ".join(map(repr, ["[match]", *tokens])))


def _one_axes(ax: Any, axes: Any) -> tuple[Any, bool]:
    """(the Axes to draw into, whether it is one Axes of the caller's)."""
    if ax is not None and axes is not None:
        raise InputError("pass ax= (one Axes) or axes= (several), not both")
    if ax is not None:
        return [ax], True
    return axes, axes is not None and len(np.ravel(axes)) == 1


def _panel_size(display, kw: dict) -> dict:
    """A lone panel (occlusion) drawn larger, so that its title and colorbar have room."""
    if len(display.maps) == 1 and "panel_size" not in kw:
        return {**kw, "panel_size": 4.0}
    return kw


# ------------------------------------------------------------------------------------ inputs
def _image_input(model: BlipNet, image: Any, index: int = 0):
    """(RGB image or None, pixels (1, 3, s, s) in the net's dtype and device, label) of one image."""
    if isinstance(image, torch.Tensor):
        pixels = model.check_pixels(image if image.ndim == 4 else image[None])
        if pixels.shape[0] != 1:
            raise InputError(f"image {index}: expected one image, got pixels of shape {tuple(pixels.shape)}")
        rgb, label = None, f"image {index}"
    else:
        if hasattr(image, "raw") and hasattr(image, "embeddings"):
            raise InputError(
                f"image {index}: explanations perturb or differentiate the pixels, so they need the "
                "image itself (path, PIL image or array), not ImageFeatures"
            )
        rgb = model.preprocessing.load(image, index)
        label = image_label(image, index)
        pixels = model.preprocessing.pixel_values([rgb], index)
    return rgb, pixels.to(model.device, model.dtype), label


def _text_input(model: BlipNet, text: str, index: int = 0):
    """(tokenized, ITM ids, tokens) of one text."""
    if not isinstance(text, str):
        raise InputError(f"text {index}: expected a str, got {type(text).__name__}")
    tokenized = model.tokenize([text])
    ids = model.itm_input_ids(tokenized)
    tokens = tokenized.tokens(0)
    if model.first_token == "enc":
        tokens = ["[ENC]", *tokens[1:]]
    return tokenized, ids, tokens


def _real_token_mean(maps: np.ndarray) -> np.ndarray:
    return (maps[1:-1] if len(maps) > 2 else maps).mean(axis=0)


# ----------------------------------------------------------------------- relevancy and rollout
def _normalise_residual(r: torch.Tensor) -> torch.Tensor:
    """Eqs. 8-9: R̄ = S + I, S = R - I with rows divided by their sums (zero rows stay zero)."""
    eye = torch.eye(r.shape[-1], dtype=r.dtype, device=r.device)
    s = r - eye
    sums = s.sum(dim=-1, keepdim=True)
    return torch.where(sums != 0, s / torch.where(sums != 0, sums, 1), 0) + eye


def relevancy_from_attentions(
    vision: Sequence[tuple[torch.Tensor, torch.Tensor]],
    text_self: Sequence[tuple[torch.Tensor, torch.Tensor]],
    text_cross: Sequence[tuple[torch.Tensor, torch.Tensor]],
) -> torch.Tensor:
    """Chefer et al.'s bi-modal relevancy ``R_ti`` from (attention, gradient) pairs.

    Parameters
    ----------
    vision : list of (A, grad), each of shape (heads, 1 + P, 1 + P)
        The ViT's self-attention layers, first to last.
    text_self : list of (A, grad), each of shape (heads, T, T)
    text_cross : list of (A, grad), each of shape (heads, T, 1 + P)
        The text encoder's self- and cross-attention, one pair per layer, first to last.

    Returns
    -------
    Tensor of shape (T, 1 + P)
    """

    def bar(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return (g * a).clamp(min=0).mean(dim=0)

    n_image = vision[0][0].shape[-1] if vision else text_cross[0][0].shape[-1]
    n_text = text_self[0][0].shape[-1]
    dtype, device = text_self[0][0].dtype, text_self[0][0].device
    r_ii = torch.eye(n_image, dtype=dtype, device=device)
    for a, g in vision:
        r_ii = r_ii + bar(a, g) @ r_ii
    r_tt = torch.eye(n_text, dtype=dtype, device=device)
    r_ti = torch.zeros(n_text, n_image, dtype=dtype, device=device)
    r_ii_bar = _normalise_residual(r_ii)
    for (a_s, g_s), (a_c, g_c) in zip(text_self, text_cross, strict=True):
        cam = bar(a_s, g_s)
        r_tt, r_ti = r_tt + cam @ r_tt, r_ti + cam @ r_ti
        r_ti = r_ti + _normalise_residual(r_tt).T @ bar(a_c, g_c) @ r_ii_bar
    return r_ti


def _rollout(layers: Sequence[torch.Tensor]) -> torch.Tensor:
    """Rollout of head-mean attention maps (tokens, tokens), first layer first."""
    if not layers:
        raise InputError("attention rollout needs at least one attention layer")

    def augmented(a: torch.Tensor) -> torch.Tensor:
        aug = a + torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
        return aug / aug.sum(dim=-1, keepdim=True)

    joint = augmented(layers[0])
    for a in layers[1:]:
        joint = augmented(a) @ joint
    return joint


def _rollout_into_text(r_ii: torch.Tensor, text_self: Sequence[torch.Tensor], last_cross: torch.Tensor):
    """``R_ti = R_ttᵀ Ā_ti R_ii`` from the ViT's rollout ``R_ii`` (one per image, whatever the text)."""
    r_tt = _rollout([a.mean(dim=0) for a in text_self])
    return r_tt.T @ last_cross.mean(dim=0) @ r_ii


def rollout_from_attentions(
    vision: Sequence[torch.Tensor], text_self: Sequence[torch.Tensor], last_cross: torch.Tensor
) -> torch.Tensor:
    """The bi-modal rollout ``R_ti = R_ttᵀ Ā_ti R_ii`` from attention maps (heads, queries, keys).

    Returns
    -------
    Tensor of shape (T, 1 + P)
    """
    return _rollout_into_text(_rollout([a.mean(dim=0) for a in vision]), text_self, last_cross)


def _to_maps(r_ti: torch.Tensor, grid: tuple[int, int]) -> np.ndarray:
    gh, gw = grid
    return r_ti[:, 1:].reshape(len(r_ti), gh, gw).detach().float().cpu().numpy()


# ---------------------------------------------------------------------------- the image pass
@dataclass(eq=False)
class _ImagePass:
    """One image's ViT forward, shared by every method and every text that explains the image.

    ``states`` (1, 1 + P, width) and ``vision`` (the ViT's attention maps, each (heads, 1 + P, 1 + P),
    when asked for) are outside any autograd graph; ``graph`` holds the same states and maps inside
    the graph of the forward (relevancy's backward runs through it, once per text).
    """

    states: torch.Tensor
    vision: list[torch.Tensor] | None
    graph: tuple[torch.Tensor, tuple[torch.Tensor, ...]] | None
    seconds: float
    rolled: torch.Tensor | None = None

    def vision_rollout(self) -> torch.Tensor:
        """The ViT's rollout ``R_ii``, computed once for the image."""
        if self.rolled is None:
            if self.vision is None:
                raise RuntimeError("this image pass kept no attention maps: pass attentions=True")
            with torch.inference_mode():
                self.rolled = _rollout([a.float().mean(dim=0) for a in self.vision])
        return self.rolled

    def in_graph(self) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """The states and the ViT's attention maps inside the forward's autograd graph."""
        if self.graph is None:
            raise RuntimeError("this image pass has no autograd graph: pass grad=True")
        return self.graph


def _image_pass(model: BlipNet, pixels: torch.Tensor, *, attentions: bool, grad: bool) -> _ImagePass:
    """The ViT forward of one image (1, 3, s, s): with its attention maps (rollout, relevancy), and
    inside an autograd graph (relevancy) when asked; else the fused, gradient-free pass."""
    start = time.perf_counter()
    if grad:
        # Gradients only here, even inside a caller's no_grad / inference_mode block
        with torch.inference_mode(False), torch.enable_grad():
            out = model.hf.vision_model(pixel_values=pixels.clone(), output_attentions=True)
        states, maps = out.last_hidden_state, tuple(out.attentions)
        detached = [a.detach()[0] for a in maps]
        return _ImagePass(states.detach(), detached, (states, maps), time.perf_counter() - start)
    with torch.inference_mode():
        if attentions:
            out = model.hf.vision_model(pixel_values=pixels, output_attentions=True)
            return _ImagePass(
                out.last_hidden_state, [a[0] for a in out.attentions], None, time.perf_counter() - start
            )
        states = model.vision_states(pixels)
    return _ImagePass(states, None, None, time.perf_counter() - start)


def _match_logits(model: BlipNet, states: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
    """ITM logits (n, 2) of one text against each of n images' states (n, 1 + P, width)."""
    n = len(states)
    with torch.inference_mode():
        hidden = model.itm_forward(ids.expand(n, -1), mask.expand(n, -1), states).last_hidden_state
        return model.hf.itm_head(hidden[:, 0, :]).float().cpu().numpy()


def _relevancy(model: BlipNet, image: _ImagePass, tokenized, ids, *, last: bool = True):
    """Relevancy maps of one text: its pass through the multimodal encoder on the image pass's graph
    and one backward through both (the ViT's part of the graph kept for the next text unless
    ``last``)."""
    states, vision = image.in_graph()
    with torch.inference_mode(False), torch.enable_grad():
        ids, mask = ids.clone(), tokenized.attention_mask.clone()
        out = model.itm_forward(ids, mask, states, output_attentions=True)
        logits = model.hf.itm_head(out.last_hidden_state[:, 0, :]).float()
        wanted = [*vision, *out.attentions, *out.cross_attentions]
        grads = torch.autograd.grad(logits[0, 1], wanted, retain_graph=not last)
    n_v, n_t = len(vision), len(out.attentions)
    pairs = [(a.detach()[0].float(), g[0].float()) for a, g in zip(wanted, grads, strict=True)]
    r_ti = relevancy_from_attentions(pairs[:n_v], pairs[n_v : n_v + n_t], pairs[n_v + n_t :])
    maps = _to_maps(r_ti, model.grid)
    return maps, maps[0], float(logits.detach().softmax(-1)[0, 1]), {}


def _rollout_method(model: BlipNet, image: _ImagePass, tokenized, ids):
    """Rollout maps of one text: its pass through the multimodal encoder, the ViT's rollout shared."""
    r_ii = image.vision_rollout()
    with torch.inference_mode():
        out = model.itm_forward(ids, tokenized.attention_mask, image.states, output_attentions=True)
        logits = model.hf.itm_head(out.last_hidden_state[:, 0, :]).float()
        r_ti = _rollout_into_text(
            r_ii, [a[0].float() for a in out.attentions], out.cross_attentions[-1][0].float()
        )
    maps = _to_maps(r_ti, model.grid)
    return maps, maps[0], float(logits.softmax(-1)[0, 1]), {}


# ---------------------------------------------------------------------------- perturbations
def baseline_pixels(pixels: torch.Tensor, baseline: str = "blur") -> torch.Tensor:
    """The fully removed image in the net's pixel space.

    Parameters
    ----------
    pixels : Tensor of shape (1, 3, s, s)
    baseline : {"blur", "mean"}
        ``"blur"``: a Gaussian blur with sigma = s / 16 (14 pixels at 224: objects become colour
        clouds); ``"mean"``: each channel's mean.

    Returns
    -------
    Tensor of shape (1, 3, s, s)
    """
    check_choice("baseline", baseline, BASELINES)
    if baseline == "mean":
        return pixels.mean(dim=(2, 3), keepdim=True).expand_as(pixels).clone()
    size = pixels.shape[-1]
    sigma = size / 16.0
    radius = int(3 * sigma)
    x = torch.arange(-radius, radius + 1, dtype=torch.float32, device=pixels.device)
    kernel = torch.exp(-(x**2) / (2 * sigma**2))
    kernel = (kernel / kernel.sum()).to(pixels.dtype)
    c = pixels.shape[1]
    out = pixels
    for shape in ((1, 1, 1, -1), (1, 1, -1, 1)):
        k = kernel.reshape(shape).expand(c, 1, *kernel.reshape(shape).shape[2:])
        pad = (radius, radius, 0, 0) if shape[-1] == -1 else (0, 0, radius, radius)
        out = F.conv2d(F.pad(out, pad, mode="replicate"), k, groups=c)
    return out


def _patch_mask_to_pixels(keep: np.ndarray, grid: tuple[int, int], size: int) -> torch.Tensor:
    """(n, P) bool -> (n, 1, s, s) float mask, patch-aligned."""
    gh, gw = grid
    m = torch.from_numpy(keep.reshape(-1, 1, gh, gw).astype(np.float32))
    return F.interpolate(m, size=(size, size), mode="nearest")


def _perturbed_logits(
    model: BlipNet,
    pixels: torch.Tensor,
    removed: torch.Tensor,
    keeps: np.ndarray,
    texts: Sequence[tuple[torch.Tensor, torch.Tensor]],
    batch_size: int,
    wanted: Sequence[np.ndarray] | None = None,
) -> list[np.ndarray]:
    """ITM logits of texts against perturbed images of one image, each image through the ViT once.

    ``keeps`` (n, P) are the images (the patches kept; ``removed`` elsewhere), built and passed
    ``batch_size`` at a time; ``texts`` the (ITM ids, attention mask) of each text; ``wanted[t]`` (n,)
    bool the images text t is scored against (default: all). Returns one (n, 2) array per text, NaN
    where not wanted.
    """
    n = len(keeps)
    out = [np.full((n, 2), np.nan, dtype=np.float32) for _ in texts]
    with torch.inference_mode():
        for start in range(0, n, batch_size):
            rows = np.arange(start, min(start + batch_size, n))
            states = model.vision_states(_composite(pixels, removed, keeps[rows], model.grid))
            for t, (ids, mask) in enumerate(texts):
                local = np.arange(len(rows)) if wanted is None else np.flatnonzero(wanted[t][rows])
                if len(local) == 0:
                    continue
                chosen = states if len(local) == len(rows) else states[torch.from_numpy(local)]
                out[t][rows[local]] = _match_logits(model, chosen, ids, mask)
    return out


def _match_probability(logits: np.ndarray) -> np.ndarray:
    """Softmax's match column of (n, 2) logits, computed stably."""
    return 1.0 / (1.0 + np.exp(logits[:, 0] - logits[:, 1]))


def _composite(pixels, removed, keep: np.ndarray, grid) -> torch.Tensor:
    """Images that keep the patches where ``keep`` (n, P) is true and show ``removed`` elsewhere."""
    m = _patch_mask_to_pixels(keep, grid, pixels.shape[-1]).to(pixels.device, pixels.dtype)
    return pixels * m + removed * (1 - m)


def _occlusion_options(model: BlipNet, window=1, stride=1, baseline="blur", batch_size=None) -> dict:
    """Occlusion's options checked (before any pass)."""
    window = positive_int("window", window)
    stride = positive_int("stride", stride)
    gh, gw = model.grid
    if window > min(gh, gw):
        raise InputError(f"window {window} is larger than the patch grid {gh} x {gw}")
    check_choice("baseline", baseline, BASELINES)
    batch_size = model.resolve_batch_size(batch_size)
    return {"window": window, "stride": stride, "baseline": baseline, "batch_size": batch_size}


def _occlusion(
    model: BlipNet,
    pixels: torch.Tensor,
    texts: Sequence[tuple[torch.Tensor, torch.Tensor]],
    *,
    window: int,
    stride: int,
    baseline: str,
    batch_size: int,
    states: torch.Tensor | None = None,
) -> list[tuple]:
    """Occlusion maps of one image for each text (ITM ids, mask): every window's image through the ViT
    once for all the texts. The whole image passes with the windows, unless its ``states`` are given."""
    gh, gw = model.grid
    removed = baseline_pixels(pixels, baseline)
    starts_r = list(range(0, gh - window + 1, stride))
    starts_c = list(range(0, gw - window + 1, stride))
    if starts_r[-1] != gh - window:
        starts_r.append(gh - window)
    if starts_c[-1] != gw - window:
        starts_c.append(gw - window)
    occluded = []
    for r in starts_r:
        for c in starts_c:
            keep = np.ones((gh, gw), dtype=bool)
            keep[r : r + window, c : c + window] = False
            occluded.append(keep.reshape(-1))
    keeps = np.stack([np.ones(gh * gw, dtype=bool), *occluded])  # the whole image first
    if states is None:
        logits = _perturbed_logits(model, pixels, removed, keeps, texts, batch_size)
    else:
        windows = _perturbed_logits(model, pixels, removed, keeps[1:], texts, batch_size)
        logits = [
            np.concatenate([_match_logits(model, states, ids, mask), w])
            for (ids, mask), w in zip(texts, windows, strict=True)
        ]
    options = {"window": window, "stride": stride, "baseline": baseline}
    results = []
    for text_logits in logits:
        drops = text_logits[0, 1] - text_logits[1:, 1]  # the match logit: the first image is the whole one
        total = np.zeros(gh * gw, dtype=np.float64)
        count = np.zeros(gh * gw, dtype=np.float64)
        for keep, drop in zip(keeps[1:], drops, strict=True):
            total[~keep] += drop
            count[~keep] += 1
        match_map = (total / count).reshape(gh, gw).astype(np.float32)
        probability = float(_match_probability(text_logits[:1])[0])
        results.append((match_map[None], match_map, probability, dict(options)))
    return results


# ------------------------------------------------------------------------------------ explain
def explain(
    model: BlipNet,
    image: ImageLike | torch.Tensor,
    text: str | None = None,
    method: str = "relevancy",
    *,
    texts: Sequence[str] | None = None,
    **options,
):
    """Explain the ITM decision for one image and one text, or many texts (see the module docstring).

    Parameters
    ----------
    model : BlipNet
    image : image (path, PIL image, array) or Tensor of shape (1, 3, s, s)
        Attention and GradCAM also take ImageFeatures of one image with raw states.
    text : str
        One text; or give ``texts``.
    method : {"attention", "gradcam", "relevancy", "rollout", "occlusion"}
    texts : sequence of str, optional
        Many texts of the one image: the image passes the ViT once for all of them (occlusion: each
        window's image once), then each text takes its own pass through the multimodal encoder and,
        for GradCAM and relevancy, one backward (relevancy's through the ViT too).
    **options
        ``layer`` (attention, GradCAM; default: each one's documented default layer);
        ``window``, ``stride`` (patches, default 1), ``baseline`` ("blur" or "mean"), ``batch_size``
        (occlusion).

    Returns
    -------
    Explanation, or a list of Explanation (one per text, in order) with ``texts``
    """
    check_choice("method", method, METHODS)
    unknown = set(options) - _OPTIONS[method]
    if unknown:
        allowed = ", ".join(sorted(_OPTIONS[method])) or "none"
        raise InputError(f"method {method!r} takes no option {sorted(unknown)} (its options: {allowed})")
    if texts is not None:
        if text is not None:
            raise InputError("give one text as text= or many as texts=, not both")
        wanted = as_text_list(texts)
    elif text is None:
        raise InputError("explain needs a text (text=...) or texts (texts=[...])")
    elif not isinstance(text, str):
        raise InputError(
            f"text: expected a str, got {type(text).__name__} (several texts of one image: texts=[...])"
        )
    else:
        wanted = [text]
    if method in ("attention", "gradcam"):
        results = _from_attention_analyses(model, image, wanted, method, **options)
    else:
        checked = _occlusion_options(model, **options) if method == "occlusion" else {}
        rgb, pixels, label = _image_input(model, image)
        inputs = [_text_input(model, t, i) for i, t in enumerate(wanted)]
        if method == "occlusion":
            found = _occlusion(
                model, pixels, [(ids, tok.attention_mask) for tok, ids, _ in inputs], **checked
            )
        else:
            image_pass = _image_pass(model, pixels, attentions=True, grad=method == "relevancy")
            found = [
                _relevancy(model, image_pass, tok, ids, last=i == len(inputs) - 1)
                if method == "relevancy"
                else _rollout_method(model, image_pass, tok, ids)
                for i, (tok, ids, _) in enumerate(inputs)
            ]
        results = [
            _explanation(method, maps, match_map, probability, t, tok, tokens, label, model.grid, used, rgb)
            for (maps, match_map, probability, used), t, (tok, _, tokens) in zip(
                found, wanted, inputs, strict=True
            )
        ]
    return results if texts is not None else results[0]


def _explanation(method, maps, match_map, probability, text, tokenized, tokens, label, grid, used, rgb):
    return Explanation(
        method=method,
        tokens=["[match]"] if method == "occlusion" else tokens,
        maps=maps,
        match_map=match_map,
        itm_probability=probability,
        text=text,
        image_label=label,
        grid=grid,
        options=used,
        image=rgb,
        truncated_by=tokenized.truncated_by[0],
    )


def _from_attention_analyses(
    model: BlipNet, image, texts: Sequence[str], method: str, layer: int | None = None
) -> list[Explanation]:
    """Attention or GradCAM explanations of texts of one image: the image's states computed once
    (through the net's feature cache when one is set)."""
    from .attention import check_layer, default_layer, image_and_states

    n_layers = int(model.config.text_config.num_hidden_layers)
    chosen = default_layer(n_layers) if layer is None else check_layer(layer, n_layers)
    picture, states, label = image_and_states(model, image)
    return [_attention_explanation(model, states, t, method, chosen, picture, label) for t in texts]


def gradcam(model: BlipNet, image: Any, text: str, layer: int | None = None) -> Explanation:
    """GradCAM of the ITM pass for one image and one text (see :meth:`blipviz.BlipITM.gradcam`): the
    :class:`Explanation` that ``explain(model, image, text, "gradcam", layer=layer)`` returns.

    ``layer`` None: :func:`~blipviz.analysis.attention.default_layer` (the middle layer, 6 of 12, as
    LAVIS's ``block_num=6``).
    """
    return explain(model, image, text, "gradcam", layer=layer)


def _gradcam_of_states(
    model: BlipNet, states: torch.Tensor, text: str, layer: int, picture: Any, label: str
) -> Explanation:
    """GradCAM of one text from its image's ViT states (1, 1 + P, width), already computed: one
    backward through the multimodal encoder, none through the ViT.

    LAVIS's method: the gradient of the ITM head's match logit with respect to the layer's
    cross-attention probabilities; map = mean over heads of attention x clamp(gradient, min=0), the
    image's ``[CLS]`` token dropped, patches reshaped to the grid. ``signed_maps``: the same before
    the gradient is clipped (negative where attending to a patch lowers the match logit);
    ``match_map``: the mean of the real tokens' maps (neither ``[ENC]`` nor ``[SEP]``; all tokens
    when the text has none).
    """
    n_layers = int(model.config.text_config.num_hidden_layers)
    tokenized, ids, tokens = _text_input(model, text)
    # Gradients only here, even inside a caller's no_grad / inference_mode block. Nothing is
    # accumulated in .grad: autograd.grad returns the one gradient and frees the graph.
    with torch.inference_mode(False), torch.enable_grad():
        states, ids, mask = states.detach().clone(), ids.clone(), tokenized.attention_mask.clone()
        out = model.itm_forward(ids, mask, states, output_attentions=True)
        logits = model.hf.itm_head(out.last_hidden_state[:, 0, :]).float()
        attention = out.cross_attentions[layer]  # (1, n_heads, n_tokens, 1 + P)
        (grad,) = torch.autograd.grad(logits[:, 1].sum(), attention)  # frees the graph
    gh, gw = model.grid
    att = attention.detach()[0, :, :, 1:].float()
    grad = grad[0, :, :, 1:].float()
    cams = (att * grad.clamp(min=0)).mean(dim=0).reshape(len(tokens), gh, gw).cpu().numpy()
    signed = (att * grad).mean(dim=0).reshape(len(tokens), gh, gw).cpu().numpy()
    return Explanation(
        method="gradcam",
        tokens=tokens,
        maps=cams,
        match_map=_real_token_mean(cams),
        itm_probability=float(logits.detach().softmax(-1)[0, 1]),
        text=text,
        image_label=label,
        grid=(gh, gw),
        options={"layer": layer, "n_layers": n_layers, "n_heads": int(attention.shape[1])},
        image=picture,
        truncated_by=tokenized.truncated_by[0],
        signed_maps=signed,
    )


def _attention_explanation(
    model: BlipNet, states: torch.Tensor, text: str, method: str, layer: int, picture, label: str
) -> Explanation:
    """The attention or GradCAM explanation of one text from its image's states."""
    from .attention import cross_attention_of_states

    if method == "gradcam":
        return _gradcam_of_states(model, states, text, layer, picture, label)
    n_layers = int(model.config.text_config.num_hidden_layers)
    result = cross_attention_of_states(model, states, text, picture=picture, label=label)
    maps = np.asarray(result.maps(layer, "mean", subtract_min=True), dtype=np.float32)
    gh, gw = result.grid
    return Explanation(
        method=method,
        tokens=list(result.tokens),
        maps=maps,
        match_map=_real_token_mean(maps),
        itm_probability=float(result.score),
        text=text,
        image_label=result.image_label,
        grid=(gh, gw),
        options={"layer": layer, "n_layers": n_layers},
        image=result.image,
        truncated_by=result.truncated_by,
    )


# --------------------------------------------------------------------------------- evaluation
def patch_order(match_map: np.ndarray) -> np.ndarray:
    """Patch indices from the most to the least important (ties: lower index first)."""
    flat = np.asarray(match_map, dtype=np.float64).reshape(-1)
    return np.lexsort((np.arange(flat.size), -flat))


def _counts(steps: int, n_patches: int) -> np.ndarray:
    """Patches removed / added at each of the steps + 1 fractions 0, 1/steps, ..., 1."""
    return np.round(np.linspace(0.0, 1.0, steps + 1) * n_patches).astype(int)


def _curve_masks(order: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Keep-masks (steps + 1, P) of the deletion and insertion curves for one patch order."""
    n = order.size
    rank = np.empty(n, dtype=int)
    rank[order] = np.arange(n)
    first = rank[None, :] < counts[:, None]  # (steps + 1, P): among the first k in the order
    return ~first, first


#: Resamples of the paired bootstrap of each method's difference from random (the default).
BOOTSTRAP_RESAMPLES = 1000

_ONE_PAIR_NOTE = (
    "one pair: the confidence intervals of the difference from random are undefined (NaN), as a "
    "bootstrap over one pair has no spread; evaluate two or more pairs"
)


@dataclass(eq=False)
class ExplanationEvaluation:
    """Deletion and insertion curves of the ITM match probability for each method.

    Attributes
    ----------
    curves : DataFrame
        Long format: ``method``, ``pair``, ``fraction``, ``score``, ``kind`` ("deletion" or
        "insertion"); the random-order baseline has method ``"random"``.
    table : DataFrame
        One row per method (random included), indexed by ``method``. ``deletion_auc`` (lower is
        better) and ``insertion_auc`` (higher is better): the mean over pairs of each pair's area;
        ``seconds_per_pair`` (the map's cost: the method's own passes, plus the image's ViT forward
        that every method shares, counted in full for each method; work shared by the pairs of one
        image divided among them; NaN for random). Then, for each kind (``deletion``,
        ``insertion``), the method's difference from random, ``{kind}_vs_random`` (the mean over
        pairs of the method's AUC minus the random orders' AUC of the same pair: below 0 is better
        for deletion, above 0 for insertion) and its confidence interval ``{kind}_vs_random_low`` /
        ``{kind}_vs_random_high`` (:func:`paired_bootstrap` over the pairs at ``confidence``,
        ``resamples`` resamples drawn with ``seed``, the same resampled pairs for every
        method and kind); NaN on the random row, and the intervals NaN with one pair (see
        :attr:`note`).
    pair_aucs : DataFrame
        The per-pair AUCs the table is made from: one row per (method, pair), columns ``method``,
        ``pair``, ``deletion_auc``, ``insertion_auc`` (random included).
    explanations : dict of str -> list of Explanation
        Each method's explanation of each pair, in pair order.
    steps : int
    baseline : str
    net_name : str
    confidence : float
        Of the intervals (0.95: 95%).
    resamples : int
        Of the bootstrap.
    seed : int
        Of the random orders and of the bootstrap.
    provenance : dict or None
        Where the evaluation came from (:func:`blipviz.net.provenance.provenance`).

    :meth:`save` writes the whole evaluation (curves, tables, explanations and their images) to a
    folder and :meth:`load` reads it back, so that :meth:`plot`, the table and each explanation's
    figures are drawn again without the net.
    """

    curves: pd.DataFrame
    table: pd.DataFrame
    explanations: dict
    steps: int
    baseline: str
    net_name: str = ""
    pair_aucs: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False)
    confidence: float = 0.95
    resamples: int = BOOTSTRAP_RESAMPLES
    seed: int = 0
    provenance: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def n_pairs(self) -> int:
        """The number of (image, text) pairs evaluated."""
        return int(self.curves["pair"].nunique()) if len(self.curves) else 0

    @property
    def note(self) -> str:
        """What the table cannot say: with one pair, that its intervals are undefined; else empty."""
        return _ONE_PAIR_NOTE if self.n_pairs == 1 else ""

    def __repr__(self) -> str:
        head = f"ExplanationEvaluation(methods={list(self.table.index)}, steps={self.steps})"
        note = f"\nnote: {self.note}" if self.note else ""
        return f"{head}\n{self.table}{note}"

    def plot(self, axes=None, *, band: bool = True):
        """Deletion and insertion curves, a line per method with a band over pairs (see
        :class:`blipviz.display.explanations.ExplanationCurvesDisplay`)."""
        from ..display.explanations import ExplanationCurvesDisplay

        return ExplanationCurvesDisplay(self.curves, self.table, self.net_name, self.baseline).plot(
            axes, band=band
        )

    # ------------------------------------------------------------------------------ saving
    def save(self, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write the evaluation to a folder that :meth:`load` reads back, without the net.

        Parquet tables: ``curves``, ``table``, ``pair_aucs``, one row per explanation (its method,
        pair, tokens, maps, match map, signed maps, options and texts; arrays exact, dtype kept)
        and each distinct image the explanations were computed from, as PNG (lossless); and
        ``blipviz-result.json``: ``steps``, ``baseline``, the net's name, ``confidence``,
        ``resamples``, ``seed`` and :attr:`provenance`.

        Parameters
        ----------
        path : str or os.PathLike
            A new or empty folder, or one holding a saved result (replaced only with
            ``overwrite=True``).
        overwrite : bool, default False

        Returns
        -------
        pathlib.Path
            The folder.
        """
        import pyarrow as pa

        from ._saved import png_bytes, save_result

        pictures: dict[int, int] = {}  # id of an image -> its row in the images table
        images: list[bytes] = []
        columns = _explanation_columns()
        rows: dict[str, list] = {k: [] for k in columns}
        for method, made in self.explanations.items():
            for pair, e in enumerate(made):
                if e.image is not None and id(e.image) not in pictures:
                    pictures[id(e.image)] = len(images)
                    images.append(png_bytes(e.image))
                maps = np.ascontiguousarray(e.maps)
                signed = None if e.signed_maps is None else np.ascontiguousarray(e.signed_maps)
                for name, value in (
                    ("key", method),
                    ("pair", pair),
                    ("method", e.method),
                    ("tokens", list(e.tokens)),
                    ("shape", list(maps.shape)),
                    ("dtype", maps.dtype.str),
                    ("maps", maps.tobytes()),
                    ("match_map", np.ascontiguousarray(e.match_map).tobytes()),
                    ("match_dtype", np.asarray(e.match_map).dtype.str),
                    ("signed_maps", None if signed is None else signed.tobytes()),
                    ("signed_dtype", None if signed is None else signed.dtype.str),
                    ("itm_probability", float(e.itm_probability)),
                    ("text", e.text),
                    ("image_label", e.image_label),
                    ("grid", [int(v) for v in e.grid]),
                    ("options", json.dumps(e.options, default=_plain_json)),
                    ("image", pictures.get(id(e.image)) if e.image is not None else None),
                    ("truncated_by", e.truncated_by),
                ):
                    rows[name].append(value)
        tables = {
            "curves": pa.Table.from_pandas(self.curves, preserve_index=False),
            "table": pa.Table.from_pandas(self.table, preserve_index=True),
            "pair_aucs": pa.Table.from_pandas(self.pair_aucs, preserve_index=False),
            "explanations": pa.table(
                {name: pa.array(values, columns[name]) for name, values in rows.items()}
            ),
            "images": pa.table({"png": pa.array(images, pa.binary())}),
        }
        fields = {
            "steps": int(self.steps),
            "baseline": self.baseline,
            "net_name": self.net_name,
            "confidence": float(self.confidence),
            "resamples": int(self.resamples),
            "seed": int(self.seed),
            "methods": list(self.explanations),
        }
        return save_result(
            path, "ExplanationEvaluation", fields, tables, self.provenance, overwrite=overwrite
        )

    @classmethod
    def load(cls, path: str | os.PathLike) -> ExplanationEvaluation:
        """The evaluation :meth:`save` wrote to ``path``, with its provenance.

        Raises
        ------
        InputError
            No such folder, not a saved result, or a result of another class (named).
        """
        from ._saved import from_png, load_result

        fields, tables, made_by = load_result(path, "ExplanationEvaluation")
        pictures = [from_png(b) for b in tables["images"].column("png").to_pylist()]
        explanations: dict[str, list[Explanation]] = {m: [] for m in fields.get("methods", [])}
        for row in tables["explanations"].to_pylist():
            shape = tuple(row["shape"])
            signed = (
                None
                if row["signed_maps"] is None
                else _array_of(row["signed_maps"], row["signed_dtype"], shape)
            )
            gh, gw = row["grid"]
            explanations.setdefault(row["key"], []).append(
                Explanation(
                    method=row["method"],
                    tokens=list(row["tokens"]),
                    maps=_array_of(row["maps"], row["dtype"], shape),
                    match_map=_array_of(row["match_map"], row["match_dtype"], (gh, gw)),
                    itm_probability=float(row["itm_probability"]),
                    text=row["text"],
                    image_label=row["image_label"],
                    grid=(int(gh), int(gw)),
                    options=json.loads(row["options"]),
                    image=None if row["image"] is None else pictures[row["image"]],
                    truncated_by=row["truncated_by"],
                    signed_maps=signed,
                )
            )
        return cls(
            curves=tables["curves"].to_pandas(),
            table=tables["table"].to_pandas(),
            explanations=explanations,
            steps=int(fields["steps"]),
            baseline=str(fields["baseline"]),
            net_name=str(fields.get("net_name", "")),
            pair_aucs=tables["pair_aucs"].to_pandas(),
            confidence=float(fields.get("confidence", 0.95)),
            resamples=int(fields.get("resamples", BOOTSTRAP_RESAMPLES)),
            seed=int(fields.get("seed", 0)),
            provenance=made_by,
        )


def _array_of(data: bytes, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    """The array :meth:`ExplanationEvaluation.save` stored as raw bytes (a writable copy)."""
    return np.frombuffer(data, dtype=np.dtype(dtype)).reshape(shape).copy()


def _plain_json(value: Any) -> Any:
    """numpy scalars in an explanation's options as Python numbers."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} {value!r} cannot be written to JSON")


def _explanation_columns() -> dict[str, Any]:
    import pyarrow as pa

    return {
        "key": pa.string(),
        "pair": pa.int64(),
        "method": pa.string(),
        "tokens": pa.list_(pa.string()),
        "shape": pa.list_(pa.int64()),
        "dtype": pa.string(),
        "maps": pa.large_binary(),
        "match_map": pa.binary(),
        "match_dtype": pa.string(),
        "signed_maps": pa.large_binary(),
        "signed_dtype": pa.string(),
        "itm_probability": pa.float64(),
        "text": pa.string(),
        "image_label": pa.string(),
        "grid": pa.list_(pa.int64()),
        "options": pa.string(),
        "image": pa.int64(),
        "truncated_by": pa.string(),
    }


def paired_bootstrap(
    differences: Sequence[float] | np.ndarray,
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """The mean of per-pair differences and its percentile bootstrap confidence interval.

    The pairs are resampled with replacement ``resamples`` times (indices drawn by
    ``numpy.random.default_rng(seed)``, so equal seeds and pair counts resample the same pairs);
    the interval runs between the ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` quantiles
    of the resampled means. Paired: each difference is one pair's method AUC minus its random AUC.

    Parameters
    ----------
    differences : array-like of shape (n_pairs,)
    resamples : int, default 1000
    confidence : float, default 0.95
        Strictly between 0 and 1.
    seed : int, default 0

    Returns
    -------
    (mean, low, high) : tuple of float
        ``low`` and ``high`` are NaN with fewer than two pairs (one pair has no spread to resample)
        and ``mean`` too with none.
    """
    values = np.asarray(differences, dtype=np.float64).reshape(-1)
    resamples = positive_int("resamples", resamples)
    if isinstance(confidence, bool) or not isinstance(confidence, int | float | np.floating):
        raise InputTypeError(f"confidence must be a float, got {type(confidence).__name__}")
    if not 0.0 < float(confidence) < 1.0:
        raise InputError(f"confidence must be strictly between 0 and 1, got {confidence}")
    seed = _check_seed(seed)
    mean = float(values.mean()) if len(values) else float("nan")
    if len(values) < 2:
        return mean, float("nan"), float("nan")
    index = np.random.default_rng(seed).integers(0, len(values), size=(resamples, len(values)))
    means = values[index].mean(axis=1)
    tail = (1.0 - float(confidence)) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return mean, float(low), float(high)


def expected_evaluation_passes(
    pairs_per_image: Sequence[int], methods: Sequence[str], steps: int, random_orders: int, n_patches: int
) -> int:
    """The most ViT passes :func:`evaluate_explanations` makes: per distinct image, the image itself
    (whose forward makes the maps), its fully removed copy, occlusion's one-patch windows (shared by
    the image's texts) and, per pair, ``steps - 1`` perturbed images of each deletion and insertion
    curve of each method and random order. Fewer when two curves remove the same patches.

    Parameters
    ----------
    pairs_per_image : sequence of int
        How many pairs (texts) each distinct image has.
    methods : sequence of str
    steps, random_orders, n_patches : int
        As for :func:`evaluate_explanations`; ``n_patches`` is the patch grid's size (gh * gw).

    Returns
    -------
    int
    """
    curves = len(methods) + random_orders
    windows = n_patches if "occlusion" in methods else 0
    return sum(2 + windows + k * curves * 2 * max(steps - 1, 0) for k in pairs_per_image)


def evaluate_explanations(
    model: BlipNet,
    images: Sequence[ImageLike],
    texts: Sequence[str],
    methods: Sequence[str] = ("attention", "gradcam", "relevancy", "rollout"),
    steps: int = 20,
    baseline: str = "blur",
    random_orders: int = 5,
    *,
    batch_size: int | None = None,
    seed: int = 0,
    confidence: float = 0.95,
    resamples: int = BOOTSTRAP_RESAMPLES,
    progress: bool | None = None,
) -> ExplanationEvaluation:
    """Deletion and insertion curves of each method's ``match_map`` (see :class:`ExplanationEvaluation`).

    For each pair and method, patches are removed from the image (deletion: replaced by the
    ``baseline`` image) or added to the fully removed image (insertion) in descending order of
    ``match_map``, at ``steps + 1`` equal fractions from 0 to 1, and the ITM match probability is
    measured. Perturbations are in the net's pixel space, aligned with the ViT's patch grid. The
    random baseline is the mean curve of ``random_orders`` seeded orders.

    The work of one image: its ViT forward once, shared by every method and by every pair of that
    image (pairs whose pixels are equal), with one backward per text for relevancy; each method's
    map once per pair; then every distinct perturbed image of all the curves of the image's pairs
    (steps, orders and methods together) through the ViT once, ``batch_size`` at a time, and each
    text scored against the images its own curves use. The whole image is scored from its first
    forward, so the ViT sees each distinct image of the image's curves exactly once.

    Parameters
    ----------
    model : BlipNet
    images : image or sequence of images
        Paths, PIL images, encoded bytes, numpy arrays, or pixel Tensors of shape (3, s, s) or
        (1, 3, s, s); one image is one pair. Each is read once before any work, so that a bad one
        fails at once (named: :class:`blipviz.ImageLoadError`, :class:`blipviz.InputTypeError`).
    texts : str or sequence of str
        Zipped with ``images`` into pairs (equal lengths).
    methods : str or sequence of str
        Any of ``METHODS``; one name is one method.
    steps : int, default 20
        Number of intervals (``steps + 1`` points).
    baseline : {"blur", "mean"}, default "blur"
    random_orders : int, default 5
    batch_size : int, optional
        Images per ViT pass.
    seed : int, default 0
        Seed of the random orders and of the bootstrap (a whole number >= 0).
    confidence : float, default 0.95
        Of the table's intervals of each method's difference from random (strictly between 0 and 1).
    resamples : int, default 1000
        Of the paired bootstrap over pairs behind those intervals (:func:`paired_bootstrap`). With
        one pair the intervals are NaN and :attr:`ExplanationEvaluation.note` says why.
    progress : bool, optional
        A progress bar over pairs (:class:`~blipviz.net.net.Progress`) that says the expected time up
        front (:func:`expected_evaluation_passes` ViT passes at the measured time of one,
        :func:`blipviz.estimate_seconds`); by default shown from the start when that is over 5 s,
        else once the pace foresees more than 5 s, as every long loop's bar.

    Raises
    ------
    InputError
        Unequal numbers of images and texts, no pairs, no or unknown or repeated methods, a bad
        option value, ImageFeatures instead of images, a negative seed.
    InputTypeError
        ``texts``, ``methods`` or ``seed`` of the wrong type, an image of no accepted type.
    ImageLoadError
        An image that cannot be read.

    Returns
    -------
    ExplanationEvaluation
    """
    # every option and input is checked before the first pair's work
    images = _pair_images(images)
    texts = as_text_list(texts)
    if len(images) != len(texts):
        raise InputError(
            f"images and texts are zipped into pairs: got {len(images)} images and {len(texts)} texts"
        )
    if not images:
        raise InputError("no pairs to evaluate")
    methods = _method_list(methods)
    if not methods:
        raise InputError(f"no methods to evaluate: pass one or more of {', '.join(map(repr, METHODS))}")
    for m in methods:
        check_choice("method", m, METHODS)
    if len(set(methods)) != len(methods):
        raise InputError(f"methods repeat: {methods}")
    steps = positive_int("steps", steps)
    random_orders = positive_int("random_orders", random_orders)
    check_choice("baseline", baseline, BASELINES)
    batch_size = model.resolve_batch_size(batch_size)
    seed = _check_seed(seed)
    paired_bootstrap([], resamples=resamples, confidence=confidence, seed=seed)  # the options checked
    # read now (pixels dropped, a digest kept): a bad one fails before any work; pairs of one image
    # share its passes
    groups: dict[str, list[int]] = {}
    for index, image in enumerate(images):
        groups.setdefault(_image_digest(model, image, index), []).append(index)
    grid = model.grid
    n_patches = grid[0] * grid[1]
    counts = _counts(steps, n_patches)
    rng = np.random.default_rng(seed)
    random = [[rng.permutation(n_patches) for _ in range(random_orders)] for _ in images]
    from ..net.net import PROGRESS_MIN_SECONDS, Progress
    from .cost import estimate_seconds, format_duration

    desc = "explanation curves"
    show = progress
    if progress is not False:  # the cost said up front: one ViT pass and one ITM pair timed, once per net
        passes = expected_evaluation_passes(
            [len(pairs) for pairs in groups.values()], methods, steps, random_orders, n_patches
        )
        expected = estimate_seconds(model, passes, itm_pairs=passes)
        desc += f" (about {format_duration(expected)}: {passes:,} ViT passes at most)"
        if progress is None and expected > PROGRESS_MIN_SECONDS:
            show = True  # long by the estimate: shown from the start (else by the pace, as any bar)
    found: dict[int, tuple[dict, dict, list]] = {}
    with Progress(len(images), show=show, desc=desc, unit="pair") as bar:
        for pairs in groups.values():
            found.update(
                _evaluate_image(model, images, texts, pairs, methods, random, counts, baseline, batch_size)
            )
            bar.update(len(pairs))
    rows: list[dict] = []
    seconds: dict[str, list[float]] = {m: [] for m in methods}
    explanations: dict[str, list[Explanation]] = {m: [] for m in methods}
    fractions = np.linspace(0.0, 1.0, steps + 1)
    for pair in range(len(images)):
        made, spent, curves = found[pair]
        for m in methods:
            explanations[m].append(made[m])
            seconds[m].append(spent[m])
        for name, deletion, insertion in curves:
            for kind, curve in (("deletion", deletion), ("insertion", insertion)):
                rows.extend(
                    {"method": name, "pair": pair, "fraction": f, "score": float(s), "kind": kind}
                    for f, s in zip(fractions, curve, strict=True)
                )
    curves = pd.DataFrame(rows, columns=["method", "pair", "fraction", "score", "kind"])
    pair_aucs = _pair_aucs(curves, [*methods, "random"])
    table = _auc_table(pair_aucs, seconds, resamples=resamples, confidence=confidence, seed=seed)
    from ..net.provenance import provenance

    return ExplanationEvaluation(
        curves=curves,
        table=table,
        explanations=explanations,
        steps=steps,
        baseline=baseline,
        net_name=str(getattr(model, "name", "")),
        pair_aucs=pair_aucs,
        confidence=float(confidence),
        resamples=int(resamples),
        seed=seed,
        provenance=provenance(model),
    )


def _evaluate_image(
    model: BlipNet,
    images: list,
    texts: list[str],
    pairs: list[int],
    methods: list[str],
    random: list[list[np.ndarray]],
    counts: np.ndarray,
    baseline: str,
    batch_size: int,
) -> dict[int, tuple[dict, dict, list]]:
    """Maps and curves of the pairs of one image (``pairs``: their positions, the same pixels).

    One ViT forward of the image serves every method and text (with the attention maps when rollout
    or relevancy is asked, inside an autograd graph for relevancy's one backward per text), and its
    states score the whole image. Then every distinct perturbed image of every curve of these pairs
    passes the ViT once, ``batch_size`` at a time, each text scored against those its curves use.

    Returns {pair: ({method: Explanation}, {method: seconds}, [(name, deletion, insertion), ...])}.
    """
    first = pairs[0]
    rgb, pixels, _ = _image_input(model, images[first], first)
    labels = {p: image_label(images[p], p) if rgb is not None else f"image {p}" for p in pairs}
    inputs = {p: _text_input(model, texts[p], p) for p in pairs}
    encoded = [(inputs[p][1], inputs[p][0].attention_mask) for p in pairs]
    share = len(pairs)
    image_pass = _image_pass(
        model,
        pixels,
        attentions="relevancy" in methods or "rollout" in methods,
        grad="relevancy" in methods,
    )
    from .attention import default_layer

    layer = default_layer(int(model.config.text_config.num_hidden_layers))
    made: dict[int, dict] = {p: {} for p in pairs}
    spent: dict[int, dict] = {p: {} for p in pairs}
    # the image's pass is charged to every method in full, shared by its pairs
    charged = image_pass.seconds / share
    last_relevancy = pairs[-1]
    for p in pairs:
        tokenized, ids, tokens = inputs[p]
        for m in methods:
            start = time.perf_counter()
            if m in ("attention", "gradcam"):
                exp = _attention_explanation(model, image_pass.states, texts[p], m, layer, rgb, labels[p])
            elif m in ("relevancy", "rollout"):
                maps, match_map, probability, _ = (
                    _relevancy(model, image_pass, tokenized, ids, last=p == last_relevancy)
                    if m == "relevancy"
                    else _rollout_method(model, image_pass, tokenized, ids)
                )
                exp = _explanation(
                    m,
                    maps,
                    match_map,
                    probability,
                    texts[p],
                    tokenized,
                    tokens,
                    labels[p],
                    model.grid,
                    {},
                    rgb,
                )
            else:
                continue
            made[p][m] = exp
            spent[p][m] = time.perf_counter() - start + charged
    if "occlusion" in methods:
        start = time.perf_counter()
        options = _occlusion_options(model, baseline=baseline, batch_size=batch_size)
        occluded = _occlusion(model, pixels, encoded, states=image_pass.states, **options)
        each = (time.perf_counter() - start) / share
        for p, (maps, match_map, probability, used) in zip(pairs, occluded, strict=True):
            tokenized, _, tokens = inputs[p]
            made[p]["occlusion"] = _explanation(
                "occlusion",
                maps,
                match_map,
                probability,
                texts[p],
                tokenized,
                tokens,
                labels[p],
                model.grid,
                used,
                rgb,
            )
            spent[p]["occlusion"] = each + charged
    # every keep-mask of every curve of these pairs, each distinct one through the ViT once
    masks: dict[int, dict[str, list[tuple[np.ndarray, np.ndarray]]]] = {}
    for p in pairs:
        orders = {m: [patch_order(made[p][m].match_map)] for m in methods}
        orders["random"] = random[p]
        masks[p] = {name: [_curve_masks(o, counts) for o in group] for name, group in orders.items()}
    stacked = [np.concatenate([np.concatenate(two) for g in masks[p].values() for two in g]) for p in pairs]
    unique, inverse = np.unique(np.concatenate(stacked), axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    whole = unique.all(axis=1)  # the unperturbed image: scored from the image's own pass
    rest = np.flatnonzero(~whole)
    at = np.cumsum([0, *(len(s) for s in stacked)])
    wanted = []
    for i in range(len(pairs)):
        used = np.zeros(len(unique), dtype=bool)
        used[inverse[at[i] : at[i + 1]]] = True
        wanted.append(used[rest])
    removed = baseline_pixels(pixels, baseline)
    logits = _perturbed_logits(model, pixels, removed, unique[rest], encoded, batch_size, wanted)
    out: dict[int, tuple[dict, dict, list]] = {}
    points = len(counts)
    for i, p in enumerate(pairs):
        scores_unique = np.full(len(unique), np.nan)
        scores_unique[rest] = _match_probability(logits[i])
        if whole.any():
            full = _match_logits(model, image_pass.states, *encoded[i])
            scores_unique[whole] = _match_probability(full)[0]
        scores = scores_unique[inverse[at[i] : at[i + 1]]]
        curves, k = [], 0
        for name, group in masks[p].items():
            deletion = np.zeros(points)
            insertion = np.zeros(points)
            for _ in group:
                deletion += scores[k : k + points]
                insertion += scores[k + points : k + 2 * points]
                k += 2 * points
            curves.append((name, deletion / len(group), insertion / len(group)))
        out[p] = (made[p], spent[p], curves)
    return out


def _image_digest(model: BlipNet, image: Any, index: int) -> str:
    """Refuse an unusable image of the pairs before any work (named errors of :func:`load_image`);
    else a digest of its pixels, equal for pairs of the same image."""
    import hashlib

    if isinstance(image, torch.Tensor):
        pixels = model.check_pixels(image if image.ndim == 4 else image[None])
        if pixels.shape[0] != 1:
            raise InputError(f"image {index}: expected one image, got pixels of shape {tuple(pixels.shape)}")
    elif hasattr(image, "raw") and hasattr(image, "embeddings"):
        raise InputError(
            f"image {index}: explanations perturb or differentiate the pixels, so they need the image "
            "itself (path, PIL image or array), not ImageFeatures"
        )
    else:
        pixels = model.preprocessing.pixel_values([model.preprocessing.load(image, index)], index)
    data = pixels.detach().to("cpu", torch.float32).contiguous().numpy().tobytes()
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def _pair_images(images: Any) -> list:
    """One image (a path, bytes, PIL image, (H, W[, C]) array or (3, s, s) / (1, 3, s, s) pixels) as
    a list of one; a sequence (or an (n, 3, s, s) / (n, H, W, C) stack) as a list of its images."""
    if isinstance(images, torch.Tensor):
        return [images] if images.ndim == 3 else list(images)
    if hasattr(images, "raw") and hasattr(images, "embeddings"):
        raise InputError(
            "explanations perturb or differentiate the pixels, so they need the images themselves "
            "(paths, PIL images or arrays), not ImageFeatures"
        )
    return as_image_list(images)


def _method_list(methods: Any) -> list:
    """One method name as a list of one; a sequence of names as a list (checked by the caller)."""
    if isinstance(methods, str):
        return [methods]
    try:
        if methods is None or isinstance(methods, bytes | dict):
            raise TypeError
        return list(methods)
    except TypeError:
        raise InputTypeError(
            f"methods must be a method name or a sequence of them ({', '.join(map(repr, METHODS))}), "
            f"got {type(methods).__name__}"
        ) from None


def _check_seed(seed: Any) -> int:
    """``seed`` as an int for ``numpy.random.default_rng``: a whole number >= 0, not a bool."""
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise InputTypeError(f"seed must be an int, got {type(seed).__name__} {seed!r:.60}")
    if seed < 0:
        raise InputError(f"seed must be at least 0, got {int(seed)}")
    return int(seed)


def _pair_aucs(curves: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """The trapezoid area under each curve of each pair: ``method``, ``pair``, ``deletion_auc``,
    ``insertion_auc``, in the order of ``names`` and then of the pairs."""
    rows = []
    for name in names:
        part = curves[curves.method == name]
        for pair, g in part.groupby("pair", sort=True):
            entry: dict[str, Any] = {"method": name, "pair": int(pair)}
            for kind in ("deletion", "insertion"):
                k = g[g.kind == kind]
                entry[f"{kind}_auc"] = float(np.trapezoid(k.score.to_numpy(), k.fraction.to_numpy()))
            rows.append(entry)
    return pd.DataFrame(rows, columns=["method", "pair", "deletion_auc", "insertion_auc"])


def _auc_table(
    pair_aucs: pd.DataFrame,
    seconds: dict[str, list[float]],
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    confidence: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """Per method: the mean over pairs of each pair's AUC, the seconds per pair, and the difference
    from random with its paired bootstrap interval (see :class:`ExplanationEvaluation`)."""
    kinds = ("deletion", "insertion")
    by_method = {name: g.sort_values("pair") for name, g in pair_aucs.groupby("method", sort=False)}
    random = by_method.get("random")
    out = {}
    for name, g in by_method.items():
        entry = {f"{kind}_auc": float(g[f"{kind}_auc"].mean()) for kind in kinds}
        entry["seconds_per_pair"] = float(np.mean(seconds[name])) if name in seconds else float("nan")
        for kind in kinds:
            column = f"{kind}_auc"
            if name == "random" or random is None:
                found = (float("nan"),) * 3
            else:
                differences = g[column].to_numpy() - random[column].to_numpy()
                found = paired_bootstrap(differences, resamples=resamples, confidence=confidence, seed=seed)
            for suffix, value in zip(("", "_low", "_high"), found, strict=True):
                entry[f"{kind}_vs_random{suffix}"] = value
        out[name] = entry
    table = pd.DataFrame.from_dict(out, orient="index")
    table.index.name = "method"
    return table
