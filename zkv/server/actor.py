"""The node process's shell: ZeroMQ sockets, the poller loop, time and signals.

All decisions live in ``zkv.core.node.NodeCore``; this module only does IO.
One thread runs the loop:

    poll (ROUTER + one DEALER per peer + signal fd) until the core's next deadline
      -> storage.begin_turn()
      -> drain a bounded batch of frames into the core, tick it if due
      -> effects = core.finish_turn()
      -> storage.end_turn()          (commit + fsync: group commit)
      -> send peer messages, send replies, print log lines

so nothing is acknowledged before it is durable. A frame that does not decode
is counted and answered with an error; it never ends the loop. The ROUTER is
bound on tcp for peers and clients and on inproc for the HTTP API thread.
"""

from __future__ import annotations

import logging
import random
import secrets
import signal
import socket
import time

import zmq

from zkv import wire
from zkv.core.node import NodeCore, NodeSettings
from zkv.sockets import connect_dealer
from zkv.storage.errors import StorageError

log = logging.getLogger("zkv.node")

FRAMES_PER_TURN_MAX = 512  # per socket, per turn: bounds the time between ticks
POLL_MS_MAX = 100
ROUTER_RCVHWM = 100_000
ROUTER_SNDHWM = 100_000
DEALER_SNDHWM = 10_000
DEALER_RCVHWM = 100_000


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def inproc_endpoint(node_id: str) -> str:
    return f"inproc://zkv-node-{node_id}"


class NodeActor:
    """Runs one node until it leaves, is told to stop, or cannot start."""

    def __init__(self, settings: NodeSettings, storage, bind_host: str, port: int,
                 http_port: int | None = None, context: zmq.Context | None = None) -> None:
        self.settings = settings
        self.storage = storage
        self.bind_host = bind_host
        self.port = port
        self.http_port = http_port
        self.context = context or zmq.Context.instance()
        self.router: zmq.Socket | None = None
        self.dealers: dict[str, zmq.Socket] = {}
        self.dealer_targets: dict[zmq.Socket, str] = {}
        self.poller = zmq.Poller()
        self.leave_requested = False
        self.stop_requested = False
        self.http = None
        self._wake_reader: socket.socket | None = None
        self._wake_writer: socket.socket | None = None

    # -- setup and teardown --------------------------------------------------------------------

    def _open_sockets(self) -> None:
        router = self.context.socket(zmq.ROUTER)
        router.setsockopt(zmq.LINGER, 0)
        router.setsockopt(zmq.RCVHWM, ROUTER_RCVHWM)
        router.setsockopt(zmq.SNDHWM, ROUTER_SNDHWM)
        router.setsockopt(zmq.ROUTER_MANDATORY, 1)  # unroutable replies raise instead of vanishing silently
        router.bind(f"tcp://{self.bind_host}:{self.port}")
        router.bind(inproc_endpoint(self.settings.node_id))
        self.router = router
        self.poller.register(router, zmq.POLLIN)
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._wake_reader.setblocking(False)
        self._wake_writer.setblocking(False)
        self.poller.register(self._wake_reader.fileno(), zmq.POLLIN)

    def _dealer(self, target: str, address: str) -> zmq.Socket:
        dealer = self.dealers.get(target)
        if dealer is None:
            dealer = connect_dealer(self.context, address, DEALER_SNDHWM, DEALER_RCVHWM)
            self.dealers[target] = dealer
            self.dealer_targets[dealer] = target
            self.poller.register(dealer, zmq.POLLIN)
        return dealer

    def _close(self) -> None:
        if self.http is not None:
            self.http.stop()
        for dealer in self.dealers.values():
            dealer.close(0)
        if self.router is not None:
            self.router.close(0)
        for end in (self._wake_reader, self._wake_writer):
            if end is not None:
                end.close()
        self.storage.close()

    # -- signals -------------------------------------------------------------------------------------

    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT start a graceful leave; a second one stops at once."""
        def handle(signum, frame):
            if self.leave_requested:
                self.stop_requested = True
            self.leave_requested = True
            self.wake()
        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGINT, handle)

    def wake(self) -> None:
        if self._wake_writer is not None:
            try:
                self._wake_writer.send(b"x")
            except OSError:
                pass  # the wake-up pipe is full: the loop is already due to wake

    # -- the loop ---------------------------------------------------------------------------------

    def run(self) -> int:
        self._open_sockets()
        storage = self.storage
        storage.begin_turn()
        core = NodeCore(self.settings, storage, random.Random(secrets.randbits(128)), now_ms())
        effects = core.finish_turn(now_ms())
        storage.end_turn()
        self.core = core
        self._emit(core, effects)
        if self.http_port is not None:
            from zkv.server.http import HttpApi
            self.http = HttpApi(self.context, inproc_endpoint(self.settings.node_id), self.bind_host, self.http_port)
            self.http_port = self.http.start()
        log.info("node %s serving peers on %s:%d, HTTP on %s", self.settings.node_id, self.bind_host, self.port,
                 f"{self.bind_host}:{self.http_port}" if self.http is not None else "(off)")
        exit_code = effects.exit_code
        leaving_announced = False
        try:
            while exit_code is None and not self.stop_requested:
                wait_ms = max(0, min(core.next_deadline_ms() - now_ms(), POLL_MS_MAX))
                ready = dict(self.poller.poll(wait_ms))
                storage.begin_turn()
                try:
                    self._drain(core, ready)
                    current_ms = now_ms()
                    if self.leave_requested and not leaving_announced:
                        leaving_announced = True
                        core.begin_leave(current_ms)
                    if current_ms >= core.next_deadline_ms():
                        core.on_tick(current_ms)
                    effects = core.finish_turn(current_ms)
                    storage.end_turn()
                except StorageError as error:
                    # Nothing of this turn is durable, so nothing of it may be acknowledged.
                    log.error("storage failed, dropping this turn's replies: %s", error)
                    continue
                exit_code = effects.exit_code
                self._emit(core, effects)
        finally:
            self._close()
        if self.stop_requested and exit_code is None:
            log.warning("stopped before the leave completed")
            exit_code = 1
        return exit_code if exit_code is not None else 0

    def _drain(self, core: NodeCore, ready: dict) -> None:
        if self._wake_reader is not None and self._wake_reader.fileno() in ready:
            try:
                self._wake_reader.recv(4096)
            except BlockingIOError:
                pass  # another turn already drained the wake-up bytes
        router = self.router
        current_ms = now_ms()
        backlog = False
        if router in ready:
            for count in range(FRAMES_PER_TURN_MAX + 1):
                if count == FRAMES_PER_TURN_MAX:
                    backlog = bool(router.get(zmq.EVENTS) & zmq.POLLIN)  # frames left for the next turn
                    break
                try:
                    parts = router.recv_multipart(zmq.NOBLOCK, copy=True)
                except zmq.Again:
                    break
                route = parts[0]
                if len(parts) != 2:
                    core.on_bad_frame(route, f"expected one frame after the identity, got {len(parts) - 1}", 0)
                    continue
                try:
                    message = wire.decode(parts[1])
                except wire.WireError as error:
                    core.on_bad_frame(route, error.reason, error.request_id)
                    continue
                self._guard(core, core.on_request, route, message, current_ms)
        core.note_load(backlog, current_ms)
        for dealer, target in self.dealer_targets.items():
            if dealer not in ready:
                continue
            for _ in range(FRAMES_PER_TURN_MAX):
                try:
                    frame = dealer.recv(zmq.NOBLOCK, copy=True)
                except zmq.Again:
                    break
                try:
                    message = wire.decode(frame)
                except wire.WireError as error:
                    core.on_bad_frame(None, error.reason, None)
                    continue
                self._guard(core, core.on_peer_message, target, message, current_ms)

    def _guard(self, core: NodeCore, handler, source, message, current_ms: int) -> None:
        try:
            handler(source, message, current_ms)
        except Exception:  # a bug, not bad input: keep serving, but loudly
            core.counters["handler_errors"] += 1
            log.exception("handler for %s failed", type(message).__name__)

    def _emit(self, core: NodeCore, effects) -> None:
        for line in effects.logs:
            log.info("%s", line)
        for target, message in effects.sends:
            address = core.address_of(target)
            if address is None:
                core.counters["unroutable_sends"] += 1
                continue
            try:
                self._dealer(target, address).send(wire.encode(message), zmq.NOBLOCK)
            except zmq.Again:
                core.counters["dropped_sends"] += 1
                request_id = getattr(message, "request_id", None)
                if request_id is not None and type(message).__name__ == "Batch":
                    core.coordinator.on_send_failed(request_id, now_ms())
        router = self.router
        for route, message in effects.replies:
            try:
                router.send_multipart([route, wire.encode(message)], zmq.NOBLOCK)
            except zmq.ZMQError:
                core.counters["dropped_replies"] += 1  # the requester went away or its queue is full
