"""A labelled grid of attention maps or overlays, one panel per token (drawn from computed arrays)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .plotting import panel_grid

__all__ = ["AttentionGridDisplay"]


class AttentionGridDisplay:
    """A labelled grid of maps or overlays, one panel per token.

    Attributes
    ----------
    arrays_ : list of ndarray
        What each panel shows: (gh, gw) maps, or (H, W, 3) uint8 overlays.
    titles_ : list of str
        Panel titles (the tokens).
    images_ : list of matplotlib.image.AxesImage
    axes_ : ndarray of matplotlib.axes.Axes
    figure_ : matplotlib.figure.Figure
    """

    def __init__(self, arrays: Sequence[np.ndarray], titles: Sequence[str], title: str = "") -> None:
        self.arrays_ = list(arrays)
        self.titles_ = list(titles)
        self.title = title

    def plot(self, axes=None, *, ncols: int | None = None, panel_size: float = 1.8, **imshow_kw):
        """Draw the panels; ``axes``: an array of at least ``len(arrays_)`` Axes, or None (new figure)."""
        fig, flat, images = panel_grid(
            self.arrays_,
            self.titles_,
            ncols=ncols,
            axes=axes,
            panel_in=panel_size,
            title=self.title,
            **imshow_kw,
        )
        self.figure_, self.axes_, self.images_ = fig, flat, images
        return self
