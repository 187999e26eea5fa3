#!/usr/bin/python3
"""Server-side recording ([record] path, --record): portalbd driven by fio's nbd engine and
by libnbd, stopped with SIGTERM; the trace it wrote loads as JSON, holds exactly the
requests the clients sent, and trace-bench replays it."""

import collections
import json
import os
import signal

from harness import (Daemon, build_dir, check, check_eq, import_nbd, portalctl, require_tools,
                     run, run_cases)

GIB = 1 << 30


def load(path):
    with open(path) as f:
        return json.load(f)


def counts(trace):
    return dict(collections.Counter(op["op"]["type"] for op in trace["ops"]))


def check_shape(trace, workload, size=GIB):
    for key in ("workload", "device_size_bytes", "start_time", "duration_ns", "ops"):
        check(key in trace, f"trace lacks {key}")
    check_eq(trace["workload"], workload, "workload")
    check_eq(trace["device_size_bytes"], size, "device_size_bytes is the export size")
    for i, op in enumerate(trace["ops"]):
        check_eq(op["seq"], i, "seq numbers ops in file order")
        check(op["conn"] >= 1, f"op {i}: connection numbered from 1: {op}")
        check(op["timestamp_ns"] == op["start_ns"] + op["duration_ns"],
              f"op {i}: timestamp_ns = start_ns + duration_ns: {op}")
        check(op["timestamp_ns"] <= trace["duration_ns"], f"op {i} after the trace's end")
        if op["op"]["type"] == "Flush":
            check_eq(sorted(op["op"]), ["type"], "Flush carries no offset/length")


def replay(tmp, path, trace, failures=0):
    """build/trace-bench replays the trace in-process: every op once; only the recorded
    failures fail again."""
    out = os.path.join(tmp, "bench.json")
    run([os.path.join(build_dir(), "trace-bench"), path, "--iterations", "1", "--warmup", "0",
         "--json", out], timeout=300)
    w = load(out)["workloads"][0]
    check_eq(w["trace_ops"], len(trace["ops"]), "trace-bench: trace ops")
    check_eq(w["recorded_failures"], failures, "trace-bench: failures in the trace")
    check_eq(w["failures"], failures, f"trace-bench: failures ({w.get('first_error')})")
    check_eq({t: v["count"] for t, v in w["latency_ns"].items()}, counts(trace),
             "trace-bench: ops replayed per type")


def libnbd_workload(uri):
    """12 writes (one FUA), 7 reads, 3 flushes, 1 trim, 1 zero on one connection."""
    nbd = import_nbd()
    h = nbd.NBD()
    h.connect_uri(uri)
    for i in range(12):
        h.pwrite(bytes([i + 1]) * 8192, i * 8192, nbd.CMD_FLAG_FUA if i == 5 else 0)
        if i % 4 == 3:
            h.flush()
    for i in range(7):
        check_eq(h.pread(4096, i * 8192), bytes([i + 1]) * 4096, "data read back")
    h.trim(65536, 1 << 20)
    h.zero(65536, 2 << 20)
    h.shutdown()
    return {"Write": 12, "Read": 7, "Flush": 3, "Trim": 1, "WriteZeroes": 1}


def case_config_fio_and_libnbd(tmp):
    """[record] in the config file; fio (2 jobs) then libnbd; SIGTERM finishes the trace."""
    require_tools("fio")
    path = os.path.join(tmp, "server.json")
    d = Daemon(tmp, config=f'[record]\npath = "{path}"\nworkload = "mixed"\n')
    check("recording requests path=" in d.log(), f"start-up says it records\n{d.log()}")
    fio_json = os.path.join(tmp, "fio.json")
    run(["fio", "--name=rec", "--ioengine=nbd", f"--uri={d.uri()}", "--rw=randrw", "--bs=4k",
         "--iodepth=8", "--numjobs=2", "--size=16m", "--offset_increment=16m",
         "--number_ios=1500", "--fsync=8", "--randseed=5", "--output-format=json",
         f"--output={fio_json}"], timeout=300, cwd=tmp)
    with open(fio_json) as f:
        text = f.read()
    doc = json.loads(text[text.index("{"):])
    expect = collections.Counter()
    for j in doc["jobs"]:
        check_eq(j["error"], 0, "fio job error")
        expect["Read"] += j["read"]["total_ios"]
        expect["Write"] += j["write"]["total_ios"]
        expect["Flush"] += j["sync"]["total_ios"]
    check(expect["Read"] > 500 and expect["Write"] > 500 and expect["Flush"] > 50,
          f"fio did little: {expect}")
    mine = libnbd_workload(d.uri())
    d.stop()  # SIGTERM, exit 0
    check("trace written path=" in d.log(), f"shutdown reports the trace\n{d.log()[-2000:]}")

    trace = load(path)
    check_shape(trace, "mixed")
    expect.update(mine)
    check_eq(counts(trace), dict(expect), "trace op counts vs fio's I/Os + libnbd's")
    check(all(op["success"] for op in trace["ops"]), "every op succeeded")
    conns = collections.defaultdict(collections.Counter)
    for op in trace["ops"]:
        conns[op["conn"]][op["op"]["type"]] += 1
    # fio: a probe connection (no requests), one per job; then libnbd's.
    check_eq(len(conns), 3, f"ops on 3 connections: {dict(conns)}")
    last = max(conns)
    check_eq(dict(conns[last]), mine, "the last connection is libnbd's")
    fua = [op for op in trace["ops"] if "FUA" in op.get("flags", [])]
    check_eq([(op["conn"], op["op"]["offset"]) for op in fua], [(last, 5 * 8192)],
             "the one FUA write")
    replay(tmp, path, trace)


def case_flag_and_failed_requests(tmp):
    """--record / --record-workload; a request beyond the end is recorded as failed; a
    snapshot export is not recorded."""
    nbd = import_nbd()
    path = os.path.join(tmp, "flag.json")
    d = Daemon(tmp, disk_size_gb=2, args=["--record", path, "--record-workload", "flagged"])
    h = nbd.NBD()
    h.set_strict_mode(0)  # let the out-of-range request reach the server
    h.connect_uri(d.uri())
    h.pwrite(b"x" * 4096, 0)
    try:
        h.pread(4096, 2 * GIB)
        check(False, "a read beyond the end succeeded")
    except nbd.Error:
        pass
    h.flush()
    portalctl(d, "snapshot", "create", "s1")
    s = nbd.NBD()
    s.connect_uri(d.uri("portalbd@s1"))
    check_eq(s.pread(4096, 0), b"x" * 4096, "the snapshot's data")
    s.shutdown()
    h.shutdown()
    d.stop()
    check("connections=1 " in d.log(), f"one connection recorded\n{d.log()[-2000:]}")
    trace = load(path)
    check_shape(trace, "flagged", size=2 * GIB)
    check_eq([(op["op"]["type"], op["success"]) for op in trace["ops"]],
             [("Write", True), ("Read", False), ("Flush", True)], "ops and their outcome")
    replay(tmp, path, trace, failures=1)


def case_sigint_with_a_client_connected(tmp):
    """SIGINT while a client is attached and idle: the trace is still complete JSON."""
    nbd = import_nbd()
    path = os.path.join(tmp, "int.json")
    d = Daemon(tmp, args=["--record", path])
    h = nbd.NBD()
    h.connect_uri(d.uri())
    for i in range(5):
        h.pwrite(b"y" * 512, i * 512)
    d.proc.send_signal(signal.SIGINT)
    check_eq(d.wait(30), 0, f"portalbd exit status\n{d.log()[-2000:]}")
    trace = load(path)
    check_shape(trace, "unnamed")
    check_eq(counts(trace), {"Write": 5}, "op counts")


def case_unwritable_path(tmp):
    """An unwritable [record] path: exit 1 at start, one line naming the key."""
    bad = os.path.join(tmp, "no-such-dir", "t.json")
    d = Daemon(tmp, config=f'[record]\npath = "{bad}"\n', start=False)
    r = run(d.argv, check_exit=False, timeout=30)
    check_eq(r.returncode, 1, f"exit status\n{r}")
    lines = [ln for ln in r.stderr.splitlines() if "error" in ln]
    check_eq(len(lines), 1, f"one error line\n{r}")
    check("record.path" in lines[0] and bad in lines[0], f"the line names the key and path: {r}")
    r = run([d.argv[0], "--record-workload", "w", "--socket", d.ctl], check_exit=False)
    check(r.returncode != 0 and "--record-workload needs --record" in r.stderr,
          f"--record-workload alone is refused\n{r}")


run_cases(globals())
