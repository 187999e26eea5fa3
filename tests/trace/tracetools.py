"""Helpers for the trace-record / trace-bench tests: upstream servers (nbdkit, qemu-nbd,
portalbd) on unix sockets in the case's directory, trace-record on 127.0.0.1 with a
kernel-chosen port, and trace-bench runs. Built on tests/interop/harness.py: every child
dies with the test (PR_SET_PDEATHSIG) and is killed at the end of each case."""

import collections
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "interop"))

from harness import build_dir, check, check_eq, run, skip, spawn  # noqa: E402

GIB = 1 << 30
SOURCE_DIR = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


def binary(name):
    path = os.path.join(build_dir(), name)
    check(os.access(path, os.X_OK), f"{name} not found at {path} (build first)")
    return path


def need(*tools):
    for t in tools:
        if shutil.which(t) is None:
            skip(f"{t} is not installed")


def read_text(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def wait_for(cond, what, timeout=10, proc=None, log=None):
    deadline = time.monotonic() + timeout
    while not cond():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{what}: process exited with {proc.returncode}\n"
                                 f"{log() if log else ''}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n{log() if log else ''}")
        time.sleep(0.02)


class Upstream:
    """An NBD server on a unix socket: .address is for --upstream, .uri for clients."""

    def __init__(self, proc, sock, log_path):
        self.proc, self.sock, self.log_path = proc, sock, log_path
        self.address = f"unix:{sock}"
        self.uri = f"nbd+unix:///?socket={sock}"

    def log(self):
        return read_text(self.log_path)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _start(argv, tmp, name, sock):
    log_path = os.path.join(tmp, f"{name}.log")
    with open(log_path, "wb") as log:
        p = spawn(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    u = Upstream(p, sock, log_path)
    wait_for(lambda: os.path.exists(sock), f"{name} to listen on {sock}", proc=p, log=u.log)
    return u


def nbdkit(tmp, size="1G"):
    need("nbdkit")
    sock = os.path.join(tmp, "nbdkit.sock")
    return _start(["nbdkit", "-f", "-U", sock, "memory", size], tmp, "nbdkit", sock)


def qemu_nbd(tmp, size=GIB):
    need("qemu-nbd")
    img = os.path.join(tmp, "disk.raw")
    with open(img, "wb") as f:
        f.truncate(size)
    sock = os.path.join(tmp, "qemu-nbd.sock")
    return _start(["qemu-nbd", "-f", "raw", "-k", sock, "-e", "8", "-t", img], tmp, "qemu-nbd",
                  sock)


def portalbd(tmp, gib=1):
    sock = os.path.join(tmp, "portalbd.sock")
    return _start([binary("portalbd"), "--disk-size-gb", str(gib), "--address", f"unix:{sock}",
                   "--socket", os.path.join(tmp, "portalbd.ctl")], tmp, "portalbd", sock)


LISTENING_RE = re.compile(r"trace-record listening address=(\S+)")


class Recorder:
    """trace-record on 127.0.0.1:<kernel-chosen port> in front of `upstream`."""

    def __init__(self, tmp, upstream, name="trace", args=()):
        self.output = os.path.join(tmp, f"{name}.json")
        self.log_path = os.path.join(tmp, f"trace-record-{name}.log")
        argv = [binary("trace-record"), "--listen", "127.0.0.1:0", "--upstream",
                upstream.address, "--output", self.output, "--workload", name, *args]
        with open(self.log_path, "wb") as log:
            self.proc = spawn(argv, stdout=log, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL)
        self.address = None

        def listening():
            m = LISTENING_RE.search(self.log())
            if m:
                self.address = m.group(1)
            return m is not None
        wait_for(listening, "trace-record to listen", proc=self.proc, log=self.log)
        self.uri = f"nbd://{self.address}/"

    def log(self):
        return read_text(self.log_path)

    def stop(self, sig=signal.SIGINT, timeout=20):
        """Signals trace-record, checks it exits 0, returns the trace (parsed JSON)."""
        self.proc.send_signal(sig)
        try:
            status = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"trace-record did not exit within {timeout} s\n{self.log()}")
        check_eq(status, 0, f"trace-record exit status\n{self.log()}")
        with open(self.output) as f:
            return json.load(f)


def counts(trace):
    return collections.Counter(op["op"]["type"] for op in trace["ops"])


def check_trace_shape(trace):
    """What every trace we write must satisfy."""
    for key in ("workload", "device_size_bytes", "start_time", "duration_ns", "ops"):
        check(key in trace, f"trace lacks {key}")
    for i, op in enumerate(trace["ops"]):
        check_eq(op["seq"], i, "seq numbers ops in file order")
        check(op["timestamp_ns"] == op["start_ns"] + op["duration_ns"],
              f"op {i}: timestamp_ns is completion = start_ns + duration_ns: {op}")
        check(op["timestamp_ns"] <= trace["duration_ns"], f"op {i} after the trace's end")
        if op["op"]["type"] == "Flush":
            check_eq(sorted(op["op"]), ["type"], "Flush carries no offset/length")


def fio(tmp, uri, name, *opts, timeout=300):
    need("fio")
    out = os.path.join(tmp, f"{name}.fio.json")
    r = run(["fio", f"--name={name}", "--ioengine=nbd", f"--uri={uri}", "--output-format=json",
             f"--output={out}", *opts], timeout=timeout, check_exit=False, cwd=tmp)
    try:
        with open(out) as f:
            text = f.read()
        doc = json.loads(text[text.index("{"):])
    except (OSError, ValueError) as e:
        raise AssertionError(f"no fio JSON output ({e}):\n{r}") from e
    check_eq(r.returncode, 0, f"fio exit status\n{r}")
    return doc


def fio_counts(doc):
    """I/Os fio completed, summed over jobs: Read, Write, Flush (fio's fsyncs)."""
    c = collections.Counter()
    for j in doc["jobs"]:
        check_eq(j["error"], 0, "fio job error")
        c["Read"] += j["read"]["total_ios"]
        c["Write"] += j["write"]["total_ios"]
        c["Flush"] += j["sync"]["total_ios"]
    return c


def bench(tmp, *args, json_name="bench.json", check_exit=True, timeout=600):
    """Runs trace-bench with --json; returns (Result, parsed JSON or None)."""
    out = os.path.join(tmp, json_name)
    if os.path.exists(out):
        os.unlink(out)
    r = run([binary("trace-bench"), *args, "--json", out], timeout=timeout,
            check_exit=check_exit)
    doc = None
    if os.path.exists(out):
        with open(out) as f:
            doc = json.load(f)
    return r, doc


def write_json(path, doc):
    with open(path, "w") as f:
        json.dump(doc, f)
    return path
