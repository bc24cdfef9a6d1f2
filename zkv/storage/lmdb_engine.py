"""The durable storage engine: LMDB under ``--data-dir``, one transaction per turn.

Layout: one LMDB environment with three named databases.

    records   partition (2 bytes, big-endian) + key -> record
    longkeys  stored key of a long key -> the full key
    meta      name (UTF-8) -> blob

A partition is therefore one contiguous range of ``records``. LMDB keys are at
most 511 bytes but zkv keys may be longer, so a key over
``KEY_INLINE_BYTES_MAX`` is stored as ``prefix + key[:400] + blake2b-128(key)``
(418 bytes, a length no inline key can have) and its full key is kept in
``longkeys`` so scans return the real key. Among long keys that share their
first 400 bytes, scan order is the digest's order rather than the key's; the
scan cursor is always a real key, so callers never see stored keys.
The records live in a named database rather than the unnamed main one because
LMDB keeps the names of the named databases as keys of the main one.

Theory of operation (group commit):

    begin_turn()                 nothing happens yet
    get / scan / count ...       read transaction (or the turn's write one)
    first write of the turn      opens THE write transaction of the turn
    further reads and writes     use it, so the turn reads its own writes
    end_turn()                   commits it: LMDB writes and syncs (sync=True)

A write outside a turn opens its own transaction and commits it before it
returns. A transaction that changed nothing is aborted instead of committed
and is not counted in ``stats()["commits"]``. If a write fails (the map is
full), the turn's transaction is rolled back, every later write of the turn
raises, and ``end_turn`` raises too, so the shell acknowledges nothing of it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from hashlib import blake2b

import lmdb

from zkv.core.versions import VERSION_BYTES
from zkv.storage.base import Cursor
from zkv.storage.errors import StorageError, StorageFull, require

PARTITION_PREFIX_BYTES = 2
PARTITIONS_MAX = 1 << (8 * PARTITION_PREFIX_BYTES)
KEY_INLINE_BYTES_MAX = 400
LONG_KEY_DIGEST_BYTES = 16
LONG_STORED_KEY_BYTES = PARTITION_PREFIX_BYTES + KEY_INLINE_BYTES_MAX + LONG_KEY_DIGEST_BYTES
MAP_SIZE_BYTES_DEFAULT = 64 << 30
RECORDS_DATABASE = b"records"
LONG_KEYS_DATABASE = b"longkeys"
META_DATABASE = b"meta"
DATABASES_MAX = 3


_PREFIXES = [partition.to_bytes(PARTITION_PREFIX_BYTES, "big") for partition in range(1024)]


def partition_prefix(partition: int) -> bytes:
    if 0 <= partition < 1024:
        return _PREFIXES[partition]  # the common case, without building bytes per record
    require(0 <= partition < PARTITIONS_MAX, f"partition {partition} out of range")
    return partition.to_bytes(PARTITION_PREFIX_BYTES, "big")


def stored_key(prefix: bytes, key: bytes) -> bytes:
    """The LMDB key of ``key`` in the partition whose prefix is given."""
    if len(key) <= KEY_INLINE_BYTES_MAX:
        return prefix + key
    digest = blake2b(key, digest_size=LONG_KEY_DIGEST_BYTES).digest()
    return prefix + key[:KEY_INLINE_BYTES_MAX] + digest


class LmdbStorage:
    durable = True

    def __init__(self, path: str, map_size_bytes: int = MAP_SIZE_BYTES_DEFAULT) -> None:
        self.path = path
        self.map_size_bytes = map_size_bytes
        self._environment = lmdb.open(
            path, map_size=map_size_bytes, subdir=True, sync=True, metasync=True,
            max_dbs=DATABASES_MAX,
        )
        require(
            self._environment.max_key_size() >= LONG_STORED_KEY_BYTES,
            f"LMDB max key size {self._environment.max_key_size()} < {LONG_STORED_KEY_BYTES}",
        )
        self._records = self._environment.open_db(RECORDS_DATABASE)
        self._long_keys = self._environment.open_db(LONG_KEYS_DATABASE)
        self._meta = self._environment.open_db(META_DATABASE)
        self._in_turn = False
        self._transaction: lmdb.Transaction | None = None
        self._transaction_changed = False
        self._turn_failure: StorageError | None = None
        self._commits = 0

    # -- turns ---------------------------------------------------------------

    def begin_turn(self) -> None:
        require(not self._in_turn, "begin_turn called twice without end_turn")
        self._in_turn = True

    def end_turn(self) -> None:
        """Commit and sync the turn's transaction; raise if any write of it failed."""
        require(self._in_turn, "end_turn called without begin_turn")
        self._in_turn = False
        failure, self._turn_failure = self._turn_failure, None
        if failure is not None:
            raise type(failure)(f"turn rolled back: {failure}") from failure
        if self._transaction is not None:
            self._commit()

    def _write_transaction(self) -> lmdb.Transaction:
        if self._turn_failure is not None:
            raise type(self._turn_failure)(f"turn already rolled back: {self._turn_failure}")
        if self._transaction is None:
            self._transaction = self._environment.begin(db=self._records, write=True)
            self._transaction_changed = False
        return self._transaction

    @contextmanager
    def _writing(self) -> Iterator[lmdb.Transaction]:
        """The transaction to write in; committed on the way out unless in a turn.

        The body sets ``self._transaction_changed`` when it changed anything.
        """
        transaction = self._write_transaction()
        try:
            yield transaction
        except lmdb.MapFullError as error:
            raise self._roll_back(StorageFull(self._full_message())) from error
        except lmdb.Error as error:
            raise self._roll_back(StorageError(f"LMDB write failed at {self.path}: {error}")) from error
        except BaseException:
            # A caller error (a key that is not bytes, ...): outside a turn
            # nothing may stay half-written; inside one the turn keeps what
            # was applied before it, as the memory engine does.
            if not self._in_turn:
                self._abandon()
            else:
                self._transaction_changed = True
            raise
        if not self._in_turn:
            self._commit()

    @contextmanager
    def _reading(self) -> Iterator[lmdb.Transaction]:
        """The turn's write transaction when there is one, else a read transaction."""
        if self._transaction is not None:
            yield self._transaction
            return
        with self._environment.begin(db=self._records) as transaction:
            yield transaction

    def _commit(self) -> None:
        transaction, self._transaction = self._transaction, None
        if not self._transaction_changed:
            transaction.abort()
            return
        self._transaction_changed = False
        try:
            transaction.commit()
        except lmdb.MapFullError as error:
            raise self._roll_back(StorageFull(self._full_message())) from error
        except lmdb.Error as error:
            raise self._roll_back(StorageError(f"LMDB commit failed at {self.path}: {error}")) from error
        self._commits += 1

    def _abandon(self) -> None:
        transaction, self._transaction = self._transaction, None
        self._transaction_changed = False
        if transaction is not None:
            transaction.abort()

    def _roll_back(self, failure: StorageError) -> StorageError:
        """Abort the write transaction; inside a turn, fail the rest of the turn."""
        self._abandon()
        if self._in_turn:
            self._turn_failure = failure
        return failure

    def _full_message(self) -> str:
        return (
            f"storage full: the LMDB map of {self.map_size_bytes} bytes at {self.path} "
            "has no room; the writes of this turn were rolled back"
        )

    # -- records -------------------------------------------------------------

    def get(self, partition: int, key: bytes) -> bytes | None:
        lmdb_key = stored_key(partition_prefix(partition), key)
        if self._transaction is not None:
            return self._transaction.get(lmdb_key)
        with self._environment.begin(db=self._records) as transaction:
            return transaction.get(lmdb_key)

    def apply(self, partitions: list[int], keys: list[bytes], records: list[bytes]) -> int:
        require(
            len(partitions) == len(keys) == len(records),
            "apply needs partitions, keys and records of equal length",
        )
        if not keys:
            return 0
        version_bytes = VERSION_BYTES
        inline_bytes_max = KEY_INLINE_BYTES_MAX
        long_keys = self._long_keys
        written = 0
        current_partition = None
        prefix = b""
        with self._writing() as transaction:
            get = transaction.get
            put = transaction.put
            for partition, key, record in zip(partitions, keys, records):
                if partition != current_partition:
                    prefix = partition_prefix(partition)
                    current_partition = partition
                if len(key) <= inline_bytes_max:
                    lmdb_key = prefix + key
                    stored = get(lmdb_key)
                    if stored is None or stored[:version_bytes] < record[:version_bytes]:
                        put(lmdb_key, record)
                        written += 1
                    continue
                lmdb_key = stored_key(prefix, key)
                stored = get(lmdb_key)
                if stored is None:
                    put(lmdb_key, key, db=long_keys)
                if stored is None or stored[:version_bytes] < record[:version_bytes]:
                    put(lmdb_key, record)
                    written += 1
            if written:
                self._transaction_changed = True
        return written

    def scan(
        self, partition: int, after: Cursor | None, items_max: int, bytes_max: int
    ) -> tuple[list[tuple[bytes, bytes]], Cursor | None]:
        require(items_max >= 1, "scan needs items_max >= 1")
        prefix = partition_prefix(partition)
        # The smallest LMDB key strictly greater than k is k + b"\x00".
        start = prefix if after is None else stored_key(prefix, after) + b"\x00"
        pairs: list[tuple[bytes, bytes]] = []
        records_bytes = 0
        with self._reading() as transaction:
            cursor = transaction.cursor()
            if not cursor.set_range(start):
                return pairs, None
            for lmdb_key, record in cursor.iternext():
                if lmdb_key[:PARTITION_PREFIX_BYTES] != prefix:
                    return pairs, None
                if len(lmdb_key) == LONG_STORED_KEY_BYTES:
                    key = self._long_key(transaction, lmdb_key)
                else:
                    key = lmdb_key[PARTITION_PREFIX_BYTES:]
                pairs.append((key, record))
                records_bytes += len(record)
                if len(pairs) >= items_max or records_bytes >= bytes_max:
                    break
            else:
                return pairs, None
            # Stopped on a limit with the cursor on the last pair returned.
            if cursor.next() and cursor.key()[:PARTITION_PREFIX_BYTES] == prefix:
                return pairs, pairs[-1][0]
            return pairs, None

    def _long_key(self, transaction: lmdb.Transaction, lmdb_key: bytes) -> bytes:
        key = transaction.get(lmdb_key, db=self._long_keys)
        if key is None:
            raise StorageError(f"long key {lmdb_key[:24].hex()}... has no entry in {LONG_KEYS_DATABASE!r}")
        return key

    def delete_if_version(self, partition: int, keys: list[bytes], records: list[bytes]) -> int:
        require(len(keys) == len(records), "delete_if_version needs keys and records of equal length")
        if not keys:
            return 0
        prefix = partition_prefix(partition)
        deleted = 0
        with self._writing() as transaction:
            for key, record in zip(keys, records):
                lmdb_key = stored_key(prefix, key)
                if transaction.get(lmdb_key) != record:
                    continue
                transaction.delete(lmdb_key)
                if len(lmdb_key) == LONG_STORED_KEY_BYTES:
                    transaction.delete(lmdb_key, db=self._long_keys)
                deleted += 1
            if deleted:
                self._transaction_changed = True
        return deleted

    def drop_partition(self, partition: int, items_max: int) -> bool:
        require(items_max >= 1, "drop_partition needs items_max >= 1")
        prefix = partition_prefix(partition)
        deleted = 0
        with self._writing() as transaction:
            cursor = transaction.cursor()
            positioned = cursor.set_range(prefix)
            while positioned and deleted < items_max:
                lmdb_key = cursor.key()
                if lmdb_key[:PARTITION_PREFIX_BYTES] != prefix:
                    break
                if len(lmdb_key) == LONG_STORED_KEY_BYTES:
                    transaction.delete(lmdb_key, db=self._long_keys)
                # Deleting moves the cursor to the next key (or unpositions it).
                positioned = cursor.delete() and bool(cursor.key())
                deleted += 1
            empty = not positioned or cursor.key()[:PARTITION_PREFIX_BYTES] != prefix
            if deleted:
                self._transaction_changed = True
        return empty

    def count(self, partition: int | None = None) -> int:
        with self._reading() as transaction:
            if partition is None:
                return transaction.stat(self._records)["entries"]
            prefix = partition_prefix(partition)
            cursor = transaction.cursor()
            if not cursor.set_range(prefix):
                return 0
            records = 0
            for lmdb_key in cursor.iternext(keys=True, values=False):
                if lmdb_key[:PARTITION_PREFIX_BYTES] != prefix:
                    break
                records += 1
            return records

    def partitions(self) -> list[int]:
        """One seek per partition held: jump from each partition to the next."""
        held = []
        with self._reading() as transaction:
            cursor = transaction.cursor()
            positioned = cursor.first()
            while positioned:
                partition = int.from_bytes(cursor.key()[:PARTITION_PREFIX_BYTES], "big")
                held.append(partition)
                if partition + 1 >= PARTITIONS_MAX:
                    break
                positioned = cursor.set_range(partition_prefix(partition + 1))
        return held

    # -- node state ----------------------------------------------------------

    def meta_get(self, name: str) -> bytes | None:
        with self._reading() as transaction:
            return transaction.get(name.encode("utf-8"), db=self._meta)

    def meta_put(self, name: str, value: bytes) -> None:
        with self._writing() as transaction:
            transaction.put(name.encode("utf-8"), value, db=self._meta)
            self._transaction_changed = True

    def stats(self) -> dict[str, int]:
        with self._reading() as transaction:
            records = transaction.stat(self._records)["entries"]
            long_keys = transaction.stat(self._long_keys)["entries"]
        info = self._environment.info()
        page_bytes = self._environment.stat()["psize"]
        return {
            "commits": self._commits,
            "records": records,
            "long_keys": long_keys,
            "map_size_bytes": info["map_size"],
            "used_bytes": (info["last_pgno"] + 1) * page_bytes,
        }

    def close(self) -> None:
        """Close the environment; an uncommitted turn is dropped, as a crash would."""
        self._abandon()
        self._in_turn = False
        self._turn_failure = None
        self._environment.close()
