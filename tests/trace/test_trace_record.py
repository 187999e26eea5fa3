#!/usr/bin/python3
"""trace-record in front of real NBD servers (nbdkit, qemu-nbd, portalbd) with real
clients (fio, libnbd, a byte-level client): the trace holds exactly what the clients did."""

import os
import signal
import socket
import struct
import sys
import threading

import tracetools as tt
from harness import check, check_eq, import_nbd, run_cases

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "interop"))
import nbdwire as w  # noqa: E402


def case_fio_counts_nbdkit(tmp):
    """fio's libnbd engine, 2 jobs (2 connections), random read/write with fsync: the
    trace's op counts equal the I/O counts fio reports, every op succeeded."""
    up = tt.nbdkit(tmp)
    rec = tt.Recorder(tmp, up, "fio")
    doc = tt.fio(tmp, rec.uri, "randrw", "--rw=randrw", "--bs=4k", "--iodepth=16",
                 "--numjobs=2", "--size=64m", "--offset_increment=64m", "--number_ios=3000",
                 "--fsync=8", "--randseed=7")
    trace = rec.stop()
    tt.check_trace_shape(trace)
    expect = tt.fio_counts(doc)
    check(expect["Read"] > 1000 and expect["Write"] > 1000 and expect["Flush"] > 100,
          f"fio did little: {expect}")
    check_eq(dict(tt.counts(trace)), dict(expect), "trace op counts vs fio's I/O counts")
    check(all(op["success"] for op in trace["ops"]), "every op succeeded")
    check_eq(trace["device_size_bytes"], tt.GIB, "device_size_bytes is the export size")
    check_eq(trace["workload"], "fio", "workload")
    # fio opens a probe connection, then one per job.
    check_eq(len({op["conn"] for op in trace["ops"]}), 2, "ops on both jobs' connections")
    for op in trace["ops"]:
        if op["op"]["type"] != "Flush":
            check_eq(op["op"]["length"], 4096, "4 KiB I/O")


def libnbd_workload(uri, fua=True):
    """A fixed mix of every command; returns the expected op counts."""
    nbd = tt_nbd()
    h = nbd.NBD()
    h.add_meta_context("base:allocation")
    h.connect_uri(uri)
    expect = {"Write": 0, "Read": 0, "Flush": 0, "Trim": 0, "WriteZeroes": 0}
    for i in range(20):
        h.pwrite(bytes([i]) * 65536, i * 65536, nbd.CMD_FLAG_FUA if (fua and i == 3) else 0)
        expect["Write"] += 1
    for i in range(10):
        check_eq(h.pread(4096, i * 65536), bytes([i]) * 4096, "data read back")
        expect["Read"] += 1
    h.flush()
    expect["Flush"] += 1
    if h.can_trim():
        h.trim(1 << 20, 0)
        expect["Trim"] += 1
    if h.can_zero():
        h.zero(1 << 20, 2 << 20)
        expect["WriteZeroes"] += 1
    if h.can_cache():
        h.cache(4096, 0)
        expect["Cache"] = 1
    if h.can_meta_context("base:allocation"):
        h.block_status(1 << 20, 0, lambda *a: 0)
        expect["BlockStatus"] = 1
    h.shutdown()
    return {k: v for k, v in expect.items() if v}


_nbd = None


def tt_nbd():
    global _nbd
    if _nbd is None:
        _nbd = import_nbd()
    return _nbd


def check_libnbd_trace(trace, expect):
    tt.check_trace_shape(trace)
    check_eq(dict(tt.counts(trace)), expect, "trace op counts")
    check(all(op["success"] for op in trace["ops"]), "every op succeeded")
    writes = [op for op in trace["ops"] if op["op"]["type"] == "Write"]
    check_eq(sum(1 for op in writes if op.get("flags") == ["FUA"]), 1, "one FUA write")
    check_eq(sorted(op["op"]["offset"] for op in writes), [i * 65536 for i in range(20)],
             "write offsets")


def case_nbdkit_every_command(tmp):
    up = tt.nbdkit(tmp)
    rec = tt.Recorder(tmp, up, "mix")
    expect = libnbd_workload(rec.uri)
    check("Cache" in expect and "BlockStatus" in expect, f"nbdkit memory offers all: {expect}")
    check_libnbd_trace(rec.stop(), expect)


def case_qemu_nbd_every_command(tmp):
    up = tt.qemu_nbd(tmp)
    rec = tt.Recorder(tmp, up, "mix")
    expect = libnbd_workload(rec.uri)
    check_libnbd_trace(rec.stop(), expect)


def case_portalbd_every_command(tmp):
    up = tt.portalbd(tmp)
    rec = tt.Recorder(tmp, up, "mix")
    expect = libnbd_workload(rec.uri)
    check("Cache" in expect and "BlockStatus" in expect, f"portalbd offers all: {expect}")
    check_libnbd_trace(rec.stop(), expect)
    up.stop()


def case_compat_keeps_the_original_types(tmp):
    up = tt.nbdkit(tmp)
    rec = tt.Recorder(tmp, up, "compat", args=["--compat"])
    expect = libnbd_workload(rec.uri)
    trace = rec.stop()
    expect.pop("Cache", None)
    expect.pop("BlockStatus", None)
    check_eq(dict(tt.counts(trace)), expect, "compat trace op counts")
    check("dropped_by_compat=2" in rec.log(), f"compat drops are reported\n{rec.log()}")


def case_many_connections(tmp):
    """8 clients at once, each its own region: all recorded, on 8 connections."""
    nbd = tt_nbd()
    up = tt.nbdkit(tmp)
    rec = tt.Recorder(tmp, up, "many")
    errors = []

    def client(k):
        try:
            h = nbd.NBD()
            h.connect_uri(rec.uri)
            for i in range(50):
                h.pwrite(b"x" * 4096, (k * 100 + i) * 4096)
            h.flush()
            h.shutdown()
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    check(not errors, f"client errors: {errors}")
    trace = rec.stop()
    tt.check_trace_shape(trace)
    check_eq(dict(tt.counts(trace)), {"Write": 400, "Flush": 8}, "op counts")
    check_eq(len({op["conn"] for op in trace["ops"]}), 8, "distinct connections")


def case_starttls_refused_by_the_proxy(tmp):
    """STARTTLS never reaches the upstream: trace-record answers NBD_REP_ERR_POLICY and
    the client carries on in plain text."""
    up = tt.nbdkit(tmp)
    rec = tt.Recorder(tmp, up, "tls")
    host, port = rec.address.rsplit(":", 1)
    with w.Conn(socket.create_connection((host, int(port)), timeout=10)) as c:
        c.start()
        check_eq(c.option(w.OPT_STARTTLS)[-1][0], w.REP_ERR_POLICY, "STARTTLS reply")
        check_eq(c.go(export="")[-1][0], w.REP_ACK, "GO after the refusal")
        check_eq(c.cmd(w.CMD_WRITE, 0, 512, payload=b"a" * 512)[0], 0, "write")
        c.request(w.CMD_DISC)
    # libnbd asking for TLS when available also works through the proxy.
    nbd = tt_nbd()
    h = nbd.NBD()
    h.set_tls(nbd.TLS_ALLOW)
    h.connect_uri(rec.uri)
    h.pread(512, 0)
    h.shutdown()
    trace = rec.stop()
    check_eq(dict(tt.counts(trace)), {"Write": 1, "Read": 1}, "op counts")


def case_failed_requests_are_recorded(tmp):
    """Requests the server refuses are in the trace with success false."""
    up = tt.nbdkit(tmp, size="1M")
    rec = tt.Recorder(tmp, up, "errors")
    nbd = tt_nbd()
    h = nbd.NBD()
    h.set_strict_mode(0)  # let the out-of-range request reach the server
    h.connect_uri(rec.uri)
    h.pwrite(b"z" * 4096, 0)
    try:
        h.pread(4096, 1 << 20)
        raise AssertionError("a read beyond the end succeeded")
    except nbd.Error:
        pass
    h.shutdown()
    trace = rec.stop()
    ops = [(op["op"]["type"], op["success"]) for op in trace["ops"]]
    check_eq(ops, [("Write", True), ("Read", False)], "ops and their success")
    check_eq(trace["device_size_bytes"], 1 << 20, "device size")


def case_sigterm_with_a_client_connected(tmp):
    """SIGTERM while a client is connected and idle: trace-record closes it, writes a
    complete trace and exits 0."""
    nbd = tt_nbd()
    up = tt.nbdkit(tmp)
    rec = tt.Recorder(tmp, up, "term")
    h = nbd.NBD()
    h.connect_uri(rec.uri)
    for i in range(5):
        h.pwrite(b"q" * 4096, i * 4096)
    trace = rec.stop(signal.SIGTERM)
    check_eq(dict(tt.counts(trace)), {"Write": 5}, "ops before the signal")
    tt.check_trace_shape(trace)


def case_bad_arguments(tmp):
    r = tt.run([tt.binary("trace-record"), "--listen", "127.0.0.1:0", "--upstream", "nowhere",
                "--output", os.path.join(tmp, "t.json")], check_exit=False)
    check(r.returncode != 0 and "upstream" in r.stderr, f"bad --upstream refused:\n{r}")
    r = tt.run([tt.binary("trace-record"), "--listen", "127.0.0.1:0", "--upstream",
                "127.0.0.1:1", "--output", "/nonexistent/dir/t.json"], check_exit=False)
    check(r.returncode != 0 and "/nonexistent/dir/t.json" in r.stderr,
          f"unwritable --output refused:\n{r}")
    # An empty value (an unset variable) is an error, never "not given".
    good = {"--listen": "127.0.0.1:0", "--upstream": "127.0.0.1:1",
            "--output": os.path.join(tmp, "t.json")}
    for opt in ("--listen", "--upstream", "--output", "--workload", "--log-level"):
        args = dict(good, **{opt: ""})
        r = tt.run([tt.binary("trace-record"), *[x for kv in args.items() for x in kv]],
                   check_exit=False, timeout=10)
        why = "not in" if opt == "--log-level" else "must not be empty"
        check(r.returncode == 1 and opt in r.stderr and why in r.stderr,
              f"empty {opt} refused:\n{r}")
    # A drain time too long for std::chrono::milliseconds wrapped to none at all.
    r = tt.run([tt.binary("trace-record"), *[x for kv in good.items() for x in kv],
                "--drain-ms", str(2**64 - 1)], check_exit=False, timeout=10)
    check(r.returncode == 1 and "--drain-ms" in r.stderr, f"huge --drain-ms refused:\n{r}")


if __name__ == "__main__":
    run_cases(globals(), tools=["nbdkit"])
