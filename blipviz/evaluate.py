"""``python -m blipviz.evaluate``: BLIP's retrieval evaluation of a net on COCO (Karpathy 5k test)
or Flickr30k (1k test), printed as a Markdown table beside the BLIP paper's row for that net::

    python -m blipviz.evaluate --benchmark flickr30k --model Salesforce/blip-itm-base-flickr
    python -m blipviz.evaluate --benchmark coco-karpathy --model Salesforce/blip-itm-base-coco \\
        --images-root /data/coco            # the folder holding val2014/
    python -m blipviz.evaluate --benchmark flickr30k --model tiny-random --path FOLDER --limit 8

The paper's row (BLIP, Li et al. 2022, Table 5: fine-tuned image-text retrieval, the 129M-image
pre-training) is printed for the four nets of the family on the benchmark they were fine-tuned on;
for any other pairing (a COCO net on Flickr30k, ``tiny-random``, a local folder) the row says
"n/a": the paper has no number for it, and a neighbouring row would invite a false comparison.
Exit status 1 with a message (no traceback) when the net or the data cannot be had.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

__all__ = ["PAPER_TABLE_5", "main", "markdown_rows", "paper_row"]

#: BLIP paper, Table 5 (fine-tuned retrieval, 129M pre-training images): recalls in percent, keyed by
#: (architecture, benchmark): TR@1, TR@5, TR@10 (image to text), IR@1, IR@5, IR@10 (text to image).
PAPER_TABLE_5 = {
    ("ViT-B/16", "coco-karpathy"): (81.9, 95.4, 97.8, 64.3, 85.7, 91.5),
    ("ViT-L/16", "coco-karpathy"): (82.4, 95.4, 97.9, 65.1, 86.3, 91.8),
    ("ViT-B/16", "flickr30k"): (97.3, 99.9, 100.0, 87.3, 97.6, 98.9),
    ("ViT-L/16", "flickr30k"): (97.4, 99.8, 99.9, 87.6, 97.7, 99.0),
}
#: The fine-tuning dataset of the family table (``blipviz.net.registry``) for each benchmark.
_BENCHMARK_DATASET = {"coco-karpathy": "COCO", "flickr30k": "Flickr30k"}
#: BLIP's k_test per benchmark (configs/retrieval_coco.yaml: 256, retrieval_flickr.yaml: 128).
BLIP_K_TEST = {"coco-karpathy": 256, "flickr30k": 128}
_RECALL_KEYS = ("txt_r1", "txt_r5", "txt_r10", "img_r1", "img_r5", "img_r10")
_COLUMNS = ("row", "images", "captions", "k_test", "TR@1", "TR@5", "TR@10", "IR@1", "IR@5", "IR@10", "r_mean")


def paper_row(model_name: str, benchmark: str) -> tuple[str, tuple[float, ...]] | None:
    """The BLIP paper's recalls for a net of the family on the benchmark it was fine-tuned on.

    Returns
    -------
    (label, recalls) or None
        ``recalls``: TR@1, TR@5, TR@10, IR@1, IR@5, IR@10 in percent; ``None`` for any other net
        or pairing.
    """
    from .net.registry import checkpoint_by_hub_id

    checkpoint = checkpoint_by_hub_id(str(model_name))
    if checkpoint is None or checkpoint.dataset != _BENCHMARK_DATASET.get(benchmark):
        return None
    recalls = PAPER_TABLE_5.get((checkpoint.architecture, benchmark))
    if recalls is None:
        return None
    return f"BLIP paper, Table 5 ({checkpoint.architecture}, 129M)", recalls


def markdown_rows(evaluation, benchmark: str, title: str) -> str:
    """A Markdown table: this evaluation's row and the paper's row (or "n/a") below it."""
    m = evaluation.metrics
    ours = [
        f"{evaluation.model_name}, {title}",
        str(evaluation.n_images),
        str(evaluation.n_texts),
        str(evaluation.k_test),
        *(f"{m[k]:.1f}" for k in _RECALL_KEYS),
        f"{m['r_mean']:.1f}",
    ]
    paper = paper_row(evaluation.model_name, benchmark)
    if paper is None:
        theirs = ["BLIP paper: n/a (no published row for this net on this benchmark)", *["n/a"] * 10]
    else:
        label, recalls = paper
        full = "5000 / 25010 / 256" if benchmark == "coco-karpathy" else "1000 / 5000 / 128"
        theirs = [label, *full.split(" / "), *(f"{r:.1f}" for r in recalls)]
        theirs.append(f"{(sum(recalls[:3]) / 3 + sum(recalls[3:]) / 3) / 2:.1f}")
    lines = ["| " + " | ".join(_COLUMNS) + " |", "|" + "---|" * len(_COLUMNS)]
    lines += ["| " + " | ".join(row) + " |" for row in (ours, theirs)]
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    from .datasets import RETRIEVAL_BENCHMARKS

    p = argparse.ArgumentParser(prog="python -m blipviz.evaluate", description=__doc__.splitlines()[0])
    p.add_argument("--benchmark", required=True, choices=sorted(RETRIEVAL_BENCHMARKS))
    p.add_argument(
        "--model", default=None, help="hub id, local folder or 'tiny-random' (default: BLIP ViT-B COCO)"
    )
    p.add_argument("--split", default="test", choices=("test", "val"))
    p.add_argument(
        "--path", default=None, help="local copy of the data (save_to_disk folder or parquet files)"
    )
    p.add_argument("--images-root", default=None, help="COCO: the folder holding val2014/")
    p.add_argument("--limit", type=int, default=None, help="only the first N images and their captions")
    p.add_argument(
        "--k-test", type=int, default=None, help="candidates per query (default: BLIP's, 256 / 128)"
    )
    p.add_argument("--score", default="itm+itc", choices=("itm+itc", "itc", "itm"))
    p.add_argument("--batch-size", type=int, default=None, help="images per ViT pass")
    p.add_argument("--text-batch-size", type=int, default=128, help="texts per multimodal pass")
    p.add_argument("--cache", default=None, help="feature cache folder (image states and ITM logits)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, mps (default: the best available)")
    p.add_argument("--max-states-gb", type=float, default=2.0, help="raw ViT states held in memory (GB)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    import blipviz
    from blipviz.datasets import load_retrieval_benchmark

    try:
        model = blipviz.load_model(args.model, device=args.device, cache_dir=args.cache)
        bench = load_retrieval_benchmark(
            args.benchmark, args.split, args.path, images_root=args.images_root, limit=args.limit
        )
        k_test = BLIP_K_TEST[args.benchmark] if args.k_test is None else args.k_test
        start = time.perf_counter()
        evaluation = blipviz.evaluate_retrieval(
            model,
            bench.images,
            bench.captions,
            text_image=bench.text_image,
            k_test=k_test,
            score=args.score,
            batch_size=args.batch_size,
            text_batch_size=args.text_batch_size,
            progress=False if args.no_progress else None,
            labels=bench.image_names,
            benchmark=bench.title,
            max_states_gb=args.max_states_gb,
        )
        elapsed = time.perf_counter() - start
    except blipviz.BlipvizError as exc:
        print(f"blipviz.evaluate: {exc}", file=sys.stderr)
        return 1
    print(markdown_rows(evaluation, args.benchmark, bench.title))
    n, t = evaluation.n_images, evaluation.n_texts
    blip_pairs = n * min(k_test, t) + t * min(k_test, n)
    print(
        f"\n{model.name} on {model.device}, score {args.score}: {elapsed:.1f} s; "
        f"{evaluation.itm_pairs} ITM passes (BLIP's code: {blip_pairs})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
