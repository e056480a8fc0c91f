"""``Collection``: a finished collection folder, opened for search and maps.

``Collection.open(out, model=None)`` reads the manifest and the shards' id columns; the embeddings
stay on disk, memory-mapped (``.embeddings``). Searching needs the net: the one given as ``model=``
(its weights fingerprints checked against the manifest), or the one the manifest names, loaded on
first use and checked the same way.

``search(texts, k=, rerank=)`` is BLIP's two-stage retrieval over the collection, with the same
``k``, ``rerank`` and columns as :meth:`blipviz.BlipITM.search`: the cosine stage through a FAISS
index (:mod:`blipviz.collection.index`; exact by default), then the ITM head re-scores each query's
``rerank`` best by cosine (``k`` of them by default, none with ``rerank=0``). Only those images are
read again (from their files, or the dataset given as ``source=``) and pass the ViT, each once for
all the queries that want it (with ``keep_states=True`` their states come from ``out/states``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..errors import CollectionFolderError, InputError, positive_int
from .index import INDEX_KINDS, build_index, index_options, load_index, save_index, search_index
from .netspec import as_net, check_same_net, load_described_net
from .shards import (
    EMBEDDINGS_NAME,
    checksum_file,
    folder_lock,
    inside,
    open_finished,
    read_manifest,
    read_rows,
    write_manifest,
)
from .sources import Row, as_source, item_digest

__all__ = ["Collection"]


class Collection:
    """An embedded image collection on disk (build it with :func:`blipviz.embed_collection`, open it
    with :meth:`open`).

    Attributes
    ----------
    folder : Path
    manifest : dict
        The folder's ``blipviz-collection.json``.
    """

    def __init__(self, folder: Path, manifest: dict[str, Any], model=None, source: Any = None) -> None:
        self.folder = folder
        self.manifest = manifest
        self._model = model
        self._source = None
        if source is not None:
            d = manifest["source"]
            if d.get("kind") in ("dataset", "iterable_dataset", "table"):
                self._source = as_source(
                    source,
                    image_column=d.get("image_column") or "image",
                    id_column=d.get("id_column"),
                    text_column=d.get("text_column"),
                )
        self._indexes: dict[str, Any] = {}
        rows = read_rows(folder, manifest, ["position", "id", "text", "locator", "digest", "error"])
        ok = rows["error"].isna().to_numpy()
        self._rows = rows[ok].reset_index(drop=True)
        self._errors = rows[~ok].reset_index(drop=True)
        self._row_of: dict[str, int] | None = None
        self._embeddings_checked: tuple[int, int] | None = None
        self._suggested_states = False
        self._check_embeddings_file()

    def _check_embeddings_file(self) -> Path:
        """The cheap checks of ``embeddings.npy``, on every open: a readable ``.npy`` of the shape,
        dtype and byte size the manifest records."""
        entry = self.manifest["embeddings"]
        path = inside(self.folder, entry["file"])
        shape = tuple(entry["shape"])
        try:
            mapped = np.load(path, mmap_mode="r")  # reads the header only; a short file fails here
            size = path.stat().st_size
        except (OSError, ValueError, EOFError) as exc:
            raise CollectionFolderError(
                f"collection {str(self.folder)!r}: {entry['file']} is unreadable ({exc}); the folder was "
                "damaged after it was written: embed into a new folder"
            ) from None
        expected_size = mapped.offset + 4 * int(np.prod(shape))
        if mapped.shape != shape or mapped.dtype != np.dtype("<f4") or size != expected_size:
            raise CollectionFolderError(
                f"collection {str(self.folder)!r}: {entry['file']} holds {mapped.shape} {mapped.dtype} in "
                f"{size} bytes, its manifest records {shape} float32: the file was changed after it was "
                "written; embed into a new folder"
            )
        return path

    # --------------------------------------------------------------------------- opening
    @classmethod
    def open(
        cls, out: str | os.PathLike, model=None, *, source: Any = None, verify: bool = False
    ) -> Collection:
        """Open a finished collection folder.

        Parameters
        ----------
        out : str or path
        model : BlipITM or BlipNet, optional
            The net that made the collection (checked by its weights fingerprints); default: the
            net the manifest names, loaded on first search.
        source : datasets.Dataset, optional
            The dataset the collection was made from, to read its images again (``image``, ITM
            rerank); folders and paths are read again from their files without it.
        verify : bool, default False
            Check every shard's and the embeddings' checksum now.

        Raises
        ------
        CollectionFolderError
            Not a collection, an unfinished one (run :func:`embed_collection` again to finish it),
            a net other than the one that made it, or (``verify=True``) a changed file.
        InputTypeError
            ``out`` is not a str or path (``None``, a number, ...).
        """
        folder, manifest = open_finished(out, "embeddings", "Collection.open", verify)
        if model is not None:
            model = as_net(model, "Collection.open")
            check_same_net(manifest["net"], model, "this net", f"{str(folder)!r} ")
        collection = cls(folder, manifest, model, source)
        if verify:
            collection._embeddings_checked = collection._file_state()
        return collection

    def __repr__(self) -> str:
        return (
            f"Collection({str(self.folder)!r}, {len(self):,} images, {len(self._errors)} skipped, "
            f"net={self.manifest['net']['name']!r})"
        )

    def __len__(self) -> int:
        return int(self.manifest["count"])

    @property
    def model(self):
        """The net: the one given, or the one the manifest names (loaded now, fingerprints checked)."""
        if self._model is None:
            self._model = load_described_net(self.manifest["net"])
        return self._model

    @property
    def ids(self) -> list[str]:
        """The ids of the embedded items, in the order of :attr:`embeddings`' rows."""
        return self._rows["id"].tolist()

    @property
    def texts(self) -> list[str | None]:
        """The text kept with each id (``text_column``), or None."""
        return [t if isinstance(t, str) else None for t in self._rows["text"]]

    def _file_state(self) -> tuple[int, int]:
        stat = (self.folder / EMBEDDINGS_NAME).stat()
        return stat.st_size, stat.st_mtime_ns

    @property
    def embeddings(self) -> np.ndarray:
        """Memory-mapped ndarray of shape (len(self), 256), float32: L2-normalised image embeddings.

        The file's checksum is verified against the manifest on first use (and again if the file
        changes): a reordered, shortened or edited ``embeddings.npy`` is a
        :class:`CollectionFolderError`, never searched.
        """
        path = self._check_embeddings_file()
        state = self._file_state()
        if self._embeddings_checked != state:
            if checksum_file(path) != self.manifest["embeddings"]["checksum"]:
                raise CollectionFolderError(
                    f"collection {str(self.folder)!r}: {EMBEDDINGS_NAME} changed since it was written "
                    "(checksum): its rows no longer match the shards; embed into a new folder"
                )
            self._embeddings_checked = state
        return np.load(path, mmap_mode="r")

    @property
    def errors(self) -> pd.DataFrame:
        """The skipped items: columns ``id``, ``position`` (in the source) and ``reason``."""
        frame = self._errors[["id", "position", "error"]].rename(columns={"error": "reason"})
        return frame.reset_index(drop=True)

    def row(self, id: str) -> int:
        """The row of ``id`` in :attr:`embeddings`; :class:`blipviz.InputError` for an unknown id."""
        if self._row_of is None:
            self._row_of = {v: i for i, v in enumerate(self._rows["id"])}
        try:
            return self._row_of[str(id)]
        except KeyError:
            raise InputError(f"no item with id {id!r} in this collection (or it was skipped)") from None

    # ------------------------------------------------------------------------------ images
    def _item(self, row: int) -> Any:
        """The item row ``row`` was made from, read again, and checked to be the same bytes."""
        record = self._rows.iloc[row]
        if isinstance(record["locator"], str) and record["locator"]:
            return self._same_as_embedded(record, record["locator"])
        if self._source is not None and self._source.random_access:
            found: Row = self._source.row(int(record["position"]))
            if found.id != record["id"]:
                raise InputError(
                    f"the source given holds id {found.id!r} at position {record['position']}, not "
                    f"{record['id']!r}: pass the dataset the collection was made from"
                )
            return self._same_as_embedded(record, found.item)
        raise InputError(
            f"the image of {record['id']!r} cannot be read again: the collection was made from a "
            f"{self.manifest['source']['kind']} held in memory; pass it as Collection.open(..., source=)"
        )

    def _same_as_embedded(self, record, item: Any) -> Any:
        """``item`` as read now, if its bytes are those the row was embedded from; a file read
        once, so what is checked is what is used."""
        if isinstance(item, str | os.PathLike):
            try:
                item = Path(item).read_bytes()
            except OSError:
                from ..errors import ImageLoadError

                raise ImageLoadError(
                    f"the image of {record['id']!r} cannot be read again from {str(item)!r}: the file is "
                    "gone or unreadable"
                ) from None
        if item_digest(item) != record["digest"]:
            raise CollectionFolderError(
                f"collection {str(self.folder)!r}: the image of {record['id']!r} (position "
                f"{record['position']}) changed since it was embedded (other bytes): its cosine and an "
                "ITM score of it now would describe two pictures. Embed the changed source into a new "
                "folder"
            )
        return item

    def image(self, id: str):
        """The image of ``id``, read again from its source: an RGB PIL image.

        Raises
        ------
        InputError
            An unknown id, or a source that cannot be read again (a dataset not passed as ``source=``).
        ImageLoadError
            The file is gone or changed into something unreadable.
        """
        from ..net.images import load_image

        row = self.row(id)
        exif = bool(self.manifest["preprocessing"].get("exif_transpose", True))
        return load_image(self._item(row), row, exif_transpose=exif)

    # ------------------------------------------------------------------------------ search
    def index(self, kind: str = "flat", **options: Any):
        """The FAISS index of ``kind`` (``"flat"``, ``"ivf"``, ``"hnsw"``): built once; the approximate
        ones stored in the folder and read from there afterwards (:mod:`blipviz.collection.index`)."""
        opts = index_options(kind, len(self), **options)
        if kind in self._indexes and self._indexes[kind][0] == opts:
            return self._indexes[kind][1]
        index = None
        entry = self.manifest.get("indexes", {}).get(kind)
        path = self.folder / f"index-{kind}.faiss"
        if kind != "flat" and entry is not None and path.is_file():
            built = {k: v for k, v in entry["options"].items() if k not in ("nprobe", "efSearch")}
            wanted = {k: v for k, v in opts.items() if k not in ("nprobe", "efSearch")}
            if built == wanted and entry["embeddings"] == self.manifest["embeddings"]["checksum"]:
                if checksum_file(path) == entry["checksum"]:
                    index = load_index(path)
        if index is None:
            index = build_index(self.embeddings, kind, **opts)
            if kind != "flat":
                self._store_index(kind, index, path, opts)
        if kind == "ivf":
            index.nprobe = opts["nprobe"]
        elif kind == "hnsw":
            index.hnsw.efSearch = opts["efSearch"]
        self._indexes[kind] = (opts, index)
        return index

    def _store_index(self, kind: str, index, path: Path, opts: dict[str, Any]) -> None:
        try:
            with folder_lock(self.folder):
                save_index(index, path)
                manifest = read_manifest(self.folder) or self.manifest
                manifest.setdefault("indexes", {})[kind] = {
                    "file": path.name,
                    "options": opts,
                    "embeddings": self.manifest["embeddings"]["checksum"],
                    "checksum": checksum_file(path),
                }
                manifest = {k: v for k, v in manifest.items() if k not in ("format", "version")}
                write_manifest(self.folder, manifest)
                self.manifest = manifest
        except (OSError, CollectionFolderError) as exc:  # a read-only folder: the index lives in memory
            import logging

            logging.getLogger("blipviz").warning(
                "collection %s: the %s index could not be stored (%s); it is kept in memory",
                self.folder,
                kind,
                exc,
            )

    def search(
        self,
        texts: str | Sequence[str] | None = None,
        *,
        k: int = 10,
        rerank: int | None = None,
        images: Any = None,
        index: str = "flat",
        score: str = "itm",
        batch_size: int | None = None,
        **index_opts: Any,
    ) -> pd.DataFrame:
        """Find the images of the collection that best match each text (BLIP's two-stage way), or
        each example image.

        ``k`` and ``rerank`` mean what they mean in :meth:`blipviz.BlipITM.search`, with the same
        defaults and the same columns: on the same images and texts the two agree.

        Parameters
        ----------
        texts : str or sequence of str, optional
            The queries (a str is one query): ranked by text-image cosine, re-scored by ITM.
        k : int, default 10
            Rows per query: the best ``k`` images.
        rerank : int or None, default None
            How many of each query's best by cosine the ITM head re-scores. ``None``: ``k`` (every
            row has its ITM score), or 0 for example images without texts; ``0``: none (cosine
            order, ``score``, ``itm`` and ``itm_logit`` NaN); ``n``: those ``n`` come first, ordered
            by ``score``, the rest (``k > n``) keep the cosine order, and with ``n > k`` the best
            ``k`` of the ``n`` are returned. Each re-scored image is read again and passes the ViT
            (none with ``keep_states=True``).
        images : image or sequence of images, optional
            Query by example: ranked by image-image cosine of the embeddings. Given with ``texts``
            (one text per image), the cosine stage uses the images and the rerank scores the
            candidates by ITM against the texts.
        index : {"flat", "ivf", "hnsw"}, default "flat"
            ``"flat"`` is exact (numpy's top-k); the others are approximate, for millions of images.
        score : {"itm", "itm+cosine"}, default "itm"
            Ranking of the re-scored: ITM probability, or BLIP's ITM logit + cosine.
        batch_size : int, optional
            Images per ViT pass of the rerank.
        **index_opts
            ``nlist``, ``nprobe`` (ivf), ``M``, ``efSearch`` (hnsw).

        Returns
        -------
        DataFrame with ``k`` rows per query (fewer for a smaller collection), sorted by query and
        ``rank`` (1 = best): ``query``, ``query_index``, ``rank``, ``image`` (the id),
        ``image_index`` (the row in :attr:`embeddings`), ``score``, ``itm`` (probability),
        ``itm_logit``, ``cosine``, ``cosine_rank``; NaN scores for the rows not re-scored.
        """
        from ..analysis.search import check_search_options, search_frame

        if texts is None and images is None:
            raise InputError("search needs texts, images (query by example), or both")
        if images is not None and texts is None:
            if rerank:
                raise InputError(
                    "rerank scores candidates with the ITM head, which matches an image against a TEXT: "
                    "give texts= with the example images, or rerank=0"
                )
            rerank = 0
        k, n_rerank = check_search_options(k, rerank, score)
        if index not in INDEX_KINDS:
            raise InputError(f"unknown index {index!r}; allowed values: {', '.join(map(repr, INDEX_KINDS))}")
        index_options(index, len(self), **index_opts)  # all checked before the net or FAISS allocates
        model = self.model
        if images is not None:
            from ..net.images import as_image_list

            example = model.encode_images(as_image_list(images), keep_raw=False)
            features = model.encode_texts(texts) if texts is not None else None
            if features is not None and len(features) != len(example):
                raise InputError(
                    f"query by example with texts needs one text per image: got {len(example.labels)} images "
                    f"and {len(features)} texts"
                )
            queries = example.embeddings.numpy().astype(np.float32)
            labels = list(example.labels)
        else:
            features = model.encode_texts(texts)
            queries = features.embeddings.numpy().astype(np.float32)
            labels = list(features.texts)
        records: list[dict[str, Any]] = []
        if len(self) and len(queries):
            search_opts = {key: index_opts.pop(key) for key in ("nprobe", "efSearch") if key in index_opts}
            found = self.index(index, **index_opts)
            cos, rows = search_index(found, queries, max(k, n_rerank), **search_opts)
            ids = self._rows["id"].to_numpy()
            logits = self._rerank(model, features, rows[:, :n_rerank], batch_size) if n_rerank else {}
            for q in range(len(queries)):
                for r in range(rows.shape[1]):
                    i = int(rows[q, r])
                    pair = logits.get((q, i))
                    records.append(
                        {
                            "query": labels[q],
                            "query_index": q,
                            "image": ids[i],
                            "image_index": i,
                            "itm": float(pair.softmax(-1)[1]) if pair is not None else np.nan,
                            "itm_logit": float(pair[1]) if pair is not None else np.nan,
                            "cosine": float(cos[q, r]),
                            "cosine_rank": r + 1,
                        }
                    )
        out = search_frame(records, "query", "image", k=k, n_rerank=n_rerank, score=score)
        out.attrs["truncated_by"] = (
            {}
            if features is None
            else {t: r for t, r in zip(features.texts, features.truncated_by, strict=True) if r is not None}
        )
        return out

    def _rerank(self, model, features, candidates: np.ndarray, batch_size: int | None) -> dict:
        """ITM logits (2,) of each (query, candidate row): each candidate image read and passed through
        the ViT once, its queries in one ITM batch against its states."""
        from ..net.images import load_image

        by_row: dict[int, list[int]] = {}
        for q in range(candidates.shape[0]):
            for i in candidates[q]:
                by_row.setdefault(int(i), []).append(q)
        order = sorted(by_row)
        if not self.manifest.get("keep_states") and not self._suggested_states:
            import logging

            self._suggested_states = True
            logging.getLogger("blipviz").warning(
                "collection %s: the rerank reads %d images again and passes them through the ViT; "
                "a collection embedded with keep_states=True reranks without any ViT pass",
                self.folder,
                len(order),
            )
        exif = bool(self.manifest["preprocessing"].get("exif_transpose", True))
        size = model.resolve_batch_size(batch_size)
        logits: dict[tuple[int, int], torch.Tensor] = {}
        previous = model.feature_cache
        if self.manifest.get("keep_states"):
            from ..store.cache import FeatureCache

            model.feature_cache = FeatureCache(self.folder / "states")
        try:
            with torch.inference_mode():
                for start in range(0, len(order), size):
                    chunk = order[start : start + size]
                    rgbs = [load_image(self._item(i), i, exif_transpose=exif) for i in chunk]
                    labels = [str(self._rows["id"].iat[i]) for i in chunk]
                    at = 0
                    for batch in model.iter_image_states(rgbs, size, False, labels):
                        for b in range(batch.states.shape[0]):
                            i = chunk[at]
                            qs = by_row[i]
                            out = model.itm_logits_of_image(
                                features.tokenized.select(qs), batch.states[b : b + 1], batch.keys[b]
                            )
                            for q, pair in zip(qs, out, strict=True):
                                logits[(q, i)] = pair.double()
                            at += 1
        finally:
            model.feature_cache = previous
        return logits

    # --------------------------------------------------------------------------------- maps
    def feature_space(
        self,
        method: str = "umap",
        *,
        sample: int | None = None,
        random_state: int | None = 37,
        **options: Any,
    ) -> pd.DataFrame:
        """Map the collection's embeddings (all, or a random ``sample`` of them) to the plane.

        Parameters
        ----------
        method : {"umap", "tsne", "pca"}, default "umap"
            :func:`blipviz.analysis.feature_space.reduce_to_2d` (its ``**options``: ``n_neighbors``,
            ``perplexity``, ``metric``).
        sample : int, optional
            Map this many points drawn at random (``random_state``) without replacement; default all.
        random_state : int or None, default 37

        Returns
        -------
        DataFrame with one row per mapped point, in collection order: ``id``, ``row`` (in
        :attr:`embeddings`), ``x``, ``y``, ``text``.
        """
        from ..analysis.feature_space import reduce_to_2d

        n = len(self)
        if sample is None or sample >= n:
            rows = np.arange(n)
        else:
            rows = np.sort(
                np.random.default_rng(random_state).choice(n, positive_int("sample", sample), replace=False)
            )
        coords = reduce_to_2d(self.embeddings[rows], method, random_state=random_state, **options)
        return pd.DataFrame(
            {
                "id": self._rows["id"].to_numpy()[rows],
                "row": rows,
                "x": coords[:, 0],
                "y": coords[:, 1],
                "text": [t if isinstance(t, str) else None for t in self._rows["text"].to_numpy()[rows]],
            }
        )
