"""Anti-entropy: find and repair differences between replicas of a partition.

A partition's digest is a flat hash tree one level deep: ``AE_BUCKETS``
buckets, the key's hash choosing the bucket, each bucket the XOR of an 8-byte
hash of (key, version) over its records. XOR makes the digest independent of
scan order and engine, so replicas compare without sorting anything.

Theory of operation (``zkv.core.node`` sends the messages)
-------------------
    A: AeDigest(p, buckets)      ->  B: buckets differ? list (key, version) in them
    A <- AeKeys(differing buckets, key/versions)
    A: AeRecords(records B lacks or has older, keys A wants) -> B applies, answers
    A <- AeRecords(records A wanted)                          A applies

Every message is bounded (buckets per round, keys per listing, bytes per
record batch); what does not fit is found again on a later round. Only
replicas that hold complete copies at the same epoch take part.

Tombstones are purged by the partition's primary: it lists tombstones older
than the grace period, asks every replica whether it holds them (or newer),
and only when all say yes tells all of them to delete exactly those records.
"""

from __future__ import annotations

from hashlib import blake2b
from zlib import crc32

from zkv.core.versions import VERSION_BYTES

AE_BUCKETS = 32
AE_INTERVAL_MS = 1000
AE_PARTITIONS_PER_ROUND = 4
AE_BUCKETS_PER_ROUND = 8
AE_KEYS_MAX = 4000
AE_BYTES_MAX = 4 << 20

TOMBSTONE_GRACE_MS = 3_600_000
TOMBSTONE_INTERVAL_MS = 10_000
TOMBSTONES_PER_ROUND = 1000


def bucket_of(key: bytes) -> int:
    """The bucket a key belongs to: a function of the key alone, so every version of it lands there."""
    return crc32(key) % AE_BUCKETS


class DigestBuilder:
    """Accumulates a partition digest from (key, record) pairs, chunk by chunk."""

    __slots__ = ("buckets",)

    def __init__(self) -> None:
        self.buckets = [0] * AE_BUCKETS

    def add(self, pairs: list[tuple[bytes, bytes]]) -> None:
        buckets = self.buckets
        for key, record in pairs:
            digest = blake2b(key + b"\x00" + record[:VERSION_BYTES], digest_size=8).digest()
            buckets[crc32(key) % AE_BUCKETS] ^= int.from_bytes(digest, "big")

    def to_bytes(self) -> bytes:
        return b"".join(value.to_bytes(8, "big") for value in self.buckets)


def differing_buckets(mine: bytes, theirs: bytes, limit: int = AE_BUCKETS_PER_ROUND) -> list[int]:
    if len(mine) != len(theirs):
        return list(range(min(AE_BUCKETS, limit)))
    found = []
    for index in range(AE_BUCKETS):
        if mine[index * 8:(index + 1) * 8] != theirs[index * 8:(index + 1) * 8]:
            found.append(index)
            if len(found) >= limit:
                break
    return found


def compare_listing(mine: dict[bytes, bytes], their_keys: list[bytes], their_versions: list[bytes]
                    ) -> tuple[list[bytes], list[bytes]]:
    """Given my records and their (key, version) listing of the same buckets:
    (keys whose record I should send them, keys I want from them)."""
    send: list[bytes] = []
    want: list[bytes] = []
    theirs = dict(zip(their_keys, their_versions))
    for key, record in mine.items():
        version = theirs.get(key)
        if version is None or version < record[:VERSION_BYTES]:
            send.append(key)
    for key, version in theirs.items():
        record = mine.get(key)
        if record is None or record[:VERSION_BYTES] < version:
            want.append(key)
    return send, want
