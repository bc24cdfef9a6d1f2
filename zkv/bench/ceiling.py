"""The ceiling: raw pyzmq + msgpack quorum echo, the throughput zkv cannot beat.

This module owns the yardstick ``zkv bench`` compares against. It runs the
same quorum shape as zkv (every operation goes to 3 replicas and is done at the
2nd reply) with none of zkv's code: echo servers that decode each frame and
encode a reply, and a client that counts replies.

Theory of operation::

    client (this process)                 echo servers (child processes)
    DEALER 0 ── request frame ──────────▶ ROUTER 0 ┐ decode the frame,
    DEALER 1 ── same bytes ─────────────▶ ROUTER 1 ├ reply with its frame id
    DEALER 2 ── same bytes ─────────────▶ ROUTER 2 ┘ and op ids
    2nd reply for a frame: all its ops complete, latency recorded
    3rd reply: late, counted and dropped

    request  [CEILING_WIRE_VERSION, frame_id, [[op_id, key, value], ...]]
    reply    [CEILING_WIRE_VERSION, frame_id, [op_id, ...]]

Modes set the shape of the load: ``sync`` keeps one single-op frame in flight,
``pipelined`` a window of single-op frames, ``batched`` a window of frames of
``batch_ops`` ops each (every op of a frame is recorded with the frame's
latency). Everything is bounded: the run stops at ``ops_max``
completed ops or ``duration_s``, whichever comes first; the window caps frames
awaiting quorum; no server may fall more than ``SERVER_LAG_FACTOR`` windows
behind, which bounds every socket queue below its high-water mark, so ZeroMQ
never drops or blocks on our account.

The counting (which frame has its quorum, which reply is late or bogus) is
``QuorumTracker``, sans-IO and tested without sockets; ``_quorum_loop`` only
moves bytes between it and the DEALERs.

The servers (``python -m zkv.bench.ceiling --serve``, each printing its
OS-assigned port) are owned by the ``EchoServers`` that started them:
``stop()`` terminates them by handle, waits with a timeout and kills any
straggler; it runs on every exit path of ``start_echo_servers`` and of
``with``. A server whose parent dies exits on its own within
``PARENT_CHECK_INTERVAL_MS``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import TextIO

import click
import msgpack
import zmq

from zkv.bench.histogram import LatencyRecorder
from zkv.bench.report import ResultRow, format_table, ops_per_second

log = logging.getLogger(__name__)

CEILING_WIRE_VERSION = 1
MODE_SYNC = "sync"
MODE_PIPELINED = "pipelined"
MODE_BATCHED = "batched"
MODES = (MODE_SYNC, MODE_PIPELINED, MODE_BATCHED)

SERVER_COUNT_DEFAULT = 3
HOST_DEFAULT = "127.0.0.1"
DURATION_S_DEFAULT = 5.0
DURATION_S_MAX = 3600.0
OPS_MAX_DEFAULT = 100_000_000
OPS_MAX_LIMIT = 1_000_000_000
VALUE_BYTES_DEFAULT = 100
VALUE_BYTES_MAX = 1_048_576
BATCH_OPS_BATCHED_DEFAULT = 100
BATCH_OPS_MAX = 10_000
IN_FLIGHT_FRAMES_DEFAULT = {MODE_SYNC: 1, MODE_PIPELINED: 128, MODE_BATCHED: 16}
IN_FLIGHT_FRAMES_MAX = 1024
KEY_COUNT = 1024  # distinct keys cycled through; keys are built once, not per op

# A server may trail the quorum by this many windows before the client stops
# sending; with the window capped, this caps every queue in both directions.
SERVER_LAG_FACTOR = 4
SERVER_LAG_FRAMES_MAX = IN_FLIGHT_FRAMES_MAX * SERVER_LAG_FACTOR
# High-water marks sit above the largest possible queue (plus the readiness
# frame), so hitting one is a bug, never back-pressure: sends use NOBLOCK and
# an EAGAIN raises instead of silently dropping a reply at a ROUTER.
SOCKET_HWM_FRAMES = 2 * SERVER_LAG_FRAMES_MAX
FRAME_BYTES_MAX = 32 * 1_048_576  # servers refuse larger frames (ZMQ_MAXMSGSIZE)
FRAME_OVERHEAD_BYTES_PER_OP = 32  # msgpack framing, op id and key, generously
IN_FLIGHT_BYTES_MAX = 64 * 1_048_576  # window x frame size; queues hold at most SERVER_LAG_FACTOR of it

READINESS_FRAME_ID = 0  # a frame with no ops, sent once to each server before timing
FIRST_FRAME_ID = 1
DRAIN_FRAMES_MAX = 256  # frames read from one socket per poll turn
SERVER_START_TIMEOUT_S = 20.0
SERVER_READY_TIMEOUT_S = 10.0
SERVER_STOP_TIMEOUT_S = 5.0
SERVER_KILL_TIMEOUT_S = 5.0
PARENT_CHECK_INTERVAL_MS = 500  # an orphaned server notices its parent died this fast
REJECTION_LOG_MAX = 10


class CeilingError(RuntimeError):
    """The ceiling could not run: a server did not start, answer, or stop."""


def _require(condition: bool, message: str) -> None:
    """An invariant of this module; stays on under ``python -O``."""
    if not condition:
        raise CeilingError(message)


# ---------------------------------------------------------------------------
# Echo servers


def echo_reply(payload: bytes) -> bytes | None:
    """The reply to one request frame, or None when the frame is malformed."""
    try:
        version, frame_id, ops = msgpack.unpackb(payload)
        if version != CEILING_WIRE_VERSION or not isinstance(frame_id, int):
            return None
        op_ids = [op[0] for op in ops]
    except (ValueError, TypeError, IndexError, KeyError):
        return None
    return msgpack.packb([CEILING_WIRE_VERSION, frame_id, op_ids])


def serve_echo(host: str, port_report: TextIO) -> None:
    """Body of one echo server process: bind, write the port as one line, echo until stopped."""
    parent_pid = os.getppid()
    context = zmq.Context()
    socket = context.socket(zmq.ROUTER)
    socket.linger = 0
    socket.sndhwm = SOCKET_HWM_FRAMES
    socket.rcvhwm = SOCKET_HWM_FRAMES
    socket.setsockopt(zmq.MAXMSGSIZE, FRAME_BYTES_MAX)
    try:
        port = socket.bind_to_random_port(f"tcp://{host}")
        port_report.write(f"{port}\n")
        port_report.flush()
        _echo_loop(socket, parent_pid)
    finally:
        socket.close(linger=0)
        context.term()


def _echo_loop(socket: zmq.Socket, parent_pid: int) -> None:
    # Hot loop. A blocking receive with a timeout is the fewest calls per frame,
    # and the timeout is when an orphaned server checks whether its parent died.
    # Single-part recv/send with an explicit RCVMORE check measured ~1.5x the
    # frames/s of recv_multipart/send_multipart (and of the ``socket.rcvmore``
    # attribute, which resolves the option name on every call).
    socket.rcvtimeo = PARENT_CHECK_INTERVAL_MS
    receive, send, getsockopt = socket.recv, socket.send, socket.getsockopt
    rejected_count = 0
    while True:
        try:
            identity = receive()
        except zmq.Again:
            if os.getppid() != parent_pid:
                return  # orphaned: the parent died without stopping us
            continue
        payload = receive()  # a ROUTER message always has a part after the identity
        reply = None
        if getsockopt(zmq.RCVMORE):
            while getsockopt(zmq.RCVMORE):  # a multi-part request: discard the rest of it
                receive()
        else:
            reply = echo_reply(payload)
        if reply is None:
            rejected_count += 1
            if rejected_count <= REJECTION_LOG_MAX:
                log.warning("echo server rejected a malformed frame (%d so far)", rejected_count)
            continue
        # A ROUTER never blocks: a reply to a peer that left is dropped.
        send(identity, zmq.SNDMORE)
        send(reply)


class EchoServers:
    """The echo server processes one caller started; ``stop()`` ends every one of them.

    Each server is ``python -m zkv.bench.ceiling --serve`` in a session of its
    own, so a Ctrl-C at the terminal reaches only the parent, which then stops
    them here; nothing of the caller's ``__main__`` is imported in the child.
    """

    def __init__(self, host: str) -> None:
        self.host = host
        self._processes: list[subprocess.Popen] = []
        self._ports: list[int] = []
        self._stopped = False

    @property
    def pids(self) -> tuple[int, ...]:
        return tuple(process.pid for process in self._processes)

    @property
    def ports(self) -> tuple[int, ...]:
        return tuple(self._ports)

    @property
    def endpoints(self) -> tuple[str, ...]:
        return tuple(f"tcp://{self.host}:{port}" for port in self._ports)

    def __enter__(self) -> EchoServers:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _launch(self, count: int) -> None:
        package_root = str(Path(__file__).resolve().parents[2])
        environment = dict(os.environ)
        environment["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, environment.get("PYTHONPATH")]))
        command = [sys.executable, "-m", "zkv.bench.ceiling", "--serve", "--host", self.host]
        for _ in range(count):
            self._processes.append(
                subprocess.Popen(
                    command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, env=environment, start_new_session=True
                )
            )

    def _await_ports(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        for index, process in enumerate(self._processes):
            remaining_s = max(0.0, deadline - time.monotonic())
            readable, _, _ = select.select([process.stdout], [], [], remaining_s)
            if not readable:
                raise CeilingError(f"echo server {index} did not report its port within {timeout_s} s")
            line = process.stdout.readline()
            process.stdout.close()  # the server writes nothing after its port
            if not line.strip().isdigit():
                raise CeilingError(
                    f"echo server {index} (pid {process.pid}, exit code {process.poll()}) "
                    f"did not report a port: {line!r}"
                )
            self._ports.append(int(line))

    def stop(self, timeout_s: float = SERVER_STOP_TIMEOUT_S) -> None:
        """Terminate, wait with a timeout, kill stragglers. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        for process in self._processes:
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + timeout_s
        stragglers = []
        for process in self._processes:
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                stragglers.append(process)
        for process in stragglers:
            log.warning("echo server pid %d ignored SIGTERM; killing it", process.pid)
            process.kill()
        survivors = []
        for process in stragglers:
            try:
                process.wait(SERVER_KILL_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                survivors.append(process.pid)
        for process in self._processes:
            if process.stdout is not None:
                process.stdout.close()
        _require(not survivors, f"echo servers still alive after kill: {survivors}")


def start_echo_servers(count: int = SERVER_COUNT_DEFAULT, host: str = HOST_DEFAULT) -> EchoServers:
    """Start ``count`` echo server processes, each on an OS-assigned port; returns when all are bound."""
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    servers = EchoServers(host)
    try:
        servers._launch(count)
        servers._await_ports(SERVER_START_TIMEOUT_S)
    except BaseException:
        servers.stop()
        raise
    return servers


# ---------------------------------------------------------------------------
# Client


@dataclasses.dataclass(frozen=True, slots=True)
class CeilingPlan:
    """One validated run: its shape and its bounds."""

    mode: str
    duration_s: float
    ops_max: int
    in_flight: int  # frames awaiting quorum
    batch_ops: int  # ops per frame
    value_bytes: int

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if not 0 < self.duration_s <= DURATION_S_MAX:
            raise ValueError(f"duration_s must be in (0, {DURATION_S_MAX}], got {self.duration_s}")
        if not 1 <= self.ops_max <= OPS_MAX_LIMIT:
            raise ValueError(f"ops_max must be in [1, {OPS_MAX_LIMIT}], got {self.ops_max}")
        if not 1 <= self.in_flight <= IN_FLIGHT_FRAMES_MAX:
            raise ValueError(f"in_flight must be in [1, {IN_FLIGHT_FRAMES_MAX}], got {self.in_flight}")
        if not 1 <= self.batch_ops <= BATCH_OPS_MAX:
            raise ValueError(f"batch_ops must be in [1, {BATCH_OPS_MAX}], got {self.batch_ops}")
        if not 0 <= self.value_bytes <= VALUE_BYTES_MAX:
            raise ValueError(f"value_bytes must be in [0, {VALUE_BYTES_MAX}], got {self.value_bytes}")
        if self.mode == MODE_SYNC and self.in_flight != 1:
            raise ValueError(f"sync mode keeps one op in flight; got in_flight={self.in_flight}")
        if self.mode != MODE_BATCHED and self.batch_ops != 1:
            raise ValueError(f"{self.mode} mode sends one op per frame; got batch_ops={self.batch_ops}")
        frame_bytes = self.batch_ops * (self.value_bytes + FRAME_OVERHEAD_BYTES_PER_OP)
        if frame_bytes > FRAME_BYTES_MAX:
            raise ValueError(f"batch_ops * value_bytes makes {frame_bytes} byte frames; max {FRAME_BYTES_MAX}")
        if frame_bytes * self.in_flight > IN_FLIGHT_BYTES_MAX:
            raise ValueError(
                f"in_flight * frame size is {frame_bytes * self.in_flight} bytes; max {IN_FLIGHT_BYTES_MAX}"
            )


@dataclasses.dataclass(frozen=True, slots=True, eq=False)
class CeilingResult:
    """What one ceiling run measured. ``latency`` holds one value per completed op."""

    plan: CeilingPlan
    ops: int
    seconds: float
    frames: int  # frames that reached quorum
    errors: int  # malformed replies, or replies to frames never sent
    late_replies: int  # replies after quorum; expected, not errors
    latency: LatencyRecorder

    @property
    def mode(self) -> str:
        return self.plan.mode

    @property
    def ops_per_s(self) -> float:
        return ops_per_second(self.ops, self.seconds)

    def row(self) -> ResultRow:
        return ResultRow.from_recorder(f"ceiling {self.mode}", self.ops, self.seconds, self.latency, self.errors)


def make_plan(
    mode: str,
    *,
    duration_s: float = DURATION_S_DEFAULT,
    ops_max: int = OPS_MAX_DEFAULT,
    in_flight: int | None = None,
    batch_ops: int | None = None,
    value_bytes: int = VALUE_BYTES_DEFAULT,
) -> CeilingPlan:
    """A plan with the mode's defaults for what is left as None; raises ValueError on misuse."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if in_flight is None:
        in_flight = IN_FLIGHT_FRAMES_DEFAULT[mode]
    if batch_ops is None:
        batch_ops = BATCH_OPS_BATCHED_DEFAULT if mode == MODE_BATCHED else 1
    return CeilingPlan(mode, duration_s, ops_max, in_flight, batch_ops, value_bytes)


def run_ceiling(
    mode: str,
    *,
    duration_s: float = DURATION_S_DEFAULT,
    ops_max: int = OPS_MAX_DEFAULT,
    in_flight: int | None = None,
    batch_ops: int | None = None,
    value_bytes: int = VALUE_BYTES_DEFAULT,
    servers: EchoServers | None = None,
) -> CeilingResult:
    """Run one mode against ``servers``, or against 3 servers of its own that it stops after."""
    plan = make_plan(
        mode, duration_s=duration_s, ops_max=ops_max, in_flight=in_flight, batch_ops=batch_ops, value_bytes=value_bytes
    )
    if servers is None:
        with start_echo_servers() as own_servers:
            return run_plan(plan, own_servers.endpoints)
    return run_plan(plan, servers.endpoints)


def run_ceiling_modes(
    modes: tuple[str, ...] | list[str] = MODES,
    *,
    duration_s: float = DURATION_S_DEFAULT,
    ops_max: int = OPS_MAX_DEFAULT,
    in_flight: int | None = None,
    batch_ops: int = BATCH_OPS_BATCHED_DEFAULT,
    value_bytes: int = VALUE_BYTES_DEFAULT,
    servers: EchoServers | None = None,
) -> list[CeilingResult]:
    """Run several modes on one set of servers; ``in_flight`` applies to the windowed
    modes (not sync), ``batch_ops`` to batched only."""
    plans = [
        make_plan(
            mode,
            duration_s=duration_s,
            ops_max=ops_max,
            in_flight=None if mode == MODE_SYNC else in_flight,
            batch_ops=batch_ops if mode == MODE_BATCHED else None,
            value_bytes=value_bytes,
        )
        for mode in modes
    ]
    if servers is None:
        with start_echo_servers() as own_servers:
            return [run_plan(plan, own_servers.endpoints) for plan in plans]
    return [run_plan(plan, servers.endpoints) for plan in plans]


def run_plan(plan: CeilingPlan, endpoints: tuple[str, ...] | list[str]) -> CeilingResult:
    """Connect one DEALER per endpoint, wait until each server answers, then run the plan."""
    _require(len(endpoints) >= 1, "no endpoints to run against")
    context = zmq.Context()
    sockets: list[zmq.Socket] = []
    try:
        for endpoint in endpoints:
            socket = context.socket(zmq.DEALER)
            socket.linger = 0
            socket.sndhwm = SOCKET_HWM_FRAMES
            socket.rcvhwm = SOCKET_HWM_FRAMES
            socket.connect(endpoint)
            sockets.append(socket)
        _await_ready(sockets, SERVER_READY_TIMEOUT_S)
        return _quorum_loop(plan, sockets)
    finally:
        for socket in sockets:
            socket.close(linger=0)
        context.term()


def _await_ready(sockets: list[zmq.Socket], timeout_s: float) -> None:
    """Send an empty frame to each server and wait for every reply, so that
    connection setup is not timed as latency of the first ops."""
    readiness = request_frame(READINESS_FRAME_ID, [])
    for socket in sockets:
        socket.send(readiness, zmq.NOBLOCK)
    deadline = time.monotonic() + timeout_s
    for index, socket in enumerate(sockets):
        timeout_ms = max(0, math.ceil((deadline - time.monotonic()) * 1000))
        if not socket.poll(timeout_ms, zmq.POLLIN):
            raise CeilingError(f"echo server {index} did not answer within {timeout_s} s")
        reply = socket.recv()
        _require(
            reply == msgpack.packb([CEILING_WIRE_VERSION, READINESS_FRAME_ID, []]),
            f"echo server {index} answered the readiness frame with {reply!r}",
        )


class QuorumTracker:
    """Frames awaiting quorum and what each server still owes; no sockets, no clock.

    ``on_sent`` registers a frame sent to every server; ``on_reply`` takes one
    server's reply bytes and returns ``(op_count, sent_at)`` when that reply is
    the frame's ``quorum``-th, else None. A reply after quorum is late (counted,
    dropped); a reply that does not decode, names a frame never sent, or does
    not echo the frame's op ids is an error (counted, dropped). Nothing raises.
    """

    __slots__ = ("quorum", "outstanding", "pending", "next_frame_id", "errors", "late_replies")

    def __init__(self, server_count: int, quorum: int) -> None:
        if not 1 <= quorum <= server_count:
            raise ValueError(f"quorum must be in [1, {server_count}], got {quorum}")
        self.quorum = quorum
        self.outstanding = [0] * server_count  # frames sent to each server, not yet answered by it
        self.pending: dict[int, list] = {}  # frame_id -> [replies, sent_at, first_op_id, op_count]
        self.next_frame_id = FIRST_FRAME_ID
        self.errors = 0
        self.late_replies = 0

    def on_sent(self, first_op_id: int, op_count: int, sent_at: float) -> int:
        """Record a frame sent to every server; returns its frame id."""
        frame_id = self.next_frame_id
        self.next_frame_id = frame_id + 1
        self.pending[frame_id] = [0, sent_at, first_op_id, op_count]
        outstanding = self.outstanding
        for server in range(len(outstanding)):
            outstanding[server] += 1
        return frame_id

    def on_reply(self, server: int, payload: bytes) -> tuple[int, float] | None:
        try:
            version, frame_id, op_ids = msgpack.unpackb(payload)
            entry = self.pending.get(frame_id)
            if entry is None:
                is_late = version == CEILING_WIRE_VERSION and FIRST_FRAME_ID <= frame_id < self.next_frame_id
                is_valid = False
            else:
                is_late = False
                first_op_id, op_count = entry[2], entry[3]
                is_valid = (
                    version == CEILING_WIRE_VERSION
                    and len(op_ids) == op_count
                    and op_ids[0] == first_op_id
                    and op_ids[-1] == first_op_id + op_count - 1
                )
        except (ValueError, TypeError, IndexError, KeyError):
            self.errors += 1
            return None
        if is_late:
            self.outstanding[server] -= 1
            self.late_replies += 1
            return None
        if not is_valid:
            self.errors += 1
            return None
        self.outstanding[server] -= 1
        entry[0] += 1
        if entry[0] < self.quorum:
            return None
        del self.pending[frame_id]
        return op_count, entry[1]


def request_frame(frame_id: int, ops: list) -> bytes:
    return msgpack.packb([CEILING_WIRE_VERSION, frame_id, ops])


def _quorum_loop(plan: CeilingPlan, sockets: list[zmq.Socket]) -> CeilingResult:
    """Keep up to ``plan.in_flight`` frames awaiting quorum until a bound is reached.

    Hot loop: locals are bound once and per-op work is kept to the minimum,
    since the point of a ceiling is to cost as little as the client can.
    """
    tracker = QuorumTracker(len(sockets), len(sockets) // 2 + 1)
    keys = tuple(b"key-%06d" % index for index in range(KEY_COUNT))
    value = b"v" * plan.value_bytes
    ops_max, batch_ops, in_flight = plan.ops_max, plan.batch_ops, plan.in_flight
    lag_frames_max = in_flight * SERVER_LAG_FACTOR
    server_of = {socket: index for index, socket in enumerate(sockets)}
    poller = zmq.Poller()
    for socket in sockets:
        poller.register(socket, zmq.POLLIN)
    pending, outstanding, on_sent, on_reply = tracker.pending, tracker.outstanding, tracker.on_sent, tracker.on_reply
    latency = LatencyRecorder()
    perf_counter = time.perf_counter
    ops_sent = ops_done = frames_done = 0
    started = perf_counter()
    deadline = started + plan.duration_s
    while ops_done < ops_max:
        if perf_counter() >= deadline:
            break
        while len(pending) < in_flight and ops_sent < ops_max and max(outstanding) < lag_frames_max:
            op_count = min(batch_ops, ops_max - ops_sent)
            ops = [[op_id, keys[op_id % KEY_COUNT], value] for op_id in range(ops_sent, ops_sent + op_count)]
            frame = request_frame(tracker.next_frame_id, ops)
            on_sent(ops_sent, op_count, perf_counter())
            for socket in sockets:
                try:
                    socket.send(frame, zmq.NOBLOCK)
                except zmq.Again:
                    raise CeilingError("a DEALER hit its high-water mark below the lag bound") from None
            ops_sent += op_count
        timeout_ms = max(1, math.ceil((deadline - perf_counter()) * 1000))
        for socket, _ in poller.poll(timeout_ms):
            server = server_of[socket]
            # Read no more than this server owes us (at least one, since it is
            # readable): saves the EAGAIN that ends an open-ended drain.
            for _ in range(min(DRAIN_FRAMES_MAX, max(1, outstanding[server]))):
                try:
                    payload = socket.recv(zmq.NOBLOCK)
                except zmq.Again:
                    break
                completed = on_reply(server, payload)
                if completed is not None:
                    op_count, sent_at = completed
                    latency.record(perf_counter() - sent_at, op_count)
                    ops_done += op_count
                    frames_done += 1
    seconds = perf_counter() - started
    _require(ops_done <= ops_max, f"completed {ops_done} ops, more than ops_max={ops_max}")
    _require(latency.count == ops_done, f"recorded {latency.count} latencies for {ops_done} ops")
    return CeilingResult(plan, ops_done, seconds, frames_done, tracker.errors, tracker.late_replies, latency)


# ---------------------------------------------------------------------------
# Command line


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--mode", "modes", multiple=True, type=click.Choice(MODES), help="Repeatable; default: all three.")
@click.option("--duration-s", type=float, default=DURATION_S_DEFAULT, show_default=True, help="Per mode.")
@click.option("--ops-max", type=int, default=OPS_MAX_DEFAULT, show_default=True, help="Per mode.")
@click.option("--in-flight", type=int, default=None, help="Frames in flight for pipelined/batched.")
@click.option("--batch-ops", type=int, default=BATCH_OPS_BATCHED_DEFAULT, show_default=True, help="Batched mode.")
@click.option("--value-bytes", type=int, default=VALUE_BYTES_DEFAULT, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON rows instead of a table.")
@click.option("--serve", is_flag=True, hidden=True, help="Be one echo server: print the bound port, then echo.")
@click.option("--host", default=HOST_DEFAULT, hidden=True, help="With --serve: the interface to bind.")
def main(
    modes: tuple[str, ...],
    duration_s: float,
    ops_max: int,
    in_flight: int | None,
    batch_ops: int,
    value_bytes: int,
    as_json: bool,
    serve: bool,
    host: str,
) -> None:
    """Measure the raw pyzmq + msgpack quorum echo that zkv is compared against."""
    if serve:
        try:
            serve_echo(host, sys.stdout)
        except KeyboardInterrupt:
            pass  # a server run by hand is stopped with Ctrl-C; nothing to report
        return
    try:
        results = run_ceiling_modes(
            modes or MODES,
            duration_s=duration_s,
            ops_max=ops_max,
            in_flight=in_flight,
            batch_ops=batch_ops,
            value_bytes=value_bytes,
        )
    except ValueError as error:
        raise click.UsageError(str(error)) from None
    rows = [result.row() for result in results]
    if as_json:
        click.echo(json.dumps([dataclasses.asdict(row) for row in rows], indent=2))
    else:
        click.echo(format_table(rows))
    if any(result.errors for result in results):
        sys.exit(1)


if __name__ == "__main__":
    main()
