"""Opt-in int8 dynamic quantisation on the CPU: speed-up and agreement with float32.

The same weights, float32 and ``quantize="int8"`` (a deep copy quantised with
``blipviz.quantize.quantize_int8``), timed interleaved on the ViT (batch 4) and on an ITM matrix.
Agreement over the ITM matrix: max and mean |diff| of the match probabilities, Spearman rank
correlation of all pairs, agreement of each image's best text; max |diff| of the cosines.

    python benchmarks/bench_quantize.py            # full ViT-B/16 geometry, about 3 minutes on 2 cores
    python benchmarks/bench_quantize.py --quick
"""

from __future__ import annotations

import copy
import statistics
import sys
from pathlib import Path

import numpy as np
import torch

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from benchmarks import _common as common
else:
    from . import _common as common


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra = np.argsort(np.argsort(a.ravel()))
    rb = np.argsort(np.argsort(b.ravel()))
    return float(np.corrcoef(ra, rb)[0, 1])


def main(argv: list[str] | None = None) -> list[dict]:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--n-images", type=int, default=None)
    p.add_argument("--n-texts", type=int, default=8)
    p.add_argument("--reps", type=int, default=2)
    args = p.parse_args(argv)
    if args.device != "cpu":
        print("int8 dynamic quantisation is CPU only; nothing to measure on", args.device)
        return []
    from blipviz import BlipITM
    from blipviz.quantize import quantize_int8

    model = common.load(args)
    qmodel = quantize_int8(
        BlipITM(copy.deepcopy(model.hf), name=f"{model.name} int8", preprocessing=model.preprocessing)
    )
    n_images = args.n_images or (3 if args.quick else 4)
    ims = common.images(n_images, args.quick, seed=21)
    caps = common.texts(args.n_texts, seed=8)
    s = model.preprocessing.image_size
    pixels = torch.randn(4, 3, s, s, generator=torch.Generator().manual_seed(0))
    times = {(kind, what): [] for kind in ("float32", "int8") for what in ("vision", "itm")}
    scores = {}
    with torch.inference_mode():
        model._vision_states(pixels[:1])
        qmodel._vision_states(pixels[:1])
    for _ in range(args.reps):
        for kind, m in (("float32", model), ("int8", qmodel)):
            with torch.inference_mode():
                times[(kind, "vision")].append(common.timed(lambda: m._vision_states(pixels), "cpu")[0])  # noqa: B023
            t, out = common.timed(lambda: m.scores(ims, caps), "cpu")  # noqa: B023
            times[(kind, "itm")].append(t)
            scores[kind] = out
    med = {key: statistics.median(v) for key, v in times.items()}
    exact, approx = np.asarray(scores["float32"][0]), np.asarray(scores["int8"][0])
    diff = np.abs(exact - approx)
    row = {
        "vision_b4_float32_s": med[("float32", "vision")],
        "vision_b4_int8_s": med[("int8", "vision")],
        "vision_speedup": med[("float32", "vision")] / med[("int8", "vision")],
        "matrix": f"{n_images} x {args.n_texts}",
        "matrix_float32_s": med[("float32", "itm")],
        "matrix_int8_s": med[("int8", "itm")],
        "matrix_speedup": med[("float32", "itm")] / med[("int8", "itm")],
        "max_abs_diff_prob": float(diff.max()),
        "mean_abs_diff_prob": float(diff.mean()),
        "spearman": _spearman(exact, approx),
        "top1_agreement": float((exact.argmax(1) == approx.argmax(1)).mean()),
        "max_abs_diff_cosine": float(
            np.abs(np.asarray(scores["float32"][1]) - np.asarray(scores["int8"][1])).max()
        ),
        "prob_std_float32": float(exact.std()),
    }
    print(common.header(args, model))
    print(common.table([row]))
    common.append_results(args.results, "quantize_int8", args, [row])
    return [row]


if __name__ == "__main__":
    main()
