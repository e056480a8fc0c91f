"""Maps of the embedding space: images and texts placed in 2-D by UMAP, t-SNE or PCA.

Image and text embeddings live in the same 256-d space (``vision_proj`` / ``text_proj``, both
L2-normalised), so one map can hold both: images are drawn as thumbnails, texts as callout labels,
and every point is coloured by its label. umap-learn and scikit-learn are imported when used.

What is an image and what is a text is said, never guessed: ``images=`` and ``texts=`` take them
apart (a ``str`` in ``images=`` is a path, in ``texts=`` a text). The positional ``items`` may mix
only items whose kind their type tells (PIL images, arrays, ``pathlib.Path``, bytes, features); a
plain ``str`` there is refused, whether or not a file of that name exists.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from .errors import InputError, InputTypeError
from .images import as_image_list, load_image
from .plotting import _add_thumbnail, _new_axes, shorten
from .results import ImageFeatures, TextFeatures
from .text import as_text_list

if TYPE_CHECKING:
    from .itm import BlipITM

__all__ = ["FeatureSpaceDisplay", "feature_space_plot", "reduce_to_2d"]

METHODS = ("umap", "tsne", "pca")
_THUMBNAIL_PIXELS = 64
_TSNE_EXACT_MAX = 300


# ----------------------------------------------------------------------------------- reduction
def reduce_to_2d(
    embeddings: np.ndarray,
    method: str = "umap",
    *,
    random_state: int | None = 37,
    n_neighbors: int | None = None,
    perplexity: float | None = None,
    metric: str = "cosine",
) -> np.ndarray:
    """Project embeddings to the plane.

    Parameters
    ----------
    embeddings : ndarray of shape (n, d)
    method : {"umap", "tsne", "pca"}, default "umap"
        UMAP (umap-learn), t-SNE or PCA (scikit-learn). With fewer than 3 items UMAP and t-SNE are
        meaningless; PCA is used instead (a single item sits at the origin).
    random_state : int or None, default 37
        Fixed: the same coordinates on every run (UMAP then runs single-threaded).
    n_neighbors : int, optional
        UMAP neighbourhood; default ``min(15, n - 1)``.
    perplexity : float, optional
        t-SNE perplexity; default ``min(30, max(1, (n - 1) / 3))`` (it must stay below n).
    metric : str, default "cosine"
        Distance for UMAP and t-SNE.

    Returns
    -------
    ndarray of shape (n, 2), float64
    """
    if method not in METHODS:
        raise InputError(f"unknown method {method!r}; allowed values: {', '.join(map(repr, METHODS))}")
    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2 or len(x) == 0:
        raise InputError(f"embeddings must have shape (n, d) with n >= 1, got {x.shape}")
    if not np.isfinite(x).all():
        raise InputError("embeddings contain NaN or inf values")
    n = len(x)
    if n == 1:
        return np.zeros((1, 2))
    if n < 3 or method == "pca":
        from sklearn.decomposition import PCA

        k = min(2, n, x.shape[1])
        coords = PCA(n_components=k, random_state=random_state).fit_transform(x)
        return np.pad(coords, ((0, 0), (0, 2 - k))).astype(np.float64)
    if method == "tsne":
        from sklearn.manifold import TSNE

        perplexity = min(30.0, max(1.0, (n - 1) / 3)) if perplexity is None else float(perplexity)
        if not 0 < perplexity < n:
            raise InputError(f"perplexity must lie in (0, {n}) for {n} items, got {perplexity}")
        tsne = TSNE(
            n_components=2,
            perplexity=perplexity,
            metric=metric,
            init="pca",
            random_state=random_state,
            # exact gradients for small sets: quick, and free of OpenMP thread contention
            method="exact" if n <= _TSNE_EXACT_MAX else "barnes_hut",
        )
        return tsne.fit_transform(x).astype(np.float64)
    import umap

    n_neighbors = min(15, n - 1) if n_neighbors is None else int(n_neighbors)
    if not 2 <= n_neighbors < n:
        raise InputError(f"n_neighbors must lie in [2, {n - 1}] for {n} items, got {n_neighbors}")
    reducer = umap.UMAP(
        n_neighbors=n_neighbors,
        n_components=2,
        metric=metric,
        random_state=random_state,
        n_jobs=1 if random_state is not None else -1,
        # the spectral start needs a well-connected graph; small sets start at random
        init="spectral" if n > 30 else "random",
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(n_jobs|k >= N|spectral initialisation).*")
        return np.asarray(reducer.fit_transform(x), dtype=np.float64)


# ---------------------------------------------------------------------------------------- items
@dataclass
class _Group:
    """Consecutive items of one kind: raw images, raw texts, or one features object."""

    kind: str  # "image" or "text"
    items: list[Any] | None = None  # raw images or texts
    features: ImageFeatures | TextFeatures | None = None


def _is_image(item: Any) -> bool:
    """Items whose type says they are an image (a ``str`` never does: it may be a text)."""
    from PIL import Image

    return isinstance(item, Image.Image | np.ndarray | bytes | os.PathLike)


def _groups_of_items(items: Any) -> list[_Group]:
    """The positional ``items``: features, or items whose type tells their kind."""
    if items is None:
        return []
    if isinstance(items, ImageFeatures | TextFeatures):
        items = [items]
    elif isinstance(items, str) or _is_image(items):
        items = [items]
    elif not isinstance(items, list | tuple):
        try:
            items = list(items)
        except TypeError:
            raise InputTypeError(
                f"items must be images, features or a list of them, got {type(items).__name__}"
            ) from None
    groups: list[_Group] = []
    for i, item in enumerate(items):
        if isinstance(item, ImageFeatures | TextFeatures):
            groups.append(_Group("image" if isinstance(item, ImageFeatures) else "text", features=item))
        elif isinstance(item, str):
            raise InputError(
                f"items[{i}] is a str ({item!r:.60}): it could be a text or the path of an image, and "
                "blipviz does not guess: pass images=[...] for image files (or a pathlib.Path) and "
                "texts=[...] for texts"
            )
        elif _is_image(item):
            if isinstance(item, np.ndarray) and item.ndim == 4:
                raw = list(item)  # a stack of images
            else:
                raw = [item]
            if groups and groups[-1].kind == "image" and groups[-1].items is not None:
                groups[-1].items.extend(raw)
            else:
                groups.append(_Group("image", items=raw))
        else:
            raise InputTypeError(
                f"items[{i}] is a {type(item).__name__}: items take PIL images, numpy arrays, "
                "pathlib.Path, bytes, ImageFeatures or TextFeatures; pass texts with texts=[...]"
            )
    return groups


def _groups_of(value: Any, kind: str) -> list[_Group]:
    """``images=`` or ``texts=``: features, a list of features, or raw items of that kind."""
    features_type = ImageFeatures if kind == "image" else TextFeatures
    if value is None:
        return []
    if isinstance(value, features_type):
        return [_Group(kind, features=value)]
    if isinstance(value, list | tuple) and value and all(isinstance(v, features_type) for v in value):
        return [_Group(kind, features=v) for v in value]
    if kind == "image":
        items = as_image_list(value)
        for i, item in enumerate(items):
            if isinstance(item, TextFeatures):
                raise InputTypeError(f"images[{i}] is TextFeatures: pass them with texts=")
        return [_Group("image", items=items)] if items else []
    items = as_text_list(value, name="texts")
    return [_Group("text", items=items)] if items else []


def _check_nets(groups: list[_Group], model: BlipITM | None) -> None:
    """Features must come from ``model`` (when given), and features of one kind from one net."""
    seen: dict[str, tuple[str, str]] = {}
    for group in groups:
        f = group.features
        if f is None:
            continue
        if model is not None:
            model.check_origin(f)
        elif f.fingerprint:
            first = seen.setdefault(group.kind, (f.fingerprint, f.model_name))
            if first[0] != f.fingerprint:
                raise InputError(
                    f"these {type(f).__name__} come from two nets ({first[1]!r}, weights {first[0][:12]}; "
                    f"{f.model_name!r}, weights {f.fingerprint[:12]}): their embeddings are not in one "
                    "space; compute them with one net"
                )


def _collect(groups: list[_Group], model: BlipITM | None, need_embeddings: bool):
    """-> (kinds, names, thumbnails (per item, None for texts), embeddings (n, d) or None)."""
    from .itm import _image_label

    _check_nets(groups, model)
    kinds: list[str] = []
    names: list[str] = []
    thumbs: list[Any] = []
    chunks: list[np.ndarray] = []
    image_index = 0
    for group in groups:
        f = group.features
        if isinstance(f, ImageFeatures):
            kinds += ["image"] * len(f)
            names += list(f.labels)
            thumbs += list(f.thumbnails) if f.thumbnails else [None] * len(f)
            chunks.append(f.embeddings.float().numpy())
            image_index += len(f)
            continue
        if isinstance(f, TextFeatures):
            kinds += ["text"] * len(f)
            names += list(f.texts)
            thumbs += [None] * len(f)
            chunks.append(f.embeddings.float().numpy())
            continue
        raw = group.items or []
        if need_embeddings and model is None:
            raise InputError("pass model=... to embed the items, or embeddings=... computed before")
        if group.kind == "text":
            kinds += ["text"] * len(raw)
            names += list(raw)
            thumbs += [None] * len(raw)
            if need_embeddings:
                chunks.append(model.encode_texts(raw).embeddings.float().numpy())
            continue
        labels = [_image_label(item, image_index + i) for i, item in enumerate(raw)]
        row_thumbs: list[Any] = [None] * len(raw)
        if need_embeddings:
            feats = model.encode_images(raw, keep_raw=False, labels=labels)
            chunks.append(feats.embeddings.float().numpy())
            row_thumbs = list(feats.thumbnails) if feats.thumbnails else row_thumbs
        load = model.preprocessing.load if model is not None else load_image
        for i, item in enumerate(raw):
            if row_thumbs[i] is None:
                thumb = load(item, image_index + i).copy()
                thumb.thumbnail((_THUMBNAIL_PIXELS, _THUMBNAIL_PIXELS))
                row_thumbs[i] = thumb
        kinds += ["image"] * len(raw)
        names += labels
        thumbs += row_thumbs
        image_index += len(raw)
    embeddings = np.concatenate(chunks) if chunks and len(chunks) == len(groups) else None
    return kinds, names, thumbs, embeddings


def _palette(categories: Sequence[str]) -> dict[str, tuple[float, ...]]:
    import matplotlib as mpl

    n = len(categories)
    if n <= 10:
        colors = [mpl.colormaps["tab10"](i) for i in range(n)]
    elif n <= 20:
        colors = [mpl.colormaps["tab20"](i) for i in range(n)]
    else:
        colors = [mpl.colormaps["turbo"](v) for v in np.linspace(0.05, 0.95, n)]
    return dict(zip(categories, colors, strict=True))


# -------------------------------------------------------------------------------------- display
class FeatureSpaceDisplay:
    """A 2-D map of image and text embeddings.

    Build it with :func:`feature_space_plot` (computes and draws) or
    :meth:`FeatureSpaceDisplay.from_items` (computes only), then ``.plot(ax=None, ...)``.

    Parameters
    ----------
    coords : DataFrame
        One row per item: ``x``, ``y``, ``kind`` ("image", "text" or "point"), ``label`` (the
        colour group) and ``name`` (file name or text).
    thumbnails : list of PIL.Image.Image or None, optional
        Per item (None for texts and points).
    method : str
    random_state : int or None

    Attributes
    ----------
    coords_ : DataFrame
    scatter_ : matplotlib.collections.PathCollection
        All points; ``scatter_.get_offsets()`` equals ``coords_[["x", "y"]]``.
    thumbnails_ : list of matplotlib.offsetbox.AnnotationBbox
        The image thumbnails drawn (at most ``max_thumbnails``).
    texts_ : list of matplotlib.text.Annotation
        The text callouts drawn (at most ``max_texts``).
    colors_ : dict
        Label -> RGBA colour.
    legend_ : matplotlib.legend.Legend or None
    ax_ : matplotlib.axes.Axes
    figure_ : matplotlib.figure.Figure
    """

    def __init__(
        self,
        coords: pd.DataFrame,
        thumbnails: Sequence[Any] | None = None,
        *,
        method: str = "",
        random_state: int | None = 37,
    ) -> None:
        self.coords_ = coords
        self.thumbnails = list(thumbnails) if thumbnails is not None else [None] * len(coords)
        self.method = method
        self.random_state = random_state

    @classmethod
    def from_items(
        cls,
        items: Any = None,
        model: BlipITM | None = None,
        *,
        images: Any = None,
        texts: Any = None,
        embeddings: np.ndarray | torch.Tensor | None = None,
        labels: Sequence[Any] | None = None,
        method: str = "umap",
        random_state: int | None = 37,
        n_neighbors: int | None = None,
        perplexity: float | None = None,
        metric: str = "cosine",
    ) -> FeatureSpaceDisplay:
        """Embed (if needed) and project the items; nothing is drawn. Arguments as in
        :func:`feature_space_plot`."""
        groups = _groups_of_items(items) + _groups_of(images, "image") + _groups_of(texts, "text")
        kinds, names, thumbs, computed = _collect(groups, model, need_embeddings=embeddings is None)
        if embeddings is not None:
            emb = (
                embeddings.detach().float().cpu().numpy()
                if isinstance(embeddings, torch.Tensor)
                else embeddings
            )
            emb = np.asarray(emb, dtype=np.float64)
            if not groups:
                kinds = ["point"] * len(emb)
                names = [f"point {i}" for i in range(len(emb))]
                thumbs = [None] * len(emb)
            elif len(kinds) != len(emb):
                raise InputError(f"got {len(emb)} embeddings for {len(kinds)} items")
        elif computed is None:
            raise InputError(
                "nothing to map: pass images=... and / or texts=... (with a model, or as features), or "
                "embeddings=..."
            )
        else:
            emb = computed
        if labels is None:
            group = list(kinds)
        else:
            group = [str(v) for v in labels]
            if len(group) != len(emb):
                raise InputError(f"got {len(group)} labels for {len(emb)} items")
        xy = reduce_to_2d(
            emb,
            method,
            random_state=random_state,
            n_neighbors=n_neighbors,
            perplexity=perplexity,
            metric=metric,
        )
        coords = pd.DataFrame({"x": xy[:, 0], "y": xy[:, 1], "kind": kinds, "label": group, "name": names})
        return cls(coords, thumbs, method=method, random_state=random_state)

    def plot(
        self,
        ax=None,
        *,
        max_thumbnails: int = 100,
        max_texts: int = 40,
        thumbnail_size: float = 28.0,
        marker_size: float | None = None,
        max_text_chars: int = 32,
        legend: bool | None = None,
        title: str | None = None,
    ) -> FeatureSpaceDisplay:
        """Draw the map: every item as a point coloured by label, images as thumbnails, texts as
        callout labels.

        Parameters
        ----------
        ax : matplotlib Axes, optional
        max_thumbnails : int, default 100
            At most this many thumbnails (a random subset for a fixed ``random_state``); the points
            of all images are still drawn.
        max_texts : int, default 40
            At most this many text callouts.
        thumbnail_size : float, default 28
            Longest side of a thumbnail, in points.
        marker_size : float, optional
            Point area; default shrinks from 40 to 4 as the number of items grows.
        max_text_chars : int, default 32
            Callouts longer than this are shortened.
        legend : bool, optional
            Default: when there are 2 to 20 labels.
        title : str, optional

        Returns
        -------
        FeatureSpaceDisplay
        """
        c = self.coords_
        n = len(c)
        fig, ax = _new_axes((7.0, 6.0), ax)
        categories = list(dict.fromkeys(c["label"]))
        self.colors_ = _palette(categories)
        colors = [self.colors_[v] for v in c["label"]]
        size = marker_size if marker_size is not None else float(np.clip(400.0 / max(n, 1), 4.0, 40.0))
        self.scatter_ = ax.scatter(c["x"], c["y"], c=colors, s=size, linewidths=0, zorder=2)
        rng = np.random.RandomState(self.random_state)

        def pick(index: np.ndarray, limit: int) -> np.ndarray:
            if len(index) <= limit:
                return index
            return np.sort(rng.choice(index, size=limit, replace=False))

        self.thumbnails_ = []
        with_thumbs = np.array([i for i in range(n) if self.thumbnails[i] is not None], dtype=int)
        for i in pick(with_thumbs, max_thumbnails):
            self.thumbnails_.append(
                _add_thumbnail(
                    ax,
                    self.thumbnails[i],
                    (c["x"].iloc[i], c["y"].iloc[i]),
                    size_pt=thumbnail_size,
                    frameon=True,
                    pad=0.15,
                    bboxprops=dict(edgecolor=colors[i], linewidth=1.5),
                    zorder=3,
                )
            )
        self.texts_ = []
        text_rows = np.flatnonzero((c["kind"] == "text").to_numpy())
        for k, i in enumerate(pick(text_rows, max_texts)):
            dx, dy = [(12, 10), (-12, 10), (12, -10), (-12, -10)][k % 4]
            self.texts_.append(
                ax.annotate(
                    shorten(c["name"].iloc[i], max_text_chars),
                    (c["x"].iloc[i], c["y"].iloc[i]),
                    xytext=(dx, dy),
                    textcoords="offset points",
                    ha="left" if dx > 0 else "right",
                    fontsize=8,
                    bbox=dict(boxstyle="round,pad=0.25", facecolor="white", edgecolor=colors[i], alpha=0.9),
                    arrowprops=dict(arrowstyle="-", color=colors[i], linewidth=0.8),
                    zorder=4,
                )
            )
        self.legend_ = None
        if legend if legend is not None else 2 <= len(categories) <= 20:
            from matplotlib.lines import Line2D

            handles = [
                Line2D([], [], marker="o", linestyle="", color=self.colors_[v], label=str(v))
                for v in categories
            ]
            self.legend_ = ax.legend(handles=handles, loc="best", fontsize=8, framealpha=0.8)
        pad_x = 0.08 * (np.ptp(c["x"]) or 1.0)
        pad_y = 0.08 * (np.ptp(c["y"]) or 1.0)
        ax.set_xlim(c["x"].min() - pad_x, c["x"].max() + pad_x)
        ax.set_ylim(c["y"].min() - pad_y, c["y"].max() + pad_y)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(title if title is not None else f"{self.method.upper()} of {n} embeddings", fontsize=10)
        self.ax_ = ax
        self.figure_ = fig
        return self


def feature_space_plot(
    items: Any = None,
    model: BlipITM | None = None,
    *,
    images: Any = None,
    texts: Any = None,
    embeddings: np.ndarray | torch.Tensor | None = None,
    labels: Sequence[Any] | None = None,
    method: str = "umap",
    random_state: int | None = 37,
    n_neighbors: int | None = None,
    perplexity: float | None = None,
    metric: str = "cosine",
    ax=None,
    **plot_kwargs: Any,
) -> FeatureSpaceDisplay:
    """Map images and texts by their embeddings in 2-D.

    Parameters
    ----------
    items : features, images, or a list mixing them, optional
        Items whose type tells their kind: ``ImageFeatures`` / ``TextFeatures`` (embeddings used as
        they are), PIL images, numpy arrays, ``pathlib.Path``, encoded bytes. A plain ``str`` is
        refused here (:class:`blipviz.InputError`): it could be a text or a path, so pass it with
        ``images=`` or ``texts=``. Images become thumbnails, texts callouts.
    model : BlipITM, optional
        Embeds raw images and texts (``encode_images`` / ``encode_texts``). Features given with it
        must come from it (:meth:`blipviz.BlipITM.check_origin`); without it, features of one kind
        must come from one net.
    images : image, sequence of images, ImageFeatures, or a list of ImageFeatures, optional
        Images: a ``str`` here is always a path (a missing file is an :class:`blipviz.ImageLoadError`).
    texts : str, sequence of str, TextFeatures, or a list of TextFeatures, optional
        Texts: a ``str`` is one text, even if a file of that name exists.
    embeddings : ndarray or Tensor of shape (n, d), optional
        Precomputed embeddings, one per item in map order; the items are then optional and only used
        for drawing.
    labels : sequence of length n, optional
        Colour groups; default: the kind of each item ("image", "text", "point").
    method : {"umap", "tsne", "pca"}, default "umap"
    random_state : int or None, default 37
        A fixed value gives identical coordinates on every run.
    n_neighbors, perplexity, metric
        See :func:`reduce_to_2d`; adapted to few items by default.
    ax : matplotlib Axes, optional
    **plot_kwargs
        Passed to :meth:`FeatureSpaceDisplay.plot` (``max_thumbnails``, ``max_texts``, ...).

    Returns
    -------
    FeatureSpaceDisplay
        ``.coords_`` (DataFrame with ``x``, ``y``, ``kind``, ``label``, ``name``), ``.ax_``,
        ``.figure_``. Map order: ``items``, then ``images``, then ``texts``.

    Examples
    --------
    >>> blipviz.feature_space_plot(model=model, images=photos, texts=captions)  # doctest: +SKIP
    >>> both = [model.encode_images(photos), model.encode_texts(captions)]  # doctest: +SKIP
    >>> blipviz.feature_space_plot(both)  # doctest: +SKIP
    """
    disp = FeatureSpaceDisplay.from_items(
        items,
        model,
        images=images,
        texts=texts,
        embeddings=embeddings,
        labels=labels,
        method=method,
        random_state=random_state,
        n_neighbors=n_neighbors,
        perplexity=perplexity,
        metric=metric,
    )
    return disp.plot(ax, **plot_kwargs)
