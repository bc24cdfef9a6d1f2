"""A deterministic simulator: many NodeCores, clients and faults in one thread.

The simulator runs the real node and client cores (``NodeCore``,
``Coordinator``) against a fake network and a fake clock; every message goes
through the real wire encoding. All randomness comes from one seeded
``random.Random``, so a run is reproduced exactly from its seed.

    event heap (time, sequence) --> deliver message / tick node / client op / fault
         ^                                   |
         +------ effects of the turn <-------+

The network delays each message (jitter reorders them), drops some, and drops
everything between nodes in different partition groups. A crashed node loses
its process; its storage survives only if the node is durable. A paused node
(SIGSTOP) keeps its messages queued and handles them when it resumes.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field

from zkv import wire
from zkv.core.config import SETTLED
from zkv.core.node import LOOPBACK, SEED_PREFIX, NodeCore, NodeSettings
from zkv.core.quorum import Coordinator
from zkv.core.replica import NOT_COMPLETE
from zkv.core.versions import VERSION_BYTES, decode_value
from zkv.storage.memory import MemoryStorage


@dataclass
class NetworkModel:
    delay_ms_min: int = 1
    delay_ms_max: int = 6
    loss: float = 0.0
    groups: list[set[str]] | None = None  # None: fully connected

    def connected(self, a: str, b: str) -> bool:
        if self.groups is None:
            return True
        group_a = next((g for g in self.groups if a in g), None)
        group_b = next((g for g in self.groups if b in g), None)
        return group_a is not None and group_a is group_b


@dataclass
class SimNode:
    node_id: str
    durable: bool
    storage: MemoryStorage
    core: NodeCore | None = None
    life: int = 0  # bumps on every crash: events for an earlier life are dropped
    paused: bool = False
    backlog: list = field(default_factory=list)
    exited: bool = False
    tick_scheduled_ms: int | None = None


@dataclass
class HistoryEntry:
    client: str
    kind: str  # set | get | delete
    key: bytes
    value: str | None
    start_ms: int
    end_ms: int | None = None
    ok: bool | None = None
    version: bytes | None = None  # written version (set/delete) or read version (get; None = missing)
    read_value: object = None
    error: str = ""
    replicas: list = field(default_factory=list)  # who acknowledged (writes) or answered (reads)
    epoch: int = 0  # the coordinator's epoch when the op completed


class SimClient:
    def __init__(self, sim: Simulation, client_id: str, writer_id: int) -> None:
        self.sim = sim
        self.client_id = client_id
        self.coordinator = Coordinator(writer_id)
        self.next_config_ms = 0
        self.wake_ms: int | None = None  # the earliest client_tick already scheduled

    def submit(self, entry: HistoryEntry, quorum: int = 0) -> None:
        deadline_ms = self.sim.now_ms + self.sim.request_timeout_ms
        if entry.kind == "get":
            self.coordinator.submit_read(entry.key, quorum, deadline_ms, entry)
        else:
            value = entry.value if entry.kind == "set" else None
            op = self.coordinator.submit_write(entry.key, value, quorum, self.sim.now_ms, deadline_ms, entry)
            entry.version = op.record[:VERSION_BYTES]
        self.pump()

    def pump(self) -> None:
        sim = self.sim
        coordinator = self.coordinator
        coordinator.on_tick(sim.now_ms)
        if coordinator.config_wanted and sim.now_ms >= self.next_config_ms:
            self.next_config_ms = sim.now_ms + 100
            target = coordinator.take_config_hint() or sim.random_live_node()
            if target is not None:
                sim.network_send(self.client_id, target, ("request", self.client_id),
                                 wire.encode(_config_request()))
        for target, batch in coordinator.flush(sim.now_ms):
            sim.network_send(self.client_id, target, ("request", self.client_id), wire.encode(batch))
        for op in coordinator.take_completed():
            entry = op.token
            if entry is None:
                continue
            entry.end_ms = sim.now_ms
            entry.ok = op.ok
            entry.error = op.error
            entry.replicas = list(op.acked) if entry.kind != "get" else list(op.replies)
            entry.epoch = self.coordinator.config.epoch if self.coordinator.config else 0
            if op.ok and entry.kind == "get":
                entry.version = op.newest[:VERSION_BYTES] if op.newest is not None else None
                entry.read_value = decode_value(op.newest) if op.newest is not None else None
        deadline = coordinator.next_deadline_ms()
        if deadline is not None or coordinator.config_wanted:
            wake = deadline if deadline is not None else sim.now_ms + 50
            if coordinator.config_wanted:
                wake = min(wake, max(self.next_config_ms, sim.now_ms + 1))
            wake = max(wake, sim.now_ms + 1)
            if self.wake_ms is None or wake < self.wake_ms or self.wake_ms <= sim.now_ms:
                self.wake_ms = wake
                sim.schedule(wake, ("client_tick", self.client_id))

    def on_message(self, frame: bytes) -> None:
        message = wire.decode(frame)
        name = type(message).__name__
        if name == "BatchReply":
            self.coordinator.on_reply(message, self.sim.now_ms)
        elif name == "ConfigReply" and message.config is not None:
            from zkv.core.config import Config
            self.coordinator.set_config(Config.from_wire(message.config))
        self.pump()


def _config_request():
    from zkv.core import messages
    return messages.ConfigRequest(0, 0)


class Simulation:
    def __init__(self, seed: int, nodes: int = 5, *, partitions: int = 16, replication: int = 3,
                 durable: bool = True, network: NetworkModel | None = None, request_timeout_ms: int = 2000,
                 tombstone_grace_ms: int = 20_000, buggify_release_early: bool = False) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.now_ms = 1_000_000
        self.events: list = []
        self.sequence = 0
        self.network = network or NetworkModel()
        self.partitions = partitions
        self.replication = replication
        self.durable_default = durable
        self.request_timeout_ms = request_timeout_ms
        self.tombstone_grace_ms = tombstone_grace_ms
        self.buggify_release_early = buggify_release_early
        self.nodes: dict[str, SimNode] = {}
        self.clients: dict[str, SimClient] = {}
        self.history: list[HistoryEntry] = []
        self.logs: list[str] = []
        self.trace_logs = False
        self.messages_sent = 0
        self.first_node: str | None = None
        for index in range(nodes):
            self.add_node(f"n{index + 1}", durable=durable)

    # -- scheduling -------------------------------------------------------------------------

    def schedule(self, at_ms: int, event: tuple) -> None:
        self.sequence += 1
        heapq.heappush(self.events, (at_ms, self.sequence, event))

    def run_until(self, end_ms: int, stop=None) -> None:
        while self.events and self.events[0][0] <= end_ms:
            at_ms, _, event = heapq.heappop(self.events)
            self.now_ms = max(self.now_ms, at_ms)
            self._dispatch(event)
            if stop is not None and stop():
                return
        self.now_ms = max(self.now_ms, end_ms)

    def _dispatch(self, event: tuple) -> None:
        kind = event[0]
        if kind == "deliver":
            _, target, life, sender, route, frame = event
            self._deliver(target, life, sender, route, frame)
        elif kind == "tick":
            _, node_id, life = event
            node = self.nodes.get(node_id)
            if node is None or node.life != life or node.core is None:
                return
            node.tick_scheduled_ms = None
            if node.paused:
                return
            self._turn(node, lambda core: core.on_tick(self.now_ms))
        elif kind == "client_tick":
            client = self.clients[event[1]]
            if client.wake_ms is not None and client.wake_ms <= self.now_ms:
                client.wake_ms = None
            client.pump()
        elif kind == "call":
            event[1]()

    # -- nodes ------------------------------------------------------------------------------------

    def settings_for(self, node_id: str, seeds: tuple[str, ...]) -> NodeSettings:
        return NodeSettings(
            node_id=node_id, address=node_id, http_address="", partitions=self.partitions,
            replication=self.replication, seeds=seeds, generation=self.rng.getrandbits(48),
            writer_id=self.rng.getrandbits(63), tombstone_grace_ms=self.tombstone_grace_ms,
            tombstone_interval_ms=2000, leave_timeout_ms=60_000,
            buggify_release_early=self.buggify_release_early)

    def add_node(self, node_id: str, durable: bool | None = None) -> SimNode:
        durable = self.durable_default if durable is None else durable
        node = SimNode(node_id, durable, MemoryStorage())
        self.nodes[node_id] = node
        live = [n for n in self.live_nodes() if n != node_id]
        seeds = tuple(self.rng.sample(live, min(2, len(live)))) if self.first_node is not None else ()
        if self.first_node is None:
            self.first_node = node_id
        self._boot(node, seeds)
        return node

    def _boot(self, node: SimNode, seeds: tuple[str, ...]) -> None:
        node.life += 1
        node.exited = False
        node.paused = False
        node.backlog = []
        node.tick_scheduled_ms = None
        rng = random.Random(self.rng.getrandbits(64))
        node.storage.begin_turn()
        node.core = NodeCore(self.settings_for(node.node_id, seeds), node.storage, rng, self.now_ms)
        effects = node.core.finish_turn(self.now_ms)
        node.storage.end_turn()
        self._apply_effects(node, effects)

    def crash(self, node_id: str) -> None:
        node = self.nodes[node_id]
        node.core = None
        node.life += 1
        node.paused = False
        node.backlog = []
        if not node.durable:
            node.storage = MemoryStorage()

    def restart(self, node_id: str) -> None:
        node = self.nodes[node_id]
        seeds = tuple(n for n in self.nodes if n != node_id and self.nodes[n].core is not None)
        self._boot(node, seeds[:3])

    def pause(self, node_id: str) -> None:
        self.nodes[node_id].paused = True

    def resume(self, node_id: str) -> None:
        node = self.nodes[node_id]
        node.paused = False
        backlog, node.backlog = node.backlog, []
        for sender, route, frame in backlog:
            self._deliver(node_id, node.life, sender, route, frame)
        if node.core is not None:
            self._turn(node, lambda core: core.on_tick(self.now_ms))

    def leave(self, node_id: str) -> None:
        node = self.nodes[node_id]
        if node.core is not None:
            self._turn(node, lambda core: core.begin_leave(self.now_ms))

    def live_nodes(self) -> list[str]:
        return [n for n, node in self.nodes.items() if node.core is not None and not node.exited]

    def random_live_node(self) -> str | None:
        live = [n for n in self.live_nodes() if not self.nodes[n].paused]
        return self.rng.choice(live) if live else None

    def _turn(self, node: SimNode, feed) -> None:
        core = node.core
        node.storage.begin_turn()
        feed(core)
        effects = core.finish_turn(self.now_ms)
        node.storage.end_turn()
        self._apply_effects(node, effects)

    def _apply_effects(self, node: SimNode, effects) -> None:
        if self.trace_logs:
            for line in effects.logs:
                self.logs.append(f"{self.now_ms} {node.node_id}: {line}")
        for target, message in effects.sends:
            if target.startswith(SEED_PREFIX):
                target = target[len(SEED_PREFIX):]
            self.network_send(node.node_id, target, ("request", node.node_id), wire.encode(message))
        for route, message in effects.replies:
            if route == LOOPBACK:
                continue
            _, origin = route
            self.network_send(node.node_id, origin, ("reply", node.node_id), wire.encode(message))
        if effects.exit_code is not None:
            node.exited = True
            node.core = None
            node.life += 1
            return
        if node.core is not None:
            deadline = max(node.core.next_deadline_ms(), self.now_ms + 1)
            if node.tick_scheduled_ms is None or deadline < node.tick_scheduled_ms:
                node.tick_scheduled_ms = deadline
                self.schedule(deadline, ("tick", node.node_id, node.life))

    # -- network -----------------------------------------------------------------------------------

    def network_send(self, sender: str, target: str, route: tuple, frame: bytes) -> None:
        self.messages_sent += 1
        model = self.network
        if not model.connected(sender, target):
            return
        if model.loss and self.rng.random() < model.loss:
            return
        delay_ms = self.rng.randint(model.delay_ms_min, model.delay_ms_max)
        target_node = self.nodes.get(target)
        life = target_node.life if target_node is not None else 0
        self.schedule(self.now_ms + delay_ms, ("deliver", target, life, sender, route, frame))

    def _deliver(self, target: str, life: int, sender: str, route: tuple, frame: bytes) -> None:
        client = self.clients.get(target)
        if client is not None:
            client.on_message(frame)
            return
        node = self.nodes.get(target)
        if node is None or node.core is None or node.life != life:
            return
        if not self.network.connected(sender, target):
            return  # a partition that started while the message was in flight
        if node.paused:
            node.backlog.append((sender, route, frame))
            return
        message = wire.decode(frame)
        kind, origin = route
        if kind == "request":
            self._turn(node, lambda core: core.on_request(("route", origin), message, self.now_ms))
        else:
            self._turn(node, lambda core: core.on_peer_message(origin, message, self.now_ms))

    # -- clients and workload ---------------------------------------------------------------------------

    def add_client(self, client_id: str) -> SimClient:
        client = SimClient(self, client_id, self.rng.getrandbits(63))
        self.clients[client_id] = client
        return client

    def op(self, client_id: str, kind: str, key: bytes, value: str | None = None, quorum: int = 0) -> HistoryEntry:
        entry = HistoryEntry(client_id, kind, key, value, self.now_ms)
        self.history.append(entry)
        self.clients[client_id].submit(entry, quorum)
        return entry

    # -- inspection ------------------------------------------------------------------------------------

    def cores(self) -> list[NodeCore]:
        return [node.core for node in self.nodes.values() if node.core is not None]

    def newest_config(self):
        configs = [core.config for core in self.cores() if core.config is not None]
        return max(configs, key=lambda config: config.epoch) if configs else None

    def converged(self) -> bool:
        """Every live node on the newest epoch, every plan settled, every owner complete, data equal."""
        config = self.newest_config()
        if config is None:
            return False
        cores = {core.node_id: core for core in self.cores()}
        if any(core.config is None or core.config.epoch != config.epoch for core in cores.values()):
            return False
        if set(config.ring) != set(cores) - {n for n, c in cores.items() if c.leaving}:
            return False
        for partition, plan in enumerate(config.plans):
            if plan.phase != SETTLED:
                return False
            copies = []
            for owner in plan.new:
                core = cores.get(owner)
                if core is None or core.local.complete_for[partition] == NOT_COMPLETE:
                    return False
                copies.append(dict(_all_records(core.storage, partition)))
            if any(copy != copies[0] for copy in copies[1:]):
                return False
            for node_id, core in cores.items():
                if node_id not in plan.new and core.storage.count(partition):
                    return False
        return True


def _all_records(storage, partition: int):
    cursor = None
    while True:
        pairs, cursor = storage.scan(partition, cursor, 10_000, 1 << 30)
        yield from pairs
        if cursor is None:
            return
