"""Sustained overload: do the nodes' memory and the clients' errors stay bounded?

    .venv/bin/python benchmarks/overload.py [--clients 4] [--seconds 30]

Starts 3 memory nodes and CLIENTS bench processes that each keep as many
pipelined writes in flight as the client allows, for SECONDS seconds. Every
2 s it prints each node's resident memory (from /proc) and the nodes' count of
BUSY replies, then the clients' results. Memory that levels off while the
offered load stays above what the nodes can serve is the goal.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from zkv.localcluster import Cluster


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=30.0)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder, Cluster(Path(folder), 3, memory=True).start() as cluster:
        nodes = ",".join(node.address for node in cluster.running_nodes())
        command = [sys.executable, "-m", "zkv", "bench", "--cluster", nodes, "--workload", "set", "--batch", "1000",
                   "--concurrency", "100000", "--duration", str(options.seconds), "--warmup", "0", "--quiet",
                   "--no-prefill", "--timeout", "30"]
        clients = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                   for _ in range(options.clients)]
        try:
            started = time.monotonic()
            print("seconds  " + "  ".join(f"{n.node_id} RSS MiB" for n in cluster.running_nodes()) + "  busy replies")
            while any(client.poll() is None for client in clients):
                busy = sum(cluster.inspect(n, "stats")["ops"].get("busy_replies", 0) for n in cluster.running_nodes())
                sizes = "  ".join(f"{rss_mib(n.pid):14.1f}" for n in cluster.running_nodes())
                print(f"{time.monotonic() - started:7.0f}  {sizes}  {busy:12d}", flush=True)
                time.sleep(2.0)  # a sampling interval, not a wait for a condition
        finally:
            for client in clients:
                if client.poll() is None:
                    client.kill()
        for client in clients:
            print(client.communicate()[0].strip().splitlines()[-1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
