# shellcheck shell=sh
# vm-test exabyte: a 1 EiB volume: the kernel sees its size, I/O at its last block works,
# and a 64 GiB discard completes quickly (TRIM is an O(1) extent, not a walk over blocks).
# memory-mib: 1024
# timeout-s: 180
#
# Not attempted, on purpose: mkfs.ext4 refuses a device this large, and a whole-device
# blkdiscard would take too long: the kernel splits discards into ~4 GiB requests, so
# 1 EiB is ~2^28 of them.

size=1152921504606846976 # 2^60 bytes
block=4096
last=$((size / block - 1))

check "portalbd starts with a 1 EiB volume" portalbd_start --disk-size-gb 1073741824
check "nbd-client connects" nbd_connect /dev/nbd0
check_eq "kernel sees the device size" "$(dev_size /dev/nbd0)" "$size"
check_eq "sysfs size in 512-byte sectors" "$(cat /sys/block/nbd0/size)" $((size / 512))

run dd if=/dev/urandom of=/tmp/block bs=$block count=1 status=none
sum=$(sha /tmp/block)
check "write the last 4 KiB block (O_DIRECT, fsync)" \
  dd if=/tmp/block of=/dev/nbd0 bs=$block seek=$last count=1 oflag=direct conv=fsync status=none
check "read the last block back (O_DIRECT)" \
  dd if=/dev/nbd0 of=/tmp/back bs=$block skip=$last count=1 iflag=direct status=none
check_eq "the last block holds what was written" "$(sha /tmp/back)" "$sum"
check_fails "a write past the end is refused" \
  dd if=/tmp/block of=/dev/nbd0 bs=$block seek=$((last + 1)) count=1 oflag=direct status=none

run dd if=/dev/zero of=/tmp/zero bs=$block count=1 status=none
zero=$(sha /tmp/zero)
check "read a block in the middle of the device (O_DIRECT)" \
  dd if=/dev/nbd0 of=/tmp/middle bs=$block skip=$((last / 2)) count=1 iflag=direct status=none
check_eq "a never-written block reads as zeroes" "$(sha /tmp/middle)" "$zero"

gib64=$((64 << 30))
check "blkdiscard of the last 64 GiB" blkdiscard -o $((size - gib64)) -l $gib64 /dev/nbd0
check "read the last block after the discard (O_DIRECT)" \
  dd if=/dev/nbd0 of=/tmp/back bs=$block skip=$last count=1 iflag=direct status=none
check_eq "the discarded last block reads as zeroes" "$(sha /tmp/back)" "$zero"

check "disconnect" nbd_disconnect /dev/nbd0
check "portalbd exits 0 on SIGTERM" portalbd_stop
