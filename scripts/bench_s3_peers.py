"""The body of scripts/bench-s3-peers.sh (read its header): portalbd beside s3backer on one
s3rver behind s3-front."""

import atexit
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request

import e2e
import harness

MiB = 1 << 20
SPAN = int(os.environ.get("BENCH_MIB", 1024)) * MiB
PHASE_S = int(os.environ.get("PHASE_S", 30))
LATENCY_MS = float(os.environ.get("LATENCY_MS", 25))
CONN_MBPS = float(os.environ.get("CONN_MBPS", 150))
CEIL_BYTES = int(os.environ.get("CEIL_MIB", 256)) * MiB
PEERS = os.environ.get("PEERS", "portalbd s3backer").split()
PHASES = os.environ.get("PHASES", "abcde")
LAT_LOG = os.environ.get("LAT_LOG", "")
FRONT = os.environ.get("S3_FRONT") or os.path.join(harness.build_dir(), "s3-front")
EMPTY_SHA = hashlib.sha256(b"").hexdigest()


def log(msg):
    print(f"bench-s3-peers: {msg}", flush=True)


class Front:
    """tools/s3-front in front of s3rver."""

    def __init__(self, upstream_port, latency_ms, conn_mbps):
        self.proc = harness.spawn(
            [FRONT, "--listen", "127.0.0.1:0", "--upstream",
             f"127.0.0.1:{upstream_port}", "--latency-ms", str(latency_ms), "--conn-mbps",
             str(conn_mbps)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.proc.stdout.readline()
        m = re.match(r"s3-front: listening on 127\.0\.0\.1:(\d+)", line)
        if not m:
            sys.exit(f"bench-s3-peers: s3-front did not start: {line!r}")
        self.port = int(m.group(1))
        self.endpoint = f"http://127.0.0.1:{self.port}"

    def stats(self):
        with urllib.request.urlopen(self.endpoint + "/__stats", timeout=10) as r:
            return json.load(r)

    def cpu_s(self):
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cost(a, b):
    """Requests and bytes between two /__stats snapshots: {method: (requests, in, out)}."""
    out = {}
    for m, v in b["methods"].items():
        w = a["methods"].get(m, {"requests": 0, "bytes_in": 0, "bytes_out": 0})
        d = (v["requests"] - w["requests"], v["bytes_in"] - w["bytes_in"],
             v["bytes_out"] - w["bytes_out"])
        if any(d):
            out[m] = d
    return out


def fmt_cost(c):
    if not c:
        return "no requests"
    parts = []
    for m in sorted(c):
        n, bin_, bout = c[m]
        mib = (bin_ + bout) / MiB
        parts.append(f"{m} {n}" + (f" ({mib:.1f} MiB)" if mib >= 0.05 else ""))
    return ", ".join(parts)


# --- Ceilings: many 1 MiB / 8 MiB objects on 8 connections, one curl each ----------------


def parallel(endpoint, method, obj, count, conns=8):
    """`count` requests of `obj` spread over `conns` curl processes (one connection each);
    MB/s of bodies."""
    size = os.path.getsize(obj)
    sha = hashlib.sha256(open(obj, "rb").read()).hexdigest() if method == "PUT" else EMPTY_SHA
    procs = []
    t0 = time.monotonic()
    for c in range(conns):
        argv = ["curl", "-sf", "--aws-sigv4", "aws:amz:us-east-1:s3", "--user", "S3RVER:S3RVER",
                "-H", f"x-amz-content-sha256: {sha}"]
        for i in range(c, count, conns):
            url = f"{endpoint}/bench/ceiling/{size}-{i % 32}"
            argv += ["-T", obj, url] if method == "PUT" else ["-o", "/dev/null", url]
        procs.append(harness.spawn(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    for p in procs:
        if p.wait(timeout=600) != 0:
            sys.exit(f"bench-s3-peers: curl {method} to {endpoint} failed")
    return count * size / (time.monotonic() - t0) / 1e6


def ceilings(tmp, s3, front):
    objs = {}
    for n in (1, 8):
        objs[n] = os.path.join(tmp, f"obj{n}")
        with open(objs[n], "wb") as f:
            f.write(os.urandom(n * MiB))
    bare = Front(s3.port, 0, 0)
    out = {}
    count = max(8, CEIL_BYTES // MiB)
    # Two rounds, alternating, the best of each: other processes on the machine only ever
    # make a figure lower.
    for _ in range(2):
        for name, ep in (("s3rver", s3.endpoint), ("front 0 ms, no cap", bare.endpoint)):
            cpu0 = bare.cpu_s()
            put = parallel(ep, "PUT", objs[1], count)
            get = parallel(ep, "GET", objs[1], count)
            best = out.get(name, (0, 0))
            out[name] = (max(put, best[0]), max(get, best[1]))
            log(f"ceiling, 8 connections of 1 MiB objects, {name}: PUT {put:.0f} MB/s, "
                f"GET {get:.0f} MB/s" + (f" (front CPU {bare.cpu_s() - cpu0:.2f} s for "
                                         f"{2 * count} MiB)" if ep == bare.endpoint else ""))
    bare.proc.kill()
    s0 = front.stats()
    put8 = parallel(front.endpoint, "PUT", objs[8], max(8, CEIL_BYTES // (8 * MiB)))
    out["large PUTs"] = put8
    log(f"ceiling, 8 connections of 8 MiB PUTs through the front ({LATENCY_MS:g} ms, "
        f"{CONN_MBPS:g} MB/s each): {put8:.0f} MB/s [{fmt_cost(cost(s0, front.stats()))}]")
    return out


# --- fio ---------------------------------------------------------------------------------


def fio(target, *args, timeout=3600, seed=42):
    """Runs one fio job against `target` (a list of fio arguments naming the device);
    returns (job JSON, wall seconds)."""
    t0 = time.monotonic()
    # fio 3.33 draws random offsets from `--randseed` only with `--randrepeat=0`; with
    # the default, every seed gives the same offsets.
    r = harness.run(["fio", "--name=bench", "--output-format=json", "--randrepeat=0",
                     f"--randseed={seed}",
                     "--group_reporting", *target, *args], timeout=timeout)
    wall = time.monotonic() - t0
    job = json.loads(r.stdout[r.stdout.index("{"):])["jobs"][0]
    if job["error"]:
        sys.exit(f"bench-s3-peers: fio failed: {job['error']}")
    return job, wall


def pct_ms(lat, p):
    return lat["percentile"][f"{p:.6f}"] / 1e6 if lat.get("percentile") else float("nan")


# --- Peers ---------------------------------------------------------------------------------


class Portalbd:
    name = "portalbd"

    def __init__(self, tmp, s3, front, cache_cfg=""):
        self.tmp, self.s3, self.front = tmp, s3, front
        gib = max(1, -(-SPAN // (1 << 30)))
        metrics = '[metrics]\naddress = "127.0.0.1:0"\n' if LAT_LOG else ""
        self.config = (f'[device]\ndisk_size_gb = {gib}\n[storage]\nurl = "s3://bench/pbd"\n'
                       f'cache_dir = "{tmp}/pbd-meta"\nunsafe_no_fencing = true\n{cache_cfg}'
                       f'{metrics}')
        self.d = None

    def start(self):
        self.d = harness.Daemon(self.tmp, config=self.config, ready_timeout=120,
                                env=self.s3.env(AWS_ENDPOINT_URL=self.front.endpoint))

    def stop(self):
        self.d.stop(timeout=900)

    def save_evidence(self, prefix):
        """LAT_LOG: the daemon's log and /metrics at the end of a phase, beside fio's logs."""
        with open(prefix + ".portalbd.log", "w") as f:
            f.write(self.d.log())
        m = re.search(r"metrics server listening address=(\S+)", self.d.log())
        if m:
            with urllib.request.urlopen(f"http://{m.group(1)}/metrics", timeout=10) as r:
                with open(prefix + ".metrics", "wb") as f:
                    f.write(r.read())

    def target(self, inflight):
        return ["--ioengine=nbd", f"--uri={self.d.uri()}", f"--iodepth={inflight}"]

    def until_durable(self):
        return 0.0  # FLUSHes are acknowledged once durable


class S3backer:
    name = "s3backer"

    def __init__(self, tmp, s3, front):
        self.tmp, self.front = tmp, front
        self.mnt = os.path.join(tmp, "s3backer-mnt")
        os.makedirs(self.mnt, exist_ok=True)
        self.proc = None
        # Runs before the harness kills s3backer and removes tmp (atexit is LIFO), so an
        # interrupted run leaves no dead FUSE mount behind.
        atexit.register(lambda: subprocess.run(["fusermount", "-u", "-z", self.mnt],
                                               capture_output=True))

    def start(self):
        self.proc = harness.spawn(
            ["s3backer", "--accessId=S3RVER", "--accessKey=S3RVER",
             f"--baseURL={self.front.endpoint}/", "--blockSize=1m", f"--size={SPAN}",
             "--blockCacheSize=256", "--listBlocks", "--prefix=s3backer/", "--quiet", "-f",
             "bench", self.mnt],
            stdout=open(os.path.join(self.tmp, "s3backer.log"), "ab"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while not os.path.exists(os.path.join(self.mnt, "stats")):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                sys.exit("bench-s3-peers: s3backer did not mount; see s3backer.log")
            time.sleep(0.05)

    def stop(self):
        harness.run(["fusermount", "-u", self.mnt])
        self.proc.wait(timeout=900)

    def target(self, inflight):
        # 8 psync jobs for 8 in flight: libaio on a FUSE file runs one at a time.
        return [f"--filename={self.mnt}/file", "--direct=1", "--ioengine=psync",
                f"--numjobs={inflight}"]

    def dirty_blocks(self):
        with open(os.path.join(self.mnt, "stats")) as f:
            m = re.search(r"block_cache_dirty_ratio\s+([0-9.]+)", f.read())
        return round(float(m.group(1)) * 256)  # of the 256-block cache

    def until_durable(self):
        """s3backer 1.5.4's fsync returns at once: waits for its write-back instead."""
        t0 = time.monotonic()
        while self.dirty_blocks():
            time.sleep(0.02)
        return time.monotonic() - t0


def run_phases(peer, front, label="", write=True, repeat=None):
    """Phases a-d (c-d without `write`) on `peer`, started; returns {phase: (result, cost)}.
    `repeat`: the results of an earlier pass, whose reads c and d repeat exactly (the same
    random offsets, as --randseed is fixed, and as many; the same bytes) instead of
    running PHASE_S seconds."""
    res = {}

    def measured(key, fn):
        s0 = front.stats()
        r = fn()
        res[key] = (r, cost(s0, front.stats()))
        log(f"{peer.name}{label} {key}: " + ", ".join(
            f"{k} {v:.1f}" if isinstance(v, float) else f"{k} {v}" for k, v in r.items()) + f" [{fmt_cost(res[key][1])}]")

    def seq_write():
        _, wall = fio(peer.target(8 if peer.name == "portalbd" else 1), "--rw=write",
                      "--bs=1M", f"--size={SPAN}", "--end_fsync=1", "--refill_buffers")
        wall += peer.until_durable()
        return {"MB/s": SPAN / wall / 1e6, "s": wall}

    def rand_write():
        job, _ = fio(peer.target(1), "--rw=randwrite", "--bs=4k", f"--size={SPAN}",
                     "--fsync=32", "--end_fsync=1", "--time_based", f"--runtime={PHASE_S}",
                     "--refill_buffers")
        drain = peer.until_durable()
        ios = job["write"]["total_ios"]
        return {"IOPS": ios / (job["job_runtime"] / 1e3 + drain),
                "FLUSH p50 ms": pct_ms(job["sync"]["lat_ns"], 50), "drain s": drain}

    def restart():
        peer.stop()
        peer.start()

    def rand_read():
        limit = ([f"--number_ios={repeat['c'][0]['reads']}"] if repeat else
                 ["--time_based", f"--runtime={PHASE_S}"])
        # Not b's seed: with it, c reads b's blocks in the order b wrote them, and 15 of 16
        # reads find the chunk the read before fetched (p50 a cache hit, not a cold read).
        log_args = []
        if LAT_LOG:
            log_args = [f"--write_lat_log={LAT_LOG}-{peer.name}{label.strip(' ()')}",
                        "--log_offset=1"]
        job, _ = fio(peer.target(8), "--rw=randread", "--bs=4k", f"--size={SPAN}", *limit,
                     *log_args, seed=43)
        if LAT_LOG and peer.name == "portalbd":
            peer.save_evidence(f"{LAT_LOG}-{peer.name}{label.strip(' ()')}")
        lat = job["read"]["clat_ns"]
        return {"IOPS": job["read"]["iops"], "p50 ms": pct_ms(lat, 50),
                "p99 ms": pct_ms(lat, 99), "reads": job["read"]["total_ios"]}

    def seq_read():
        limit = ([f"--size={repeat['d'][0]['MiB']}M"] if repeat else
                 [f"--size={SPAN}", f"--runtime={PHASE_S}"])
        job, _ = fio(peer.target(1), "--rw=read", "--bs=1M", *limit)
        return {"MB/s": job["read"]["bw_bytes"] / 1e6, "MiB": job["read"]["io_bytes"] // MiB}

    if write and "a" in PHASES:
        measured("a", seq_write)
    if write and "b" in PHASES:
        measured("b", rand_write)
    if "c" in PHASES:
        restart()
        measured("c", rand_read)
    if "d" in PHASES:
        restart()
        measured("d", seq_read)
    return res


def main():
    tmp = tempfile.mkdtemp(prefix="portalbd-bench-s3-peers-")
    harness._tmp_roots.append(tmp)  # removed at exit (PORTALBD_KEEP_TMP=1 keeps it)
    try:
        s3 = e2e.S3rver(tmp, buckets=("bench",))
    except harness.Skip as e:
        sys.exit(f"bench-s3-peers: {e}")
    front = Front(s3.port, LATENCY_MS, CONN_MBPS)
    log(f"s3rver {s3.endpoint} behind s3-front {front.endpoint} ({LATENCY_MS:g} ms per "
        f"request, {CONN_MBPS:g} MB/s per connection); span {SPAN // MiB} MiB, {PHASE_S} s "
        f"phases, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
    ceil = ceilings(tmp, s3, front) if CEIL_BYTES else {}
    results = {}
    for name in PEERS:
        peer = Portalbd(tmp, s3, front) if name == "portalbd" else S3backer(tmp, s3, front)
        peer.start()
        results[name] = run_phases(peer, front)
        peer.stop()
    warm = None
    if "portalbd" in PEERS and "e" in PHASES:
        warm = warm_cache_phases(tmp, s3, front)
    report(results, ceil, warm)


def warm_cache_phases(tmp, s3, front):
    """e: portalbd restarted with its disk cache on the volume a-b wrote: c-d to warm the
    cache, then the same reads again; None if this portalbd has no disk cache."""
    cache_cfg = (f'[cache]\ndir = "{tmp}/pbd-disk-cache"\n'
                 f"disk_size_bytes = {2 * SPAN}\n")
    peer = Portalbd(tmp, s3, front, cache_cfg)
    try:
        peer.start()
    except AssertionError as e:
        if "cache" in str(e):
            log("e skipped: this portalbd rejects [cache] dir / disk_size_bytes")
            return None
        raise
    log("e: portalbd with [cache] dir and disk_size_bytes: c and d to warm it, then the "
        "same reads again")
    first = run_phases(peer, front, " (disk cache, warming)", write=False)
    again = run_phases(peer, front, " (disk cache warm)", write=False, repeat=first)
    peer.stop()
    return {**again, "warming": first}


def report(results, ceil, warm):
    print()
    p, s = results.get("portalbd", {}), results.get("s3backer", {})

    def cell(r, key):
        if key not in r:
            return "-"
        v = r[key][0]
        if key == "a":
            return f"{v['MB/s']:.0f} MB/s"
        if key == "b":
            if "FLUSH p50 ms" in v and r is p:
                return f"{v['IOPS']:,.0f} IOPS (FLUSH p50 {v['FLUSH p50 ms']:.0f} ms)"
            return f"{v['IOPS']:,.0f} IOPS (drain {v['drain s']:.1f} s)"
        if key == "c":
            return f"{v['IOPS']:,.0f} IOPS, p50 {v['p50 ms']:.1f} ms, p99 {v['p99 ms']:.1f} ms"
        return f"{v['MB/s']:.1f} MB/s"

    def ratio(key, metric):
        if key in p and key in s and s[key][0][metric]:
            return f"{p[key][0][metric] / s[key][0][metric]:.3g}x"
        return "-"

    rows = [("a", "sequential write 1 MiB, until durable", "MB/s"),
            ("b", "random 4 KiB write, FLUSH every 32 writes", "IOPS"),
            ("c", "after a restart: random 4 KiB read, 8 in flight", "IOPS"),
            ("d", "after a restart: sequential read 1 MiB, 1 in flight", "MB/s")]
    print(f"| phase | portalbd | s3backer | portalbd / s3backer |")
    print(f"|---|---|---|---|")
    for key, title, metric in rows:
        print(f"| {key}. {title} | {cell(p, key)} | {cell(s, key)} | {ratio(key, metric)} |")
    if warm:
        for key, title, metric in rows[2:]:
            if key not in warm:
                continue
            cold = p.get(key, (None,))[0]
            x = f" ({warm[key][0][metric] / cold[metric]:.3g}x cold)" if cold else ""
            print(f"| e. disk cache warm: {title[len('after a restart: '):]} | "
                  f"{cell(warm, key)}{x} | - | - |")
    print()
    if ceil:
        print(f"({SPAN // MiB} MiB, {PHASE_S} s phases, {LATENCY_MS:g} ms and {CONN_MBPS:g} MB/s "
          f"per connection. The front carries {ceil['front 0 ms, no cap'][0]:.0f} MB/s of 1 "
          f"MiB PUTs and {ceil['front 0 ms, no cap'][1]:.0f} MB/s of GETs on 8 connections "
          f"without latency or cap, s3rver {ceil['s3rver'][0]:.0f} / {ceil['s3rver'][1]:.0f} "
          f"MB/s directly; the server accepts {ceil['large PUTs']:.0f} MB/s of 8 MiB PUTs on "
          f"8 connections through the front.)")
    if "a" in p and ceil:
        print(f"portalbd sequential write / server ceiling for large PUTs: "
              f"{p['a'][0]['MB/s'] / ceil['large PUTs']:.2f}")
    print()
    print("requests and bytes (bodies) per phase, from the front's counters:")
    for name, r in list(results.items()) + ([("portalbd, disk cache", warm)] if warm else []):
        for key in "abcd":
            if key in r:
                print(f"  {name:20s} {key}  {fmt_cost(r[key][1])}")
    if ceil and p and s and all(k in r for r in (p, s) for k in "abcd"):
        targets(p, s, ceil, warm)
        return
    if p and s and "a" in p and "a" in s:
        x = p["a"][0]["MB/s"] / s["a"][0]["MB/s"]
        print(f"\nissue 15 targets (phase a only):\n  a sequential write >= 1.2x s3backer"
              f"{'':12s}{x:8.3g}  {'met' if x >= 1.2 else 'MISSED'}")
    if p and "c" in p:
        c = p["c"][0]
        print(f"\nportalbd c p99 / p50: {c['p99 ms'] / c['p50 ms']:.3g} (target < 3)")


def targets(p, s, ceil, warm):
    """Issue 15's targets, met or not by this run."""
    def r(key, metric):
        return p[key][0][metric] / s[key][0][metric] if s[key][0][metric] else float("inf")

    rows = []
    if "d" in PHASES:
        rows.append(("d cold sequential read >= 1x s3backer", r("d", "MB/s"), r("d", "MB/s") >= 1))
    rows += [("a sequential write >= 1.2x s3backer", r("a", "MB/s"), r("a", "MB/s") >= 1.2),
             ("a sequential write >= 0.8x large-PUT ceiling",
              p["a"][0]["MB/s"] / ceil["large PUTs"], p["a"][0]["MB/s"] >= 0.8 * ceil["large PUTs"])]
    if "c" in PHASES:
        c = p["c"][0]
        rows += [("c cold random read >= 1x s3backer", r("c", "IOPS"), r("c", "IOPS") >= 1),
                 ("c p99 < 3x p50", c["p99 ms"] / c["p50 ms"], c["p99 ms"] < 3 * c["p50 ms"])]
    rows.append(("b random write >= 10x s3backer", r("b", "IOPS"), r("b", "IOPS") >= 10))
    if warm:
        for key, metric in (("c", "IOPS"), ("d", "MB/s")):
            if key not in warm:
                continue
            x = warm[key][0][metric] / p[key][0][metric]
            rows.append((f"e warm {key} >= 10x cold", x, x >= 10))
    print()
    print("issue 15 targets:")
    for title, value, ok in rows:
        print(f"  {title:46s} {value:8.3g}  {'met' if ok else 'MISSED'}")


if __name__ == "__main__":
    main()
