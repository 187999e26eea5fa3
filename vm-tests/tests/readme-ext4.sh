# shellcheck shell=sh
# vm-test readme-ext4: the original portalbd's README walk-through "ext4 with atomic
# snapshots", command for command: portalbd on its defaults, nbd-client, mkfs.ext4, mount,
# write and sync, portalctl snapshot create, rm, unmount, portalctl snapshot restore,
# mount, and the data is back.
# memory-mib: 2048
# timeout-s: 180
# requires: portalctl
#
# The original's commands (hinshun/portalbd, README.md) and how each is run here:
#
#   portalbd                                 the same: no flags, its defaults (1 GiB,
#                                            memory://, 127.0.0.1:10809, control socket
#                                            /run/portalbd/portalbd.sock), in the
#                                            background, its log in /tmp/portalbd.log
#   nbd-client -N portalbd 127.0.0.1 10809 /dev/nbd0      the same
#   mkfs.ext4 /dev/nbd0                      the same (its whole-device discard included)
#   mount /dev/nbd0 /mnt/portal              the same, after mkdir -p /mnt/portal (the
#                                            README assumes the directory exists)
#   echo "important data" > /mnt/portal/data the same
#   sync /mnt/portal                         sync -f /mnt/portal (syncfs). As written,
#                                            `sync DIR` (GNU's and busybox's alike) is
#                                            fsync(DIR): ext4 commits its journal, with
#                                            the new inode at size 0, but not the file's
#                                            delayed-allocation data, which writeback
#                                            sends ~30 s later. The snapshot then holds
#                                            an empty file: run as written, this test
#                                            restored "" instead of "important data".
#                                            -f syncs the whole filesystem, data too.
#   portalctl snapshot create before-disaster             the same (default socket)
#   rm /mnt/portal/data; ls -la /mnt/portal  the same
#   zpool export portal                      umount /mnt/portal: the README's ext4
#                                            section says "zpool" here, left over from
#                                            its ZFS section; for ext4 that is umount
#   portalctl snapshot restore before-disaster            the same; nbd-client stays
#                                            connected, as in the README
#   zpool import portal                      blockdev --flushbufs /dev/nbd0, then
#                                            mount /dev/nbd0 /mnt/portal: the block
#                                            device's page cache still holds blocks
#                                            read before the restore, and ext4's mount
#                                            reads through it (restore-connected.sh)
#   cat /mnt/portal/data                     the same: "important data"
#
# Then, beyond the README: umount, e2fsck -fn clean, nbd-client -d, SIGTERM exits 0.
# Each command's output is echoed to the console as "## " lines: the transcript in the
# console log (build/vm-tests/logs/readme-ext4.console) reads like the README's.

# Like check, and echoes the command's output.
shown() {
  check "$@"
  sed 's/^/## /' "$VMTEST_OUT"
}

check "portalbd (its defaults)" portalbd_start_plain
sed 's/^/## /' "$PORTALBD_LOG"
shown "nbd-client -N portalbd 127.0.0.1 10809 /dev/nbd0" \
  nbd-client -N portalbd 127.0.0.1 10809 /dev/nbd0
check_eq "the kernel sees 1 GiB" "$(dev_size /dev/nbd0)" 1073741824
shown "mkfs.ext4 /dev/nbd0" mkfs.ext4 /dev/nbd0
run mkdir -p /mnt/portal
check "mount /dev/nbd0 /mnt/portal" mount /dev/nbd0 /mnt/portal

check "echo \"important data\" > /mnt/portal/data" sh -c 'echo "important data" > /mnt/portal/data'
check "sync -f /mnt/portal (the README: sync /mnt/portal)" sync -f /mnt/portal
shown "portalctl snapshot create before-disaster" portalctl snapshot create before-disaster

check "rm /mnt/portal/data" rm /mnt/portal/data
shown "ls -la /mnt/portal" ls -la /mnt/portal
check_fails "the data is gone" grep -q ' data$' "$VMTEST_OUT"

check "umount /mnt/portal (the README: zpool export portal)" umount /mnt/portal
shown "portalctl snapshot restore before-disaster" portalctl snapshot restore before-disaster
check "blockdev --flushbufs /dev/nbd0" blockdev --flushbufs /dev/nbd0
check "mount /dev/nbd0 /mnt/portal (the README: zpool import portal)" mount /dev/nbd0 /mnt/portal
check_eq "cat /mnt/portal/data: the data is restored" "$(cat /mnt/portal/data)" "important data"

check "umount" umount /mnt/portal
check "e2fsck -fn is clean" e2fsck -fn /dev/nbd0
check "nbd-client -d /dev/nbd0" nbd_disconnect /dev/nbd0
check "portalbd exits 0 on SIGTERM" portalbd_stop
