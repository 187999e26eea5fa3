#!/usr/bin/env bash
# Quick start, part 2: install what is missing, build, and run every test suite
# (unit, property, NBD interop with real clients, S3 against s3rver, end-to-end, dst,
# vm-tests, and each libFuzzer target for a bounded time: scripts/fuzz.sh). Ends with
# ctest's summary; exits non-zero if anything failed.
#
#   scripts/test.sh               everything
#   scripts/test.sh -L unit       only a label (unit, slow, interop, s3, e2e, dst, vm, fuzz)
#   scripts/test.sh -R pattern    ctest's own filters pass through
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/setup.sh"
build="${PORTALBD_BUILD_DIR:-$root/build}"
cd "$build"
exec ctest --output-on-failure --timeout 1800 -j"${TEST_JOBS:-2}" "$@"
