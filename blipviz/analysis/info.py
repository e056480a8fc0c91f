"""How big the nets are: weight arrays, element counts and layer types, per part and in all.

:func:`net_information` works on a loaded net, one of its parts, any ``torch.nn.Module``, or an
architecture name of the family; with a name the net is built on PyTorch's ``meta`` device (shapes
only, no memory, nothing downloaded), so it answers in about a second even for ViT-L/16.

Counts cover every weight the net holds: an int8 net (``load_model(..., quantize="int8")``) packs
its encoder Linear weights outside ``nn.Parameter``; they are counted under their float names and
flagged ``quantized`` (see :func:`blipviz.net.quantize.held_weights`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch
from torch import nn

from ..errors import InputError, InputTypeError

__all__ = ["NetInformation", "net_information"]

#: Column headers of the styled tables (the frames keep their short names).
DISPLAY_HEADERS = {
    "arrays": "weight arrays",
    "quantized_elements": "int8 elements",
    "layers": "leaf modules",
    "quantized": "int8",
}


@dataclass(eq=False)
class NetInformation:
    """Weights and layers of a net or of one of its parts.

    Attributes
    ----------
    name : str
        What was described: ``"BlipForImageTextRetrieval"``, or a part (``"ImageEncoder"``, ...).
    arrays_element_counts : DataFrame
        One row per weight array, indexed by its name in the wrapped Hugging Face model; columns
        ``shape`` (tuple), ``elements`` (int), ``dtype`` (str: ``"float32"``, ..., ``"qint8"``) and
        ``quantized`` (bool: stored as int8). Int8-packed weights keep their float names.
    arrays_total_element_count : int
        Number of weights (shared arrays counted once), int8-packed ones included.
    layer_type_counts : Series
        Number of leaf modules (``Linear``, ``LayerNorm``, ``Conv2d``, ``Embedding``, ``Dropout``,
        activations, ...) of each class, most frequent first; a dynamically quantised Linear counts
        as ``"Linear (int8)"``.
    parts : DataFrame or None
        For a whole net: one row per part (``ImageEncoder``, ``TextEncoder``, ``MultimodalEncoder``)
        with ``arrays``, ``elements``, ``quantized_elements`` and ``layers``; the parts share the text
        tower's embeddings and self-attention, so their elements add up to more than the total.
        ``None`` for a part.
    arrays_quantized_element_count : int
        How many of the weights are stored as int8 (0 for a float net).
    subject : str
        Whom the tables describe, for their captions: the architecture (``"ViT-B/16 (no
        weights)"``), the net's name (``"Salesforce/blip-itm-base-coco"``) or a part of it
        (``"ImageEncoder of Salesforce/blip-itm-base-coco"``); ``name`` when empty.
    """

    name: str
    arrays_element_counts: pd.DataFrame
    arrays_total_element_count: int
    layer_type_counts: pd.Series
    parts: pd.DataFrame | None = None
    part_information: dict[str, NetInformation] = field(default_factory=dict, repr=False)
    arrays_quantized_element_count: int = 0
    subject: str = ""

    def __repr__(self) -> str:
        int8 = (
            f", int8 elements={self.arrays_quantized_element_count:,}"
            if self.arrays_quantized_element_count
            else ""
        )
        return (
            f"NetInformation({self.name!r}, arrays={len(self.arrays_element_counts)}, "
            f"elements={self.arrays_total_element_count:,}{int8}, "
            f"layers={int(self.layer_type_counts.sum())})"
        )

    def arrays(self) -> pd.DataFrame:
        """Every weight array, one row each (a copy of ``arrays_element_counts``): pandas shows
        only 10 rows of a long frame; ``with pd.option_context("display.max_rows", None)`` or
        :meth:`style` shows them all."""
        return self.arrays_element_counts.copy()

    def style(self, table: str = "arrays", *, max_rows: int | None = None):
        """One of the tables, styled for reading: thousands separators, shapes as ``3,072 × 768``.

        Parameters
        ----------
        table : {"arrays", "parts", "layers", "summary"}, default "arrays"
            The weight arrays (``arrays_element_counts``), the parts (``parts``, whole nets
            only), the layer types (``layer_type_counts``) or the one-row summary
            (:meth:`to_pandas`).
        max_rows : int, optional
            Show the first rows only, with a caption "n of N rows shown: use .arrays() for all";
            default every row (a long table scrolls).

        Returns
        -------
        pandas.io.formats.style.Styler
            Display only: the numbers of the tables themselves stay numbers. The caption names
            ``subject``; headers read as words ("weight arrays", "int8 elements", "leaf
            modules"); a float net's int8 columns (all zero, all False) are left out, and the
            caption says "no int8 weights".
        """
        from ..display.net_tables import style_counts

        frames = {
            "arrays": self.arrays_element_counts,
            "parts": self.parts,
            "layers": self.layer_type_counts,
            "summary": self.to_pandas(),
        }
        if table not in frames:
            raise InputError(f"unknown table {table!r}; allowed values: {sorted(frames)}")
        frame = frames[table]
        if frame is None:
            raise InputError(f"{self.name!r} has no table of parts: only a whole BLIP net has one")
        who = self.subject or self.name
        captions = {
            "arrays": f"{who}: weight arrays",
            "parts": f"{who}: parts (weights they share are counted in each)",
            "layers": f"{who}: leaf modules by type",
            "summary": f"{who}: in all",
        }
        columns = frame.columns if isinstance(frame, pd.DataFrame) else ()
        flags = [c for c in ("quantized_elements", "quantized") if c in columns]
        if flags and not frame[flags[0]].any():
            frame = frame.drop(columns=flags)  # a float net: a column of zeros says nothing
            captions[table] += ", no int8 weights"
        if table == "summary":
            frame = frame.rename(index={self.name: who}).rename_axis("")  # the row is the subject
        more = "use .arrays() for all" if table == "arrays" else ""
        return style_counts(
            frame, caption=captions[table], max_rows=max_rows, more=more, headers=DISPLAY_HEADERS
        )

    def _repr_html_(self) -> str:
        """Jupyter's view: the summary, the parts, the layer types and every weight array (scrolling)."""
        tables = ["summary"] + (["parts"] if self.parts is not None else []) + ["layers", "arrays"]
        return "<br>\n".join(self.style(t).to_html() for t in tables)

    def part(self, name: str) -> NetInformation:
        """The information of one part of a whole net."""
        if name not in self.part_information:
            raise InputError(f"no part {name!r}; this information has {sorted(self.part_information)}")
        return self.part_information[name]

    def to_pandas(self) -> pd.DataFrame:
        """One-row summary: ``name``, ``arrays``, ``elements``, ``quantized_elements``, ``layers``."""
        return pd.DataFrame([self._summary()]).set_index("name")

    def _summary(self) -> dict[str, Any]:
        return dict(
            name=self.name,
            arrays=len(self.arrays_element_counts),
            elements=self.arrays_total_element_count,
            quantized_elements=self.arrays_quantized_element_count,
            layers=int(self.layer_type_counts.sum()),
        )


def _held_by_module(model: nn.Module) -> dict[str, list[str]]:
    """Module name -> names of the weights it holds itself (packed int8 ones included)."""
    from ..net.quantize import held_weights

    owners: dict[str, list[str]] = {}
    for weight in held_weights(model):
        module, _, _ = weight.name.rpartition(".")
        owners.setdefault(module, []).append(weight.name)
    return owners


def _layer_type(module: nn.Module) -> str:
    from ..net.quantize import is_packed_linear

    return f"{type(module).__name__} (int8)" if is_packed_linear(module) else type(module).__name__


def _leaf_modules(model: nn.Module, keep: set[str] | None) -> list[nn.Module]:
    """Leaf modules of ``model``; with ``keep`` (weight names), those of that part only.

    A dynamically quantised Linear is a leaf (its packed weights are its own). A leaf with weights
    belongs to the part if one of its weights does; a leaf without weights (dropout, activation) if
    its parent's weights include one of the part's.
    """
    from ..net.quantize import is_packed_linear

    modules = dict(model.named_modules())
    owners = _held_by_module(model)
    packed = [name for name, m in modules.items() if is_packed_linear(m)]
    leaves = []
    for name, module in modules.items():
        if any(name.startswith(f"{p}.") for p in packed):
            continue  # inside a packed Linear
        if next(module.children(), None) is not None and name not in packed:
            continue
        if keep is None:
            leaves.append(module)
            continue
        own = owners.get(name, [])
        if not own:
            parent = name.rsplit(".", 1)[0] if "." in name else ""
            own = [
                n for m, names in owners.items() if m == parent or m.startswith(f"{parent}.") for n in names
            ]
        if any(n in keep for n in own):
            leaves.append(module)
    return leaves


def _describe(model: nn.Module, name: str, keep: set[str] | None) -> NetInformation:
    from ..net.quantize import held_weights

    rows = [
        (w.name, w.shape, w.elements, w.dtype, w.quantized)
        for w in held_weights(model)
        if keep is None or w.name in keep
    ]
    arrays = pd.DataFrame(rows, columns=["name", "shape", "elements", "dtype", "quantized"]).set_index("name")
    arrays["elements"] = arrays["elements"].astype("int64")
    arrays["quantized"] = arrays["quantized"].astype(bool)
    layers = Counter(_layer_type(m) for m in _leaf_modules(model, keep))
    counts = pd.Series(dict(layers.most_common()), name="count", dtype="int64")
    counts.index.name = "layer type"
    return NetInformation(
        name=name,
        arrays_element_counts=arrays,
        arrays_total_element_count=int(arrays["elements"].sum()) if rows else 0,
        layer_type_counts=counts,
        arrays_quantized_element_count=int(arrays.loc[arrays["quantized"], "elements"].sum()) if rows else 0,
    )


def _whole(hf_model: nn.Module, subject: str = "") -> NetInformation:
    from ..net.quantize import part_weight_names
    from ..net.registry import PARTS

    info = _describe(hf_model, type(hf_model).__name__, None)
    info.subject = subject
    info.part_information = {
        part: _describe(hf_model, part, set(part_weight_names(hf_model, part))) for part in PARTS
    }
    for part, part_info in info.part_information.items():
        part_info.subject = f"{part} of {subject}" if subject else part
    info.parts = pd.concat([p.to_pandas() for p in info.part_information.values()])
    info.parts.index.name = "part"
    return info


def net_information(model_or_part: Any) -> NetInformation:
    """Weight arrays, their element counts and the layer types of a net or of one of its parts.

    Parameters
    ----------
    model_or_part : BlipNet, a part, torch.nn.Module, or str
        A net from :func:`blipviz.load_model` (also with ``pretrained=False``); one of its parts
        (``model.image_encoder``, ``model.text_encoder``, ``model.multimodal_encoder``); any module
        (a ``BlipForImageTextRetrieval`` gets the per-part table too); or an architecture of the
        family (``"ViT-B/16"``, ``"ViT-L/16"``), built on the ``meta`` device without weights.

    Returns
    -------
    NetInformation
        ``.arrays_element_counts`` (DataFrame), ``.arrays_total_element_count`` (int),
        ``.layer_type_counts`` (Series); for a whole net also ``.parts`` and ``.part(name)``.

    Examples
    --------
    >>> info = net_information("ViT-B/16")  # doctest: +SKIP
    >>> info.arrays_total_element_count  # doctest: +SKIP
    """
    from ..net.net import BlipNet, NetPart

    if isinstance(model_or_part, str):
        from transformers import BlipForImageTextRetrieval

        from ..net.registry import blip_config

        with torch.device("meta"):
            hf_model = BlipForImageTextRetrieval(blip_config(model_or_part))
        return _whole(hf_model, f"{model_or_part} (no weights)")
    if isinstance(model_or_part, BlipNet):
        return _whole(model_or_part.hf, model_or_part.name)
    if isinstance(model_or_part, NetPart):
        info = _describe(model_or_part.model.hf, model_or_part.part, set(model_or_part.parameter_names()))
        info.subject = f"{model_or_part.part} of {model_or_part.model.name}"
        return info
    if isinstance(model_or_part, nn.Module):
        from transformers import BlipForImageTextRetrieval

        if isinstance(model_or_part, BlipForImageTextRetrieval):
            return _whole(model_or_part)
        return _describe(model_or_part, type(model_or_part).__name__, None)
    raise InputTypeError(
        "net_information takes a BlipNet, one of its parts, a torch.nn.Module or an architecture name, "
        f"got {type(model_or_part).__name__}"
    )
