"""Retrieval evaluation (BLIP's protocol): the ITM passes done against BLIP's, the time of each stage,
and the projected time of the COCO 5k and Flickr30k 1k test sets.

A synthetic set with the benchmarks' geometry: 50 camera-sized images with 5 captions each (250
captions), the full ViT-B/16 net with random weights, ``evaluate_retrieval`` with ``k_test`` 16 by
default (BLIP uses 256 for COCO and 128 for Flickr30k; 16 keeps the run to a few minutes on 2 CPU
cores and still makes the candidate sets overlap as they do at full size, where k is about 5% of the
collection).

Cost model. BLIP's code runs ``n_images * k + n_texts * k`` ITM passes (every candidate pair of each
direction, a pair that is a candidate both ways twice); blipviz runs each distinct candidate pair once
(``RetrievalEvaluation.itm_pairs``). Each pass costs the text tower with cross-attention at the
caption's length; each image's cross-attention keys and values are computed once. The run measures
the seconds per image of stage 1 (ViT, projections) and per ITM pass of stage 2, and projects:

    time(benchmark) = n_images * s_per_image + pairs * s_per_pass

with ``pairs`` between the distinct-pair count at the measured overlap and BLIP's count (no overlap;
the upper bound). Random weights rank candidates unlike a trained net, whose two directions share
more pairs (a caption's own image is usually in its top k and the reverse): the lower figure assumes
the measured overlap fraction, the upper none. On a GPU (``--device cuda``) the same script measures
there; without one, the GPU line scales the CPU seconds by the ratio of dense matmul rates (this
machine's, measured in the run, against ``--gpu-tflops``, default 50 TFLOP/s: an H100/H200's
float32 rate with TF32 off is about 50-67): an estimate, not a measurement.

    python benchmarks/bench_retrieval.py             # full ViT-B/16 geometry, about 3-5 minutes on 2 cores
    python benchmarks/bench_retrieval.py --quick     # tiny net, seconds
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from benchmarks import common
else:
    from . import common

#: (name, images, captions, BLIP's k_test) of the paper's test sets.
BENCHMARKS = (("COCO 5k test", 5000, 25010, 256), ("Flickr30k 1k test", 1000, 5000, 128))


def main(argv: list[str] | None = None) -> list[dict]:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument(
        "--n-images", type=int, default=None, help="images of the synthetic set (default 50; quick 6)"
    )
    p.add_argument("--captions-per-image", type=int, default=5)
    p.add_argument("--k-test", type=int, default=None, help="candidates per query (default 16; quick 3)")
    p.add_argument(
        "--gpu-tflops", type=float, default=50.0, help="float32 matmul rate assumed for the GPU line"
    )
    args = p.parse_args(argv)
    import blipviz

    n_images = args.n_images or (6 if args.quick else 50)
    k_test = args.k_test or (3 if args.quick else 16)
    model = common.load(args)
    images = common.images(n_images, args.quick, seed=7)
    captions = common.texts(n_images * args.captions_per_image, seed=7)
    text_image = [i for i in range(n_images) for _ in range(args.captions_per_image)]
    n_texts = len(captions)
    blipviz.evaluate_retrieval(model, images[:1], captions[:2], text_image=[0, 0], k_test=2)  # warm-up

    rate_before = common.matmul_rate(args.device, args.quick, dtype=common.dtype(args))
    stage1, _ = common.timed(lambda: model.encode_images(images), args.device)
    common.sync(args.device)
    start = time.perf_counter()
    ev = blipviz.evaluate_retrieval(
        model, images, captions, text_image=text_image, k_test=k_test, progress=False
    )
    common.sync(args.device)
    total = time.perf_counter() - start
    rate = (rate_before + common.matmul_rate(args.device, args.quick, dtype=common.dtype(args))) / 2
    k_i2t, k_t2i = min(k_test, n_texts), min(k_test, n_images)
    blip_pairs = n_images * k_i2t + n_texts * k_t2i
    stage2 = max(total - stage1, 1e-9)  # stage 1 = one ViT pass per image (timed alone above)
    s_image, s_pass = stage1 / n_images, stage2 / ev.itm_pairs
    overlap = 1 - ev.itm_pairs / blip_pairs  # fraction of BLIP's passes that repeat a pair
    row = {
        "set": f"synthetic {n_images} x {n_texts}",
        "k_test": k_test,
        "itm_pairs": ev.itm_pairs,
        "blip_pairs": blip_pairs,
        "saved": overlap,
        "stage1_s": stage1,
        "stage2_s": stage2,
        "total_s": total,
        "s_per_image": s_image,
        "ms_per_pass": 1000 * s_pass,
        "matmul_gflops": rate / 1e9,
    }
    rows = [row]
    gpu_scale = None if args.device.startswith("cuda") else rate / (args.gpu_tflops * 1e12)
    for name, n, t, k in BENCHMARKS:
        upper = n * k + t * k
        lower = upper * (1 - overlap)
        low_s, high_s = n * s_image + lower * s_pass, n * s_image + upper * s_pass
        projected = {
            "set": f"{name} (projected)",
            "k_test": k,
            "itm_pairs": f"{lower:,.0f}-{upper:,.0f}",
            "blip_pairs": upper,
            "minutes": f"{low_s / 60:,.0f}-{high_s / 60:,.0f}",
            "device": args.device,
        }
        if gpu_scale is not None:
            projected["gpu_minutes_estimate"] = (
                f"{low_s * gpu_scale / 60:,.1f}-{high_s * gpu_scale / 60:,.1f}"
            )
        rows.append(projected)
    print(common.header(args, model))
    print(common.table(rows[:1]))
    print()
    print(common.table(rows[1:]))
    common.append_results(args.results, "retrieval", args, rows)
    return rows


if __name__ == "__main__":
    main()
