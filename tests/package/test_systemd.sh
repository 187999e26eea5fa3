#!/usr/bin/env bash
# portalbd@.service: systemd-analyze verify passes without a warning; it keeps what the
# daemon needs (credentials file, restart, sandbox directories, a stop timeout longer than
# portalbd's own); and its ExecStart command line, with the instance's paths moved into a
# temporary directory, starts this build's portalbd, which answers portalctl and stops
# with exit status 0 on SIGTERM, as systemd stops it.
#
#   tests/package/test_systemd.sh BUILD_DIR VERSION SOURCE_DIR
set -euo pipefail
build=$1 src=$3
command -v systemd-analyze >/dev/null || { echo "SKIP: systemd-analyze not found"; exit 77; }
tmp=$(mktemp -d /tmp/portalbd-unit.XXXXXX)
pid= listener=
cleanup() {
  if [ -n "$pid" ]; then kill -KILL "$pid" 2>/dev/null || true; fi
  if [ -n "$listener" ]; then kill "$listener" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT
fail=0
check() {  # check DESCRIPTION COMMAND...
  local what=$1; shift
  if "$@"; then echo "ok: $what"; else echo "FAIL: $what"; fail=1; fi
}

unit="$tmp/portalbd@.service"
sed "s|@CMAKE_INSTALL_FULL_BINDIR@|$build|" "$src/systemd/portalbd@.service.in" >"$unit"
# --man=no: the man pages are installed with the package, not here (package.deb checks them).
verify=$(systemd-analyze verify --man=no "$unit" 2>&1) && status=0 || status=$?
check "systemd-analyze verify (status $status)${verify:+: $verify}" \
  test "$status" = 0 -a -z "$verify"

has() { grep -qx "$1" "$unit"; }
check "EnvironmentFile=-/etc/portalbd/%i.env" has 'EnvironmentFile=-/etc/portalbd/%i.env'
check "Restart=on-failure" has 'Restart=on-failure'
check "ProtectSystem=strict" has 'ProtectSystem=strict'
# portalbd's default cache_dir, and the directory of the control socket the unit names.
check "StateDirectory=portalbd (cache_dir /var/lib/portalbd)" has 'StateDirectory=portalbd'
check "RuntimeDirectory=portalbd (/run/portalbd/NAME.sock)" has 'RuntimeDirectory=portalbd'
check "RuntimeDirectoryPreserve=yes (one instance's stop keeps the others' sockets)" \
  has 'RuntimeDirectoryPreserve=yes'
stop_s=$(sed -n 's/^TimeoutStopSec=\([0-9]*\)s$/\1/p' "$unit")
# portalbd gives up 10 s past stop_timeout_ms (60 s by default): systemd must wait longer.
check "TimeoutStopSec=${stop_s}s >= 60 s + 15 s" test "${stop_s:-0}" -ge 75

# The command line, for instance "check", with /etc/portalbd and /run/portalbd in $tmp.
cmd=$(sed -n 's/^ExecStart=//p' "$unit")
cmd=${cmd//%i/check}
cmd=${cmd//\/etc\/portalbd/$tmp}
cmd=${cmd//\/run\/portalbd/$tmp}
cat >"$tmp/check.toml" <<TOML
[storage]
url = "file://$tmp/store"
cache_dir = "$tmp/cache"
[nbd]
address = "unix:$tmp/nbd.sock"
TOML
mkdir "$tmp/store"
# Type=notify: systemd's notification socket, played by a datagram socket that writes down
# what portalbd sends.
/usr/bin/python3 - "$tmp/notify" "$tmp/notified" <<'PY' &
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
s.settimeout(30)
with open(sys.argv[2], "a") as out:
    try:
        while True:
            out.write(s.recv(4096).decode() + "\n")
            out.flush()
    except socket.timeout:
        pass
PY
listener=$!
for _ in $(seq 50); do [ -S "$tmp/notify" ] && break; sleep 0.1; done
echo "running: $cmd"
NOTIFY_SOCKET="$tmp/notify" $cmd 2>"$tmp/portalbd.log" &
pid=$!
for _ in $(seq 100); do
  [ -S "$tmp/check.sock" ] && break
  sleep 0.1
done
check "control socket $tmp/check.sock" test -S "$tmp/check.sock"
for _ in $(seq 50); do grep -qx READY=1 "$tmp/notified" 2>/dev/null && break; sleep 0.1; done
check "Type=notify" has 'Type=notify'
check "READY=1 sent to \$NOTIFY_SOCKET" grep -qx READY=1 "$tmp/notified"
check "portalctl status answers" sh -c "'$build/portalctl' -s '$tmp/check.sock' status >/dev/null"
kill -TERM "$pid" 2>/dev/null || true
status=0
wait "$pid" || status=$?
pid=
check "exit status 0 after SIGTERM (got $status)" test "$status" = 0
check "STOPPING=1 sent at SIGTERM" grep -qx STOPPING=1 "$tmp/notified"
kill "$listener" 2>/dev/null || true
[ $fail = 0 ] || cat "$tmp/portalbd.log"
[ $fail = 0 ] && echo "PASS: portalbd@.service"
exit $fail
