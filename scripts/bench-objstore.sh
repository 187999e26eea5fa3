#!/usr/bin/env bash
# Object store throughput (prints numbers; not a test).
#
# PUT and GET of 8 MiB objects with 1, 8 and 32 requests in flight against s3rver and
# file://, through objstore-bench (our stores), beside curl uploading the same objects to
# the same s3rver sequentially, in the same run. Prints MB/s and requests/s, and the ratio
# of our PUT throughput at 8 in flight to sequential curl (target: >= 2x).
#
#   scripts/bench-objstore.sh            24 objects per phase
#   COUNT=48 scripts/bench-objstore.sh
#
# s3rver writes every object to disk and computes its MD5 in one Node process, so on a
# small machine it, not the client, is usually the limit: read the numbers with that in
# mind (file:// shows the client side without it).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build="${PORTALBD_BUILD_DIR:-$root/build}"
count="${COUNT:-24}"
size_mib=8

if [ ! -x "$build/objstore-bench" ]; then
  cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$build" --target objstore-bench -j"${BUILD_JOBS:-2}"
fi
s3rver="${PORTALBD_S3RVER:-$root/.deps/s3rver/node_modules/s3rver/bin/s3rver.js}"
if [ ! -f "$s3rver" ]; then
  echo "bench-objstore: s3rver not installed (run scripts/setup.sh)" >&2
  exit 1
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/portalbd-bench-XXXXXX")
s3pid=""
cleanup() {
  if [ -n "$s3pid" ]; then kill "$s3pid" 2>/dev/null || true; wait "$s3pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p "$tmp/s3rver" "$tmp/file"
NODE_OPTIONS=--openssl-legacy-provider node "$s3rver" --directory "$tmp/s3rver" \
  --address 127.0.0.1 --port "$port" --silent --configure-bucket bench >"$tmp/s3rver.log" 2>&1 &
s3pid=$!
for _ in $(seq 200); do
  curl -s -o /dev/null "http://127.0.0.1:$port/" && break
  sleep 0.05
done

export AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER AWS_REGION=us-east-1
export AWS_ENDPOINT_URL="http://127.0.0.1:$port" AWS_ALLOW_HTTP=true

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }  # utime + stime, in clock ticks
now() { date +%s%N; }

echo "== objstore-bench: $count objects of $size_mib MiB per phase ($(nproc) cores)"
c0=$(cpu_ticks "$s3pid"); w0=$(now)
"$build/objstore-bench" --url "s3://bench/objstore" --label s3rver --size-mib "$size_mib" \
  --count "$count" --inflight 1,8,32 | tee "$tmp/results"
c1=$(cpu_ticks "$s3pid"); w1=$(now)
python3 -c "import sys; c, w = $((c1 - c0)) / $(getconf CLK_TCK), $((w1 - w0)) / 1e9; \
print('   (s3rver itself used %.1f CPU-s in %.1f s: %.2f of %s cores busy)' % (c, w, c / w, '$(nproc)'))"
"$build/objstore-bench" --url "file://$tmp/file" --label file --size-mib "$size_mib" \
  --count "$count" --inflight 1,8,32 | tee -a "$tmp/results"

# curl: the same uploads, one after another, to the same s3rver, signed the same way.
head -c $((size_mib << 20)) /dev/urandom >"$tmp/object"
sha=$(sha256sum "$tmp/object" | cut -d' ' -f1)
curl_put() {  # curl_put <key>...: one curl process uploading each key in turn
  local args=()
  for key in "$@"; do args+=(-T "$tmp/object" "http://127.0.0.1:$port/bench/$key"); done
  curl -sf --aws-sigv4 "aws:amz:us-east-1:s3" --user S3RVER:S3RVER \
    -H "x-amz-content-sha256: $sha" -o /dev/null "${args[@]}"
}
report() {  # report <label> <nanos>
  python3 - "$1" "$2" "$count" "$size_mib" <<'EOF'
import sys
label, nanos, count, mib = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
secs = nanos / 1e9
mbps = count * (mib << 20) / 1e6 / secs
print("%-44s %8.1f MB/s  %7.1f req/s" % (label, mbps, count / secs))
EOF
}
t0=$(now)
for i in $(seq "$count"); do curl_put "curl-a/$i"; done
t1=$(now)
keys=(); for i in $(seq "$count"); do keys+=("curl-b/$i"); done
curl_put "${keys[@]}"
t2=$(now)
echo "== curl, sequential PUTs of the same objects to the same s3rver"
report "curl: one process per upload" $((t1 - t0)) | tee -a "$tmp/curl"
report "curl: one process, connection reused" $((t2 - t1)) | tee -a "$tmp/curl"

python3 - "$tmp/results" "$tmp/curl" <<'EOF'
import sys
ours = {}
for line in open(sys.argv[1]):
    if line.startswith("RESULT "):
        _, label, op, inflight, mbps, rps = line.split()
        ours[(label, op, int(inflight))] = float(mbps)
curl = [float(l.split("MB/s")[0].split()[-1]) for l in open(sys.argv[2])]
put8 = ours[("s3rver", "PUT", 8)]
print("== s3rver PUT at 8 in flight / sequential curl: %.2fx (one process per upload), "
      "%.2fx (one process, connection reused); target >= 2x" % (put8 / curl[0], put8 / curl[1]))
EOF
