"""Where the app keeps what it computes, and how it writes it: one home for the cache folder, the
atomic write and the in-memory LRU cache that the engine, the gallery store, search and weights share.
"""
from __future__ import annotations

import os
import tempfile
import threading
from collections import OrderedDict
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


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
    finally:
        tmp.unlink(missing_ok=True)


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
