"""Quorum coordination: turn reads and writes into replica batches and back.

One ``Coordinator`` runs inside the smart client and inside every node (for
the HTTP API and thin clients): the same code decides what a quorum is in
both places.

Theory of operation
-------------------
``submit_write`` / ``submit_read`` create an ``Op`` routed by the current
config: a write goes to every write target of its partition and succeeds when
each write set (one when settled, old and new during a move) has W
acknowledgements; a read goes to the read set and succeeds with the newest
record once R replicas answered. Ops queue per node and ``flush`` turns each
node's queue into one ``Batch`` frame (bounded), so many ops share a frame.

Replies come back per batch. A replica that says STALE makes the coordinator
park the op, fetch a newer config (from that replica) and re-route it. Other
refusals (BEHIND, NOT_READY, BUSY, unreachable) count against the attempt;
when an attempt can no longer reach quorum the op is retried with backoff
until its deadline, then fails saying how many replicas answered. Reads repair
replicas that answered with an older record (read repair), including late
answers. Writes keep their version across attempts, so a retry is idempotent.

    submit --> queued --flush--> in flight --quorum--> done
                 ^                  |  \\--STALE--> parked --config--> queued
                 +---- backoff <----+ (quorum impossible)    deadline --> failed
"""

from __future__ import annotations

import collections
import heapq
import itertools

from zkv.core import messages
from zkv.core.config import Config, needed
from zkv.core.messages import (
    OP_READ, OP_WRITE, STATUS_BEHIND, STATUS_BUSY, STATUS_INVALID, STATUS_NOT_OWNER, STATUS_OK, STATUS_STALE,
)
from zkv.core.placement import partition_of
from zkv.core.versions import VERSION_BYTES, HybridLogicalClock, encode_value

BATCH_OPS_MAX = 4096
BATCH_BYTES_MAX = 8 << 20
RETRY_BACKOFF_MS_MIN = 10
RETRY_BACKOFF_MS_MAX = 200
ATTEMPT_TIMEOUT_MS = 500  # a replica silent this long counts as failed for the attempt
QUORUM_MAX = 64
KEY_BYTES_MAX = 1024
VALUE_BYTES_MAX = 4 << 20

# Op.error codes
ERROR_QUORUM = "quorum"
ERROR_TIMEOUT = "timeout"
ERROR_INVALID = "invalid"

KIND_READ = 0
KIND_WRITE = 1
KIND_REPAIR = 2

_QUEUED, _INFLIGHT, _PARKED, _WAITING, _DONE = range(5)


class Op:
    """One quorum operation (or a fire-and-forget repair).

    ``acked`` / ``replies`` accumulate over every attempt routed at the same epoch
    (a retry only resends to replicas that have not answered); ``failed`` holds the
    replicas that refused or went silent in the current attempt.
    """

    __slots__ = ("token", "index", "kind", "opcode", "key", "partition", "record", "quorum", "deadline_ms",
                 "state", "strict", "attempt", "route_epoch", "sent_tag", "targets", "needs", "single_need",
                 "acked", "failed", "replies", "newest", "answered", "ok", "error", "detail", "backoff_ms")

    def __init__(self, token, kind: int, key: bytes, partition: int, record: bytes | None,
                 quorum: int, deadline_ms: int, strict: bool = False, index: int = -1) -> None:
        self.token = token
        self.index = index  # the op's place in a batch call (token is then the batch's collector)
        self.opcode = OP_READ if kind == KIND_READ else OP_WRITE
        self.strict = strict  # an explicitly requested quorum is required as is, never capped
        self.kind = kind
        self.key = key
        self.partition = partition
        self.record = record
        self.quorum = quorum
        self.deadline_ms = deadline_ms
        self.state = _QUEUED
        self.attempt = 0
        self.route_epoch = -1
        self.sent_tag: tuple[int, int] = (-1, 0)  # (route_epoch, attempt), stamped on each batch sent
        self.targets: tuple[str, ...] = ()
        self.needs: tuple[tuple[tuple[str, ...], int], ...] = ()
        self.single_need = 0  # acks needed when there is one replica set (settled), else 0
        self.acked: list[str] = []
        self.failed: list[str] = []
        self.replies: dict[str, bytes | None] = {}
        self.newest: bytes | None = None
        self.answered = 0
        self.ok = False
        self.error = ""
        self.detail = ""
        self.backoff_ms = RETRY_BACKOFF_MS_MIN

    @property
    def done(self) -> bool:
        return self.state == _DONE

    @property
    def version(self) -> bytes | None:
        """The version written (writes) or read (reads; None when missing)."""
        if self.kind == KIND_READ:
            return self.newest[:VERSION_BYTES] if self.newest is not None else None
        return self.record[:VERSION_BYTES] if self.record is not None else None

    def heard_from(self) -> int:
        return len(self.acked) if self.kind == KIND_WRITE else len(self.replies)

    def answered_by(self, node: str) -> bool:
        return node in self.acked if self.kind == KIND_WRITE else node in self.replies


def _chunks(queue: list[Op]) -> list[list[Op]]:
    """A node's queue cut into frames of at most BATCH_OPS_MAX ops and about BATCH_BYTES_MAX
    bytes (a frame always takes at least one op, so one 4 MiB value still goes out)."""
    chunks: list[list[Op]] = []
    chunk: list[Op] = []
    size = 0
    for op in queue:
        op_bytes = len(op.key) + (len(op.record) if op.record is not None else 0)
        if chunk and (len(chunk) >= BATCH_OPS_MAX or size + op_bytes > BATCH_BYTES_MAX):
            chunks.append(chunk)
            chunk, size = [], 0
        chunk.append(op)
        size += op_bytes
    if chunk:
        chunks.append(chunk)
    return chunks


class InvalidInput(ValueError):
    """The caller passed something zkv refuses (type, size); nothing was sent."""


def check_key(key: bytes, key_bytes_max: int = KEY_BYTES_MAX) -> None:
    if type(key) is not bytes:
        raise InvalidInput(f"key must be bytes here, not {type(key).__name__}")
    if not key:
        raise InvalidInput("key must not be empty")
    if len(key) > key_bytes_max:
        raise InvalidInput(f"key is {len(key)} bytes; the limit is {key_bytes_max}")


def check_value(value: object, value_bytes_max: int = VALUE_BYTES_MAX) -> None:
    if isinstance(value, str):
        try:
            size = len(value.encode("utf-8"))
        except UnicodeEncodeError:
            raise InvalidInput("value is not valid Unicode text (it holds a lone surrogate)") from None
    elif isinstance(value, (bytes, bytearray, memoryview)):
        size = len(value)
    else:
        raise InvalidInput(f"value must be str or bytes, not {type(value).__name__}")
    if size > value_bytes_max:
        raise InvalidInput(f"value is {size} bytes; the limit is {value_bytes_max}")


class Coordinator:
    def __init__(self, writer_id: int, *, write_quorum: int = 2, read_quorum: int = 2,
                 key_bytes_max: int = KEY_BYTES_MAX, value_bytes_max: int = VALUE_BYTES_MAX) -> None:
        self.clock = HybridLogicalClock(writer_id)
        self.write_quorum = write_quorum
        self.read_quorum = read_quorum
        self.key_bytes_max = key_bytes_max
        self.value_bytes_max = value_bytes_max
        self.config: Config | None = None
        self._routes: list = []
        self._route_cache: dict = {}  # (partition, kind, quorum, strict) -> (targets, needs, single need)
        self._outbox: dict[str, list[Op]] = {}
        # request id -> (node, ops, the attempt of each op when sent)
        self._inflight: dict[int, tuple[str, list[Op], list[int]]] = {}
        # heap of (earliest deadline of a batch's ops, request id): expiry fails overdue ops
        self._inflight_order: list[tuple[int, int]] = []
        self._parked: list[Op] = []
        self._waiting: list[tuple[int, int, Op]] = []  # heap of (retry_at_ms, seq, op)
        self._sent_order: collections.deque = collections.deque()  # (sent_ms, request id), oldest first
        self._sequence = itertools.count()
        self._request_ids = itertools.count(1)
        self.completed: list[Op] = []
        self.config_wanted_from: str | None = None  # a node known to have a newer config
        self.config_wanted = False
        self.pending_ops = 0
        self.counters = {"ops": 0, "ok": 0, "failed": 0, "retries": 0, "stale": 0, "repairs": 0}

    # -- configuration ------------------------------------------------------

    def set_config(self, config: Config) -> None:
        if self.config is not None and config.epoch <= self.config.epoch:
            return
        self.config = config
        self._routes = [(plan.read_set, plan.write_targets, plan.write_sets) for plan in config.plans]
        self._route_cache = {}
        self.config_wanted = False
        self.config_wanted_from = None
        # Ops queued but not yet sent were routed by the old map; a batch carries the new epoch,
        # so they must be routed again or replicas would take them as routed by the new map.
        queued: dict[int, Op] = {}
        outbox, self._outbox = self._outbox, {}
        for queue in outbox.values():
            for op in queue:
                if op.kind != KIND_REPAIR and op.state == _QUEUED:
                    queued[id(op)] = op
        parked, self._parked = self._parked, []
        for op in list(queued.values()) + [op for op in parked if op.state == _PARKED]:
            self._route(op)

    # -- submitting -----------------------------------------------------------

    def partition_of(self, key: bytes) -> int | None:
        return partition_of(key, self.config.partitions) if self.config is not None else None

    def submit_write(self, key: bytes, value: bytes | str | None, quorum: int, now_ms: int,
                     deadline_ms: int, token=None, index: int = -1, checked: bool = False) -> Op:
        """Queue a set (or, with value None, a delete). Raises InvalidInput on bad input
        (``checked`` says the caller already validated key and value)."""
        if not checked:
            check_key(key, self.key_bytes_max)
            if value is not None:
                check_value(value, self.value_bytes_max)
        record = encode_value(self.clock.next_version(now_ms), value)
        return self._submit(token, KIND_WRITE, key, record, quorum, self.write_quorum, deadline_ms, index)

    def submit_read(self, key: bytes, quorum: int, deadline_ms: int, token=None, index: int = -1,
                    checked: bool = False) -> Op:
        if not checked:
            check_key(key, self.key_bytes_max)
        return self._submit(token, KIND_READ, key, None, quorum, self.read_quorum, deadline_ms, index)

    def _submit(self, token, kind: int, key: bytes, record: bytes | None, quorum: int, default: int,
                deadline_ms: int, index: int = -1) -> Op:
        """``quorum`` 0 means the default, capped at a replica set smaller than the replication
        factor; any other value was asked for explicitly and is required as is."""
        if type(quorum) is not int or not 0 <= quorum <= QUORUM_MAX:
            raise InvalidInput(f"quorum must be between 1 and {QUORUM_MAX}, not {quorum!r}")
        if self.config is not None and quorum > self.config.replication:
            raise InvalidInput(f"a quorum of {quorum} can never be met: the cluster keeps "
                               f"{self.config.replication} replicas of each key")
        op = Op(token, kind, key, -1, record, quorum or default, deadline_ms, quorum > 0, index)
        self.counters["ops"] += 1
        self.pending_ops += 1
        if self.config is None:
            op.state = _PARKED
            self._parked.append(op)
            self.config_wanted = True
        else:
            self._route(op)
        return op

    def _route(self, op: Op) -> None:
        """Start an attempt: send the op to every target that has not answered at this epoch."""
        config = self.config
        if op.partition < 0:
            op.partition = partition_of(op.key, config.partitions)
        if op.route_epoch != config.epoch:
            if op.route_epoch >= 0:
                op.answered = max(op.answered, op.heard_from())
                op.acked = []
                op.replies = {}
            op.route_epoch = config.epoch
            route_key = (op.partition, op.kind, op.quorum, op.strict)
            route = self._route_cache.get(route_key)
            if route is None:
                route = self._route_cache[route_key] = self._plan_route(*route_key)
            op.targets, op.needs, op.single_need = route
        op.attempt += 1
        op.sent_tag = (op.route_epoch, op.attempt)
        if op.failed:
            op.failed = []
        if not op.targets:
            self._fail(op, ERROR_QUORUM, "no replicas for this partition")
            return
        op.state = _QUEUED
        outbox = self._outbox
        sent = 0
        for node in op.targets:
            if op.attempt > 1 and op.answered_by(node):
                continue
            sent += 1
            queue = outbox.get(node)
            if queue is None:
                outbox[node] = [op]
            else:
                queue.append(op)
        if sent == 0:
            # Every replica at this epoch has answered and the quorum still is not met (say w=3
            # with two replicas): only a new config can help, so wait for one until the deadline.
            op.state = _PARKED
            self._parked.append(op)

    def _plan_route(self, partition: int, kind: int, quorum: int, strict: bool):
        read_set, write_targets, write_sets = self._routes[partition]
        if kind == KIND_READ:
            needs = ((read_set, quorum if strict else needed(quorum, len(read_set))),)
            return read_set, needs, needs[0][1]
        needs = tuple((members, quorum if strict else needed(quorum, len(members))) for members in write_sets)
        return write_targets, needs, needs[0][1] if len(needs) == 1 else 0

    # -- the wire ---------------------------------------------------------------

    def flush(self, now_ms: int) -> list[tuple[str, messages.Batch]]:
        """One Batch per node with queued ops (more if a node's queue exceeds the bounds)."""
        if not self._outbox:
            return []
        epoch = self.config.epoch if self.config is not None else 0
        frames = []
        outbox, self._outbox = self._outbox, {}
        for node, queue in outbox.items():
            for chunk in _chunks(queue):
                deadline_ms = chunk[0].deadline_ms
                for op in chunk:
                    if op.state == _QUEUED:
                        op.state = _INFLIGHT
                    if op.deadline_ms < deadline_ms:
                        deadline_ms = op.deadline_ms
                request_id = next(self._request_ids)
                self._inflight[request_id] = (node, chunk, [op.sent_tag for op in chunk])
                heapq.heappush(self._inflight_order, (deadline_ms, request_id))
                self._sent_order.append((now_ms, request_id))
                frames.append((node, messages.Batch(
                    request_id, epoch, bytes([op.opcode for op in chunk]), [op.partition for op in chunk],
                    [op.key for op in chunk], [op.record for op in chunk])))
        return frames

    def on_send_failed(self, request_id: int, now_ms: int) -> None:
        """The shell could not hand a batch to the network (peer unreachable, queue full)."""
        entry = self._inflight.pop(request_id, None)
        if entry is not None:
            self._attempt_failed(entry, now_ms)

    def _attempt_failed(self, entry, now_ms: int) -> None:
        node, ops, sent = entry
        for op, (epoch, attempt) in zip(ops, sent):
            if op.attempt == attempt and op.route_epoch == epoch and op.state == _INFLIGHT \
                    and not op.answered_by(node) and node not in op.failed:
                op.failed.append(node)
                self._check_impossible(op, now_ms)

    def on_reply(self, reply: messages.BatchReply, now_ms: int) -> None:
        entry = self._inflight.pop(reply.request_id, None)
        if entry is None:
            return  # late reply for a batch we gave up on
        node, ops, sent = entry
        statuses = reply.statuses
        if len(statuses) != len(ops):
            self._attempt_failed(entry, now_ms)
            return
        records = reply.records
        if len(records) != sum(1 for op in ops if op.kind == KIND_READ):
            self._attempt_failed(entry, now_ms)  # a reply that does not answer every read is no answer
            return
        read_records = iter(records)
        stale = False
        for index, op in enumerate(ops):
            kind = op.kind
            status = statuses[index]
            if kind == KIND_WRITE and status == STATUS_OK:
                # the hot path: an acknowledged write
                state = op.state
                if state == _DONE or state == _PARKED or sent[index][0] != op.route_epoch:
                    continue
                acked = op.acked
                if node in acked:
                    continue
                acked.append(node)
                if op.single_need:
                    if len(acked) >= op.single_need:
                        self._succeed(op)
                        continue
                elif self._write_satisfied(op):
                    self._succeed(op)
                    continue
                if state == _INFLIGHT and (op.failed or len(acked) >= len(op.targets)):
                    self._check_impossible(op, now_ms)  # e.g. w=3 with two replicas left
                continue
            if kind == KIND_REPAIR:
                continue
            record = next(read_records) if kind == KIND_READ else None
            if record is not None and (type(record) is not bytes or len(record) <= VERSION_BYTES):
                if op.state != _DONE:
                    self._refused(op, node, sent[index][1], now_ms)
                continue
            state = op.state
            if state == _DONE:
                if kind == KIND_READ and status == STATUS_OK and op.ok:
                    self._repair_if_older(node, op, record)
                continue
            epoch, attempt = sent[index]
            if state == _PARKED or epoch != op.route_epoch:
                continue
            if status == STATUS_OK:  # a read
                if record is not None:
                    self.clock.observe(record)
                    if op.newest is None or record[:VERSION_BYTES] > op.newest[:VERSION_BYTES]:
                        op.newest = record
                op.replies[node] = record
                if len(op.replies) >= op.single_need:
                    self._succeed(op)
                    for other, other_record in op.replies.items():
                        self._repair_if_older(other, op, other_record)
                elif op.state == _INFLIGHT:
                    self._check_impossible(op, now_ms)
            elif status == STATUS_STALE or status == STATUS_NOT_OWNER:
                self.counters["stale"] += 1
                if op.route_epoch < self.config.epoch:
                    self._route(op)  # we already hold a newer map than the one this op went out with
                else:
                    stale = True
                    op.state = _PARKED
                    self._parked.append(op)
            elif status == STATUS_INVALID:
                self._fail(op, ERROR_INVALID, f"replica {node} refused the operation as invalid")
            else:
                if status == STATUS_BUSY or status == STATUS_BEHIND:
                    op.backoff_ms = max(op.backoff_ms, RETRY_BACKOFF_MS_MIN * 2)
                self._refused(op, node, attempt, now_ms)
        if stale:
            self.config_wanted = True
            if reply.epoch > (self.config.epoch if self.config else 0):
                self.config_wanted_from = node

    def _refused(self, op: Op, node: str, attempt: int, now_ms: int) -> None:
        if attempt == op.attempt and op.state == _INFLIGHT and node not in op.failed:
            op.failed.append(node)
            self._check_impossible(op, now_ms)

    def _write_satisfied(self, op: Op) -> bool:
        acked = op.acked
        if op.single_need:
            return len(acked) >= op.single_need
        for members, need in op.needs:
            count = 0
            for member in members:
                if member in acked:
                    count += 1
            if count < need:
                return False
        return True

    def _check_impossible(self, op: Op, now_ms: int) -> None:
        """Retry the op (or fail it) once this attempt cannot reach quorum any more."""
        failed = op.failed
        for members, need in op.needs:
            possible = 0
            for member in members:
                if op.answered_by(member) or member not in failed:
                    possible += 1
            if possible < need:
                break
        else:
            return
        if now_ms + op.backoff_ms >= op.deadline_ms:
            self._fail_quorum(op)
            return
        op.state = _WAITING
        self.counters["retries"] += 1
        heapq.heappush(self._waiting, (now_ms + op.backoff_ms, next(self._sequence), op))
        op.backoff_ms = min(op.backoff_ms * 2, RETRY_BACKOFF_MS_MAX)

    def _repair_if_older(self, node: str, op: Op, record: bytes | None) -> None:
        newest = op.newest
        if newest is None:
            return
        if record is None or record[:VERSION_BYTES] < newest[:VERSION_BYTES]:
            repair = Op(None, KIND_REPAIR, op.key, op.partition, newest, 1, op.deadline_ms)
            repair.state = _DONE
            repair.ok = True
            self.counters["repairs"] += 1
            queue = self._outbox.get(node)
            if queue is None:
                self._outbox[node] = [repair]
            else:
                queue.append(repair)

    # -- completion ---------------------------------------------------------------

    def _succeed(self, op: Op) -> None:
        op.state = _DONE
        op.ok = True
        op.answered = op.heard_from()
        self.pending_ops -= 1
        self.counters["ok"] += 1
        self.completed.append(op)

    def _fail(self, op: Op, error: str, detail: str) -> None:
        if op.state == _DONE:
            return
        op.state = _DONE
        op.ok = False
        op.error = error
        op.detail = detail
        self.pending_ops -= 1
        self.counters["failed"] += 1
        self.completed.append(op)

    def _fail_quorum(self, op: Op) -> None:
        answered = max(op.answered, op.heard_from())  # the most replicas any epoch's attempts heard from
        op.answered = answered
        need = max(need for _, need in op.needs) if op.needs else op.quorum
        if op.attempt == 0 or not op.needs:
            self._fail(op, ERROR_TIMEOUT, "no node of the cluster answered before the deadline")
            return
        self._fail(op, ERROR_QUORUM, f"{answered} of {need} replicas answered")

    def take_config_hint(self) -> str | None:
        """The node said to hold a newer config, handed out once (it may be gone by the retry)."""
        hint, self.config_wanted_from = self.config_wanted_from, None
        return hint

    def take_completed(self) -> list[Op]:
        done, self.completed = self.completed, []
        return done

    # -- time ---------------------------------------------------------------

    def on_tick(self, now_ms: int) -> None:
        sent = self._sent_order
        while sent and sent[0][0] + ATTEMPT_TIMEOUT_MS <= now_ms:
            _, request_id = sent.popleft()
            entry = self._inflight.get(request_id)
            if entry is not None:
                self._attempt_failed(entry, now_ms)  # silent for too long: try the others again
        waiting = self._waiting
        while waiting and waiting[0][0] <= now_ms:
            _, _, op = heapq.heappop(waiting)
            if op.state == _WAITING:
                self._route(op)
        if self._parked:
            parked, self._parked = self._parked, []
            epoch = self.config.epoch if self.config is not None else -1
            for op in parked:
                if op.state != _PARKED:
                    continue
                if op.deadline_ms <= now_ms:
                    self._fail_quorum(op)
                elif 0 <= op.route_epoch < epoch:
                    self._route(op)
                else:
                    self._parked.append(op)
        order = self._inflight_order
        while order and order[0][0] <= now_ms:
            _, request_id = heapq.heappop(order)
            entry = self._inflight.get(request_id)
            if entry is None:
                continue
            next_deadline_ms = None
            for op in entry[1]:
                if op.state == _DONE:
                    continue
                if op.deadline_ms <= now_ms:
                    self._fail_quorum(op)
                elif next_deadline_ms is None or op.deadline_ms < next_deadline_ms:
                    next_deadline_ms = op.deadline_ms
            if next_deadline_ms is None:
                del self._inflight[request_id]
            else:
                heapq.heappush(order, (next_deadline_ms, request_id))

    def next_deadline_ms(self) -> int | None:
        candidates = []
        if self._waiting:
            candidates.append(self._waiting[0][0])
        if self._inflight_order:
            candidates.append(self._inflight_order[0][0])
        if self._parked:
            candidates.append(min(op.deadline_ms for op in self._parked))
        if self._sent_order:
            candidates.append(self._sent_order[0][0] + ATTEMPT_TIMEOUT_MS)
        return min(candidates) if candidates else None

    @property
    def has_outbox(self) -> bool:
        return bool(self._outbox)

    def inflight_requests(self) -> int:
        return len(self._inflight)
