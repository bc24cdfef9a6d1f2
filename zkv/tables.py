"""Aligned text tables for the CLI and the shell (stats, cluster, partitions)."""

from __future__ import annotations


def format_table(headers: list[str], rows: list[list], right: set[int] | None = None) -> str:
    """Columns padded to their widest cell; ``right`` holds the indexes of right-aligned columns."""
    right = right or set()
    cells = [[str(cell) for cell in row] for row in rows]
    widths = [len(header) for header in headers]
    for row in cells:
        for index, cell in enumerate(row):
            widths[index] = max(widths[index], len(cell))

    def line(values: list[str]) -> str:
        parts = [value.rjust(widths[i]) if i in right else value.ljust(widths[i]) for i, value in enumerate(values)]
        return "  ".join(parts).rstrip()

    output = [line(headers), line(["-" * width for width in widths])]
    output.extend(line(row) for row in cells)
    return "\n".join(output)


def format_cluster(data: dict) -> str:
    rows = [[m["node_id"], m["address"], m.get("http_address") or "-", m["state"], m["incarnation"],
             m["epoch"], m["primary"], m["replica"], m["pending"]]
            for m in data.get("members", [])]
    table = format_table(["NODE", "ADDRESS", "HTTP", "STATE", "INCARNATION", "EPOCH", "PRIMARY", "REPLICA", "PENDING"],
                         rows, right={4, 5, 6, 7, 8})
    return f"{table}\n\nepoch {data.get('epoch')}, claimant {data.get('claimant')}, as seen by {data.get('node_id')}"


def format_partitions(data: dict) -> str:
    rows = [[p["partition"], p["primary"] or "-", ", ".join(p["replicas"]), ", ".join(p["pending"]) or "-",
             p["phase"]] for p in data.get("partitions", [])]
    table = format_table(["PARTITION", "PRIMARY", "REPLICAS", "PENDING", "PHASE"], rows, right={0})
    return f"{table}\n\nepoch {data.get('epoch')}, replication {data.get('replication')}"


def format_stats(data: dict) -> str:
    partitions = data.get("partitions", {})
    handoff = data.get("handoff", {})
    lines = [
        f"node               {data.get('node_id')} ({data.get('state')}, epoch {data.get('epoch')})",
        f"local keys         {data.get('local_keys')}",
        f"partitions         {partitions.get('primary', 0)} primary, {partitions.get('replica', 0)} replica, "
        f"{partitions.get('pending', 0)} pending",
        f"handoff            {handoff.get('partitions_moved', 0)} partitions, {handoff.get('bytes_moved', 0)} bytes "
        f"moved; {len(handoff.get('active', []))} in progress",
    ]
    ops = data.get("ops", {})
    if ops:
        lines.append("counters")
        width = max(len(name) for name in ops)
        lines.extend(f"  {name.ljust(width)}  {value}" for name, value in sorted(ops.items()))
    return "\n".join(lines)
