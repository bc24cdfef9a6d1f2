"""Workloads against a zkv cluster: the operations ``zkv bench`` issues and times.

This module owns one measured run of one workload (``run_workload``) and the
key-space prefill that gets need. It talks to the cluster only through a
``zkv.Client`` handed in by the caller, and reports through two small hooks
(a latency recorder and a progress callback), so the command line around it
owns processes, tables and progress bars.

Theory of operation. A plan picks one of three shapes, the same three as the
ceiling (``zkv.bench.ceiling``), so the two can be compared run for run::

    sync       concurrency 1, batch 0    client.set/get: one op at a time
    pipelined  concurrency C, batch 0    C set_async/get_async futures in flight
    batched    concurrency C, batch B    ceil(C / B) mset/mget calls of B ops in flight

Closed loop (the default): a new op starts when one completes, and latency is
measured from its submission to its completion. Open loop (``rate_ops_per_s``):
op i is scheduled at ``start + i / rate`` whatever happens to earlier ops, and
its latency is measured from that scheduled moment, so a stall that delays
later submissions shows up in their latency (no coordinated omission). The
in-flight bound still holds in open loop: an op that finds the window full
waits, and the wait is part of its latency.

Futures complete on the client's IO thread. Their callback only stamps the
completion time and queues the future; the bench thread takes completions off
that queue, records latencies and counts, and submits the next op. So one
thread owns the recorder and the counters, and the IO thread does as little
extra work per op as possible.

A batch's ops all complete together: each is recorded with the batch's
latency. A mixed batched workload picks get or set per batch, not per op.
Errors (``ZkvError``) are counted apart from successes, are not timed, and do
not stop the run. A get that finds no value counts as a success and a miss.
"""

from __future__ import annotations

import dataclasses
import math
import queue
import random
import time
from collections.abc import Callable

from zkv.bench.histogram import LatencyRecorder
from zkv.bench.report import ResultRow, ops_per_second
from zkv.client import PartialFailure
from zkv.errors import ZkvError

WORKLOAD_SET = "set"
WORKLOAD_GET = "get"
WORKLOAD_MIXED = "mixed"
WORKLOADS = (WORKLOAD_SET, WORKLOAD_GET, WORKLOAD_MIXED)

MODE_SYNC = "sync"
MODE_PIPELINED = "pipelined"
MODE_BATCHED = "batched"

KEY_COUNT_MAX = 2_000_000  # keys are built once, up front: ~55 bytes of memory each
VALUE_BYTES_MAX = 4 * 1_048_576  # the client's default value limit
CONCURRENCY_MAX = 100_000
BATCH_OPS_MAX = 10_000
DURATION_S_MAX = 24 * 3600.0
OPS_MAX_LIMIT = 1_000_000_000
RATE_OPS_PER_S_MAX = 10_000_000.0

PROGRESS_INTERVAL_S = 0.2
DRAIN_MARGIN_S = 10.0  # past the op timeout, how long the end of a run waits for in-flight ops
PREFILL_BATCH_OPS = 1_000
PREFILL_BATCHES_IN_FLIGHT = 8
KEY_FORMAT = b"key:%012d"  # redis-benchmark's key:__rand_int__ shape, so the two compare

ProgressCallback = Callable[[int], None]  # called with ops completed so far in the phase


class WorkloadError(RuntimeError):
    """The run could not go on: ops did not complete even after their timeout."""


def _require(condition: bool, message: str) -> None:
    """An invariant of this module; stays on under ``python -O``."""
    if not condition:
        raise WorkloadError(message)


@dataclasses.dataclass(frozen=True, slots=True)
class WorkloadPlan:
    """One validated run: what to do, in what shape, and its bounds."""

    workload: str
    key_count: int = 100_000
    value_bytes: int = 100
    read_ratio: float = 0.5  # mixed only: the fraction of ops that are gets
    concurrency: int = 1  # ops in flight
    batch_ops: int = 0  # ops per mset/mget call; 0 = one future per op
    duration_s: float = 10.0
    ops_max: int = OPS_MAX_LIMIT
    warmup_s: float = 0.0
    rate_ops_per_s: float | None = None  # None = closed loop
    timeout_s: float = 5.0  # per client call
    seed: int = 1

    def __post_init__(self) -> None:
        if self.workload not in WORKLOADS:
            raise ValueError(f"workload must be one of {WORKLOADS}, got {self.workload!r}")
        _check_range("key_count", self.key_count, 1, KEY_COUNT_MAX)
        _check_range("value_bytes", self.value_bytes, 0, VALUE_BYTES_MAX)
        _check_range("read_ratio", self.read_ratio, 0.0, 1.0)
        _check_range("concurrency", self.concurrency, 1, CONCURRENCY_MAX)
        _check_range("batch_ops", self.batch_ops, 0, BATCH_OPS_MAX)
        _check_range("ops_max", self.ops_max, 1, OPS_MAX_LIMIT)
        _check_range("warmup_s", self.warmup_s, 0.0, DURATION_S_MAX)
        _check_range("timeout_s", self.timeout_s, 0.001, DURATION_S_MAX)
        if not 0 < self.duration_s <= DURATION_S_MAX:
            raise ValueError(f"duration_s must be in (0, {DURATION_S_MAX}], got {self.duration_s}")
        if self.rate_ops_per_s is not None and not 0 < self.rate_ops_per_s <= RATE_OPS_PER_S_MAX:
            raise ValueError(f"rate_ops_per_s must be in (0, {RATE_OPS_PER_S_MAX}], got {self.rate_ops_per_s}")

    @property
    def mode(self) -> str:
        if self.batch_ops:
            return MODE_BATCHED
        return MODE_SYNC if self.concurrency == 1 else MODE_PIPELINED

    @property
    def calls_in_flight(self) -> int:
        """Client calls (ops, or batches of ops) kept in flight."""
        return math.ceil(self.concurrency / self.batch_ops) if self.batch_ops else self.concurrency

    @property
    def read_fraction(self) -> float:
        return {WORKLOAD_SET: 0.0, WORKLOAD_GET: 1.0}.get(self.workload, self.read_ratio)


def _check_range(name: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise ValueError(f"{name} must be in [{low}, {high}], got {value}")


@dataclasses.dataclass(slots=True, eq=False)
class WorkloadResult:
    """What one run measured. ``latency`` holds one value per successful op."""

    plan: WorkloadPlan
    ops: int  # successful ops
    errors: int
    misses: int  # gets that found no value (successes)
    seconds: float
    latency: LatencyRecorder

    @property
    def ops_per_s(self) -> float:
        return ops_per_second(self.ops, self.seconds)

    def row(self) -> ResultRow:
        return ResultRow.from_recorder(self.plan.workload, self.ops, self.seconds, self.latency, self.errors)


@dataclasses.dataclass(slots=True)
class _Tally:
    """Counts of one phase; owned by the bench thread."""

    ops: int = 0
    errors: int = 0
    misses: int = 0


def make_keys(key_count: int) -> list[bytes]:
    _check_range("key_count", key_count, 1, KEY_COUNT_MAX)
    return [KEY_FORMAT % index for index in range(key_count)]


def make_value(value_bytes: int) -> bytes:
    return b"v" * value_bytes


# ---------------------------------------------------------------------------
# Prefill


def prefill(client, keys: list[bytes], value: bytes, *, progress: ProgressCallback | None = None,
            timeout_s: float = 5.0) -> _Tally:
    """Write every key once with mset (a window of batches in flight); returns the tally."""
    tally = _Tally()
    window: list = []  # (future, op_count), oldest first

    def settle(future, op_count: int) -> None:
        try:
            future.result(timeout_s + DRAIN_MARGIN_S)
            tally.ops += op_count
        except ZkvError as error:
            succeeded = _succeeded_of(error)
            tally.errors += op_count - succeeded
            tally.ops += succeeded
        except TimeoutError:
            raise WorkloadError(f"a prefill batch did not complete within {timeout_s + DRAIN_MARGIN_S:g}s") from None
        if progress is not None:
            progress(tally.ops + tally.errors)

    for start in range(0, len(keys), PREFILL_BATCH_OPS):
        chunk = keys[start:start + PREFILL_BATCH_OPS]
        if len(window) >= PREFILL_BATCHES_IN_FLIGHT:
            settle(*window.pop(0))
        try:
            window.append((client.mset_async([(key, value) for key in chunk], timeout=timeout_s), len(chunk)))
        except ZkvError:
            tally.errors += len(chunk)
    for future, op_count in window:
        settle(future, op_count)
    return tally


# ---------------------------------------------------------------------------
# Runs


def warm_up(client, plan: WorkloadPlan, keys: list[bytes], *, progress: ProgressCallback | None = None) -> None:
    """Run the plan's shape, closed loop, for ``plan.warmup_s`` without recording anything."""
    _require(len(keys) == plan.key_count, f"{len(keys)} keys built for a key space of {plan.key_count}")
    if plan.warmup_s > 0:
        warmup = dataclasses.replace(plan, duration_s=plan.warmup_s, ops_max=OPS_MAX_LIMIT, rate_ops_per_s=None)
        _RUNNERS[plan.mode](client, warmup, keys, random.Random(~plan.seed), LatencyRecorder(), progress)


def run_workload(client, plan: WorkloadPlan, keys: list[bytes], *,
                 progress: ProgressCallback | None = None) -> WorkloadResult:
    """Run and measure the plan (no warm-up: see ``warm_up``)."""
    _require(len(keys) == plan.key_count, f"{len(keys)} keys built for a key space of {plan.key_count}")
    latency = LatencyRecorder()
    tally, seconds = _RUNNERS[plan.mode](client, plan, keys, random.Random(plan.seed), latency, progress)
    _require(latency.count == tally.ops, f"recorded {latency.count} latencies for {tally.ops} ops")
    _require(tally.ops + tally.errors <= plan.ops_max, f"{tally.ops + tally.errors} ops done, over {plan.ops_max}")
    return WorkloadResult(plan, tally.ops, tally.errors, tally.misses, seconds, latency)


def _run_sync(client, plan: WorkloadPlan, keys, rng, latency: LatencyRecorder,
              progress: ProgressCallback | None) -> tuple[_Tally, float]:
    """One op at a time through the synchronous API."""
    tally = _Tally()
    value = make_value(plan.value_bytes)
    key_count, read_fraction, timeout_s = len(keys), plan.read_fraction, plan.timeout_s
    interval_s = 1.0 / plan.rate_ops_per_s if plan.rate_ops_per_s else 0.0
    random_unit, perf_counter, record = rng.random, time.perf_counter, latency.record
    get, set_ = client.get, client.set
    started = perf_counter()
    deadline = started + plan.duration_s
    next_progress = started + PROGRESS_INTERVAL_S
    for index in range(plan.ops_max):
        now = perf_counter()
        if now >= deadline:
            break
        if interval_s:
            scheduled = started + index * interval_s
            if scheduled > now:
                time.sleep(scheduled - now)
            began = scheduled
        else:
            began = now
        key = keys[int(random_unit() * key_count)]
        try:
            if random_unit() < read_fraction:
                if get(key, timeout=timeout_s) is None:
                    tally.misses += 1
            else:
                set_(key, value, timeout=timeout_s)
        except ZkvError:
            tally.errors += 1
            continue
        ended = perf_counter()
        record(ended - began)
        tally.ops += 1
        if progress is not None and ended >= next_progress:
            next_progress = ended + PROGRESS_INTERVAL_S
            progress(tally.ops + tally.errors)
    seconds = perf_counter() - started
    if progress is not None:
        progress(tally.ops + tally.errors)
    return tally, seconds


def _run_windowed(plan: WorkloadPlan, latency: LatencyRecorder, progress: ProgressCallback | None,
                  ops_per_call: int, submit, settle) -> tuple[_Tally, float]:
    """The loop shared by the pipelined and batched modes.

    ``submit(op_count)`` starts one client call of ``op_count`` ops and returns
    ``(future, is_read)``; ``settle(tally, future, op_count, is_read)`` counts
    its outcome and returns how many of its ops succeeded. Keeps
    ``plan.calls_in_flight`` calls in flight until a bound is reached, then
    waits for every call still in flight.

    A future's done-callback runs on the client's IO thread and only stamps
    the completion time and queues ``(future, began, op_count, is_read,
    completed_at)``; this thread alone takes completions off the queue, so the
    recorder and the tally need no lock.
    """
    tally = _Tally()
    completions: queue.SimpleQueue = queue.SimpleQueue()
    put, empty, get = completions.put, completions.empty, completions.get
    record, perf_counter = latency.record, time.perf_counter
    capacity = plan.calls_in_flight
    interval_s = ops_per_call / plan.rate_ops_per_s if plan.rate_ops_per_s else 0.0
    ops_max = plan.ops_max
    in_flight = submitted = calls = 0
    started = perf_counter()
    deadline = started + plan.duration_s
    next_progress = started + PROGRESS_INTERVAL_S

    def complete(item) -> None:
        future, began, op_count, is_read, completed_at = item
        succeeded = settle(tally, future, op_count, is_read)
        if succeeded:
            record(completed_at - began, succeeded)

    while submitted < ops_max:
        now = perf_counter()
        if now >= deadline:
            break
        if now >= next_progress and progress is not None:
            next_progress = now + PROGRESS_INTERVAL_S
            progress(tally.ops + tally.errors)
        while not empty():
            complete(get())
            in_flight -= 1
        if in_flight >= capacity:  # window full: wait for one completion (or the next progress tick)
            try:
                complete(get(timeout=min(PROGRESS_INTERVAL_S, max(0.001, deadline - now))))
                in_flight -= 1
            except queue.Empty:
                pass  # nothing completed yet: check the deadline and the progress bar, then wait again
            continue
        if interval_s:
            scheduled = started + calls * interval_s
            if scheduled > now:
                time.sleep(min(scheduled - now, PROGRESS_INTERVAL_S))
                continue
            began = scheduled
        else:
            began = now
        op_count = min(ops_per_call, ops_max - submitted)
        submitted += op_count
        calls += 1
        try:
            future, is_read = submit(op_count)
        except ZkvError:
            tally.errors += op_count
            continue
        in_flight += 1
        future.add_done_callback(
            lambda done, began=began, op_count=op_count, is_read=is_read: put(
                (done, began, op_count, is_read, perf_counter())))
    drain_s = plan.timeout_s + DRAIN_MARGIN_S
    drain_deadline = perf_counter() + drain_s
    while in_flight:
        try:
            complete(get(timeout=max(0.001, drain_deadline - perf_counter())))
        except queue.Empty:
            raise WorkloadError(f"{in_flight} client calls still in flight {drain_s:g}s after the run ended") from None
        in_flight -= 1
    seconds = perf_counter() - started
    if progress is not None:
        progress(tally.ops + tally.errors)
    return tally, seconds


def _run_pipelined(client, plan: WorkloadPlan, keys, rng, latency: LatencyRecorder,
                   progress: ProgressCallback | None) -> tuple[_Tally, float]:
    """One future per op, ``plan.concurrency`` of them in flight."""
    value = make_value(plan.value_bytes)
    key_count, read_fraction, timeout_s = len(keys), plan.read_fraction, plan.timeout_s
    random_unit, get_async, set_async = rng.random, client.get_async, client.set_async

    def submit(op_count: int):
        key = keys[int(random_unit() * key_count)]
        if random_unit() < read_fraction:
            return get_async(key, timeout=timeout_s), True
        return set_async(key, value, timeout=timeout_s), False

    def settle(tally: _Tally, future, op_count: int, is_read: bool) -> int:
        try:
            result = future.result()
        except ZkvError:
            tally.errors += 1
            return 0
        if is_read and result is None:
            tally.misses += 1
        tally.ops += 1
        return 1

    return _run_windowed(plan, latency, progress, 1, submit, settle)


def _run_batched(client, plan: WorkloadPlan, keys, rng, latency: LatencyRecorder,
                 progress: ProgressCallback | None) -> tuple[_Tally, float]:
    """mset/mget calls of ``plan.batch_ops`` ops, ``plan.calls_in_flight`` of them in flight."""
    value = make_value(plan.value_bytes)
    key_count, read_fraction, timeout_s = len(keys), plan.read_fraction, plan.timeout_s
    random_unit, mget_async, mset_async = rng.random, client.mget_async, client.mset_async

    def submit(op_count: int):
        batch = [keys[int(random_unit() * key_count)] for _ in range(op_count)]
        if random_unit() < read_fraction:
            return mget_async(batch, timeout=timeout_s), True
        return mset_async([(key, value) for key in batch], timeout=timeout_s), False

    def settle(tally: _Tally, future, op_count: int, is_read: bool) -> int:
        try:
            result = future.result()
        except ZkvError as error:
            succeeded = _succeeded_of(error)
            tally.errors += op_count - succeeded
            tally.ops += succeeded
            return succeeded
        if is_read:
            tally.misses += result.count(None)
        tally.ops += op_count
        return op_count

    return _run_windowed(plan, latency, progress, plan.batch_ops, submit, settle)


def _succeeded_of(error: ZkvError) -> int:
    """Ops of a failed batch call that succeeded: a PartialFailure says how many, any other error none."""
    return error.succeeded if isinstance(error, PartialFailure) else 0


_RUNNERS = {MODE_SYNC: _run_sync, MODE_PIPELINED: _run_pipelined, MODE_BATCHED: _run_batched}
