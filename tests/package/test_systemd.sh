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
pid=
cleanup() {
  if [ -n "$pid" ]; then kill -KILL "$pid" 2>/dev/null || true; fi
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
echo "running: $cmd"
$cmd 2>"$tmp/portalbd.log" &
pid=$!
for _ in $(seq 100); do
  [ -S "$tmp/check.sock" ] && break
  sleep 0.1
done
check "control socket $tmp/check.sock" test -S "$tmp/check.sock"
check "portalctl status answers" sh -c "'$build/portalctl' -s '$tmp/check.sock' status >/dev/null"
kill -TERM "$pid" 2>/dev/null || true
status=0
wait "$pid" || status=$?
pid=
check "exit status 0 after SIGTERM (got $status)" test "$status" = 0
[ $fail = 0 ] || cat "$tmp/portalbd.log"
[ $fail = 0 ] && echo "PASS: portalbd@.service"
exit $fail
