"""``score_pairs``: score each image of a dataset against its own text, resumably, into a folder of
Parquet shards, and filter the dataset by the scores (BLIP's CapFilt filter, at scale).

The folder is a collection folder whose job is ``"pairs"``: the same manifest, shards, binding to
the source row by row, validation and engines as :func:`blipviz.embed_collection`
(:func:`blipviz.collection.embed.run_job`); each shard row holds the pair's ``itm`` (probability),
``itm_logit``, ``cosine`` and ``truncated`` beside its ``position``, ``id`` and ``text``.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import CollectionFolderError, InputError, InputTypeError
from .jobs import PAIR_SCORES, PairJob
from .shards import open_finished, read_rows

__all__ = ["PairCollection", "score_pairs"]

_COLUMNS = ["position", "id", "text", *PAIR_SCORES, "error"]


def score_pairs(
    model,
    source: Any,
    out: str | os.PathLike,
    *,
    image_column: str = "image",
    text_column: str = "text",
    id_column: str | None = None,
    batch_size: int | None = None,
    engine: str = "local",
    progress: bool | None = True,
    shard_size: int | None = None,
    compile: bool = False,
    autocast: str | None = None,
    **engine_options: Any,
) -> PairCollection:
    """Score every (image, text) row of ``source`` into the folder ``out``, resumably.

    Parameters
    ----------
    model : BlipITM or blipviz.net.BlipNet
    source : datasets.Dataset, datasets.IterableDataset, CSV or Parquet file, or a folder with one
        Rows of an image (a dataset's ``Image`` feature, a path, encoded bytes; in a CSV or Parquet
        file a path, relative to the file's folder) and its own text.
    out : str or path
        The folder: created if missing; an unfinished one of the same net and source is resumed
        (every row already written is checked against ``source`` first); a finished one is opened.
    image_column, text_column, id_column : str
        The image, its text, and a unique id (default: the row number).
    batch_size : int, optional
        Rows per batch; rows of one image within a batch (equal bytes) share one ViT pass.
        Default the net's (4 on CPU, 16 on a GPU), or the folder's when resuming.
    engine : {"local", "ray"}
        ``"ray"``: the same job on Ray Data, writing the same shards (``engine_options``:
        ``concurrency``, ``num_cpus``, ``num_gpus``, ``start_timeout``).
    progress : bool, default True
    shard_size : int, optional
        Rows per shard (default 1024); fixed by the folder once a run has started.
    compile : bool, default False
        Compile the ViT with ``torch.compile`` (once per net; :mod:`blipviz.net.accelerate`); the
        scores agree with eager ones within float32 rounding. Needs a C++ compiler on a CPU.
    autocast : {None, "bfloat16"}
        Run the ViT, text and multimodal passes under bfloat16 autocast (scores still float64 from
        float32 outputs); refused on a CPU without native bfloat16 (``BLIPVIZ_FORCE_BF16=1`` forces
        it). Both are recorded in the manifest; a resumed run must give the same.

    Returns
    -------
    PairCollection

    Raises
    ------
    CollectionFolderError
        ``out`` is not a pairs folder, or one made by another net or from another source (naming
        the rows that differ), or is damaged, or is being written by another run, or an unfinished
        one started with other ``compile`` or ``autocast`` options.
    InputError, InputTypeError
        An unknown engine or option, a bad source or column; ``compile`` or ``autocast`` that this
        net or machine cannot run.
    """
    from .embed import run_job

    folder = run_job(
        model, source, out, PairJob, "score_pairs", image_column=image_column, id_column=id_column,
        text_column=text_column, batch_size=batch_size, engine=engine, progress=progress,
        keep_states=False, shard_size=shard_size, engine_options=engine_options, compile=compile,
        autocast=autocast,
    )  # fmt: skip
    return PairCollection.open(folder)


def _threshold(name: str, value: Any, low: float, high: float) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise InputTypeError(f"{name} must be a number, got {type(value).__name__}")
    if not (math.isfinite(float(value)) and low <= float(value) <= high):
        raise InputError(f"{name} must be between {low:g} and {high:g}, got {value!r}")
    return float(value)


class PairCollection:
    """A finished folder of scored pairs (build it with :func:`score_pairs`, open it with :meth:`open`).

    Attributes
    ----------
    folder : Path
    manifest : dict
    """

    def __init__(self, folder: Path, manifest: dict[str, Any]) -> None:
        self.folder = folder
        self.manifest = manifest
        self._frame = read_rows(folder, manifest, _COLUMNS)
        if not np.array_equal(self._frame["position"].to_numpy(), np.arange(len(self._frame))):
            raise CollectionFolderError(
                f"pairs folder {str(folder)!r}: its shards do not hold positions 0 to {len(self._frame) - 1} "
                "in order (a shard was replaced after it was written)"
            )

    @classmethod
    def open(cls, out: str | os.PathLike, *, verify: bool = False) -> PairCollection:
        """Open a finished pairs folder.

        Parameters
        ----------
        out : str or path
        verify : bool, default False
            Check every shard's checksum now.

        Raises
        ------
        CollectionFolderError
            Not a pairs folder, an unfinished one (run :func:`score_pairs` again to finish it), or a
            damaged one.
        """
        folder, manifest = open_finished(out, "pairs", "PairCollection.open", verify)
        return cls(folder, manifest)

    def __len__(self) -> int:
        """The number of rows of the source (scored or skipped)."""
        return len(self._frame)

    def __repr__(self) -> str:
        return (
            f"PairCollection({str(self.folder)!r}, {len(self):,} pairs, {int(self.manifest['errors'])} "
            f"skipped, net={self.manifest['net']['name']!r})"
        )

    def to_pandas(self) -> pd.DataFrame:
        """One row per source row, in source order: ``position``, ``id``, ``text``, ``itm``
        (probability), ``itm_logit``, ``cosine``, ``truncated`` and ``error`` (None, or why the row was
        skipped: its scores are NaN)."""
        return self._frame.copy()

    @property
    def errors(self) -> pd.DataFrame:
        """The skipped rows: ``id``, ``position`` and ``reason``."""
        bad = self._frame[self._frame["error"].notna()]
        return bad[["id", "position", "error"]].rename(columns={"error": "reason"}).reset_index(drop=True)

    def keep_mask(self, min_itm: float | None = None, min_cosine: float | None = None) -> np.ndarray:
        """Which source rows to keep: ndarray of shape (len(self),), bool, aligned with the source's
        rows; True where the row was scored and every given threshold is met (``>=``). So
        ``dataset.select(numpy.flatnonzero(mask))`` keeps exactly those pairs.

        Parameters
        ----------
        min_itm : float in [0, 1], optional
            The least ITM probability kept.
        min_cosine : float in [-1, 1], optional
            The least cosine kept.
        """
        lo_itm = _threshold("min_itm", min_itm, 0.0, 1.0)
        lo_cos = _threshold("min_cosine", min_cosine, -1.0, 1.0)
        mask = self._frame["error"].isna().to_numpy().copy()
        if lo_itm is not None:
            mask &= self._frame["itm"].to_numpy(dtype=float, na_value=np.nan) >= lo_itm
        if lo_cos is not None:
            mask &= self._frame["cosine"].to_numpy(dtype=float, na_value=np.nan) >= lo_cos
        return mask

    def filter(self, min_itm: float | None = None, min_cosine: float | None = None) -> list[str]:
        """The ids of the rows :meth:`keep_mask` keeps, in source order."""
        return self._frame["id"][self.keep_mask(min_itm, min_cosine)].tolist()
