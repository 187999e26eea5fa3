# shellcheck shell=sh
# vm-test discard: fstrim on a mounted ext4 and blkdiscard of the whole device complete
# through the kernel's NBD client, trim only free space, and leave zeroes behind.
# memory-mib: 2048
# timeout-s: 180
# requires: portalctl

# What `portalctl status --json` reports: FIELD is bytes_stored (segments and map SSTs in
# the object store) or live_bytes (data the device's map references).
status_field() {
  portalctl --socket "$PORTALBD_SOCKET" status --json | sed -n "s/.*\"$1\":\([0-9]*\).*/\1/p"
}

# Waits up to $3 seconds for status field $1 to fall below $2; prints the last value.
wait_below() {
  i=0
  v=$(status_field "$1")
  while [ "${v:-$2}" -ge "$2" ] && [ $i -lt $(($3 * 10)) ]; do
    sleep 0.1
    i=$((i + 1))
    v=$(status_field "$1")
  done
  echo "${v:-unknown}"
}

check "portalbd starts with a 1 GiB volume" portalbd_start --disk-size-gb 1
check "nbd-client connects" nbd_connect /dev/nbd0
check "mkfs.ext4 (discards the device first)" mkfs.ext4 -q -F /dev/nbd0
check "mount ext4" mount -t ext4 /dev/nbd0 /mnt
# ext4 trims each block group once per mount unless blocks in it are freed again: this
# first pass trims all free space, so the second one below reports the freed files.
check "fstrim of the fresh filesystem" fstrim /mnt

# One file to keep, four to delete: fstrim must free the latter and never touch the first.
run random_file /tmp/keep 8
keep=$(sha /tmp/keep)
run cp /tmp/keep /mnt/keep
run random_file /tmp/pool 16
for i in 1 2 3 4; do
  run cp /tmp/pool "/mnt/gone$i"
done
check "sync 72 MiB of files" sync
stored_before=$(status_field bytes_stored)
live_before=$(status_field live_bytes)
# Random data does not compress: the store holds at least the 72 MiB.
check "portalctl status: at least 72 MiB stored ($stored_before bytes)" \
  test "${stored_before:-0}" -ge $((72 << 20))
check "portalctl status: at least 72 MiB live ($live_before bytes)" \
  test "${live_before:-0}" -ge $((72 << 20))
check "delete 64 MiB of them" rm /mnt/gone1 /mnt/gone2 /mnt/gone3 /mnt/gone4
run sync

check "fstrim -v after deleting files" fstrim -v /mnt
# "/mnt: 965.4 MiB (1012289536 bytes) trimmed", or without the human-readable part.
trimmed=$(sed -n 's/.*[ (]\([0-9][0-9]*\) bytes.*trimmed.*/\1/p' "$VMTEST_OUT")
check "fstrim reports at least the 64 MiB deleted ($trimmed bytes)" test "${trimmed:-0}" -ge $((64 << 20))

check "umount" umount /mnt
run drop_caches
check "mount again" mount -t ext4 /dev/nbd0 /mnt
check_eq "the kept file survived fstrim" "$(sha /mnt/keep)" "$keep"
check "umount" umount /mnt
check "e2fsck -fn is clean" e2fsck -fn /dev/nbd0

check "blkdiscard of the whole device" blkdiscard /dev/nbd0
# Where the superblocks, the journal and the files were: the first and last 16 MiB.
run dd if=/dev/zero of=/tmp/zero bs=1M count=16 status=none
zero=$(sha /tmp/zero)
check "read the first 16 MiB after blkdiscard (O_DIRECT)" \
  dd if=/dev/nbd0 of=/tmp/head bs=1M count=16 iflag=direct status=none
check_eq "they read as zeroes" "$(sha /tmp/head)" "$zero"
check "read the last 16 MiB (O_DIRECT)" \
  dd if=/dev/nbd0 of=/tmp/tail bs=1M skip=1008 count=16 iflag=direct status=none
check_eq "they read as zeroes" "$(sha /tmp/tail)" "$zero"

# After the whole-device discard the map references nothing (live data at once, as the
# TRIM reaches the map), and segment GC deletes what nothing references. memory:// frees a
# segment as soon as nothing references it (GC runs every second); file:// and s3:// wait
# out a 10-minute grace period first, too long for this test.
run sync
live_after=$(wait_below live_bytes $((1 << 20)) 30)
check "live data drops below 1 MiB after blkdiscard ($live_before -> $live_after bytes)" \
  test "$live_after" -lt $((1 << 20))
case "${PORTALBD_STORAGE:-$STORAGE_URL}" in
  memory://*)
    stored_after=$(wait_below bytes_stored $((1 << 20)) 30)
    check "bytes stored shrink after GC ($stored_before -> $stored_after bytes)" \
      test "$stored_after" -lt $((1 << 20))
    ;;
  *)
    skip "bytes stored (portalctl status) shrink after GC" \
      "GC grace period is 10 min on ${PORTALBD_STORAGE:-$STORAGE_URL}"
    ;;
esac

check "disconnect" nbd_disconnect /dev/nbd0
check "portalbd exits 0 on SIGTERM" portalbd_stop
