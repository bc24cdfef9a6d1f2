"""The smart client: quorum requests multiplexed over one DEALER per node.

``Client`` is the embeddable Python API. It runs the same ``Coordinator`` as a
node (``zkv.core.quorum``) on a background IO thread that owns every socket:

    caller threads                          IO thread
    --------------                          ---------
    set/get/delete  --(command queue)-->    coordinator.submit_*  (ops for one node
    *_async, mset, mget   + wake-up         share one Batch frame per flush)
          ^                                 poll DEALERs -> coordinator.on_reply
          +------- Future resolved <------- completed ops

Callers never touch a socket, so any number of threads may use one client and
keep many requests in flight. The partition map comes from the cluster
(``ConfigRequest``) and is refreshed when a replica says STALE, and
periodically so that new nodes are found. A DEALER sends only to a connected
peer (ZMQ_IMMEDIATE), so a dead node fails its share of a request at once and
the other replicas make the quorum.
"""

from __future__ import annotations

import collections
import itertools
import secrets
import socket
import threading
import time
from concurrent.futures import Future
from typing import Iterable, Mapping, Sequence

import zmq

from zkv import wire
from zkv.core import messages
from zkv.core.config import Config, needed
from zkv.core.placement import key_bytes
from zkv.core.quorum import ERROR_INVALID, ERROR_QUORUM, Coordinator, InvalidInput, check_key, check_value
from zkv.core.versions import decode_value, is_tombstone
from zkv.sockets import connect_dealer
from zkv.errors import ClientClosed, InvalidRequest, QuorumError, Timeout, Unavailable, ZkvError

TIMEOUT_S_DEFAULT = 5.0
CONFIG_RETRY_MS = 100
CONFIG_REFRESH_MS = 10_000
POLL_MS_MAX = 50
INFLIGHT_OPS_MAX = 100_000  # per client: beyond this, submitting waits for room
IDLE_WAIT_S = 1.0
COMMANDS_PER_TURN_MAX = 20_000
FRAMES_PER_TURN_MAX = 1000
DEALER_SNDHWM = 10_000
DEALER_RCVHWM = 100_000


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def parse_nodes(nodes: Sequence[str] | str) -> list[str]:
    """"host:port" strings (a comma-separated string is accepted too)."""
    if isinstance(nodes, str):
        nodes = [part for part in nodes.split(",")]
    parsed = []
    for node in nodes:
        node = node.strip()
        if node.startswith("tcp://"):
            node = node[len("tcp://"):]
        host, _, port = node.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise InvalidRequest(f"node address {node!r} is not HOST:PORT")
        parsed.append(f"{host}:{int(port)}")
    if not parsed:
        raise InvalidRequest("at least one node address is needed")
    return parsed


def _key_out(key: bytes) -> str | bytes:
    try:
        return key.decode("utf-8")
    except UnicodeDecodeError:
        return key


class PartialFailure(ZkvError):
    """Some operations of a batch call failed; ``errors`` maps each failed key to its error."""

    def __init__(self, errors: dict, succeeded: int) -> None:
        first = next(iter(errors.values()))
        super().__init__(f"{len(errors)} of {len(errors) + succeeded} operations failed; first: {first}")
        self.errors = errors
        self.succeeded = succeeded


def _error_for(op) -> ZkvError:
    if op.error == ERROR_INVALID:
        return InvalidRequest(op.detail)
    if op.error == ERROR_QUORUM:
        needed = max((need for _, need in op.needs), default=op.quorum)
        return QuorumError(f"quorum not reached: {op.detail}", op.answered, needed)
    return Timeout(op.detail or "the cluster did not answer in time")


class _Aggregate:
    """Collects the results of a batch call into one Future."""

    __slots__ = ("future", "results", "errors", "keys", "remaining", "want_values")

    def __init__(self, count: int, keys: list, want_values: bool) -> None:
        self.future: Future = Future()
        self.results: list = [None] * count
        self.errors: dict = {}
        self.keys = keys
        self.remaining = count
        self.want_values = want_values

    def done(self, index: int, op) -> None:
        if op.ok:
            if self.want_values and op.newest is not None:
                self.results[index] = decode_value(op.newest)
        else:
            self.errors[self.keys[index]] = _error_for(op)
        self.remaining -= 1
        if self.remaining == 0:
            if self.errors:
                self.future.set_exception(PartialFailure(self.errors, len(self.results) - len(self.errors)))
            else:
                self.future.set_result(self.results if self.want_values else None)


class Client:
    """A connection to a zkv cluster. Thread-safe; use as a context manager or call close()."""

    def __init__(self, nodes: Sequence[str] | str, *, timeout: float = TIMEOUT_S_DEFAULT, w: int = 2, r: int = 2,
                 connect_timeout: float = TIMEOUT_S_DEFAULT, context: zmq.Context | None = None) -> None:
        self.seeds = parse_nodes(nodes)
        if w < 1 or r < 1:
            raise InvalidRequest("w and r must be at least 1")
        self.timeout = timeout
        self._io = _IoThread(self.seeds, Coordinator(secrets.randbits(63), write_quorum=w, read_quorum=r),
                             context or zmq.Context.instance())
        self._io.start()
        if not self._io.config_ready.wait(connect_timeout):
            self.close()
            raise Timeout(f"no zkv node answered at {', '.join(self.seeds)} within {connect_timeout:g}s")

    # -- lifecycle -----------------------------------------------------------------------------------

    def close(self) -> None:
        self._io.stop()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    @property
    def config(self) -> Config | None:
        """The partition map this client routes by (refreshed when a node says it is stale)."""
        return self._io.coordinator.config

    @property
    def in_flight(self) -> int:
        """Operations submitted and not completed yet (bounded by INFLIGHT_OPS_MAX)."""
        return self._io.outstanding

    @property
    def w(self) -> int:
        """The write quorum used when a call passes no ``w``."""
        return self._io.coordinator.write_quorum

    @property
    def r(self) -> int:
        """The read quorum used when a call passes no ``r``."""
        return self._io.coordinator.read_quorum

    # -- single operations ---------------------------------------------------------------------------

    def _deadline(self, timeout: float | None) -> tuple[int, float]:
        seconds = self.timeout if timeout is None else timeout
        if seconds <= 0:
            raise InvalidRequest("timeout must be positive")
        return _now_ms() + int(seconds * 1000), seconds

    @staticmethod
    def _quorum(value: int | None, name: str) -> int:
        if value is None:
            return 0
        if type(value) is not int or value < 1:
            raise InvalidRequest(f"{name} must be a positive integer, not {value!r}")
        return value

    def set_async(self, key: str | bytes, value: str | bytes, *, w: int | None = None,
                  timeout: float | None = None) -> Future:
        """Write a value; the Future resolves to None once W replicas made it durable."""
        key = self._check_key(key)
        try:
            check_value(value)
        except InvalidInput as error:
            raise InvalidRequest(str(error)) from None
        deadline_ms, _ = self._deadline(timeout)
        future: Future = Future()
        self._io.submit(("write", key, value, self._quorum(w, "w"), deadline_ms, future))
        return future

    def delete_async(self, key: str | bytes, *, w: int | None = None, timeout: float | None = None) -> Future:
        key = self._check_key(key)
        deadline_ms, _ = self._deadline(timeout)
        future: Future = Future()
        self._io.submit(("write", key, None, self._quorum(w, "w"), deadline_ms, future))
        return future

    def get_async(self, key: str | bytes, *, r: int | None = None, timeout: float | None = None) -> Future:
        """Read a key; the Future resolves to the newest value of R replicas (None when missing)."""
        key = self._check_key(key)
        deadline_ms, _ = self._deadline(timeout)
        future: Future = Future()
        self._io.submit(("read", key, None, self._quorum(r, "r"), deadline_ms, future))
        return future

    def set(self, key: str | bytes, value: str | bytes, *, w: int | None = None, timeout: float | None = None) -> None:
        """Write a value; returns once W replicas made it durable."""
        key = self._check_key(key)
        try:
            check_value(value)
        except InvalidInput as error:
            raise InvalidRequest(str(error)) from None
        self._call("write", key, value, self._quorum(w, "w"), timeout)

    def get(self, key: str | bytes, *, r: int | None = None, timeout: float | None = None) -> str | bytes | None:
        """The newest value among R replicas, as the type written; None when missing."""
        return self._call("read", self._check_key(key), None, self._quorum(r, "r"), timeout)

    def delete(self, key: str | bytes, *, w: int | None = None, timeout: float | None = None) -> None:
        self._call("write", self._check_key(key), None, self._quorum(w, "w"), timeout)

    def _call(self, kind: str, key: bytes, value, quorum: int, timeout: float | None):
        deadline_ms, seconds = self._deadline(timeout)
        try:
            return self._io.call((kind, key, value, quorum, deadline_ms, Future()), seconds + 2.0)
        except TimeoutError:
            raise Timeout(f"no answer within {seconds + 2.0:g}s") from None

    # -- batch operations ----------------------------------------------------------------------------

    def mset_async(self, items: Mapping | Iterable[tuple], *, w: int | None = None,
                   timeout: float | None = None) -> Future:
        pairs = list(items.items()) if isinstance(items, Mapping) else list(items)
        keys = []
        values = []
        for key, value in pairs:
            keys.append(self._check_key(key))
            try:
                check_value(value)
            except InvalidInput as error:
                raise InvalidRequest(f"{key!r}: {error}") from None
            values.append(value)
        deadline_ms, _ = self._deadline(timeout)
        aggregate = _Aggregate(len(keys), [key for key, _ in pairs], want_values=False)
        if not keys:
            aggregate.future.set_result(None)
            return aggregate.future
        self._io.submit(("mwrite", keys, values, self._quorum(w, "w"), deadline_ms, aggregate), len(keys))
        return aggregate.future

    def mget_async(self, keys: Iterable[str | bytes], *, r: int | None = None, timeout: float | None = None) -> Future:
        original = list(keys)
        checked = [self._check_key(key) for key in original]
        deadline_ms, _ = self._deadline(timeout)
        aggregate = _Aggregate(len(checked), original, want_values=True)
        if not checked:
            aggregate.future.set_result([])
            return aggregate.future
        self._io.submit(("mread", checked, None, self._quorum(r, "r"), deadline_ms, aggregate), len(checked))
        return aggregate.future

    def mset(self, items: Mapping | Iterable[tuple], *, w: int | None = None, timeout: float | None = None) -> None:
        """Write many pairs at once (pipelined, batched per node); raises PartialFailure if any failed."""
        self._wait(self.mset_async(items, w=w, timeout=timeout), timeout)

    def mget(self, keys: Iterable[str | bytes], *, r: int | None = None, timeout: float | None = None) -> list:
        """Read many keys at once; values in the order of ``keys`` (None where missing)."""
        return self._wait(self.mget_async(keys, r=r, timeout=timeout), timeout)

    # -- cluster inspection -----------------------------------------------------------------------------

    def inspect(self, what: str, node: str | None = None, timeout: float | None = None) -> dict:
        """A node's view: "stats", "cluster", "partitions" or "metrics" (default node: the first seed)."""
        target = parse_nodes([node])[0] if node else self.seeds[0]
        reply = self._request(target, lambda request_id: messages.Inspect(request_id, what), timeout)
        return reply.data

    def _request(self, address: str, build, timeout: float | None):
        """Send one message (built from a request id) to a node and wait for its reply."""
        deadline_ms, _ = self._deadline(timeout)
        future: Future = Future()
        self._io.submit(("request", address, build, 0, deadline_ms, future), 0)
        return self._wait(future, timeout)

    # -- reading everything ---------------------------------------------------------------------------------

    def dump(self, *, r: int | None = None, timeout: float | None = None):
        """Every live key and value of the cluster, partition by partition (key order within one).

        Each partition is read in full from R of its replicas and merged by version, so the
        export holds every write acknowledged before it started; writes racing with it may or
        may not appear. Keys come back as str when they are UTF-8, else as bytes.
        """
        config = self.config
        for partition in range(config.partitions):
            yield from self.dump_partition(partition, r=r, timeout=timeout)

    def dump_partition(self, partition: int, *, r: int | None = None, timeout: float | None = None):
        for _ in range(5):  # a map that keeps changing under us is retried a few times
            config = self.config
            plan = config.plans[partition]
            replicas = list(plan.read_set)
            need = self._quorum(r, "r") or needed(self._io.coordinator.read_quorum, len(replicas))
            merged: dict[bytes, bytes] = {}
            answered, stale = 0, False
            for node_id in replicas:
                address = self._io.node_address.get(node_id)
                outcome = self._scan_replica(address, config.epoch, partition, merged, timeout) if address else "down"
                if outcome == "ok":
                    answered += 1
                    if answered >= need:
                        break
                stale = stale or outcome == "stale"
            if answered >= need:
                for key in sorted(merged):
                    record = merged[key]
                    if not is_tombstone(record):
                        yield _key_out(key), decode_value(record)
                return
            if stale:
                self._io.submit(("refresh", None, None, 0, _now_ms() + 1000, None), 0)
                self._io.config_changed.wait(1.0)
                continue
            raise QuorumError(f"partition {partition}: {answered} of {need} replicas could be read", answered, need)
        raise QuorumError(f"partition {partition}: the partition map kept changing during the dump", 0, 0)

    def _scan_replica(self, address: str, epoch: int, partition: int, merged: dict, timeout) -> str:
        cursor = None
        while True:
            try:
                reply = self._request(address, lambda request_id: messages.Scan(
                    request_id, epoch, partition, cursor, 2000), timeout)
            except ZkvError:
                return "down"
            if reply.status == messages.STATUS_STALE:
                return "stale"
            if reply.status != messages.STATUS_OK:
                return "down"
            for key, record in zip(reply.keys, reply.records):
                current = merged.get(key)
                if current is None or record[:16] > current[:16]:
                    merged[key] = record
            if reply.cursor is None:
                return "ok"
            cursor = reply.cursor

    # -- helpers ---------------------------------------------------------------------------------------------

    @staticmethod
    def _check_key(key) -> bytes:
        try:
            raw = key_bytes(key)
            check_key(raw)
        except (TypeError, InvalidInput) as error:
            raise InvalidRequest(str(error)) from None
        return raw

    def _wait(self, future: Future, timeout: float | None):
        seconds = (self.timeout if timeout is None else timeout) + 2.0
        try:
            return future.result(seconds)
        except TimeoutError:
            raise Timeout(f"no answer within {seconds:g}s") from None


class _IoThread(threading.Thread):
    """Owns the sockets and the Coordinator; everything else talks to it through ``submit``."""

    def __init__(self, seeds: list[str], coordinator: Coordinator, context: zmq.Context) -> None:
        super().__init__(name="zkv-client-io", daemon=True)
        self.seeds = seeds
        self.coordinator = coordinator
        self.context = context
        self.commands: collections.deque = collections.deque()
        self.config_ready = threading.Event()
        self.running = True
        self.sleeping = False  # the driver is (about to be) blocked in poll
        self.state = threading.Condition()
        self.driver: int | None = None  # ident of the thread that drives the sockets now
        self.outstanding = 0  # data operations submitted and not completed
        self.blocked = 0  # callers waiting in submit() for room
        self.sockets: dict[str, zmq.Socket] = {}
        self.socket_address: dict[zmq.Socket, str] = {}
        self.node_address: dict[str, str] = {}
        self.poller = zmq.Poller()
        self.requests: dict[int, tuple[Future, int]] = {}  # request id -> (future, deadline_ms)
        self.config_changed = threading.Event()
        self.request_ids = itertools.count(1)
        self.seed_turn = itertools.count()
        self.next_config_ms = 0
        self.wake_reader, self.wake_writer = socket.socketpair()
        self.wake_reader.setblocking(False)
        self.wake_writer.setblocking(False)
        self.poller.register(self.wake_reader.fileno(), zmq.POLLIN)
        self.stopped = threading.Event()

    # -- called from other threads ----------------------------------------------------------------------

    def has_work(self) -> bool:
        """Something needs the sockets driven. Late replies to finished ops do not count: they
        wait in the sockets until the next request (they only feed read repair)."""
        coordinator = self.coordinator
        return bool(self.commands or coordinator.pending_ops or self.requests or coordinator.has_outbox
                    or coordinator.config is None)

    def submit(self, command: tuple, ops: int = 1) -> None:
        """Queue a command for whichever thread drives the sockets, and make sure one does.

        Backpressure: while INFLIGHT_OPS_MAX operations are outstanding, a caller waits here
        for room (up to its request's timeout) instead of growing the queues without bound.
        """
        if not self.running:
            raise ClientClosed("the client is closed")
        with self.state:
            if self.outstanding and self.outstanding + ops > INFLIGHT_OPS_MAX \
                    and self.driver != threading.get_ident():
                self._wait_for_room(ops, command[4])
            self.outstanding += ops
            self.commands.append(command)
            if self.driver is None:
                self.state.notify()  # the IO thread is parked: wake it
                return
        if self.sleeping:
            try:
                self.wake_writer.send(b"x")  # the driver is blocked in poll: interrupt it
            except OSError:
                pass  # the wake-up pipe is full: the driver is already due to wake

    def _wait_for_room(self, ops: int, deadline_ms: int) -> None:
        """Called with the state lock held."""
        self.blocked += 1
        try:
            while self.running and self.outstanding and self.outstanding + ops > INFLIGHT_OPS_MAX:
                remaining_s = (deadline_ms - _now_ms()) / 1000
                if remaining_s <= 0:
                    raise Unavailable(f"the client already has {self.outstanding} operations in flight")
                self.state.wait(min(remaining_s, 0.1))
        finally:
            self.blocked -= 1

    def _done(self, ops: int) -> None:
        """Operations finished: make room for callers waiting in submit()."""
        with self.state:
            self.outstanding -= ops
            if self.blocked:
                self.state.notify_all()

    def call(self, command: tuple, timeout_s: float):
        """Run one command to completion. When no other thread is driving the sockets the caller
        drives them itself, so a lone synchronous request pays no thread hand-off."""
        future = command[-1]
        me = threading.get_ident()
        with self.state:
            direct = self.driver is None and not self.commands and self.running
            if direct:
                self.driver = me
        if not direct:
            if self.driver == me:
                raise ZkvError("a blocking call cannot be made from inside a future's callback")
            self.submit(command)
            return future.result(timeout_s)
        with self.state:
            self.outstanding += 1
        try:
            self._take(command, _now_ms())
            deadline = time.monotonic() + timeout_s
            while not future.done() and self.running and time.monotonic() < deadline:
                self._turn()
        finally:
            with self.state:
                self.driver = None
                if self.has_work():
                    self.state.notify()
        return future.result(0)

    def stop(self) -> None:
        if self.running:
            self.running = False
            with self.state:
                self.state.notify_all()
            try:
                self.wake_writer.send(b"x")
            except OSError:
                pass  # full pipe: the IO thread wakes anyway
            if self.is_alive() and threading.current_thread() is not self:
                self.join(5.0)

    # -- the IO thread ----------------------------------------------------------------------------------

    def _socket(self, address: str) -> zmq.Socket:
        sock = self.sockets.get(address)
        if sock is None:
            sock = connect_dealer(self.context, address, DEALER_SNDHWM, DEALER_RCVHWM)
            self.sockets[address] = sock
            self.socket_address[sock] = address
            self.poller.register(sock, zmq.POLLIN)
        return sock

    def _send(self, address: str, frame: bytes) -> bool:
        try:
            self._socket(address).send(frame, zmq.NOBLOCK)
            return True
        except zmq.Again:
            return False

    def run(self) -> None:
        me = threading.get_ident()
        try:
            with self.state:
                for seed in self.seeds:
                    self._socket(seed)
            while self.running:
                with self.state:
                    while self.running and (self.driver is not None or not self.has_work()):
                        self.state.wait(IDLE_WAIT_S)
                    if not self.running:
                        break
                    self.driver = me
                try:
                    self._turn()
                finally:
                    with self.state:
                        self.driver = None
                        self.state.notify_all()
        finally:
            self._shutdown()

    def _turn(self) -> None:
        """One round of IO by whichever thread holds the driver role."""
        coordinator = self.coordinator
        now = _now_ms()
        self._take_commands(now)
        self._flush(now)
        deadline = coordinator.next_deadline_ms()
        wait_ms = POLL_MS_MAX if deadline is None else max(0, min(deadline - now, POLL_MS_MAX))
        if coordinator.config is None:
            wait_ms = min(wait_ms, CONFIG_RETRY_MS)
        self.sleeping = True
        if self.commands:
            wait_ms = 0  # checked after raising the flag: a submitter either sees it or we see its command
        ready = dict(self.poller.poll(wait_ms))
        self.sleeping = False
        if self.wake_reader.fileno() in ready:
            try:
                self.wake_reader.recv(65536)
            except BlockingIOError:
                pass  # drained by an earlier turn
        now = _now_ms()
        self._take_commands(now)
        for sock, address in list(self.socket_address.items()):
            if sock in ready:
                self._receive(sock, address, now)
        coordinator.on_tick(now)
        self._want_config(now)
        self._flush(now)
        self._complete(now)

    def _flush(self, now: int) -> None:
        coordinator = self.coordinator
        frames = coordinator.flush(now)
        if not frames:
            return
        encoded = [(self.node_address.get(node_id), batch.request_id, wire.encode(batch)) for node_id, batch in frames]
        for address, request_id, frame in encoded:  # encode first, then send back to back
            if address is None or not self._send(address, frame):
                coordinator.on_send_failed(request_id, now)

    def _take_commands(self, now: int) -> None:
        commands = self.commands
        for _ in range(COMMANDS_PER_TURN_MAX):
            try:
                command = commands.popleft()
            except IndexError:
                return
            self._take(command, now)

    def _take(self, command: tuple, now: int) -> None:
        coordinator = self.coordinator
        kind, key, value, quorum, deadline_ms, waiter = command
        try:
            # keys and values were validated by the calling thread: checked=True
            if kind == "write":
                coordinator.submit_write(key, value, quorum, now, deadline_ms, waiter, -1, True)
            elif kind == "read":
                coordinator.submit_read(key, quorum, deadline_ms, waiter, -1, True)
            elif kind == "mwrite":
                submit = coordinator.submit_write
                for index, (one_key, one_value) in enumerate(zip(key, value)):
                    submit(one_key, one_value, quorum, now, deadline_ms, waiter, index, True)
            elif kind == "mread":
                submit = coordinator.submit_read
                for index, one_key in enumerate(key):
                    submit(one_key, quorum, deadline_ms, waiter, index, True)
            elif kind == "request":
                self._send_request(key, value, deadline_ms, waiter)
            elif kind == "refresh":
                coordinator.config_wanted = True
                self.next_config_ms = 0
        except InvalidInput as error:
            _fail(waiter, InvalidRequest(str(error)))
            if kind in ("write", "read"):
                self._done(1)
            elif kind in ("mwrite", "mread"):
                self._done(len(key))

    def _send_request(self, address: str, build, deadline_ms: int, future: Future) -> None:
        request_id = next(self.request_ids)
        if not self._send(address, wire.encode(build(request_id))):
            future.set_exception(Timeout(f"node {address} is not reachable"))
            return
        self.requests[request_id] = (future, deadline_ms)

    def _receive(self, sock: zmq.Socket, address: str, now: int) -> None:
        coordinator = self.coordinator
        for count in range(FRAMES_PER_TURN_MAX):
            # the poller said readable: the first recv succeeds; after that ask before reading, since
            # ending the drain on a zmq.Again exception costs more than the check
            if count and not sock.get(zmq.EVENTS) & zmq.POLLIN:
                return
            try:
                frame = sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                message = wire.decode(frame)
            except wire.WireError:
                continue  # a frame we cannot read: dropped (the op it answered retries or times out)
            kind = type(message)
            if kind is messages.BatchReply:
                coordinator.on_reply(message, now)
            elif kind is messages.ConfigReply:
                self._on_config(message)
            elif kind in (messages.InspectReply, messages.ScanReply, messages.Error):
                entry = self.requests.pop(message.request_id, None)
                if entry is not None:
                    if kind is messages.Error:
                        entry[0].set_exception(InvalidRequest(f"{address}: {message.message}"))
                    else:
                        entry[0].set_result(message)

    def _on_config(self, message: messages.ConfigReply) -> None:
        if message.config is None:
            return
        try:
            config = Config.from_wire(message.config)
        except ValueError:
            return
        current = self.coordinator.config
        if current is not None and config.epoch <= current.epoch:
            return
        self.node_address = {node.node_id: node.address for node in config.nodes}
        for address in self.node_address.values():
            self._socket(address)
        self.coordinator.set_config(config)
        self.config_ready.set()
        self.config_changed.set()
        self.config_changed.clear()

    def _want_config(self, now: int) -> None:
        coordinator = self.coordinator
        periodic = coordinator.config is None or now >= self.next_config_ms + CONFIG_REFRESH_MS
        if not (coordinator.config_wanted or periodic) or now < self.next_config_ms:
            return
        self.next_config_ms = now + CONFIG_RETRY_MS
        hint = coordinator.take_config_hint()
        if hint is not None and hint in self.node_address:
            address = self.node_address[hint]
        else:
            candidates = list(self.node_address.values()) or self.seeds
            address = candidates[next(self.seed_turn) % len(candidates)]
        epoch = coordinator.config.epoch if coordinator.config is not None else 0
        self._send(address, wire.encode(messages.ConfigRequest(next(self.request_ids), epoch)))
        if coordinator.config is None:
            for seed in self.seeds:  # until we have a map, ask every seed
                if seed != address:
                    self._send(seed, wire.encode(messages.ConfigRequest(next(self.request_ids), 0)))

    def _complete(self, now: int) -> None:
        completed = self.coordinator.take_completed()
        if completed:
            self._done(sum(1 for op in completed if op.token is not None))
        for op in completed:
            waiter = op.token
            if waiter is None:
                continue
            if op.index >= 0:
                waiter.done(op.index, op)
            elif op.ok:
                waiter.set_result(decode_value(op.newest) if op.newest is not None else None)
            else:
                waiter.set_exception(_error_for(op))
        if self.requests:
            for request_id, (future, deadline_ms) in list(self.requests.items()):
                if now >= deadline_ms:
                    del self.requests[request_id]
                    future.set_exception(Timeout("the node did not answer in time"))

    def _shutdown(self) -> None:
        closed = ClientClosed("the client was closed")
        while self.commands:
            _fail(self.commands.popleft()[-1], closed)
        for future, _ in self.requests.values():
            future.set_exception(closed)
        for sock in self.sockets.values():
            sock.close(0)
        self.wake_reader.close()
        self.wake_writer.close()
        self.stopped.set()


def _fail(waiter, error: Exception) -> None:
    if isinstance(waiter, Future):
        if not waiter.done():
            waiter.set_exception(error)
    elif isinstance(waiter, _Aggregate):
        if not waiter.future.done():
            waiter.future.set_exception(error)
