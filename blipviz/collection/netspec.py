"""How a collection names its net: enough to load it again (by name, folder or "tiny-random" with its
options) and the weights fingerprints that prove it is the same net.

:func:`blipviz.load_model` records which weights a net has in ``model.load_options`` (the name,
hub id or resolved folder, and a random net's seed); a net built otherwise is described from its name,
a random one with the loader's default seed 0. Dtype, text options, quantisation and fused attention
are read off the net as it is. Either way the fingerprint decides: a reloaded net whose weights
differ is refused.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from ..errors import MissingPartError
from ..net.fast_attention import fast_attention_enabled

__all__ = ["check_same_net", "load_described_net", "net_description", "preprocessing_description"]

_RANDOM_SUFFIX = " (random weights)"
_DTYPES = {
    str(d).replace("torch.", ""): d for d in (torch.float16, torch.bfloat16, torch.float32, torch.float64)
}


def preprocessing_description(model) -> dict[str, Any]:
    """The image preprocessing that shapes the embeddings: size, mean, std, EXIF rule, resampling."""
    p = model.preprocessing
    return {
        "image_size": int(p.image_size),
        "mean": [float(v) for v in p.mean],
        "std": [float(v) for v in p.std],
        "exif_transpose": bool(p.exif_transpose),
        "resample": "bicubic-pil",
    }


def _load_options(model) -> dict[str, Any]:
    """Options for :func:`blipviz.net.load_net` that build ``model`` again: which weights (and the
    seed of random ones) from ``model.load_options``, else guessed from its name; dtype, text options,
    quantisation and fused attention read off the net as it is now."""
    given = getattr(model, "load_options", None)
    name = str(model.name)
    if isinstance(given, dict) and given.get("name_or_path"):
        options: dict[str, Any] = dict(given)
    elif name == "tiny-random":
        options = {"name_or_path": "tiny-random", "seed": 0}
    elif name.endswith(_RANDOM_SUFFIX):
        options = {"name_or_path": name[: -len(_RANDOM_SUFFIX)], "pretrained": False, "seed": 0}
    else:
        path = Path(name).expanduser()
        options = {"name_or_path": str(path.resolve()) if path.exists() else name}
    options.update(
        dtype=str(model.dtype).replace("torch.", ""),
        first_token=model.first_token,
        normalize_text=bool(model.normalize_text),
        max_text_tokens=model.max_text_tokens,
        quantize=model.quantization,
        fast_attention=fast_attention_enabled(model.hf),
    )
    return options


def net_description(model) -> dict[str, Any]:
    """What the manifest records of the net: ``name``, ``load`` (options for
    :func:`blipviz.net.load_net`), ``image_fingerprint`` and ``text_fingerprint`` (None when the
    net holds no text weights), ``dim`` (256)."""
    try:
        text = model.fingerprint("text")
    except MissingPartError:
        text = None
    return {
        "name": str(model.name),
        "load": _load_options(model),
        "image_fingerprint": model.fingerprint("image"),
        "text_fingerprint": text,
        "dim": int(model.config.image_text_hidden_size),
    }


def load_described_net(description: dict[str, Any], device: str | torch.device | None = None):
    """Load the net a manifest names (a :class:`blipviz.net.BlipNet`) and check its fingerprints.

    Raises
    ------
    CollectionFolderError
        The reloaded net's weights are not those the collection was made with.
    ModelLoadError, OfflineError
        The net cannot be loaded here.
    """
    from ..net.loading import load_net

    options = dict(description["load"])
    if isinstance(options.get("dtype"), str):
        if options["dtype"] not in _DTYPES:
            from ..errors import CollectionFolderError

            raise CollectionFolderError(
                f"the manifest names the net dtype {options['dtype']!r}; blipviz knows {sorted(_DTYPES)}"
            )
        options["dtype"] = _DTYPES[options["dtype"]]
    if options.get("seed") is None:
        options.pop("seed", None)
    name = options.pop("name_or_path")
    model = load_net(os.fspath(name), device=device, **options)
    check_same_net(description, model, "the net its manifest names")
    return model


def check_same_net(description: dict[str, Any], model, what: str = "this net", where: str = "") -> None:
    """Refuse a net whose weights differ from the recorded ones (:class:`CollectionFolderError`)."""
    from ..errors import CollectionFolderError

    mine = net_description(model)
    for key, group in (("image_fingerprint", "image"), ("text_fingerprint", "text")):
        theirs = description.get(key)
        if theirs and mine[key] and theirs != mine[key]:
            raise CollectionFolderError(
                f"collection {where}was made by the net {description.get('name')!r} ({group} weights "
                f"{theirs[:12]}), not by {what} {model.name!r} ({group} weights {mine[key][:12]}): "
                "embeddings only mean something to the net that made them. Pass model= the net that "
                "made the collection, or embed into another folder"
            )
