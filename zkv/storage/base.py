"""The storage interface: what a node's core may ask of its engine.

Two engines implement it: ``MemoryStorage`` (sortedcontainers, for tests, the
simulator and ``--memory``) and ``LmdbStorage`` (durable, under ``--data-dir``).

Records are opaque bytes whose first 16 bytes are the version
(see ``zkv.core.versions``); engines compare ``record[:16]`` and nothing else.
Keys are bytes; a partition is an int in ``[0, partitions)``.

Group commit: the node shell calls ``begin_turn()`` before it feeds one turn of
the event loop to the core and ``end_turn()`` after. Every write made in
between lands in one transaction that ``end_turn()`` makes durable (synced)
before it returns; nothing is acknowledged before that. Reads inside a turn see
the turn's own writes.
"""

from __future__ import annotations

from typing import Protocol

# A scan cursor is opaque to callers: pass back what ``scan`` returned.
Cursor = bytes


class Storage(Protocol):
    durable: bool

    def begin_turn(self) -> None: ...

    def end_turn(self) -> None:
        """Commit (and sync, for durable engines) everything written this turn."""

    def get(self, partition: int, key: bytes) -> bytes | None: ...

    def apply(self, partitions: list[int], keys: list[bytes], records: list[bytes]) -> int:
        """Put each record unless the stored one has a version >= its version.

        Returns how many were written. Equal versions are not rewritten, so
        applying the same batch twice changes nothing.
        """

    def scan(
        self, partition: int, after: Cursor | None, items_max: int, bytes_max: int
    ) -> tuple[list[tuple[bytes, bytes]], Cursor | None]:
        """Up to ``items_max`` (key, record) pairs of a partition after the cursor.

        Stops early once the returned records reach ``bytes_max`` (at least one
        pair is returned when any is left). The second element is the cursor for
        the next call, or None when the partition is exhausted.
        """

    def delete_if_version(self, partition: int, keys: list[bytes], records: list[bytes]) -> int:
        """Delete each key whose stored record equals the given record exactly.

        Used to purge tombstones that every replica is known to hold.
        """

    def drop_partition(self, partition: int, items_max: int) -> bool:
        """Delete up to ``items_max`` keys of a partition; True once it is empty."""

    def count(self, partition: int | None = None) -> int:
        """Records (tombstones included) in one partition, or in all of them."""

    def partitions(self) -> list[int]:
        """Partitions that hold at least one record, ascending."""

    def meta_get(self, name: str) -> bytes | None: ...

    def meta_put(self, name: str, value: bytes) -> None:
        """Small named blobs for node state (config, acceptor state); part of the turn."""

    def stats(self) -> dict[str, int]:
        """Engine counters: at least ``commits`` (durable transactions) and ``records``."""

    def close(self) -> None: ...
