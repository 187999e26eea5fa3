# shellcheck shell=sh
# Guest library for vm-tests (busybox ash). A test is a file in tests/ that the init
# sources after this one; it talks to the host only through result lines:
#
#   VMTEST PASS <test>: <what was proved> [(seconds)]
#   VMTEST FAIL <test>: <what failed> [(detail)]       and the test ends here
#   VMTEST SKIP <test>: <what was not checked> (<why>)  counted as skipped, never passed
#
# Helpers:
#   check DESC CMD...        run CMD; PASS, or FAIL with CMD's output and stop
#   check_fails DESC CMD...  the same, but CMD must fail
#   check_eq DESC ACTUAL EXPECTED
#   run CMD...               a preparation step: silent unless it fails (then FAIL, stop)
#   skip DESC WHY            a check that cannot run yet; say why
#   portalbd_start ARGS...   start the daemon (storage ${PORTALBD_STORAGE:-$STORAGE_URL})
#   portalbd_start_plain ARGS...  start `portalbd ARGS...` on its own defaults
#   portalbd_stop            SIGTERM; the daemon must exit 0
#   portalbd_kill9           SIGKILL, no goodbye
#   nbd_connect DEV [EXPORT [PORT]] / nbd_disconnect DEV
#   listening PORT           is something listening on 127.0.0.1:PORT?
#   export_file NAME PATH    copy PATH out to the host (when the runner asked for it)
#   load_modules SET         insmod a module set the init does not load (e.g. btrfs)
#   dev_size DEV, random_file PATH MIB, sha PATH, drop_caches, have CMD
#   csi_batch_start ENDPOINT one `csi-call --batch` for the calls below (portalbd-csi tests)
#   csi_reply METHOD JSON    its reply line: "OK <JSON>" or "CODE: message"
#   csi METHOD JSON          the response JSON; fails (message on stderr) on a gRPC error
#   csi_code METHOD JSON     the call's gRPC code, "OK" if it succeeded

NBD_HOST=127.0.0.1
NBD_PORT=10809
PORTALBD_SOCKET=/run/portalbd/portalbd.sock
PORTALBD_LOG=/tmp/portalbd.log
PORTALBD_PID=
VMTEST_OUT=/tmp/vmtest.out

_uptime_cs() {
  # /proc/uptime in centiseconds, for step timings.
  read -r up _ </proc/uptime
  echo "${up%.*}${up#*.}"
}

_seconds_since() {
  now=$(_uptime_cs)
  awk -v a="$1" -v b="$now" 'BEGIN { printf "%.1f s", (b - a) / 100 }'
}

_result() {
  kind=$1
  shift
  echo "VMTEST $kind $VMTEST_NAME: $*"
}

pass() { _result PASS "$@"; }

skip() {
  _result SKIP "$1 ($2)"
}

# Reports a failure with diagnostics and ends the test.
fail() {
  _result FAIL "$@"
  : >/tmp/vmtest.failed
  vmtest_diagnostics
  exit 1
}

vmtest_diagnostics() {
  if [ -s "$VMTEST_OUT" ]; then
    echo "--- output of the failed command (last 30 lines)"
    tail -n 30 "$VMTEST_OUT"
  fi
  if [ -s "$PORTALBD_LOG" ]; then
    echo "--- portalbd log (last 30 lines)"
    tail -n 30 "$PORTALBD_LOG"
  fi
  echo "--- dmesg (last 30 lines)"
  dmesg | tail -n 30
  echo "---"
}

check() {
  desc=$1
  shift
  t0=$(_uptime_cs)
  if "$@" >"$VMTEST_OUT" 2>&1; then
    pass "$desc ($(_seconds_since "$t0"))"
  else
    rc=$?
    fail "$desc" "(exit $rc: $*)"
  fi
}

check_fails() {
  desc=$1
  shift
  if "$@" >"$VMTEST_OUT" 2>&1; then
    fail "$desc" "(succeeded but must fail: $*)"
  else
    pass "$desc"
  fi
}

check_eq() {
  if [ "$2" = "$3" ]; then
    pass "$1 ($2)"
  else
    : >"$VMTEST_OUT"
    fail "$1" "(got '$2', expected '$3')"
  fi
}

run() {
  if ! "$@" >"$VMTEST_OUT" 2>&1; then
    fail "step failed: $*"
  fi
}

have() { command -v "$1" >/dev/null 2>&1; }

# 127.0.0.1:PORT in /proc/net/tcp notation, state 0A = LISTEN.
listening() {
  grep -q " 0100007F:$(printf '%04X' "$1") 00000000:0000 0A " /proc/net/tcp
}
_nbd_listening() { listening "$NBD_PORT"; }

portalbd_start() {
  mkdir -p "$(dirname "$PORTALBD_SOCKET")"
  echo "## portalbd --storage ${PORTALBD_STORAGE:-$STORAGE_URL} $*" >>"$PORTALBD_LOG"
  portalbd --address "$NBD_HOST:$NBD_PORT" --storage "${PORTALBD_STORAGE:-$STORAGE_URL}" \
    --socket "$PORTALBD_SOCKET" --log-level info "$@" >>"$PORTALBD_LOG" 2>&1 &
  PORTALBD_PID=$!
  _portalbd_wait_listening
}

# Starts `portalbd ARGS...` with nothing added: its own defaults (127.0.0.1:10809,
# /run/portalbd/portalbd.sock, memory://, 1 GiB), as a user types it.
portalbd_start_plain() {
  echo "## portalbd $*" >>"$PORTALBD_LOG"
  portalbd "$@" >>"$PORTALBD_LOG" 2>&1 &
  PORTALBD_PID=$!
  _portalbd_wait_listening
}

_portalbd_wait_listening() {
  i=0
  while ! _nbd_listening; do
    if ! kill -0 "$PORTALBD_PID" 2>/dev/null; then
      echo "portalbd exited before listening"
      return 1
    fi
    i=$((i + 1))
    [ $i -lt 300 ] || { echo "portalbd not listening after 30 s"; return 1; }
    sleep 0.1
  done
}

portalbd_stop() {
  kill -TERM "$PORTALBD_PID" || return 1
  wait "$PORTALBD_PID"
  rc=$?
  PORTALBD_PID=
  [ $rc = 0 ] || { echo "portalbd exited with status $rc"; return 1; }
}

portalbd_kill9() {
  kill -KILL "$PORTALBD_PID" || return 1
  wait "$PORTALBD_PID"
  PORTALBD_PID=
  # The listening socket goes with the process.
  ! _nbd_listening
}

_sysfs_size() {
  cat "/sys/block/$(basename "$1")/size" 2>/dev/null || echo 0
}

nbd_connect() {
  dev=$1
  export_name=${2:-portalbd}
  nbd-client -N "$export_name" "$NBD_HOST" "${3:-$NBD_PORT}" "$dev" || return 1
  i=0
  while [ "$(_sysfs_size "$dev")" = 0 ]; do
    i=$((i + 1))
    [ $i -lt 100 ] || { echo "$dev still has no size 10 s after connecting"; return 1; }
    sleep 0.1
  done
}

nbd_disconnect() {
  dev=$1
  nbd-client -d "$dev" || return 1
  i=0
  while [ "$(_sysfs_size "$dev")" != 0 ]; do
    i=$((i + 1))
    [ $i -lt 100 ] || { echo "$dev still has a size 10 s after disconnecting"; return 1; }
    sleep 0.1
  done
}

dev_size() { blockdev --getsize64 "$1"; }

# Loads module set $1 (host/setup.sh VM_MODULE_SETS): the modules listed, in order, in
# /lib/modules/VERSION/modules.$1.load; one that is already loaded is left alone.
load_modules() {
  dir=/lib/modules/$(uname -r)
  [ -s "$dir/modules.$1.load" ] || { echo "no module set $1 in $dir"; return 1; }
  while read -r mod; do
    name=$(echo "${mod%.ko}" | tr - _)
    [ -d "/sys/module/$name" ] || insmod "$dir/$mod" || return 1
  done <"$dir/modules.$1.load"
}

random_file() {
  dd if=/dev/urandom of="$1" bs=1M count="$2" status=none
}

sha() { sha256sum "$1" | cut -d' ' -f1; }

drop_caches() {
  sync
  echo 3 >/proc/sys/vm/drop_caches
}

# wait_socket PATH [LOG]: returns once PATH is a unix socket; after 30 s fails, naming it
# (and printing LOG, the log of what should have made it).
wait_socket() {
  _ws_i=0
  while [ ! -S "$1" ]; do
    _ws_i=$((_ws_i + 1))
    if [ $_ws_i -ge 300 ]; then
      echo "no socket $1 after 30 s"
      [ -z "${2:-}" ] || cat "$2"
      return 1
    fi
    sleep 0.1
  done
}

# csi_plugin_start ENDPOINT LOG [ARGS...]: portalbd-csi --endpoint ENDPOINT ARGS in the
# background, its output in LOG; returns once its socket exists (wait_socket).
csi_plugin_start() {
  _cps_endpoint=$1 _cps_log=$2
  shift 2
  portalbd-csi --endpoint "$_cps_endpoint" "$@" >"$_cps_log" 2>&1 &
  wait_socket "${_cps_endpoint#unix://}" "$_cps_log"
}

# CSI calls, all on one gRPC connection (as csi-sanity and the kubelet keep one): one
# `csi-call --batch` behind two FIFOs on fds 3 and 4. Starting csi-call for each call
# costs about as much as the call under TCG.
csi_batch_start() {
  rm -f /tmp/csi-call.req /tmp/csi-call.rep
  mkfifo /tmp/csi-call.req /tmp/csi-call.rep || return 1
  csi-call --endpoint "$1" --batch </tmp/csi-call.req >/tmp/csi-call.rep 2>/tmp/csi-call.log &
  exec 3>/tmp/csi-call.req 4</tmp/csi-call.rep
}
csi_reply() {
  echo "$1 $2" >&3
  IFS= read -r _csi_line <&4 || { echo "UNAVAILABLE: csi-call --batch is gone"; return 0; }
  echo "$_csi_line"
}
csi() {
  _csi_r=$(csi_reply "$1" "$2")
  case $_csi_r in "OK "*) echo "${_csi_r#OK }" ;; *) echo "$_csi_r" >&2; return 1 ;; esac
}
csi_code() { _csi_r=$(csi_reply "$1" "$2"); echo "${_csi_r%%[: ]*}"; }

# Copies file $2 out to the host as NAME ($1), through the console: gzip, base64, between
# marker lines that carry the boot's nonce. Only when the runner asked for files
# (VMTEST_COPY_TRACES, which sets VMTEST_EXPORT=1); otherwise it does nothing. The host
# checks the sha256 on the end line.
export_file() {
  [ "${VMTEST_EXPORT:-0}" = 1 ] || return 0
  [ -s "$2" ] || { echo "export_file: $2 is missing or empty"; return 1; }
  echo "VMTEST-FILE-BEGIN $VMTEST_NAME $VMTEST_NONCE $1"
  gzip -c "$2" | base64
  echo "VMTEST-FILE-END $VMTEST_NAME $VMTEST_NONCE $1 $(sha "$2")"
}

# Runs test file $1 (called by the init, in its own shell). Aborted tests (an unchecked
# command failing under set -e) still report a FAIL line.
vmtest_run() {
  rm -f /tmp/vmtest.failed
  (
    set -e
    # shellcheck disable=SC1090
    . "$1"
  )
  rc=$?
  if [ $rc != 0 ] && [ ! -e /tmp/vmtest.failed ]; then
    _result FAIL "test aborted with status $rc"
    vmtest_diagnostics
  fi
  return $rc
}
