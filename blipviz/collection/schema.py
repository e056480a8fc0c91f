"""The JSON schema of a collection manifest (``blipviz-collection.json``), checked (draft 7,
compiled once by ``fastjsonschema``) every time a manifest is read: a missing key, a value of the
wrong type or range, an unknown load
option or a file path outside the folder's own layout is a :class:`blipviz.CollectionFolderError`
naming the manifest and the key, before anything is opened, loaded or deleted.

File names are fixed patterns (``shards/shard-000000.parquet``, ``embeddings.npy``,
``index-ivf.faiss``): a manifest can never point blipviz at a file outside its folder.
"""

from __future__ import annotations

import functools
from typing import Any

__all__ = ["MANIFEST_SCHEMA", "validate_manifest"]

_HEX64 = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
_COUNT = {"type": "integer", "minimum": 0}
_NULLABLE_STR = {"type": ["string", "null"]}
_AUTOCAST = {"enum": ["bfloat16", None]}

#: What :func:`blipviz.net.load_net` may be given from a manifest (``net.load``).
_LOAD_OPTIONS = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name_or_path"],
    "properties": {
        "name_or_path": {"type": "string", "minLength": 1},
        "pretrained": {"type": "boolean"},
        "seed": {"type": ["integer", "null"]},
        "dtype": {"enum": ["float16", "bfloat16", "float32", "float64"]},
        "first_token": {"enum": ["enc", "cls"]},
        "normalize_text": {"type": "boolean"},
        "max_text_tokens": {"type": ["integer", "null"], "minimum": 1},
        "quantize": {"type": ["string", "null"]},
        "fast_attention": {"type": "boolean"},
    },
}

_SHARD = {
    "type": "object",
    "additionalProperties": False,
    "required": ["index", "file", "start", "stop", "rows", "errors", "checksum"],
    "properties": {
        "index": _COUNT,
        "file": {"type": "string", "pattern": r"^shards/shard-[0-9]{6}\.parquet$"},
        "start": _COUNT,
        "stop": _COUNT,
        "rows": _COUNT,
        "errors": _COUNT,
        "checksum": _HEX64,
    },
}

_INDEX = {
    "type": "object",
    "additionalProperties": False,
    "required": ["file", "options", "embeddings", "checksum"],
    "properties": {
        "file": {"type": "string", "pattern": r"^index-(ivf|hnsw)\.faiss$"},
        "options": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 1}},
        "embeddings": _HEX64,
        "checksum": _HEX64,
    },
}

#: The JSON schema (draft 7) every collection manifest must satisfy.
MANIFEST_SCHEMA: dict[str, Any] = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "required": (
        "format version uid job state net preprocessing source shard_size batch_size keep_states shards"
    ).split(),
    "properties": {
        "format": {"const": "blipviz collection"},
        "version": {"type": "string"},
        "uid": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
        "job": {"enum": ["embeddings", "pairs"]},
        "state": {"enum": ["running", "complete"]},
        "provenance": {
            "type": "object",
            "additionalProperties": {"type": "string"},
            "required": ["blipviz", "torch", "transformers", "device", "dtype", "date"],
            "properties": {"compile": {"type": "boolean"}, "autocast": _AUTOCAST},
        },
        # how the net's passes ran (blipviz.net.accelerate); absent in older manifests: eager
        "acceleration": {
            "type": "object",
            "additionalProperties": False,
            "required": ["compile", "autocast"],
            "properties": {"compile": {"type": "boolean"}, "autocast": _AUTOCAST},
        },
        "net": {
            "type": "object",
            "required": ["name", "load", "image_fingerprint", "text_fingerprint", "dim"],
            "properties": {
                "name": {"type": "string"},
                "load": _LOAD_OPTIONS,
                "image_fingerprint": {"type": "string", "minLength": 1},
                "text_fingerprint": _NULLABLE_STR,
                "dim": {"type": "integer", "minimum": 1},
            },
        },
        "preprocessing": {
            "type": "object",
            "required": ["image_size", "mean", "std", "exif_transpose", "resample"],
            "properties": {
                "image_size": {"type": "integer", "minimum": 1},
                "mean": {"type": "array", "items": {"type": "number"}, "minItems": 3, "maxItems": 3},
                "std": {"type": "array", "items": {"type": "number"}, "minItems": 3, "maxItems": 3},
                "exif_transpose": {"type": "boolean"},
                "resample": {"type": "string"},
            },
        },
        "source": {
            "type": "object",
            "required": ["kind", "count"],
            "properties": {
                "kind": {"enum": ["dataset", "iterable_dataset", "folder", "paths", "table"]},
                "file": {"type": "string"},
                "count": {"type": ["integer", "null"], "minimum": 0},
                "image_column": _NULLABLE_STR,
                "id_column": _NULLABLE_STR,
                "text_column": _NULLABLE_STR,
                "root": {"type": "string"},
            },
        },
        "shard_size": {"type": "integer", "minimum": 1},
        "batch_size": {"type": "integer", "minimum": 1},
        "keep_states": {"type": "boolean"},
        "shards": {"type": "array", "items": _SHARD},
        "count": _COUNT,
        "positions": _COUNT,
        "errors": _COUNT,
        "embeddings": {
            "type": "object",
            "additionalProperties": False,
            "required": ["file", "shape", "dtype", "checksum"],
            "properties": {
                "file": {"const": "embeddings.npy"},
                "shape": {"type": "array", "items": _COUNT, "minItems": 2, "maxItems": 2},
                "dtype": {"const": "float32"},
                "checksum": _HEX64,
            },
        },
        "indexes": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"ivf": _INDEX, "hnsw": _INDEX},
        },
    },
    "allOf": [
        {
            "if": {"properties": {"state": {"const": "complete"}}},
            "then": {"required": ["count", "positions", "errors"]},
        },
        {
            "if": {"properties": {"state": {"const": "complete"}, "job": {"const": "embeddings"}}},
            "then": {"required": ["embeddings"]},
        },
    ],
}


@functools.lru_cache(maxsize=1)
def _validator():
    import fastjsonschema

    return fastjsonschema.compile(MANIFEST_SCHEMA)


def validate_manifest(data: Any, where: str) -> None:
    """Check a manifest against :data:`MANIFEST_SCHEMA`, and the shards' own order: shard ``k`` is
    ``shards/shard-{k:06d}.parquet`` and covers the positions right after shard ``k - 1``.

    Raises
    ------
    CollectionFolderError
        Naming ``where`` (the manifest's path), the key that is wrong and why.
    """
    import fastjsonschema

    from ..errors import CollectionFolderError

    try:
        _validator()(data)
    except fastjsonschema.JsonSchemaValueException as error:
        key = "/".join(str(p) for p in error.path[1:]) or "(top level)"
        message = error.message.replace(error.name, "it", 1) if error.name else error.message
        raise CollectionFolderError(
            f"collection manifest {where} is damaged at {key}: {message}. Nothing was changed; "
            "embed into a new folder (or restore the manifest)"
        ) from None
    size = data["shard_size"]
    for k, shard in enumerate(data["shards"]):
        start, stop = k * size, shard["stop"]
        if (
            shard["index"] != k
            or shard["file"] != f"shards/shard-{k:06d}.parquet"
            or shard["start"] != start
            or not start < stop <= start + size
            or shard["rows"] != stop - start
            or shard["errors"] > shard["rows"]
        ):
            raise CollectionFolderError(
                f"collection manifest {where} is damaged at shards/{k}: shard {k} must be "
                f"shards/shard-{k:06d}.parquet with positions {start} to at most {start + size} and one "
                "row per position. Nothing was changed; embed into a new folder (or restore the manifest)"
            )
    n_ok = sum(s["rows"] - s["errors"] for s in data["shards"])
    if data["state"] == "complete" and data["count"] != n_ok:
        raise CollectionFolderError(
            f"collection manifest {where} is damaged at count: its shards hold {n_ok} rows without "
            f"error, the manifest says {data['count']}"
        )
    if data["state"] == "complete" and data["job"] == "embeddings":
        expected = [n_ok, data["net"]["dim"]]
        if data["embeddings"]["shape"] != expected:
            raise CollectionFolderError(
                f"collection manifest {where} is damaged at embeddings/shape: its shards hold {n_ok} "
                f"embeddings of {data['net']['dim']} values, the manifest says {data['embeddings']['shape']} "
                f"and count {data['count']}"
            )
