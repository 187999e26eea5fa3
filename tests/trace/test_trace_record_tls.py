#!/usr/bin/python3
"""trace-record with TLS on both of its sides: libnbd clients (nbdinfo, nbdcopy,
python3-libnbd) over nbds:// with a client certificate to trace-record (--tls require,
--tls-ca), which does STARTTLS with its own client certificate to portalbd (tls require,
tls_ca). The trace is the one a plaintext run records; a plaintext client and a client
without a certificate get nothing through the proxy. Certificates come from the openssl
CLI, as in tests/interop/test_tls.py."""

import filecmp
import json
import os
import socket
import sys

import tracetools as tt
from harness import Daemon, check, check_eq, import_nbd, run, run_cases

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "interop"))
import nbdwire as w  # noqa: E402

MIB = 1 << 20


from tls_certs import make_ca, sign  # noqa: E402


def copy_ca(ca, d):
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(ca, "ca-cert.pem")) as src, \
            open(os.path.join(d, "ca-cert.pem"), "w") as dst:
        dst.write(src.read())


class Pki:
    """One CA; a server certificate for 127.0.0.1 (portalbd's, and trace-record's towards
    its clients); client certificates for the libnbd clients and for trace-record."""

    def __init__(self, tmp):
        self.ca = make_ca(os.path.join(tmp, "ca"), "trace TLS test CA")
        self.ca_cert = os.path.join(self.ca, "ca-cert.pem")
        self.server = os.path.join(tmp, "server")
        sign(self.ca, self.server, "server", "localhost",
             "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
        self.client = os.path.join(tmp, "client")  # libnbd's directory layout
        sign(self.ca, self.client, "client", "client1", "extendedKeyUsage=clientAuth\n")
        copy_ca(self.ca, self.client)
        self.proxy = os.path.join(tmp, "proxy")  # trace-record's upstream identity
        sign(self.ca, self.proxy, "proxy", "trace-record", "extendedKeyUsage=clientAuth\n")
        self.nocert = os.path.join(tmp, "nocert")
        copy_ca(self.ca, self.nocert)

    def portalbd_config(self):
        s = self.server
        return (f'[nbd]\ntls = "require"\ntls_cert = "{s}/server-cert.pem"\n'
                f'tls_key = "{s}/server-key.pem"\ntls_ca = "{self.ca_cert}"\n')

    def recorder_args(self, upstream_cert=True):
        s, p = self.server, self.proxy
        args = ["--tls", "require", "--tls-cert", f"{s}/server-cert.pem", "--tls-key",
                f"{s}/server-key.pem", "--tls-ca", self.ca_cert,
                "--upstream-tls", "--upstream-tls-ca", self.ca_cert]
        if upstream_cert:
            args += ["--upstream-tls-cert", f"{p}/proxy-cert.pem",
                     "--upstream-tls-key", f"{p}/proxy-key.pem"]
        return args


def nbds(rec, certs):
    return f"nbds://{rec.address}/portalbd?tls-certificates={certs}"


def workload(uri):
    """A fixed mix through python3-libnbd; returns what the trace must hold."""
    nbd = import_nbd()
    h = nbd.NBD()
    h.set_tls(nbd.TLS_REQUIRE if uri.startswith("nbds") else nbd.TLS_DISABLE)
    h.set_uri_allow_local_file(True)  # tls-certificates=DIR
    h.add_meta_context("base:allocation")
    h.connect_uri(uri)
    for i in range(16):
        h.pwrite(bytes([i + 1]) * 65536, i * 65536, nbd.CMD_FLAG_FUA if i == 3 else 0)
    for i in range(8):
        check_eq(h.pread(4096, i * 65536), bytes([i + 1]) * 4096, "data read back")
    h.flush()
    h.trim(1 << 20, 0)
    h.zero(1 << 20, 2 << 20)
    h.block_status(1 << 20, 0, lambda *a: 0)
    h.shutdown()


def shape(trace):
    """Connection 1's ops without their timing: what must not depend on TLS."""
    return [(op["op"]["type"], op["op"].get("offset"), op["op"].get("length"), op.get("flags"),
             op["success"]) for op in trace["ops"] if op["conn"] == trace["ops"][0]["conn"]]


def case_both_sides_tls_same_trace_as_plaintext(tmp):
    """libnbd through trace-record with TLS on both sides records exactly the ops a
    plaintext run records; nbdinfo reports TLS; portalbd logs trace-record's certificate."""
    pki = Pki(tmp)
    with Daemon(tmp) as plain:
        rec = tt.Recorder(tmp, plain, "plain")
        workload(f"nbd://{rec.address}/portalbd")
        plain_trace = rec.stop()
    with Daemon(tmp, config=pki.portalbd_config()) as d:
        rec = tt.Recorder(tmp, d, "tls", args=pki.recorder_args())
        workload(nbds(rec, pki.client))  # connection 1
        doc = json.loads(run(["nbdinfo", "--json", nbds(rec, pki.client)]).stdout)
        check_eq(doc["TLS"], True, "nbdinfo sees TLS")
        check_eq(doc["exports"][0]["export-size"], 1 << 30, "export size through the proxy")
        trace = rec.stop()
        check("TLS with the upstream" in rec.log() and "TLS with the client" in rec.log(),
              f"TLS on both sides not logged:\n{rec.log()}")
    tt.check_trace_shape(trace)
    check_eq(shape(trace), shape(plain_trace), "TLS trace vs plaintext trace")
    check_eq(dict(tt.counts({"ops": [op for op in trace["ops"] if op["conn"] == 1]})),
             {"Write": 16, "Read": 8, "Flush": 1, "Trim": 1,
                                      "WriteZeroes": 1, "BlockStatus": 1}, "op counts")


def case_nbdcopy_through_tls_proxy(tmp):
    """nbdcopy writes 8 MiB through the proxy over TLS and reads it back unchanged; the
    trace holds every byte written and read."""
    pki = Pki(tmp)
    src = os.path.join(tmp, "src.bin")
    with open(src, "wb") as f:
        f.write(bytes((i * 131 + (i >> 9)) & 0xFF or 1 for i in range(8 * MIB)))
    back = os.path.join(tmp, "back.bin")
    with Daemon(tmp, config=pki.portalbd_config()) as d:
        rec = tt.Recorder(tmp, d, "copy", args=pki.recorder_args())
        uri = nbds(rec, pki.client)
        run(["nbdcopy", src, uri])
        r = run(["nbdinfo", "--size", uri])
        check_eq(int(r.stdout.strip()), 1 << 30, "size")
        # Read the first 8 MiB back through the proxy.
        nbd = import_nbd()
        h = nbd.NBD()
        h.set_uri_allow_local_file(True)
        try:
            h.connect_uri(uri)
        except Exception:
            print(rec.log()); print(d.log()); raise
        with open(back, "wb") as f:
            for off in range(0, 8 * MIB, MIB):
                f.write(h.pread(MIB, off))
        h.shutdown()
        trace = rec.stop()
    check(filecmp.cmp(src, back, shallow=False), "data read back through TLS differs")
    ops = trace["ops"]
    check(all(op["success"] for op in ops), "every op succeeded")
    written = sum(op["op"]["length"] for op in ops if op["op"]["type"] == "Write")
    check_eq(written, 8 * MIB, "bytes written in the trace")
    read = sum(op["op"]["length"] for op in ops if op["op"]["type"] == "Read")
    check(read >= 8 * MIB, f"bytes read in the trace: {read}")


def case_plaintext_and_certless_clients_refused(tmp):
    """Under --tls require: a plaintext client gets TLS_REQD for every option and a hang-up
    for EXPORT_NAME; libnbd without TLS and a client without a certificate read nothing;
    the upstream never sees them."""
    pki = Pki(tmp)
    nbd = import_nbd()
    with Daemon(tmp, config=pki.portalbd_config()) as d:
        rec = tt.Recorder(tmp, d, "refused", args=pki.recorder_args())
        host, port = rec.address.rsplit(":", 1)
        with w.Conn(socket.create_connection((host, int(port)), timeout=10)) as c:
            c.start()
            for opt, data in ((w.OPT_LIST, b""), (w.OPT_GO, w.info_request("portalbd", ())),
                              (w.OPT_STRUCTURED_REPLY, b"")):
                check_eq([t for t, _ in c.option(opt, data)], [w.REP_ERR_TLS_REQD],
                         f"option {opt}")
            c.send_option(w.OPT_EXPORT_NAME, b"portalbd")
            c.expect_closed()
        h = nbd.NBD()
        h.set_tls(nbd.TLS_DISABLE)
        try:
            h.connect_tcp(host, port)
            raise AssertionError("a plaintext libnbd client connected under --tls require")
        except nbd.Error:
            pass
        r = run(["nbdinfo", "--list", f"nbd://{rec.address}"], check_exit=False)
        check(r.returncode != 0 and "portalbd" not in r.stdout, f"plaintext --list:\n{r}")
        r = run(["nbdinfo", "--json", nbds(rec, pki.nocert)], check_exit=False)
        check(r.returncode != 0 and "export-size" not in r.stdout,
              f"a client without a certificate got in:\n{r}")
        trace = rec.stop()
        check("TLS handshake with the client failed" in rec.log(),
              f"certificate-less handshake not logged:\n{rec.log()}")
    check_eq(trace["ops"], [], "nothing recorded")


def case_upstream_refuses_proxy_without_certificate(tmp):
    """trace-record without --upstream-tls-cert in front of portalbd requiring client
    certificates: the upstream handshake fails, the client learns nothing; never a
    plaintext fallback."""
    pki = Pki(tmp)
    with Daemon(tmp, config=pki.portalbd_config()) as d:
        rec = tt.Recorder(tmp, d, "nocert", args=pki.recorder_args(upstream_cert=False))
        r = run(["nbdinfo", "--json", nbds(rec, pki.client)], check_exit=False)
        check(r.returncode != 0 and "export-size" not in r.stdout, f"client got in:\n{r}")
        trace = rec.stop()
        # TLS 1.3: trace-record's handshake completes before portalbd checks its (absent)
        # certificate; portalbd refuses it and the proxy sees the connection end.
        check("TLS handshake failed" in d.log(), f"portalbd did not refuse:\n{d.log()}")
    check_eq(trace["ops"], [], "nothing recorded")


def case_upstream_without_tls_is_an_error(tmp):
    """--upstream-tls in front of a plaintext server: the connection ends with the reason
    in the log (the server answers STARTTLS with an error); no plaintext fallback."""
    tt.need("nbdkit")
    pki = Pki(tmp)
    up = tt.nbdkit(tmp)
    rec = tt.Recorder(tmp, up, "plainup", args=pki.recorder_args()[8:] + [
        "--upstream-tls-hostname", "localhost"])
    r = run(["nbdinfo", "--json", f"nbd://{rec.address}/"], check_exit=False)
    check(r.returncode != 0, f"client got through:\n{r}")
    rec.stop()
    check("the upstream refused STARTTLS" in rec.log(), f"not logged:\n{rec.log()}")


def case_bad_tls_arguments(tmp):
    pki = Pki(tmp)
    base = [tt.binary("trace-record"), "--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:1",
            "--output", os.path.join(tmp, "t.json")]
    r = tt.run(base + ["--tls", "require"], check_exit=False, timeout=10)
    check(r.returncode == 1 and "--tls-cert" in r.stderr, f"require without cert:\n{r}")
    r = tt.run(base + ["--tls-cert", f"{pki.server}/server-cert.pem"], check_exit=False,
               timeout=10)
    check(r.returncode == 1 and "--tls on" in r.stderr, f"cert with tls off:\n{r}")
    r = tt.run(base + ["--tls", "on", "--tls-cert", f"{pki.server}/server-cert.pem",
                       "--tls-key", f"{pki.proxy}/proxy-key.pem"], check_exit=False, timeout=10)
    check(r.returncode == 1 and "does not match" in r.stderr, f"mismatched key:\n{r}")
    r = tt.run(base + ["--upstream-tls-ca", pki.ca_cert], check_exit=False, timeout=10)
    check(r.returncode != 0 and "--upstream-tls" in r.stderr, f"ca without the flag:\n{r}")
    r = tt.run(base + ["--upstream-tls", "--upstream-tls-ca", "/nonexistent.pem"],
               check_exit=False, timeout=10)
    check(r.returncode == 1 and "/nonexistent.pem" in r.stderr, f"missing CA file:\n{r}")
    check(not os.path.exists(os.path.join(tmp, "t.json")), "no trace file on bad arguments")


run_cases(globals(), tools=("openssl", "nbdinfo", "nbdcopy"))
