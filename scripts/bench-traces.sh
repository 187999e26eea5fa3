#!/usr/bin/env bash
# Replays the traces in traces/ with trace-bench, in-process on s3:// (s3rver) behind the
# S3 latency and bandwidth front (s3-front: 25 ms before every request, 150 MB/s per
# connection and direction, roughly real S3 in region), one fresh volume per trace, and
# prints trace-bench's report: per trace, latency percentiles per op kind and object-store
# requests per op; then the tables comparing the traces and the front's own counters.
# Prints numbers; it is not a pass/fail test.
#
#   scripts/bench-traces.sh
#   ITERATIONS=3 WARMUP=1 scripts/bench-traces.sh
#   LATENCY_MS=0 CONN_MBPS=0 scripts/bench-traces.sh       the front as a plain proxy
#   scripts/bench-traces.sh traces/pgbench.json            some traces only
#   S3_FRONT=/path/to/s3-front scripts/bench-traces.sh     another front binary
#
# Without the s3-front binary (default: s3-front in the build directory) it says so and
# replays on s3rver directly, without added latency. s3rver has no conditional writes, so
# the volumes run without fencing (--unsafe-no-fencing). trace-bench's request counts are
# the replay's and the final close's (not the volume open's); the front's count every HTTP
# request of the run, opens, retries and CheckAccess included.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build="${PORTALBD_BUILD_DIR:-$root/build}"
front="${S3_FRONT:-$build/s3-front}"
s3rver="${PORTALBD_S3RVER:-$root/.deps/s3rver/node_modules/s3rver/bin/s3rver.js}"
latency_ms="${LATENCY_MS:-25}"
conn_mbps="${CONN_MBPS:-150}"
iterations="${ITERATIONS:-1}"
warmup="${WARMUP:-0}"

[ -x "$build/trace-bench" ] || { echo "bench-traces: $build/trace-bench not built"; exit 1; }
command -v node >/dev/null || { echo "bench-traces: node is missing (run scripts/setup.sh)"; exit 1; }
[ -f "$s3rver" ] || { echo "bench-traces: s3rver is not installed at $s3rver (run scripts/setup.sh)"; exit 1; }

tmp=$(mktemp -d /tmp/portalbd-bench-traces.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_http() {  # wait_http URL PID: until URL answers anything, or PID has died
  for _ in $(seq 200); do
    if curl -s -o /dev/null "$1"; then return 0; fi
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

s3port=$(free_port)
mkdir -p "$tmp/s3"
NODE_OPTIONS=--openssl-legacy-provider node "$s3rver" --directory "$tmp/s3" \
  --address 127.0.0.1 --port "$s3port" --silent --configure-bucket bench >"$tmp/s3rver.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$s3port/" "$!" || { echo "bench-traces: s3rver did not start"; cat "$tmp/s3rver.log"; exit 1; }
endpoint="http://127.0.0.1:$s3port"

front_pid=
if [ -x "$front" ]; then
  "$front" --listen 127.0.0.1:0 --upstream "127.0.0.1:$s3port" --latency-ms "$latency_ms" \
    --conn-mbps "$conn_mbps" --stats-file "$tmp/front.json" >"$tmp/front.out" 2>"$tmp/front.err" &
  front_pid=$!
  pids+=($front_pid)
  for _ in $(seq 100); do
    grep -q "listening on" "$tmp/front.out" 2>/dev/null && break
    sleep 0.05
  done
  addr=$(sed -n 's/^s3-front: listening on //p' "$tmp/front.out")
  [ -n "$addr" ] || { echo "bench-traces: s3-front did not start"; cat "$tmp/front.err"; exit 1; }
  endpoint="http://$addr"
  echo "bench-traces: s3rver behind s3-front ($latency_ms ms per request, $conn_mbps MB/s per connection)"
else
  echo "bench-traces: no s3-front at $front: replaying on s3rver WITHOUT added latency or bandwidth cap"
fi

traces=("$@")
[ ${#traces[@]} -gt 0 ] || traces=(--all "$root/traces")
AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER AWS_REGION=us-east-1 \
  AWS_ENDPOINT_URL="$endpoint" AWS_ALLOW_HTTP=true \
  "$build/trace-bench" "${traces[@]}" --storage 's3://bench/{workload}' --unsafe-no-fencing \
  --iterations "$iterations" --warmup "$warmup" --json "$tmp/bench.json"

if [ -n "$front_pid" ]; then
  echo
  echo "=== s3-front counters (the whole run) ==="
  curl -s -o "$tmp/front-now.json" "$endpoint/__stats"
  python3 - "$tmp/front-now.json" "$tmp/bench.json" <<'PY'
import json
import sys

f = json.load(open(sys.argv[1]))
b = json.load(open(sys.argv[2]))
print(f"connections {f['connections']}, MB in {f['bytes_in'] / 1e6:.1f}, "
      f"MB out {f['bytes_out'] / 1e6:.1f}, status {f['status']}")
for m, v in sorted(f["methods"].items()):
    print(f"  {m:<7} {v['requests']:>8} requests {v['bytes_in'] / 1e6:>9.1f} MB in "
          f"{v['bytes_out'] / 1e6:>9.1f} MB out")
http = sum(v["requests"] for v in f["methods"].values())
counted = sum(w.get("store_requests", 0) for w in b["workloads"])
print(f"HTTP requests {http}; store calls counted by trace-bench (replays and closes) {counted}")
PY
fi
