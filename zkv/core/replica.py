"""The replica: serving Batch frames against local storage, and what this node holds.

``LocalState`` owns the per-partition facts the hot path needs, recomputed
whenever the config or a completeness flag changes:

    changed_at[p]   requests older than this epoch are STALE
    writable[p]     this node is a write target of p
    readable[p]     this node is in p's read set *and* holds a complete copy
    complete_for[p] -1: no complete copy; 0: complete as a settled replica;
                    s > 0: complete copy pulled for the move that added it at epoch s

``serve_batch`` applies every write of a frame in one call to storage (the
shell wraps the turn in one transaction), then answers the reads, and returns
one status byte per op. It never raises on bad input: malformed ops get
STATUS_INVALID and change nothing.
"""

from __future__ import annotations

from zkv.core.config import Config
from zkv.core.messages import (
    OP_READ, OP_WRITE, STATUS_BEHIND, STATUS_INVALID, STATUS_NOT_OWNER, STATUS_NOT_READY, STATUS_OK, STATUS_STALE,
)
from zkv.core.placement import partition_of
from zkv.core.versions import KIND_STR, KIND_TOMBSTONE, RECORD_BYTES_MIN, VERSION_BYTES

NOT_COMPLETE = -1
BATCH_OPS_MAX = 8192


def _is_utf8(record: bytes) -> bool:
    try:
        record[VERSION_BYTES + 1:].decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


class LocalState:
    def __init__(self, node_id: str, partitions: int) -> None:
        self.node_id = node_id
        self.partitions = partitions
        self.epoch = 0
        self.changed_at = [0] * partitions  # with epoch 0, every request is BEHIND until a config is adopted
        self.writable = [False] * partitions
        self.readable = [False] * partitions
        self.complete_for = [NOT_COMPLETE] * partitions

    def refresh(self, config: Config | None) -> None:
        if config is None:
            return
        me = self.node_id
        self.epoch = config.epoch
        for p, plan in enumerate(config.plans):
            self.changed_at[p] = plan.changed_at
            self.writable[p] = me in plan.write_targets
            self.readable[p] = me in plan.read_set and self.complete_for[p] != NOT_COMPLETE

    def set_complete(self, partition: int, complete_for: int, config: Config | None) -> None:
        self.complete_for[partition] = complete_for
        if config is not None:
            self.readable[partition] = (complete_for != NOT_COMPLETE
                                        and self.node_id in config.plans[partition].read_set)


def serve_batch(state: LocalState, storage, epoch: int, ops: bytes, partitions: list, keys: list,
                records: list, key_bytes_max: int, record_bytes_max: int) -> tuple[bytearray, list, list[int]]:
    """Apply a Batch. Returns (statuses, records for the read ops, partitions written)."""
    count = len(ops)
    statuses = bytearray(count)
    partition_count = state.partitions
    my_epoch = state.epoch
    changed_at = state.changed_at
    writable = state.writable
    readable = state.readable
    write_partitions: list[int] = []
    write_keys: list[bytes] = []
    write_records: list[bytes] = []
    for index in range(count):
        p = partitions[index]
        key = keys[index]
        if (type(p) is not int or not 0 <= p < partition_count or type(key) is not bytes
                or not 0 < len(key) <= key_bytes_max or partition_of(key, partition_count) != p):
            statuses[index] = STATUS_INVALID
            continue
        if epoch < changed_at[p]:
            statuses[index] = STATUS_STALE
            continue
        if epoch > my_epoch:
            statuses[index] = STATUS_BEHIND
            continue
        op = ops[index]
        if op == OP_WRITE:
            if not writable[p]:
                statuses[index] = STATUS_NOT_OWNER
                continue
            record = records[index]
            if (type(record) is not bytes or not RECORD_BYTES_MIN <= len(record) <= record_bytes_max
                    or record[VERSION_BYTES] > 2
                    or (record[VERSION_BYTES] == KIND_TOMBSTONE and len(record) != RECORD_BYTES_MIN)
                    or (record[VERSION_BYTES] == KIND_STR and not _is_utf8(record))):
                statuses[index] = STATUS_INVALID
                continue
            write_partitions.append(p)
            write_keys.append(key)
            write_records.append(record)
        elif op == OP_READ:
            if not readable[p]:
                statuses[index] = STATUS_NOT_READY if writable[p] else STATUS_NOT_OWNER
        else:
            statuses[index] = STATUS_INVALID
    if write_keys:
        storage.apply(write_partitions, write_keys, write_records)
    read_records: list = []
    get = storage.get
    for index in range(count):
        if ops[index] != OP_READ:
            continue
        if statuses[index] == STATUS_OK:
            read_records.append(get(partitions[index], keys[index]))
        else:
            read_records.append(None)
    return statuses, read_records, write_partitions
