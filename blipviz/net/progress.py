"""transformers' progress bars over a net's own weight arrays, silenced where blipviz loads or saves
a net (the download bars are kept)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

__all__ = ["WEIGHT_BARS", "WEIGHT_LOADING_BAR", "no_weight_loading_bars"]

#: The description of transformers' progress bar over the weights of a checkpoint being loaded.
WEIGHT_LOADING_BAR = "Loading weights"
#: The bars over a net's own weight arrays (loading a checkpoint, writing one): silenced by blipviz.
WEIGHT_BARS = (WEIGHT_LOADING_BAR, "Writing model shards")


@contextlib.contextmanager
def no_weight_loading_bars() -> Iterator[None]:
    """Silence transformers' bars over weight arrays (:data:`WEIGHT_BARS`), and only those, within
    the block.

    transformers 5 draws a bar over the weight arrays each time ``from_pretrained`` loads a
    checkpoint and ``save_pretrained`` writes one (in a notebook: a widget each). The download
    bars (``huggingface_hub``'s, shown when a checkpoint is fetched) and every other bar are left as
    they are: the block installs a
    ``transformers.utils.logging.set_tqdm_hook`` hook that passes ``disable=True`` to the bars
    described so only, chains to any hook already set, and restores that hook on
    exit, exceptions included. ``huggingface_hub``'s progress-bar switch is never touched.
    """
    from transformers.utils import logging as hf_logging

    previous = None

    def hook(factory, args, kwargs):
        if kwargs.get("desc") in WEIGHT_BARS:
            kwargs = {**kwargs, "disable": True}
        if previous is not None:
            return previous(factory, args, kwargs)
        return factory(*args, **kwargs)

    previous = hf_logging.set_tqdm_hook(hook)
    try:
        yield
    finally:
        hf_logging.set_tqdm_hook(previous)
