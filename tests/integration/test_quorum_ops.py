"""Quorum set/get/delete through the Python client on a real 3-node cluster."""

from __future__ import annotations

import pytest

from zkv import Client, InvalidRequest, PartialFailure, QuorumError, Timeout


def test_set_get_delete_roundtrip(cluster3):
    client = cluster3.client()
    client.set("user:123", "John")
    assert client.get("user:123") == "John"
    client.set("user:123", "Jane", w=3)
    assert client.get("user:123", r=3) == "Jane"
    assert client.get("user:123", r=1) == "Jane"
    client.delete("user:123")
    assert client.get("user:123") is None
    assert client.get("never-written") is None


def test_values_come_back_as_the_type_written(cluster3):
    client = cluster3.client()
    client.set(b"\x00binary-key", b"\xff\x00bytes")
    client.set("text", "na\u00efve \u2603")
    assert client.get(b"\x00binary-key") == b"\xff\x00bytes"
    assert client.get("text") == "na\u00efve \u2603"
    assert client.get(b"text") == "na\u00efve \u2603"  # str keys are their UTF-8 bytes


def test_every_replica_holds_a_w3_write(cluster3):
    client = cluster3.client()
    client.mset({f"k{i}": f"v{i}" for i in range(300)}, w=3)
    assert sum(cluster3.local_keys().values()) == 3 * 300


def test_batch_calls_and_futures(cluster3):
    client = cluster3.client()
    futures = [client.set_async(f"f{i}", str(i)) for i in range(500)]
    assert [f.result(10) for f in futures] == [None] * 500
    assert client.mget([f"f{i}" for i in range(500)]) == [str(i) for i in range(500)]
    assert client.mget(["f1", "missing", "f2"]) == ["1", None, "2"]


def test_bad_input_is_refused_and_changes_nothing(cluster3):
    client = cluster3.client()
    before = sum(cluster3.local_keys().values())
    with pytest.raises(InvalidRequest, match="limit is 1024"):
        client.set("k" * 1025, "v")
    with pytest.raises(InvalidRequest, match="limit"):
        client.set("big", "x" * (4 * 1024 * 1024 + 1))
    with pytest.raises(InvalidRequest, match="str or bytes"):
        client.set("k", 12)
    with pytest.raises(InvalidRequest):
        client.get("")
    with pytest.raises(InvalidRequest, match="positive integer"):
        client.set("k", "v", w=0)
    with pytest.raises(InvalidRequest):
        client.mset({"ok": "v", "bad": 3})
    assert sum(cluster3.local_keys().values()) == before
    assert client.get("ok") is None


def test_quorum_larger_than_alive_replicas_is_a_quorum_error(cluster3):
    client = cluster3.client()
    victim = cluster3.nodes["node-3"]
    victim.stop()
    with pytest.raises(QuorumError) as caught:
        client.set("needs-three", "v", w=3, timeout=1.0)
    assert caught.value.answered == 2 and caught.value.needed == 3
    with pytest.raises(PartialFailure):
        client.mset({"a": "1", "b": "2"}, w=3, timeout=1.0)
    client.set("needs-two", "v")  # W=2 still works with one node down
    assert client.get("needs-two") == "v"


def test_unreachable_cluster_is_a_timeout(tmp_path):
    from zkv.localcluster import free_port
    with pytest.raises(Timeout, match="no zkv node answered"):
        Client([f"127.0.0.1:{free_port()}"], connect_timeout=0.5)
