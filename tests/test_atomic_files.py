"""The one implementation of atomic writes, locks and folder markers that the feature cache and the
collections share (blipviz/store/_atomic.py)."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from blipviz.store._atomic import (
    TEMP_PREFIX,
    is_orphan,
    lock_file,
    new_file_mode,
    read_marker,
    umask,
    write_atomically,
    write_marker,
)


def test_the_cache_and_the_collections_write_through_it():
    import blipviz.collection.shards as shards
    import blipviz.store.cache as cache

    source = Path(cache.__file__).read_text() + Path(shards.__file__).read_text()
    assert "os.umask" not in source and "mkstemp(dir=path.parent" not in source
    assert "fcntl" not in source  # locks in one place
    assert shards.TEMP_PREFIX == TEMP_PREFIX


def test_writes_from_threads_never_touch_the_umask(tmp_path, monkeypatch):
    def toggled(*args):
        raise AssertionError("os.umask called: not thread-safe")

    monkeypatch.setattr(os, "umask", toggled)
    errors: list[BaseException] = []

    def writer(i: int) -> None:
        try:
            for j in range(20):
                write_atomically(tmp_path / f"f{i}.txt", lambda tmp, j=j: Path(tmp).write_text(str(j)))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f0.txt", "f1.txt", "f2.txt", "f3.txt"]
    for p in tmp_path.iterdir():
        assert p.read_text() == "19"
        assert p.stat().st_mode & 0o777 == 0o666 & ~umask()  # as open() makes them, not mkstemp's 0o600


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "sub" / "a.json"
    write_atomically(target, lambda tmp: Path(tmp).write_text("old"))

    def half(tmp: str) -> None:
        Path(tmp).write_text("ne")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomically(target, half)
    assert target.read_text() == "old"
    assert [p.name for p in target.parent.iterdir()] == ["a.json"]


def test_a_folder_error_is_raised_as_the_caller_names_it(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")

    class Named(Exception):
        pass

    with pytest.raises(Named, match="cannot"):
        write_atomically(blocker / "x", lambda tmp: None, folder_error=lambda exc: Named(f"cannot: {exc}"))
    with pytest.raises(OSError):
        write_atomically(blocker / "x", lambda tmp: None)


@pytest.mark.skipif(os.name != "posix", reason="advisory locks are fcntl's")
def test_a_live_writer_s_temporary_is_not_an_orphan(tmp_path):
    seen: dict[str, bool] = {}

    def write(tmp: str) -> None:
        seen["live"] = is_orphan(Path(tmp))
        Path(tmp).write_text("x")

    write_atomically(tmp_path / "a", write, prefix=f"{TEMP_PREFIX}t-")
    assert seen == {"live": False}
    left = tmp_path / f"{TEMP_PREFIX}dead.part"
    left.write_text("left by a killed writer")
    assert is_orphan(left)
    fd = os.open(left, os.O_RDONLY)
    try:
        assert lock_file(fd, wait=False)
        other = os.open(left, os.O_RDONLY)
        try:
            assert not lock_file(other, wait=False)  # a second open file description is refused at once
        finally:
            os.close(other)
    finally:
        os.close(fd)


def test_markers_round_trip_and_refuse_another_format_or_version(tmp_path):
    class Refused(Exception):
        pass

    path = tmp_path / "marker.json"
    write_marker(path, {"note": "n"}, format="fmt", version="2")
    assert json.loads(path.read_text()) == {"format": "fmt", "version": "2", "note": "n"}
    kw = {"format": "fmt", "owner": "thing", "error": Refused, "advice": "Give another folder."}
    assert read_marker(path, version="2", **kw)["note"] == "n"
    with pytest.raises(Refused, match=r"has format version '2'; this blipviz reads version 3. Give another"):
        read_marker(path, version="3", **kw)
    with pytest.raises(Refused, match="is not a blipviz thing manifest"):
        read_marker(path, version="2", noun="manifest", **{**kw, "format": "other"})
    path.write_text("{half")
    with pytest.raises(Refused, match=r"thing marker .* is unreadable"):
        read_marker(path, version="2", **kw)


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002, 0o027])
def test_the_umask_is_read_the_same_where_proc_is_missing(mask, monkeypatch):
    """Without /proc (macOS), the umask comes from the mode a new file gets; never looser."""
    real_read_text = Path.read_text

    def no_proc(self, *args, **kwargs):
        if str(self) == "/proc/self/status":
            raise OSError("no /proc here")
        return real_read_text(self, *args, **kwargs)

    previous = os.umask(mask)  # the test's own process-wide setting, restored below
    try:
        monkeypatch.setattr(Path, "read_text", no_proc)
        assert umask() == mask
        assert new_file_mode() == 0o666 & ~mask
    finally:
        os.umask(previous)
