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

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
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
    "METHODS",
    "Explanation",
    "ExplanationEvaluation",
    "baseline_pixels",
    "evaluate_explanations",
    "explain",
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
        The method's options as used (e.g. ``{"layer": 6}``).
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
    "gradcam": lambda o: "mean of the heads",
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
    "gradcam": "attention × gradient of the match logit (not clipped)",
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
def _pair_input(model: BlipNet, image: Any, text: str, index: int = 0):
    """(RGB image or None, pixels (1, 3, s, s), label, tokenized, ITM ids, tokens)."""
    if not isinstance(text, str):
        raise InputError(f"text {index}: expected a str, got {type(text).__name__}")
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
    tokenized = model.tokenize([text])
    ids = model.itm_input_ids(tokenized)
    tokens = tokenized.tokens(0)
    if model.first_token == "enc":
        tokens = ["[ENC]", *tokens[1:]]
    return rgb, pixels.to(model.device, model.dtype), label, tokenized, ids, tokens


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
    joint = None
    for a in layers:
        aug = a + torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
        aug = aug / aug.sum(dim=-1, keepdim=True)
        joint = aug if joint is None else aug @ joint
    return joint


def rollout_from_attentions(
    vision: Sequence[torch.Tensor], text_self: Sequence[torch.Tensor], last_cross: torch.Tensor
) -> torch.Tensor:
    """The bi-modal rollout ``R_ti = R_ttᵀ Ā_ti R_ii`` from attention maps (heads, queries, keys).

    Returns
    -------
    Tensor of shape (T, 1 + P)
    """
    r_ii = _rollout([a.mean(dim=0) for a in vision])
    r_tt = _rollout([a.mean(dim=0) for a in text_self])
    return r_tt.T @ last_cross.mean(dim=0) @ r_ii


def _attentions(model: BlipNet, pixels: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor):
    """One forward with attentions: (ViT attentions, text self, text cross, match logit (1,), probability)."""
    vision = model.hf.vision_model(pixel_values=pixels, output_attentions=True)
    out = model.itm_forward(ids, mask, vision.last_hidden_state, output_attentions=True)
    logits = model.hf.itm_head(out.last_hidden_state[:, 0, :]).float()
    return vision.attentions, out.attentions, out.cross_attentions, logits


def _to_maps(r_ti: torch.Tensor, grid: tuple[int, int]) -> np.ndarray:
    gh, gw = grid
    return r_ti[:, 1:].reshape(len(r_ti), gh, gw).detach().float().cpu().numpy()


def _relevancy(model: BlipNet, pixels, tokenized, ids):
    # Gradients only here, even inside a caller's no_grad / inference_mode block
    with torch.inference_mode(False), torch.enable_grad():
        pixels, ids, mask = pixels.clone(), ids.clone(), tokenized.attention_mask.clone()
        vision, text_self, text_cross, logits = _attentions(model, pixels, ids, mask)
        wanted = [*vision, *text_self, *text_cross]
        grads = torch.autograd.grad(logits[0, 1], wanted)
    n_v, n_t = len(vision), len(text_self)
    pairs = [(a.detach()[0].float(), g[0].float()) for a, g in zip(wanted, grads, strict=True)]
    r_ti = relevancy_from_attentions(pairs[:n_v], pairs[n_v : n_v + n_t], pairs[n_v + n_t :])
    maps = _to_maps(r_ti, model.grid)
    return maps, maps[0], float(logits.detach().softmax(-1)[0, 1]), {}


def _rollout_method(model: BlipNet, pixels, tokenized, ids):
    with torch.inference_mode():
        vision, text_self, text_cross, logits = _attentions(model, pixels, ids, tokenized.attention_mask)
        r_ti = rollout_from_attentions(
            [a[0].float() for a in vision], [a[0].float() for a in text_self], text_cross[-1][0].float()
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


def _itm_logits(model: BlipNet, pixels: torch.Tensor, ids, mask, batch_size: int) -> np.ndarray:
    """ITM logits (n, 2) of one text against each of (n, 3, s, s) images, ``batch_size`` at a time."""
    out = []
    with torch.inference_mode():
        for start in range(0, len(pixels), batch_size):
            chunk = pixels[start : start + batch_size]
            states = model.vision_states(chunk)
            n = len(chunk)
            hidden = model.itm_forward(ids.expand(n, -1), mask.expand(n, -1), states).last_hidden_state
            out.append(model.hf.itm_head(hidden[:, 0, :]).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 2), dtype=np.float32)


def _match_probability(logits: np.ndarray) -> np.ndarray:
    """Softmax's match column of (n, 2) logits, computed stably."""
    return 1.0 / (1.0 + np.exp(logits[:, 0] - logits[:, 1]))


def _composite(pixels, removed, keep: np.ndarray, grid) -> torch.Tensor:
    """Images that keep the patches where ``keep`` (n, P) is true and show ``removed`` elsewhere."""
    m = _patch_mask_to_pixels(keep, grid, pixels.shape[-1]).to(pixels.device, pixels.dtype)
    return pixels * m + removed * (1 - m)


def _occlusion(
    model: BlipNet, pixels, tokenized, ids, *, window=1, stride=1, baseline="blur", batch_size=None
):
    window = positive_int("window", window)
    stride = positive_int("stride", stride)
    gh, gw = model.grid
    if window > min(gh, gw):
        raise InputError(f"window {window} is larger than the patch grid {gh} x {gw}")
    batch_size = model.resolve_batch_size(batch_size)
    removed = baseline_pixels(pixels, baseline)
    mask = tokenized.attention_mask
    starts_r = list(range(0, gh - window + 1, stride))
    starts_c = list(range(0, gw - window + 1, stride))
    if starts_r[-1] != gh - window:
        starts_r.append(gh - window)
    if starts_c[-1] != gw - window:
        starts_c.append(gw - window)
    keeps = []
    for r in starts_r:
        for c in starts_c:
            keep = np.ones((gh, gw), dtype=bool)
            keep[r : r + window, c : c + window] = False
            keeps.append(keep.reshape(-1))
    keeps = np.stack([np.ones(gh * gw, dtype=bool), *keeps])
    logits = _itm_logits(model, _composite(pixels, removed, keeps, (gh, gw)), ids, mask, batch_size)
    drops = logits[0, 1] - logits[1:, 1]  # the match logit: the first image is the whole one
    total = np.zeros(gh * gw, dtype=np.float64)
    count = np.zeros(gh * gw, dtype=np.float64)
    for keep, drop in zip(keeps[1:], drops, strict=True):
        total[~keep] += drop
        count[~keep] += 1
    match_map = (total / count).reshape(gh, gw).astype(np.float32)
    probability = float(_match_probability(logits[:1])[0])
    options = {"window": window, "stride": stride, "baseline": baseline}
    return match_map[None], match_map, probability, options


# ------------------------------------------------------------------------------------ explain
def explain(model: BlipNet, image: ImageLike | torch.Tensor, text: str, method: str = "relevancy", **options):
    """Explain the ITM decision for one image and one text (see the module docstring).

    Parameters
    ----------
    model : BlipNet
    image : image (path, PIL image, array) or Tensor of shape (1, 3, s, s)
    text : str
    method : {"attention", "gradcam", "relevancy", "rollout", "occlusion"}
    **options
        ``layer`` (attention, GradCAM; default: each one's documented default layer);
        ``window``, ``stride`` (patches, default 1), ``baseline`` ("blur" or "mean"), ``batch_size``
        (occlusion).

    Returns
    -------
    Explanation
    """
    check_choice("method", method, METHODS)
    unknown = set(options) - _OPTIONS[method]
    if unknown:
        allowed = ", ".join(sorted(_OPTIONS[method])) or "none"
        raise InputError(f"method {method!r} takes no option {sorted(unknown)} (its options: {allowed})")
    if method in ("attention", "gradcam"):
        return _from_attention_analyses(model, image, text, method, **options)
    rgb, pixels, label, tokenized, ids, tokens = _pair_input(model, image, text)
    compute = {"relevancy": _relevancy, "rollout": _rollout_method, "occlusion": _occlusion}[method]
    maps, match_map, probability, used = compute(model, pixels, tokenized, ids, **options)
    return Explanation(
        method=method,
        tokens=["[match]"] if method == "occlusion" else tokens,
        maps=maps,
        match_map=match_map,
        itm_probability=probability,
        text=text,
        image_label=label,
        grid=model.grid,
        options=used,
        image=rgb,
        truncated_by=tokenized.truncated_by[0],
    )


def _from_attention_analyses(model: BlipNet, image, text: str, method: str, layer: int | None = None):
    from .attention import cross_attention, default_layer, gradcam

    n_layers = int(model.config.text_config.num_hidden_layers)
    if method == "gradcam":
        cam = gradcam(model, image, text, layer)
        maps, chosen, result = cam.maps, cam.layer, cam
    else:
        result = cross_attention(model, image, text)
        chosen = default_layer(n_layers) if layer is None else layer
        maps = result.maps(chosen, "mean", subtract_min=True)
        chosen = int(chosen) % n_layers
    return Explanation(
        method=method,
        tokens=list(result.tokens),
        maps=np.asarray(maps, dtype=np.float32),
        match_map=_real_token_mean(np.asarray(maps, dtype=np.float32)),
        itm_probability=float(result.score),
        text=text,
        image_label=result.image_label,
        grid=tuple(result.grid),
        options={"layer": chosen, "n_layers": n_layers},
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


@dataclass(eq=False)
class ExplanationEvaluation:
    """Deletion and insertion curves of the ITM match probability for each method.

    Attributes
    ----------
    curves : DataFrame
        Long format: ``method``, ``pair``, ``fraction``, ``score``, ``kind`` ("deletion" or
        "insertion"); the random-order baseline has method ``"random"``.
    table : DataFrame
        One row per method (random included), columns ``deletion_auc`` (lower is better),
        ``insertion_auc`` (higher is better), ``seconds_per_pair`` (the map's cost; NaN for random).
    explanations : dict of str -> list of Explanation
    steps : int
    baseline : str
    """

    curves: pd.DataFrame
    table: pd.DataFrame
    explanations: dict
    steps: int
    baseline: str
    net_name: str = ""

    def __repr__(self) -> str:
        return f"ExplanationEvaluation(methods={list(self.table.index)}, steps={self.steps})\n{self.table}"

    def plot(self, axes=None, *, band: bool = True):
        """Deletion and insertion curves, a line per method with a band over pairs (see
        :class:`blipviz.display.explanations.ExplanationCurvesDisplay`)."""
        from ..display.explanations import ExplanationCurvesDisplay

        return ExplanationCurvesDisplay(self.curves, self.table, self.net_name, self.baseline).plot(
            axes, band=band
        )


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
    progress: bool | None = None,
) -> ExplanationEvaluation:
    """Deletion and insertion curves of each method's ``match_map`` (see :class:`ExplanationEvaluation`).

    For each pair and method, patches are removed from the image (deletion: replaced by the
    ``baseline`` image) or added to the fully removed image (insertion) in descending order of
    ``match_map``, at ``steps + 1`` equal fractions from 0 to 1, and the ITM match probability is
    measured. Perturbations are in the net's pixel space, aligned with the ViT's patch grid. The
    random baseline is the mean curve of ``random_orders`` seeded orders. Images that coincide (the
    whole image, the fully removed one, and any repeated mask) go through the ViT once per pair.

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
        Seed of the random orders (a whole number >= 0).
    progress : bool, optional
        A progress bar over pairs (default: when there are at least 4 pairs).

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
    for index, image in enumerate(images):  # read now (and dropped): a bad one fails before any work
        _check_image(model, image, index)
    grid = model.grid
    n_patches = grid[0] * grid[1]
    counts = _counts(steps, n_patches)
    fractions = np.linspace(0.0, 1.0, steps + 1)
    rng = np.random.default_rng(seed)
    from tqdm.auto import tqdm

    show = len(images) >= 4 if progress is None else bool(progress)
    rows: list[dict] = []
    seconds: dict[str, list[float]] = {m: [] for m in methods}
    explanations: dict[str, list[Explanation]] = {m: [] for m in methods}
    for pair, (image, text) in enumerate(tqdm(list(zip(images, texts, strict=True)), disable=not show)):
        _, pixels, _, tokenized, ids, _ = _pair_input(model, image, text, pair)
        orders: dict[str, list[np.ndarray]] = {}
        for m in methods:
            start = time.perf_counter()
            options = {"baseline": baseline} if m == "occlusion" else {}
            exp = explain(
                model, pixels if m in ("relevancy", "rollout", "occlusion") else image, text, m, **options
            )
            seconds[m].append(time.perf_counter() - start)
            explanations[m].append(exp)
            orders[m] = [patch_order(exp.match_map)]
        orders["random"] = [rng.permutation(n_patches) for _ in range(random_orders)]
        # every keep-mask of every curve, each distinct one through the net once
        masks: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {
            name: [_curve_masks(o, counts) for o in group] for name, group in orders.items()
        }
        stacked = np.concatenate([np.concatenate(pair_) for group in masks.values() for pair_ in group])
        unique, inverse = np.unique(stacked, axis=0, return_inverse=True)
        removed = baseline_pixels(pixels, baseline)
        logits = _itm_logits(
            model, _composite(pixels, removed, unique, grid), ids, tokenized.attention_mask, batch_size
        )
        scores_unique = _match_probability(logits)
        scores = scores_unique[inverse.reshape(-1)]
        at = 0
        for name, group in masks.items():
            deletion = np.zeros(steps + 1)
            insertion = np.zeros(steps + 1)
            for _ in group:
                deletion += scores[at : at + steps + 1]
                insertion += scores[at + steps + 1 : at + 2 * (steps + 1)]
                at += 2 * (steps + 1)
            for kind, curve in (("deletion", deletion / len(group)), ("insertion", insertion / len(group))):
                rows.extend(
                    {"method": name, "pair": pair, "fraction": f, "score": float(s), "kind": kind}
                    for f, s in zip(fractions, curve, strict=True)
                )
    curves = pd.DataFrame(rows, columns=["method", "pair", "fraction", "score", "kind"])
    table = _auc_table(curves, [*methods, "random"], seconds)
    return ExplanationEvaluation(
        curves=curves,
        table=table,
        explanations=explanations,
        steps=steps,
        baseline=baseline,
        net_name=str(getattr(model, "name", "")),
    )


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


def _check_image(model: BlipNet, image: Any, index: int) -> None:
    """Refuse an unusable image of the pairs before any work (named errors of :func:`load_image`)."""
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
        model.preprocessing.load(image, index)


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


def _auc_table(curves: pd.DataFrame, names: list[str], seconds: dict[str, list[float]]) -> pd.DataFrame:
    """Mean over pairs of the trapezoid area under each curve."""
    out = {}
    for name in names:
        entry = {}
        for kind in ("deletion", "insertion"):
            part = curves[(curves.method == name) & (curves.kind == kind)]
            areas = [
                float(np.trapezoid(g.score.to_numpy(), g.fraction.to_numpy()))
                for _, g in part.groupby("pair")
            ]
            entry[f"{kind}_auc"] = float(np.mean(areas))
        entry["seconds_per_pair"] = float(np.mean(seconds[name])) if name in seconds else float("nan")
        out[name] = entry
    table = pd.DataFrame.from_dict(out, orient="index")
    table.index.name = "method"
    return table
