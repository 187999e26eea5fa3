# shellcheck shell=sh
# vm-test exabyte-btrfs: the original's headline, an exabyte-scale filesystem, with btrfs
# in place of ZFS: a 1 EiB device, mkfs.btrfs without its whole-device discard, mounted,
# `df -h` shows 1.0E; files written and synced, a portalctl snapshot, the files deleted,
# the snapshot restored with the client connected, the files back with the same
# checksums (also over a new connection with the guest's caches dropped), btrfs check
# clean.
# memory-mib: 1536
# timeout-s: 300
# requires: portalctl
#
# The original (hinshun/portalbd's README, "Creating an exabyte-scale ZFS pool") runs
# `zpool create` on the 1 EiB device. Debian's main archive has no ZFS, so this is btrfs
# (16 EiB limit), the other copy-on-write filesystem with snapshots that Debian's kernel
# ships. Not XFS: mkfs.xfs writes the headers of every allocation group, and at most 1 TiB
# per group makes 1 EiB 2^20 groups (`mkfs.xfs -N` of 1 EiB: agcount=1048577), gigabytes
# of headers written through TCG.
# mkfs.btrfs writes a few MiB (superblock copies at 64 KiB, 64 MiB and 256 GiB, the first
# chunks), and allocates block groups only as data arrives.
#
# -K (--nodiscard): mkfs.btrfs would otherwise TRIM the whole device first, and the
# kernel splits discards into ~4 GiB requests: 2^28 of them for 1 EiB (see exabyte.sh).

size=1152921504606846976 # 2^60 bytes

ctl() {
  portalctl --socket "$PORTALBD_SOCKET" "$@"
}

# GNU df (coreutils, in the guest's /sbin), as on the original's machine: busybox's sh
# would run its own df applet, which prints 1 EiB less a few MiB as "1024.0P".
df() { /sbin/df "$@"; }

# Like check, and echoes the command's output to the console ("## " lines).
shown() {
  check "$@"
  sed 's/^/## /' "$VMTEST_OUT"
}

df_field() { # FIELD: df -h's value for /mnt/portal
  df -h --output="$1" /mnt/portal | tail -n 1 | tr -d ' '
}

check "load btrfs and its modules" load_modules btrfs
check "portalbd starts with a 1 EiB volume" portalbd_start --disk-size-gb 1073741824
shown "nbd-client connects" nbd_connect /dev/nbd0
check_eq "kernel sees the device size" "$(dev_size /dev/nbd0)" "$size"
shown "mkfs.btrfs -K (no whole-device discard) on 1 EiB" mkfs.btrfs -K -L portal /dev/nbd0
mkdir -p /mnt/portal
check "mount btrfs" mount -t btrfs /dev/nbd0 /mnt/portal
df -h /mnt/portal | sed 's/^/## /'
check_eq "df -h: size" "$(df_field size)" 1.0E
check_eq "df -h: available" "$(df_field avail)" 1.0E

run random_file /mnt/portal/data1 8
run random_file /mnt/portal/data2 3
run sh -c 'echo "important data" >/mnt/portal/note'
sum1=$(sha /mnt/portal/data1)
sum2=$(sha /mnt/portal/data2)
check "sync" sync
shown "portalctl snapshot create before-disaster" ctl snapshot create before-disaster

# The disaster, synced, while still mounted.
check "delete the files" rm /mnt/portal/data1 /mnt/portal/data2 /mnt/portal/note
run random_file /mnt/portal/later 2
check "sync after the disaster" sync
check_fails "the files are gone" test -e /mnt/portal/data1

check "umount (nbd-client stays connected)" umount /mnt/portal
shown "portalctl snapshot restore before-disaster, client connected" \
  ctl snapshot restore before-disaster
check "blockdev --flushbufs /dev/nbd0" blockdev --flushbufs /dev/nbd0
check "mount the restored filesystem" mount -t btrfs /dev/nbd0 /mnt/portal
check_eq "data1 is back" "$(sha /mnt/portal/data1)" "$sum1"
check_eq "data2 is back" "$(sha /mnt/portal/data2)" "$sum2"
check_eq "the note is back" "$(cat /mnt/portal/note)" "important data"
check_fails "the file written after the snapshot is gone" test -e /mnt/portal/later
check_eq "df -h after the restore: size" "$(df_field size)" 1.0E
check "umount" umount /mnt/portal
check "btrfs check --readonly is clean" btrfs check --readonly /dev/nbd0

# Nothing below may come from the guest's caches: a new connection, every byte from
# portalbd.
check "disconnect" nbd_disconnect /dev/nbd0
run drop_caches
check "reconnect" nbd_connect /dev/nbd0
check "mount again" mount -t btrfs /dev/nbd0 /mnt/portal
check_eq "data1 after reconnect" "$(sha /mnt/portal/data1)" "$sum1"
check_eq "data2 after reconnect" "$(sha /mnt/portal/data2)" "$sum2"
check "umount after reconnect" umount /mnt/portal
check "disconnect after reconnect" nbd_disconnect /dev/nbd0
check "portalbd exits 0 on SIGTERM" portalbd_stop
