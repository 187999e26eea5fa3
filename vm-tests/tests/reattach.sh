# shellcheck shell=sh
# vm-test reattach: portalbd attaches kernel NBD devices itself (portalctl device attach,
# netlink) with FLUSH and FUA reaching it, and a device survives portalbd's restart: fio
# writes with O_DIRECT|O_SYNC and verifies while portalbd is stopped (SIGTERM) and killed
# (SIGKILL) and started again; no I/O error, no lost acknowledged write. A volume resize
# shows on the device; detach frees it.
# memory-mib: 3072
# timeout-s: 900
# requires: portalctl file-storage
#
# file:// storage (a tmpfs in guest RAM) so a restart keeps the data. io_timeout_ms is
# short so that requests the old daemon never answered are resent soon after the new one
# reattached (the kernel resends only on its timeout). With reattach_off=1 on the kernel
# command line (VMTEST_KERNEL_ARGS) reattach_timeout_ms is 0: the test must then fail.

case $STORAGE_URL in
  file://*) PORTALBD_STORAGE=$STORAGE_URL ;;
  *) PORTALBD_STORAGE=file:///store/reattach ;;
esac
reattach_ms=120000
grep -q "reattach_off=1" /proc/cmdline && reattach_ms=0
{
  echo "[device]"
  echo "state_file = \"/var/lib/portalbd/devices.json\""
  echo "io_timeout_ms = 5000"
  echo "reattach_timeout_ms = $reattach_ms"
  echo "[metrics]"
  echo "address = \"127.0.0.1:9100\""
} >/tmp/portalbd.toml

metric() { # NAME OP: portalbd_nbd_NAME{...op="OP"...} summed over its series
  wget -qO- http://127.0.0.1:9100/metrics 2>/dev/null |
    awk -v n="portalbd_nbd_$1{" -v op="op=\"$2\"" \
      'index($1, n) == 1 && index($1, op) { s += $2 } END { printf "%d\n", s }'
}
sysfs_pid() { cat "/sys/block/$1/pid" 2>/dev/null || true; }
restart() { portalbd_start --disk-size-gb 1 --config /tmp/portalbd.toml; }

check "portalbd starts on $PORTALBD_STORAGE" restart
check "volume fs created" portalctl volume create fs --size 1G
check "volume raw created" portalctl volume create raw --size 256M

# --- a filesystem on an attached device; its sync arrives as a FLUSH -------------------
check "portalctl device attach fs" sh -c 'portalctl device attach fs >/tmp/dev-fs'
dev_fs=$(cat /tmp/dev-fs)
fs=${dev_fs#/dev/}
check_eq "/sys/block/$fs/size is the volume's size in sectors" "$(cat "/sys/block/$fs/size")" 2097152
check_eq "attaching fs again returns the same device (idempotent)" \
  "$(portalctl device attach fs)" "$dev_fs"
check "device list shows fs connected" sh -c "portalctl device list | grep -q '^$dev_fs .* fs .*connected'"
check "the state file records it" grep -q '"volume": "fs"' /var/lib/portalbd/devices.json
check "mkfs.ext4 on $dev_fs" mkfs.ext4 -q -F "$dev_fs"
mkdir -p /mnt
check "mount ext4" mount -t ext4 "$dev_fs" /mnt
run random_file /mnt/data 8
flushes_before=$(metric requests_total flush)
check "sync -f of the file" sync -f /mnt/data
flushes_after=$(metric requests_total flush)
check "the sync arrived as a FLUSH (flushes $flushes_before -> $flushes_after)" \
  test "$flushes_after" -gt "$flushes_before"
want_data=$(sha /mnt/data)
check "umount" umount /mnt

# --- fio with verify on a raw device across a clean stop and a kill -------------------
check "portalctl device attach raw" sh -c 'portalctl device attach raw >/tmp/dev-raw'
dev_raw=$(cat /tmp/dev-raw)
raw=${dev_raw#/dev/}
check_eq "/sys/block/$raw/size" "$(cat "/sys/block/$raw/size")" 524288
# Paced, so that it is still writing through both restarts; every write is O_DIRECT and
# O_SYNC (FUA); the verify pass reads all of it back after the restarts.
fio --name=reattach --filename="$dev_raw" --ioengine=psync --direct=1 --sync=1 \
  --rw=write --bs=64k --size=40M --rate=1m --verify=crc32c --do_verify=1 --verify_fatal=1 \
  --output=/tmp/fio.out >/tmp/fio.log 2>&1 &
fio_pid=$!
sleep 6
check "fio is writing before the SIGTERM" kill -0 "$fio_pid"
check "SIGTERM: portalbd exits 0" portalbd_stop
check "$dev_raw stays configured after the clean stop" test -n "$(sysfs_pid "$raw")"
sleep 2
check "portalbd restarts after SIGTERM" restart
sleep 10
check "fio is writing before the SIGKILL (no I/O error across the SIGTERM)" kill -0 "$fio_pid"
check "the restart reattached both devices" \
  sh -c "test \$(grep -c 'device reattached' $PORTALBD_LOG) -eq 2"
check "SIGKILL of portalbd under fio" portalbd_kill9
sleep 2
check "portalbd restarts after SIGKILL" restart
n=0
while kill -0 "$fio_pid" 2>/dev/null && [ $n -lt 3000 ]; do
  sleep 0.2
  n=$((n + 1))
done
check "fio finished" sh -c "! kill -0 $fio_pid 2>/dev/null"
fio_rc=0
wait "$fio_pid" || fio_rc=$?
echo "## fio: $(grep -E 'err=|WRITE:|READ:' /tmp/fio.out /tmp/fio.log 2>/dev/null | tr -s ' ' | head -n 4)"
check_eq "fio exit status (no I/O error, verify clean)" "$fio_rc" 0
check "fio reports err= 0" grep -q "err= 0" /tmp/fio.out
check "fio read everything back (its verify pass)" grep -q "READ:" /tmp/fio.out
check "FUA writes reached the restarted portalbd" test "$(metric requests_total write)" -gt 0
check "no I/O error in the kernel log" sh -c "! dmesg | grep -qi 'error.*$raw\|$raw.*error'"

# --- an online resize shows on the attached device ------------------------------------
check "volume resize raw to 512M" portalctl volume resize raw --size 512M
n=0
while [ "$(cat "/sys/block/$raw/size")" != 1048576 ] && [ $n -lt 50 ]; do
  sleep 0.1
  n=$((n + 1))
done
check_eq "/sys/block/$raw/size after the resize" "$(cat "/sys/block/$raw/size")" 1048576
check "the new last block reads (O_DIRECT)" \
  /sbin/dd if="$dev_raw" of=/dev/null bs=4096 skip=131071 count=1 iflag=direct status=none
check "the new last block takes a write (O_DIRECT)" \
  /sbin/dd if=/dev/zero of="$dev_raw" bs=4096 seek=131071 count=1 oflag=direct status=none
check "device list shows the new size" \
  sh -c "portalctl device list | grep -q '^$dev_raw .* 536870912 '"

# --- the ext4 volume is intact; detach leaves the devices free -------------------------
check "mount ext4 again" mount -t ext4 "$dev_fs" /mnt
drop_caches
check_eq "the file written before the restarts is intact" "$(sha /mnt/data)" "$want_data"
check "umount again" umount /mnt
check "e2fsck -fn is clean" e2fsck -fn "$dev_fs"
check "portalctl device detach fs" portalctl device detach fs
check "portalctl device detach $dev_raw" portalctl device detach "$dev_raw"
check_eq "detaching again says so" "$(portalctl device detach fs)" "Not attached: fs"
n=0
while [ -n "$(sysfs_pid "$raw")$(sysfs_pid "$fs")" ] && [ $n -lt 100 ]; do
  sleep 0.1
  n=$((n + 1))
done
check_eq "/sys/block/$raw/pid is empty after detach" "$(sysfs_pid "$raw")" ""
check_eq "/sys/block/$fs/pid is empty after detach" "$(sysfs_pid "$fs")" ""
check "device list is empty" sh -c "portalctl device list | grep -qx 'No devices'"
check "portalbd exits 0 on SIGTERM" portalbd_stop
