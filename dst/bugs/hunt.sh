#!/usr/bin/env bash
# Bugs on purpose: how many seeds does the simulator need to catch a known bug?
#
#   dst/bugs/hunt.sh BUG [MAX_SEEDS] [portalbd-dst args...]     (default: 200, --ops 2500)
#
# Applies dst/bugs/BUG.patch to lib/, rebuilds portalbd-dst in ./build, runs seeds
# 1, 2, ... until one fails, prints the count and the violation, then reverts the patch
# and rebuilds. The patches target lib/volume as of this commit; when it moves on,
# regenerate them (each is a one-line change; see dst/README.md "Bugs on purpose").
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
bug=$1
max=${2:-200}
shift $(( $# > 1 ? 2 : 1 ))
args=("$@")
[ ${#args[@]} -eq 0 ] && args=(--ops 2500)
patch=dst/bugs/$bug.patch
git apply "$patch"
trap 'git apply -R "$patch"; cmake --build build -j2 --target portalbd-dst >/dev/null' EXIT
cmake --build build -j2 --target portalbd-dst >/dev/null
out=$(mktemp)
for seed in $(seq 1 "$max"); do
  if ! ./build/dst/portalbd-dst --seed "$seed" "${args[@]}" >"$out" 2>&1; then
    echo "$bug: caught by seed $seed (${seed} seeds, args: ${args[*]})"
    grep -m1 -E "FAILED|ABORTED" -A1 "$out" | cut -c1-400
    exit 0
  fi
done
echo "$bug: NOT caught in $max seeds (args: ${args[*]})"
