"""Where each word looks: cross-attention maps of the ITM pass (GradCAM, which weighs them by a
gradient, is one of the explanations: :func:`blipviz.analysis.explanations.gradcam`).

It runs the multimodal encoder exactly as :class:`blipviz.net.BlipNet` scores a pair: ``[ENC]`` (or
``[CLS]`` with ``first_token="cls"``) first, the image's last ViT states given with batch size 1.
Geometry (layers, heads, patch grid) is read from the net's config.

Named ports (shapes for one image and one text of ``n_tokens`` tokens, ``[ENC]`` first and
``[SEP]`` last; ``P = gh * gw`` patches):

- ``CrossAttention.weights``: ``text_encoder.encoder.layer.{k}.crossattention.self`` attention
  probabilities, (n_layers, n_heads, n_tokens, 1 + P); each row sums to 1.

One default layer everywhere (:meth:`CrossAttention.plot`, :meth:`CrossAttention.overlay`,
:meth:`CrossAttention.plot_heads`, :func:`~blipviz.analysis.explanations.gradcam`, the
:class:`~blipviz.AttentionExplorer`): :func:`default_layer`, the middle layer of the multimodal
encoder (6 of 12, LAVIS's ``block_num=6`` for GradCAM), never the last of a net with more than one
layer: from the last layer only the first token (``[ENC]``) reaches the ITM head, so every word's
GradCAM there is 0. Attention and GradCAM at one layer can be compared panel by panel.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image

from ..errors import InputError
from ..net.features import ImageFeatures
from ..net.images import ImageLike, image_label, load_image

if TYPE_CHECKING:
    from ..display.attention import AttentionGridDisplay, HeadsTokensDisplay
    from ..net.net import BlipNet

__all__ = [
    "CrossAttention",
    "check_layer",
    "cross_attention",
    "default_layer",
    "image_and_states",
]


# ---------------------------------------------------------------------------------- helpers
def check_layer(layer: int, n_layers: int) -> int:
    """``layer`` as an index in ``0 .. n_layers - 1`` (negative counts from the end); an
    :class:`~blipviz.errors.InputError` naming the valid range otherwise."""
    if isinstance(layer, bool) or not isinstance(layer, int | np.integer):
        raise InputError(f"layer must be an int, got {type(layer).__name__}")
    if not -n_layers <= int(layer) < n_layers:
        raise InputError(
            f"layer {layer} does not exist: this net's multimodal encoder has {n_layers} layers "
            f"(valid: 0 to {n_layers - 1}, or -{n_layers} to -1)"
        )
    return int(layer) % n_layers


def _head_index(heads: str | int | Sequence[int], n_heads: int) -> list[int]:
    if isinstance(heads, str):
        if heads != "mean":
            raise InputError(f"heads must be 'mean', an int or a list of ints, got {heads!r}")
        return list(range(n_heads))
    chosen = [heads] if isinstance(heads, int | np.integer) else list(heads)
    if not chosen:
        raise InputError("heads must name at least one head")
    for h in chosen:
        if not -n_heads <= int(h) < n_heads:
            raise InputError(f"head {h} does not exist: the cross-attention has {n_heads} heads")
    return [int(h) % n_heads for h in chosen]


def _token_index(tokens: Sequence[int] | None, n_tokens: int) -> list[int]:
    if tokens is None:
        return list(range(n_tokens))
    chosen = [int(t) for t in tokens]
    for t in chosen:
        if not -n_tokens <= t < n_tokens:
            raise InputError(f"token {t} does not exist: the text has {n_tokens} tokens")
    return [t % n_tokens for t in chosen]


def _multimodal_layers(model: BlipNet) -> int:
    return int(model.config.text_config.num_hidden_layers)


def image_and_states(model: BlipNet, image: Any) -> tuple[Any, torch.Tensor, str]:
    """One image's picture, raw ViT states and label, from any image input ``model`` takes.

    Returns
    -------
    (RGB PIL image or thumbnail or None, Tensor of shape (1, 1 + P, width), str)
    """
    if isinstance(image, ImageFeatures):
        if len(image) != 1:
            raise InputError(f"expected one image, got ImageFeatures of {len(image)} images")
        model.check_features(image, need_raw=True)
        assert image.raw is not None  # check_features(need_raw=True)
        thumb = image.thumbnails[0] if image.thumbnails else None
        # clone: features computed under inference_mode cannot enter an autograd graph
        return thumb, image.raw.clone(), image.labels[0]
    if isinstance(image, torch.Tensor):
        pixels = model.check_pixels(image)
        if pixels.shape[0] != 1:
            raise InputError(f"expected one image, got pixel values of shape {tuple(pixels.shape)}")
        with torch.no_grad():
            return None, model.vision_states(pixels), "image 0"
    if isinstance(image, list | tuple):
        if len(image) != 1:
            raise InputError(f"expected one image, got {len(image)}")
        image = image[0]
    rgb = model.preprocessing.load(image)  # the net's EXIF rule
    label = image_label(image, 0)
    with torch.no_grad():  # through the net's image path, so a feature cache is used when set
        states = next(model.iter_image_states([rgb], 1, progress=False, labels=[label])).states
    return rgb, states, label


def _text_input(model: BlipNet, text: str):
    if not isinstance(text, str):
        raise InputError(f"expected one text (a str), got {type(text).__name__}")
    tokenized = model.tokenize([text])  # warns (TruncationWarning) when the text is cut
    ids = model.itm_input_ids(tokenized)
    tokens = tokenized.tokens(0)
    if model.first_token == "enc":
        tokens = ["[ENC]", *tokens[1:]]
    return tokenized, ids, tokens


def _overlay_image(own: Any, given: Any):
    image = given if given is not None else own
    if image is None:
        raise InputError("no image to draw on: pass image=... (this result was computed from pixels)")
    return image if isinstance(image, Image.Image | np.ndarray) else load_image(image)


def default_layer(n_layers: int) -> int:
    """The layer every attention and GradCAM figure shows unless told otherwise.

    The middle layer of the multimodal encoder, ``n_layers // 2`` (6 of 12, as LAVIS's GradCAM),
    but never the last of a net with more than one layer (only ``[ENC]`` reaches the ITM head from
    there, so the words' GradCAM is 0): 0 for 1 or 2 layers, 12 for 24.

    Parameters
    ----------
    n_layers : int
        Layers of the multimodal encoder (``config.text_config.num_hidden_layers``).

    Returns
    -------
    int, 0-based.
    """
    if isinstance(n_layers, bool) or not isinstance(n_layers, int | np.integer) or n_layers < 1:
        raise InputError(f"n_layers must be a positive int, got {n_layers!r}")
    return max(0, min(int(n_layers) // 2, int(n_layers) - 2))


# ----------------------------------------------------------------------------- cross-attention
@dataclass(eq=False)
class CrossAttention:
    """Cross-attention probabilities of the multimodal encoder for one (image, text) pair.

    Build it with :meth:`blipviz.BlipITM.cross_attention`.

    Attributes
    ----------
    weights : ndarray of shape (n_layers, n_heads, n_tokens, 1 + P)
        Attention of each text token (``[ENC]`` first, ``[SEP]`` last) over the image tokens (the
        ViT's ``[CLS]`` first, then the ``P = gh * gw`` patches row by row). Rows sum to 1.
    tokens : list of str
        The n_tokens tokens.
    grid : tuple of int
        The patch grid (gh, gw), from the config (24 x 24 at 384 px in 16 px patches).
    text : str
    image_label : str
    score : float
        The ITM match probability of the pair, from the same pass.
    image : PIL.Image.Image or None
        The image (or its thumbnail), used by :meth:`overlay` when no image is given.
    truncated_by : {"tokens", "words", None}
        Whether the text was cut before the pass: at the net's token limit, by the word limit of
        the caption normalisation, or not (``None``). :attr:`truncated` is the same as a bool.
    """

    weights: np.ndarray
    tokens: list[str]
    grid: tuple[int, int]
    text: str = ""
    image_label: str = ""
    score: float = float("nan")
    image: Any = field(default=None, repr=False)
    truncated_by: str | None = None

    @property
    def truncated(self) -> bool:
        """Whether the text was cut (the maps cover only the tokens kept)."""
        return self.truncated_by is not None

    @property
    def n_layers(self) -> int:
        return int(self.weights.shape[0])

    @property
    def n_heads(self) -> int:
        return int(self.weights.shape[1])

    def __repr__(self) -> str:
        return (
            f"CrossAttention(text={self.text!r}, weights={self.weights.shape}, grid={self.grid}, "
            f"score={self.score:.3f})"
        )

    def maps(
        self, layer: int | None = None, heads: str | int | Sequence[int] = "mean", subtract_min: bool = True
    ) -> np.ndarray:
        """Per-token attention maps over the patch grid.

        Parameters
        ----------
        layer : int, optional
            Layer of the multimodal encoder (0-based; negative counts from the end); default
            :func:`default_layer` (the middle layer, 6 of 12), as every figure.
        heads : "mean", int or list of int, default "mean"
            Heads to average.
        subtract_min : bool, default True
            Subtract each patch's minimum over the tokens (as the reference does), so that the maps
            show what is particular to each token.

        Returns
        -------
        ndarray of shape (n_tokens, gh, gw)
            The image's ``[CLS]`` token dropped; patches reshaped row by row.
        """
        layer = default_layer(self.n_layers) if layer is None else check_layer(layer, self.n_layers)
        index = _head_index(heads, self.n_heads)
        att = self.weights[layer][index].mean(axis=0)[:, 1:]  # (n_tokens, P)
        gh, gw = self.grid
        maps = att.reshape(len(self.tokens), gh, gw)
        if subtract_min:
            maps = maps - maps.min(axis=0, keepdims=True)
        return maps

    def _grid(self, maps, index, layer, heads, subtract_min, image) -> AttentionGridDisplay:
        from ..display.attention import AttentionGridDisplay, describe_heads
        from ..display.labels import number_repeats

        numbered = number_repeats(self.tokens)  # over the whole text, whichever tokens are drawn
        return AttentionGridDisplay(
            [maps[t] for t in index],
            [numbered[t] for t in index],
            image=image,
            method="cross-attention",
            layer=layer,
            n_layers=self.n_layers,
            heads=describe_heads(_head_index(heads, self.n_heads), self.n_heads),
            subtract_min=subtract_min,
            text=self.text,
            score=self.score,
            truncated_by=self.truncated_by,
        )

    def plot(
        self,
        layer: int | None = None,
        *,
        heads: str | int | Sequence[int] = "mean",
        subtract_min: bool = True,
        tokens: Sequence[int] | None = None,
        scale: str = "shared",
        axes=None,
        ncols: int | None = None,
        **kw: Any,
    ) -> AttentionGridDisplay:
        """Draw each token's (gh, gw) attention map as a matrix, with a colorbar.

        Parameters
        ----------
        layer : int, optional
            Default: :func:`default_layer` (the middle layer, 6 of 12).
        heads, subtract_min
            As in :meth:`maps`.
        tokens : list of int, optional
            Token positions to draw; default: all.
        scale : {"shared", "per-token"}, default "shared"
            One colour scale for all panels, or each its own.
        axes : array of Axes, optional
            At least one per token; default: a new figure.
        ncols : int, optional
        **kw
            ``cmap``, ``percentile``, ``panel_size``, ``colorbar``: see
            :meth:`blipviz.AttentionGridDisplay.plot`.

        Returns
        -------
        AttentionGridDisplay
            ``arrays_[i]`` is ``maps(layer, ...)[tokens[i]]``; the title says the layer, the head
            reduction, the min-subtraction and the ITM probability.
        """
        layer = default_layer(self.n_layers) if layer is None else check_layer(layer, self.n_layers)
        maps = self.maps(layer, heads, subtract_min)
        index = _token_index(tokens, len(self.tokens))
        disp = self._grid(maps, index, layer, heads, subtract_min, None)
        return disp.plot(axes, scale=scale, ncols=ncols, **kw)

    def overlay(
        self,
        image: ImageLike | None = None,
        layer: int | None = None,
        *,
        heads: str | int | Sequence[int] = "mean",
        subtract_min: bool = True,
        tokens: Sequence[int] | None = None,
        scale: str = "shared",
        alpha: float | None = None,
        size: int | None = None,
        axes=None,
        ncols: int | None = None,
        **kw: Any,
    ) -> AttentionGridDisplay:
        """Lay each token's map on the photograph (colour and opacity grow with the value), with a colorbar.

        Parameters
        ----------
        image : image, optional
            Default: the image the attention was computed from.
        layer : int, optional
            Default: :func:`default_layer` (the middle layer, 6 of 12).
        heads, subtract_min
            As in :meth:`maps`.
        tokens : list of int, optional
            Token positions to draw; default: all.
        scale : {"shared", "per-token"}, default "shared"
            One colour scale for all panels (maps comparable), or each its own.
        alpha : float, optional
            Opacity of the key's top colour; default
            :data:`blipviz.display.overlay.OVERLAY_ALPHA`.
        size : int, optional
            Longest side of the overlays in pixels; default: the image's own (at most 384).
        axes : array of Axes, optional
        ncols : int, optional
        **kw
            ``cmap``, ``percentile``, ``panel_size``, ``colorbar``: see
            :meth:`blipviz.AttentionGridDisplay.plot`.

        Returns
        -------
        AttentionGridDisplay
            ``arrays_`` are uint8 arrays of shape (H, W, 3), the image's size; ``norms_`` the scales.
        """
        picture = _overlay_image(self.image, image)
        layer = default_layer(self.n_layers) if layer is None else check_layer(layer, self.n_layers)
        maps = self.maps(layer, heads, subtract_min)
        index = _token_index(tokens, len(self.tokens))
        if alpha is not None:
            kw["alpha"] = alpha
        disp = self._grid(maps, index, layer, heads, subtract_min, picture)
        return disp.plot(axes, scale=scale, ncols=ncols, size=size, **kw)

    def plot_heads(
        self,
        layer: int | None = None,
        *,
        tokens: Sequence[int] | None = None,
        scale: str = "per-head",
        axes=None,
        **kw: Any,
    ) -> HeadsTokensDisplay:
        """One layer's raw attention per head on the patch grid: a row of head maps per text token
        (the ViT's ``[CLS]`` apart), at most 12 inches tall (more tokens: ``page=``).

        Parameters
        ----------
        layer : int, optional
            Default: :func:`default_layer` (the middle layer, 6 of 12).
        tokens : list of int, optional
            Token positions to draw; default: all.
        scale : {"per-head", "shared"}, default "per-head"
            Each head's map divided by its maximum over the patches, or the probabilities on one
            scale.
        axes : array of Axes, optional
        **kw
            ``page``, ``cmap``, ``width``, ``max_height``, ``row_height``: see
            :meth:`blipviz.HeadsTokensDisplay.plot`.

        Returns
        -------
        HeadsTokensDisplay
            ``arrays_[i]`` of shape (n_heads, gh, gw): ``weights[layer][:, tokens[i], 1:]`` on the
            grid, as drawn; ``cls_share_``: the attention on ``[CLS]``.
        """
        from ..display.attention import HeadsTokensDisplay

        layer = default_layer(self.n_layers) if layer is None else check_layer(layer, self.n_layers)
        index = _token_index(tokens, len(self.tokens))
        disp = HeadsTokensDisplay(
            self.weights[layer],
            self.tokens,
            grid=self.grid,
            layer=layer,
            n_layers=self.n_layers,
            text=self.text,
            score=self.score,
            truncated_by=self.truncated_by,
        )
        return disp.plot(axes, tokens=index, scale=scale, **kw)


def cross_attention(model: BlipNet, image: Any, text: str) -> CrossAttention:
    """Cross-attention of the ITM pass for one image and one text (see :meth:`BlipITM.cross_attention`)."""
    picture, states, label = image_and_states(model, image)
    return cross_attention_of_states(model, states, text, picture=picture, label=label)


def cross_attention_of_states(
    model: BlipNet, states: torch.Tensor, text: str, *, picture: Any = None, label: str = "image 0"
) -> CrossAttention:
    """:func:`cross_attention` from an image's ViT states (1, 1 + P, width), already computed: one
    image's pass shared by several texts or analyses."""
    tokenized, ids, tokens = _text_input(model, text)
    with torch.inference_mode():
        out = model.itm_forward(ids, tokenized.attention_mask, states, output_attentions=True)
        logits = model.hf.itm_head(out.last_hidden_state[:, 0, :]).float()
        weights = torch.stack([a[0] for a in out.cross_attentions]).float().cpu().numpy()
    return CrossAttention(
        weights=weights,
        tokens=tokens,
        grid=model.grid,
        text=text,
        image_label=label,
        score=float(logits.softmax(-1)[0, 1]),
        image=picture,
        truncated_by=tokenized.truncated_by[0],
    )
