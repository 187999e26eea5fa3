#!/usr/bin/env python3
"""Random 4 KiB reads after a restart: without a disk cache, with an empty one, and with a
warm one ([cache] disk_size_bytes), portalbd on s3rver (no latency front), fio over NBD.

    PORTALBD_BUILD_DIR=build SIZE_MB=256 RUNTIME=20 python3 scripts/bench-disk-cache.py

Writes SIZE_MB, restarts portalbd for each phase (memory block cache 16 MiB), and prints
IOPS, latency percentiles, the GETs each phase cost and the disk cache hits. `cold` starts
with an empty cache that fills as it reads (the whole device is SIZE_MB / 64 KiB chunks),
so after a few seconds it reads like `warm`; `off` is the cold figure.
"""
import json, os, subprocess, sys, tempfile
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "e2e"))
import e2e, harness
from e2e import Storage

SIZE_MB = int(os.environ.get("SIZE_MB", "512"))
RUNTIME = int(os.environ.get("RUNTIME", "20"))

def start(st, tmp, chunks, disk):
    cfg = st.config(os.path.join(tmp, "meta")) + "\n".join([
        "[lsm]", 'block_cache_size_bytes = "16MiB"',
        "[cache]", f'dir = "{chunks}"', f'disk_size_bytes = "{disk}"']) + "\n"
    return harness.Daemon(tmp, config=cfg, env=st.env, ready_timeout=60)

def fio(d, rw, bs, depth, extra=()):
    host, port = d.address.rsplit(":", 1)
    argv = ["fio", "--name=t", "--ioengine=nbd", f"--uri=nbd://{host}:{port}/portalbd",
            f"--rw={rw}", f"--bs={bs}", f"--iodepth={depth}", f"--size={SIZE_MB}M",
            "--output-format=json", *extra]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    j = json.loads(out[out.index("{"):])["jobs"][0]
    r = j["read"] if "read" in rw else j["write"]
    return r["iops"], r["clat_ns"]["percentile"].get("50.000000", 0) / 1e6, r["clat_ns"]["percentile"].get("99.000000", 0) / 1e6

def gets(d):
    s = json.loads(harness.portalctl(d, "--json", "status").stdout)["status"]
    return s["requests"].get("GET", {}).get("calls", 0), s.get("disk_cache_hits", 0)

tmp = tempfile.mkdtemp(prefix="dcbench-")
st = Storage(tmp, "s3rver")
chunks = os.path.join(tmp, "chunks")
with start(st, tmp, chunks, "2GiB") as d:
    print("write", fio(d, "write", "1M", 4, ["--end_fsync=1"]), flush=True)
import shutil
for label in ["off", "cold", "warm"]:
    if label == "cold":
        shutil.rmtree(chunks, ignore_errors=True)
    with start(st, tmp, chunks, "0" if label == "off" else "2GiB") as d:
        g0, h0 = gets(d)
        iops, p50, p99 = fio(d, "randread", "4k", 8, [f"--runtime={RUNTIME}", "--time_based", "--randseed=7"])
        g1, h1 = gets(d)
        print(f"{label}: randread 4k qd8 {RUNTIME}s: {iops:.0f} IOPS p50 {p50:.2f} ms p99 {p99:.2f} ms GETs {g1-g0} disk_hits {h1-h0}", flush=True)
        if label == "cold":
            # warm the disk cache over the whole device (sequential read), then restart
            print("warming", fio(d, "read", "1M", 4), flush=True)
            print("gets after warming", gets(d), flush=True)
shutil.rmtree(tmp, ignore_errors=True)
