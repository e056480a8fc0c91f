"""``python -m blipviz``: score descriptions against images with a BLIP image-text matching net.

One image: its descriptions ranked (ITM probability and cosine similarity, a rank by each). Several
images: one row per (image, text) pair with its scores. By default, six descriptions of a sample
photograph with the default net (``Salesforce/blip-itm-base-coco``, downloaded on first use)::

    python -m blipviz
    python -m blipviz --image holiday.jpg --text "a beach at sunset" --text "a snowy street"
    python -m blipviz --image a.jpg --image b.jpg --text "a dog" --output scores.csv
    python -m blipviz --model tiny-random                   # the offline test net

Offline, with the default net not cached, it says how to proceed and exits with status 1; a wrong
option exits with status 2.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from ._cli import CliError, add_net_options, check_output, cli_wording, fail, load_net, write_table
from .errors import BlipvizError

PROG = "python -m blipviz"

DESCRIPTIONS = [
    "a photo of a Chinese temple",
    "a pagoda with trees in the foreground",
    "a red flower in close-up",
    "a cat sleeping on a sofa",
    "a busy city street at night",
    "a bowl of fruit on a table",
]
SAMPLE_IMAGE = "sample image china.jpg"


def sample_image():
    """The sample photograph of ``python -m blipviz`` (scikit-learn's china.jpg), as a PIL image."""
    from PIL import Image
    from sklearn.datasets import load_sample_image

    return Image.fromarray(load_sample_image("china.jpg"))


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description=__doc__.replace("``", "").replace("::", ":"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--image",
        action="append",
        metavar="PATH",
        help="an image file; repeat for several (default: scikit-learn's sample photograph china.jpg)",
    )
    p.add_argument(
        "--text",
        action="append",
        metavar="TEXT",
        help="a description; repeat for several (default: six descriptions of the sample photograph)",
    )
    p.add_argument(
        "--score",
        choices=("itm", "cosine", "both"),
        default="both",
        help="itm: the ITM match probability; cosine: the cosine similarity of the image and text "
        "embeddings (no ITM pass); both (default). One image's table is sorted by ITM, or by cosine "
        "with --score cosine",
    )
    p.add_argument(
        "--output",
        metavar="FILE",
        help="also write the table to FILE: .csv (the table alone), .parquet (with the net and "
        "provenance in the file's metadata) or .json (the net, provenance and the rows)",
    )
    add_net_options(
        p,
        "hub id, local folder in save_pretrained layout, or tiny-random (the small offline net); "
        "default: Salesforce/blip-itm-base-coco",
    )
    return p


def _check_inputs(images: list[str] | None, texts: list[str] | None) -> None:
    from .net.images import load_image

    for path in images or []:
        if Path(path).expanduser().is_dir():
            raise CliError(f"--image {path}: is a folder, not an image file")
        try:
            load_image(Path(path).expanduser())
        except BlipvizError as exc:
            reason = str(exc).split(": ", 1)[-1]
            raise CliError(f"--image {path}: {reason}") from None
    for text in texts or []:
        if not text.strip():
            raise CliError(f"--text: a description is empty ({text!r}); give some words")


def _table(model, images, texts, labels, score: str):
    """(title, table) of one image's ranking or of every (image, text) pair."""
    import pandas as pd

    from .analysis import scores as sc

    if len(images) == 1 and score == "cosine":  # the unimodal encoders alone: no ITM pass
        matrix = sc.cosine_scores(model, images, texts, labels=labels)
        frame = pd.DataFrame({"text": matrix.texts, "cosine": matrix.values[0]})
        frame = frame.sort_values("cosine", ascending=False, kind="stable", ignore_index=True)
        frame["cosine_rank"] = range(1, len(frame) + 1)
        frame.index = pd.RangeIndex(1, len(frame) + 1, name="rank")
        title = f"{model.name}: descriptions of {labels[0]} ranked by cosine similarity"
        return title, frame, matrix.provenance
    if len(images) == 1:
        table = sc.rank(model, images[0], texts)
        made_by = table.attrs["provenance"]
        columns = {
            "itm": ["text", "itm", "itm_rank"],
            "cosine": ["text", "cosine", "cosine_rank"],
            "both": ["text", "itm", "cosine", "itm_rank", "cosine_rank"],
        }[score]
        by = "cosine similarity" if score == "cosine" else "ITM"
        title = f"{model.name}: descriptions of {labels[0]} ranked by {by}"
        return title, pd.DataFrame(table[columns]), made_by
    if score == "itm":
        matrices = [sc.itm_scores(model, images, texts, labels=labels)]
    elif score == "cosine":
        matrices = [sc.cosine_scores(model, images, texts, labels=labels)]
    else:
        matrices = list(sc.scores(model, images, texts, labels=labels))
    first = matrices[0].to_pandas()
    table = first[["image", "text"]].copy()
    for matrix in matrices:
        table[matrix.kind] = matrix.values.reshape(-1)
    title = f"{model.name}: {len(images)} images x {len(texts)} descriptions"
    return title, table, matrices[0].provenance


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    check_output(parser, args.output)
    try:
        _check_inputs(args.image, args.text)
        texts = args.text or list(DESCRIPTIONS)
        if args.image:
            images, labels = [str(Path(p).expanduser()) for p in args.image], list(args.image)
        else:
            images, labels = [sample_image()], [SAMPLE_IMAGE]
        model = load_net(args)
        try:
            title, table, made_by = _table(model, images, texts, labels, args.score)
        except BlipvizError as exc:
            raise CliError(cli_wording(str(exc))) from None
        if args.output:
            meta = {"model": model.name, "score": args.score, "provenance": made_by}
            write_table(table.reset_index() if table.index.name else table, args.output, meta)
    except CliError as exc:
        return fail(PROG, exc)
    import pandas as pd

    with pd.option_context("display.width", 120, "display.max_colwidth", 60):
        print(title)
        print(table.round(4).to_string())
    if args.output:
        print(f"written to {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
