"""End-to-end disk cache ([cache] dir, disk_size_bytes; docs/volume.md "Local disk
cache"): a real portalbd on s3rver, restarted.

- restart_warm: write 8 MiB of random data, FLUSH, stop. Restart with the same cache
  directory: reading it all back costs (next to) no GET, `portalctl status` counts the
  disk cache hits. Then the chunk directory is deleted and portalbd restarted: the same
  bytes come back, from the store (one GET per chunk at least), and the cache refills.
- damaged_entry: one bit of every cached entry flipped behind portalbd's back: every
  read still returns the written bytes (the entries are dropped and fetched again),
  status counts them as damaged.

GETs are counted by portalbd itself (`portalctl --json status`, requests.GET.calls).
Cases: `s3rver_*`.
"""

import json
import os
import random
import shutil

from e2e import Storage, check, check_eq, connect  # e2e puts tests/interop on the path
import harness
from harness import portalctl, run_cases

DATA = 8 << 20
CHUNK = 64 << 10  # 16 blocks of 4 KiB per chunk (VolumeOptions::blocks_per_chunk)


def status(d):
    return json.loads(portalctl(d, "--json", "status").stdout)["status"]


def gets(d):
    return status(d)["requests"].get("GET", {}).get("calls", 0)


def get_bytes(d):
    return status(d)["requests"].get("GET", {}).get("bytes", 0)


def start(st, tmp, chunks):
    config = st.config(os.path.join(tmp, "meta")) + "\n".join([
        "[lsm]", "flush_interval_ms = 0", 'block_cache_size_bytes = "1MiB"',
        "[cache]", f'dir = "{chunks}"', 'disk_size_bytes = "64MiB"']) + "\n"
    return harness.Daemon(tmp, config=config, env=st.env, ready_timeout=30)


def read_all(d):
    h = connect(d)
    out = bytearray()
    for off in range(0, DATA, 1 << 20):
        out += h.pread(1 << 20, off)
    h.shutdown()
    return bytes(out)


def write_data(st, tmp, chunks):
    data = random.Random(15).randbytes(DATA)
    with start(st, tmp, chunks) as d:
        h = connect(d)
        for off in range(0, DATA, 1 << 20):
            h.pwrite(data[off:off + (1 << 20)], off)
        h.flush()
        h.shutdown()
    return data


def case_s3rver_restart_warm(tmp):
    st = Storage(tmp, "s3rver")
    chunks = os.path.join(tmp, "chunks")
    data = write_data(st, tmp, chunks)
    entries = [f for f in os.listdir(chunks) if f != "LOCK"]
    check(len(entries) >= DATA // CHUNK, f"written chunks kept: {len(entries)} entries")

    with start(st, tmp, chunks) as d:
        before = gets(d)
        check_eq(read_all(d), data, "read back after a restart, warm disk cache")
        warm = gets(d) - before
        s = status(d)
        print(f"  warm: {warm} GETs for {DATA // CHUNK} chunks, disk cache hits "
              f"{s['disk_cache_hits']}, {s['disk_cache_bytes']} bytes", flush=True)
        check(warm <= 2, f"a warm disk cache reads without GETs (saw {warm})")
        check(s["disk_cache_hits"] >= DATA // CHUNK, f"disk cache hits: {s}")
        check(s["disk_cache_enabled"], "the disk cache is on")

    shutil.rmtree(chunks)  # never authoritative: nothing is lost
    with start(st, tmp, chunks) as d:
        before, before_bytes = gets(d), get_bytes(d)
        check_eq(read_all(d), data, "read back after the cache directory was deleted")
        cold, cold_bytes = gets(d) - before, get_bytes(d) - before_bytes
        print(f"  cold: {cold} GETs, {cold_bytes} bytes", flush=True)
        # Adjacent chunks come in one ranged GET (read-ahead, coalescing): count bytes.
        # The data is random, so its chunks do not compress.
        check(cold_bytes >= DATA, f"a cold read fetches every chunk (saw {cold_bytes} bytes)")
    with start(st, tmp, chunks) as d:
        before = gets(d)
        check_eq(read_all(d), data, "read back, cache refilled by the cold reads")
        check(gets(d) - before <= 2, "the cold reads refilled the disk cache")


def case_s3rver_damaged_entry(tmp):
    st = Storage(tmp, "s3rver")
    chunks = os.path.join(tmp, "chunks")
    data = write_data(st, tmp, chunks)
    damaged = 0
    for name in os.listdir(chunks):
        if name == "LOCK":
            continue
        path = os.path.join(chunks, name)
        with open(path, "r+b") as f:
            f.seek(os.path.getsize(path) - 100)
            b = f.read(1)
            f.seek(-1, os.SEEK_CUR)
            f.write(bytes([b[0] ^ 0x20]))
        damaged += 1
    with start(st, tmp, chunks) as d:
        before = get_bytes(d)
        check_eq(read_all(d), data, "read back with every disk cache entry damaged")
        s = status(d)
        fetched = get_bytes(d) - before
        print(f"  {damaged} entries damaged; {fetched} bytes fetched, "
              f"{s['disk_cache_damaged']} dropped", flush=True)
        check(s["disk_cache_damaged"] >= DATA // CHUNK, f"damaged entries counted: {s}")
        check(fetched >= DATA, f"damaged entries fetched again ({fetched} bytes)")


if __name__ == "__main__":
    run_cases(globals())
