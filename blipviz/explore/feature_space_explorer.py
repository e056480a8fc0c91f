"""An interactive map of image and text embeddings: hover to see an item, lasso a region to list it,
type a query to rank the selected images by ITM.

The scatter is `jupyter-scatter <https://jupyter-scatter.dev>`_ (``jscatter``: WebGL, built-in lasso
and box selection, stays fluid with 100,000 points), an optional dependency
(``pip install 'blipviz[explorer]'``); without it the constructors raise an :class:`ImportError` that
says so. What travels to the browser when the explorer is shown is the points only, 16 bytes a point
(x, y, colour category and opacity as float32) plus jscatter's script (about 2.2 MB, once per widget);
texts, names and thumbnails stay in the kernel and are sent for the one item hovered or the items
listed.

- **Points** are coloured by kind with :func:`blipviz.display.labels.palette`; the tooltip shows the
  kind and the name (a text up to 80 characters whole, :func:`~blipviz.display.labels.fit_text`).
- **Hover** fills the panel beside the map: the whole text of a text, a large thumbnail (256 px) of an
  image, fetched when first hovered and remembered (the last 64).
- **Selection** (a lasso or a rectangle: the ``drag`` buttons, or Shift + drag) lists the
  selected items, images with thumbnails and texts escaped as HTML.
- **Query**: the selected images are ranked by ITM probability against the typed text, through
  :func:`blipviz.analysis.search.search` (BLIP's two-stage way: at most ``max_ranked`` images
  reach the ITM head; when more are selected, the ones closest to the query by cosine, or the first
  ones when no embeddings are known). Each image's raw ViT states are computed once and kept (the
  last ``max_cached_images``), so a new query or a new selection re-runs only the multimodal
  encoder, and each (query, image) pair is scored once. With a feature cache
  (``load_model(cache_dir=...)``) states evicted here are read back from disk instead of recomputed.

Two ways in: ``FeatureSpaceExplorer(model, images=..., texts=...)`` embeds the items (each image
passes the ViT once) and maps them with :func:`blipviz.analysis.feature_space.feature_space_map`;
``FeatureSpaceExplorer.from_coordinates(model, coords, kinds, names, image_fn=...)`` takes a map
computed elsewhere (a collection of 100,000 items) and fetches images only when they are shown or
ranked.
"""

from __future__ import annotations

import base64
import html
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pandas as pd

from ..display.labels import fit_text, palette
from ..errors import InputError, InputTypeError, positive_int
from ..net.features import ImageFeatures, TextFeatures
from ..net.images import as_image_list, thumbnail
from ..net.text import as_text_list
from .widgets import png_bytes, reports_errors

if TYPE_CHECKING:
    from ..itm import BlipITM

__all__ = ["KINDS", "FeatureSpaceExplorer", "payload_bytes"]

#: The kinds of points, in the order of their colours in :func:`~blipviz.display.labels.palette`.
KINDS = ("image", "text")
_HOVER_SIDE = 256  # longest side of the hovered image, in pixels
_LIST_SIDE = 64  # longest side of the thumbnails in the selection list
_HOVER_CACHE = 64  # hovered thumbnails remembered (PNG bytes)
_ITM_COLOR = "#6baed6"
#: What a drag on the map does: jupyter-scatter's mouse mode and lasso type.
_DRAG_MODES = {
    "pan & zoom": ("panZoom", None),
    "lasso": ("lasso", "freeform"),
    "rectangle": ("lasso", "rectangle"),
}
_INSTALL = "pip install 'blipviz[explorer]'  (or: pip install jupyter-scatter)"


def _jscatter():
    """The ``jscatter`` module, or an ImportError that says how to install it."""
    try:
        import jscatter
    except ImportError as exc:
        raise ImportError(
            "FeatureSpaceExplorer draws its map with jupyter-scatter (WebGL), which is not installed: "
            f"{_INSTALL}. blipviz.feature_space_map(...).plot() draws the same map as a static figure "
            "without it."
        ) from exc
    return jscatter


def payload_bytes(widget: Any) -> dict[str, int]:
    """Bytes of a widget's state as the kernel sends it to the browser when it is shown.

    Parameters
    ----------
    widget : ipywidgets.Widget
        The widget alone (not its children).

    Returns
    -------
    dict
        ``json``: the JSON part, without the widget's script and style (``_esm``, ``_css`` of an
        anywidget); ``buffers``: the binary buffers (jscatter's points); ``script``: ``_esm`` and
        ``_css``; ``total``: their sum.
    """
    import json

    state = widget.get_state()
    script = sum(len(str(state.pop(k)).encode()) for k in ("_esm", "_css") if k in state)
    buffers = 0

    def strip(value):  # binary buffers travel beside the JSON, as ipywidgets sends them
        nonlocal buffers
        if isinstance(value, memoryview | bytes | bytearray):
            buffers += memoryview(value).nbytes
            return None
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [strip(v) for v in value]
        return value

    text = json.dumps(strip(state), default=str)
    sizes = {"json": len(text.encode()), "buffers": buffers, "script": script}
    sizes["total"] = sum(sizes.values())
    return sizes


def _data_uri(picture) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(picture)).decode("ascii")


def _concat(parts: Sequence[ImageFeatures]) -> ImageFeatures:
    """One ImageFeatures of several (each with raw states), in order."""
    import torch

    return ImageFeatures(
        embeddings=torch.cat([p.embeddings for p in parts]),
        projected=torch.cat([p.projected for p in parts]),
        raw=torch.cat(cast("list[torch.Tensor]", [p.raw for p in parts])),  # each with raw states
        labels=[label for p in parts for label in p.labels],
        thumbnails=None,
        model_name=parts[0].model_name,
        fingerprint=parts[0].fingerprint,
    )


def _padded_domain(values: np.ndarray, margin: float = 0.08) -> tuple[float, float]:
    """The range of ``values`` widened by ``margin`` of its span on each side (1 if all are equal)."""
    low, high = float(values.min()), float(values.max())
    pad = margin * (high - low) if high > low else 1.0
    return (low - pad, high + pad)


def _cut_note(reason: str | None) -> str:
    return {"tokens": "cut at the token limit", "words": "cut at 50 words"}.get(reason or "", "")


# -------------------------------------------------------------------------------------- explorer
class FeatureSpaceExplorer:
    """Images and texts on their 2-D embedding map: hover, select, rank the selection by ITM.

    Parameters
    ----------
    model : BlipITM
    images : image, sequence of images, or ImageFeatures with raw states, optional
        A ``str`` is a path. Each image passes the vision encoder once, here; its raw states are kept
        for ranking when there are at most ``max_cached_images`` images (else they are computed again
        when the image is first ranked, or read from the net's feature cache).
    texts : str or sequence of str, optional
        A bare ``str`` is one text.
    method : {"umap", "tsne", "pca"}, default "umap"
    random_state : int or None, default 37
        Passed to :func:`blipviz.analysis.feature_space.feature_space_map`.
    query : str, optional
        The first query.
    max_ranked : int, default 50
        At most this many selected images are scored by the ITM head per query.
    max_listed : int, default 100
        At most this many selected items are listed (ranked images first).
    max_cached_images : int, default 256
        Raw ViT states kept (about 1.8 MB per ViT-B/16 image in float32), least recently used
        dropped first.
    width, height : int, default 640, 480
        Size of the map, in pixels.

    Attributes
    ----------
    widget : ipywidgets.VBox
        The explorer; a notebook shows it when the explorer ends a cell.
    scatter : jscatter.Scatter
        The map; ``scatter.widget`` is the jupyter-scatter widget (``selection``, ``hovering``).
    query : ipywidgets.Text
        The query; setting ``query.value`` ranks the selection.
    drag : ipywidgets.ToggleButtons
        What a drag on the map does: "pan & zoom" (Shift + drag draws a lasso), "lasso" or
        "rectangle" (the wheel zooms in every mode).
    hover_image : ipywidgets.Image
    hover_text : ipywidgets.HTML
        The hovered item: a large thumbnail, or the whole text.
    selection_list : ipywidgets.HTML
        The selected items; the images ranked when there is a query.
    message : ipywidgets.HTML
        Errors of the last action (empty when it worked).
    coords_ : DataFrame
        One row per point: ``x``, ``y``, ``kind`` ("image" or "text"), ``name`` (file name or the
        whole text), ``truncated_by`` ("tokens", "words" or None); index = point index. With
        ``images=`` / ``texts=`` the columns of ``feature_space_map``'s ``coords_``.
    selection_ : ndarray of int
        Point indices of the selection, ascending.
    selected_ : DataFrame
        The rows of ``coords_`` selected.
    ranking_ : DataFrame or None
        The ranked images (None without a query or without selected images): ``point``, ``name``,
        ``itm`` (probability), ``itm_logit``, ``cosine``; index ``rank`` (1 = best). ``attrs``:
        ``query``, ``selected_images`` (how many were selected), ``candidates`` ("all",
        "cosine" or "first": how the ranked ones were chosen), ``truncated_by`` (of the query).
    error_ : Exception or None
    """

    def __init__(
        self,
        model: BlipITM,
        images: Any = None,
        texts: str | Sequence[str] | None = None,
        *,
        method: str = "umap",
        random_state: int | None = 37,
        query: str | None = None,
        max_ranked: int = 50,
        max_listed: int = 100,
        max_cached_images: int = 256,
        width: int = 640,
        height: int = 480,
    ) -> None:
        from ..analysis.feature_space import feature_space_map

        _jscatter()
        max_cached_images = positive_int("max_cached_images", max_cached_images)
        image_fn: Callable[[Any], Any] | None = None
        features: ImageFeatures | None = None
        if isinstance(images, ImageFeatures):
            if images.raw is None:
                raise InputError(
                    "these ImageFeatures were computed with keep_raw=False; ranking by ITM needs the raw "
                    "image states: call encode_images(..., keep_raw=True), or pass the images"
                )
            features = images
        elif images is not None:
            items = as_image_list(images)
            if items:
                keep = len(items) <= max_cached_images
                features = model.encode_images(items, keep_raw=keep)  # the one ViT pass
                image_fn = items.__getitem__
        text_list = as_text_list(texts, name="texts") if texts is not None else []
        text_features = model.encode_texts(text_list) if text_list else None
        if features is None and text_features is None:
            raise InputError("nothing to explore: pass images=... and / or texts=...")
        mapped = feature_space_map(
            model=model, images=features, texts=text_features, method=method, random_state=random_state
        )
        coords = mapped.coords_[["x", "y", "kind", "name", "truncated_by"]].copy()
        parts = [f.embeddings for f in (features, text_features) if f is not None]
        import torch

        self._setup(
            model,
            coords,
            image_fn=image_fn,
            ids=list(range(len(coords))),
            embeddings=torch.cat(parts).float(),
            max_ranked=max_ranked,
            max_listed=max_listed,
            max_cached_images=max_cached_images,
            width=width,
            height=height,
            title=f"{method.upper() if method != 'tsne' else 't-SNE'} of the image and text embeddings",
        )
        if features is not None:
            thumbs = features.thumbnails or []
            for i, thumb in enumerate(thumbs):
                self._small[i] = thumb
            if features.raw is not None:
                if image_fn is None:  # features without images: their states cannot be computed again
                    self.max_cached_images = max(max_cached_images, len(features))
                    self._large_fallback = bool(thumbs)  # their thumbnails are all there is to show
                for i in range(len(features)):
                    self._states[i] = features[i]
        if query:
            self.query.value = query

    # ----------------------------------------------------------------------------- from a map
    @classmethod
    def from_collection(
        cls,
        collection: Any,
        model: BlipITM | None = None,
        *,
        method: str = "umap",
        sample: int | None = None,
        **options: Any,
    ) -> FeatureSpaceExplorer:
        """An explorer of a collection's images (:class:`blipviz.Collection`): its map
        (``collection.feature_space(method, sample=sample)``), images read back from the collection's
        source only when shown or ranked.

        Parameters
        ----------
        collection : blipviz.Collection
        model : BlipITM, optional
            Default: the collection's net (``collection.model``).
        method : {"umap", "tsne", "pca"}, default "umap"
        sample : int, optional
            Map this many points drawn at random; default all.
        **options
            As in :meth:`from_coordinates` (``query``, ``max_ranked``, ``width``, ...).
        """
        net = model if model is not None else collection.model
        mapped = collection.feature_space(method, sample=sample)
        ids = mapped["id"].tolist()
        title = f"{len(ids):,} images of a collection ({method.upper()} of their embeddings)"
        options.setdefault("title", title)
        return cls.from_coordinates(
            net,
            mapped[["x", "y"]],
            ["image"] * len(ids),
            ids,
            image_fn=collection.image,
            ids=ids,
            embeddings=np.asarray(collection.embeddings)[mapped["row"].to_numpy()],
            **options,
        )

    @classmethod
    def from_coordinates(
        cls,
        model: BlipITM,
        coords: Any,
        kinds: Sequence[str],
        names: Sequence[str],
        *,
        image_fn: Callable[[Any], Any] | None = None,
        ids: Sequence[Any] | None = None,
        embeddings: Any = None,
        truncated_by: Sequence[str | None] | None = None,
        query: str | None = None,
        max_ranked: int = 50,
        max_listed: int = 100,
        max_cached_images: int = 256,
        width: int = 640,
        height: int = 480,
        title: str = "Map of the image and text embeddings",
    ) -> FeatureSpaceExplorer:
        """An explorer of a map computed elsewhere; images are fetched only when shown or ranked.

        Parameters
        ----------
        model : BlipITM
            The net the map's embeddings came from; it ranks the selection.
        coords : array-like of shape (n, 2), or DataFrame with columns ``x``, ``y``
        kinds : sequence of {"image", "text"}, length n
        names : sequence of str, length n
            The whole text of each text; a name (file name, id) for each image.
        image_fn : callable, optional
            ``image_fn(id)`` returns the image of the point with that id (a path, PIL image, bytes,
            array): for the hover thumbnail, the list and the ITM pass. Required when there are
            images.
        ids : sequence, optional
            What ``image_fn`` is called with; default the point index.
        embeddings : array-like of shape (n, d), optional
            The points' unit-norm embeddings; with them, when more than ``max_ranked`` images are
            selected the ones closest to the query by cosine are ranked (else the first ones).
        truncated_by : sequence of {"tokens", "words", None}, optional
            Per point, whether its text was cut before it was embedded.
        query, max_ranked, max_listed, max_cached_images, width, height
            As in the constructor.
        title : str
            Shown above the map.

        Returns
        -------
        FeatureSpaceExplorer
        """
        _jscatter()
        if isinstance(coords, pd.DataFrame):
            missing = {"x", "y"} - set(coords.columns)
            if missing:
                raise InputError(f"coords has no column {sorted(missing)}: it needs 'x' and 'y'")
            xy = coords[["x", "y"]].to_numpy(dtype=np.float64)
        else:
            xy = np.asarray(coords, dtype=np.float64)
        if xy.ndim != 2 or xy.shape[1] != 2 or len(xy) == 0:
            raise InputError(f"coords must have shape (n, 2) with n >= 1, got {xy.shape}")
        bad = np.flatnonzero(~np.isfinite(xy).all(axis=1))
        if len(bad):
            raise InputError(f"coords of points {bad[:10].tolist()} are NaN or inf")
        n = len(xy)
        kinds = [str(k) for k in kinds]
        names = list(names)
        for what, values in (("kinds", kinds), ("names", names)):
            if len(values) != n:
                raise InputError(f"got {len(values)} {what} for {n} points")
        for i, kind in enumerate(kinds):
            if kind not in KINDS:
                raise InputError(f"kinds[{i}] is {kind!r}; allowed values: 'image', 'text'")
        for i, name in enumerate(names):
            if not isinstance(name, str):
                raise InputTypeError(f"names[{i}] must be a str, got {type(name).__name__}")
        if "image" in kinds and not callable(image_fn):
            raise InputTypeError(
                "image_fn must be a callable id -> image (path, PIL image, bytes, array) when there are "
                f"images, got {type(image_fn).__name__}"
            )
        ids = list(range(n)) if ids is None else list(ids)
        if len(ids) != n:
            raise InputError(f"got {len(ids)} ids for {n} points")
        emb = None
        if embeddings is not None:
            import torch

            emb = torch.as_tensor(np.asarray(embeddings, dtype=np.float32))
            if emb.ndim != 2 or len(emb) != n:
                raise InputError(f"embeddings must have shape ({n}, d), got {tuple(emb.shape)}")
        cut = [None] * n if truncated_by is None else list(truncated_by)
        if len(cut) != n:
            raise InputError(f"got {len(cut)} truncation flags for {n} points")
        frame = pd.DataFrame(
            {
                "x": xy[:, 0],
                "y": xy[:, 1],
                "kind": kinds,
                "name": names,
                "truncated_by": pd.Series(cut, dtype=object),
            }
        )
        self = cls.__new__(cls)
        self._setup(
            model,
            frame,
            image_fn=image_fn,
            ids=ids,
            embeddings=emb,
            max_ranked=max_ranked,
            max_listed=max_listed,
            max_cached_images=positive_int("max_cached_images", max_cached_images),
            width=width,
            height=height,
            title=title,
        )
        if query:
            self.query.value = query
        return self

    # -------------------------------------------------------------------------------- set-up
    def _setup(
        self,
        model: BlipITM,
        coords: pd.DataFrame,
        *,
        image_fn: Callable[[Any], Any] | None,
        ids: list[Any],
        embeddings: Any,
        max_ranked: int,
        max_listed: int,
        max_cached_images: int,
        width: int,
        height: int,
        title: str,
    ) -> None:
        import ipywidgets as w

        jscatter = _jscatter()
        self.model = model
        self.max_ranked = positive_int("max_ranked", max_ranked)
        self.max_listed = positive_int("max_listed", max_listed)
        self.max_cached_images = max_cached_images
        self.coords_ = coords.reset_index(drop=True)
        self.coords_.index.name = "point"
        self._kinds = self.coords_["kind"].to_numpy()
        self._names = self.coords_["name"].tolist()
        self._image_fn = image_fn
        self._ids = ids
        self._embeddings = embeddings  # Tensor (n, d) or None
        self._states: OrderedDict[int, ImageFeatures] = OrderedDict()  # point -> 1 image, raw kept
        self._small: dict[int, Any] = {}  # point -> small thumbnail (PIL), for the list
        self._large: OrderedDict[int, bytes] = OrderedDict()  # point -> PNG of the hover thumbnail
        self._large_fallback = False
        self._queries: dict[str, TextFeatures] = {}
        self._itm: dict[tuple[str, int], tuple[float, float, float]] = {}  # (query, point) -> scores
        self.error_: BaseException | None = None
        self.selection_ = np.zeros(0, dtype=np.int64)
        self.selected_ = self.coords_.iloc[:0]
        self.ranking_: pd.DataFrame | None = None
        self.hovered_: int | None = None

        colors = dict(zip(KINDS, palette(len(KINDS)), strict=True))
        n = len(self.coords_)
        data = pd.DataFrame(
            {
                "x": self.coords_["x"].to_numpy(),
                "y": self.coords_["y"].to_numpy(),
                "kind": pd.Categorical(self._kinds, categories=list(KINDS)),
                "name": [fit_text(t) for t in self._names],
            }
        )
        self.scatter = jscatter.Scatter(
            data=data,
            x="x",
            y="y",
            x_scale=_padded_domain(data["x"].to_numpy()),  # no point on the edge, under the toolbar
            y_scale=_padded_domain(data["y"].to_numpy()),
            color_by="kind",
            color_map=colors,
            size=8 if n <= 1_000 else (4 if n <= 20_000 else 2),
            width=positive_int("width", width),
            height=positive_int("height", height),
            axes=False,
            legend=True,
        )
        self.scatter.tooltip(enable=True, properties=["kind", "name"], size="medium")
        self.colors_ = colors
        self.query = w.Text(
            placeholder="type a query, press Enter: ranks the selected images by ITM",
            continuous_update=False,
            description="query",
            layout=w.Layout(width="40em"),
        )
        self.drag = w.ToggleButtons(
            options=list(_DRAG_MODES),
            value="pan & zoom",
            description="drag to",
            style={"button_width": "auto"},
        )
        self.drag.observe(self._on_drag, names="value")
        self.hover_image = w.Image(format="png", layout=w.Layout(display="none"))
        self.hover_text = w.HTML('<i style="color:#666">hover a point</i>')
        self.selection_list = w.HTML(self._empty_list_html())
        self.message = w.HTML()
        counts = {k: int((self._kinds == k).sum()) for k in KINDS}
        caption = w.HTML(
            f"<b>{html.escape(title)}</b> ({html.escape(model.name)}): {counts['image']} images "
            f'(<span style="color:{colors["image"]}">&#9679;</span>), {counts["text"]} texts '
            f'(<span style="color:{colors["text"]}">&#9679;</span>). Hover a point to see it; '
            "select with the lasso or a rectangle (the buttons below the map, or Shift + drag)."
        )
        for control, name in (
            (self.query, "query"),
            (self.drag, "drag"),
            (self.hover_image, "hover-image"),
            (self.hover_text, "hover-text"),
            (self.selection_list, "selection-list"),
            (self.message, "message"),
        ):
            control.add_class(f"blipviz-{name}")
        hover = w.VBox([self.hover_image, self.hover_text], layout=w.Layout(width="300px"))
        scatter_box = w.Box([self.scatter.widget], layout=w.Layout(width=f"{int(width)}px", flex="0 0 auto"))
        self.widget = w.VBox(
            [caption, w.HBox([scatter_box, hover]), self.drag, self.query, self.message, self.selection_list]
        )
        self.widget.add_class("blipviz-feature-space-explorer")
        self.scatter.widget.observe(self._on_selection, names="selection")
        self.scatter.widget.observe(self._on_hover, names="hovering")
        self.query.observe(self._on_query, names="value")

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)

    # ------------------------------------------------------------------------------- actions
    def select(self, points: Sequence[int] | None) -> None:
        """Select points by index (as a lasso would); ``None`` or ``[]`` clears the selection."""
        if points is None:
            points = []
        idx = np.asarray(list(points), dtype=np.int64)
        bad = idx[(idx < 0) | (idx >= len(self.coords_))]
        if len(bad):
            raise InputError(f"points {bad[:10].tolist()} do not exist: there are {len(self.coords_)}")
        self.scatter.selection(idx)

    def show_item(self, point: int) -> None:
        """Show one point in the hover panel (what hovering it does)."""
        self._show(int(point))

    # ----------------------------------------------------------------------------- callbacks
    @reports_errors
    def _on_selection(self, change) -> None:
        new = change["new"]
        self.selection_ = np.unique(np.asarray([] if new is None else new, dtype=np.int64))
        self._refresh()

    @reports_errors
    def _on_drag(self, change) -> None:
        mode, lasso = _DRAG_MODES[change["new"]]
        if lasso is not None:
            self.scatter.lasso(type=lasso)
        self.scatter.mouse(mode=mode)

    @reports_errors
    def _on_query(self, _change=None) -> None:
        self._refresh()

    @reports_errors
    def _on_hover(self, change) -> None:
        if change["new"] is not None:
            self._show(int(change["new"]))

    # ------------------------------------------------------------------------------ pictures
    def _picture(self, point: int):
        """The RGB image of an image point, fetched with ``image_fn``."""
        if self._image_fn is None:
            raise InputError(f"point {point} has no image to show: these ImageFeatures carry no thumbnails")
        return self.model.preprocessing.load(self._image_fn(self._ids[point]), point)

    def _small_thumbnail(self, point: int):
        if point not in self._small:
            self._small[point] = thumbnail(self._picture(point), _LIST_SIDE)
        return thumbnail(self._small[point], _LIST_SIDE)

    def _large_png(self, point: int) -> bytes:
        if point not in self._large:
            if self._large_fallback:
                picture = self._small[point]
            else:
                picture = thumbnail(self._picture(point), _HOVER_SIDE)
            self._large[point] = png_bytes(picture)
            while len(self._large) > _HOVER_CACHE:
                self._large.popitem(last=False)
        self._large.move_to_end(point)
        return self._large[point]

    def _show(self, point: int) -> None:
        if not 0 <= point < len(self.coords_):
            raise InputError(f"point {point} does not exist: there are {len(self.coords_)}")
        name = self._names[point]
        if self._kinds[point] == "image":
            self.hover_image.value = self._large_png(point)
            self.hover_image.layout.display = None
            self.hover_text.value = f"<b>image</b> {html.escape(name)}"
        else:
            self.hover_image.layout.display = "none"
            note = _cut_note(self.coords_.at[point, "truncated_by"])
            cut = f' <span class="blipviz-cut" style="color:#b00020">({note})</span>' if note else ""
            self.hover_text.value = (
                '<div style="white-space:pre-wrap;max-width:290px"><b>text</b> '
                f"{html.escape(name)}{cut}</div>"
            )
        self.hovered_ = point

    # ------------------------------------------------------------------------------- ranking
    def _query_features(self, query: str) -> TextFeatures:
        if query not in self._queries:
            self._queries[query] = self.model.encode_texts(query)  # a cut query is warned about once
        return self._queries[query]

    def _states_of(self, points: Sequence[int]) -> ImageFeatures:
        """Raw states of image points, in order: each image passes the ViT once while it is kept."""
        missing = [p for p in points if p not in self._states]
        if missing:
            assert self._image_fn is not None  # without image_fn every image's states are kept (__init__)
            items = [self._image_fn(self._ids[p]) for p in missing]
            features = self.model.encode_images(
                items, keep_raw=True, labels=[self._names[p] for p in missing], progress=False
            )
            for j, p in enumerate(missing):
                self._states[p] = features[j]
        parts = []
        for p in points:
            self._states.move_to_end(p)
            parts.append(self._states[p])
        while len(self._states) > max(self.max_cached_images, len(points)):
            self._states.popitem(last=False)
        return _concat(parts)

    def _candidates(self, images: np.ndarray, query: TextFeatures) -> tuple[list[int], str]:
        """The selected images that reach the ITM head, and how they were chosen."""
        if len(images) <= self.max_ranked:
            return images.tolist(), "all"
        if self._embeddings is None:
            return images[: self.max_ranked].tolist(), "first"
        import torch

        from ..analysis.scores import cosine_matrix

        sims = cosine_matrix(self._embeddings[torch.as_tensor(images)], query.embeddings)[:, 0]
        best = np.argsort(-sims, kind="stable")[: self.max_ranked]
        return images[best].tolist(), "cosine"

    def _rank(self, query: str, images: np.ndarray) -> pd.DataFrame:
        from ..analysis.search import search

        features = self._query_features(query)
        candidates, how = self._candidates(images, features)
        todo = [p for p in candidates if (query, p) not in self._itm]
        if todo:
            frame = search(self.model, features, self._states_of(todo), k=len(todo))
            for row in frame.itertuples(index=False):
                self._itm[(query, todo[row.image_index])] = (row.itm, row.itm_logit, row.cosine)
        scores = np.array([self._itm[(query, p)] for p in candidates], dtype=np.float64).reshape(-1, 3)
        table = pd.DataFrame(
            {
                "point": candidates,
                "name": [self._names[p] for p in candidates],
                "itm": scores[:, 0],
                "itm_logit": scores[:, 1],
                "cosine": scores[:, 2],
            }
        )
        table = table.sort_values("itm", ascending=False, kind="stable", ignore_index=True)
        table.index = pd.RangeIndex(1, len(table) + 1, name="rank")
        table.attrs.update(
            query=query,
            selected_images=len(images),
            candidates=how,
            truncated_by=features.truncated_by[0],
        )
        return table

    # -------------------------------------------------------------------------------- list
    def _refresh(self) -> None:
        selection = self.selection_
        self.selected_ = self.coords_.iloc[selection]
        images = selection[self._kinds[selection] == "image"] if len(selection) else selection
        query = self.query.value.strip()
        self.ranking_ = self._rank(query, images) if query and len(images) else None
        self.selection_list.value = self._list_html(selection, images)

    def _empty_list_html(self) -> str:
        return '<div class="blipviz-selection"><i style="color:#666">no selection yet</i></div>'

    def _list_html(self, selection: np.ndarray, images: np.ndarray) -> str:
        if not len(selection):
            return self._empty_list_html()
        texts = selection[self._kinds[selection] == "text"]
        budget = self.max_listed
        parts = [
            f"<div><b>{len(selection)} selected</b>: {len(images)} images, {len(texts)} texts"
            + (f" (the first {budget} listed)" if len(selection) > budget else "")
            + "</div>"
        ]
        rows = []
        ranking = self.ranking_
        if ranking is not None:
            how = ranking.attrs["candidates"]
            scope = {
                "all": "",
                "cosine": f" (the {len(ranking)} of {len(images)} closest to the query by cosine)",
                "first": f" (the first {len(ranking)} of {len(images)}: no embeddings to choose by cosine)",
            }[how]
            note = _cut_note(ranking.attrs["truncated_by"])
            cut = f' <span class="blipviz-cut" style="color:#b00020">(query {note})</span>' if note else ""
            parts.append(
                f"<div>images ranked by ITM probability{scope} against "
                f"<i>{html.escape(ranking.attrs['query'])}</i>{cut}</div>"
            )
            for rank, row in ranking.iterrows():
                rows.append(self._image_row(int(row["point"]), rank, float(row["itm"]), float(row["cosine"])))
            ranked = set(ranking["point"].tolist())
            rest = [p for p in images.tolist() if p not in ranked]
        else:
            rest = images.tolist()
        rows += [self._image_row(p) for p in rest]
        rows = rows[:budget]
        if rows:
            score_head = "<th>ITM</th><th>cosine</th>" if ranking is not None else ""
            parts.append(
                '<table class="blipviz-selected-images" style="border-collapse:collapse">'
                f"<thead><tr><th>rank</th><th></th><th style='text-align:left'>image</th>{score_head}"
                f"</tr></thead><tbody>{''.join(rows)}</tbody></table>"
            )
        left = budget - len(rows)
        if len(texts) and left > 0:
            items = []
            for p in texts[:left].tolist():
                note = _cut_note(self.coords_.at[p, "truncated_by"])
                cut = f' <span class="blipviz-cut" style="color:#b00020">({note})</span>' if note else ""
                items.append(
                    f'<li title="{html.escape(self._names[p], quote=True)}">'
                    f"{html.escape(fit_text(self._names[p]))}{cut}</li>"
                )
            parts.append(f'<ul class="blipviz-selected-texts">{"".join(items)}</ul>')
        return f'<div class="blipviz-selection">{"".join(parts)}</div>'

    def _image_row(
        self, point: int, rank: int | None = None, itm: float | None = None, cosine: float | None = None
    ) -> str:
        picture = _data_uri(self._small_thumbnail(point))
        cells = (
            f'<td style="padding:2px 6px">{"" if rank is None else rank}</td>'
            f'<td style="padding:2px 6px"><img src="{picture}" alt=""></td>'
            f'<td style="text-align:left;padding:2px 6px">{html.escape(fit_text(self._names[point]))}</td>'
        )
        if itm is not None:
            share = 100 * float(np.clip(itm, 0.0, 1.0))
            cells += (
                f'<td style="min-width:9em;text-align:right;padding:2px 6px;background:linear-gradient('
                f'90deg, {_ITM_COLOR} {share:.1f}%, transparent {share:.1f}%)">{itm:.3f}</td>'
                f'<td style="text-align:right;padding:2px 6px">{cosine:.3f}</td>'
            )
        elif self.ranking_ is not None:
            cells += '<td colspan="2" style="color:#666;padding:2px 6px">not ranked</td>'
        return f"<tr>{cells}</tr>"
