#!/usr/bin/env bash
# Re-records the traces in this directory (see README.md for what each one is).
#
#   traces/record.sh                 all of them
#   traces/record.sh fio-randrw-fsync mkfs-ext4
#   TRACES_OUT=/tmp/t traces/record.sh   write elsewhere
#
# Upstream: portalbd from this build (PORTALBD_BUILD_DIR, default build/), memory://,
# a 1 GiB device on a unix socket; trace-record in front of it on another unix socket.
# Needs root (FUSE mounts and umount), nbdfuse (libnbd-bin), fuse2fs, e2fsprogs, fio,
# sqlite3 and tar.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build="${PORTALBD_BUILD_DIR:-$root/build}"
out="${TRACES_OUT:-$root/traces}"
work=$(mktemp -d /tmp/portalbd-traces.XXXXXX)
pids=()
mounts=()

cleanup() {
  for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do umount "${mounts[$i]}" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

wait_for() {  # wait_for CONDITION-COMMAND...
  for _ in $(seq 200); do
    if "$@"; then return 0; fi
    sleep 0.05
  done
  echo "record.sh: timed out waiting for: $*" >&2
  return 1
}

start_portalbd() {
  rm -f "$work/pbd.sock"
  "$build/portalbd" --disk-size-gb 1 --storage memory:// --address "unix:$work/pbd.sock" \
    --socket "$work/pbd.ctl" --log-level warn &
  pids+=($!)
  pbd_pid=$!
  wait_for test -S "$work/pbd.sock"
}

stop_portalbd() {
  kill "$pbd_pid"
  wait "$pbd_pid" || true
}

start_recorder() {  # start_recorder NAME
  rm -f "$work/rec.sock"
  "$build/trace-record" --listen "unix:$work/rec.sock" --upstream "unix:$work/pbd.sock" \
    --output "$out/$1.json" --workload "$1" --log-level warn &
  pids+=($!)
  rec_pid=$!
  wait_for test -S "$work/rec.sock"
}

stop_recorder() {
  kill -INT "$rec_pid"
  wait "$rec_pid"
  echo "recorded $(grep -c '"seq"' "$out/$1.json") ops into $out/$1.json ($(du -h "$out/$1.json" | cut -f1))"
}

# nbdfuse_mount DIR SOCKET: the export as the file DIR/nbd.
nbdfuse_mount() {
  mkdir -p "$1"
  nbdfuse -P "$work/nbdfuse.pid" "$1" "nbd+unix:///?socket=$2" &
  pids+=($!)
  mounts+=("$1")
  wait_for test -s "$work/nbdfuse.pid"
  wait_for test -e "$1/nbd"
}

unmount() {  # unmount DIR: waits until the FUSE server has finished
  sync
  umount "$1"
  unset 'mounts[${#mounts[@]}-1]'
}

# An ext4 made outside the recording, then mounted with fuse2fs (FUSE in user space, so
# no kernel NBD client is needed); runs "$@" in the mounted directory while recording.
with_ext4() {  # with_ext4 NAME COMMAND...
  local name=$1
  shift
  start_portalbd
  nbdfuse_mount "$work/dev" "$work/pbd.sock"
  mkfs.ext4 -q -F "$work/dev/nbd"
  unmount "$work/dev"
  start_recorder "$name"
  nbdfuse_mount "$work/dev" "$work/rec.sock"
  mkdir -p "$work/fs"
  fuse2fs -f "$work/dev/nbd" "$work/fs" &
  local fs_pid=$!
  pids+=($fs_pid)
  mounts+=("$work/fs")
  wait_for mountpoint -q "$work/fs"
  (cd "$work/fs" && "$@")
  unmount "$work/fs"
  wait "$fs_pid"
  unmount "$work/dev"
  stop_recorder "$name"
  stop_portalbd
}

# --- the traces ---

record_mkfs-ext4() {
  start_portalbd
  start_recorder mkfs-ext4
  nbdfuse_mount "$work/dev" "$work/rec.sock"
  mkfs.ext4 -F "$work/dev/nbd"
  unmount "$work/dev"
  stop_recorder mkfs-ext4
  stop_portalbd
}

untar_asio() {
  # The asio headers (libasio-dev, a build dependency): ~1000 files, 6.5 MB.
  tar -C /usr/include -cf - asio asio.hpp | tar -xf -
  sync
}

record_ext4-untar() {
  with_ext4 ext4-untar untar_asio
}

sqlite_commits() {
  # 400 small transactions, each a durable commit (synchronous=FULL, rollback journal).
  {
    echo "PRAGMA synchronous=FULL; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);"
    for i in $(seq 400); do
      echo "BEGIN; INSERT INTO t(v) VALUES (hex(randomblob(200))); UPDATE t SET v = hex(randomblob(100)) WHERE id = abs(random()) % $i + 1; COMMIT;"
    done
  } | sqlite3 db.sqlite
  sync
}

record_sqlite-commits() {
  with_ext4 sqlite-commits sqlite_commits
}

record_fio-randrw-fsync() {
  start_portalbd
  start_recorder fio-randrw-fsync
  fio --name=randrw --ioengine=nbd --uri="nbd+unix:///?socket=$work/rec.sock" \
    --rw=randrw --rwmixread=50 --bs=4k --iodepth=8 --size=256m --number_ios=8000 \
    --fsync=16 --randrepeat=1 --randseed=42 --output="$work/fio.out"
  stop_recorder fio-randrw-fsync
  stop_portalbd
}

all=(mkfs-ext4 ext4-untar fio-randrw-fsync sqlite-commits)
for name in "${@:-${all[@]}}"; do
  echo "--- $name"
  "record_$name"
done
