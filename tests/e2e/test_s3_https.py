"""portalbd on s3:// over HTTPS with a private CA: stunnel4 in front of s3rver, with a CA
and server certificates made here by the openssl CLI.

- the right CA, from AWS_CA_BUNDLE or from [storage] ca_file (which wins over the
  variable): portalbd starts, writes, flushes and reads back over https://, the objects
  land in s3rver, and a restart reads them again;
- no CA (the system store does not know ours), a wrong CA, and a certificate for another
  host name: exit status 1 and one line naming the certificate problem, within seconds;
- a CA file that cannot be read: one line naming the path;
- never plain HTTP: a TLS failure is never retried as http://, and AWS_CA_BUNDLE does not
  make an http:// endpoint acceptable without AWS_ALLOW_HTTP.
"""

import os
import shutil
import subprocess
import time

import e2e
import harness
from e2e import S3rver, check
from harness import run_cases, skip, spawn


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(d, name):
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
            f"/CN={name}", "-keyout", f"{name}.key", "-out", f"{name}.pem", cwd=d)
    return os.path.join(d, f"{name}.pem")


def make_cert(d, name, ca, san):
    """A server certificate `name`.pem/.key for subjectAltName `san`, signed by `ca`."""
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout",
            f"{name}.key", "-out", f"{name}.csr", cwd=d)
    with open(os.path.join(d, f"{name}.ext"), "w") as f:
        f.write(f"subjectAltName = {san}\nextendedKeyUsage = serverAuth\n")
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
            "-CAcreateserial", "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.pem",
            cwd=d)
    return os.path.join(d, f"{name}.pem"), os.path.join(d, f"{name}.key")


class Pki:
    """Two CAs; a certificate for 127.0.0.1 and one for another name, both by `ca`."""

    def __init__(self, tmp):
        self.dir = os.path.join(tmp, "pki")
        os.makedirs(self.dir)
        self.ca = make_ca(self.dir, "ca")
        self.other_ca = make_ca(self.dir, "otherca")
        self.good = make_cert(self.dir, "s3", "ca", "IP:127.0.0.1,DNS:localhost")
        self.wrong_name = make_cert(self.dir, "elsewhere", "ca", "DNS:s3.elsewhere.example")


class Stunnel:
    """stunnel4 accepting TLS on 127.0.0.1:<free port>, forwarding to `port` in plain."""

    def __init__(self, tmp, port, cert, name="stunnel"):
        binary = shutil.which("stunnel4") or shutil.which("stunnel")
        if binary is None:
            skip("stunnel4 is not installed (scripts/setup.sh)")
        self.log_path = os.path.join(tmp, f"{name}.log")
        for _ in range(3):
            self.port = harness.free_port()
            conf = os.path.join(tmp, f"{name}.conf")
            with open(conf, "w") as f:
                f.write(f"foreground = yes\npid =\noutput = {self.log_path}\ndebug = 5\n"
                        f"[s3]\naccept = 127.0.0.1:{self.port}\nconnect = 127.0.0.1:{port}\n"
                        f"cert = {cert[0]}\nkey = {cert[1]}\n")
            self.proc = spawn([binary, conf], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
            if e2e.wait_port(self.port, 10, self.proc):
                return
            self.proc.kill()
            self.proc.wait()
        raise AssertionError("stunnel did not start")

    @property
    def endpoint(self):
        return f"https://127.0.0.1:{self.port}"

    def log(self):
        try:
            with open(self.log_path) as f:
                return f.read()
        except FileNotFoundError:
            return ""


def https_env(s3, front, **extra):
    """s3rver's credentials with the TLS front as endpoint and no AWS_ALLOW_HTTP."""
    e = s3.env(AWS_ENDPOINT_URL=front.endpoint, **extra)
    e.pop("AWS_ALLOW_HTTP", None)
    return e


def write_config(tmp, extra=""):
    cfg = os.path.join(tmp, "portalbd.toml")
    with open(cfg, "w") as f:
        f.write(f'[storage]\nurl = "s3://vol/e2e"\ncache_dir = "{tmp}/cache"\n'
                f"unsafe_no_fencing = true\n{extra}")
    return cfg


def start_fails(tmp, env, extra=""):
    """portalbd refusing to start: (its one line, seconds)."""
    argv = [harness.portalbd_path(), "--config", write_config(tmp, extra), "--address",
            "127.0.0.1:0", "--socket", os.path.join(tmp, "ctl")]
    t0 = time.monotonic()
    p = spawn(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
              env=env, text=True)
    try:
        out, _ = p.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        p.kill()
        out, _ = p.communicate()
        raise AssertionError(f"portalbd still running after 60 s:\n{out}")
    secs = time.monotonic() - t0
    print(f"  exit {p.returncode} after {secs:.2f} s: {out.strip()[:400]}", flush=True)
    check(p.returncode == 1, f"exit status {p.returncode}, expected 1:\n{out}")
    lines = [x for x in out.splitlines() if x.strip()]
    check(len(lines) == 1, f"expected one line of output, got {len(lines)}:\n{out}")
    check(lines[0].startswith("portalbd: error: "), f"not an error line: {lines[0]}")
    check(secs < 15, f"took {secs:.1f} s to refuse")
    return lines[0]


def expect_in(line, *parts):
    for part in parts:
        check(part in line, f"{part!r} not in: {line}")


def serve_and_check(tmp, s3, env, extra=""):
    """Starts portalbd, writes, flushes, reads back, restarts and reads again."""
    cfg_extra = extra

    def daemon():
        return harness.Daemon(tmp, config=open(write_config(tmp, cfg_extra)).read(), env=env,
                              ready_timeout=30)

    d = daemon()
    h = e2e.connect(d)
    data = os.urandom(64 * 1024)
    h.pwrite(data, 1 << 20)
    h.flush()
    harness.check_eq(h.pread(len(data), 1 << 20), data, "read back over https")
    h.shutdown()
    d.stop()
    check(any(k.startswith("e2e/seg/") for k in s3.keys("vol")),
          f"no segment reached s3rver: {s3.keys('vol')}")
    d = daemon()
    h = e2e.connect(d)
    harness.check_eq(h.pread(len(data), 1 << 20), data, "read after a restart over https")
    h.shutdown()
    d.stop()


def setup(tmp, cert="good"):
    pki = Pki(tmp)
    s3 = S3rver(tmp)
    front = Stunnel(tmp, s3.port, getattr(pki, cert))
    return pki, s3, front


def case_ca_bundle_env(tmp):
    pki, s3, front = setup(tmp)
    serve_and_check(tmp, s3, https_env(s3, front, AWS_CA_BUNDLE=pki.ca))


def case_ca_file_config_wins(tmp):
    pki, s3, front = setup(tmp)
    # The variable names the wrong CA; the file's key is the one used.
    env = https_env(s3, front, AWS_CA_BUNDLE=pki.other_ca)
    serve_and_check(tmp, s3, env, extra=f'ca_file = "{pki.ca}"\n')


def case_no_ca(tmp):
    _, s3, front = setup(tmp)
    line = start_fails(tmp, https_env(s3, front))
    expect_in(line, front.endpoint.split("//")[1], "SSL certificate problem",
              "TLS certificate not trusted")
    check(s3.keys("vol") == [], f"objects written: {s3.keys('vol')}")


def case_wrong_ca(tmp):
    pki, s3, front = setup(tmp)
    line = start_fails(tmp, https_env(s3, front, AWS_CA_BUNDLE=pki.other_ca))
    expect_in(line, "SSL certificate problem", "TLS certificate not trusted")
    line = start_fails(tmp, https_env(s3, front), extra=f'ca_file = "{pki.other_ca}"\n')
    expect_in(line, "SSL certificate problem", "TLS certificate not trusted")


def case_wrong_host_name(tmp):
    pki, s3, front = setup(tmp, cert="wrong_name")
    line = start_fails(tmp, https_env(s3, front, AWS_CA_BUNDLE=pki.ca))
    expect_in(line, "127.0.0.1", "TLS certificate not trusted")
    check("subject name" in line or "host name" in line, f"no host name problem in: {line}")


def case_unreadable_ca_file(tmp):
    _, s3, front = setup(tmp)
    missing = os.path.join(tmp, "no-such-ca.pem")
    line = start_fails(tmp, https_env(s3, front, AWS_CA_BUNDLE=missing))
    expect_in(line, f"CA bundle {missing}", "cannot be read")
    line = start_fails(tmp, https_env(s3, front), extra=f'ca_file = "{missing}"\n')
    expect_in(line, f"CA bundle {missing}", "cannot be read")


def case_never_plain_http(tmp):
    pki, s3, front = setup(tmp)
    # A failed TLS start: stunnel saw TLS handshakes only; s3rver got no plain request
    # through some other path (nothing was written).
    start_fails(tmp, https_env(s3, front, AWS_CA_BUNDLE=pki.other_ca))
    check(s3.keys("vol") == [], f"objects written: {s3.keys('vol')}")
    # A CA does not make plain http:// acceptable.
    env = s3.env(AWS_CA_BUNDLE=pki.ca)
    env.pop("AWS_ALLOW_HTTP")
    line = start_fails(tmp, env)
    expect_in(line, "plain HTTP", "AWS_ALLOW_HTTP")


if __name__ == "__main__":
    run_cases(globals(), tools=["openssl"])
