"""The feature cache: first run of a notebook section (cold cache) against its second run (warm),
and the cost of two-stage search against k with a warm cache.

Each section gets a fresh cache folder; its first run computes and stores the image features, and
the second and later runs (median of ``--reps``) read them back. Images are files, as in a notebook
over a folder. The search rows time ``model.search(texts, features, k=k)`` against
``model.itm_scores(features, texts)`` on the same cached image features (neither reuses remembered ITM
logits): what is left grows with k (k ITM text passes per query), not with the collection.

    python benchmarks/bench_cache.py            # full ViT-B/16 geometry, about 2 minutes on 2 cores
    python benchmarks/bench_cache.py --quick
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from benchmarks import common
else:
    from . import common


def main(argv: list[str] | None = None) -> list[dict]:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--n-images", type=int, default=None)
    p.add_argument("--n-texts", type=int, default=10)
    p.add_argument("--reps", type=int, default=3)
    args = p.parse_args(argv)
    from blipviz.store.cache import FeatureCache, feature_cache

    n_images = args.n_images or (4 if args.quick else 10)
    model = common.load(args)
    caps = common.texts(args.n_texts, seed=5)
    sections = {
        f"encode_images ({n_images} images)": lambda ims: model.encode_images(ims, progress=False),
        f"itm_scores ({n_images} x {args.n_texts})": lambda ims: model.itm_scores(ims, caps, progress=False),
        f"search ({args.n_texts} texts, {n_images} images, k=3)": lambda ims: model.search(caps, ims, k=3),
    }
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        paths = []
        for i, image in enumerate(common.images(n_images, args.quick, seed=11)):
            paths.append(Path(folder) / f"{i:03d}.png")
            image.save(paths[-1])
        model.encode_images(paths[:1])  # warm up the kernels, uncached
        for s_index, (name, section) in enumerate(sections.items()):
            with feature_cache(model, FeatureCache(Path(folder) / f"cache{s_index}")) as cache:
                first = common.timed(lambda: section(paths), args.device)[0]  # noqa: B023
                again = [common.timed(lambda: section(paths), args.device)[0] for _ in range(args.reps)]  # noqa: B023
                second = statistics.median(again)
                rows.append(
                    {
                        "section": name,
                        "first_run_s": first,
                        "second_run_s": second,
                        "speedup": first / second,
                        "cache_mb": sum(f.stat().st_size for f in cache.directory.rglob("*.*")) / 2**20,
                        "hits": cache.stats.hits,
                        "misses": cache.stats.misses,
                    }
                )
            print(common.table(rows[-1:]), flush=True)
        search_rows = []
        with feature_cache(model, FeatureCache(Path(folder) / "cache0")):
            # both from the cached image states, neither from remembered ITM logits: the cost of the
            # full ITM matrix against that of k reranks per query
            feats = model.encode_images(paths, progress=False)
            full = statistics.median(
                [
                    common.timed(lambda: model.itm_scores(feats, caps, progress=False), args.device)[0]
                    for _ in range(args.reps)
                ]
            )
            for k in [1, 3, n_images]:
                t = statistics.median(
                    [
                        common.timed(lambda: model.search(caps, feats, k=k), args.device)[0]  # noqa: B023
                        for _ in range(args.reps)
                    ]
                )
                search_rows.append(
                    {"k": k, "search_s": t, "full_itm_matrix_s": full, "fraction_of_full": t / full}
                )
    print()
    print(common.header(args, model))
    print(common.table(rows))
    print()
    print(common.table(search_rows))
    common.append_results(args.results, "cache", args, rows)
    common.append_results(args.results, "search_warm_cache", args, search_rows)
    return rows + search_rows


if __name__ == "__main__":
    main()
