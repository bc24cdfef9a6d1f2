"""Moving data between replicas: handoff pulls, release, anti-entropy, tombstone purge.

``DataMover`` belongs to a ``NodeCore`` and works through it (the node is its
context: config, storage, member table, send/reply, counters). It decides from
the adopted config which partitions this node must pull (``zkv.core.handoff``),
serves pulls to others, drops partitions it no longer owns once that is safe,
and runs the anti-entropy and tombstone rounds (``zkv.core.antientropy``).

Release rule (DESIGN "Rebalancing"): a node drops its copy of p only when its
adopted config lists it in none of p's sets (so the plan got past SWITCHED,
which needs every new owner complete) and every responsive member reports an
epoch at least p's ``changed_at``.
"""

from __future__ import annotations

from zkv.core import antientropy, handoff, messages
from zkv.core.antientropy import DigestBuilder
from zkv.core.config import MOVING, SETTLED, needed, pull_sources_needed
from zkv.core.messages import STATUS_BEHIND, STATUS_INVALID, STATUS_NOT_READY, STATUS_OK, STATUS_STALE
from zkv.core.replica import NOT_COMPLETE
from zkv.core.versions import VERSION_BYTES, is_tombstone, record_is_valid, version_wall_ms

RELEASE_ITEMS_PER_TICK = 20000
MOVER_INTERVAL_MS = 100
SCAN_ITEMS = 5000
SCAN_BYTES = 8 << 20


class DataMover:
    def __init__(self, node) -> None:
        self.node = node
        self.tasks: dict[int, handoff.PullTask] = {}
        self.held: set[int] = set(node.storage.partitions())
        self.pull_requests: dict[int, int] = {}  # request id -> partition
        self.ae_requests: dict[int, tuple[str, int, int]] = {}  # request id -> (peer, partition, epoch)
        self.tombstone_requests: dict[int, dict] = {}
        self.digest_cache: dict[int, bytes] = {}
        self.dirty: set[int] = set()
        self.ae_cursor = 0
        self.ae_peer_turn = 0
        self.tombstone_cursor = 0
        self.next_run_ms = 0
        self.next_ae_ms = 0
        self.next_tombstone_ms = 0
        self.moved_partitions = 0
        self.moved_bytes = 0
        self.moved_items = 0

    # -- bookkeeping shared with the replica path --------------------------------

    def note_written(self, partitions: list[int]) -> None:
        if partitions:
            self.dirty.update(partitions)
            self.held.update(partitions)

    def wipe(self, partition: int) -> None:
        """Forget a partition entirely (before pulling it afresh)."""
        storage = self.node.storage
        while not storage.drop_partition(partition, RELEASE_ITEMS_PER_TICK):
            pass
        self.held.discard(partition)
        self.dirty.add(partition)
        self.tasks.pop(partition, None)

    # -- the timer ------------------------------------------------------------------

    def on_tick(self, now_ms: int) -> None:
        if now_ms < self.next_run_ms or self.node.config is None:
            return
        self.next_run_ms = now_ms + MOVER_INTERVAL_MS
        self._sync_tasks(now_ms)
        self._drive_tasks(now_ms)
        self._release(now_ms)
        if now_ms >= self.next_ae_ms:
            self.next_ae_ms = now_ms + self.node.settings.ae_interval_ms
            self._start_ae_round()
        if now_ms >= self.next_tombstone_ms:
            self.next_tombstone_ms = now_ms + self.node.settings.tombstone_interval_ms
            self._start_tombstone_round(now_ms)
        self._expire(now_ms)

    def next_deadline_ms(self) -> int:
        return self.next_run_ms

    # -- handoff: deciding what to pull ------------------------------------------------

    def desired_pull(self, partition: int):
        """(kind, since, sources, need) for a pull this node should run, or None."""
        node = self.node
        me = node.node_id
        config = node.config
        plan = config.plans[partition]
        complete_for = node.local.complete_for[partition]
        if plan.phase == MOVING and me in plan.awaiting:
            since = plan.joined_at(me)
            if complete_for == since:
                return None
            if me in plan.old:
                # A staying member of a shrinking set: merge enough of the others that its copy
                # plus theirs meets every quorum of old.
                sources = tuple(n for n in plan.old if n != me)
                return handoff.MOVE, since, sources, len(plan.old) - needed(config.quorum, len(plan.old))
            return handoff.MOVE, since, plan.old, pull_sources_needed(len(plan.old), config.quorum)
        read_set = plan.read_set
        if me in read_set and complete_for == NOT_COMPLETE:
            others = tuple(n for n in read_set if n != me)
            need = min(len(read_set) - needed(config.quorum, len(read_set)) + 1, len(others))
            return handoff.RECOVERY, 0, others, need
        return None

    def _sync_tasks(self, now_ms: int) -> None:
        node = self.node
        for partition in list(self.tasks):
            task = self.tasks[partition]
            desired = self.desired_pull(partition)
            if desired is None or not task.matches(*desired):
                del self.tasks[partition]
        for partition in range(node.config.partitions):
            if len(self.tasks) >= handoff.PULL_TASKS_MAX:
                break
            if partition in self.tasks:
                continue
            desired = self.desired_pull(partition)
            if desired is None:
                continue
            kind, since, sources, need = desired
            if need == 0:
                self._finish(partition, kind, since)
                continue
            self.tasks[partition] = handoff.PullTask(partition, kind, since, sources, need)
            node.log(f"pulling partition {partition} ({kind}) from {', '.join(sources)}")

    def _drive_tasks(self, now_ms: int) -> None:
        node = self.node
        responsive = lambda source: node.table.is_responsive(source, now_ms)  # noqa: E731
        for partition, task in list(self.tasks.items()):
            if task.complete(responsive):
                del self.tasks[partition]
                self.moved_partitions += 1
                self._finish(partition, task.kind, task.since)
                continue
            for source, state in task.requests(now_ms, responsive):
                self._request_chunk(task, source, state, now_ms)

    def _finish(self, partition: int, kind: str, since: int) -> None:
        node = self.node
        node.set_complete(partition, since if kind == handoff.MOVE else 0)
        node.log(f"partition {partition} is complete here ({kind})")

    # -- handoff: the messages ------------------------------------------------------------

    def on_pull_request(self, route, message: messages.PullRequest) -> None:
        node = self.node
        config = node.config
        partition = message.partition
        status = STATUS_OK
        pairs: list = []
        cursor = None
        if config is None or not 0 <= partition < config.partitions:
            status = STATUS_INVALID if config is not None else STATUS_BEHIND
        elif config.epoch < message.since:
            status = STATUS_BEHIND
            node.want_config(message.sender)
        elif node.local.complete_for[partition] == NOT_COMPLETE:
            status = STATUS_NOT_READY
        else:
            items_max = max(1, min(message.items_max, handoff.PULL_ITEMS_MAX))
            bytes_max = max(1, min(message.bytes_max, handoff.PULL_BYTES_MAX))
            cursor_in = message.cursor if isinstance(message.cursor, bytes) else None
            pairs, cursor = node.storage.scan(partition, cursor_in, items_max, bytes_max)
            node.counters["pull_served_items"] += len(pairs)
        node.reply(route, messages.PullReply(
            message.request_id, partition, status, [k for k, _ in pairs], [r for _, r in pairs], cursor))

    def on_pull_reply(self, source: str, message: messages.PullReply, now_ms: int) -> None:
        partition = self.pull_requests.pop(message.request_id, None)
        task = self.tasks.get(partition) if partition is not None else None
        if task is None or task.partition != message.partition:
            return
        if message.status != STATUS_OK:
            task.on_refused(source, message.request_id, now_ms)
            return
        keys, records = message.keys, message.records
        if len(keys) != len(records) or not all(
                type(k) is bytes and record_is_valid(r) for k, r in zip(keys, records)):
            self.node.counters["bad_messages"] += 1
            task.on_refused(source, message.request_id, now_ms)
            return
        size_bytes = sum(len(r) for r in records)
        if not self.node.local.writable[partition]:
            return
        if keys:
            self.node.storage.apply([partition] * len(keys), keys, records)
            self.note_written([partition])
        last = message.cursor is None
        if task.on_chunk(source, message.request_id, last, message.cursor, len(keys), size_bytes):
            self.moved_bytes += size_bytes
            self.moved_items += len(keys)
            if not last:
                self._request_chunk(task, source, task.states[source], now_ms)  # the reply is the flow control

    def _request_chunk(self, task: handoff.PullTask, source: str, state: handoff.SourceState, now_ms: int) -> None:
        node = self.node
        request_id = node.next_request_id()
        handoff.mark_waiting(state, request_id, now_ms)
        self.pull_requests[request_id] = task.partition
        node.send(source, messages.PullRequest(request_id, node.node_id, task.partition, task.since, state.cursor,
                                               handoff.PULL_ITEMS_MAX, handoff.PULL_BYTES_MAX))

    # -- release ----------------------------------------------------------------------------

    def _release(self, now_ms: int) -> None:
        node = self.node
        config = node.config
        if node.settings.buggify_release_early:
            self._release_early_bug()
            return
        budget = RELEASE_ITEMS_PER_TICK  # bounded work per round, in records deleted
        for partition in sorted(self.held | {p for p, c in enumerate(node.local.complete_for) if c != NOT_COMPLETE}):
            plan = config.plans[partition]
            if node.node_id in plan.write_targets or not node.all_members_reached(plan.changed_at, now_ms):
                continue
            before = node.storage.count(partition)
            if not node.storage.drop_partition(partition, budget):
                return
            budget -= before
            self.held.discard(partition)
            self.digest_cache.pop(partition, None)
            if node.local.complete_for[partition] != NOT_COMPLETE:
                node.set_complete(partition, NOT_COMPLETE)
            node.log(f"released partition {partition} (no longer an owner at epoch {config.epoch})")
            if budget <= 0:
                return

    def _release_early_bug(self) -> None:
        """A deliberately broken rule, only for showing that the simulator's checker catches it:
        drop a partition as soon as this node is no longer a *target* owner, while the move is
        still in progress and this node still serves it."""
        node = self.node
        for partition in sorted(self.held):
            plan = node.config.plans[partition]
            if plan.phase == MOVING and node.node_id not in plan.new:
                node.storage.drop_partition(partition, RELEASE_ITEMS_PER_TICK)
                self.held.discard(partition)
                self.dirty.add(partition)

    # -- anti-entropy -----------------------------------------------------------------------------

    def digest(self, partition: int) -> bytes:
        cached = self.digest_cache.get(partition)
        if cached is not None and partition not in self.dirty:
            return cached
        builder = DigestBuilder()
        cursor = None
        storage = self.node.storage
        while True:
            pairs, cursor = storage.scan(partition, cursor, SCAN_ITEMS, SCAN_BYTES)
            builder.add(pairs)
            if cursor is None:
                break
        digest = builder.to_bytes()
        self.digest_cache[partition] = digest
        self.dirty.discard(partition)
        return digest

    def _records_in_buckets(self, partition: int, buckets: set[int]) -> dict[bytes, bytes]:
        found: dict[bytes, bytes] = {}
        cursor = None
        storage = self.node.storage
        while True:
            pairs, cursor = storage.scan(partition, cursor, SCAN_ITEMS, SCAN_BYTES)
            for key, record in pairs:
                if antientropy.bucket_of(key) in buckets:
                    found[key] = record
            if cursor is None:
                return found

    def _ae_eligible(self, partition: int) -> bool:
        node = self.node
        return node.local.readable[partition] and len(node.config.plans[partition].read_set) > 1

    def _start_ae_round(self) -> None:
        node = self.node
        config = node.config
        started = 0
        for _ in range(config.partitions):
            if started >= antientropy.AE_PARTITIONS_PER_ROUND:
                break
            partition = self.ae_cursor
            self.ae_cursor = (self.ae_cursor + 1) % config.partitions
            if not self._ae_eligible(partition):
                continue
            peers = [n for n in config.plans[partition].read_set if n != node.node_id]
            self.ae_peer_turn += 1
            peer = peers[self.ae_peer_turn % len(peers)]
            request_id = node.next_request_id()
            self.ae_requests[request_id] = (peer, partition, config.epoch)
            node.send(peer, messages.AeDigest(request_id, node.node_id, config.epoch, partition, self.digest(partition)))
            node.counters["ae_rounds"] += 1
            started += 1

    def on_ae_digest(self, route, message: messages.AeDigest) -> None:
        node = self.node
        status, differing, keys, versions, complete = self._ae_status(message.epoch, message.partition), [], [], [], True
        if status == STATUS_OK:
            differing = antientropy.differing_buckets(self.digest(message.partition), message.buckets)
            if differing:
                mine = self._records_in_buckets(message.partition, set(differing))
                for key, record in mine.items():
                    if len(keys) >= antientropy.AE_KEYS_MAX:
                        complete = False
                        break
                    keys.append(key)
                    versions.append(record[:VERSION_BYTES])
        node.reply(route, messages.AeKeys(message.request_id, message.partition, status, differing, keys, versions, complete))

    def _ae_status(self, epoch: int, partition: int) -> int:
        config = self.node.config
        if config is None or not 0 <= partition < config.partitions:
            return STATUS_INVALID
        if epoch != config.epoch:
            return STATUS_STALE
        if not self.node.local.readable[partition]:
            return STATUS_NOT_READY
        return STATUS_OK

    def on_ae_keys(self, source: str, message: messages.AeKeys) -> None:
        node = self.node
        entry = self.ae_requests.pop(message.request_id, None)
        if entry is None or message.status != STATUS_OK or not message.buckets:
            if entry is not None and message.status == STATUS_OK:
                node.counters["ae_in_sync"] += 1
            return
        peer, partition, epoch = entry
        if epoch != node.config.epoch or not self._ae_eligible(partition):
            return
        if not (len(message.keys) == len(message.versions) and all(type(k) is bytes for k in message.keys)
                and all(type(v) is bytes and len(v) == VERSION_BYTES for v in message.versions)):
            node.counters["bad_messages"] += 1
            return
        buckets = {b for b in message.buckets if type(b) is int}
        mine = self._records_in_buckets(partition, buckets)
        send, want = antientropy.compare_listing(mine, message.keys, message.versions)
        if not message.complete:
            listed = set(message.keys)
            send = [key for key in send if key in listed]
        keys, records, size = [], [], 0
        for key in send:
            record = mine[key]
            if size + len(record) > antientropy.AE_BYTES_MAX and keys:
                break
            keys.append(key)
            records.append(record)
            size += len(record)
        if keys or want:
            node.counters["ae_repaired_out"] += len(keys)
            request_id = node.next_request_id()
            self.ae_requests[request_id] = (peer, partition, epoch)
            node.send(peer, messages.AeRecords(request_id, node.node_id, epoch, partition, keys, records, want))

    def on_ae_records(self, route, message: messages.AeRecords, is_reply: bool) -> None:
        node = self.node
        if is_reply:
            entry = self.ae_requests.pop(message.request_id, None)
            if entry is None:
                return
        status = self._ae_status(message.epoch, message.partition)
        if status != STATUS_OK:
            return
        keys, records = message.keys, message.records
        if len(keys) != len(records) or not all(type(k) is bytes and record_is_valid(r) for k, r in zip(keys, records)):
            node.counters["bad_messages"] += 1
            return
        if keys:
            node.storage.apply([message.partition] * len(keys), keys, records)
            self.note_written([message.partition])
            node.counters["ae_repaired_in"] += len(keys)
        if is_reply or not message.wanted:
            return
        out_keys, out_records, size = [], [], 0
        for key in message.wanted:
            if type(key) is not bytes:
                continue
            record = node.storage.get(message.partition, key)
            if record is None:
                continue
            if size + len(record) > antientropy.AE_BYTES_MAX and out_keys:
                break
            out_keys.append(key)
            out_records.append(record)
            size += len(record)
        node.reply(route, messages.AeRecords(message.request_id, node.node_id, message.epoch, message.partition,
                                             out_keys, out_records, []))

    # -- tombstones ------------------------------------------------------------------------------

    def _start_tombstone_round(self, now_ms: int) -> None:
        node = self.node
        config = node.config
        grace_ms = node.settings.tombstone_grace_ms
        for _ in range(config.partitions):
            partition = self.tombstone_cursor
            self.tombstone_cursor = (self.tombstone_cursor + 1) % config.partitions
            plan = config.plans[partition]
            if plan.phase != SETTLED or not plan.read_set or plan.read_set[0] != node.node_id:
                continue
            if not node.local.readable[partition]:
                continue
            if not all(node.table.is_responsive(n, now_ms) for n in plan.new):
                continue
            keys, records = [], []
            cursor = None
            while len(keys) < antientropy.TOMBSTONES_PER_ROUND:
                pairs, cursor = node.storage.scan(partition, cursor, SCAN_ITEMS, SCAN_BYTES)
                for key, record in pairs:
                    if is_tombstone(record) and now_ms - version_wall_ms(record) > grace_ms:
                        keys.append(key)
                        records.append(record)
                if cursor is None:
                    break
            if not keys:
                continue
            others = [n for n in plan.new if n != node.node_id]
            round_state = {"partition": partition, "epoch": config.epoch, "keys": keys, "records": records,
                           "waiting": set(others), "have": [True] * len(keys), "deadline_ms": now_ms + 5000}
            if not others:
                self._purge(round_state)
                return
            for peer in others:
                request_id = node.next_request_id()
                self.tombstone_requests[request_id] = round_state
                node.send(peer, messages.TombstoneQuery(request_id, node.node_id, config.epoch, partition, keys,
                                                        [r[:VERSION_BYTES] for r in records]))
            return  # one partition per round

    def on_tombstone_query(self, route, message: messages.TombstoneQuery) -> None:
        node = self.node
        status = self._ae_status(message.epoch, message.partition)
        have = bytearray(len(message.keys))
        if status == STATUS_OK and len(message.keys) == len(message.versions):
            for index, (key, version) in enumerate(zip(message.keys, message.versions)):
                if type(key) is not bytes or type(version) is not bytes:
                    continue
                record = node.storage.get(message.partition, key)
                if record is not None and record[:VERSION_BYTES] >= version:
                    have[index] = 1
        node.reply(route, messages.TombstoneQueryReply(message.request_id, message.partition, status, bytes(have)))

    def on_tombstone_query_reply(self, source: str, message: messages.TombstoneQueryReply) -> None:
        round_state = self.tombstone_requests.pop(message.request_id, None)
        if round_state is None or source not in round_state["waiting"]:
            return
        if message.status != STATUS_OK or len(message.have) != len(round_state["keys"]):
            round_state["have"] = [False] * len(round_state["keys"])
        else:
            round_state["have"] = [a and bool(b) for a, b in zip(round_state["have"], message.have)]
        round_state["waiting"].discard(source)
        if not round_state["waiting"]:
            self._purge(round_state)

    def _purge(self, round_state: dict) -> None:
        node = self.node
        config = node.config
        if config.epoch != round_state["epoch"]:
            return
        keys = [k for k, ok in zip(round_state["keys"], round_state["have"]) if ok]
        records = [r for r, ok in zip(round_state["records"], round_state["have"]) if ok]
        if not keys:
            return
        partition = round_state["partition"]
        plan = config.plans[partition]
        for peer in plan.new:
            if peer != node.node_id:
                node.send(peer, messages.TombstonePurge(node.node_id, config.epoch, partition, keys, records))
        purged = node.storage.delete_if_version(partition, keys, records)
        self.dirty.add(partition)
        node.counters["tombstones_purged"] += purged

    def on_tombstone_purge(self, message: messages.TombstonePurge) -> None:
        node = self.node
        if self._ae_status(message.epoch, message.partition) != STATUS_OK:
            return
        keys, records = message.keys, message.records
        if len(keys) != len(records) or not all(type(k) is bytes and type(r) is bytes for k, r in zip(keys, records)):
            node.counters["bad_messages"] += 1
            return
        node.counters["tombstones_purged"] += node.storage.delete_if_version(message.partition, keys, records)
        self.dirty.add(message.partition)

    # -- housekeeping -------------------------------------------------------------------------------

    def _expire(self, now_ms: int) -> None:
        for request_id, round_state in list(self.tombstone_requests.items()):
            if now_ms > round_state["deadline_ms"]:
                del self.tombstone_requests[request_id]
        if len(self.ae_requests) > 1000:
            self.ae_requests.clear()
        if len(self.pull_requests) > 10000:
            self.pull_requests.clear()

    def progress(self) -> dict:
        return {"partitions_moved": self.moved_partitions, "bytes_moved": self.moved_bytes,
                "items_moved": self.moved_items, "active": [task.progress() for task in self.tasks.values()]}
