"""Explanation evaluation against its ViT floor, and collection reranks with and without stored states.

All ratios are measured in one run:

- evaluation: ``evaluate_explanations`` of one (image, text) pair (``--methods``, ``--steps``,
  ``--random-orders``; the issue's setting by default: the four map methods, 8 steps, 2 random
  orders) against its floor, the distinct perturbed images of the pair's curves (counted by a hook on
  the ViT during the evaluation) times one batched ViT pass per image (``model.vision_states`` of
  ``batch_size`` images divided by ``batch_size``, timed before the evaluations and after each one,
  median). ``vs_floor`` = elapsed / floor; ``vs_floor_cpu`` the same in this process's CPU time
  (steadier on a machine shared with other work). The floor leaves out the ITM pass of each
  perturbed image (the image's cross-attention keys and values and the text pass:
  ``itm_flops_share`` of a ViT pass, by the FLOP model of ``common.py``), the maps and the backward
  of relevancy, so an evaluation cannot reach 1.0; ``expected_vs_floor`` = 1 + itm_flops_share is
  where it would be with everything else free. ``--compare-with FILE`` also times another
  implementation of the module (a saved copy of ``blipviz/analysis/explanations.py``, e.g.
  ``git show REV:blipviz/analysis/explanations.py``) on the same pair in the same run, alternating
  with blipviz's ``--eval-reps`` times, with the largest difference of its curves.
- rerank: ``Collection.search(queries, k, rerank)`` over ``--collection-images`` camera-sized PNG
  files embedded twice, with ``keep_states=True`` (the rerank reads the stored ViT states: no ViT
  pass) and without (each candidate image read again and passed through the ViT once, batched),
  interleaved, median of ``--reps``; ``vit_images`` counted by the same hook.

    python benchmarks/bench_explanation_passes.py           # full ViT-B/16 geometry: minutes
    python benchmarks/bench_explanation_passes.py --quick   # tiny net, seconds
"""

from __future__ import annotations

import contextlib
import importlib.util
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from benchmarks import common
else:
    from . import common

EVALUATION_COLUMNS = [
    "implementation", "methods", "steps", "random_orders", "batch_size", "distinct_images", "vit_images",
    "vit_calls", "seconds", "vit_s_per_image", "floor_s", "vs_floor", "cpu_s", "vit_cpu_s_per_image",
    "vs_floor_cpu", "itm_flops_share", "expected_vs_floor", "max_abs_diff",
]  # fmt: skip
RERANK_COLUMNS = [
    "collection", "images", "queries", "rerank", "seconds", "cpu_s", "vit_images", "itm_pairs", "vs_stored",
    "vs_stored_cpu", "max_abs_diff",
]  # fmt: skip


def timed(fn, device: str):
    """(wall seconds, this process's CPU seconds, result) of ``fn()``: on a shared machine the CPU
    time of the process is the steadier measure (it does not count the time others held the cores)."""
    common.sync(device)
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    common.sync(device)
    return time.perf_counter() - wall, time.process_time() - cpu, out


@contextlib.contextmanager
def vit_counter(model):
    """Images and calls through the net's ViT while the block runs (a forward hook, removed after)."""
    counts = {"images": 0, "calls": 0}

    def hook(module, args, kwargs, output):
        pixels = kwargs.get("pixel_values", args[0] if args else None)
        counts["images"] += int(pixels.shape[0])
        counts["calls"] += 1

    handle = model.hf.vision_model.register_forward_hook(hook, with_kwargs=True)
    try:
        yield counts
    finally:
        handle.remove()


def vit_seconds_per_image(model, image, batch_size: int, reps: int, device: str) -> list[tuple[float, float]]:
    """(wall, CPU) seconds per image of one batched ViT pass (``batch_size`` copies of the image)."""
    import torch

    pixels = model.preprocessing.pixel_values([image]).repeat(batch_size, 1, 1, 1)
    out = []
    with torch.inference_mode():
        model.vision_states(pixels)  # warm-up
        for _ in range(reps):
            wall, cpu, _ = timed(lambda: model.vision_states(pixels), device)
            out.append((wall / batch_size, cpu / batch_size))
    return out


def load_module(path: Path):
    """Another implementation of ``blipviz.analysis.explanations``, loaded from a file beside it."""
    name = "blipviz.analysis._compared_explanations"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def evaluation(args, model) -> list[dict]:
    from blipviz.analysis import explanations

    image = common.images(1, args.quick, seed=21)[0]
    text = common.texts(1, seed=3)[0]
    methods = tuple(args.methods.split(","))
    batch = model.resolve_batch_size(args.batch_size)
    options = {
        "methods": methods,
        "steps": args.steps,
        "random_orders": args.random_orders,
        "batch_size": batch,
    }
    flops = common.vision_flops(model.config)
    length = int(model.tokenize([text]).attention_mask.sum())
    itm_share = (common.cross_kv_flops(model.config) + common.itm_text_flops(model.config, [length])) / flops
    implementations = {"blipviz": explanations}
    if args.compare_with:
        implementations[f"compared ({Path(args.compare_with).name})"] = load_module(Path(args.compare_with))
    explanations.evaluate_explanations(model, [image], [text], **{**options, "steps": 1, "random_orders": 1})
    per_image = vit_seconds_per_image(model, image, batch, args.reps, args.device)
    results = {}
    for _ in range(args.eval_reps):
        for name, module in implementations.items():
            with vit_counter(model) as counts:
                seconds, cpu, ev = timed(
                    lambda m=module: m.evaluate_explanations(model, [image], [text], **options), args.device
                )
            results.setdefault(name, []).append((seconds, dict(counts), ev, cpu))
            per_image += vit_seconds_per_image(model, image, batch, args.reps, args.device)
    vit = statistics.median(w for w, _ in per_image)
    vit_cpu = statistics.median(c for _, c in per_image)
    reference = results["blipviz"][0][2].curves.score.to_numpy()
    distinct = distinct_images(model, results["blipviz"][0][2], args.steps, args.random_orders)
    rows = []
    for name, runs in results.items():
        seconds = statistics.median(r[0] for r in runs)
        cpu = statistics.median(r[3] for r in runs)
        counts = runs[0][1]
        rows.append(
            {
                "implementation": name,
                "methods": ",".join(methods),
                "steps": args.steps,
                "random_orders": args.random_orders,
                "batch_size": batch,
                "distinct_images": distinct,
                "vit_images": counts["images"],
                "vit_calls": counts["calls"],
                "seconds": seconds,
                "vit_s_per_image": vit,
                "floor_s": distinct * vit,
                "vs_floor": seconds / (distinct * vit),
                "cpu_s": cpu,
                "vit_cpu_s_per_image": vit_cpu,
                "vs_floor_cpu": cpu / (distinct * vit_cpu),
                "itm_flops_share": itm_share,
                "expected_vs_floor": 1 + itm_share,
                "max_abs_diff": float(np.abs(runs[0][2].curves.score.to_numpy() - reference).max()),
            }
        )
    return rows


def distinct_images(model, ev, steps: int, random_orders: int, seed: int = 0) -> int:
    """Distinct perturbed images of one pair's curves, from the definition (its orders' masks)."""
    from blipviz.analysis.explanations import patch_order

    n = model.grid[0] * model.grid[1]
    rng = np.random.default_rng(seed)
    orders = [patch_order(e[0].match_map) for e in ev.explanations.values()]
    orders += [rng.permutation(n) for _ in range(random_orders)]
    counts = np.round(np.linspace(0, 1, steps + 1) * n).astype(int)
    masks = set()
    for order in orders:
        rank = np.argsort(order)
        for k in counts:
            masks.update([(rank >= k).tobytes(), (rank < k).tobytes()])
    return len(masks)


def rerank(args, model) -> list[dict]:
    from blipviz.collection import embed_collection

    n = args.collection_images
    queries = common.texts(args.queries, seed=11)
    k = min(args.rerank, n)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "photos"
        root.mkdir()
        for i, picture in enumerate(common.images(n, args.quick, seed=5)):
            picture.save(root / f"{i:03d}.png")
        folders = {
            "keep_states=True": embed_collection(
                model, root, Path(tmp) / "kept", progress=False, keep_states=True
            ),
            "keep_states=False": embed_collection(model, root, Path(tmp) / "plain", progress=False),
        }
        times: dict[str, list[float]] = {name: [] for name in folders}
        cpus: dict[str, list[float]] = {name: [] for name in folders}
        seen: dict[str, dict] = {}
        frames = {}
        for collection in folders.values():  # warm-up (and the one-time suggestion logged)
            collection.search(queries, k=k, rerank=k)
        for _ in range(args.reps):
            for name, collection in folders.items():
                with vit_counter(model) as counts:
                    seconds, cpu, frame = timed(
                        lambda c=collection: c.search(queries, k=k, rerank=k), args.device
                    )
                times[name].append(seconds)
                cpus[name].append(cpu)
                seen[name], frames[name] = dict(counts), frame
    stored = statistics.median(times["keep_states=True"])
    stored_cpu = statistics.median(cpus["keep_states=True"])
    reference = frames["keep_states=True"].itm.to_numpy()
    return [
        {
            "collection": name,
            "images": n,
            "queries": len(queries),
            "rerank": k,
            "seconds": statistics.median(times[name]),
            "cpu_s": statistics.median(cpus[name]),
            "vit_images": seen[name]["images"],
            "itm_pairs": len(queries) * k,
            "vs_stored": statistics.median(times[name]) / stored,
            "vs_stored_cpu": statistics.median(cpus[name]) / stored_cpu,
            "max_abs_diff": float(np.abs(frames[name].itm.to_numpy() - reference).max()),
        }
        for name in folders
    ]


def main(argv: list[str] | None = None) -> list[dict]:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--methods", default="attention,gradcam,relevancy,rollout")
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--random-orders", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=None, help="images per ViT pass (default: the net's)")
    p.add_argument("--reps", type=int, default=3, help="timed ViT passes for the floor; reranks")
    p.add_argument("--eval-reps", type=int, default=1, help="timed evaluations (each implementation)")
    p.add_argument("--compare-with", default=None, help="another explanations.py to time beside blipviz's")
    p.add_argument("--collection-images", type=int, default=12)
    p.add_argument("--queries", type=int, default=2)
    p.add_argument("--rerank", type=int, default=10)
    p.add_argument("--skip", nargs="*", default=[], choices=["evaluation", "rerank"])
    args = p.parse_args(argv)
    if args.quick:
        args.collection_images = min(args.collection_images, 6)
        args.rerank = min(args.rerank, 4)
    model = common.load(args)
    print(common.header(args, model))
    rows: list[dict] = []
    if "evaluation" not in args.skip:
        found = evaluation(args, model)
        print(common.table(found, EVALUATION_COLUMNS))
        common.append_results(args.results, "explanation_evaluation_floor", args, found)
        rows += found
    if "rerank" not in args.skip:
        found = rerank(args, model)
        print(common.table(found, RERANK_COLUMNS))
        common.append_results(args.results, "collection_rerank_states", args, found)
        rows += found
    return rows


if __name__ == "__main__":
    main()
