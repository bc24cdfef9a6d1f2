"""Tombstones and anti-entropy in the simulator, one scripted scenario each.

A delete writes a tombstone; the partition's primary purges it only after the
grace period and only once every replica reports holding it. A replica that
missed writes (or the delete) catches up through anti-entropy, with no client
reading the keys.
"""

from __future__ import annotations

from tests.sim.simulator import Simulation
from zkv.core.placement import partition_of
from zkv.core.versions import is_tombstone

GRACE_MS = 20_000
KEYS = [b"tomb-%d" % i for i in range(12)]


def settle(sim: Simulation, ms: int = 20_000) -> None:
    sim.run_until(sim.now_ms + ms, stop=sim.converged)
    assert sim.converged()


def run_ops(sim: Simulation, kind: str, keys, value: str | None = None) -> None:
    entries = [sim.op("c1", kind, key, value) for key in keys]
    sim.run_until(sim.now_ms + 3000, stop=lambda: all(entry.ok is not None for entry in entries))
    assert all(entry.ok for entry in entries), [entry.error for entry in entries if not entry.ok]


def records_of(sim: Simulation, key: bytes) -> dict[str, bytes | None]:
    config = sim.newest_config()
    partition = partition_of(key, config.partitions)
    return {owner: sim.nodes[owner].core.storage.get(partition, key) for owner in config.plans[partition].new}


def test_tombstones_are_purged_after_the_grace_period_once_every_replica_has_them():
    sim = Simulation(seed=7, nodes=3, tombstone_grace_ms=GRACE_MS)
    settle(sim)
    sim.add_client("c1")
    run_ops(sim, "set", KEYS, "v")
    run_ops(sim, "delete", KEYS)
    sim.run_until(sim.now_ms + GRACE_MS // 2)
    for key in KEYS:  # within the grace period every replica keeps its tombstone
        assert all(record is not None and is_tombstone(record) for record in records_of(sim, key).values())
    sim.run_until(sim.now_ms + GRACE_MS * 2)
    for key in KEYS:
        assert set(records_of(sim, key).values()) == {None}
    run_ops(sim, "get", KEYS)
    assert all(entry.read_value is None for entry in sim.history[-len(KEYS):])


def test_a_replica_that_missed_a_delete_keeps_the_tombstone_alive_then_catches_up():
    grace_ms = 1500  # shorter than the 5 s dead timeout, so n3 stays a replica while cut off
    sim = Simulation(seed=8, nodes=3, tombstone_grace_ms=grace_ms)
    settle(sim)
    sim.add_client("c1")
    run_ops(sim, "set", KEYS, "v")
    sim.run_until(sim.now_ms + 2000)  # every replica has the values (late acks, anti-entropy)
    sim.network.groups = [{"n3"}, {"n1", "n2", "c1"}]
    run_ops(sim, "delete", KEYS)
    sim.run_until(sim.now_ms + 3500)  # past the grace period, and past a purge round
    for key in KEYS:  # n3 cannot confirm it holds the tombstones, so none was purged
        records = records_of(sim, key)
        assert is_tombstone(records["n1"]) and is_tombstone(records["n2"]) and not is_tombstone(records["n3"])
    sim.network.groups = None
    sim.run_until(sim.now_ms + 20_000)
    for key in KEYS:  # n3 caught up through anti-entropy, then everyone purged
        assert set(records_of(sim, key).values()) == {None}
    run_ops(sim, "get", KEYS)
    assert all(entry.read_value is None and entry.ok for entry in sim.history[-len(KEYS):])


def test_anti_entropy_heals_a_replica_that_missed_writes_without_any_read():
    sim = Simulation(seed=9, nodes=3)
    settle(sim)
    sim.add_client("c1")
    sim.network.groups = [{"n3"}, {"n1", "n2", "c1"}]
    run_ops(sim, "set", KEYS, "written while n3 was cut off")
    sim.network.groups = None
    assert all(records_of(sim, key)["n3"] is None for key in KEYS)
    messages_before = sim.messages_sent
    sim.run_until(sim.now_ms + 10_000,
                  stop=lambda: all(len(set(records_of(sim, key).values())) == 1 for key in KEYS))
    assert all(len(set(records_of(sim, key).values())) == 1 for key in KEYS)
    assert not [entry for entry in sim.history if entry.kind == "get"]  # no client read did it
    assert sum(core.counters["ae_repaired_in"] for core in sim.cores()) >= 1
    assert sim.messages_sent > messages_before
