#!/usr/bin/python3
"""NBD over TLS ([nbd] tls, NBD_OPT_STARTTLS): libnbd (nbdinfo, nbdcopy, python3-libnbd),
qemu-img and fio through libnbd with X.509 certificates (mutual TLS) and PSK; what a
client without the right credentials gets (nothing: no export list, no data); plaintext
under "require" and "on"; config errors at start; the warning for a network address
without TLS. Certificates are made here with the openssl CLI, PSKs with psktool."""

import json
import os
import socket
import ssl
import struct

import nbdwire as w
from harness import Daemon, check, check_eq, import_nbd, run, run_cases

MIB = 1 << 20


# --- Credentials (tls_certs.py) -----------------------------------------------------------

from tls_certs import make_ca, sign  # noqa: E402

class Pki:
    """A CA, the server's certificate (for 127.0.0.1 and localhost) and a client directory
    as libnbd and qemu want it (ca-cert.pem, client-cert.pem, client-key.pem)."""

    def __init__(self, tmp):
        self.ca = make_ca(os.path.join(tmp, "ca"), "portalbd test CA")
        self.server = os.path.join(tmp, "server")
        sign(self.ca, self.server, "server", "localhost",
             "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
        self.client = os.path.join(tmp, "client")
        sign(self.ca, self.client, "client", "client1", "extendedKeyUsage=clientAuth\n")
        self._copy_ca(self.client)

    def _copy_ca(self, d):
        with open(os.path.join(self.ca, "ca-cert.pem")) as src, \
                open(os.path.join(d, "ca-cert.pem"), "w") as dst:
            dst.write(src.read())

    def no_cert_dir(self, tmp):
        """A client directory with the CA (to check the server) and no certificate."""
        d = os.path.join(tmp, "nocert")
        os.makedirs(d, exist_ok=True)
        self._copy_ca(d)
        return d

    def other_ca_dir(self, tmp):
        """A client certificate signed by another CA (trusting our server's CA)."""
        other = make_ca(os.path.join(tmp, "other-ca"), "some other CA")
        d = os.path.join(tmp, "other-client")
        sign(other, d, "client", "mallory", "extendedKeyUsage=clientAuth\n")
        self._copy_ca(d)
        return d

    def config(self, mode="require", ca=True, extra=""):
        s = self.server
        text = (f'[nbd]\ntls = "{mode}"\ntls_cert = "{s}/server-cert.pem"\n'
                f'tls_key = "{s}/server-key.pem"\n')
        if ca:
            text += f'tls_ca = "{self.ca}/ca-cert.pem"\n'
        return text + extra


def make_psk(tmp, user="alice"):
    path = os.path.join(tmp, "keys.psk")
    run(["psktool", "-u", user, "-p", path])
    return path


def nbds(d, certs=None, psk=None, user=None, export="portalbd"):
    q = f"tls-certificates={certs}" if certs else f"tls-psk-file={psk}"
    at = f"{user}@" if user else ""
    return f"nbds://{at}{d.address}/{export}?{q}"


def pattern(n, seed):
    return bytes((i * 131 + seed * 7 + (i >> 9)) & 0xFF for i in range(n))


# --- Clients with the right credentials ------------------------------------------------------


def case_nbdinfo_x509(tmp):
    pki = Pki(tmp)
    with Daemon(tmp, config=pki.config()) as d:
        doc = json.loads(run(["nbdinfo", "--json", nbds(d, pki.client)]).stdout)
        check_eq(doc["TLS"], True, "TLS")
        check_eq(doc["exports"][0]["export-name"], "portalbd", "export name")
        check_eq(doc["exports"][0]["export-size"], 1 << 30, "export size")
        doc = json.loads(run(["nbdinfo", "--json", "--list", nbds(d, pki.client)]).stdout)
        check_eq([e["export-name"] for e in doc["exports"]], ["portalbd"], "export list")


def case_nbdcopy_x509(tmp):
    """64 MiB of random data in and out over 4 TLS connections, compared byte for byte."""
    pki = Pki(tmp)
    src, back = os.path.join(tmp, "src.img"), os.path.join(tmp, "back.img")
    with open(src, "wb") as f:
        f.write(os.urandom(64 * MIB))
    with Daemon(tmp, config=pki.config()) as d:
        uri = nbds(d, pki.client)
        run(["nbdcopy", "--connections=4", src, uri])
        run(["nbdcopy", "--connections=4", uri, back])
    with open(src, "rb") as a, open(back, "rb") as b:
        check_eq(b.read(64 * MIB), a.read(), "data copied back over TLS")


def case_python_x509_verified(tmp):
    """python3-libnbd with TLS required and the server's name checked, every write read
    back; the session is logged with the client certificate's subject."""
    nbd = import_nbd()
    pki = Pki(tmp)
    with Daemon(tmp, config=pki.config(), args=["--log-level", "debug"]) as d:
        h = nbd.NBD()
        h.set_tls(nbd.TLS_REQUIRE)
        h.set_tls_certificates(pki.client)
        h.set_tls_verify_peer(True)
        h.connect_tcp("127.0.0.1", str(d.port))
        check(h.get_tls_negotiated(), "TLS not negotiated")
        data = pattern(1 * MIB, 1)
        h.pwrite(data, 4096)
        h.flush()
        check_eq(h.pread(len(data), 4096), data, "read back over TLS")
        h.shutdown()
        check('peer_cert="/CN=client1"' in d.log(), f"no TLS session line:\n{d.log()}")


def case_psk(tmp):
    """psktool's key file: nbdinfo and python3-libnbd with the identity in the file."""
    nbd = import_nbd()
    psk = make_psk(tmp)
    cfg = f'[nbd]\ntls = "require"\ntls_psk_file = "{psk}"\n'
    with Daemon(tmp, config=cfg, args=["--log-level", "debug"]) as d:
        doc = json.loads(run(["nbdinfo", "--json", nbds(d, psk=psk, user="alice")]).stdout)
        check_eq(doc["TLS"], True, "TLS with PSK")
        h = nbd.NBD()
        h.set_tls(nbd.TLS_REQUIRE)
        h.set_tls_psk_file(psk)
        h.set_tls_username("alice")
        h.connect_tcp("127.0.0.1", str(d.port))
        data = pattern(65536, 2)
        h.pwrite(data, 0)
        check_eq(h.pread(len(data), 0), data, "read back over TLS-PSK")
        h.shutdown()
        check('psk_identity="alice"' in d.log(), f"no PSK session line:\n{d.log()}")
        # qemu's own GnuTLS client: tls-creds-psk reads DIR/keys.psk.
        r = run(["qemu-img", "info", "--output=json", "--object",
                 f"tls-creds-psk,id=tls0,dir={tmp},username=alice,endpoint=client",
                 "--image-opts", f"driver=nbd,host=127.0.0.1,port={d.port},"
                 "export=portalbd,tls-creds=tls0"])
        check_eq(json.loads(r.stdout)["virtual-size"], 1 << 30, "qemu-img over TLS-PSK")
        # Another identity, or the right one with another key: nothing.
        os.makedirs(os.path.join(tmp, "other"))
        other = make_psk(os.path.join(tmp, "other"), user="alice")
        for uri in (nbds(d, psk=psk, user="bob"), nbds(d, psk=other, user="alice")):
            r = run(["nbdinfo", "--list", uri], check_exit=False)
            check(r.returncode != 0, f"nbdinfo got in with a wrong PSK:\n{r}")
            check("portalbd" not in r.stdout, f"wrong PSK learned the export:\n{r}")


def case_recording_over_tls(tmp):
    """[record] on the server sees TLS clients' requests like any others."""
    nbd = import_nbd()
    pki = Pki(tmp)
    path = os.path.join(tmp, "trace.json")
    d = Daemon(tmp, config=pki.config(extra=f'[record]\npath = "{path}"\n'))
    h = nbd.NBD()
    h.set_tls(nbd.TLS_REQUIRE)
    h.set_tls_certificates(pki.client)
    h.connect_tcp("127.0.0.1", str(d.port))
    h.pwrite(b"x" * 4096, 0)
    h.flush()
    h.pread(4096, 0)
    h.shutdown()
    d.stop()
    with open(path) as f:
        ops = [op["op"]["type"] for op in json.load(f)["ops"]]
    for t in ("Write", "Flush", "Read"):
        check(t in ops, f"{t} not recorded: {ops}")


def case_qemu_img_x509(tmp):
    """qemu-img with tls-creds-x509 (its own GnuTLS code, not libnbd): convert in, compare."""
    pki = Pki(tmp)
    src = os.path.join(tmp, "src.img")
    with open(src, "wb") as f:
        f.write(os.urandom(8 * MIB))
    with Daemon(tmp, config=pki.config()) as d:
        obj = f"tls-creds-x509,id=tls0,dir={pki.client},endpoint=client"
        target = (f"driver=nbd,host=127.0.0.1,port={d.port},export=portalbd,"
                  f"tls-creds=tls0")
        r = run(["qemu-img", "info", "--output=json", "--object", obj, "--image-opts", target])
        check_eq(json.loads(r.stdout)["virtual-size"], 1 << 30, "qemu-img virtual size")
        run(["qemu-img", "convert", "-n", "--object", obj, "-f", "raw", src,
             "--target-image-opts", target])
        h_back = os.path.join(tmp, "back.img")
        run(["nbdcopy", nbds(d, pki.client), h_back])
        with open(src, "rb") as a, open(h_back, "rb") as b:
            check_eq(b.read(8 * MIB), a.read(), "qemu-img's writes read back")


def case_fio_tls(tmp):
    """fio's nbd engine (libnbd) takes an nbds:// URI: crc32c-verified random writes.
    fio does not let libnbd read files the URI names (tls-certificates=, tls-psk-file=:
    "local file access is not allowed"), so it can present a client certificate only
    from libnbd's default directory (/etc/pki/libnbd for root, not ours to write here).
    Hence encryption without client certificates: no tls_ca, tls-verify-peer=false."""
    pki = Pki(tmp)
    home = os.path.join(tmp, "home")  # no ~/.pki/libnbd to pick up
    os.makedirs(home)
    with Daemon(tmp, config=pki.config(ca=False), args=["--log-level", "debug"]) as d:
        out = os.path.join(tmp, "fio.json")
        uri = f"nbds://{d.address}/portalbd?tls-verify-peer=false"
        run(["fio", "--name=tls", "--ioengine=nbd", f"--uri={uri}",
             "--rw=randwrite", "--bs=4k", "--iodepth=16", "--numjobs=2", "--size=16m",
             "--offset_increment=16m", "--verify=crc32c", "--do_verify=1", "--verify_fatal=1",
             "--verify_dump=0", "--output-format=json", f"--output={out}"], cwd=tmp,
            timeout=300, env=dict(os.environ, HOME=home))
        with open(out) as f:
            text = f.read()
        doc = json.loads(text[text.index("{"):])
        for j in doc["jobs"]:
            check_eq(j["error"], 0, "fio job error")
            check_eq(j["write"]["io_bytes"], 16 * MIB, "bytes written")
            check_eq(j["read"]["io_bytes"], 16 * MIB, "bytes verified")
        check(d.log().count("TLS established") >= 2, f"fio's connections not TLS:\n{d.log()}")


# --- Clients without the right credentials ---------------------------------------------------


def case_no_or_wrong_certificate_learns_nothing(tmp):
    """No client certificate, or one another CA signed: the TLS handshake fails, the
    client sees no export list and reads nothing; the server logs why."""
    nbd = import_nbd()
    pki = Pki(tmp)
    with Daemon(tmp, config=pki.config()) as d:
        # Something to steal.
        h = nbd.NBD()
        h.set_tls(nbd.TLS_REQUIRE)
        h.set_tls_certificates(pki.client)
        h.connect_tcp("127.0.0.1", str(d.port))
        h.pwrite(b"secret" * 100, 0)
        h.flush()
        h.shutdown()
        for bad in (pki.no_cert_dir(tmp), pki.other_ca_dir(tmp)):
            r = run(["nbdinfo", "--list", "--json", nbds(d, bad, export="")],
                    check_exit=False)
            check(r.returncode != 0, f"nbdinfo --list got in with {bad}:\n{r}")
            check("portalbd" not in r.stdout, f"export name leaked to {bad}:\n{r}")
            h = nbd.NBD()
            h.set_tls(nbd.TLS_REQUIRE)
            h.set_tls_certificates(bad)
            try:
                h.connect_tcp("127.0.0.1", str(d.port))
                data = h.pread(600, 0)
                raise AssertionError(f"connected and read {data[:12]!r} with {bad}")
            except nbd.Error:
                pass
        check(d.log().count("TLS handshake failed") >= 4,
              f"failed handshakes not logged:\n{d.log()}")


def case_raw_tls_client_without_certificate(tmp):
    """A client doing STARTTLS itself (Python's ssl) with no certificate: the handshake
    ends, not a byte of option data after it."""
    pki = Pki(tmp)
    with Daemon(tmp, config=pki.config()) as d:
        c = w.Conn(d.connect())
        c.start()
        check_eq(c.option(w.OPT_STARTTLS), [(w.REP_ACK, b"")], "STARTTLS")
        ctx = ssl.create_default_context(cafile=os.path.join(pki.ca, "ca-cert.pem"))
        ctx.check_hostname = False
        try:
            s = ctx.wrap_socket(c.s, server_hostname="localhost")
            t = w.Conn(s)
            replies = t.option(w.OPT_LIST)  # TLS 1.3: the refusal comes on first read
            raise AssertionError(f"listed exports without a certificate: {replies}")
        except (ssl.SSLError, w.Closed, ConnectionResetError, BrokenPipeError, OSError):
            pass


def case_plaintext_under_require(tmp):
    """tls=require: LIST, INFO, GO and unknown options get TLS_REQD, EXPORT_NAME hangs up,
    libnbd without TLS cannot connect; nothing is read."""
    nbd = import_nbd()
    pki = Pki(tmp)
    with Daemon(tmp, config=pki.config()) as d:
        with w.Conn(d.connect()) as c:
            c.start()
            for opt, data in ((w.OPT_LIST, b""), (w.OPT_INFO, w.info_request("portalbd", ())),
                              (w.OPT_GO, w.info_request("portalbd", ())),
                              (w.OPT_STRUCTURED_REPLY, b""), (99, b"x")):
                replies = c.option(opt, data)
                check_eq([t for t, _ in replies], [w.REP_ERR_TLS_REQD], f"option {opt}")
            c.send_option(w.OPT_EXPORT_NAME, b"portalbd")
            c.expect_closed()
        h = nbd.NBD()
        h.set_tls(nbd.TLS_DISABLE)
        try:
            h.connect_tcp("127.0.0.1", str(d.port))
            raise AssertionError("a plaintext libnbd client connected under tls=require")
        except nbd.Error:
            pass
        r = run(["nbdinfo", "--list", f"nbd://{d.address}"], check_exit=False)
        check(r.returncode != 0 and "portalbd" not in r.stdout, f"plaintext --list:\n{r}")


def case_plaintext_under_on(tmp):
    """tls=on: a plaintext client still works; a TLS client gets TLS."""
    pki = Pki(tmp)
    with Daemon(tmp, config=pki.config(mode="on")) as d:
        doc = json.loads(run(["nbdinfo", "--json", d.uri()]).stdout)
        check_eq(doc["TLS"], False, "plaintext client")
        doc = json.loads(run(["nbdinfo", "--json", nbds(d, pki.client)]).stdout)
        check_eq(doc["TLS"], True, "TLS client")


def case_injected_plaintext_after_starttls(tmp):
    """Options sent behind STARTTLS before the handshake (a man in the middle's) end the
    connection instead of taking effect."""
    pki = Pki(tmp)
    with Daemon(tmp, config=pki.config(mode="on")) as d:
        with w.Conn(d.connect()) as c:
            c.start()
            c.send(struct.pack(">QII", w.IHAVEOPT, w.OPT_STARTTLS, 0) +
                   struct.pack(">QII", w.IHAVEOPT, w.OPT_STRUCTURED_REPLY, 0))
            c.expect_closed()
        check("data sent after STARTTLS" in d.log(), f"not logged:\n{d.log()}")


def case_stalled_tls_handshake_is_dropped(tmp):
    """A client that sends STARTTLS and then nothing holds its connection slot only until
    the handshake timeout (10 s), TLS handshake included."""
    pki = Pki(tmp)
    with Daemon(tmp, config=pki.config()) as d:
        with w.Conn(d.connect(), timeout=20) as c:
            c.start()
            check_eq(c.option(w.OPT_STARTTLS), [(w.REP_ACK, b"")], "STARTTLS")
            c.expect_closed(timeout=15)
        check("handshake timed out" in d.log(), f"timeout not logged:\n{d.log()}")


# --- Configuration ---------------------------------------------------------------------------


def start_fails(tmp, config, *needles):
    d = Daemon(tmp, config=config, start=False)
    try:
        d.start(ready_timeout=10)
    except AssertionError as e:
        msg = str(e)
        check("exited with 1" in msg, f"unexpected failure: {msg}")
        for n in needles:
            check(n in msg, f"start-up error lacks {n!r}:\n{msg}")
        return
    d.stop()
    raise AssertionError(f"portalbd started with a bad TLS config:\n{config}")


def case_config_errors(tmp):
    pki = Pki(tmp)
    s = pki.server
    start_fails(tmp, f'[nbd]\ntls = "on"\ntls_cert = "{tmp}/nope.pem"\n'
                f'tls_key = "{s}/server-key.pem"\n', "tls_cert", "nope.pem",
                "No such file or directory")
    os.chmod(f"{s}/server-key.pem", 0)
    if os.geteuid() != 0:  # root reads anything
        start_fails(tmp, pki.config(), "tls_key", "Permission denied")
    os.chmod(f"{s}/server-key.pem", 0o600)
    # A key that is not the certificate's.
    start_fails(tmp, f'[nbd]\ntls = "on"\ntls_cert = "{s}/server-cert.pem"\n'
                f'tls_key = "{pki.client}/client-key.pem"\n', "does not match")
    start_fails(tmp, f'[nbd]\ntls = "on"\ntls_cert = "{s}/server-key.pem"\n'
                f'tls_key = "{s}/server-key.pem"\n', "not a PEM certificate")
    start_fails(tmp, '[nbd]\ntls = "on"\n', "tls_cert and tls_key, or tls_psk_file")
    psk = make_psk(tmp)
    start_fails(tmp, pki.config(extra=f'tls_psk_file = "{psk}"\n'), "exclude each other")
    start_fails(tmp, '[nbd]\ntls = "maybe"\n', "nbd.tls")
    start_fails(tmp, f'[nbd]\ntls_cert = "{s}/server-cert.pem"\n', "nbd.tls_cert", '"off"')
    bad_psk = os.path.join(tmp, "bad.psk")
    with open(bad_psk, "w") as f:
        f.write("alice:00ff\nbob:xyz1\n")
    start_fails(tmp, f'[nbd]\ntls = "require"\ntls_psk_file = "{bad_psk}"\n', "line 2",
                "hexadecimal")


def case_network_address_warning(tmp):
    """One warning line when listening beyond loopback with TLS off; none with TLS on or on
    loopback."""
    pki = Pki(tmp)
    with Daemon(tmp, address="0.0.0.0:0") as d:
        check_eq(d.log().count("TLS is off"), 1, f"warning lines:\n{d.log()}")
    with Daemon(tmp, address="0.0.0.0:0", config=pki.config()) as d:
        check_eq(d.log().count("TLS is off"), 0, "warning with TLS on")
    with Daemon(tmp) as d:
        check_eq(d.log().count("TLS is off"), 0, "warning on loopback")


run_cases(globals(), tools=("openssl", "psktool", "nbdinfo", "nbdcopy", "qemu-img", "fio"))
