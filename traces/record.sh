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
# sqlite3, tar, PostgreSQL 15 (postgresql) and minetest-server.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build="${PORTALBD_BUILD_DIR:-$root/build}"
out="${TRACES_OUT:-$root/traces}"
work=$(mktemp -d /tmp/portalbd-traces.XXXXXX)
pids=()
pg_data=
mounts=()

cleanup() {
  if [ -n "${pg_data:-}" ]; then as_postgres "$pg_bin/pg_ctl" -D "$pg_data" -m immediate stop || true; fi
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

# fuse2fs_mount DIR: the ext4 in $work/dev/nbd mounted at DIR (FUSE in user space, so no
# kernel NBD client is needed). allow_other: the workloads that refuse to run as root
# (postgres) run as their own user inside.
fuse2fs_mount() {
  mkdir -p "$1"
  fuse2fs -f -o allow_other "$work/dev/nbd" "$1" &
  fs_pid=$!
  pids+=($fs_pid)
  mounts+=("$1")
  wait_for mountpoint -q "$1"
}

fuse2fs_unmount() {  # fuse2fs_unmount DIR
  unmount "$1"
  wait "$fs_pid"
}

# An ext4 made outside the recording, then mounted with fuse2fs; runs "$@" in the mounted
# directory while recording. With ext4_prepare=FUNCTION set, FUNCTION first runs in the
# mounted filesystem before recording starts (setup that is not the workload).
with_ext4() {  # [ext4_prepare=FUNCTION] with_ext4 NAME COMMAND...
  local name=$1
  shift
  start_portalbd
  nbdfuse_mount "$work/dev" "$work/pbd.sock"
  mkfs.ext4 -q -F "$work/dev/nbd"
  if [ -n "${ext4_prepare:-}" ]; then
    fuse2fs_mount "$work/fs"
    (cd "$work/fs" && "$ext4_prepare")
    fuse2fs_unmount "$work/fs"
  fi
  unmount "$work/dev"
  start_recorder "$name"
  nbdfuse_mount "$work/dev" "$work/rec.sock"
  fuse2fs_mount "$work/fs"
  (cd "$work/fs" && "$@")
  fuse2fs_unmount "$work/fs"
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

# PostgreSQL 15 (Debian's postgresql), as the user postgres (it refuses to run as root),
# on a unix socket outside the filesystem under test. initdb is setup, not recorded.
pg_bin=/usr/lib/postgresql/15/bin
as_postgres() { runuser -u postgres -- "$@"; }

pgbench_prepare() {
  chmod 755 "$work"  # postgres must reach $work/fs
  mkdir pgdata
  chown postgres: pgdata
  as_postgres "$pg_bin/initdb" -D "$PWD/pgdata" -A trust -U postgres --no-sync >/dev/null
}

pgbench_run() {
  # Defaults otherwise: fsync on, synchronous_commit on, full_page_writes on, 128 MB of
  # shared buffers, wal_level replica.
  pg_sock=$(mktemp -d /tmp/portalbd-pg.XXXXXX)
  chown postgres: "$pg_sock"
  as_postgres "$pg_bin/pg_ctl" -D "$PWD/pgdata" -w -l "$pg_sock/log" \
    -o "-c listen_addresses='' -c unix_socket_directories=$pg_sock" start >/dev/null
  pg_data="$PWD/pgdata"
  as_postgres "$pg_bin/pgbench" -h "$pg_sock" -i -s "${PGBENCH_SCALE:-1}" -q postgres
  as_postgres "$pg_bin/pgbench" -h "$pg_sock" -c 4 -j 2 -t "${PGBENCH_TXNS:-125}" postgres
  as_postgres "$pg_bin/pg_ctl" -D "$pg_data" -w -m fast stop >/dev/null  # a shutdown checkpoint
  pg_data=
  rm -rf "$pg_sock"
  sync
}

record_pgbench() {
  ext4_prepare=pgbench_prepare with_ext4 pgbench pgbench_run
}

# Debian's minetest-server (5.6, minetest_game) with no players: the world-mod in
# traces/minetest/trace_driver generates terrain, edits it in rounds and shuts the server
# down (README.md says what it does). The world directory is made before recording.
minetest_prepare() {
  mkdir -p world/worldmods
  cp -r "$root/traces/minetest/trace_driver" world/worldmods/
  printf '%s\n' 'gameid = minetest' 'backend = sqlite3' 'player_backend = sqlite3' \
    'auth_backend = sqlite3' 'mod_storage_backend = sqlite3' >world/world.mt
}

minetest_world() {
  cp "$root/traces/minetest/minetest.conf" "$work/minetest.conf"
  timeout 600 /usr/games/minetestserver --world "$PWD/world" --gameid minetest \
    --config "$work/minetest.conf" --port "${MINETEST_PORT:-30777}" --logfile '' --quiet
  sync
}

record_minetest-world() {
  ext4_prepare=minetest_prepare with_ext4 minetest-world minetest_world
}

all=(mkfs-ext4 ext4-untar fio-randrw-fsync sqlite-commits pgbench minetest-world)
for name in "${@:-${all[@]}}"; do
  echo "--- $name"
  "record_$name"
done
