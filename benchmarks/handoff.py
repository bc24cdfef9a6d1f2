"""Handoff and recovery timings on a real cluster (issue: zero data loss for real).

    .venv/bin/python benchmarks/handoff.py [--keys 100000] [--value-bytes 100] [--pause-s 10]

1. Starts 5 durable nodes, loads KEYS keys of VALUE_BYTES bytes (w=2).
2. Adds a sixth node and measures the time until every partition is settled on
   six nodes and the local key counts sum to RF x KEYS, with the bytes handed
   off (sum of the nodes' handoff counters) and the resulting MB/s.
3. SIGSTOPs one node for PAUSE_S seconds, SIGCONTs it, and measures the time
   until the cluster has converged again (same two conditions).
Every acknowledged key is then read back with r=2. Prints one table.
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import time
from pathlib import Path

from zkv.localcluster import Cluster, wait_until

REPLICATION = 3


def handoff_bytes(cluster: Cluster) -> int:
    return sum(cluster.inspect(node, "stats")["handoff"]["bytes_moved"] for node in cluster.running_nodes())


def converged_with(cluster: Cluster, keys: int) -> bool:
    return cluster.converged() and sum(cluster.local_keys().values()) == REPLICATION * keys


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--value-bytes", type=int, default=100)
    parser.add_argument("--pause-s", type=float, default=10.0)
    options = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as folder, Cluster(Path(folder), 5).start() as cluster:
        client = cluster.client(timeout=30.0)
        value = "v" * options.value_bytes
        started = time.monotonic()
        keys = [f"key-{i:07d}" for i in range(options.keys)]
        for start in range(0, len(keys), 5000):
            client.mset({key: value for key in keys[start:start + 5000]})
        rows.append(("load", time.monotonic() - started, options.keys * options.value_bytes))

        before = handoff_bytes(cluster)
        started = time.monotonic()
        cluster.add_node("node-6")
        wait_until(lambda: converged_with(cluster, options.keys), 600, "the join to finish", 0.2)
        join_s = time.monotonic() - started
        rows.append(("join of node-6", join_s, handoff_bytes(cluster) - before))

        victim = cluster.nodes["node-3"]
        victim.signal(signal.SIGSTOP)
        time.sleep(options.pause_s)  # the fault itself: a node stopped for this long
        victim.signal(signal.SIGCONT)
        before = handoff_bytes(cluster)
        started = time.monotonic()
        wait_until(lambda: converged_with(cluster, options.keys), 600, "recovery after the pause", 0.2)
        rows.append((f"resume after {options.pause_s:g}s SIGSTOP", time.monotonic() - started,
                     handoff_bytes(cluster) - before))

        values = []
        for start in range(0, len(keys), 5000):
            values.extend(client.mget(keys[start:start + 5000]))
        lost = sum(1 for got in values if got != value)
    print(f"\n{options.keys} keys of {options.value_bytes} bytes, 5 durable nodes, RF={REPLICATION}")
    print(f"{'step':32s} {'seconds':>8s} {'MB moved':>9s} {'MB/s':>7s}")
    for name, seconds, moved in rows:
        print(f"{name:32s} {seconds:8.1f} {moved / 1e6:9.1f} {moved / 1e6 / seconds:7.1f}")
    print(f"read back: {lost} of {options.keys} keys wrong or missing")
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
