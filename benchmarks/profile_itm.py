"""Where the time of an ITM score matrix goes: torch's profiler over ``itm_scores`` on the full
ViT-B/16 geometry, by phase and by kind of work, beside each phase's matmul-FLOP floor.

Phases (each wrapped in a ``record_function`` scope for the run): ``preprocess`` (loading with the
EXIF rule, resize, normalise into a tensor: the net's ``preprocessing``), ``vision`` (the ViT),
``multimodal`` (the text tower with cross-attention: keys and values once per image, then the text
passes) and ``outside`` (the rest of the call: tokenising, batching, Python). Kinds: each profiled
operator's own (self) CPU time, grouped as matmul (mm, addmm, bmm, linear, convolution), fused
attention (scaled_dot_product_attention: scores, softmax and context in one kernel), softmax,
layer norm, GELU, and other operators (copies, adds, views); "Python" is what the scope spent
outside any operator. The floor is the phase's matmul FLOPs (benchmarks/common.py) at this
machine's dense matmul rate, measured in the same run.

The profiler adds a few microseconds per operator: totals run a little slower than unprofiled.

    python benchmarks/profile_itm.py            # 4x16, 10x10, 1x50, 50x1; about 5 minutes on 2 cores
    python benchmarks/profile_itm.py --quick    # tiny net, seconds
    python benchmarks/profile_itm.py --threads 1 --shapes 4x16,10x10   # each kernel's efficiency
"""

from __future__ import annotations

import contextlib
import sys
from collections import defaultdict
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile, record_function

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from benchmarks import common
else:
    from . import common

FULL_SHAPES = [(4, 16), (10, 10), (1, 50), (50, 1)]
QUICK_SHAPES = [(2, 4), (3, 3), (1, 5), (5, 1)]
PHASES = ("preprocess", "vision", "multimodal")
KINDS = ("matmul", "fused attention", "softmax", "layer norm", "GELU", "other operators", "Python")

_MATMUL = {"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::matmul", "aten::linear"}
_MATMUL |= {"aten::convolution", "aten::_convolution", "aten::mkldnn_convolution", "aten::conv2d"}


def kind(name: str) -> str:
    if name in _MATMUL:
        return "matmul"
    if "scaled_dot_product" in name:
        return "fused attention"
    if "softmax" in name:
        return "softmax"
    if "layer_norm" in name:
        return "layer norm"
    if "gelu" in name:
        return "GELU"
    return "other operators"


@contextlib.contextmanager
def scoped(obj, attribute: str, scope: str):
    """``obj.attribute`` (a method or a module's forward) run inside ``record_function(scope)``."""
    original = getattr(obj, attribute)

    def wrapped(*args, **kwargs):
        with record_function(scope):
            return original(*args, **kwargs)

    object.__setattr__(obj, attribute, wrapped)  # on the instance (frozen dataclasses too)
    try:
        yield
    finally:
        object.__delattr__(obj, attribute)
        assert getattr(obj, attribute) == original


class _ScopedPreprocessing:
    """A net's ``preprocessing`` whose loading and resizing run inside ``record_function``."""

    def __init__(self, inner) -> None:
        self._inner = inner

    def __call__(self, *args, **kwargs):
        with record_function("preprocess"):
            return self._inner(*args, **kwargs)

    def load(self, *args, **kwargs):
        with record_function("preprocess"):
            return self._inner.load(*args, **kwargs)

    def __getattr__(self, name: str):
        return getattr(self._inner, name)


@contextlib.contextmanager
def scoped_preprocessing(model):
    inner = model.preprocessing
    object.__setattr__(model, "preprocessing", _ScopedPreprocessing(inner))
    try:
        yield
    finally:
        object.__setattr__(model, "preprocessing", inner)


def _phase(event) -> str:
    while event is not None:
        if event.name in PHASES:
            return event.name
        event = event.cpu_parent
    return "outside"


def breakdown(prof, wall_s: float) -> dict[str, dict[str, float]]:
    """Seconds by phase and kind. A scope's own time outside operators is its Python time."""
    out: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for event in prof.events():
        phase = _phase(event.cpu_parent) if event.name in PHASES else _phase(event)
        seconds = event.self_cpu_time_total / 1e6
        if event.name in PHASES:
            out[event.name]["Python"] += seconds
        elif phase == "outside" and event.cpu_parent is None and not event.name.startswith("aten::"):
            continue
        else:
            out[phase][kind(event.name)] += seconds
    accounted = sum(sum(v.values()) for v in out.values())
    out["outside"]["Python"] += max(0.0, wall_s - accounted)  # the call's time the profiler saw no op in
    out["profiled"]["seconds"] = accounted
    return out


def main(argv: list[str] | None = None) -> list[dict]:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch's intra-op threads (default: torch's own); 1 profiles each kernel's efficiency "
        "without waits between threads, which a busy machine inflates for small operators",
    )
    p.add_argument("--shapes", default=None, help="images x texts to profile, e.g. 4x16,10x10")
    args = p.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    model = common.load(args)
    shapes = QUICK_SHAPES if args.quick else FULL_SHAPES
    if args.shapes:
        shapes = [tuple(int(v) for v in shape.split("x")) for shape in args.shapes.split(",")]
    model.itm_scores(common.images(1, args.quick, seed=99), ["warm up"])  # first-call costs out
    rows = []
    for n_images, n_texts in shapes:
        ims = common.images(n_images, args.quick, seed=n_images)
        caps = common.texts(n_texts, seed=n_texts)
        rate = common.matmul_rate(args.device, args.quick)
        with contextlib.ExitStack() as stack:
            stack.enter_context(scoped_preprocessing(model))
            stack.enter_context(scoped(model.hf.vision_model, "forward", "vision"))
            stack.enter_context(scoped(model.hf.text_encoder, "forward", "multimodal"))
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                wall, _ = common.timed(lambda: model.itm_scores(ims, caps, progress=False), args.device)  # noqa: B023
        rate = (rate + common.matmul_rate(args.device, args.quick)) / 2
        flops = common.itm_matrix_flops(model, n_images, caps)
        floors = {"vision": flops["vision"] / rate, "multimodal": (flops["cross_kv"] + flops["text"]) / rate}
        parts = breakdown(prof, wall)
        profiled = parts.pop("profiled")["seconds"]
        for phase in (*PHASES, "outside"):
            seconds = parts.get(phase, {})
            total = sum(seconds.values())
            row = {"shape": f"{n_images} x {n_texts}", "phase": phase, "seconds": total}
            row["share"] = total / wall
            row.update({k: seconds.get(k, 0.0) for k in KINDS})
            row["floor_s"] = floors.get(phase, 0.0)
            row["vs_floor"] = total / floors[phase] if phase in floors else float("nan")
            rows.append(row)
        rows.append(
            {
                "shape": f"{n_images} x {n_texts}",
                "phase": "whole call",
                "seconds": wall,
                "share": 1.0,
                "floor_s": sum(floors.values()),
                "vs_floor": wall / sum(floors.values()),
                "matmul_gflops": rate / 1e9,
                "profiled_s": profiled,  # seconds inside profiled scopes and operators
            }
        )
        print(common.table(rows[-5:], ["shape", "phase", "seconds", "share", *KINDS, "floor_s", "vs_floor"]))
        print(flush=True)
    print(common.header(args, model))
    print(common.table(rows, ["shape", "phase", "seconds", "share", *KINDS, "floor_s", "vs_floor"]))
    common.append_results(args.results, "profile_itm", args, rows)
    return rows


if __name__ == "__main__":
    main()
