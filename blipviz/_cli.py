"""What the command lines (``python -m blipviz``, ``python -m blipviz.evaluate``) share: the net's
options, their checks, errors worded with the flags a user typed, and the table writers."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from .errors import BlipvizError, ModelLoadError

#: The help of ``--device``: what ``load_model(device=None)`` does.
DEVICE_HELP = (
    "where the net runs: cpu, cuda, cuda:1, mps or xpu:0. Default: cpu, as load_model's; a GPU "
    "is used only when named here"
)
OUTPUT_SUFFIXES = (".csv", ".parquet", ".json")


class CliError(Exception):
    """An error worded for the command line; ``status`` is the exit status (1: could not be done)."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


def true_or_false(value: str) -> bool:
    """``--pretrained``'s value: ``true`` or ``false`` (any case)."""
    lowered = value.strip().lower()
    if lowered not in ("true", "false"):
        raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")
    return lowered == "true"


def positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {number}")
    return number


def seed_value(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {value!r}") from None
    if not -(2**63) <= number < 2**64:
        raise argparse.ArgumentTypeError(f"must lie in [-2**63, 2**64), got {number}")
    return number


def add_net_options(parser: argparse.ArgumentParser, model_help: str) -> None:
    """``--model``, ``--pretrained``, ``--seed``, ``--device``."""
    parser.add_argument("--model", metavar="NAME_OR_PATH", default=None, help=model_help)
    parser.add_argument(
        "--pretrained",
        type=true_or_false,
        default=True,
        metavar="{true,false}",
        help="true (default): the trained weights of --model. false: the same architecture with "
        "blipviz's informative random weights drawn from --seed, built offline (nothing is "
        "downloaded; a local folder's config.json gives its geometry)",
    )
    parser.add_argument(
        "--seed",
        type=seed_value,
        default=0,
        metavar="N",
        help="seed of the random weights of --pretrained false and of tiny-random (default 0); "
        "trained weights do not use it",
    )
    parser.add_argument("--device", default=None, help=DEVICE_HELP)


_PYTHON_WORDING = (
    ("pass that folder to load_model(folder)", "pass that folder as --model FOLDER"),
    ("load_model('tiny-random') / load_model(pretrained=False)", "--model tiny-random / --pretrained false"),
    ("load_model expected a folder", "expected a folder"),
    ("pretrained=False", "--pretrained false"),
)


def cli_wording(message: str) -> str:
    """A library message with the Python calls it suggests written as the command's flags."""
    for python, flag in _PYTHON_WORDING:
        message = message.replace(python, flag)
    return message


def load_net(args: argparse.Namespace, **options: Any):
    """``blipviz.load_model`` with the net options; a failure is a :class:`CliError` naming the flag."""
    import blipviz

    try:
        return blipviz.load_model(
            args.model, pretrained=args.pretrained, seed=args.seed, device=args.device, **options
        )
    except BlipvizError as exc:
        message = str(exc)
        if message.startswith("device"):
            found = re.match(r"device '([^']*)'", message)
            rest = message[found.end() :].lstrip(": ") if found else message
            raise CliError(f"--device {args.device}: {rest}") from None
        if isinstance(exc, ModelLoadError):
            from .net.registry import checkpoint_for

            name = args.model if args.model is not None else f"{checkpoint_for().hub_id} (the default)"
            raise CliError(f"--model {name}: {cli_wording(message)}") from None
        raise CliError(cli_wording(message)) from None


def check_output(parser: argparse.ArgumentParser, output: str | None, suffixes=OUTPUT_SUFFIXES) -> None:
    """A usage error (status 2) for an ``--output`` of another suffix or in a missing folder."""
    if output is None:
        return
    path = Path(output).expanduser()
    if path.suffix.lower() not in suffixes:
        parser.error(
            f"--output {output}: unknown file type {path.suffix or '(no suffix)'!r}; "
            f"give a file ending in {', '.join(suffixes)}"
        )
    if path.is_dir():
        parser.error(f"--output {output}: is a folder; give a file name")
    if not path.parent.is_dir():
        parser.error(f"--output {output}: no such folder {str(path.parent)!r}")


def write_table(frame, output: str, meta: dict[str, Any]) -> None:
    """The table at ``output``: CSV (the table alone), Parquet (``meta`` in the file's metadata,
    read back as ``DataFrame.attrs``) or JSON (``meta`` and the rows as records)."""
    import pandas as pd

    path = Path(output).expanduser()
    suffix = path.suffix.lower()
    frame = pd.DataFrame(frame)
    try:
        if suffix == ".csv":
            frame.to_csv(path, index=False)
        elif suffix == ".parquet":
            frame = frame.copy()
            frame.attrs = json.loads(json.dumps(meta))
            frame.to_parquet(path, index=False)
        else:
            record = {**meta, "rows": frame.to_dict(orient="records")}
            text = json.dumps(record, indent=1, ensure_ascii=False, default=_plain)
            path.write_text(text + "\n", encoding="utf-8")
    except OSError as exc:
        raise CliError(f"--output {output}: could not be written ({exc.strerror or exc})") from None


def _plain(value: Any) -> Any:
    """numpy scalars as Python numbers (exact: floats keep every digit), anything else as text."""
    return value.item() if hasattr(value, "item") else str(value)


def fail(prog: str, exc: CliError) -> int:
    print(f"{prog}: {exc}", file=sys.stderr)
    return exc.status
