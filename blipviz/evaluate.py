"""``python -m blipviz.evaluate``: BLIP's retrieval evaluation of a net on COCO (Karpathy 5k test)
or Flickr30k (1k test), printed as a Markdown table beside the BLIP paper's row for that net::

    python -m blipviz.evaluate --benchmark flickr30k --model Salesforce/blip-itm-base-flickr
    python -m blipviz.evaluate --benchmark coco-karpathy --model Salesforce/blip-itm-base-coco \\
        --images-root /data/coco            # the folder holding val2014/
    python -m blipviz.evaluate --benchmark flickr30k --model tiny-random --path FOLDER --limit 8 \\
        --output metrics.json

The paper's row (BLIP, Li et al. 2022, 129M pre-training images) is printed for the four nets of the
family, named by hub id or as a local copy (a folder whose config.json has the family's geometry and
whose name is the checkpoint's, such as blip-itm-base-coco): Table 5 (fine-tuned retrieval) on the
benchmark a net was fine-tuned on, and Table 6 (zero-shot Flickr30k) for the COCO nets on Flickr30k.
For any other net or pairing (a Flickr30k net on COCO, random weights, tiny-random, an unnamed
folder, the val split) the row says "n/a" and why: a neighbouring row would invite a false
comparison. ``--output FILE.json`` writes the metrics, the paper's row or why there is none, the
settings and the provenance (blipviz, torch and transformers versions, device, dtype, date).
Exit status 1 with a message naming the flag (no traceback) when the net or the data cannot be had;
2 for a wrong option.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ._cli import CliError, add_net_options, check_output, cli_wording, fail, load_net, positive

__all__ = [
    "PAPER_TABLE_5",
    "PAPER_TABLE_6",
    "PaperRow",
    "main",
    "markdown_rows",
    "paper_comparison",
    "paper_row",
]

#: BLIP paper, Table 5 (fine-tuned retrieval, 129M pre-training images): recalls in percent, keyed by
#: (architecture, benchmark): TR@1, TR@5, TR@10 (image to text), IR@1, IR@5, IR@10 (text to image).
PAPER_TABLE_5 = {
    ("ViT-B/16", "coco-karpathy"): (81.9, 95.4, 97.8, 64.3, 85.7, 91.5),
    ("ViT-L/16", "coco-karpathy"): (82.4, 95.4, 97.9, 65.1, 86.3, 91.8),
    ("ViT-B/16", "flickr30k"): (97.3, 99.9, 100.0, 87.3, 97.6, 98.9),
    ("ViT-L/16", "flickr30k"): (97.4, 99.8, 99.9, 87.6, 97.7, 99.0),
}
#: BLIP paper, Table 6 (zero-shot Flickr30k 1k test of the nets fine-tuned on COCO, 129M
#: pre-training images), keyed by architecture: TR@1, TR@5, TR@10, IR@1, IR@5, IR@10 in percent
#: (ViT-B/16: the row "BLIP 129M"; ViT-L/16: "BLIP ViT-L 129M").
PAPER_TABLE_6 = {
    "ViT-B/16": (96.0, 99.9, 100.0, 85.0, 96.8, 98.6),
    "ViT-L/16": (96.7, 100.0, 100.0, 86.7, 97.3, 98.7),
}
#: The fine-tuning dataset of the family table (``blipviz.net.registry``) for each benchmark.
_BENCHMARK_DATASET = {"coco-karpathy": "COCO", "flickr30k": "Flickr30k"}
#: BLIP's k_test per benchmark (configs/retrieval_coco.yaml: 256, retrieval_flickr.yaml: 128).
BLIP_K_TEST = {"coco-karpathy": 256, "flickr30k": 128}
_RECALL_KEYS = ("txt_r1", "txt_r5", "txt_r10", "img_r1", "img_r5", "img_r10")
_COLUMNS = ("row", "images", "captions", "k_test", "TR@1", "TR@5", "TR@10", "IR@1", "IR@5", "IR@10", "r_mean")


@dataclass(frozen=True)
class PaperRow:
    """The BLIP paper's row for a net on a benchmark, or why there is none.

    Attributes
    ----------
    label : str or None
        ``"BLIP paper, Table 5 (ViT-B/16, 129M)"``; ``None`` when the paper has no row.
    recalls : tuple of float or None
        TR@1, TR@5, TR@10, IR@1, IR@5, IR@10 in percent.
    reason : str
        Which net the row is for and why it applies (a hub id, a local copy read from its folder),
        or why there is none.
    """

    label: str | None
    recalls: tuple[float, ...] | None
    reason: str

    def to_dict(self) -> dict:
        """``label``, ``recalls`` by name (``TR@1`` ...) or ``None``, and ``reason``."""
        recalls = None
        if self.recalls is not None:
            recalls = dict(zip(_RECALL_NAMES, self.recalls, strict=True))
        return {"label": self.label, "recalls": recalls, "reason": self.reason}


_RECALL_NAMES = ("TR@1", "TR@5", "TR@10", "IR@1", "IR@5", "IR@10")


def paper_comparison(
    model_name: str, benchmark: str, *, pretrained: bool = True, split: str = "test"
) -> PaperRow:
    """The BLIP paper's row for a net (hub id, or local folder) on a benchmark, or why there is none.

    Parameters
    ----------
    model_name : str
        A hub id of the family, a local folder (a copy of one: see
        :func:`blipviz.net.registry.checkpoint_of_folder`) or any other name.
    benchmark : {"coco-karpathy", "flickr30k"}
    pretrained : bool, default True
        ``False``: the net has random weights, and the paper has no row for it.
    split : {"test", "val"}, default "test"
        The paper reports the test splits only.

    Returns
    -------
    PaperRow
        Table 5 (fine-tuned) for a net on the benchmark it was fine-tuned on; Table 6 (zero-shot)
        for a COCO net on Flickr30k; else no row, with the reason.
    """
    import os

    from .net.registry import checkpoint_by_hub_id, checkpoint_of_folder

    name = str(model_name)
    if name == "tiny-random":
        return PaperRow(None, None, "tiny-random is blipviz's small test net with random weights")
    if not pretrained:
        return PaperRow(None, None, f"{name} with random weights (--pretrained false), not the trained net")
    if split != "test":
        return PaperRow(None, None, f"the paper reports the test split, not {split!r}")
    checkpoint, source = checkpoint_by_hub_id(name), f"hub id {name}"
    if checkpoint is None and os.path.isdir(os.path.expanduser(name)):
        checkpoint, source = checkpoint_of_folder(name)
        if checkpoint is None:
            return PaperRow(None, None, source)
    if checkpoint is None:
        return PaperRow(None, None, f"{name} is not a net of the BLIP family (blipviz.list_models())")
    dataset = _BENCHMARK_DATASET.get(benchmark)
    architecture = checkpoint.architecture
    if checkpoint.dataset == dataset:
        recalls = PAPER_TABLE_5[(architecture, benchmark)]
        label = f"BLIP paper, Table 5 ({architecture}, 129M)"
        return PaperRow(label, recalls, f"{source}: fine-tuned on {dataset}, evaluated on it")
    if checkpoint.dataset == "COCO" and benchmark == "flickr30k":
        label = f"BLIP paper, Table 6 (zero-shot, {architecture} fine-tuned on COCO, 129M)"
        reason = f"{source}: fine-tuned on COCO, evaluated zero-shot on Flickr30k"
        return PaperRow(label, PAPER_TABLE_6[architecture], reason)
    return PaperRow(
        None,
        None,
        f"{source}: fine-tuned on {checkpoint.dataset}; the paper reports no {checkpoint.dataset} net "
        f"on {dataset}",
    )


def paper_row(model_name: str, benchmark: str) -> tuple[str, tuple[float, ...]] | None:
    """The BLIP paper's recalls for a trained net of the family (hub id or local copy) on a
    benchmark: Table 5 on the one it was fine-tuned on, Table 6 for a COCO net on Flickr30k.

    Returns
    -------
    (label, recalls) or None
        ``recalls``: TR@1, TR@5, TR@10, IR@1, IR@5, IR@10 in percent; ``None`` where the paper has
        no row (:func:`paper_comparison` says why).
    """
    row = paper_comparison(model_name, benchmark)
    # a row with a label has its recalls
    return None if row.label is None or row.recalls is None else (row.label, row.recalls)


def markdown_rows(evaluation, benchmark: str, title: str, paper: PaperRow | None = None) -> str:
    """A Markdown table: this evaluation's row and the paper's row (or "n/a" and why) below it.

    ``paper`` defaults to :func:`paper_comparison` of the evaluation's net on ``benchmark``.
    """
    m = evaluation.metrics
    ours = [
        f"{evaluation.model_name}, {title}",
        str(evaluation.n_images),
        str(evaluation.n_texts),
        str(evaluation.k_test),
        *(f"{m[k]:.1f}" for k in _RECALL_KEYS),
        f"{m['r_mean']:.1f}",
    ]
    if paper is None:
        paper = paper_comparison(evaluation.model_name, benchmark)
    if paper.label is None or paper.recalls is None:
        theirs = [f"BLIP paper: n/a ({paper.reason.replace('|', '/')})", *["n/a"] * 10]
    else:
        label, recalls = paper.label, paper.recalls
        full = "5000 / 25010 / 256" if benchmark == "coco-karpathy" else "1000 / 5000 / 128"
        theirs = [label, *full.split(" / "), *(f"{r:.1f}" for r in recalls)]
        theirs.append(f"{(sum(recalls[:3]) / 3 + sum(recalls[3:]) / 3) / 2:.1f}")
    lines = ["| " + " | ".join(_COLUMNS) + " |", "|" + "---|" * len(_COLUMNS)]
    lines += ["| " + " | ".join(row) + " |" for row in (ours, theirs)]
    return "\n".join(lines)


PROG = "python -m blipviz.evaluate"


def _parser() -> argparse.ArgumentParser:
    from .datasets import RETRIEVAL_BENCHMARKS

    p = argparse.ArgumentParser(
        prog=PROG,
        description=__doc__.replace("``", "").replace("::", ":"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--benchmark",
        required=True,
        choices=sorted(RETRIEVAL_BENCHMARKS),
        help="coco-karpathy: COCO 2014, Karpathy's split (test: 5,000 images, 25,010 captions; the "
        "images come from --images-root); flickr30k: Flickr30k, Karpathy's 1k test (1,000 images, "
        "5,000 captions)",
    )
    add_net_options(
        p,
        "hub id, local folder in save_pretrained layout, or tiny-random (the small offline net); "
        "default: Salesforce/blip-itm-base-coco",
    )
    p.add_argument(
        "--split",
        default="test",
        choices=("test", "val"),
        help="Karpathy's split: test (default; the paper's) or val",
    )
    p.add_argument(
        "--path",
        metavar="PATH",
        default=None,
        help="a local copy of the data instead of the Hugging Face Hub: a folder written by "
        "save_to_disk, or parquet files (a file or a folder) with the Hub dataset's columns",
    )
    p.add_argument(
        "--images-root",
        metavar="FOLDER",
        default=None,
        help="coco-karpathy: the folder holding val2014/ (COCO's 2014 images; the data names the "
        "files but holds no pixels)",
    )
    p.add_argument(
        "--limit",
        type=positive,
        metavar="N",
        default=None,
        help="only the first N images of the split and their captions (the paper's row is for the "
        "whole split)",
    )
    p.add_argument(
        "--k-test",
        type=positive,
        metavar="K",
        default=None,
        help="candidates re-scored by ITM per query (default: BLIP's, 256 for coco-karpathy, 128 "
        "for flickr30k; larger than the collection: every pair)",
    )
    p.add_argument(
        "--score",
        default="itm+itc",
        choices=("itm+itc", "itc", "itm"),
        help="itm+itc (default): BLIP's score, the ITM logit plus the similarity; itc or itm: "
        "either alone on the same candidates (ablations)",
    )
    p.add_argument(
        "--batch-size",
        type=positive,
        metavar="N",
        default=None,
        help="images per ViT pass (default: 4 on CPU, 16 on a GPU)",
    )
    p.add_argument(
        "--text-batch-size",
        type=positive,
        metavar="N",
        default=128,
        help="texts per multimodal pass (default 128)",
    )
    p.add_argument(
        "--cache",
        metavar="FOLDER",
        default=None,
        help="feature cache folder: image states and ITM logits are kept there, so that an "
        "interrupted run resumes and a second run skips the ViT",
    )
    p.add_argument(
        "--max-states-gb",
        type=_non_negative,
        metavar="GB",
        default=2.0,
        help="raw ViT states held in memory between the two stages (default 2.0); the images "
        "beyond come from --cache, or pass the ViT again",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument(
        "--output",
        metavar="FILE.json",
        default=None,
        help="also write the metrics, the paper's row (or why there is none), the settings and the "
        "provenance (versions, device, dtype, date) to this JSON file",
    )
    return p


def _non_negative(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {value!r}") from None
    if not number >= 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {value}")
    return number


def _check_paths(args: argparse.Namespace) -> None:
    from pathlib import Path

    if args.path is not None and not Path(args.path).expanduser().exists():
        raise CliError(f"--path {args.path}: no such file or folder")
    if args.images_root is not None and not Path(args.images_root).expanduser().is_dir():
        raise CliError(f"--images-root {args.images_root}: no such folder")
    if args.benchmark == "coco-karpathy" and args.images_root is None:
        raise CliError(
            "--images-root is needed for coco-karpathy: the folder holding val2014/ (COCO's 2014 "
            "images; the data names the files but holds no pixels)"
        )


def _data_wording(message: str) -> str:
    import re

    message = re.sub(r"load_retrieval_benchmark\('[^']*', path=\.\.\.\)", "--path", message)
    message = message.replace(", or an already loaded datasets.Dataset", "")
    message = re.sub(r"^(?:source|path) '([^']*)'", r"--path \1", message)
    return cli_wording(message.replace("pass images_root=,", "pass --images-root,"))


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    check_output(parser, args.output, (".json",))
    import blipviz
    from blipviz.datasets import load_retrieval_benchmark

    from .errors import CacheFolderError
    from .net.registry import checkpoint_for

    try:
        _check_paths(args)
        try:
            model = load_net(args, cache_dir=args.cache)
        except CliError:
            raise
        except CacheFolderError as exc:
            raise CliError(f"--cache {args.cache}: {exc}") from None
        try:
            bench = load_retrieval_benchmark(
                args.benchmark, args.split, args.path, images_root=args.images_root, limit=args.limit
            )
        except blipviz.BlipvizError as exc:
            raise CliError(_data_wording(str(exc))) from None
        k_test = BLIP_K_TEST[args.benchmark] if args.k_test is None else args.k_test
        start = time.perf_counter()
        try:
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
        except blipviz.BlipvizError as exc:
            raise CliError(_data_wording(str(exc))) from None
        elapsed = time.perf_counter() - start
        name = args.model if args.model is not None else checkpoint_for().hub_id
        paper = paper_comparison(name, args.benchmark, pretrained=args.pretrained, split=args.split)
        n, t = evaluation.n_images, evaluation.n_texts
        blip_pairs = n * min(k_test, t) + t * min(k_test, n)
        if args.output:
            record = {
                "benchmark": args.benchmark,
                "split": args.split,
                "title": bench.title,
                "images": n,
                "captions": t,
                "limit": args.limit,
                "k_test": k_test,
                "score": args.score,
                "model": {
                    "name": model.name,
                    "given": args.model,
                    "pretrained": bool(args.pretrained) and args.model != "tiny-random",
                    "seed": args.seed,
                },
                "metrics": evaluation.metrics,
                "paper": paper.to_dict(),
                "itm_pairs": evaluation.itm_pairs,
                "blip_itm_pairs": blip_pairs,
                "seconds": round(elapsed, 3),
                "provenance": evaluation.provenance,
            }
            text = json.dumps(record, indent=1, ensure_ascii=False) + "\n"
            try:
                Path(args.output).expanduser().write_text(text, encoding="utf-8")
            except OSError as exc:
                raise CliError(
                    f"--output {args.output}: could not be written ({exc.strerror or exc})"
                ) from None
    except CliError as exc:
        return fail(PROG, exc)
    print(markdown_rows(evaluation, args.benchmark, bench.title, paper))
    print(
        f"\n{model.name} on {model.device}, score {args.score}: {elapsed:.1f} s; "
        f"{evaluation.itm_pairs} ITM passes (BLIP's code: {blip_pairs})"
    )
    if paper.label is not None:
        print(f"paper's row: {paper.reason}")
    if args.output:
        print(f"written to {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
