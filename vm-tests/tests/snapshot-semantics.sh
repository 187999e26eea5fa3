# shellcheck shell=sh
# vm-test snapshot-semantics: snapshots capture every write synced before them, are
# readable as the read-only export portalbd@NAME, restore byte for byte, and survive a
# restore to an older snapshot; a deleted snapshot is gone.
# memory-mib: 2048
# timeout-s: 240
# requires: portalctl
#
# Written against the interface in shared/DESIGN.md (portalctl snapshot
# create|list|get|delete|restore, control socket flag --socket, export portalbd@NAME read
# only), judging portalctl only by its exit status and by snapshot names in `list`.
# portalctl matched it as written (docs/control.md); adjust ctl() if the CLI ever
# differs, never the expectations.

ctl() {
  portalctl --socket "$PORTALBD_SOCKET" "$@"
}

snapshot_list() { # into /tmp/snapshots
  ctl snapshot list >/tmp/snapshots
}

# Writes generation $1 to the filesystem on /mnt: gen.txt and a 5 MiB random gen$1.dat.
generation() {
  echo "generation-$1" >/mnt/gen.txt &&
    dd if=/dev/urandom of="/mnt/gen$1.dat" bs=1M count=5 status=none &&
    sync
}

remount_fresh() { # unmount, disconnect, drop caches, reconnect, mount
  umount /mnt && nbd_disconnect /dev/nbd0 && drop_caches &&
    nbd_connect /dev/nbd0 && mount -t ext4 /dev/nbd0 /mnt
}

check "portalbd starts with a 1 GiB volume" portalbd_start --disk-size-gb 1
check "nbd-client connects" nbd_connect /dev/nbd0
check "mkfs.ext4" mkfs.ext4 -q -F /dev/nbd0
check "mount ext4" mount -t ext4 /dev/nbd0 /mnt

check "write generation 1 and sync" generation 1
sum1=$(sha /mnt/gen1.dat)
check "portalctl snapshot create snap1" ctl snapshot create snap1
check "write generation 2 and sync" generation 2
sum2=$(sha /mnt/gen2.dat)
check "portalctl snapshot create snap2" ctl snapshot create snap2
check "portalctl snapshot list" snapshot_list
check "the list names snap1" grep -qw snap1 /tmp/snapshots
check "the list names snap2" grep -qw snap2 /tmp/snapshots
check "portalctl snapshot get snap1" ctl snapshot get snap1

# The snapshot as a read-only export, while the volume stays mounted and writable.
check "nbd-client connects to export 'portalbd@snap1' on /dev/nbd1" nbd_connect /dev/nbd1 portalbd@snap1
check_eq "the snapshot export is read-only" "$(blockdev --getro /dev/nbd1)" 1
mkdir -p /snap
# noload: the snapshot was taken with the filesystem mounted; there is no journal to
# replay on a read-only device.
check "mount the snapshot read-only" mount -t ext4 -o ro,noload /dev/nbd1 /snap
check_eq "the snapshot shows generation 1" "$(cat /snap/gen.txt)" generation-1
check_eq "the snapshot's gen1.dat is intact" "$(sha /snap/gen1.dat)" "$sum1"
check_fails "the snapshot has no gen2.dat" test -e /snap/gen2.dat
check "umount the snapshot" umount /snap
check_fails "a write to the snapshot export fails" \
  dd if=/dev/zero of=/dev/nbd1 bs=4096 count=1 oflag=direct status=none
check "disconnect the snapshot export" nbd_disconnect /dev/nbd1

# Restore to snap1 with the client still connected (the original's workflow): once the
# kernel drops its cached blocks, the device reads as the snapshot.
check "umount" umount /mnt
check "portalctl snapshot restore snap1 (client connected)" ctl snapshot restore snap1
check "blockdev --flushbufs /dev/nbd0" blockdev --flushbufs /dev/nbd0
check "mount" mount -t ext4 /dev/nbd0 /mnt
check_eq "after restore to snap1: generation 1" "$(cat /mnt/gen.txt)" generation-1
check_eq "after restore to snap1: gen1.dat intact" "$(sha /mnt/gen1.dat)" "$sum1"
check_fails "after restore to snap1: no gen2.dat" test -e /mnt/gen2.dat

# No snapshot is lost by a restore: snap2 (newer than snap1) still restores, this time
# with the client disconnected during the restore.
check "portalctl snapshot list after the restore" snapshot_list
check "snap2 survived the restore to snap1" grep -qw snap2 /tmp/snapshots
check "write generation 3 on the restored timeline" generation 3
check "portalctl snapshot create snap3" ctl snapshot create snap3
check "umount" umount /mnt
check "disconnect" nbd_disconnect /dev/nbd0
check "portalctl snapshot restore snap2" ctl snapshot restore snap2
run drop_caches
check "reconnect" nbd_connect /dev/nbd0
check "mount" mount -t ext4 /dev/nbd0 /mnt
check_eq "after restore to snap2: generation 2" "$(cat /mnt/gen.txt)" generation-2
check_eq "after restore to snap2: gen2.dat intact" "$(sha /mnt/gen2.dat)" "$sum2"
check_fails "after restore to snap2: no gen3.dat" test -e /mnt/gen3.dat

# Delete.
check "portalctl snapshot delete snap1" ctl snapshot delete snap1
check_fails "portalctl snapshot get snap1 fails after delete" ctl snapshot get snap1
check "portalctl snapshot get snap3 still works" ctl snapshot get snap3
check "portalctl snapshot list after the delete" snapshot_list
check_fails "the list no longer names snap1" grep -qw snap1 /tmp/snapshots
check "remount" remount_fresh
check_eq "the volume is unchanged by the delete" "$(sha /mnt/gen2.dat)" "$sum2"

check "umount" umount /mnt
check "e2fsck -fn is clean" e2fsck -fn /dev/nbd0
check "disconnect" nbd_disconnect /dev/nbd0
check "portalbd exits 0 on SIGTERM" portalbd_stop
