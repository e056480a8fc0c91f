"""FeatureSpaceExplorer at 10,000 and 100,000 points: payload sent to the browser, time to build the
widget in Python, and the time of the Python side of a hover and of a selection (listing, ITM ranking
of the selected images against a query, re-ranking with a new query).

The map is given (``FeatureSpaceExplorer.from_coordinates``: random coordinates, half images, half
texts); images are fetched lazily with ``image_fn`` from ``--distinct`` camera-sized pictures (480 x 640),
as a collection would read files. A selection holds ``--select`` images and 10 texts. Rows:

- ``build``: ``from_coordinates`` + the jupyter-scatter widget (no net runs); ``payload`` bytes: JSON
  state, binary buffers (the points), jupyter-scatter's script;
- ``hover image`` (first time: fetch, 256 px thumbnail, PNG) and ``hover image, again`` (remembered);
- ``select, list only``: no query; the list with a 64 px thumbnail per image (first time: fetch);
- ``select, first query``: each selected image passes the ViT once (its states are kept), then one
  ITM pass per image: what the first ranking of a fresh selection costs;
- ``new query``: the same selection, another query: the ITM passes only (no ViT);
- ``reselect, seen query``: every (query, image) pair already scored: the list only.

``ratio`` is each row's time over ``new query``'s, measured in the same run. The browser side (time
to first render, a lasso in headless Chromium) is measured by
``tests/test_feature_space_explorer_browser.py``.

    python benchmarks/bench_feature_space_explorer.py            # full ViT-B/16 geometry, ~2 min on 2 cores
    python benchmarks/bench_feature_space_explorer.py --quick
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from benchmarks import common
else:
    from . import common


def _build(model, n: int, pictures: list, seed: int = 0):
    from blipviz.explore.feature_space_explorer import FeatureSpaceExplorer

    rng = np.random.default_rng(seed)
    kinds = ["image" if i % 2 == 0 else "text" for i in range(n)]
    names = [
        f"{i:06d}.jpg" if k == "image" else c
        for i, (k, c) in enumerate(zip(kinds, common.texts(n), strict=True))
    ]
    return FeatureSpaceExplorer.from_coordinates(
        model,
        rng.normal(size=(n, 2)),
        kinds,
        names,
        image_fn=lambda i: pictures[(i // 2) % len(pictures)],
    )


def _interactions(explorer, n_select: int, args) -> list[tuple[str, float, dict]]:
    """(step, seconds, extra columns) of hovering and selecting on one explorer."""
    image_points = [2 * i for i in range(n_select)]  # distinct pictures
    text_points = [2 * i + 1 for i in range(10)]
    selection = image_points + text_points
    out = [("hover image", common.timed(lambda: explorer.show_item(image_points[0]), "cpu")[0], {})]
    again = [common.timed(lambda: explorer.show_item(image_points[0]), "cpu")[0] for _ in range(args.reps)]
    out.append(("hover image, again", statistics.median(again), {}))
    out.append(("hover text", common.timed(lambda: explorer.show_item(text_points[0]), "cpu")[0], {}))
    out.append(("select, list only", common.timed(lambda: explorer.select(selection), "cpu")[0], {}))
    explorer.select([])

    def rank(query: str) -> None:
        explorer.query.value = query
        explorer.select(selection)
        assert explorer.error_ is None, explorer.error_

    first = common.timed(lambda: rank("a dog running on the beach"), args.device)[0]
    assert len(explorer.ranking_) == min(n_select, explorer.max_ranked)
    queries = [f"a photo of a {w} on a table" for w in ("cat", "bicycle", "car", "tree", "window")]
    times = {}
    for label in ("new", "seen"):
        laps = []
        for q in queries[: args.reps]:
            explorer.select([])
            laps.append(common.timed(lambda q=q: rank(q), args.device)[0])
        times[label] = statistics.median(laps)
    new, seen = times["new"], times["seen"]
    out += [
        ("select, first query", first, {"images": n_select, "ratio": first / new}),
        ("new query", new, {"images": n_select, "ratio": 1.0}),
        ("reselect, seen query", seen, {"images": n_select, "ratio": seen / new}),
    ]
    return out


def main(argv: list[str] | None = None) -> list[dict]:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--points", default=None, help="comma-separated sizes; default 10000,100000")
    p.add_argument(
        "--select", type=int, default=None, help="images in a selection; default 50 (4 with --quick)"
    )
    p.add_argument("--distinct", type=int, default=None, help="distinct pictures; default = --select")
    p.add_argument("--reps", type=int, default=3)
    args = p.parse_args(argv)
    from blipviz.explore.feature_space_explorer import payload_bytes

    sizes = [int(s) for s in (args.points or ("1000,10000" if args.quick else "10000,100000")).split(",")]
    n_select = args.select or (4 if args.quick else 50)
    pictures = common.images(args.distinct or n_select, args.quick, seed=21)
    model = common.load(args)
    model.encode_images(pictures[:1])  # warm up the kernels
    _build(model, 10, pictures)  # and the imports (jupyter-scatter: about 2 s)
    rows = []

    def row(what: str, n: int, seconds: float, **extra) -> None:
        rows.append({"points": n, "step": what, "s": seconds, **extra})
        print(common.table(rows[-1:]), flush=True)

    for n in sizes:
        builds = []
        for rep in range(args.reps):
            t, explorer = common.timed(lambda rep=rep, n=n: _build(model, n, pictures, seed=rep), "cpu")
            builds.append(t)
        payload = payload_bytes(explorer.scatter.widget)
        row("build", n, statistics.median(builds), **{f"payload_{k}": v for k, v in payload.items()})
        if n == sizes[0]:  # the steps below do not depend on the number of points
            steps = _interactions(explorer, n_select, args)
    for what, seconds, extra in steps:
        row(what, sizes[0], seconds, **extra)
    print()
    print(common.header(args, model))
    columns = ["points", "step", "s", "images", "ratio", "payload_json", "payload_buffers", "payload_script"]
    print(common.table(rows, columns))
    common.append_results(args.results, "feature_space_explorer", args, rows)
    return rows


if __name__ == "__main__":
    main()
