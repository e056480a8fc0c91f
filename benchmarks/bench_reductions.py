"""2-D reductions of the feature-space map: UMAP, t-SNE and PCA at 300, 3,000 and 30,000 points,
and UMAP's first call in a fresh process (numba's compilation), in one run.

The points are 256-d unit vectors in 10 clusters (like a net's embeddings); each reduction runs
as ``blipviz.analysis.feature_space.reduce_to_2d`` runs it (fixed ``random_state``: UMAP single-
threaded; t-SNE exact up to 300 points, Barnes-Hut beyond). The first-call row is a new Python
process importing umap and mapping 300 points, against the same map again in that process.

    python benchmarks/bench_reductions.py            # about 10 minutes on 2 cores
    python benchmarks/bench_reductions.py --quick    # 300 and 1,000 points
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from benchmarks import common
else:
    from . import common

FIRST_CALL = """
import json, sys, time
import numpy as np
t = time.perf_counter(); import umap; imported = time.perf_counter() - t
from blipviz.analysis.feature_space import reduce_to_2d
x = np.random.default_rng(0).normal(size=(300, 256))
t = time.perf_counter(); reduce_to_2d(x, method="umap", random_state=0); first = time.perf_counter() - t
t = time.perf_counter(); reduce_to_2d(x + 1e-3, method="umap", random_state=0)
second = time.perf_counter() - t
print(json.dumps({"import_s": imported, "first_s": first, "second_s": second}))
"""


def points(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(10, 256))
    x = centres[rng.integers(0, 10, n)] + 0.6 * rng.normal(size=(n, 256))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def main(argv: list[str] | None = None) -> list[dict]:
    p = common.parser(__doc__.splitlines()[0])
    args = p.parse_args(argv)
    from blipviz.analysis.feature_space import reduce_to_2d

    done = subprocess.run([sys.executable, "-c", FIRST_CALL], capture_output=True, text=True, check=True)
    first = json.loads(done.stdout.strip().splitlines()[-1])
    rows = [
        {
            "method": "umap (fresh process)",
            "points": 300,
            "seconds": first["first_s"],
            "note": f"import {first['import_s']:.1f} s; the same map again {first['second_s']:.2f} s",
        }
    ]
    reduce_to_2d(points(50), method="umap", random_state=0)  # this process's compile, outside the rows
    sizes = (300, 1000) if args.quick else (300, 3000, 30000)
    for n in sizes:
        x = points(n, seed=n)
        for method in ("pca", "umap", "tsne"):
            start = time.perf_counter()
            coords = reduce_to_2d(x, method=method, random_state=0)
            elapsed = time.perf_counter() - start
            assert coords.shape == (n, 2) and np.isfinite(coords).all()
            rows.append({"method": method, "points": n, "seconds": elapsed, "note": ""})
            print(common.table(rows[-1:]), flush=True)
    print()
    print(common.table(rows))
    common.append_results(args.results, "reductions", args, rows)
    return rows


if __name__ == "__main__":
    main()
