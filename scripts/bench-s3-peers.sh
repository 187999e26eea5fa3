#!/usr/bin/env bash
# portalbd beside s3backer (Debian's S3-backed block device) on one s3rver behind s3-front
# (tools/s3-front: latency per request, bandwidth cap per connection, request counters).
# Prints a table of the phases below with ratios portalbd / s3backer, the requests and
# bytes each phase cost, and the ceilings of the server and the front. Not pass/fail.
#
#   scripts/bench-s3-peers.sh                              # 1 GiB, 30 s phases (6-9 min)
#   BENCH_MIB=256 PHASE_S=5 scripts/bench-s3-peers.sh      # a quick run
#   PEERS=portalbd LATENCY_MS=10 scripts/bench-s3-peers.sh
#   PHASES=a scripts/bench-s3-peers.sh                     # the ceilings and phase a only
#
# Environment: BENCH_MIB span written and read (default 1024), PHASE_S seconds per timed
# phase (30), LATENCY_MS (25) and CONN_MBPS (150, MB/s per connection) of the front,
# CEIL_MIB bytes per ceiling measurement (256; 0 skips the ceilings), PEERS (portalbd
# s3backer), PORTALBD_BUILD_DIR (build/) and S3_FRONT (its s3-front). PHASES (abcde) runs
# only the phases named, by letter (c and d read what a and b wrote: keep them; the
# targets table needs all of a-d and the ceilings); LAT_LOG=PREFIX makes c write fio's
# per-read latency logs (PREFIX-<peer>_clat.1.log: ms since start, latency ns, ...,
# offset) and, for portalbd, its log and /metrics at the end of c
# (PREFIX-portalbd.portalbd.log, .metrics).
#   PEERS=portalbd PHASES=abc CEIL_MIB=0 LAT_LOG=/tmp/c scripts/bench-s3-peers.sh
#   PEERS=portalbd PHASES=ade CEIL_MIB=0 scripts/bench-s3-peers.sh  # the sequential reads, cold and warm
#
# Phases, in this order, on each peer (fio over the span; portalbd through fio's nbd
# engine, s3backer through its FUSE file with O_DIRECT):
#   a. sequential write 1 MiB over the span, until durable: portalbd iodepth 8 and a
#      FLUSH at the end; s3backer 1 job, then until its stats file shows no dirty block
#      (its fsync is a no-op in 1.5.4);
#   b. random 4 KiB writes, a FLUSH every 32 writes, 1 in flight, PHASE_S s, then until
#      durable as in a (IOPS counts that wait; FLUSH p50 is fio's fsync latency);
#   c. after a restart: random 4 KiB reads, 8 in flight (portalbd iodepth 8; s3backer 8
#      psync jobs: FUSE serialises libaio), PHASE_S s: IOPS, p50, p99; other random
#      offsets than b's (b's seed would read b's blocks back in the order b wrote them);
#   d. after a restart: sequential 1 MiB reads, 1 in flight, PHASE_S s (or the span);
#   e. portalbd with its disk cache ([cache] dir, disk_size_bytes): c and d once to warm
#      it, then, each after a restart, the same reads again (the same random offsets and
#      as many; the same bytes). Skipped, with a message, by a portalbd that rejects the
#      keys.
# s3backer 1.5.4: 1 MiB blocks, 256-block (256 MiB) cache, its default 20 write-back
# threads and read-ahead, --listBlocks (one LIST at mount, so that it does not GET a block
# never written before its first partial write: FUSE hands it 128 KiB at a time). portalbd: default settings ([storage] unsafe_no_fencing, as
# s3rver ignores If-None-Match).
# Ceilings, in the same run: 8 connections of 1 MiB PUTs and GETs straight to s3rver and
# through a front with no latency and no cap (the front must not be the bottleneck), and
# 8 connections of 8 MiB PUTs through the benchmark's front (what the server accepts).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
export PORTALBD_BUILD_DIR="${PORTALBD_BUILD_DIR:-$root/build}"
for tool in fio curl node s3backer fusermount /usr/bin/python3; do
  command -v "$tool" >/dev/null || { echo "bench-s3-peers: $tool is missing (run scripts/setup.sh)"; exit 1; }
done
export S3_FRONT="${S3_FRONT:-$PORTALBD_BUILD_DIR/s3-front}"
for bin in "$PORTALBD_BUILD_DIR/portalbd" "$S3_FRONT"; do
  [ -x "$bin" ] || { echo "bench-s3-peers: $bin not built"; exit 1; }
done
export PYTHONPATH="$root/tests/e2e:$root/tests/interop" PYTHONDONTWRITEBYTECODE=1
exec /usr/bin/python3 "$root/scripts/bench_s3_peers.py" "$@"
