"""The BLIP image-text matching family: the one place that knows which nets exist.

A net is one combination of

- **Part**: ``"ImageEncoder"``, ``"TextEncoder"``, ``"MultimodalEncoder"``;
- **Architecture**: ``"ViT-B/16"`` (default), ``"ViT-L/16"``;
- **Dataset** (captioning data it was fine-tuned on): ``"COCO"`` (default), ``"Flickr30k"``.

Each (architecture, dataset) pair is one Hugging Face checkpoint holding all three parts. The
registry also carries every geometry (the tiny offline net is a row), so that ``pretrained=False``
builds the net without fetching any file, the corrections of published configs, the image
preprocessing constants of the family and its special token ids.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from ..errors import check_choice

__all__ = [
    "ARCHITECTURES",
    "BLIP_IMAGE_MEAN",
    "BLIP_IMAGE_STD",
    "DATASETS",
    "ENC_TOKEN_ID",
    "IMAGE_SIZE",
    "PARTS",
    "TINY_GEOMETRY",
    "Checkpoint",
    "blip_config",
    "checkpoint_by_hub_id",
    "checkpoint_for",
    "checkpoint_of_folder",
    "correct_config",
    "list_models",
    "parameters_information",
    "part_parameter_names",
    "tiny_random_config",
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
#: Side of the square images of every net of the family, in pixels.
IMAGE_SIZE = 384
_PATCH_SIZE = 16
_VIT_LAYER_NORM_EPS = 1e-6  # the original ViT's partial(nn.LayerNorm, eps=1e-6)
_EMBED_DIM = 256

#: Normalisation constants of BLIP's transforms (those of CLIP).
BLIP_IMAGE_MEAN = (0.48145466, 0.4578275, 0.40821073)
BLIP_IMAGE_STD = (0.26862954, 0.26130258, 0.27577711)

#: BLIP's ``[ENC]`` token, first token of the image-text matching pass (BERT's vocabulary + 2).
ENC_TOKEN_ID = 30523

#: Geometry of the tiny offline net (``load_model("tiny-random")``): 64 px images in 8 px patches
#: (an 8 x 8 grid, 65 image tokens), two layers of width 64 with 4 heads in each tower, the real
#: vocabulary and the 256-d joint space.
TINY_GEOMETRY = {
    "vision": dict(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=64,
        patch_size=8,
        layer_norm_eps=_VIT_LAYER_NORM_EPS,
    ),
    "text": dict(
        _TEXT_GEOMETRY,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
    ),
    "image_text_hidden_size": _EMBED_DIM,
}


@dataclass(frozen=True)
class Checkpoint:
    """One row of the family table: an (architecture, dataset) pair and its checkpoint."""

    architecture: str
    dataset: str
    hub_id: str


_CHECKPOINTS = (
    Checkpoint("ViT-B/16", "COCO", "Salesforce/blip-itm-base-coco"),
    Checkpoint("ViT-L/16", "COCO", "Salesforce/blip-itm-large-coco"),
    Checkpoint("ViT-B/16", "Flickr30k", "Salesforce/blip-itm-base-flickr"),
    Checkpoint("ViT-L/16", "Flickr30k", "Salesforce/blip-itm-large-flickr"),
)


def checkpoint_for(architecture: str = DEFAULT_ARCHITECTURE, dataset: str = DEFAULT_DATASET) -> Checkpoint:
    """The registry row of an (architecture, dataset) pair; ``ValueError`` lists the allowed values."""
    check_choice("architecture", architecture, ARCHITECTURES)
    check_choice("dataset", dataset, DATASETS)
    return next(c for c in _CHECKPOINTS if c.architecture == architecture and c.dataset == dataset)


def checkpoint_by_hub_id(hub_id: str) -> Checkpoint | None:
    """The registry row of a hub id (case-insensitive), or ``None`` for a net outside the family."""
    return next((c for c in _CHECKPOINTS if c.hub_id.lower() == hub_id.lower()), None)


def _architecture_of(config: dict) -> str | None:
    """The architecture of the family whose geometry a ``config.json`` has, or ``None``."""
    vision = config.get("vision_config") or {}
    for architecture, geometry in _VISION_GEOMETRY.items():
        if (
            vision.get("hidden_size") == geometry["hidden_size"]
            and vision.get("num_hidden_layers") == geometry["num_hidden_layers"]
            and vision.get("image_size", IMAGE_SIZE) == IMAGE_SIZE
            and vision.get("patch_size", _PATCH_SIZE) == _PATCH_SIZE
        ):
            return architecture
    return None


def checkpoint_of_folder(folder: str | os.PathLike) -> tuple[Checkpoint | None, str]:
    """Which checkpoint of the family a local folder is a copy of, as far as its files tell.

    The architecture is read from the folder's ``config.json`` (the vision tower's geometry). The
    data the net was fine-tuned on is in no config: it is read from a name, the first of the
    folder's own name (``blip-itm-base-coco``), the Hugging Face cache's layout around it
    (``models--Salesforce--blip-itm-base-coco/snapshots/<revision>``) and the config's
    ``_name_or_path``, that names a checkpoint of the family exactly (case-insensitive). A name
    that disagrees with the config's architecture identifies nothing. Nothing checks that the
    weights are that checkpoint's.

    Returns
    -------
    (Checkpoint or None, str)
        The registry row, or ``None``; and why, in words (what was read from where, or what is
        missing).
    """
    path = Path(folder).expanduser().resolve()
    config_file = path / "config.json"
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return None, f"{str(path)!r} has no readable config.json ({exc.__class__.__name__})"
    if not isinstance(config, dict):
        return None, f"{str(config_file)!r} is not a config of a BLIP net"
    architecture = _architecture_of(config)
    if architecture is None:
        vision = config.get("vision_config") or {}
        return None, (
            f"the config.json of {str(path)!r} has no geometry of the family (vision tower "
            f"hidden_size {vision.get('hidden_size')}, {vision.get('num_hidden_layers')} layers)"
        )
    names = [path.name, path.parent.parent.name if path.parent.name == "snapshots" else ""]
    names.append(str(config.get("_name_or_path") or ""))
    for name in filter(None, names):
        lowered = name.lower()
        for ckpt in _CHECKPOINTS:
            owner, short = ckpt.hub_id.lower().split("/")
            if lowered in (short, ckpt.hub_id.lower(), f"models--{owner}--{short}"):
                if ckpt.architecture != architecture:
                    return None, (
                        f"{str(path)!r} is named after {ckpt.hub_id} ({ckpt.architecture}) but its "
                        f"config.json has the {architecture} geometry"
                    )
                return ckpt, (
                    f"a local copy of {ckpt.hub_id}: {architecture} from its config.json, fine-tuned "
                    f"on {ckpt.dataset} by its name {name!r}"
                )
    return None, (
        f"the config.json of {str(path)!r} gives the architecture ({architecture}) but not the data "
        "the net was fine-tuned on, and no name around it names a checkpoint of the family: name "
        "the folder after the checkpoint it copies (such as blip-itm-base-coco)"
    )


def blip_config(architecture: str = DEFAULT_ARCHITECTURE):
    """The ``transformers.BlipConfig`` of an architecture of the family, from the registry alone.

    Geometry is that of the original BLIP: BERT-base text tower with 12 heads, ViT LayerNorm eps 1e-6,
    384 px images in 16 px patches, 256-d joint space.
    """
    from transformers import BlipConfig

    check_choice("architecture", architecture, ARCHITECTURES)
    vision = dict(
        _VISION_GEOMETRY[architecture],
        image_size=IMAGE_SIZE,
        patch_size=_PATCH_SIZE,
        layer_norm_eps=_VIT_LAYER_NORM_EPS,
    )
    config = BlipConfig(
        text_config=dict(_TEXT_GEOMETRY), vision_config=vision, image_text_hidden_size=_EMBED_DIM
    )
    config.architectures = ["BlipForImageTextRetrieval"]
    return config


def tiny_random_config():
    """``transformers.BlipConfig`` of the tiny offline net (see :data:`TINY_GEOMETRY`)."""
    from transformers import BlipConfig

    config = BlipConfig(
        text_config=dict(TINY_GEOMETRY["text"]),
        vision_config=dict(TINY_GEOMETRY["vision"]),
        image_text_hidden_size=TINY_GEOMETRY["image_text_hidden_size"],
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
    check_choice("part", part, PARTS)
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
    self-attention, so the parts' counts overlap and do not add up), ``net_parameters`` (the one
    total of the whole net, each weight counted once) and ``default`` (the default net).
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
                    net_parameters=counts["all"],
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
