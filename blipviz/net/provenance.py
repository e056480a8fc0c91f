"""Where a result came from: the blipviz, torch and transformers versions, the net's device and dtype,
how its passes ran (compiled, autocast) and the date, recorded with every saved result and collection
manifest."""

from __future__ import annotations

import datetime
from typing import Any

__all__ = ["PROVENANCE_KEYS", "provenance"]

#: The keys of :func:`provenance`, in order.
PROVENANCE_KEYS = ("blipviz", "torch", "transformers", "device", "dtype", "compile", "autocast", "date")


def provenance(model: Any = None) -> dict[str, Any]:
    """The versions, device, dtype, acceleration and date of a computation.

    Parameters
    ----------
    model : BlipNet, optional
        The net that computed the result: its ``device``, ``dtype`` and ``acceleration`` are
        recorded. Without one (a result built by hand from arrays) they are ``None``.

    Returns
    -------
    dict
        :data:`PROVENANCE_KEYS`: ``blipviz``, ``torch`` and ``transformers`` (the installed
        versions), ``device`` (``"cpu"``, ``"cuda:0"``), ``dtype`` (``"float32"``), ``compile``
        (whether the ViT ran compiled) and ``autocast`` (``None`` or ``"bfloat16"``: see
        :meth:`blipviz.net.BlipNet.accelerated`), ``date`` (now, UTC, ISO 8601 to the second).
    """
    import torch
    import transformers

    from .._version import __version__

    device = None if model is None else str(model.device)
    dtype = None if model is None else str(model.dtype).replace("torch.", "")
    acceleration = getattr(model, "acceleration", None)
    return {
        "blipviz": __version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "device": device,
        "dtype": dtype,
        "compile": None if acceleration is None else bool(acceleration.compile),
        "autocast": None if acceleration is None else acceleration.autocast,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
