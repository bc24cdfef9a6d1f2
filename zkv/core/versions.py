"""Versions, records and last-writer-wins: what a stored value looks like.

A *version* is 16 bytes: an 8-byte hybrid logical clock stamp followed by an
8-byte writer id, both big-endian, so plain byte comparison orders versions
totally (clock first, writer id as the tie-break). Every replica keeps the
larger version, which makes merging commutative, associative and idempotent.

A *record* is what replicas store and exchange: ``version + kind + payload``.
Replicas never decode payloads; they compare ``record[:16]`` and move bytes.

    +----------------+----------------+------+-----------------+
    | hlc (8 bytes)  | writer (8)     | kind | payload ...     |
    +----------------+----------------+------+-----------------+
    kind: 0 tombstone (no payload), 1 bytes value, 2 str value (UTF-8)

The clock stamp packs wall milliseconds and a logical counter into one integer
(``ms << 16 | counter``): a stamp is ``max(now_ms << 16, last + 1)`` and
observing a stamp moves ``last`` past it, so a coordinator never issues a
version below one it has seen.
"""

from __future__ import annotations

VERSION_BYTES = 16
HLC_LOGICAL_BITS = 16
KIND_TOMBSTONE = 0
KIND_BYTES = 1
KIND_STR = 2
_KINDS = (KIND_TOMBSTONE, KIND_BYTES, KIND_STR)
RECORD_BYTES_MIN = VERSION_BYTES + 1
ZERO_VERSION = bytes(VERSION_BYTES)


class HybridLogicalClock:
    """Issues strictly increasing versions for one writer.

    The wall time comes in as an argument: this object reads no clock.
    """

    __slots__ = ("writer_id", "_writer_suffix", "last")

    def __init__(self, writer_id: int) -> None:
        if not 0 <= writer_id < 1 << 64:
            raise ValueError("writer_id must fit in 64 bits")
        self.writer_id = writer_id
        self._writer_suffix = writer_id.to_bytes(8, "big")
        self.last = 0

    def stamp(self, now_ms: int) -> int:
        candidate = now_ms << HLC_LOGICAL_BITS
        self.last = candidate if candidate > self.last else self.last + 1
        return self.last

    def next_version(self, now_ms: int) -> bytes:
        return self.stamp(now_ms).to_bytes(8, "big") + self._writer_suffix

    def observe(self, version: bytes) -> None:
        """Move the clock past a version seen on the wire."""
        seen = int.from_bytes(version[:8], "big")
        if seen > self.last:
            self.last = seen


def version_wall_ms(version: bytes) -> int:
    return int.from_bytes(version[:8], "big") >> HLC_LOGICAL_BITS


def encode_value(version: bytes, value: bytes | str | None) -> bytes:
    """Build a record; ``None`` makes a tombstone."""
    if value is None:
        return version + b"\x00"
    if isinstance(value, str):
        return version + b"\x02" + value.encode("utf-8")
    return version + b"\x01" + bytes(value)


def decode_value(record: bytes) -> bytes | str | None:
    """The value a record carries, as the type that was written; None for a tombstone."""
    kind = record[VERSION_BYTES]
    if kind == KIND_STR:
        # Replicas refuse str records that are not UTF-8; "replace" only guards against a
        # record that got past that, so that reading it cannot crash a node.
        return record[VERSION_BYTES + 1:].decode("utf-8", "replace")
    if kind == KIND_BYTES:
        return record[VERSION_BYTES + 1:]
    return None


def is_tombstone(record: bytes) -> bool:
    return record[VERSION_BYTES] == KIND_TOMBSTONE


def record_is_valid(record: object) -> bool:
    """Shape check for records arriving from the wire."""
    if not isinstance(record, bytes) or len(record) < RECORD_BYTES_MIN:
        return False
    kind = record[VERSION_BYTES]
    if kind == KIND_TOMBSTONE:
        return len(record) == RECORD_BYTES_MIN
    return kind in _KINDS


def newer(a: bytes | None, b: bytes | None) -> bytes | None:
    """Last-writer-wins merge of two records (either may be missing)."""
    if a is None:
        return b
    if b is None:
        return a
    return a if a[:VERSION_BYTES] >= b[:VERSION_BYTES] else b
