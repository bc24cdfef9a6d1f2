#!/usr/bin/env bash
# The issue's target table: 3 durable nodes started by the bench, RF=3, W=2, R=2,
# 100-byte values, the bench process as the client; every target run REPEAT times
# next to the ceiling in the matching shape; prints the median of each and the ratios.
#
#   benchmarks/targets.sh                 # ~5 minutes
#   DURATION=10 REPEAT=5 benchmarks/targets.sh
#   KEEP=results/ benchmarks/targets.sh   # keep the JSON of every run in results/
#
# Each line "== name: zkv bench ..." on stderr is the exact command of that step.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
DURATION=${DURATION:-5}   # seconds per run
WARMUP=${WARMUP:-1}       # seconds of unrecorded load before each run
REPEAT=${REPEAT:-3}
PIPELINE=(--batch 100 --concurrency 1600)   # 16 mset/mget calls of 100 ops in flight: the batched ceiling's shape

out=$(mktemp -d "${TMPDIR:-/tmp}/zkv-targets-XXXXXX")
cleanup() {
    if [ -n "${KEEP:-}" ]; then mkdir -p "$KEEP" && cp "$out"/*.json "$KEEP"/ 2>/dev/null || true; fi
    rm -rf "$out"
}
trap cleanup EXIT

common=(--start 3 --w 2 --value-bytes 100 --keys 100000 --duration "$DURATION" --warmup "$WARMUP"
        --repeat "$REPEAT" --json)
step() {
    local name=$1; shift
    echo "== $name: zkv bench ${common[*]} $*" >&2
    "$PYTHON" -m zkv bench "${common[@]}" "$@" > "$out/$name.json"
}

step set_sync      --workload set --concurrency 1 --ceiling
step get_sync_r2   --workload get --concurrency 1 --r 2 --ceiling
step get_sync_r1   --workload get --concurrency 1 --r 1 --ceiling
step set_pipelined --workload set "${PIPELINE[@]}" --ceiling
step get_pipelined --workload get "${PIPELINE[@]}" --r 2 --ceiling
half=$("$PYTHON" benchmarks/summarize.py half-rate "$out/set_pipelined.json")
step set_half_rate --workload set "${PIPELINE[@]}" --rate "$half"

echo
"$PYTHON" benchmarks/summarize.py targets "$out"
