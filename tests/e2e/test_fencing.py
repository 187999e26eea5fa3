"""End-to-end fencing (DESIGN.md "Single-writer protocol"): two real portalbd processes on
one volume. Daemon A serves a client; daemon B opens the same volume. From then on A must
acknowledge no FLUSH or FUA write that needs the store (the client gets EIO), A's log and
status say it is fenced, and B serves every byte A acknowledged as flushed -- and none of
the bytes A accepted after B had started.

Cases run on file:// (`file_*`), on the signature-checking S3 look-alike, which honours
If-None-Match (`sigv4_*`), and on Ceph RGW, a real S3 server (`rgw_*`). s3rver ignores conditional writes, so fencing cannot work
there (portalbd refuses it without unsafe_no_fencing: test_s3_startup.py).
"""

import errno
import os
import re
import signal
import threading
import time

from e2e import BLOCK, CrashModel, Storage, check, check_eq, connect
from harness import import_nbd, run_cases

REGION_BLOCKS = 4096


def seed(name):
    s = int(os.environ.get("PORTALBD_SEED", int(time.time() * 1000) & 0xffffffff))
    print(f"{name}: PORTALBD_SEED={s}", flush=True)
    return s


def is_eio(e):
    # python3-libnbd 1.14 gives errno as its name ("EIO"), later versions as a number.
    return e.errno in (errno.EIO, "EIO")


def expect_eio(nbd, what, fn):
    try:
        fn()
    except nbd.Error as e:
        check(is_eio(e), f"{what}: expected EIO, got {e.errno} ({e})")
        return
    raise AssertionError(f"{what} succeeded on a fenced daemon")


def status_line(d, timeout=10):
    """Sends SIGUSR1 and returns the status line it logs."""
    before = d.log().count("status ")
    os.kill(d.pid, signal.SIGUSR1)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = [x for x in d.log().splitlines() if " status " in x]
        if len(lines) > before:
            return lines[-1]
        time.sleep(0.05)
    raise AssertionError("no status line after SIGUSR1")


def fenced_first(tmp, kind, first):
    """A: writes + FLUSH, unflushed writes; B opens; A: a write, then `first` (FLUSH or a
    FUA write) must fail with EIO, then the other, then plain writes too. B shows A's
    flushed state (unflushed blocks old or new), never A's writes made after B started."""
    nbd = import_nbd()
    st = Storage(tmp, kind)
    model = CrashModel(REGION_BLOCKS, seed(f"{kind} fence {first}"))
    # flush_interval_ms = 0: A touches the store only when its client asks.
    lsm = {"flush_interval_ms": 0}
    a = st.daemon(cache_dir=os.path.join(tmp, "cache-a"), lsm=lsm)
    ha = connect(a)
    for _ in range(300):
        model.random_op(ha, nbd)
    ha.flush()
    model.flush()
    for _ in range(100):
        model.random_op(ha, nbd)

    b = st.daemon(cache_dir=os.path.join(tmp, "cache-b"), lsm=lsm)
    check("epoch=2" in b.log(), "B did not open epoch 2:\n" + b.log())
    late = BLOCK * (REGION_BLOCKS - 8)
    ha.pwrite(b"\xa5" * BLOCK, late)  # accepted into A's buffer, never durable
    fua = lambda: ha.pwrite(b"\x5a" * BLOCK, late + BLOCK, nbd.CMD_FLAG_FUA)  # noqa: E731
    ops = [("FLUSH", ha.flush), ("FUA write", fua)]
    if first == "fua":
        ops.reverse()
    for what, fn in ops:
        expect_eio(nbd, what, fn)
    expect_eio(nbd, "a plain write after fencing", lambda: ha.pwrite(b"x" * BLOCK, 0))
    expect_eio(nbd, "TRIM after fencing", lambda: ha.trim(BLOCK, 0))
    check("volume fenced" in a.log(), "A's log does not say it is fenced:\n" + a.log()[-2000:])
    check("fenced=true" in status_line(a), "A's status line does not say fenced=true")
    check("fenced=false" in status_line(b), "B's status line says it is fenced")

    hb = connect(b)
    old, new = model.verify_after_crash(hb, f"{kind}: B after A was fenced")
    print(f"  A's unflushed blocks on B: {old} old, {new} new", flush=True)
    # (verify_after_crash also proves that A's late writes are absent: they are not in
    # the model, so their bytes would be "never written".)
    check_eq(hb.pread(2 * BLOCK, late), bytes(model.cur[late:late + 2 * BLOCK]),
             "A's writes after B started")

    # A holds accepted writes it can never make durable: SIGTERM must still end it
    # promptly, and not with "success".
    ha.shutdown()
    status = a.stop(timeout=30, expect_status=None)
    print(f"  fenced A exited with status {status} on SIGTERM", flush=True)
    check(status != 0, "a fenced daemon that dropped accepted writes exited 0")
    check(re.search(r"portalbd: stopped with \d+ bytes not durable \(volume fenced: ", a.log()),
          "A's log does not say what it left behind:\n" + a.log()[-2000:])

    # B is a working writer, and what it flushed survives B's crash.
    for _ in range(100):
        model.random_op(hb, nbd)
    hb.flush()
    model.flush()
    b.kill9()
    hb = None
    c = st.daemon(cache_dir=os.path.join(tmp, "cache-b"), lsm=lsm)
    hc = connect(c)
    model.verify_after_crash(hc, f"{kind}: C after B's kill -9")
    hc.shutdown()
    c.stop()
    st.check_server()


def fenced_flush_race(tmp, kind):
    """A's client writes a new block and FLUSHes in a loop while B starts. Every block
    whose FLUSH A acknowledged must be on B; a block whose FLUSH failed may be there or
    not; A stops acknowledging for good. Both daemons use the same cache directory (the
    same config started twice) and the default flush interval."""
    nbd = import_nbd()
    st = Storage(tmp, kind)
    a = st.daemon()
    ha = connect(a)
    acked, failed = [], []
    stop = threading.Event()

    def payload(i):
        return (b"%08d" % i) * (BLOCK // 8)

    def writer():
        i = 0
        while not stop.is_set() and i < REGION_BLOCKS:
            try:
                ha.pwrite(payload(i), i * BLOCK)
                ha.flush()
                acked.append(i)
            except nbd.Error as e:
                failed.append((i, e))
                if len(failed) >= 5:
                    return
            i += 1

    t = threading.Thread(target=writer)
    t.start()
    time.sleep(0.5)
    b = st.daemon()
    t.join(timeout=60)
    stop.set()
    t.join()
    print(f"  A: {len(acked)} flushes acknowledged, then {len(failed)} failed "
          f"({failed[0][1] if failed else ''})", flush=True)
    check(failed, "A kept acknowledging FLUSHes after B started")
    check(all(is_eio(e) for _, e in failed), f"errors other than EIO: {failed}")
    first_failed = failed[0][0]
    check(all(i < first_failed for i in acked), "a FLUSH was acknowledged after one failed")
    hb = connect(b)
    # Blocks 0..n-1 were written in order: read them back in large requests.
    n = failed[-1][0] + 1
    got = b"".join(hb.pread(min(256, n - j) * BLOCK, j * BLOCK) for j in range(0, n, 256))
    for i in acked:
        check_eq(got[i * BLOCK:(i + 1) * BLOCK], payload(i),
                 f"block {i} (FLUSH acknowledged by A)")
    for i, _ in failed:
        check(got[i * BLOCK:(i + 1) * BLOCK] in (payload(i), bytes(BLOCK)),
              f"block {i}: invented data on B")
    check("volume fenced" in a.log(), "A's log does not say it is fenced")
    hb.shutdown()
    a.stop(timeout=30, expect_status=None)
    b.stop()
    st.check_server()


def fenced_idle(tmp, kind):
    """A stays up, idle, while B takes over and writes (A's background work runs with
    the default intervals meanwhile); A's late write is never durable, and B's data
    survives A's presence and B's crash."""
    nbd = import_nbd()
    st = Storage(tmp, kind)
    model = CrashModel(REGION_BLOCKS, seed(f"{kind} idle"))
    a = st.daemon(cache_dir=os.path.join(tmp, "cache-a"))
    ha = connect(a)
    for _ in range(200):
        model.random_op(ha, nbd)
    ha.flush()
    model.flush()
    b = st.daemon(cache_dir=os.path.join(tmp, "cache-b"))
    hb = connect(b)
    model.verify_exact(hb, f"{kind}: B after A's FLUSH")
    for _ in range(200):
        model.random_op(hb, nbd)
    hb.flush()
    model.flush()
    # A's client writes into A's buffer; A's background upload (1 s) meets B's fence.
    ha.pwrite(b"\xee" * (8 * BLOCK), 0)
    time.sleep(3)
    check("volume fenced" in a.log(), "A did not notice the fence in the background:\n" +
          a.log()[-2000:])
    expect_eio(nbd, "FLUSH on A", ha.flush)
    model.verify_exact(hb, f"{kind}: B while A is fenced")
    hb = None
    b.kill9()
    c = st.daemon(cache_dir=os.path.join(tmp, "cache-b"))
    hc = connect(c)
    model.verify_exact(hc, f"{kind}: after B's kill -9, with A still running")
    hc.shutdown()
    c.stop()
    ha.shutdown()
    a.stop(timeout=30, expect_status=None)
    st.check_server()


def clean_flush_after_takeover(tmp, kind):
    """What a FLUSH with nothing unflushed does on A after B opened: reported, not
    asserted (it makes no false claim: everything A acknowledged is on B)."""
    nbd = import_nbd()
    st = Storage(tmp, kind)
    a = st.daemon(lsm={"flush_interval_ms": 0})
    ha = connect(a)
    ha.pwrite(b"q" * BLOCK, 0)
    ha.flush()
    b = st.daemon(lsm={"flush_interval_ms": 0})
    try:
        ha.flush()
        outcome = "acknowledged (A has nothing to upload, so it does not meet the fence)"
    except nbd.Error as e:
        outcome = f"failed with errno {e.errno}"
    print(f"  clean FLUSH on A after B opened: {outcome}", flush=True)
    hb = connect(b)
    check_eq(hb.pread(BLOCK, 0), b"q" * BLOCK, "A's flushed block on B")
    hb.shutdown()
    ha.shutdown()
    a.stop(timeout=30, expect_status=None)
    b.stop()


CASES = {
    "flush_first": lambda tmp, kind: fenced_first(tmp, kind, "flush"),
    "fua_first": lambda tmp, kind: fenced_first(tmp, kind, "fua"),
    "flush_race": fenced_flush_race,
    "idle": fenced_idle,
    "clean_flush": clean_flush_after_takeover,
}

for _kind in ("file", "sigv4", "rgw"):
    for _name, _fn in CASES.items():
        globals()[f"case_{_kind}_{_name}"] = (lambda fn, kind: lambda tmp: fn(tmp, kind))(
            _fn, _kind)

if __name__ == "__main__":
    run_cases(globals())
