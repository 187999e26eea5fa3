#!/usr/bin/env bash
# cpack -G DEB makes portalbd_VERSION_amd64.deb with dpkg-shlibdeps' Depends; dpkg -i
# installs it into this machine, the programs run from /usr/bin and the unit verifies;
# dpkg -r and --purge leave the machine as it was. Needs root and dpkg-dev; skips (77)
# without them, and when a portalbd package is installed already (it is not ours to
# replace).
#
#   tests/package/test_deb.sh BUILD_DIR VERSION
set -euo pipefail
build=$1 version=$2
if [ "$(id -u)" != 0 ]; then echo "SKIP: dpkg -i needs root"; exit 77; fi
for tool in cpack dpkg dpkg-deb dpkg-shlibdeps; do
  command -v $tool >/dev/null || { echo "SKIP: $tool not found (apt-get install dpkg-dev)"; exit 77; }
done
if dpkg-query -W -f='${Status}' portalbd 2>/dev/null | grep -q "installed\|config-files"; then
  echo "SKIP: a portalbd package is installed on this machine already"; exit 77
fi

arch=$(dpkg --print-architecture)
out=$(mktemp -d /tmp/portalbd-deb.XXXXXX)
installed=0
cleanup() {
  if [ $installed = 1 ]; then dpkg --purge portalbd >/dev/null 2>&1 || true; fi
  rm -rf "$out"
}
trap cleanup EXIT

(cd "$build" && cpack -G DEB -B "$out" >"$out/cpack.log" 2>&1) || { cat "$out/cpack.log"; exit 1; }
deb="$out/portalbd_${version}_${arch}.deb"
fail=0
check() {  # check DESCRIPTION COMMAND...
  local what=$1; shift
  if "$@"; then echo "ok: $what"; else echo "FAIL: $what"; fail=1; fi
}
[ -f "$deb" ] || { echo "FAIL: no $deb; cpack made: $(ls "$out")"; exit 1; }
echo "package: $(basename "$deb")"
depends=$(dpkg-deb -f "$deb" Depends)
echo "Depends: $depends"
# dpkg-shlibdeps ran: the shared libraries the binaries link are named.
for lib in libc6 libstdc++6 libcurl4 libssl3 libsqlite3-0 liblz4-1 libxxhash0 libgrpc++1.51 \
           libprotobuf32; do
  check "Depends names $lib" grep -q "\b$lib\b" <<<"$depends"
done
contents=$(dpkg-deb -c "$deb")
for path in ./usr/bin/portalbd ./usr/bin/portalctl ./usr/bin/portalbd-csi ./usr/bin/trace-record \
            ./usr/bin/trace-bench ./usr/lib/systemd/system/portalbd@.service \
            ./usr/share/man/man8/portalbd.8.gz ./usr/share/man/man8/portalbd-csi.8.gz \
            ./usr/share/man/man1/portalctl.1.gz ./usr/share/doc/portalbd/examples/example.toml; do
  check "package holds $path" grep -q " $path\$" <<<"$contents"
done

installed=1
dpkg -i "$deb" >"$out/dpkg.log" 2>&1 || { cat "$out/dpkg.log"; exit 1; }
check "dpkg says installed" sh -c "dpkg-query -W -f='\${Status}' portalbd | grep -qx 'install ok installed'"
got=$(/usr/bin/portalbd --version)
check "/usr/bin/portalbd --version prints 'portalbd $version' (got '$got')" \
  test "$got" = "portalbd $version"
check "/usr/bin/portalctl --help" sh -c '/usr/bin/portalctl --help | grep -q "^Usage: .*portalctl \[OPTIONS\] SUBCOMMAND"'
if command -v systemd-analyze >/dev/null; then
  # The installed unit, as systemd finds it; a warning about a key is a failure too.
  verify=$(systemd-analyze verify portalbd@check.service 2>&1) && [ -z "$verify" ]
  check "systemd-analyze verify portalbd@check.service${verify:+: $verify}" test $? = 0
fi

dpkg -r portalbd >"$out/dpkg.log" 2>&1 || { cat "$out/dpkg.log"; fail=1; }
dpkg --purge portalbd >>"$out/dpkg.log" 2>&1 || { cat "$out/dpkg.log"; fail=1; }
installed=0
check "dpkg forgot portalbd" sh -c '! dpkg-query -W portalbd >/dev/null 2>&1'
for f in /usr/bin/portalbd /usr/bin/portalctl /usr/bin/portalbd-csi \
         /usr/lib/systemd/system/portalbd@.service \
         /usr/share/man/man8/portalbd.8.gz /usr/share/doc/portalbd; do
  check "$f removed" test ! -e "$f"
done
[ $fail = 0 ] && echo "PASS: the Debian package"
exit $fail
