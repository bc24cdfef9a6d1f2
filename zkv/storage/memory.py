"""The in-memory storage engine: ordered maps per partition, nothing on disk.

Used by tests, the simulator and ``zkv node --memory``. Each partition is a
``SortedDict`` (key -> record) so a partition scan is a slice of its sorted
keys; partitions with no record are removed, so ``partitions()`` is the keys of
one dict. Turns exist only to be counted: ``stats()["commits"]`` counts turns
(and writes outside a turn) that changed something, the same way the durable
engine counts its transactions, so tests can check one commit per batch.
"""

from __future__ import annotations

from sortedcontainers import SortedDict

from zkv.core.versions import VERSION_BYTES
from zkv.storage.base import Cursor
from zkv.storage.errors import require


class MemoryStorage:
    durable = False

    def __init__(self) -> None:
        self._partitions: dict[int, SortedDict] = {}
        self._meta: dict[str, bytes] = {}
        self._in_turn = False
        self._turn_changed = False
        self._commits = 0

    # -- turns ---------------------------------------------------------------

    def begin_turn(self) -> None:
        require(not self._in_turn, "begin_turn called twice without end_turn")
        self._in_turn = True
        self._turn_changed = False

    def end_turn(self) -> None:
        require(self._in_turn, "end_turn called without begin_turn")
        self._in_turn = False
        if self._turn_changed:
            self._commits += 1
            self._turn_changed = False

    def _changed(self) -> None:
        """Count a commit now (outside a turn) or at end_turn (inside one)."""
        if self._in_turn:
            self._turn_changed = True
        else:
            self._commits += 1

    # -- records -------------------------------------------------------------

    def get(self, partition: int, key: bytes) -> bytes | None:
        data = self._partitions.get(partition)
        if data is None:
            return None
        return data.get(key)

    def apply(self, partitions: list[int], keys: list[bytes], records: list[bytes]) -> int:
        require(
            len(partitions) == len(keys) == len(records),
            "apply needs partitions, keys and records of equal length",
        )
        maps = self._partitions
        # A key already present keeps its place in the sorted key list, so its
        # record is replaced with the plain dict setter (no SortedDict method call).
        replace = dict.__setitem__
        version_bytes = VERSION_BYTES
        written = 0
        current_partition = None
        data = None
        for partition, key, record in zip(partitions, keys, records):
            if partition != current_partition:
                data = maps.get(partition)
                if data is None:
                    data = maps[partition] = SortedDict()
                current_partition = partition
            stored = data.get(key)
            if stored is None:
                data[key] = record
                written += 1
            elif stored[:version_bytes] < record[:version_bytes]:
                replace(data, key, record)
                written += 1
        if written:
            self._changed()
        return written

    def scan(
        self, partition: int, after: Cursor | None, items_max: int, bytes_max: int
    ) -> tuple[list[tuple[bytes, bytes]], Cursor | None]:
        require(items_max >= 1, "scan needs items_max >= 1")
        data = self._partitions.get(partition)
        if data is None:
            return [], None
        start = 0 if after is None else data.bisect_right(after)
        pairs = []
        records_bytes = 0
        for key in data.keys()[start:start + items_max]:
            record = data[key]
            pairs.append((key, record))
            records_bytes += len(record)
            if records_bytes >= bytes_max:
                break
        if start + len(pairs) >= len(data):
            return pairs, None
        return pairs, pairs[-1][0]

    def delete_if_version(self, partition: int, keys: list[bytes], records: list[bytes]) -> int:
        require(len(keys) == len(records), "delete_if_version needs keys and records of equal length")
        data = self._partitions.get(partition)
        if data is None:
            return 0
        deleted = 0
        for key, record in zip(keys, records):
            if data.get(key) == record:
                del data[key]
                deleted += 1
        if not data:
            del self._partitions[partition]
        if deleted:
            self._changed()
        return deleted

    def drop_partition(self, partition: int, items_max: int) -> bool:
        require(items_max >= 1, "drop_partition needs items_max >= 1")
        data = self._partitions.get(partition)
        if data is None:
            return True
        self._changed()
        if len(data) <= items_max:
            del self._partitions[partition]
            return True
        del data.keys()[:items_max]
        return False

    def count(self, partition: int | None = None) -> int:
        if partition is not None:
            data = self._partitions.get(partition)
            return 0 if data is None else len(data)
        return sum(len(data) for data in self._partitions.values())

    def partitions(self) -> list[int]:
        return sorted(self._partitions)

    # -- node state ----------------------------------------------------------

    def meta_get(self, name: str) -> bytes | None:
        return self._meta.get(name)

    def meta_put(self, name: str, value: bytes) -> None:
        self._meta[name] = value
        self._changed()

    def stats(self) -> dict[str, int]:
        return {
            "commits": self._commits,
            "records": self.count(),
            "partitions": len(self._partitions),
        }

    def close(self) -> None:
        # Nothing to release: the maps die with this object. A "restart" in the
        # simulator is a new MemoryStorage, which is what losing memory means.
        return None
