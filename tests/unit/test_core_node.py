"""NodeCore driven by hand: one or two nodes, a list as the network, a fake clock.

Every message crosses ``zkv.wire`` (encode, then decode) as it would between processes.
A request's route is ``("peer", sender)`` between nodes and ``("client", n)`` for the
test's own requests, whose replies are collected in ``Cluster.client_inbox``.
"""

from __future__ import annotations

import itertools
import random

import pytest

from zkv import wire
from zkv.core import messages
from zkv.core.config import SETTLED
from zkv.core.messages import OP_READ, OP_WRITE, STATUS_BEHIND, STATUS_INVALID, STATUS_OK, STATUS_STALE
from zkv.core.node import TICK_MS, NodeCore, NodeSettings
from zkv.core.placement import partition_of
from zkv.core.replica import NOT_COMPLETE
from zkv.core.versions import decode_value, encode_value
from zkv.storage.memory import MemoryStorage

PARTITIONS = 8
START_MS = 1_000_000
STEPS_MAX = 3000  # 60 s of simulated time at TICK_MS
DELIVERIES_PER_STEP_MAX = 10_000


class Cluster:
    def __init__(self, seed: int = 1) -> None:
        self.rng = random.Random(seed)
        self.now_ms = START_MS
        self.cores: dict[str, NodeCore] = {}
        self.storages: dict[str, MemoryStorage] = {}
        self.exit_codes: dict[str, int] = {}
        self.network: list[tuple[str, str, str, bytes]] = []  # (kind, sender, target, frame)
        self.client_inbox: list[tuple[tuple, object]] = []
        self.client_routes = itertools.count(1)

    # -- nodes ---------------------------------------------------------------------------

    def add(self, node_id: str, seeds: tuple[str, ...] = (), **options) -> NodeCore:
        options.setdefault("partitions", PARTITIONS)
        settings = NodeSettings(node_id=node_id, address=node_id, http_address=f"http-{node_id}", seeds=seeds,
                                generation=self.rng.getrandbits(48), writer_id=self.rng.getrandbits(63), **options)
        storage = MemoryStorage()
        storage.begin_turn()
        core = NodeCore(settings, storage, random.Random(self.rng.getrandbits(64)), self.now_ms)
        effects = core.finish_turn(self.now_ms)
        storage.end_turn()
        self.cores[node_id] = core
        self.storages[node_id] = storage
        self._apply(node_id, effects)
        return core

    def turn(self, node_id: str, feed) -> None:
        core, storage = self.cores[node_id], self.storages[node_id]
        storage.begin_turn()
        try:
            feed(core)
            effects = core.finish_turn(self.now_ms)
        finally:
            storage.end_turn()
        self._apply(node_id, effects)

    def _apply(self, node_id: str, effects) -> None:
        for target, message in effects.sends:
            self.network.append(("request", node_id, target.removeprefix("@"), wire.encode(message)))
        for route, message in effects.replies:
            if route[0] == "peer":
                self.network.append(("reply", node_id, route[1], wire.encode(message)))
            else:
                self.client_inbox.append((route, wire.decode(wire.encode(message))))
        if effects.exit_code is not None:
            self.exit_codes[node_id] = effects.exit_code

    # -- the network and the clock ---------------------------------------------------------

    def deliver_all(self) -> None:
        for _ in range(DELIVERIES_PER_STEP_MAX):
            if not self.network:
                return
            kind, sender, target, frame = self.network.pop(0)
            if target not in self.cores or target in self.exit_codes:
                continue  # nobody there
            message = wire.decode(frame)
            if kind == "request":
                self.turn(target, lambda core: core.on_request(("peer", sender), message, self.now_ms))
            else:
                self.turn(target, lambda core: core.on_peer_message(sender, message, self.now_ms))
        raise AssertionError("the network never went quiet")

    def step(self) -> None:
        self.deliver_all()
        self.now_ms += TICK_MS
        for node_id, core in list(self.cores.items()):
            if node_id not in self.exit_codes and core.next_deadline_ms() <= self.now_ms:
                self.turn(node_id, lambda core: core.on_tick(self.now_ms))
        self.deliver_all()

    def run_until(self, condition, steps_max: int = STEPS_MAX) -> int:
        for steps in range(steps_max):
            if condition():
                return steps
            self.step()
        raise AssertionError(f"no convergence within {steps_max} steps")

    # -- a client ----------------------------------------------------------------------------

    def request(self, node_id: str, make_message, steps_max: int = 200):
        """Send a request (built from a fresh request id) and run until its reply arrives."""
        route = ("client", next(self.client_routes))
        message = make_message(route[1])
        self.turn(node_id, lambda core: core.on_request(route, message, self.now_ms))
        for _ in range(steps_max):
            replies = [reply for reply_route, reply in self.client_inbox if reply_route == route]
            if replies:
                self.client_inbox = [(r, m) for r, m in self.client_inbox if r != route]
                assert len(replies) == 1
                return replies[0]
            self.step()
        raise AssertionError(f"no reply to {message}")


def lone_node(**options) -> tuple[Cluster, NodeCore]:
    cluster = Cluster()
    core = cluster.add("n1", **options)
    return cluster, core


def key_in(partition: int, partitions: int = PARTITIONS, prefix: bytes = b"key") -> bytes:
    for index in itertools.count():
        key = prefix + b"-%d" % index
        if partition_of(key, partitions) == partition:
            return key


def record(value="v", stamp=1 << 40, writer=5) -> bytes:
    return encode_value(stamp.to_bytes(8, "big") + writer.to_bytes(8, "big"), value)


def batch(request_id, epoch, ops, partitions, keys, records):
    return messages.Batch(request_id, epoch, bytes(ops), partitions, keys, records)


def coordinate(op, key, value=None, quorum=0):
    return lambda request_id: messages.Coordinate(request_id, op, key, value, quorum, 0)


# -- a lone node ----------------------------------------------------------------------------------

def test_a_lone_node_creates_a_cluster_at_epoch_1_owning_everything():
    cluster, core = lone_node()
    assert core.config.epoch == 1
    assert core.config.ring == ("n1",)
    assert core.config.partitions == PARTITIONS
    assert len(core.config.plans) == PARTITIONS
    for plan in core.config.plans:
        assert plan.phase == SETTLED and plan.new == ("n1",) and plan.read_set == ("n1",)
    assert core.local.complete_for == [0] * PARTITIONS
    assert all(core.local.readable) and all(core.local.writable)
    assert cluster.storages["n1"].meta_get("config") is not None  # persisted for a restart


def test_a_lone_node_serves_a_valid_batch():
    cluster, core = lone_node()
    key = key_in(3)
    reply = cluster.request("n1", lambda rid: batch(rid, 1, [OP_WRITE, OP_READ], [3, 3], [key, key], [record(), None]))
    assert reply.statuses == bytes([STATUS_OK, STATUS_OK])
    assert reply.records == [record()]
    assert reply.epoch == 1


BAD_OPS = [
    pytest.param(OP_WRITE, PARTITIONS, None, record(), id="partition-out-of-range"),
    pytest.param(OP_WRITE, -1, None, record(), id="negative-partition"),
    pytest.param(OP_WRITE, "3", None, record(), id="partition-not-int"),
    pytest.param(OP_WRITE, True, None, record(), id="partition-bool"),
    pytest.param(OP_WRITE, "wrong", None, record(), id="key-in-another-partition"),
    pytest.param(OP_WRITE, 3, b"", record(), id="empty-key"),
    pytest.param(OP_WRITE, 3, "str-key", record(), id="key-not-bytes"),
    pytest.param(OP_WRITE, 3, None, b"short", id="record-too-short"),
    pytest.param(OP_WRITE, 3, None, record()[:16] + b"\x07x", id="record-unknown-kind"),
    pytest.param(OP_WRITE, 3, None, record(None) + b"x", id="tombstone-with-payload"),
    pytest.param(OP_WRITE, 3, None, "not bytes" * 3, id="record-not-bytes"),
    pytest.param(OP_WRITE, 3, None, None, id="write-without-record"),
    pytest.param(ord("x"), 3, None, record(), id="unknown-op"),
]


@pytest.mark.parametrize(("op", "partition", "key", "bad_record"), BAD_OPS)
def test_a_malformed_op_is_invalid_and_changes_nothing(op, partition, key, bad_record):
    cluster, core = lone_node()
    good_key = key_in(3, prefix=b"good")
    if key is None:
        key = key_in(3) if partition != "wrong" else key_in(4)
    if partition == "wrong":
        partition = 3
    storage = cluster.storages["n1"]
    reply = cluster.request("n1", lambda rid: batch(
        rid, 1, [op, OP_WRITE], [partition, 3], [key, good_key], [bad_record, record("good")]))
    assert reply.statuses == bytes([STATUS_INVALID, STATUS_OK])
    assert storage.count() == 1  # only the good op was applied
    assert storage.get(3, good_key) == record("good")


def test_a_batch_with_lists_of_different_lengths_is_invalid_throughout():
    cluster, core = lone_node()
    key = key_in(3)
    reply = cluster.request("n1", lambda rid: batch(rid, 1, [OP_WRITE, OP_READ], [3], [key, key], [record(), None]))
    assert reply.statuses == bytes([STATUS_INVALID]) * 2
    assert reply.records == [None]  # one entry per read op
    assert cluster.storages["n1"].count() == 0
    assert core.counters["bad_batches"] == 1


@pytest.mark.parametrize(("epoch", "status"), [(0, STATUS_STALE), (1, STATUS_OK), (2, STATUS_BEHIND)])
def test_the_batch_epoch_is_checked_against_the_map(epoch, status):
    cluster, core = lone_node()
    key = key_in(2)
    reply = cluster.request("n1", lambda rid: batch(rid, epoch, [OP_WRITE], [2], [key], [record()]))
    assert reply.statuses == bytes([status])
    assert cluster.storages["n1"].count() == (1 if status == STATUS_OK else 0)


def test_coordinate_set_get_delete():
    cluster, core = lone_node()
    for value in ("text \u2603", b"\x00bytes"):
        reply = cluster.request("n1", coordinate(messages.COORD_SET, b"k", value))
        assert (reply.status, reply.answered) == (messages.RESULT_OK, 1)
        reply = cluster.request("n1", coordinate(messages.COORD_GET, b"k"))
        assert reply.status == messages.RESULT_OK
        assert reply.value == value and type(reply.value) is type(value)
    assert cluster.request("n1", coordinate(messages.COORD_DELETE, b"k")).status == messages.RESULT_OK
    reply = cluster.request("n1", coordinate(messages.COORD_GET, b"k"))
    assert (reply.status, reply.value) == (messages.RESULT_NOT_FOUND, None)
    assert cluster.request("n1", coordinate(messages.COORD_GET, b"never")).status == messages.RESULT_NOT_FOUND


@pytest.mark.parametrize(
    ("make", "detail"),
    [
        (coordinate(messages.COORD_SET, b"k", "x" * 101), "value is 101 bytes; the limit is 100"),
        (coordinate(messages.COORD_SET, b"k", b"x" * 101), "the limit is 100"),
        (coordinate(messages.COORD_SET, b"k" * 33, "v"), "key is 33 bytes; the limit is 32"),
        (coordinate(messages.COORD_GET, b""), "key must not be empty"),
        (coordinate(messages.COORD_SET, b"k", None), "set needs a value"),
        (coordinate("increment", b"k"), "unknown operation 'increment'"),
    ],
)
def test_coordinate_with_invalid_input_replies_invalid_and_writes_nothing(make, detail):
    cluster, core = lone_node(value_bytes_max=100, key_bytes_max=32)
    reply = cluster.request("n1", make)
    assert reply.status == messages.RESULT_INVALID
    assert detail in reply.detail
    assert cluster.storages["n1"].count() == 0


def test_coordinate_with_an_oversized_value_at_the_default_limit():
    cluster, core = lone_node()
    limit = core.settings.value_bytes_max
    reply = cluster.request("n1", coordinate(messages.COORD_SET, b"k", b"x" * (limit + 1)))
    assert reply.status == messages.RESULT_INVALID
    assert f"the limit is {limit}" in reply.detail


@pytest.mark.parametrize(
    ("what", "expected_keys"),
    [
        ("stats", {"node_id", "epoch", "local_keys", "partitions_held", "partitions", "ops"}),
        ("cluster", {"node_id", "epoch", "claimant", "members"}),
        ("partitions", {"epoch", "replication", "partitions"}),
        ("metrics", {"zkv_epoch", "zkv_local_keys", "zkv_members_alive"}),
    ],
)
def test_inspect(what, expected_keys):
    cluster, core = lone_node()
    reply = cluster.request("n1", lambda rid: messages.Inspect(rid, what))
    assert isinstance(reply, messages.InspectReply)
    assert expected_keys <= set(reply.data)


def test_inspect_contents():
    cluster, core = lone_node()
    cluster.request("n1", coordinate(messages.COORD_SET, b"k", "v"))
    stats = cluster.request("n1", lambda rid: messages.Inspect(rid, "stats")).data
    assert (stats["node_id"], stats["epoch"], stats["local_keys"], stats["partitions_held"]) == ("n1", 1, 1, PARTITIONS)
    view = cluster.request("n1", lambda rid: messages.Inspect(rid, "cluster")).data
    assert [member["node_id"] for member in view["members"]] == ["n1"]
    assert view["members"][0]["state"] == "alive" and view["members"][0]["in_ring"]
    assert view["claimant"] == "n1"
    rows = cluster.request("n1", lambda rid: messages.Inspect(rid, "partitions")).data["partitions"]
    assert [row["partition"] for row in rows] == list(range(PARTITIONS))
    assert all(row["primary"] == "n1" and row["phase"] == "settled" and row["pending"] == [] for row in rows)


def test_inspect_of_something_unknown_is_an_error():
    cluster, core = lone_node()
    reply = cluster.request("n1", lambda rid: messages.Inspect(rid, "secrets"))
    assert isinstance(reply, messages.Error)
    assert reply.code == "invalid" and "secrets" in reply.message


def test_a_reply_type_sent_as_a_request_is_an_error():
    cluster, core = lone_node()
    reply = cluster.request("n1", lambda rid: messages.BatchReply(rid, 1, b"", []))
    assert isinstance(reply, messages.Error) and reply.code == "unexpected"
    assert core.counters["unexpected_messages"] == 1


def test_a_bad_frame_is_counted_and_answered_when_it_had_a_request_id():
    cluster, core = lone_node()
    cluster.turn("n1", lambda c: c.on_bad_frame(("client", 1), "not msgpack", 17))
    cluster.turn("n1", lambda c: c.on_bad_frame(("client", 2), "not msgpack", None))
    assert [(route, reply.request_id, reply.code) for route, reply in cluster.client_inbox] == [
        (("client", 1), 17, "bad_frame")]
    assert core.counters["bad_frames"] == 2


def test_a_str_record_that_is_not_utf8_does_not_break_the_node():
    cluster, core = lone_node()
    key = key_in(1)
    bad = record("x")[:16] + b"\x02\xff\xfe"
    cluster.request("n1", lambda rid: batch(rid, 1, [OP_WRITE], [1], [key], [bad]))
    reply = cluster.request("n1", coordinate(messages.COORD_GET, key))  # must answer, not raise
    assert reply.status in (messages.RESULT_NOT_FOUND, messages.RESULT_INVALID, messages.RESULT_OK)


# -- two nodes ------------------------------------------------------------------------------------------

def converged(cluster: Cluster, node_ids: tuple[str, ...]) -> bool:
    cores = [cluster.cores[n] for n in node_ids]
    if any(core.config is None for core in cores):
        return False
    epochs = {core.config.epoch for core in cores}
    if len(epochs) != 1:
        return False
    config = cores[0].config
    if set(config.ring) != set(node_ids):
        return False
    for core in cores:
        if core.config != config:
            return False
        for partition, plan in enumerate(core.config.plans):
            if plan.phase != SETTLED:
                return False
            if core.node_id in plan.new and core.local.complete_for[partition] == NOT_COMPLETE:
                return False
    return True


def test_a_second_node_joins_and_both_settle_on_the_same_map():
    cluster = Cluster(seed=7)
    cluster.add("n1")
    for index in range(20):
        reply = cluster.request("n1", coordinate(messages.COORD_SET, b"before-%d" % index, f"value-{index}"))
        assert reply.status == messages.RESULT_OK
    n2 = cluster.add("n2", seeds=("n1",))
    assert n2.config is None and n2.join_pending
    steps = cluster.run_until(lambda: converged(cluster, ("n1", "n2")))
    assert steps > 0
    n1 = cluster.cores["n1"]
    assert n1.config.epoch == n2.config.epoch > 1
    assert n1.config.ring == ("n1", "n2")
    for plan in n2.config.plans:
        assert set(plan.new) == {"n1", "n2"}  # RF 3 over two nodes: both own everything
    assert n2.local.complete_for.count(NOT_COMPLETE) == 0
    assert not n2.join_pending and n2.fatal is None
    # the handoff copied every record: n2 alone has all of them
    assert cluster.storages["n2"].count() == cluster.storages["n1"].count() == 20
    for index in range(20):
        key = b"before-%d" % index
        partition = partition_of(key, PARTITIONS)
        assert decode_value(cluster.storages["n2"].get(partition, key)) == f"value-{index}"
    # and a quorum read through the new node sees them (R=2 now needs both)
    reply = cluster.request("n2", coordinate(messages.COORD_GET, b"before-3"))
    assert (reply.status, reply.value, reply.answered) == (messages.RESULT_OK, "value-3", 2)


def test_two_node_convergence_is_deterministic_for_a_seed():
    def run() -> tuple:
        cluster = Cluster(seed=11)
        cluster.add("n1")
        cluster.add("n2", seeds=("n1",))
        steps = cluster.run_until(lambda: converged(cluster, ("n1", "n2")))
        return steps, cluster.cores["n1"].config.epoch, cluster.now_ms
    assert run() == run()


def test_writes_after_the_join_reach_both_nodes():
    cluster = Cluster(seed=3)
    cluster.add("n1")
    cluster.add("n2", seeds=("n1",))
    cluster.run_until(lambda: converged(cluster, ("n1", "n2")))
    reply = cluster.request("n1", coordinate(messages.COORD_SET, b"after", "v", quorum=2))
    assert (reply.status, reply.answered) == (messages.RESULT_OK, 2)
    partition = partition_of(b"after", PARTITIONS)
    assert all(cluster.storages[n].get(partition, b"after") is not None for n in ("n1", "n2"))
    # a coordinator still on epoch 1 counted quorums over {n1} alone: both replicas refuse it now
    for node_id in ("n1", "n2"):
        reply = cluster.request(node_id, lambda rid: batch(rid, 1, [OP_WRITE], [partition], [b"after"], [record()]))
        assert reply.statuses == bytes([STATUS_STALE])


@pytest.mark.parametrize(
    ("options", "fragments"),
    [
        ({"partitions": 16}, ["cluster has 8 partitions", "started with 16"]),
        ({"replication": 2}, ["cluster has replication 3", "started with 2"]),
    ],
)
def test_a_join_with_different_settings_is_refused_clearly(options, fragments):
    cluster = Cluster()
    cluster.add("n1")
    n2 = cluster.add("n2", seeds=("n1",), **options)
    cluster.run_until(lambda: "n2" in cluster.exit_codes, steps_max=200)
    assert cluster.exit_codes["n2"] == 2
    assert n2.config is None
    assert n2.fatal.startswith("join refused by n1: ")
    for fragment in fragments:
        assert fragment in n2.fatal
    # the cluster did not take the refused node in
    assert "n2" not in cluster.cores["n1"].table.members
    assert cluster.cores["n1"].config.ring == ("n1",)


def test_join_refusal_reply_names_both_partition_counts():
    cluster, core = lone_node()
    reply = cluster.request("n1", lambda rid: messages.Join(rid, "n9", "n9", "", 16, 3))
    assert isinstance(reply, messages.JoinReply)
    assert not reply.ok and reply.config is None
    assert reply.error == "cluster has 8 partitions but node n9 was started with 16"


def test_a_join_is_answered_with_the_config_and_members():
    cluster, core = lone_node()
    reply = cluster.request("n1", lambda rid: messages.Join(rid, "n9", "n9", "", PARTITIONS, 3))
    assert reply.ok and reply.error == ""
    assert reply.config == core.config.to_wire()
    assert [member[0] for member in reply.members] == ["n1"]


def test_a_node_with_a_lasting_backlog_answers_busy_and_recovers():
    from zkv.core.node import OVERLOAD_AFTER_MS

    cluster, core = lone_node()
    key = key_in(2)
    core.note_load(True, cluster.now_ms)  # frames left waiting, but not for long yet
    reply = cluster.request("n1", lambda rid: batch(rid, 1, [OP_WRITE], [2], [key], [record()]))
    assert reply.statuses == bytes([STATUS_OK])
    core.note_load(True, cluster.now_ms + OVERLOAD_AFTER_MS)
    assert core.overloaded
    reply = cluster.request("n1", lambda rid: batch(rid, 1, [OP_WRITE, OP_READ], [2, 2], [key, key],
                                                    [record(), None]))
    assert reply.statuses == bytes([messages.STATUS_BUSY]) * 2 and reply.records == [None]
    busy = cluster.request("n1", coordinate(messages.COORD_GET, key))
    assert busy.status == messages.RESULT_BUSY
    assert core.counters["busy_replies"] == 2
    core.note_load(False, cluster.now_ms + OVERLOAD_AFTER_MS + 1)
    reply = cluster.request("n1", lambda rid: batch(rid, 1, [OP_READ], [2], [key], [None]))
    assert reply.statuses == bytes([STATUS_OK]) and reply.records[0] is not None
