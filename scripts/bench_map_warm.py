"""The body of scripts/bench-map-warm.sh: the map warm-up at open (LsmVolume::WarmMap),
map GETs and time, on a volume with a real map, behind s3-front (as
scripts/bench-s3-peers.sh: LATENCY_MS, CONN_MBPS, BENCH_MIB).

Writes the span sequentially (1 MiB), then random 4 KiB writes (8 in flight) for WRITE_S
seconds with [lsm] l0_sst_size_bytes = 1MiB (so the map is in SSTs), then restarts
portalbd RESTARTS times on the same cache_dir. For each start it counts GETs of map SSTs
(from s3rver's request log) before and after "ready", until 3 s pass without one, and
the time from ready to the last, and the LIST requests of map/ in that time (open's
check that every SST the manifest names is stored, docs/volume.md "Damage"). No client
I/O after the writes."""
import os
import re
import tempfile
import time

import bench_s3_peers as b
import e2e
import harness

WRITE_S = int(os.environ.get("WRITE_S", 30))
RESTARTS = int(os.environ.get("RESTARTS", 3))
MAP = re.compile(r"/pbd/map/\S+ 20[06] \S+ (\S+)")
LIST_MAP = re.compile(r"list-type=2\S*prefix=pbd(/|%2F)map")  # a page of a map/ listing


LISTS = [0]  # map/ listing requests seen by map_gets so far


def map_gets(path, start):
    """(count, KiB) of map GETs logged after byte `start` of s3rver's log, and its size.
    Counts the map/ LIST requests among them in LISTS."""
    with open(path, "rb") as f:
        f.seek(start)
        data = f.read()
    n, kib = 0, 0.0
    for line in re.sub(rb"\x1b\[[0-9;]*m", b"", data).decode(errors="replace").splitlines():
        if LIST_MAP.search(line):
            LISTS[0] += 1
        m = MAP.search(line)
        if m:
            n += 1
            s = m.group(1)
            kib += (float(s[:-2]) * 1024 if s.endswith("mb") else
                    float(s[:-2]) if s.endswith("kb") else float(s[:-1]) / 1024)
    return n, kib, start + len(data)


def main():
    spawn = e2e.spawn  # s3rver logs every request: not --silent
    e2e.spawn = lambda argv, **kw: spawn([a for a in argv if a != "--silent"], **kw)
    tmp = tempfile.mkdtemp(prefix="portalbd-mapwarm-")
    harness._tmp_roots.append(tmp)
    s3 = e2e.S3rver(tmp, buckets=("bench",))
    front = b.Front(s3.port, b.LATENCY_MS, b.CONN_MBPS)
    peer = b.Portalbd(tmp, s3, front, '[lsm]\nl0_sst_size_bytes = "1MiB"\n')
    print(f"portalbd {harness.build_dir()}/portalbd, span {b.SPAN >> 20} MiB, random writes "
          f"{WRITE_S} s, {b.LATENCY_MS:g} ms per request, load {os.getloadavg()[0]:.1f}",
          flush=True)
    peer.start()
    b.fio(peer.target(8), "--rw=write", "--bs=1M", f"--size={b.SPAN}", "--end_fsync=1")
    job, _ = b.fio(peer.target(8), "--rw=randwrite", "--bs=4k", f"--size={b.SPAN}",
                   "--end_fsync=1", "--time_based", f"--runtime={WRITE_S}")
    print(f"random writes: {job['write']['total_ios']}", flush=True)
    peer.stop()
    n_ssts = len([k for k in os.listdir(os.path.join(s3.data_dir, "bench", "pbd", "map"))
                  if k.endswith("._S3rver_object")])
    print(f"map SSTs in the store: {n_ssts}", flush=True)
    for n in range(RESTARTS):
        _, _, at = map_gets(s3.log_path, os.path.getsize(s3.log_path))
        LISTS[0] = 0
        t0 = time.monotonic()
        peer.start()
        ready = time.monotonic()
        before, before_kib, at = map_gets(s3.log_path, at)
        after, after_kib, last_t = 0, 0.0, ready
        while time.monotonic() - last_t < 3.0:
            time.sleep(0.005)
            k, kib, at = map_gets(s3.log_path, at)
            if k:
                after, after_kib, last_t = after + k, after_kib + kib, time.monotonic()
        last = f"{1000 * (last_t - ready):.0f} ms after ready" if after else "none"
        print(f"start {n + 1}: ready in {1000 * (ready - t0):.0f} ms; map GETs before ready "
              f"{before} ({before_kib:.0f} KiB), after ready {after} ({after_kib:.0f} KiB); "
              f"last map GET {last}; map/ LIST requests {LISTS[0]}", flush=True)
        peer.stop()


if __name__ == "__main__":
    main()
