#!/usr/bin/env bash
# Quick start, part 1: install what is missing, build, and run portalbd in the foreground
# on its embedded default (memory storage, 127.0.0.1:10809, export "portalbd").
# Any arguments go to portalbd, e.g.:  scripts/run.sh --disk-size-gb 100
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/setup.sh"
build="${PORTALBD_BUILD_DIR:-$root/build}"
# Default control socket under /run needs root; fall back to a per-user path otherwise.
args=("$@")
if [ "$(id -u)" != 0 ] && ! printf '%s\n' "${args[@]}" | grep -qE '^(--socket|-c|--config)'; then
  args+=(--socket "${XDG_RUNTIME_DIR:-/tmp}/portalbd.sock")
fi
exec "$build/portalbd" "${args[@]}"
