#!/usr/bin/env bash
# Builds the libFuzzer targets with clang in their own build tree and runs them for a
# bounded time from the committed corpus (fuzz/README.md). ctest's fuzz.build and
# fuzz.<target> (labels slow and fuzz) call it; by hand:
#
#   scripts/fuzz.sh build                   clang build of every target (build-fuzz/)
#   scripts/fuzz.sh run TARGET [SECONDS]    fuzz one target (default 25 s)
#   scripts/fuzz.sh all [SECONDS]           build, then run each target in turn
#   scripts/fuzz.sh list                    the targets
#
# PORTALBD_FUZZ_BUILD_DIR (default build-fuzz/) and PORTALBD_FUZZ_WORK_DIR (default
# build-fuzz/work/) place the build and the run's scratch corpus and crash files; extra
# libFuzzer flags go in FUZZ_FLAGS. Exits 77 (ctest: skipped) when clang is missing.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build="${PORTALBD_FUZZ_BUILD_DIR:-$root/build-fuzz}"
work="${PORTALBD_FUZZ_WORK_DIR:-$build/work}"

targets() {
  find "$root/lib" -name '*_fuzz.cc' | sort | sed -E 's#.*/lib/([^/]+)/(.*)_fuzz\.cc#\1_\2#'
}

build() {
  if ! command -v clang++ >/dev/null 2>&1; then
    echo "SKIP: clang++ not found (scripts/setup.sh installs clang and libclang-rt-14-dev)"
    exit 77
  fi
  local launcher=()
  if command -v ccache >/dev/null 2>&1; then launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache); fi
  # -O1 with line tables: libFuzzer's usual trade of speed for readable stack traces.
  # Warnings stay errors in the GCC build, which gates them; clang's differ.
  cmake -S "$root" -B "$build" -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
    -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS_RELEASE="-O1 -gline-tables-only" \
    -DPORTAL_FUZZ=ON -DPORTAL_WERROR=OFF "${launcher[@]}" >/dev/null
  local start=$SECONDS
  cmake --build "$build" -j"${BUILD_JOBS:-2}" --target fuzzers
  echo "fuzz: clang build took $((SECONDS - start)) s"
}

run() {
  local name=$1 seconds=${2:-25}
  local bin="$build/fuzz/$name" corpus="$root/fuzz/corpus/$name"
  if [ ! -x "$bin" ]; then
    if ! command -v clang++ >/dev/null 2>&1; then echo "SKIP: clang++ not found"; exit 77; fi
    echo "fuzz: $bin is missing: run scripts/fuzz.sh build" >&2
    exit 1
  fi
  [ -d "$corpus" ] || { echo "fuzz: no corpus $corpus" >&2; exit 1; }
  # New inputs go to a scratch directory; the committed corpus is only read.
  rm -rf "$work/$name" "$work/$name-crashes"
  mkdir -p "$work/$name" "$work/$name-crashes"
  # -rss_limit_mb and -malloc_limit_mb: a decoder that allocates what hostile bytes ask
  # for is a crash. -timeout: so is one input taking seconds.
  local rc=0
  "$bin" -max_total_time="$seconds" -rss_limit_mb=2048 -malloc_limit_mb=512 -timeout=10 \
    -print_final_stats=1 -artifact_prefix="$work/$name-crashes/" ${FUZZ_FLAGS:-} \
    "$work/$name" "$corpus" || rc=$?
  if [ "$rc" != 0 ]; then
    echo "fuzz: $name failed; the input is in $work/$name-crashes/:" >&2
    ls -l "$work/$name-crashes/" >&2
    echo "fuzz: replay it with build/fuzz/fuzz_replay $name FILE; then copy it to" \
      "fuzz/corpus/$name/, fix the bug and commit both (fuzz/README.md)" >&2
    exit 1
  fi
}

case "${1:-}" in
  build) build ;;
  run) [ $# -ge 2 ] || { echo "usage: $0 run TARGET [SECONDS]" >&2; exit 2; }; run "$2" "${3:-25}" ;;
  all) build; for t in $(targets); do run "$t" "${2:-25}"; done ;;
  list) targets ;;
  *) sed -n '2,13p' "$0" >&2; exit 2 ;;
esac
