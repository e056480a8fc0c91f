"""On-disk cache of image features, so that a notebook section run twice waits for the ViT once.

``load_model(..., cache_dir="features")`` (or ``model.feature_cache = FeatureCache("features")``, or
``with blipviz.cache.feature_cache(model, "features"):``) makes every image-feature computation of
the net (``encode_images``, ``itm_scores``, ``cosine_scores``, ``scores``, ``rank``, ``search``)
look each image up first. One image is one ``safetensors`` file holding its raw ViT states
(1 + P, width), the "RawFeatures" port from which every other image feature is derived.

The key of an entry is a SHA-256 over

- the **net**: its name (checkpoint id, or folder), the Hub revision it was loaded from when known,
  and a fingerprint of the weights that produce image features (``vision_model`` and
  ``vision_proj``, quantised or not) with their dtype. Hashing the weights (a fraction of a second
  for ViT-B/16, once per net and cache) means that a different checkpoint, revision, random seed or
  a quantised copy never reuses another net's entries;
- the **preprocessing** (image size, mean, std, resampling) and the cache format version;
- the **image content**: the decoded RGB pixels (mode, size, bytes), so the same picture given as a
  path, bytes, PIL image or array hits the same entry, and an edited file misses.

Each file records these in its metadata with a BLAKE2b checksum of the stored bytes. An entry that
cannot be read, whose checksum, metadata, shape or dtype is wrong, or that holds NaN/inf, is
treated as corrupted: a warning is logged on the ``"blipviz"`` logger, the file is deleted, and
the features are recomputed and stored again. A corrupted entry is never returned. Writes go to a
temporary file that is renamed into place, so a crash never leaves a half-written entry.

Weights edited in place after the fingerprint was taken are not noticed: call
:meth:`FeatureCache.forget_model` (or build a new cache) after changing a net's weights.

Pixel tensors given directly to the net are not cached (their preprocessing is unknown).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .errors import InputError

__all__ = ["CacheStats", "FeatureCache", "feature_cache", "image_content_hash", "weights_fingerprint"]

logger = logging.getLogger("blipviz")

FORMAT_VERSION = "1"
_RAW_DTYPES = {torch.float32: "float32", torch.float16: "float16"}


def image_content_hash(rgb) -> str:
    """SHA-256 of a decoded RGB PIL image: mode, size and pixel bytes."""
    h = hashlib.sha256()
    h.update(f"{rgb.mode}|{rgb.width}x{rgb.height}|".encode())
    h.update(rgb.tobytes())
    return h.hexdigest()


def _update_with(h, value: Any) -> None:
    if isinstance(value, torch.Tensor):
        t = value.detach()
        if t.is_quantized:
            if t.qscheme() in (torch.per_tensor_affine, torch.per_tensor_symmetric):
                h.update(f"q{t.q_scale()!r},{t.q_zero_point()}".encode())
            else:
                _update_with(h, t.q_per_channel_scales())
                _update_with(h, t.q_per_channel_zero_points())
            t = t.int_repr()
        t = t.to("cpu").contiguous()
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy())
    elif isinstance(value, tuple | list):
        for v in value:
            _update_with(h, v)
    else:
        h.update(repr(value).encode())


def weights_fingerprint(hf_model, parts: Sequence[str] = ("vision_model", "vision_proj")) -> str:
    """SHA-256 of the weights of some sub-modules, by default those that produce image features.

    Parameters
    ----------
    hf_model : transformers.BlipForImageTextRetrieval
        Float or int8-quantised.
    parts : sequence of str, default ("vision_model", "vision_proj")
        Attribute names of the sub-modules to hash; ``("text_encoder", "itm_head")`` are the weights
        that turn image states and a text into ITM logits.
    """
    h = hashlib.sha256()
    for part in parts:
        prefix, module = part + ".", getattr(hf_model, part)
        for name, value in sorted(module.state_dict(keep_vars=False).items()):
            h.update((prefix + name).encode())
            _update_with(h, value)
    return h.hexdigest()


@dataclass
class CacheStats:
    """Counts since the cache was built: image ``hits``, ``misses`` (computed and stored),
    ``corrupted`` entries, and ITM ``itm_hits`` / ``itm_misses`` counted per (image, text) pair."""

    hits: int = 0
    misses: int = 0
    corrupted: int = 0
    itm_hits: int = 0
    itm_misses: int = 0


@dataclass
class _ModelKey:
    text: str  # the net's part of every key
    metadata: dict[str, str] = field(default_factory=dict)


class FeatureCache:
    """A folder of image features, one ``safetensors`` file per (net, preprocessing, image).

    Parameters
    ----------
    directory : str or path
        Created if missing. Several nets can share one folder.
    raw_dtype : torch.float32 or torch.float16, default torch.float32
        Storage type of the raw states. ``float16`` halves the disk use (0.9 MB instead of 1.8 MB per
        ViT-B/16 image); the states come back as float32 rounded to float16 (relative error about
        5e-4), so scores move by about 1e-3: use it when disk matters more than the last digits.

    Attributes
    ----------
    stats : CacheStats
        Hits, misses and corrupted entries so far.
    """

    def __init__(self, directory: str | os.PathLike, *, raw_dtype: torch.dtype = torch.float32) -> None:
        if raw_dtype not in _RAW_DTYPES:
            raise InputError(f"raw_dtype must be torch.float32 or torch.float16, got {raw_dtype}")
        self.directory = Path(directory).expanduser()
        self.directory.mkdir(parents=True, exist_ok=True)
        self.raw_dtype = raw_dtype
        self.stats = CacheStats()
        self._model_keys: dict[int, _ModelKey] = {}
        self._itm_model_keys: dict[int, str] = {}

    def __repr__(self) -> str:
        return (
            f"FeatureCache({str(self.directory)!r}, raw_dtype={_RAW_DTYPES[self.raw_dtype]}, "
            f"hits={self.stats.hits}, misses={self.stats.misses}, corrupted={self.stats.corrupted})"
        )

    # ------------------------------------------------------------------------------------ keys
    def _model_key(self, model) -> _ModelKey:
        cached = self._model_keys.get(id(model.hf))
        if cached is None:
            model._require_part("ImageEncoder", "caching image features")
            revision = str(getattr(model.config, "_commit_hash", None) or "")
            metadata = {
                "model_name": str(model.name),
                "revision": revision,
                "weights_sha256": weights_fingerprint(model.hf),
                "dtype": str(model.dtype),
                "quantization": str(getattr(model, "quantization", None) or ""),
            }
            cached = _ModelKey(json.dumps(metadata, sort_keys=True), metadata)
            self._model_keys[id(model.hf)] = cached
        return cached

    def forget_model(self, model) -> None:
        """Drop the remembered weights fingerprints of ``model`` (after editing its weights)."""
        self._model_keys.pop(id(model.hf), None)
        self._itm_model_keys.pop(id(model.hf), None)

    def _itm_model_key(self, model) -> str:
        """The net's part of ITM entries: the text side's weights and every option that changes the
        logits of given token ids and image states (first token, dtype, stored raw precision)."""
        cached = self._itm_model_keys.get(id(model.hf))
        if cached is None:
            model._require_part("MultimodalEncoder", "caching ITM logits")
            cached = json.dumps(
                {
                    "text_weights_sha256": weights_fingerprint(model.hf, ("text_encoder", "itm_head")),
                    "first_token": model.first_token,
                    "dtype": str(model.dtype),
                    "raw_dtype": _RAW_DTYPES[self.raw_dtype],
                    "quantization": str(getattr(model, "quantization", None) or ""),
                },
                sort_keys=True,
            )
            self._itm_model_keys[id(model.hf)] = cached
        return cached

    @staticmethod
    def _preprocessing_text(model) -> str:
        p = model.preprocessing
        return json.dumps(
            {"image_size": p.image_size, "mean": list(p.mean), "std": list(p.std), "resample": "bicubic-pil"}
        )

    def key(self, model, content_hash: str) -> str:
        """The entry name of an image (by :func:`image_content_hash`) for ``model``."""
        h = hashlib.sha256()
        for part in (
            FORMAT_VERSION,
            self._model_key(model).text,
            self._preprocessing_text(model),
            content_hash,
        ):
            h.update(part.encode())
            h.update(b"\x00")
        return h.hexdigest()

    def path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.safetensors"

    # ----------------------------------------------------------------------------- read/write
    def _corrupted(self, path: Path, why: str) -> None:
        self.stats.corrupted += 1
        logger.warning("feature cache: corrupted entry %s (%s); recomputing it", path, why)
        with contextlib.suppress(OSError):
            path.unlink()

    def load(self, model, key: str) -> torch.Tensor | None:
        """Raw states (1 + P, width) as float32, or ``None`` when missing or corrupted."""
        from safetensors import safe_open

        path = self.path(key)
        if not path.is_file():
            return None
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                raw = f.get_tensor("raw")
        except Exception as exc:
            self._corrupted(path, f"unreadable: {type(exc).__name__}: {exc}")
            return None
        expected_shape = (model.n_image_tokens, model.width)
        if meta.get("key") != key or meta.get("format") != FORMAT_VERSION:
            self._corrupted(path, "metadata does not match its key")
            return None
        if tuple(raw.shape) != expected_shape or raw.dtype not in _RAW_DTYPES:
            self._corrupted(path, f"raw states of shape {tuple(raw.shape)} and dtype {raw.dtype}")
            return None
        if meta.get("checksum") != _checksum(raw):
            self._corrupted(path, "checksum mismatch")
            return None
        raw = raw.float()
        if not torch.isfinite(raw).all():
            self._corrupted(path, "NaN or inf values")
            return None
        return raw

    def store(self, model, key: str, raw: torch.Tensor) -> None:
        """Write the raw states (1 + P, width) of one image atomically."""
        from safetensors.torch import save_file

        stored = raw.detach().to(device="cpu", dtype=self.raw_dtype).contiguous()
        meta = dict(self._model_key(model).metadata)
        meta.update(
            key=key,
            format=FORMAT_VERSION,
            preprocessing=self._preprocessing_text(model),
            checksum=_checksum(stored),
        )
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        os.close(fd)
        try:
            save_file({"raw": stored}, tmp, metadata=meta)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def clear(self) -> int:
        """Delete every entry of this folder (image features and ITM logits); returns the number of
        files removed."""
        removed = 0
        for path in [*self.directory.glob("*/*.safetensors"), *self.directory.glob("itm/*/*.json")]:
            with contextlib.suppress(OSError):
                path.unlink()
                removed += 1
        return removed

    def __len__(self) -> int:
        return sum(1 for _ in self.directory.glob("*/*.safetensors"))

    # ------------------------------------------------------------------------------ ITM logits
    def _itm_path(self, model, image_key: str) -> Path:
        h = hashlib.sha256(f"{FORMAT_VERSION}\x00{image_key}\x00{self._itm_model_key(model)}".encode())
        return self.directory / "itm" / image_key[:2] / f"{h.hexdigest()}.json"

    def itm_logits(self, model, image_key: str, tokenized, compute) -> torch.Tensor:
        """ITM logits (n_texts, 2) of one cached image against texts, computing only the new ones.

        Parameters
        ----------
        model : BlipITM
        image_key : str
            The image's entry name (:meth:`key`).
        tokenized : blipviz.text.TokenizedTexts
        compute : callable
            ``compute(subset_of_tokenized) -> Tensor (n_subset, 2)`` for the texts not stored yet.

        A text is identified by its token ids (after normalisation and truncation), so the same
        text always hits. The entry of an image is one small JSON file; an unreadable or malformed
        one is logged, deleted and recomputed.
        """
        path = self._itm_path(model, image_key)
        stored: dict[str, list[float]] = {}
        if path.is_file():
            try:
                stored = json.loads(path.read_text())
                if not isinstance(stored, dict) or not all(
                    isinstance(v, list) and len(v) == 2 and all(isinstance(x, float) for x in v)
                    for v in stored.values()
                ):
                    raise ValueError("not a mapping of text keys to two logits")
            except (OSError, ValueError) as exc:
                self._corrupted(path, f"ITM entry: {exc}")
                stored = {}
        text_keys = []
        for i in range(len(tokenized)):
            n = int(tokenized.attention_mask[i].sum())
            ids = tokenized.input_ids[i, :n].tolist()
            text_keys.append(hashlib.sha256(json.dumps(ids).encode()).hexdigest()[:32])
        missing = [i for i, k in enumerate(text_keys) if k not in stored]
        self.stats.itm_hits += len(text_keys) - len(missing)
        self.stats.itm_misses += len(missing)
        if missing:
            computed = compute(tokenized.select(missing)).detach().float().cpu()
            for j, i in enumerate(missing):
                stored[text_keys[i]] = [float(x) for x in computed[j]]
            self._write_atomically(path, json.dumps(stored))
        return torch.tensor([stored[k] for k in text_keys], dtype=torch.float32).reshape(-1, 2)

    @staticmethod
    def _write_atomically(path: Path, text: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(text)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    # ------------------------------------------------------------------------------ iteration
    def iter_states(
        self,
        model,
        items: Sequence[Any],
        batch_size: int | None,
        progress: bool | None = None,
        labels: Sequence[str] | None = None,
        *,
        with_keys: bool = False,
    ) -> Iterator[tuple]:
        """Like ``BlipITM._iter_image_states`` for a list of images, through the cache.

        Each image is decoded once (for its content hash, label and thumbnail); only the misses of a
        batch are preprocessed and go through the ViT, in one pass. With ``with_keys=True`` each
        batch also carries the entry names of its images, for :meth:`itm_logits`.
        """
        from .images import load_image
        from .itm import _PROGRESS_MIN_IMAGES, THUMBNAIL_SIZE, _image_label

        batch_size = model._batch_size(batch_size)
        show = len(items) >= _PROGRESS_MIN_IMAGES if progress is None else progress
        starts: Any = range(0, len(items), batch_size)
        if show:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc="vision encoder (cached)", unit="batch", total=len(starts))
        for start in starts:
            chunk = items[start : start + batch_size]
            states: list[torch.Tensor | None] = []
            names, thumbs, keys, rgbs = [], [], [], []
            for offset, item in enumerate(chunk):
                index = start + offset
                rgb = load_image(item, index)
                key = self.key(model, image_content_hash(rgb))
                raw = self.load(model, key)
                if raw is not None:
                    self.stats.hits += 1
                states.append(raw)
                keys.append(key)
                rgbs.append(rgb)
                names.append(labels[index] if labels is not None else _image_label(item, index))
                thumb = rgb.copy()
                thumb.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE))
                thumbs.append(thumb)
            missing = [i for i, s in enumerate(states) if s is None]
            if missing:
                pixels = torch.stack([model.preprocessing(rgbs[i]) for i in missing])
                computed = model._vision_states(pixels)
                for j, i in enumerate(missing):
                    self.stats.misses += 1
                    self.store(model, keys[i], computed[j])
                    states[i] = computed[j].to(device="cpu", dtype=self.raw_dtype).float()
            batch = torch.stack(states).to(device=model.device, dtype=model.dtype)  # type: ignore[arg-type]
            yield (batch, names, thumbs, keys) if with_keys else (batch, names, thumbs)


def _checksum(t: torch.Tensor) -> str:
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{t.dtype}{tuple(t.shape)}".encode())
    h.update(t.contiguous().reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


@contextlib.contextmanager
def feature_cache(
    model, directory: str | os.PathLike | FeatureCache, **options: Any
) -> Iterator[FeatureCache]:
    """Use an on-disk feature cache for ``model`` inside the block.

    Parameters
    ----------
    model : BlipITM
    directory : str, path or FeatureCache
    **options
        Passed to :class:`FeatureCache` (``raw_dtype``).

    Yields
    ------
    FeatureCache
    """
    cache = directory if isinstance(directory, FeatureCache) else FeatureCache(directory, **options)
    previous = model.feature_cache
    model.feature_cache = cache
    try:
        yield cache
    finally:
        model.feature_cache = previous
