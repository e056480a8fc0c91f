"""Files written whole or not at all, and the locks that keep writers apart: one implementation for
the feature cache (:mod:`blipviz.store.cache`) and the collection folders
(:mod:`blipviz.collection.shards`).

- :func:`write_atomically` writes to a temporary in the target's folder (``.blipviz-tmp-*.part``),
  holds an exclusive advisory lock on it while writing, gives it the mode ``open()`` would have
  given a new file, and renames it into place: readers see the old file or the new one, never half
  of one; a failed write removes its temporary, a killed one leaves it unlocked.
- :func:`is_orphan` tells a killed writer's temporary (no one holds its lock) from a live one's.
- :func:`lock_file` takes an exclusive advisory lock, waiting or not.
- :func:`umask` reads the process's umask without changing it: toggling it with ``os.umask`` is not
  thread-safe (another thread's files would be created under the toggled value).
- :func:`write_marker` / :func:`read_marker`: the JSON file that makes a folder blipviz's (the
  cache's ``blipviz-cache.json``, a collection's manifest), with its ``format`` and ``version``
  checked on every read.

Locks are ``fcntl.flock`` locks: released when the file is closed or its process dies; nothing is
locked where the platform has no ``fcntl``.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = [
    "TEMP_PREFIX",
    "is_orphan",
    "lock_file",
    "new_file_mode",
    "read_marker",
    "umask",
    "write_atomically",
    "write_marker",
]

#: The start of every temporary blipviz writes; nothing else with this prefix is ever removed by a
#: cache, and a collection removes only its own (``.blipviz-tmp-<uid>-*.part``).
TEMP_PREFIX = ".blipviz-tmp-"


def umask() -> int:
    """The process's umask, read without changing it: from ``/proc/self/status`` (Linux), else from
    the mode a new file gets (macOS and others), else 0o077 (files readable by their owner only:
    never looser than the user asked)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    return _umask_of_a_new_file()


def _umask_of_a_new_file() -> int:
    """The umask as the bits a new file of mode 0o777 lost; 0o077 when no file can be made."""
    try:
        folder = tempfile.mkdtemp(prefix="blipviz-umask-")  # mode 0o700 whatever the umask
    except OSError:
        return 0o077
    probe = Path(folder) / "probe"
    try:
        fd = os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o777)
        try:
            mode = os.fstat(fd).st_mode & 0o777
        finally:
            os.close(fd)
        return 0o777 & ~mode
    except OSError:
        return 0o077
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()
        with contextlib.suppress(OSError):
            os.rmdir(folder)


def new_file_mode() -> int:
    """The mode ``open()`` gives a new file: 0o666 less the process's umask (mkstemp's 0o600 would
    hide the files from the folder's other users)."""
    return 0o666 & ~umask()


def lock_file(fd: int, *, wait: bool = True) -> bool:
    """An exclusive advisory lock on an open file; with ``wait=False``, ``False`` at once when another
    holds it. ``True`` once held (and where the platform has no ``fcntl``: no lock)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        return False
    except OSError:
        if wait:
            raise
        return False
    return True


def is_orphan(path: Path) -> bool:
    """Whether a temporary was left by a writer that is gone (no process holds its lock); where the
    platform has no ``fcntl``, every temporary is."""
    try:
        import fcntl  # noqa: F401
    except ImportError:  # pragma: no cover - Windows: a temporary may be removed at any time
        return True
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        return lock_file(fd, wait=False)
    finally:
        os.close(fd)


def write_atomically(
    path: Path,
    write: Callable[[str], object],
    *,
    prefix: str = TEMP_PREFIX,
    folder_error: Callable[[OSError], BaseException] | None = None,
) -> None:
    """``write(temporary_path)`` then rename into ``path``.

    Parameters
    ----------
    path : Path
        The file to write; its folder is created if missing.
    write : callable
        Writes the whole file at the path it is given.
    prefix : str, default ``TEMP_PREFIX``
        The start of the temporary's name (it ends with mkstemp's random part and ``.part``).
    folder_error : callable, optional
        Turns an ``OSError`` creating the folder or the temporary into the exception raised; by
        default the ``OSError`` itself. Errors of ``write`` and of the rename are raised as they are.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=".part")
    except OSError as exc:
        if folder_error is None:
            raise
        raise folder_error(exc) from None
    try:
        lock_file(fd)  # held while writing: a live writer's temporary is never taken for an orphan
        write(tmp)
        os.chmod(tmp, new_file_mode())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    finally:
        os.close(fd)


def write_marker(
    path: Path,
    fields: dict[str, Any],
    *,
    format: str,
    version: str,
    prefix: str = TEMP_PREFIX,
    folder_error: Callable[[OSError], BaseException] | None = None,
) -> None:
    """Write a folder's marker atomically: JSON of ``format``, ``version``, then ``fields``."""
    text = json.dumps({"format": format, "version": version, **fields}, indent=1) + "\n"
    write_atomically(path, lambda tmp: Path(tmp).write_text(text), prefix=prefix, folder_error=folder_error)


def read_marker(
    path: Path,
    *,
    format: str,
    version: str,
    owner: str,
    error: type[Exception],
    advice: str,
    noun: str = "marker",
) -> dict[str, Any]:
    """A folder's marker, read and checked.

    Parameters
    ----------
    path : Path
        The marker file (it exists).
    format, version : str
        What its ``format`` must be, and the ``version`` this blipviz reads.
    owner : str
        What the folder is, in messages: ``"feature cache"``, ``"collection"``.
    error : type
        The exception raised.
    advice : str
        What to do about another version, ending the message.
    noun : str, default "marker"
        What the file is called in messages (a collection's is its ``"manifest"``).

    Raises
    ------
    error
        The file cannot be read, is not JSON, is not a marker of ``format``, or of another version.
    """
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise error(f"{owner} {noun} {str(path)!r} is unreadable: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != format:
        raise error(f"{str(path)!r} is not a blipviz {owner} {noun}")
    if str(data.get("version")) != version:
        raise error(
            f"{owner} {str(path.parent)!r} has format version {data.get('version')!r}; this blipviz "
            f"reads version {version}. {advice}"
        )
    return data
