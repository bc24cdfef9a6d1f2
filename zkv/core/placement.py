"""Placement: which partition a key lives in, and which nodes should own it.

``partition_of(key)`` is a stable hash of the key bytes scaled to the partition
count: CRC-32 mixed by a multiply, identical in every process, machine and
Python version (never the built-in ``hash()``, which is salted per process).

``rank_owners(partition, node_ids, replication)`` is rendezvous
(highest-random-weight) hashing: every node gets a weight for the partition and
the ``replication`` heaviest are the owners, heaviest first. Adding or removing
one node changes the owners only of partitions where that node is (or was) in
the top ``replication``.
"""

from __future__ import annotations

from hashlib import blake2b
from zlib import crc32

PARTITIONS_DEFAULT = 64
REPLICATION_DEFAULT = 3
PARTITIONS_MAX = 65536  # partition numbers are stored in two bytes


def key_bytes(key: str | bytes) -> bytes:
    """The canonical bytes of a key: UTF-8 for str, as-is for bytes."""
    if isinstance(key, str):
        try:
            return key.encode("utf-8")
        except UnicodeEncodeError:
            raise TypeError("key is not valid Unicode text (it holds a lone surrogate)") from None
    if isinstance(key, (bytes, bytearray, memoryview)):
        return bytes(key)
    raise TypeError(f"key must be str or bytes, not {type(key).__name__}")


def partition_of(key: bytes, partitions: int) -> int:
    """CRC-32 of the key, mixed by a golden-ratio multiply, scaled to [0, partitions).

    CRC-32 is stable everywhere and costs a tenth of a cryptographic hash, which
    matters because every op computes it on the client and on each replica. The
    multiply spreads every bit of the CRC into the high bits the range reduction
    uses, so structured key sets do not fall into the same few partitions.
    """
    return (((crc32(key) * 0x9E3779B1) & 0xFFFFFFFF) * partitions) >> 32


def rendezvous_weight(partition: int, node_id: str) -> int:
    material = b"%d\x00" % partition + node_id.encode("utf-8")
    return int.from_bytes(blake2b(material, digest_size=8).digest(), "big")


def rank_owners(partition: int, node_ids: list[str] | tuple[str, ...], replication: int) -> tuple[str, ...]:
    """The top ``replication`` nodes for a partition, heaviest first (ties by id)."""
    ranked = sorted(node_ids, key=lambda node_id: (-rendezvous_weight(partition, node_id), node_id))
    return tuple(ranked[:replication])
