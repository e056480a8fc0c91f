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
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from ..errors import InputError, InputTypeError, check_choice
from ..net.features import ImageFeatures, TextFeatures
from ..net.images import as_image_list, image_label, load_image, thumbnail
from ..net.text import as_text_list

if TYPE_CHECKING:
    from ..display.feature_space import FeatureSpaceDisplay
    from ..net.net import BlipNet

__all__ = [
    "centre_per_modality",
    "feature_space_map",
    "reduce_to_2d",
    "reduction_parameters",
]

METHODS = ("umap", "tsne", "pca")
_UMAP_MIN_DIST = 0.1  # umap-learn's default, named so that titles can print it
_TSNE_EXACT_MAX = 300
# UMAP (umap-learn, pynndescent) compiles its numba kernels on its first fit in a process: tens of
# seconds on a laptop CPU, then about a second a map of a few hundred points. Said once, timed.
_UMAP_FITTED = False


# ----------------------------------------------------------------------------------- reduction
def reduction_parameters(
    n: int,
    method: str = "umap",
    *,
    random_state: int | None = 37,
    n_neighbors: int | None = None,
    perplexity: float | None = None,
    metric: str = "cosine",
) -> dict[str, Any]:
    """The parameters :func:`reduce_to_2d` runs with for ``n`` items, defaults filled in.

    Parameters
    ----------
    n : int
        Number of items.
    method, random_state, n_neighbors, perplexity, metric
        As in :func:`reduce_to_2d`.

    Returns
    -------
    dict
        ``method`` (the one that runs: "pca" for fewer than 3 items), then its parameters: UMAP
        ``n_neighbors``, ``min_dist``, ``metric``; t-SNE ``perplexity``, ``metric``; and
        ``random_state``. Figure titles print them.
    """
    if method not in METHODS:
        raise InputError(f"unknown method {method!r}; allowed values: {', '.join(map(repr, METHODS))}")
    if n < 3 or method == "pca":
        return {"method": "pca", "random_state": random_state}
    if method == "tsne":
        perplexity = min(30.0, max(1.0, (n - 1) / 3)) if perplexity is None else float(perplexity)
        if not 0 < perplexity < n:
            raise InputError(f"perplexity must lie in (0, {n}) for {n} items, got {perplexity}")
        return {
            "method": "tsne",
            "perplexity": round(perplexity, 2),
            "metric": metric,
            "random_state": random_state,
        }
    n_neighbors = min(15, n - 1) if n_neighbors is None else int(n_neighbors)
    if not 2 <= n_neighbors < n:
        raise InputError(f"n_neighbors must lie in [2, {n - 1}] for {n} items, got {n_neighbors}")
    return {
        "method": "umap",
        "n_neighbors": n_neighbors,
        "min_dist": _UMAP_MIN_DIST,
        "metric": metric,
        "random_state": random_state,
    }


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

    See Also
    --------
    reduction_parameters : the parameters this runs with, defaults filled in.
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
    params = reduction_parameters(
        n, method, random_state=random_state, n_neighbors=n_neighbors, perplexity=perplexity, metric=metric
    )
    if params["method"] == "pca":
        from sklearn.decomposition import PCA

        k = min(2, n, x.shape[1])
        coords = PCA(n_components=k, random_state=random_state).fit_transform(x)
        return np.pad(coords, ((0, 0), (0, 2 - k))).astype(np.float64)
    if params["method"] == "tsne":
        from sklearn.manifold import TSNE

        tsne = TSNE(
            n_components=2,
            perplexity=params["perplexity"],
            metric=metric,
            init="pca",
            random_state=random_state,
            # exact gradients for small sets: quick, and free of OpenMP thread contention
            method="exact" if n <= _TSNE_EXACT_MAX else "barnes_hut",
        )
        return tsne.fit_transform(x).astype(np.float64)
    import umap

    reducer = umap.UMAP(
        n_neighbors=params["n_neighbors"],
        n_components=2,
        min_dist=params["min_dist"],
        metric=metric,
        random_state=random_state,
        n_jobs=1 if random_state is not None else -1,
        # the spectral start needs a well-connected graph; small sets start at random
        init="spectral" if n > 30 else "random",
    )
    global _UMAP_FITTED
    first = not _UMAP_FITTED
    if first:
        print(
            "UMAP's first map in this Python session: numba compiles its kernels first "
            "(tens of seconds on a CPU, once per session) ...",
            file=sys.stderr,
            flush=True,
        )
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(n_jobs|k >= N|spectral initialisation).*")
        coords = np.asarray(reducer.fit_transform(x), dtype=np.float64)
    _UMAP_FITTED = True
    if first:
        print(
            f"UMAP ready: the first map took {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True
        )
    return coords


def centre_per_modality(embeddings: np.ndarray, kinds: Sequence[str]) -> tuple[np.ndarray, bool]:
    """Each modality's embeddings minus that modality's mean: the modality gap (the offset between
    the image and the text clouds, present in trained BLIP too) taken out before the reduction.

    Parameters
    ----------
    embeddings : ndarray of shape (n, d)
    kinds : sequence of str of length n
        "image", "text" or "point" per row.

    Returns
    -------
    (ndarray of shape (n, d), bool)
        The centred embeddings, and whether they were centred: only when there are at least 2
        images and 2 texts (centring a single item puts it at the origin, which says nothing about
        it); otherwise the embeddings unchanged and False.
    """
    x = np.asarray(embeddings, dtype=np.float64)
    kind_of_row = np.asarray(kinds)
    rows = {k: np.flatnonzero(kind_of_row == k) for k in ("image", "text")}
    if any(len(r) < 2 for r in rows.values()):
        return x, False
    out = x.copy()
    for r in rows.values():
        out[r] -= out[r].mean(axis=0)
    return out, True


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
    texts = as_text_list(value, name="texts")
    return [_Group("text", items=texts)] if texts else []


def _check_nets(groups: list[_Group], model: BlipNet | None) -> None:
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


def _collect(groups: list[_Group], model: BlipNet | None, need_embeddings: bool):
    """-> (kinds, names, thumbnails (per item, None for texts), embeddings (n, d) or None, and per
    item why its text was cut: "tokens", "words" or None)."""
    _check_nets(groups, model)
    kinds: list[str] = []
    names: list[str] = []
    thumbs: list[Any] = []
    cut: list[str | None] = []
    chunks: list[np.ndarray] = []
    image_index = 0
    for group in groups:
        f = group.features
        if isinstance(f, ImageFeatures):
            kinds += ["image"] * len(f)
            cut += [None] * len(f)
            names += list(f.labels)
            thumbs += list(f.thumbnails) if f.thumbnails else [None] * len(f)
            chunks.append(f.embeddings.float().numpy())
            image_index += len(f)
            continue
        if isinstance(f, TextFeatures):
            kinds += ["text"] * len(f)
            cut += list(f.truncated_by)
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
                assert model is not None  # checked above
                encoded = model.encode_texts(raw)
                chunks.append(encoded.embeddings.float().numpy())
                cut += list(encoded.truncated_by)
            else:
                cut += [None] * len(raw)
            continue
        labels = [image_label(item, image_index + i) for i, item in enumerate(raw)]
        row_thumbs: list[Any] = [None] * len(raw)
        if need_embeddings:
            assert model is not None  # checked above
            feats = model.encode_images(raw, keep_raw=False, labels=labels)
            chunks.append(feats.embeddings.float().numpy())
            row_thumbs = list(feats.thumbnails) if feats.thumbnails else row_thumbs
        load = model.preprocessing.load if model is not None else load_image
        for i, item in enumerate(raw):
            if row_thumbs[i] is None:
                row_thumbs[i] = thumbnail(load(item, image_index + i))
        kinds += ["image"] * len(raw)
        cut += [None] * len(raw)
        names += labels
        thumbs += row_thumbs
        image_index += len(raw)
    embeddings = np.concatenate(chunks) if chunks and len(chunks) == len(groups) else None
    return kinds, names, thumbs, embeddings, cut


def _net_name(groups: list[_Group], model: BlipNet | None) -> str:
    """The name of the net that made the embeddings: the model's, else the features' own."""
    if model is not None:
        return str(model.name)
    names = [g.features.model_name for g in groups if g.features is not None and g.features.model_name]
    return " / ".join(dict.fromkeys(names))


def feature_space_map(
    items: Any = None,
    model: BlipNet | None = None,
    *,
    images: Any = None,
    texts: Any = None,
    embeddings: np.ndarray | torch.Tensor | None = None,
    labels: Sequence[Any] | None = None,
    method: str = "umap",
    layout: str = "per-modality",
    random_state: int | None = 37,
    n_neighbors: int | None = None,
    perplexity: float | None = None,
    metric: str = "cosine",
) -> FeatureSpaceDisplay:
    """Map images and texts by their embeddings in 2-D: embedded (if needed) and projected; drawn by
    the result's ``.plot(ax=None, ...)``.

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
    layout : {"per-modality", "joint", "side-by-side"}, default "per-modality"
        How images and texts share the map. Image and text embeddings of BLIP (trained too) lie in
        two clouds apart, the *modality gap*; a joint reduction spends the map on that gap, with
        images in one corner and texts in another, each cloud crowded.

        - ``"per-modality"`` (default): each modality centred on its own mean before the reduction
          (said in the title), then one map. The gap is taken out, so the map shows how items spread
          within their modality and which image sits among which texts; this is the default because
          it spreads both kinds over the whole map, where thumbnails and callouts have room.
        - ``"joint"``: the embeddings as they are; the gap shows.
        - ``"side-by-side"``: the per-modality coordinates in two panels, images and texts, sharing
          their axis limits (a place in one panel is the same place in the other); each panel
          holds only thumbnails or only callouts, the least crowded drawing.

        Centring needs at least 2 images and 2 texts; with fewer (or embeddings without items) the
        coordinates are joint and the title says nothing of centring.
    random_state : int or None, default 37
        A fixed value gives identical coordinates on every run.
    n_neighbors, perplexity, metric
        See :func:`reduce_to_2d`; adapted to few items by default.

    Returns
    -------
    FeatureSpaceDisplay
        ``.coords_``: a DataFrame with ``x``, ``y``, ``kind``, ``label``, ``name``, and
        ``truncated_by`` ("tokens" or "words" for a text cut before it was embedded), in map order:
        ``items``, then ``images``, then ``texts``. ``.plot(ax=None, ...)`` draws it (an Axes, a pair
        for "side-by-side"; ``label`` to choose the items labelled, ``max_thumbnails``,
        ``max_texts``, ``thumbnail_size``, ``title``, ...: see :meth:`FeatureSpaceDisplay.plot`)
        and sets ``.ax_`` and ``.figure_``; its title names the net, the embedding ("256-d ITC
        embeddings") and the reduction with its parameters. Labels that do not fit are left out
        and counted in a note; :class:`blipviz.FeatureSpaceExplorer` shows them all.

    Examples
    --------
    >>> blipviz.feature_space_map(model=model, images=photos, texts=captions).plot()  # doctest: +SKIP
    >>> both = [model.encode_images(photos), model.encode_texts(captions)]  # doctest: +SKIP
    >>> blipviz.feature_space_map(both, layout="side-by-side").plot()  # doctest: +SKIP
    """
    from ..display.feature_space import LAYOUTS, FeatureSpaceDisplay

    check_choice("layout", layout, LAYOUTS)
    groups = _groups_of_items(items) + _groups_of(images, "image") + _groups_of(texts, "text")
    kinds, names, thumbs, computed, cut = _collect(groups, model, need_embeddings=embeddings is None)
    from_net = embeddings is None
    if embeddings is not None:
        emb = (
            embeddings.detach().float().cpu().numpy() if isinstance(embeddings, torch.Tensor) else embeddings
        )
        emb = np.asarray(emb, dtype=np.float64)
        if not groups:
            kinds = ["point"] * len(emb)
            names = [f"point {i}" for i in range(len(emb))]
            thumbs = [None] * len(emb)
            cut = [None] * len(emb)
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
    centred = False
    reduced = emb
    if layout != "joint":
        reduced, centred = centre_per_modality(emb, kinds)
    params = reduction_parameters(
        len(emb),
        method,
        random_state=random_state,
        n_neighbors=n_neighbors,
        perplexity=perplexity,
        metric=metric,
    )
    xy = reduce_to_2d(
        reduced,
        method,
        random_state=random_state,
        n_neighbors=n_neighbors,
        perplexity=perplexity,
        metric=metric,
    )
    coords = pd.DataFrame(
        {
            "x": xy[:, 0],
            "y": xy[:, 1],
            "kind": kinds,
            "label": group,
            "name": names,
            "truncated_by": pd.Series(cut, dtype=object),  # None where not cut
        }
    )
    dim = emb.shape[1] if emb.ndim == 2 else 0
    return FeatureSpaceDisplay(
        coords,
        thumbs,
        method=method,
        random_state=random_state,
        layout=layout,
        centred=centred,
        net_name=_net_name(groups, model),
        # the 256-d projections are what BLIP's image-text contrastive (ITC) loss compares
        embedding=f"{dim}-d ITC embeddings" if from_net else f"{dim}-d embeddings",
        reduction=params,
    )
