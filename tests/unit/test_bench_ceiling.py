"""The ceiling workload, its latency recorder and its report table.

The ceiling tests start real echo server processes (on OS-assigned ports) once
per module and stop them in the fixture's teardown. No test asserts a speed:
counts, ordering and cleanup only.
"""

from __future__ import annotations

import json
import math
import os

import msgpack
import pytest
import zmq

from zkv.bench.ceiling import (
    CEILING_WIRE_VERSION,
    CeilingError,
    MODE_BATCHED,
    MODE_PIPELINED,
    MODE_SYNC,
    MODES,
    QuorumTracker,
    echo_reply,
    make_plan,
    request_frame,
    run_ceiling,
    run_ceiling_modes,
    start_echo_servers,
)
from zkv.bench.histogram import LatencyRecorder
from zkv.bench.report import ResultRow, format_table, rows_to_dicts

OPS = 2_000
DURATION_S_GENEROUS = 60.0  # ops_max, not the clock, must end these runs


def assert_no_process(pid: int) -> None:
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


@pytest.fixture(scope="module")
def servers():
    echo_servers = start_echo_servers(3)
    try:
        yield echo_servers
    finally:
        echo_servers.stop()
    for pid in echo_servers.pids:
        assert_no_process(pid)


def assert_ordered_summary(summary: dict, count: int) -> None:
    assert summary["count"] == count
    values = [summary[key] for key in ("p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms")]
    assert values == sorted(values), summary
    assert values[0] > 0


# ---------------------------------------------------------------------------
# Ceiling runs


@pytest.mark.parametrize(
    ("mode", "in_flight", "batch_ops", "frames_expected"),
    [
        (MODE_SYNC, None, None, OPS),
        (MODE_PIPELINED, None, None, OPS),
        (MODE_PIPELINED, 7, None, OPS),
        (MODE_BATCHED, None, None, OPS // 100),
        (MODE_BATCHED, 3, 64, math.ceil(OPS / 64)),  # last frame is partial
    ],
)
def test_mode_completes_exactly_ops_max(servers, mode, in_flight, batch_ops, frames_expected):
    result = run_ceiling(
        mode,
        duration_s=DURATION_S_GENEROUS,
        ops_max=OPS,
        in_flight=in_flight,
        batch_ops=batch_ops,
        servers=servers,
    )
    assert result.mode == mode
    assert result.ops == OPS
    assert result.frames == frames_expected
    assert result.errors == 0
    assert 0 <= result.late_replies <= result.frames
    assert result.seconds > 0
    assert_ordered_summary(result.latency.summary(), OPS)
    row = result.row()
    assert (row.workload, row.ops, row.errors) == (f"ceiling {mode}", OPS, 0)


def test_duration_bounds_a_run_before_ops_max(servers):
    result = run_ceiling(MODE_PIPELINED, duration_s=0.3, ops_max=10**9, servers=servers)
    assert 0 < result.ops < 10**9
    assert result.seconds < 10  # bounded, not a speed claim
    assert result.latency.count == result.ops


def test_run_ceiling_modes_reuses_servers(servers):
    results = run_ceiling_modes(MODES, duration_s=DURATION_S_GENEROUS, ops_max=500, batch_ops=50, servers=servers)
    assert [result.mode for result in results] == list(MODES)
    assert [result.ops for result in results] == [500, 500, 500]
    assert [result.plan.batch_ops for result in results] == [1, 1, 50]


def test_server_survives_malformed_frames(servers):
    context = zmq.Context()
    socket = context.socket(zmq.DEALER)
    socket.linger = 0
    try:
        socket.connect(servers.endpoints[0])
        for junk in [b"", b"\xc1", msgpack.packb([99, 1, []]), msgpack.packb({"a": 1}), msgpack.packb([1, 2, [3]])]:
            socket.send(junk)
        socket.send_multipart([b"two", b"frames"])
        socket.send(msgpack.packb([CEILING_WIRE_VERSION, 5, [[7, b"k", b"v"]]]))
        assert socket.poll(10_000, zmq.POLLIN), "server stopped answering after malformed frames"
        assert msgpack.unpackb(socket.recv()) == [CEILING_WIRE_VERSION, 5, [7]]
    finally:
        socket.close(linger=0)
        context.term()
    assert run_ceiling(MODE_SYNC, ops_max=100, servers=servers).ops == 100


def test_stop_ends_every_server_it_started():
    echo_servers = start_echo_servers(3)
    try:
        assert len(echo_servers.pids) == 3
        assert len(set(echo_servers.ports)) == 3
        for pid in echo_servers.pids:
            os.kill(pid, 0)  # alive: raises if not
    finally:
        echo_servers.stop()
    for pid in echo_servers.pids:
        assert_no_process(pid)
    echo_servers.stop()  # idempotent


def test_servers_are_stopped_when_the_with_block_raises():
    with pytest.raises(RuntimeError, match="boom"):
        with start_echo_servers(2) as echo_servers:
            pids = echo_servers.pids
            raise RuntimeError("boom")
    for pid in pids:
        assert_no_process(pid)


def test_run_ceiling_starts_and_stops_its_own_servers():
    result = run_ceiling(MODE_SYNC, ops_max=200)
    assert result.ops == 200


@pytest.mark.parametrize(
    "arguments",
    [
        {"mode": "turbo"},
        {"mode": MODE_SYNC, "in_flight": 2},
        {"mode": MODE_SYNC, "batch_ops": 10},
        {"mode": MODE_PIPELINED, "batch_ops": 10},
        {"mode": MODE_PIPELINED, "in_flight": 0},
        {"mode": MODE_PIPELINED, "in_flight": 100_000},
        {"mode": MODE_BATCHED, "batch_ops": 0},
        {"mode": MODE_BATCHED, "batch_ops": 10_000, "value_bytes": 1_000_000},
        {"mode": MODE_BATCHED, "in_flight": 1024, "batch_ops": 10_000, "value_bytes": 1_000},
        {"mode": MODE_SYNC, "ops_max": 0},
        {"mode": MODE_SYNC, "duration_s": 0},
        {"mode": MODE_SYNC, "value_bytes": -1},
    ],
)
def test_make_plan_rejects_misuse(arguments):
    with pytest.raises(ValueError):
        make_plan(**arguments)


def test_make_plan_fills_mode_defaults():
    assert (make_plan(MODE_SYNC).in_flight, make_plan(MODE_SYNC).batch_ops) == (1, 1)
    assert make_plan(MODE_PIPELINED).batch_ops == 1
    assert make_plan(MODE_BATCHED).batch_ops == 100


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (msgpack.packb([CEILING_WIRE_VERSION, 9, [[1, b"k", b"v"], [2, b"k", b"v"]]]), [CEILING_WIRE_VERSION, 9, [1, 2]]),
        (msgpack.packb([CEILING_WIRE_VERSION, 0, []]), [CEILING_WIRE_VERSION, 0, []]),
        (msgpack.packb([CEILING_WIRE_VERSION + 1, 9, []]), None),
        (msgpack.packb([CEILING_WIRE_VERSION, "9", []]), None),
        (msgpack.packb([CEILING_WIRE_VERSION, 9, [5]]), None),
        (msgpack.packb([CEILING_WIRE_VERSION, 9, [[]]]), None),
        (msgpack.packb([CEILING_WIRE_VERSION, 9, [{"id": 1}]]), None),
        (msgpack.packb([CEILING_WIRE_VERSION, 9]), None),
        (msgpack.packb(7), None),
        (b"\xc1", None),
        (b"", None),
    ],
)
def test_echo_reply(payload, expected):
    reply = echo_reply(payload)
    assert (None if reply is None else msgpack.unpackb(reply)) == expected


# ---------------------------------------------------------------------------
# Quorum tracker (no sockets)


def reply(frame_id: int, op_ids: list[int], version: int = CEILING_WIRE_VERSION) -> bytes:
    return msgpack.packb([version, frame_id, op_ids])


def test_tracker_completes_at_the_second_reply_and_counts_the_third_late():
    tracker = QuorumTracker(server_count=3, quorum=2)
    frame_id = tracker.on_sent(first_op_id=10, op_count=3, sent_at=1.5)
    assert tracker.outstanding == [1, 1, 1]
    assert tracker.on_reply(2, reply(frame_id, [10, 11, 12])) is None
    assert tracker.on_reply(0, reply(frame_id, [10, 11, 12])) == (3, 1.5)
    assert tracker.pending == {}
    assert tracker.on_reply(1, reply(frame_id, [10, 11, 12])) is None
    assert (tracker.late_replies, tracker.errors, tracker.outstanding) == (1, 0, [0, 0, 0])


def test_tracker_echo_server_reply_round_trip():
    tracker = QuorumTracker(server_count=1, quorum=1)
    frame_id = tracker.on_sent(first_op_id=0, op_count=2, sent_at=0.0)
    request = request_frame(frame_id, [[0, b"k0", b"v"], [1, b"k1", b"v"]])
    assert tracker.on_reply(0, echo_reply(request)) == (2, 0.0)


@pytest.mark.parametrize(
    "payload",
    [
        b"\xc1",
        b"",
        msgpack.packb(7),
        msgpack.packb([CEILING_WIRE_VERSION, 1]),
        msgpack.packb([CEILING_WIRE_VERSION, [1], [0]]),  # unhashable frame id
        reply(1, [0], version=CEILING_WIRE_VERSION + 1),
        reply(1, []),  # op ids not echoed
        reply(1, [5]),  # someone else's op
        reply(1, 0),  # not a list
        reply(2, [0]),  # a frame never sent
        reply(0, []),  # the readiness frame id is never a data frame
    ],
)
def test_tracker_counts_bad_replies_as_errors_without_raising(payload):
    tracker = QuorumTracker(server_count=3, quorum=2)
    tracker.on_sent(first_op_id=0, op_count=1, sent_at=0.0)
    assert tracker.on_reply(0, payload) is None
    assert (tracker.errors, tracker.late_replies) == (1, 0)
    assert tracker.outstanding == [1, 1, 1]  # a bad reply settles nothing
    assert tracker.on_reply(1, reply(1, [0])) is None
    assert tracker.on_reply(2, reply(1, [0])) == (1, 0.0)


def test_tracker_rejects_an_impossible_quorum():
    with pytest.raises(ValueError):
        QuorumTracker(server_count=3, quorum=4)


# ---------------------------------------------------------------------------
# Latency recorder


def test_recorder_summary_in_milliseconds():
    recorder = LatencyRecorder()
    for latency_us in range(1, 1001):
        recorder.record(latency_us / 1_000_000)
    summary = recorder.summary()
    assert summary["count"] == 1000
    assert summary["p50_ms"] == pytest.approx(0.5, rel=0.01)
    assert summary["p99_ms"] == pytest.approx(0.99, rel=0.01)
    assert summary["max_ms"] == pytest.approx(1.0, rel=0.01)


def test_recorder_merge_adds_counts_and_keeps_the_max():
    fast, slow = LatencyRecorder(), LatencyRecorder()
    fast.record(0.001, count=90)
    slow.record(0.100, count=10)
    fast.merge(slow)
    summary = fast.summary()
    assert summary["count"] == 100
    assert summary["p50_ms"] == pytest.approx(1.0, rel=0.01)
    assert summary["p99_ms"] == pytest.approx(100.0, rel=0.01)
    assert summary["max_ms"] == pytest.approx(100.0, rel=0.01)
    assert slow.count == 10  # the merged-in recorder is unchanged


def test_recorder_clamps_out_of_range_values_and_counts_them():
    recorder = LatencyRecorder()
    recorder.record(0.0)
    recorder.record(120.0)
    assert recorder.count == 2
    assert recorder.clamped_count == 2
    assert recorder.summary()["max_ms"] == pytest.approx(60_000, rel=0.01)


def test_empty_recorder_summary_is_zeros():
    assert LatencyRecorder().summary() == {
        "count": 0, "p50_ms": 0.0, "p90_ms": 0.0, "p99_ms": 0.0, "p999_ms": 0.0, "max_ms": 0.0
    }


def test_recorder_rejects_a_non_positive_count():
    with pytest.raises(ValueError):
        LatencyRecorder().record(0.001, count=0)


# ---------------------------------------------------------------------------
# Report


def sample_row(**overrides) -> ResultRow:
    fields = dict(
        workload="put",
        ops=12_345,
        seconds=2.5,
        ops_per_s=4938.0,
        p50_ms=0.25,
        p90_ms=0.5,
        p99_ms=1.25,
        p999_ms=2.0,
        max_ms=10.5,
    )
    fields.update(overrides)
    return ResultRow(**fields)


def test_table_is_aligned_and_omits_an_empty_ceiling_column():
    table = format_table([sample_row(), {**rows_to_dicts([sample_row()])[0], "workload": "ceiling sync", "errors": 3}])
    assert table.splitlines() == [
        "workload         ops  seconds  ops/s  p50 ms  p90 ms  p99 ms  p99.9 ms  max ms  errors",
        "------------  ------  -------  -----  ------  ------  ------  --------  ------  ------",
        "put           12,345     2.50  4,938   0.250   0.500   1.250     2.000  10.500       0",
        "ceiling sync  12,345     2.50  4,938   0.250   0.500   1.250     2.000  10.500       3",
    ]


def test_table_shows_vs_ceiling_and_a_dash_where_missing():
    ceiling = sample_row(workload="ceiling", ops_per_s=10_000.0)
    lines = format_table([ceiling, sample_row().with_ceiling(ceiling.ops_per_s)]).splitlines()
    assert lines[0].endswith("errors  vs ceiling")
    assert lines[2].endswith("0           -")
    assert lines[3].endswith("0       0.49x")
    assert len({len(line) for line in lines[:2]}) == 1


def test_rows_are_json_serializable():
    rows = rows_to_dicts([sample_row().with_ceiling(9876.0), {"workload": "raw", "ops": 1}])
    decoded = json.loads(json.dumps(rows))
    assert decoded[0]["vs_ceiling"] == pytest.approx(0.5, rel=0.001)
    assert decoded[1] == {"workload": "raw", "ops": 1}


def test_row_from_recorder():
    recorder = LatencyRecorder()
    recorder.record(0.002, count=400)
    row = ResultRow.from_recorder("get", 400, 2.0, recorder, errors=1)
    assert (row.ops_per_s, row.errors) == (200.0, 1)
    assert row.p50_ms == pytest.approx(2.0, rel=0.01)
    assert ResultRow.from_recorder("idle", 0, 0.0, LatencyRecorder()).ops_per_s == 0.0


def test_ceiling_ratio_is_none_without_a_ceiling():
    assert sample_row().with_ceiling(0.0).vs_ceiling is None


def test_rows_must_be_mappings_or_dataclasses():
    with pytest.raises(TypeError):
        format_table([("put", 1)])


def test_a_server_that_cannot_bind_fails_the_start():
    with pytest.raises(CeilingError, match="did not report a port"):
        start_echo_servers(2, host="256.0.0.1")
