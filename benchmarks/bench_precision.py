"""Reduced precision against float32: speed-up and agreement, on the same weights.

Variants: ``int8`` (opt-in dynamic quantisation of the Linear layers, ``quantize="int8"``; CPU
only), ``bfloat16`` and ``float16`` (``dtype=``; meant for GPUs, bfloat16 also runs on CPUs with
bfloat16 instructions). Each variant is a deep copy of the float32 net, timed interleaved with it on
the ViT (batch 4) and on an ITM matrix. Agreement over the ITM matrix: max and mean |diff| of the
match probabilities, Spearman rank correlation of all pairs, agreement of each image's best text;
max |diff| of the cosines.

    python benchmarks/bench_precision.py                      # CPU: int8, bfloat16; about 5 minutes
    python benchmarks/bench_precision.py --device cuda        # GPU: float16, bfloat16
    python benchmarks/bench_precision.py --quick
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
    from benchmarks import common
else:
    from . import common


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra = np.argsort(np.argsort(a.ravel()))
    rb = np.argsort(np.argsort(b.ravel()))
    return float(np.corrcoef(ra, rb)[0, 1])


def variant_model(model, variant: str, device: str):
    """A deep copy of ``model`` in ``variant`` (int8, float16 or bfloat16)."""
    from blipviz import BlipITM
    from blipviz.net.quantize import quantize_int8

    hf = copy.deepcopy(model.hf)
    name = f"{model.name} {variant}"
    if variant == "int8":
        return quantize_int8(BlipITM(hf, name=name, preprocessing=model.preprocessing))
    return BlipITM(
        hf, name=name, preprocessing=model.preprocessing, device=device, dtype=common.DTYPES[variant]
    )


def main(argv: list[str] | None = None) -> list[dict]:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--n-images", type=int, default=None)
    p.add_argument("--n-texts", type=int, default=8)
    p.add_argument("--reps", type=int, default=2)
    p.add_argument(
        "--variants",
        default=None,
        help="comma-separated, from int8, bfloat16, float16 (default: int8,bfloat16 on CPU, "
        "float16,bfloat16 on CUDA)",
    )
    args = p.parse_args(argv)
    on_cpu = args.device == "cpu"
    variants = (args.variants or ("int8,bfloat16" if on_cpu else "float16,bfloat16")).split(",")
    unknown = sorted(set(variants) - {"int8", "bfloat16", "float16"})
    if unknown:
        p.error(f"unknown variants {unknown}")
    if "int8" in variants and not on_cpu:
        p.error("int8 dynamic quantisation is CPU only")
    args.dtype = "float32"  # the reference; the variants set their own type

    model = common.load(args)
    n_images = args.n_images or (3 if args.quick else 4)
    ims = common.images(n_images, args.quick, seed=21)
    caps = common.texts(args.n_texts, seed=8)
    s = model.preprocessing.image_size
    pixels = torch.randn(4, 3, s, s, generator=torch.Generator().manual_seed(0)).to(args.device)
    rows = []
    for variant in variants:
        other = variant_model(model, variant, args.device)
        times = {(kind, what): [] for kind in ("float32", variant) for what in ("vision", "itm")}
        scores = {}
        with torch.inference_mode():
            model.vision_states(pixels[:1])
            other.vision_states(pixels[:1])
        for _ in range(args.reps):
            for kind, m in (("float32", model), (variant, other)):
                with torch.inference_mode():
                    t = common.timed(lambda: m.vision_states(pixels), args.device)[0]  # noqa: B023
                times[(kind, "vision")].append(t)
                t, out = common.timed(lambda: m.scores(ims, caps), args.device)  # noqa: B023
                times[(kind, "itm")].append(t)
                scores[kind] = out
        med = {key: statistics.median(v) for key, v in times.items()}
        exact, approx = np.asarray(scores["float32"][0]), np.asarray(scores[variant][0])
        diff = np.abs(exact - approx)
        rows.append(
            {
                "variant": variant,
                "vision_b4_float32_s": med[("float32", "vision")],
                "vision_b4_s": med[(variant, "vision")],
                "vision_speedup": med[("float32", "vision")] / med[(variant, "vision")],
                "matrix": f"{n_images} x {args.n_texts}",
                "matrix_float32_s": med[("float32", "itm")],
                "matrix_s": med[(variant, "itm")],
                "matrix_speedup": med[("float32", "itm")] / med[(variant, "itm")],
                "max_abs_diff_prob": float(diff.max()),
                "mean_abs_diff_prob": float(diff.mean()),
                "spearman": _spearman(exact, approx),
                "top1_agreement": float((exact.argmax(1) == approx.argmax(1)).mean()),
                "max_abs_diff_cosine": float(
                    np.abs(np.asarray(scores["float32"][1]) - np.asarray(scores[variant][1])).max()
                ),
                "prob_std_float32": float(exact.std()),
            }
        )
        del other
    print(common.header(args, model))
    print(common.table(rows))
    common.append_results(args.results, "precision", args, rows)
    return rows


if __name__ == "__main__":
    main()
