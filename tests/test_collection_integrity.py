"""A collection folder is bound to its source row by row, validated when read, and blipviz touches
only its own files in it. Each test is a case a user reproduced: another source of the same length
or names, a replaced file before a rerank, damaged or tampered files, a user's files in the folder,
a folder that cannot be written."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from blipviz import BlipvizError
from blipviz.collection import Collection, CollectionFolderError, embed_collection
from blipviz.testing import synthetic_images

SHARD = 4
BATCH = 2
N = 8


class Interrupt(Exception):
    """Stands for a kill: raised from inside the job."""


def _photos(root: Path, seed: int, n: int = N) -> list[Path]:
    from PIL import Image

    root.mkdir(parents=True, exist_ok=True)
    arrays = synthetic_images(n, size=(16, 16), seed=seed)
    paths = []
    for i, a in enumerate(arrays):
        Image.fromarray(a).save(root / f"p{i}.png")
        paths.append(root / f"p{i}.png")
    return paths


def _embed(model, source, out, **kw):
    kw.setdefault("batch_size", BATCH)
    kw.setdefault("shard_size", SHARD)
    return embed_collection(model, source, out, progress=False, **kw)


def _interrupted(model, source, out, monkeypatch, after_batches: int, **kw) -> None:
    real = type(model).iter_image_states
    calls = {"n": 0}

    def failing(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] > after_batches:
            raise Interrupt
        yield from real(self, *args, **kwargs)

    monkeypatch.setattr(type(model), "iter_image_states", failing)
    with pytest.raises(Interrupt):
        _embed(model, source, out, **kw)
    monkeypatch.setattr(type(model), "iter_image_states", real)


def _manifest(out: Path) -> dict:
    return json.loads((out / "blipviz-collection.json").read_text())


def _write_manifest(out: Path, manifest: dict) -> None:
    (out / "blipviz-collection.json").write_text(json.dumps(manifest))


@pytest.fixture(scope="module")
def made(tiny, tmp_path_factory):
    """A finished collection of a folder of N photos, and the folder."""
    base = tmp_path_factory.mktemp("made")
    paths = _photos(base / "photos", seed=1)
    _embed(tiny, [str(p) for p in paths], base / "c")
    return base / "c", paths


@pytest.fixture
def copy(made, tmp_path):
    """A fresh copy of the finished collection, to damage."""
    out = tmp_path / "c"
    shutil.copytree(made[0], out)
    return out


# ------------------------------------------------------------------------ bound to the source
def test_a_finished_folder_refuses_another_list_of_the_same_length(tiny, made, tmp_path):
    out, paths = made
    other = _photos(tmp_path / "other", seed=2)
    with pytest.raises(CollectionFolderError, match=r"another source: 8 rows differ") as err:
        _embed(tiny, [str(p) for p in other], out)
    assert "position 0" in str(err.value)
    assert _embed(tiny, [str(p) for p in paths], out).ids == [str(p) for p in paths]  # the same: opened


def test_resuming_on_another_folder_with_the_same_names_is_refused(tiny, tmp_path, monkeypatch):
    a = tmp_path / "a"
    b = tmp_path / "b"
    _photos(a, seed=3)
    _photos(b, seed=4)  # same names p0.png ... p7.png, other pixels
    out = tmp_path / "c"
    _interrupted(tiny, a, out, monkeypatch, after_batches=2)  # shard 0 (positions 0-3) written
    before = sorted(p.name for p in (out / "shards").iterdir())
    with pytest.raises(
        CollectionFolderError, match=r"4 rows differ.*position 0 \('p0.png': other image bytes"
    ):
        _embed(tiny, b, out)
    assert sorted(p.name for p in (out / "shards").iterdir()) == before  # nothing was changed
    finished = _embed(tiny, a, out)  # the right folder resumes
    whole = _embed(tiny, a, tmp_path / "whole")
    np.testing.assert_array_equal(finished.embeddings, whole.embeddings)


def test_a_moved_folder_with_the_same_files_resumes(tiny, tmp_path, monkeypatch):
    a = tmp_path / "a"
    _photos(a, seed=5)
    out = tmp_path / "c"
    _interrupted(tiny, a, out, monkeypatch, after_batches=2)
    moved = tmp_path / "moved"
    shutil.copytree(a, moved)
    assert len(_embed(tiny, moved, out)) == N


def png_bytes(array) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def _captioned(seed: int):
    import datasets

    arrays = synthetic_images(N, size=(16, 16), seed=seed)
    return datasets.Dataset.from_dict(
        {
            "image": [{"bytes": png_bytes(a), "path": None} for a in arrays],
            "other_image": [
                {"bytes": png_bytes(np.ascontiguousarray(a[::-1])), "path": None} for a in arrays
            ],
            "caption": [f"picture {i}" for i in range(N)],
            "title": [f"title {i}" for i in range(N)],
        },
        features=datasets.Features(
            {
                "image": datasets.Image(),
                "other_image": datasets.Image(),
                "caption": datasets.Value("string"),
                "title": datasets.Value("string"),
            }
        ),
    )


@pytest.mark.parametrize(
    "change", [{"image_column": "other_image"}, {"text_column": "title"}], ids=["image", "text"]
)
def test_a_dataset_resumed_with_other_columns_is_refused(tiny, tmp_path, monkeypatch, change):
    data = _captioned(6)
    out = tmp_path / "c"
    _interrupted(tiny, data, out, monkeypatch, after_batches=2, text_column="caption")
    kw = {"text_column": "caption", **change}
    with pytest.raises(CollectionFolderError, match="column"):
        _embed(tiny, data, out, **kw)


def test_a_dataset_with_other_rows_under_the_same_columns_is_refused(tiny, tmp_path, monkeypatch):
    out = tmp_path / "c"
    _interrupted(tiny, _captioned(7), out, monkeypatch, after_batches=2, text_column="caption")
    with pytest.raises(CollectionFolderError, match="other image bytes"):
        _embed(tiny, _captioned(8), out, text_column="caption")


def test_a_rerank_refuses_an_image_replaced_since_it_was_embedded(tiny, tmp_path):
    from PIL import Image

    paths = _photos(tmp_path / "photos", seed=9)
    c = _embed(tiny, [str(p) for p in paths], tmp_path / "c")
    before = c.search("a photo", k=N, rerank=N)
    assert before["itm"].notna().all()
    Image.fromarray(synthetic_images(1, size=(16, 16), seed=99)[0]).save(paths[3])
    with pytest.raises(
        CollectionFolderError, match=r"'.*p3.png' \(position 3\) changed since it was embedded"
    ):
        c.search("a photo", k=N, rerank=N)
    with pytest.raises(CollectionFolderError, match="changed since it was embedded"):
        c.image(str(paths[3]))
    assert len(c.search("a photo", k=N, rerank=0)) == N  # the cosine stage reads no image: still served


def test_a_resume_keeps_the_manifest_batch_size(tiny, tmp_path, monkeypatch):
    a = tmp_path / "a"
    _photos(a, seed=10)
    out = tmp_path / "c"
    _interrupted(tiny, a, out, monkeypatch, after_batches=2)
    sizes = []
    real = type(tiny).iter_image_states

    def counting(self, images, *args, **kwargs):
        sizes.append(len(images))
        yield from real(self, images, *args, **kwargs)

    monkeypatch.setattr(type(tiny), "iter_image_states", counting)
    embed_collection(tiny, a, out, progress=False)  # no batch_size: the manifest's, not the net's
    assert sizes and set(sizes) == {BATCH}


# -------------------------------------------------------------------------------- validated
def test_a_truncated_shard_is_named_on_open_and_embed(tiny, made, copy):
    shard = copy / "shards" / "shard-000001.parquet"
    shard.write_bytes(shard.read_bytes()[:40])
    with pytest.raises(CollectionFolderError, match=r"shard-000001\.parquet"):
        Collection.open(copy)
    with pytest.raises(CollectionFolderError, match=r"shard-000001\.parquet"):
        _embed(tiny, [str(p) for p in made[1]], copy)


@pytest.mark.parametrize("damage", ["truncated", "shortened", "reordered"])
def test_a_damaged_embeddings_file_is_never_searched(tiny, copy, damage):
    path = copy / "embeddings.npy"
    emb = np.load(path)
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:-100])
    elif damage == "shortened":
        np.save(path, emb[:-1])
    else:
        np.save(path, emb[::-1])
    with pytest.raises(CollectionFolderError, match=r"embeddings\.npy"):
        Collection.open(copy, tiny).search("a photo", k=2)


@pytest.mark.parametrize(
    "tamper, key",
    [
        (lambda m: m.pop("shard_size"), r"\(top level\): it must contain \['shard_size'\]"),
        (lambda m: m["net"]["load"].update(colour="blue"), "net/load"),
        (lambda m: m.update(shard_size=0), "shard_size"),
        (lambda m: m["shards"][0].update(file="../../../../etc/hostname"), "shards/0/file"),
        (lambda m: m["embeddings"].update(file="../../../../etc/hostname"), "embeddings/file"),
        (lambda m: m["shards"][0].update(rows=-1), "shards/0/rows"),
        (lambda m: m["shards"].reverse(), "shards/0"),
        (lambda m: m.update(count=3), "count"),
    ],
    ids=[
        "missing key",
        "unknown load option",
        "shard_size 0",
        "shard outside",
        "npy outside",
        "negative rows",
        "shards reordered",
        "count",
    ],
)
def test_a_tampered_manifest_is_refused_naming_the_key(tiny, copy, tamper, key):
    manifest = _manifest(copy)
    tamper(manifest)
    _write_manifest(copy, manifest)
    with pytest.raises(CollectionFolderError, match=f"damaged at {key}"):
        Collection.open(copy)
    with pytest.raises(CollectionFolderError, match=f"damaged at {key}"):
        Collection.open(copy, tiny)


def test_verify_checks_every_checksum(copy):
    Collection.open(copy, verify=True)
    shard = copy / "shards" / "shard-000000.parquet"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte: the file still has its size
    shard.write_bytes(bytes(data))
    with pytest.raises(CollectionFolderError, match=r"shard-000000\.parquet changed"):
        Collection.open(copy, verify=True)


# ----------------------------------------------------------------- only blipviz's own files
def test_a_users_files_in_shards_neither_block_nor_are_deleted(tiny, tmp_path, monkeypatch):
    a = tmp_path / "a"
    _photos(a, seed=11, n=12)
    out = tmp_path / "c"
    _interrupted(tiny, a, out, monkeypatch, after_batches=2)
    (out / "shards" / "shard-old.parquet").write_text("a user's old export")
    (out / "shards" / "notes.txt").write_text("a user's notes")
    c = _embed(tiny, a, out)
    assert len(c) == 12
    assert (out / "shards" / "shard-old.parquet").read_text() == "a user's old export"
    assert (out / "shards" / "notes.txt").read_text() == "a user's notes"


def test_a_users_file_at_a_shard_name_is_never_replaced(tiny, tmp_path, monkeypatch):
    a = tmp_path / "a"
    _photos(a, seed=12, n=12)
    out = tmp_path / "c"
    _interrupted(tiny, a, out, monkeypatch, after_batches=2)
    notes = out / "shards" / "shard-000002.parquet"
    notes.write_text("a user's notes")
    with pytest.raises(
        CollectionFolderError, match=r"shard-000002\.parquet was not written by this collection"
    ):
        _embed(tiny, a, out)
    assert notes.read_text() == "a user's notes"


def test_a_symlinked_shards_folder_is_refused_and_its_target_untouched(tiny, tmp_path, monkeypatch):
    a = tmp_path / "a"
    _photos(a, seed=13)
    out = tmp_path / "c"
    _interrupted(tiny, a, out, monkeypatch, after_batches=2)
    target = tmp_path / "elsewhere"
    shutil.move(out / "shards", target)
    (target / "shard-000005.parquet").write_text("a user's file")
    (target / "mine.txt").write_text("a user's file")
    os.symlink(target, out / "shards")
    with pytest.raises(CollectionFolderError, match="symbolic link"):
        _embed(tiny, a, out)
    assert sorted(p.name for p in target.iterdir()) == [
        "mine.txt", "shard-000000.parquet", "shard-000005.parquet"
    ]  # fmt: skip


def test_a_users_file_named_like_a_temporary_keeps_the_folder_foreign(tiny, made, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / ".blipviz-tmp-notes.txt").write_text("a user's notes")
    with pytest.raises(CollectionFolderError, match="not a blipviz collection"):
        _embed(tiny, [str(p) for p in made[1]], out)
    assert (out / ".blipviz-tmp-notes.txt").read_text() == "a user's notes"


def test_a_folder_that_cannot_be_written_is_a_collection_folder_error(tiny, made, tmp_path, monkeypatch):
    import tempfile

    def refused(*args, **kwargs):
        raise PermissionError(13, "Permission denied", kwargs.get("dir"))

    real = os.open

    def no_lock(path, *args, **kwargs):
        if str(path).endswith(".blipviz-lock"):
            raise PermissionError(13, "Permission denied", str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", refused)
    with pytest.raises(CollectionFolderError, match="cannot write"):
        _embed(tiny, [str(p) for p in made[1]], tmp_path / "c")
    monkeypatch.undo()
    monkeypatch.setattr(os, "open", no_lock)
    with pytest.raises(CollectionFolderError, match="cannot create or lock") as err:
        _embed(tiny, [str(p) for p in made[1]], tmp_path / "d")
    assert isinstance(err.value, BlipvizError)


def test_a_part_opens_a_collection_as_the_net_it_wraps(tiny, made):
    import blipviz

    part = blipviz.load_part("ImageEncoder", "tiny-random")
    c = Collection.open(made[0], model=part)  # its image weights are checked against the manifest
    assert c.ids == Collection.open(made[0]).ids
    with pytest.raises(blipviz.MissingPartError):  # a query needs the text weights the part lacks
        c.search("a photo", k=2)


def test_an_unknown_ray_option_is_refused_before_the_folder_is_made(tiny, made, tmp_path):
    with pytest.raises(BlipvizError, match="unknown engine='ray' option 'concurrenc'"):
        embed_collection(tiny, [str(p) for p in made[1]], tmp_path / "c", engine="ray", concurrenc=2)
    assert not (tmp_path / "c").exists()


def test_the_manifest_records_who_made_the_folder(tiny, made):
    import datetime

    import torch
    import transformers

    made_by = _manifest(made[0])["provenance"]
    assert made_by["torch"] == torch.__version__ and made_by["transformers"] == transformers.__version__
    assert made_by["device"] == "cpu" and made_by["dtype"] == "float32"
    assert datetime.datetime.fromisoformat(made_by["date"]).tzinfo is not None


def test_query_by_example_ranks_by_image_image_cosine(tiny, made):
    from PIL import Image

    c = Collection.open(made[0], tiny)
    example = Image.open(made[1][2])
    found = c.search(images=[example], k=3)
    emb = np.asarray(c.embeddings)
    query = tiny.encode_images([example]).embeddings.numpy()[0]
    best = np.argsort(-(emb @ query), kind="stable")[:3]
    assert found["image_index"].tolist() == best.tolist() and found["image"].iloc[0] == str(made[1][2])
    assert found["itm"].isna().all()  # no text to match: the default rerank re-scores none
    np.testing.assert_allclose(found["cosine"].to_numpy(), (emb @ query)[best], atol=1e-5)
    with pytest.raises(BlipvizError, match="rerank scores candidates with the ITM head"):
        c.search(images=[example], k=3, rerank=2)
    with pytest.raises(BlipvizError, match="one text per image"):
        c.search(["a", "b"], images=[example], k=3, rerank=2)


def test_an_example_with_a_text_reranks_by_itm_against_the_text(tiny, made, caplog):
    from PIL import Image

    c = Collection.open(made[0], tiny)
    example = Image.open(made[1][0])
    with caplog.at_level("WARNING", logger="blipviz"):
        both = c.search("a photo", images=[example], k=4, rerank=4)
        c.search("a photo", images=[example], k=4, rerank=4)
    suggestions = [r for r in caplog.records if "keep_states=True" in r.getMessage()]
    assert len(suggestions) == 1  # said once per collection
    cosine_order = c.search(images=[example], k=4)
    assert set(both["image"]) == set(cosine_order["image"])  # the candidates come from the image example
    itm = tiny.itm_scores([Image.open(p) for p in both["image"]], ["a photo"]).values[:, 0]
    np.testing.assert_allclose(both["itm"].to_numpy(), itm, atol=1e-5)
