#!/usr/bin/env bash
# redis-server and zkv side by side, in the same shapes, on this machine.
#
#   redis: one redis-server (appendonly yes, appendfsync always: every write is
#          fsynced before it is acknowledged), measured by its own redis-benchmark
#          with one connection (-c 1), 1 request in flight (-P 1) and 100 pipelined (-P 100).
#   zkv:   zkv bench with 3 durable nodes it starts (RF=3, W=2, R=2): one op at a time
#          (--concurrency 1) and one mset/mget call of 100 in flight (--batch 100 --concurrency 100).
# Both: 100-byte values, 100,000 random keys, the key space written before the gets.
#
#   benchmarks/redis_compare.sh
#   N_SYNC=20000 N_PIPELINED=500000 benchmarks/redis_compare.sh
#
# Skipped (exit 0, with a message) when redis-server or redis-benchmark is not installed
# (Debian: apt-get install redis-server). The redis-server started here is stopped by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
N_SYNC=${N_SYNC:-10000}           # requests per op in the 1-in-flight shape
N_PIPELINED=${N_PIPELINED:-300000} # requests per op in the pipelined shape
KEYS=100000
VALUE_BYTES=100

for tool in redis-server redis-benchmark redis-cli; do
    if ! command -v "$tool" > /dev/null; then
        echo "redis_compare: skipped, $tool is not installed (Debian: apt-get install redis-server)"
        exit 0
    fi
done

out=$(mktemp -d "${TMPDIR:-/tmp}/zkv-redis-XXXXXX")
redis_pid=
cleanup() {
    if [ -n "$redis_pid" ] && kill -0 "$redis_pid" 2> /dev/null; then
        kill "$redis_pid"
        wait "$redis_pid" 2> /dev/null || true
    fi
    if [ -n "${KEEP:-}" ]; then mkdir -p "$KEEP" && cp "$out"/*.csv "$out"/*.json "$KEEP"/ 2>/dev/null || true; fi
    rm -rf "$out"
}
trap cleanup EXIT

port=$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
redis-server --port "$port" --bind 127.0.0.1 --dir "$out" --appendonly yes --appendfsync always --save '' \
    --daemonize no --logfile "$out/redis.log" &
redis_pid=$!
for _ in $(seq 100); do
    if redis-cli -p "$port" ping > /dev/null 2>&1; then break; fi
    sleep 0.1
done
redis-cli -p "$port" ping > /dev/null || { echo "redis-server did not start:"; cat "$out/redis.log"; exit 1; }
fsync=$(redis-cli -p "$port" config get appendfsync | tail -n 1)
[ "$fsync" = always ] || { echo "redis-server runs with appendfsync $fsync, not always"; exit 1; }

rb() { redis-benchmark -h 127.0.0.1 -p "$port" -c 1 -d "$VALUE_BYTES" -r "$KEYS" "$@"; }
echo "== redis prefill: redis-benchmark -h 127.0.0.1 -p $port -c 1 -d $VALUE_BYTES -r $KEYS -t set -n $((KEYS * 4)) -P 100 -q" >&2
rb -t set -n $((KEYS * 4)) -P 100 -q > /dev/null
echo "== redis 1 in flight: redis-benchmark -h 127.0.0.1 -p $port -c 1 -d $VALUE_BYTES -r $KEYS -t set,get -n $N_SYNC -P 1 --csv" >&2
rb -t set,get -n "$N_SYNC" -P 1 --csv > "$out/redis_p1.csv"
echo "== redis pipelined: redis-benchmark -h 127.0.0.1 -p $port -c 1 -d $VALUE_BYTES -r $KEYS -t set,get -n $N_PIPELINED -P 100 --csv" >&2
rb -t set,get -n "$N_PIPELINED" -P 100 --csv > "$out/redis_p100.csv"
kill "$redis_pid"; wait "$redis_pid" 2> /dev/null || true; redis_pid=

common=(--start 3 --w 2 --r 2 --value-bytes "$VALUE_BYTES" --keys "$KEYS" --workload set --workload get
        --warmup 1 --duration 60 --json --quiet)
echo "== zkv 1 in flight: zkv bench ${common[*]} --concurrency 1 --ops $N_SYNC" >&2
"$PYTHON" -m zkv bench "${common[@]}" --concurrency 1 --ops "$N_SYNC" > "$out/zkv_p1.json"
echo "== zkv pipelined: zkv bench ${common[*]} --batch 100 --concurrency 100 --ops $N_PIPELINED" >&2
"$PYTHON" -m zkv bench "${common[@]}" --batch 100 --concurrency 100 --ops "$N_PIPELINED" > "$out/zkv_p100.json"

echo
"$PYTHON" benchmarks/summarize.py redis "$out"
