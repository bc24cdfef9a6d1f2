"""Benchmark result rows, as an aligned text table and as JSON-ready dicts.

A row is one workload's outcome: how many operations completed, in how many
seconds, the latency percentiles in milliseconds, the error count and,
optionally, its throughput as a fraction of the ceiling's (``vs_ceiling``).
``ResultRow`` is the canonical shape; the formatters also take plain mappings
or any dataclass with the same field names, so callers are not forced through
one type. Missing optional fields print as ``-``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from zkv.bench.histogram import LatencyRecorder


@dataclasses.dataclass(frozen=True, slots=True)
class ResultRow:
    workload: str
    ops: int
    seconds: float
    ops_per_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    errors: int = 0
    vs_ceiling: float | None = None  # ops_per_s / the ceiling's ops_per_s

    def __post_init__(self) -> None:
        if self.ops < 0 or self.seconds < 0 or self.errors < 0:
            raise ValueError(f"negative count or duration in {self!r}")

    @classmethod
    def from_recorder(
        cls, workload: str, ops: int, seconds: float, latency: LatencyRecorder, errors: int = 0
    ) -> ResultRow:
        summary = latency.summary()
        return cls(
            workload=workload,
            ops=ops,
            seconds=seconds,
            ops_per_s=ops_per_second(ops, seconds),
            p50_ms=summary["p50_ms"],
            p90_ms=summary["p90_ms"],
            p99_ms=summary["p99_ms"],
            p999_ms=summary["p999_ms"],
            max_ms=summary["max_ms"],
            errors=errors,
        )

    def with_ceiling(self, ceiling_ops_per_s: float) -> ResultRow:
        """This row with ``vs_ceiling`` filled in against the ceiling's throughput."""
        return dataclasses.replace(self, vs_ceiling=ceiling_ratio(self.ops_per_s, ceiling_ops_per_s))


def ops_per_second(ops: int, seconds: float) -> float:
    return ops / seconds if seconds > 0 else 0.0


def ceiling_ratio(ops_per_s: float, ceiling_ops_per_s: float) -> float | None:
    """``ops_per_s`` as a fraction of the ceiling; None when the ceiling measured nothing."""
    return ops_per_s / ceiling_ops_per_s if ceiling_ops_per_s > 0 else None


def row_to_dict(row: Mapping[str, Any] | Any) -> dict[str, Any]:
    """A row as a plain dict (JSON-serializable when its values are)."""
    if isinstance(row, Mapping):
        return dict(row)
    if dataclasses.is_dataclass(row) and not isinstance(row, type):
        return dataclasses.asdict(row)
    raise TypeError(f"a row must be a mapping or a dataclass instance, not {type(row).__name__}")


def rows_to_dicts(rows: Iterable[Mapping[str, Any] | Any]) -> list[dict[str, Any]]:
    return [row_to_dict(row) for row in rows]


def _integer(value: Any) -> str:
    return f"{value:,}"


def _decimal(digits: int) -> Callable[[Any], str]:
    return lambda value: f"{value:,.{digits}f}"


def _ratio(value: Any) -> str:
    return f"{value:.2f}x"


# (field, header, formatter); numeric columns are right-aligned.
COLUMNS: tuple[tuple[str, str, Callable[[Any], str]], ...] = (
    ("workload", "workload", str),
    ("ops", "ops", _integer),
    ("seconds", "seconds", _decimal(2)),
    ("ops_per_s", "ops/s", _decimal(0)),
    ("p50_ms", "p50 ms", _decimal(3)),
    ("p90_ms", "p90 ms", _decimal(3)),
    ("p99_ms", "p99 ms", _decimal(3)),
    ("p999_ms", "p99.9 ms", _decimal(3)),
    ("max_ms", "max ms", _decimal(3)),
    ("errors", "errors", _integer),
    ("vs_ceiling", "vs ceiling", _ratio),
)
LEFT_ALIGNED = frozenset({"workload"})
OPTIONAL_COLUMNS = frozenset({"vs_ceiling"})  # shown only when some row has a value
MISSING = "-"
COLUMN_GAP = "  "


def format_table(rows: Iterable[Mapping[str, Any] | Any]) -> str:
    """An aligned text table, one line per row under a header and a rule."""
    records = rows_to_dicts(rows)
    columns = [
        column
        for column in COLUMNS
        if column[0] not in OPTIONAL_COLUMNS or any(record.get(column[0]) is not None for record in records)
    ]
    header = [title for _, title, _ in columns]
    body = [
        [MISSING if record.get(field) is None else formatter(record[field]) for field, _, formatter in columns]
        for record in records
    ]
    widths = [max(len(line[index]) for line in [header, *body]) for index in range(len(columns))]

    def render(cells: list[str]) -> str:
        aligned = [
            cell.ljust(width) if field in LEFT_ALIGNED else cell.rjust(width)
            for cell, width, (field, _, _) in zip(cells, widths, columns)
        ]
        return COLUMN_GAP.join(aligned).rstrip()

    rule = COLUMN_GAP.join("-" * width for width in widths)
    return "\n".join([render(header), rule, *(render(cells) for cells in body)])
