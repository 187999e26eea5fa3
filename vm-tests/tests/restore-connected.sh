# shellcheck shell=sh
# vm-test restore-connected: the original's workflow: the kernel's NBD client stays
# connected while portalctl restores a snapshot; once the client drops its cached blocks
# (blockdev --flushbufs) and remounts, the filesystem is the snapshot's, byte for byte,
# and the same connection reads what a fresh one reads.
# memory-mib: 2048
# timeout-s: 180
# requires: portalctl

ctl() {
  portalctl --socket "$PORTALBD_SOCKET" "$@"
}

check "portalbd starts with a 1 GiB volume" portalbd_start --disk-size-gb 1
check "nbd-client connects" nbd_connect /dev/nbd0
check "mkfs.ext4" mkfs.ext4 -q -F /dev/nbd0
check "mount ext4" mount -t ext4 /dev/nbd0 /mnt
run random_file /mnt/data 8
sum=$(sha /mnt/data)
run sh -c 'echo "important data" >/mnt/note'
check "sync" sync
check "portalctl snapshot create before-disaster" ctl snapshot create before-disaster

# The disaster, synced, while still mounted.
check "delete the files" rm /mnt/data /mnt/note
run random_file /mnt/later 4
check "sync after the disaster" sync

check "umount (nbd-client stays connected)" umount /mnt
check "portalctl snapshot restore before-disaster, client connected" \
  ctl snapshot restore before-disaster
check "blockdev --flushbufs /dev/nbd0" blockdev --flushbufs /dev/nbd0
check "mount the restored filesystem" mount -t ext4 /dev/nbd0 /mnt
check_eq "the data is back" "$(sha /mnt/data)" "$sum"
check_eq "the note is back" "$(cat /mnt/note)" "important data"
check_fails "the file written after the snapshot is gone" test -e /mnt/later
check "umount" umount /mnt
check "e2fsck -fn is clean" e2fsck -fn /dev/nbd0

# The old connection and a new one read the same bytes (the first 64 MiB: superblock,
# group descriptors, inode tables, journal, the files).
check "read 64 MiB through the old connection (O_DIRECT)" \
  dd if=/dev/nbd0 of=/tmp/old bs=1M count=64 iflag=direct status=none
check "nbd-client connects a second device" nbd_connect /dev/nbd1
check "read 64 MiB through a new connection (O_DIRECT)" \
  dd if=/dev/nbd1 of=/tmp/new bs=1M count=64 iflag=direct status=none
check_eq "both connections read the same" "$(sha /tmp/old)" "$(sha /tmp/new)"
check "disconnect the second device" nbd_disconnect /dev/nbd1
check "disconnect" nbd_disconnect /dev/nbd0
check "portalbd exits 0 on SIGTERM" portalbd_stop
