"""The HTTP API against a fake node: a ROUTER thread on an inproc endpoint.

The fake node answers ``Coordinate`` from a dict and ``Inspect`` with canned
views. Some keys behave specially: "slow" is never answered (until a request
for "release" arrives, which answers it late), "quorum", "timeout",
"unavailable", "busy" and "invalid" answer with those statuses, and "noisy"
is answered after a garbage frame and a reply with an unknown request id.
Each drain of the ROUTER is answered in reverse order, so replies come back
out of request order.
"""

from __future__ import annotations

import base64
import concurrent.futures
import json
import socket
import threading
import time
import urllib.error
import urllib.request

import pytest
import zmq

from zkv import wire
from zkv.core import messages
from zkv.server.http import BODY_SLACK_BYTES, HttpApi, render_metrics

POLL_MS = 20
DEADLINE_S = 10.0
REQUEST_TIMEOUT_S = 0.5
HEALTH_TIMEOUT_S = 0.3
SPECIAL_STATUSES = {
    "quorum": (messages.RESULT_QUORUM, "quorum not reached: 1 of 2 acknowledgements", 1),
    "timeout": (messages.RESULT_TIMEOUT, "", 0),
    "unavailable": (messages.RESULT_UNAVAILABLE, "", 0),
    "busy": (messages.RESULT_BUSY, "", 0),
    "invalid": (messages.RESULT_INVALID, "the node says this key is invalid", 0),
    "weird": ("no-such-status", "", 0),
}
STATS = {"node_id": "node-1", "epoch": 3, "state": "alive", "local_keys": 2, "ops": {"coordinated_get": 1}}
CLUSTER = {"node_id": "node-1", "epoch": 3, "members": [{"node_id": "node-1", "state": "alive"}]}
PARTITIONS = {"epoch": 3, "replication": 3, "partitions": [{"partition": 0, "primary": "node-1",
                                                             "replicas": ["node-1"], "pending": []}]}
METRICS = {"zkv_coordinated_get_total": 7, "zkv_epoch": 3, "zkv_load": 0.5, "not a number": "x"}


class FakeNode:
    def __init__(self, context: zmq.Context, endpoint: str) -> None:
        self.store: dict[bytes, bytes | str] = {b"binary": b"\x00\xffraw"}
        self.stats = dict(STATS)
        self.inspect_silent = False
        self.endpoint = endpoint
        self.received: list[object] = []
        self.arrived = threading.Condition()
        self._held: list[tuple[bytes, messages.Coordinate]] = []
        self._router = context.socket(zmq.ROUTER)
        self._router.setsockopt(zmq.LINGER, 0)
        self._router.bind(endpoint)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fake-node", daemon=True)
        self._thread.start()

    def wait_received(self, predicate, what: str) -> None:
        with self.arrived:
            if not self.arrived.wait_for(lambda: any(predicate(m) for m in self.received), DEADLINE_S):
                raise AssertionError(f"the fake node never received {what}")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(DEADLINE_S)
        self._router.close(linger=0)

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self._router.poll(POLL_MS, zmq.POLLIN):
                continue
            drained = []
            while True:
                try:
                    drained.append(self._router.recv_multipart(zmq.NOBLOCK))
                except zmq.Again:
                    break
            for route, frame in reversed(drained):
                message = wire.decode(frame)
                with self.arrived:
                    self.received.append(message)
                    self.arrived.notify_all()
                for reply in self._answer(route, message):
                    self._router.send_multipart([route, reply])

    def _answer(self, route: bytes, message: object) -> list[bytes]:
        if isinstance(message, messages.Inspect):
            views = {"stats": self.stats, "cluster": CLUSTER, "partitions": PARTITIONS, "metrics": METRICS}
            if self.inspect_silent:
                return []
            if message.what not in views:
                return [wire.encode(messages.Error(message.request_id, "invalid", "cannot inspect"))]
            return [wire.encode(messages.InspectReply(message.request_id, views[message.what]))]
        return self._coordinate(route, message)

    def _coordinate(self, route: bytes, message: messages.Coordinate) -> list[bytes]:
        def reply(status, value=None, detail="", answered=2):
            return wire.encode(messages.CoordinateReply(message.request_id, status, value, detail, answered))

        key = message.key.decode("utf-8")
        if key == "slow":
            self._held.append((route, message))
            return []
        if key == "release":
            for held_route, held in self._held:
                late = messages.CoordinateReply(held.request_id, messages.RESULT_OK, None, "", 2)
                self._router.send_multipart([held_route, wire.encode(late)])
            self._held.clear()
        if key == "noisy":
            return [b"\xc1 not msgpack", wire.encode(messages.CoordinateReply(10**9, "ok", None, "", 2)),
                    reply(messages.RESULT_OK, "loud")]
        if key == "wrongtype":
            return [wire.encode(messages.InspectReply(message.request_id, {}))]
        if key in SPECIAL_STATUSES:
            status, detail, answered = SPECIAL_STATUSES[key]
            return [reply(status, None, detail, answered)]
        if message.op == messages.COORD_SET:
            self.store[message.key] = message.value
            return [reply(messages.RESULT_OK)]
        if message.op == messages.COORD_DELETE:
            self.store.pop(message.key, None)
            return [reply(messages.RESULT_OK)]
        if message.key not in self.store:
            return [reply(messages.RESULT_NOT_FOUND)]
        return [reply(messages.RESULT_OK, self.store[message.key])]


class Http:
    """A tiny urllib client that returns (status, headers, body) instead of raising."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"

    def call(self, method: str, path: str, body: object = None, raw: bytes | None = None):
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        request = urllib.request.Request(self.base + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=DEADLINE_S) as response:
                return response.status, response.headers, response.read()
        except urllib.error.HTTPError as error:
            with error:
                return error.code, error.headers, error.read()

    def json(self, method: str, path: str, body: object = None, raw: bytes | None = None):
        status, headers, payload = self.call(method, path, body, raw)
        assert headers["Content-Type"].startswith("application/json"), (status, headers, payload)
        return status, json.loads(payload)


@pytest.fixture
def context():
    context = zmq.Context()
    try:
        yield context
    finally:
        context.term()


_endpoints = iter(range(1, 1 << 30))


@pytest.fixture
def node(context):
    fake = FakeNode(context, f"inproc://zkv-test-http-{next(_endpoints)}")
    try:
        yield fake
    finally:
        fake.close()


@pytest.fixture
def api(context, node):
    endpoint = node.endpoint
    server = HttpApi(context, endpoint, "127.0.0.1", 0, request_timeout_s=REQUEST_TIMEOUT_S,
                     health_timeout_s=HEALTH_TIMEOUT_S)
    port = server.start()
    try:
        yield server, Http(port)
    finally:
        server.stop()


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return True
    except OSError:
        return False


# -- key-value routes -------------------------------------------------------------------------------


def test_set_get_delete_round_trip(api, node):
    _, http = api
    assert http.json("POST", "/kv/set", {"key": "user:123", "value": "John"}) == (
        200, {"ok": True, "key": "user:123", "replicas": 2})
    assert node.store[b"user:123"] == "John"
    assert http.json("GET", "/kv/get?key=user:123") == (200, {"key": "user:123", "value": "John"})
    assert http.json("POST", "/kv/delete?key=user:123") == (200, {"ok": True, "key": "user:123", "replicas": 2})
    assert http.json("GET", "/kv/get?key=user:123") == (404, {"error": "key not found", "key": "user:123"})


def test_unicode_keys_and_values_are_utf8(api, node):
    _, http = api
    assert http.json("POST", "/kv/set", {"key": "clé", "value": "välue ✓"})[0] == 200
    assert node.store["clé".encode()] == "välue ✓"
    assert http.json("GET", "/kv/get?key=cl%C3%A9") == (200, {"key": "clé", "value": "välue ✓"})


def test_quorum_is_passed_through(api, node):
    _, http = api
    assert http.json("POST", "/kv/set", {"key": "k", "value": "v", "w": 3})[0] == 200
    assert http.json("GET", "/kv/get?key=k&r=1")[0] == 200
    assert http.json("POST", "/kv/delete", {"key": "k", "w": 2})[0] == 200
    assert http.json("POST", "/kv/set?w=1", {"key": "k", "value": "v"})[0] == 200
    coordinates = [m for m in node.received if isinstance(m, messages.Coordinate)]
    assert [(m.op, m.quorum) for m in coordinates] == [("set", 3), ("get", 1), ("delete", 2), ("set", 1)]
    assert all(0 < m.timeout_ms < REQUEST_TIMEOUT_S * 1000 for m in coordinates)


def test_default_quorum_is_zero(api, node):
    _, http = api
    http.json("GET", "/kv/get?key=k")
    assert node.received[-1].quorum == 0


def test_bytes_values_come_back_base64_and_round_trip(api, node):
    _, http = api
    assert http.json("GET", "/kv/get?key=binary") == (
        200, {"key": "binary", "value_base64": base64.b64encode(b"\x00\xffraw").decode()})
    encoded = base64.b64encode(b"\x01\x02").decode()
    assert http.json("POST", "/kv/set", {"key": "b2", "value_base64": encoded})[0] == 200
    assert node.store[b"b2"] == b"\x01\x02"


def test_delete_takes_the_key_from_the_body(api, node):
    _, http = api
    node.store[b"gone"] = "x"
    assert http.json("POST", "/kv/delete", {"key": "gone"}) == (200, {"ok": True, "key": "gone", "replicas": 2})
    assert b"gone" not in node.store


def test_concurrent_requests_are_matched_by_request_id(api, node):
    _, http = api
    for index in range(40):
        node.store[f"k{index}".encode()] = f"v{index}"

    def get(index):
        return http.json("GET", f"/kv/get?key=k{index}")

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        results = list(pool.map(get, range(40)))
    assert results == [(200, {"key": f"k{index}", "value": f"v{index}"}) for index in range(40)]


# -- bad input --------------------------------------------------------------------------------------


BAD_REQUESTS = [
    # (method, path, raw body, words the error must contain)
    ("POST", "/kv/set", b"{not json", "not valid JSON"),
    ("POST", "/kv/set", b"", "missing body"),
    ("POST", "/kv/set", b"[1, 2]", "must be a JSON object"),
    ("POST", "/kv/set", b"\xff\xfe\x00garbage", "not valid JSON"),
    ("POST", "/kv/set", b"[" * 100_000, "not valid JSON"),
    ("POST", "/kv/set", b'{"value": "v"}', "missing key"),
    ("POST", "/kv/set", b'{"key": "k"}', "missing value"),
    ("POST", "/kv/set", b'{"key": 5, "value": "v"}', "key must be a JSON string"),
    ("POST", "/kv/set", b'{"key": "k", "value": 5}', "JSON has no bytes"),
    ("POST", "/kv/set", b'{"key": "k", "value": null}', "value must be a JSON string"),
    ("POST", "/kv/set", b'{"key": "k", "value": ["a"]}', "value must be a JSON string"),
    ("POST", "/kv/set", b'{"key": "", "value": "v"}', "must not be empty"),
    ("POST", "/kv/set", b'{"key": "\\ud800", "value": "v"}', "lone surrogate"),
    ("POST", "/kv/set", b'{"key": "k", "value": "\\udfff"}', "lone surrogate"),
    ("POST", "/kv/set", b'{"key": "k", "value": "v", "w": 0}', "w must be an integer"),
    ("POST", "/kv/set", b'{"key": "k", "value": "v", "w": -1}', "w must be an integer"),
    ("POST", "/kv/set", b'{"key": "k", "value": "v", "w": "2"}', "w must be an integer"),
    ("POST", "/kv/set", b'{"key": "k", "value": "v", "w": true}', "w must be an integer"),
    ("POST", "/kv/set", b'{"key": "k", "value": "v", "w": 2.5}', "w must be an integer"),
    ("POST", "/kv/set", b'{"key": "k", "value": "v", "w": NaN}', "w must be an integer"),
    ("POST", "/kv/set", b'{"key": "k", "value": "v", "w": 1' + b"0" * 40 + b"}", "w must be an integer"),
    ("POST", "/kv/set", b'{"key": "k", "value": "v", "w": 1' + b"0" * 5000 + b"}", "not valid JSON"),
    ("POST", "/kv/set", b'{"key": "k", "value": "v", "W": 2}', "unknown field 'W'"),
    ("POST", "/kv/set", b'{"key": "k", "value": "v", "value_base64": "AA=="}', "not both"),
    ("POST", "/kv/set", b'{"key": "k", "value_base64": "!!"}', "not valid base64"),
    ("POST", "/kv/set", b'{"key": "k", "value_base64": 3}', "value_base64 must be a JSON string"),
    ("POST", "/kv/set?key=a", b'{"key": "b", "value": "v"}', "both in the query string and in the body"),
    ("POST", "/kv/set?w=2", b'{"key": "k", "value": "v", "w": 2}', "both in the query string and in the body"),
    ("GET", "/kv/get", None, "missing key"),
    ("GET", "/kv/get?key=", None, "must not be empty"),
    ("GET", "/kv/get?key=a&key=b", None, "more than once"),
    ("GET", "/kv/get?key=k&r=0", None, "r must be an integer"),
    ("GET", "/kv/get?key=k&r=abc", None, "r must be an integer"),
    ("GET", "/kv/get?key=k&r=-2", None, "r must be an integer"),
    ("GET", "/kv/get?key=k&r=%EF%BC%92", None, "r must be an integer"),  # a full-width digit
    ("GET", "/kv/get?key=k&r=99999999999999999999999", None, "r must be an integer"),
    ("GET", "/kv/get?key=" + "x" * 1025, None, "1025 bytes of UTF-8; the limit is 1024"),
    ("GET", "/kv/get?key=" + "%C3%A9" * 513, None, "1026 bytes of UTF-8; the limit is 1024"),
    ("POST", "/kv/delete", None, "missing key"),
    ("POST", "/kv/delete", b"{bad", "not valid JSON"),
    ("POST", "/kv/delete?key=k&w=x", None, "w must be an integer"),
    ("POST", "/kv/delete", b'{"key": "k", "value": "v"}', "unknown field 'value'"),
]


@pytest.mark.parametrize("method, path, raw, words", BAD_REQUESTS)
def test_bad_input_is_400_with_a_reason_and_reaches_no_node(api, node, method, path, raw, words):
    _, http = api
    status, body = http.json(method, path, raw=raw)
    assert status == 400
    assert words in body["error"]
    assert not any(isinstance(m, messages.Coordinate) for m in node.received)


def test_key_of_exactly_the_limit_is_accepted(api):
    _, http = api
    assert http.json("GET", "/kv/get?key=" + "x" * 1024)[0] == 404


def test_body_over_the_limit_is_413(api, node):
    _, http = api
    value_bytes_max = 4 << 20
    body = json.dumps({"key": "big", "value": "x" * (value_bytes_max + BODY_SLACK_BYTES)}).encode()
    status, payload = http.json("POST", "/kv/set", raw=body)
    assert status == 413
    assert "larger than" in payload["error"]
    status, payload = http.json("POST", "/kv/set", {"key": "big", "value": "x" * (value_bytes_max + 1)})
    assert (status, payload["error"]) == (413, f"value is {value_bytes_max + 1} bytes; the limit is {value_bytes_max}")
    assert b"big" not in node.store
    assert http.json("POST", "/kv/set", {"key": "big", "value": "x" * value_bytes_max})[0] == 200


def test_garbage_on_the_socket_does_not_hurt_the_server(api):
    server, http = api
    for junk in (b"\x00\xff\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n", b"POST /kv/set HTTP/1.1\r\nContent-Length: -5\r\n\r\n"):
        with socket.create_connection(("127.0.0.1", server.port), timeout=DEADLINE_S) as connection:
            connection.sendall(junk)
            connection.recv(65536)  # whatever aiohttp answers, or the close
    assert http.json("GET", "/kv/get?key=binary")[0] == 200


# -- routes and methods -----------------------------------------------------------------------------


def test_unknown_route_is_404_json(api):
    _, http = api
    status, body = http.json("GET", "/nope")
    assert status == 404
    assert "no such route" in body["error"]


@pytest.mark.parametrize("method, path", [("GET", "/kv/set"), ("POST", "/kv/get?key=k"), ("DELETE", "/kv/delete"),
                                          ("POST", "/health"), ("PUT", "/metrics")])
def test_wrong_method_is_405_json(api, method, path):
    _, http = api
    status, headers, payload = http.call(method, path, raw=b"{}" if method != "GET" else None)
    assert status == 405
    assert "not allowed" in json.loads(payload)["error"]
    assert headers["Allow"]


# -- node verdicts ----------------------------------------------------------------------------------


def test_node_failures_are_503_with_answered(api):
    _, http = api
    status, body = http.json("POST", "/kv/set", {"key": "quorum", "value": "v"})
    assert (status, body) == (503, {"error": "quorum not reached: 1 of 2 acknowledgements",
                                    "status": "quorum", "answered": 1})
    for key in ("timeout", "unavailable"):
        status, body = http.json("GET", f"/kv/get?key={key}")
        assert (status, body["status"], body["answered"]) == (503, key, 0)
        assert body["error"]


def test_busy_is_503_with_retry_after(api):
    _, http = api
    status, headers, payload = http.call("POST", "/kv/delete?key=busy")
    assert (status, headers["Retry-After"], json.loads(payload)["status"]) == (503, "1", "busy")


def test_node_invalid_is_400_with_its_detail(api):
    _, http = api
    assert http.json("GET", "/kv/get?key=invalid") == (400, {"error": "the node says this key is invalid"})


def test_strange_node_replies_are_502(api):
    _, http = api
    status, body = http.json("GET", "/kv/get?key=weird")
    assert status == 502 and "no-such-status" in body["error"]
    status, body = http.json("GET", "/kv/get?key=wrongtype")
    assert status == 502 and "InspectReply" in body["error"]


def test_silent_node_is_504_and_the_late_reply_is_dropped(api, node):
    _, http = api
    started = time.monotonic()
    status, body = http.json("GET", "/kv/get?key=slow")
    assert status == 504 and "did not answer" in body["error"]
    assert REQUEST_TIMEOUT_S <= time.monotonic() - started < DEADLINE_S
    assert http.json("GET", "/kv/get?key=release")[0] == 404  # the fake answers "slow" late first
    status, _, metrics = http.call("GET", "/metrics")
    assert "zkv_http_replies_dropped_total 1\n" in metrics.decode()
    assert "zkv_http_node_timeouts_total 1\n" in metrics.decode()


def test_garbage_and_unknown_ids_from_the_node_are_dropped(api):
    _, http = api
    assert http.json("GET", "/kv/get?key=noisy") == (200, {"key": "noisy", "value": "loud"})
    metrics = http.call("GET", "/metrics")[2].decode()
    assert "zkv_http_bad_replies_total 1\n" in metrics
    assert "zkv_http_replies_dropped_total 1\n" in metrics
    assert http.json("GET", "/kv/get?key=binary")[0] == 200


# -- inspection -------------------------------------------------------------------------------------


def test_inspection_routes(api):
    _, http = api
    assert http.json("GET", "/kv/stats") == (200, STATS)
    assert http.json("GET", "/cluster") == (200, CLUSTER)
    assert http.json("GET", "/partitions") == (200, PARTITIONS)


def test_health(api, node):
    _, http = api
    assert http.json("GET", "/health") == (200, {"status": "healthy", "node_id": "node-1", "epoch": 3})
    node.stats["epoch"] = 0
    status, body = http.json("GET", "/health")
    assert (status, body["status"]) == (503, "unhealthy") and "epoch 0" in body["reason"]
    node.stats["epoch"], node.stats["state"] = 3, "left"
    status, body = http.json("GET", "/health")
    assert (status, body["reason"]) == (503, "the node is left")
    node.inspect_silent = True
    status, body = http.json("GET", "/health")
    assert (status, body["status"]) == (503, "unhealthy") and "did not answer within 0.3 s" in body["reason"]
    status, body = http.json("GET", "/kv/stats")
    assert status == 504


def test_metrics_are_prometheus_text(api):
    _, http = api
    status, headers, payload = http.call("GET", "/metrics")
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = payload.decode()
    lines = text.splitlines()
    assert "# TYPE zkv_coordinated_get_total counter" in lines
    assert "zkv_coordinated_get_total 7" in lines
    assert "# TYPE zkv_epoch gauge" in lines
    assert "zkv_load 0.5" in lines
    assert "not a number" not in text
    samples = {}
    for line in lines:
        if line.startswith("#"):
            assert line.split()[1] in ("HELP", "TYPE")
            continue
        name, value = line.split(" ")
        samples[name] = float(value)
    assert samples["zkv_http_requests_total"] >= 1
    assert samples["zkv_http_pending_requests"] == 0


def test_render_metrics_table():
    cases = [
        ({}, "\n"),
        ({"a_total": 1}, "# HELP a_total zkv counter a_total\n# TYPE a_total counter\na_total 1\n"),
        ({"b": 1.5}, "# HELP b zkv gauge b\n# TYPE b gauge\nb 1.5\n"),
        ({"bad-name.x": 2}, "# HELP bad_name_x zkv gauge bad_name_x\n# TYPE bad_name_x gauge\nbad_name_x 2\n"),
        ({"9lives": 1}, "# HELP _9lives zkv gauge _9lives\n# TYPE _9lives gauge\n_9lives 1\n"),
        ({"n": float("nan"), "p": float("inf")},
         "# HELP n zkv gauge n\n# TYPE n gauge\nn NaN\n# HELP p zkv gauge p\n# TYPE p gauge\np +Inf\n"),
        ({"up": True, "skip": "text", "nested": {"a": 1}}, "# HELP up zkv gauge up\n# TYPE up gauge\nup 1\n"),
    ]
    for values, expected in cases:
        assert render_metrics(values) == expected, values


# -- lifecycle --------------------------------------------------------------------------------------


def test_stop_closes_the_port_and_ends_the_thread(context, node):
    endpoint = node.endpoint
    server = HttpApi(context, endpoint, "127.0.0.1", 0, request_timeout_s=REQUEST_TIMEOUT_S)
    port = server.start()
    try:
        assert port > 0 and port_open(port) and server.running
        assert Http(port).json("GET", "/kv/get?key=binary")[0] == 200
        with pytest.raises(RuntimeError):
            server.start()
    finally:
        server.stop()
    assert not server.running
    assert not any(thread.name == f"zkv-http-{endpoint}" for thread in threading.enumerate())
    assert not port_open(port)
    server.stop()  # idempotent


def test_stop_fails_waiting_requests_quickly(context, node):
    endpoint = node.endpoint
    server = HttpApi(context, endpoint, "127.0.0.1", 0, request_timeout_s=DEADLINE_S * 3)
    port = server.start()
    results = []
    try:
        waiter = threading.Thread(target=lambda: results.append(Http(port).json("GET", "/kv/get?key=slow")))
        waiter.start()
        node.wait_received(lambda m: getattr(m, "key", None) == b"slow", "the slow request")
        started = time.monotonic()
    finally:
        server.stop()
    waiter.join(DEADLINE_S)
    assert time.monotonic() - started < DEADLINE_S
    assert results == [(503, {"error": "the node is shutting down"})]
    assert not server.running


def test_start_on_a_busy_port_raises_and_leaves_no_thread(context, node):
    endpoint = node.endpoint
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = HttpApi(context, endpoint, "127.0.0.1", taken.getsockname()[1])
        try:
            with pytest.raises(OSError):
                server.start()
            assert not server.running
        finally:
            server.stop()


def test_stop_without_start_is_a_no_op(context):
    HttpApi(context, "inproc://nothing", "127.0.0.1", 0).stop()


def test_constructor_refuses_nonsense_timeouts(context):
    with pytest.raises(ValueError):
        HttpApi(context, "inproc://nothing", "127.0.0.1", 0, request_timeout_s=0)
