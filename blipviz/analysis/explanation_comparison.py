"""The explanation methods side by side for one (image, text) pair: :func:`compare_explanations`.

Each method's map of the match decision (``Explanation.match_map``) in its own panel,
on the photograph, on a per-method scale (each in its method's units, with its own colorbar) or one
shared scale (each map divided by its top); occlusion's signed map (drops and rises of the score)
on a diverging key centred at zero; with ``evaluate=True`` each method's deletion and insertion AUC
(:func:`blipviz.evaluate_explanations` on this pair) in its panel's title.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import InputError, InputTypeError, check_choice
from .explanations import METHODS, Explanation, evaluate_explanations, explain

if TYPE_CHECKING:
    from ..display.explanations import ExplanationComparisonDisplay
    from ..net.net import BlipNet

__all__ = ["PANEL_NAMES", "compare_explanations"]

#: Each method's panel name.
PANEL_NAMES = {
    "attention": "cross-attention",
    "gradcam": "GradCAM",
    "relevancy": "relevancy",
    "rollout": "rollout",
    "occlusion": "occlusion",
}
# what a panel's values are (its colorbar's label, under a narrow panel)
_UNITS = {
    "attention": "attention − the patch's min over tokens",
    "gradcam": "GradCAM value",
    "relevancy": "relevancy",
    "rollout": "rollout",
    "occlusion": "drop of the ITM match logit",
}
_SIGNED_UNITS = {
    "gradcam": "attention × gradient (not clipped)",
    "occlusion": "drop of the ITM match logit (< 0: it rose)",
}


def _methods(methods: Any) -> list[str]:
    if isinstance(methods, str):
        methods = [methods]
    elif methods is None or isinstance(methods, bytes | Mapping):
        kind = type(methods).__name__
        raise InputTypeError(f"methods must be a method name or a sequence of them, got {kind}")
    else:
        methods = list(methods)
    if not methods:
        raise InputError(f"no methods to compare: pass one or more of {', '.join(map(repr, METHODS))}")
    for method in methods:
        check_choice("method", method, METHODS)
    if len(set(methods)) != len(methods):
        raise InputError(f"methods repeat: {methods}")
    return methods


def _panel_name(explanation: Explanation) -> str:
    name = PANEL_NAMES[explanation.method]
    layer = explanation.options.get("layer")
    return f"{name}, layer {layer}" if layer is not None else name


def compare_explanations(
    model: BlipNet,
    image: Any,
    text: str,
    methods: str | Sequence[str] | None = None,
    *,
    explanations: Mapping[str, Explanation] | None = None,
    evaluate: bool = False,
    steps: int = 20,
    baseline: str = "blur",
    options: Mapping[str, Mapping[str, Any]] | None = None,
    signed: bool | None = None,
    scale: str = "per-method",
    axes=None,
    figure=None,
    **kw: Any,
) -> ExplanationComparisonDisplay:
    """The explanation methods' maps of one (image, text) pair, side by side.

    Parameters
    ----------
    model : BlipNet
    image : image (path, PIL image, array)
    text : str
    methods : str or sequence of str, optional
        Any of ``"attention"``, ``"gradcam"``, ``"relevancy"``, ``"rollout"``, ``"occlusion"``, in
        the panels' order. Default: all five, or the methods of ``explanations``.
    explanations : mapping of method to Explanation, optional
        Explanations of this pair already computed (``model.explain(image, text, method)``): drawn
        as they are; only the methods missing from it are computed.
    evaluate : bool, default False
        Measure each map with deletion and insertion curves on this pair
        (:func:`blipviz.evaluate_explanations`, ``steps`` and ``baseline``) and write its AUCs in
        its panel's title (the random order's in the figure's title). The maps drawn are the ones
        evaluated (each method with its default options).
    steps : int, default 20
    baseline : {"blur", "mean"}, default "blur"
        The evaluation's removed patches, and occlusion's.
    options : mapping of method to options, optional
        Each method's options for :func:`blipviz.analysis.explanations.explain`, e.g.
        ``{"occlusion": {"window": 2, "stride": 2}}`` (not with ``evaluate``: the evaluation uses
        each method's defaults).
    signed : bool, optional
        Signed maps on a diverging key centred at zero where the method yields them (occlusion;
        GradCAM before its gradient is clipped, where computed); default: occlusion's only. False:
        every map from 0 up.
    scale : {"per-method", "shared"}, default "per-method"
        Each map on its own scale in its units with its own colorbar, or every map divided by its
        top on one scale (their units differ: only their patterns compare).
    axes : sequence of Axes, optional
        One per method, drawn into; nothing else in the figure changes.
    figure : Figure or SubFigure, optional
        The panels made inside it. Neither given: a new figure with a title.
    **kw
        ``ncols``, ``cmap``, ``signed_cmap``, ``alpha``, ``size``, ``percentile``, ``panel_size``:
        see :meth:`blipviz.display.explanations.ExplanationComparisonDisplay.plot`.

    Returns
    -------
    ExplanationComparisonDisplay
        ``explanations_``: the :class:`blipviz.Explanation` of each method, by method;
        ``evaluation_``: the :class:`blipviz.ExplanationEvaluation` (None without ``evaluate``).
    """
    from ..display.explanations import ExplanationComparisonDisplay

    given = dict(explanations or {})
    methods = _methods(methods if methods is not None else (list(given) or METHODS))
    for method, explanation in given.items():
        if not isinstance(explanation, Explanation) or explanation.method != method:
            raise InputError(f"explanations[{method!r}] must be an Explanation of method {method!r}")
        if explanation.text != text:
            raise InputError(
                f"explanations[{method!r}] explains {explanation.text!r}, not the text given ({text!r})"
            )
    options = dict(options or {})
    unknown = set(options) - set(methods)
    if unknown:
        raise InputError(f"options for methods not compared: {sorted(unknown)}")
    if evaluate and (any(options.values()) or given):
        raise InputError(
            "evaluate=True measures the maps it makes with each method's default options: drop "
            "options= and explanations= (or evaluate your maps with blipviz.evaluate_explanations)"
        )
    if signed is not None and not isinstance(signed, bool):
        raise InputTypeError(f"signed must be True, False or None, got {type(signed).__name__}")
    evaluation = None
    if evaluate:
        evaluation = evaluate_explanations(model, [image], [text], methods, steps=steps, baseline=baseline)
        explanations = {m: evaluation.explanations[m][0] for m in methods}
    else:
        explanations = {}
        for m in methods:
            if m in given:
                explanations[m] = given[m]
                continue
            chosen = dict(options.get(m, {}))
            if m == "occlusion":
                chosen.setdefault("baseline", baseline)
            explanations[m] = explain(model, image, text, m, **chosen)
    maps, is_signed, units = [], [], []
    for m in methods:
        e = explanations[m]
        draw_signed = e.signed and (m == "occlusion" if signed is None else signed)
        signed_map = e.signed_match_map if draw_signed else None  # not None: e.signed
        maps.append(e.match_map if signed_map is None else signed_map)
        is_signed.append(draw_signed)
        units.append(_SIGNED_UNITS[m] if draw_signed else _UNITS[m])
    aucs, random_auc = None, None
    if evaluation is not None:
        table = evaluation.table
        aucs = {
            _panel_name(explanations[m]): (
                float(table.loc[m, "deletion_auc"]),
                float(table.loc[m, "insertion_auc"]),
            )
            for m in methods
        }
        random_auc = (float(table.loc["random", "deletion_auc"]), float(table.loc["random", "insertion_auc"]))
    first = explanations[methods[0]]
    picture = next((e.image for e in explanations.values() if e.image is not None), None)
    display = ExplanationComparisonDisplay(
        maps,
        [_panel_name(explanations[m]) for m in methods],
        image=picture,
        signed=is_signed,
        value_names=units,
        aucs=aucs,
        random_auc=random_auc,
        text=text,
        score=first.itm_probability,
        net_name=str(getattr(model, "name", "")),
    )
    display.plot(axes, figure=figure, scale=scale, **kw)
    display.explanations_ = explanations
    display.evaluation_ = evaluation
    return display
