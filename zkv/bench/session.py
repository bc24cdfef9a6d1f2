"""One ``zkv bench`` invocation: workloads in sequence, repeats, ceiling pairs, medians, the JSON document.

This module owns the order of a session and the shape of what it reports. It
takes a connected client and, optionally, running ceiling echo servers from
its caller (``zkv.bench.cli``, which owns processes and terminal output), and
returns ``Measurement`` records.

Order: for each workload, for each repeat, the zkv run and then (with the
ceiling) a ceiling run of the matching shape right after it, so that drift
of the machine between runs hits both sides of each ratio alike. Gets need
keys: before the first workload that reads, the key space is written once
(``prefill``).

The ceiling shape of a plan::

    zkv mode     ceiling mode   frames in flight          ops per frame
    sync         sync           1                         1
    pipelined    pipelined      concurrency               1
    batched      batched        calls in flight           batch

(frames in flight are capped at the ceiling's own limits; the capped value is
reported). The ceiling is always closed loop and always write-shaped (the
value travels in the request), whatever the workload.

With ``repeat`` > 1 every run is reported and then a median row per workload
(and per ceiling): the median of each column over the runs, ``vs_ceiling``
included (the median of the per-run ratios, not a ratio of medians).
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from zkv.bench import workload as workloads
from zkv.bench.report import ResultRow

DOCUMENT_FORMAT = "zkv-bench/1"
NUMERIC_FIELDS = ("ops", "seconds", "ops_per_s", "p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms", "errors")
INTEGER_FIELDS = frozenset({"ops", "errors"})

KIND_ZKV = "zkv"
KIND_CEILING = "ceiling"

Say = Callable[[str], None]
ProgressFactory = Callable[[str, int | None], Any]  # (label, total ops or None) -> context manager with .report


@dataclasses.dataclass(frozen=True, slots=True)
class Measurement:
    """One row of the report: a zkv run, a ceiling run, or the median of several runs."""

    kind: str  # KIND_ZKV or KIND_CEILING
    workload: str  # "set" / "get" / "mixed"; the zkv workload a ceiling row was paired with
    run: int | None  # 1-based; None for a median row
    row: ResultRow
    details: dict

    @property
    def median(self) -> bool:
        return self.run is None

    def label(self, repeat: int) -> str:
        name = self.row.workload if self.kind == KIND_ZKV else f"{self.row.workload} ({self.workload})"
        if self.median:
            return f"{name} median*"
        return f"{name} #{self.run}" if repeat > 1 else name

    def as_dict(self) -> dict:
        record = dataclasses.asdict(self.row)
        record.update(kind=self.kind, pair=self.workload, run=self.run, median=self.median)
        record.update(self.details)
        return record


def plan_details(plan: workloads.WorkloadPlan, w: int, r: int) -> dict:
    return {
        "mode": plan.mode,
        "concurrency": plan.concurrency,
        "batch": plan.batch_ops,
        "calls_in_flight": plan.calls_in_flight,
        "w": w,
        "r": r,
        "read_ratio": plan.read_fraction,
        "rate_ops_per_s": plan.rate_ops_per_s,
        "key_count": plan.key_count,
        "value_bytes": plan.value_bytes,
    }


# ---------------------------------------------------------------------------
# The ceiling shape


def ceiling_arguments(plan: workloads.WorkloadPlan) -> dict:
    """Keyword arguments of ``zkv.bench.ceiling.make_plan`` for the shape that matches ``plan``."""
    from zkv.bench import ceiling

    if plan.mode == workloads.MODE_SYNC:
        in_flight, batch_ops = None, None
    elif plan.mode == workloads.MODE_PIPELINED:
        in_flight, batch_ops = min(plan.concurrency, ceiling.IN_FLIGHT_FRAMES_MAX), None
    else:
        frame_bytes = plan.batch_ops * (plan.value_bytes + ceiling.FRAME_OVERHEAD_BYTES_PER_OP)
        in_flight = max(1, min(plan.calls_in_flight, ceiling.IN_FLIGHT_FRAMES_MAX,
                               ceiling.IN_FLIGHT_BYTES_MAX // frame_bytes))
        batch_ops = plan.batch_ops
    return {
        "mode": plan.mode,  # the zkv modes are named after the ceiling's
        "duration_s": min(plan.duration_s, ceiling.DURATION_S_MAX),
        "ops_max": min(plan.ops_max, ceiling.OPS_MAX_LIMIT),
        "in_flight": in_flight,
        "batch_ops": batch_ops,
        "value_bytes": plan.value_bytes,
    }


def check_ceiling_shape(plan: workloads.WorkloadPlan) -> None:
    """Raise ValueError when the ceiling cannot take this shape (e.g. frames over its size limit)."""
    from zkv.bench import ceiling

    arguments = ceiling_arguments(plan)
    ceiling.make_plan(arguments.pop("mode"), **arguments)


def _run_ceiling(plan: workloads.WorkloadPlan, servers) -> tuple[ResultRow, dict]:
    from zkv.bench import ceiling

    arguments = ceiling_arguments(plan)
    result = ceiling.run_plan(ceiling.make_plan(arguments.pop("mode"), **arguments), servers.endpoints)
    details = {
        "mode": result.plan.mode,
        "calls_in_flight": result.plan.in_flight,
        "batch": result.plan.batch_ops if result.plan.mode == ceiling.MODE_BATCHED else 0,
        "value_bytes": result.plan.value_bytes,
        "late_replies": result.late_replies,
    }
    return result.row(), details


# ---------------------------------------------------------------------------
# Medians


def median_row(rows: list[ResultRow]) -> ResultRow:
    """Column by column median of ``rows`` (same workload)."""
    if not rows:
        raise ValueError("no rows to take the median of")
    values: dict[str, Any] = {}
    for field in NUMERIC_FIELDS:
        middle = statistics.median(getattr(row, field) for row in rows)
        values[field] = round(middle) if field in INTEGER_FIELDS else float(middle)
    ratios = [row.vs_ceiling for row in rows if row.vs_ceiling is not None]
    values["vs_ceiling"] = statistics.median(ratios) if ratios else None
    return ResultRow(workload=rows[0].workload, **values)


def _median_measurement(runs: list[Measurement]) -> Measurement:
    details = dict(runs[0].details)
    for key in ("misses", "late_replies"):
        if key in details:
            details[key] = round(statistics.median(run.details[key] for run in runs))
    return Measurement(runs[0].kind, runs[0].workload, None, median_row([run.row for run in runs]), details)


# ---------------------------------------------------------------------------
# The session


@dataclasses.dataclass(slots=True)
class PrefillOutcome:
    keys: int
    ops: int
    errors: int
    seconds: float

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(slots=True)
class Session:
    """Runs the plans against ``client`` and collects measurements as they complete."""

    client: Any
    plans: list[workloads.WorkloadPlan]
    w: int
    r: int
    repeat: int = 1
    prefill: bool = True
    ceiling_servers: Any = None
    progress: ProgressFactory | None = None
    say: Say = lambda message: None
    measurements: list[Measurement] = dataclasses.field(default_factory=list)
    prefill_outcome: PrefillOutcome | None = None

    def run(self) -> list[Measurement]:
        keys = workloads.make_keys(self.plans[0].key_count) if self.plans else []
        for plan in self.plans:
            if self.prefill and self.prefill_outcome is None and plan.read_fraction > 0:
                self._prefill(plan, keys)
            self._run_plan(plan, keys)
        return self.measurements

    def _prefill(self, plan: workloads.WorkloadPlan, keys: list[bytes]) -> None:
        self.say(f"prefilling {len(keys):,} keys with {plan.value_bytes}-byte values (mset)")
        started = time.perf_counter()
        with self._bar("prefill", len(keys)) as bar:
            tally = workloads.prefill(self.client, keys, workloads.make_value(plan.value_bytes),
                                      progress=bar.report, timeout_s=plan.timeout_s)
        self.prefill_outcome = PrefillOutcome(len(keys), tally.ops, tally.errors, time.perf_counter() - started)
        if tally.errors:
            self.say(f"warning: {tally.errors:,} prefill writes failed; gets of those keys will miss")

    def _run_plan(self, plan: workloads.WorkloadPlan, keys: list[bytes]) -> None:
        details = plan_details(plan, self.w, self.r)
        zkv_runs: list[Measurement] = []
        ceiling_runs: list[Measurement] = []
        for run in range(1, self.repeat + 1):
            run_plan = dataclasses.replace(plan, seed=plan.seed + run - 1)
            label = plan.workload if self.repeat == 1 else f"{plan.workload} #{run}"
            total = plan.ops_max if plan.ops_max < workloads.OPS_MAX_LIMIT else None
            self.say(f"{label}: running ({plan.mode}, {plan.calls_in_flight} call(s) in flight"
                     f"{f', {plan.batch_ops} ops each' if plan.batch_ops else ''})")
            if plan.warmup_s > 0:
                with self._bar(f"{label} warm-up", None) as bar:
                    workloads.warm_up(self.client, run_plan, keys, progress=bar.report)
            with self._bar(label, total) as bar:
                result = workloads.run_workload(self.client, run_plan, keys, progress=bar.report)
            row = result.row()
            self.say(f"{label}: {row.ops:,} ops in {row.seconds:.2f} s = {row.ops_per_s:,.0f} ops/s, "
                     f"p50 {row.p50_ms:.3f} ms, p99 {row.p99_ms:.3f} ms, {row.errors:,} errors"
                     + (f", {result.misses:,} gets found no value" if result.misses else ""))
            measurement = Measurement(KIND_ZKV, plan.workload, run, row, {**details, "misses": result.misses})
            if self.ceiling_servers is not None:
                self.say(f"ceiling {plan.mode} ({label})")
                ceiling_row, ceiling_details = _run_ceiling(run_plan, self.ceiling_servers)
                ceiling_measurement = Measurement(KIND_CEILING, plan.workload, run, ceiling_row, ceiling_details)
                measurement = dataclasses.replace(measurement, row=row.with_ceiling(ceiling_row.ops_per_s))
                zkv_runs.append(measurement)
                ceiling_runs.append(ceiling_measurement)
                self.measurements += [measurement, ceiling_measurement]
            else:
                zkv_runs.append(measurement)
                self.measurements.append(measurement)
        if self.repeat > 1:
            self.measurements.append(_median_measurement(zkv_runs))
            if ceiling_runs:
                self.measurements.append(_median_measurement(ceiling_runs))

    def _bar(self, label: str, total: int | None):
        return self.progress(label, total) if self.progress is not None else _NoProgress()


class _NoProgress:
    def __enter__(self) -> _NoProgress:
        return self

    def __exit__(self, *exc_info) -> None:
        return None

    report = None


# ---------------------------------------------------------------------------
# Output


def environment() -> dict:
    from importlib import metadata

    import zmq

    try:
        zkv_version = metadata.version("zkv")
    except metadata.PackageNotFoundError:
        from zkv import __version__ as zkv_version
    try:
        cpus_usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus_usable = os.cpu_count()
    return {
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": cpus_usable,
        "zkv_version": zkv_version,
        "pyzmq_version": zmq.pyzmq_version(),
        "libzmq_version": zmq.zmq_version(),
        "executable": sys.executable,
    }


def document(parameters: dict, cluster: dict, session: Session, *, interrupted: bool = False) -> dict:
    parameters = dict(parameters)
    return {
        "format": DOCUMENT_FORMAT,
        "started_at": parameters.pop("started_at", None),
        "finished_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "interrupted": interrupted,
        "parameters": parameters,
        "cluster": cluster,
        "environment": environment(),
        "prefill": session.prefill_outcome.as_dict() if session.prefill_outcome else None,
        "rows": [measurement.as_dict() for measurement in session.measurements],
    }


def table_rows(measurements: list[Measurement], repeat: int) -> list[dict]:
    """Rows for ``report.format_table``: each labelled with its run or as the median."""
    rows = []
    for measurement in measurements:
        record = dataclasses.asdict(measurement.row)
        record["workload"] = measurement.label(repeat)
        rows.append(record)
    return rows
