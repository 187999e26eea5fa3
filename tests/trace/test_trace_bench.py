#!/usr/bin/python3
"""trace-bench: round trips (record with trace-record, replay in-process and against
nbdkit), malformed traces rejected, and its output parsed (percentiles present and
ordered)."""

import copy
import json
import os
import re
import shutil

import tracetools as tt
from harness import check, check_eq, run, run_cases

TRACES = os.path.join(tt.SOURCE_DIR, "traces")
PERCENTILES = ["p50", "p90", "p99", "p99_9", "max"]


def record_fio(tmp, up, name="fio", number_ios=2000):
    rec = tt.Recorder(tmp, up, name)
    doc = tt.fio(tmp, rec.uri, name, "--rw=randrw", "--bs=4k", "--iodepth=8", "--size=32m",
                 f"--number_ios={number_ios}", "--fsync=8", "--randseed=3")
    trace = rec.stop()
    check_eq(dict(tt.counts(trace)), dict(tt.fio_counts(doc)), "trace vs fio counts")
    return rec.output, trace


def check_replayed(doc, trace, what, in_process):
    """The bench's JSON for one replay of `trace`: every op replayed once, none failed,
    percentiles present and ordered."""
    check_eq(len(doc["workloads"]), 1, f"{what}: workloads")
    w = doc["workloads"][0]
    check_eq(w["trace_ops"], len(trace["ops"]), f"{what}: trace ops")
    check_eq(w["failures"], 0, f"{what}: failures ({w.get('first_error')})")
    per_type = {t: v["count"] for t, v in w["latency_ns"].items()}
    iterations = len(w["iterations"])
    expect = {t: n * iterations for t, n in tt.counts(trace).items()}
    check_eq(per_type, expect, f"{what}: ops replayed per type")
    check_percentiles(w, what)
    if in_process:
        store = w["object_store"]
        check(store.get("PUT_IF_ABSENT", {}).get("calls", 0) > 0, f"{what}: segments uploaded")
        check(w["write_amplification"] is not None and w["write_amplification"] > 0.5,
              f"{what}: write amplification {w['write_amplification']}")
        # Requests per op: the store's calls over the ops replayed, kind by kind and in all.
        calls = {k: v["calls"] for k, v in store.items()}
        check_eq(w["store_requests"], sum(calls.values()), f"{what}: store requests")
        per_op = w["requests_per_op"]
        check_eq(set(per_op), set(calls) | {"total"}, f"{what}: kinds per op")
        for k, n in calls.items():
            check(abs(per_op[k] * w["ops"] - n) < 1e-6 * n + 1e-9, f"{what}: {k} per op {per_op}")
        check(abs(per_op["total"] * w["ops"] - w["store_requests"]) < 1e-6 * w["store_requests"],
              f"{what}: requests per op {per_op}")
    else:
        check("object_store" not in w, f"{what}: no store numbers for a remote server")
        check("requests_per_op" not in w, f"{what}: no requests per op for a remote server")


def check_percentiles(w, what):
    check(w["latency_ns"], f"{what}: latency per op type")
    for t, lat in w["latency_ns"].items():
        values = [lat[p] for p in PERCENTILES]
        check(all(isinstance(v, int) for v in values), f"{what} {t}: percentiles {lat}")
        check(values == sorted(values), f"{what} {t}: percentiles out of order: {lat}")
        check(lat["min"] <= values[0] and lat["count"] > 0, f"{what} {t}: {lat}")


def case_round_trip(tmp):
    """Record fio through trace-record in front of nbdkit; replay it in-process (memory://
    and file://) and against nbdkit over 2 connections."""
    up = tt.nbdkit(tmp)
    path, trace = record_fio(tmp, up)
    _, doc = tt.bench(tmp, path, "--iterations", "2", "--warmup", "1")
    check_replayed(doc, trace, "in-process memory://", True)
    check_eq(doc["target"], {"kind": "in-process", "storage": "memory://"}, "target")
    store = f"file://{tmp}/volume-{{workload}}"  # {workload}: a volume per trace
    _, doc = tt.bench(tmp, path, "--iterations", "1", "--warmup", "0", "--storage", store)
    check_replayed(doc, trace, "in-process file://", True)
    name = doc["workloads"][0]["name"]
    check(os.listdir(os.path.join(tmp, f"volume-{name}")), "the file:// volume holds objects")
    _, doc = tt.bench(tmp, path, "--iterations", "1", "--warmup", "0", "--nbd", up.uri,
                      "--connections", "2")
    check_replayed(doc, trace, "nbdkit", False)


def case_side_by_side(tmp):
    """The same trace against portalbd and qemu-nbd over NBD."""
    up = tt.nbdkit(tmp)
    path, trace = record_fio(tmp, up, number_ios=1000)
    up.stop()
    pbd = tt.portalbd(tmp)
    _, doc = tt.bench(tmp, path, "--iterations", "1", "--warmup", "0", "--nbd", pbd.uri)
    check_replayed(doc, trace, "portalbd", False)
    pbd.stop()
    qemu = tt.qemu_nbd(tmp)
    _, doc = tt.bench(tmp, path, "--iterations", "1", "--warmup", "0", "--nbd", qemu.uri,
                      "--connections", "4")
    check_replayed(doc, trace, "qemu-nbd", False)


ROW_RE = re.compile(r"^  (Read|Write|Trim|WriteZeroes|Flush|BlockStatus|Cache)\s+(\d+)\s+"
                    r"([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)$")


def case_output_parsed(tmp):
    """The text report: a latency table per workload whose percentile columns are
    present and ordered, and the comparison table; --json agrees."""
    traces = [os.path.join(TRACES, "mkfs-ext4.json"), os.path.join(TRACES, "fio-randrw-fsync.json")]
    for t in traces:
        check(os.path.exists(t), f"checked-in trace {t} is missing")
    r, doc = tt.bench(tmp, *traces, "--iterations", "2", "--warmup", "0")
    out = r.stdout
    sections = re.split(r"^=== ", out, flags=re.M)[1:]
    names = [s.split(" ", 1)[0] for s in sections]
    check_eq(names, ["mkfs-ext4", "fio-randrw-fsync", "comparison", "latency", "store"],
             "report sections")
    for s in sections[:2]:
        check("latency (us)" in s and "p50" in s and "p99.9" in s, f"latency header:\n{s}")
        header = next(l for l in s.splitlines() if "latency (us)" in l).split()
        check_eq(header[2:], ["count", "mean", "p50", "p90", "p99", "p99.9", "max"], "columns")
        rows = [ROW_RE.match(l) for l in s.splitlines()]
        rows = [m for m in rows if m]
        check(rows, f"latency rows:\n{s}")
        for m in rows:
            p = [float(m.group(i)) for i in range(4, 9)]
            check(p == sorted(p), f"percentiles out of order: {m.group(0)}")
            check(int(m.group(2)) > 0, f"count: {m.group(0)}")
        check(re.search(r"^  iteration 2: [\d.]+ ms\s+\d+ ops/s\s+read [\d.]+ MB/s\s+write "
                        r"[\d.]+ MB/s\s+failures 0$", s, re.M), f"iteration lines:\n{s}")
        check(re.search(r"^  write amplification [\d.]+ ", s, re.M), f"write amplification:\n{s}")
        check(re.search(r"^  object store \(all iterations\): .*PUT_IF_ABSENT \d+", s, re.M),
              f"object store line:\n{s}")
        m = re.search(r"^  store requests per op: .*PUT_IF_ABSENT [\d.]+ all ([\d.]+) "
                      r"\((\d+) requests / (\d+) ops\)$", s, re.M)
        check(m, f"requests per op line:\n{s}")
        check(abs(float(m.group(1)) - int(m.group(2)) / int(m.group(3))) < 1e-4,
              f"requests per op: {m.group(0)}")
    table = sections[2].splitlines()
    check(table[1].split()[:2] == ["workload", "ops"], f"comparison header: {table[1]}")
    check_eq([l.split()[0] for l in table[2:] if l.strip()], ["mkfs-ext4", "fio-randrw-fsync"],
             "comparison rows")
    # p50 and p99 in ms per op kind; requests per op by store request kind.
    lat = [l.split() for l in sections[3].splitlines()[1:] if l.strip()]
    kinds = ["Read", "Write", "Trim", "WriteZeroes", "Flush"]  # what mkfs-ext4 has, in order
    check_eq(lat[0], ["latency", "(ms)"] + [x for k in kinds for x in [k, "p50", k, "p99"]],
             "latency header")
    for row in lat[1:]:
        check(all(v == "-" or float(v) >= 0 for v in row[1:]), f"latency row: {row}")
    check_eq([l[0] for l in lat[1:]], ["mkfs-ext4", "fio-randrw-fsync"], "latency rows")
    req = [l.split() for l in sections[4].splitlines()[1:] if l.strip()]
    check(req[0][4:7] == ["ops", "requests", "all"], f"requests header: {req[0]}")
    for w, row in zip(doc["workloads"], req[1:]):
        check_eq(row[:3], [w["name"], str(w["ops"]), str(w["store_requests"])], "requests row")
        check_percentiles(w, w["name"])
        check_eq(len(w["iterations"]), 2, "iterations in JSON")
    check_eq(len(req), 3, "requests rows")


def bad_trace(tmp, name, mutate):
    good = {"workload": "w", "device_size_bytes": 1 << 20, "start_time": "2026-01-07T02:58:02Z",
            "duration_ns": 100, "ops": [
                {"seq": 0, "timestamp_ns": 10, "op": {"type": "Write", "offset": 0, "length": 4096},
                 "duration_ns": 5, "success": True},
                {"seq": 1, "timestamp_ns": 20, "op": {"type": "Flush"}, "duration_ns": 5,
                 "success": True}]}
    doc = copy.deepcopy(good)
    mutate(doc)
    return tt.write_json(os.path.join(tmp, f"{name}.json"), doc)


def case_malformed_traces_rejected(tmp):
    cases = [
        ("no-ops", lambda d: d.pop("ops"), "ops: missing"),
        ("bad-type", lambda d: d["ops"][1]["op"].update(type="Discard"),
         "ops[1].op.type: unknown op type \"Discard\""),
        ("neg-offset", lambda d: d["ops"][0]["op"].update(offset=-4096),
         "ops[0].op.offset: expected an unsigned integer"),
        ("str-length", lambda d: d["ops"][0]["op"].update(length="4096"),
         "ops[0].op.length: expected an unsigned integer, got string"),
        ("beyond-end", lambda d: d["ops"][0]["op"].update(offset=1 << 20),
         "ops[0].op: successful Write"),
        ("bad-time", lambda d: d.update(start_time="07/01/2026"), "start_time"),
        ("no-success", lambda d: d["ops"][0].pop("success"), "ops[0].success: missing"),
        ("bad-flag", lambda d: d["ops"][0].update(flags=["FUA", "LOUD"]), "ops[0].flags[1]"),
    ]
    good = bad_trace(tmp, "good", lambda d: None)
    r, doc = tt.bench(tmp, good, "--iterations", "1", "--warmup", "0")
    check_eq(doc["workloads"][0]["failures"], 0, "the unmutated trace is fine")
    for name, mutate, field in cases:
        path = bad_trace(tmp, name, mutate)
        # The bad trace listed second: nothing runs before the check.
        r, doc = tt.bench(tmp, good, path, check_exit=False)
        check(r.returncode == 1, f"{name}: exit status {r.returncode}\n{r}")
        check(f"{path}: {field}" in r.stderr, f"{name}: the error names {field!r}:\n{r.stderr}")
        check("===" not in r.stdout and doc is None, f"{name}: nothing ran\n{r.stdout}")
    with open(os.path.join(tmp, "syntax.json"), "w") as f:
        f.write('{"workload": "w", "ops": [')
    r, _ = tt.bench(tmp, os.path.join(tmp, "syntax.json"), check_exit=False)
    check(r.returncode == 1 and "not valid JSON" in r.stderr and "line 1" in r.stderr,
          f"syntax error reported with a position:\n{r.stderr}")


def case_empty_arguments(tmp):
    """An empty value (an unset variable) is an error, never "not given": an empty --nbd
    replayed in-process, an empty --json wrote no file. --warmup is bounded (4294967295
    never ended: the loop counter wrapped)."""
    good = bad_trace(tmp, "good", lambda d: None)
    for args in (["--storage", ""], ["--nbd", ""], ["--cache-dir", ""], ["--json", ""],
                 ["--all", ""], ["--profile-dir", ""], ["--pace", ""],
                 ["--warmup", "4294967295"]):
        opt = args[0]
        r = run([tt.binary("trace-bench"), good, "--iterations", "1", "--warmup", "0", *args],
                check_exit=False, timeout=60)
        why = "not in" if opt in ("--pace", "--warmup") else "must not be empty"
        check(r.returncode == 1 and opt in r.stderr and why in r.stderr,
              f"{opt} {args[-1]!r} refused:\n{r}")
        check("===" not in r.stdout, f"{opt} {args[-1]!r}: something ran\n{r.stdout}")


def case_original_portalbd_trace(tmp):
    """A trace as the original portalbd writes it (pretty JSON, +00:00 time, ops stamped
    at completion, no conn/start_ns/flags) replays."""
    ops = []
    t = 1000
    for i in range(200):
        t += 5000
        kind = ["Write", "Read", "Write", "Flush"][i % 4]
        op = {"type": kind} if kind == "Flush" else {"type": kind, "offset": (i % 16) * 4096,
                                                       "length": 4096}
        ops.append({"seq": i, "timestamp_ns": t, "op": op, "duration_ns": 2000, "success": True})
    doc = {"workload": "original", "device_size_bytes": 1 << 30,
           "start_time": "2026-01-07T02:58:02.656272123+00:00", "duration_ns": t + 10, "ops": ops}
    path = os.path.join(tmp, "original.json")
    with open(path, "w") as f:
        json.dump(doc, f, indent=2)
    _, out = tt.bench(tmp, path, "--iterations", "1", "--warmup", "0")
    check_replayed(out, doc, "original trace", True)


def case_checked_in_traces(tmp):
    """Every trace in traces/ loads and replays in-process without a failed op."""
    names = sorted(f for f in os.listdir(TRACES) if f.endswith(".json"))
    check(len(names) >= 3, f"at least three checked-in traces: {names}")
    for n in names:
        check(os.path.getsize(os.path.join(TRACES, n)) < 4 << 20, f"{n} is under 4 MB")
    _, doc = tt.bench(tmp, "--all", TRACES, "--iterations", "1", "--warmup", "0")
    check_eq(len(doc["workloads"]), len(names), "workloads replayed")
    for w in doc["workloads"]:
        with open(w["trace"]) as f:
            trace = json.load(f)
        tt.check_trace_shape(trace)
        check_eq(w["ops"], len(trace["ops"]), f"{w['name']}: ops replayed")
        check_eq(w["failures"], w["recorded_failures"], f"{w['name']}: failures")
        check_eq(trace["device_size_bytes"], tt.GIB, f"{w['name']}: a 1 GiB export")


def case_original_pace(tmp):
    """--pace original keeps the recorded gaps; fast does not."""
    ops = [{"seq": i, "timestamp_ns": 10 + i * 700_000_000, "start_ns": i * 700_000_000,
            "op": {"type": "Write", "offset": i * 4096, "length": 4096}, "duration_ns": 10,
            "success": True} for i in range(3)]
    doc = {"workload": "paced", "device_size_bytes": 1 << 20, "start_time": "2026-01-07T00:00:00Z",
           "duration_ns": 2_000_000_000, "ops": ops}
    path = tt.write_json(os.path.join(tmp, "paced.json"), doc)
    _, slow = tt.bench(tmp, path, "--iterations", "1", "--warmup", "0", "--pace", "original")
    d = slow["workloads"][0]["iterations"][0]["duration_ns"]
    check(1.4e9 <= d < 3e9, f"original pace took {d / 1e9:.2f} s for a 1.4 s trace")
    _, fast = tt.bench(tmp, path, "--iterations", "1", "--warmup", "0")
    d = fast["workloads"][0]["iterations"][0]["duration_ns"]
    check(d < 0.5e9, f"fast pace took {d / 1e9:.2f} s")


def case_profile(tmp):
    """--profile writes a perf profile when perf is present, and says so when not."""
    r, _ = tt.bench(tmp, os.path.join(TRACES, "fio-randrw-fsync.json"), "--iterations", "3",
                    "--warmup", "0", "--profile", "--profile-dir", tmp)
    data = os.path.join(tmp, "fio-randrw-fsync.perf.data")
    if shutil.which("perf"):
        check(f"profile: {data}" in r.stdout, f"profile path reported:\n{r.stdout}")
        check(os.path.exists(data) and os.path.getsize(data) > 0, "perf.data written")
    else:
        check("perf not found" in r.stdout, f"missing perf reported:\n{r.stdout}")


if __name__ == "__main__":
    run_cases(globals(), tools=["nbdkit", "fio"])
