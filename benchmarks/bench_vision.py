"""Vision encoder throughput: images/s and % of the measured matmul rate, batch sizes 1, 4 and 16,
with the fused attention (blipviz's default) and with transformers' exact attention.

The timed call is ``model.vision_states(pixels)`` on preprocessed pixels: the ViT alone. Runs of
the batch sizes and of both attention paths are interleaved with torch.mm rate measurements.

    python benchmarks/bench_vision.py            # full ViT-B/16 geometry, about 3 minutes on 2 cores
    python benchmarks/bench_vision.py --quick
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

import torch

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from benchmarks import common
else:
    from . import common


def main(argv: list[str] | None = None) -> list[dict]:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--batch-sizes", type=int, nargs="+", default=None)
    p.add_argument("--reps", type=int, default=2)
    args = p.parse_args(argv)
    from blipviz.net.fast_attention import exact_attention

    model = common.load(args)
    sizes = args.batch_sizes or ([1, 2, 4] if args.quick else [1, 4, 16])
    s = model.preprocessing.image_size
    pixels = torch.randn(max(sizes), 3, s, s, generator=torch.Generator().manual_seed(0)).to(args.device)
    run = lambda b: common.timed(lambda: model.vision_states(pixels[:b]), args.device)[0]  # noqa: E731
    with torch.inference_mode():
        run(1)
        with exact_attention(model):
            run(1)
        times = {(b, path): [] for b in sizes for path in ("fused", "exact")}
        rates = [common.matmul_rate(args.device, args.quick, dtype=common.dtype(args))]
        for _ in range(args.reps):
            for b in sizes:
                times[(b, "fused")].append(run(b))
                with exact_attention(model):
                    times[(b, "exact")].append(run(b))
                rates.append(common.matmul_rate(args.device, args.quick, dtype=common.dtype(args)))
    rate = statistics.median(rates)
    flops = common.vision_flops(model.config)
    rows = []
    for b in sizes:
        fused, exact = statistics.median(times[(b, "fused")]), statistics.median(times[(b, "exact")])
        rows.append(
            {
                "batch": b,
                "images_per_s": b / fused,
                "s_per_image": fused / b,
                "pct_of_matmul_rate": 100 * flops * b / fused / rate,
                "exact_images_per_s": b / exact,
                "fused_speedup": exact / fused,
                "gflop_per_image": flops / 1e9,
                "matmul_gflops": rate / 1e9,
            }
        )
    print(common.header(args, model))
    print(common.table(rows))
    common.append_results(args.results, "vision", args, rows)
    return rows


if __name__ == "__main__":
    main()
