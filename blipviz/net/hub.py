"""The Hugging Face Hub as blipviz sees it: what a hub id looks like, whether the Hub answers, and the
one message for a checkpoint or data set that is neither cached nor reachable."""

from __future__ import annotations

import re
import socket
import urllib.parse

__all__ = ["HUB_ID", "could_be_hub_id", "hub_reachable", "is_offline_env", "offline_message"]

#: Shape of a Hugging Face Hub id ("owner/name"), as opposed to a local folder.
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


def could_be_hub_id(name: str) -> bool:
    """Whether ``name`` has the shape of a Hugging Face Hub id (``owner/name``), not only of a path."""
    return bool(HUB_ID.fullmatch(name)) and ".." not in name and "--" not in name and len(name) <= 96


def hub_reachable(timeout: float = 3.0) -> bool:
    """One quick TCP connection to the Hub's endpoint, so an offline machine fails in seconds."""
    from huggingface_hub import constants

    url = urllib.parse.urlparse(constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=timeout):
            return True
    except Exception:
        return False


def is_offline_env() -> bool:
    """Whether ``HF_HUB_OFFLINE`` is set (as ``huggingface_hub`` read it)."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def offline_message(what: str, name: str, cache: str, reason: str, ways_forward: str) -> str:
    """``"{what} {name!r} is not in the local {cache} and {reason}. Ways forward: {ways_forward}"``.

    Parameters
    ----------
    what : {"checkpoint", "dataset"}
    name : str
        The hub id.
    cache : str
        Which cache was looked in ("Hugging Face cache", "Hugging Face datasets cache").
    reason : str
        Why the Hub was not asked ("HF_HUB_OFFLINE is set", "the Hugging Face Hub could not be reached").
    ways_forward : str
        What the user can do instead.
    """
    return f"{what} {name!r} is not in the local {cache} and {reason}. Ways forward: {ways_forward}"
