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


def test_async_client_keeps_many_requests_in_flight(cluster3):
    import asyncio

    from zkv import AsyncClient

    async def scenario():
        async with await AsyncClient.connect([n.address for n in cluster3.running_nodes()]) as client:
            await asyncio.gather(*(client.set(f"aio-{i}", str(i)) for i in range(500)))
            values = await asyncio.gather(*(client.get(f"aio-{i}") for i in range(500)))
            await client.mset({"aio-a": "1", "aio-b": "2"})
            assert await client.mget(["aio-a", "aio-b", "aio-missing"]) == ["1", "2", None]
            await client.delete("aio-a")
            assert await client.get("aio-a") is None
            return values

    assert asyncio.run(scenario()) == [str(i) for i in range(500)]


def test_a_batch_of_1000_sets_is_one_transaction_per_replica(cluster3):
    client = cluster3.client()
    client.set("warm", "up")  # connections and the map are in place before counting
    before = {n.node_id: cluster3.inspect(n, "stats")["storage"]["commits"] for n in cluster3.running_nodes()}
    client.mset({f"txn-{i}": "v" * 100 for i in range(1000)})
    after = {n.node_id: cluster3.inspect(n, "stats")["storage"]["commits"] for n in cluster3.running_nodes()}
    # every node is a replica of every partition in a 3-node cluster: one frame, one commit each
    assert {node: after[node] - before[node] for node in after} == {node: 1 for node in after}


def test_a_client_waits_for_room_instead_of_queueing_without_bound(cluster3, monkeypatch):
    import zkv.client.client as client_module

    monkeypatch.setattr(client_module, "INFLIGHT_OPS_MAX", 50)
    client = cluster3.client()
    futures, most = [], 0
    for i in range(400):
        futures.append(client.set_async(f"room-{i}", "v"))  # waits for room when 50 are outstanding
        most = max(most, client.in_flight)
    assert [future.result(20) for future in futures] == [None] * 400
    assert most <= 50 and client.in_flight == 0
