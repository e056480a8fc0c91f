"""``python -m blipviz``: rank a few descriptions of a sample photograph with the default net.

Options: ``--model NAME_OR_PATH`` (hub id, local folder or ``tiny-random``), ``--image PATH``.
Offline, with the default net not cached, it prints how to proceed and exits with status 1.
"""

from __future__ import annotations

import argparse
import sys

DESCRIPTIONS = [
    "a photo of a Chinese temple",
    "a pagoda with trees in the foreground",
    "a red flower in close-up",
    "a cat sleeping on a sofa",
    "a busy city street at night",
    "a bowl of fruit on a table",
]


def _sample_image():
    from PIL import Image
    from sklearn.datasets import load_sample_image

    return Image.fromarray(load_sample_image("china.jpg"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m blipviz", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="hub id, local folder or 'tiny-random'")
    parser.add_argument("--image", default=None, help="image file (default: a sample photograph)")
    args = parser.parse_args(argv)

    import pandas as pd

    import blipviz

    try:
        model = blipviz.load_model(args.model)
    except blipviz.ModelLoadError as exc:
        print(f"blipviz: {exc}", file=sys.stderr)
        return 1
    image = args.image if args.image else _sample_image()
    try:
        table = model.rank(image, DESCRIPTIONS)
    except blipviz.BlipvizError as exc:
        print(f"blipviz: {exc}", file=sys.stderr)
        return 1
    with pd.option_context("display.width", 120, "display.max_colwidth", 60):
        print(f"{model.name}: descriptions of {args.image or 'sample image china.jpg'} ranked by ITM")
        print(table.round(4).to_string())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
