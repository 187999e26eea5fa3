#!/usr/bin/python3
"""portalctl's progress line: a snapshot create, delete or restore that has no reply after
a second shows "snapshot OP NAME: waiting N s ..." on stderr when stderr is a terminal
(a pty here), and erases it when the reply comes; with stderr not a terminal, --quiet or
--json, the output is exactly what it was without progress. The daemon is held with
SIGSTOP for a few seconds to make the request take long.
"""

import os
import pty
import select
import signal
import subprocess
import threading
import time

from harness import Daemon, check, check_eq, portalctl, portalctl_path, run_cases, spawn

HOLD_S = 2.5


def held(d, argv, stderr_tty):
    """Runs portalctl `argv` while the daemon is stopped for HOLD_S; returns
    (exit code, stdout, stderr) with stderr read from a pty when stderr_tty."""
    os.kill(d.pid, signal.SIGSTOP)
    resume = threading.Timer(HOLD_S, lambda: os.kill(d.pid, signal.SIGCONT))
    resume.start()
    try:
        if not stderr_tty:
            p = spawn([portalctl_path(), "--socket", d.ctl, *argv], stdout=subprocess.PIPE,
                      stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
            out, err = p.communicate(timeout=60)
            return p.returncode, out.decode(), err.decode()
        master, slave = pty.openpty()
        p = spawn([portalctl_path(), "--socket", d.ctl, *argv], stdout=subprocess.PIPE,
                  stderr=slave, stdin=subprocess.DEVNULL)
        os.close(slave)
        err = b""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # EIO: the child closed the pty
                    break
                if not chunk:
                    break
                err += chunk
            elif p.poll() is not None:
                break
        os.close(master)
        out = p.stdout.read().decode()
        p.wait(timeout=10)
        return p.returncode, out, err.decode()
    finally:
        resume.join()
        os.kill(d.pid, signal.SIGCONT)


def case_progress_on_a_terminal(tmp):
    with Daemon(tmp) as d:
        portalctl(d, "snapshot", "create", "s1")
        code, out, err = held(d, ["snapshot", "restore", "s1"], stderr_tty=True)
        check_eq((code, out), (0, "OK\n"), "restore result")
        check("snapshot restore s1: waiting 1 s" in err, f"no progress line on the pty: {err!r}")
        check(err.endswith("\r\x1b[K"), f"progress line not erased at the end: {err!r}")
        code, out, err = held(d, ["snapshot", "delete", "s1"], stderr_tty=True)
        check_eq((code, out), (0, "OK\n"), "delete result")
        check("snapshot delete s1: waiting" in err, f"no progress line on the pty: {err!r}")
        d.stop()


def case_quiet_in_scripts(tmp):
    with Daemon(tmp) as d:
        portalctl(d, "snapshot", "create", "s1")
        check_eq(held(d, ["snapshot", "restore", "s1"], stderr_tty=False), (0, "OK\n", ""),
                 "restore with stderr not a terminal")
        check_eq(held(d, ["--quiet", "snapshot", "restore", "s1"], stderr_tty=True),
                 (0, "OK\n", ""), "restore --quiet on a terminal")
        code, out, err = held(d, ["--json", "snapshot", "create", "s2"], stderr_tty=True)
        check_eq((code, err), (0, ""), "create --json on a terminal: exit and stderr")
        check(out.startswith('{"ok":true'), f"create --json: {out!r}")
        d.stop()


run_cases(globals())
