"""The BLIP image-text matching family: the one place that knows which nets exist.

A net is one combination of

- **Part**: ``"ImageEncoder"``, ``"TextEncoder"``, ``"MultimodalEncoder"``;
- **Architecture**: ``"ViT-B/16"`` (default), ``"ViT-L/16"``;
- **Dataset** (captioning data it was fine-tuned on): ``"COCO"`` (default), ``"Flickr30k"``.

Each (architecture, dataset) pair is one Hugging Face checkpoint holding all three parts. The
registry also carries each architecture's geometry, so that ``pretrained=False`` builds the net
without fetching any file, and the image preprocessing of the family.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import socket
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from .errors import InputError, InputTypeError, ModelLoadError, OfflineError
from .images import BLIP_IMAGE_MEAN, BLIP_IMAGE_STD, ImagePreprocessing

__all__ = [
    "ARCHITECTURES",
    "DATASETS",
    "PARTS",
    "Checkpoint",
    "blip_config",
    "list_models",
    "load_model",
    "load_part",
    "parameters_information",
]

logger = logging.getLogger("blipviz")

PARTS = ("ImageEncoder", "TextEncoder", "MultimodalEncoder")
ARCHITECTURES = ("ViT-B/16", "ViT-L/16")
DATASETS = ("COCO", "Flickr30k")
DEFAULT_PART = "MultimodalEncoder"
DEFAULT_ARCHITECTURE = "ViT-B/16"
DEFAULT_DATASET = "COCO"

# Vision towers of the family. The text tower is BERT-base for every net.
_VISION_GEOMETRY = {
    "ViT-B/16": dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12),
    "ViT-L/16": dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16),
}
_TEXT_GEOMETRY = dict(
    vocab_size=30524,
    hidden_size=768,
    intermediate_size=3072,
    num_hidden_layers=12,
    num_attention_heads=12,
    max_position_embeddings=512,
    layer_norm_eps=1e-12,
)
_IMAGE_SIZE = 384
_PATCH_SIZE = 16
_VIT_LAYER_NORM_EPS = 1e-6  # the original ViT's partial(nn.LayerNorm, eps=1e-6)
_EMBED_DIM = 256


@dataclass(frozen=True)
class Checkpoint:
    """One row of the family table: an (architecture, dataset) pair and its checkpoint."""

    architecture: str
    dataset: str
    hub_id: str

    @property
    def preprocessing(self) -> ImagePreprocessing:
        return ImagePreprocessing(_IMAGE_SIZE, BLIP_IMAGE_MEAN, BLIP_IMAGE_STD)


_CHECKPOINTS = (
    Checkpoint("ViT-B/16", "COCO", "Salesforce/blip-itm-base-coco"),
    Checkpoint("ViT-L/16", "COCO", "Salesforce/blip-itm-large-coco"),
    Checkpoint("ViT-B/16", "Flickr30k", "Salesforce/blip-itm-base-flickr"),
    Checkpoint("ViT-L/16", "Flickr30k", "Salesforce/blip-itm-large-flickr"),
)


def _check_choice(kind: str, value: Any, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise InputError(f"unknown {kind} {value!r}; allowed values: {', '.join(map(repr, allowed))}")
    return value


def checkpoint_for(architecture: str = DEFAULT_ARCHITECTURE, dataset: str = DEFAULT_DATASET) -> Checkpoint:
    """The registry row of an (architecture, dataset) pair; ``ValueError`` lists the allowed values."""
    _check_choice("architecture", architecture, ARCHITECTURES)
    _check_choice("dataset", dataset, DATASETS)
    return next(c for c in _CHECKPOINTS if c.architecture == architecture and c.dataset == dataset)


def _checkpoint_by_hub_id(hub_id: str) -> Checkpoint | None:
    return next((c for c in _CHECKPOINTS if c.hub_id.lower() == hub_id.lower()), None)


def blip_config(architecture: str = DEFAULT_ARCHITECTURE):
    """The ``transformers.BlipConfig`` of an architecture of the family, from the registry alone.

    Geometry is that of the original BLIP: BERT-base text tower with 12 heads, ViT LayerNorm eps 1e-6,
    384 px images in 16 px patches, 256-d joint space.
    """
    from transformers import BlipConfig

    _check_choice("architecture", architecture, ARCHITECTURES)
    vision = dict(
        _VISION_GEOMETRY[architecture],
        image_size=_IMAGE_SIZE,
        patch_size=_PATCH_SIZE,
        layer_norm_eps=_VIT_LAYER_NORM_EPS,
    )
    config = BlipConfig(
        text_config=dict(_TEXT_GEOMETRY), vision_config=vision, image_text_hidden_size=_EMBED_DIM
    )
    config.architectures = ["BlipForImageTextRetrieval"]
    return config


def correct_config(config, source: str = "checkpoint"):
    """Fix the known defects of published BLIP ITM configs in place, logging each fix.

    - The text encoder is BERT-base (768 wide) with 12 attention heads; several published configs
      say 8, which changes every attention computation.
    - The ViT LayerNorm eps is 1e-6 as in the original ViT (transformers' default is 1e-5).
    """
    text = config.text_config
    heads = _TEXT_GEOMETRY["num_attention_heads"]
    if text.hidden_size == _TEXT_GEOMETRY["hidden_size"] and text.num_attention_heads != heads:
        logger.info(
            "%s: text encoder num_attention_heads corrected from %d to %d (BERT-base, as in BLIP)",
            source,
            text.num_attention_heads,
            heads,
        )
        text.num_attention_heads = heads
    vision = config.vision_config
    if vision.layer_norm_eps != _VIT_LAYER_NORM_EPS:
        logger.info(
            "%s: ViT layer_norm_eps corrected from %g to %g (as in the original ViT)",
            source,
            vision.layer_norm_eps,
            _VIT_LAYER_NORM_EPS,
        )
        vision.layer_norm_eps = _VIT_LAYER_NORM_EPS
    return config


def part_parameter_names(model, part: str) -> list[str]:
    """Names of the parameters of ``model`` (a ``BlipForImageTextRetrieval``) that ``part`` uses.

    The parts share weights: the text encoder's embeddings and self-attention serve both the
    TextEncoder and the MultimodalEncoder.
    """
    _check_choice("part", part, PARTS)
    names = [n for n, _ in model.named_parameters()]
    if part == "ImageEncoder":
        return [n for n in names if n.startswith(("vision_model.", "vision_proj."))]
    if part == "TextEncoder":
        return [
            n
            for n in names
            if (n.startswith("text_encoder.") and ".crossattention." not in n) or n.startswith("text_proj.")
        ]
    return [n for n in names if n.startswith(("text_encoder.", "itm_head."))]


@functools.cache
def _parameter_counts(architecture: str) -> dict[str, int]:
    from transformers import BlipForImageTextRetrieval

    with torch.device("meta"):
        model = BlipForImageTextRetrieval(blip_config(architecture))
    params = dict(model.named_parameters())
    counts = {part: sum(params[n].numel() for n in part_parameter_names(model, part)) for part in PARTS}
    counts["all"] = sum(p.numel() for p in params.values())
    return counts


def list_models() -> pd.DataFrame:
    """The nets of the family, one row each.

    Returns
    -------
    DataFrame with columns ``part``, ``architecture``, ``dataset``, ``checkpoint``, ``parameters``
    (the number of weights that part uses; parts share the text tower's embeddings and
    self-attention) and ``default`` (the default net).
    """
    rows = []
    for ckpt in _CHECKPOINTS:
        counts = _parameter_counts(ckpt.architecture)
        for part in PARTS:
            rows.append(
                dict(
                    part=part,
                    architecture=ckpt.architecture,
                    dataset=ckpt.dataset,
                    checkpoint=ckpt.hub_id,
                    parameters=counts[part],
                    default=(part, ckpt.architecture, ckpt.dataset)
                    == (DEFAULT_PART, DEFAULT_ARCHITECTURE, DEFAULT_DATASET),
                )
            )
    return pd.DataFrame(rows).sort_values(["part", "architecture", "dataset"], ignore_index=True)


def parameters_information() -> pd.DataFrame:
    """The parameters that pick a net of the family: name, allowed values, default, meaning."""
    return pd.DataFrame(
        [
            dict(
                parameter="part",
                values=list(PARTS),
                default=DEFAULT_PART,
                meaning="which encoder: image, text, or the image-grounded text encoder with the ITM head",
            ),
            dict(
                parameter="architecture",
                values=list(ARCHITECTURES),
                default=DEFAULT_ARCHITECTURE,
                meaning="vision transformer of the image encoder",
            ),
            dict(
                parameter="dataset",
                values=list(DATASETS),
                default=DEFAULT_DATASET,
                meaning="image-caption data the net was fine-tuned on for retrieval",
            ),
        ]
    ).set_index("parameter")


# ---------------------------------------------------------------------------------------- loading


#: Shape of a Hugging Face Hub id ("owner/name"), as opposed to a local folder.
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


def _hub_reachable(timeout: float = 3.0) -> bool:
    """One quick TCP connection to the Hub's endpoint, so an offline machine fails in seconds."""
    from huggingface_hub import constants

    url = urllib.parse.urlparse(constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=timeout):
            return True
    except Exception:
        return False


def _offline_message(name: str, reason: str) -> str:
    return (
        f"checkpoint {name!r} is not in the local Hugging Face cache and {reason}. Ways forward: "
        "download it once on a machine with access (it is then cached), or save it with "
        "`save_pretrained` and pass that folder to load_model(folder), or use "
        "load_model('tiny-random') / load_model(pretrained=False) for an offline net with random weights."
    )


def _is_offline_env() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _from_pretrained(source: str, *, local_only: bool):
    from transformers import BlipConfig, BlipForImageTextRetrieval

    config = BlipConfig.from_pretrained(source, local_files_only=local_only)
    if config.model_type != "blip":
        raise ModelLoadError(f"{source!r} holds a {config.model_type!r} model, not a BLIP model")
    archs = list(getattr(config, "architectures", None) or [])
    if archs and "BlipForImageTextRetrieval" not in archs:
        raise ModelLoadError(
            f"{source!r} is a BLIP checkpoint for {', '.join(archs)}, not an image-text matching net "
            "(BlipForImageTextRetrieval); pick one of the Salesforce/blip-itm-* checkpoints"
        )
    correct_config(config, source)
    model, info = BlipForImageTextRetrieval.from_pretrained(
        source, config=config, local_files_only=local_only, output_loading_info=True
    )
    missing = [k for k in info.get("missing_keys", []) if "position_ids" not in k]
    if missing:
        raise ModelLoadError(
            f"{source!r} lacks {len(missing)} weights of an image-text matching net "
            f"(e.g. {', '.join(sorted(missing)[:3])}); it is not a BLIP ITM checkpoint"
        )
    return model


def _could_be_hub_id(name: str) -> bool:
    """Whether ``name`` has the shape of a Hugging Face Hub id (``owner/name``), not only of a path."""
    return bool(HUB_ID.fullmatch(name)) and ".." not in name and "--" not in name and len(name) <= 96


def _unsafe_pickle_message(source: str, exc: BaseException) -> str | None:
    """The message for weights that torch's safe loader refused, or ``None`` for any other failure.

    torch's own message advises retrying with ``weights_only=False`` or allow-listing the pickled
    classes; both run code from the file, so neither is repeated here."""
    import pickle

    chain, seen = [], set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__
    if not any(isinstance(e, pickle.UnpicklingError) or "weights_only" in str(e) for e in chain):
        return None
    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", " ".join(str(e) for e in chain))
    what = f" (it pickles the object {found.group(1)})" if found else ""
    return (
        f"{source!r} holds pickle weights (pytorch_model.bin) that torch's safe loader refuses{what}. "
        "Only safetensors weights (model.safetensors) or weights loadable with torch's safe loader "
        "(torch.load(..., weights_only=True): tensors and plain containers) are accepted: a pickle "
        "can run arbitrary code when loaded. Ask the checkpoint's publisher for a safetensors copy"
    )


def _load_failure(source: str, exc: BaseException, what: str) -> ModelLoadError:
    """A :class:`ModelLoadError` for ``source`` that failed to load with ``exc``."""
    message = _unsafe_pickle_message(source, exc)
    return ModelLoadError(message or f"{what}: {exc}")


def _load_hf_model(name_or_path: str):
    """Load a BlipForImageTextRetrieval from a local folder or a hub id, failing fast offline.

    A string that names an existing path is a folder. A string that does not, and cannot be a hub id
    (it starts with ``.``, ``~`` or ``/``, or has no ``owner/name`` shape), is a missing folder. A
    string that could be either (``"models/blip"``) is looked up as a hub id, and the error then
    names the missing folder too.
    """
    path = Path(name_or_path).expanduser()
    folder = os.path.abspath(path)
    hub_like = _could_be_hub_id(name_or_path) and not name_or_path.startswith((".", "~"))
    if path.exists() or not hub_like:
        if not path.exists():
            raise ModelLoadError(
                f"no such folder: {folder!r} (load_model expected a folder in save_pretrained layout"
                + (f", given as {name_or_path!r})" if name_or_path != folder else ")")
            )
        if not path.is_dir():
            raise ModelLoadError(f"{folder!r} is a file, not a folder in save_pretrained layout")
        if not (path / "config.json").is_file():
            raise ModelLoadError(
                f"{folder!r} has no config.json: expected a folder written by save_pretrained "
                "(config.json and model.safetensors)"
            )
        try:
            return _from_pretrained(str(path), local_only=True)
        except ModelLoadError:
            raise
        except Exception as exc:
            raise _load_failure(folder, exc, f"{folder!r} could not be loaded") from None
    # A hub id (or a missing relative folder of the same shape): the cache first, then (only if the
    # Hub answers) a download.
    either = (
        ""
        if _checkpoint_by_hub_id(name_or_path) is not None
        else f"no folder {folder!r} exists, and as a hub id, "
    )
    try:
        return _from_pretrained(name_or_path, local_only=True)
    except ModelLoadError:
        raise
    except Exception as exc:
        if (message := _unsafe_pickle_message(name_or_path, exc)) is not None:
            raise ModelLoadError(message) from None
    if _is_offline_env():
        raise OfflineError(either + _offline_message(name_or_path, "HF_HUB_OFFLINE is set"))
    if not _hub_reachable():
        raise OfflineError(
            either + _offline_message(name_or_path, "the Hugging Face Hub could not be reached")
        )
    try:
        return _from_pretrained(name_or_path, local_only=False)
    except ModelLoadError:
        raise
    except Exception as exc:
        raise _load_failure(
            name_or_path, exc, either + f"checkpoint {name_or_path!r} could not be loaded from the Hub"
        ) from None


def _random_hf_model(config, seed: int):
    from transformers import BlipForImageTextRetrieval

    from .random_weights import informative_init_

    model = BlipForImageTextRetrieval(config)
    informative_init_(model, seed)
    return model


def _available_devices() -> list[str]:
    """The devices this machine can run a net on: ``"cpu"``, then each GPU or other accelerator."""
    devices = ["cpu"]
    if torch.cuda.is_available():
        devices += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if torch.backends.mps.is_available():
        devices.append("mps")
    xpu = getattr(torch, "xpu", None)
    if xpu is not None and xpu.is_available():
        devices += [f"xpu:{i}" for i in range(xpu.device_count())]
    return devices


def _check_device(device: str | torch.device | None) -> torch.device:
    """``device`` as a ``torch.device`` this machine has (``None`` is ``"cpu"``).

    Raises
    ------
    InputTypeError
        ``device`` is neither a str nor a ``torch.device``.
    InputError
        Not a device string, a device type blipviz does not run on, or a device this machine lacks
        (CUDA without a CUDA GPU, MPS off a Mac); the message lists the devices there are.
    """
    if device is None:
        return torch.device("cpu")
    if not isinstance(device, str | torch.device):
        raise InputTypeError(
            f"device must be a str such as 'cpu' or 'cuda:0', or a torch.device; got {type(device).__name__}"
        )
    available = _available_devices()
    listed = ", ".join(map(repr, available))
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise InputError(f"device {device!r} is not a device string; this machine has: {listed}") from None
    kind = parsed.type
    if kind not in ("cpu", "cuda", "mps", "xpu"):
        raise InputError(f"device {str(parsed)!r} cannot run a net; this machine has: {listed}")
    if kind == "cpu":
        return parsed
    count = sum(d.split(":")[0] == kind for d in available)
    if count == 0:
        name = {"cuda": "CUDA", "mps": "MPS (Apple GPU)", "xpu": "XPU (Intel GPU)"}[kind]
        raise InputError(f"device {str(parsed)!r}: {name} is not available on this machine; it has: {listed}")
    if parsed.index is not None and parsed.index >= count and kind != "mps":
        raise InputError(f"device {str(parsed)!r}: this machine has {count} {kind} devices: {listed}")
    return parsed


def _check_seed(seed: Any) -> int:
    """``seed`` as an int, or an error: a whole number (not a bool) that torch accepts as a seed."""
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise InputTypeError(f"seed must be an int, got {type(seed).__name__} {seed!r}")
    seed = int(seed)
    if not -(2**63) <= seed < 2**64:
        raise InputError(f"seed must lie in [-2**63, 2**64), got {seed}")
    return seed


def load_model(
    name_or_path: str | os.PathLike | None = None,
    *,
    architecture: str = DEFAULT_ARCHITECTURE,
    dataset: str = DEFAULT_DATASET,
    pretrained: bool = True,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    first_token: str = "enc",
    normalize_text: bool = True,
    max_text_tokens: int | None = 35,
    seed: int = 0,
    cache_dir: str | os.PathLike | Any | None = None,
    fast_attention: bool = True,
    quantize: str | None = None,
):
    """Load a BLIP image-text matching net: all three parts over one set of weights.

    Parameters
    ----------
    name_or_path : str or path, optional
        A Hugging Face hub id (``"Salesforce/blip-itm-base-coco"``), a local folder in
        ``save_pretrained`` layout, or ``"tiny-random"`` (a small offline net for tests and demos).
        Default: the checkpoint of ``architecture`` and ``dataset``.
    architecture : {"ViT-B/16", "ViT-L/16"}
    dataset : {"COCO", "Flickr30k"}
    pretrained : bool, default True
        ``False`` builds the same architecture with random weights from the registry's geometry;
        nothing is downloaded. The random weights are scaled so that scores differ between inputs
        (see :func:`blipviz.random_weights.informative_init_`), drawn from ``seed``.
    device : str or torch.device, optional
        Default ``"cpu"``. ``"cuda"`` works where a CUDA GPU is present, ``"mps"`` on a Mac with an
        Apple GPU; a device this machine lacks raises :class:`blipviz.InputError` listing those it has.
    dtype : torch.dtype, optional
        Default ``torch.float32`` (BLIP's numbers). ``torch.float16`` / ``torch.bfloat16`` on GPU;
        ``torch.bfloat16`` also on CPUs with bfloat16 instructions (about 2.5x faster there, scores
        within about 0.03 of float32). Scores are always returned as float64; a half-precision overflow raises
        :class:`blipviz.NumericalError`.
    first_token : {"enc", "cls"}, default "enc"
        First token of the ITM pass. ``"enc"`` is BLIP's ``[ENC]`` (30523); ``"cls"`` reproduces the
        Hugging Face model card, which keeps ``[CLS]``.
    normalize_text : bool, default True
        Apply BLIP's caption normalisation (:func:`blipviz.text.normalize_caption`).
    max_text_tokens : int or None, default 35
        BLIP's token limit; ``None`` means the text encoder's own limit (its 512 positions); a larger
        value raises :class:`blipviz.InputError`. Cut texts are flagged and warned about
        (:class:`blipviz.TruncationWarning`).
    seed : int, default 0
        Seed of the random weights when ``pretrained=False`` or ``"tiny-random"`` (an int, not
        ``None``).
    cache_dir : str, path or blipviz.cache.FeatureCache, optional
        Keep image features on disk there and look every image up first (see :mod:`blipviz.cache`):
        a second run over the same images skips the vision encoder.
    fast_attention : bool, default True
        Use torch's fused ``scaled_dot_product_attention`` in the ViT whenever no attention weights
        are requested (equal to transformers' attention to float32 rounding; see
        :mod:`blipviz.fast_attention`). ``False`` keeps transformers' attention everywhere.
    quantize : {None, "int8"}, default None
        ``"int8"``: dynamic int8 quantisation of the encoder Linear layers, CPU only; faster, not
        exact (see :mod:`blipviz.quantize`).

    Returns
    -------
    BlipITM

    Raises
    ------
    InputError
        Unknown architecture, dataset or option (lists the allowed values); a device this machine
        does not have (lists those it has); a seed out of torch's range.
    InputTypeError
        ``seed`` that is not an int; ``device`` that is neither a str nor a ``torch.device``.
    OfflineError
        A hub id that is not cached while the Hub cannot be reached. When the string could also be
        a relative folder (``"models/blip"``), the message says that no such folder exists either.
    ModelLoadError
        A missing folder (``"no such folder: <absolute path>"``), a corrupt one, a checkpoint that
        is not a BLIP ITM net, or pickle weights (``pytorch_model.bin``) that torch's safe loader
        refuses: only safetensors or weights loadable with ``weights_only=True`` are accepted.
    """
    from .itm import BlipITM

    ckpt = checkpoint_for(architecture, dataset)
    device = _check_device(device)
    seed = _check_seed(seed)
    if quantize is not None:
        _check_choice("quantize", quantize, ("int8",))
    if first_token not in ("enc", "cls"):
        raise InputError(f"unknown first_token {first_token!r}; allowed values: 'enc', 'cls'")
    name = None if name_or_path is None else os.fspath(name_or_path)
    preprocessing = ckpt.preprocessing
    if name == "tiny-random":
        from .testing import tiny_random_hf_model

        hf_model = tiny_random_hf_model(seed=seed)
        preprocessing = ImagePreprocessing(hf_model.config.vision_config.image_size)
        label = "tiny-random"
    elif not pretrained:
        if name is None:
            config, label = blip_config(architecture), f"{ckpt.hub_id} (random weights)"
        elif (known := _checkpoint_by_hub_id(name)) is not None:
            config, label = blip_config(known.architecture), f"{known.hub_id} (random weights)"
        else:
            from transformers import BlipConfig

            try:
                config = correct_config(BlipConfig.from_pretrained(name, local_files_only=True), name)
            except Exception as exc:
                raise ModelLoadError(
                    f"pretrained=False needs the geometry of {name!r}: it is not a net of the family "
                    f"and no local config.json was found ({exc})"
                ) from None
            label = f"{name} (random weights)"
        hf_model = _random_hf_model(config, seed)
        preprocessing = ImagePreprocessing(config.vision_config.image_size)
    else:
        source = name or ckpt.hub_id
        hf_model = _load_hf_model(source)
        preprocessing = ImagePreprocessing(hf_model.config.vision_config.image_size)
        label = source
    model = BlipITM(
        hf_model,
        name=label,
        preprocessing=preprocessing,
        device=device,
        dtype=dtype,
        first_token=first_token,
        normalize_text=normalize_text,
        max_text_tokens=max_text_tokens,
    )
    _apply_speed_options(model, cache_dir=cache_dir, fast_attention=fast_attention, quantize=quantize)
    return model


def _apply_speed_options(model, *, cache_dir, fast_attention: bool, quantize: str | None) -> None:
    from .cache import FeatureCache
    from .fast_attention import enable_fast_attention
    from .quantize import QUANTIZE_MODES, quantize_int8

    if quantize is not None:
        _check_choice("quantize", quantize, QUANTIZE_MODES)
        quantize_int8(model)
    if fast_attention:
        enable_fast_attention(model.hf)
    if cache_dir is not None:
        model.feature_cache = cache_dir if isinstance(cache_dir, FeatureCache) else FeatureCache(cache_dir)


def load_part(part: str = DEFAULT_PART, name_or_path: str | os.PathLike | None = None, **options):
    """Load one part of a net: ``"ImageEncoder"``, ``"TextEncoder"`` or ``"MultimodalEncoder"``.

    Takes the same options as :func:`load_model` and returns ``model.image_encoder``,
    ``model.text_encoder`` or ``model.multimodal_encoder``. The weights the part does not use are
    freed after loading (:meth:`BlipITM.keep_only_part`): an ImageEncoder of ViT-B/16 keeps 86M of
    the net's 224M parameters. The MultimodalEncoder takes image features from an ImageEncoder.
    """
    _check_choice("part", part, PARTS)
    model = load_model(name_or_path, **options).keep_only_part(part)
    return {
        "ImageEncoder": model.image_encoder,
        "TextEncoder": model.text_encoder,
        "MultimodalEncoder": model.multimodal_encoder,
    }[part]
