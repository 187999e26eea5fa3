#!/usr/bin/python3
"""[metrics] address: portalbd serves Prometheus text format at /metrics. A live scrape
passes `promtool check metrics` (Debian's prometheus package), and the counters move with
NBD traffic driven by libnbd: requests and bytes by op, the FLUSH latency histogram, the
object store's PUTs once a FLUSH made the writes durable. Unset, nothing listens.
"""

import json
import os
import re
import subprocess
import time
import urllib.request

from harness import Daemon, check, import_nbd, run, run_cases

LISTENING = re.compile(r"metrics server listening address=(\S+) path=/metrics")
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$")


def metrics_url(d):
    m = LISTENING.search(d.log())
    check(m, f"no metrics listening line in the log:\n{d.log()}")
    return f"http://{m.group(1)}/metrics"


def scrape(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        check(r.status == 200, f"GET {url}: {r.status}")
        check(r.headers.get("Content-Type", "").startswith("text/plain"),
              f"content type {r.headers.get('Content-Type')}")
        return r.read().decode()


def parse(text):
    """{(name, frozenset of label pairs): value} for every sample line."""
    samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        check(m, f"unparsable sample line: {line!r}")
        labels = frozenset(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        samples[(m.group(1), labels)] = float(m.group(3))
    return samples


def value(samples, name, **labels):
    want = set(labels.items())
    found = [v for (n, ls), v in samples.items() if n == name and want <= ls]
    check(found, f"no sample {name}{labels}")
    return sum(found)


def promtool_check(text):
    p = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                       text=True, timeout=60)
    check(p.returncode == 0 and not p.stdout.strip() and not p.stderr.strip(),
          f"promtool check metrics: exit {p.returncode}\n{p.stdout}\n{p.stderr}")


CONFIG = """
[metrics]
address = "127.0.0.1:0"
"""


def case_scrape_passes_promtool_and_moves_with_traffic(tmp):
    nbd = import_nbd()
    with Daemon(tmp, config=CONFIG) as d:
        url = metrics_url(d)
        before = parse(scrape(url))
        check_volume = {"volume": "portalbd"}
        epoch = value(before, "portalbd_epoch", **check_volume)
        check(epoch >= 1, f"epoch {epoch}")
        check(value(before, "portalbd_fenced", **check_volume) == 0, "fenced at start")

        h = nbd.NBD()
        h.connect_uri(d.uri())
        block = b"\x5a" * 65536
        for i in range(16):  # 1 MiB in 16 WRITEs
            h.pwrite(block, i * len(block))
        h.flush()
        for i in range(4):  # 256 KiB in 4 READs
            check(h.pread(len(block), i * len(block)) == block, "read back")
        text = scrape(url)
        h.shutdown()

        promtool_check(text)
        after = parse(text)
        labels = {"volume": "portalbd", "export": "portalbd"}
        check(value(after, "portalbd_nbd_requests_total", op="write", **labels) == 16,
              "16 WRITEs counted")
        check(value(after, "portalbd_nbd_bytes_total", op="write", **labels) == 16 * 65536,
              "WRITE bytes")
        check(value(after, "portalbd_nbd_requests_total", op="read", **labels) == 4,
              "4 READs counted")
        check(value(after, "portalbd_nbd_bytes_total", op="read", **labels) == 4 * 65536,
              "READ bytes")
        check(value(after, "portalbd_nbd_requests_total", op="flush", **labels) == 1,
              "1 FLUSH counted")
        check(value(after, "portalbd_nbd_errors_total", op="write", **labels) == 0, "no errors")
        check(value(after, "portalbd_nbd_request_duration_seconds_count", op="flush",
                    **labels) == 1, "FLUSH latency observed")
        check(value(after, "portalbd_nbd_request_duration_seconds_bucket", op="write",
                    le="+Inf", **labels) == 16, "WRITE latency histogram")
        # The FLUSH made the writes durable: a segment went to the store.
        puts_before = value(before, "portalbd_store_requests_total", kind="PUT_IF_ABSENT")
        puts_after = value(after, "portalbd_store_requests_total", kind="PUT_IF_ABSENT")
        check(puts_after > puts_before, f"store PUTs {puts_before} -> {puts_after}")
        put_bytes = value(after, "portalbd_store_bytes_total", kind="PUT_IF_ABSENT")
        check(put_bytes >= 16 * 65536, f"PUT bytes {put_bytes} cover the 1 MiB written")
        check(value(after, "portalbd_segments", **check_volume) >= 1, "a segment")
        check(value(after, "portalbd_live_bytes", **check_volume) == 16 * 65536,
              "live bytes = what was written")
        check(value(after, "portalbd_write_buffer_bytes", **check_volume) == 0,
              "the buffer is empty after FLUSH")
        d.stop()


def case_with_recording_both_see_every_request(tmp):
    """[record] and [metrics] together: the metrics observer chains to the recorder's; both
    count every request, and the trace keeps its own timings (pipelined requests)."""
    nbd = import_nbd()
    trace_path = os.path.join(tmp, "trace.json")
    with Daemon(tmp, config=CONFIG + f'[record]\npath = "{trace_path}"\n') as d:
        url = metrics_url(d)
        h = nbd.NBD()
        h.connect_uri(d.uri())
        for i in range(8):  # in flight at once
            h.aio_pwrite(b"\x01" * 4096, i * 4096)
        while h.aio_in_flight() > 0:
            h.poll(-1)
        h.flush()
        h.shutdown()
        after = parse(scrape(url))
        d.stop()
    labels = {"volume": "portalbd", "export": "portalbd"}
    check(value(after, "portalbd_nbd_requests_total", op="write", **labels) == 8, "8 WRITEs")
    with open(trace_path) as f:
        ops = json.load(f)["ops"]
    check([op["op"]["type"] for op in ops].count("Write") == 8, f"8 WRITEs traced: {ops}")
    for op in ops:
        check(op["success"] and 0 <= op["duration_ns"] < 10**10, f"traced timing: {op}")


def case_off_when_unset(tmp):
    with Daemon(tmp) as d:
        check(not LISTENING.search(d.log()), f"metrics listening without [metrics]:\n{d.log()}")
        d.stop()


def read_all(h, size, step=1 << 20):
    out = bytearray()
    for off in range(0, size, step):
        out += h.pread(step, off)
    return bytes(out)


def case_disk_cache_and_read_ahead_move_with_traffic(tmp):
    """file:// storage. With [cache] on and a 1 MiB block cache: 8 MiB written and
    flushed go into the disk cache (inserts, bytes, entries), and reading them back is
    served by it (hits). A second portalbd without [cache] on the same store (and the
    default block cache, which keeps what is read ahead until it is used) has no
    portalbd_disk_cache_* series, and its sequential 1 MiB reads are read ahead (GETs,
    bytes, chunks used)."""
    nbd = import_nbd()
    size = 8 << 20
    data = os.urandom(size)  # random: the chunks do not compress
    base = "\n".join([
        CONFIG, "[storage]", f'url = "file://{tmp}/store"', f'cache_dir = "{tmp}/meta"']) + "\n"
    labels = {"volume": "portalbd"}
    small_block_cache = '[lsm]\nblock_cache_size_bytes = "1MiB"\n'
    disk_cache = f'[cache]\ndir = "{tmp}/chunks"\ndisk_size_bytes = "64MiB"\n'
    with Daemon(tmp, config=base + small_block_cache + disk_cache, ready_timeout=30) as d:
        url = metrics_url(d)
        before = parse(scrape(url))
        check(value(before, "portalbd_disk_cache_capacity_bytes", **labels) == 64 << 20,
              "disk cache capacity")
        h = nbd.NBD()
        h.connect_uri(d.uri())
        for off in range(0, size, 1 << 20):
            h.pwrite(data[off:off + (1 << 20)], off)
        h.flush()
        # The uploaded chunks are written to the disk cache in the background.
        deadline = time.monotonic() + 30
        while True:
            written = parse(scrape(url))
            if value(written, "portalbd_disk_cache_bytes", **labels) >= size:
                break
            check(time.monotonic() < deadline, f"disk cache not filled: {written}")
            time.sleep(0.1)
        check(read_all(h, size) == data, "read back")
        text = scrape(url)
        h.shutdown()
        d.stop()
    promtool_check(text)
    after = parse(text)
    for name in ("inserts", "hits"):
        n0 = value(before, f"portalbd_disk_cache_{name}_total", **labels)
        n1 = value(after, f"portalbd_disk_cache_{name}_total", **labels)
        print(f"  disk cache {name}: {n0:.0f} -> {n1:.0f}", flush=True)
        check(n1 > n0, f"portalbd_disk_cache_{name}_total moved: {n0} -> {n1}")
    check(value(after, "portalbd_disk_cache_entries", **labels) >= 1, "disk cache entries")
    check(value(after, "portalbd_disk_cache_damaged_total", **labels) == 0, "nothing damaged")

    with Daemon(tmp, config=base, ready_timeout=30) as d:
        url = metrics_url(d)
        before = parse(scrape(url))
        check(not any(n.startswith("portalbd_disk_cache_") for n, _ in before),
              "no disk cache series while [cache] is off")
        h = nbd.NBD()
        h.connect_uri(d.uri())
        check(read_all(h, size) == data, "read back from the store")
        text = scrape(url)
        h.shutdown()
        d.stop()
    promtool_check(text)
    after = parse(text)
    for name in ("requests", "bytes", "hits"):
        n0 = value(before, f"portalbd_read_ahead_{name}_total", **labels)
        n1 = value(after, f"portalbd_read_ahead_{name}_total", **labels)
        print(f"  read-ahead {name}: {n0:.0f} -> {n1:.0f}", flush=True)
        check(n1 > n0, f"portalbd_read_ahead_{name}_total moved: {n0} -> {n1}")
    check(value(after, "portalbd_read_ahead_failures_total", **labels) == 0, "no failures")


def case_unbindable_address_fails_start(tmp):
    with Daemon(tmp, config=CONFIG) as d:
        taken = LISTENING.search(d.log()).group(1)
        other = Daemon(tmp, config=f'[metrics]\naddress = "{taken}"\n', start=False)
        r = run(other.argv, check_exit=False, timeout=30)
        check(r.returncode != 0, f"second portalbd started on a taken metrics port:\n{r}")
        check("metrics.address" in r.stderr + r.stdout, f"error names the key:\n{r}")
        d.stop()


run_cases(globals(), tools=("promtool",))
