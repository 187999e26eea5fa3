#!/usr/bin/env bash
# portalbd on s3:// (s3rver, unsafe_no_fencing): requests, bytes and FLUSH latency for one
# workload. Prints numbers; it is not a pass/fail test.
#
#   scripts/bench-s3.sh
#   IDLE_S=30 PUT_SAMPLES=128 scripts/bench-s3.sh
#   ENCRYPT=both scripts/bench-s3.sh   # the workload without, then with encryption at
#                                      # rest (ENCRYPT=on: with only), and both ratios
#
# Workload, against one portalbd with default [lsm] settings on a 2 GiB device:
#   A. 256 MiB sequential writes, fio --ioengine=nbd, 1 MiB blocks, iodepth 32, fsync at
#      the end (one FLUSH);
#   B. 64 MiB of random 4 KiB writes over a 1 GiB span, 32 in flight, a FLUSH after every
#      256 writes (64 FLUSHes), by a small libnbd script (fio's --fsync=256 issues a sync
#      on nearly every write once iodepth > 1), each FLUSH timed;
#   C. 15 s idle.
# Then: one PUT of a FLUSH's segment size with curl to the same s3rver, PUT_SAMPLES times
# in one process (connection reused), for FLUSH p50/p99 beside PUT p50/p99.
#
# Request counts come from portalbd's own status line (SIGUSR1): `requests` counts store
# calls by kind (PUT and PUT_IF_ABSENT are both PUTs), http_requests the HTTP requests
# sent. Targets (from the volume issue): PUTs per GiB written <= 320, bytes uploaded /
# bytes written <= 2, requests while idle <= 3 in 15 s, FLUSH p50 <= 1.5x one PUT's p50.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
export PORTALBD_BUILD_DIR="${PORTALBD_BUILD_DIR:-$root/build}"
for tool in fio curl node /usr/bin/python3; do
  command -v "$tool" >/dev/null || { echo "bench-s3: $tool is missing (run scripts/setup.sh)"; exit 1; }
done
[ -x "$PORTALBD_BUILD_DIR/portalbd" ] || { echo "bench-s3: $PORTALBD_BUILD_DIR/portalbd not built"; exit 1; }
export PYTHONPATH="$root/tests/e2e:$root/tests/interop" PYTHONDONTWRITEBYTECODE=1
if [ "${ENCRYPT:-off}" = both ]; then
  out=$(mktemp)
  trap 'rm -f "$out"' EXIT
  for e in off on; do
    echo "=== ENCRYPT=$e"
    ENCRYPT=$e "$0" "$@" | tee -a "$out"
  done
  echo
  echo "=== bytes uploaded / bytes written, encryption off then on (same workload):"
  grep -E "^(encryption|bytes uploaded / written)" "$out"
  exit 0
fi
exec /usr/bin/python3 - "$@" <<'PY'
import hashlib
import json
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import e2e
import harness

IDLE_S = float(os.environ.get("IDLE_S", 15))
PUT_SAMPLES = int(os.environ.get("PUT_SAMPLES", 64))
MiB, GiB = 1 << 20, 1 << 30
SEQ_BYTES, RAND_BYTES, SPAN = 256 * MiB, 64 * MiB, 1 * GiB
FLUSH_EVERY, INFLIGHT = 256, 32

tmp = tempfile.mkdtemp(prefix="portalbd-bench-s3-")
harness._tmp_roots.append(tmp)  # removed at exit (PORTALBD_KEEP_TMP=1 keeps it)
try:
    s3 = e2e.S3rver(tmp, buckets=("bench",))
except harness.Skip as e:
    sys.exit(f"bench-s3: {e}")
nbd = harness.import_nbd()
cfg = os.path.join(tmp, "portalbd.toml")
ENCRYPT = os.environ.get("ENCRYPT", "off") == "on"
with open(cfg, "w") as f:
    f.write(f'[device]\ndisk_size_gb = 2\n[storage]\nurl = "s3://bench/vol"\n'
            f'cache_dir = "{tmp}/cache"\nunsafe_no_fencing = true\n')
    if ENCRYPT:  # a random key, raw 32 bytes (docs/volume.md "Encryption")
        with open(os.path.join(tmp, "volume.key"), "wb") as k:
            k.write(os.urandom(32))
        f.write(f'encryption_key_file = "{tmp}/volume.key"\n')
d = harness.Daemon(tmp, config=open(cfg).read(), env=s3.env(), ready_timeout=30)

STATUS_RE = re.compile(r"(\w+) calls=(\d+) errors=(\d+) bytes=(\d+)")


def parse_status(line):
    """{kind: (calls, errors, bytes)} from a status line, plus 'HTTP': (requests, retries)."""
    reqs = line.split('requests="', 1)[1].split('"', 1)[0]
    out = {k: (int(c), int(e), int(b)) for k, c, e, b in STATUS_RE.findall(reqs)}
    m = re.search(r"http_requests=(\d+) http_retries=(\d+)", line)
    out["HTTP"] = (int(m.group(1)), int(m.group(2)), 0) if m else (0, 0, 0)
    return out


def status_lines():
    return [x for x in d.log().splitlines() if " status " in x]


def snapshot():
    """Counters from a fresh status line (SIGUSR1), with the time it was taken."""
    n = len(status_lines())
    os.kill(d.pid, signal.SIGUSR1)
    deadline = time.monotonic() + 10
    while len(status_lines()) == n:
        if time.monotonic() > deadline:
            sys.exit("bench-s3: no status line after SIGUSR1")
        time.sleep(0.01)
    out = parse_status(status_lines()[-1])
    out["_t"] = time.monotonic()
    return out


def delta(a, b):
    keys = {k for k in list(a) + list(b) if k != "_t"}
    return {k: tuple(y - x for x, y in zip(a.get(k, (0, 0, 0)), b.get(k, (0, 0, 0))))
            for k in keys}


def summary(dl):
    c = lambda k, i=0: dl.get(k, (0, 0, 0))[i]  # noqa: E731
    return {"PUT": c("PUT") + c("PUT_IF_ABSENT"), "GET": c("GET"), "HEAD": c("HEAD"),
            "LIST": c("LIST"), "DELETE": c("DELETE"), "HTTP": c("HTTP"),
            "retries": c("HTTP", 1), "errors": sum(v[1] for k, v in dl.items() if k != "HTTP"),
            "put_bytes": c("PUT", 2) + c("PUT_IF_ABSENT", 2), "get_bytes": c("GET", 2)}


def fmt_counts(s):
    return (f"PUT {s['PUT']:5d}  GET {s['GET']:5d}  HEAD {s['HEAD']:3d}  LIST {s['LIST']:3d}  "
            f"DELETE {s['DELETE']:4d}  | HTTP requests {s['HTTP']:5d} (retries {s['retries']}, "
            f"errors {s['errors']})  uploaded {s['put_bytes'] / MiB:8.1f} MiB")


def pct(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]


print(f"bench-s3: portalbd {d.address} on s3rver {s3.endpoint} (s3://bench/vol), "
      f"{os.cpu_count()} cores", flush=True)
s_open = snapshot()

# --- A: 256 MiB sequential, fio, fsync at the end ---------------------------------------
t0 = time.monotonic()
r = harness.run(["fio", "--name=seq", "--ioengine=nbd", f"--uri={d.uri()}", "--rw=write",
                 "--bs=1M", "--iodepth=32", f"--size={SEQ_BYTES}", "--end_fsync=1",
                 "--refill_buffers", "--output-format=json"], timeout=900)
ta = time.monotonic() - t0
job = json.loads(r.stdout[r.stdout.index("{"):])["jobs"][0]
if job["error"]:
    sys.exit(f"bench-s3: fio failed: {job['error']}")
s_a = snapshot()
print(f"A  256 MiB sequential (1 MiB, iodepth 32, fsync at end): {ta:.1f} s, "
      f"{SEQ_BYTES / ta / 1e6:.0f} MB/s", flush=True)

# --- B: 64 MiB random 4 KiB over 1 GiB, a FLUSH every 256 writes --------------------------
# One PUT of a FLUSH's size: 256 blocks and the segment's footer (~1.3 KiB for 256 random
# blocks; the bytes B really uploaded per FLUSH are printed at the end), signed like ours.
PUT_SIZE = FLUSH_EVERY * 4096 + 1300
obj = os.path.join(tmp, "object")
with open(obj, "wb") as f:
    f.write(os.urandom(PUT_SIZE))
SHA = hashlib.sha256(open(obj, "rb").read()).hexdigest()
curl_n = 0


def curl_puts(n):
    """n sequential PUTs of `obj` by one curl process (one connection); seconds each."""
    global curl_n
    argv = ["curl", "-sf", "--aws-sigv4", "aws:amz:us-east-1:s3", "--user", "S3RVER:S3RVER",
            "-H", f"x-amz-content-sha256: {SHA}", "-o", "/dev/null", "-w", "%{time_total}\n"]
    for _ in range(n):
        curl_n += 1
        argv += ["-T", obj, f"{s3.endpoint}/bench/curl/{curl_n:05d}"]
    return [float(x) for x in harness.run(argv, timeout=600).stdout.split()]


h = nbd.NBD()
h.connect_uri(d.uri())
paired_put_s = []
rng = random.Random(42)
flush_s, failures = [], []


def done(err):
    if err.value:
        failures.append(err.value)
    return 1  # retire the command


tb = 0.0  # writing and flushing, without the paired curl PUTs
for _ in range(RAND_BYTES // 4096 // FLUSH_EVERY):
    t0 = time.monotonic()
    issued = 0
    while issued < FLUSH_EVERY or h.aio_in_flight() > 0:
        while issued < FLUSH_EVERY and h.aio_in_flight() < INFLIGHT:
            buf = nbd.Buffer.from_bytearray(bytearray(os.urandom(4096)))
            h.aio_pwrite(buf, rng.randrange(SPAN // 4096) * 4096, completion=done)
            issued += 1
        h.poll(-1)
    f0 = time.perf_counter()
    h.flush()
    flush_s.append(time.perf_counter() - f0)
    tb += time.monotonic() - t0
    paired_put_s.extend(curl_puts(1))  # the same s3rver, the same moment
if failures:
    sys.exit(f"bench-s3: {len(failures)} writes failed")
s_b = snapshot()
print(f"B  64 MiB random 4 KiB over 1 GiB, FLUSH every 256 writes: {tb:.1f} s, "
      f"{RAND_BYTES // 4096 / tb:.0f} writes/s, {len(flush_s)} FLUSHes", flush=True)

# --- C: idle ------------------------------------------------------------------------
timeline = []
prev = s_b
t_idle = time.monotonic()
while time.monotonic() - t_idle < IDLE_S:
    time.sleep(min(1.0, IDLE_S - (time.monotonic() - t_idle)))
    cur = snapshot()
    dl = summary(delta(prev, cur))
    if dl["HTTP"]:
        timeline.append(f"{cur['_t'] - t_idle:5.1f} s: " + ", ".join(
            f"{k} {v}" for k, v in dl.items() if v and k in ("PUT", "GET", "HEAD", "LIST",
                                                            "DELETE")))
    prev = cur
s_c = prev
h.shutdown()

# --- More PUTs of that size, one process, connection reused ---------------------------------
put_s = curl_puts(PUT_SAMPLES)
s_end = snapshot()
d.stop(timeout=120)
s_stop = delta(s_end, parse_status(status_lines()[-1]))  # logged by the shutdown itself

# --- Report ----------------------------------------------------------------------------
written = SEQ_BYTES + RAND_BYTES
sa, sb, sc = (summary(delta(s_open, s_a)), summary(delta(s_a, s_b)), summary(delta(s_b, s_c)))
whole = summary(delta(s_open, s_c))
print()
print("requests (portalbd's status line; PUT = PUT + PUT_IF_ABSENT):")
print(f"  at open       {fmt_counts(summary(delta({}, s_open)))}")
print(f"  A sequential  {fmt_counts(sa)}")
print(f"  B random      {fmt_counts(sb)}")
print(f"  C idle {IDLE_S:3.0f} s  {fmt_counts(sc)}")
print(f"  A+B+C         {fmt_counts(whole)}")
print(f"  at shutdown   {fmt_counts(summary(s_stop))}")
if timeline:
    print("  idle timeline (requests per 1 s sample):")
    for t in timeline:
        print("    " + t)
print()
puts_per_gib = whole["PUT"] / (written / GiB)
amp = whole["put_bytes"] / written
idle_reqs = sc["HTTP"] if sc["HTTP"] else sum(sc[k] for k in ("PUT", "GET", "HEAD", "LIST",
                                                               "DELETE"))
fp50, fp99 = pct(flush_s, 50) * 1e3, pct(flush_s, 99) * 1e3
qp50, qp99 = pct(paired_put_s, 50) * 1e3, pct(paired_put_s, 99) * 1e3
pp50, pp99 = pct(put_s, 50) * 1e3, pct(put_s, 99) * 1e3


def verdict(ok):
    return "ok" if ok else "MISSED"


print(f"encryption at rest          {'on (AES-256-GCM)' if ENCRYPT else 'off'}")
print(f"bytes written {written / MiB:.0f} MiB; uploaded {whole['put_bytes'] / MiB:.1f} MiB")
print(f"PUTs per GiB written        {puts_per_gib:8.1f}   (target <= 320)  {verdict(puts_per_gib <= 320)}")
print(f"bytes uploaded / written    {amp:8.2f}   (target <= 2)    {verdict(amp <= 2)}")
print(f"requests while idle {IDLE_S:.0f} s   {idle_reqs:8d}   (target <= 3)    {verdict(idle_reqs <= 3)}")
print(f"FLUSH latency p50 / p99     {fp50:7.1f} / {fp99:.1f} ms ({len(flush_s)} FLUSHes; B "
      f"uploaded {sb['put_bytes'] / len(flush_s):.0f} B per FLUSH)")
print(f"PUT of {PUT_SIZE} B p50 / p99  {qp50:7.1f} / {qp99:.1f} ms (curl, one after each FLUSH, "
      f"new connection each)")
print(f"PUT of {PUT_SIZE} B p50 / p99  {pp50:7.1f} / {pp99:.1f} ms (curl, {len(put_s)} in a row "
      f"after the idle phase, one connection)")
print(f"FLUSH p50 / PUT p50         {fp50 / qp50:8.2f}x  (target <= 1.5x) {verdict(fp50 / qp50 <= 1.5)}"
      f"   ({fp50 / pp50:.2f}x against the PUTs in a row)")
PY
