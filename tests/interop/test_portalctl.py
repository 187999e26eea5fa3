#!/usr/bin/python3
"""portalctl and the control socket as a user meets them: every command's output, --json,
each error with its message and exit status, the socket file's life (mode, directory,
stale file, live daemon), and the wire protocol's handling of bad input (docs/control.md).
"""

import json
import os
import re
import signal
import socket
import stat
import time

from harness import (Daemon, check, check_eq, import_nbd, portalctl, portalctl_path, run,
                     run_cases)

GIB = 1 << 30
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
TIME = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z"


def fails(d, args, message, json_code=None):
    """portalctl must exit 1 with exactly `Error: message` on stderr and nothing on stdout
    (with --json: the error object on stdout)."""
    r = portalctl(d, *args, check_exit=False)
    what = f"portalctl {' '.join(args)}"
    check_eq(r.returncode, 1, f"exit status of {what}")
    check_eq(r.stderr, f"Error: {message}\n", f"stderr of {what}")
    check_eq(r.stdout, "", f"stdout of {what}")
    if json_code:
        r = portalctl(d, "--json", *args, check_exit=False)
        check_eq(r.returncode, 1, f"exit status of {what} --json")
        check_eq(json.loads(r.stdout), {"ok": False, "error": {"code": json_code,
                                                               "message": message}},
                 f"stdout of {what} --json")


def raw(d, timeout=10):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(d.ctl)
    return s


def replies(s, n):
    """The next n reply lines from a raw control connection, parsed."""
    buf = b""
    while buf.count(b"\n") < n:
        chunk = s.recv(65536)
        check(chunk, f"connection closed after {buf!r}")
        buf += chunk
    lines = buf.split(b"\n")
    check_eq(lines[n], b"", "no bytes beyond the replies")
    return [json.loads(x) for x in lines[:n]]


def nbd_works(d):
    out = run(["nbdinfo", "--size", d.uri()]).stdout
    check_eq(out.strip(), str(GIB), "NBD still serves")


# --- output -----------------------------------------------------------------------------------


def case_output(tmp):
    with Daemon(tmp) as d:
        check_eq(portalctl(d, "snapshot", "list").stdout, "No snapshots\n", "empty list")
        r = portalctl(d, "snapshot", "create", "before-disaster")
        check(re.fullmatch(rf"Snapshot: before-disaster\n  ID:      {UUID}\n  Created: {TIME}\n",
                           r.stdout), f"create:\n{r.stdout}")
        sid = r.stdout.split()[3]
        r = portalctl(d, "snapshot", "get", "before-disaster")
        check(re.fullmatch(rf"Snapshot: before-disaster\n  ID:      {sid}\n  Created: {TIME}\n"
                           r"  Size:    1\.00 GiB\n  Pinned:  0 B\n"
                           r"  Clients: 0 \(attached as portalbd@before-disaster\)\n", r.stdout),
              f"get:\n{r.stdout}")
        portalctl(d, "snapshot", "create", "b")
        lines = portalctl(d, "snapshot", "list").stdout.splitlines()
        check_eq(len(lines), 3, "list: header and two rows")
        check(re.fullmatch(r"NAME +ID +CREATED +SIZE +PINNED", lines[0]), f"header {lines[0]!r}")
        check(re.fullmatch(rf"before-disaster  {sid}  {TIME}    1\.00 GiB         0 B", lines[1]),
              f"row {lines[1]!r}")
        check(lines[2].startswith("b                "), f"rows in creation order: {lines}")
        check_eq(portalctl(d, "snapshot", "restore", "before-disaster").stdout, "OK\n", "restore")
        check_eq(portalctl(d, "snapshot", "delete", "b").stdout, "OK\n", "delete")
        r = portalctl(d, "status")
        for label in ("Size:       1.00 GiB (1073741824 bytes)", "Blocks:     262144 of 4096 bytes",
                      "Snapshots:  1", f"NBD:        {d.address} (0 connections)",
                      "Storage:    memory://", "Store:      ok", "Epoch:      1 (not fenced)",
                      "Stored:", "Live data:", "Buffers:", "Cache:",
                      "Integrity:  0 object reads fetched again", "Requests:", "PUT_IF_ABSENT",
                      "Version:"):
            check(f"  {label}" in r.stdout, f"status lacks {label!r}:\n{r.stdout}")
        check(r.stdout.startswith("portalbd daemon status:\n"), r.stdout)


def case_json(tmp):
    with Daemon(tmp) as d:
        r = json.loads(portalctl(d, "--json", "snapshot", "create", "s1").stdout)
        check_eq(sorted(r), ["ok", "snapshot"], "create reply keys")
        s = r["snapshot"]
        check_eq(sorted(s), ["attached", "created", "created_ns", "id", "name", "pinned_bytes",
                             "size_bytes"], "snapshot keys")
        check_eq((s["name"], s["size_bytes"], s["attached"]), ("s1", GIB, 0), "snapshot values")
        check(re.fullmatch(TIME, s["created"]) and re.fullmatch(UUID, s["id"]), str(s))
        # --json after the subcommand works too.
        r = json.loads(portalctl(d, "snapshot", "list", "--json").stdout)
        check_eq(r, {"ok": True, "snapshots": [s]}, "list --json")
        check_eq(json.loads(portalctl(d, "snapshot", "get", "s1", "--json").stdout),
                 {"ok": True, "snapshot": s}, "get --json")
        check_eq(json.loads(portalctl(d, "--json", "snapshot", "restore", "s1").stdout),
                 {"ok": True}, "restore --json")
        st = json.loads(portalctl(d, "status", "--json").stdout)["status"]
        for k in ("version", "size_bytes", "block_size", "storage_url", "nbd_address",
                  "volume_uuid", "epoch", "fenced", "manifest", "objects_stored", "bytes_stored",
                  "live_bytes",
                  "segments", "segment_bytes", "map_ssts", "map_bytes", "buffer_bytes",
                  "max_unflushed_bytes", "cache_bytes", "cache_capacity_bytes", "cache_hits",
                  "cache_misses", "write_stalls", "corrupt_refetches", "snapshots",
                  "nbd_connections", "store_failing_since", "store_failed_attempts",
                  "store_error", "requests"):
            check(k in st, f"status --json lacks {k}: {st}")
        check_eq((st["snapshots"], st["storage_url"], st["nbd_address"], st["fenced"],
                  st["store_failing_since"], st["store_error"]),
                 (1, "memory://", d.address, False, "", ""), "status values")
        check_eq(json.loads(portalctl(d, "--json", "snapshot", "delete", "s1").stdout),
                 {"ok": True}, "delete --json")


def case_status_counts(tmp):
    """status reports what the volume stores and the requests it issued, and moves."""
    nbd = import_nbd()
    cfg = f'[storage]\nurl = "file://{tmp}/store"\ncache_dir = "{tmp}/cache"\n'
    with Daemon(tmp, config=cfg) as d:
        before = json.loads(portalctl(d, "--json", "status").stdout)["status"]
        h = nbd.NBD()
        h.connect_uri(d.uri())
        h.pwrite(os.urandom(4 << 20), 0)
        h.flush()
        st = json.loads(portalctl(d, "--json", "status").stdout)["status"]
        check_eq(st["nbd_connections"], 1, "one NBD client")
        check(st["bytes_stored"] >= before["bytes_stored"] + (4 << 20),
              f"4 MiB of random data stored: {before['bytes_stored']} -> {st['bytes_stored']}")
        check(st["segments"] > before["segments"], "a new segment")
        check_eq(st["live_bytes"] - before["live_bytes"], 4 << 20, "live bytes")
        check_eq(st["objects_stored"], st["segments"] + st["map_ssts"], "objects stored")
        check_eq(st["bytes_stored"], st["segment_bytes"] + st["map_bytes"], "bytes stored")
        put = st["requests"]["PUT_IF_ABSENT"]
        check(put["calls"] > before["requests"]["PUT_IF_ABSENT"]["calls"] and
              put["bytes"] >= 4 << 20, f"PUT_IF_ABSENT counts {put}")
        check_eq(st["storage_url"], f"file://{tmp}/store", "storage url")
        h.shutdown()
        portalctl(d, "snapshot", "create", "s")
        check_eq(json.loads(portalctl(d, "--json", "status").stdout)["status"]["snapshots"], 1,
                 "snapshot count")


def case_sigusr1_status_line(tmp):
    """kill -USR1 still logs one status line, and it agrees with portalctl status."""
    with Daemon(tmp) as d:
        portalctl(d, "snapshot", "create", "s")
        st = json.loads(portalctl(d, "--json", "status").stdout)["status"]
        d.proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + 10
        while "INFO portalbd: status " not in d.log():
            check(time.monotonic() < deadline, f"no status line after SIGUSR1:\n{d.log()}")
            time.sleep(0.02)
        line = next(x for x in d.log().splitlines() if "INFO portalbd: status " in x)
        for field in (f"size_bytes={st['size_bytes']}", 'storage="memory://"',
                      f"epoch={st['epoch']}", "fenced=false", "snapshots=1", "requests=\""):
            check(f" {field}" in line, f"status line lacks {field}: {line}")


# --- errors -------------------------------------------------------------------------------------


def case_errors(tmp):
    with Daemon(tmp) as d:
        portalctl(d, "snapshot", "create", "snap1")
        for cmd in ("get", "delete", "restore"):
            fails(d, ["snapshot", cmd, "nope"], "no snapshot named 'nope'", "not_found")
        fails(d, ["snapshot", "create", "snap1"], "a snapshot named 'snap1' already exists",
              "already_exists")
        for cmd in ("create", "get", "delete", "restore"):
            fails(d, ["snapshot", cmd, ""], "snapshot name is empty", "invalid_argument")
            fails(d, ["snapshot", cmd, "n" * 129],
                  "snapshot name is 129 bytes long; the limit is 128", "invalid_argument")
            fails(d, ["snapshot", cmd, "a/b"],
                  "snapshot name 'a/b' contains '/', which is not allowed", "invalid_argument")
            fails(d, ["snapshot", cmd, "portalbd@x"],
                  "snapshot name 'portalbd@x' contains '@', which is not allowed",
                  "invalid_argument")
        fails(d, ["snapshot", "create", "a b"],
              "snapshot name 'a b' contains whitespace or a non-printable character")
        r = portalctl(d, "snapshot", "create", "n" * 128)  # the longest name is fine
        check(r.stdout.startswith("Snapshot: " + "n" * 128 + "\n"), r.stdout)
        check_eq(sorted(json.loads(portalctl(d, "--json", "snapshot", "list").stdout)
                        ["snapshots"][i]["name"] for i in range(2)),
                 ["n" * 128, "snap1"], "only the valid creates happened")


def case_usage_errors(tmp):
    r = run([portalctl_path(), "--help"])
    for word in ("snapshot", "status", "--socket", "--json", "/run/portalbd/portalbd.sock"):
        check(word in r.stdout, f"--help lacks {word}:\n{r.stdout}")
    r = run([portalctl_path(), "snapshot", "--help"])
    for word in ("create", "list", "get", "delete", "restore"):
        check(word in r.stdout, f"snapshot --help lacks {word}:\n{r.stdout}")
    check(re.fullmatch(r"portalctl \d+\.\d+\.\d+\n", run([portalctl_path(), "-V"]).stdout),
          "version")
    for argv in ([], ["snapshot"], ["snapshot", "create"], ["snapshot", "frobnicate"],
                 ["bogus"], ["status", "extra"]):
        r = run([portalctl_path(), *argv], check_exit=False)
        check_eq(r.returncode, 1, f"exit status of portalctl {argv}")
        check(r.stderr.strip(), f"no message for portalctl {argv}:\n{r}")
    # An empty value (an unset variable) is refused, not taken for the default socket.
    for argv, env, name, why in ((["--socket", "", "status"], {}, "--socket", "empty"),
                                 # CLI11 takes "status" for the value: no subcommand.
                                 (["--socket=", "status"], {}, "", "subcommand"),
                                 (["status"], {"PORTALBD_SOCKET": ""}, "PORTALBD_SOCKET",
                                  "empty")):
        r = run([portalctl_path(), *argv], check_exit=False, env=dict(os.environ, **env))
        check_eq(r.returncode, 1, f"exit status of portalctl {argv} {env}")
        check(name in r.stderr and why in r.stderr,
              f"the error does not say {name} is {why}:\n{r}")


def case_not_running(tmp):
    missing = os.path.join(tmp, "nobody.sock")
    msg = (f"portalbd is not running: no control socket at {missing} (start portalbd, or name "
           "its socket with --socket)")
    fails(missing, ["status"], msg, "unavailable")
    fails(missing, ["snapshot", "create", "x"], msg)
    # The same through the environment instead of --socket.
    r = run([portalctl_path(), "status"], check_exit=False,
            env=dict(os.environ, PORTALBD_SOCKET=missing))
    check_eq((r.returncode, r.stderr), (1, f"Error: {msg}\n"), "PORTALBD_SOCKET")
    # A daemon killed with -9 leaves its socket file behind.
    d = Daemon(tmp)
    d.kill9()
    check(stat.S_ISSOCK(os.lstat(d.ctl).st_mode), "kill -9 left the socket file")
    fails(d, ["snapshot", "list"],
          f"portalbd is not running: nobody answers on the control socket {d.ctl} (a stale "
          "file left by a daemon that died)")
    # Without --socket: the default path is the one named.
    default = "/run/portalbd/portalbd.sock"
    if not os.path.exists(default):
        r = run([portalctl_path(), "status"], check_exit=False,
                env={k: v for k, v in os.environ.items() if k != "PORTALBD_SOCKET"})
        check_eq(r.returncode, 1, "exit status without a daemon")
        check(default in r.stderr, f"the default socket is not named:\n{r.stderr}")


# --- the socket file --------------------------------------------------------------------------


def case_socket_file(tmp):
    """The parent directory is created; the socket is mode 0600; SIGTERM removes it."""
    path = os.path.join(tmp, "run", "portalbd", "portalbd.sock")
    d = Daemon(tmp, start=False)
    d.argv[d.argv.index("--socket") + 1] = d.ctl = path
    d.start()
    st = os.lstat(path)
    check(stat.S_ISSOCK(st.st_mode), "a socket")
    check_eq(oct(st.st_mode & 0o777), oct(0o600), "socket mode")
    portalctl(d, "status")
    d.stop()
    check(not os.path.exists(path), "socket file removed at exit")


def case_config_socket_keys(tmp):
    """[nbd] socket and the top-level socket key both place the control socket."""
    for cfg, path in ((f'[nbd]\nsocket = "{tmp}/nbd.sock"\n', f"{tmp}/nbd.sock"),
                      (f'socket = "{tmp}/top.sock"\n', f"{tmp}/top.sock")):
        d = Daemon(tmp, config=cfg, start=False)
        d.argv = [a for i, a in enumerate(d.argv)
                  if a != "--socket" and (i == 0 or d.argv[i - 1] != "--socket")]
        d.start()
        with d:
            check_eq(portalctl(path, "snapshot", "list").stdout, "No snapshots\n", path)


def case_stale_socket(tmp):
    """A socket file left by kill -9 is replaced at start; snapshots (file://) remain."""
    cfg = f'[storage]\nurl = "file://{tmp}/store"\ncache_dir = "{tmp}/cache"\n'
    d = Daemon(tmp, config=cfg)
    portalctl(d, "snapshot", "create", "kept")
    d.kill9()
    check(os.path.exists(d.ctl), "stale socket left behind")
    d.start()
    check(f"removed stale control socket path={d.ctl}" in d.log(), d.log())
    check("kept" in portalctl(d, "snapshot", "list").stdout, "snapshot after kill -9")
    d.stop()


def case_live_socket(tmp):
    """A second daemon on a live daemon's control socket refuses to start, says so, and
    leaves the first (and its volume: same storage) untouched."""
    cfg = f'[storage]\nurl = "file://{tmp}/store"\ncache_dir = "{tmp}/cache"\n'
    with Daemon(tmp, config=cfg) as d:
        before = json.loads(portalctl(d, "--json", "status").stdout)["status"]
        r = run([d.argv[0], "--socket", d.ctl, "--config", f"{tmp}/{d.name}.toml",
                 "--address", "127.0.0.1:0"], timeout=10, check_exit=False)
        check(r.returncode != 0, f"second daemon started:\n{r}")
        check(f"another portalbd is running: it answers on the control socket {d.ctl}"
              in r.stderr, f"message:\n{r}")
        check("NBD server listening" not in r.stdout + r.stderr, "it listened")
        after = json.loads(portalctl(d, "--json", "status").stdout)["status"]
        check_eq((after["epoch"], after["fenced"], after["manifest"]),
                 (before["epoch"], False, before["manifest"]),
                 "the volume was not opened by the second daemon")
        portalctl(d, "snapshot", "create", "still-writable")
        check(stat.S_ISSOCK(os.lstat(d.ctl).st_mode), "the live socket is still there")


def case_status_fenced(tmp):
    """A second daemon on the same volume fences the first: its status says so and its
    snapshot commands fail with a message."""
    nbd = import_nbd()
    cfg = f'[storage]\nurl = "file://{tmp}/store"\ncache_dir = "{tmp}/cache"\n'
    first = Daemon(tmp, config=cfg)
    portalctl(first, "snapshot", "create", "before")
    with Daemon(tmp, config=cfg.replace("/cache", "/cache2")) as second:
        h = nbd.NBD()
        h.connect_uri(first.uri())
        h.pwrite(b"x" * 4096, 0)
        try:
            h.flush()
            raise AssertionError("the fenced daemon acknowledged a FLUSH")
        except nbd.Error:
            pass
        st = json.loads(portalctl(first, "--json", "status").stdout)["status"]
        check_eq(st["fenced"], True, "status of the fenced daemon")
        check("FENCED" in portalctl(first, "status").stdout, "status text")
        for args in (["create", "after"], ["restore", "before"]):
            r = portalctl(first, "snapshot", *args, check_exit=False)
            check_eq(r.returncode, 1, f"{args} on a fenced daemon:\n{r}")
            check(r.stderr.startswith("Error: volume is fenced: "), r.stderr)
        st2 = json.loads(portalctl(second, "--json", "status").stdout)["status"]
        check_eq((st2["fenced"], st2["epoch"], st2["snapshots"]),
                 (False, st["epoch"] + 1, 1), "the second daemon owns the volume")
        h.shutdown()
    # It could not make its last write durable, so it exits 1.
    check_eq(first.stop(expect_status=None), 1, "exit status of the fenced daemon")


# --- the wire protocol --------------------------------------------------------------------------


def case_protocol_bad_input(tmp):
    """Malformed requests get error replies; the connection and the daemon keep working."""
    with Daemon(tmp) as d:
        s = raw(d)
        s.sendall(b'{"op":"status","id":1}\nnot json\n[1]\n{"op":"nope","id":"x"}\n'
                  b'{"op":"snapshot.create"}\n{"op":"snapshot.create","name":"a/b"}\n'
                  b'\xff\xfe\x00garbage\n{"op":"snapshot.list","id":2}\n')
        r = replies(s, 8)
        check_eq((r[0]["ok"], r[0]["id"]), (True, 1), "status")
        check_eq([x["error"]["code"] for x in r[1:7]],
                 ["bad_request", "bad_request", "bad_request", "bad_request",
                  "invalid_argument", "bad_request"], "error codes")
        check_eq(r[3]["id"], "x", "a bad request's id is echoed")
        check_eq(r[7], {"ok": True, "id": 2, "snapshots": []}, "list after bad input")
        # Longer than the bound: skipped to its newline, answered, still in frame.
        s.sendall(b'{"op":"status","x":"' + b"a" * 100000 + b'"}\n{"op":"snapshot.list"}\n')
        r = replies(s, 2)
        check_eq(r[0]["error"]["code"], "request_too_long", "oversized request")
        check_eq(r[1], {"ok": True, "snapshots": []}, "the next request")
        s.close()
        # A client that disconnects mid-request, and one that sends half a line.
        s = raw(d)
        s.sendall(b'{"op":"snapshot.create","name":"x"}\n')
        s.close()
        s = raw(d)
        s.sendall(b'{"op":"sta')
        s.close()
        deadline = time.monotonic() + 10
        while "x" not in portalctl(d, "snapshot", "list").stdout:  # the create still ran
            check(time.monotonic() < deadline, "the abandoned create never ran")
            time.sleep(0.05)
        nbd_works(d)


def case_protocol_connection_limit(tmp):
    with Daemon(tmp) as d:
        conns = [raw(d) for _ in range(16)]
        for c in conns:  # each one registered and answered
            c.sendall(b'{"op":"snapshot.list"}\n')
            check_eq(replies(c, 1)[0]["ok"], True, "one of 16")
        extra = raw(d)
        check_eq(replies(extra, 1)[0]["error"]["code"], "too_many_connections", "the 17th")
        check_eq(extra.recv(100), b"", "then closed")
        conns.pop().close()
        deadline = time.monotonic() + 10
        while True:
            r = portalctl(d, "status", check_exit=False)
            if r.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        check_eq(r.returncode, 0, f"a slot is free again:\n{r}")
        for c in conns:
            c.close()


def case_sigterm_idle_control_connection(tmp):
    """An idle control connection does not hold up shutdown."""
    d = Daemon(tmp)
    s = raw(d)
    s.sendall(b'{"op":"status"}\n')
    replies(s, 1)
    t0 = time.monotonic()
    d.proc.send_signal(signal.SIGTERM)
    check_eq(d.wait(15), 0, "exit status")
    check(time.monotonic() - t0 < 5, "shutdown took too long")
    check_eq(s.recv(10), b"", "the connection was closed")
    d.stop()


if __name__ == "__main__":
    run_cases(globals(), tools=("nbdinfo",))
