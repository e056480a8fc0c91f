"""Zero-shot classification: one text per class (or one per class and template), and the class whose
texts match best.

``ZeroShotClassifier(model, labels)`` writes one text per class from a template ("This is a photo
of a {}", the label lower-cased into it, as the reference does), encodes those texts once, and
scores images against them with one of three methods:

- ``"itm"``: the ITM head's match probability of every (image, class text) pair (the default);
- ``"cosine"``: cosine similarity of the unimodal image and text embeddings;
- ``"rerank"``: cosine for every class, then ITM for the ``rerank_k`` best classes only, as BLIP's
  retrieval does.

``template`` may also be a sequence of templates: a prompt ensemble, as CLIP's evaluation does
(Radford et al. 2021, section 3.1.4; ``notebooks/Prompt_Engineering_for_ImageNet.ipynb`` in
openai/CLIP). Every (class, template) text is encoded once (texts that the net reads alike, after
BLIP's caption normalisation, once in all). The cosine of a class is CLIP's: the L2-normalised
embeddings of its texts averaged, the mean L2-normalised again, then the cosine with the image
embedding. The ITM score of a class is the mean of the ITM match probabilities of its texts.

Why the mean of probabilities and not of logits: CLIP averages in embedding space, and says why
(one cached text embedding per class makes an ensemble cost what one template costs); ITM has no
per-class vector to cache (every (image, text) pair is its own multimodal pass), so that reason does
not carry over, and the ensemble is the usual average of the predicted probabilities of its members.
The mean stays an ITM match probability in [0, 1] (what ``predict_proba`` reports, what the figures
draw on a [0, 1] axis, what ``method="rerank"`` ranks above the cosines), and no template's
extreme logit outweighs the others. BLIP itself uses no template ensemble; its retrieval ranks by
the raw match logit ``itm_head(...)[:, 1]``, which is not a function of the probability alone
(the probability depends on the difference of the two logits), so averaging it would not average
anything a reader sees. One template, or several identical ones, gives exactly the scores of that
template alone.

:func:`evaluate_zero_shot` scores labelled images and returns a :class:`ZeroShotEvaluation`
(accuracy, per-class accuracy, top-k accuracy, confusion matrix); the metrics part,
:meth:`ZeroShotEvaluation.from_scores`, needs no model.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from ..errors import InputError, InputTypeError, positive_int
from ..net.features import ImageFeatures
from ..net.images import as_image_list
from ..net.images import image_label as label_of_image
from ..net.net import BlipNet, Images, Progress
from ..net.text import BLIP_MAX_WORDS, as_text_list, normalize_caption
from .scores import cosine_matrix

__all__ = [
    "DEFAULT_TEMPLATE",
    "ZeroShotClassifier",
    "ZeroShotEvaluation",
    "check_templates",
    "class_texts",
    "evaluate_zero_shot",
]

#: The reference's template for class texts.
DEFAULT_TEMPLATE = "This is a photo of a {}"

METHODS = ("itm", "cosine", "rerank")


def _check_template(template: Any, where: str) -> str:
    """``template`` if it is a str with exactly one label placeholder; else a named error saying
    ``where`` it was (``"template"``, ``"template[2]"``)."""
    if not isinstance(template, str):
        raise InputTypeError(f"{where} must be a str, got {type(template).__name__}: {template!r:.60}")
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as exc:
        raise InputError(f"{where} = {template!r} is not a valid format string: {exc}") from None
    if len(fields) != 1 or fields[0] not in ("", "0", "label"):
        raise InputError(
            f"{where} must hold exactly one placeholder for the label, {{}} or {{label}} "
            f"({{{{ and }}}} for literal braces); got {template!r}"
        )
    return template


def check_templates(template: str | Sequence[str]) -> tuple[str, ...]:
    """The class-text templates as a tuple, each checked.

    Parameters
    ----------
    template : str or sequence of str
        One template (a ``str`` is one), or several (a prompt ensemble). Each holds exactly one
        placeholder, ``{}`` or ``{label}``; ``{{`` and ``}}`` are literal braces.

    Returns
    -------
    tuple of str
        At least one template, in the given order (repeats kept).

    Raises
    ------
    InputTypeError
        ``template`` is neither a str nor a sequence, or an item is not a str (its index named).
    InputError
        No template, or one without exactly one label placeholder or not a valid format string
        (its index named).

    Examples
    --------
    >>> check_templates(["a photo of a {}", "art of the {label}"])
    ('a photo of a {}', 'art of the {label}')
    """
    if isinstance(template, str):
        return (_check_template(template, "template"),)
    if (
        template is None
        or isinstance(template, bytes | bytearray | dict)
        or not hasattr(template, "__iter__")
    ):
        raise InputTypeError(f"template must be a str or a sequence of str, got {type(template).__name__}")
    items = list(template)
    if not items:
        raise InputError("template: give at least one template (an empty sequence has none)")
    return tuple(_check_template(t, f"template[{i}]") for i, t in enumerate(items))


def _fill(template: str, label: str) -> str:
    return template.format(label.lower(), label=label.lower())


def class_texts(labels: Sequence[str], template: str | Sequence[str] = DEFAULT_TEMPLATE) -> list[Any]:
    """The class texts: each label lower-cased into the template(s).

    Parameters
    ----------
    labels : sequence of str
    template : str or sequence of str, default "This is a photo of a {}"
        Holds exactly one placeholder, ``{}`` or ``{label}``; ``{{`` and ``}}`` are literal braces.
        A sequence is a prompt ensemble (see :func:`check_templates`).

    Returns
    -------
    list of str, or list of list of str
        One text per label for a ``str`` template; for a sequence, one list per label holding one
        text per template, in the templates' order.

    Examples
    --------
    >>> class_texts(["T-shirt/top", "Ankle boot"])
    ['This is a photo of a t-shirt/top', 'This is a photo of a ankle boot']
    >>> class_texts(["Cat"], ["a photo of a {}", "a drawing of a {}"])
    [['a photo of a cat', 'a drawing of a cat']]
    """
    labels = as_text_list(labels, name="labels")
    templates = check_templates(template)
    if isinstance(template, str):
        return [_fill(template, label) for label in labels]
    return [[_fill(t, label) for t in templates] for label in labels]


def _argmax(values: np.ndarray) -> np.ndarray:
    """Row-wise argmax with NaN below everything; ties go to the first column."""
    return np.where(np.isnan(values), -np.inf, values).argmax(axis=1)


def _order(key: np.ndarray) -> np.ndarray:
    """Column order per row, best first: ``key`` descending (NaN last), ties by column index."""
    filled = np.where(np.isnan(key), -np.inf, key)
    return np.argsort(-filled, axis=-1, kind="stable")


@dataclass(eq=False)
class _ClassScores:
    values: np.ndarray  # (n_images, n_labels): the scores reported by predict_proba
    rank_key: np.ndarray  # (n_images, n_labels): higher ranks first (differs for rerank only)
    cosine: np.ndarray | None  # (n_images, n_labels) for "cosine" and "rerank"
    image_labels: list[str]


class ZeroShotClassifier:
    """Classify images between any set of classes with a BLIP image-text matching net.

    Parameters
    ----------
    model : BlipNet
    labels : sequence of str
        Class names, distinct after lower-casing.
    template : str or sequence of str, default "This is a photo of a {}"
        Each label, lower-cased, goes into the placeholder (see :func:`class_texts`). A sequence is a
        prompt ensemble: a class's cosine is taken with the re-normalised mean of its texts'
        normalised embeddings (CLIP's recipe), its ITM score is the mean of its texts' ITM match
        probabilities (see the module's notes). Bad templates raise :class:`blipviz.InputError` or
        :class:`blipviz.InputTypeError` naming their index.
    method : {"itm", "cosine", "rerank"}, default "itm"
        ``"itm"``: ITM match probability of every class. ``"cosine"``: cosine similarity of the
        unimodal embeddings. ``"rerank"``: cosine for every class, then ITM for the ``rerank_k``
        classes of highest cosine only.
    rerank_k : int, default 5
        Classes re-scored by ITM with ``method="rerank"`` (at most the number of labels).
    batch_size : int, optional
        Images per vision-encoder pass; default 4 on CPU, 16 on a GPU
        (:attr:`BlipNet.default_batch_size`).
    text_batch_size : int, default 128
        Class texts per multimodal pass.
    progress : bool, optional
        Progress bar over images; by default shown once the pace foresees more than 5 s
        (:class:`blipviz.net.net.Progress`).

    Attributes
    ----------
    labels : list of str
    template : str or tuple of str
        As given (a sequence as a tuple).
    templates : tuple of str
        The templates, one or more.
    texts : list of str, or list of list of str
        The class texts: one per label for a ``str`` template; for a sequence, one list per label
        with one text per template.
    text_features : TextFeatures
        The distinct class texts encoded (and tokenised) once, reused for every image: texts that
        the net reads alike (equal after BLIP's caption normalisation, or equal with
        ``normalize_text=False``) pass the text encoder once in all.
    text_index : ndarray of int, shape (n_labels, n_templates)
        The row of ``text_features`` of each (class, template) text.

    Notes
    -----
    Scores of ``predict_proba`` by method: ``"itm"``: match probabilities in [0, 1]; ``"cosine"``:
    cosines in [-1, 1]; ``"rerank"``: the ITM match probability of the ``rerank_k`` classes kept
    for each image and **NaN** for the others (not scored by ITM). Rankings (``predict``,
    ``top_k``, top-k accuracy) put the kept classes first, by ITM, then the others by cosine.

    Each image passes the vision encoder once; its states are dropped after its batch, so memory
    does not grow with the number of images beyond the (n_images, n_labels) results.
    """

    def __init__(
        self,
        model: BlipNet,
        labels: Sequence[str],
        *,
        template: str | Sequence[str] = DEFAULT_TEMPLATE,
        method: str = "itm",
        rerank_k: int = 5,
        batch_size: int | None = None,
        text_batch_size: int = 128,
        progress: bool | None = None,
    ) -> None:
        if not isinstance(model, BlipNet):
            raise InputTypeError(
                f"model must be a BlipNet (from blipviz.load_model), got {type(model).__name__}"
            )
        if method not in METHODS:
            raise InputError(f"method must be one of {METHODS}, got {method!r}")
        templates = check_templates(template)
        labels = as_text_list(labels, name="labels")
        if not labels:
            raise InputError("labels must name at least one class")
        seen: dict[str, str] = {}
        for label in labels:
            if not label.strip():
                raise InputError("labels must not be empty strings")
            if label.lower() in seen:
                raise InputError(
                    f"labels {seen[label.lower()]!r} and {label!r} give the same class text; "
                    "labels must be distinct after lower-casing"
                )
            seen[label.lower()] = label
        rerank_k = positive_int("rerank_k", rerank_k)
        batch_size = model.resolve_batch_size(batch_size)
        text_batch_size = positive_int("text_batch_size", text_batch_size)
        self.model = model
        self.labels = labels
        self.template: str | tuple[str, ...] = template if isinstance(template, str) else templates
        self.templates = templates
        self.method = method
        self.rerank_k = min(rerank_k, len(labels))
        self.batch_size = batch_size
        self.text_batch_size = text_batch_size
        self.progress = progress
        self.texts = class_texts(labels, self.template)
        grid = [[_fill(t, label) for t in templates] for label in labels]  # (n_labels, n_templates)
        # one encoder pass per text the net reads differently: key = the text as the encoder sees it
        distinct: dict[str, int] = {}
        first_texts: list[str] = []
        index = np.empty((len(labels), len(templates)), dtype=np.int64)
        for c, row in enumerate(grid):
            for t, text in enumerate(row):
                key = normalize_caption(text, BLIP_MAX_WORDS) if model.normalize_text else text
                if key not in distinct:
                    distinct[key] = len(first_texts)
                    first_texts.append(text)
                index[c, t] = distinct[key]
        self.text_index = index
        # weights (n_labels, n_distinct): a class's share of each distinct text (repeats count), so
        # that a class with one distinct text has weight exactly 1.0 on it
        weights = np.zeros((len(labels), len(first_texts)))
        np.add.at(weights, (np.repeat(np.arange(len(labels)), len(templates)), index.ravel()), 1.0)
        self._weights = weights / len(templates)
        self._single = (weights > 0).sum(axis=1) == 1  # classes whose texts are all one text
        self.text_features = model.encode_texts(first_texts)
        self._class_embeddings = self._mean_embeddings(self.text_features.embeddings)

    def _mean_embeddings(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Class embeddings (n_labels, 256), float64: CLIP's mean of the L2-normalised embeddings of
        a class's texts, L2-normalised again; a class with one distinct text keeps its embedding
        unchanged (the recipe's identity, without its rounding)."""
        emb = embeddings.double()
        mean = torch.from_numpy(self._weights) @ emb
        out = F.normalize(mean, dim=-1)
        single = torch.from_numpy(self._single)
        return torch.where(single[:, None], emb[torch.from_numpy(self.text_index[:, 0])], out)

    def _class_probabilities(
        self, probabilities: np.ndarray, classes: np.ndarray, columns: np.ndarray
    ) -> np.ndarray:
        """Mean ITM probability of each of ``classes`` over its templates, from the probabilities of
        the distinct texts ``columns``; exactly the one probability for a class with one text."""
        weights = self._weights[np.ix_(classes, columns)]
        out = weights @ probabilities
        single = self._single[classes]
        if single.any():  # exact: the one text's probability, no weighted sum
            first = self.text_index[classes[single], 0]
            position = {c: i for i, c in enumerate(columns.tolist())}
            out[single] = probabilities[[position[c] for c in first.tolist()]]
        return out

    @property
    def truncated_by(self) -> dict[str, str]:
        """The class labels whose class text was cut before scoring, each with ``"tokens"`` or
        ``"words"`` (empty when none was; with several templates, the reason of the class's first
        cut text). Frames of :meth:`predict_proba` and :meth:`top_k` carry it
        in ``attrs["truncated_by"]``."""
        reasons = self.text_features.truncated_by
        out = {}
        for label, row in zip(self.labels, self.text_index, strict=True):
            cut = [reasons[i] for i in row if reasons[i] is not None]
            if cut:
                out[label] = cut[0]
        return out

    def __repr__(self) -> str:
        extra = f", rerank_k={self.rerank_k}" if self.method == "rerank" else ""
        template = (
            f"template={self.template!r}"
            if isinstance(self.template, str)
            else f"templates={len(self.templates)}"
        )
        return (
            f"ZeroShotClassifier({self.model.name!r}, n_labels={len(self.labels)}, method={self.method!r}"
            f"{extra}, {template})"
        )

    # ---------------------------------------------------------------------------- scoring
    def _itm_row(self, tokenized, states: torch.Tensor, key: str | None) -> np.ndarray:
        """ITM probabilities of one image (states of batch 1) against class texts; ``key`` is the
        image's feature-cache entry name, whose remembered logits are reused."""
        logits = self.model.itm_logits_of_image(tokenized, states, key, self.text_batch_size)
        return logits.softmax(dim=-1)[:, 1].double().cpu().numpy()

    def _score(self, images: Images) -> _ClassScores:
        """Score every image against every class text in one pass over the images."""
        if isinstance(images, ImageFeatures):
            n_images = len(images)
            if self.method == "cosine" and images.raw is None:
                return self._cosine_from_features(images)
        elif isinstance(images, torch.Tensor):
            n_images = 1 if images.ndim == 3 else int(images.shape[0])
        else:
            images = as_image_list(images)
            n_images = len(images)
        bar = Progress(n_images, show=self.progress, desc=f"zero-shot ({self.method})")
        tokenized = self.text_features.tokenized
        text_emb = self._class_embeddings
        n_labels = len(self.labels)
        every_class = np.arange(n_labels)
        every_text = np.arange(len(self.text_features))
        values, cosines, names = [], [], []
        try:
            with torch.inference_mode():
                for states, batch_labels, _, keys in self.model.iter_image_states(
                    images, self.batch_size, progress=False
                ):
                    cos = None
                    if self.method != "itm":
                        emb = F.normalize(self.model.image_projection(states).cpu(), dim=-1).double()
                        cos = cosine_matrix(emb, text_emb)
                        cosines.append(cos)
                    for b in range(states.shape[0]):
                        if self.method == "itm":
                            p = self._itm_row(tokenized, states[b : b + 1], keys[b])
                            values.append(self._class_probabilities(p, every_class, every_text))
                            continue
                        assert cos is not None  # computed above for "cosine" and "rerank"
                        if self.method == "cosine":
                            values.append(cos[b])
                        else:
                            keep = np.sort(np.argsort(-cos[b], kind="stable")[: self.rerank_k])
                            row = np.full(n_labels, np.nan)
                            texts = np.unique(self.text_index[keep])  # the kept classes' texts
                            p = self._itm_row(tokenized.select(texts.tolist()), states[b : b + 1], keys[b])
                            row[keep] = self._class_probabilities(p, keep, texts)
                            values.append(row)
                    names.extend(batch_labels)
                    if bar is not None:
                        bar.update(len(batch_labels))
        finally:
            if bar is not None:
                bar.close()
        values_arr = np.stack(values) if values else np.zeros((0, n_labels))
        cosine = None
        if self.method != "itm":
            cosine = np.concatenate(cosines) if cosines else np.zeros((0, n_labels))
        if self.method == "rerank":
            assert cosine is not None  # computed above for "rerank"
            # Kept classes (ITM in [0, 1], shifted to [2, 3]) above all others (cosine in [-1, 1]).
            rank_key = np.where(np.isnan(values_arr), cosine, values_arr + 2.0)
        else:
            rank_key = values_arr
        return _ClassScores(values_arr, rank_key, cosine, names)

    def _cosine_from_features(self, features: ImageFeatures) -> _ClassScores:
        self.model.check_features(features, need_raw=False)
        cos = cosine_matrix(features.embeddings, self._class_embeddings)
        return _ClassScores(cos, cos, cos, list(features.labels))

    # ------------------------------------------------------------------------------- API
    def predict_proba(self, images: Images) -> pd.DataFrame:
        """The scores used to classify: one row per image, one column per label.

        Parameters
        ----------
        images : image, sequence of images, pixel Tensor, or ImageFeatures (with raw states,
            except for ``method="cosine"``)

        Returns
        -------
        DataFrame of shape (n_images, n_labels)
            Index: image labels (file names or ``"image i"``); columns: the class labels. Values:
            ITM probabilities (``"itm"``), cosines (``"cosine"``), or, for ``"rerank"``, ITM
            probabilities of the ``rerank_k`` kept classes and NaN elsewhere. ``attrs["truncated_by"]``
            names the classes whose text was cut (:attr:`truncated_by`).
        """
        scores = self._score(images)
        frame = pd.DataFrame(
            scores.values,
            index=pd.Index(scores.image_labels, name="image"),
            columns=pd.Index(self.labels, name="label"),
        )
        frame.attrs["truncated_by"] = self.truncated_by
        return frame

    def predict(self, images: Images) -> list[str]:
        """The best-matching label of each image (argmax of :meth:`predict_proba`'s rows)."""
        scores = self._score(images)
        return [self.labels[i] for i in _argmax(scores.rank_key)]

    def top_k(self, image: Any, k: int = 10) -> pd.DataFrame:
        """The ``k`` best labels of one image with their scores (the reference's TakeLargest).

        :meth:`plot_top_k` draws them beside the image.

        Returns
        -------
        DataFrame with ``min(k, n_labels)`` rows, best first; index ``rank`` 1..k; columns
        ``label`` and ``score`` (as in :meth:`predict_proba`), plus ``cosine`` for
        ``method="rerank"`` (the order of the classes that ITM did not score).
        """
        k = positive_int("k", k)
        self._check_one_image(image, "top_k")
        return self._top_k_frame(self._score(image), k)

    def _check_one_image(self, image: Any, caller: str) -> None:
        if isinstance(image, ImageFeatures):
            n = len(image)
        elif isinstance(image, torch.Tensor):
            n = 1 if image.ndim == 3 else int(image.shape[0])
        else:
            n = len(as_image_list(image))
        if n != 1:
            raise InputError(f"{caller} takes one image, got {n}; use predict_proba for several")

    def _top_k_frame(self, scores: _ClassScores, k: int) -> pd.DataFrame:
        """The first image's ``k`` best classes (see :meth:`top_k`)."""
        order = _order(scores.rank_key[0])[:k]
        frame = pd.DataFrame({"label": [self.labels[i] for i in order], "score": scores.values[0, order]})
        if self.method == "rerank":
            assert scores.cosine is not None  # kept for "rerank"
            frame["cosine"] = scores.cosine[0, order]
        frame.index = pd.RangeIndex(1, len(frame) + 1, name="rank")
        frame.attrs["truncated_by"] = self.truncated_by
        return frame

    def plot_top_k(
        self,
        image: Any,
        k: int = 10,
        *,
        image_label: str | None = None,
        true_label: str | None = None,
        axes=None,
        **kwargs: Any,
    ):
        """Draw one image beside a bar chart of its ``k`` best classes (:meth:`top_k`).

        The bars are labelled with the class texts the net scored ("This is a photo of a cat"), or
        with the class names for several templates, and their values; the title names the image, the
        net, the method, the number of templates averaged (when more than one) and the score kind.

        Parameters
        ----------
        image : PIL image, path, bytes or array (one image), or ImageFeatures of one image
            Features are drawn from their thumbnail (96 px); preprocessed pixel tensors are refused
            (they are not a picture to show).
        k : int, default 10
        image_label : str, optional
            Name of the image in the title; default its file name, or ``"image 0"``.
        true_label : str, optional
            The image's true class (one of the classifier's ``labels``, any case): its bar gets a
            second colour.
        axes : pair of matplotlib Axes, optional
            (image panel, bar chart); default a new figure.
        **kwargs
            Passed to :meth:`blipviz.display.zero_shot.TopKDisplay.plot` (``max_label_chars``,
            ``values_format``, ``color``, ``true_color``, ``title``).

        Returns
        -------
        blipviz.display.zero_shot.TopKDisplay
            ``table`` (the :meth:`top_k` frame), ``im_``, ``bars_``, ``value_texts_``, ``ax_image_``,
            ``ax_``, ``figure_``.
        """
        from ..display.zero_shot import TopKDisplay

        k = positive_int("k", k)
        self._check_one_image(image, "plot_top_k")
        if true_label is not None:
            true_label = self.labels[int(_label_indices([true_label], self.labels)[0])]
        if isinstance(image, torch.Tensor):
            raise InputTypeError(
                "plot_top_k draws the image: pass the picture (PIL image, path, bytes or array) or "
                "ImageFeatures with thumbnails, not preprocessed pixels"
            )
        if isinstance(image, ImageFeatures):
            if not image.thumbnails:
                raise InputError("these ImageFeatures hold no thumbnail to draw; pass the image itself")
            source: Images = image
            picture, name = image.thumbnails[0], image.labels[0]
        else:
            item = as_image_list(image)[0]
            picture = self.model.preprocessing.load(item, 0)  # decoded once, EXIF rule applied
            name, source = label_of_image(item, 0), [picture]
        ranking = self._top_k_frame(self._score(source), len(self.labels))
        table = ranking.iloc[:k].copy()
        table.attrs = dict(ranking.attrs)
        true_rank = None if true_label is None else int(ranking.index[ranking["label"] == true_label][0])
        # one template: each bar names the text the net scored; an ensemble: the class (the title
        # says how many templates were averaged)
        texts = dict(zip(self.labels, self.texts, strict=True)) if isinstance(self.template, str) else {}
        display = TopKDisplay(
            picture,
            [texts.get(label, label) for label in table["label"]],
            table["score"].to_numpy(),
            labels=list(table["label"]),
            cosine=table["cosine"].to_numpy() if "cosine" in table else None,
            method=self.method,
            rerank_k=self.rerank_k if self.method == "rerank" else None,
            net=self.model.name,
            image_label=name if image_label is None else image_label,
            true_label=true_label,
            n_classes=len(self.labels),
            true_rank=true_rank,
            n_templates=len(self.templates),
        )
        display.table = table
        return display.plot(axes, **kwargs)


# ------------------------------------------------------------------------------------ evaluation


def _label_indices(true_labels: Any, labels: list[str]) -> np.ndarray:
    """Class names (exact, or case-insensitive when unique) or integer indices -> indices."""
    if isinstance(true_labels, str):
        raise InputTypeError("true_labels must be a sequence of labels, not a single str")
    try:
        items = list(true_labels)
    except TypeError:
        raise InputTypeError(
            f"true_labels must be a sequence of class names or indices, got {type(true_labels).__name__}"
        ) from None
    exact = {label: i for i, label in enumerate(labels)}
    folded: dict[str, int | None] = {}
    for i, label in enumerate(labels):
        folded[label.lower()] = None if label.lower() in folded else i
    out = np.empty(len(items), dtype=np.int64)
    for n, item in enumerate(items):
        if isinstance(item, str):
            index = exact.get(item, folded.get(item.lower()))
            if index is None:
                raise InputError(f"true_labels[{n}] = {item!r} is not one of the labels {labels}")
        elif isinstance(item, int | np.integer) and not isinstance(item, bool):
            index = int(item)
            if not 0 <= index < len(labels):
                raise InputError(f"true_labels[{n}] = {index} is out of range for {len(labels)} labels")
        else:
            raise InputTypeError(
                f"true_labels[{n}] must be a class name or an integer index, got {type(item).__name__}"
            )
        out[n] = index
    return out


@dataclass(eq=False)
class ZeroShotEvaluation:
    """Zero-shot predictions of labelled images, and their metrics.

    Build it with :func:`evaluate_zero_shot`, or from scores with :meth:`from_scores`.

    Attributes
    ----------
    scores : ndarray of shape (n_images, n_labels)
        Score of every (image, class); NaN for classes that were not scored.
    true : ndarray of int, shape (n_images,)
        True class of each image, as an index into ``labels``.
    labels : list of str
        Class names, in column order.
    image_labels : list of str
        One name per image.
    rank_key : ndarray of shape (n_images, n_labels)
        What orders the classes of an image, best first (ties: lower column first; NaN last).
        ``scores`` itself, except for ``method="rerank"`` (kept classes by ITM, then the others by
        cosine).
    method : str
        How the scores were computed (``"itm"``, ``"cosine"``, ``"rerank"``, or ``""``).
    net : str
        Name of the net that scored (``""`` when unknown); named in the plot's title.
    template : str or tuple of str
        The class-text template, or the templates of a prompt ensemble (``""`` when unknown); the
        plot's title names one template, or how many ("3 templates").
    rerank_k : int or None
        Classes reranked by ITM, for ``method="rerank"``.
    """

    scores: np.ndarray
    true: np.ndarray
    labels: list[str]
    image_labels: list[str]
    rank_key: np.ndarray
    method: str = ""
    net: str = ""
    template: str | tuple[str, ...] = ""
    rerank_k: int | None = None

    @property
    def templates(self) -> tuple[str, ...]:
        """The templates as a tuple: one for a ``str`` template, none when unknown (``""``)."""
        if isinstance(self.template, str):
            return (self.template,) if self.template else ()
        return tuple(self.template)

    @classmethod
    def from_scores(
        cls,
        scores: Any,
        true_labels: Sequence[str] | Sequence[int] | np.ndarray,
        labels: Sequence[str],
        *,
        image_labels: Sequence[str] | None = None,
        rank_key: Any = None,
        method: str = "",
        net: str = "",
        template: str | Sequence[str] = "",
        rerank_k: int | None = None,
    ) -> ZeroShotEvaluation:
        """Evaluate given scores; no model runs.

        Parameters
        ----------
        scores : array-like of shape (n_images, n_labels)
            Higher is better; NaN marks a class that was not scored (it ranks last).
        true_labels : sequence of str or int
            True class of each image: a name from ``labels`` or a column index.
        labels : sequence of str
            Class names, one per column.
        image_labels : sequence of str, optional
            Default ``"image i"``.
        rank_key : array-like of shape (n_images, n_labels), optional
            Orders the classes for predictions and top-k accuracy; default ``scores``.
        method : str, optional
        net : str, optional
            The net, named in the plot's title.
        template : str or sequence of str, optional
            The class-text template, or the templates of a prompt ensemble, named in the plot's title
            (several by their number); a sequence is checked as :func:`check_templates` does.
        rerank_k : int, optional
            Classes reranked by ITM (``method="rerank"``).
        """
        labels = as_text_list(labels, name="labels")
        values = np.asarray(scores, dtype=np.float64)
        if values.ndim != 2 or values.shape[1] != len(labels):
            raise InputError(
                f"scores must have shape (n_images, {len(labels)}) for {len(labels)} labels, "
                f"got {values.shape}"
            )
        if np.isposinf(values).any():
            raise InputError("scores must not contain +inf")
        key = values if rank_key is None else np.asarray(rank_key, dtype=np.float64)
        if key.shape != values.shape:
            raise InputError(f"rank_key has shape {key.shape}, scores {values.shape}")
        if len(values) and np.all(np.isnan(key), axis=1).any():
            row = int(np.flatnonzero(np.all(np.isnan(key), axis=1))[0])
            raise InputError(f"image {row} has no score for any class")
        true = _label_indices(true_labels, labels)
        if len(true) != len(values):
            raise InputError(f"got {len(true)} true labels for {len(values)} images")
        names = [f"image {i}" for i in range(len(values))] if image_labels is None else list(image_labels)
        if len(names) != len(values):
            raise InputError(f"got {len(names)} image labels for {len(values)} images")
        if not isinstance(template, str):
            template = check_templates(template)
        return cls(values, true, labels, names, key, method, net, template, rerank_k)

    # ---------------------------------------------------------------------------- metrics
    @property
    def n_images(self) -> int:
        return int(self.scores.shape[0])

    @property
    def predicted(self) -> np.ndarray:
        """ndarray of int, shape (n_images,): predicted class index of each image."""
        return _argmax(self.rank_key)

    @property
    def predicted_labels(self) -> list[str]:
        return [self.labels[i] for i in self.predicted]

    @property
    def true_labels(self) -> list[str]:
        return [self.labels[i] for i in self.true]

    @property
    def true_ranks(self) -> np.ndarray:
        """ndarray of int, shape (n_images,): rank of the true class among all classes (1 = best)."""
        order = _order(self.rank_key)
        return np.argmax(order == self.true[:, None], axis=1) + 1

    @property
    def accuracy(self) -> float:
        """Fraction of images whose predicted class is the true one (NaN without images)."""
        return float(np.mean(self.predicted == self.true)) if self.n_images else float("nan")

    def top_k_accuracy(self, k: int = 5) -> float:
        """Fraction of images whose true class is among the ``k`` best-ranked classes."""
        k = positive_int("k", k)
        return float(np.mean(self.true_ranks <= k)) if self.n_images else float("nan")

    @property
    def confusion_matrix(self) -> np.ndarray:
        """ndarray of int, shape (n_labels, n_labels): images of true class i (row) predicted as
        class j (column), scikit-learn's convention."""
        n = len(self.labels)
        matrix = np.zeros((n, n), dtype=np.int64)
        np.add.at(matrix, (self.true, self.predicted), 1)
        return matrix

    @property
    def per_class_accuracy(self) -> pd.Series:
        """Accuracy on the images of each true class (recall), indexed by label; NaN for a class
        without images."""
        matrix = self.confusion_matrix
        support = matrix.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            acc = np.where(support > 0, np.diag(matrix) / np.maximum(support, 1), np.nan)
        return pd.Series(acc, index=pd.Index(self.labels, name="label"), name="accuracy")

    def __repr__(self) -> str:
        method = f"method={self.method!r}, " if self.method else ""
        if len(self.templates) > 1:
            method += f"templates={len(self.templates)}, "
        k = min(5, len(self.labels))
        return (
            f"ZeroShotEvaluation({method}n_images={self.n_images}, n_labels={len(self.labels)}, "
            f"accuracy={self.accuracy:.3f}, top{k}={self.top_k_accuracy(k):.3f})"
        )

    # ---------------------------------------------------------------------------- outputs
    def to_pandas(self) -> pd.DataFrame:
        """One row per image: ``image``, ``true``, ``predicted``, ``correct``, ``true_rank``,
        ``true_score``, ``predicted_score``."""
        rows = np.arange(self.n_images)
        predicted = self.predicted
        return pd.DataFrame(
            {
                "image": self.image_labels,
                "true": self.true_labels,
                "predicted": [self.labels[i] for i in predicted],
                "correct": predicted == self.true,
                "true_rank": self.true_ranks,
                "true_score": self.scores[rows, self.true],
                "predicted_score": self.scores[rows, predicted],
            }
        )

    def plot(
        self,
        ax=None,
        *,
        normalize: str | None = None,
        title: str | None = None,
        colorbar: bool = True,
        max_label_chars: int | None = 80,
        **kwargs: Any,
    ):
        """Draw the confusion matrix (:func:`blipviz.display.zero_shot.plot_confusion_matrix`).

        Parameters
        ----------
        ax : matplotlib.axes.Axes, optional
            Default: a new figure sized for the number of classes and the length of their names.
        normalize : {"true", "pred", "all"}, optional
            Divide by the row sums (per-class accuracy on the diagonal), the column sums, or the
            total; default: counts.
        title : str, optional
            Default: "zero-shot confusion — <net>, <method>, template '<template>'" (or "<n>
            templates" for an ensemble) and the number of images.
        colorbar : bool, default True
            A colorbar named after what the cells count.
        max_label_chars : int or None, default 80
            Class names longer than this are elided in the middle (``fit_text``).
        **kwargs
            Passed to ``ConfusionMatrixDisplay.plot`` (``cmap``, ``values_format``,
            ``include_values``, ``xticks_rotation``, ...).

        Returns
        -------
        sklearn.metrics.ConfusionMatrixDisplay
            With ``ax_``, ``figure_``, ``im_``, ``text_`` and ``colorbar_`` set.
        """
        from ..display.zero_shot import confusion_title, plot_confusion_matrix

        if normalize not in (None, "true", "pred", "all"):
            raise InputError(f"normalize must be None, 'true', 'pred' or 'all', got {normalize!r}")
        matrix = self.confusion_matrix
        if normalize is not None:
            counts = matrix.astype(np.float64)
            total = {
                "true": counts.sum(axis=1, keepdims=True),
                "pred": counts.sum(axis=0, keepdims=True),
                "all": counts.sum(),
            }[normalize]
            with np.errstate(invalid="ignore", divide="ignore"):
                matrix = np.nan_to_num(counts / total)
        lines = (
            confusion_title(
                net=self.net,
                method=self.method,
                template=self.template,
                n_images=self.n_images,
                rerank_k=self.rerank_k,
            )
            if title is None
            else title
        )
        return plot_confusion_matrix(
            matrix,
            self.labels,
            ax=ax,
            normalize=normalize,
            title=lines,
            colorbar=colorbar,
            max_label_chars=max_label_chars,
            **kwargs,
        )


def evaluate_zero_shot(
    classifier: ZeroShotClassifier, images: Images, true_labels: Sequence[str] | Sequence[int]
) -> ZeroShotEvaluation:
    """Classify labelled images and measure how well it went.

    Parameters
    ----------
    classifier : ZeroShotClassifier
    images : image, sequence of images, pixel Tensor, or ImageFeatures
    true_labels : sequence of str or int
        True class of each image: a label of the classifier (exact, or differing in case only) or
        its index.

    Returns
    -------
    ZeroShotEvaluation
        ``.accuracy``, ``.per_class_accuracy``, ``.top_k_accuracy(k)``, ``.confusion_matrix``,
        ``.plot()``, ``.to_pandas()``.
    """
    if not isinstance(classifier, ZeroShotClassifier):
        raise InputTypeError(f"classifier must be a ZeroShotClassifier, got {type(classifier).__name__}")
    true = _label_indices(true_labels, classifier.labels)  # fail before running the model
    if not isinstance(images, ImageFeatures | torch.Tensor):
        images = as_image_list(images)
        if len(images) != len(true):
            raise InputError(f"got {len(true)} true labels for {len(images)} images")
    scores = classifier._score(images)
    return ZeroShotEvaluation.from_scores(
        scores.values,
        true,
        classifier.labels,
        image_labels=scores.image_labels,
        rank_key=scores.rank_key,
        method=classifier.method,
        net=classifier.model.name,
        template=classifier.template,
        rerank_k=classifier.rerank_k if classifier.method == "rerank" else None,
    )
