#!/usr/bin/python3
"""--log-format json and [log] format = "json": every line portalbd writes to stderr is one
JSON object with the text line's fields (timestamp, level, target, message), from start
through traffic, SIGUSR1 and a SIGTERM stop, including config warnings and start-up
errors; the text format is unchanged.
"""

import json
import os
import re
import signal
import subprocess
import time

from harness import check, check_eq, portalbd_path, portalctl, run, run_cases, spawn

TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
LEVELS = {"TRACE", "DEBUG", "INFO", "WARN", "ERROR"}


def parse_lines(text):
    """Every line as a JSON object with exactly the four fields; fails naming the line."""
    records = []
    for n, line in enumerate(text.splitlines(), 1):
        try:
            r = json.loads(line)
        except ValueError as e:
            raise AssertionError(f"stderr line {n} is not JSON ({e}): {line!r}")
        check(isinstance(r, dict), f"line {n} is not an object: {line!r}")
        check_eq(list(r), ["timestamp", "level", "target", "message"], f"fields of line {n}")
        check(TIME.fullmatch(r["timestamp"]), f"timestamp of line {n}: {line!r}")
        check(r["level"] in LEVELS, f"level of line {n}: {line!r}")
        check(r["target"].startswith("portalbd"), f"target of line {n}: {line!r}")
        records.append(r)
    check(records, "no log lines at all")
    return records


class Portalbd:
    """portalbd on memory://, 127.0.0.1 with a kernel-chosen port, stderr to a file."""

    def __init__(self, tmp, *args):
        self.ctl = os.path.join(tmp, "ctl.sock")
        self.err_path = os.path.join(tmp, "stderr")
        self.err = open(self.err_path, "wb")
        self.proc = spawn([portalbd_path(), "--address", "127.0.0.1:0", "--socket", self.ctl,
                           *args], stdout=subprocess.DEVNULL, stderr=self.err,
                          stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while "NBD server accepting connections" not in self.stderr():
            check(self.proc.poll() is None, f"portalbd exited {self.proc.returncode}:\n"
                  f"{self.stderr()}")
            check(time.monotonic() < deadline, f"portalbd not serving:\n{self.stderr()}")
            time.sleep(0.02)

    def stderr(self):
        with open(self.err_path, "rb") as f:
            return f.read().decode("utf-8", "strict")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        status = self.proc.wait(timeout=30)
        self.err.close()
        return status


def run_traffic(d):
    portalctl(d, "snapshot", "create", "before")
    portalctl(d, "status")
    r = portalctl(d, "snapshot", "get", "no\"such\\name", check_exit=False)
    check_eq(r.returncode, 1, "portalctl get of a missing snapshot")
    d.proc.send_signal(signal.SIGUSR1)  # logs the status line
    deadline = time.monotonic() + 10
    while '"message":"status ' not in d.stderr():
        check(time.monotonic() < deadline, "no status line after SIGUSR1")
        time.sleep(0.02)


def messages(records):
    return [r["message"] for r in records]


def case_flag(tmp):
    d = Portalbd(tmp, "--log-format", "json")
    run_traffic(d)
    check_eq(d.stop(), 0, "exit status after SIGTERM")
    records = parse_lines(d.stderr())
    msgs = messages(records)
    check(any(m.startswith("NBD server listening address=127.0.0.1:") for m in msgs),
          f"listening line: {msgs}")
    check(any("snapshot" in m and "name=before" in m for m in msgs), f"snapshot line: {msgs}")
    # The quote and backslash a client sent survive escaping, in a parsed message.
    check(any('no"such\\name' in m for m in msgs), f"escaped name: {msgs}")
    check(any(m.startswith("Received SIGTERM") for m in msgs), f"SIGTERM line: {msgs}")
    check_eq(msgs[-1], "portalbd stopped", "last line")
    check(all(r["level"] == "INFO" for r in records if r["message"] == "portalbd stopped"),
          "level of the last line")


def case_config_key(tmp):
    cfg = os.path.join(tmp, "p.toml")
    with open(cfg, "w") as f:
        # An ignored key of the original's: its warning is logged as JSON too.
        f.write('[log]\nformat = "json"\n[lsm]\nl0_max_ssts = 4\n')
    d = Portalbd(tmp, "--config", cfg)
    check_eq(d.stop(), 0, "exit status after SIGTERM")
    records = parse_lines(d.stderr())
    warn = [r for r in records if "l0_max_ssts" in r["message"]]
    check_eq(len(warn), 1, f"warning about lsm.l0_max_ssts: {records}")
    check_eq(warn[0]["level"], "WARN", "its level")
    # The flag wins over the file.
    d = Portalbd(tmp, "--config", cfg, "--log-format", "text")
    check_eq(d.stop(), 0, "exit status after SIGTERM")
    check(TIME.match(d.stderr()) and not d.stderr().startswith("{"),
          f"--log-format text over [log] format = json:\n{d.stderr()}")


def case_startup_error(tmp):
    cfg = os.path.join(tmp, "p.toml")
    with open(cfg, "w") as f:
        f.write('[storage]\nurl = "bogus://x"\n')
    r = run([portalbd_path(), "--config", cfg, "--log-format", "json"], check_exit=False)
    check_eq(r.returncode, 1, "exit status")
    records = parse_lines(r.stderr)
    check_eq(records[-1]["level"], "ERROR", f"level of the error: {r.stderr}")
    check(records[-1]["message"].startswith("error: "), f"message: {r.stderr}")
    # Text stays as it was: one "portalbd: error: ..." line.
    r = run([portalbd_path(), "--config", cfg], check_exit=False)
    check_eq(r.returncode, 1, "exit status (text)")
    check(r.stderr.splitlines()[-1].startswith("portalbd: error: "), f"text error: {r.stderr}")


def case_bad_values(tmp):
    r = run([portalbd_path(), "--log-format", "xml"], check_exit=False)
    check_eq(r.returncode, 1, "--log-format xml")
    cfg = os.path.join(tmp, "p.toml")
    with open(cfg, "w") as f:
        f.write('[log]\nformat = "xml"\n')
    r = run([portalbd_path(), "--config", cfg], check_exit=False)
    check_eq(r.returncode, 1, "[log] format = xml")
    check('log.format must be "text" or "json", got "xml"' in r.stderr, r.stderr)


run_cases(globals())
