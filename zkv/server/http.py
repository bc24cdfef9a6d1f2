"""The HTTP API: JSON over aiohttp, in a thread beside the node's ZeroMQ loop.

This module owns the HTTP surface of a node and nothing else: it validates
requests, turns them into ``Coordinate`` / ``Inspect`` messages for the node
loop and turns the replies into JSON. It never touches storage or the core.

Routes (JSON in and out; every error is ``{"error": "<what is wrong>"}``):

    POST /kv/set      {"key": "user:123", "value": "John"}, optional "w"
                      -> 200 {"ok": true, "key": ..., "replicas": <acks>}
    GET  /kv/get?key=user:123, optional r=N
                      -> 200 {"key": ..., "value": ...}
                      -> 404 {"error": "key not found", "key": ...}
    POST /kv/delete?key=user:123 (or {"key": ...} in the body), optional w
                      -> 200 {"ok": true, "key": ..., "replicas": <acks>}
    GET  /kv/stats, /cluster, /partitions   the node's views, as JSON
    GET  /health      200 {"status": "healthy", "node_id", "epoch"} or 503
    GET  /metrics     Prometheus text exposition format 0.0.4

Keys and values are JSON strings (stored UTF-8 encoded; keys are limited to
1 KiB of UTF-8, values to 4 MiB). JSON has no bytes: a value that another
client wrote as bytes is returned as ``{"key": ..., "value_base64": "..."}``,
and a binary value can be written with ``"value_base64"`` instead of
``"value"``, so the two round-trip.

Status codes: 400 bad input (bad JSON, missing or non-string key/value,
w/r not a positive integer, key too long, or the node refusing the request
as invalid); 404 missing key or unknown route; 405 wrong method; 413 body or
value over the limit; 503 quorum not reached / node timed out / unavailable
(with ``"answered"``: how many replicas answered), or busy (``Retry-After``);
504 the node did not answer in time.

Theory of operation
-------------------
One thread runs one asyncio loop: the aiohttp server and one ``_NodeLink``.
The link is a zmq.asyncio DEALER connected to the node ROUTER's inproc
endpoint on the node's own context (shadowed for asyncio). The socket is
created, used and closed on that loop only, so no other thread ever touches
it (ZeroMQ sockets are not thread-safe); ``stop()`` talks to the loop through
``call_soon_threadsafe`` only.

    handler --request(id)--> pending[id] = future --send--> node ROUTER
    reader task <--reply(id)-- node ROUTER: pending.pop(id).set_result(reply)

Replies whose id is not pending (a request that timed out, or garbage) are
dropped and counted. Every request has a deadline: the node is given a bit
less than the HTTP timeout, so it normally answers with its own timeout
(503 with the replica count) before the HTTP side gives up with 504.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import itertools
import json
import logging
import math
import re
import threading
from collections import Counter

import zmq
import zmq.asyncio
from aiohttp import web

from zkv import wire
from zkv.core import messages
from zkv.core.quorum import KEY_BYTES_MAX, VALUE_BYTES_MAX

log = logging.getLogger(__name__)

BODY_SLACK_BYTES = 64 << 10  # room for the key, the field names and JSON escapes around the value
HEALTH_TIMEOUT_S = 2.0
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0
SHUTDOWN_GRACE_S = 1.0  # in-flight handlers get this long once the listener is closed
PENDING_REQUESTS_MAX = 1024  # requests waiting on the node; more is answered 503 busy
QUORUM_MAX = 4096  # a w/r above the member limit can never be met; refuse it as bad input
QUORUM_DIGITS_MAX = 6
NODE_DEADLINE_FRACTION = 0.8  # the node's share of the HTTP timeout, so its own verdict comes first
COORDINATE_TIMEOUT_MS_MAX = 120_000  # the node ignores longer timeouts
RETRY_AFTER_S = 1
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_SET_FIELDS = ("key", "value", "value_base64", "w")
_DELETE_FIELDS = ("key", "w")
_METRIC_NAME_INVALID = re.compile(r"[^a-zA-Z0-9_:]")
_FAILURE_MESSAGES = {
    messages.RESULT_QUORUM: "quorum not reached",
    messages.RESULT_TIMEOUT: "the node timed out waiting for replicas",
    messages.RESULT_UNAVAILABLE: "not enough replicas are available",
    messages.RESULT_BUSY: "the node is busy; retry later",
}


class HttpError(Exception):
    """A request we refuse: becomes ``{"error": message, **extra}`` with ``status``."""

    def __init__(self, status: int, message: str, extra: dict | None = None,
                 headers: dict | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra or {}
        self.headers = headers or {}


class HttpApi:
    """The node's HTTP API, served from its own thread.

    ``context`` is the node's zmq.Context and ``node_endpoint`` the inproc
    endpoint its ROUTER is bound to. ``start()`` returns the bound port (pass
    port 0 for an OS-assigned one; pass an IP address as ``host``, since a
    name may resolve to several sockets). ``stop()`` is bounded and idempotent.
    """

    def __init__(self, context: zmq.Context, node_endpoint: str, host: str, port: int,
                 request_timeout_s: float = 10.0, *, health_timeout_s: float = HEALTH_TIMEOUT_S,
                 key_bytes_max: int = KEY_BYTES_MAX, value_bytes_max: int = VALUE_BYTES_MAX) -> None:
        if not request_timeout_s > 0 or not health_timeout_s > 0:
            raise ValueError("timeouts must be positive")
        self.context = context
        self.node_endpoint = node_endpoint
        self.host = host
        self.port = port
        self.request_timeout_s = request_timeout_s
        self.health_timeout_s = health_timeout_s
        self.key_bytes_max = key_bytes_max
        self.value_bytes_max = value_bytes_max
        self.body_bytes_max = value_bytes_max + BODY_SLACK_BYTES
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._start_error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_requested: asyncio.Event | None = None
        self._link: _NodeLink | None = None

    # -- lifecycle (any thread) -------------------------------------------------------------------

    def start(self) -> int:
        """Start serving; returns once the server listens, with the bound port."""
        if self._thread is not None:
            raise RuntimeError("HttpApi already started")
        self._thread = threading.Thread(target=self._run, name=f"zkv-http-{self.node_endpoint}", daemon=True)
        self._thread.start()
        if not self._started.wait(START_TIMEOUT_S):
            self.stop()
            raise RuntimeError(f"HTTP API did not start within {START_TIMEOUT_S} s")
        if self._start_error is not None:
            self._thread.join(STOP_TIMEOUT_S)
            raise self._start_error
        return self.port

    def stop(self) -> None:
        """Close the listener, fail waiting requests, close the socket and join the thread."""
        thread = self._thread
        if thread is None or not thread.is_alive():
            return
        if thread is threading.current_thread():
            raise RuntimeError("stop() called from the HTTP thread itself")
        self._started.wait(START_TIMEOUT_S)
        loop, stop_requested = self._loop, self._stop_requested
        if loop is not None and stop_requested is not None:
            try:
                loop.call_soon_threadsafe(stop_requested.set)
            except RuntimeError:
                pass  # the loop already closed: the thread is on its way out
        thread.join(STOP_TIMEOUT_S)
        if thread.is_alive():
            log.error("HTTP API thread did not stop within %s s", STOP_TIMEOUT_S)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- the HTTP thread --------------------------------------------------------------------------

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._serve())
        except Exception as error:  # a bug in setup or teardown: report it to start() rather than vanish
            log.exception("HTTP API thread failed")
            if not self._started.is_set():
                self._start_error = error
        finally:
            self._started.set()
            loop.close()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop_requested = asyncio.Event()
        link = self._link = _NodeLink(self.context, self.node_endpoint)
        runner = web.AppRunner(self._build_app(), access_log=None, shutdown_timeout=SHUTDOWN_GRACE_S)
        try:
            link.open()
            await runner.setup()
            site = web.TCPSite(runner, self.host, self.port)
            await site.start()
            self.port = runner.addresses[0][1]
        except Exception as error:
            self._start_error = error
            await runner.cleanup()
            await link.close()
            self._started.set()
            return
        log.info("HTTP API listening on %s:%s", self.host, self.port)
        self._started.set()
        try:
            await self._stop_requested.wait()
        finally:
            link.fail_pending()  # waiting handlers answer 503 at once instead of holding up cleanup
            await runner.cleanup()
            await link.close()

    def _build_app(self) -> web.Application:
        app = web.Application(client_max_size=self.body_bytes_max, middlewares=[self._errors_as_json])
        app.router.add_post("/kv/set", self._on_set)
        app.router.add_get("/kv/get", self._on_get)
        app.router.add_post("/kv/delete", self._on_delete)
        app.router.add_get("/kv/stats", self._inspect_route("stats"))
        app.router.add_get("/cluster", self._inspect_route("cluster"))
        app.router.add_get("/partitions", self._inspect_route("partitions"))
        app.router.add_get("/health", self._on_health)
        app.router.add_get("/metrics", self._on_metrics)
        return app

    @web.middleware
    async def _errors_as_json(self, request: web.Request, handler) -> web.StreamResponse:
        self._link.counters["requests"] += 1
        try:
            return await handler(request)
        except HttpError as error:
            return _json_response({"error": error.message, **error.extra}, error.status, error.headers)
        except web.HTTPException as error:
            if error.status < 400:
                raise  # redirects and the like are aiohttp's business
            headers = {name: value for name, value in error.headers.items()
                       if name.lower() not in ("content-type", "content-length")}
            return _json_response({"error": self._describe_http_error(request, error)}, error.status, headers)
        except Exception:  # a bug: answer 500 and keep serving
            self._link.counters["handler_errors"] += 1
            log.exception("HTTP handler for %s %s failed", request.method, request.path)
            return _json_response({"error": "internal error"}, 500)

    def _describe_http_error(self, request: web.Request, error: web.HTTPException) -> str:
        if error.status == 404:
            return f"no such route: {request.method} {request.path}"
        if error.status == 405:
            return f"method {request.method} not allowed for {request.path} (allowed: {error.headers.get('Allow', '')})"
        if error.status == 413:
            return (f"request body larger than {self.body_bytes_max} bytes "
                    f"(values are limited to {self.value_bytes_max} bytes)")
        return error.reason

    # -- key-value routes -------------------------------------------------------------------------

    async def _on_set(self, request: web.Request) -> web.Response:
        body = await _read_json_object(request, required=True)
        _reject_unknown_fields(body, _SET_FIELDS)
        key = self._key_param(request, body)
        value = self._value_param(body)
        w = _quorum_param(request, body, "w")
        reply = await self._coordinate(messages.COORD_SET, key, value, w)
        return _json_response({"ok": True, "key": key, "replicas": reply.answered})

    async def _on_get(self, request: web.Request) -> web.Response:
        key = self._key_param(request, {})
        r = _quorum_param(request, {}, "r")
        reply = await self._coordinate(messages.COORD_GET, key, None, r)
        if isinstance(reply.value, bytes):
            return _json_response({"key": key, "value_base64": base64.b64encode(reply.value).decode("ascii")})
        if reply.value is None:  # OK without a value: the node's way of saying missing
            raise HttpError(404, "key not found", {"key": key})
        return _json_response({"key": key, "value": reply.value})

    async def _on_delete(self, request: web.Request) -> web.Response:
        body = await _read_json_object(request, required=False)
        _reject_unknown_fields(body, _DELETE_FIELDS)
        key = self._key_param(request, body)
        w = _quorum_param(request, body, "w")
        reply = await self._coordinate(messages.COORD_DELETE, key, None, w)
        return _json_response({"ok": True, "key": key, "replicas": reply.answered})

    def _key_param(self, request: web.Request, body: dict) -> str:
        key = _single_param(request, body, "key")
        if key is None:
            raise HttpError(400, "missing key: pass ?key=... or a JSON body with \"key\"")
        if not isinstance(key, str):
            raise HttpError(400, f"key must be a JSON string, not {_json_type(key)} (JSON has no bytes)")
        size = len(_utf8(key, "key"))
        if size == 0:
            raise HttpError(400, "key must not be empty")
        if size > self.key_bytes_max:
            raise HttpError(400, f"key is {size} bytes of UTF-8; the limit is {self.key_bytes_max}")
        return key

    def _value_param(self, body: dict) -> str | bytes:
        if "value" in body and "value_base64" in body:
            raise HttpError(400, "give either \"value\" or \"value_base64\", not both")
        if "value_base64" in body:
            encoded = body["value_base64"]
            if not isinstance(encoded, str):
                raise HttpError(400, f"value_base64 must be a JSON string, not {_json_type(encoded)}")
            try:
                value = base64.b64decode(encoded, validate=True)
            except (binascii.Error, ValueError):
                raise HttpError(400, "value_base64 is not valid base64") from None
            size = len(value)
        elif "value" in body:
            value = body["value"]
            if not isinstance(value, str):
                raise HttpError(400, f"value must be a JSON string, not {_json_type(value)} "
                                     "(JSON has no bytes: send binary values base64-encoded as \"value_base64\")")
            size = len(_utf8(value, "value"))
        else:
            raise HttpError(400, "missing value: the JSON body needs \"value\" (a string)")
        if size > self.value_bytes_max:
            raise HttpError(413, f"value is {size} bytes; the limit is {self.value_bytes_max}")
        return value

    async def _coordinate(self, op: str, key: str, value: str | bytes | None, quorum: int) -> messages.CoordinateReply:
        """Ask the node to coordinate ``op``; returns an OK reply or raises the matching HttpError."""
        node_timeout_ms = min(COORDINATE_TIMEOUT_MS_MAX,
                              max(1, int(self.request_timeout_s * 1000 * NODE_DEADLINE_FRACTION)))
        key_bytes = key.encode("utf-8")
        reply = await self._link.request(
            lambda request_id: messages.Coordinate(request_id, op, key_bytes, value, quorum, node_timeout_ms),
            self.request_timeout_s)
        if not isinstance(reply, messages.CoordinateReply):
            raise _unexpected_reply(reply)
        status = reply.status
        if status == messages.RESULT_OK:
            return reply
        if status == messages.RESULT_NOT_FOUND:
            raise HttpError(404, "key not found", {"key": key})
        if status == messages.RESULT_INVALID:
            raise HttpError(400, reply.detail or "the node refused the request as invalid")
        if status == messages.RESULT_BUSY:
            raise HttpError(503, reply.detail or _FAILURE_MESSAGES[status],
                            {"status": status, "answered": reply.answered},
                            {"Retry-After": str(RETRY_AFTER_S)})
        if status in _FAILURE_MESSAGES:
            message = reply.detail or f"{_FAILURE_MESSAGES[status]}: {reply.answered} replicas answered"
            raise HttpError(503, message, {"status": status, "answered": reply.answered})
        raise HttpError(502, f"the node answered with unknown status {status!r}")

    # -- inspection routes ------------------------------------------------------------------------

    def _inspect_route(self, what: str):
        async def handler(request: web.Request) -> web.Response:
            return _json_response(await self._inspect(what, self.request_timeout_s))
        return handler

    async def _inspect(self, what: str, timeout_s: float) -> dict:
        reply = await self._link.request(lambda request_id: messages.Inspect(request_id, what), timeout_s)
        if not isinstance(reply, messages.InspectReply):
            raise _unexpected_reply(reply)
        return reply.data

    async def _on_health(self, request: web.Request) -> web.Response:
        try:
            stats = await self._inspect("stats", self.health_timeout_s)
        except HttpError as error:
            return _json_response({"status": "unhealthy", "reason": error.message}, 503)
        epoch = stats.get("epoch")
        if type(epoch) is not int or epoch <= 0:
            reason = f"the node has no partition map yet (epoch {epoch!r})"
        elif stats.get("state") in ("left", "dead"):
            reason = f"the node is {stats['state']}"
        else:
            return _json_response({"status": "healthy", "node_id": stats.get("node_id"), "epoch": epoch})
        return _json_response({"status": "unhealthy", "reason": reason, "node_id": stats.get("node_id")}, 503)

    async def _on_metrics(self, request: web.Request) -> web.Response:
        values = dict(await self._inspect("metrics", self.request_timeout_s))
        values.update({f"zkv_http_{name}_total": count for name, count in self._link.counters.items()})
        values["zkv_http_pending_requests"] = len(self._link.pending)
        return web.Response(body=render_metrics(values).encode("utf-8"),
                            headers={"Content-Type": METRICS_CONTENT_TYPE})


class _NodeLink:
    """One DEALER to the node loop; requests matched to replies by request id.

    Lives on the HTTP thread's event loop: every method is called from it.
    """

    def __init__(self, context: zmq.Context, endpoint: str) -> None:
        self.context = context
        self.endpoint = endpoint
        self.pending: dict[int, asyncio.Future] = {}
        self.counters: Counter[str] = Counter()
        self._request_ids = itertools.count(1)
        self._socket: zmq.asyncio.Socket | None = None
        self._reader: asyncio.Task | None = None
        self._closing = False

    def open(self) -> None:
        socket = zmq.asyncio.Context.shadow(self.context).socket(zmq.DEALER)
        socket.setsockopt(zmq.LINGER, 0)
        socket.connect(self.endpoint)
        self._socket = socket
        self._reader = asyncio.get_running_loop().create_task(self._read_replies())

    async def request(self, build, timeout_s: float) -> object:
        """Send ``build(request_id)`` and wait for its reply; HttpError on timeout, overload or shutdown."""
        if self._closing:
            raise HttpError(503, "the node is shutting down")
        if len(self.pending) >= PENDING_REQUESTS_MAX:
            self.counters["overloaded"] += 1
            raise HttpError(503, f"{PENDING_REQUESTS_MAX} requests already wait on the node; retry later",
                            headers={"Retry-After": str(RETRY_AFTER_S)})
        request_id = next(self._request_ids)
        future = asyncio.get_running_loop().create_future()
        self.pending[request_id] = future
        try:
            async with asyncio.timeout(timeout_s):
                await self._socket.send(wire.encode(build(request_id)))
                return await future
        except TimeoutError:
            self.counters["node_timeouts"] += 1
            raise HttpError(504, f"the node did not answer within {timeout_s:g} s") from None
        finally:
            self.pending.pop(request_id, None)

    async def _read_replies(self) -> None:
        while True:
            try:
                frames = await self._socket.recv_multipart()
            except zmq.ZMQError:
                return  # the socket was closed: shutting down
            try:
                reply = wire.decode(frames[-1])
            except wire.WireError as error:
                self.counters["bad_replies"] += 1
                log.warning("dropped a malformed reply from the node: %s", error.reason)
                continue
            future = self.pending.pop(getattr(reply, "request_id", None), None)
            if future is None or future.done():
                self.counters["replies_dropped"] += 1  # its request timed out, or it never was ours
                continue
            future.set_result(reply)

    def fail_pending(self) -> None:
        self._closing = True
        for future in self.pending.values():
            if not future.done():
                future.set_exception(HttpError(503, "the node is shutting down"))
        self.pending.clear()

    async def close(self) -> None:
        self.fail_pending()
        if self._reader is not None:
            self._reader.cancel()
            try:
                await self._reader
            except asyncio.CancelledError:
                pass  # we cancelled it
        if self._socket is not None:
            self._socket.close(linger=0)


# -- helpers ----------------------------------------------------------------------------------------


def render_metrics(values: dict) -> str:
    """Prometheus text format 0.0.4 for a flat name -> number dict.

    Names ending in ``_total`` are counters, the rest gauges; characters a
    metric name cannot hold become ``_``; values that are not numbers are skipped.
    """
    lines = []
    for raw_name in sorted(values, key=str):
        value = values[raw_name]
        if not isinstance(value, (int, float)):
            continue
        name = _METRIC_NAME_INVALID.sub("_", str(raw_name))
        if not name or name[0].isdigit():
            name = f"_{name}"
        kind = "counter" if name.endswith("_total") else "gauge"
        lines.append(f"# HELP {name} zkv {kind} {name}")
        lines.append(f"# TYPE {name} {kind}")
        lines.append(f"{name} {_metric_value(value)}")
    return "\n".join(lines) + "\n"


def _metric_value(value: int | float) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "+Inf" if value > 0 else "-Inf"
        return repr(value)
    return str(int(value))


async def _read_json_object(request: web.Request, *, required: bool) -> dict:
    raw = await request.read()  # raises 413 past client_max_size
    if not raw.strip():
        if required:
            raise HttpError(400, "missing body: expected a JSON object")
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as error:  # UnicodeDecodeError is a ValueError too
        raise HttpError(400, f"body is not valid JSON: {_short(error)}") from None
    if not isinstance(body, dict):
        raise HttpError(400, f"body must be a JSON object, not {_json_type(body)}")
    return body


def _reject_unknown_fields(body: dict, allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise HttpError(400, f"unknown field {unknown[0]!r} (expected {', '.join(allowed)})")


def _single_param(request: web.Request, body: dict, name: str) -> object | None:
    """``name`` from the query string or the body; given in both (or twice) is an error."""
    return _sourced_param(request, body, name)[0]


def _sourced_param(request: web.Request, body: dict, name: str) -> tuple[object | None, bool]:
    """(value, whether it came from the query string)."""
    in_query = request.query.getall(name, [])
    if len(in_query) > 1:
        raise HttpError(400, f"{name} given more than once in the query string")
    if in_query and name in body:
        raise HttpError(400, f"{name} given both in the query string and in the body")
    if in_query:
        return in_query[0], True
    return body.get(name), False


def _quorum_param(request: web.Request, body: dict, name: str) -> int:
    """w or r: a positive integer (a JSON number in a body, digits in the query), 0 (the default) when absent."""
    value, from_query = _sourced_param(request, body, name)
    if value is None:
        return 0
    if from_query and value.isascii() and value.isdigit() and len(value) <= QUORUM_DIGITS_MAX:
        value = int(value)
    if type(value) is not int or not 1 <= value <= QUORUM_MAX:
        raise HttpError(400, f"{name} must be an integer from 1 to {QUORUM_MAX}, not {_short(value)}")
    return value


def _utf8(text: str, what: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise HttpError(400, f"{what} is not valid Unicode (it contains a lone surrogate)") from None


def _unexpected_reply(reply: object) -> HttpError:
    if isinstance(reply, messages.Error):
        return HttpError(502, f"the node refused the request ({reply.code}): {reply.message}")
    return HttpError(502, f"the node answered with an unexpected {type(reply).__name__}")


def _json_type(value: object) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
             int: "a number", float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _short(value: object, limit: int = 80) -> str:
    """A bounded description of something the client sent, for an error message."""
    text = str(value) if isinstance(value, Exception) else repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _json_default(value: object) -> object:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", errors="backslashreplace")
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return repr(value)


def _json_response(data: object, status: int = 200, headers: dict | None = None) -> web.Response:
    body = json.dumps(data, default=_json_default).encode("utf-8")
    return web.Response(body=body, status=status, headers=headers, content_type="application/json")
