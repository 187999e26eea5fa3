#!/usr/bin/env bash
# NBD throughput benchmark: portalbd (memory storage) beside `nbdkit memory`, measured
# alternately in one run with fio's nbd engine, and the ratio portalbd/nbdkit per
# workload (median of ROUNDS). Prints numbers; it is not a pass/fail test.
#
#   scripts/bench-nbd.sh                  # defaults: 3 rounds of 10 s per workload
#   ROUNDS=5 RUNTIME=20 scripts/bench-nbd.sh
#   PORTALBD_ARGS="--storage file:///tmp/x" scripts/bench-nbd.sh   # other storage
#   TLS=1 scripts/bench-nbd.sh            # also both over TLS (NBD_OPT_STARTTLS), same certs
#
# TLS=1 adds a second portalbd ([nbd] tls = "require") and a second nbdkit (--tls=require
# --tls-certificates=DIR) on one certificate made here with openssl, and prints the cost of
# TLS per workload for each (tls/plain) beside the portalbd/nbdkit ratios. No client
# certificates: fio's nbd engine cannot name one (libnbd refuses URI file access there).
#
# Workloads (each at iodepth 32, one connection, over TCP loopback):
#   seqwrite  1 MiB sequential writes over a 1 GiB span
#   randwrite 4 KiB random writes over the same span
#   randread  4 KiB random reads over the (now written) span
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build="${PORTALBD_BUILD_DIR:-$root/build}"
ROUNDS="${ROUNDS:-3}"
RUNTIME="${RUNTIME:-10}"
SPAN="${SPAN:-1G}"
TLS="${TLS:-0}"
for tool in fio nbdkit python3 $([ "$TLS" = 1 ] && echo openssl); do
  command -v "$tool" >/dev/null || { echo "bench-nbd: $tool is missing (run scripts/setup.sh)"; exit 1; }
done
[ -x "$build/portalbd" ] || { echo "bench-nbd: $build/portalbd not built (run scripts/setup.sh)"; exit 1; }

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
  for _ in $(seq 1 200); do
    (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "bench-nbd: nothing listening on port $1"; exit 1
}

pport=$(free_port)
"$build/portalbd" --address "127.0.0.1:$pport" --disk-size-gb 2 --socket "$work/portalbd.sock" \
  --log-level warn ${PORTALBD_ARGS:-} >"$work/portalbd.log" 2>&1 &
pids+=($!)
portalbd_pid=$!
kport=$(free_port)
nbdkit -f -p "$kport" -i 127.0.0.1 --exit-with-parent memory 2G >"$work/nbdkit.log" 2>&1 &
pids+=($!)
wait_port "$pport"
wait_port "$kport"

declare -A uri=([portalbd]="nbd://127.0.0.1:$pport/portalbd" [nbdkit]="nbd://127.0.0.1:$kport/")
servers=(portalbd nbdkit)
if [ "$TLS" = 1 ]; then
  pki="$work/pki"
  mkdir -p "$pki"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -keyout "$pki/ca-key.pem" -out "$pki/ca-cert.pem" -subj "/CN=bench CA" 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
    -keyout "$pki/server-key.pem" -out "$pki/server.csr" 2>/dev/null
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >"$pki/server.ext"
  openssl x509 -req -in "$pki/server.csr" -CA "$pki/ca-cert.pem" -CAkey "$pki/ca-key.pem" \
    -CAcreateserial -days 2 -extfile "$pki/server.ext" -out "$pki/server-cert.pem" 2>/dev/null
  printf '[nbd]\ntls = "require"\ntls_cert = "%s"\ntls_key = "%s"\n' \
    "$pki/server-cert.pem" "$pki/server-key.pem" >"$work/tls.toml"
  tport=$(free_port)
  "$build/portalbd" --address "127.0.0.1:$tport" --disk-size-gb 2 --socket "$work/tls.sock" \
    --config "$work/tls.toml" --log-level warn ${PORTALBD_ARGS:-} >"$work/portalbd-tls.log" 2>&1 &
  pids+=($!)
  ktport=$(free_port)
  nbdkit -f -p "$ktport" -i 127.0.0.1 --exit-with-parent --tls=require \
    --tls-certificates="$pki" memory 2G >"$work/nbdkit-tls.log" 2>&1 &
  pids+=($!)
  wait_port "$tport"
  wait_port "$ktport"
  # The server certificate is checked against our CA; fio gives libnbd no file names.
  uri[portalbd-tls]="nbds://127.0.0.1:$tport/portalbd?tls-verify-peer=false"
  uri[nbdkit-tls]="nbds://127.0.0.1:$ktport/?tls-verify-peer=false"
  servers+=(portalbd-tls nbdkit-tls)
fi

run_fio() {  # server workload -> prints "value unit"
  local server=$1 workload=$2 rw bs
  case $workload in
    seqwrite) rw=write; bs=1M ;;
    randwrite) rw=randwrite; bs=4k ;;
    randread) rw=randread; bs=4k ;;
  esac
  fio --name=bench --ioengine=nbd --uri="${uri[$server]}" --rw=$rw --bs=$bs --iodepth=32 \
      --size="$SPAN" --time_based --runtime="$RUNTIME" --ramp_time=1 --numjobs=1 \
      --output-format=json >"$work/fio.json" 2>"$work/fio.err" \
    || { echo "bench-nbd: fio failed against $server:"; cat "$work/fio.err"; exit 1; }
  /usr/bin/python3 - "$work/fio.json" "$workload" <<'PY'
import json, sys
text = open(sys.argv[1]).read()
job = json.loads(text[text.index("{"):])["jobs"][0]  # the nbd engine prints a banner first
wl = sys.argv[2]
side = job["read"] if wl == "randread" else job["write"]
if job["error"]:
    sys.exit("fio reported error %d" % job["error"])
if wl == "seqwrite":
    print("%.0f MB/s" % (side["bw_bytes"] / 1e6))
else:
    print("%.0f IOPS" % side["iops"])
PY
}

# Fill both devices once so that reads hit data, not holes.
for s in "${servers[@]}"; do
  fio --name=fill --ioengine=nbd --uri="${uri[$s]}" --rw=write --bs=1M --iodepth=32 \
      --size="$SPAN" >/dev/null 2>&1
done

echo "bench-nbd: $ROUNDS rounds x ${RUNTIME}s, span $SPAN, iodepth 32, TCP loopback, servers: ${servers[*]}"
declare -A results
for round in $(seq 1 "$ROUNDS"); do
  for wl in seqwrite randwrite randread; do
    # Alternate which server goes first, so drift on a shared machine hits both.
    if (( round % 2 )); then order="${servers[*]}"; else order=$(printf '%s\n' "${servers[@]}" | tac | xargs); fi
    for s in $order; do
      v=$(run_fio "$s" "$wl")
      results[$s,$wl]+="${v%% *} "
      unit=${v#* }
      printf '  round %d %-9s %-8s %10s %s\n' "$round" "$wl" "$s" "${v%% *}" "$unit"
    done
  done
done
rss=$(awk '/VmRSS/ {print $2}' /proc/$portalbd_pid/status)

median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo
printf '%-10s %14s %14s %8s\n' workload portalbd nbdkit ratio
for wl in seqwrite randwrite randread; do
  p=$(echo "${results[portalbd,$wl]}" | median)
  k=$(echo "${results[nbdkit,$wl]}" | median)
  unit=IOPS; [ "$wl" = seqwrite ] && unit=MB/s
  ratio=$(awk -v p="$p" -v k="$k" 'BEGIN {printf "%.2f", p / k}')
  printf '%-10s %9s %4s %9s %4s %8s\n' "$wl" "$p" "$unit" "$k" "$unit" "$ratio"
done
if [ "$TLS" = 1 ]; then
  echo
  echo "over TLS (tls/plain: the share of plaintext throughput kept under TLS)"
  printf '%-10s %14s %14s %8s %10s %10s\n' workload portalbd-tls nbdkit-tls ratio \
    "pbd tls/pl" "kit tls/pl"
  for wl in seqwrite randwrite randread; do
    p=$(echo "${results[portalbd,$wl]}" | median)
    k=$(echo "${results[nbdkit,$wl]}" | median)
    pt=$(echo "${results[portalbd-tls,$wl]}" | median)
    kt=$(echo "${results[nbdkit-tls,$wl]}" | median)
    unit=IOPS; [ "$wl" = seqwrite ] && unit=MB/s
    printf '%-10s %9s %4s %9s %4s %8s %10s %10s\n' "$wl" "$pt" "$unit" "$kt" "$unit" \
      "$(awk -v a="$pt" -v b="$kt" 'BEGIN {printf "%.2f", a / b}')" \
      "$(awk -v a="$pt" -v b="$p" 'BEGIN {printf "%.2f", a / b}')" \
      "$(awk -v a="$kt" -v b="$k" 'BEGIN {printf "%.2f", a / b}')"
  done
fi
echo "portalbd resident memory after the run: $((rss / 1024)) MiB"
