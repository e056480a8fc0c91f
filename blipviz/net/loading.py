"""Loading a net of the family: a checkpoint (hub id or local folder), or its architecture with random
weights, with the speed options (fused attention, int8) applied.

:func:`load_net` builds a :class:`blipviz.net.BlipNet` (or a subclass given as ``net_class``);
:func:`blipviz.load_model` and :func:`blipviz.load_part` are the user's doors and document the options.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from ..errors import InputError, InputTypeError, ModelLoadError, OfflineError, check_choice
from .fast_attention import enable_fast_attention
from .hub import could_be_hub_id, hub_reachable, is_offline_env, offline_message
from .images import ImagePreprocessing
from .progress import WEIGHT_BARS, WEIGHT_LOADING_BAR, no_weight_loading_bars
from .quantize import quantize_int8
from .registry import (
    DEFAULT_ARCHITECTURE,
    DEFAULT_DATASET,
    blip_config,
    checkpoint_by_hub_id,
    checkpoint_for,
    correct_config,
    tiny_random_config,
)

__all__ = [
    "WEIGHT_BARS",
    "WEIGHT_LOADING_BAR",
    "load_hf_model",
    "load_net",
    "no_weight_loading_bars",
    "random_hf_model",
]

logger = logging.getLogger("blipviz")

_CHECKPOINT_WAYS_FORWARD = (
    "download it once on a machine with access (it is then cached), or save it with "
    "`save_pretrained` and pass that folder to load_model(folder), or use "
    "load_model('tiny-random') / load_model(pretrained=False) for an offline net with random weights."
)


def _checkpoint_offline(name: str, reason: str) -> str:
    return offline_message("checkpoint", name, "Hugging Face cache", reason, _CHECKPOINT_WAYS_FORWARD)


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
    with no_weight_loading_bars():
        # with output_loading_info=True, from_pretrained returns (model, loading_info), though
        # transformers annotates it as returning the model only
        loaded = BlipForImageTextRetrieval.from_pretrained(
            source, config=config, local_files_only=local_only, output_loading_info=True
        )
        model, info = cast("tuple[BlipForImageTextRetrieval, dict[str, Any]]", loaded)
    missing = [k for k in info.get("missing_keys", []) if "position_ids" not in k]
    if missing:
        raise ModelLoadError(
            f"{source!r} lacks {len(missing)} weights of an image-text matching net "
            f"(e.g. {', '.join(sorted(missing)[:3])}); it is not a BLIP ITM checkpoint"
        )
    return model


def _unsafe_pickle_message(source: str, exc: BaseException) -> str | None:
    """The message for weights that torch's safe loader refused, or ``None`` for any other failure.

    torch's own message advises retrying with ``weights_only=False`` or allow-listing the pickled
    classes; both run code from the file, so neither is repeated here."""
    import pickle

    chain: list[BaseException] = []
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        chain.append(link)
        link = link.__cause__ or link.__context__
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


def load_hf_model(name_or_path: str):
    """Load a BlipForImageTextRetrieval from a local folder or a hub id, failing fast offline.

    A string that names an existing path is a folder. A string that does not, and cannot be a hub id
    (it starts with ``.``, ``~`` or ``/``, or has no ``owner/name`` shape), is a missing folder. A
    string that could be either (``"models/blip"``) is looked up as a hub id, and the error then
    names the missing folder too.
    """
    path = Path(name_or_path).expanduser()
    folder = os.path.abspath(path)
    hub_like = could_be_hub_id(name_or_path) and not name_or_path.startswith((".", "~"))
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
        if checkpoint_by_hub_id(name_or_path) is not None
        else f"no folder {folder!r} exists, and as a hub id, "
    )
    try:
        return _from_pretrained(name_or_path, local_only=True)
    except ModelLoadError:
        raise
    except Exception as exc:
        if (message := _unsafe_pickle_message(name_or_path, exc)) is not None:
            raise ModelLoadError(message) from None
    if is_offline_env():
        raise OfflineError(either + _checkpoint_offline(name_or_path, "HF_HUB_OFFLINE is set"))
    if not hub_reachable():
        raise OfflineError(
            either + _checkpoint_offline(name_or_path, "the Hugging Face Hub could not be reached")
        )
    try:
        return _from_pretrained(name_or_path, local_only=False)
    except ModelLoadError:
        raise
    except Exception as exc:
        raise _load_failure(
            name_or_path, exc, either + f"checkpoint {name_or_path!r} could not be loaded from the Hub"
        ) from None


def random_hf_model(config, seed: int):
    """A ``BlipForImageTextRetrieval`` of ``config`` with informative random weights drawn from ``seed``
    (:func:`blipviz.net.random_weights.informative_init_`), in eval mode."""
    from transformers import BlipForImageTextRetrieval

    from .random_weights import informative_init_

    model = BlipForImageTextRetrieval(config)
    informative_init_(model, seed)
    return model.eval()


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


#: The dtypes a net runs in, by the names ``load_model(dtype=...)`` also accepts.
_DTYPE_NAMES = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float64": torch.float64,
}


def _check_dtype(dtype: Any) -> torch.dtype | None:
    """``dtype`` as a ``torch.dtype`` a net can run in (``None`` stays ``None``: float32).

    Accepts the torch dtypes of ``_DTYPE_NAMES`` and their names (``"float16"``, also
    ``"torch.float16"``).

    Raises
    ------
    InputError
        A name or torch dtype not in ``_DTYPE_NAMES`` (lists the allowed values).
    InputTypeError
        Neither a str nor a ``torch.dtype``.
    """
    allowed = ", ".join(map(repr, _DTYPE_NAMES))
    if dtype is None:
        return None
    if isinstance(dtype, str):
        name = dtype.removeprefix("torch.")
        if name not in _DTYPE_NAMES:
            raise InputError(f"unknown dtype {dtype!r}; allowed values: {allowed} (or those torch dtypes)")
        return _DTYPE_NAMES[name]
    if isinstance(dtype, torch.dtype):
        if dtype not in _DTYPE_NAMES.values():
            raise InputError(
                f"dtype {dtype} cannot run a net; allowed values: {allowed} (or those torch dtypes)"
            )
        return dtype
    raise InputTypeError(
        f"dtype must be a torch.dtype or one of the names {allowed}, got {type(dtype).__name__} {dtype!r:.60}"
    )


def _check_seed(seed: Any) -> int:
    """``seed`` as an int, or an error: a whole number (not a bool) that torch accepts as a seed."""
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise InputTypeError(f"seed must be an int, got {type(seed).__name__} {seed!r}")
    seed = int(seed)
    if not -(2**63) <= seed < 2**64:
        raise InputError(f"seed must lie in [-2**63, 2**64), got {seed}")
    return seed


def load_net(
    name_or_path: str | os.PathLike | None = None,
    *,
    architecture: str = DEFAULT_ARCHITECTURE,
    dataset: str = DEFAULT_DATASET,
    pretrained: bool = True,
    device: str | torch.device | None = None,
    dtype: torch.dtype | str | None = None,
    first_token: str = "enc",
    normalize_text: bool = True,
    max_text_tokens: int | None = 35,
    seed: int = 0,
    fast_attention: bool = True,
    quantize: str | None = None,
    net_class: type | None = None,
):
    """Build a net of the family; :func:`blipviz.load_model` documents every option and error.

    Parameters
    ----------
    net_class : type, optional
        :class:`blipviz.net.BlipNet` or a subclass (``blipviz.BlipITM``, which adds the analyses);
        default ``BlipNet``.

    Returns
    -------
    BlipNet (or ``net_class``)
    """
    from .net import BlipNet

    net_class = net_class or BlipNet
    ckpt = checkpoint_for(architecture, dataset)
    device = _check_device(device)
    dtype = _check_dtype(dtype)
    seed = _check_seed(seed)
    if quantize is not None:
        check_choice("quantize", quantize, ("int8",))
    if first_token not in ("enc", "cls"):
        raise InputError(f"unknown first_token {first_token!r}; allowed values: 'enc', 'cls'")
    name = None if name_or_path is None else os.fspath(name_or_path)
    if name == "tiny-random":
        hf_model = random_hf_model(tiny_random_config(), seed)
        preprocessing = ImagePreprocessing(hf_model.config.vision_config.image_size)
        label = "tiny-random"
        identity: dict[str, Any] = {"name_or_path": "tiny-random", "seed": seed}
    elif not pretrained:
        if name is None:
            config, label = blip_config(architecture), f"{ckpt.hub_id} (random weights)"
            geometry = ckpt.hub_id
        elif (known := checkpoint_by_hub_id(name)) is not None:
            config, label = blip_config(known.architecture), f"{known.hub_id} (random weights)"
            geometry = known.hub_id
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
            geometry = str(Path(name).expanduser().resolve())  # a folder: its config.json was read
        hf_model = random_hf_model(config, seed)
        identity = {"name_or_path": geometry, "pretrained": False, "seed": seed}
        preprocessing = ImagePreprocessing(config.vision_config.image_size)
    else:
        source = name or ckpt.hub_id
        hf_model = load_hf_model(source)
        preprocessing = ImagePreprocessing(hf_model.config.vision_config.image_size)
        label = source
        folder = Path(source).expanduser()
        identity = {"name_or_path": str(folder.resolve()) if folder.is_dir() else source}
    model = net_class(
        hf_model,
        name=label,
        preprocessing=preprocessing,
        device=device,
        dtype=dtype,
        first_token=first_token,
        normalize_text=normalize_text,
        max_text_tokens=max_text_tokens,
    )
    if quantize is not None:
        quantize_int8(model)
    if fast_attention:
        enable_fast_attention(model.hf)
    # which weights, to build the net again (a collection's manifest); dtype and the text options
    # are read off the net itself when needed
    model.load_options = identity
    return model
