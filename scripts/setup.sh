#!/usr/bin/env bash
# Idempotent setup: installs every Debian package the build and the tests need, the npm
# test server (s3rver) into the project, then builds. Safe to run again: it only installs
# what is missing.
#
#   scripts/setup.sh            install + build (Release, build/)
#   SETUP_NO_BUILD=1 scripts/setup.sh   install only
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

packages=(
  # toolchain
  g++ cmake make pkg-config git
  # libraries
  libasio-dev libcurl4-openssl-dev libssl-dev liblz4-dev libxxhash-dev libsqlite3-dev
  prometheus-cpp-dev
  # kernel NBD devices through generic netlink (lib/nbdlink, docs/devices.md)
  libnl-3-dev libnl-genl-3-dev
  nlohmann-json3-dev libcli11-dev libtomlplusplus-dev libpugixml-dev libspdlog-dev
  catch2 librapidcheck-dev libbenchmark-dev
  # portalbd-csi: gRPC and protobuf, csi.proto compiled by protoc's C++ and gRPC plugins
  libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc
  # the libFuzzer targets (scripts/fuzz.sh, fuzz/README.md): clang 14, its fuzzer and
  # sanitizer runtimes, llvm-symbolizer for readable crash stacks
  clang libclang-rt-14-dev llvm
  # NBD test clients and tools
  libnbd-bin python3-libnbd nbdkit qemu-utils fio python3 python3-botocore
  # Ceph's RADOS Gateway, the real S3 server of the rgw tests (tests/e2e/rgw.py)
  ceph-mon ceph-osd radosgw ceph-common
  # the CSI tests' gRPC client (tests/csi/)
  python3-grpcio python3-protobuf
  # misc used by tests and benchmarks
  curl procps util-linux
  # TLS interop tests (tests/interop/test_tls.py): psktool and certtool; openssl's CLI
  gnutls-bin openssl
  # the TLS front before s3rver in tests/e2e/test_s3_https.py (and its certificates)
  stunnel4
  # re-recording the traces in traces/ (traces/record.sh): ext4 on FUSE, sqlite's CLI,
  # PostgreSQL's pgbench, a game server (minetest-server) generating a world
  fuse2fs e2fsprogs sqlite3 postgresql minetest-server
  # the peer in scripts/bench-s3-peers.sh: s3backer 1.5.4 on FUSE (fusermount)
  s3backer fuse
  # installing it (tests/package/): man pages from --help, the .deb, the unit, the NixOS files
  help2man dpkg-dev systemd nix-bin
  # promtool checks a live /metrics scrape (tests/interop/test_metrics.py)
  prometheus
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
# Node.js/npm only if npm is missing: some machines ship a Node build that conflicts with
# Debian's npm package.
if ! command -v npm >/dev/null 2>&1; then
  missing+=(nodejs npm)
fi

sudo_cmd=()
if [ "$(id -u)" != 0 ]; then sudo_cmd=(sudo); fi

if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# s3rver (real S3-compatible test server) into the project, pinned.
s3dir="$root/.deps/s3rver"
if [ ! -x "$s3dir/node_modules/.bin/s3rver" ]; then
  echo "setup: installing s3rver into $s3dir"
  mkdir -p "$s3dir"
  (cd "$s3dir" && npm install --no-audit --no-fund --silent s3rver@3.7.1 >/dev/null)
fi

if [ "${SETUP_NO_BUILD:-0}" != 1 ]; then
  build="${PORTALBD_BUILD_DIR:-$root/build}"
  cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE="${CMAKE_BUILD_TYPE:-Release}" >/dev/null
  cmake --build "$build" -j"${BUILD_JOBS:-2}"
fi
