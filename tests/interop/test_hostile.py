"""portalbd against hostile and slow NBD clients: none may hold connection slots or
memory forever ([nbd] handshake_timeout_ms, request_timeout_ms, idle_timeout_ms).

- trickle: 64 clients (max_connections) finish the handshake, announce a 4 KiB WRITE and
  send its payload one byte a second. While they hold every slot nbdinfo is turned away;
  once request_timeout_ms has passed they are cut off, and nbdinfo gets in and reads.
- handshake: 64 clients that connect and never finish negotiating, the same way.
- slow_reader: a client that asks for 128 MiB of READs and never reads the replies is cut
  off (its reply buffers freed) after request_timeout_ms.
- idle: with idle_timeout_ms a silent attached client is closed; without it, kept.

HOSTILE_DEFAULTS=1 runs trickle and handshake with no timeout keys in the file (the
defaults, 30 s and 10 s), waiting up to 45 s: the form to run against a build without
these keys, where the slots are never freed.
"""

import os
import socket
import struct
import threading
import time

import nbdwire as w
from harness import Daemon, check, import_nbd, run, run_cases

SLOTS = 64
DEFAULTS = os.environ.get("HOSTILE_DEFAULTS") == "1"


def config(request_ms=3000, handshake_ms=2000, extra=""):
    lines = ["[nbd]", f"max_connections = {SLOTS}"]
    if not DEFAULTS:
        lines += [f"request_timeout_ms = {request_ms}", f"handshake_timeout_ms = {handshake_ms}"]
    return "\n".join(lines) + "\n" + extra


def attach(d):
    c = w.Conn(d.connect())
    c.start()
    replies = c.go()
    check(replies[-1][0] == w.REP_ACK, f"GO failed: {replies}")
    return c


def nbdinfo_gets_in(d):
    r = run(["nbdinfo", d.uri()], timeout=30, check_exit=False)
    return r.returncode == 0


def wait_for_nbdinfo(d, limit_s):
    """Seconds until nbdinfo succeeds, or None within limit_s."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit_s:
        if nbdinfo_gets_in(d):
            return time.monotonic() - t0
        time.sleep(0.5)
    return None


def read_some(d):
    nbd = import_nbd()
    h = nbd.NBD()
    h.connect_uri(d.uri())
    data = h.pread(4096, 0)
    h.shutdown()
    return data


def check_full(d):
    """Every slot is held: a new client is turned away."""
    check(not nbdinfo_gets_in(d), "nbdinfo got in although every slot should be held")
    check("limit reached" in d.log(), "no 'limit reached' in the log:\n" + d.log()[-2000:])


class Trickler:
    """Sends one byte a second on every connection until stopped or closed."""

    def __init__(self, conns):
        self.conns = list(conns)
        self.closed = set()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop.wait(1.0):
            for i, c in enumerate(self.conns):
                if i in self.closed:
                    continue
                try:
                    c.s.send(b"x")
                except OSError:
                    self.closed.add(i)


def case_trickle(tmp):
    with Daemon(tmp, config=config()) as d:
        conns = []
        for i in range(SLOTS):
            c = attach(d)
            # A WRITE of 4 KiB announced with its first payload byte; the rest trickles.
            c.request(w.CMD_WRITE, offset=i * 4096, length=4096, cookie=i + 1, payload=b"x")
            conns.append(c)
        t0 = time.monotonic()
        trickler = Trickler(conns)
        try:
            check_full(d)
            waited = wait_for_nbdinfo(d, 45 if DEFAULTS else 20)
            print(f"  nbdinfo got in {waited if waited is None else round(waited, 1)} s after "
                  f"the {SLOTS} trickling writers took every slot "
                  f"({time.monotonic() - t0:.1f} s since their headers)", flush=True)
            check(waited is not None, "the trickling writers still hold every slot")
            data = read_some(d)
            check(data == bytes(4096), "a trickled WRITE reached the device")
            check("waited_for=request" in d.log(), "no 'client too slow' line:\n" + d.log()[-2000:])
            for c in conns:  # each was cut off: EOF (or reset) once its bytes are drained
                c.s.settimeout(5)
                try:
                    while c.s.recv(4096):
                        pass
                except ConnectionResetError:
                    pass
        finally:
            trickler.stop.set()
            for c in conns:
                c.close()


def case_handshake(tmp):
    with Daemon(tmp, config=config()) as d:
        socks = []
        for i in range(SLOTS):
            s = d.connect()
            if i % 2:  # half send part of the handshake: the client flags, then nothing
                s.recv(18)
                s.sendall(struct.pack(">I", w.FLAG_C_FIXED_NEWSTYLE))
            socks.append(s)
        try:
            check_full(d)
            waited = wait_for_nbdinfo(d, 30 if DEFAULTS else 10)
            print(f"  nbdinfo got in {waited if waited is None else round(waited, 1)} s after "
                  f"{SLOTS} stalled handshakes took every slot", flush=True)
            check(waited is not None, "the stalled handshakes still hold every slot")
            check(read_some(d) == bytes(4096), "read after the stalled handshakes")
        finally:
            for s in socks:
                s.close()


def case_slow_reader(tmp):
    with Daemon(tmp, config=config()) as d:
        conns = []
        for half_close in (False, True):  # the second also half-closes: owed replies only
            c = attach(d)
            c.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            for i in range(4):  # 4 x 32 MiB: far more than the socket buffers take
                c.request(w.CMD_READ, offset=i * (32 << 20), length=32 << 20, cookie=i + 1)
            if half_close:
                c.s.shutdown(socket.SHUT_WR)
            conns.append(c)
        t0 = time.monotonic()
        while d.log().count("waited_for=reply") < 2 and time.monotonic() - t0 < 20:
            time.sleep(0.2)
        print(f"  slow readers cut off after {time.monotonic() - t0:.1f} s", flush=True)
        check(d.log().count("waited_for=reply") == 2,
              "slow readers not cut off:\n" + d.log()[-2000:])
        for c in conns:
            c.close()
        check(read_some(d) == bytes(4096), "read after the slow readers")


def case_idle(tmp):
    with Daemon(tmp, config=config(extra="idle_timeout_ms = 1000\n")) as d:
        c = attach(d)
        t0 = time.monotonic()
        check(c.expect_closed(timeout=10), "idle connection kept")
        print(f"  idle client closed after {time.monotonic() - t0:.1f} s", flush=True)
        check("waited_for=idle" in d.log(), "no idle line:\n" + d.log()[-2000:])
    with Daemon(tmp, config=config()) as d:  # the default: idle clients stay
        c = attach(d)
        time.sleep(4)
        err, _ = c.cmd(w.CMD_READ, offset=0, length=4096)
        check(err == 0, f"READ on a connection idle for 4 s failed: {err}")
        c.close()


if __name__ == "__main__":
    run_cases(globals(), tools=["nbdinfo"])
