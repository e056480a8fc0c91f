"""Explanations: seconds per (image, text) pair of each method against one ITM pass of the pair.

One ITM pass = the image through the ViT and the text through the multimodal encoder (no feature
cache), the work of scoring the pair once. Attention and rollout add the attention maps to that
pass; GradCAM and relevancy add one backward (relevancy's runs through the ViT too); occlusion runs
one ViT pass per window (``--occlusion-window`` patches square, moved by as many: 144 windows of
2 x 2 on ViT-B/16's 24 x 24 grid). Median of ``--reps``, methods interleaved.

    python benchmarks/bench_explanations.py           # full ViT-B/16 geometry, about 5 minutes on 2 cores
    python benchmarks/bench_explanations.py --quick
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from benchmarks import common
else:
    from . import common


def main(argv: list[str] | None = None) -> list[dict]:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=2)
    p.add_argument("--occlusion-window", type=int, default=2)
    args = p.parse_args(argv)
    from blipviz.analysis.explanations import explain

    model = common.load(args)
    image = common.images(1, args.quick, seed=21)[0]
    text = common.texts(1, seed=3)[0]
    window = args.occlusion_window
    runs = {
        "one ITM pass": lambda: model.itm_scores([image], [text], progress=False),
        "attention": lambda: explain(model, image, text, "attention"),
        "rollout": lambda: explain(model, image, text, "rollout"),
        "gradcam": lambda: explain(model, image, text, "gradcam"),
        "relevancy": lambda: explain(model, image, text, "relevancy"),
        f"occlusion ({window} x {window} windows)": lambda: explain(
            model, image, text, "occlusion", window=window, stride=window
        ),
    }
    for run in runs.values():  # warm up every path once
        run()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.reps):
        for name, run in runs.items():
            times[name].append(common.timed(run, args.device)[0])
    base = statistics.median(times["one ITM pass"])
    rows = [
        {
            "method": name,
            "seconds_per_pair": statistics.median(t),
            "vs_one_itm_pass": statistics.median(t) / base,
        }
        for name, t in times.items()
    ]
    print(common.header(args, model))
    print(common.table(rows))
    common.append_results(args.results, "explanations", args, rows)
    return rows


if __name__ == "__main__":
    main()
