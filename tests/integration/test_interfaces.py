"""The CLI, the HTTP API and raw ZeroMQ frames against a real 3-node cluster."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request

import msgpack
import pytest
import zmq

from zkv import wire
from zkv.core import messages


def zkv_client(cluster, *args, timeout=30):
    nodes = ",".join(n.address for n in cluster.running_nodes())
    return subprocess.run([sys.executable, "-m", "zkv", "client", "--nodes", nodes, *args],
                          capture_output=True, text=True, timeout=timeout)


def test_cli_set_get_delete_and_exit_codes(cluster3):
    assert zkv_client(cluster3, "set", "user:123", "John").stdout.strip() == "OK"
    got = zkv_client(cluster3, "get", "user:123")
    assert (got.returncode, got.stdout.strip()) == (0, "John")
    assert zkv_client(cluster3, "set", "user:123", "Jane", "--w", "3").returncode == 0
    assert zkv_client(cluster3, "get", "user:123", "--r", "3").stdout.strip() == "Jane"
    assert zkv_client(cluster3, "delete", "user:123").returncode == 0
    missing = zkv_client(cluster3, "get", "user:123")
    assert missing.returncode == 1 and "key not found" in missing.stderr
    too_long = zkv_client(cluster3, "set", "k" * 2000, "v")
    assert too_long.returncode == 2 and "limit is 1024" in too_long.stderr
    bad_w = zkv_client(cluster3, "set", "k", "v", "--w", "0")
    assert bad_w.returncode == 2


def test_cli_cluster_stats_partitions(cluster3):
    table = zkv_client(cluster3, "cluster")
    assert table.returncode == 0
    lines = table.stdout.splitlines()
    assert lines[0].split()[:4] == ["NODE", "ADDRESS", "HTTP", "STATE"]
    assert sum(1 for line in lines if line.startswith("node-") and " alive " in line) == 3
    members = json.loads(zkv_client(cluster3, "cluster", "--json").stdout)["members"]
    assert sum(m["primary"] for m in members) == 64
    assert sum(m["primary"] + m["replica"] for m in members) == 64 * 3
    partitions = json.loads(zkv_client(cluster3, "partitions", "--json").stdout)["partitions"]
    assert len(partitions) == 64 and all(len(p["replicas"]) == 3 for p in partitions)
    stats = zkv_client(cluster3, "stats")
    assert stats.returncode == 0 and "local keys" in stats.stdout


def test_cli_unreachable_cluster_exits_3(tmp_path):
    from zkv.localcluster import free_port
    result = subprocess.run([sys.executable, "-m", "zkv", "client", "--nodes", f"127.0.0.1:{free_port()}",
                             "--timeout", "0.5", "get", "k"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 3 and "no zkv node answered" in result.stderr


def http(method, url, body=None):
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_http_api_end_to_end(cluster3):
    node = cluster3.nodes["node-2"]
    status, body = http("POST", f"{node.http}/kv/set", {"key": "user:123", "value": "John"})
    assert status == 200 and json.loads(body)["ok"] is True
    other = cluster3.nodes["node-3"]
    status, body = http("GET", f"{other.http}/kv/get?key=user:123")
    assert (status, json.loads(body)["value"]) == (200, "John")
    status, body = http("POST", f"{node.http}/kv/set", {"key": "user:123", "value": "Jane", "w": 3})
    assert status == 200
    assert json.loads(http("GET", f"{node.http}/kv/get?key=user:123&r=3")[1])["value"] == "Jane"
    assert http("POST", f"{node.http}/kv/delete?key=user:123")[0] == 200
    status, body = http("GET", f"{node.http}/kv/get?key=user:123")
    assert status == 404 and "error" in json.loads(body)
    status, body = http("GET", f"{node.http}/health")
    assert (status, json.loads(body)["status"]) == (200, "healthy")
    assert len(json.loads(http("GET", f"{node.http}/cluster")[1])["members"]) == 3
    assert len(json.loads(http("GET", f"{node.http}/partitions")[1])["partitions"]) == 64
    assert json.loads(http("GET", f"{node.http}/kv/stats")[1])["node_id"] == "node-2"
    status, metrics = http("GET", f"{node.http}/metrics")
    assert status == 200 and "zkv_epoch " in metrics


@pytest.mark.parametrize("body", [b"not json", b"[]", {"value": "no key"}, {"key": 5, "value": "v"},
                                  {"key": "k", "value": 7}, {"key": "k", "value": "v", "w": 0},
                                  {"key": "k" * 1025, "value": "v"}])
def test_http_bad_bodies_get_400_and_change_nothing(cluster3, body):
    node = cluster3.nodes["node-1"]
    before = sum(cluster3.local_keys().values())
    status, text = http("POST", f"{node.http}/kv/set", body)
    assert status == 400 and json.loads(text)["error"]
    assert sum(cluster3.local_keys().values()) == before
    assert http("POST", f"{node.http}/kv/set", {"key": "after", "value": "still serving"})[0] == 200


def test_http_quorum_failure_is_503_with_answered(cluster3):
    cluster3.nodes["node-3"].stop()
    status, text = http("POST", f"{cluster3.nodes['node-1'].http}/kv/set", {"key": "k", "value": "v", "w": 3})
    assert status == 503 and json.loads(text)["answered"] == 2


def test_malformed_frames_get_errors_and_the_node_keeps_serving(cluster3):
    node = cluster3.nodes["node-1"]
    context = zmq.Context.instance()
    dealer = context.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.setsockopt(zmq.RCVTIMEO, 5000)
    dealer.connect(f"tcp://{node.address}")
    try:
        cases = {
            "wrong version": msgpack.packb([99, messages.Batch.TYPE, 41, 1, b"w", [0], [b"k"], [None]]),
            "unknown type": msgpack.packb([messages.PROTOCOL_VERSION, 250, 42]),
            "wrong field count": msgpack.packb([messages.PROTOCOL_VERSION, messages.Batch.TYPE, 43, 1]),
            "wrong field type": msgpack.packb([messages.PROTOCOL_VERSION, messages.Inspect.TYPE, 44, 12]),
        }
        for name, frame in cases.items():
            dealer.send(frame)
            reply = wire.decode(dealer.recv())
            assert isinstance(reply, messages.Error), name
            assert reply.request_id in (41, 42, 43, 44) and reply.message, name
        for junk in (b"", b"\xc1\xc1\xc1", b"\x00" * 70_000, msgpack.packb({"a": 1})):
            dealer.send(junk)  # unreadable: dropped and counted
        dealer.send_multipart([b"extra", b"frames"])
        reply = wire.decode(dealer.recv())
        assert isinstance(reply, messages.Error) and "one frame" in reply.message
        batch = messages.Batch(7, 10**9, b"wx", [0, 999], [b"k", b"\xff" * 5000], [b"short", None])
        dealer.send(wire.encode(batch))
        reply = wire.decode(dealer.recv())
        assert isinstance(reply, messages.BatchReply) and len(reply.statuses) == 2
        assert all(status == messages.STATUS_INVALID for status in reply.statuses)
    finally:
        dealer.close(0)
    client = cluster3.client()
    client.set("after-junk", "fine")
    assert client.get("after-junk") == "fine"
    ops = cluster3.inspect(node, "stats")["ops"]
    assert ops["bad_frames"] >= 9 and ops.get("handler_errors", 0) == 0
