"""Peak memory (RSS) of scoring 100 images x 10 texts with ``itm_scores``.

Images are given as files (as in a notebook over a folder), so they are decoded batch by batch. Each
measurement runs in a fresh process: peak RSS (``ru_maxrss``) after loading the net, then after the
scoring; the difference is the working memory of the scoring. For scale, the table gives the size
of the raw image states of all images (what holding them at once would cost) and of one batch.

    python benchmarks/bench_memory.py            # full ViT-B/16 geometry, about 3 minutes on 2 cores
    python benchmarks/bench_memory.py --quick
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from benchmarks import _common as common
else:
    from . import _common as common


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def measure(args) -> dict:
    """In this process: load, then score; peak RSS before and after."""
    model = common.load(args)
    loaded = _peak_mb()
    with tempfile.TemporaryDirectory() as folder:
        paths = []
        for i, image in enumerate(common.images(args.n_images, args.quick, seed=7)):
            paths.append(Path(folder) / f"{i:03d}.png")
            image.save(paths[-1])
        caps = common.texts(args.n_texts, seed=3)
        elapsed, scores = common.timed(
            lambda: model.itm_scores(paths, caps, batch_size=args.batch_size, progress=False), args.device
        )
    peak = _peak_mb()
    raw_mb = model.n_image_tokens * model.width * 4 / 2**20
    return {
        "images": args.n_images,
        "texts": args.n_texts,
        "batch_size": args.batch_size,
        "seconds": elapsed,
        "rss_after_load_mb": loaded,
        "rss_peak_mb": peak,
        "scoring_mb": peak - loaded,
        "raw_all_images_mb": raw_mb * args.n_images,
        "raw_one_batch_mb": raw_mb * min(args.batch_size, args.n_images),
        "shape": list(scores.shape),
    }


def main(argv: list[str] | None = None) -> list[dict]:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--n-images", type=int, default=None)
    p.add_argument("--n-texts", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--in-process", action="store_true", help="measure in this process (used by the child)")
    args = p.parse_args(argv)
    if args.n_images is None:
        args.n_images = 8 if args.quick else 100
    if args.in_process:
        row = measure(args)
    else:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--in-process", "--device", args.device]
        cmd += ["--n-images", str(args.n_images), "--n-texts", str(args.n_texts)]
        cmd += ["--batch-size", str(args.batch_size), "--results", str(args.results)]
        cmd += ["--quick"] if args.quick else []
        lines = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()
        print("\n".join(lines[:-1]))
        return json.loads(lines[-1])
    model_name = "tiny-random" if args.quick else "full ViT-B/16 geometry, random weights"
    print(f"{model_name} on {args.device}; {common.machine()}")
    print(common.table([row]))
    common.append_results(args.results, "memory", args, [row])
    print(json.dumps([row]))
    return [row]


if __name__ == "__main__":
    main()
