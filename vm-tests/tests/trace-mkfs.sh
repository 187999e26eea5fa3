# shellcheck shell=sh
# vm-test trace-mkfs: mkfs.ext4 from the real kernel NBD client, recorded through
# trace-record: the proxy changes nothing (the filesystem checks clean), SIGINT ends the
# recorder with status 0 and a complete trace of a 1 GiB device holding mkfs' WRITEs,
# FLUSHes and its whole-device TRIM, and trace-bench reads and replays it.
# memory-mib: 2048
# timeout-s: 240
# requires: trace-record trace-bench
#
# With VMTEST_COPY_TRACES=DIR the runner copies the trace out to DIR/mkfs-ext4-kernel.json
# (traces/README.md: how to re-record traces/ from here).

REC_PORT=10810
trace=/tmp/mkfs-ext4-kernel.json
REC_LOG=/tmp/trace-record.log
size=1073741824

# Lines of the trace whose op is of type $1 (the writer puts one op on each line).
ops_of() {
  grep -c "\"op\":{\"type\":\"$1\"" "$trace" || true
}

check "portalbd starts with a 1 GiB volume" portalbd_start --disk-size-gb 1
trace-record --listen "127.0.0.1:$REC_PORT" --upstream "$NBD_HOST:$NBD_PORT" --output "$trace" \
  --workload mkfs-ext4-kernel --log-level info >"$REC_LOG" 2>&1 &
rec_pid=$!
rec_listening() {
  i=0
  while ! listening "$REC_PORT"; do
    kill -0 "$rec_pid" 2>/dev/null || { cat "$REC_LOG"; echo "trace-record exited"; return 1; }
    i=$((i + 1))
    [ $i -lt 300 ] || { cat "$REC_LOG"; echo "trace-record not listening after 30 s"; return 1; }
    sleep 0.1
  done
}
check "trace-record listens on 127.0.0.1:$REC_PORT" rec_listening
check "nbd-client connects through trace-record" nbd_connect /dev/nbd0 portalbd "$REC_PORT"
check_eq "kernel sees the device size through the proxy" "$(dev_size /dev/nbd0)" $size
# Not -q: mke2fs discards the device first (nodiscard is not given) and says so.
check "mkfs.ext4 through trace-record" mkfs.ext4 -F /dev/nbd0
check "sync" sync
check "disconnect from trace-record" nbd_disconnect /dev/nbd0

stop_recorder() {
  kill -INT "$rec_pid" || return 1
  wait "$rec_pid"
  rc=$?
  cat "$REC_LOG"
  [ $rc = 0 ] || { echo "trace-record exited with status $rc"; return 1; }
}
check "trace-record exits 0 on SIGINT" stop_recorder

# A complete file: the header, one op a line, and the closing fields written at the end.
check "the trace starts with its workload" grep -q '^{"workload":"mkfs-ext4-kernel",' "$trace"
check "the trace ends with device_size_bytes and duration_ns (complete)" \
  grep -qE '^\],"device_size_bytes":[0-9]+,"duration_ns":[0-9]+\}$' "$trace"
check_eq "device_size_bytes is 1 GiB" \
  "$(sed -n 's/.*"device_size_bytes":\([0-9]*\).*/\1/p' "$trace")" $size
writes=$(ops_of Write)
flushes=$(ops_of Flush)
trims=$(ops_of Trim)
zeroes=$(ops_of WriteZeroes)
total=$(grep -c '"seq":' "$trace" || true)
echo "## trace: $total ops: $writes Write, $flushes Flush, $trims Trim, $zeroes WriteZeroes"
check "the trace has WRITEs ($writes)" test "$writes" -ge 10
check "the trace has FLUSHes ($flushes)" test "$flushes" -ge 1
# mke2fs discards the whole device; the kernel splits that into TRIMs of at most
# max_discard_sectors each, which cover all of it.
trim_bytes=$(sed -n 's/.*"op":{"type":"Trim","offset":[0-9]*,"length":\([0-9]*\)}.*/\1/p' "$trace" |
  awk '{ s += $1 } END { printf "%d", s }')
check "the trace has TRIMs covering the device ($trims, $trim_bytes bytes)" test "$trim_bytes" -ge $size
check "every recorded op succeeded" sh -c "! grep -q '\"success\":false' $trace"
# Straight to the console (check would capture the output): the runner decodes it.
if [ "${VMTEST_EXPORT:-0}" = 1 ]; then
  export_file mkfs-ext4-kernel.json "$trace" || fail "copy the trace out to the host"
fi

# The proxy changed nothing: straight to portalbd, the filesystem is clean and mounts.
run drop_caches
check "nbd-client connects to portalbd directly" nbd_connect /dev/nbd0
check "e2fsck -fn is clean (mkfs through the proxy)" e2fsck -fn /dev/nbd0
check "mount ext4" mount -t ext4 /dev/nbd0 /mnt
check "umount" umount /mnt
check "disconnect" nbd_disconnect /dev/nbd0

# trace-bench parses the trace strictly (docs/trace.md) before it replays anything, and
# counts the ops that fail on replay.
replay() { # trace-bench ARGS...: exit 0 and "failures 0" in its report
  trace-bench --iterations 1 --warmup 0 "$@" "$trace" >/tmp/bench.out 2>&1
  rc=$?
  cat /tmp/bench.out
  [ $rc = 0 ] && grep -q "^  failures 0 " /tmp/bench.out
}
check "trace-bench replays the trace with no failures (in-process, memory://)" replay
check "trace-bench replays it against portalbd over NBD with no failures" \
  replay --nbd "nbd://$NBD_HOST:$NBD_PORT/portalbd"
check "portalbd exits 0 on SIGTERM" portalbd_stop
