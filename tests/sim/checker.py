"""Checks a simulation's history and final state against DESIGN's invariants.

1. No acknowledged write is lost: after healing, every key's record on its
   replicas has a version at least that of the newest acknowledged write.
2. No quorum read is older than a write acknowledged before the read started.
3. A deleted key does not come back: (2) covers reads; (1) the final state
   (a tombstone or its purge must not give way to an older value).
4. Replicas converge (the simulation's ``converged`` check; reported here).
5. No operation hangs: each one completes (either way) by its deadline.

Reads must also return exactly what some write wrote under that version.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from zkv.core.placement import partition_of
from zkv.core.versions import ZERO_VERSION, decode_value


@dataclass
class Verdict:
    violations: list[str] = field(default_factory=list)
    acknowledged_writes: int = 0
    reads_checked: int = 0
    failed_ops: int = 0

    @property
    def ok(self) -> bool:
        return not self.violations


def check_history(history, now_ms: int | None = None, timeout_ms: int | None = None) -> Verdict:
    verdict = Verdict()
    if now_ms is not None and timeout_ms is not None:
        for entry in history:
            if entry.end_ms is None and entry.start_ms + timeout_ms + 1000 < now_ms:
                verdict.violations.append(
                    f"{entry.kind} of {entry.key!r} started at {entry.start_ms} never completed")
            elif entry.end_ms is not None and entry.end_ms > entry.start_ms + timeout_ms + 50:
                verdict.violations.append(
                    f"{entry.kind} of {entry.key!r} took {entry.end_ms - entry.start_ms}ms, past its deadline")
    writes_by_key: dict[bytes, list] = defaultdict(list)
    by_version: dict[tuple[bytes, bytes], object] = {}
    for entry in history:
        if entry.kind in ("set", "delete"):
            writes_by_key[entry.key].append(entry)
            by_version[(entry.key, entry.version)] = entry
            if entry.ok:
                verdict.acknowledged_writes += 1
        if entry.ok is False:
            verdict.failed_ops += 1
    for entry in history:
        if entry.kind != "get" or not entry.ok:
            continue
        verdict.reads_checked += 1
        read_version = entry.version or ZERO_VERSION
        floor = max((w.version for w in writes_by_key[entry.key] if w.ok and w.end_ms < entry.start_ms),
                    default=ZERO_VERSION)
        if read_version < floor:
            verdict.violations.append(
                f"stale read of {entry.key!r} at {entry.start_ms}: got version {read_version.hex()} "
                f"but a write of version {floor.hex()} was acknowledged before the read started")
        if entry.version is not None:
            source = by_version.get((entry.key, entry.version))
            expected = None if source is None or source.kind == "delete" else source.value
            if source is None:
                verdict.violations.append(f"read of {entry.key!r} returned version {entry.version.hex()} nobody wrote")
            elif entry.read_value != expected:
                verdict.violations.append(f"read of {entry.key!r} returned {entry.read_value!r}, "
                                          f"but version {entry.version.hex()} wrote {expected!r}")
    return verdict


def check_final_state(sim, history, verdict: Verdict) -> None:
    """After convergence: each key's replicas hold at least its newest acknowledged version."""
    config = sim.newest_config()
    cores = {core.node_id: core for core in sim.cores()}
    newest_acked: dict[bytes, object] = {}
    for entry in history:
        if entry.kind in ("set", "delete") and entry.ok:
            current = newest_acked.get(entry.key)
            if current is None or entry.version > current.version:
                newest_acked[entry.key] = entry
    for key, write in newest_acked.items():
        partition = partition_of(key, config.partitions)
        for owner in config.plans[partition].new:
            core = cores.get(owner)
            if core is None:
                continue
            record = core.storage.get(partition, key)
            if write.kind == "delete":
                if record is not None and record[:16] < write.version:
                    verdict.violations.append(
                        f"deleted key {key!r} came back on {owner} with older value {decode_value(record)!r}")
                continue
            if record is None or record[:16] < write.version:
                got = "nothing" if record is None else f"version {record[:16].hex()}"
                verdict.violations.append(
                    f"acknowledged write of {key!r} (version {write.version.hex()}) lost on {owner}: has {got}")
