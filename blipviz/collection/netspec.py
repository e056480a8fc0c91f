"""How a collection names its net: enough to load it again (by name, folder or "tiny-random" with its
options) and the weights fingerprints that prove it is the same net.

:func:`blipviz.load_model` records which weights a net has in ``model.load_options`` (the name,
hub id or resolved folder, and a random net's seed); a net built otherwise is described from its name,
a random one with the loader's default seed 0. Dtype, text options, quantisation and fused attention
are read off the net as it is. Either way the fingerprint decides: a reloaded net whose weights
differ is refused.

A part of a net (``load_part("ImageEncoder")``) stands for the net it wraps (:func:`as_net`): an
ImageEncoder holds every weight an image embedding needs. A collection reopened without a net gets
the class :func:`blipviz.load_model` returns (:class:`blipviz.BlipITM`), with all its methods: the
package names it when it is imported (:func:`set_net_class`), since this layer does not import the
one above it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from ..errors import InputTypeError, MissingPartError
from ..net.fast_attention import fast_attention_enabled

__all__ = [
    "as_net",
    "check_same_net",
    "load_described_net",
    "net_description",
    "preprocessing_description",
    "set_net_class",
]

_RANDOM_SUFFIX = " (random weights)"
_DTYPES = {
    str(d).replace("torch.", ""): d for d in (torch.float16, torch.bfloat16, torch.float32, torch.float64)
}


#: The class :func:`load_described_net` builds (:func:`set_net_class`); empty: BlipNet.
_net_class: list[type] = []


def set_net_class(net_class: type) -> None:
    """Build the nets that manifests name as ``net_class`` (a :class:`blipviz.net.BlipNet` subclass):
    ``blipviz`` sets :class:`blipviz.BlipITM`, the class :func:`blipviz.load_model` returns."""
    from ..net.net import BlipNet

    if not (isinstance(net_class, type) and issubclass(net_class, BlipNet)):
        raise InputTypeError(f"net_class must be a subclass of BlipNet, got {net_class!r}")
    _net_class[:] = [net_class]


def as_net(model, use: str = "a collection"):
    """The net behind ``model``: a :class:`blipviz.net.BlipNet` (a :class:`blipviz.BlipITM`) as it
    is, a part from :func:`blipviz.load_part` as the net it wraps (holding that part's weights only:
    a call that needs another part raises :class:`blipviz.MissingPartError`).

    Raises
    ------
    InputTypeError
        Anything else (``None``, a Hugging Face model, a path).
    """
    from ..net.net import BlipNet, NetPart

    if isinstance(model, NetPart):
        model = model.model
    if not isinstance(model, BlipNet):
        raise InputTypeError(
            f"{use} needs a blipviz net (blipviz.load_model, or load_part('ImageEncoder')), got "
            f"{type(model).__name__}"
        )
    return model


def preprocessing_description(model) -> dict[str, Any]:
    """The image preprocessing that shapes the embeddings: size, mean, std, EXIF rule, resampling."""
    p = as_net(model).preprocessing
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
    net holds no text weights), ``dim`` (256). ``model`` may be a part (:func:`as_net`)."""
    model = as_net(model)
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
    """Load the net a manifest names and check its fingerprints: a :class:`blipviz.BlipITM`, the
    class :func:`blipviz.load_model` returns (``rank``, ``itm_scores`` and the rest work on it; the
    class :func:`set_net_class` named).

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
    model = load_net(
        os.fspath(name), device=device, net_class=_net_class[0] if _net_class else None, **options
    )
    check_same_net(description, model, "the net its manifest names")
    return model


def check_same_net(description: dict[str, Any], model, what: str = "this net", where: str = "") -> None:
    """Refuse a net whose weights differ from the recorded ones (:class:`CollectionFolderError`)."""
    from ..errors import CollectionFolderError

    model = as_net(model)
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
