#!/usr/bin/env bash
# The map warm-up at open (LsmVolume::WarmMap) on s3rver behind s3-front: map GETs and the
# time to the last of them after each of RESTARTS starts on one cache_dir, on a volume with
# a map in SSTs (read scripts/bench_map_warm.py's header). Not pass/fail.
#
#   scripts/bench-map-warm.sh                         # 1 GiB, 30 s of random writes, 3 starts
#   BENCH_MIB=256 WRITE_S=10 RESTARTS=2 scripts/bench-map-warm.sh
#
# Environment as scripts/bench-s3-peers.sh (BENCH_MIB, LATENCY_MS, CONN_MBPS,
# PORTALBD_BUILD_DIR, S3_FRONT), and WRITE_S, RESTARTS.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
export PORTALBD_BUILD_DIR="${PORTALBD_BUILD_DIR:-$root/build}"
for tool in fio node /usr/bin/python3; do
  command -v "$tool" >/dev/null || { echo "bench-map-warm: $tool is missing (run scripts/setup.sh)"; exit 1; }
done
export S3_FRONT="${S3_FRONT:-$PORTALBD_BUILD_DIR/s3-front}"
for bin in "$PORTALBD_BUILD_DIR/portalbd" "$S3_FRONT"; do
  [ -x "$bin" ] || { echo "bench-map-warm: $bin not built"; exit 1; }
done
export PYTHONPATH="$root/tests/e2e:$root/tests/interop:$root/scripts" PYTHONDONTWRITEBYTECODE=1
exec /usr/bin/python3 "$root/scripts/bench_map_warm.py" "$@"
