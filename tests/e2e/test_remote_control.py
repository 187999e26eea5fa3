#!/usr/bin/python3
"""The control protocol over TCP ([control] listen; docs/control.md "Over TCP") and owner
records (docs/volumes.md "Owner records"), with real portalbd processes:

- file_auth: a TCP connection's first request must be auth with the token: the right one
  is answered ok and requests follow; a wrong token, or any other request first, is
  answered "unauthenticated" and the connection closed; a silent peer is closed at the
  handshake deadline; the unix socket needs no auth. A world-readable or short token
  file stops portalbd at start, naming the key.
- file_snapshot: portalctl --connect creates a snapshot of a named volume over TCP; a
  volume the daemon does not serve is "not_owner".
- file_tls: the same over TLS (tls_cert, tls_key): portalctl --tls-ca verifies the
  daemon's certificate; a plaintext client gets nothing, a client trusting another CA
  refuses the daemon.
- file_owner_records: owners/<volume>.json appears at open with the volume's epoch, goes
  at release, is replaced (a higher epoch, the other node) when a second daemon takes the
  volume over, is left alone by the fenced daemon's release, and goes at a clean stop.
- rgw_owner_records: the takeover on Ceph RGW (fencing on).
"""

import json
import os
import re
import socket
import ssl
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "interop"))

from e2e import Storage, check, check_eq  # noqa: E402
from harness import Daemon, portalctl, portalctl_path, run, run_cases  # noqa: E402
from tls_certs import make_ca, sign  # noqa: E402

TOKEN = "4f1c0d6a9e2b7c3d8a5f6e1b2c3d4e5f60718293a4b5c6d7e8f9011223344556"
CONTROL_RE = re.compile(r"control listening address=(\S+)")


def token_file(tmp, text=TOKEN, mode=0o600, name="token"):
    path = os.path.join(tmp, name)
    with open(path, "w") as f:
        f.write(text + "\n")
    os.chmod(path, mode)
    return path


def control_config(tmp, node="node-a", tls=None, token=None):
    text = (f'[control]\nlisten = "127.0.0.1:0"\ntoken_file = "{token or token_file(tmp)}"\n'
            f'node_id = "{node}"\n')
    if tls:
        text += f'tls_cert = "{tls}/server-cert.pem"\ntls_key = "{tls}/server-key.pem"\n'
    return text


def start(st, tmp, name, **kw):
    """A daemon on `st` with its TCP control listener; .control is its address."""
    extra = control_config(tmp, **kw)
    d = Daemon(tmp, config=st.config(os.path.join(tmp, "cache-" + name),
                                     lsm={"flush_interval_ms": 0}) + extra,
               env=st.env, ready_timeout=60)
    m = CONTROL_RE.search(d.log())
    check(m is not None, f"no control listening line\n{d.log()}")
    d.control = m.group(1)
    return d


def remote(d, *args, token=None, tls_ca=None, check_exit=True):
    argv = [portalctl_path(), "--connect", d.control, "--token-file",
            token or token_file(d.tmp, name="client-token")]
    if tls_ca:
        argv += ["--tls-ca", tls_ca]
    return run(argv + list(args), timeout=60, check_exit=check_exit)


def remote_json(d, *args, **kw):
    r = remote(d, "--json", *args, check_exit=False, **kw)
    return r.returncode, json.loads(r.stdout)


def raw(d, lines, timeout=10):
    """Sends `lines` on a fresh TCP connection; returns the reply lines until the daemon
    closes it (or `timeout`), and whether it closed."""
    host, port = d.control.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=timeout)
    s.sendall("".join(line + "\n" for line in lines).encode())
    data, closed = b"", False
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                closed = True
                break
            data += chunk
    except socket.timeout:
        pass
    s.close()
    return [json.loads(x) for x in data.decode().splitlines()], closed


def auth(token=TOKEN, id=None):
    req = {"op": "auth", "token": token}
    if id is not None:
        req["id"] = id
    return json.dumps(req)


def case_file_auth(tmp):
    st = Storage(tmp, "file")
    d = start(st, tmp, "a")
    replies, closed = raw(d, [auth(id=1), '{"op":"status","id":2}'], timeout=3)
    check_eq([r["ok"] for r in replies], [True, True], f"auth then status: {replies}")
    check_eq(replies[0].get("id"), 1, "auth reply id")
    check("status" in replies[1], replies)
    check(not closed, "an authenticated connection stays open")

    replies, closed = raw(d, [auth(TOKEN[:-1] + "0"), '{"op":"status"}'])
    check_eq(len(replies), 1, f"one reply to a wrong token: {replies}")
    check_eq(replies[0]["error"]["code"], "unauthenticated", "wrong token")
    check(closed, "the daemon closes after a wrong token")

    replies, closed = raw(d, ['{"op":"volume.list","id":"x"}', auth()])
    check_eq(len(replies), 1, f"one reply to a request before auth: {replies}")
    check_eq((replies[0]["error"]["code"], replies[0]["id"]), ("unauthenticated", "x"),
             "request before auth")
    check(closed, "the daemon closes after a request before auth")

    # A peer that says nothing is closed at the handshake deadline ([nbd]
    # handshake_timeout_ms, 10 s by default).
    t0 = time.monotonic()
    replies, closed = raw(d, [], timeout=30)
    check(closed and replies == [] and time.monotonic() - t0 < 20,
          f"silent peer: closed={closed} after {time.monotonic() - t0:.1f} s")

    r = remote(d, "status", token=token_file(tmp, TOKEN[::-1], name="wrong"), check_exit=False)
    check(r.returncode == 1 and "unauthenticated" in r.stderr, f"portalctl wrong token: {r}")
    check_eq(remote(d, "volume", "list").returncode, 0, "portalctl --connect")
    check_eq(portalctl(d, "status").returncode, 0, "the unix socket needs no auth")
    check("refused: wrong token" in d.log(), "the log names the refusal")
    d.stop()

    # Bad token files stop the daemon at start, naming the key.
    for path, says in [(token_file(tmp, mode=0o644, name="world"), "readable by every user"),
                       (token_file(tmp, "short", name="short"), "at least 32")]:
        cfg = st.config(os.path.join(tmp, "cache-b")) + control_config(tmp, token=path)
        try:
            Daemon(tmp, config=cfg, env=st.env)
            raise AssertionError(f"portalbd started with token file {path}")
        except AssertionError as e:
            check("control.token_file" in str(e) and says in str(e), str(e)[-2000:])


def case_file_snapshot(tmp):
    st = Storage(tmp, "file")
    d = start(st, tmp, "a")
    portalctl(d, "volume", "create", "db", "--size", "16M")
    code, reply = remote_json(d, "snapshot", "--volume", "db", "create", "s1")
    check_eq((code, reply["ok"]), (0, True), f"snapshot over TCP: {reply}")
    check_eq(reply["snapshot"]["name"], "s1", "snapshot name")
    r = portalctl(d, "--json", "snapshot", "--volume", "db", "list")
    check_eq([s["name"] for s in json.loads(r.stdout)["snapshots"]], ["s1"],
             "the snapshot, seen on the unix socket")
    code, reply = remote_json(d, "snapshot", "--volume", "other", "create", "s1")
    check_eq((code, reply["error"]["code"]), (1, "not_owner"), f"unserved volume: {reply}")
    code, reply = remote_json(d, "volume", "resize", "other", "--size", "32M")
    check_eq((code, reply["error"]["code"]), (1, "not_owner"), f"resize elsewhere: {reply}")
    d.stop()


def case_file_tls(tmp):
    ca = make_ca(os.path.join(tmp, "ca"), "portalbd control CA")
    server = os.path.join(tmp, "server")
    sign(ca, server, "server", "localhost",
         "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    other = make_ca(os.path.join(tmp, "other"), "another CA")
    st = Storage(tmp, "file")
    d = start(st, tmp, "a", tls=server)
    portalctl(d, "volume", "create", "db", "--size", "16M")
    cafile = os.path.join(ca, "ca-cert.pem")
    code, reply = remote_json(d, "snapshot", "--volume", "db", "create", "s1", tls_ca=cafile)
    check_eq((code, reply.get("ok")), (0, True), f"snapshot over TLS: {reply}")

    # Python's own TLS client: auth, then a request, over the daemon's TLS.
    ctx = ssl.create_default_context(cafile=cafile)
    host, port = d.control.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as s:
        with ctx.wrap_socket(s, server_hostname="127.0.0.1") as t:
            t.sendall((auth() + "\n" + '{"op":"volume.list"}\n').encode())
            f = t.makefile("rb")
            check_eq(json.loads(f.readline())["ok"], True, "TLS auth")
            check_eq([v["name"] for v in json.loads(f.readline())["volumes"]],
                     ["db", "portalbd"], "volume list over TLS")

    replies, closed = raw(d, [auth()], timeout=5)
    check(replies == [], f"a plaintext client gets no reply from a TLS listener: {replies}")
    r = remote(d, "status", tls_ca=os.path.join(other, "ca-cert.pem"), check_exit=False)
    check(r.returncode == 1 and "does not verify" in r.stderr, f"wrong CA: {r}")
    r = remote(d, "status", check_exit=False)  # plaintext to TLS
    check_eq(r.returncode, 1, f"plaintext portalctl to a TLS listener: {r}")
    d.stop()
    check("TLS is off" not in d.log(), "no exposure warning with TLS")


def owner(st, tmp, volume):
    """The owner record of `volume` as a dict, or None."""
    if st.kind == "file":
        path = os.path.join(tmp, "store", "owners~", f"{volume}.json")
        if not os.path.exists(path):
            return None
        with open(path) as f:
            return json.load(f)
    c = st.server.client
    try:
        body = c.get_object(Bucket="vol", Key=f"e2e/owners/{volume}.json")["Body"].read()
    except c.exceptions.NoSuchKey:
        return None
    return json.loads(body)


def epoch(d, volume):
    r = portalctl(d, "--json", "volume", "get", volume)
    return json.loads(r.stdout)["volume"]["epoch"]


def owner_records(st, tmp):
    a = start(st, tmp, "a", node="node-a")
    check_eq(owner(st, tmp, "portalbd")["node"], "node-a", "the default volume's record")
    portalctl(a, "volume", "create", "db", "--size", "16M")
    rec = owner(st, tmp, "db")
    check(rec is not None, "owner record after create")
    check_eq((rec["volume"], rec["epoch"], rec["node"], rec["control"]),
             ("db", epoch(a, "db"), "node-a", a.control), "owner record")
    check(re.match(r"\d{4}-\d\d-\d\dT", rec["since"]), rec)
    portalctl(a, "volume", "release", "db")
    check_eq(owner(st, tmp, "db"), None, "owner record after release")
    portalctl(a, "volume", "open", "db")
    first = owner(st, tmp, "db")
    check_eq(first["epoch"], epoch(a, "db"), "owner record after open")

    # B takes db over: its record, with a higher epoch.
    b = Daemon(tmp, config=st.config(os.path.join(tmp, "cache-b")) +
               control_config(tmp, node="node-b"), env=st.env, ready_timeout=60,
               args=("--volumes", "db"))
    b.control = CONTROL_RE.search(b.log()).group(1)
    rec = owner(st, tmp, "db")
    check_eq((rec["node"], rec["control"], rec["epoch"]), ("node-b", b.control, epoch(b, "db")),
             "owner record after the takeover")
    check(rec["epoch"] > first["epoch"], f"epochs {first['epoch']} -> {rec['epoch']}")
    # A learns it was fenced at its next write; from then on it answers not_owner.
    code, reply = remote_json(a, "snapshot", "--volume", "db", "create", "late")
    check_eq((code, reply["error"]["code"]), (1, "not_owner"), f"fenced owner: {reply}")
    code, reply = remote_json(b, "snapshot", "--volume", "db", "create", "s1")
    check_eq((code, reply.get("ok")), (0, True), f"the new owner snapshots: {reply}")
    portalctl(a, "volume", "release", "db")
    check_eq(owner(st, tmp, "db")["node"], "node-b", "A's release leaves B's record")
    a.stop()
    check_eq(owner(st, tmp, "portalbd"), None, "A's clean stop removes its records")
    check_eq(owner(st, tmp, "db")["node"], "node-b", "A's stop leaves B's record")
    b.stop()
    check_eq(owner(st, tmp, "db"), None, "B's clean stop removes its record")


def case_file_owner_records(tmp):
    owner_records(Storage(tmp, "file"), tmp)


def case_rgw_owner_records(tmp):
    owner_records(Storage(tmp, "rgw"), tmp)


if __name__ == "__main__":
    run_cases(globals())
