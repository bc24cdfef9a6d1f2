"""Wire message types: frozen, slotted dataclasses, one per message.

Every message has a small integer ``TYPE`` and a flat list of fields; on the
wire it is the msgpack array ``[PROTOCOL_VERSION, TYPE, *fields]`` (see
``zkv.wire``), so a frame carries one message and a batch is one message whose
fields are parallel lists (columnar: cheap to build and to decode).

Messages fall into four families:

- replica operations: ``Batch`` / ``BatchReply`` (reads and put-if-newer writes
  for many keys in one frame), used by every coordinator;
- coordination for thin clients and the HTTP API: ``Coordinate`` / ``CoordinateReply``,
  ``Inspect`` / ``InspectReply``; ``Scan`` / ``ScanReply`` pages through a partition;
- cluster metadata: ``Gossip``, ``Join``, ``ConfigRequest`` / ``ConfigReply``,
  Paxos (``Prepare``, ``Promise``, ``Accept``, ``Accepted``, ``Commit``) and
  ``HandoffDone``;
- data movement: ``PullRequest`` / ``PullReply`` (handoff), ``AeDigest``,
  ``AeKeys``, ``AeRecords`` (anti-entropy), ``TombstoneQuery`` /
  ``TombstoneQueryReply`` / ``TombstonePurge``.

Field types are checked when a frame is decoded (``zkv.wire``); handlers check
the contents of lists.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

PROTOCOL_VERSION = 1

# Per-op status codes in BatchReply.statuses (one byte per op).
STATUS_OK = 0
STATUS_STALE = 1  # the request's epoch is older than the replica's map for that partition
STATUS_BEHIND = 2  # the replica has not yet adopted the request's epoch
STATUS_NOT_READY = 3  # the replica does not hold a complete copy (pending or recovering)
STATUS_NOT_OWNER = 4  # the replica is not in that partition's replica set
STATUS_INVALID = 5  # malformed op (bad partition, oversized key or record)
STATUS_BUSY = 6  # the replica is overloaded; back off and retry

OP_READ = ord("r")
OP_WRITE = ord("w")

# Coordinate.op values
COORD_SET = "set"
COORD_GET = "get"
COORD_DELETE = "delete"

# CoordinateReply.status / error codes
RESULT_OK = "ok"
RESULT_NOT_FOUND = "not_found"
RESULT_QUORUM = "quorum"
RESULT_TIMEOUT = "timeout"
RESULT_INVALID = "invalid"
RESULT_BUSY = "busy"
RESULT_UNAVAILABLE = "unavailable"


@dataclass(frozen=True, slots=True)
class Batch:
    """Replica operations for many keys: ``ops[i]`` is OP_READ or OP_WRITE."""

    TYPE: ClassVar[int] = 1
    request_id: int
    epoch: int
    ops: bytes
    partitions: list
    keys: list
    records: list  # the record for writes, None for reads


@dataclass(frozen=True, slots=True)
class BatchReply:
    """``statuses[i]`` for op i; ``records`` holds one entry per read op, in order."""

    TYPE: ClassVar[int] = 2
    request_id: int
    epoch: int
    statuses: bytes
    records: list


@dataclass(frozen=True, slots=True)
class Coordinate:
    """Ask a node to coordinate one quorum operation (thin clients, HTTP)."""

    TYPE: ClassVar[int] = 3
    request_id: int
    op: str
    key: bytes
    value: bytes | str | None
    quorum: int  # w for set/delete, r for get; 0 means the default
    timeout_ms: int


@dataclass(frozen=True, slots=True)
class CoordinateReply:
    TYPE: ClassVar[int] = 4
    request_id: int
    status: str
    value: bytes | str | None
    detail: str
    answered: int


@dataclass(frozen=True, slots=True)
class Inspect:
    """Ask a node for a view of itself: "stats", "cluster", "partitions", "metrics"."""

    TYPE: ClassVar[int] = 5
    request_id: int
    what: str


@dataclass(frozen=True, slots=True)
class InspectReply:
    TYPE: ClassVar[int] = 6
    request_id: int
    data: dict


@dataclass(frozen=True, slots=True)
class Error:
    TYPE: ClassVar[int] = 7
    request_id: int
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class Scan:
    """A page of one partition's records from one replica (for dump and key listing)."""

    TYPE: ClassVar[int] = 8
    request_id: int
    epoch: int
    partition: int
    cursor: bytes | None
    items_max: int


@dataclass(frozen=True, slots=True)
class ScanReply:
    TYPE: ClassVar[int] = 9
    request_id: int
    epoch: int
    status: int
    keys: list
    records: list
    cursor: bytes | None  # None once the partition is exhausted


@dataclass(frozen=True, slots=True)
class Gossip:
    """A member table (list of member tuples, see membership.py) from ``sender``."""

    TYPE: ClassVar[int] = 10
    sender: str
    epoch: int
    members: list


@dataclass(frozen=True, slots=True)
class Join:
    TYPE: ClassVar[int] = 11
    request_id: int
    node_id: str
    address: str
    http_address: str
    partitions: int
    replication: int


@dataclass(frozen=True, slots=True)
class JoinReply:
    TYPE: ClassVar[int] = 12
    request_id: int
    ok: bool
    error: str
    config: list | None
    members: list


@dataclass(frozen=True, slots=True)
class ConfigRequest:
    TYPE: ClassVar[int] = 13
    request_id: int
    known_epoch: int


@dataclass(frozen=True, slots=True)
class ConfigReply:
    TYPE: ClassVar[int] = 14
    request_id: int
    config: list | None
    members: list


@dataclass(frozen=True, slots=True)
class Prepare:
    TYPE: ClassVar[int] = 20
    sender: str
    instance: int  # the epoch being decided
    ballot: list  # [round, proposer id]


@dataclass(frozen=True, slots=True)
class Promise:
    TYPE: ClassVar[int] = 21
    sender: str
    instance: int
    ballot: list
    ok: bool
    accepted_ballot: list | None
    accepted_value: list | None
    committed_epoch: int


@dataclass(frozen=True, slots=True)
class Accept:
    TYPE: ClassVar[int] = 22
    sender: str
    instance: int
    ballot: list
    value: list


@dataclass(frozen=True, slots=True)
class Accepted:
    TYPE: ClassVar[int] = 23
    sender: str
    instance: int
    ballot: list
    ok: bool
    committed_epoch: int


@dataclass(frozen=True, slots=True)
class Commit:
    TYPE: ClassVar[int] = 24
    sender: str
    config: list


@dataclass(frozen=True, slots=True)
class HandoffDone:
    """``sender`` holds complete copies of ``partitions`` for moves started at ``since``."""

    TYPE: ClassVar[int] = 25
    sender: str
    partitions: list
    since: list  # since[i] is the move epoch the copy of partitions[i] was pulled for


@dataclass(frozen=True, slots=True)
class PullRequest:
    TYPE: ClassVar[int] = 30
    request_id: int
    sender: str
    partition: int
    since: int
    cursor: bytes | None
    items_max: int
    bytes_max: int


@dataclass(frozen=True, slots=True)
class PullReply:
    TYPE: ClassVar[int] = 31
    request_id: int
    partition: int
    status: int
    keys: list
    records: list
    cursor: bytes | None  # None once the partition is exhausted


@dataclass(frozen=True, slots=True)
class AeDigest:
    TYPE: ClassVar[int] = 40
    request_id: int
    sender: str
    epoch: int
    partition: int
    buckets: bytes  # concatenated 8-byte bucket hashes


@dataclass(frozen=True, slots=True)
class AeKeys:
    """The replier's (key, version) pairs in the buckets that differ."""

    TYPE: ClassVar[int] = 41
    request_id: int
    partition: int
    status: int
    buckets: list
    keys: list
    versions: list
    complete: bool  # False when the listing was cut at a bound


@dataclass(frozen=True, slots=True)
class AeRecords:
    """Records the receiver lacks, and keys the sender wants back."""

    TYPE: ClassVar[int] = 42
    request_id: int
    sender: str
    epoch: int
    partition: int
    keys: list
    records: list
    wanted: list


@dataclass(frozen=True, slots=True)
class TombstoneQuery:
    TYPE: ClassVar[int] = 43
    request_id: int
    sender: str
    epoch: int
    partition: int
    keys: list
    versions: list


@dataclass(frozen=True, slots=True)
class TombstoneQueryReply:
    TYPE: ClassVar[int] = 44
    request_id: int
    partition: int
    status: int
    have: bytes  # one byte per key: 1 when a version >= the asked one is held


@dataclass(frozen=True, slots=True)
class TombstonePurge:
    TYPE: ClassVar[int] = 45
    sender: str
    epoch: int
    partition: int
    keys: list
    records: list


ALL_MESSAGES = (
    Batch, BatchReply, Coordinate, CoordinateReply, Inspect, InspectReply, Error, Scan, ScanReply,
    Gossip, Join, JoinReply, ConfigRequest, ConfigReply,
    Prepare, Promise, Accept, Accepted, Commit, HandoffDone,
    PullRequest, PullReply, AeDigest, AeKeys, AeRecords,
    TombstoneQuery, TombstoneQueryReply, TombstonePurge,
)
