"""NodeCore: one zkv node's logic, with no sockets, clocks or threads.

Inputs: ``on_request(route, message, now_ms)`` for frames that arrived on the
node's ROUTER, ``on_peer_message(node_id, message, now_ms)`` for replies on
the DEALER to a peer, ``on_tick(now_ms)``, ``begin_leave(now_ms)``.
Output: ``finish_turn(now_ms)`` returns the turn's ``Effects`` (messages to
peers, replies to routes, log lines, an exit request).

The shell (``zkv.server.actor``) wraps each turn in one storage transaction:
``storage.begin_turn()``, feed inputs, ``finish_turn()``, ``storage.end_turn()``
(commit and sync), then send. So nothing leaves the node before the writes it
acknowledges are durable.

What lives where: membership in ``MemberTable``, the partition map in
``Config`` decided by ``paxos``, per-partition serving facts and Batch handling
in ``replica``, data movement in ``datamover``, client-side quorum logic in
``quorum.Coordinator`` (used here for HTTP and thin clients).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import msgpack

from zkv.core import messages, paxos
from zkv.core.config import (
    MOVING, PHASE_NAMES, Config, NodeAddress, PlanInputs, initial_config, plan_next,
)
from zkv.core.datamover import DataMover
from zkv.core.antientropy import AE_INTERVAL_MS, TOMBSTONE_GRACE_MS, TOMBSTONE_INTERVAL_MS
from zkv.core.membership import (
    ALIVE, DEAD, DEAD_AFTER_MS, GOSSIP_INTERVAL_MS, LEFT, SUSPECT, SUSPECT_AFTER_MS, MemberTable,
)
from zkv.core.quorum import ERROR_INVALID, Coordinator, InvalidInput
from zkv.core.replica import NOT_COMPLETE, LocalState, serve_batch
from zkv.core.versions import VERSION_BYTES, decode_value

LOOPBACK = "loopback"  # the route of requests a node sends to itself
SEED_PREFIX = "@"  # send target for a seed known only by address: "@host:port"

TICK_MS = 20
CLAIM_INTERVAL_MS = 100
CLAIM_BACKOFF_MS_MAX = 800
REPORT_INTERVAL_MS = 300
JOIN_RETRY_MS = 1000
CONFIG_FETCH_INTERVAL_MS = 200
LOOPBACK_ROUNDS_MAX = 64
LEAVE_TIMEOUT_MS = 60_000
REQUEST_TIMEOUT_MS = 5000
SCAN_ITEMS_MAX = 5000
OVERLOAD_AFTER_MS = 200  # a backlog this old turns replica requests away with BUSY
COORDINATED_PENDING_MAX = 10_000  # HTTP/thin-client ops being coordinated at once
SCAN_BYTES_MAX = 4 << 20


@dataclass(frozen=True)
class NodeSettings:
    node_id: str
    address: str  # "host:port" of this node's ROUTER, as peers reach it
    http_address: str = ""
    partitions: int = 64
    replication: int = 3
    seeds: tuple[str, ...] = ()
    generation: int = 1  # used when storage holds none (a node that lost or never had state)
    writer_id: int = 1
    write_quorum: int = 2
    read_quorum: int = 2
    gossip_interval_ms: int = GOSSIP_INTERVAL_MS
    suspect_after_ms: int = SUSPECT_AFTER_MS
    dead_after_ms: int = DEAD_AFTER_MS
    ae_interval_ms: int = AE_INTERVAL_MS
    tombstone_interval_ms: int = TOMBSTONE_INTERVAL_MS
    tombstone_grace_ms: int = TOMBSTONE_GRACE_MS
    leave_timeout_ms: int = LEAVE_TIMEOUT_MS
    request_timeout_ms: int = REQUEST_TIMEOUT_MS
    key_bytes_max: int = 1024
    value_bytes_max: int = 4 << 20
    buggify_release_early: bool = False  # simulator only: a deliberately broken release rule


@dataclass
class Effects:
    sends: list = field(default_factory=list)  # (node id or "@host:port", message)
    replies: list = field(default_factory=list)  # (route, message)
    logs: list = field(default_factory=list)
    exit_code: int | None = None


class NodeCore:
    def __init__(self, settings: NodeSettings, storage, rng, now_ms: int) -> None:
        self.settings = settings
        self.node_id = settings.node_id
        self.storage = storage
        self.rng = rng
        self.counters: Counter = Counter()
        self._effects = Effects()
        self._loopback: list[tuple[bool, object]] = []
        self._request_ids = 0
        self.generation = self._load_generation()
        self.table = MemberTable(self.node_id, settings.address, settings.http_address, now_ms, self.generation,
                                 settings.suspect_after_ms, settings.dead_after_ms)
        self.local = LocalState(self.node_id, settings.partitions)
        self.acceptor = paxos.Acceptor(self._load_acceptor())
        self.proposer = paxos.Proposer(self.node_id)
        self.completions: set[tuple[str, int, int]] = set()
        self.coordinator = Coordinator(settings.writer_id, write_quorum=settings.write_quorum,
                                       read_quorum=settings.read_quorum, key_bytes_max=settings.key_bytes_max,
                                       value_bytes_max=settings.value_bytes_max)
        self.config: Config | None = None
        self.fatal: str | None = None
        self.leaving = False
        self.leave_deadline_ms = 0
        self.overloaded = False
        self.backlog_since_ms: int | None = None
        self.next_gossip_ms = now_ms
        self.next_claim_ms = now_ms
        self.claim_backoff_ms = CLAIM_INTERVAL_MS
        self.next_report_ms = now_ms
        self.next_join_ms = now_ms
        self.join_pending = bool(settings.seeds)  # until a seed answers (also after a restart)
        self.join_attempts = 0
        self.next_config_fetch_ms = now_ms
        self.next_tick_ms = now_ms
        self.mover = DataMover(self)
        self._start(now_ms)

    # -- start-up -------------------------------------------------------------------

    def _load_generation(self) -> int:
        blob = self.storage.meta_get("generation")
        if blob is not None:
            return int(blob)
        self.storage.meta_put("generation", b"%d" % self.settings.generation)
        return self.settings.generation

    def _load_acceptor(self) -> paxos.AcceptorState | None:
        blob = self.storage.meta_get("acceptor")
        return paxos.AcceptorState.from_bytes(blob) if blob is not None else None

    def _start(self, now_ms: int) -> None:
        settings = self.settings
        complete_blob = self.storage.meta_get("complete")
        if complete_blob is not None:
            saved = msgpack.unpackb(complete_blob)
            if len(saved) == settings.partitions:
                self.local.complete_for = list(saved)
        config_blob = self.storage.meta_get("config")
        if config_blob is not None:
            config = Config.from_wire(msgpack.unpackb(config_blob, raw=False))
            adopted_ms = int(self.storage.meta_get("adopted_ms") or b"0")
            if now_ms - adopted_ms > settings.tombstone_grace_ms // 2:
                # Away long enough that tombstones may have been purged elsewhere: our copy
                # could resurrect deleted keys, so start from nothing and pull.
                self.log("state on disk is older than half the tombstone grace period; discarding local data")
                for partition in self.storage.partitions():
                    self.mover.wipe(partition)
                self.local.complete_for = [NOT_COMPLETE] * settings.partitions
                self._persist_complete()
            for node in config.nodes:
                if node.node_id != self.node_id:
                    self.table.add_placeholder(node.node_id, node.address, node.http_address,
                                               config.voter_generation(node.node_id) or 0, now_ms)
            self._install(config, now_ms)
            self.log(f"restarted at epoch {config.epoch} with {self.storage.count()} records")
        elif not settings.seeds:
            me = NodeAddress(self.node_id, settings.address, settings.http_address)
            config = initial_config(me, self.generation, settings.partitions, settings.replication)
            self.local.complete_for = [0] * settings.partitions
            self._persist_complete()
            self._install(config, now_ms)
            self._persist_config(now_ms)
            self.log(f"created a new cluster: {settings.partitions} partitions, replication {settings.replication}")
        else:
            self.log(f"joining through {', '.join(settings.seeds)}")

    # -- effects and small services for the components ---------------------------------------

    def log(self, text: str) -> None:
        self._effects.logs.append(text)

    def next_request_id(self) -> int:
        self._request_ids += 1
        return self._request_ids

    def send(self, target: str, message) -> None:
        if target == self.node_id:
            self._loopback.append((True, message))
        else:
            self._effects.sends.append((target, message))

    def reply(self, route, message) -> None:
        if route == LOOPBACK:
            self._loopback.append((False, message))
        else:
            self._effects.replies.append((route, message))

    def address_of(self, target: str) -> str | None:
        if target.startswith(SEED_PREFIX):
            return target[len(SEED_PREFIX):]
        member = self.table.get(target)
        if member is not None:
            return member.address
        if self.config is not None:
            node = self.config.address_of(target)
            if node is not None:
                return node.address
        return None

    def all_members_reached(self, epoch: int, now_ms: int) -> bool:
        """Every responsive member reports having adopted at least ``epoch``."""
        for node_id, member in self.table.members.items():
            if member.epoch < epoch and self.table.is_responsive(node_id, now_ms):
                return False
        return True

    def set_complete(self, partition: int, complete_for: int) -> None:
        self.local.set_complete(partition, complete_for, self.config)
        self._persist_complete()

    def _persist_complete(self) -> None:
        self.storage.meta_put("complete", msgpack.packb(self.local.complete_for))

    def _persist_config(self, now_ms: int) -> None:
        self.storage.meta_put("config", msgpack.packb(self.config.to_wire(), use_bin_type=True))
        self.storage.meta_put("adopted_ms", b"%d" % now_ms)

    # -- inputs -------------------------------------------------------------------------

    def on_request(self, route, message, now_ms: int) -> None:
        """A message that arrived on the ROUTER (from a client, a peer or ourselves)."""
        handler = self._request_handlers.get(type(message))
        if handler is None:
            self.counters["unexpected_messages"] += 1
            request_id = getattr(message, "request_id", 0)
            self.reply(route, messages.Error(request_id, "unexpected", f"{type(message).__name__} is not a request"))
        else:
            handler(self, route, message, now_ms)
        self._drain_loopback(now_ms)

    def on_peer_message(self, node_id: str, message, now_ms: int) -> None:
        """A reply that arrived on our DEALER to ``node_id``."""
        handler = self._reply_handlers.get(type(message))
        if handler is None:
            self.counters["unexpected_messages"] += 1
        else:
            handler(self, node_id, message, now_ms)
        self._drain_loopback(now_ms)

    def on_bad_frame(self, route, reason: str, request_id: int | None) -> None:
        """The shell could not decode a frame: count it and, when possible, say why."""
        self.counters["bad_frames"] += 1
        if route is not None and request_id is not None:
            self.reply(route, messages.Error(request_id, "bad_frame", reason))

    def _drain_loopback(self, now_ms: int) -> None:
        rounds = 0
        while self._loopback and rounds < LOOPBACK_ROUNDS_MAX * 16:
            rounds += 1
            is_request, message = self._loopback.pop(0)
            if is_request:
                handler = self._request_handlers.get(type(message))
                if handler is not None:
                    handler(self, LOOPBACK, message, now_ms)
            else:
                handler = self._reply_handlers.get(type(message))
                if handler is not None:
                    handler(self, self.node_id, message, now_ms)

    # -- replica operations -----------------------------------------------------------------

    def note_load(self, backlog: bool, now_ms: int) -> None:
        """The shell reports, each turn, whether it left frames waiting (it drains a bounded number).

        A backlog that lasts OVERLOAD_AFTER_MS makes the node shed replica work: it answers
        BUSY (clients back off and retry) instead of letting queues and latency grow.
        """
        if not backlog:
            self.backlog_since_ms = None
            if self.overloaded:
                self.overloaded = False
                self.log("load back to normal: serving replica requests again")
            return
        if self.backlog_since_ms is None:
            self.backlog_since_ms = now_ms
        elif not self.overloaded and now_ms - self.backlog_since_ms >= OVERLOAD_AFTER_MS:
            self.overloaded = True
            self.log(f"overloaded for {now_ms - self.backlog_since_ms} ms: answering busy")

    def _on_batch(self, route, message: messages.Batch, now_ms: int) -> None:
        if self.overloaded:
            self.counters["busy_replies"] += 1
            count = len(message.ops)
            self.reply(route, messages.BatchReply(message.request_id, self._my_epoch(),
                                                  bytes([messages.STATUS_BUSY]) * count,
                                                  [None] * message.ops.count(messages.OP_READ)))
            return
        self.reply(route, self._serve(message))

    def _serve(self, message: messages.Batch) -> messages.BatchReply:
        count = len(message.ops)
        epoch = self.config.epoch if self.config is not None else 0
        if (count > 8192 or len(message.partitions) != count or len(message.keys) != count
                or len(message.records) != count):
            self.counters["bad_batches"] += 1
            return messages.BatchReply(message.request_id, epoch, bytes([messages.STATUS_INVALID]) * count,
                                       [None] * message.ops.count(messages.OP_READ))
        statuses, records, written = serve_batch(
            self.local, self.storage, message.epoch, message.ops, message.partitions, message.keys,
            message.records, self.settings.key_bytes_max, self.settings.value_bytes_max + VERSION_BYTES + 1)
        self.mover.note_written(written)
        self.counters["replica_writes"] += len(written)
        self.counters["replica_reads"] += len(records)
        self.counters["batches"] += 1
        if message.epoch > epoch:
            self.want_config(None)
        return messages.BatchReply(message.request_id, epoch, bytes(statuses), records)

    def _on_scan(self, route, message: messages.Scan, now_ms: int) -> None:
        epoch = self._my_epoch()
        partition = message.partition
        status, pairs, cursor = messages.STATUS_OK, [], None
        if not 0 <= partition < self.settings.partitions:
            status = messages.STATUS_INVALID
        elif message.epoch < self.local.changed_at[partition]:
            status = messages.STATUS_STALE
        elif message.epoch > epoch:
            status = messages.STATUS_BEHIND
        elif not self.local.readable[partition]:
            status = messages.STATUS_NOT_READY
        else:
            items_max = max(1, min(message.items_max, SCAN_ITEMS_MAX))
            pairs, cursor = self.storage.scan(partition, message.cursor, items_max, SCAN_BYTES_MAX)
        self.reply(route, messages.ScanReply(message.request_id, epoch, status, [k for k, _ in pairs],
                                             [r for _, r in pairs], cursor))

    def _on_batch_reply(self, node_id: str, message: messages.BatchReply, now_ms: int) -> None:
        self.coordinator.on_reply(message, now_ms)
        self._refresh_for_coordinator()

    def _refresh_for_coordinator(self) -> None:
        if self.coordinator.config_wanted:
            self.want_config(self.coordinator.take_config_hint())

    # -- coordination for thin clients and HTTP --------------------------------------------------

    def _on_coordinate(self, route, message: messages.Coordinate, now_ms: int) -> None:
        if self.overloaded or self.coordinator.pending_ops >= COORDINATED_PENDING_MAX:
            self.counters["busy_replies"] += 1
            self.reply(route, messages.CoordinateReply(message.request_id, messages.RESULT_BUSY, None,
                                                       "the node is overloaded; retry later", 0))
            return
        token = (route, message.request_id, message.op)
        timeout_ms = message.timeout_ms if 0 < message.timeout_ms <= 120_000 else self.settings.request_timeout_ms
        deadline_ms = now_ms + timeout_ms
        try:
            if message.op == messages.COORD_GET:
                self.coordinator.submit_read(message.key, message.quorum, deadline_ms, token)
            elif message.op == messages.COORD_SET:
                if message.value is None:
                    raise InvalidInput("set needs a value")
                self.coordinator.submit_write(message.key, message.value, message.quorum, now_ms, deadline_ms, token)
            elif message.op == messages.COORD_DELETE:
                self.coordinator.submit_write(message.key, None, message.quorum, now_ms, deadline_ms, token)
            else:
                raise InvalidInput(f"unknown operation {message.op!r}")
        except InvalidInput as error:
            self.reply(route, messages.CoordinateReply(message.request_id, messages.RESULT_INVALID, None, str(error), 0))
            return
        self.counters[f"coordinated_{message.op}"] += 1

    def _complete_coordinated(self) -> None:
        for op in self.coordinator.take_completed():
            if op.token is None:
                continue
            route, request_id, op_name = op.token
            if not op.ok:
                status = messages.RESULT_INVALID if op.error == ERROR_INVALID else op.error
                self.reply(route, messages.CoordinateReply(request_id, status, None, op.detail, op.answered))
            elif op_name == messages.COORD_GET:
                value = decode_value(op.newest) if op.newest is not None else None
                status = messages.RESULT_OK if value is not None else messages.RESULT_NOT_FOUND
                self.reply(route, messages.CoordinateReply(request_id, status, value, "", op.answered))
            else:
                self.reply(route, messages.CoordinateReply(request_id, messages.RESULT_OK, None, "", op.answered))

    def _flush_coordinator(self, now_ms: int) -> None:
        for _ in range(LOOPBACK_ROUNDS_MAX):
            frames = self.coordinator.flush(now_ms)
            if not frames:
                break
            for target, batch in frames:
                if target == self.node_id:
                    self.coordinator.on_reply(self._serve(batch), now_ms)
                else:
                    self.send(target, batch)
            self._complete_coordinated()
        self._refresh_for_coordinator()

    # -- membership -------------------------------------------------------------------------

    def _log_changes(self, changes) -> None:
        for change in changes:
            before = change.before or "unknown"
            self.log(f"member {change.node_id}: {before} -> {change.after} (incarnation {change.incarnation})")

    def _on_gossip(self, route, message: messages.Gossip, now_ms: int) -> None:
        self._log_changes(self.table.merge(message.members, now_ms))
        self._check_epochs(now_ms)

    def _check_epochs(self, now_ms: int) -> None:
        my_epoch = self.config.epoch if self.config is not None else 0
        newest = max(self.table.members.values(), key=lambda member: member.epoch)
        if newest.epoch > my_epoch and newest.node_id != self.node_id:
            self.want_config(newest.node_id)

    def want_config(self, node_id: str | None) -> None:
        """Ask a node (by default the claimant) for its config; rate limited."""
        now_ms = self.table.last_tick_ms
        if now_ms < self.next_config_fetch_ms:
            return
        self.next_config_fetch_ms = now_ms + CONFIG_FETCH_INTERVAL_MS
        target = node_id or self.claimant_id()
        if target is None or target == self.node_id:
            return
        my_epoch = self.config.epoch if self.config is not None else 0
        self.send(target, messages.ConfigRequest(self.next_request_id(), my_epoch))

    def _on_config_request(self, route, message: messages.ConfigRequest, now_ms: int) -> None:
        config = self.config.to_wire() if self.config is not None else None
        self.reply(route, messages.ConfigReply(message.request_id, config, self.table.snapshot()))

    def _on_config_reply(self, node_id: str, message: messages.ConfigReply, now_ms: int) -> None:
        self._log_changes(self.table.merge(message.members, now_ms))
        if message.config is not None:
            self._adopt_wire(message.config, now_ms)

    def _on_join(self, route, message: messages.Join, now_ms: int) -> None:
        error = ""
        if self.config is None:
            # Not refused, just not yet possible: ok with no config means "ask again later".
            self.reply(route, messages.JoinReply(message.request_id, True, "", None, self.table.snapshot()))
            return
        if message.partitions != self.config.partitions:
            error = (f"cluster has {self.config.partitions} partitions but node {message.node_id} "
                     f"was started with {message.partitions}")
        elif message.replication != self.config.replication:
            error = (f"cluster has replication {self.config.replication} but node {message.node_id} "
                     f"was started with {message.replication}")
        else:
            existing = self.table.get(message.node_id)
            if (existing is not None and existing.address != message.address and existing.state in (ALIVE, SUSPECT)
                    and self.table.is_responsive(message.node_id, now_ms)):
                error = f"node id {message.node_id} is in use by a live member at {existing.address}"
        if error:
            self.log(f"refused join of {message.node_id}: {error}")
            self.reply(route, messages.JoinReply(message.request_id, False, error, None, []))
            return
        self.reply(route, messages.JoinReply(message.request_id, True, "", self.config.to_wire(), self.table.snapshot()))

    def _on_join_reply(self, node_id: str, message: messages.JoinReply, now_ms: int) -> None:
        if not message.ok:
            self.fatal = f"join refused by {node_id.removeprefix(SEED_PREFIX)}: {message.error}"
            self.log(self.fatal)
            return
        if message.config is None:
            return  # that seed has not joined a cluster itself yet; we ask again
        self.join_pending = False
        self._log_changes(self.table.merge(message.members, now_ms))
        if message.config is not None:
            self._adopt_wire(message.config, now_ms)

    # -- the partition map ---------------------------------------------------------------------

    def _adopt_wire(self, raw, now_ms: int) -> bool:
        try:
            config = Config.from_wire(raw)
        except ValueError as error:
            self.counters["bad_messages"] += 1
            self.log(f"ignored a malformed config: {error}")
            return False
        return self._adopt(config, now_ms)

    def _adopt(self, config: Config, now_ms: int) -> bool:
        previous = self.config
        if previous is not None and config.epoch <= previous.epoch:
            return False
        if config.partitions != self.settings.partitions or config.replication != self.settings.replication:
            self.fatal = (f"cluster has {config.partitions} partitions and replication {config.replication}; "
                          f"this node was started with {self.settings.partitions} and {self.settings.replication}")
            self.log(self.fatal)
            return False
        me = self.node_id
        for partition, plan in enumerate(config.plans):
            holder = me in plan.write_targets
            was_holder = previous is not None and me in previous.plans[partition].write_targets
            if holder and not was_holder:
                # Newly assigned: whatever we hold from an earlier ownership may predate purged
                # tombstones, so start clean and pull.
                self.mover.wipe(partition)
                self.local.complete_for[partition] = NOT_COMPLETE
            elif (plan.phase == MOVING and me in plan.pending
                  and self.local.complete_for[partition] not in (NOT_COMPLETE, plan.joined_at(me))):
                self.local.complete_for[partition] = NOT_COMPLETE  # pulled for an earlier move: pull again
        self._persist_complete()
        self._install(config, now_ms)
        self._persist_config(now_ms)
        if self.proposer.busy and self.proposer.instance <= config.epoch:
            self.proposer.abandon()
        self.completions = {c for c in self.completions
                            if 0 <= c[1] < config.partitions and c[0] in config.plans[c[1]].awaiting
                            and config.plans[c[1]].joined_at(c[0]) == c[2]}
        moving = sum(1 for plan in config.plans if plan.phase != 0)
        self.log(f"adopted epoch {config.epoch}: ring {', '.join(config.ring)}; {moving} partitions moving")
        return True

    def _install(self, config: Config, now_ms: int) -> None:
        self.config = config
        self.local.refresh(config)
        self.table.set_epoch(config.epoch)
        self.coordinator.set_config(config)

    def _on_commit(self, route, message: messages.Commit, now_ms: int) -> None:
        self._adopt_wire(message.config, now_ms)

    # -- Paxos: acceptor ---------------------------------------------------------------------

    def _may_vote(self) -> bool:
        return self.config is not None and self.config.voter_generation(self.node_id) == self.generation

    def _persist_acceptor(self) -> None:
        if self.acceptor.dirty:
            self.storage.meta_put("acceptor", self.acceptor.state.to_bytes())
            self.acceptor.dirty = False

    def _my_epoch(self) -> int:
        return self.config.epoch if self.config is not None else 0

    def _on_prepare(self, route, message: messages.Prepare, now_ms: int) -> None:
        ballot = paxos.ballot_from_wire(message.ballot)
        if ballot is None:
            self.counters["bad_messages"] += 1
            return
        if message.instance > self._my_epoch() + 1:
            self.want_config(message.sender)
        ok, accepted_ballot, accepted_value = self.acceptor.on_prepare(
            message.instance, ballot, self._my_epoch(), self._may_vote())
        self._persist_acceptor()
        hint = accepted_ballot if ok else self.acceptor.state.promised
        self.reply(route, messages.Promise(self.node_id, message.instance, message.ballot, ok,
                                           list(hint) if hint else None, accepted_value if ok else None,
                                           self._my_epoch()))

    def _on_accept(self, route, message: messages.Accept, now_ms: int) -> None:
        ballot = paxos.ballot_from_wire(message.ballot)
        if ballot is None:
            self.counters["bad_messages"] += 1
            return
        ok = self.acceptor.on_accept(message.instance, ballot, message.value, self._my_epoch(), self._may_vote())
        self._persist_acceptor()
        self.reply(route, messages.Accepted(self.node_id, message.instance, message.ballot, ok, self._my_epoch()))

    # -- Paxos: proposer (the claimant) -------------------------------------------------------

    def claimant_id(self) -> str | None:
        candidates = [node_id for node_id, member in self.table.members.items() if member.state in (ALIVE, SUSPECT)]
        return min(candidates) if candidates else None

    def _on_promise(self, node_id: str, message: messages.Promise, now_ms: int) -> None:
        self.proposer.observe_round(paxos.ballot_from_wire(message.accepted_ballot))
        if message.committed_epoch >= self.proposer.instance and self.proposer.busy:
            self.proposer.abandon()
            self.want_config(message.sender)
            return
        for target, out in self.proposer.on_promise(message):
            self.send(target, out)

    def _on_accepted(self, node_id: str, message: messages.Accepted, now_ms: int) -> None:
        chosen = self.proposer.on_accepted(message)
        if chosen is None:
            if message.committed_epoch >= self.proposer.instance and self.proposer.busy:
                self.proposer.abandon()
                self.want_config(message.sender)
            return
        if self._adopt_wire(chosen, now_ms):
            commit = messages.Commit(self.node_id, chosen)
            targets = {n for n, m in self.table.members.items() if m.state != DEAD} | set(self.config.ring)
            for target in sorted(targets - {self.node_id}):
                self.send(target, commit)
            self.claim_backoff_ms = CLAIM_INTERVAL_MS

    def _claim(self, now_ms: int) -> None:
        if self.proposer.busy:
            if not self.proposer.expired(now_ms):
                return
            self.proposer.abandon()
            self.claim_backoff_ms = min(self.claim_backoff_ms * 2, CLAIM_BACKOFF_MS_MAX)
            self.next_claim_ms = now_ms + self.rng.randrange(self.claim_backoff_ms // 2, self.claim_backoff_ms + 1)
            return
        if now_ms < self.next_claim_ms or self.config is None or self.claimant_id() != self.node_id:
            return
        if self.table.me.state == LEFT:
            return
        self.next_claim_ms = now_ms + CLAIM_INTERVAL_MS
        table = self.table
        members = table.members
        inputs = PlanInputs(
            ring=tuple(table.ring_candidates(now_ms)),
            # placeholders (incarnation 0) have not told us their generation yet
            generations={n: m.generation for n, m in members.items() if m.incarnation > 0},
            addresses={n: NodeAddress(n, m.address, m.http_address) for n, m in members.items()},
            completions=frozenset(self.completions),
            adopted={n: m.epoch for n, m in members.items()},
            responsive=frozenset(n for n in members if table.is_responsive(n, now_ms)),
        )
        up_voters = sum(1 for node_id in self.config.ring if node_id in inputs.ring)
        if up_voters < len(self.config.ring) // 2 + 1:
            # We see only a minority of the voters up: our failure detector is the one to distrust
            # (say, just after a network partition healed). Acceptors vote for any value, so a
            # claimant with such a view could otherwise remove live members from the ring.
            return
        proposal = plan_next(self.config, inputs)
        if proposal is None:
            return
        for target, out in self.proposer.propose(self.config.epoch + 1, proposal.to_wire(), self.config.ring, now_ms):
            self.send(target, out)

    def _on_handoff_done(self, route, message: messages.HandoffDone, now_ms: int) -> None:
        if len(message.partitions) != len(message.since):
            self.counters["bad_messages"] += 1
            return
        for partition, since in zip(message.partitions, message.since):
            if type(partition) is int and type(since) is int:
                self.completions.add((message.sender, partition, since))
        if len(self.completions) > 100_000:
            self.completions.clear()

    def _report_completions(self) -> None:
        config = self.config
        if config is None:
            return
        partitions, since = [], []
        for partition, plan in enumerate(config.plans):
            if self.node_id in plan.awaiting:
                joined = plan.joined_at(self.node_id)
                if joined is not None and self.local.complete_for[partition] == joined:
                    partitions.append(partition)
                    since.append(joined)
        claimant = self.claimant_id()
        if partitions and claimant is not None:
            self.send(claimant, messages.HandoffDone(self.node_id, partitions, since))

    # -- leaving --------------------------------------------------------------------------------

    def begin_leave(self, now_ms: int) -> None:
        if self.leaving:
            return
        self.leaving = True
        self.leave_deadline_ms = now_ms + self.settings.leave_timeout_ms
        change = self.table.leave()
        if change is not None:
            self._log_changes([change])
        self.log("leaving: handing partitions to their new owners")
        self._gossip_now()

    def handed_off(self) -> bool:
        config = self.config
        if config is None:
            return True
        return self.node_id not in config.ring and self.node_id not in config.holders()

    def _check_leave(self, now_ms: int) -> None:
        if not self.leaving or self._effects.exit_code is not None:
            return
        if self.handed_off():
            self.log("left the cluster: every partition is complete on its new owners")
            self._effects.exit_code = 0
        elif all(m.state == LEFT for n, m in self.table.members.items() if n != self.node_id):
            # The whole cluster is shutting down: nobody can take partitions, so waiting is pointless.
            self.log("left: every other member is leaving too (the data stays on this node's disk)")
            self._effects.exit_code = 0
        elif now_ms >= self.leave_deadline_ms:
            held = sum(1 for plan in self.config.plans if self.node_id in plan.write_targets)
            self.log(f"leave timed out with {held} partitions not handed off")
            self._effects.exit_code = 0

    # -- time -----------------------------------------------------------------------------------

    def _gossip_now(self) -> None:
        gossip = messages.Gossip(self.node_id, self._my_epoch(), self.table.snapshot())
        for target in self.table.gossip_targets(self.rng):
            self.send(target, gossip)

    def on_tick(self, now_ms: int) -> None:
        if now_ms >= self.next_gossip_ms:
            self.next_gossip_ms = now_ms + self.settings.gossip_interval_ms
            self._log_changes(self.table.tick(now_ms))
            self._gossip_now()
            self._check_epochs(now_ms)
        if self.join_pending and now_ms >= self.next_join_ms and self.fatal is None:
            # quick retries first: the very first Join is often dropped while the connection is set up
            self.join_attempts += 1
            self.next_join_ms = now_ms + min(JOIN_RETRY_MS, 50 * self.join_attempts)
            settings = self.settings
            join = messages.Join(self.next_request_id(), self.node_id, settings.address, settings.http_address,
                                 settings.partitions, settings.replication)
            for seed in settings.seeds:
                self.send(SEED_PREFIX + seed, join)
        if self.config is not None:
            self._claim(now_ms)
            if now_ms >= self.next_report_ms:
                self.next_report_ms = now_ms + REPORT_INTERVAL_MS
                self._report_completions()
            self.mover.on_tick(now_ms)
        self.coordinator.on_tick(now_ms)
        self._complete_coordinated()
        self._check_leave(now_ms)
        self.next_tick_ms = now_ms + TICK_MS
        self._drain_loopback(now_ms)

    def next_deadline_ms(self) -> int:
        deadline = self.next_tick_ms
        coordinator_deadline = self.coordinator.next_deadline_ms()
        if coordinator_deadline is not None and coordinator_deadline < deadline:
            deadline = coordinator_deadline
        return deadline

    def finish_turn(self, now_ms: int) -> Effects:
        """Flush coordinator batches and hand over everything this turn produced."""
        self._flush_coordinator(now_ms)
        self._drain_loopback(now_ms)
        self._complete_coordinated()
        self._persist_acceptor()
        if self.fatal is not None and self._effects.exit_code is None and self.config is None:
            self._effects.exit_code = 2
        effects, self._effects = self._effects, Effects()
        return effects

    # -- inspection --------------------------------------------------------------------------------

    def _on_inspect(self, route, message: messages.Inspect, now_ms: int) -> None:
        builders = {"stats": self.stats, "cluster": self.cluster_view, "partitions": self.partitions_view,
                    "metrics": self.metrics}
        builder = builders.get(message.what)
        if builder is None:
            self.reply(route, messages.Error(message.request_id, "invalid", f"cannot inspect {message.what!r}"))
            return
        self.reply(route, messages.InspectReply(message.request_id, builder()))

    def _held_counts(self, node_id: str) -> dict:
        primary = replica = pending = 0
        if self.config is not None:
            for plan in self.config.plans:
                if node_id in plan.pending:
                    pending += 1
                elif plan.read_set and plan.read_set[0] == node_id:
                    primary += 1
                elif node_id in plan.read_set:
                    replica += 1
        return {"primary": primary, "replica": replica, "pending": pending}

    def stats(self) -> dict:
        storage_stats = self.storage.stats()
        held = self._held_counts(self.node_id)
        return {
            "node_id": self.node_id,
            "epoch": self._my_epoch(),
            "state": self.table.me.state,
            "local_keys": storage_stats.get("records", self.storage.count()),
            "partitions_held": held["primary"] + held["replica"],
            "partitions": held,
            "complete_partitions": sum(1 for c in self.local.complete_for if c != NOT_COMPLETE),
            "handoff": self.mover.progress(),
            "ops": dict(self.counters),
            "coordinator": dict(self.coordinator.counters),
            "storage": storage_stats,
        }

    def cluster_view(self) -> dict:
        members = []
        ring = set(self.config.ring) if self.config is not None else set()
        for node_id in sorted(self.table.members):
            member = self.table.members[node_id]
            entry = {"node_id": node_id, "address": member.address, "http_address": member.http_address,
                     "state": member.state, "incarnation": member.incarnation, "epoch": member.epoch,
                     "in_ring": node_id in ring}
            entry.update(self._held_counts(node_id))
            members.append(entry)
        return {"node_id": self.node_id, "epoch": self._my_epoch(), "claimant": self.claimant_id(), "members": members}

    def partitions_view(self) -> dict:
        if self.config is None:
            return {"epoch": 0, "partitions": []}
        rows = []
        for partition, plan in enumerate(self.config.plans):
            rows.append({"partition": partition, "primary": plan.read_set[0] if plan.read_set else None,
                         "replicas": list(plan.read_set), "pending": list(plan.pending),
                         "phase": PHASE_NAMES[plan.phase], "old": list(plan.old), "new": list(plan.new),
                         "changed_at": plan.changed_at})
        return {"epoch": self.config.epoch, "replication": self.config.replication, "partitions": rows}

    def metrics(self) -> dict:
        values = {f"zkv_{name}_total": value for name, value in self.counters.items()}
        values.update({f"zkv_coordinator_{name}_total": value for name, value in self.coordinator.counters.items()})
        values["zkv_epoch"] = self._my_epoch()
        values["zkv_local_keys"] = self.storage.stats().get("records", 0)
        values["zkv_handoff_bytes_total"] = self.mover.moved_bytes
        values["zkv_handoff_partitions_total"] = self.mover.moved_partitions
        values["zkv_members_alive"] = sum(1 for m in self.table.members.values() if m.state == ALIVE)
        return values

    # -- dispatch tables -----------------------------------------------------------------------------

    _request_handlers = {
        messages.Batch: _on_batch,
        messages.Coordinate: _on_coordinate,
        messages.Inspect: _on_inspect,
        messages.Scan: _on_scan,
        messages.Gossip: _on_gossip,
        messages.Join: _on_join,
        messages.ConfigRequest: _on_config_request,
        messages.Prepare: _on_prepare,
        messages.Accept: _on_accept,
        messages.Commit: _on_commit,
        messages.HandoffDone: _on_handoff_done,
        messages.PullRequest: lambda self, route, message, now_ms: self.mover.on_pull_request(route, message),
        messages.AeDigest: lambda self, route, message, now_ms: self.mover.on_ae_digest(route, message),
        messages.AeRecords: lambda self, route, message, now_ms: self.mover.on_ae_records(route, message, False),
        messages.TombstoneQuery: lambda self, route, message, now_ms: self.mover.on_tombstone_query(route, message),
        messages.TombstonePurge: lambda self, route, message, now_ms: self.mover.on_tombstone_purge(message),
    }

    _reply_handlers = {
        messages.BatchReply: _on_batch_reply,
        messages.ConfigReply: _on_config_reply,
        messages.JoinReply: _on_join_reply,
        messages.Promise: _on_promise,
        messages.Accepted: _on_accepted,
        messages.PullReply: lambda self, node_id, message, now_ms: self.mover.on_pull_reply(node_id, message, now_ms),
        messages.AeKeys: lambda self, node_id, message, now_ms: self.mover.on_ae_keys(node_id, message),
        messages.AeRecords: lambda self, node_id, message, now_ms: self.mover.on_ae_records(None, message, True),
        messages.TombstoneQueryReply:
            lambda self, node_id, message, now_ms: self.mover.on_tombstone_query_reply(node_id, message),
        messages.Error: lambda self, node_id, message, now_ms: self.counters.update(["peer_errors"]),
    }
