"""Where a result came from: the blipviz, torch and transformers versions, the net's device and dtype,
and the date, recorded with every saved result and collection manifest."""

from __future__ import annotations

import datetime
from typing import Any

__all__ = ["PROVENANCE_KEYS", "provenance"]

#: The keys of :func:`provenance`, in order.
PROVENANCE_KEYS = ("blipviz", "torch", "transformers", "device", "dtype", "date")


def provenance(model: Any = None) -> dict[str, str | None]:
    """The versions, device, dtype and date of a computation.

    Parameters
    ----------
    model : BlipNet, optional
        The net that computed the result: its ``device`` and ``dtype`` are recorded. Without one
        (a result built by hand from arrays) both are ``None``.

    Returns
    -------
    dict
        :data:`PROVENANCE_KEYS`: ``blipviz``, ``torch`` and ``transformers`` (the installed
        versions), ``device`` (``"cpu"``, ``"cuda:0"``), ``dtype`` (``"float32"``), ``date`` (now,
        UTC, ISO 8601 to the second).
    """
    import torch
    import transformers

    from .._version import __version__

    device = None if model is None else str(model.device)
    dtype = None if model is None else str(model.dtype).replace("torch.", "")
    return {
        "blipviz": __version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "device": device,
        "dtype": dtype,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
