"""``embed_collection``: embed a large image set into a collection folder, resumably, one batch at a time.

The job reads the source in order (:mod:`blipviz.collection.sources`), decodes each image once
(an unreadable one is recorded with its id and reason and skipped), passes each batch through the
net's input stream (:meth:`blipviz.net.BlipNet.iter_image_states`) and ``image_projection``, and
writes the embeddings, L2-normalised as :meth:`~blipviz.net.BlipNet.encode_images` gives them, in
shards of ``shard_size`` source positions (:mod:`blipviz.collection.shards`). Memory holds one batch
of images and states and the embeddings of one shard (256 floats per image), whatever the size of the
collection; the set of ids seen so far (to refuse duplicates) is the one thing that grows.

Resuming: a run killed at any point leaves whole shards only; the next run with the same folder
checks that the manifest names the same net and preprocessing, keeps the shards that the manifest
lists with their checksums, and continues at the first position after them. Before anything is
written, every kept row is checked against the source given now: the same id, text and image bytes
(:func:`blipviz.collection.sources.item_digest`), or :class:`CollectionFolderError` says which rows
differ. Batches start at the same positions in both runs (the manifest's ``batch_size`` unless
another is given), so the result is the same, bit for bit, as one run. A finished collection given
again is checked the same way before it is returned.

Acceleration: ``compile=True`` and ``autocast="bfloat16"`` (:mod:`blipviz.net.accelerate`) are
recorded in the manifest (``acceleration``, and in ``provenance``). A resumed run must give the same
options (its rows would otherwise mix two ways of computing; :class:`CollectionFolderError` names the
recorded ones); a finished collection given again is returned as it was made, whatever the options,
since nothing is computed.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CollectionFolderError, InputError, InputTypeError, check_choice, positive_int
from ..net.accelerate import Acceleration, check_acceleration
from ..net.provenance import provenance
from .jobs import EmbeddingJob, Job
from .netspec import as_net, check_same_net, net_description, preprocessing_description
from .shards import (
    ShardRows,
    checksum_file,
    folder_lock,
    inside,
    new_uid,
    read_manifest,
    read_shard,
    read_shard_meta,
    remove_temporaries,
    shard_files,
    shard_path,
    write_manifest,
    write_shard,
)
from .sources import Row, Source, as_source, item_digest
from .work import progress_bar

__all__ = ["DEFAULT_SHARD_SIZE", "ENGINES", "ShardWriter", "embed_collection", "run_job", "verify_source"]

#: Source positions per shard when none is given (about 1 MB of embeddings).
DEFAULT_SHARD_SIZE = 1024
ENGINES = ("local", "ray")
STATES_DIR = "states"


class ShardWriter:
    """Takes computed rows in position order and writes each shard when its last position is in.

    Parameters
    ----------
    folder : Path
    manifest : dict
        Updated (and rewritten atomically) after every shard.
    shard_size : int
    job : blipviz.collection.jobs.Job
        Turns the rows' values into the shard's own columns.
    start_shard : int
        Index of the first shard to write (the shards before it are complete).
    seen : set of str
        Ids already written (duplicates are skipped and reported).
    """

    def __init__(
        self,
        folder: Path,
        manifest: dict[str, Any],
        shard_size: int,
        job: Job,
        start_shard: int,
        seen: set[str],
    ) -> None:
        self.folder, self.manifest, self.shard_size, self.job = folder, manifest, shard_size, job
        self.shard = start_shard
        self.seen = seen
        self.n_errors = sum(s["errors"] for s in manifest["shards"])
        self._clear()

    def _clear(self) -> None:
        self.positions: list[int] = []
        self.ids: list[str] = []
        self.texts: list[str | None] = []
        self.locators: list[str | None] = []
        self.digests: list[str | None] = []
        self.errors: list[str | None] = []
        self.values: list[Any] = []

    def add(self, row: Row, value: Any, error: str | None) -> None:
        """One row: its value (an embedding of shape (dim,), a pair's scores), or ``None`` and why it
        was skipped."""
        while row.position >= (self.shard + 1) * self.shard_size:
            self.flush()
        if error is None and row.id in self.seen:
            error, value = "duplicate id (an earlier position has the same id)", None
        self.seen.add(row.id)
        self.positions.append(row.position)
        self.ids.append(row.id)
        self.texts.append(row.text)
        self.locators.append(row.locator)
        self.digests.append(row.digest)
        self.errors.append(error)
        self.values.append(value if error is None else None)
        if error is not None:
            self.n_errors += 1
        if row.position + 1 == (self.shard + 1) * self.shard_size:
            self.flush()  # the shard is whole: on disk before the next batch starts

    def flush(self, stop: int | None = None) -> None:
        """Write the current shard (positions up to ``stop``, default the shard's end) and move on."""
        start = self.shard * self.shard_size
        stop = (self.shard + 1) * self.shard_size if stop is None else stop
        rows = ShardRows(
            np.asarray(self.positions, dtype=np.int64),
            self.ids,
            self.texts,
            self.locators,
            self.digests,
            self.errors,
            self.job.arrays(self.values, self.errors),
        )
        checksum = write_shard(self.folder, self.shard, start, stop, rows, self.manifest["uid"])
        self.manifest["shards"].append(
            {
                "index": self.shard,
                "file": shard_path(self.folder, self.shard).relative_to(self.folder).as_posix(),
                "start": start,
                "stop": stop,
                "rows": len(rows),
                "errors": sum(e is not None for e in self.errors),
                "checksum": checksum,
            }
        )
        write_manifest(self.folder, self.manifest)
        self.shard += 1
        self._clear()

    def finish(self, end: int) -> None:
        """Write the last shard (positions up to ``end``, the source's length)."""
        if self.positions or self.shard * self.shard_size < end:
            self.flush(stop=end)


def _batches(rows: Iterable[Row], batch_size: int, shard_size: int) -> Iterable[list[Row]]:
    """Consecutive rows in batches that start at multiples of ``batch_size`` within each shard and
    never cross a shard boundary (so a resumed run forms the same batches)."""
    batch: list[Row] = []
    for row in rows:
        if batch and (len(batch) == batch_size or row.position % shard_size == 0):
            yield batch
            batch = []
        batch.append(row)
    if batch:
        yield batch


def _check_replaceable(folder: Path, manifest: dict[str, Any], index: int, path: Path) -> None:
    """Refuse to replace ``path``, the file at shard ``index``'s name, unless blipviz wrote it for
    this collection (listed in the manifest, or its footer carries the collection's uid)."""
    listed = any(entry["index"] == index for entry in manifest["shards"])
    if path.is_symlink() or not (listed or read_shard_meta(path).get("uid") == manifest["uid"]):
        raise CollectionFolderError(
            f"collection {str(folder)!r}: {path.relative_to(folder).as_posix()} was not written by this "
            "collection, and blipviz would have to replace it; move it out of the folder (nothing of "
            "yours was changed)"
        )


def _resume_point(folder: Path, manifest: dict[str, Any], count: int | None) -> tuple[int, set[str]]:
    """Keep the shards the manifest lists, in order from shard 0, while their files are intact
    (checksum); the first damaged or missing one and those after it are written again. Returns the
    index of the first shard to write and the ids already written.

    Raises
    ------
    CollectionFolderError
        A file at a shard's name from that index on that the manifest does not list and whose
        footer lacks the collection's uid (not blipviz's): it is never replaced.
    """
    kept: list[dict[str, Any]] = []
    seen: set[str] = set()
    for entry in manifest["shards"]:
        path = inside(folder, entry["file"])
        if not path.is_file() or path.is_symlink() or checksum_file(path) != entry["checksum"]:
            break
        kept.append(entry)
        seen.update(read_shard(path, ["id"]).column("id").to_pylist())
    k = len(kept)
    needed = None if count is None else -(-count // manifest["shard_size"])
    for index, path in sorted(shard_files(folder).items()):  # the ones this run will write, up front
        if index >= k and (needed is None or index < needed):
            _check_replaceable(folder, manifest, index, path)
    manifest["shards"] = kept
    return k, seen


def verify_source(folder: Path, manifest: dict[str, Any], source: Source, stop: int) -> None:
    """Check that the rows of positions 0 to ``stop`` already written were made from ``source``: the
    same id, text and image bytes (:func:`item_digest`) at every position.

    Raises
    ------
    CollectionFolderError
        Naming the rows (positions and ids) that differ and what differs.
    """
    differ: list[str] = []
    n_differ = 0
    rows = source.rows(0)
    end = 0
    for entry in manifest["shards"]:
        if entry["start"] >= stop:
            break
        table = read_shard(inside(folder, entry["file"]), ["position", "id", "text", "digest"]).to_pydict()
        for position, ident, text, digest in zip(
            table["position"], table["id"], table["text"], table["digest"], strict=True
        ):
            row = next(rows, None)
            if row is None:
                break
            end = row.position + 1
            what = []
            if row.id != ident:
                what.append(f"id {row.id!r} where {ident!r} was")
            if row.text != text:
                what.append("another text")
            if item_digest(row.item) != digest:
                what.append("other image bytes")
            if what:
                n_differ += 1
                if len(differ) < 5:
                    differ.append(f"position {position} ({ident!r}: {', '.join(what)})")
    if end < min(stop, manifest["shards"][-1]["stop"] if manifest["shards"] else 0):
        n_differ += 1
        differ.append(f"positions {end} on (the source given now ends there)")
    if n_differ:
        more = f" and {n_differ - len(differ)} more" if n_differ > len(differ) else ""
        how_many = "1 row differs" if n_differ == 1 else f"{n_differ} rows differ"
        raise CollectionFolderError(
            f"collection {str(folder)!r} was made from another source: {how_many} from the "
            f"source given now: {'; '.join(differ)}{more}. Give the same source (and columns) to resume "
            "or reopen it, or embed into another folder; nothing was changed"
        )


def _new_manifest(
    model, source: Source, shard_size: int, batch_size: int, keep_states: bool, job: Job
) -> dict[str, Any]:
    return {
        "uid": new_uid(),
        "job": job.name,
        "provenance": provenance(model),  # inside model.accelerated(...): compile and autocast too
        "acceleration": model.acceleration.describe(),
        "state": "running",
        "net": net_description(model),
        "preprocessing": preprocessing_description(model),
        "source": source.description,
        "shard_size": shard_size,
        "batch_size": batch_size,
        "keep_states": keep_states,
        "shards": [],
    }


def _check_folder(
    folder: Path, manifest: dict[str, Any], model, source: Source, keep_states: bool, job: Job
) -> None:
    where = f"{str(folder)!r} "
    if manifest["job"] != job.name:
        made = "embed_collection" if manifest["job"] == "embeddings" else "score_pairs"
        raise CollectionFolderError(
            f"{where}holds {manifest['job']} (made by {made}), not {job.name}: give another folder"
        )
    check_same_net(manifest["net"], model, "this net", where)
    mine = preprocessing_description(model)
    if manifest["preprocessing"] != mine:
        raise CollectionFolderError(
            f"collection {where}was made with another image preprocessing ({manifest['preprocessing']}), "
            f"not this net's ({mine}); embed into another folder"
        )
    recorded = manifest["source"]
    if recorded.get("kind") != source.kind or (
        recorded.get("count") is not None and source.count is not None and recorded["count"] != source.count
    ):
        raise CollectionFolderError(
            f"collection {where}was made from a {recorded.get('kind')} of {recorded.get('count')} items, "
            f"not this {source.kind} of {source.count}: give the same source to resume, or another folder"
        )
    mine = source.description
    for column in ("image_column", "id_column", "text_column"):
        if recorded.get(column) != mine.get(column):
            raise CollectionFolderError(
                f"collection {where}was made with {column}={recorded.get(column)!r}, not "
                f"{mine.get(column)!r}: give the same columns to resume, or another folder"
            )
    if bool(manifest.get("keep_states")) != keep_states:
        raise CollectionFolderError(
            f"collection {where}was started with keep_states={manifest.get('keep_states')}: resume it "
            "with the same setting"
        )


def _finalize(folder: Path, manifest: dict[str, Any], end: int, job: Job) -> None:
    """What the job adds to a finished folder (``embeddings.npy``), then mark it complete."""
    job.finalize(folder, manifest, read_shard)
    for index, path in shard_files(folder).items():  # a killed run's shards past the end: ours only
        if index >= len(manifest["shards"]) and read_shard_meta(path).get("uid") == manifest["uid"]:
            path.unlink(missing_ok=True)
    manifest.update(
        state="complete",
        count=sum(s["rows"] - s["errors"] for s in manifest["shards"]),
        positions=end,
        errors=sum(s["errors"] for s in manifest["shards"]),
    )
    manifest["source"]["count"] = end
    write_manifest(folder, manifest)


class _StatesStore:
    """Inside the block, the net's feature store is the collection's ``states/`` cache
    (``keep_states=True``) or none at all: a collection never fills a user's cache with raw states
    it was not asked to keep."""

    def __init__(self, model, folder: Path, keep: bool) -> None:
        self.model, self.folder, self.keep = model, folder, keep

    def __enter__(self):
        self.previous = self.model.feature_cache
        if self.keep:
            from ..store.cache import FeatureCache

            self.model.feature_cache = FeatureCache(self.folder / STATES_DIR)
        else:
            self.model.feature_cache = None
        return self

    def __exit__(self, *exc) -> None:
        self.model.feature_cache = self.previous


def embed_collection(
    model,
    source: Any,
    out: str | os.PathLike,
    *,
    image_column: str = "image",
    id_column: str | None = None,
    text_column: str | None = None,
    batch_size: int | None = None,
    engine: str = "local",
    progress: bool | None = None,
    keep_states: bool = False,
    shard_size: int | None = None,
    compile: bool = False,
    autocast: str | None = None,
    **engine_options: Any,
):
    """Embed every image of ``source`` into the collection folder ``out``, resumably.

    Parameters
    ----------
    model : BlipITM, blipviz.net.BlipNet, or the part ``load_part("ImageEncoder")``
    source : datasets.Dataset, datasets.IterableDataset, folder, or list of paths
        A dataset's images are read from ``image_column`` (an ``Image`` feature, paths or encoded
        bytes); a folder is read recursively (ids: relative paths); a list of paths keeps its order
        (ids: the paths).
    out : str or path
        The collection folder: created if missing; an unfinished collection of the same net,
        preprocessing and source is resumed; a finished one is opened.
    image_column, id_column, text_column : str
        Dataset columns: the image, a unique id (default: the row number), a text kept with each id.
    batch_size : int, optional
        Images per ViT pass; default the net's (4 on CPU, 16 on a GPU).
    engine : {"local", "ray"}
        ``"ray"``: the same job on Ray Data (:mod:`blipviz.collection.ray_engine`), writing the same
        shards; ``engine_options`` go there (``concurrency``, ``num_gpus``, ``num_cpus``,
        ``start_timeout``: seconds to wait for a local Ray to start, default 120).
    progress : bool, optional
        A progress bar in images/s; by default shown once the pace foresees more than 5 s
        (:class:`blipviz.net.net.Progress`).
    keep_states : bool, default False
        Keep the raw image states in ``out/states`` (a :class:`blipviz.store.FeatureCache`: 1.8 MB
        per ViT-B/16 image) so an ITM rerank skips the ViT.
    shard_size : int, optional
        Source positions per shard (default 1024); fixed by the folder once a run has started.
    compile : bool, default False
        Compile the ViT with ``torch.compile`` (once per net: seconds to a minute before the first
        batch; :mod:`blipviz.net.accelerate`). Embeddings agree with eager ones within float32
        rounding. Needs a C++ compiler on a CPU.
    autocast : {None, "bfloat16"}
        Run the ViT under bfloat16 autocast (embeddings still float32, within bfloat16's precision
        of the float32 ones); refused on a CPU without native bfloat16 (``BLIPVIZ_FORCE_BF16=1``
        forces it). Both options are recorded in the manifest; a resumed run must give the same.

    Returns
    -------
    Collection

    Raises
    ------
    CollectionFolderError
        ``out`` is not a collection, or one made by another net, preprocessing or source, or is
        being written by another run, or an unfinished one started with other ``compile`` or
        ``autocast`` options.
    InputError, InputTypeError
        An unknown engine or option, a bad source or column; ``compile`` or ``autocast`` that this
        net or machine cannot run (no C++ compiler, no native bfloat16).
    """
    from .collection import Collection

    folder = run_job(
        model, source, out, EmbeddingJob, "embed_collection", image_column=image_column,
        id_column=id_column, text_column=text_column, batch_size=batch_size, engine=engine,
        progress=progress, keep_states=keep_states, shard_size=shard_size, engine_options=engine_options,
        compile=compile, autocast=autocast,
    )  # fmt: skip
    return Collection.open(folder, model=model, source=source)


def run_job(
    model,
    source: Any,
    out: str | os.PathLike,
    job_class: type[Job],
    caller: str,
    *,
    image_column: str,
    id_column: str | None,
    text_column: str | None,
    batch_size: int | None,
    engine: str,
    progress: bool | None,
    keep_states: bool,
    shard_size: int | None,
    engine_options: dict[str, Any],
    compile: bool = False,
    autocast: str | None = None,
) -> Path:
    """The machinery :func:`embed_collection` and :func:`blipviz.score_pairs` share: options checked,
    the folder read and checked against the net and the source, then (unless it is complete)
    resumed under the lock, every kept row verified against the source, the rest computed by
    ``job_class`` on an engine (inside ``model.accelerated(compile, autocast)``), and the folder
    finished. Returns the folder."""
    model = as_net(model, caller)
    acceleration = check_acceleration(model, compile, autocast)
    check_choice("engine", engine, ENGINES)
    if engine == "local" and engine_options:
        raise InputError(
            f"options {sorted(engine_options)} are for engine='ray'; the local engine takes none"
        )
    if engine == "ray":
        from .ray_engine import RAY_OPTIONS

        unknown = sorted(set(engine_options) - set(RAY_OPTIONS))
        if unknown:  # before any folder is touched
            raise InputError(
                f"unknown engine='ray' option{'s' * (len(unknown) > 1)} {', '.join(map(repr, unknown))}; "
                f"it takes {', '.join(map(repr, RAY_OPTIONS))}"
            )
    if not isinstance(out, str | os.PathLike):
        raise InputTypeError(f"out must be a folder path (str or os.PathLike), got {type(out).__name__}")
    if shard_size is not None:
        shard_size = positive_int("shard_size", shard_size)
    if batch_size is not None:
        batch_size = model.resolve_batch_size(batch_size)
    job = job_class(int(model.config.image_text_hidden_size))
    doing = "embedding a collection" if job.name == "embeddings" else "scoring pairs"
    model.require_part("ImageEncoder", doing)
    if job.needs_text:
        model.require_part("MultimodalEncoder", doing)
        if text_column is None:
            raise InputError(f"{caller} needs text_column: the column of each image's own text")
    src = as_source(
        source, image_column=image_column, id_column=id_column, text_column=text_column, tables=job.needs_text
    )
    folder = Path(out).expanduser()
    manifest = read_manifest(folder)
    if manifest is not None:
        _check_folder(folder, manifest, model, src, bool(keep_states), job)
        if manifest.get("state") == "complete":
            verify_source(folder, manifest, src, manifest["positions"])
            return folder
        recorded = Acceleration.from_record(manifest.get("acceleration"))
        if recorded != acceleration:
            raise CollectionFolderError(
                f"collection {str(folder)!r} was started with {recorded}, not {acceleration}: resume it "
                "with the same options (its rows would otherwise be computed two ways), or write into "
                "another folder; nothing was changed"
            )
        if shard_size is not None and shard_size != manifest["shard_size"]:
            raise CollectionFolderError(
                f"collection {str(folder)!r} was started with shard_size={manifest['shard_size']}: resume "
                "it with the same (or leave shard_size out)"
            )
        if batch_size is None:
            batch_size = int(manifest["batch_size"])  # the same batches as the first run: bit-equal
    if batch_size is None:
        batch_size = model.resolve_batch_size(None)
    with folder_lock(folder), model.accelerated(compile, autocast):
        if manifest is None:
            size = DEFAULT_SHARD_SIZE if shard_size is None else shard_size
            manifest = _new_manifest(model, src, size, batch_size, bool(keep_states), job)
            write_manifest(folder, manifest)
        else:
            manifest = read_manifest(folder) or manifest  # as it is now that the lock is held
            remove_temporaries(folder, manifest["uid"])
        start_shard, seen = _resume_point(folder, manifest, src.count)
        if manifest["shards"]:
            verify_source(folder, manifest, src, manifest["shards"][-1]["stop"])
        size = manifest["shard_size"]
        start = manifest["shards"][-1]["stop"] if manifest["shards"] else 0
        writer = ShardWriter(folder, manifest, size, job, start_shard, seen)
        if engine == "ray":
            from .ray_engine import run_on_ray

            end = run_on_ray(model, src, start, writer, batch_size, progress, **engine_options)
        else:
            end = _run_local(model, src, start, writer, batch_size, progress, folder, bool(keep_states))
        writer.finish(end)
        _finalize(folder, manifest, end, job)
    if writer.n_errors:
        import logging

        logging.getLogger("blipviz").warning(
            "%s %s: %d items were skipped (see .errors)", caller, folder, writer.n_errors
        )
    n_truncated = getattr(job, "n_truncated", 0)
    if n_truncated:
        import warnings

        from ..net.text import TruncationWarning

        warnings.warn(
            f"{caller} {folder}: {n_truncated} texts were cut to the net's token limit (column 'truncated')",
            TruncationWarning,
            stacklevel=3,
        )
    return folder


def _run_local(
    model, src: Source, start: int, writer: ShardWriter, batch_size: int, progress, folder: Path, keep: bool
) -> int:
    """The local engine: batches in order through the net; returns the source's length."""
    job = writer.job
    what = "embedding collection" if job.name == "embeddings" else "scoring pairs"
    bar = progress_bar(progress, src.count, start, what)
    end = start
    try:
        with _StatesStore(model, folder, keep):
            for batch in _batches(src.rows(start), batch_size, writer.shard_size):
                values, errors = job.compute(model, batch)
                for row, value, error in zip(batch, values, errors, strict=True):
                    writer.add(row, value, error)
                end = batch[-1].position + 1
                if bar is not None:
                    bar.update(len(batch))
                    bar.set_postfix(skipped=writer.n_errors, refresh=False)
    finally:
        if bar is not None:
            bar.close()
    return end
