"""Storage errors: what an engine raises when it cannot do what it was asked.

``StorageFull`` means the engine ran out of room (LMDB's map is full): the
write that hit it, and every other write of the same turn, was rolled back,
so nothing of that turn may be acknowledged. ``StorageError`` covers the rest:
the engine was misused (turns not paired, batches of unequal length) or the
underlying store failed. ``require`` is the check that raises it.
"""

from __future__ import annotations


class StorageError(Exception):
    """The storage engine could not complete an operation."""


class StorageFull(StorageError):
    """The store has no room left; the current turn's writes were rolled back."""


def require(condition: bool, message: str) -> None:
    """Check a caller's side of the storage contract; stays on under ``python -O``."""
    if not condition:
        raise StorageError(message)
