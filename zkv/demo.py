"""``zkv demo``: a real cluster, a real client, a real crash, and a verdict computed from data.

The demo owns the whole story a newcomer should see in well under two minutes:

    [1] start N nodes (64 partitions, RF=3) on free loopback ports, logs in a temp folder
    [2] partition distribution
    [3] a client thread writes the key space, then reads and rewrites keys at random
    [4] SIGKILL node-3 while the client runs; wait until the survivors converge
    [5] partition distribution
    [6] add node-6; wait until it has taken its partitions
    [7] partition distribution
    [8] stop the client; read back every acknowledged key with r=2
        verdict: 0 lost of N acknowledged keys

Every value is derived from its key and a per-key generation, so the read-back
compares against exactly what was acknowledged last. Every process the demo
starts is stopped by PID in a ``finally`` (also on Ctrl-C, SIGTERM and SIGHUP,
which are turned into ``KeyboardInterrupt``).

Module-level imports stay light: ``zkv.cli`` imports this module on every
``zkv`` invocation; the cluster launcher is imported when the demo runs.
"""

from __future__ import annotations

import contextlib
import random
import signal
import sys
import threading
import time

import click

PARTITIONS = 64
REPLICATION = 3
VICTIM_NODE_ID = "node-3"
KEY_PREFIX = "demo:"

TIME_BUDGET_S = 105.0              # the whole demo, so that it ends in under two minutes
READBACK_RESERVE_S = 15.0          # kept out of the convergence waits for the read-back
CONVERGE_TIMEOUT_S = 45.0
KILL_AFTER_KEYS_FRACTION = 0.5     # SIGKILL once this share of the key space is acknowledged
KILL_WAIT_TIMEOUT_S = 30.0
POLL_INTERVAL_S = 0.25
PROGRESS_INTERVAL_S = 1.0          # at most one progress line per interval while waiting

IN_FLIGHT_MAX = 32                 # client operations in flight at once
OP_TIMEOUT_S = 10.0                # deadline of one client operation
WORKLOAD_SECONDS_MAX = 100.0
WORKLOAD_OPS_MAX = 2_000_000       # the workload stops after this many operations (or WORKLOAD_SECONDS_MAX)
WORKLOAD_READ_SHARE = 0.5          # after the first pass: share of reads among operations
WORKLOAD_DRAIN_TIMEOUT_S = OP_TIMEOUT_S + 5.0

READBACK_CHUNK_KEYS = 500
READBACK_ROUNDS_MAX = 3
READBACK_QUORUM = 2
LOG_TAIL_LINES = 12
INTERRUPT_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")


class DemoFailure(Exception):
    """A step of the demo did not happen (a node crashed, the cluster did not converge in time)."""


def say(text: str = "") -> None:
    click.echo(text)  # click.echo flushes: a reader of a pipe sees each line at once


def headline(step: int, text: str) -> None:
    say()
    say(click.style(f"[{step}] {text}", bold=True))


def value_for(key: str, generation: int, value_bytes: int) -> str:
    """The value of ``key`` at ``generation``: its header repeated to ``value_bytes``."""
    header = f"{key}@{generation}|"
    return (header * (value_bytes // len(header) + 1))[:value_bytes]


def node_order(node_id: str) -> tuple:
    return len(node_id), node_id  # node-2 before node-10


# -- interrupts ------------------------------------------------------------------------------------------

class Interrupts:
    """Turns SIGINT/SIGTERM/SIGHUP into KeyboardInterrupt, except inside a critical section.

    A process started inside ``critical()`` (fork, then record its PID) is always
    recorded before the interrupt is raised, so ``finally`` can stop it.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._critical = 0
        self._deferred = False
        self._previous: dict[int, object] = {}

    def install(self) -> None:
        for name in INTERRUPT_SIGNALS:
            signum = getattr(signal, name, None)
            if signum is not None:
                self._previous[signum] = signal.signal(signum, self._on_signal)

    def _on_signal(self, signum, frame) -> None:
        if self.signum is None:
            self.signum = signum
        if self._critical:
            self._deferred = True
            return
        raise KeyboardInterrupt

    @contextlib.contextmanager
    def critical(self):
        self._critical += 1
        try:
            yield
        finally:
            self._critical -= 1
        if not self._critical and self._deferred:
            self._deferred = False
            raise KeyboardInterrupt

    def ignore(self) -> None:
        """During cleanup: a second Ctrl-C must not cut the stopping of the nodes short."""
        for signum in self._previous:
            signal.signal(signum, signal.SIG_IGN)

    def restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def exit_code(self) -> int:
        return 128 + (self.signum or signal.SIGINT)


# -- the client workload -----------------------------------------------------------------------------------

class Workload:
    """Writes every key once, then reads and rewrites random keys; records what was acknowledged.

    At most ``IN_FLIGHT_MAX`` operations are in flight, and at most one per key, so
    the order of a key's operations is the order they were issued. For each key it
    keeps the value acknowledged last and the values of later writes that failed
    (a failed write may still have landed, and it is newer): a read may return any
    of those and nothing else.
    """

    def __init__(self, client, keys: int, value_bytes: int, seed: int | None = None) -> None:
        self.client = client
        self.keys = [f"{KEY_PREFIX}{index:05d}" for index in range(keys)]
        self.value_bytes = value_bytes
        self.random = random.Random(seed)
        self.lock = threading.Lock()
        self.slots = threading.BoundedSemaphore(IN_FLIGHT_MAX)
        self.generation = [0] * keys
        self.acknowledged: dict[int, str] = {}
        self.unsure: dict[int, list[str]] = {}  # values of writes that failed after the last ack
        self.busy: set[int] = set()
        self.ops_ok = 0
        self.ops_failed = 0
        self.reads = 0
        self.wrong_reads: list[tuple[str, object]] = []
        self.errors: list[str] = []
        self.started_at = 0.0
        self.ended_at: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="zkv-demo-workload", daemon=True)

    # -- control (main thread) -----------------------------------------------------------------------------

    def start(self) -> Workload:
        self.started_at = time.monotonic()
        self._thread.start()
        return self

    def stop(self, timeout_s: float = WORKLOAD_DRAIN_TIMEOUT_S) -> None:
        """Stop issuing operations and wait (bounded) for those in flight."""
        self._stop.set()
        self._thread.join(timeout_s)

    def counts(self) -> tuple[int, int]:
        with self.lock:
            return self.ops_ok + self.ops_failed, self.ops_failed

    def acknowledged_keys(self) -> int:
        with self.lock:
            return len(self.acknowledged)

    def elapsed_s(self) -> float:
        return (self.ended_at or time.monotonic()) - self.started_at

    def acceptable(self, index: int) -> list:
        """Values a quorum read of key ``index`` may return now."""
        return [self.acknowledged.get(index), *self.unsure.get(index, ())]

    # -- the workload thread -------------------------------------------------------------------------------

    def _run(self) -> None:
        from zkv import ZkvError
        deadline = self.started_at + WORKLOAD_SECONDS_MAX
        issued = 0
        try:
            while not self._stop.is_set() and issued < WORKLOAD_OPS_MAX and time.monotonic() < deadline:
                if not self.slots.acquire(timeout=POLL_INTERVAL_S):
                    continue
                first_pass = issued < len(self.keys)
                index = issued if first_pass else self._idle_key()
                write = first_pass or self.random.random() >= WORKLOAD_READ_SHARE
                try:
                    self._issue(index, write)
                except ZkvError as error:  # the client was closed under us: the demo is ending
                    self._release(index)
                    self._record_error(error)
                    return
                issued += 1
        finally:
            self._drain()
            self.ended_at = time.monotonic()

    def _idle_key(self) -> int:
        with self.lock:
            while True:
                index = self.random.randrange(len(self.keys))
                if index not in self.busy:
                    return index

    def _issue(self, index: int, write: bool) -> None:
        key = self.keys[index]
        with self.lock:
            self.busy.add(index)
            if write:
                self.generation[index] += 1
                value = value_for(key, self.generation[index], self.value_bytes)
        if write:
            future = self.client.set_async(key, value, timeout=OP_TIMEOUT_S)
            future.add_done_callback(lambda done: self._on_write_done(index, value, done))
        else:
            future = self.client.get_async(key, timeout=OP_TIMEOUT_S)
            future.add_done_callback(lambda done: self._on_read_done(index, done))

    # Callbacks run on the client's IO thread: bookkeeping only.

    def _on_write_done(self, index: int, value: str, future) -> None:
        error = future.exception()
        with self.lock:
            if error is None:
                self.acknowledged[index] = value
                self.unsure.pop(index, None)
                self.ops_ok += 1
            else:
                self.unsure.setdefault(index, []).append(value)
                self.ops_failed += 1
        if error is not None:
            self._record_error(error)
        self._release(index)

    def _on_read_done(self, index: int, future) -> None:
        error = future.exception()
        with self.lock:
            if error is None:
                self.ops_ok += 1
                self.reads += 1
                value = future.result()
                if value not in self.acceptable(index):
                    self.wrong_reads.append((self.keys[index], value))
            else:
                self.ops_failed += 1
        if error is not None:
            self._record_error(error)
        self._release(index)

    def _release(self, index: int) -> None:
        with self.lock:
            self.busy.discard(index)
        self.slots.release()

    def _record_error(self, error: BaseException) -> None:
        with self.lock:
            if len(self.errors) < 5:
                self.errors.append(f"{type(error).__name__}: {error}")

    def _drain(self) -> None:
        """Wait until every operation in flight has completed (bounded by the operation deadline)."""
        deadline = time.monotonic() + WORKLOAD_DRAIN_TIMEOUT_S
        taken = 0
        while taken < IN_FLIGHT_MAX and time.monotonic() < deadline:
            if self.slots.acquire(timeout=POLL_INTERVAL_S):
                taken += 1
        for _ in range(taken):
            self.slots.release()


# -- reading back ---------------------------------------------------------------------------------------------

def read_back(client, workload: Workload) -> tuple[dict[str, object], int]:
    """Every acknowledged key read with r=2; returns (lost key -> what was read, keys checked).

    A key that cannot be read after ``READBACK_ROUNDS_MAX`` rounds counts as lost:
    the demo cannot show it is there.
    """
    from zkv import ZkvError
    with workload.lock:
        expected = {workload.keys[index]: workload.acceptable(index) for index in workload.acknowledged}
    pending = list(expected)
    lost: dict[str, object] = {}
    for _ in range(READBACK_ROUNDS_MAX):
        unreadable = []
        for start in range(0, len(pending), READBACK_CHUNK_KEYS):
            chunk = pending[start:start + READBACK_CHUNK_KEYS]
            futures = [(key, client.get_async(key, r=READBACK_QUORUM, timeout=OP_TIMEOUT_S)) for key in chunk]
            for key, future in futures:
                try:
                    value = future.result(OP_TIMEOUT_S + 5)
                except (ZkvError, TimeoutError) as error:
                    unreadable.append(key)
                    lost[key] = error
                    continue
                lost.pop(key, None)
                if value not in expected[key]:
                    lost[key] = value
        if not unreadable:
            break
        pending = unreadable
        time.sleep(1.0)
    return lost, len(expected)


# -- what the cluster looks like ----------------------------------------------------------------------------

def distribution_table(cluster) -> str:
    """Per member: partitions as primary, as replica, total, and keys held (one row per copy)."""
    from zkv import ZkvError
    from zkv.tables import format_table
    running = sorted(cluster.running_nodes(), key=lambda node: node_order(node.node_id))
    view = cluster.inspect(running[0], "cluster")
    keys: dict[str, object] = {}
    for node in running:
        try:
            keys[node.node_id] = cluster.inspect(node, "stats")["local_keys"]
        except ZkvError:
            keys[node.node_id] = "?"
    rows = []
    totals = [0, 0, 0, 0]
    for member in sorted(view["members"], key=lambda m: node_order(m["node_id"])):
        node_id = member["node_id"]
        node = cluster.nodes.get(node_id)
        held = keys.get(node_id, "-")
        total = member["primary"] + member["replica"]
        rows.append([node_id, node.pid if node else "-", member["state"], member["primary"], member["replica"],
                     total, held])
        for position, amount in enumerate((member["primary"], member["replica"], total, held)):
            if isinstance(amount, int):
                totals[position] += amount
    rows.append(["total", "", "", *totals])
    table = format_table(["NODE", "PID", "STATE", "PRIMARY", "REPLICA", "TOTAL", "KEYS"], rows,
                         right={1, 3, 4, 5, 6})
    note = (f"partition map epoch {view['epoch']} as seen by {view['node_id']}; each of the {cluster.partitions} "
            f"partitions has 1 primary + {cluster.replication - 1} replicas; KEYS counts every copy a node holds")
    return f"{indent(table)}\n    {note}"


def indent(text: str, prefix: str = "    ") -> str:
    return "\n".join(prefix + line for line in text.splitlines())


def member_view(cluster, node_id: str) -> str | None:
    """How the first running node sees ``node_id`` (state and partitions held), or None."""
    from zkv import ZkvError
    try:
        view = cluster.inspect(cluster.running_nodes()[0], "cluster")
    except (ZkvError, IndexError):
        return None
    for member in view["members"]:
        if member["node_id"] == node_id:
            return (f"{member['state']}, {member['primary']} primary, {member['replica']} replica, "
                    f"{member['pending']} pending")
    return "not a member yet"


def log_tails(cluster) -> str:
    parts = []
    for node in sorted(cluster.nodes.values(), key=lambda n: node_order(n.node_id)):
        lines = node.log_text().splitlines()[-LOG_TAIL_LINES:]
        parts.append(f"--- {node.log_path} (last {len(lines)} lines)\n" + "\n".join(lines))
    return "\n".join(parts)


# -- the steps ----------------------------------------------------------------------------------------------

class Demo:
    def __init__(self, nodes: int, keys: int, value_bytes: int, memory: bool, directory, interrupts: Interrupts):
        from zkv.localcluster import Cluster
        self.node_count = nodes
        self.keys = keys
        self.value_bytes = value_bytes
        self.interrupts = interrupts
        self.cluster = Cluster(directory, nodes, memory=memory, partitions=PARTITIONS, replication=REPLICATION)
        self.started_at = time.monotonic()
        self.workload: Workload | None = None

    def remaining_s(self, cap_s: float, reserve_s: float = READBACK_RESERVE_S) -> float:
        left = self.started_at + TIME_BUDGET_S - reserve_s - time.monotonic()
        return max(1.0, min(cap_s, left))

    def start_node(self, node_id: str):
        with self.interrupts.critical():  # fork and record the PID before any Ctrl-C is raised
            node = self.cluster.add_node(node_id)
        say(f"    {node_id}  pid {node.pid}  {node.address}  http {node.http}  log {node.log_path.name}")
        return node

    def wait_converged(self, what: str, watch: str | None = None) -> float:
        """Wait until the running nodes share one settled map; print the watched member as it changes."""
        from zkv import ZkvError
        began = time.monotonic()
        deadline = began + self.remaining_s(CONVERGE_TIMEOUT_S)
        expected = {node.node_id for node in self.cluster.running_nodes()}
        last_seen, last_print = None, 0.0
        if watch:
            say(f"    {watch} as seen by {self.cluster.running_nodes()[0].node_id}, until the cluster converges:")
        while True:
            self.check_no_crash(expected)
            try:
                if self.cluster.converged(expected):
                    return time.monotonic() - began
            except (ZkvError, OSError):
                pass  # a node busy or between states: ask again
            now = time.monotonic()
            if now >= deadline:
                raise DemoFailure(f"the cluster did not converge ({what}) within {now - began:.0f}s")
            if now - last_print >= PROGRESS_INTERVAL_S:
                seen = member_view(self.cluster, watch) if watch else None
                if seen != last_seen or now - last_print >= 5 * PROGRESS_INTERVAL_S:
                    self.progress(now - began, f"{watch}: {seen}" if watch else "waiting for one settled partition map")
                    last_seen, last_print = seen, now
            time.sleep(POLL_INTERVAL_S)

    def progress(self, elapsed_s: float, text: str) -> None:
        client = ""
        if self.workload is not None:
            ops, failed = self.workload.counts()
            client = f"   (client: {ops} ops, {failed} failed)"
        say(f"    {elapsed_s:5.1f}s  {text}{client}")

    def check_no_crash(self, expected: set[str]) -> None:
        for node_id in expected:
            node = self.cluster.nodes[node_id]
            if not node.running():
                raise DemoFailure(f"{node_id} (pid {node.pid}) exited unexpectedly "
                                  f"with code {node.process.returncode}")

    def show_distribution(self, step: int, title: str) -> None:
        from zkv.localcluster import wait_until
        headline(step, f"Partition distribution: {title}")
        say(wait_until(lambda: distribution_table(self.cluster), CONVERGE_TIMEOUT_S / 3, "the distribution"))

    # -- the story ----------------------------------------------------------------------------------

    def run(self) -> int:
        cluster = self.cluster
        headline(1, f"Start {self.node_count} nodes ({PARTITIONS} partitions, RF={REPLICATION}) "
                    f"on free loopback ports")
        first = self.start_node("node-1")
        cluster.wait_serving(first)
        for index in range(2, self.node_count + 1):
            self.start_node(f"node-{index}")
        self.wait_converged("start")
        say(f"    nodes started: all {self.node_count} are up and agree on one settled partition map "
            f"({time.monotonic() - self.started_at:.1f}s)")

        self.show_distribution(2, f"{self.node_count} nodes, no data yet")

        headline(3, f"Start a client: write {self.keys} keys ({self.value_bytes}-byte values derived from the key), "
                    f"then read and rewrite keys at random; at most {IN_FLIGHT_MAX} ops in flight")
        self.workload = Workload(cluster.client(timeout=OP_TIMEOUT_S), self.keys, self.value_bytes).start()
        kill_after = max(1, int(self.keys * KILL_AFTER_KEYS_FRACTION))
        self.wait_for_keys(kill_after)

        victim = cluster.nodes[VICTIM_NODE_ID]
        headline(4, f"Kill {VICTIM_NODE_ID} with SIGKILL (pid {victim.pid}) while the client runs")
        ops_before, failed_before = self.workload.counts()
        killed_at = time.monotonic()
        victim.signal(signal.SIGKILL)
        victim.wait_exit(10)
        say(f"    killed {VICTIM_NODE_ID} (pid {victim.pid}, exit {victim.process.returncode}); "
            f"the others detect it by missing heartbeats (suspect, then dead) and re-replicate its partitions")
        self.wait_converged(f"without {VICTIM_NODE_ID}", watch=VICTIM_NODE_ID)
        took = time.monotonic() - killed_at
        ops_after, failed_after = self.workload.counts()
        say(f"    converged on the {len(cluster.running_nodes())} survivors {took:.1f}s after the kill; meanwhile "
            f"the client completed {ops_after - ops_before} ops, {failed_after - failed_before} failed")

        self.show_distribution(5, f"after {VICTIM_NODE_ID} died")

        newcomer_id = f"node-{self.node_count + 1}"
        headline(6, f"Add {newcomer_id} (it joins through a running node and pulls its partitions)")
        ops_before, failed_before = self.workload.counts()
        joined_at = time.monotonic()
        newcomer = self.start_node(newcomer_id)
        cluster.wait_serving(newcomer)
        self.wait_converged(f"with {newcomer_id}", watch=newcomer_id)
        took = time.monotonic() - joined_at
        ops_after, failed_after = self.workload.counts()
        say(f"    {newcomer_id} added: the cluster converged {took:.1f}s after it started; meanwhile "
            f"the client completed {ops_after - ops_before} ops, {failed_after - failed_before} failed")

        self.show_distribution(7, f"after {newcomer_id} joined")

        headline(8, f"Stop the client; read back every acknowledged key with r={READBACK_QUORUM}")
        return self.verdict()

    def wait_for_keys(self, count: int) -> None:
        deadline = time.monotonic() + KILL_WAIT_TIMEOUT_S
        while self.workload.acknowledged_keys() < count:
            if time.monotonic() >= deadline:
                raise DemoFailure(f"the client had only {self.workload.acknowledged_keys()} of {count} keys "
                                  f"acknowledged after {KILL_WAIT_TIMEOUT_S:g}s; "
                                  f"errors: {self.workload.errors[:3]}")
            time.sleep(0.05)
        ops, failed = self.workload.counts()
        say(f"    {count} keys acknowledged after {self.workload.elapsed_s():.1f}s ({ops} ops, {failed} failed)")

    def verdict(self) -> int:
        workload = self.workload
        workload.stop()
        ops, failed = workload.counts()
        elapsed_s = workload.elapsed_s()
        say(f"    client stopped: {workload.reads} reads during the run, "
            f"{len(workload.wrong_reads)} returned something other than the last acknowledged value")
        for key, got in workload.wrong_reads[:5]:
            say(f"    unexpected read: {key}: {got!r}")
        if workload.errors:
            say(f"    first client errors: {'; '.join(workload.errors[:3])}")
        reader = self.cluster.client(timeout=OP_TIMEOUT_S)
        began = time.monotonic()
        lost, checked = read_back(reader, workload)
        say(f"    read {checked} keys back in {time.monotonic() - began:.1f}s")
        for key, got in list(lost.items())[:5]:
            say(f"    lost: {key}: read {got!r}")
        say()
        say(click.style(f"verdict: {len(lost)} lost of {checked} acknowledged keys",
                        fg="green" if not lost and checked else "red", bold=True))
        say(f"client: {ops} ops in {elapsed_s:.1f}s = {ops / elapsed_s if elapsed_s else 0:.0f} ops/s, "
            f"{failed} failed")
        return 0 if not lost and checked else 1


# -- the command ------------------------------------------------------------------------------------------------

@click.command("demo")
@click.option("--nodes", type=click.IntRange(4, 12), default=5, show_default=True,
              help="Nodes to start (node-3 is killed, node-N+1 added).")
@click.option("--keys", type=click.IntRange(100, 100_000), default=3000, show_default=True,
              help="Keys the client writes (then reads and rewrites).")
@click.option("--value-bytes", type=click.IntRange(32, 65536), default=100, show_default=True,
              help="Size of each value.")
@click.option("--keep-logs", is_flag=True, help="Keep the temp folder with the node logs (and print where it is).")
@click.option("--memory", is_flag=True, help="Nodes keep data in memory [default: durable LMDB in the temp folder].")
def demo_command(nodes: int, keys: int, value_bytes: int, keep_logs: bool, memory: bool) -> None:
    """Start a local cluster, kill a node and add one under a client load, verify every acknowledged key.

    Every process the demo starts is stopped when it ends, also on Ctrl-C.
    Exit code: 0 nothing lost, 1 a key lost or a step failed, 128 + signal when
    interrupted (130 for Ctrl-C).
    """
    import shutil
    import tempfile
    from pathlib import Path

    directory = Path(tempfile.mkdtemp(prefix="zkv-demo-"))
    interrupts = Interrupts()
    interrupts.install()
    demo = None
    code = 1
    failed = False
    began = time.monotonic()
    try:
        say(f"zkv demo: {nodes} nodes, {PARTITIONS} partitions, RF={REPLICATION}, "
            f"{'in-memory' if memory else 'durable (LMDB)'} storage")
        say(f"logs and data: {directory}"
            + ("" if keep_logs else " (removed at the end; --keep-logs keeps it)"))
        demo = Demo(nodes, keys, value_bytes, memory, directory, interrupts)
        code = demo.run()
        failed = code != 0
    except KeyboardInterrupt:
        code = interrupts.exit_code()
        say()
        say(f"interrupted ({signal.Signals(code - 128).name}): stopping every node the demo started")
    except (DemoFailure, AssertionError) as error:
        failed = True
        say()
        say(click.style(f"demo failed: {str(error).splitlines()[0]}", fg="red", bold=True))
        if demo is not None:
            say(log_tails(demo.cluster))
    except Exception as error:  # an unexpected error still has to stop the nodes (finally) and say where the logs are
        failed = True
        say()
        say(click.style(f"demo failed: {type(error).__name__}: {error}", fg="red", bold=True))
    finally:
        interrupts.ignore()
        try:
            stop_everything(demo)
        finally:
            interrupts.restore()
        if keep_logs or failed:
            say(f"logs: {directory}" + (" (kept because the demo failed)" if failed and not keep_logs else ""))
        else:
            shutil.rmtree(directory, ignore_errors=True)
        say(f"demo took {time.monotonic() - began:.1f}s")
    sys.exit(code)


def stop_everything(demo: Demo | None) -> None:
    if demo is None:
        return
    if demo.workload is not None:
        demo.workload.stop(timeout_s=1.0)
    nodes = sorted(demo.cluster.nodes.values(), key=lambda n: node_order(n.node_id))
    demo.cluster.stop()
    still = [node for node in nodes if node.running()]
    pids = ", ".join(f"{node.node_id}={node.pid}" for node in nodes)
    if still:
        say(click.style(f"could not stop: {', '.join(str(n.pid) for n in still)}", fg="red"))
    else:
        say(f"stopped every node process the demo started ({pids})")
