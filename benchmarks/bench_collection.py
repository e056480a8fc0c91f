"""Collections: embedding throughput against encode_images, memory as the collection grows, search
latency and recall (FAISS flat / IVF against numpy), and the Ray engine against the local one.

All ratios are measured in one run, on the same images:

- throughput: ``embed_collection`` (files -> shards -> embeddings.npy) against ``encode_images`` on
  the same files, both at the net's batch size (``--n-images``, full ViT-B/16 geometry);
- memory: the peak resident memory of a fresh process embedding ``--memory-sizes`` files with the
  tiny net (flat: one batch of images and one shard of embeddings at a time);
- search: ``search_index`` latency for ``--queries`` queries of k=10 over ``--n-vectors`` unit 256-d
  vectors (``--vectors random``, uniform, or ``clustered``, a synthetic stand-in for embeddings),
  FAISS flat and IVF against numpy brute force, and IVF's recall@10 against exact; a query is a
  stored vector moved by noise of norm ``--query-noise``;
- Ray: the same images through ``engine="ray"`` on a local Ray with 2 actors against the local engine
  (largest difference of the embeddings, wall-time overhead).

    python benchmarks/bench_collection.py            # full geometry; see benchmarks/README.md
    python benchmarks/bench_collection.py --quick
"""

from __future__ import annotations

import json
import subprocess
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

# The child's own peak: VmHWM of its address space. Not getrusage's ru_maxrss, which Linux keeps
# across execve, so a child started from this process (the full-size net loaded) would report this
# process's peak instead of its own.
_MEMORY_CHILD = """
import json, sys, time
import blipviz
from blipviz.collection import embed_collection
def peak_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
model = blipviz.load_model("tiny-random")
before = peak_mb()
start = time.perf_counter()
c = embed_collection(model, sys.argv[1], sys.argv[2], progress=False)
print(json.dumps({"n": len(c), "s": time.perf_counter() - start, "peak_mb": peak_mb(),
                  "before_mb": before}))
"""


def _write_files(folder: Path, n: int, quick: bool, seed: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for start in range(0, n, 500):  # a few hundred images in memory at a time
        for i, image in enumerate(common.images(min(500, n - start), quick, seed=seed + start)):
            paths.append(folder / f"{start + i:06d}.jpg")
            image.save(paths[-1], quality=90)
    return paths


def throughput(args, model, folder: Path) -> list[dict]:
    from blipviz.collection import embed_collection

    paths = _write_files(folder / "images", args.n_images, args.quick, seed=3)
    model.encode_images(paths[:4], progress=False)  # warm-up
    t_encode, feats = common.timed(
        lambda: model.encode_images(paths, keep_raw=False, progress=False), args.device
    )
    t_embed, c = common.timed(
        lambda: embed_collection(model, folder / "images", folder / "c", progress=False), args.device
    )
    diff = float(np.abs(np.asarray(c.embeddings) - feats.embeddings.numpy()).max())
    return [
        {
            "images": len(paths),
            "encode_images_s": t_encode,
            "embed_collection_s": t_embed,
            "ratio": t_embed / t_encode,
            "images_per_s": len(paths) / t_embed,
            "max_abs_diff": diff,
        }
    ]


def memory(args, folder: Path) -> list[dict]:
    rows = []
    for n in args.memory_sizes:
        files = folder / f"mem{n}"
        _write_files(files, n, True, seed=7)
        out = subprocess.run(
            [sys.executable, "-c", _MEMORY_CHILD, str(files), str(folder / f"memc{n}")],
            capture_output=True,
            text=True,
            check=True,
        )
        record = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append(
            {
                "images": record["n"],
                "peak_rss_mb": record["peak_mb"],
                "net_loaded_rss_mb": record["before_mb"],
                "images_per_s": record["n"] / record["s"],
            }
        )
    for row in rows:
        row["peak_vs_smallest"] = row["peak_rss_mb"] / rows[0]["peak_rss_mb"]
    return rows


def _vectors(n: int, kind: str, rng: np.random.Generator) -> np.ndarray:
    """``n`` unit 256-d vectors: ``"random"`` (uniform on the sphere, no structure: IVF's worst
    case) or ``"clustered"`` (a synthetic stand-in for image embeddings, which cluster by content:
    one of ``n // 500`` random centres plus isotropic noise, cosine about 0.7 to the centre)."""
    if kind == "random":
        x = rng.standard_normal((n, 256), dtype=np.float32)
    else:
        centres = rng.standard_normal((max(1, n // 500), 256), dtype=np.float32)
        centres /= np.linalg.norm(centres, axis=1, keepdims=True)
        x = np.empty((n, 256), dtype=np.float32)
        for start in range(0, n, 100_000):  # no (n, 256) float64 temporaries
            stop = min(n, start + 100_000)
            noise = rng.standard_normal((stop - start, 256), dtype=np.float32) / 16.0
            x[start:stop] = centres[rng.integers(0, len(centres), stop - start)] + noise
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def search(args) -> list[dict]:
    from blipviz.collection.index import build_index, search_index

    rng = np.random.default_rng(0)
    x = _vectors(args.n_vectors, args.vectors, rng)
    # a query: a stored vector moved by noise of norm about --query-noise (0.5: cosine about 0.9 to
    # it), so that each query has near neighbours, as a text has among the images it describes
    noise = rng.standard_normal((args.queries, 256), dtype=np.float32) * (args.query_noise / 16.0)
    q = x[rng.choice(args.n_vectors, args.queries, replace=False)] + noise
    q /= np.linalg.norm(q, axis=1, keepdims=True)

    def numpy_top10():
        sims = x @ q.T  # (n, m)
        top = np.argpartition(-sims, 10, axis=0)[:10].T
        order = np.argsort(-np.take_along_axis(sims.T, top, axis=1), axis=1)
        return np.take_along_axis(top, order, axis=1)

    t_numpy, exact_np = common.timed(numpy_top10, "cpu")
    t_build_flat, flat = common.timed(lambda: build_index(x, "flat"), "cpu")
    t_flat, (_, exact) = common.timed(lambda: search_index(flat, q, 10), "cpu")
    t_build_ivf, ivf = common.timed(lambda: build_index(x, "ivf", nlist=args.nlist), "cpu")
    rows = [
        {
            "vectors": args.vectors,
            "query_noise": args.query_noise,
            "method": "numpy brute force",
            "build_s": 0.0,
            "search_s": t_numpy,
            "vs_numpy": 1.0,
            "recall_at_10": 1.0,
        },
        {
            "vectors": args.vectors,
            "query_noise": args.query_noise,
            "method": "faiss flat",
            "build_s": t_build_flat,
            "search_s": t_flat,
            "vs_numpy": t_flat / t_numpy,
            "recall_at_10": float(
                np.mean([len(set(a) & set(b)) / 10 for a, b in zip(exact, exact_np, strict=True)])
            ),
        },
    ]
    for nprobe in args.nprobe:
        t_ivf, (_, approx) = common.timed(lambda: search_index(ivf, q, 10, nprobe=nprobe), "cpu")  # noqa: B023
        recall = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(approx, exact, strict=True)]))
        rows.append(
            {
                "vectors": args.vectors,
                "query_noise": args.query_noise,
                "method": f"faiss ivf nlist={args.nlist} nprobe={nprobe}",
                "build_s": t_build_ivf,
                "search_s": t_ivf,
                "vs_numpy": t_ivf / t_numpy,
                "recall_at_10": recall,
            }
        )
    return rows


def ray_rows(args, model, folder: Path) -> list[dict]:
    from blipviz.collection import embed_collection

    try:
        import ray

        if not ray.is_initialized():
            ray.init(num_cpus=2, include_dashboard=False, configure_logging=False, log_to_driver=False)
    except Exception as exc:
        print(f"Ray not measured: {type(exc).__name__}: {exc}")
        return [{"engine": "ray", "note": f"not measured: {type(exc).__name__}"}]
    images = folder / "images"
    if not images.is_dir():  # throughput skipped: the same files it would have written
        _write_files(images, args.n_images, args.quick, seed=3)
    t_local, local = common.timed(
        lambda: embed_collection(model, images, folder / "ray-local", progress=False), args.device
    )
    start = time.perf_counter()
    on_ray = embed_collection(model, images, folder / "ray", progress=False, engine="ray", concurrency=2)
    t_ray = time.perf_counter() - start
    diff = float(np.abs(np.asarray(on_ray.embeddings) - np.asarray(local.embeddings)).max())
    return [
        {
            "engine": "ray (2 actors x 0.5 CPU)",
            "images": len(local),
            "local_s": t_local,
            "ray_s": t_ray,
            "overhead": t_ray / t_local,
            "ray_images_per_s_per_actor": len(local) / t_ray / 2,
            "max_abs_diff": diff,
            "same_ids": on_ray.ids == local.ids,
        }
    ]


def main(argv: list[str] | None = None) -> list[dict]:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--n-images", type=int, default=None, help="throughput and Ray images (default 1000)")
    p.add_argument("--memory-sizes", type=int, nargs="+", default=None, help="default 1000 10000")
    p.add_argument("--n-vectors", type=int, default=None, help="search collection size (default 1,000,000)")
    p.add_argument("--queries", type=int, default=10)
    p.add_argument(
        "--vectors",
        choices=["random", "clustered"],
        default="random",
        help="search collection: uniform random unit vectors, or synthetic clusters (see _vectors)",
    )
    p.add_argument(
        "--query-noise",
        type=float,
        default=0.5,
        help="norm of the noise added to a stored vector to make a query (default 0.5)",
    )
    p.add_argument("--nlist", type=int, default=None, help="IVF cells (default 1024)")
    p.add_argument("--nprobe", type=int, nargs="+", default=[8, 32])
    p.add_argument("--skip", nargs="*", default=[], choices=["throughput", "memory", "search", "ray"])
    args = p.parse_args(argv)
    args.n_images = args.n_images or (16 if args.quick else 1000)
    args.memory_sizes = args.memory_sizes or ([20, 60] if args.quick else [1000, 10000])
    args.n_vectors = args.n_vectors or (5000 if args.quick else 1_000_000)
    args.nlist = args.nlist or (16 if args.quick else 1024)
    model = common.load(args)
    print(common.header(args, model))
    everything: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        parts = [
            ("throughput", "collection_throughput", lambda: throughput(args, model, folder)),
            ("memory", "collection_memory", lambda: memory(args, folder)),
            ("search", "collection_search", lambda: search(args)),
            ("ray", "collection_ray", lambda: ray_rows(args, model, folder)),
        ]
        for key, name, run in parts:
            if key in args.skip:
                continue
            rows = run()
            print(common.table(rows), flush=True)
            common.append_results(args.results, name, args, rows)
            everything += rows
    return everything


if __name__ == "__main__":
    main()
