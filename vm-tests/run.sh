#!/usr/bin/env bash
# vm-tests: portalbd under the real Linux kernel NBD client, in qemu.
#
#   vm-tests/run.sh [TEST...]     run the named tests (default: all of tests/*.sh)
#   vm-tests/run.sh --list        list the tests and what each proves
#
# One guest boot per test: the Debian kernel, no network, an initramfs holding busybox,
# nbd-client, e2fsprogs and the freshly built portalbd binaries. Inside, portalbd listens
# on the guest's 127.0.0.1:10809 and the test drives /dev/nbd0. The host only reads the
# serial console: the test's PASS/FAIL/SKIP lines and an end marker carrying a per-boot
# nonce; a boot without its end marker (crash, hang, timeout) is a failure.
#
# Environment:
#   PORTALBD_BUILD_DIR    build directory with the portalbd binaries (default: build/)
#   VMTEST_STORAGE_URL    storage URL portalbd uses in the guest (default below)
#   VMTEST_CACHE_DIR      packages, kernel, initramfs pieces (default: vm-tests/.cache)
#   VMTEST_LOG_DIR        console logs, one per test (default: $PORTALBD_BUILD_DIR/vm-tests/logs)
#   VMTEST_SMP            guest CPUs (default 1: as fast as 2 under TCG on a busy 2-core host)
#   VMTEST_TIMEOUT_SCALE  multiplies every test's timeout (default 1)
#   VMTEST_VERBOSE=1      copy the whole console to stdout after each boot
#   VMTEST_KERNEL_ARGS    appended to the kernel command line (e.g. loglevel=7 to see boot)
#   VMTEST_COPY_TRACES    a directory: files the tests export (the trace trace-mkfs records)
#                         are copied out of the guest into it
#
# Exit status: 0 when nothing failed, 1 when something failed, 77 (skipped) only when the
# packages it needs cannot be installed at all.
set -euo pipefail
shopt -s inherit_errexit

VM_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$VM_ROOT/.." && pwd)

# The storage every test's portalbd uses unless the test needs a specific one. memory://
# until file:// storage exists; then file:///store/volume (a tmpfs in the guest).
VMTEST_STORAGE_URL=${VMTEST_STORAGE_URL:-memory://}

BUILD_DIR=${PORTALBD_BUILD_DIR:-$REPO_ROOT/build}
VM_CACHE=${VMTEST_CACHE_DIR:-$VM_ROOT/.cache}
LOG_DIR=${VMTEST_LOG_DIR:-$BUILD_DIR/vm-tests/logs}
SMP=${VMTEST_SMP:-1}
TIMEOUT_SCALE=${VMTEST_TIMEOUT_SCALE:-1}
COPY_DIR=${VMTEST_COPY_TRACES:-}

note() { echo "vm-tests: $*" >&2; }
die() {
  echo "vm-tests: error: $*" >&2
  exit 1
}
# May run inside $(...): everything goes to stderr, the caller exits with the status.
skip77() {
  echo "vm-tests: SKIPPED: $*" >&2
  echo "vm-tests: 0 passed, 0 failed, 1 skipped" >&2
  exit 77
}

# ---------------------------------------------------------------------------------------
# Cleanup: whatever happens, no qemu and no probe daemon outlives this script.
VM_QEMU_PID=
VM_PROBE_PID=
VM_TMP=
cleanup() {
  local pid
  for pid in $VM_QEMU_PID $VM_PROBE_PID; do
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  [ -z "$VM_TMP" ] || rm -rf "$VM_TMP"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# ---------------------------------------------------------------------------------------
# Test files: tests/NAME.sh with header lines
#   # memory-mib: N     guest RAM (default 2048); bounds everything stored in the guest
#   # timeout-s: N      the whole boot, from qemu start to power-off (default 180)
#   # requires: WORD... portalbd binaries (portalctl, trace-record, ...) or "file-storage";
#                       a missing one makes the test pending (SKIP), not passed
#   # pending: WHY      the test is not written yet: reported as SKIP without booting
header() { # FILE KEY
  sed -n "s/^# $2: *//p" "$1" | head -n 1
}

list_tests() {
  local f
  for f in "$VM_ROOT"/tests/*.sh; do basename "$f" .sh; done
}

# ---------------------------------------------------------------------------------------
# Requirements

FILE_STORAGE_STATE= # "", "yes" or the reason it is unavailable
# Does this portalbd serve file:// storage? Start it on the host with a unix socket in a
# scratch dir. Only an exit whose error says the scheme is unsupported makes dependent
# tests pending; any other outcome (listening, slow, crashing) lets them run, so a broken
# file:// store fails in the guest instead of hiding as "pending".
probe_file_storage() {
  [ -z "$FILE_STORAGE_STATE" ] || return 0
  local d="$VM_TMP/probe" _
  mkdir -p "$d/store"
  setpriv --pdeathsig KILL -- "$BUILD_DIR/portalbd" --disk-size-gb 1 --storage "file://$d/store" --address "unix:$d/nbd.sock" \
    --socket "$d/ctl.sock" --log-level error >"$d/log" 2>&1 &
  VM_PROBE_PID=$!
  FILE_STORAGE_STATE=yes
  for _ in $(seq 50); do
    [ ! -S "$d/nbd.sock" ] || break
    if ! kill -0 "$VM_PROBE_PID" 2>/dev/null; then
      if grep -qiE "only memory:// is available|not supported|unsupported" "$d/log"; then
        FILE_STORAGE_STATE="portalbd refuses file:// storage: $(head -n 1 "$d/log")"
      fi
      break
    fi
    sleep 0.1
  done
  kill -TERM "$VM_PROBE_PID" 2>/dev/null || true
  wait "$VM_PROBE_PID" 2>/dev/null || true
  VM_PROBE_PID=
}

# Sets PENDING to why test file $1 cannot run yet, or to nothing when it can.
pending_reason() {
  local f=$1 why req
  PENDING=
  why=$(header "$f" pending)
  if [ -n "$why" ]; then
    PENDING="pending: $why"
    return
  fi
  for req in $(header "$f" requires); do
    case $req in
      file-storage)
        probe_file_storage
        if [ "$FILE_STORAGE_STATE" != yes ]; then
          PENDING="pending: needs file:// storage; $FILE_STORAGE_STATE"
          return
        fi
        ;;
      *)
        if [ ! -x "$BUILD_DIR/$req" ]; then
          PENDING="pending: needs $req, not in $BUILD_DIR"
          return
        fi
        ;;
    esac
  done
}

# ---------------------------------------------------------------------------------------
# One boot

PASSED=0 FAILED=0 SKIPPED=0
SUMMARY=()

# Kernel command line pieces common to every boot. The TSC frequency is handed over
# because under TCG on a busy host the kernel's PIT calibration fails now and then, and
# without a TSC rate the boot hangs (guest TSC = host TSC under TCG).
tsc_khz() {
  awk '/^cpu MHz/ { printf "%d", $4 * 1000; exit }' /proc/cpuinfo 2>/dev/null || true
}
KERNEL_ARGS="console=ttyS0 panic=-1 quiet"
[ -z "$(tsc_khz)" ] || KERNEL_ARGS="$KERNEL_ARGS tsc_early_khz=$(tsc_khz)"
[ -z "$COPY_DIR" ] || KERNEL_ARGS="$KERNEL_ARGS vmtest_export=1"
BOOT_STALL_S=$(awk -v s="$TIMEOUT_SCALE" 'BEGIN { printf "%d", 45 * s }')

# Boots the guest once for test $1 with $2 MiB, hard timeout $3 s, nonce $4, console
# to $5. Sets BOOT_STATE (done, "timed out", stalled) and BOOT_QEMU_RC.
boot_guest() {
  local name=$1 mem=$2 timeout=$3 nonce=$4 log=$5
  local watchdog=$((timeout > 30 ? timeout - 15 : timeout * 2 / 3))
  local start end_seen=0 init_seen=0 now elapsed
  : >"$log"
  start=$(date +%s.%N)
  BOOT_STATE="done"
  # --pdeathsig: should this script be SIGKILLed (as a test driver may do on its own
  # timeout) and its trap never run, qemu dies with it all the same.
  setpriv --pdeathsig KILL -- qemu-system-x86_64 -M microvm -accel tcg -cpu max -smp "$SMP" -m "$mem" \
    -no-user-config -nodefaults -display none -monitor none -no-reboot -nic none \
    -serial "file:$log" \
    -kernel "$VM_KERNEL_DIR/vmlinux" -initrd "$VM_INITRD" \
    -append "$KERNEL_ARGS vmtest=$name vmtest_nonce=$nonce vmtest_storage=$VMTEST_STORAGE_URL vmtest_watchdog=$watchdog ${VMTEST_KERNEL_ARGS:-}" \
    </dev/null >"$VM_TMP/qemu.out" 2>&1 &
  VM_QEMU_PID=$!

  # The guest powers itself off; qemu is killed if it does not within the timeout, or
  # within 15 s of printing its end marker.
  while kill -0 "$VM_QEMU_PID" 2>/dev/null; do
    now=$(date +%s.%N)
    elapsed=$(awk -v n="$now" -v s="$start" 'BEGIN { printf "%d", n - s }')
    if [ "$elapsed" -ge "$timeout" ]; then
      BOOT_STATE="timed out"
      break
    fi
    if [ "$init_seen" = 0 ]; then
      if grep -aq "^## vmtest $name:" "$log"; then
        init_seen=1
      elif [ "$elapsed" -ge "$BOOT_STALL_S" ]; then
        BOOT_STATE=stalled
        break
      fi
    fi
    if [ "$end_seen" = 0 ]; then
      grep -aq "^VMTEST-END $name $nonce " "$log" && end_seen=$elapsed
    elif [ $((elapsed - end_seen)) -gt 15 ]; then
      note "$name: guest printed its end marker but did not power off; killing qemu"
      break
    fi
    sleep 0.2
  done
  kill -KILL "$VM_QEMU_PID" 2>/dev/null || true
  BOOT_QEMU_RC=0
  wait "$VM_QEMU_PID" 2>/dev/null || BOOT_QEMU_RC=$?
  VM_QEMU_PID=
}

# Files a test exported through the console (guest/lib.sh export_file): between
#   VMTEST-FILE-BEGIN TEST NONCE NAME
#   base64 of the gzipped file
#   VMTEST-FILE-END TEST NONCE NAME SHA256
# Each is written to $COPY_DIR/NAME when its sha256 matches. Prints one line per file;
# returns 1 when a file is torn or does not match.
copy_out_files() { # TEST NONCE CLEAN_CONSOLE
  local name=$1 nonce=$2 console=$3 file sum got rc=0 tmp="$VM_TMP/export"
  [ -n "$COPY_DIR" ] || return 0
  while read -r file; do
    case $file in */* | .* | "") echo "  FAIL $name: bad exported file name '$file'"; rc=1; continue ;; esac
    sum=$(awk -v e="VMTEST-FILE-END $name $nonce $file " 'index($0, e) == 1 { print $NF }' "$console" | tail -n 1)
    awk -v b="VMTEST-FILE-BEGIN $name $nonce $file" -v e="VMTEST-FILE-END $name $nonce $file " \
      '$0 == b { on = 1; next } index($0, e) == 1 { on = 0 } on' "$console" >"$tmp.b64"
    got=
    if [ -n "$sum" ] && base64 -d <"$tmp.b64" 2>/dev/null | gzip -dc >"$tmp" 2>/dev/null; then
      got=$(sha256sum <"$tmp" | cut -c1-64)
    fi
    if [ -n "$got" ] && [ "$got" = "$sum" ]; then
      mkdir -p "$COPY_DIR"
      mv "$tmp" "$COPY_DIR/$file"
      echo "  copied $file out of the guest to $COPY_DIR/$file ($(wc -c <"$COPY_DIR/$file") bytes)"
    else
      echo "  FAIL $name: the exported file $file is torn or does not match its sha256"
      rc=1
    fi
  done < <(sed -n "s/^VMTEST-FILE-BEGIN $name $nonce //p" "$console")
  return $rc
}

# Boots the guest for test $1 and judges its console.
run_test() {
  local name=$1 file="$VM_ROOT/tests/$1.sh"
  local mem timeout nonce log clean
  mem=$(header "$file" memory-mib)
  mem=${mem:-2048}
  timeout=$(header "$file" timeout-s)
  timeout=$(awk -v t="${timeout:-180}" -v s="$TIMEOUT_SCALE" 'BEGIN { printf "%d", t * s }')
  nonce=$(od -An -tx8 -N8 /dev/urandom | tr -d ' \n')
  log="$LOG_DIR/$name.console"
  clean="$VM_TMP/$name.console"

  echo "=== $name (guest ${mem} MiB, ${SMP} cpu, timeout ${timeout} s)"
  local start attempt
  start=$(date +%s.%N)
  for attempt in 1 2; do
    boot_guest "$name" "$mem" "$timeout" "$nonce" "$log"
    # A kernel that never reached /init (early boot under a loaded host's TCG, before any
    # of portalbd's code runs) is booted once more; anything later counts as it is.
    [ "$BOOT_STATE" = stalled ] || break
    cp "$log" "$log.stalled-$attempt"
    [ "$attempt" = 2 ] || note "$name: the guest kernel did not reach /init within $BOOT_STALL_S s; booting again"
  done
  local timed_out=0 qemu_rc=$BOOT_QEMU_RC
  [ "$BOOT_STATE" = "done" ] || timed_out=1
  local seconds
  seconds=$(awk -v n="$(date +%s.%N)" -v s="$start" 'BEGIN { printf "%.1f", n - s }')

  tr -d '\r' <"$log" >"$clean"
  [ "${VMTEST_VERBOSE:-0}" = 1 ] && sed 's/^/  | /' "$clean"

  local p f s
  p=$(grep -ac "^VMTEST PASS $name: " "$clean" || true)
  f=$(grep -ac "^VMTEST FAIL $name: " "$clean" || true)
  s=$(grep -ac "^VMTEST SKIP $name: " "$clean" || true)
  grep -a "^VMTEST \(PASS\|FAIL\|SKIP\) $name: " "$clean" | sed 's/^VMTEST /  /' || true

  local end verdict
  end=$(grep -a "^VMTEST-END $name $nonce " "$clean" | tail -n 1 || true)
  if [ "$timed_out" = 1 ]; then
    if [ "$BOOT_STATE" = stalled ]; then
      echo "  FAIL $name: the guest kernel did not reach /init within $BOOT_STALL_S s, twice"
    else
      echo "  FAIL $name: timed out after ${timeout} s; qemu killed"
    fi
    f=$((f + 1))
  elif [ -z "$end" ]; then
    echo "  FAIL $name: the guest ended without its end marker (qemu exit status $qemu_rc)"
    f=$((f + 1))
  elif [ "$end" != "VMTEST-END $name $nonce rc=0" ] && [ "$f" = 0 ]; then
    echo "  FAIL $name: the test exited with ${end##* } but reported no failure"
    f=$((f + 1))
  elif [ "$p" = 0 ] && [ "$s" = 0 ] && [ "$f" = 0 ]; then
    echo "  FAIL $name: the test reported nothing"
    f=$((f + 1))
  fi

  copy_out_files "$name" "$nonce" "$clean" || f=$((f + 1))

  if [ "$f" != 0 ]; then
    verdict=FAIL
    echo "  --- console tail ($log)"
    tail -n 60 "$clean" | sed 's/^/  | /'
  elif [ "$p" = 0 ]; then
    verdict=SKIP
  elif [ "$s" != 0 ]; then
    verdict="PASS ($s pending)"
  else
    verdict=PASS
  fi
  echo "--- $name: $verdict: $p passed, $f failed, $s skipped in ${seconds} s"
  PASSED=$((PASSED + p)) FAILED=$((FAILED + f)) SKIPPED=$((SKIPPED + s))
  SUMMARY+=("$(printf '%-20s %-18s %6s s' "$name" "$verdict" "$seconds")")
}

# ---------------------------------------------------------------------------------------
# Main

if [ "${1:-}" = -h ] || [ "${1:-}" = --help ]; then
  sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
  exit 0
fi
if [ "${1:-}" = --list ]; then
  for t in $(list_tests); do
    # The description: from "# vm-test NAME:" up to the first header key.
    awk 'NR == 1 { next }
      /^# (memory-mib|timeout-s|requires|pending):/ || !/^#/ { exit }
      { sub(/^# (vm-test [^:]*: *)?/, ""); printf "%s ", $0 }' "$VM_ROOT/tests/$t.sh" |
      fold -s -w 78 | sed "1s/^/$(printf '%-21s' "$t")/; 2,\$s/^/$(printf '%21s' '')/"
    echo
  done
  exit 0
fi

tests=("$@")
[ ${#tests[@]} -gt 0 ] || mapfile -t tests < <(list_tests)
for t in "${tests[@]}"; do
  [ -f "$VM_ROOT/tests/$t.sh" ] || die "no such test: $t (have: $(list_tests | tr '\n' ' '))"
done
[ -x "$BUILD_DIR/portalbd" ] || die "no portalbd in $BUILD_DIR: build first or set PORTALBD_BUILD_DIR"
BUILD_DIR=$(cd "$BUILD_DIR" && pwd)

mkdir -p "$VM_CACHE" "$LOG_DIR"
VM_CACHE=$(cd "$VM_CACHE" && pwd)
VM_TMP=$(mktemp -d "${TMPDIR:-/tmp}/vm-tests.XXXXXX")

# One run at a time per cache: the cached pieces are replaced in place.
exec 9>"$VM_CACHE/.lock"
if ! flock -n 9; then
  note "waiting for another vm-tests run using $VM_CACHE"
  flock -w 1800 9 || die "timed out waiting for the lock on $VM_CACHE"
fi

# shellcheck source=vm-tests/host/setup.sh
. "$VM_ROOT/host/setup.sh"
# shellcheck source=vm-tests/host/image.sh
. "$VM_ROOT/host/image.sh"

suite_start=$(date +%s)
vm_install_host_packages
vm_prepare_busybox
vm_prepare_kernel
vm_build_initrd "$BUILD_DIR"
note "kernel $VM_KERNEL_VERSION, initrd $(du -m "$VM_INITRD" | cut -f1) MiB, binaries: ${VM_GUEST_BINARIES[*]}, storage $VMTEST_STORAGE_URL"
note "prepared in $(($(date +%s) - suite_start)) s"

for t in "${tests[@]}"; do
  pending_reason "$VM_ROOT/tests/$t.sh"
  if [ -n "$PENDING" ]; then
    echo "=== $t"
    echo "  SKIP $t: not run ($PENDING)"
    SKIPPED=$((SKIPPED + 1))
    SUMMARY+=("$(printf '%-20s %-18s %s' "$t" SKIP "$PENDING")")
    continue
  fi
  run_test "$t"
done

echo
echo "vm-tests summary (console logs in $LOG_DIR):"
printf '  %s\n' "${SUMMARY[@]}"
echo "total $(($(date +%s) - suite_start)) s"
echo "vm-tests: $PASSED passed, $FAILED failed, $SKIPPED skipped"
[ "$FAILED" = 0 ]
