"""End-to-end crash consistency: real portalbd processes, a real NBD client (libnbd),
kill -9 and restarts, on file:// and on s3:// (s3rver with unsafe_no_fencing; the
signature-checking sigv4 server and Ceph RGW with fencing on).

The rule checked after every crash (DESIGN.md "Durability contract"): every byte
acknowledged before the last completed FLUSH (or written with FUA) is there; a block
written since holds its flushed content or one of the versions written to it since,
never anything else (no torn blocks, no invented data, never zero unless written so).
After a clean SIGTERM nothing at all is lost, FLUSH or not.

Cases are generated per storage kind: `file_*`, `s3rver_*`, `sigv4_*`, `rgw_*`.
PORTALBD_SEED=N replays the random operations of a run (each case prints its seed).
"""

import os
import random
import shutil
import time

import e2e
import harness
from e2e import CrashModel, Storage, check, connect
from harness import import_nbd, run_cases

REGION_BLOCKS = 8192  # the model covers the first 32 MiB of a 1 GiB device


def seed_for(name):
    s = int(os.environ.get("PORTALBD_SEED", random.randrange(1 << 32)))
    print(f"{name}: PORTALBD_SEED={s}", flush=True)
    return s


def submit_unawaited_writes(h, nbd, model, count):
    """Queues `count` whole-block writes to distinct blocks and returns without waiting:
    the daemon is killed with them in flight."""
    blocks = model.rng.sample(range(REGION_BLOCKS), count)
    for b in blocks:
        data = model.random_data(e2e.BLOCK)
        h.aio_pwrite(nbd.Buffer.from_bytearray(bytearray(data)), b * e2e.BLOCK)
        model.write(b * e2e.BLOCK, data)
    h.poll(0)  # push what fits into the socket now


def crash_after_flush(tmp, kind, flush_interval_ms):
    """The issue's scenario: write, FLUSH, write more without FLUSH, kill -9, restart,
    verify; then the recovered volume takes writes and survives a clean restart."""
    nbd = import_nbd()
    st = Storage(tmp, kind)
    model = CrashModel(REGION_BLOCKS, seed_for(f"{kind} crash"))
    lsm = {"flush_interval_ms": flush_interval_ms}
    d = st.daemon(lsm=lsm)
    h = connect(d)
    for _ in range(400):
        model.random_op(h, nbd)
    h.flush()
    model.flush()
    for _ in range(300):
        model.random_op(h, nbd)
    submit_unawaited_writes(h, nbd, model, 64)
    unflushed = model.unflushed_blocks()
    d.kill9()
    h = None  # libnbd closes the handle when it is collected

    d2 = st.daemon(lsm=lsm)
    h = connect(d2)
    old, new = model.verify_after_crash(h, f"{kind}: after kill -9")
    print(f"  {unflushed} unflushed blocks: {old} kept flushed content, {new} a newer version",
          flush=True)
    # The recovered volume is a working writer.
    for _ in range(100):
        model.random_op(h, nbd)
    h.flush()
    model.flush()
    h.shutdown()
    d2.stop()
    d3 = st.daemon(lsm=lsm)
    h = connect(d3)
    model.verify_exact(h, f"{kind}: after writes on the recovered volume and a restart")
    h.shutdown()
    d3.stop()
    st.check_server()


def crash_during_uploads(tmp, kind):
    """kill -9 while background uploads are in flight (flush_interval_ms = 20, larger
    writes, several kills at different moments): whatever segment the kill interrupts,
    replay must keep every flushed byte."""
    nbd = import_nbd()
    st = Storage(tmp, kind)
    model = CrashModel(REGION_BLOCKS, seed_for(f"{kind} uploads"))
    lsm = {"flush_interval_ms": 20}
    for round_ in range(3):
        d = st.daemon(lsm=lsm)
        h = connect(d)
        if round_:
            model.verify_after_crash(h, f"{kind}: after kill -9 number {round_}")
        for i in range(150):
            model.random_op(h, nbd)
            if i % 50 == 49:
                h.flush()
                model.flush()
        # Big unflushed writes, then a kill a few milliseconds later, mid-upload.
        for _ in range(8):
            b = model.rng.randrange(REGION_BLOCKS - 256)
            data = model.random_data(256 * e2e.BLOCK)
            h.pwrite(data, b * e2e.BLOCK)
            model.write(b * e2e.BLOCK, data)
        time.sleep(model.rng.uniform(0, 0.05))
        d.kill9()
        h = None  # libnbd closes the handle when it is collected
    d = st.daemon(lsm=lsm)
    h = connect(d)
    model.verify_after_crash(h, f"{kind}: after the last kill -9")
    h.shutdown()
    d.stop()
    st.check_server()


def background_flush(tmp, kind):
    """Documented behaviour (DESIGN.md "Write path"): a dirty buffer is uploaded after
    flush_interval_ms even without FLUSH, so writes followed by 3 s of quiet survive
    kill -9 with the default interval (1000 ms)."""
    nbd = import_nbd()
    st = Storage(tmp, kind)
    model = CrashModel(REGION_BLOCKS, seed_for(f"{kind} background"))
    d = st.daemon()
    h = connect(d)
    for _ in range(300):
        model.random_op(h, nbd)
    time.sleep(3)
    d.kill9()
    h = None  # libnbd closes the handle when it is collected
    d = st.daemon()
    h = connect(d)
    model.verify_exact(h, f"{kind}: 3 s after unflushed writes, then kill -9")
    h.shutdown()
    d.stop()


def sigterm_without_flush(tmp, kind):
    """SIGTERM drains and flushes: nothing is lost although the client never sent FLUSH
    (flush_interval_ms = 0, so only shutdown can have made it durable)."""
    nbd = import_nbd()
    st = Storage(tmp, kind)
    model = CrashModel(REGION_BLOCKS, seed_for(f"{kind} sigterm"))
    lsm = {"flush_interval_ms": 0}
    d = st.daemon(lsm=lsm)
    h = connect(d)
    for _ in range(500):
        model.random_op(h, nbd)
    # The client stays connected: the daemon must not wait for it to leave.
    check(d.stop(timeout=30) == 0, "SIGTERM exit status")
    check("status " in d.log(), "no status line at shutdown")
    h = None  # libnbd closes the handle when it is collected
    d = st.daemon(lsm=lsm)
    h = connect(d)
    model.verify_exact(h, f"{kind}: after SIGTERM without FLUSH")
    h.shutdown()
    d.stop()
    st.check_server()


def restart_cycles(tmp, kind, rounds=6):
    """Several rounds of writes, TRIMs, zeroes, FUA writes and FLUSHes, each ended by
    kill -9 (unflushed writes in the buffer, or requests in flight) or SIGTERM, some
    with the cache directory deleted; verified after every restart. One round issues more
    than 64 FLUSHes so the map memtable is flushed to an SST and replay starts above it."""
    nbd = import_nbd()
    st = Storage(tmp, kind)
    model = CrashModel(REGION_BLOCKS, seed_for(f"{kind} cycles"))
    cache = os.path.join(tmp, "cache")
    endings = ["kill_unflushed", "kill_inflight", "sigterm", "kill_after_flush",
               "kill_unflushed", "kill_inflight"]
    epochs = []
    d = st.daemon(cache_dir=cache)
    for r in range(rounds):
        h = connect(d)
        if r:
            old, new = model.verify_after_crash(h, f"{kind}: round {r} after restart")
            print(f"  round {r}: unflushed blocks kept {old} flushed, {new} newer", flush=True)
        flushes = 70 if r == 2 else model.rng.randrange(3, 12)
        ops = 700 if r == 2 else model.rng.randrange(200, 500)
        flush_at = set(model.rng.sample(range(ops), min(flushes, ops)))
        for i in range(ops):
            model.random_op(h, nbd)
            if i in flush_at:
                h.flush()
                model.flush()
        ending = endings[r % len(endings)]
        if ending == "kill_after_flush":
            h.flush()
            model.flush()
        else:
            for _ in range(model.rng.randrange(20, 120)):
                model.random_op(h, nbd)
        if ending == "kill_inflight":
            submit_unawaited_writes(h, nbd, model, 48)
        if ending == "sigterm":
            check(d.stop(timeout=30) == 0, "SIGTERM exit status")
            model.flush()  # a clean stop makes everything durable
        else:
            d.kill9()
        h = None  # libnbd closes the handle when it is collected
        m = [line for line in d.log().splitlines() if "opened volume" in line]
        check(m, "no 'opened volume' line")
        epochs.append(int(m[-1].split("epoch=")[1].split()[0]))
        if r % 2:
            shutil.rmtree(cache, ignore_errors=True)  # never authoritative
        print(f"  round {r}: {ops} ops, {flushes} flushes, ended by {ending}", flush=True)
        d = st.daemon(cache_dir=cache)
    h = connect(d)
    model.verify_after_crash(h, f"{kind}: after the last round")
    h.shutdown()
    d.stop()
    check(epochs == sorted(set(epochs)), f"epochs must increase at every open: {epochs}")
    st.check_server()


def case_control_memory_loses_flushes(tmp):
    """Negative control: memory:// keeps nothing across a restart, so the crash check must
    fail there. Shows that verify_after_crash can see lost flushed data."""
    nbd = import_nbd()
    model = CrashModel(REGION_BLOCKS, seed_for("control"))
    d = harness.Daemon(tmp)
    h = connect(d)
    for _ in range(200):
        model.random_op(h, nbd)
    h.flush()
    model.flush()
    d.kill9()
    h = None
    d = harness.Daemon(tmp)
    h = connect(d)
    try:
        model.verify_after_crash(h, "control")
    except AssertionError as e:
        print(f"  the check failed as it must: {str(e)[:120]}", flush=True)
    else:
        raise AssertionError("the crash check passed on memory:// after kill -9")
    h.shutdown()
    d.stop()


CASES = {
    "crash_after_flush": lambda tmp, kind: crash_after_flush(tmp, kind, 0),
    "crash_after_flush_interval": lambda tmp, kind: crash_after_flush(tmp, kind, 1000),
    "crash_during_uploads": crash_during_uploads,
    "background_flush": background_flush,
    "sigterm_without_flush": sigterm_without_flush,
    "restart_cycles": restart_cycles,
}

for _kind in ("file", "s3rver", "sigv4", "rgw"):
    for _name, _fn in CASES.items():
        globals()[f"case_{_kind}_{_name}"] = (lambda fn, kind: lambda tmp: fn(tmp, kind))(
            _fn, _kind)

if __name__ == "__main__":
    run_cases(globals())
