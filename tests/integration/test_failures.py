"""A node killed with SIGKILL costs clients nothing; a restarted node keeps what it acknowledged."""

from __future__ import annotations

import signal
import time

from zkv.localcluster import wait_until
from tests.integration.workload import Writer, unreadable


def test_sigkill_while_writing_loses_nothing(make_cluster):
    cluster = make_cluster(5)
    client = cluster.client(timeout=10.0)
    writer = Writer(client, "kill", count=6000, seconds=60).start()
    writer.wait_for(1000)
    victim = cluster.nodes["node-3"]
    victim.signal(signal.SIGKILL)
    killed_at = time.monotonic()
    writer.wait_for(len(writer.log.acknowledged) + 2000, timeout_s=60)
    log = writer.stop()
    assert log.failures == [], f"{len(log.failures)} failed writes, first: {log.failures[:3]}"
    survivors = {n.node_id for n in cluster.running_nodes()}
    cluster.wait_converged(expected_ring=survivors, timeout_s=60)
    assert unreadable(client, log.acknowledged) == {}
    print(f"acknowledged {len(log.acknowledged)} writes, {len(log.failures)} failed, "
          f"{time.monotonic() - killed_at:.1f}s after the kill")


def test_restarted_node_keeps_what_it_acknowledged(make_cluster):
    cluster = make_cluster(3)
    client = cluster.client()
    client.mset({f"durable-{i}": f"value-{i}" for i in range(2000)}, w=3)
    victim = cluster.nodes["node-2"]
    before = cluster.inspect(victim, "stats")["local_keys"]
    assert before == 2000
    victim.signal(signal.SIGKILL)
    victim.wait_exit(10)
    cluster.restart(victim)
    cluster.wait_serving(victim)
    assert cluster.inspect(victim, "stats")["local_keys"] >= 2000
    assert client.mget([f"durable-{i}" for i in range(2000)], r=3) == [f"value-{i}" for i in range(2000)]


def test_restart_every_durable_node_after_sigkill(make_cluster):
    cluster = make_cluster(3)
    client = cluster.client()
    expected = {f"all-{i}": f"v{i}" for i in range(1500)}
    client.mset(expected)
    for node in cluster.nodes.values():
        node.signal(signal.SIGKILL)
    for node in cluster.nodes.values():
        node.wait_exit(10)
    for node in cluster.nodes.values():
        node.join = []  # they find each other from the map they saved
        node.start()
    fresh = cluster.client()
    wait_until(lambda: unreadable(fresh, expected) == {}, 60, "every key to be readable after a full restart")
