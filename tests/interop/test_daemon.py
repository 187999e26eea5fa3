#!/usr/bin/python3
"""The portalbd daemon as an operator meets it: command line, configuration file,
listening addresses, logs, limits and shutdown."""

import datetime
import json
import os
import re
import signal
import socket
import struct
import time

import nbdwire as w
from harness import Daemon, check, check_eq, free_port, portalbd_path, run, run_cases, skip

GIB, MIB, BS = 1 << 30, 1 << 20, 4096


def nbdinfo(uri):
    return json.loads(run(["nbdinfo", "--json", uri]).stdout)["exports"][0]


def go(d, structured=False):
    c = w.Conn(d.connect())
    c.start()
    if structured:
        c.structured_reply()
    check_eq(c.go()[-1][0], w.REP_ACK, "GO")
    c.structured = structured
    return c


def works(c, what):
    check_eq(c.cmd(w.CMD_READ, 0, 512, cookie=77), (0, bytes(512)), f"READ {what}")


def start_fails(tmp, config=None, args=(), must_name=(), address="127.0.0.1:0", socket=True):
    """portalbd must exit non-zero, quickly, without listening, and say why. (Flags
    override the file, so a bad file value is only tested without its flag.)"""
    argv = [portalbd_path()] + (["--socket", f"{tmp}/ctl.sock"] if socket else [])
    if config is not None:
        path = f"{tmp}/bad.toml"
        with open(path, "w") as f:
            f.write(config)
        argv += ["--config", path]
    if address:
        argv += ["--address", address]
    t0 = time.monotonic()
    r = run(argv + list(args), timeout=10, check_exit=False)
    elapsed = time.monotonic() - t0
    check(r.returncode != 0, f"portalbd started with a bad configuration:\n{r}")
    check_eq(r.returncode, 1, f"exit status (a crash or CLI11's own codes are not a clean "
                              f"failure):\n{r}")
    check(elapsed < 2, f"portalbd took {elapsed:.1f} s to give up:\n{r}")
    text = r.stdout + r.stderr
    check("NBD server listening" not in text, f"portalbd listened before failing:\n{r}")
    for name in must_name:
        check(name in text, f"the error does not name {name!r}:\n{r}")
    return text


# --- Command line --------------------------------------------------------------------------


def case_version(tmp):
    for flag in ("--version", "-V"):
        r = run([portalbd_path(), flag], timeout=10)
        check(re.fullmatch(r"portalbd \d+\.\d+\.\d+\n", r.stdout), f"{flag}: {r.stdout!r}")


def case_help(tmp):
    r = run([portalbd_path(), "--help"], timeout=10)
    for opt in ("--config", "--disk-size-gb", "--address", "--storage", "--socket",
                "--log-level", "--version", "--help"):
        check(opt in r.stdout, f"--help does not mention {opt}:\n{r.stdout}")
    check("GiB" in r.stdout, "--help does not say --disk-size-gb is in GiB")
    start_fails(tmp, args=["--nosuch-flag"], must_name=["--nosuch-flag"])
    start_fails(tmp, args=["--disk-size-gb", "lots"], must_name=["disk-size-gb"])
    start_fails(tmp, args=["--disk-size-gb", "0"], must_name=["disk_size_gb"])
    start_fails(tmp, args=["--log-level", "loud"], must_name=["log-level"])
    start_fails(tmp, args=["--storage", "ftp://x"], must_name=["storage.url"])
    start_fails(tmp, args=["--config", f"{tmp}/missing.toml"], must_name=["missing.toml"])


def case_empty_flags(tmp):
    """An empty value (`--storage "$URL"` with $URL unset) is refused like in the file; it
    used to mean "not given": memory://, FLUSHes acknowledged and lost at exit."""
    for opt in ("--config", "--disk-size-gb", "--address", "--storage", "--socket", "--record",
                "--record-workload", "--log-level"):
        # (CLI11 says "1 required TEXT missing" for "--opt=", and "not in {...}" for a
        # --log-level of "".)
        for args in ([opt, ""], [f"{opt}="]):
            why = "must not be empty" if args[-1] == "" and opt != "--log-level" else ""
            start_fails(tmp, args=args, must_name=[opt, why], socket=opt != "--socket",
                        address=None if opt == "--address" else "127.0.0.1:0")


def case_explicit_port(tmp):
    port = free_port()
    with Daemon(tmp, address=f"127.0.0.1:{port}") as d:
        check_eq(d.port, port, "listening port")
        check_eq(nbdinfo(d.uri())["export-size"], GIB, "default size is 1 GiB")
    # Another daemon on a port in use fails and names the address.
    with Daemon(tmp) as d:
        start_fails(tmp, address=d.address, must_name=[d.address])
        check_eq(nbdinfo(d.uri())["export-size"], GIB, "first daemon still serves")


# --- Configuration file ---------------------------------------------------------------------


def case_config_socket_keys(tmp):
    for key_line, table in ((f'socket = "{tmp}/top.sock"\n', ""),
                            ("", f'[nbd]\nsocket = "{tmp}/nbd.sock"\n')):
        cfg = key_line + "[device]\ndisk_size_gb = 2\n" + table
        expected = f"{tmp}/top.sock" if key_line else f"{tmp}/nbd.sock"
        # No --socket flag here, so the file decides.
        d = Daemon(tmp, config=cfg, start=False)
        d.argv = [a for i, a in enumerate(d.argv)
                  if a != "--socket" and (i == 0 or d.argv[i - 1] != "--socket")]
        d.start()
        with d:
            check(f"socket={expected}" in d.log(), f"socket not taken from the file:\n{d.log()}")
            check_eq(nbdinfo(d.uri())["export-size"], 2 * GIB, "size from the file")
    start_fails(tmp, config=f'socket = "{tmp}/a"\n[nbd]\nsocket = "{tmp}/b"\n',
                must_name=["socket"])
    start_fails(tmp, config='[nbd]\nsocket = "relative/path"\n', must_name=["nbd.socket"],
                socket=False)


def case_config_block_size(tmp):
    """[device] block_size is what NBD_INFO_BLOCK_SIZE advertises as preferred."""
    for bs in (512, 65536):
        with Daemon(tmp, config=f"[device]\nblock_size = {bs}\n") as d:
            e = nbdinfo(d.uri())
            check_eq(e["block_size_preferred"], bs, "preferred block size")
            check_eq((e["block_size_minimum"], e["block_size_maximum"]), (1, 32 * MIB),
                     "minimum and maximum block size")


def case_config_ignored_key(tmp):
    cfg = "[lsm]\nl0_max_ssts = 8\nfilter_bits_per_key = 10\nflush_interval_ms = 500\n"
    with Daemon(tmp, config=cfg) as d:
        log = d.log()
        for key in ("lsm.l0_max_ssts", "lsm.filter_bits_per_key"):
            lines = [ln for ln in log.splitlines() if key in ln]
            check(lines and " WARN " in lines[0], f"no warning naming {key}:\n{log}")
        check("flush_interval_ms" not in log, "a known key was warned about")
        check_eq(nbdinfo(d.uri())["export-size"], GIB, "serves after warnings")


def case_config_errors(tmp):
    bad = [
        ("[nbd]\nadress = \"127.0.0.1:1\"\n", ["nbd.adress"]),
        ("frobnicate = 1\n", ["frobnicate"]),
        ("[bogus]\nx = 1\n", ["bogus"]),
        ("[device]\ndisk_size_gb = \"lots\"\n", ["device.disk_size_gb"]),
        ("[device]\ndisk_size_gb = -1\n", ["device.disk_size_gb"]),
        ("[device]\ndisk_size_gb = 0\n", ["device.disk_size_gb"]),
        ("[device]\nblock_size = 1000\n", ["device.block_size"]),
        ("[nbd]\nmax_connections = 0\n", ["nbd.max_connections"]),
        ("[nbd]\naddress = \"nonsense\"\n", ["nbd.address"]),
        ("[nbd]\naddress = 10809\n", ["nbd.address"]),
        ("[storage]\nurl = \"ftp://x\"\n", ["storage.url"]),
        ("[storage]\nunsafe_no_fencing = \"yes\"\n", ["storage.unsafe_no_fencing"]),
        ("[lsm]\ngc_live_ratio = 2.0\n", ["lsm.gc_live_ratio"]),
        ("[lsm]\nl0_sst_size_bytes = \"64XB\"\n", ["lsm.l0_sst_size_bytes"]),
        # Size strings are for byte counts only: "1GiB" of GiB would be 1 EiB.
        ("[device]\ndisk_size_gb = \"1GiB\"\n", ["device.disk_size_gb"]),
        ("[device]\ndisk_size_gb = \"2\"\n", ["device.disk_size_gb"]),
        ("[nbd]\nmax_connections = \"1K\"\n", ["nbd.max_connections"]),
        ("[lsm]\nflush_interval_ms = \"1M\"\n", ["lsm.flush_interval_ms"]),
        # Every number has an upper bound, named with the key (a huge interval overflowed
        # the timer's nanoseconds, which then fired at once: an idle daemon spun a core).
        ("[lsm]\ngc_interval_ms = 10000000000000\n",
         ["lsm.gc_interval_ms must be at most 86400000 (1 day), got 10000000000000"]),
        ("[lsm]\nflush_interval_ms = 9223372036854775807\n",
         ["lsm.flush_interval_ms must be at most 86400000 (1 day)"]),
        ("[lsm]\ngc_grace_ms = 604800001\n", ["lsm.gc_grace_ms must be at most 604800000"]),
        ("[lsm]\nl0_sst_size_bytes = \"2GiB\"\nmax_unflushed_bytes = \"4GiB\"\n",
         ["lsm.l0_sst_size_bytes must be at most 1073741824 (1 GiB)"]),
        ("[lsm]\nmax_unflushed_bytes = \"65GiB\"\n", ["lsm.max_unflushed_bytes must be at most"]),
        ("[lsm]\nblock_cache_size_bytes = \"2TiB\"\n",
         ["lsm.block_cache_size_bytes must be at most"]),
        ("[nbd]\nmax_connections = 65537\n", ["nbd.max_connections must be at most 65536"]),
        ("[device]\nblock_size = 4294967296\n", ["device.block_size must be at most 65536"]),
        ("[device]\ndisk_size_gb = 8589934592\n", ["device.disk_size_gb must be at most"]),
        # An empty string is never "unset" (socket = "" kept the default socket).
        ("[nbd]\nsocket = \"\"\n", ["nbd.socket must not be empty"]),
        ("[storage]\nurl = \"\"\n", ["storage.url must not be empty"]),
        ("device = 3\n", ["device"]),
        ("[device\ndisk_size_gb = 1\n", ["bad.toml:1"]),  # TOML syntax: file and line
    ]
    for cfg, names in bad:
        address = None if "address" in cfg else "127.0.0.1:0"
        start_fails(tmp, config=cfg, must_name=names, address=address)


def case_config_hostile_files(tmp):
    """Files that once crashed toml++ (stack overflow: SIGSEGV, exit 139) or would be read
    without end: each fails with a message naming the line or the bound."""
    key = ".".join(["a"] * 50000)  # 100 KB
    for cfg in (f"# line 1\n{key} = 1\n", f"# line 1\n[{key}]\n"):
        start_fails(tmp, config=cfg, must_name=["bad.toml:2", "dotted parts", "at most 16"])
    for cfg in ("x = " + "[" * 100000 + "]" * 100000 + "\n",
                "x = " + "{a=" * 100000 + "1" + "}" * 100000 + "\n"):
        start_fails(tmp, config=cfg, must_name=["bad.toml:1", "nested", "at most 16"])
    start_fails(tmp, config="#" * (2 << 20) + "\n", must_name=["bad.toml", "1 MiB"])
    start_fails(tmp, args=["--config", "/dev/zero"], must_name=["/dev/zero", "1 MiB"])


def case_config_flags_override(tmp):
    file_port = free_port()
    cfg = f'[device]\ndisk_size_gb = 3\n[nbd]\naddress = "127.0.0.1:{file_port}"\n'
    # The file alone: 3 GiB (GiB = 2^30 bytes) on the file's address.
    with Daemon(tmp, config=cfg, address=None) as d:
        check_eq(d.port, file_port, "address from the file")
        check_eq(nbdinfo(d.uri())["export-size"], 3 * GIB, "disk_size_gb from the file")
    # Flags win over the file.
    with Daemon(tmp, config=cfg, address="127.0.0.1:0", disk_size_gb=5) as d:
        check(d.port != file_port, "--address did not override the file")
        check_eq(nbdinfo(d.uri())["export-size"], 5 * GIB, "--disk-size-gb over the file")
    # Sizes as strings are accepted where bytes are meant.
    with Daemon(tmp, config='[device]\nblock_size = "4KiB"\n[lsm]\nl0_sst_size_bytes = "32MiB"\n'
                            'max_unflushed_bytes = "64MiB"\nblock_cache_size_bytes = "1GiB"\n') as d:
        check_eq(nbdinfo(d.uri())["export-size"], GIB, "size-string config")


# --- Unix sockets ---------------------------------------------------------------------------


def case_unix_address(tmp):
    path = f"{tmp}/nbd.sock"
    cfg = f'[nbd]\naddress = "unix:{path}"\n[device]\ndisk_size_gb = 2\n'
    with Daemon(tmp, config=cfg, address=None) as d:
        check_eq(d.address, f"unix:{path}", "listening address")
        e = nbdinfo(f"nbd+unix:///portalbd?socket={path}")
        check_eq(e["export-size"], 2 * GIB, "size over the unix socket")
        with go(d) as c:
            works(c, "over the unix socket")
    check(not os.path.exists(path), "socket file left after a clean stop")


def case_unix_stale_socket(tmp):
    path = f"{tmp}/nbd.sock"
    d = Daemon(tmp, address=f"unix:{path}")
    d.kill9()
    check(os.path.exists(path), "kill -9 should leave the socket file behind")
    with Daemon(tmp, address=f"unix:{path}") as d2:
        check("removed stale socket" in d2.log(), f"no note about the stale socket:\n{d2.log()}")
        check_eq(nbdinfo(d2.uri())["export-size"], GIB, "serves after replacing a stale socket")


def case_unix_live_socket(tmp):
    path = f"{tmp}/nbd.sock"
    with Daemon(tmp, address=f"unix:{path}") as d:
        text = start_fails(tmp, address=f"unix:{path}", must_name=[path])
        check("another server is listening" in text, f"no clear reason:\n{text}")
        check(os.path.exists(path), "the failed daemon removed the live socket")
        check_eq(nbdinfo(d.uri())["export-size"], GIB, "the first daemon still serves")
    # A path that is not a socket is never replaced.
    path = f"{tmp}/regular"
    with open(path, "w") as f:
        f.write("precious")
    start_fails(tmp, address=f"unix:{path}", must_name=[path])
    check_eq(open(path).read(), "precious", "a regular file was touched")


# --- Size and memory ---------------------------------------------------------------------------


def case_exabyte_device(tmp):
    eib_in_gib = 1 << 30  # 1 EiB = 2^30 GiB
    d = Daemon(tmp, disk_size_gb=eib_in_gib)
    with d:
        check(d.started_s < 2.0, f"1 EiB device took {d.started_s:.2f} s to start")
        e = nbdinfo(d.uri())
        check_eq(e["export-size"], 1 << 60, "size of a 1 EiB device")
        with go(d, structured=True) as c:
            last = (1 << 60) - BS
            check_eq(c.cmd(w.CMD_WRITE, last, BS, payload=b"\x42" * BS)[0], 0, "WRITE at 1 EiB")
            check_eq(c.cmd(w.CMD_READ, last, BS), (0, b"\x42" * BS), "READ at 1 EiB")
            check_eq(c.cmd(w.CMD_TRIM, 0, 0xFFFFF000)[0], 0, "TRIM at 0")
            check_eq(c.cmd(w.CMD_READ, 1 << 59, MIB), (0, bytes(MIB)), "READ mid-device")
        rss = d.vm_rss_kib()
        check(rss < 256 * 1024, f"resident memory {rss} KiB >= 256 MiB")
        print(f"1 EiB: started in {d.started_s:.3f} s, VmRSS {rss} KiB")
    start_fails(tmp, args=["--disk-size-gb", str(1 << 33)], must_name=["disk_size_gb"])


def case_max_device(tmp):
    """The largest device, 8 EiB - 1 GiB: offsets near 2^63 work, one past the end fails."""
    gb = (1 << 33) - 1
    size = gb << 30
    with Daemon(tmp, disk_size_gb=gb) as d:
        check_eq(nbdinfo(d.uri())["export-size"], size, "size of the largest device")
        with go(d) as c:
            check_eq(c.cmd(w.CMD_WRITE, size - 3, 3, payload=b"end")[0], 0, "WRITE at the end")
            check_eq(c.cmd(w.CMD_READ, size - 3, 3), (0, b"end"), "READ at the end")
            check_eq(c.cmd(w.CMD_READ, size - 3, 4)[0], w.EINVAL, "READ past the end")
            check_eq(c.cmd(w.CMD_WRITE, size, 1, payload=b"x")[0], w.ENOSPC, "WRITE past")
            check_eq(c.cmd(w.CMD_TRIM, (1 << 64) - 1, 2)[0], w.EINVAL, "TRIM wrapping 2^64")


def case_ipv6(tmp):
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError as e:
        skip(f"no IPv6 loopback: {e}")
    with Daemon(tmp, address="[::1]:0") as d:
        check(d.address.startswith("[::1]:"), f"bound address {d.address}")
        check_eq(nbdinfo(f"nbd://{d.address}/portalbd")["export-size"], GIB, "over IPv6")


# --- Logs ---------------------------------------------------------------------------------------

LINE_RE = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6})Z (TRACE|DEBUG| INFO| WARN|ERROR)"
                     r" [a-z_:]+: \S.*$")


def case_log_format(tmp):
    d = Daemon(tmp)
    with d:
        log = d.log()
    lines = d.log().splitlines()
    check(lines, "empty log")
    for ln in lines:
        m = LINE_RE.match(ln)
        check(m, f"log line not in the expected format: {ln!r}")
        ts = datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%f")
        now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
        check(abs((now - ts).total_seconds()) < 120, f"timestamp is not UTC now: {ln!r}")
    listening = [ln for ln in lines if "NBD server listening" in ln]
    check_eq(len(listening), 1, "listening lines")
    check(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z  INFO portalbd: NBD server "
                       rf"listening address=127\.0\.0\.1:{d.port}", listening[0]),
          f"listening line: {listening[0]!r}")
    check(any("INFO portalbd: Received SIGTERM" in ln for ln in lines), "no SIGTERM line")
    check(lines[-1].endswith("portalbd stopped"), f"last line: {lines[-1]!r}")
    check("SIGTERM" not in log, "log mentions SIGTERM before it was sent")


def case_sigint(tmp):
    d = Daemon(tmp)
    c = go(d)
    d.proc.send_signal(signal.SIGINT)
    check_eq(d.wait(10), 0, "exit status after SIGINT")
    d.stop()
    check("Received SIGINT" in d.log(), f"no SIGINT line:\n{d.log()}")
    c.expect_closed()
    c.close()


# --- Limits and shutdown --------------------------------------------------------------------------


def case_max_connections(tmp):
    with Daemon(tmp, config="[nbd]\nmax_connections = 2\n") as d:
        a, b = go(d), go(d)
        for _ in range(3):  # past the bound: closed without a greeting
            with w.Conn(d.connect()) as c:
                c.expect_closed()
        works(a, "on connection 1 at the bound")
        works(b, "on connection 2 at the bound")
        check("limit reached" in d.log() and "max_connections=2" in d.log(),
              f"refusal not logged:\n{d.log()}")
        # nbdinfo is refused too, with an error.
        r = run(["nbdinfo", "--json", d.uri()], check_exit=False)
        check(r.returncode != 0, f"nbdinfo past the bound succeeded:\n{r}")
        # A slot frees when a client leaves.
        a.request(w.CMD_DISC)
        a.expect_closed()
        a.close()
        deadline = time.monotonic() + 5
        while True:
            c = w.Conn(d.connect())
            try:
                c.start()
                check_eq(c.go()[-1][0], w.REP_ACK, "GO")
                break
            except (w.Closed, ConnectionError):
                c.close()
                check(time.monotonic() < deadline, "no slot after a client left")
                time.sleep(0.05)
        works(c, "in the freed slot")
        works(b, "on connection 2 afterwards")
        c.close()
        b.close()


def case_sigterm_idle_clients(tmp):
    """SIGTERM with idle clients attached and one mid-handshake: a prompt, clean exit."""
    d = Daemon(tmp)
    idle = [go(d) for _ in range(3)]
    half = w.Conn(d.connect())
    half.greeting()
    t0 = time.monotonic()
    d.stop(timeout=10)
    check(time.monotonic() - t0 < 3, f"exit took {time.monotonic() - t0:.1f} s")
    for c in idle + [half]:
        c.expect_closed()
        c.close()


def sigterm_inflight(tmp, structured):
    d = Daemon(tmp, disk_size_gb=1)
    try:
        c = go(d, structured=structured)
        pattern = bytes(range(256)) * (4 * MIB // 256)
        check_eq(c.cmd(w.CMD_WRITE, 0, len(pattern), payload=pattern)[0], 0, "WRITE")
        n = 64
        # 64 reads of 4 MiB (256 MiB, twice the server's in-flight byte bound), sent at
        # once and not read: replies back up, so requests are in flight at SIGTERM.
        c.send(b"".join(struct.pack(">IHHQQI", w.REQUEST_MAGIC, 0, w.CMD_READ, i, 0,
                                    len(pattern)) for i in range(1, n + 1)))
        c.wait_readable()  # the server is serving the burst (and has read it)
        time.sleep(0.3)
        d.proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        check(d.running(), "portalbd exited with replies still unsent")
        served = shut = 0
        seen = set()
        c.s.settimeout(20)
        for _ in range(n):
            try:
                kind, err, cookie, body = c.read_reply(read_length=len(pattern))
            except w.Closed as e:
                raise AssertionError(f"connection closed after {len(seen)} of {n} replies "
                                     f"(served {served}, ESHUTDOWN {shut}): {e}") from e
            check(cookie not in seen and 1 <= cookie <= n, f"unexpected cookie {cookie}")
            seen.add(cookie)
            if err == 0:
                data = body if kind == "simple" else w.assemble(body, 0, len(pattern),
                                                                w.CMD_READ)
                check(data == pattern, f"READ {cookie} returned wrong data")
                served += 1
            else:
                check_eq(err, w.ESHUTDOWN, f"error for READ {cookie}")
                shut += 1
        print(f"SIGTERM with {n} READs outstanding (structured={structured}): {served} "
              f"served, {shut} ESHUTDOWN")
        check(served > 0, "no request in flight was served")
        c.expect_closed(timeout=10)
        status = d.wait(10)
        check_eq(status, 0, f"exit status after SIGTERM\n{d.log()[-2000:]}")
        d.stop()
    finally:
        if d.running():
            d.kill9()


def case_sigterm_inflight(tmp):
    """SIGTERM while a client has many requests in flight: every request the server
    received gets a reply (served, or NBD_ESHUTDOWN), then the connection closes and the
    daemon exits 0."""
    sigterm_inflight(tmp, structured=False)
    sigterm_inflight(tmp, structured=True)


def case_sigterm_new_requests(tmp):
    """Requests that arrive after SIGTERM, before the connection closes, are not left
    unanswered silently: each gets NBD_ESHUTDOWN or the connection closes."""
    d = Daemon(tmp, disk_size_gb=1)
    try:
        c = go(d, structured=True)
        # Keep the server busy: a reply it cannot send while we do not read.
        c.send(b"".join(struct.pack(">IHHQQI", w.REQUEST_MAGIC, 0, w.CMD_READ, i, 0, 32 * MIB)
                        for i in range(1, 9)))
        c.wait_readable()
        d.proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        try:
            c.send(struct.pack(">IHHQQI", w.REQUEST_MAGIC, 0, w.CMD_READ, 100, 0, BS))
        except OSError:
            pass
        got = {}
        c.s.settimeout(20)
        try:
            while True:
                kind, err, cookie, chunks = c.read_reply()
                got[cookie] = err
        except w.Closed:
            pass
        check(all(got.get(i) in (0, w.ESHUTDOWN) for i in range(1, 9)),
              f"replies to the 8 READs in flight: {got}")
        check(got.get(100) in (None, w.ESHUTDOWN), f"request after SIGTERM: {got.get(100)}")
        check_eq(d.wait(10), 0, "exit status")
        d.stop()
    finally:
        if d.running():
            d.kill9()


def case_sigterm_partial_write(tmp):
    """SIGTERM while a WRITE's payload is half sent: the WRITE is answered with
    NBD_ESHUTDOWN (never applied), then the connection closes; exit 0."""
    d = Daemon(tmp, disk_size_gb=1)
    try:
        c = go(d)
        c.send(struct.pack(">IHHQQI", w.REQUEST_MAGIC, 0, w.CMD_WRITE, 5, 0, MIB) +
               b"\x01" * (MIB // 2))
        time.sleep(0.5)  # the server reads it at once; nothing to observe until it replies
        d.proc.send_signal(signal.SIGTERM)
        c.s.settimeout(10)
        kind, err, cookie, _ = c.read_reply()
        check_eq((err, cookie), (w.ESHUTDOWN, 5), "reply to the half-sent WRITE")
        c.expect_closed()
        check_eq(d.wait(10), 0, "exit status")
        d.stop()
    finally:
        if d.running():
            d.kill9()


def case_slow_sigterm_stuck_client(tmp):
    """A client that never reads its replies cannot hold the daemon forever: SIGTERM gives
    up on it at the stop deadline ([storage] stop_timeout_ms, 20 s here) plus the 2 s the
    drain allows past it, says so, and exits 0: nothing written was left behind (label
    slow)."""
    d = Daemon(tmp, disk_size_gb=1, config="[storage]\nstop_timeout_ms = 20000\n")
    try:
        c = go(d)
        c.send(b"".join(struct.pack(">IHHQQI", w.REQUEST_MAGIC, 0, w.CMD_READ, i, 0, 4 * MIB)
                        for i in range(64)))
        c.wait_readable()
        t0 = time.monotonic()
        d.proc.send_signal(signal.SIGTERM)
        status = d.wait(60)
        took = time.monotonic() - t0
        check_eq(status, 0, f"exit status\n{d.log()[-2000:]}")
        check(19 < took < 30, f"exit took {took:.1f} s, expected the 20 s stop timeout")
        check("connections still open" in d.log(), f"no warning about the stuck client:\n"
                                                    f"{d.log()[-2000:]}")
        d.stop()
        c.close()
    finally:
        if d.running():
            d.kill9()


if __name__ == "__main__":
    run_cases(globals(), tools=["nbdinfo"])
