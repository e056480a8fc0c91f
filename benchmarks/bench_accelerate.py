"""The long jobs' opt-in acceleration: ``score_pairs`` eager float32 against ``compile=True``,
``autocast="bfloat16"`` and both, on the same net and pairs.

Each variant scores the same CSV of pairs (``--n-images`` camera-sized images, 480 x 640, with
``--captions`` generated captions each) into a fresh folder. Its first run holds the compilation
(``compile=True`` compiles the ViT once per net, on its first batch; autocast compiles its own
graph); ``compile_s`` is that first run's time less the median of the later runs. The later runs
(``--reps``, interleaved across the variants so that the machine's load falls on all alike) give
``wall_s`` and ``speedup`` (eager's ``wall_s`` over the variant's). Agreement with eager float32 on
every pair: Spearman rank correlation and largest absolute difference of the ITM probabilities and
of the cosines.

bfloat16 autocast runs only on a CPU with native bfloat16 (AVX512-BF16, AMX-BF16); elsewhere its
rows say so, unless ``--force-bf16`` (emulated: slow, for the agreement figures only).

    python benchmarks/bench_accelerate.py                 # ViT-B/16 geometry, random weights
    python benchmarks/bench_accelerate.py --quick         # tiny net, seconds (plus compilation)
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from benchmarks import common
else:
    from . import common

VARIANTS = {
    "eager": {},
    "compile": {"compile": True},
    "autocast": {"autocast": "bfloat16"},
    "compile+autocast": {"compile": True, "autocast": "bfloat16"},
}


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra = np.argsort(np.argsort(a.ravel()))
    rb = np.argsort(np.argsort(b.ravel()))
    return float(np.corrcoef(ra, rb)[0, 1])


def write_pairs(folder: Path, n_images: int, captions: int, quick: bool) -> Path:
    """A CSV of ``n_images`` PNG files (camera-sized in full runs) with ``captions`` texts each."""
    texts = common.texts(n_images * captions, seed=4)
    rows = ["image,text"]
    for i, image in enumerate(common.images(n_images, quick, seed=11)):
        image.save(folder / f"{i}.png")
        rows += [f"{i}.png,{texts[i * captions + j]}" for j in range(captions)]
    path = folder / "pairs.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def main(argv: list[str] | None = None) -> list[dict]:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--n-images", type=int, default=None, help="images (default 16; 3 with --quick)")
    p.add_argument("--captions", type=int, default=5, help="captions per image (COCO's 5)")
    p.add_argument("--batch-size", type=int, default=None, help="rows per batch (the net's default)")
    p.add_argument("--reps", type=int, default=2, help="timed runs of each variant after its first")
    p.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=list(VARIANTS))
    p.add_argument("--backend", default="inductor", help="torch.compile backend (aot_eager: no C++, tests)")
    p.add_argument("--force-bf16", action="store_true", help="run bfloat16 autocast without native bfloat16")
    args = p.parse_args(argv)
    args.dtype = "float32"

    from blipviz.net import accelerate

    saved = accelerate.COMPILE_BACKEND, os.environ.get(accelerate.FORCE_BF16_ENV)
    accelerate.COMPILE_BACKEND = args.backend
    if args.force_bf16:
        os.environ[accelerate.FORCE_BF16_ENV] = "1"
    try:
        return _measure(args)
    finally:  # a caller in the same process (the tests) gets torch.compile's backend back
        accelerate.COMPILE_BACKEND = saved[0]
        if saved[1] is None:
            os.environ.pop(accelerate.FORCE_BF16_ENV, None)
        else:
            os.environ[accelerate.FORCE_BF16_ENV] = saved[1]


def _measure(args) -> list[dict]:
    import blipviz
    from blipviz.errors import InputError
    from blipviz.net import accelerate

    variants = ["eager", *(v for v in args.variants if v != "eager")]
    model = common.load(args)
    n_images = args.n_images or (3 if args.quick else 16)
    print(common.header(args, model), f"; bfloat16 instructions: {accelerate.cpu_bf16_support() or 'none'}")
    first: dict[str, float] = {}
    walls: dict[str, list[float]] = {v: [] for v in variants}
    scores: dict[str, object] = {}
    refused: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        csv = write_pairs(Path(tmp), n_images, args.captions, args.quick)
        runs = 0

        def run(variant: str) -> float:
            nonlocal runs
            runs += 1
            out = Path(tmp) / f"run-{runs}"
            t, done = common.timed(
                lambda: blipviz.score_pairs(
                    model, csv, out, batch_size=args.batch_size, progress=False, **VARIANTS[variant]
                ),
                args.device,
            )
            scores[variant] = done.to_pandas()
            return t

        for variant in variants:
            try:
                first[variant] = run(variant)
            except InputError as error:  # no native bfloat16, no C++ compiler: said in the table
                refused[variant] = str(error).split(";")[0].split(". ")[0]
        for _ in range(args.reps):
            for variant in first:
                walls[variant].append(run(variant))
    eager_wall = statistics.median(walls["eager"]) if walls["eager"] else first["eager"]
    ref = scores["eager"]
    rows = []
    for variant in variants:
        row: dict = {"variant": variant, "pairs": n_images * args.captions, "images": n_images}
        if variant in refused:
            row["refused"] = refused[variant]
            rows.append(row)
            continue
        wall = statistics.median(walls[variant]) if walls[variant] else first[variant]
        got = scores[variant]
        row.update(
            first_run_s=first[variant],
            wall_s=wall,
            compile_s=max(0.0, first[variant] - wall) if "compile" in variant else 0.0,
            speedup=eager_wall / wall,
            backend=args.backend if "compile" in variant else "",
        )
        for column in ("itm", "cosine"):
            a, b = got[column].to_numpy(float), ref[column].to_numpy(float)  # type: ignore[attr-defined]
            row[f"{column}_spearman"] = _spearman(a, b)
            row[f"{column}_max_abs_diff"] = float(np.abs(a - b).max())
        rows.append(row)
    columns = [
        "variant", "pairs", "first_run_s", "compile_s", "wall_s", "speedup",
        "itm_spearman", "itm_max_abs_diff", "cosine_spearman", "cosine_max_abs_diff", "refused",
    ]  # fmt: skip
    print(common.table(rows, columns), flush=True)
    common.append_results(args.results, "accelerate", args, rows)
    return rows


if __name__ == "__main__":
    main()
