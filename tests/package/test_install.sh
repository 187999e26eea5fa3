#!/usr/bin/env bash
# cmake --install into a temporary prefix puts the programs, the systemd unit (naming the
# installed portalbd), the examples and the man pages in the GNUInstallDirs places.
#
#   tests/package/test_install.sh BUILD_DIR VERSION
set -euo pipefail
build=$1 version=$2
prefix=$(mktemp -d /tmp/portalbd-install.XXXXXX)
trap 'rm -rf "$prefix"' EXIT

cmake --install "$build" --prefix "$prefix" >/dev/null
fail=0
expect() {
  if [ ! -e "$prefix/$1" ]; then echo "FAIL: $1 not installed"; fail=1; fi
}
for p in portalbd portalctl portalbd-csi trace-record trace-bench; do
  expect "bin/$p"
  out=$("$prefix/bin/$p" --version)
  [ "$out" = "$p $version" ] || { echo "FAIL: $p --version printed '$out'"; fail=1; }
done
[ ! -e "$prefix/bin/objstore-bench" ] || { echo "FAIL: objstore-bench installed"; fail=1; }
expect "lib/systemd/system/portalbd@.service"
expect "share/doc/portalbd/examples/example.toml"
expect "share/doc/portalbd/examples/example.env"
expect "share/doc/portalbd/README.md"
for page in man8/portalbd.8 man8/portalbd-csi.8 man1/portalctl.1 man1/trace-record.1 \
            man1/trace-bench.1; do
  expect "share/man/$page.gz"
  if [ -e "$prefix/share/man/$page.gz" ]; then
    name=$(basename "$page"); name=${name%.*}
    # help2man's title line, and the hand-written sections (man/NAME.h2m) made it in.
    zcat "$prefix/share/man/$page.gz" | grep -q "^\.TH \"\?${name^^}\"\? " ||
      { echo "FAIL: $page has no .TH line"; fail=1; }
    zcat "$prefix/share/man/$page.gz" | grep -q '^\.SH "\?SEE ALSO' ||
      { echo "FAIL: $page has no SEE ALSO section"; fail=1; }
  fi
done
# The unit starts the portalbd of this prefix.
unit="$prefix/lib/systemd/system/portalbd@.service"
if [ -e "$unit" ]; then
  grep -q "^ExecStart=$prefix/bin/portalbd " "$unit" ||
    { echo "FAIL: ExecStart: $(grep ^ExecStart "$unit")"; fail=1; }
fi
[ $fail = 0 ] && echo "PASS: cmake --install"
exit $fail
