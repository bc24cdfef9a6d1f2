"""Seeded scenarios: a workload and one fault at a time, then healing and a check.

A scenario has a safety phase (clients write, read and delete while faults
come and go) and a liveness phase (every fault healed, no new ones; the
cluster must converge within a bound). Faults are drawn from the seed:
crash (kill -9; memory nodes lose their data), pause (SIGSTOP, possibly past
the dead timeout), a network partition into a majority and a minority, a node
joining, a node leaving gracefully; message loss and delays run throughout.
Faults come one at a time: the next starts only once the last has healed and
every node holds complete copies of what it serves (the single-fault model of
DESIGN's invariants).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from tests.sim.checker import Verdict, check_final_state, check_history
from tests.sim.simulator import NetworkModel, Simulation
from zkv.core.replica import NOT_COMPLETE

FAULT_KINDS = ("crash", "pause", "partition", "join", "leave")


@dataclass
class ScenarioSettings:
    nodes: int = 5
    partitions: int = 16
    durable: bool | None = None  # None: drawn from the seed
    safety_ms: int = 20_000
    liveness_ms_max: int = 90_000
    clients: int = 3
    keys: int = 12
    op_interval_ms: int = 15
    inflight_max: int = 4
    loss_max: float = 0.03
    buggify_release_early: bool = False


@dataclass
class ScenarioResult:
    seed: int
    verdict: Verdict
    converged: bool
    faults: list[str]
    ops: int
    sim: Simulation

    @property
    def ok(self) -> bool:
        return self.verdict.ok and self.converged

    def describe(self) -> str:
        lines = [f"seed {self.seed}: {'ok' if self.ok else 'FAILED'}; converged={self.converged}; "
                 f"ops={self.ops} acked_writes={self.verdict.acknowledged_writes} "
                 f"reads={self.verdict.reads_checked} failed={self.verdict.failed_ops}",
                 "faults: " + "; ".join(self.faults)]
        lines.extend(self.verdict.violations[:20])
        return "\n".join(lines)


class FaultInjector:
    def __init__(self, sim: Simulation, settings: ScenarioSettings) -> None:
        self.sim = sim
        self.settings = settings
        self.rng = sim.rng
        self.active = False
        self.log: list[str] = []
        self.crashed: set[str] = set()
        self.paused: set[str] = set()
        self.next_index = settings.nodes + 1
        self.started = 0

    def _say(self, text: str) -> None:
        self.log.append(f"{self.sim.now_ms - 1_000_000}ms {text}")

    def stable(self) -> bool:
        """No fault in progress, every node serves only what it holds completely, and every
        restarted node has been re-admitted as a voter (a memory node that lost its acceptor
        state is not recovered until then: two such at once can cost the voters their majority)."""
        if self.active:
            return False
        config = self.sim.newest_config()
        for core in self.sim.cores():
            generation = config.voter_generation(core.node_id) if config is not None else None
            if generation is not None and generation != core.generation:
                return False
        for core in self.sim.cores():
            if core.config is None:
                return False
            for partition, plan in enumerate(core.config.plans):
                if core.node_id in plan.read_set and core.local.complete_for[partition] == NOT_COMPLETE:
                    return False
        return True

    def maybe_start(self) -> None:
        if not self.stable():
            return
        sim = self.sim
        live = [n for n in sim.live_nodes() if not sim.nodes[n].core.leaving]
        kind = self.rng.choice(FAULT_KINDS)
        if kind in ("crash", "pause", "leave") and len(live) <= 3:
            kind = "join"
        if kind == "join" and len(live) >= self.settings.nodes + 2:
            kind = "crash"
        self.started += 1
        if kind == "crash":
            victim = self.rng.choice(live)
            sim.crash(victim)
            self.active = True
            self._say(f"crash {victim} ({'durable' if sim.nodes[victim].durable else 'memory'})")
            self._later(self.rng.randint(500, 8000), lambda: self._restart(victim))
        elif kind == "pause":
            victim = self.rng.choice(live)
            sim.pause(victim)
            self.active = True
            duration = self.rng.randint(500, 10_000)
            self._say(f"pause {victim} for {duration}ms")
            self._later(duration, lambda: self._resume(victim))
        elif kind == "partition":
            minority = set(self.rng.sample(live, (len(live) - 1) // 2))
            majority = {n for n in sim.nodes if n not in minority}
            for client_id in sim.clients:  # clients sit on either side (dict order: deterministic)
                (minority if self.rng.random() < 0.3 else majority).add(client_id)
            sim.network.groups = [minority, majority]
            self.active = True
            duration = self.rng.randint(500, 10_000)
            self._say(f"partition {sorted(minority)} from the rest for {duration}ms")
            self._later(duration, self._heal)
        elif kind == "join":
            node_id = f"n{self.next_index}"
            self.next_index += 1
            if sim.network.groups is not None:
                sim.network.groups[-1].add(node_id)
            sim.add_node(node_id)
            self._say(f"join {node_id}")
        elif kind == "leave":
            victim = self.rng.choice(live)
            sim.leave(victim)
            self._say(f"leave {victim}")

    def _later(self, delay_ms: int, action) -> None:
        self.sim.schedule(self.sim.now_ms + delay_ms, ("call", action))

    def _restart(self, node_id: str) -> None:
        self.sim.restart(node_id)
        self.active = False
        self._say(f"restart {node_id}")

    def _resume(self, node_id: str) -> None:
        self.sim.resume(node_id)
        self.active = False
        self._say(f"resume {node_id}")

    def _heal(self) -> None:
        self.sim.network.groups = None
        self.active = False
        self._say("heal network")


class Workload:
    def __init__(self, sim: Simulation, settings: ScenarioSettings) -> None:
        self.sim = sim
        self.settings = settings
        self.rng = sim.rng
        self.counter = 0
        self.keys = [b"key-%d" % i for i in range(settings.keys)]
        self.inflight: dict[str, list] = {}
        for index in range(settings.clients):
            sim.add_client(f"c{index + 1}")
            self.inflight[f"c{index + 1}"] = []

    def step(self) -> None:
        sim = self.sim
        for client_id in sim.clients:
            pending = [e for e in self.inflight[client_id] if e.ok is None]
            self.inflight[client_id] = pending
            if len(pending) >= self.settings.inflight_max:
                continue
            key = self.rng.choice(self.keys)
            roll = self.rng.random()
            self.counter += 1
            quorum = 3 if self.rng.random() < 0.1 else 0  # sometimes the reference's SetWithQuorum
            if roll < 0.5:
                entry = sim.op(client_id, "set", key, f"{client_id}-{self.counter}", quorum)
            elif roll < 0.85:
                entry = sim.op(client_id, "get", key, quorum=quorum)
            else:
                entry = sim.op(client_id, "delete", key, quorum=quorum)
            pending.append(entry)


def run_scenario(seed: int, settings: ScenarioSettings | None = None, trace: bool = False) -> ScenarioResult:
    settings = settings or ScenarioSettings()
    shape = random.Random(seed ^ 0x5EED)  # the run's shape comes from the seed too
    durable = settings.durable if settings.durable is not None else shape.random() < 0.5
    loss = shape.uniform(0, settings.loss_max)
    sim = Simulation(seed, nodes=settings.nodes, partitions=settings.partitions, durable=durable,
                     network=NetworkModel(loss=loss), buggify_release_early=settings.buggify_release_early)
    sim.trace_logs = trace
    sim.run_until(sim.now_ms + 20_000, stop=sim.converged)
    workload = Workload(sim, settings)
    faults = FaultInjector(sim, settings)
    end_ms = sim.now_ms + settings.safety_ms
    next_fault_ms = sim.now_ms + 1000
    while sim.now_ms < end_ms:
        workload.step()
        if sim.now_ms >= next_fault_ms:
            faults.maybe_start()
            next_fault_ms = sim.now_ms + sim.rng.randint(1000, 4000)
        sim.run_until(sim.now_ms + sim.rng.randint(1, settings.op_interval_ms))
    # Liveness: heal everything, let in-flight ops finish, require convergence.
    sim.run_until(sim.now_ms + 12_000, stop=lambda: not faults.active)
    sim.network.groups = None
    sim.network.loss = 0.0
    for node_id, node in sim.nodes.items():
        if node.paused:
            sim.resume(node_id)
        elif node.core is None and not node.exited:
            sim.restart(node_id)
    sim.run_until(sim.now_ms + sim.request_timeout_ms + 500)
    sim.run_until(sim.now_ms + settings.liveness_ms_max, stop=sim.converged)
    converged = sim.converged()
    final_reads = []
    if converged:
        # Liveness for clients too: after healing, every client (with whatever stale map it
        # holds) must read every key successfully.
        for client_id in sim.clients:
            for key in workload.keys:
                final_reads.append(sim.op(client_id, "get", key))
        sim.run_until(sim.now_ms + sim.request_timeout_ms + 500,
                      stop=lambda: all(entry.ok is not None for entry in final_reads))
    verdict = check_history(sim.history, sim.now_ms, sim.request_timeout_ms)
    failed_final = [entry for entry in final_reads if not entry.ok]
    if failed_final:
        verdict.violations.append(f"{len(failed_final)} reads failed after the cluster healed and converged, "
                                  f"first: {failed_final[0].kind} {failed_final[0].key!r} {failed_final[0].error}")
    if converged:
        check_final_state(sim, sim.history, verdict)
    return ScenarioResult(seed, verdict, converged, faults.log, len(sim.history), sim)
