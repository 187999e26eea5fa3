#!/usr/bin/env bash
# flake.nix and nix/*.nix parse (nix-instantiate --parse, Debian's nix-bin), and
# tests/package/nix_eval.nix evaluates the module, the package and the flake against
# stubs of nixpkgs' lib and pkgs (it says what that does not cover), with the same
# [Service] settings as systemd/portalbd@.service.in.
#
#   tests/package/test_nix.sh BUILD_DIR VERSION SOURCE_DIR
set -euo pipefail
version=$2 src=$3
command -v nix-instantiate >/dev/null || { echo "SKIP: nix-instantiate not found (apt-get install nix-bin)"; exit 77; }
fail=0
for f in flake.nix nix/module.nix nix/package.nix tests/package/nix_eval.nix; do
  if nix-instantiate --parse "$src/$f" >/dev/null; then echo "ok: $f parses"; else echo "FAIL: $f"; fail=1; fi
done
keys=$(sed -n '/^\[Service\]/,/^\[/s/^\([A-Za-z]*\)=.*/\1/p' "$src/systemd/portalbd@.service.in" | tr '\n' ' ')
out=$(nix-instantiate --eval --strict --json "$src/tests/package/nix_eval.nix" \
        --argstr version "$version" --argstr unitKeys "$keys") || { echo "FAIL: evaluation"; exit 1; }
if [ "$out" = "[]" ]; then
  echo "ok: module, package and flake evaluate as expected"
else
  echo "FAIL: $out"; fail=1
fi
[ $fail = 0 ] && echo "PASS: Nix files"
exit $fail
