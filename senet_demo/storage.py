"""Where the app keeps what it computes, and how it writes and reads it back: one home for the cache
folder, the atomic write, the checked read and the in-memory LRU cache that the engine, the gallery
store, search and weights share.

Everything stored here the app can compute again, so a stored file is never trusted: ``read_checked``
validates what it reads and treats a damaged file (empty, truncated, wrong shape, NaN, a folder in its
place) as missing, logging its path; ``write_or_warn`` turns a folder that cannot be written (read-only,
full) into a logged warning, and the caller keeps the value in memory instead. Log lines stay English;
``writable_problem``, which people read in the app, is an ``i18n.Message``.
"""
from __future__ import annotations

import errno
import logging
import os
import tempfile
import threading
import time
from collections import OrderedDict
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, TypeVar

from .i18n import Message

log = logging.getLogger(__name__)
T = TypeVar("T")


def cache_dir(kind: str) -> Path:
    """``<HF_HOME>/senet-explorer/<kind>``: beside the Hugging Face cache, so it survives restarts and
    is shared by checkouts. Read when called (not at import), so a test's ``HF_HOME`` applies."""
    from huggingface_hub.constants import HF_HOME

    return Path(HF_HOME) / "senet-explorer" / kind


@contextmanager
def atomic_write(path: Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block succeeds, the file is flushed to disk and
    renamed onto ``path``, so a reader sees the old file or the new one, never half of one. On any
    failure the temporary file is removed and the error propagates.

    The temporary name is unique per writer: two requests may store the same entry at once. ``suffix``
    keeps the extension a writer insists on (``np.savez`` appends ``.npz`` to a name without it).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(handle)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_folder(path.parent)  # the rename itself survives a power cut
    finally:
        tmp.unlink(missing_ok=True)


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems cannot sync a folder; the file itself is already on disk
        pass
    finally:
        os.close(fd)


def read_checked(path: Path, read: Callable[[Path], T], check: Callable[[T], str | None] | None = None,
                 what: str = "cache entry") -> T | None:
    """``read(path)`` for a file the app wrote itself, or None when it is absent or damaged.

    ``check(value)`` returns what is wrong with a value that was read (a shape, a dtype, a NaN, another
    model's identity) or None. Whatever fails -- the read or the check -- is logged with the path and the
    file is removed, so the caller recomputes the value and stores it afresh; a folder in the file's
    place is left alone (it is logged, and the caller's write will report it).
    """
    path = Path(path)
    if not path.exists():
        return None
    if not path.is_file():
        log.warning("Ignoring %s %s: it is not a file; remove it so the value can be stored again", what, path)
        return None
    try:
        value = read(path)
        problem = check(value) if check is not None else None
    except Exception as err:  # readers fail in many ways on a damaged file (EOFError, BadZipFile, RuntimeError…)
        problem = f"unreadable ({type(err).__name__}: {err})"
    if problem is None:
        return value
    log.warning("Discarding damaged %s %s: %s; it will be recomputed", what, path, problem)
    try:
        path.unlink()
    except OSError:
        pass
    return None


def write_or_warn(path: Path, write: Callable[[Path], None], suffix: str = "", what: str = "cache entry") -> bool:
    """Store a recomputable value with ``atomic_write``; on an ``OSError`` (read-only folder, full disk,
    a folder in the file's place) log the path and return False instead of failing the request."""
    try:
        with atomic_write(path, suffix=suffix) as tmp:
            write(tmp)
        return True
    except OSError as err:
        log.warning("Could not store %s %s (%s); it is kept in memory only", what, path, _reason(err))
        return False


def writable_problem(folder: Path) -> Message | None:
    """Why ``folder`` cannot hold the app's stored files (created if missing), or None when it can: a
    probe file is written, synced and removed, as a real entry would be."""
    folder = Path(folder)
    try:
        with atomic_write(folder / ".write-probe") as tmp:
            tmp.write_bytes(b"probe")
        (folder / ".write-probe").unlink()
    except OSError as err:
        return Message("storage.unwritable", folder=str(folder), reason=_reason(err))
    return None


def remove_stale_temporaries(folder: Path, max_age_s: float = 3600.0) -> int:
    """Remove temporary files that writers killed mid-write (a crash, a restart) left under ``folder``;
    recent ones may belong to a write in progress and are kept. Returns how many were removed."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    cutoff, removed = time.time() - max_age_s, 0
    for tmp in folder.rglob(".*.tmp*"):
        try:
            if tmp.is_file() and tmp.stat().st_mtime < cutoff:
                tmp.unlink()
                removed += 1
        except OSError:
            continue
    return removed


def _reason(err: OSError) -> str:
    if err.errno == errno.ENOSPC:
        return Message("storage.disk_full")
    if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return Message("storage.read_only")
    return err.strerror or type(err).__name__  # the system's own words


class LRUCache:
    """A small thread-safe LRU map with hit/miss counters."""

    def __init__(self, max_entries: int):
        self.max_entries = max_entries
        self._items: OrderedDict = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key):
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                self.hits += 1
                return self._items[key]
            self.misses += 1
            return None

    def put(self, key, value) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.max_entries:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)
