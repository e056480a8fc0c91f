"""``engine="ray"``: the collection job on Ray Data, writing the same shards as the local engine.

The source becomes a Ray dataset read from the resume position on: a Hugging Face dataset as its
Arrow table (``ray.data.from_arrow``, its ``Image`` column left encoded), a streamed one through Ray's
own Hugging Face reader, a folder or list of paths through ``ray.data.from_items``. Not through
``ray.data.from_huggingface``, which asks the Hub for Parquet files first, offline too.
``map_batches`` runs a pool of actors, each of which builds the net once
from the driver's image weights (sent once through Ray's object store, checked by fingerprint) and
embeds its batches exactly as the local engine does (:func:`blipviz.collection.work.embed_rows`:
unreadable items recorded, not raised). Every row carries its source position; the driver asks Ray
to keep the source order (``preserve_order``, set before the dataset is made: a Ray dataset keeps
the settings of its creation) and puts any row that still comes early back in its place
(:func:`in_source_order`) before the one shard writer of the local engine writes it, so that the
shards, and a later resume, follow the source exactly.

Ray is the user's: a ``ray.init(address=...)`` made before is used as it is; when Ray is not
initialised, a local one is started (``ray.init()``) and left running for the next job. Ray gives
its processes 30 s to start and then raises a bare ``Exception``; on a busy machine blipviz tries
again until ``start_timeout`` seconds (default 120) are spent, then raises
:class:`blipviz.EngineError`, which says how to give it longer (:func:`start_ray`).

Resources: each actor asks for ``num_cpus`` CPUs (default: the cluster's CPUs less one left for Ray
Data's read tasks, shared by the actors, at most 1 each; on a 2-CPU machine with 2 actors, 0.5 each:
with 1 CPU each the read task would wait for a CPU forever) and ``num_gpus`` GPUs (default none; with
GPUs the net runs on ``cuda``). Each actor runs torch with ``max(1, round(num_cpus))`` threads. The
pool is Ray Data's ``ActorPoolStrategy(size=concurrency)`` (``map_batches(concurrency=)`` is
deprecated). An unreadable item's record names its source position, as the local engine's does.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from ..errors import EngineError, InputError, positive_int
from .sources import Row, Source

__all__ = [
    "DEFAULT_START_TIMEOUT",
    "POSITION",
    "RAY_OPTIONS",
    "Embedder",
    "actor_resources",
    "in_source_order",
    "net_recipe",
    "run_on_ray",
    "start_ray",
]

#: Seconds a local Ray may take to start when none is running (Ray waits 30 s per attempt).
DEFAULT_START_TIMEOUT = 120.0
#: The engine options of ``embed_collection(..., engine="ray")``.
RAY_OPTIONS = ("concurrency", "num_cpus", "num_gpus", "start_timeout")

#: The column that carries each row's source position through Ray.
POSITION = "__blipviz_position"
_COLUMNS = ("id", "text", "locator", "digest", "error")


def _ray():
    try:
        import ray
    except ImportError:
        raise ImportError("engine='ray' needs Ray: pip install 'blipviz[ray]'") from None
    return ray


def _timed_out(exc: BaseException) -> bool:
    """Whether Ray's start-up failed for time (its raylet or GCS too slow to come up)."""
    return isinstance(exc, TimeoutError) or "timed out" in str(exc).lower()


def start_ray(timeout_s: float = DEFAULT_START_TIMEOUT, **init_options: Any) -> None:
    """Start a local Ray unless one is initialised: ``ray.init(**init_options)`` (no dashboard, no
    logging set-up, no worker logs on the driver unless given), tried again while it times out and
    ``timeout_s`` seconds are left.

    Raises
    ------
    InputError
        ``timeout_s`` not a number above 0.
    EngineError
        Ray did not start: in time (the message says how to give it longer: ``start_timeout=``, or
        starting Ray first), or at all (Ray's own error is chained and quoted).
    """
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, int | float) or not timeout_s > 0:
        raise InputError(f"start_timeout must be a number of seconds above 0, got {timeout_s!r}")
    ray = _ray()
    if ray.is_initialized():
        return
    options = {"include_dashboard": False, "configure_logging": False, "log_to_driver": False}
    options.update(init_options)
    began = time.monotonic()
    attempts = 0
    while True:
        attempts += 1
        try:
            ray.init(**options)
            return
        except Exception as exc:  # Ray's start-up timeout is a bare Exception
            with contextlib.suppress(Exception):  # the processes this attempt started
                ray.shutdown()
            spent = time.monotonic() - began
            if not _timed_out(exc):
                raise EngineError(
                    f"Ray could not start on this machine ({type(exc).__name__}: {exc}). Start Ray "
                    "yourself first (ray.init() in Python, or `ray start --head` in a shell) to see its "
                    "own diagnostics (blipviz then uses it as it is), or embed with engine='local'"
                ) from exc
            if spent < timeout_s:
                continue
            raise EngineError(
                f"Ray did not start within {spent:.0f} s ({attempts} attempt{'s' * (attempts > 1)}; Ray "
                "gives its processes 30 s each time): this machine is busy. Give it longer with "
                f"embed_collection(..., engine='ray', start_timeout={max(2 * float(timeout_s), 300.0):g}), "
                "or start Ray yourself first (ray.init() in Python, or `ray start --head` in a shell and "
                "ray.init(address='auto')): a Ray already running is used as it is. Ray said: "
                f"{exc}"
            ) from exc


def actor_resources(
    concurrency: int | None, num_cpus: float | None, num_gpus: float | None, cluster: dict[str, float]
) -> dict[str, Any]:
    """The actors' pool size and resources, sized from what Ray reports (``ray.cluster_resources()``).

    Returns
    -------
    dict with ``concurrency`` (int), ``num_cpus`` (float), ``num_gpus`` (float), ``threads`` (int)
    """
    cpus = float(cluster.get("CPU", 1.0))
    gpus = float(cluster.get("GPU", 0.0))
    spare = min(1.0, cpus / 2)  # for the read tasks: an actor pool that takes every CPU starves them
    if num_gpus:
        if gpus <= 0:
            raise InputError(f"num_gpus={num_gpus}: this Ray cluster has no GPU (it reports {cluster})")
        default_pool = max(1, int(gpus // float(num_gpus)))
    else:
        default_pool = max(1, int(cpus - spare))
    concurrency = default_pool if concurrency is None else positive_int("concurrency", concurrency)
    if num_cpus is None:
        num_cpus = min(1.0, (cpus - spare) / concurrency)
        num_cpus = max(0.01, math.floor(num_cpus * 100) / 100)
    elif not num_cpus > 0:
        raise InputError(f"num_cpus must be above 0, got {num_cpus!r}")
    return {
        "concurrency": concurrency,
        "num_cpus": float(num_cpus),
        "num_gpus": float(num_gpus or 0.0),
        "threads": max(1, round(float(num_cpus))),
    }


def net_recipe(model, whole: bool = False) -> dict[str, Any]:
    """What an actor needs to build the net's image part (or, ``whole``, the whole net): config,
    weights, options, fingerprints."""
    from ..net.fast_attention import fast_attention_enabled
    from ..net.fingerprint import WEIGHT_GROUPS

    if model.quantization:
        raise InputError(
            "engine='ray' sends the net's float weights to its workers; this net is quantised "
            f"({model.quantization}): embed with engine='local', or use the float net"
        )
    groups = WEIGHT_GROUPS["image"] + (WEIGHT_GROUPS["text"] if whole else ())
    prefixes = tuple(g + "." for g in groups)
    state = {k: v.detach().cpu() for k, v in model.hf.state_dict().items() if k.startswith(prefixes)}
    p = model.preprocessing
    return {
        "config": model.hf.config.to_dict(),
        "state": state,
        "name": model.name,
        "preprocessing": {
            "image_size": p.image_size,
            "mean": tuple(p.mean),
            "std": tuple(p.std),
            "exif_transpose": p.exif_transpose,
        },
        "dtype": str(model.dtype).replace("torch.", ""),
        "fast_attention": fast_attention_enabled(model.hf),
        "acceleration": model.acceleration.describe(),  # compile, autocast: as the driver runs them
        "fingerprint": model.fingerprint("image"),
        "text_fingerprint": model.fingerprint("text") if whole else None,
        "text_options": {
            "first_token": model.first_token,
            "normalize_text": bool(model.normalize_text),
            "max_text_tokens": model.max_text_tokens,
        },
    }


def build_net(recipe: dict[str, Any], device: str):
    """The image part of the net from a :func:`net_recipe`, its fingerprint checked."""
    import torch
    from transformers import BlipConfig, BlipForImageTextRetrieval

    from ..net.fast_attention import enable_fast_attention
    from ..net.images import ImagePreprocessing
    from ..net.net import BlipNet

    hf = BlipForImageTextRetrieval(BlipConfig.from_dict(recipe["config"]))
    hf.load_state_dict(recipe["state"], strict=False)
    net = BlipNet(
        hf,
        name=recipe["name"],
        preprocessing=ImagePreprocessing(**recipe["preprocessing"]),
        device=device,
        dtype=getattr(torch, recipe["dtype"]),
        **recipe.get("text_options", {}),
    )
    if recipe["fast_attention"]:
        enable_fast_attention(net.hf)
    if net.fingerprint("image") != recipe["fingerprint"]:
        raise EngineError("the net rebuilt on a Ray worker has other image weights than the driver's")
    if recipe.get("text_fingerprint") is not None:
        if net.fingerprint("text") != recipe["text_fingerprint"]:
            raise EngineError("the net rebuilt on a Ray worker has other text weights than the driver's")
        return net
    return net.keep_only_part("ImageEncoder")


class Embedder:
    """A Ray Data actor: the net built once, then batch after batch embedded, each row at its source
    position (the ``POSITION`` column), as the local engine embeds it."""

    def __init__(
        self, recipe, columns: dict[str, Any], threads: int, use_gpu: bool, job: str = "embeddings"
    ) -> None:
        import ray
        import torch

        from .jobs import JOBS

        torch.set_num_threads(threads)
        recipe = ray.get(recipe) if isinstance(recipe, ray.ObjectRef) else recipe
        self.net = build_net(recipe, "cuda" if use_gpu else "cpu")
        self.dim = int(self.net.config.image_text_hidden_size)
        self.job = JOBS[job](self.dim)
        self.source = Source("dataset", None, count=None, **columns) if columns else None
        self.acceleration = recipe.get("acceleration") or {}

    def __call__(self, batch) -> dict[str, np.ndarray]:
        records = batch.to_pylist()
        positions = np.array([r[POSITION] for r in records], dtype=np.int64)
        # each row at its source position: an unreadable item's record names it, as on the local engine
        if self.source is not None:
            rows = [self.source.dataset_row(int(p), r) for p, r in zip(positions, records, strict=True)]
        else:
            rows = [
                Row(int(p), r["id"], None, r["item"], r["locator"])
                for p, r in zip(positions, records, strict=True)
            ]
        from ..net.accelerate import accelerated

        # the driver checked the options on its machine (bfloat16 forced there or native)
        with accelerated(self.net, force_bf16=True, **self.acceleration):
            values, errors = self.job.compute(self.net, rows)
        return {
            "position": positions,
            "id": np.array([r.id for r in rows], dtype=object),
            "text": np.array([r.text for r in rows], dtype=object),
            "locator": np.array([r.locator for r in rows], dtype=object),
            "digest": np.array([r.digest for r in rows], dtype=object),
            "error": np.array(errors, dtype=object),
            **self.job.transport(values, errors),
        }


def _str_or_none(value: Any) -> str | None:
    """A string column's value as Ray Data returns it: a column of only None comes back as
    float NaN (or null), not as None."""
    if value is None or (isinstance(value, float | np.floating) and np.isnan(value)):
        return None
    return str(value)


def in_source_order(rows: Iterable[tuple[int, Any]], start: int) -> Iterator[Any]:
    """The values of ``(position, value)`` pairs in position order from ``start``, whatever order
    they arrive in: an early one waits (only as long as the rows before it are missing).

    Raises
    ------
    EngineError
        A position comes twice, or is missing at the end: the shards would lose or repeat a row.
    """
    waiting: dict[int, Any] = {}
    expected = start
    for position, value in rows:
        if position < expected or position in waiting:
            raise EngineError(f"Ray returned the row at source position {position} twice")
        waiting[position] = value
        while expected in waiting:
            yield waiting.pop(expected)
            expected += 1
    if waiting:
        raise EngineError(
            f"Ray returned no row for source position {expected} (rows up to {max(waiting)} came)"
        )


def _ray_dataset(ray, src: Source, start: int):
    if src.kind in ("folder", "paths"):
        items = []
        for i in range(start, src.count or 0):
            row = src.row(i)
            items.append({POSITION: i, "id": row.id, "item": row.item, "locator": row.locator})
        return ray.data.from_items(items) if items else None, {}
    columns = {"image_column": src.image_column, "id_column": src.id_column, "text_column": src.text_column}
    # Not ray.data.from_huggingface: it first asks the Hugging Face Hub for the dataset's Parquet files,
    # a network call even for a local dataset (and, for a streamed one, an error when offline).
    data = src.data
    if src.kind in (
        "dataset",
        "table",
    ):  # its Arrow table, the image column still encoded (what Ray's reader does)
        if start >= len(data):
            return None, {}
        data = data.select(range(start, len(data))) if start else data
        data = data.add_column(POSITION, list(range(start, start + len(data))))
        return ray.data.from_arrow(data.with_format("arrow")[:]), columns
    data = data.skip(start) if start else data
    data = data.map(lambda _, i: {POSITION: start + i}, with_indices=True)
    from ray.data._internal.datasource.huggingface_datasource import HuggingFaceDatasource

    return ray.data.read_datasource(HuggingFaceDatasource(dataset=data)), columns


def run_on_ray(
    model,
    src: Source,
    start: int,
    writer,
    batch_size: int,
    progress: bool | None,
    *,
    concurrency: int | None = None,
    num_cpus: float | None = None,
    num_gpus: float | None = None,
    start_timeout: float = DEFAULT_START_TIMEOUT,
    **unknown: Any,
) -> int:
    """Embed ``src`` from position ``start`` on with Ray Data, feeding ``writer`` in source order;
    returns the source's length.

    Raises
    ------
    InputError
        An option that is not one of :data:`RAY_OPTIONS`, or out of its range.
    EngineError
        Ray did not start (:func:`start_ray`), or lost or repeated a row.
    """
    if unknown:
        raise InputError(
            f"unknown engine='ray' option{'s' * (len(unknown) > 1)} {', '.join(map(repr, sorted(unknown)))}; "
            f"it takes {', '.join(map(repr, RAY_OPTIONS))}"
        )
    ray = _ray()
    start_ray(start_timeout)
    res = actor_resources(concurrency, num_cpus, num_gpus, ray.cluster_resources())
    ctx = ray.data.DataContext.get_current()
    previous = ctx.execution_options.preserve_order
    ctx.execution_options.preserve_order = True  # before the dataset is made: it keeps a copy
    try:
        dataset, columns = _ray_dataset(ray, src, start)
        if dataset is None:
            return start
        return _embed_on_ray(ray, model, src, dataset, columns, start, writer, batch_size, progress, res)
    finally:
        ctx.execution_options.preserve_order = previous


def _embed_on_ray(ray, model, src, dataset, columns, start, writer, batch_size, progress, res) -> int:
    from .work import progress_bar

    job = writer.job
    recipe = ray.put(net_recipe(model, whole=job.needs_text))
    mapped = dataset.map_batches(
        Embedder,
        fn_constructor_kwargs={
            "recipe": recipe,
            "columns": columns,
            "threads": res["threads"],
            "use_gpu": res["num_gpus"] > 0,
            "job": job.name,
        },
        batch_size=batch_size,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=res["concurrency"]),
        num_cpus=res["num_cpus"],
        num_gpus=res["num_gpus"] or None,
    )
    what = "embedding collection" if job.name == "embeddings" else "scoring pairs"
    bar = progress_bar(progress, src.count, start, f"{what} (Ray, {res['concurrency']} actors)")

    def arriving():
        for out in mapped.iter_batches(batch_size=None, batch_format="numpy"):
            for j in range(len(out["error"])):
                yield int(out["position"][j]), {k: out[k][j] for k in _COLUMNS + job.columns}
            if bar is not None:
                bar.update(len(out["error"]))
                bar.set_postfix(skipped=writer.n_errors, refresh=False)

    position = start
    try:
        for out in in_source_order(arriving(), start):
            ident = _str_or_none(out["id"])
            row = Row(
                position,
                str(position) if ident is None else ident,
                _str_or_none(out["text"]),
                None,
                _str_or_none(out["locator"]),
                _str_or_none(out["digest"]),
            )
            error = _str_or_none(out["error"])
            writer.add(row, job.value_of(out) if error is None else None, error)
            position += 1
    finally:
        if bar is not None:
            bar.close()
    return position
