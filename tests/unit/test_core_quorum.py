"""The quorum Coordinator driven by hand: batches out, replies in, time by on_tick."""

from __future__ import annotations

import pytest

from zkv.core import messages
from zkv.core.config import MOVING, SWITCHED, Config, NodeAddress, PartitionPlan, settled
from zkv.core.messages import (
    OP_READ,
    OP_WRITE,
    STATUS_BEHIND,
    STATUS_BUSY,
    STATUS_INVALID,
    STATUS_NOT_OWNER,
    STATUS_NOT_READY,
    STATUS_OK,
    STATUS_STALE,
)
from zkv.core.placement import partition_of
from zkv.core.quorum import (
    BATCH_OPS_MAX,
    ERROR_INVALID,
    ERROR_QUORUM,
    ERROR_TIMEOUT,
    ATTEMPT_TIMEOUT_MS,
    RETRY_BACKOFF_MS_MIN,
    Coordinator,
    InvalidInput,
)
from zkv.core.versions import VERSION_BYTES, decode_value, encode_value, is_tombstone

PARTITIONS = 4
EPOCH = 5
NOW_MS = 1_000_000
DEADLINE_MS = NOW_MS + 2000
ABC = ("a", "b", "c")


def make_config(epoch=EPOCH, plan=None, ring=ABC):
    plan = plan or settled(ABC, epoch)
    nodes = tuple(NodeAddress(n, f"{n}:1", "") for n in "abcdef")
    return Config(epoch, PARTITIONS, 3, ring, (1,) * len(ring), nodes, (plan,) * PARTITIONS)


def coordinator(config=None, **options) -> Coordinator:
    result = Coordinator(writer_id=7, **options)
    result.set_config(config or make_config())
    return result


def version(stamp: int, writer: int = 1) -> bytes:
    return stamp.to_bytes(8, "big") + writer.to_bytes(8, "big")


OLD = encode_value(version(10 << 16), "old")
NEW = encode_value(version(20 << 16), "new")


def frames_by_node(coord: Coordinator, now_ms=NOW_MS) -> dict[str, messages.Batch]:
    frames = coord.flush(now_ms)
    by_node = dict(frames)
    assert len(by_node) == len(frames), "more than one frame for a node"
    return by_node


def answer(coord, batch, status=STATUS_OK, records=None, now_ms=NOW_MS + 1, epoch=EPOCH):
    """Reply to a batch: the same status for every op, ``records`` for its read ops."""
    reads = batch.ops.count(OP_READ)
    if records is None:
        records = [None] * reads
    coord.on_reply(messages.BatchReply(batch.request_id, epoch, bytes([status]) * len(batch.ops), records), now_ms)


# -- writes ------------------------------------------------------------------------------------------

def test_writes_share_one_batch_per_node():
    coord = coordinator()
    keys = [b"k1", b"k2", b"k3", b"k4"]
    ops = [coord.submit_write(key, f"v-{key.decode()}", 0, NOW_MS, DEADLINE_MS) for key in keys]
    assert coord.has_outbox
    by_node = frames_by_node(coord)
    assert set(by_node) == set(ABC)
    for batch in by_node.values():
        assert batch.epoch == EPOCH
        assert batch.ops == bytes([OP_WRITE]) * 4
        assert batch.keys == keys
        assert batch.partitions == [partition_of(key, PARTITIONS) for key in keys]
        assert batch.records == [op.record for op in ops]
    assert [decode_value(op.record) for op in ops] == ["v-k1", "v-k2", "v-k3", "v-k4"]
    assert len({batch.request_id for batch in by_node.values()}) == 3
    assert coord.flush(NOW_MS) == []
    assert coord.inflight_requests() == 3


def test_a_write_succeeds_at_two_acks():
    coord = coordinator()
    op = coord.submit_write(b"k", "v", 0, NOW_MS, DEADLINE_MS, token="t")
    by_node = frames_by_node(coord)
    answer(coord, by_node["a"])
    assert not op.done
    answer(coord, by_node["c"])
    assert op.done and op.ok
    assert op.answered == 2
    assert sorted(op.acked) == ["a", "c"]
    assert coord.take_completed() == [op]
    assert coord.take_completed() == []
    answer(coord, by_node["b"])  # the late ack changes nothing
    assert coord.counters["ok"] == 1 and coord.pending_ops == 0


def run_silently(coord: Coordinator, until_ms: int, start_ms: int = NOW_MS) -> list[tuple[str, messages.Batch]]:
    """Jump from deadline to deadline up to until_ms; every frame sent meanwhile is lost."""
    now_ms = start_ms
    lost = []
    while True:
        deadline_ms = coord.next_deadline_ms()
        if deadline_ms is None or deadline_ms > until_ms:
            return lost
        now_ms = max(now_ms, deadline_ms)
        coord.on_tick(now_ms)
        lost.extend(coord.flush(now_ms))


def test_a_write_fails_at_the_deadline_saying_how_many_answered():
    coord = coordinator()
    op = coord.submit_write(b"k", "v", 0, NOW_MS, DEADLINE_MS)
    by_node = frames_by_node(coord)
    answer(coord, by_node["b"])
    lost = run_silently(coord, DEADLINE_MS - 1)
    assert not op.done, "gave up before the deadline"
    assert lost and {node for node, _ in lost} == {"a", "c"}, "b answered: retries go to the silent replicas"
    run_silently(coord, DEADLINE_MS)
    assert op.done and not op.ok
    assert op.error == ERROR_QUORUM
    assert op.detail == "1 of 2 replicas answered"
    assert op.answered == 1
    assert coord.take_completed() == [op]
    assert coord.inflight_requests() == 0
    assert run_silently(coord, DEADLINE_MS + ATTEMPT_TIMEOUT_MS, DEADLINE_MS) == []  # nothing left to send
    assert coord.next_deadline_ms() is None


def test_a_silent_replica_counts_as_failed_after_the_attempt_timeout():
    coord = coordinator()
    op = coord.submit_write(b"k", "v", 0, NOW_MS, DEADLINE_MS)
    by_node = frames_by_node(coord)
    answer(coord, by_node["a"])
    coord.on_tick(NOW_MS + ATTEMPT_TIMEOUT_MS - 1)
    assert coord.counters["retries"] == 0
    coord.on_tick(NOW_MS + ATTEMPT_TIMEOUT_MS)
    assert coord.counters["retries"] == 1
    retry_at_ms = coord.next_deadline_ms()
    coord.on_tick(retry_at_ms)
    retried = frames_by_node(coord, retry_at_ms)
    assert set(retried) == {"b", "c"}  # not a again: its ack still counts at this epoch
    answer(coord, retried["c"], now_ms=retry_at_ms + 1)
    assert op.ok and sorted(op.acked) == ["a", "c"]


@pytest.mark.parametrize(
    ("quorum", "acks_to_succeed"),
    [(0, 2), (1, 1), (2, 2), (3, 3)],  # 0 is the default (2)
)
def test_per_call_write_quorum(quorum, acks_to_succeed):
    coord = coordinator()
    op = coord.submit_write(b"k", "v", quorum, NOW_MS, DEADLINE_MS)
    by_node = frames_by_node(coord)
    for count, node in enumerate(ABC, start=1):
        answer(coord, by_node[node])
        assert op.done == (count >= acks_to_succeed)
    assert op.ok


def test_a_delete_is_a_tombstone_write():
    coord = coordinator()
    op = coord.submit_write(b"k", None, 0, NOW_MS, DEADLINE_MS)
    assert is_tombstone(op.record)
    assert frames_by_node(coord)["a"].records == [op.record]


def test_versions_follow_the_clock_and_what_was_read():
    coord = coordinator()
    first = coord.submit_write(b"k", "1", 0, NOW_MS, DEADLINE_MS)
    second = coord.submit_write(b"k", "2", 0, NOW_MS, DEADLINE_MS)
    assert first.version < second.version
    assert first.version[VERSION_BYTES - 8:] == (7).to_bytes(8, "big")


# -- reads -------------------------------------------------------------------------------------------

def test_a_read_returns_the_newest_record_and_repairs_the_older_replica():
    coord = coordinator()
    op = coord.submit_read(b"k", 0, DEADLINE_MS, token="r")
    by_node = frames_by_node(coord)
    assert all(batch.ops == bytes([OP_READ]) and batch.records == [None] for batch in by_node.values())
    answer(coord, by_node["a"], records=[OLD])
    assert not op.done
    answer(coord, by_node["b"], records=[NEW])
    assert op.done and op.ok
    assert op.newest == NEW and op.version == NEW[:VERSION_BYTES]
    assert op.answered == 2
    repairs = frames_by_node(coord)
    assert set(repairs) == {"a"}
    assert repairs["a"].ops == bytes([OP_WRITE])
    assert repairs["a"].records == [NEW]
    assert coord.counters["repairs"] == 1
    # the clock moved past what it read
    assert coord.submit_write(b"x", "v", 0, 0, DEADLINE_MS).version > NEW[:VERSION_BYTES]


def test_a_read_of_a_missing_key_is_ok_with_nothing():
    coord = coordinator()
    op = coord.submit_read(b"k", 0, DEADLINE_MS)
    by_node = frames_by_node(coord)
    answer(coord, by_node["a"], records=[None])
    answer(coord, by_node["c"], records=[None])
    assert op.ok and op.newest is None and op.version is None
    assert coord.flush(NOW_MS) == []  # nothing to repair


@pytest.mark.parametrize(
    ("late_record", "repaired"),
    [(OLD, True), (None, True), (NEW, False)],
)
def test_a_late_read_reply_after_completion_is_repaired(late_record, repaired):
    coord = coordinator()
    op = coord.submit_read(b"k", 0, DEADLINE_MS)
    by_node = frames_by_node(coord)
    answer(coord, by_node["a"], records=[NEW])
    answer(coord, by_node["b"], records=[NEW])
    assert op.done and coord.flush(NOW_MS) == []
    answer(coord, by_node["c"], records=[late_record])
    repairs = frames_by_node(coord)
    assert (set(repairs) == {"c"}) is repaired
    if repaired:
        assert repairs["c"].records == [NEW]


def test_a_missing_replica_is_repaired_with_a_tombstone():
    tombstone = encode_value(version(30 << 16), None)
    coord = coordinator()
    op = coord.submit_read(b"k", 0, DEADLINE_MS)
    by_node = frames_by_node(coord)
    answer(coord, by_node["a"], records=[None])
    answer(coord, by_node["b"], records=[tombstone])
    assert op.ok and op.newest == tombstone
    assert frames_by_node(coord)["a"].records == [tombstone]


def test_a_repair_reply_is_ignored():
    coord = coordinator()
    coord.submit_read(b"k", 0, DEADLINE_MS)
    by_node = frames_by_node(coord)
    answer(coord, by_node["a"], records=[OLD])
    answer(coord, by_node["b"], records=[NEW])
    repair = frames_by_node(coord)["a"]
    answer(coord, repair, status=STATUS_BEHIND)  # fire and forget: no retry, no failure
    assert coord.counters["failed"] == 0 and coord.flush(NOW_MS + 100) == []


@pytest.mark.parametrize("bad_record", [b"short", 12345, "a str record", OLD[:VERSION_BYTES]])
def test_a_malformed_read_record_counts_as_a_failed_replica(bad_record):
    coord = coordinator()
    op = coord.submit_read(b"k", 0, DEADLINE_MS)
    by_node = frames_by_node(coord)
    answer(coord, by_node["a"], records=[bad_record])
    answer(coord, by_node["b"], records=[NEW])
    assert not op.done  # a does not count
    answer(coord, by_node["c"], records=[NEW])
    assert op.ok and op.newest == NEW and sorted(op.replies) == ["b", "c"]


# -- stale configs -------------------------------------------------------------------------------------

@pytest.mark.parametrize("refusal", [STATUS_STALE, STATUS_NOT_OWNER])
def test_stale_parks_the_op_until_a_newer_config_reroutes_it(refusal):
    coord = coordinator()
    op = coord.submit_write(b"k", "v", 0, NOW_MS, DEADLINE_MS)
    by_node = frames_by_node(coord)
    answer(coord, by_node["a"], status=refusal, epoch=EPOCH + 1)
    assert coord.config_wanted and coord.config_wanted_from == "a"
    answer(coord, by_node["b"])
    answer(coord, by_node["c"])
    assert not op.done, "acks for an attempt routed by an outdated map must not count"
    assert coord.counters["stale"] == 1
    newer = make_config(EPOCH + 1, settled(("a", "b", "d"), EPOCH + 1), ring=("a", "b", "d"))
    coord.set_config(newer)
    assert not coord.config_wanted and coord.config_wanted_from is None
    rerouted = frames_by_node(coord)
    assert set(rerouted) == {"a", "b", "d"}
    assert all(batch.epoch == EPOCH + 1 and batch.records == [op.record] for batch in rerouted.values())
    answer(coord, rerouted["d"], epoch=EPOCH + 1)
    answer(coord, rerouted["a"], epoch=EPOCH + 1)
    assert op.ok and sorted(op.acked) == ["a", "d"]


def test_stale_from_a_replica_that_is_not_ahead_wants_a_config_from_anyone():
    coord = coordinator()
    coord.submit_write(b"k", "v", 0, NOW_MS, DEADLINE_MS)
    answer(coord, frames_by_node(coord)["a"], status=STATUS_STALE, epoch=EPOCH)
    assert coord.config_wanted and coord.config_wanted_from is None


def test_a_parked_op_fails_at_its_deadline():
    coord = coordinator()
    op = coord.submit_write(b"k", "v", 0, NOW_MS, DEADLINE_MS)
    by_node = frames_by_node(coord)
    for node in ABC:
        answer(coord, by_node[node], status=STATUS_STALE, epoch=EPOCH + 1)
    coord.on_tick(DEADLINE_MS)
    assert op.done and not op.ok and op.error == ERROR_QUORUM


def test_an_older_or_equal_config_is_ignored():
    coord = coordinator(make_config(EPOCH))
    coord.set_config(make_config(EPOCH - 1, settled(("d", "e", "f"), EPOCH - 1)))
    coord.set_config(make_config(EPOCH, settled(("d", "e", "f"), EPOCH)))
    coord.submit_write(b"k", "v", 0, NOW_MS, DEADLINE_MS)
    assert set(frames_by_node(coord)) == set(ABC)


def test_without_a_config_ops_wait_for_one():
    coord = Coordinator(writer_id=7)
    op = coord.submit_write(b"k", "v", 0, NOW_MS, DEADLINE_MS)
    assert coord.config_wanted and coord.partition_of(b"k") is None
    assert coord.flush(NOW_MS) == []
    coord.set_config(make_config())
    assert coord.partition_of(b"k") == partition_of(b"k", PARTITIONS)
    by_node = frames_by_node(coord)
    answer(coord, by_node["a"])
    answer(coord, by_node["b"])
    assert op.ok


def test_without_a_config_the_deadline_is_a_timeout():
    coord = Coordinator(writer_id=7)
    op = coord.submit_read(b"k", 0, DEADLINE_MS)
    coord.on_tick(DEADLINE_MS)
    assert op.done and op.error == ERROR_TIMEOUT
    assert "no node" in op.detail


# -- retries ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("refusal", [STATUS_BEHIND, STATUS_NOT_READY, STATUS_BUSY])
@pytest.mark.parametrize("kind", ["write", "read"])
def test_refusals_retry_with_backoff_and_complete_on_the_retry(refusal, kind):
    coord = coordinator()
    if kind == "write":
        op = coord.submit_write(b"k", "v", 0, NOW_MS, DEADLINE_MS)
    else:
        op = coord.submit_read(b"k", 0, DEADLINE_MS)
    version_before = op.version
    by_node = frames_by_node(coord)
    answer(coord, by_node["a"], status=refusal)
    assert coord.counters["retries"] == 0  # two more can still make the quorum
    answer(coord, by_node["b"], status=refusal)
    assert coord.counters["retries"] == 1 and not op.done
    retry_at_ms = coord.next_deadline_ms()
    assert NOW_MS + RETRY_BACKOFF_MS_MIN <= retry_at_ms < DEADLINE_MS
    coord.on_tick(retry_at_ms - 1)
    assert coord.flush(retry_at_ms - 1) == []
    coord.on_tick(retry_at_ms)
    retried = frames_by_node(coord, retry_at_ms)
    assert set(retried) == set(ABC)  # c has not answered yet either
    # c's answer to the first attempt still counts: same epoch, same owners
    answer(coord, by_node["c"], records=[NEW] if kind == "read" else None)
    assert not op.done
    answer(coord, retried["b"], records=[NEW] if kind == "read" else None)
    assert op.ok
    assert op.answered == 2
    if kind == "write":
        assert op.version == version_before  # a retry re-sends the same version: idempotent
        assert retried["b"].records == [op.record]


def test_backoff_grows_between_retries():
    coord = coordinator()
    coord.submit_write(b"k", "v", 0, NOW_MS, 10 * DEADLINE_MS)
    now_ms = NOW_MS
    gaps = []
    for _ in range(4):
        by_node = frames_by_node(coord, now_ms)
        for node in ("a", "b"):
            answer(coord, by_node[node], status=STATUS_NOT_READY, now_ms=now_ms)
        retry_at_ms = coord.next_deadline_ms()
        gaps.append(retry_at_ms - now_ms)
        now_ms = retry_at_ms
        coord.on_tick(now_ms)
    assert gaps == sorted(gaps) and gaps[-1] > gaps[0]


def test_no_retry_past_the_deadline():
    coord = coordinator()
    op = coord.submit_write(b"k", "v", 0, NOW_MS, NOW_MS + 5)
    by_node = frames_by_node(coord)
    for node in ("a", "b"):
        answer(coord, by_node[node], status=STATUS_NOT_READY)
    assert op.done and op.error == ERROR_QUORUM
    assert op.detail == "0 of 2 replicas answered"


def test_send_failures_count_against_the_attempt():
    coord = coordinator()
    op = coord.submit_write(b"k", "v", 0, NOW_MS, DEADLINE_MS)
    by_node = frames_by_node(coord)
    coord.on_send_failed(by_node["a"].request_id, NOW_MS)
    coord.on_send_failed(by_node["a"].request_id, NOW_MS)  # once only
    assert coord.counters["retries"] == 0
    coord.on_send_failed(by_node["b"].request_id, NOW_MS)
    assert coord.counters["retries"] == 1 and not op.done


def test_invalid_from_a_replica_fails_the_op():
    coord = coordinator()
    op = coord.submit_write(b"k", "v", 0, NOW_MS, DEADLINE_MS)
    answer(coord, frames_by_node(coord)["a"], status=STATUS_INVALID)
    assert op.done and not op.ok and op.error == ERROR_INVALID
    assert "replica a" in op.detail


@pytest.mark.parametrize("statuses", [b"", b"\x00\x00", b"\x00" * 5])
def test_a_reply_with_the_wrong_status_count_is_a_failure_of_that_node(statuses):
    coord = coordinator()
    op = coord.submit_write(b"k", "v", 0, NOW_MS, DEADLINE_MS)
    by_node = frames_by_node(coord)
    coord.on_reply(messages.BatchReply(by_node["a"].request_id, EPOCH, statuses, []), NOW_MS)
    answer(coord, by_node["b"])
    assert not op.done, "a garbled reply must not count as an ack"
    coord.on_reply(messages.BatchReply(by_node["c"].request_id, EPOCH, statuses, []), NOW_MS)
    assert coord.counters["retries"] == 1


def test_a_reply_to_an_unknown_request_is_ignored():
    coord = coordinator()
    coord.on_reply(messages.BatchReply(999, EPOCH, b"\x00", [None]), NOW_MS)
    assert coord.counters == {"ops": 0, "ok": 0, "failed": 0, "retries": 0, "stale": 0, "repairs": 0}


# -- moves ---------------------------------------------------------------------------------------------

MOVING_PLAN = PartitionPlan(ABC, ("c", "d", "e"), MOVING, (), (("d", 6), ("e", 6)), 6)


@pytest.mark.parametrize(
    ("acks", "satisfied"),
    [
        ("ab", False),  # W of old only
        ("de", False),  # W of new only
        ("abd", False),
        ("abc", False),  # c is in both, but new has 1 of 3
        ("acd", True),
        ("bcd", True),
        ("abde", True),
        ("c", False),
        ("cd", False),  # new has 2, old has 1
    ],
)
def test_a_write_during_a_move_needs_w_in_both_sets(acks, satisfied):
    coord = coordinator(make_config(6, MOVING_PLAN, ring=("c", "d", "e")))
    op = coord.submit_write(b"k", "v", 0, NOW_MS, DEADLINE_MS)
    by_node = frames_by_node(coord)
    assert set(by_node) == {"a", "b", "c", "d", "e"}
    for node in acks:
        answer(coord, by_node[node], epoch=6)
    assert op.done is satisfied


def test_reads_during_a_move_use_the_old_set_and_after_the_switch_the_new():
    coord = coordinator(make_config(6, MOVING_PLAN, ring=("c", "d", "e")))
    coord.submit_read(b"k", 0, DEADLINE_MS)
    assert set(frames_by_node(coord)) == set(ABC)
    switched = PartitionPlan(ABC, ("c", "d", "e"), SWITCHED, (), (), 7)
    coord.set_config(make_config(7, switched, ring=("c", "d", "e")))
    coord.submit_read(b"k2", 0, DEADLINE_MS)
    assert set(frames_by_node(coord)) == {"c", "d", "e"}
    coord.submit_write(b"k3", "v", 0, NOW_MS, DEADLINE_MS)
    assert set(frames_by_node(coord)) == {"a", "b", "c", "d", "e"}


def test_a_move_that_cannot_reach_w_in_the_new_set_is_retried():
    coord = coordinator(make_config(6, MOVING_PLAN, ring=("c", "d", "e")))
    op = coord.submit_write(b"k", "v", 0, NOW_MS, DEADLINE_MS)
    by_node = frames_by_node(coord)
    answer(coord, by_node["d"], status=STATUS_BUSY, epoch=6)
    assert coord.counters["retries"] == 0
    answer(coord, by_node["e"], status=STATUS_BUSY, epoch=6)  # new can now reach only 1 of 2
    assert coord.counters["retries"] == 1 and not op.done


# -- bad input -----------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("call", "complaint"),
    [
        (lambda c: c.submit_write(b"", "v", 0, NOW_MS, DEADLINE_MS), "must not be empty"),
        (lambda c: c.submit_read(b"", 0, DEADLINE_MS), "must not be empty"),
        (lambda c: c.submit_write(b"k" * 65, "v", 0, NOW_MS, DEADLINE_MS), "65 bytes; the limit is 64"),
        (lambda c: c.submit_read(b"k" * 65, 0, DEADLINE_MS), "limit is 64"),
        (lambda c: c.submit_write(b"k", "v" * 101, 0, NOW_MS, DEADLINE_MS), "101 bytes; the limit is 100"),
        (lambda c: c.submit_write(b"k", "\u00e9" * 51, 0, NOW_MS, DEADLINE_MS), "102 bytes"),  # UTF-8 size
        (lambda c: c.submit_write(b"k", b"x" * 101, 0, NOW_MS, DEADLINE_MS), "limit is 100"),
        (lambda c: c.submit_write(b"k", 42, 0, NOW_MS, DEADLINE_MS), "must be str or bytes, not int"),
        (lambda c: c.submit_write(b"k", ["v"], 0, NOW_MS, DEADLINE_MS), "not list"),
        (lambda c: c.submit_write(b"k", 1.5, 0, NOW_MS, DEADLINE_MS), "not float"),
    ],
)
def test_invalid_input_is_refused_before_anything_is_queued(call, complaint):
    coord = coordinator(key_bytes_max=64, value_bytes_max=100)
    with pytest.raises(InvalidInput, match=complaint):
        call(coord)
    assert not coord.has_outbox
    assert coord.flush(NOW_MS) == []
    assert coord.pending_ops == 0 and coord.counters["ops"] == 0


@pytest.mark.parametrize("kind", ["write", "read"])
def test_a_negative_quorum_is_invalid_input(kind):
    coord = coordinator()
    with pytest.raises(InvalidInput, match="quorum must be"):
        if kind == "write":
            coord.submit_write(b"k", "v", -1, NOW_MS, DEADLINE_MS)
        else:
            coord.submit_read(b"k", -3, DEADLINE_MS)
    assert coord.pending_ops == 0 and not coord.has_outbox


def test_values_at_the_limits_are_accepted():
    coord = coordinator(key_bytes_max=64, value_bytes_max=100)
    coord.submit_write(b"k" * 64, "v" * 100, 0, NOW_MS, DEADLINE_MS)
    coord.submit_write(b"k", b"", 0, NOW_MS, DEADLINE_MS)
    assert coord.pending_ops == 2


def test_a_huge_queue_is_split_into_bounded_batches():
    coord = coordinator()
    for index in range(BATCH_OPS_MAX + 1):
        coord.submit_write(b"k%d" % index, "v", 0, NOW_MS, DEADLINE_MS)
    frames = coord.flush(NOW_MS)
    sizes = sorted(len(batch.ops) for node, batch in frames if node == "a")
    assert sizes == [1, BATCH_OPS_MAX]
    assert len(frames) == 6


# -- known bugs ------------------------------------------------------------------------------------------

def test_ops_queued_before_a_config_change_are_not_counted_over_the_old_owner_set():
    coord = coordinator(make_config(EPOCH))
    op = coord.submit_write(b"k", "v", 0, NOW_MS, DEADLINE_MS)
    coord.set_config(make_config(6, MOVING_PLAN, ring=("c", "d", "e")))
    by_node = frames_by_node(coord)
    for node in ("a", "b"):
        if node in by_node:
            answer(coord, by_node[node], epoch=6)
    assert not op.done, "two acks from the old set alone do not make a quorum at epoch 6"


def test_a_malformed_late_read_reply_does_not_raise():
    coord = coordinator()
    op = coord.submit_read(b"k", 0, DEADLINE_MS)
    by_node = frames_by_node(coord)
    answer(coord, by_node["a"], records=[NEW])
    answer(coord, by_node["b"], records=[NEW])
    assert op.done
    answer(coord, by_node["c"], records=[12345])  # must be ignored (or counted), not raise
    assert coord.flush(NOW_MS) == []


def test_a_reply_with_too_few_records_is_not_an_answer():
    coord = coordinator()
    op = coord.submit_read(b"k", 0, DEADLINE_MS)
    by_node = frames_by_node(coord)
    answer(coord, by_node["a"], records=[])
    answer(coord, by_node["b"], records=[])
    assert not op.done


def test_a_flush_of_large_values_is_split_under_the_frame_limit():
    from zkv import wire
    from zkv.core.quorum import BATCH_BYTES_MAX

    coord = coordinator()
    value = b"x" * (4 << 20)  # 30 values of 4 MiB: one frame would be 120 MiB
    for index in range(30):
        coord.submit_write(b"big-%d" % index, value, 0, NOW_MS, DEADLINE_MS)
    frames = coord.flush(NOW_MS)
    per_node: dict = {}
    for node, batch in frames:
        assert len(wire.encode(batch)) <= min(wire.FRAME_BYTES_MAX, BATCH_BYTES_MAX + len(value) + 4096)
        per_node[node] = per_node.get(node, 0) + len(batch.keys)
    assert per_node == {node: 30 for node in per_node} and len(per_node) == 3
