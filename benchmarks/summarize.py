"""Tables for the benchmark scripts, from the JSON that ``zkv bench --json`` writes.

    python benchmarks/summarize.py half-rate RESULT.json       the rate for the p99 run: half the median ops/s
    python benchmarks/summarize.py targets DIR                 the issue's target table (targets.sh)
    python benchmarks/summarize.py redis DIR                   redis-benchmark vs zkv bench (redis_compare.sh)

Only the standard library: the scripts may run it with any python3.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

# (file stem written by targets.sh, what the issue asks, workload, check on the median row)
TARGETS = (
    ("set_sync", "set, one in flight", "set", ("vs_ceiling", 0.60)),
    ("get_sync_r2", "get R=2, one in flight", "get", ("vs_ceiling", 0.60)),
    ("get_sync_r1", "get R=1, one in flight", "get", ("vs_ceiling", 0.75)),
    ("set_pipelined", "set pipelined (mset 100)", "set", ("ops_per_s", 100_000), ("vs_ceiling", 0.15)),
    ("get_pipelined", "get pipelined (mget 100)", "get", ("ops_per_s", 150_000)),
    ("set_half_rate", "set at half the pipelined max rate", "set", ("p99_ms_max", 5.0)),
)


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def median_rows(document: dict, kind: str) -> list[dict]:
    """The median row of each workload of one kind ("zkv" or "ceiling"); the only run when there was one."""
    rows = [row for row in document["rows"] if row["kind"] == kind]
    medians = [row for row in rows if row["median"]]
    return medians or rows


def zkv_median(document: dict, workload: str) -> dict:
    return next(row for row in median_rows(document, "zkv") if row["workload"] == workload)


def ceiling_median(document: dict, workload: str) -> dict | None:
    return next((row for row in median_rows(document, "ceiling") if row["pair"] == workload), None)


def table(header: list[str], body: list[list[str]]) -> str:
    widths = [max(len(line[index]) for line in [header, *body]) for index in range(len(header))]

    def render(cells: list[str]) -> str:
        return "  ".join(cell.ljust(width) if index == 0 else cell.rjust(width)
                         for index, (cell, width) in enumerate(zip(cells, widths))).rstrip()

    return "\n".join([render(header), "  ".join("-" * width for width in widths), *map(render, body)])


def number(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


# -- targets ---------------------------------------------------------------------------------------------------

def check(row: dict, goal: tuple[str, float]) -> tuple[str, bool | None]:
    field, bound = goal
    if field == "p99_ms_max":
        return f"p99 <= {bound:g} ms", row["p99_ms"] <= bound
    if field == "vs_ceiling":
        value = row.get("vs_ceiling")
        return f">= {bound:.0%} of ceiling", None if value is None else value >= bound
    return f">= {bound:,.0f}/s", row[field] >= bound


def targets(directory: Path) -> int:
    header = ["target", "ops/s", "p50 ms", "p99 ms", "errors", "ceiling ops/s", "vs ceiling", "goal", "met"]
    body = []
    environment = None
    for stem, title, workload, *goals in TARGETS:
        path = directory / f"{stem}.json"
        if not path.exists():
            body.append([title, *["-"] * 6, "not run", "-"])
            continue
        document = load(path)
        environment = environment or document["environment"]
        row = zkv_median(document, workload)
        ceiling = ceiling_median(document, workload)
        results = [check(row, goal) for goal in goals]
        met = "-" if any(ok is None for _, ok in results) else ("yes" if all(ok for _, ok in results) else "NO")
        if stem == "set_half_rate":
            title += f" ({row['rate_ops_per_s']:,.0f}/s)"
        body.append([title, number(row["ops_per_s"]), number(row["p50_ms"], 3), number(row["p99_ms"], 3),
                     number(row["errors"]), number(ceiling["ops_per_s"]) if ceiling else "-",
                     ratio(row.get("vs_ceiling")), "; ".join(goal for goal, _ in results), met])
    print(table(header, body))
    if environment:
        print(f"\nmedians of each run's rows; python {environment['python']}, {environment['cpus_usable']} usable "
              f"CPU(s) of {environment['cpu_count']}, zkv {environment['zkv_version']}, "
              f"libzmq {environment['libzmq_version']}")
    return 0


def half_rate(path: Path) -> int:
    document = load(path)
    row = zkv_median(document, "set")
    print(f"{row['ops_per_s'] / 2:.0f}")
    return 0


# -- redis -----------------------------------------------------------------------------------------------------

def redis_rows(path: Path) -> dict[str, dict]:
    """redis-benchmark --csv: {"SET": {...}, "GET": {...}} with rps and latencies (ms) as floats."""
    with path.open(newline="") as handle:
        return {row["test"].split()[0].upper(): {key: float(value) for key, value in row.items() if key != "test"}
                for row in csv.DictReader(handle)}


def redis(directory: Path) -> int:
    header = ["shape", "op", "redis ops/s", "redis p50", "redis p99", "zkv ops/s", "zkv p50", "zkv p99",
              "zkv/redis"]
    body = []
    for stem, shape in (("p1", "1 in flight (-P 1 / sync)"), ("p100", "100 pipelined (-P 100 / mset,mget 100)")):
        redis_csv, zkv_json = directory / f"redis_{stem}.csv", directory / f"zkv_{stem}.json"
        if not (redis_csv.exists() and zkv_json.exists()):
            continue
        redis_results, zkv_document = redis_rows(redis_csv), load(zkv_json)
        for workload in ("set", "get"):
            theirs = redis_results.get(workload.upper())
            ours = zkv_median(zkv_document, workload)
            body.append([shape, workload,
                         number(theirs["rps"]) if theirs else "-",
                         number(theirs["p50_latency_ms"], 3) if theirs else "-",
                         number(theirs["p99_latency_ms"], 3) if theirs else "-",
                         number(ours["ops_per_s"]), number(ours["p50_ms"], 3), number(ours["p99_ms"], 3),
                         f"{ours['ops_per_s'] / theirs['rps']:.2f}x" if theirs and theirs["rps"] else "-"])
    print(table(header, body))
    print("\nredis: 1 node, appendonly yes, appendfsync always; zkv: 3 durable nodes, RF=3, W=2, R=2; "
          "latencies in ms")
    return 0


def main(argv: list[str]) -> int:
    commands = {"targets": targets, "half-rate": half_rate, "redis": redis}
    if len(argv) != 2 or argv[0] not in commands:
        print(__doc__, file=sys.stderr)
        return 2
    return commands[argv[0]](Path(argv[1]))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
