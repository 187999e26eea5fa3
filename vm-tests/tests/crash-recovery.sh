# shellcheck shell=sh
# vm-test crash-recovery: kill -9 of portalbd during a large dd, plus loss of its cache
# directory: after a restart every byte written before the last completed sync is intact,
# and ext4 is clean after its journal replay.
# memory-mib: 3072
# timeout-s: 300
# requires: file-storage
#
# The durability contract (shared/DESIGN.md): a FLUSH reply means every write acknowledged
# before it survives kill -9 of the daemon plus loss of its cache directory. Here fsync
# and syncfs turn into FLUSHes; a "sync" counts as completed only when both returned 0.
# Needs durable storage, so it uses file:// whatever the suite's storage URL is (the
# runner reports it pending while portalbd refuses file://).

case $STORAGE_URL in
  file://*) PORTALBD_STORAGE=$STORAGE_URL ;;
  *) PORTALBD_STORAGE=file:///store/crash-recovery ;;
esac
cache_dir=/var/cache/portalbd
cat >/tmp/portalbd.toml <<EOF
[storage]
cache_dir = "$cache_dir"
EOF

# Data with a known shape: a 31 MiB random pool (an odd period, so a block landing at a
# power-of-two distance from its place cannot match by accident), repeated for the large
# file, sliced for the small synced files.
run random_file /tmp/pool 31
pattern() { # prints the pool repeated forever
  while cat /tmp/pool; do :; done
}
slice() { # N: 4 MiB of the pool at N MiB
  dd if=/tmp/pool bs=1M skip="$1" count=4 status=none
}

check "portalbd starts on $PORTALBD_STORAGE" portalbd_start --disk-size-gb 2 --config /tmp/portalbd.toml
check "nbd-client connects" nbd_connect /dev/nbd0
check "mkfs.ext4" mkfs.ext4 -q -F /dev/nbd0
check "mount ext4" mount -t ext4 /dev/nbd0 /mnt

# The large dd: 1 GiB of the pattern, meant to be cut short by the kill. Not synced by
# itself. (Bounded: file:// storage lives in guest RAM.) Its input is held at most
# 64 MiB ahead of the syncs below: under TCG the guest's one CPU compresses for portalbd
# at ~10 MB/s, and an unpaced dd finished (into the page cache, or through to portalbd)
# before the second sync returned, so the kill came after the dd.
paced_pattern() { # the pattern, 1 MiB at a time, at most (syncs + 2) * 64 MiB of it
  sent=0
  while [ $sent -lt 1024 ]; do
    if [ $sent -ge $((($(wc -l </tmp/synced) + 2) * 64)) ]; then
      sleep 0.1
      continue
    fi
    dd if=/tmp/pool bs=1M skip=$((sent % 31)) count=1 status=none || return 0
    sent=$((sent + 1))
  done
}
: >/tmp/synced
paced_pattern | dd of=/mnt/big bs=1M count=1024 iflag=fullblock status=none 2>/dev/null &
big_pid=$!

# The syncer: 4 MiB files written with fsync, then syncfs of the whole filesystem (which
# also makes durable every byte of /mnt/big written before it started). Each completed
# round is logged as "ROUND BIG_BYTES_BEFORE_SYNCFS".
(
  i=0
  while [ $i -lt 1000 ]; do
    i=$((i + 1))
    dd if=/tmp/pool of="/mnt/synced-$i" bs=1M skip=$((i % 27)) count=4 conv=fsync status=none ||
      exit 0
    size=$(stat -c %s /mnt/big) || exit 0
    sync -f /mnt || exit 0
    echo "$i $size" >>/tmp/synced
  done
) 2>/dev/null &
syncer_pid=$!

# Kill once two rounds completed and at least 32 MiB of the large file were written after
# the last completed round took its size (none of that is covered by a sync).
waited=0
while :; do
  rounds=$(wc -l </tmp/synced)
  last=$(tail -n 1 /tmp/synced)
  big_synced=${last#* }
  big=$(stat -c %s /mnt/big 2>/dev/null || echo 0)
  [ "$rounds" -ge 2 ] && [ "$big" -ge $((${big_synced:-0} + (32 << 20))) ] && break
  waited=$((waited + 1))
  [ $((waited % 50)) != 0 ] || echo "## waiting for the writers: $rounds syncs, $big bytes"
  [ $waited -lt 1800 ] || fail "writers made no progress in 180 s ($rounds syncs, $big bytes)"
  sleep 0.1
done
# The kill must land while data that is not yet durable is in flight: either the dd is
# still writing, or it has finished into the page cache and the kernel is still writing
# that back (Dirty + Writeback in /proc/meminfo well above zero).
unsynced_in_flight() {
  kill -0 "$big_pid" 2>/dev/null && return 0
  awk '/^(Dirty|Writeback):/ { kb += $2 } END { print kb " kB dirty or under writeback"; exit !(kb > 4096) }' /proc/meminfo
}
check "the dd or its writeback is still in flight" unsynced_in_flight
check "kill -9 portalbd during the dd ($rounds syncs done, $big bytes written, $big_synced synced)" \
  portalbd_kill9

# The writers now fail with EIO; the old mount and connection are abandoned (detached and
# disconnected), the volume comes back on /dev/nbd1.
# Disconnect before waiting for the killed writers: a writer in uninterruptible sleep on
# I/O queued to the dead connection exits only once that I/O fails (a full run once hung
# here for 300 s with the wait first). The wait is bounded too.
kill -KILL "$big_pid" "$syncer_pid" 2>/dev/null || true
nbd-client -d /dev/nbd0 >/dev/null 2>&1 || true
n=0
while { kill -0 "$big_pid" || kill -0 "$syncer_pid"; } 2>/dev/null && [ $n -lt 300 ]; do
  sleep 0.1
  n=$((n + 1))
done
[ $n -lt 300 ] || echo "## the killed writers are still there after 30 s; going on"
umount -l /mnt 2>/dev/null || true
last=$(tail -n 1 /tmp/synced)
rounds=${last%% *}
big_synced=${last#* }
check "the cache directory is gone" rm -rf "$cache_dir"

check "portalbd restarts on the same storage" portalbd_start --disk-size-gb 2 --config /tmp/portalbd.toml
check "nbd-client connects (/dev/nbd1)" nbd_connect /dev/nbd1
mkdir -p /mnt2
check "mount ext4 (replays the journal)" mount -t ext4 /dev/nbd1 /mnt2

ok=0
i=1
while [ $i -le "$rounds" ]; do
  want=$(slice $((i % 27)) | sha256sum | cut -d' ' -f1)
  have=$(sha "/mnt2/synced-$i" 2>/dev/null || echo missing)
  [ "$have" = "$want" ] || fail "synced file $i of $rounds intact" "(sha $have)"
  ok=$((ok + 1))
  i=$((i + 1))
done
pass "all $ok files synced before the kill are intact"
want=$(pattern | head -c "$big_synced" | sha256sum | cut -d' ' -f1)
have=$(head -c "$big_synced" /mnt2/big | sha256sum | cut -d' ' -f1)
check_eq "the large file's first $big_synced bytes (synced before the kill) are intact" "$have" "$want"

check "write after recovery" dd if=/tmp/pool of=/mnt2/after bs=1M count=8 conv=fsync status=none
check "umount" umount /mnt2
check "e2fsck -fn is clean after the journal replay" e2fsck -fn /dev/nbd1
check "disconnect" nbd_disconnect /dev/nbd1
check "portalbd exits 0 on SIGTERM" portalbd_stop
