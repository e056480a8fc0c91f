"""Scoring pairs: pair_scores against the per-pair recipe, score_pairs against pair_scores, and the
memory of score_pairs as the dataset grows.

All ratios are measured in one run, on the same pairs:

- speed: ``pair_scores(images, texts)`` (each image against its own captions) against the per-pair
  recipe of the Hugging Face model card (``bench_itm_matrix.per_pair_recipe``: for every pair,
  ``BlipImageProcessorPil`` + the tokenizer, then ``BlipForImageTextRetrieval`` with
  ``use_itm_head=True``, transformers' own attention), for every image with one caption and with
  ``--captions`` captions (five: COCO's shape). Same weights and token conventions (the card's:
  ``[CLS]`` first, raw text), so both give the same probabilities (``max_abs_diff``). blipviz is
  timed twice, before and after the recipe. ``pair_scores`` also computes the cosine of each pair
  (a text-only pass and the projections), which the recipe does not. ``flop_ratio`` is the recipe's
  matmul FLOPs over blipviz's ITM FLOPs (one ViT pass and one set of cross-attention keys and values
  per image): the speed-up attainable at equal speed per FLOP.
- collection: ``score_pairs`` on a CSV of image files and captions (into a fresh folder) against
  ``pair_scores`` on the same files and captions, at the same images per ViT pass (``batch_size`` of
  score_pairs = the net's images per pass x captions per image, so that an image's rows share a
  batch); tiny net by default (``--collection-net full`` for ViT-B/16). The two alternate
  ``--collection-reps`` times and the best time of each is kept (on a shared machine the best is the
  least disturbed); ``cpu_ratio`` is the same ratio of this process's CPU time.
- memory: the peak resident memory (``VmHWM``) of a fresh process running ``score_pairs`` over
  ``--memory-sizes`` pairs (five captions per image file) with the tiny net.

    python benchmarks/bench_pairs.py            # full ViT-B/16 geometry; see benchmarks/README.md
    python benchmarks/bench_pairs.py --quick    # tiny net, seconds
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from benchmarks import common
    from benchmarks.bench_itm_matrix import per_pair_recipe
else:
    from . import common
    from .bench_itm_matrix import per_pair_recipe

# The child's own peak: VmHWM of its address space (see bench_collection.py).
_MEMORY_CHILD = """
import json, sys, time
import blipviz
def peak_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
model = blipviz.load_model("tiny-random")
before = peak_mb()
start = time.perf_counter()
c = blipviz.score_pairs(model, sys.argv[1], sys.argv[2], batch_size=int(sys.argv[3]), progress=False)
print(json.dumps({"n": len(c), "s": time.perf_counter() - start, "peak_mb": peak_mb(),
                  "before_mb": before, "scored": int(c.keep_mask().sum())}))
"""


SPEED_COLUMNS = [
    "shape", "pairs", "blipviz_s", "per_pair_s", "blipviz_pairs_per_s", "per_pair_pairs_per_s", "speedup",
    "target", "flop_ratio", "matmul_gflops", "max_abs_diff",
]  # fmt: skip
COLLECTION_COLUMNS = [
    "net", "pairs", "captions_per_image", "batch_size", "pair_scores_s", "score_pairs_s", "ratio", "target",
    "cpu_ratio", "score_pairs_pairs_per_s", "max_abs_diff", "errors",
]  # fmt: skip


def card_net(model, args):
    """The same weights with the model card's token conventions (``[CLS]`` first, raw text)."""
    from blipviz import BlipITM

    return BlipITM(
        model.hf,
        name=model.name,
        preprocessing=model.preprocessing,
        device=args.device,
        dtype=common.dtype(args),
        first_token="cls",
        normalize_text=False,
        max_text_tokens=None,
    )


def pair_flops(card, n_images: int, captions: list[str]) -> tuple[float, float]:
    """Matmul FLOPs of the ITM work: (blipviz: a ViT pass and keys/values per image, a text pass per
    pair; the recipe: all three per pair). The cosine's text pass is left out."""
    lengths = card.tokenize(list(captions)).attention_mask.sum(1).tolist()
    config = card.config
    text = common.itm_text_flops(config, lengths)
    per_image = common.vision_flops(config) + common.cross_kv_flops(config)
    return n_images * per_image + text, len(captions) * per_image + text


def speed(args, model) -> list[dict]:
    from blipviz.net.fast_attention import exact_attention

    card = card_net(model, args)
    baseline = per_pair_recipe(model, args.device, common.dtype(args))
    warm = common.images(1, args.quick, seed=99)
    card.pair_scores(warm, ["warm up"])
    with exact_attention(model):
        baseline(warm[0], "warm up")
    rows = []
    for k in args.captions:
        ims = common.images(args.n_images, args.quick, seed=k)
        images = [image for image in ims for _ in range(k)]  # each image given again per caption
        caps = common.texts(len(images), seed=100 + k)
        rates, times = [common.matmul_rate(args.device, args.quick, dtype=common.dtype(args))], []
        for rep in range(args.reps):
            elapsed, scores = common.timed(lambda: card.pair_scores(images, caps), args.device)  # noqa: B023
            times.append(elapsed)
            if rep == 0:  # the per-pair recipe between the repetitions of blipviz
                pair_times, diffs = [], []
                with exact_attention(model):
                    for i, (image, caption) in enumerate(zip(images, caps, strict=True)):
                        t, prob = common.timed(lambda: baseline(image, caption), args.device)  # noqa: B023
                        pair_times.append(t)
                        diffs.append(abs(prob - scores.itm[i]))
            rates.append(common.matmul_rate(args.device, args.quick, dtype=common.dtype(args)))
        ours, theirs = statistics.median(times), sum(pair_times)
        ours_flops, recipe_flops = pair_flops(card, args.n_images, caps)
        rows.append(
            {
                "shape": f"{args.n_images} images x {k} caption{'s' * (k > 1)}",
                "pairs": len(images),
                "blipviz_s": ours,
                "blipviz_reps": args.reps,
                "per_pair_s": theirs,
                "blipviz_pairs_per_s": len(images) / ours,
                "per_pair_pairs_per_s": len(images) / theirs,
                "speedup": theirs / ours,
                "target": 1.5 if k == 1 else 4.0,
                "flop_ratio": recipe_flops / ours_flops,
                "gflop_blipviz": ours_flops / 1e9,
                "gflop_per_pair_recipe": recipe_flops / 1e9,
                "matmul_gflops": statistics.median(rates) / 1e9,
                "max_abs_diff": max(diffs),
            }
        )
        print(common.table(rows[-1:], SPEED_COLUMNS), flush=True)
    return rows


def _write_pairs(folder: Path, n_pairs: int, captions: int, quick: bool, seed: int) -> Path:
    """Image files (``n_pairs / captions`` of them) and ``pairs.csv``: each file with ``captions``
    captions, one row per pair, paths relative to the CSV."""
    import pandas as pd

    folder.mkdir(parents=True, exist_ok=True)
    n_images = -(-n_pairs // captions)
    names = []
    for start in range(0, n_images, 500):  # a few hundred images in memory at a time
        for i, image in enumerate(common.images(min(500, n_images - start), quick, seed=seed + start)):
            names.append(f"{start + i:06d}.jpg")
            image.save(folder / names[-1], quality=90)
    paths = [name for name in names for _ in range(captions)][:n_pairs]
    pd.DataFrame({"image": paths, "text": common.texts(n_pairs, seed=seed)}).to_csv(
        folder / "pairs.csv", index=False
    )
    return folder / "pairs.csv"


def collection(args, model, folder: Path) -> list[dict]:
    import pandas as pd

    import blipviz

    net = model
    if args.collection_net == "tiny" and not args.quick:
        net = blipviz.load_model("tiny-random", device=args.device)
    rows = []
    for k in args.collection_captions:
        csv = _write_pairs(folder / f"pairs-{k}", args.collection_pairs, k, args.quick, seed=11 * k)
        table = pd.read_csv(csv)
        paths = [csv.parent / name for name in table["image"]]
        texts = table["text"].tolist()
        per_pass = net.default_batch_size
        warm = _write_pairs(folder / f"warm-{k}", 2 * k, k, args.quick, seed=5)  # first-call costs
        net.pair_scores([warm.parent / name for name in pd.read_csv(warm)["image"]], common.texts(2 * k))
        blipviz.score_pairs(net, warm, folder / f"warm-out-{k}", progress=False)
        wall: dict[str, list[float]] = {"pair_scores": [], "score_pairs": []}
        cpu: dict[str, list[float]] = {"pair_scores": [], "score_pairs": []}
        for rep in range(args.collection_reps):  # interleaved; the best of each (a shared machine)
            runs = {
                "pair_scores": partial(net.pair_scores, paths, texts, progress=False),
                "score_pairs": partial(
                    blipviz.score_pairs,
                    net,
                    csv,
                    folder / f"out-{k}-{rep}",
                    batch_size=per_pass * k,
                    progress=False,
                ),
            }
            for name, run in runs.items():
                started = time.process_time()
                elapsed, out = common.timed(run, args.device)
                wall[name].append(elapsed)
                cpu[name].append(time.process_time() - started)
                if name == "pair_scores":
                    scores = out
                else:
                    frame, n_errors = out.to_pandas(), len(out.errors)
        t_pairs, t_folder = min(wall["pair_scores"]), min(wall["score_pairs"])
        rows.append(
            {
                "net": net.name,
                "pairs": len(texts),
                "captions_per_image": k,
                "batch_size": per_pass * k,
                "reps": args.collection_reps,
                "pair_scores_s": t_pairs,
                "score_pairs_s": t_folder,
                "ratio": t_folder / t_pairs,
                "target": 1.15,
                "cpu_ratio": min(cpu["score_pairs"]) / min(cpu["pair_scores"]),
                "pair_scores_s_all": wall["pair_scores"],
                "score_pairs_s_all": wall["score_pairs"],
                "score_pairs_pairs_per_s": len(texts) / t_folder,
                "max_abs_diff": float(np.abs(frame["itm"].to_numpy() - scores.itm).max()),
                "errors": n_errors,
            }
        )
        print(common.table(rows[-1:], COLLECTION_COLUMNS), flush=True)
    return rows


def memory(args, folder: Path) -> list[dict]:
    rows = []
    for n in args.memory_sizes:
        csv = _write_pairs(folder / f"mem{n}", n, 5, True, seed=7)
        out = subprocess.run(
            [sys.executable, "-c", _MEMORY_CHILD, str(csv), str(folder / f"memout{n}"), "20"],
            capture_output=True,
            text=True,
            check=True,
        )
        record = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append(
            {
                "net": "tiny-random",
                "pairs": record["n"],
                "images": -(-record["n"] // 5),
                "peak_rss_mb": record["peak_mb"],
                "net_loaded_rss_mb": record["before_mb"],
                "pairs_per_s": record["n"] / record["s"],
                "scored": record["scored"],
            }
        )
    for row in rows:
        row["peak_vs_smallest"] = row["peak_rss_mb"] / rows[0]["peak_rss_mb"]
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--n-images", type=int, default=None, help="speed: distinct images (default 4)")
    p.add_argument(
        "--captions", type=int, nargs="+", default=[1, 5], help="speed: captions per image (default 1 5)"
    )
    p.add_argument("--reps", type=int, default=2, help="speed: repetitions of blipviz (median)")
    p.add_argument("--collection-pairs", type=int, default=None, help="collection: pairs (default 1000)")
    p.add_argument("--collection-captions", type=int, nargs="+", default=[1, 5])
    p.add_argument(
        "--collection-reps", type=int, default=2, help="collection: interleaved repetitions (the best kept)"
    )
    p.add_argument(
        "--collection-net",
        choices=["tiny", "full"],
        default="tiny",
        help="collection: the tiny offline net (default) or the benchmarks' net (full ViT-B/16 geometry)",
    )
    p.add_argument("--memory-sizes", type=int, nargs="+", default=None, help="default 1000 10000")
    p.add_argument("--skip", nargs="*", default=[], choices=["speed", "collection", "memory"])
    args = p.parse_args(argv)
    args.n_images = args.n_images or (3 if args.quick else 4)
    args.collection_pairs = args.collection_pairs or (24 if args.quick else 1000)
    args.memory_sizes = args.memory_sizes or ([20, 60] if args.quick else [1000, 10000])
    model = common.load(args)
    print(common.header(args, model))
    everything: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        parts = [
            ("speed", "pairs_speed", lambda: speed(args, model), SPEED_COLUMNS),
            (
                "collection",
                "pairs_collection",
                lambda: collection(args, model, Path(tmp)),
                COLLECTION_COLUMNS,
            ),
            ("memory", "pairs_memory", lambda: memory(args, Path(tmp)), None),
        ]
        for key, name, run, columns in parts:
            if key in args.skip:
                continue
            rows = run()
            print(f"\n{name}\n" + common.table(rows, columns), flush=True)
            common.append_results(args.results, name, args, rows)
            everything += rows
    return everything


if __name__ == "__main__":
    main()
