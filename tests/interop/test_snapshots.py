#!/usr/bin/python3
"""Snapshots end to end, on memory://, file:// and s3:// (s3rver; Ceph RGW): the real portalbd,
python3-libnbd as the NBD client, portalctl as the user types it.

Every check compares data against a model of the device, byte for byte; after each
restore the whole 1 GiB device is read and compared.

Cases are named BACKEND_what: `memory_*`, `file_*`, `s3_*` and `rgw_*` (ctest runs the s3
ones as their own entry, labelled s3, since they need s3rver; the rgw ones, labelled rgw,
on a Ceph RADOS Gateway started by tests/e2e/rgw.py, with fencing on).
"""

import errno
import functools
import hashlib
import os
import random
import re
import struct
import threading
import sys
import time

from harness import (S3rver, Daemon, check, check_eq, import_nbd, portalctl, run_cases)

KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30
SIZE = GIB
CHUNK = 32 * MIB
BACKENDS = ("memory", "file", "s3", "rgw")

nbd = None  # imported by main(), so that a missing module is a skip


# --- the device model -----------------------------------------------------------------------


class Model:
    """The device as a list of writes (bytes) and zeroings (None) applied in order."""

    def __init__(self, ops=()):
        self.ops = list(ops)

    def copy(self):
        return Model(self.ops)

    def expected(self, offset, length):
        ops = [op for op in self.ops if op[0] < offset + length and op[0] + op[1] > offset]
        if not any(data is not None for _, _, data in ops):
            return _zeroes(length)
        out = bytearray(length)
        zero = memoryview(_zeroes(length))
        for off, n, data in ops:
            lo, hi = max(off, offset), min(off + n, offset + length)
            src = zero[:hi - lo] if data is None else memoryview(data)[lo - off:hi - off]
            out[lo - offset:hi - offset] = src
        return bytes(out)


@functools.lru_cache(maxsize=4)
def _zeroes(n):
    return bytes(n)


class Device:
    """One libnbd connection plus the model it writes to."""

    def __init__(self, d, model, export="portalbd", strict=True):
        self.h = nbd.NBD()
        if not strict:
            self.h.set_strict_mode(0)
        self.h.connect_uri(d.uri(export=export))
        self.model = model

    def write(self, offset, data):
        self.h.pwrite(data, offset)
        self.model.ops.append((offset, len(data), bytes(data)))

    def trim(self, offset, n):
        self.h.trim(n, offset)
        self.model.ops.append((offset, n, None))

    def zero(self, offset, n):
        self.h.zero(n, offset)
        self.model.ops.append((offset, n, None))

    def close(self):
        self.h.shutdown()
        self.h = None  # libnbd closes the handle when it is collected


def verify(h, model, what, offset=0, length=SIZE):
    """Reads [offset, offset+length) through `h` and compares it with the model."""
    pos = offset
    while pos < offset + length:
        n = min(CHUNK, offset + length - pos)
        check_eq(h.pread(n, pos), model.expected(pos, n), f"{what}: bytes at {pos}")
        pos += n


def verify_regions(h, model, what):
    """Cheaper than verify(): only where the test writes (the first 160 MiB, the last 1 MiB,
    700 MiB..701 MiB)."""
    for off, n in ((0, 160 * MIB), (700 * MIB, MIB), (SIZE - MIB, MIB)):
        verify(h, model, what, off, n)


def rnd(seed, n):
    return random.Random(seed).randbytes(n)


def gen1(dev):
    dev.write(0, rnd(11, MIB))
    dev.write(5 * MIB + 123, rnd(12, 300 * KIB))  # unaligned both ends
    dev.write(40 * MIB, rnd(13, 8 * MIB))
    dev.write(SIZE - 64 * KIB, rnd(14, 64 * KIB))  # the device's last bytes
    dev.write(4096 * 100 + 7, rnd(15, 10))  # inside one block


def gen2(dev):
    dev.write(512 * KIB, rnd(21, MIB))  # half over gen1's first write
    dev.trim(41 * MIB, 2 * MIB)  # a hole in gen1's 8 MiB
    dev.zero(5 * MIB + 200, 1000)
    dev.write(100 * MIB, rnd(22, 4 * MIB))
    dev.write(4096 * 100 + 3, rnd(23, 20))


def gen3(dev):  # written after snap2, gone after every restore
    dev.write(0, rnd(31, 2 * MIB))
    dev.trim(100 * MIB, 4 * MIB)
    dev.write(700 * MIB, rnd(32, MIB))


# --- daemons per backend --------------------------------------------------------------------


def start(tmp, backend, env=None):
    """A 1 GiB portalbd on `backend`; the same call again reopens the same volume."""
    args = ["--disk-size-gb", "1"]
    config = None
    if backend == "memory":
        args += ["--storage", "memory://"]
    elif backend == "file":
        config = f'[storage]\nurl = "file://{tmp}/store"\ncache_dir = "{tmp}/cache"\n'
    else:
        config = f'[storage]\nurl = "s3://{env["bucket"]}/volume"\ncache_dir = "{tmp}/cache"\n'
        if backend == "s3":  # s3rver ignores If-None-Match; RGW honours it: fencing on
            config += "unsafe_no_fencing = true\n"
    return Daemon(tmp, config=config, args=args, env=env and env["env"])


def backend_env(tmp, backend):
    if backend == "rgw":
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))
        from rgw import Rgw  # noqa: PLC0415
        gw = Rgw(tmp, buckets=("snapshots",))
        return {"bucket": "snapshots", "env": gw.env(), "rgw": gw}
    if backend != "s3":
        return None
    s3 = S3rver(tmp)
    return {"bucket": s3.bucket, "env": s3.env(), "s3rver": s3}


def restarted(d):
    """The same daemon (argv, storage, control socket) started again."""
    d.stop()
    d.start()
    return d


# --- portalctl ------------------------------------------------------------------------------

CREATED_RE = (r"Snapshot: (?P<name>\S+)\n  ID:      (?P<id>[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-"
              r"[0-9a-f]{4}-[0-9a-f]{12})\n  Created: (?P<created>\d{4}-\d\d-\d\dT\d\d:\d\d:"
              r"\d\d\.\d{6}Z)\n")


def create(d, name):
    t0 = time.time()
    r = portalctl(d, "snapshot", "create", name)
    m = re.fullmatch(CREATED_RE, r.stdout)
    check(m, f"snapshot create output:\n{r.stdout}")
    check_eq(m["name"], name, "name in the create output")
    created = time.mktime(time.strptime(m["created"][:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
    check(t0 - 5 <= created <= time.time() + 5, f"Created: {m['created']} is not now")
    check_eq(r.stderr, "", "stderr of snapshot create")
    return m["id"]


def listed(d):
    """{name: id} from `portalctl snapshot list`."""
    out = portalctl(d, "snapshot", "list").stdout
    if out == "No snapshots\n":
        return {}
    lines = out.splitlines()
    check(re.fullmatch(r"NAME +ID +CREATED +SIZE +PINNED", lines[0]), f"list header:\n{out}")
    rows = {}
    for line in lines[1:]:
        f = line.split()
        check(len(f) == 7, f"list row {line!r}")  # name id created size unit pinned unit
        rows[f[0]] = f[1]
    return rows


def ok(d, *args):
    r = portalctl(d, *args)
    check_eq(r.stdout, "OK\n", f"portalctl {' '.join(args)}")


def fails(d, args, message):
    r = portalctl(d, *args, check_exit=False)
    check_eq(r.returncode, 1, f"exit status of portalctl {' '.join(args)}")
    check_eq(r.stderr, f"Error: {message}\n", f"stderr of portalctl {' '.join(args)}")
    check_eq(r.stdout, "", f"stdout of portalctl {' '.join(args)}")


# --- cases ----------------------------------------------------------------------------------


def scenario(tmp, backend):
    """The original's scenario at block level: write gen1, snapshot snap1, write gen2,
    snapshot snap2, restore snap1 (gen1 exact, gen2 gone), restore snap2 (gen2 exact),
    delete snap1, restore snap2 again, restart, list. Clients stay connected throughout
    (the original's workflow); a fresh client checks each restore too."""
    env = backend_env(tmp, backend)
    d = start(tmp, backend, env)
    dev = Device(d, Model())
    gen1(dev)  # acknowledged, never flushed: the snapshot must still capture all of it
    at_snap1 = dev.model.copy()
    snap1 = create(d, "snap1")
    gen2(dev)
    at_snap2 = dev.model.copy()
    snap2 = create(d, "snap2")
    check_eq(listed(d), {"snap1": snap1, "snap2": snap2}, "list after two creates")
    gen3(dev)
    verify_regions(dev.h, dev.model, "before any restore")

    ok(d, "snapshot", "restore", "snap1")
    verify(dev.h, at_snap1, "after restore snap1 (same connection)")
    fresh = Device(d, at_snap1)
    verify_regions(fresh.h, at_snap1, "after restore snap1 (new connection)")
    fresh.close()
    check_eq(listed(d), {"snap1": snap1, "snap2": snap2}, "snap2 survives a restore to snap1")

    ok(d, "snapshot", "restore", "snap2")
    verify(dev.h, at_snap2, "after restore snap2")

    ok(d, "snapshot", "delete", "snap1")
    check_eq(listed(d), {"snap2": snap2}, "list after delete snap1")
    fails(d, ["snapshot", "get", "snap1"], "no snapshot named 'snap1'")
    verify_regions(dev.h, at_snap2, "a delete changes nothing on the device")
    dev.model = at_snap2.copy()
    gen3(dev)
    dev.write(5 * MIB, rnd(41, 3 * MIB))
    ok(d, "snapshot", "restore", "snap2")
    verify(dev.h, at_snap2, "after restore snap2 again")
    dev.close()

    restarted(d)
    if backend == "memory":
        # memory:// is private to the process and lost with it (documented): a restart
        # starts an empty volume with no snapshots.
        check_eq(listed(d), {}, "memory:// after a restart")
        fresh = Device(d, Model())
        verify(fresh.h, Model(), "memory:// after a restart: all zeroes")
        fresh.close()
    else:
        check_eq(listed(d), {"snap2": snap2}, "list after a restart")
        fresh = Device(d, at_snap2)
        verify(fresh.h, at_snap2, "after a restart")
        fresh.close()
        ok(d, "snapshot", "restore", "snap2")
        fresh = Device(d, at_snap2)
        verify_regions(fresh.h, at_snap2, "restore snap2 after a restart")
        fresh.close()
    d.stop()


def crash(tmp, backend):
    """kill -9 right after a create: the snapshot survives it (not on memory://)."""
    env = backend_env(tmp, backend)
    d = start(tmp, backend, env)
    dev = Device(d, Model())
    gen1(dev)
    at_snap1 = dev.model.copy()
    snap1 = create(d, "snap1")
    gen2(dev)  # never flushed: may or may not survive the crash
    dev.h = None
    d.kill9()
    d.start()
    if backend == "memory":
        check_eq(listed(d), {}, "memory:// after kill -9")
        d.stop()
        return
    check_eq(listed(d), {"snap1": snap1}, "list after kill -9 and restart")
    ok(d, "snapshot", "restore", "snap1")
    fresh = Device(d, at_snap1)
    verify(fresh.h, at_snap1, "restore snap1 after kill -9")
    fresh.close()
    d.stop()


def readonly_export(tmp, backend):
    """portalbd@NAME is listed by NBD_OPT_LIST, shows the snapshot while the volume moves
    on, and refuses writes with EPERM."""
    env = backend_env(tmp, backend)
    d = start(tmp, backend, env)
    dev = Device(d, Model())
    gen1(dev)
    at_snap1 = dev.model.copy()
    create(d, "snap1")
    gen2(dev)

    h = nbd.NBD()
    h.set_opt_mode(True)
    h.connect_uri(d.uri())
    names = []
    h.opt_list(lambda name, _desc: names.append(name) or 0)
    h.opt_abort()
    del h
    check_eq(sorted(names), ["portalbd", "portalbd@snap1"], "NBD_OPT_LIST")

    snap = Device(d, at_snap1, export="portalbd@snap1", strict=False)
    check_eq(snap.h.is_read_only(), 1, "portalbd@snap1 is read-only")
    check_eq(snap.h.get_size(), SIZE, "snapshot export size")
    verify(snap.h, at_snap1, "portalbd@snap1 while the volume has gen2")
    for what, fn in (("WRITE", lambda: snap.h.pwrite(b"x" * 4096, 0)),
                     ("TRIM", lambda: snap.h.trim(4096, 0)),
                     ("WRITE_ZEROES", lambda: snap.h.zero(4096, 0))):
        try:
            fn()
            raise AssertionError(f"{what} to portalbd@snap1 succeeded")
        except nbd.Error as e:
            check_eq(e.errnum, errno.EPERM, f"{what} to portalbd@snap1")
    verify_regions(snap.h, at_snap1, "portalbd@snap1 after refused writes")
    verify_regions(dev.h, dev.model, "the volume is untouched by the snapshot export")
    snap.close()
    dev.close()
    d.stop()


def delete_attached(tmp, backend):
    """Deleting a snapshot attached as portalbd@NAME is refused, with a message, until the
    client disconnects."""
    env = backend_env(tmp, backend)
    d = start(tmp, backend, env)
    dev = Device(d, Model())
    gen1(dev)
    snap1 = create(d, "snap1")
    snap = Device(d, dev.model.copy(), export="portalbd@snap1")
    r = portalctl(d, "snapshot", "get", "snap1")
    check("  Clients: 1 (attached as portalbd@snap1)\n" in r.stdout, f"get:\n{r.stdout}")
    fails(d, ["snapshot", "delete", "snap1"],
          "snapshot 'snap1' is attached by 1 client(s) as portalbd@snap1; disconnect them first")
    check_eq(listed(d), {"snap1": snap1}, "a refused delete keeps the snapshot")
    verify_regions(snap.h, snap.model, "the attached snapshot after the refused delete")
    snap.close()
    deadline = time.monotonic() + 10
    while True:  # the server notices the disconnect asynchronously
        r = portalctl(d, "snapshot", "delete", "snap1", check_exit=False)
        if r.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    check_eq((r.returncode, r.stdout), (0, "OK\n"), f"delete after the client left:\n{r}")
    check_eq(listed(d), {}, "list after the delete")
    h = nbd.NBD()
    try:
        h.connect_uri(d.uri(export="portalbd@snap1"))
        raise AssertionError("portalbd@snap1 still connects after the delete")
    except nbd.Error:
        pass
    dev.close()
    d.stop()


def block(b, v):
    """Version v of block b: self-describing, so a torn or misplaced block shows."""
    head = struct.pack("<QQ", b, v)
    return head + hashlib.blake2b(head, digest_size=64).digest() * 63 + bytes(48)


def parse_block(data, b, what):
    if data == bytes(len(data)):
        return 0
    got_b, v = struct.unpack("<QQ", data[:16])
    check(got_b == b and data == block(b, v), f"{what}: block {b} is torn or misplaced")
    return v


class Writers:
    """Threads, each on its own connection and its own blocks (block % n == i), writing
    whole blocks with rising versions. Records, per block, each write's version with the
    times it was sent and acknowledged."""

    def __init__(self, d, n=3, blocks=512):
        self.blocks, self.stop = blocks, threading.Event()
        self.log = {b: [] for b in range(blocks)}  # b -> [(v, sent, acked)]
        self.errors = []
        self.threads = [threading.Thread(target=self._run, args=(d, i, n)) for i in range(n)]
        for t in self.threads:
            t.start()

    def _run(self, d, i, n):
        try:
            h = nbd.NBD()
            h.connect_uri(d.uri())
            rng = random.Random(i)
            v = 0
            while not self.stop.is_set():
                b = rng.randrange(i, self.blocks, n)
                v += 1
                sent = time.monotonic()
                h.pwrite(block(b, v), b * 4096)
                self.log[b].append((v, sent, time.monotonic()))
            h.shutdown()
        except Exception as e:  # noqa: BLE001 - reported by join()
            self.errors.append(e)

    def join(self):
        self.stop.set()
        for t in self.threads:
            t.join()
        check(not self.errors, f"writer failed: {self.errors}")

    def acked_before(self, b, t):
        return max((v for v, _, acked in self.log[b] if acked < t), default=0)


def read_versions(d, export, blocks, what):
    h = nbd.NBD()
    h.connect_uri(d.uri(export=export))
    data = h.pread(blocks * 4096, 0)
    h.shutdown()
    return [parse_block(data[b * 4096:(b + 1) * 4096], b, what) for b in range(blocks)]


def concurrent(tmp, backend):
    """Creates and a restore while three connections write: a snapshot holds every write
    acknowledged before its create was sent, and only versions that were written; after a
    restore, each block is the snapshot's or a write that finished after the restore
    began, and no older than any write sent after it returned."""
    env = backend_env(tmp, backend)
    d = start(tmp, backend, env)
    w = Writers(d)
    sent = {}
    for i in range(4):
        time.sleep(0.3)
        sent[f"c{i}"] = time.monotonic()
        portalctl(d, "snapshot", "create", f"c{i}")
    time.sleep(0.3)
    snaps = {name: read_versions(d, f"portalbd@{name}", w.blocks, name) for name in sent}
    for name, t in sent.items():
        for b, v in enumerate(snaps[name]):
            check(v >= w.acked_before(b, t),
                  f"{name}: block {b} has version {v}, but {w.acked_before(b, t)} was "
                  "acknowledged before the create")
            check(v == 0 or any(x == v for x, _, _ in w.log[b]), f"{name}: block {b} v{v}")
    restore_sent = time.monotonic()
    portalctl(d, "snapshot", "restore", "c1")
    restore_done = time.monotonic()
    time.sleep(0.3)
    w.join()
    final = read_versions(d, "portalbd", w.blocks, "after the restore")
    for b, v in enumerate(final):
        ends = {x: acked for x, _, acked in w.log[b]}
        check(v == snaps["c1"][b] or ends.get(v, 0) > restore_sent,
              f"block {b} after the restore: version {v} is neither c1's ({snaps['c1'][b]}) "
              "nor a write that finished after the restore began")
        newest_after = max((x for x, s, _ in w.log[b] if s > restore_done), default=0)
        check(v >= newest_after, f"block {b} lost write {newest_after} sent after the restore")
    writes = sum(len(x) for x in w.log.values())
    print(f"{writes} writes from 3 connections")
    check(writes > 100, "the writers barely wrote")
    d.stop()


for _b in BACKENDS:
    for _name, _fn in (("scenario", scenario), ("crash", crash),
                       ("readonly_export", readonly_export),
                       ("delete_attached", delete_attached), ("concurrent", concurrent)):
        globals()[f"case_{_b}_{_name}"] = functools.partial(_fn, backend=_b)


if __name__ == "__main__":
    try:
        nbd = import_nbd()
    except Exception as e:  # noqa: BLE001 - Skip: the whole script is skipped
        print(f"SKIP: {e}")
        raise SystemExit(77)
    run_cases(globals())
