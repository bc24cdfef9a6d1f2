"""Clusters of real ``zkv node`` processes on 127.0.0.1, for the demo, the bench and the tests.

``Cluster`` starts node processes on free loopback ports with their logs in a
folder of the caller's, waits on conditions with deadlines (never fixed
sleeps), and stops exactly the processes it started, by PID, in ``stop()``
(call it from a ``finally``, or use it as a context manager).
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from zkv import Client, ZkvError

NODE_START_TIMEOUT_S = 30.0
CONVERGE_TIMEOUT_S = 60.0


PORT_RANGE = (20000, 32000)  # below Linux's ephemeral range, where outgoing connections take ports
_handed_out: set[int] = set()


def free_port() -> int:
    """A loopback port nothing listens on, chosen below the ephemeral range.

    Asking the kernel for port 0 returns a port from the ephemeral range, which
    every outgoing connection (a node's DEALER to a peer, say) also draws from:
    between this probe and the node's bind, such a connection can take it.
    """
    rng = random.Random()
    for _ in range(1000):
        port = rng.randrange(*PORT_RANGE)
        if port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free port in {PORT_RANGE}")


def wait_until(condition, timeout_s: float, what: str, interval_s: float = 0.05):
    """Poll ``condition`` until it returns something truthy; fail with ``what`` after the timeout."""
    deadline = time.monotonic() + timeout_s
    last_error = None
    while True:
        try:
            result = condition()
            if result:
                return result
        except (ZkvError, OSError) as error:
            last_error = error
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error})" if last_error else ""
            raise AssertionError(f"timed out after {timeout_s:g}s waiting for {what}{detail}")
        time.sleep(interval_s)


@dataclass
class NodeProcess:
    node_id: str
    port: int
    http_port: int
    data_dir: Path | None
    log_path: Path
    join: list[str] = field(default_factory=list)
    process: subprocess.Popen | None = None
    extra_args: list[str] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def command(self) -> list[str]:
        command = [sys.executable, "-m", "zkv", "node", "--id", self.node_id, "--port", str(self.port),
                   "--http-port", str(self.http_port), "--host", "127.0.0.1", *self.extra_args]
        command += ["--data-dir", str(self.data_dir)] if self.data_dir is not None else ["--memory"]
        for seed in self.join:
            command += ["--join", seed]
        return command

    def start(self) -> None:
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, signum: int) -> None:
        if self.running():
            os.kill(self.process.pid, signum)

    def wait_exit(self, timeout_s: float) -> int:
        return self.process.wait(timeout_s)

    def stop(self) -> None:
        """SIGKILL (by PID) and reap; a stopped (SIGSTOP) process is resumed first so it can die."""
        if self.process is None:
            return
        if self.process.poll() is None:
            try:
                os.kill(self.process.pid, signal.SIGCONT)
                os.kill(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass  # exited between poll() and kill()
            self.process.wait(10)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class Cluster:
    def __init__(self, directory: Path, size: int, *, memory: bool = False, partitions: int = 64,
                 replication: int = 3, extra_args: list[str] | None = None) -> None:
        self.directory = Path(directory)
        self.memory = memory
        self.partitions = partitions
        self.replication = replication
        self.extra_args = extra_args or []
        self.nodes: dict[str, NodeProcess] = {}
        self.size = size
        self._clients: list[Client] = []
        self._inspectors: dict[str, Client] = {}

    # -- processes -------------------------------------------------------------------------------------

    def _new_node(self, node_id: str, join: list[str]) -> NodeProcess:
        data_dir = None if self.memory else self.directory / f"data-{node_id}"
        node = NodeProcess(node_id, free_port(), free_port(), data_dir, self.directory / f"{node_id}.log",
                           join, extra_args=["--partitions", str(self.partitions),
                                             "--replication", str(self.replication), *self.extra_args])
        self.nodes[node_id] = node
        return node

    def start(self) -> Cluster:
        """Start every node and wait until they share one settled map; stops them all on failure."""
        try:
            first = self._new_node("node-1", [])
            first.start()
            self.wait_serving(first)
            for index in range(2, self.size + 1):
                self._new_node(f"node-{index}", [first.address]).start()
            self.wait_converged()
        except BaseException:
            self.stop()
            raise
        return self

    def add_node(self, node_id: str | None = None) -> NodeProcess:
        node_id = node_id or f"node-{len(self.nodes) + 1}"
        seeds = [n.address for n in self.nodes.values() if n.running()][:2]
        node = self._new_node(node_id, seeds)
        node.start()
        return node

    def restart(self, node: NodeProcess) -> None:
        if node.running():
            raise AssertionError(f"{node.node_id} is still running")
        node.join = [n.address for n in self.nodes.values() if n.running() and n is not node][:2]
        node.start()

    def running_nodes(self) -> list[NodeProcess]:
        return [node for node in self.nodes.values() if node.running()]

    def stop(self) -> None:
        for client in self._clients:
            client.close()
        for node in self.nodes.values():
            node.stop()

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def logs(self) -> str:
        return "\n".join(f"===== {n.node_id} =====\n{n.log_text()[-6000:]}" for n in self.nodes.values())

    # -- talking to it ------------------------------------------------------------------------------------

    def client(self, **options) -> Client:
        nodes = [n.address for n in self.running_nodes()]
        client = Client(nodes, **options)
        self._clients.append(client)
        return client

    def inspect(self, node: NodeProcess, what: str) -> dict:
        """Ask one node for a view of itself (one client per node, kept for later calls)."""
        client = self._inspectors.get(node.address)
        if client is None:
            client = Client([node.address], connect_timeout=5.0)
            self._inspectors[node.address] = client
            self._clients.append(client)
        try:
            return client.inspect(what, timeout=5.0)
        except ZkvError:
            self._inspectors.pop(node.address, None)  # a restarted node: reconnect next time
            raise

    def wait_serving(self, node: NodeProcess) -> None:
        def serving():
            if not node.running():
                raise AssertionError(f"{node.node_id} exited early:\n{node.log_text()}")
            return self.inspect(node, "stats")["epoch"] > 0
        wait_until(serving, NODE_START_TIMEOUT_S, f"{node.node_id} to serve")

    def converged(self, expected_ring: set[str] | None = None) -> bool:
        """Every running node on one epoch, every partition settled on the expected ring."""
        running = self.running_nodes()
        expected = expected_ring if expected_ring is not None else {n.node_id for n in running}
        views = [self.inspect(node, "partitions") for node in running]
        epochs = {view["epoch"] for view in views}
        if len(epochs) != 1:
            return False
        view = views[0]
        owners = set()
        for row in view["partitions"]:
            if row["phase"] != "settled":
                return False
            owners.update(row["replicas"])
        cluster = self.inspect(running[0], "cluster")
        ring = {m["node_id"] for m in cluster["members"] if m["in_ring"]}
        return ring == expected and owners == expected

    def wait_converged(self, expected_ring: set[str] | None = None, timeout_s: float = CONVERGE_TIMEOUT_S) -> None:
        try:
            wait_until(lambda: self.converged(expected_ring), timeout_s, "the cluster to converge", 0.2)
        except AssertionError as error:
            raise AssertionError(f"{error}\n{self.logs()}") from None

    def local_keys(self) -> dict[str, int]:
        return {node.node_id: self.inspect(node, "stats")["local_keys"] for node in self.running_nodes()}
