"""The BLIP image-text matching net: three parts over one set of Hugging Face weights, and its ports.

``BlipNet`` wraps ``transformers.BlipForImageTextRetrieval`` without re-implementing it, and calls
its sub-modules the way the original BLIP retrieval code does:

- image: the ViT's last hidden state (after its final LayerNorm); ``vision_proj`` of the ``[CLS]``
  state, L2-normalised, is the image embedding;
- text (unimodal): the text encoder with no cross-attention, ``[CLS]`` first; ``text_proj`` of the
  ``[CLS]`` state, L2-normalised, is the text embedding; cosine = plain dot product;
- ITM: the same token ids with ``[CLS]`` replaced by ``[ENC]``, cross-attending to all image
  tokens; ``itm_head`` of the first position; match probability ``softmax(logits)[1]``.

Its public ports, which every analysis uses (shapes for a net of width W with P patches):

==========================================  ==============================================
``vision_states(pixels)``                   (n, 3, s, s) -> (n, 1 + P, W) raw ViT states
``image_projection(states)``                (n, 1 + P, W) -> (n, 256) before normalising
``text_projection(ids, mask)``              (m, T) -> (m, 256) before normalising
``itm_forward(ids, mask, states, **kw)``    the multimodal pass (``output_attentions=...``)
``itm_logits(tokenized, states)``           (m, 2); states of batch 1 (broadcast) or m
``iter_image_states(images, ...)``          the one input stream: :class:`ImageBatch` es
``encode_images`` / ``encode_texts``        :class:`ImageFeatures` / :class:`TextFeatures`
==========================================  ==============================================

Each image passes the vision encoder once per call, however many texts. All texts of an image go
through the ITM pass as one batch against that image's states given with batch size 1: the
cross-attention keys and values are then computed once per layer and broadcast over the texts.

A feature store (``net.feature_cache``, e.g. :class:`blipviz.store.FeatureCache`) plugs into the
input stream through ``image_key(net, rgb)``, ``get_states(net, key)``, ``put_states(net, key,
states)`` and ``itm_logits(net, key, tokenized, compute)``; it never calls the net's forward passes.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError, InputTypeError, MissingPartError, NumericalError, check_choice, positive_int
from .accelerate import EAGER, Acceleration, accelerated, autocast_context, compiled_vision_states
from .features import ImageFeatures, TextFeatures
from .images import ImageLike, ImagePreprocessing, as_image_list, image_label, thumbnail
from .registry import ENC_TOKEN_ID, PARTS, part_parameter_names
from .text import TokenizedTexts, blip_tokenizer, tokenize

if TYPE_CHECKING:
    from PIL import Image

__all__ = [
    "PROGRESS_MIN_IMAGES",
    "BlipNet",
    "FeatureStore",
    "ImageBatch",
    "ImageEncoder",
    "Images",
    "MultimodalEncoder",
    "NetPart",
    "Progress",
    "TextEncoder",
    "Texts",
]

#: Image counts from which a progress bar is shown by default where the time cannot be foreseen.
PROGRESS_MIN_IMAGES = 64
#: Expected seconds from which a loop shows a progress bar by default (:class:`Progress`).
PROGRESS_MIN_SECONDS = 5.0


class Progress:
    """A progress bar shown by expected time, not by count.

    ``show=True``: a bar from the start; ``False``: never; ``None`` (the default of every long
    loop): a bar as soon as the work done so far says the whole will take more than
    :data:`PROGRESS_MIN_SECONDS` (32 large images at 4 s each get one after their first batch;
    1,000 thumbnails that take a second in all never do). The bar then starts where the work is.

    Parameters
    ----------
    total : int or None
        Units of work (images, pairs); None when unknown (a stream): then the bar opens once the
        work has run :data:`PROGRESS_MIN_SECONDS`.
    show : bool or None
    desc, unit : str
        The bar's label and unit.
    initial : int, default 0
        Units already done (a resumed job).
    clock : callable, default time.perf_counter
        Seconds now (tests pass their own).
    """

    def __init__(
        self,
        total: int | None,
        *,
        show: bool | None,
        desc: str,
        unit: str = "image",
        initial: int = 0,
        clock: Any = time.perf_counter,
    ) -> None:
        self.total, self.desc, self.unit, self.show = total, desc, unit, show
        self.initial = self.done = int(initial)
        self.clock = clock
        self.started = clock()
        self.bar: Any = None
        self._postfix: dict[str, Any] = {}
        if show:
            self._open()

    def _open(self) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=self.total, initial=self.done, desc=self.desc, unit=self.unit, smoothing=0.1)
        if self._postfix:
            self.bar.set_postfix(self._postfix, refresh=False)

    def expected_seconds(self) -> float | None:
        """The whole job's expected time from the pace so far (None before any unit is done)."""
        elapsed, done = self.clock() - self.started, self.done - self.initial
        if done <= 0:
            return None
        if self.total is None:
            return elapsed
        return elapsed / done * (self.total - self.initial)

    def update(self, n: int = 1) -> None:
        """``n`` more units done."""
        self.done += int(n)
        if self.bar is not None:
            self.bar.update(n)
            return
        unfinished = self.total is None or self.done < self.total
        if self.show is None and unfinished:
            expected = self.expected_seconds()
            if expected is not None and expected > PROGRESS_MIN_SECONDS:
                self._open()

    def set_postfix(self, **values: Any) -> None:
        """Values shown after the bar (kept until the bar opens)."""
        self._postfix.update({k: v for k, v in values.items() if k != "refresh"})
        if self.bar is not None:
            self.bar.set_postfix(self._postfix, refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


Images = ImageLike | Sequence[ImageLike] | torch.Tensor | ImageFeatures
Texts = str | Sequence[str] | TextFeatures


class FeatureStore(Protocol):
    """What the net's input stream needs from a feature store (``net.feature_cache``), e.g.
    :class:`blipviz.store.FeatureCache`; the store never calls the net's forward passes."""

    def image_key(self, model: BlipNet, rgb: Image.Image) -> str:
        """The entry name of a decoded RGB image for ``model``."""
        ...

    def get_states(self, model: BlipNet, key: str) -> torch.Tensor | None:
        """The stored raw states (1 + P, width) of an entry, or ``None``."""
        ...

    def put_states(self, model: BlipNet, key: str, raw: torch.Tensor) -> torch.Tensor:
        """Store the states (1 + P, width) computed for a miss; returns them as the store will serve
        them later."""
        ...

    def itm_logits(
        self,
        model: BlipNet,
        image_key: str,
        tokenized: TokenizedTexts,
        compute: Callable[[TokenizedTexts], torch.Tensor],
    ) -> torch.Tensor:
        """ITM logits (n_texts, 2) of one stored image against texts; ``compute(subset)`` gives those
        of the texts not stored yet."""
        ...


class ImageBatch(NamedTuple):
    """One batch of the input stream (:meth:`BlipNet.iter_image_states`)."""

    #: Tensor of shape (b, 1 + P, width): raw ViT states, in the net's dtype and device.
    states: torch.Tensor
    #: One label per image.
    labels: list[str]
    #: Small RGB copies of the images (None for pixel tensors).
    thumbnails: list[Any] | None
    #: Each image's feature-store entry name, or None.
    keys: list[str | None]


def _as_tensor(value: Any, what: str) -> torch.Tensor:
    """``value`` if it is a Tensor; a numeric numpy array as a CPU Tensor (sharing its memory where
    it can); anything else an :class:`InputTypeError` naming ``what``."""
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, np.ndarray) and value.dtype.kind in "iuf":
        if not (value.flags.writeable and value.flags.c_contiguous):
            value = np.array(value, order="C")
        return torch.from_numpy(value)
    kind = f"a numpy array of dtype {value.dtype}" if isinstance(value, np.ndarray) else type(value).__name__
    raise InputTypeError(f"{what} must be a Tensor or a numeric numpy array, got {kind}")


class BlipNet:
    """A BLIP image-text matching net: image encoder, text encoder and multimodal encoder.

    Build it with :func:`blipviz.load_model`. The parts are ``.image_encoder``, ``.text_encoder``
    and ``.multimodal_encoder``; ``.hf`` is the wrapped ``BlipForImageTextRetrieval``.

    Attributes
    ----------
    name : str
        Checkpoint id, folder, or ``"tiny-random"``.
    preprocessing : blipviz.net.images.ImagePreprocessing
    first_token : {"enc", "cls"}
    normalize_text : bool
    max_text_tokens : int or None
        Token limit of texts; ``None``: the text encoder's own (:attr:`text_token_limit`, 512). A
        value above the encoder's positions is refused (:class:`blipviz.InputError`).
    """

    def __init__(
        self,
        hf_model,
        *,
        name: str,
        preprocessing: ImagePreprocessing,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
        first_token: str = "enc",
        normalize_text: bool = True,
        max_text_tokens: int | None = 35,
    ) -> None:
        self.device = torch.device(device or "cpu")
        self.dtype = dtype or torch.float32
        self.hf = hf_model.to(device=self.device, dtype=self.dtype).eval()
        self.name = name
        self.preprocessing = preprocessing
        self.first_token = first_token
        self.normalize_text = normalize_text
        self.max_text_tokens = max_text_tokens
        self._token_limit()  # None, or at most the text encoder's positions: checked now, not mid-call
        #: A feature store (e.g. a blipviz.store.FeatureCache): image features looked up on disk first.
        self.feature_cache: FeatureStore | None = None
        #: Which weights :func:`blipviz.load_model` gave the net (``name_or_path``: hub id, resolved
        #: folder or "tiny-random"; ``pretrained`` and ``seed`` for random ones): what a collection's
        #: manifest needs to build it again. Empty for a net built otherwise.
        self.load_options: dict = {}
        self.quantization: str | None = None  # "int8" after blipviz.net.quantize.quantize_int8
        #: How the passes run now: compiled ViT, bfloat16 autocast (:meth:`accelerated`); eager outside.
        self.acceleration: Acceleration = EAGER
        # The parts whose weights are in memory: all three, or the one kept by keep_only_part.
        self.parts: frozenset[str] = frozenset(PARTS)
        # Weights fingerprints by (group, dtype, quantization): see fingerprint().
        self._fingerprints: dict[tuple[str, str, str], str] = {}
        self.image_encoder = ImageEncoder(self)
        self.text_encoder = TextEncoder(self)
        self.multimodal_encoder = MultimodalEncoder(self)

    # ------------------------------------------------------------------------------- geometry
    @property
    def config(self):
        """The ``transformers.BlipConfig`` of the wrapped net."""
        return self.hf.config

    @property
    def width(self) -> int:
        """Width of the image tokens (768 for ViT-B/16, 1024 for ViT-L/16)."""
        return int(self.config.vision_config.hidden_size)

    @property
    def grid(self) -> tuple[int, int]:
        """Patch grid of the vision transformer (24 x 24 at 384 px in 16 px patches)."""
        v = self.config.vision_config
        side = int(v.image_size) // int(v.patch_size)
        return side, side

    @property
    def n_image_tokens(self) -> int:
        """1 + number of patches (577 at 384 px in 16 px patches)."""
        return 1 + self.grid[0] * self.grid[1]

    def __repr__(self) -> str:
        quantized = f", quantize={self.quantization!r}" if self.quantization else ""
        return (
            f"{type(self).__name__}({self.name!r}, width={self.width}, grid={self.grid}, "
            f"device={str(self.device)!r}, dtype={str(self.dtype).replace('torch.', '')!r}"
            f"{quantized}, first_token={self.first_token!r})"
        )

    # ----------------------------------------------------------------------------- low level
    @property
    def text_token_limit(self) -> int:
        """The token limit texts are cut to: ``max_text_tokens``, or for ``None`` the text encoder's
        own, ``config.text_config.max_position_embeddings`` (512)."""
        return self._token_limit()

    def _token_limit(self) -> int:
        positions = int(self.config.text_config.max_position_embeddings)
        limit = self.max_text_tokens
        if limit is None:
            return positions
        if isinstance(limit, int) and not isinstance(limit, bool) and limit > positions:
            raise InputError(
                f"max_text_tokens={limit} is more than the text encoder's {positions} positions: use at "
                f"most {positions}, or None for the encoder's own limit"
            )
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 2:
            raise InputError(
                f"max_text_tokens must be None or a whole number from 2 ([CLS] and [SEP]) to {positions} "
                f"(the text encoder's {positions} positions), got {limit!r}"
            )
        return limit

    def tokenize(self, texts: str | Sequence[str], *, warn: bool = True) -> TokenizedTexts:
        """Tokenise texts with this net's text options (normalisation, token limit).

        A ``str`` is one text. Texts longer than the limits are cut (50 words by the normalisation,
        then :attr:`text_token_limit` tokens); the result's ``truncated`` / ``truncated_by`` say
        which, and with ``warn=True`` one :class:`blipviz.TruncationWarning` gives the count.
        """
        from .text import BLIP_MAX_TEXT_TOKENS, BLIP_MAX_WORDS, warn_truncated

        limit = self._token_limit()
        tokenized = tokenize(texts, normalize=self.normalize_text, max_tokens=limit)
        if warn:
            positions = int(self.config.text_config.max_position_embeddings)
            note = (
                "BLIP's limit"
                if limit == BLIP_MAX_TEXT_TOKENS
                else f"the text encoder's {positions} positions"
                if limit == positions
                else "max_text_tokens"
            )
            max_words = BLIP_MAX_WORDS if self.normalize_text else None
            warn_truncated(tokenized.truncated_by, limit, max_words=max_words, limit_note=note)
        return tokenized

    def check_origin(self, features: ImageFeatures | TextFeatures) -> None:
        """Refuse features computed by another net: :class:`blipviz.InputError` naming both nets.

        ``ImageFeatures`` carry ``fingerprint("image")`` of the net that made them, ``TextFeatures``
        its ``fingerprint("text")`` (text tower and ITM head: also TextFeatures used only for their
        token ids by the ITM pass must come from this net). Features whose fingerprint is ``""``
        (built by hand) are accepted. Nets with equal weights (same checkpoint, seed, dtype and
        quantisation, also loaded separately or by :func:`blipviz.load_part`) accept each other's.
        """
        group = "image" if isinstance(features, ImageFeatures) else "text"
        theirs = getattr(features, "fingerprint", "")
        if not theirs:
            return
        mine = self.fingerprint(group)
        if theirs != mine:
            raise InputError(
                f"these {type(features).__name__} were computed by another net: "
                f"{features.model_name or 'unnamed'!r} ({group} weights {theirs[:12]}), not this net "
                f"{self.name!r} ({group} weights {mine[:12]}); features only mean something to the net "
                f"that made them: compute them again with this net"
            )

    def tokenized(self, texts: Texts) -> TokenizedTexts:
        if isinstance(texts, TextFeatures):
            self.check_origin(texts)
            return texts.tokenized
        return self.tokenize(texts)

    def text_features(self, texts: Texts) -> TextFeatures:
        """TextFeatures of this net: given ones checked (:meth:`check_origin`), or texts encoded."""
        if isinstance(texts, TextFeatures):
            self.check_origin(texts)
            for name in ("embeddings", "projected"):  # again at use: a value may be changed in place
                if getattr(texts, name, None) is not None:
                    setattr(texts, name, getattr(texts, name))
            return texts
        return self.encode_texts(texts)

    def fingerprint(self, group: str = "image") -> str:
        """BLAKE2b-256 of the content of the weights behind one kind of feature (64 hex digits).

        Parameters
        ----------
        group : {"image", "text"}
            ``"image"``: ``vision_model`` and ``vision_proj`` (image states and embeddings);
            ``"text"``: ``text_encoder``, ``text_proj`` and ``itm_head`` (text embeddings, and ITM
            logits given image states). See :data:`blipviz.net.fingerprint.WEIGHT_GROUPS`.

        Computed from the weights (dtype and int8 packing included) on first use, then remembered on
        this net for its current dtype and quantisation; :meth:`keep_only_part` takes both before
        freeing weights. Weights edited in place later are not noticed: call
        :meth:`forget_fingerprints` after editing them.
        """
        from .fingerprint import WEIGHT_GROUPS, weights_fingerprint

        check_choice("group", group, tuple(WEIGHT_GROUPS))
        slot = (group, str(self.dtype), str(self.quantization or ""))
        value = self._fingerprints.get(slot)
        if value is None:
            if any(p.is_meta for n, p in self.hf.named_parameters() if n.startswith(WEIGHT_GROUPS[group])):
                raise MissingPartError(
                    f"the {group} weights of this net were freed (load_part) before their fingerprint "
                    "was taken"
                )
            value = self._fingerprints[slot] = weights_fingerprint(self.hf, WEIGHT_GROUPS[group])
        return value

    def forget_fingerprints(self) -> None:
        """Drop the remembered weights fingerprints (call it after editing the weights in place)."""
        self._fingerprints.clear()

    def keep_only_part(self, part: str) -> BlipNet:
        """Free the weights that ``part`` does not use (they move to the ``meta`` device); returns self.

        ``"ImageEncoder"`` keeps the ViT and ``vision_proj``; ``"TextEncoder"`` the text tower without
        its cross-attention, and ``text_proj``; ``"MultimodalEncoder"`` the whole text tower and the
        ITM head, and takes image features from an ImageEncoder. A later call that needs another part
        raises :class:`blipviz.MissingPartError`. Used by :func:`blipviz.load_part`.
        """
        check_choice("part", part, PARTS)
        for group in ("image", "text"):  # features stay identifiable after the weights are gone
            self.fingerprint(group)
        keep = set(part_parameter_names(self.hf, part))
        for module_name, module in self.hf.named_modules():
            for leaf, param in list(module._parameters.items()):
                full = f"{module_name}.{leaf}" if module_name else leaf
                if param is not None and full not in keep and not param.is_meta:
                    module._parameters[leaf] = torch.nn.Parameter(
                        torch.empty_like(param, device="meta"), requires_grad=False
                    )
        self.parts = frozenset((part,))
        return self

    def require_part(self, part: str, use: str) -> None:
        if part not in self.parts:
            (held,) = self.parts
            hint = {
                "ImageEncoder": "pass ImageFeatures (keep_raw=True) from an ImageEncoder instead of images",
                "TextEncoder": "load the TextEncoder too",
                "MultimodalEncoder": "load the MultimodalEncoder too",
            }[part]
            raise MissingPartError(
                f"{use} needs the {part}, but this net was loaded with load_part({held!r}) and holds only "
                f"the {held}'s weights: {hint}, or load the whole net with load_model"
            )

    def accelerated(self, compile: bool = False, autocast: str | None = None):
        """Context manager: inside it the passes run compiled and/or under autocast.

        ``compile=True`` compiles the ViT's forward with ``torch.compile`` (once per net, on the first
        pass); ``autocast="bfloat16"`` runs the ViT, text and multimodal encoders under
        ``torch.autocast`` in bfloat16 (refused on a CPU without native bfloat16). Outputs stay in
        the net's dtype; :attr:`acceleration` says what is active (provenance records it). See
        :mod:`blipviz.net.accelerate`; the long jobs take the same options.

        Raises
        ------
        InputError, InputTypeError
            Bad values, or options this net or machine cannot run
            (:func:`blipviz.net.accelerate.check_acceleration`).
        """
        return accelerated(self, compile, autocast)

    def vision_states(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(n, 3, s, s) pixels -> (n, 1 + P, width) last hidden state of the ViT (in the net's dtype,
        also under autocast)."""
        self.require_part("ImageEncoder", "encoding images")
        pixel_values = pixel_values.to(device=self.device, dtype=self.dtype)
        with autocast_context(self):
            if self.acceleration.compile:
                states = compiled_vision_states(self, pixel_values)
            else:
                states = self.hf.vision_model(pixel_values=pixel_values).last_hidden_state
        return states.to(self.dtype)

    def _finite(self, values: torch.Tensor, what: str) -> torch.Tensor:
        """``values`` (n, ...) unchanged, or :class:`NumericalError` when the net produced NaN or inf."""
        finite = torch.isfinite(values.reshape(len(values), -1)).all(1)
        if not bool(finite.all()):
            bad = (~finite).nonzero().flatten().tolist()
            raise NumericalError(
                f"the net's {what} came out NaN or inf for {len(bad)} of {len(values)} items of a batch "
                f"(positions {bad[:10]}) in {str(self.dtype).replace('torch.', '')}: "
                + self._nonfinite_cause()
            )
        return values

    def _nonfinite_cause(self) -> str:
        """Why the net produced NaN or inf: weights that hold NaN or inf (named), or activations that
        overflowed this dtype; advice to change the dtype only where another dtype can help."""
        dtype = str(self.dtype).replace("torch.", "")
        params = [(n, p) for n, p in self.hf.named_parameters() if not p.is_meta and p.is_floating_point()]
        broken = [n for n, p in params if not bool(torch.isfinite(p).all())]
        if broken:
            names = ", ".join(broken[:3]) + (", ..." if len(broken) > 3 else "")
            cause = (
                f"the weights themselves hold NaN or inf ({len(broken)} of {len(params)} weight tensors: "
                f"{names}); "
            )
            nan = any(bool(torch.isnan(p).any()) for n, p in params if n in broken)
            if self.dtype == torch.float16 and not nan:
                return cause + "weights beyond float16's range (65504) become inf: load in torch.float32"
            return cause + "the checkpoint is broken or its weights were edited: reload it from a sound copy"
        if self.dtype == torch.float16:
            return "the activations overflowed float16; load the net in torch.float32 or torch.bfloat16"
        if self.dtype == torch.bfloat16:
            return "the activations overflowed in bfloat16; load the net with dtype=torch.float32"
        return f"the weights are finite, but the activations overflowed {dtype}: weights or inputs too large"

    def image_projection(self, states: torch.Tensor) -> torch.Tensor:
        """(n, 1 + P, width) -> (n, 256) ``vision_proj`` of the [CLS] state, before normalising."""
        self.require_part("ImageEncoder", "embedding images")
        return self._finite(self.hf.vision_proj(states[:, 0, :]).float(), "image embeddings")

    def text_projection(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Unimodal text pass -> (n, 256) ``text_proj`` of the [CLS] state, before normalising."""
        self.require_part("TextEncoder", "embedding texts")
        with autocast_context(self):
            out = self.hf.text_encoder(
                input_ids=input_ids.to(self.device), attention_mask=attention_mask.to(self.device)
            )
        first = out.last_hidden_state[:, 0, :].to(self.dtype)
        return self._finite(self.hf.text_proj(first).float(), "text embeddings")

    def text_projections(self, tokenized: TokenizedTexts, batch_size: int = 128) -> torch.Tensor:
        """:meth:`text_projection` of tokenised texts, ``batch_size`` texts per pass -> (m, 256) on the
        CPU, before normalising."""
        batch_size = positive_int("batch_size", batch_size)
        out = [
            self.text_projection(sub.input_ids, sub.attention_mask).cpu()
            for sub in (
                tokenized.select(range(start, min(start + batch_size, len(tokenized))))
                for start in range(0, len(tokenized), batch_size)
            )
        ]
        return torch.cat(out) if out else torch.zeros((0, int(self.config.image_text_hidden_size)))

    def itm_input_ids(self, tokenized: TokenizedTexts) -> torch.Tensor:
        """Token ids of the ITM pass: ``[CLS]`` replaced by ``[ENC]`` unless ``first_token="cls"``."""
        ids = tokenized.input_ids.clone()
        if self.first_token == "enc" and ids.numel():
            ids[:, 0] = ENC_TOKEN_ID
        return ids

    def itm_forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        image_states: torch.Tensor,
        **kwargs: Any,
    ):
        """Multimodal pass. ``image_states`` has batch 1 (broadcast over texts) or n_texts."""
        self.require_part("MultimodalEncoder", "image-text matching")
        return self.hf.text_encoder(
            input_ids=input_ids.to(self.device),
            attention_mask=attention_mask.to(self.device),
            encoder_hidden_states=image_states.to(device=self.device, dtype=self.dtype),
            **kwargs,
        )

    def itm_logits(
        self, tokenized: TokenizedTexts, image_states: torch.Tensor, text_batch_size: int = 128
    ) -> torch.Tensor:
        """ITM logits (n_texts, 2) of every text against one image (states of batch 1), or of
        text i against image i (states of batch n_texts)."""
        ids = self.itm_input_ids(tokenized)
        mask = tokenized.attention_mask
        out = []
        for start in range(0, ids.shape[0], text_batch_size):
            stop = start + text_batch_size
            states = image_states if image_states.shape[0] == 1 else image_states[start:stop]
            sub_mask = mask[start:stop]
            n = int(sub_mask.sum(1).max())
            with autocast_context(self):
                hidden = self.itm_forward(ids[start:stop, :n], sub_mask[:, :n], states).last_hidden_state
            out.append(self._finite(self.hf.itm_head(hidden[:, 0, :].to(self.dtype)).float(), "ITM logits"))
        if not out:
            return torch.zeros((0, 2))
        return torch.cat(out)

    @property
    def default_batch_size(self) -> int:
        """Images per vision-encoder pass when a call leaves ``batch_size`` out: 4 on CPU, 16 on a GPU.

        On CPU the ViT's throughput is highest at 4 images (1 to 5% lower at 1, 6 to 8% lower at 16;
        ``benchmarks/bench_vision.py``), while its activations grow with the batch (about 27 MB of
        raw states and 110 MB of MLP activations per 16 ViT-B/16 images), so 4 is the better default.
        """
        return 4 if self.device.type == "cpu" else 16

    def resolve_batch_size(self, batch_size: int | None) -> int:
        """``batch_size``, or :attr:`default_batch_size` for ``None``; an :class:`InputError` below 1."""
        return self.default_batch_size if batch_size is None else positive_int("batch_size", batch_size)

    def iter_image_states(
        self,
        images: Images,
        batch_size: int | None = None,
        progress: bool | None = None,
        labels: Sequence[str] | None = None,
        thumbnails: bool = True,
    ) -> Iterator[ImageBatch]:
        """The one input stream of images: raw states batch by batch, for any accepted image input.

        Each image is decoded once (for its pixels, label, thumbnail and, with a feature store, its
        content key) and passes the ViT once; with :attr:`feature_cache` set, stored states are
        taken from it (``get_states``) and only the misses of a batch go through the ViT, in one
        pass, and are given to it (``put_states``).

        Parameters
        ----------
        images : images, pixel Tensor of shape (n, 3, s, s), or ImageFeatures (with raw states)
        batch_size : int, optional
            Images per ViT pass; default :attr:`default_batch_size`.
        progress : bool, optional
            Progress bar over images; by default shown once the pace foresees more than
            5 s (:class:`Progress`).
        labels : sequence of str, optional
            One label per image; default: file names, or ``"image i"``.
        thumbnails : bool, default True
            Make each decoded image's thumbnail; ``False`` (a caller that keeps only scores) yields
            ``thumbnails=None`` and saves a copy and a resize per image.

        Yields
        ------
        ImageBatch
            ``states`` of shape (b, 1 + P, width) in the net's dtype and device, ``labels``,
            ``thumbnails`` (None for pixel tensors) and ``keys``: each image's feature-store entry
            name (None without a store, or for features and pixels).
        """
        batch_size = self.resolve_batch_size(batch_size)
        if isinstance(images, ImageFeatures):
            self.check_features(images, need_raw=True)
            names = self.check_labels(labels, len(images)) if labels is not None else images.labels
            for start in range(0, len(images), batch_size):
                part = images[start : start + batch_size]
                stop = start + len(part)
                assert part.raw is not None  # check_features(need_raw=True)
                yield ImageBatch(part.raw, names[start:stop], part.thumbnails, [None] * len(part))
            return
        if isinstance(images, torch.Tensor):
            pixels = self.check_pixels(images)
            names = (
                self.check_labels(labels, len(pixels))
                if labels is not None
                else [f"image {i}" for i in range(len(pixels))]
            )
            for start in range(0, len(pixels), batch_size):
                pixel_chunk = pixels[start : start + batch_size]
                yield ImageBatch(
                    self.vision_states(pixel_chunk),
                    names[start : start + len(pixel_chunk)],
                    None,
                    [None] * len(pixel_chunk),
                )
            return
        items = as_image_list(images)
        if labels is not None:
            labels = self.check_labels(labels, len(items))
        store = self.feature_cache
        desc = "vision encoder" + (" (cached)" if store is not None else "")
        # shown when the pace says it is long (never for no images); closed after the last batch,
        # or by tqdm itself when the generator is dropped early or an image fails
        bar = Progress(len(items), show=progress if items else False, desc=desc)
        for start in range(0, len(items), batch_size):
            chunk = items[start : start + batch_size]
            rgbs = [self.preprocessing.load(item, start + i) for i, item in enumerate(chunk)]  # EXIF rule
            names = (
                list(labels[start : start + len(chunk)])
                if labels is not None
                else [image_label(item, start + i) for i, item in enumerate(chunk)]
            )
            thumbs = [thumbnail(rgb) for rgb in rgbs] if thumbnails else None
            keys: list[str | None] = [None] * len(chunk)
            if store is None:
                batch = self.vision_states(torch.stack([self.preprocessing(rgb) for rgb in rgbs]))
            else:
                store_keys = [store.image_key(self, rgb) for rgb in rgbs]
                keys = list(store_keys)
                states = [store.get_states(self, key) for key in store_keys]
                missing = [i for i, s in enumerate(states) if s is None]
                if missing:
                    computed = self.vision_states(torch.stack([self.preprocessing(rgbs[i]) for i in missing]))
                    for j, i in enumerate(missing):
                        # the store returns the states as it will serve them later (its precision)
                        states[i] = store.put_states(self, store_keys[i], computed[j])
                found = [s for s in states if s is not None]  # all of them now
                batch = torch.stack([s.to(device=self.device, dtype=self.dtype) for s in found])
            bar.update(len(chunk))
            if bar.done >= len(items):
                bar.close()
            yield ImageBatch(batch, names, thumbs, keys)

    @staticmethod
    def check_labels(labels: Sequence[str] | str, n: int) -> list[str]:
        """``labels`` as a list of ``n`` str (a str is one label); an :class:`InputError` otherwise."""
        labels = [labels] if isinstance(labels, str) else [str(label) for label in labels]
        if len(labels) != n:
            raise InputError(f"got {len(labels)} labels for {n} images")
        return labels

    def itm_logits_of_image(
        self, tokenized: TokenizedTexts, states: torch.Tensor, key: str | None, text_batch_size: int = 128
    ) -> torch.Tensor:
        """ITM logits of shape (n_texts, 2) of every text against one image (states of shape
        (1, 1 + P, width)), through the feature store's remembered logits when the image has an entry
        name ``key`` (from :meth:`iter_image_states`)."""
        if key is None or self.feature_cache is None:
            return self.itm_logits(tokenized, states, text_batch_size)
        return self.feature_cache.itm_logits(
            self, key, tokenized, lambda sub: self.itm_logits(sub, states, text_batch_size)
        )

    def check_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        s = int(self.config.vision_config.image_size)
        if pixels.ndim == 3:
            pixels = pixels.unsqueeze(0)
        if pixels.ndim != 4 or pixels.shape[1:] != (3, s, s):
            raise InputError(
                f"pixel values must have shape (n, 3, {s}, {s}) for this net, got {tuple(pixels.shape)}"
            )
        return pixels

    def check_features(self, features: ImageFeatures, need_raw: bool) -> None:
        """Check ``features`` against this net: raw states kept if ``need_raw``, shapes, finite values.

        Numeric numpy arrays in ``.embeddings``, ``.projected`` or ``.raw`` are replaced by Tensors
        over the same memory (values unchanged); any other type is an :class:`InputTypeError`, NaN or
        inf an :class:`InputError` naming the images.
        """
        for field in ("embeddings", "projected", "raw"):
            value = getattr(features, field)
            if value is not None and not isinstance(value, torch.Tensor):
                setattr(features, field, _as_tensor(value, f"ImageFeatures.{field}"))
        if need_raw and features.raw is None:
            raise InputError(
                "these ImageFeatures were computed with keep_raw=False; the multimodal encoder needs "
                "the raw image states: call encode_images(..., keep_raw=True)"
            )
        expected = (self.n_image_tokens, self.width)
        if features.raw is not None and tuple(features.raw.shape[1:]) != expected:
            raise InputError(
                f"ImageFeatures raw states have shape {tuple(features.raw.shape)}, but this net expects "
                f"(n, {expected[0]}, {expected[1]}); they come from a different architecture "
                f"({features.model_name or 'unknown net'})"
            )
        dim = int(self.config.image_text_hidden_size)
        if features.embeddings.shape[-1] != dim:
            raise InputError(
                f"ImageFeatures embeddings have shape {tuple(features.embeddings.shape)}, expected (n, {dim})"
            )
        self.check_origin(features)  # same geometry, but maybe another net's weights
        tensors = [features.embeddings] + ([features.raw] if features.raw is not None else [])
        for t in tensors:
            if not torch.isfinite(t).all():
                bad = (~torch.isfinite(t.reshape(len(t), -1))).any(1).nonzero().flatten().tolist()
                raise InputError(f"ImageFeatures contain NaN or inf values (images {bad[:10]})")

    # --------------------------------------------------------------------------- encoders
    def encode_images(
        self,
        images: ImageLike | Sequence[ImageLike] | torch.Tensor,
        *,
        batch_size: int | None = None,
        keep_raw: bool = True,
        labels: Sequence[str] | None = None,
        progress: bool | None = None,
    ) -> ImageFeatures:
        """Run the image encoder.

        Parameters
        ----------
        images : image or sequence of images, or Tensor of shape (n, 3, s, s)
            PIL images (any mode), paths, encoded bytes, uint8 / float numpy arrays of shape
            (H, W), (H, W, 3) or (H, W, 4); or already preprocessed pixel values.
        batch_size : int, optional
            Images per vision-encoder pass; default 4 on CPU, 16 on a GPU
            (:attr:`BlipNet.default_batch_size`).
        keep_raw : bool, default True
            Keep the raw states (n, 1 + P, width) needed by the multimodal encoder.
        labels : sequence of str, optional
            One label per image; default: file names, or ``"image i"``.
        progress : bool, optional
            Show a progress bar; by default once the pace foresees more than 5 s
            (:class:`Progress`).

        Returns
        -------
        ImageFeatures
            ``.embeddings`` (n, 256), ``.projected`` (n, 256), ``.raw`` (n, 1 + P, width).
        """
        projected, raw, names, thumbs = [], [], [], []
        with torch.inference_mode():
            for states, batch_labels, batch_thumbs, _ in self.iter_image_states(
                images, batch_size, progress, labels
            ):
                projected.append(self.image_projection(states).cpu())
                if keep_raw:
                    raw.append(states)
                names.extend(batch_labels)
                if batch_thumbs is not None:
                    thumbs.extend(batch_thumbs)
        dim = int(self.config.image_text_hidden_size)
        proj = torch.cat(projected) if projected else torch.zeros((0, dim))
        if keep_raw:
            raw_t = torch.cat(raw) if raw else torch.zeros((0, self.n_image_tokens, self.width))
        return ImageFeatures(
            embeddings=F.normalize(proj, dim=-1),
            projected=proj,
            raw=raw_t if keep_raw else None,
            labels=names,
            thumbnails=thumbs if len(thumbs) == len(names) and names else None,
            model_name=self.name,
            fingerprint=self.fingerprint("image"),
        )

    def encode_texts(self, texts: str | Sequence[str], *, batch_size: int = 128) -> TextFeatures:
        """Run the unimodal text encoder (no cross-attention, ``[CLS]`` first).

        Parameters
        ----------
        texts : str or sequence of str
        batch_size : int, default 128
            Texts per text-encoder pass; below 1: :class:`blipviz.InputError`.

        Returns
        -------
        TextFeatures
            ``.embeddings`` (n, 256), ``.tokens``, ``.truncated``.
        """
        batch_size = positive_int("batch_size", batch_size)
        tokenized = self.tokenize(texts)
        with torch.inference_mode():
            proj = self.text_projections(tokenized, batch_size)
        return TextFeatures(
            embeddings=F.normalize(proj, dim=-1),
            projected=proj,
            texts=list(tokenized.texts),
            normalized=list(tokenized.normalized),
            tokens=[tokenized.tokens(i) for i in range(len(tokenized))],
            truncated=list(tokenized.truncated),
            tokenized=tokenized,
            model_name=self.name,
            fingerprint=self.fingerprint("text"),
            truncated_by=list(tokenized.truncated_by),
        )

    def match_probabilities(self, texts: Texts, image_features: ImageFeatures | torch.Tensor) -> torch.Tensor:
        """ITM probabilities (n_texts, 2): ``[:, 1]`` is the probability that text and image match.

        Text i is paired with image i, or one image's features are broadcast over all texts.

        Parameters
        ----------
        texts : str, sequence of str, or TextFeatures
        image_features : ImageFeatures (with raw states), or Tensor or numpy array of shape (n, 1 + P, width)
            n must be 1 or the number of texts.

        Raises
        ------
        InputError
            States of the wrong shape or count, or holding NaN or inf (names the images).
        InputTypeError
            ``image_features`` of another type, or a numpy array that is not numeric.
        """
        tokenized = self.tokenized(texts)
        if isinstance(image_features, ImageFeatures):
            self.check_features(image_features, need_raw=True)
            assert image_features.raw is not None  # check_features(need_raw=True)
            states = image_features.raw
        else:
            states = self.check_states(image_features)
        if states.shape[0] not in (1, len(tokenized)):
            raise InputError(
                f"got image states of shape {tuple(states.shape)} for {len(tokenized)} texts: pass one "
                "image (broadcast over all texts) or one image per text"
            )
        with torch.inference_mode():
            logits = self.itm_logits(tokenized, states)
        return logits.softmax(dim=-1)

    def check_states(self, states: Any) -> torch.Tensor:
        """Image states (n, 1 + P, width), or (1 + P, width) for one image, as a Tensor: a numeric
        numpy array is converted; NaN or inf is an :class:`InputError` naming the images."""
        if not isinstance(states, torch.Tensor | np.ndarray):
            raise InputTypeError(
                "image_features must be ImageFeatures, a Tensor or a numpy array, "
                f"got {type(states).__name__}"
            )
        states = _as_tensor(states, "image_features")
        expected = (self.n_image_tokens, self.width)
        if states.ndim == 2:
            states = states.unsqueeze(0)
        if states.ndim != 3 or tuple(states.shape[1:]) != expected:
            raise InputError(
                f"image states have shape {tuple(states.shape)}, but this net expects (n, {expected[0]}, "
                f"{expected[1]})"
            )
        if not torch.isfinite(states).all():
            bad = (~torch.isfinite(states.reshape(len(states), -1))).any(1).nonzero().flatten().tolist()
            raise InputError(f"image states contain NaN or inf values (images {bad[:10]})")
        return states

    # ------------------------------------------------------------------------------ saving
    def save_pretrained(self, folder: str | os.PathLike) -> Path:
        """Write the net in ``save_pretrained`` layout: config, safetensors weights, tokenizer and
        preprocessor config, loadable with ``load_model(folder)``."""
        import json

        if self.parts != set(PARTS):
            (held,) = self.parts
            raise MissingPartError(
                f"this net holds only the {held}'s weights (load_part): save a net from load_model"
            )

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        from .progress import no_weight_loading_bars

        with no_weight_loading_bars():  # no "Writing model shards" bar over a net's own arrays
            self.hf.save_pretrained(folder)
        blip_tokenizer().save_pretrained(folder)
        p = self.preprocessing
        (folder / "preprocessor_config.json").write_text(
            json.dumps(
                {
                    "image_processor_type": "BlipImageProcessor",
                    "processor_class": "BlipProcessor",
                    "do_convert_rgb": True,
                    "do_resize": True,
                    "size": {"height": p.image_size, "width": p.image_size},
                    "resample": 3,
                    "do_rescale": True,
                    "rescale_factor": 1 / 255,
                    "do_normalize": True,
                    "image_mean": list(p.mean),
                    "image_std": list(p.std),
                },
                indent=2,
            )
        )
        return folder


class NetPart:
    part = ""

    def __init__(self, model: BlipNet) -> None:
        self.model = model

    def parameter_names(self) -> list[str]:
        """Names of the weights of the wrapped net that this part uses (int8-packed ones included,
        under their float names: see :func:`blipviz.net.quantize.held_weights`)."""
        from .quantize import part_weight_names

        return part_weight_names(self.model.hf, self.part)

    @property
    def parameter_count(self) -> int:
        """Number of weights this part uses, int8-packed ones included (parts share the text tower's
        embeddings and self-attention)."""
        from .quantize import held_weights

        sizes = {w.name: w.elements for w in held_weights(self.model.hf)}
        return sum(sizes[n] for n in self.parameter_names())

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.model.name!r}, parameters={self.parameter_count:,})"


class ImageEncoder(NetPart):
    """Image part: images -> :class:`ImageFeatures` (see :meth:`BlipNet.encode_images`)."""

    part = "ImageEncoder"

    def __call__(self, images, **kwargs: Any) -> ImageFeatures:
        return self.model.encode_images(images, **kwargs)


class TextEncoder(NetPart):
    """Unimodal text part: texts -> :class:`TextFeatures` (see :meth:`BlipNet.encode_texts`)."""

    part = "TextEncoder"

    def __call__(self, texts, **kwargs: Any) -> TextFeatures:
        return self.model.encode_texts(texts, **kwargs)


class MultimodalEncoder(NetPart):
    """Image-grounded text encoder with the ITM head: (texts, image features) -> (n_texts, 2)
    match probabilities (see :meth:`BlipNet.match_probabilities`)."""

    part = "MultimodalEncoder"

    def __call__(self, texts, image_features) -> torch.Tensor:
        return self.model.match_probabilities(texts, image_features)
