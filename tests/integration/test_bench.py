"""``zkv bench`` end to end: real node processes, the bench as its own process, JSON checked.

Every run is bounded by ``--ops`` (not the clock) so the counts are exact. No
test asserts a speed: counts, ordering, shapes, exit codes and clean-up only.
The few plain-function tests at the end cover the median and ceiling-shape
arithmetic the command relies on.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from zkv.bench.report import ResultRow
from zkv.bench.session import ceiling_arguments, median_row
from zkv.bench.workload import WorkloadPlan

BENCH_TIMEOUT_S = 180
PERCENTILE_FIELDS = ("p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms")
SMALL = ["--keys", "5000", "--warmup", "0.2", "--quiet"]  # fast runs: small key space, short warm-up


def bench(*arguments: str, timeout_s: float = BENCH_TIMEOUT_S) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "zkv", "bench", *arguments], capture_output=True, text=True,
                          timeout=timeout_s, stdin=subprocess.DEVNULL)


def bench_json(*arguments: str) -> dict:
    result = bench(*arguments, "--json")
    assert result.returncode == 0, f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return json.loads(result.stdout)


def zkv_rows(document: dict) -> list[dict]:
    return [row for row in document["rows"] if row["kind"] == "zkv"]


def assert_clean_row(row: dict, ops: int) -> None:
    assert row["ops"] == ops, row
    assert row["errors"] == 0, row
    percentiles = [row[field] for field in PERCENTILE_FIELDS]
    assert percentiles == sorted(percentiles), row
    assert percentiles[0] > 0, row
    assert row["ops_per_s"] > 0 and row["seconds"] > 0, row


def assert_no_process(pid: int) -> None:
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


# -- runs against clusters the bench starts ---------------------------------------------------------------

def test_set_and_get_rows_with_exact_counts():
    document = bench_json("--start", "3", "--memory", "--workload", "set", "--workload", "get", "--ops", "2000")
    rows = zkv_rows(document)
    assert [row["workload"] for row in rows] == ["set", "get"]
    for row in rows:
        assert_clean_row(row, 2000)
        assert row["vs_ceiling"] is None
        assert row["mode"] == "pipelined" and row["concurrency"] == 128
    assert rows[1]["misses"] == 0  # the key space was prefilled before the gets
    assert document["prefill"]["ops"] == 100_000 and document["prefill"]["errors"] == 0
    assert document["cluster"]["started"] and document["cluster"]["storage"] == "memory"
    environment = document["environment"]
    assert environment["cpu_count"] >= 1 and environment["python"] and environment["zkv_version"]
    assert document["parameters"]["ops"] == 2000 and not document["interrupted"]
    for pid in document["cluster"]["pids"]:
        assert_no_process(pid)


@pytest.mark.parametrize(("options", "mode", "calls_in_flight"), [
    (["--concurrency", "1"], "sync", 1),
    (["--batch", "100"], "batched", 16),
    (["--batch", "100", "--concurrency", "250"], "batched", 3),
])
def test_modes(options, mode, calls_in_flight):
    document = bench_json("--start", "3", "--memory", "--workload", "mixed", "--ops", "1000", *SMALL, *options)
    [row] = zkv_rows(document)
    assert_clean_row(row, 1000)
    assert (row["mode"], row["calls_in_flight"]) == (mode, calls_in_flight)
    assert row["misses"] == 0


def test_durable_nodes_by_default():
    document = bench_json("--start", "3", "--workload", "set", "--ops", "500", *SMALL)
    assert document["cluster"]["storage"] == "durable"
    [row] = zkv_rows(document)
    assert_clean_row(row, 500)


def test_ceiling_adds_a_ratio_column():
    arguments = ("--start", "3", "--memory", "--workload", "set", "--ops", "1000", "--ceiling", *SMALL)
    document = bench_json(*arguments)
    [row] = zkv_rows(document)
    [ceiling] = [row for row in document["rows"] if row["kind"] == "ceiling"]
    assert_clean_row(row, 1000)
    assert row["vs_ceiling"] > 0
    assert ceiling["workload"] == "ceiling pipelined" and ceiling["pair"] == "set" and ceiling["ops"] == 1000
    assert row["vs_ceiling"] == pytest.approx(row["ops_per_s"] / ceiling["ops_per_s"])

    table = bench(*arguments)
    assert table.returncode == 0, table.stderr
    assert "vs ceiling" in table.stdout
    set_line = next(line for line in table.stdout.splitlines() if line.startswith("set "))
    assert set_line.rstrip().endswith("x")


def test_repeat_reports_each_run_and_a_marked_median():
    document = bench_json("--start", "3", "--memory", "--workload", "set", "--ops", "300", "--repeat", "3", *SMALL)
    rows = zkv_rows(document)
    assert [(row["run"], row["median"]) for row in rows] == [(1, False), (2, False), (3, False), (None, True)]
    runs_per_s = sorted(row["ops_per_s"] for row in rows[:3])
    assert rows[3]["ops_per_s"] == pytest.approx(runs_per_s[1])

    table = bench("--start", "1", "--memory", "--workload", "set", "--ops", "200", "--repeat", "2", *SMALL)
    assert table.returncode == 0, table.stderr
    assert "set median*" in table.stdout and "set #2" in table.stdout


def test_rate_mode_spreads_the_starts():
    rate = 2000
    document = bench_json("--start", "3", "--memory", "--workload", "set", "--ops", "400", "--rate", str(rate),
                          "--concurrency", "8", *SMALL)
    [row] = zkv_rows(document)
    assert_clean_row(row, 400)
    assert row["rate_ops_per_s"] == rate
    assert row["seconds"] >= (400 - 1) / rate  # op i may not start before i / rate


# -- a running cluster ---------------------------------------------------------------------------------------

def test_against_a_running_cluster(make_cluster):
    cluster = make_cluster(3, memory=True)
    node = next(iter(cluster.nodes.values()))
    document = bench_json("--cluster", node.address, "--workload", "set", "--workload", "get", "--ops", "1000",
                          *SMALL)
    assert not document["cluster"]["started"] and document["cluster"]["members"] == 3
    rows = zkv_rows(document)
    assert [row["workload"] for row in rows] == ["set", "get"]
    for row in rows:
        assert_clean_row(row, 1000)
    assert all(node.running() for node in cluster.nodes.values())  # the bench leaves a cluster it did not start
    with cluster.client() as client:
        assert client.get(b"key:%012d" % 0) is not None  # prefilled through the bench


def test_unreachable_cluster_is_a_clear_error():
    from zkv.localcluster import free_port

    result = bench("--cluster", f"127.0.0.1:{free_port()}", "--ops", "10", "--quiet", timeout_s=60)
    assert result.returncode == 3
    assert "cannot reach the cluster" in result.stderr


# -- interruption -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_stops_every_process(signum):
    process = subprocess.Popen(
        [sys.executable, "-m", "zkv", "bench", "--start", "3", "--memory", "--workload", "set", "--workload", "get",
         "--duration", "120", "--warmup", "0", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    try:
        # stderr says when the set run begins (the cluster is up, the client connected)
        stderr_seen = ""
        while "set: running" not in stderr_seen:
            line = process.stderr.readline()
            assert line, f"the bench ended before its set run:\n{stderr_seen}"
            stderr_seen += line
        process.send_signal(signum)  # mid-run: the set workload has started
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    assert process.returncode == 130, stderr
    document = json.loads(stdout)
    assert document["interrupted"]
    assert document["cluster"]["pids"]
    for pid in document["cluster"]["pids"]:
        assert_no_process(pid)


# -- bad options --------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("options", "message"), [
    (["--ops", "0"], "--ops"),
    (["--value-bytes", "-1"], "--value-bytes"),
    (["--read-ratio", "2"], "--read-ratio"),
    (["--concurrency", "0"], "--concurrency"),
    (["--duration", "0"], "--duration"),
    (["--rate", "0"], "--rate"),
    (["--workload", "scan"], "--workload"),
    (["--cluster", "127.0.0.1:1", "--start", "3"], "choose one of --cluster"),
    (["--cluster", "127.0.0.1:1", "--memory"], "--memory applies to a cluster started with --start"),
    (["--cluster", "nonsense"], "not HOST:PORT"),
    (["--ceiling", "--batch", "10000", "--value-bytes", "10000"], "--ceiling cannot run this shape"),
])
def test_bad_options_exit_2_with_a_clear_message(options, message):
    result = bench(*options, timeout_s=60)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


# -- the arithmetic behind the rows ---------------------------------------------------------------------------

def make_row(ops_per_s: float, p99_ms: float, vs_ceiling: float | None) -> ResultRow:
    return ResultRow("set", 100, 1.0, ops_per_s, 1.0, 2.0, p99_ms, p99_ms, p99_ms, 0, vs_ceiling)


def test_median_row_is_the_median_of_each_column():
    rows = [make_row(100, 9.0, 0.5), make_row(300, 1.0, 0.7), make_row(200, 5.0, 0.1)]
    median = median_row(rows)
    assert (median.ops_per_s, median.p99_ms, median.vs_ceiling) == (200, 5.0, 0.5)
    assert median_row([make_row(1, 1.0, None)]).vs_ceiling is None


@pytest.mark.parametrize(("plan", "expected"), [
    (WorkloadPlan("set", concurrency=1), ("sync", None, None)),
    (WorkloadPlan("get", concurrency=64), ("pipelined", 64, None)),
    (WorkloadPlan("get", concurrency=5000), ("pipelined", 1024, None)),  # the ceiling's window limit
    (WorkloadPlan("set", concurrency=1600, batch_ops=100), ("batched", 16, 100)),
    (WorkloadPlan("set", concurrency=1, batch_ops=100), ("batched", 1, 100)),
])
def test_ceiling_shape_matches_the_plan(plan, expected):
    arguments = ceiling_arguments(plan)
    assert (arguments["mode"], arguments["in_flight"], arguments["batch_ops"]) == expected
    assert arguments["value_bytes"] == plan.value_bytes
