"""Storage engines behind one interface (``zkv.storage.base.Storage``).

``open_storage`` picks the engine from the node's options: no data directory
means the in-memory engine, a directory means LMDB in it.
"""

from __future__ import annotations

import os

from zkv.storage.base import Cursor, Storage
from zkv.storage.errors import StorageError, StorageFull
from zkv.storage.lmdb_engine import LmdbStorage
from zkv.storage.memory import MemoryStorage

__all__ = [
    "Cursor",
    "LmdbStorage",
    "MemoryStorage",
    "Storage",
    "StorageError",
    "StorageFull",
    "open_storage",
]


def open_storage(data_dir: str | None) -> Storage:
    """MemoryStorage when ``data_dir`` is None, else LmdbStorage in that directory."""
    if data_dir is None:
        return MemoryStorage()
    os.makedirs(data_dir, exist_ok=True)
    return LmdbStorage(data_dir)
