"""Real-process faults on 5-node clusters while a client writes (issue: zero data loss for real).

Each test runs a writer that records every acknowledged key, applies one fault,
keeps writing, then checks: every acknowledged key reads back with r=2 and its
exact value, and the replicas converged (local key counts across the cluster
sum to RF x keys). Failed client operations are counted and printed; for a
single fault the goal, asserted here, is zero.
"""

from __future__ import annotations

import signal
import time

from tests.integration.workload import Writer, unreadable
from zkv.localcluster import wait_until

REPLICATION = 3


def run_with_fault(cluster, name: str, fault, keys_after: int = 1500, expected_ring=None):
    client = cluster.client(timeout=15.0)
    writer = Writer(client, name, count=200_000, seconds=90).start()
    writer.wait_for(800, timeout_s=60)
    started = time.monotonic()
    fault()
    writer.wait_for(min(len(writer.log.acknowledged) + keys_after, writer.count), timeout_s=90)
    log = writer.stop()
    cluster.wait_converged(expected_ring=expected_ring, timeout_s=90)
    converge_s = time.monotonic() - started
    fresh = cluster.client(timeout=20.0)
    assert unreadable(fresh, log.acknowledged) == {}
    written = log.attempts  # every attempted key was acknowledged (failures are asserted to be zero)
    wait_until(lambda: sum(cluster.local_keys().values()) == REPLICATION * written, 90,
               f"local key counts to sum to {REPLICATION} x {written}")
    print(f"\n[fault report] {name}: {len(log.acknowledged)} writes acknowledged, {len(log.failures)} failed, "
          f"converged {converge_s:.1f}s after the fault")
    assert log.failures == [], f"{len(log.failures)} failed writes during {name}: {log.failures[:3]}"
    return log


def test_sigstop_longer_than_the_dead_timeout(make_cluster):
    cluster = make_cluster(5)
    victim = cluster.nodes["node-4"]

    def pause_then_resume():
        victim.signal(signal.SIGSTOP)
        try:
            # stopped for longer than the dead timeout: until the others have declared it dead
            wait_until(lambda: _state_of(cluster, "node-4", observer="node-1") == "dead", 30,
                       "node-4 to be declared dead while stopped")
        finally:
            victim.signal(signal.SIGCONT)

    run_with_fault(cluster, "sigstop", pause_then_resume)
    assert _state_of(cluster, "node-4", observer="node-1") == "alive"


def test_a_node_joins_while_writing(make_cluster):
    cluster = make_cluster(5)
    run_with_fault(cluster, "join", lambda: cluster.add_node("node-6"))
    assert cluster.inspect(cluster.nodes["node-6"], "stats")["partitions_held"] > 0


def test_sigterm_leaves_gracefully_while_writing(make_cluster):
    cluster = make_cluster(5)
    leaver = cluster.nodes["node-2"]
    survivors = {n for n in cluster.nodes if n != "node-2"}

    def terminate():
        leaver.signal(signal.SIGTERM)

    run_with_fault(cluster, "sigterm", terminate, expected_ring=survivors)
    assert leaver.wait_exit(60) == 0
    assert "left the cluster" in leaver.log_text()


def test_restart_every_durable_node_after_sigkill(make_cluster):
    cluster = make_cluster(5)
    client = cluster.client()
    writer = Writer(client, "fullrestart", count=3000, seconds=60).start()
    writer.wait_for(3000, timeout_s=60)
    log = writer.stop()
    for node in cluster.nodes.values():
        node.signal(signal.SIGKILL)
    for node in cluster.nodes.values():
        node.wait_exit(10)
    for node in cluster.nodes.values():
        node.join = []  # every node finds the others from the map it saved
        node.start()
    cluster.wait_converged(timeout_s=90)
    fresh = cluster.client(timeout=20.0)
    assert unreadable(fresh, log.acknowledged) == {}
    assert sum(cluster.local_keys().values()) == REPLICATION * len(log.acknowledged)
    print(f"\n[fault report] full restart: {len(log.acknowledged)} acknowledged writes all readable")


def _state_of(cluster, node_id: str, observer: str) -> str:
    members = cluster.inspect(cluster.nodes[observer], "cluster")["members"]
    return next(m["state"] for m in members if m["node_id"] == node_id)
