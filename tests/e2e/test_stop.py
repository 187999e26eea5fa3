"""End-to-end: stopping while the store keeps failing (issue 13, "fail loudly").

portalbd runs on file:// in a tiny tmpfs that the test fills up, so every segment upload
fails with ENOSPC (and is retried). Checked:

- a FLUSH waits while the store fails; `portalctl status` says since when and why, the
  log says so once (not once per retry), and both clear when space comes back (the
  waiting FLUSH then succeeds, and the log says how long the failure lasted);
- SIGTERM with [storage] stop_timeout_ms = 3000 ends the process within the timeout
  plus a few seconds, with exit status 1 and one line saying how many bytes were not
  made durable and why; a FLUSH that was waiting fails, never succeeds;
- a second SIGTERM exits at once (1, with that line);
- everything a FLUSH acknowledged is there after a restart.

The same stop on s3:// whose endpoint went away (`s3_*`: the signature-checking S3
server, killed after start; needs python3-botocore).

Needs root for mount -t tmpfs; where mounting is not permitted, the file cases skip (77).
"""

import json
import os
import re
import signal
import subprocess
import time

import e2e
from e2e import check, check_eq, clean_env, connect
import harness  # importable once e2e put tests/interop on the path
from harness import import_nbd, portalctl, run_cases, skip

STOP_LINE = re.compile(r"portalbd: stopped with (\d+) bytes not durable "
                       r"\(store failing since (\S+): ([^\n]*)")


class FullDisk:
    """A tmpfs of `size_mb` MiB at tmp/mnt, filled to the last byte on demand."""

    def __init__(self, tmp, size_mb=16):
        self.dir = os.path.join(tmp, "mnt")
        os.makedirs(self.dir)
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs",
                            self.dir], capture_output=True, text=True)
        if r.returncode != 0:
            skip(f"cannot mount a tmpfs (needs root): {r.stderr.strip()}")
        self.filler = os.path.join(self.dir, "filler")

    def fill(self):
        chunk = b"\xa5" * (64 << 10)
        with open(self.filler, "ab") as f:
            try:
                while True:
                    f.write(chunk)
                    f.flush()
            except OSError:
                pass
        # Smaller writes into what is left.
        with open(self.filler, "ab", buffering=0) as f:
            for size in (4096, 512, 1):
                try:
                    while True:
                        f.write(b"\xa5" * size)
                except OSError:
                    pass

    def free(self):
        os.unlink(self.filler)

    def unmount(self):
        subprocess.run(["umount", "-l", self.dir], capture_output=True)


def status(d):
    return json.loads(portalctl(d, "--json", "status").stdout)["status"]


def wait_for(what, pred, timeout_s, d=None):
    deadline = time.monotonic() + timeout_s
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}"
                                 + (f"\n{d.log()[-3000:]}" if d else ""))
        time.sleep(0.1)


def outcome(nbd, h, cookie, timeout_s):
    """'ok', 'error' or 'pending' for an aio command."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if h.aio_command_completed(cookie):
                return "ok"
        except nbd.Error:
            return "error"
        if time.monotonic() > deadline:
            return "pending"
        try:
            h.poll(100)
        except nbd.Error:
            pass  # the connection is gone: its commands complete as failed


def sigterm_gives_up(d, wait_s):
    """SIGTERM to a daemon with stop_timeout_ms = 3000 whose store fails: it exits 1
    within the timeout plus 5 s, with exactly one 'stopped with' line (returned parsed)."""
    t0 = time.monotonic()
    d.proc.send_signal(signal.SIGTERM)
    code = d.wait(wait_s)
    elapsed = time.monotonic() - t0
    check(code is not None, f"portalbd still running {elapsed:.1f} s after SIGTERM with "
          f"stop_timeout_ms = 3000:\n{d.log()[-3000:]}")
    check_eq(code, 1, f"exit status after giving up\n{d.log()[-3000:]}")
    check(elapsed < 3 + 5, f"stopped after {elapsed:.1f} s:\n{d.log()[-3000:]}")
    print(f"  exited 1 after {elapsed:.2f} s", flush=True)
    lines = STOP_LINE.findall(d.log())
    check_eq(len(lines), 1, f"one 'stopped with' line:\n{d.log()[-3000:]}")
    return lines


def start(tmp, disk, stop_timeout_ms, url=None, env=None):
    """portalbd on file:// in the tmpfs (or on `url`), its SQLite cache outside it;
    segments are uploaded 200 ms after a write, FLUSH or not."""
    url = url or "file://" + os.path.join(disk.dir, "store")
    config = (f'[storage]\nurl = "{url}"\ncache_dir = "{os.path.join(tmp, "cache")}"\n'
              f"stop_timeout_ms = {stop_timeout_ms}\n[lsm]\nflush_interval_ms = 200\n")
    return harness.Daemon(tmp, config=config, env=env or clean_env(), ready_timeout=30)


def fail_the_store(h, d, outage, data, offset):
    """Starts the outage (fills the disk, or stops the S3 server), writes `data` without
    FLUSH and waits until status says the store fails. Returns the status."""
    outage.fill()
    h.pwrite(data, offset)

    def failing():
        s = status(d)
        return s if s["store_failing_since"] else None

    return wait_for("status to report the store failing", failing, 20, d)


def case_file_full_stop_timeout(tmp):
    """The issue's scenario: full disk, SIGTERM, exit 1 within stop_timeout + a few s."""
    nbd = import_nbd()
    disk = FullDisk(tmp)
    try:
        d = start(tmp, disk, 3000)
        h = connect(d)
        flushed = os.urandom(256 << 10)
        h.pwrite(flushed, 0)
        h.flush()

        # A failure: status and log say since when and why; a FLUSH waits.
        s = fail_the_store(h, d, disk, os.urandom(1 << 20), 1 << 20)
        check(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", s["store_failing_since"]),
              f"store_failing_since: {s}")
        check("No space left on device" in s["store_error"], f"store_error: {s}")
        check(s["store_failed_attempts"] >= 1, f"store_failed_attempts: {s}")
        text = portalctl(d, "status").stdout
        check("Store:      FAILING since " + s["store_failing_since"] in text, text)
        waiting = h.aio_flush()
        check_eq(outcome(nbd, h, waiting, 3), "pending", "a FLUSH while the store fails")
        wait_for("retries", lambda: status(d)["store_failed_attempts"] >= 5, 20, d)
        log = d.log()
        check_eq(log.count("store failing: segment upload failed"), 1,
                 f"one log line when the failure starts, not one per retry:\n{log[-3000:]}")

        # Recovery: space comes back; the FLUSH succeeds; status clears; the log says so.
        disk.free()
        check_eq(outcome(nbd, h, waiting, 30), "ok", "the waiting FLUSH after recovery")
        s = status(d)
        check_eq((s["store_failing_since"], s["store_error"], s["store_failed_attempts"]),
                 ("", "", 0), "status after recovery")
        check("store recovered: segment upload succeeds again after failing for " in d.log(),
              d.log()[-3000:])
        check("Store:      ok" in portalctl(d, "status").stdout, "text status after recovery")
        recovered = h.pread(1 << 20, 1 << 20)

        # Fail again, then stop: it must end, say what it leaves, and fail the FLUSH.
        unflushed = os.urandom(2 << 20)
        fail_the_store(h, d, disk, unflushed, 4 << 20)
        waiting = h.aio_flush()
        check_eq(outcome(nbd, h, waiting, 1), "pending", "a FLUSH while the store fails")
        lines = sigterm_gives_up(d, wait_s=3 + 7)
        left = int(lines[0][0])
        check(left >= len(unflushed), f"{left} bytes reported, {len(unflushed)} unflushed")
        check("No space left on device" in lines[0][2], lines[0][2])
        check_eq(outcome(nbd, h, waiting, 5), "error", "the waiting FLUSH at the stop")
        h = None

        # What FLUSHes acknowledged survived; the volume opens and stops cleanly.
        disk.free()
        d2 = start(tmp, disk, 3000)
        h2 = connect(d2)
        check_eq(h2.pread(len(flushed), 0), flushed, "data flushed before the failure")
        check_eq(h2.pread(1 << 20, 1 << 20), recovered, "data flushed at recovery")
        h2.shutdown()
        d2.stop(expect_status=0)
    finally:
        disk.unmount()


class DeadS3:
    """The signature-checking S3 server (If-None-Match honoured), stopped on fill():
    from then on every request is refused (connection refused)."""

    def __init__(self, tmp):
        self.server = e2e.SigV4Server(tmp)

    def fill(self):
        self.server.proc.kill()
        self.server.proc.wait()


def case_s3_down_stop_timeout(tmp):
    """An S3 endpoint that went away: SIGTERM still ends within stop_timeout + a few s."""
    nbd = import_nbd()
    s3 = DeadS3(tmp)
    d = start(tmp, None, 3000, url="s3://vol/e2e", env=s3.server.env())
    h = connect(d)
    h.pwrite(os.urandom(256 << 10), 0)
    h.flush()
    unflushed = os.urandom(1 << 20)
    s = fail_the_store(h, d, s3, unflushed, 1 << 20)
    check("onnect" in s["store_error"], f"store_error: {s}")  # "Couldn't connect", refused
    waiting = h.aio_flush()
    check_eq(outcome(nbd, h, waiting, 1), "pending", "a FLUSH while the store fails")
    lines = sigterm_gives_up(d, wait_s=3 + 12)
    check(int(lines[0][0]) >= len(unflushed), f"{lines[0][0]} bytes reported")
    check_eq(outcome(nbd, h, waiting, 5), "error", "the waiting FLUSH at the stop")


def case_file_full_second_sigterm(tmp):
    """With a long stop_timeout, a second SIGTERM exits at once, with the line."""
    import_nbd()  # or skip
    disk = FullDisk(tmp)
    try:
        d = start(tmp, disk, 60000)
        h = connect(d)
        fail_the_store(h, d, disk, os.urandom(512 << 10), 0)
        d.proc.send_signal(signal.SIGTERM)
        time.sleep(1.5)
        check(d.running(), f"still stopping (stop_timeout 60 s):\n{d.log()[-2000:]}")
        t0 = time.monotonic()
        d.proc.send_signal(signal.SIGTERM)
        code = d.wait(5)
        elapsed = time.monotonic() - t0
        check_eq(code, 1, f"exit status at a second SIGTERM\n{d.log()[-3000:]}")
        check(elapsed < 2, f"exited {elapsed:.1f} s after the second SIGTERM")
        log = d.log()
        lines = [x for x in log.splitlines() if x.startswith("portalbd: stopped with ")]
        check_eq(len(lines), 1, f"one 'stopped with' line:\n{log[-3000:]}")
        check(STOP_LINE.match(lines[0]) and lines[0].endswith(", at a second SIGTERM"),
              lines[0])
        check(int(STOP_LINE.match(lines[0]).group(1)) >= 512 << 10, lines[0])
    finally:
        disk.unmount()


if __name__ == "__main__":
    run_cases(globals())
