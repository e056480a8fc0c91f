"""Interactive explorers for notebooks: rank descriptions, score a gallery, look at attention.

Each explorer is an object whose ``.widget`` is an ipywidgets container; building one does not
display it (a notebook shows it when it is the last expression of a cell, or with ``display``).
ipywidgets and matplotlib are imported inside the constructors, so ``import blipviz`` stays light.

Nothing is recomputed when a control moves:

- each image passes the vision encoder once, when it enters an explorer; its
  :class:`~blipviz.ImageFeatures` (raw states included) are kept;
- each description is scored once per image (ITM probability and cosine similarity), keyed by its
  text: editing one description scores only the new text;
- :class:`AttentionExplorer` keeps one :class:`~blipviz.CrossAttention` per text (all layers and
  heads) and one GradCAM :class:`~blipviz.Explanation` per (text, layer), computed on first
  request; moving the layer, head, token or opacity controls only slices these arrays and blends the
  overlay again.

Errors inside callbacks (an unreadable upload, an empty description) are shown in the explorer's
``message`` widget instead of being lost in the kernel log.

Texts follow blipviz's input rules: a bare ``str`` is one description; a description cut to the
net's token limit (or by the 50-word limit of the caption normalisation) is marked in the view and
in the result (``table_.truncated``, ``scores_.truncated``), and a :class:`blipviz.TruncationWarning`
is given once, when the description is first scored.
"""

from __future__ import annotations

import functools
import html
import io
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..analysis.scores import ranking
from ..errors import InputError
from ..net.images import ImageLike, as_image_list, image_label, thumbnail
from ..net.text import TruncationWarning, as_text_list

if TYPE_CHECKING:
    from ..analysis.attention import CrossAttention
    from ..analysis.explanations import Explanation
    from ..itm import BlipITM
    from ..net.features import ImageFeatures

__all__ = [
    "AttentionExplorer",
    "MatrixExplorer",
    "RankingExplorer",
    "error_html",
    "png_bytes",
    "reports_errors",
]

_METHODS = ("ITM", "cosine", "both")
_BAR_COLORS = {"itm": "#6baed6", "cosine": "#fd8d3c"}
_OVERLAY_SIDE = 320  # longest side of the attention overlay, in pixels
_PICKER_SIDE = 72  # longest side of the thumbnails of the image picker


# ------------------------------------------------------------------------------------ helpers
def png_bytes(image: Any) -> bytes:
    """PNG bytes of a PIL image or a uint8 array of shape (H, W, 3)."""
    from PIL import Image

    picture = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image, dtype=np.uint8))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def _figure_png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    return buffer.getvalue()


def error_html(exc: BaseException) -> str:
    return (
        '<div style="color:#b00020;font-family:monospace;white-space:pre-wrap">'
        f"{html.escape(type(exc).__name__)}: {html.escape(str(exc))}</div>"
    )


def reports_errors(method: Callable) -> Callable:
    """Run a callback; an exception becomes a message in ``self.message`` instead of a lost traceback."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            result = method(self, *args, **kwargs)
        except Exception as exc:
            self.message.value = error_html(exc)
            self.error_ = exc
            return None
        self.message.value = ""
        self.error_ = None
        return result

    return wrapper


def _descriptions(texts: Any) -> list[str]:
    """The first descriptions of an explorer: a bare ``str`` is one; each must hold a word."""
    texts = as_text_list(texts, name="texts")
    return [_check_description(t, f"description {i}") for i, t in enumerate(texts)]


def _cut_note(model: BlipITM, reason: str | None) -> str:
    """What happened to a cut text, for the views: "cut to 35 tokens" or "cut to 50 words"."""
    if reason == "tokens":
        return f"cut to {model.text_token_limit} tokens"
    if reason == "words":
        from ..net.text import BLIP_MAX_WORDS

        return f"cut to {BLIP_MAX_WORDS} words"
    return ""


def _check_description(text: Any, where: str = "description") -> str:
    if not isinstance(text, str):
        raise InputError(f"{where} must be a str, got {type(text).__name__}")
    if not text.strip():
        raise InputError(f"{where} is empty: type a few words")
    return text


class _ScoreCache:
    """Image features per image key, and (ITM, cosine) scores per (image key, text).

    ``add_images`` runs the vision encoder once for new images; ``scores`` runs the text encoder and
    the multimodal encoder only for the (image, text) pairs not seen before.
    """

    def __init__(self, model: BlipITM) -> None:
        self.model = model
        self.features: dict[int, ImageFeatures] = {}
        self.images: dict[int, Any] = {}  # RGB PIL images, for overlays and thumbnails
        self._text_embeddings: dict[str, Any] = {}
        self._truncated_by: dict[str, str | None] = {}  # text -> "tokens", "words" or None
        self._itm: dict[tuple[int, str], float] = {}
        self._next_key = 0

    def add_images(self, images: Sequence[ImageLike], labels: Sequence[str] | None = None) -> list[int]:
        """Decode and encode new images (one vision-encoder pass each); returns their keys."""
        if not images:
            return []
        rgb = [self.model.preprocessing.load(item, i) for i, item in enumerate(images)]
        if labels is None:
            labels = [image_label(item, self._next_key + i) for i, item in enumerate(images)]
        features = self.model.encode_images(rgb, labels=list(labels))
        keys = []
        for i, picture in enumerate(rgb):
            key = self._next_key
            self._next_key += 1
            self.features[key] = features[i]
            self.images[key] = picture
            keys.append(key)
        return keys

    def label(self, key: int) -> str:
        return self.features[key].labels[0]

    def thumbnail(self, key: int):
        thumbs = self.features[key].thumbnails
        return thumbs[0] if thumbs else self.images[key]

    def truncated_by(self, texts: Sequence[str]) -> list[str | None]:
        """Per text (embedded before): cut at the token limit, by the word limit, or not."""
        return [self._truncated_by[t] for t in texts]

    def _embed(self, texts: Sequence[str]) -> None:
        """Encode new texts: the one place a TruncationWarning is given for them."""
        missing = list(dict.fromkeys(t for t in texts if t not in self._text_embeddings))
        if missing:
            features = self.model.encode_texts(missing)
            for i, text in enumerate(missing):
                self._text_embeddings[text] = features.embeddings[i]
                self._truncated_by[text] = features.truncated_by[i]

    def scores(self, keys: Sequence[int], texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """``(itm, cosine)``, each of shape (len(keys), len(texts)); only new pairs are computed."""
        import torch

        from ..analysis.scores import cosine_matrix

        self._embed(texts)
        for key in keys:
            missing = list(dict.fromkeys(t for t in texts if (key, t) not in self._itm))
            if missing:
                with warnings.catch_warnings():  # warned once already, when the texts were embedded
                    warnings.simplefilter("ignore", TruncationWarning)
                    probabilities = self.model.match_probabilities(missing, self.features[key])[:, 1]
                for text, p in zip(missing, probabilities.tolist(), strict=True):
                    self._itm[(key, text)] = float(p)
        itm = np.array([[self._itm[(key, t)] for t in texts] for key in keys], dtype=np.float64)
        itm = itm.reshape(len(keys), len(texts))
        if keys and texts:
            images = torch.cat([self.features[key].embeddings for key in keys])
            words = torch.stack([self._text_embeddings[t] for t in texts])
            cosine = cosine_matrix(images, words)
        else:
            cosine = np.zeros((len(keys), len(texts)))
        return itm, cosine


def _bar_cell(value: float, low: float, high: float, color: str) -> str:
    span = high - low
    share = 0.0 if span <= 0 else float(np.clip((value - low) / span, 0.0, 1.0))
    return (
        f'<td style="min-width:9em;background:linear-gradient(90deg, {color} {100 * share:.1f}%, '
        f'transparent {100 * share:.1f}%);text-align:right;padding:2px 6px">{value:.3f}</td>'
    )


def _ranking_html(frame: pd.DataFrame, columns: Sequence[str], cut: dict[str, str] | None = None) -> str:
    """An HTML table of a ranking with a bar in each score cell (ITM on [0, 1], cosine on its range);
    ``cut`` maps the texts that were cut to a note ("cut to 35 tokens"), shown beside them."""
    ranges = {"itm": (0.0, 1.0)}
    if "cosine" in columns and len(frame):
        values = frame["cosine"].to_numpy()
        ranges["cosine"] = (min(0.0, float(values.min())), max(float(values.max()), 1e-9))
    names = {"itm": "ITM", "cosine": "cosine"}
    head = "".join(f'<th style="padding:2px 6px">{names[c]}</th>' for c in columns)
    rows = []
    for rank, row in frame.iterrows():
        cells = "".join(_bar_cell(float(row[c]), *ranges[c], _BAR_COLORS[c]) for c in columns)
        note = (cut or {}).get(str(row["text"]), "")
        flag = (
            f' <span class="blipviz-cut" style="color:#b00020">({html.escape(note)})</span>' if note else ""
        )
        rows.append(
            f'<tr><td style="padding:2px 6px">{rank}</td>'
            f'<td style="text-align:left;padding:2px 6px">{html.escape(str(row["text"]))}{flag}</td>'
            f"{cells}</tr>"
        )
    return (
        '<table class="blipviz-ranking" style="border-collapse:collapse">'
        f'<thead><tr><th>rank</th><th style="text-align:left">text</th>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


class _Explorer:
    """Shared behaviour: ``.widget`` is the container; notebooks display the explorer as it."""

    widget: Any
    message: Any
    error_: BaseException | None = None

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)


# ---------------------------------------------------------------------------------- ranking
class RankingExplorer(_Explorer):
    """Rank editable descriptions of a picked image by ITM probability and / or cosine similarity.

    Parameters
    ----------
    model : BlipITM
    images : image or sequence of images
        Anything :func:`blipviz.load_model`'s nets accept (PIL images, paths, bytes, arrays). Each
        passes the vision encoder once, here.
    texts : str or sequence of str
        The first descriptions (a bare ``str`` is one); more can be added, edited and removed in
        the widget.
    method : {"ITM", "cosine", "both"}, default "both"

    Attributes
    ----------
    widget : ipywidgets.VBox
    image_buttons : list of ipywidgets.Button
        One under each thumbnail; clicking picks the image.
    description_boxes : list of ipywidgets.Text
        One per description; editing one scores only the new text.
    new_description : ipywidgets.Text
    add_button : ipywidgets.Button
    method : ipywidgets.ToggleButtons
    table : ipywidgets.HTML
        The sorted table with score bars.
    message : ipywidgets.HTML
        Errors of the last action (empty when it worked).
    table_ : blipviz.Ranking
        The ranking shown: columns ``text``, ``itm``, ``cosine``, ``itm_rank``, ``cosine_rank``;
        index ``rank`` (1..n), sorted by the chosen score; ``table_.truncated`` says which
        descriptions were cut (also marked in the table).
    """

    def __init__(
        self,
        model: BlipITM,
        images: ImageLike | Sequence[ImageLike],
        texts: str | Sequence[str],
        method="both",
    ) -> None:
        import ipywidgets as w

        if method not in _METHODS:
            raise InputError(f"unknown method {method!r}; allowed values: {', '.join(map(repr, _METHODS))}")
        self.model = model
        self._cache = _ScoreCache(model)
        self._keys = self._cache.add_images(as_image_list(images))
        if not self._keys:
            raise InputError("RankingExplorer needs at least one image")
        texts = _descriptions(texts)
        self._selected = 0

        self.image_buttons = []
        tiles = []
        for i, key in enumerate(self._keys):
            thumb = thumbnail(self._cache.thumbnail(key), _PICKER_SIDE)
            button = w.Button(description=self._cache.label(key), layout=w.Layout(width="auto"))
            button.on_click(functools.partial(self._on_pick, i))
            self.image_buttons.append(button)
            tiles.append(w.VBox([w.Image(value=png_bytes(thumb), format="png"), button]))
        self.method = w.ToggleButtons(options=list(_METHODS), value=method, description="score")
        self.method.observe(self._on_method, names="value")
        self.description_boxes: list = []
        self.rows = w.VBox([])
        self.new_description = w.Text(placeholder="a new description", layout=w.Layout(width="28em"))
        self.add_button = w.Button(description="add", icon="plus")
        self.add_button.on_click(self._on_add)
        self.table = w.HTML()
        self.message = w.HTML()
        for text in texts:
            self._append_row(text)
        self.table.add_class("blipviz-ranking-table")
        self.message.add_class("blipviz-message")
        self.widget = w.VBox(
            [
                w.HBox(tiles, layout=w.Layout(flex_flow="row wrap")),
                self.method,
                w.HTML("<b>descriptions</b>"),
                self.rows,
                w.HBox([self.new_description, self.add_button]),
                self.message,
                self.table,
            ]
        )
        self.widget.add_class("blipviz-ranking-explorer")
        self._refresh()

    # -------------------------------------------------------------------------------- state
    @property
    def texts(self) -> list[str]:
        """The descriptions as they stand."""
        return [box.value for box in self.description_boxes]

    @property
    def image_index(self) -> int:
        """Position of the picked image."""
        return self._selected

    def select_image(self, index: int) -> None:
        """Pick the image at ``index``."""
        self._on_pick(index)

    # ---------------------------------------------------------------------------- callbacks
    def _append_row(self, text: str) -> None:
        import ipywidgets as w

        box = w.Text(value=text, continuous_update=False, layout=w.Layout(width="28em"))
        box.observe(self._on_edit, names="value")
        remove = w.Button(description="remove", icon="trash", layout=w.Layout(width="auto"))
        remove.on_click(functools.partial(self._on_remove, box))
        box._blipviz_row = w.HBox([box, remove])
        self.description_boxes.append(box)
        self.rows.children = [b._blipviz_row for b in self.description_boxes]

    @reports_errors
    def _on_pick(self, index: int, _button=None) -> None:
        if not 0 <= index < len(self._keys):
            raise InputError(f"image {index} does not exist: there are {len(self._keys)} images")
        self._selected = index
        self._refresh()

    @reports_errors
    def _on_method(self, _change=None) -> None:
        self._refresh()

    @reports_errors
    def _on_edit(self, change) -> None:
        position = next(i for i, b in enumerate(self.description_boxes) if b is change["owner"])
        _check_description(change["new"], f"description {position}")
        self._refresh()

    @reports_errors
    def _on_add(self, _source=None) -> None:
        text = _check_description(self.new_description.value, "the new description")
        self._append_row(text)
        self.new_description.value = ""
        self._refresh()

    @reports_errors
    def _on_remove(self, box, _button=None) -> None:
        if len(self.description_boxes) == 1:
            raise InputError("keep at least one description")
        self.description_boxes.remove(box)
        self.rows.children = [b._blipviz_row for b in self.description_boxes]
        self._refresh()

    def _refresh(self) -> None:
        for i, button in enumerate(self.image_buttons):
            button.button_style = "primary" if i == self._selected else ""
        texts = [t for t in self.texts if t.strip()]  # an empty box is reported, and left out
        key = self._keys[self._selected]
        itm, cosine = self._cache.scores([key], texts)
        by = "cosine" if self.method.value == "cosine" else "itm"
        reasons = self._cache.truncated_by(texts)
        frame = ranking(texts, itm[0], cosine[0], by=by, truncated_by=reasons)
        self.table_ = frame
        columns = {"ITM": ["itm"], "cosine": ["cosine"], "both": ["itm", "cosine"]}[self.method.value]
        cut = {t: _cut_note(self.model, r) for t, r in zip(texts, reasons, strict=True) if r}
        self.table.value = _ranking_html(frame, columns, cut)


# ----------------------------------------------------------------------------------- matrix
class MatrixExplorer(_Explorer):
    """The ITM heatmap of a gallery and a list of descriptions, updated in place.

    Parameters
    ----------
    model : BlipITM
    images : image or sequence of images
        More can be added with the upload control (PNG, JPEG, ... files).
    texts : str or sequence of str
        Shown in the text area, one per line (a bare ``str`` is one description); edit it to change
        them.

    Attributes
    ----------
    widget : ipywidgets.VBox
    upload : ipywidgets.FileUpload
    descriptions : ipywidgets.Textarea
        One description per line (blank lines are skipped).
    heatmap : ipywidgets.Image
        The heatmap (PNG) with the image thumbnails above the columns.
    message : ipywidgets.HTML
    scores_ : ScoreMatrix
        The ITM scores shown, of shape (n_images, n_texts); ``scores_.truncated`` says which
        descriptions were cut.
    """

    def __init__(
        self, model: BlipITM, images: ImageLike | Sequence[ImageLike], texts: str | Sequence[str]
    ) -> None:
        import ipywidgets as w

        self.model = model
        self._cache = _ScoreCache(model)
        self._keys = self._cache.add_images(as_image_list(images))
        texts = _descriptions(texts)
        self.upload = w.FileUpload(accept="image/*", multiple=True, description="add images")
        self.upload.observe(self._on_upload, names="value")
        self.descriptions = w.Textarea(
            value="\n".join(texts),
            continuous_update=False,
            rows=max(3, min(len(texts), 10)),
            layout=w.Layout(width="36em"),
            description="one per line",
            style={"description_width": "initial"},
        )
        self.descriptions.observe(self._on_texts, names="value")
        self.heatmap = w.Image(format="png")
        self.message = w.HTML()
        self._texts = texts
        self.heatmap.add_class("blipviz-heatmap")
        self.message.add_class("blipviz-message")
        self.widget = w.VBox([w.HBox([self.upload]), self.descriptions, self.message, self.heatmap])
        self.widget.add_class("blipviz-matrix-explorer")
        self._redraw()

    @property
    def texts(self) -> list[str]:
        """The descriptions shown (the non-blank lines of the text area)."""
        return list(self._texts)

    def add_images(self, images: ImageLike | Sequence[ImageLike]) -> None:
        """Add images (each passes the vision encoder once) and redraw."""
        self._keys += self._cache.add_images(as_image_list(images))
        self._redraw()

    @reports_errors
    def _redraw(self) -> None:
        self._refresh()

    @reports_errors
    def _on_upload(self, change) -> None:
        files = change["new"]
        if not files:
            return
        images, labels = [], []
        try:
            for f in files:
                name = f.get("name", "upload")
                try:
                    images.append(self.model.preprocessing.load(bytes(f["content"])))
                except Exception as exc:
                    raise type(exc)(f"{name}: {exc}") from None
                labels.append(name)
        finally:
            self.upload.value = ()  # the same file can be chosen again; the bytes are not kept twice
        self._keys += self._cache.add_images(images, labels)
        self._refresh()

    @reports_errors
    def _on_texts(self, change) -> None:
        texts = [line.strip() for line in change["new"].splitlines() if line.strip()]
        if not texts:
            raise InputError("no descriptions: type one per line")
        self._texts = texts
        self._refresh()

    def _refresh(self) -> None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        from ..analysis.scores import ScoreMatrix
        from ..display.plotting import score_matrix_figsize

        itm, _ = self._cache.scores(self._keys, self._texts)
        reasons = self._cache.truncated_by(self._texts)
        self.scores_ = ScoreMatrix(
            itm,
            texts=list(self._texts),
            image_labels=[self._cache.label(k) for k in self._keys],
            kind="itm",
            thumbnails=[self._cache.thumbnail(k) for k in self._keys],
            truncated_by=reasons,
            model_name=self.model.name,
        )
        if not self._keys:
            self.heatmap.value = b""
            raise InputError("no images yet: add some with the upload control")
        figure = Figure(figsize=score_matrix_figsize(self.scores_))
        FigureCanvasAgg(figure)  # a canvas that measures: the heatmap fits the figure to its labels
        ax = figure.add_subplot()
        self.display_ = self.scores_.plot(ax=ax, fit=True)
        self.heatmap.value = _figure_png(figure)


# -------------------------------------------------------------------------------- attention
class AttentionExplorer(_Explorer):
    """Where each word of a description looks in an image: cross-attention or GradCAM overlays.

    Parameters
    ----------
    model : BlipITM
    image : image
        One image; it passes the vision encoder once, here.
    text : str
        The description; it can be edited in the widget (each text is computed once).
    method : {"attention", "GradCAM"}, default "attention"
    alpha : float, default :data:`blipviz.display.overlay.OVERLAY_ALPHA`
        Opacity of the colour key's top (each map is scaled to its 99th percentile, as the
        figures' ``scale="per-token"``).
    layer : int, optional
        The first layer shown; default :func:`blipviz.analysis.attention.default_layer` (the middle
        layer, 6 of 12), the default of every attention and GradCAM figure.

    Attributes
    ----------
    widget : ipywidgets.VBox
    text : ipywidgets.Text
    token : ipywidgets.Dropdown
        ``"mean"`` (the mean map over the words, ``[ENC]`` and ``[SEP]`` left out) or a token position.
    layer : ipywidgets.IntSlider
        Layer of the multimodal encoder (0-based).
    head : ipywidgets.Dropdown
        ``"mean"`` or one head (cross-attention only; GradCAM averages the heads).
    method : ipywidgets.ToggleButtons
    opacity : ipywidgets.FloatSlider
    overlay : ipywidgets.Image
        The blended overlay (PNG).
    caption : ipywidgets.HTML
        What the overlay shows, and the pair's ITM probability; says when the text was cut (the
        maps cover only the tokens kept).
    caption_text_ : str
        The caption as plain text (for ``print``).
    message : ipywidgets.HTML
    map_ : ndarray of shape (gh, gw)
        The map drawn.
    overlay_ : ndarray of shape (H, W, 3), uint8
        The overlay drawn.
    """

    def __init__(
        self,
        model: BlipITM,
        image: ImageLike,
        text: str,
        *,
        method: str = "attention",
        alpha: float | None = None,
        layer: int | None = None,
    ) -> None:
        import ipywidgets as w

        from ..analysis.attention import default_layer
        from ..display.overlay import OVERLAY_ALPHA

        if method not in ("attention", "GradCAM"):
            raise InputError(f"unknown method {method!r}; allowed values: 'attention', 'GradCAM'")
        items = as_image_list(image)
        if len(items) != 1:
            raise InputError(f"AttentionExplorer takes one image, got {len(items)}")
        text = _check_description(text)
        self.model = model
        self._cache = _ScoreCache(model)
        (self._key,) = self._cache.add_images(items)
        picture = self._cache.images[self._key]
        scale = _OVERLAY_SIDE / max(picture.size)  # small images are enlarged, large ones reduced
        self._picture = picture.resize(
            (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
        )
        self._attention: dict[str, CrossAttention] = {}
        self._gradcam: dict[tuple[str, int], Explanation] = {}
        n_layers = int(model.config.text_config.num_hidden_layers)
        n_heads = int(model.config.text_config.num_attention_heads)
        if layer is None:
            layer = default_layer(n_layers)
        elif isinstance(layer, bool) or not isinstance(layer, int) or not -n_layers <= layer < n_layers:
            raise InputError(f"layer {layer!r} does not exist: the multimodal encoder has {n_layers} layers")
        alpha = OVERLAY_ALPHA if alpha is None else float(alpha)

        self.text = w.Text(
            value=text, continuous_update=False, description="text", layout=w.Layout(width="32em")
        )
        self.text.observe(self._on_text, names="value")
        self.token = w.Dropdown(description="token")
        self.layer = w.IntSlider(value=layer % n_layers, min=0, max=n_layers - 1, description="layer")
        self.head = w.Dropdown(options=["mean", *range(n_heads)], value="mean", description="head")
        self.method = w.ToggleButtons(options=["attention", "GradCAM"], value=method, description="map")
        self.opacity = w.FloatSlider(value=alpha, min=0.0, max=1.0, step=0.05, description="opacity")
        self.overlay = w.Image(format="png", width=self._picture.width, height=self._picture.height)
        self.caption = w.HTML()
        self.message = w.HTML()
        self._text = text
        self._set_tokens(self._attention_of(text).tokens)
        self.head.disabled = method == "GradCAM"
        for control in (self.token, self.layer, self.head, self.opacity):
            control.observe(self._on_control, names="value")
        self.method.observe(self._on_method, names="value")
        for control, name in (
            (self.token, "token"),
            (self.layer, "layer"),
            (self.head, "head"),
            (self.method, "method"),
            (self.opacity, "opacity"),
            (self.overlay, "overlay"),
            (self.caption, "caption"),
            (self.message, "message"),
        ):
            control.add_class(f"blipviz-{name}")
        self.widget = w.VBox(
            [
                self.text,
                self.method,
                w.HBox([self.token, self.head]),
                w.HBox([self.layer, self.opacity]),
                self.message,
                self.caption,
                self.overlay,
            ]
        )
        self.widget.add_class("blipviz-attention-explorer")
        self._render()

    # ------------------------------------------------------------------------------- caches
    def _attention_of(self, text: str) -> CrossAttention:
        if text not in self._attention:
            self._attention[text] = self.model.cross_attention(self._cache.features[self._key], text)
        return self._attention[text]

    def _gradcam_of(self, text: str, layer: int) -> Explanation:
        if (text, layer) not in self._gradcam:
            with warnings.catch_warnings():  # a cut text was warned about once, by _attention_of
                warnings.simplefilter("ignore", TruncationWarning)
                cam = self.model.gradcam(self._cache.features[self._key], text, layer)
            self._gradcam[(text, layer)] = cam
        return self._gradcam[(text, layer)]

    def _set_tokens(self, tokens: Sequence[str]) -> None:
        from ..display.labels import number_repeats

        numbered = number_repeats(tokens)
        options = [("mean of the words", "mean")] + [(f"{i}: {t}", i) for i, t in enumerate(numbered)]
        self._updating = True
        try:
            self.token.options = options
            self.token.value = "mean"
        finally:
            self._updating = False

    # ---------------------------------------------------------------------------- callbacks
    @reports_errors
    def _on_control(self, _change=None) -> None:
        if not getattr(self, "_updating", False):
            self._render()

    @reports_errors
    def _on_method(self, change) -> None:
        self.head.disabled = change["new"] == "GradCAM"
        self._render()

    @reports_errors
    def _on_text(self, change) -> None:
        text = _check_description(change["new"], "the text")
        tokens = self._attention_of(text).tokens
        self._text = text
        self._set_tokens(tokens)
        self._render()

    def _current_map(self) -> tuple[np.ndarray, str, float]:
        text, token, layer = self._text, self.token.value, int(self.layer.value)
        if self.method.value == "GradCAM":
            cam = self._gradcam_of(text, layer)
            heat = cam.match_map if token == "mean" else cam.maps[token]
            what = f"GradCAM, layer {layer}"
            score = cam.itm_probability
        else:
            attention = self._attention_of(text)
            maps = attention.maps(layer, heads=self.head.value)  # (n_tokens, gh, gw)
            words = maps[1:-1] if len(maps) > 2 else maps
            heat = words.mean(axis=0) if token == "mean" else maps[token]
            head = "mean of the heads" if self.head.value == "mean" else f"head {self.head.value}"
            what = f"cross-attention, layer {layer}, {head}"
            score = attention.score
        from ..display.labels import number_repeats

        tokens = number_repeats(self._attention_of(text).tokens)
        label = "mean of the words" if token == "mean" else f"“{tokens[token]}”"
        return heat, f"{what}, token {label}", score

    def _render(self) -> None:
        from ..display.overlay import blend, robust_max

        heat, what, score = self._current_map()
        self.map_ = np.asarray(heat)
        top = robust_max(self.map_)
        self.overlay_ = blend(self._picture, heat, top, alpha=float(self.opacity.value))
        self.overlay.value = png_bytes(self.overlay_)
        note = _cut_note(self.model, self._attention_of(self._text).truncated_by)
        scale = f"colour: 0 (photo) to {top:.3g} (the map's 99th percentile) and above"
        self.caption_text_ = f"{what} · ITM probability {score:.3f} · {self._text}" + (
            f" (text {note})" if note else ""
        )
        cut = (
            f' <span class="blipviz-cut" style="color:#b00020">(text {html.escape(note)})</span>'
            if note
            else ""
        )
        self.caption.value = (
            f"{html.escape(what)} &middot; ITM probability {score:.3f} &middot; "
            f"<i>{html.escape(self._text)}</i>{cut}<br><small>{html.escape(scale)}</small>"
        )
