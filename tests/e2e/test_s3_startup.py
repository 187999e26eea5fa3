"""portalbd at start on s3://: refuses what it must with one clear line, and promptly.

- s3rver ignores If-None-Match: without `[storage] unsafe_no_fencing = true` portalbd
  refuses it (creating nothing); with it, starts and warns loudly.
- A missing bucket, an unreachable endpoint (closed port, unresolvable name, a server
  that accepts connections and never answers), plain HTTP without AWS_ALLOW_HTTP, and
  refused credentials each end the process with exit status 1 and exactly one line of
  output, not a stack of retries.

Credentials: s3rver checks only that the access key id exists, so a wrong key id is
tested on s3rver; a wrong secret (and a wrong session token) on sigv4_check_server.py,
which verifies every signature with botocore, beside a control with the right ones; and
all three on Ceph RGW, a real S3 server (`rgw_*`).
"""

import os
import re
import socket
import subprocess
import time

import e2e
import harness
from e2e import S3rver, SigV4Server, check
from harness import run_cases


def start_fails(tmp, env, url="s3://vol/e2e", unsafe=False, timeout=120):
    """Runs portalbd expecting it to refuse to start. Returns (output, seconds)."""
    cfg = os.path.join(tmp, "portalbd.toml")
    with open(cfg, "w") as f:
        f.write(f'[storage]\nurl = "{url}"\ncache_dir = "{tmp}/cache"\n')
        if unsafe:
            f.write("unsafe_no_fencing = true\n")
    argv = [harness.portalbd_path(), "--config", cfg, "--address", "127.0.0.1:0",
            "--socket", os.path.join(tmp, "ctl")]
    t0 = time.monotonic()
    p = harness.spawn(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                      stdin=subprocess.DEVNULL, env=env, text=True)
    try:
        out, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, _ = p.communicate()
        raise AssertionError(f"portalbd still running after {timeout} s:\n{out}")
    elapsed = time.monotonic() - t0
    print(f"  exit {p.returncode} after {elapsed:.2f} s: {out.strip()[:300]}", flush=True)
    check(p.returncode == 1, f"exit status {p.returncode}, expected 1:\n{out}")
    lines = [x for x in out.splitlines() if x.strip()]
    check(len(lines) == 1, f"expected one line of output, got {len(lines)}:\n{out}")
    check(lines[0].startswith("portalbd: error: "), f"not an error line: {lines[0]}")
    return lines[0], elapsed


def expect_in(line, *parts):
    for part in parts:
        check(part in line, f"{part!r} not in: {line}")


# --- conditional writes ---------------------------------------------------------------


def case_s3rver_refused_without_unsafe(tmp):
    s3 = S3rver(tmp)
    line, secs = start_fails(tmp, s3.env())
    expect_in(line, "ignores conditional writes", "unsafe_no_fencing = true", "s3://vol/e2e")
    check(secs < 10, f"took {secs:.1f} s")
    check(s3.keys("vol") == [], f"a refused start left objects behind: {s3.keys('vol')}")


def case_s3rver_unsafe_warns_and_serves(tmp):
    st = e2e.Storage(tmp, "s3rver")
    d = st.daemon()
    warn = [x for x in d.log().splitlines() if "WARN" in x and "WITHOUT FENCING" in x]
    check(len(warn) == 1, "no (or repeated) WITHOUT FENCING warning:\n" + d.log())
    expect_in(warn[0], "unsafe_no_fencing = true", "never run two portalbd")
    h = e2e.connect(d)
    h.pwrite(b"s3" * 2048, 8192)
    h.flush()
    h.shutdown()
    d.stop()
    d = st.daemon()
    h = e2e.connect(d)
    harness.check_eq(h.pread(4096, 8192), b"s3" * 2048, "data after a restart on s3rver")
    h.shutdown()
    d.stop()
    status = [x for x in d.log().splitlines() if " status " in x][-1]
    m = re.search(r"http_requests=(\d+) http_retries=(\d+)", status)
    check(m and int(m.group(1)) > 0 and m.group(2) == "0",
          "status line without HTTP request counts: " + status)


def case_sigv4_fences_without_unsafe(tmp):
    """A store that honours If-None-Match needs no flag and gets no warning."""
    st = e2e.Storage(tmp, "sigv4")
    d = st.daemon()
    check("WITHOUT FENCING" not in d.log(), "warned on a store that fences")
    d.stop()
    st.check_server()


# --- bucket, endpoint, transport ----------------------------------------------------------


def case_s3rver_missing_bucket(tmp):
    s3 = S3rver(tmp, buckets=("vol",))
    line, secs = start_fails(tmp, s3.env(), url="s3://no-such-bucket/e2e", unsafe=True)
    expect_in(line, "NotFound", "no-such-bucket", "the bucket does not exist")
    check(secs < 10, f"took {secs:.1f} s")


def case_closed_port(tmp):
    port = harness.free_port()  # nothing listens there
    env = e2e.clean_env(AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="y", AWS_REGION="us-east-1",
                        AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}", AWS_ALLOW_HTTP="true")
    line, secs = start_fails(tmp, env, unsafe=True)
    expect_in(line, "Unavailable", "cannot reach S3", f"127.0.0.1:{port}")
    check(secs < 15, f"took {secs:.1f} s")


def case_unresolvable_host(tmp):
    env = e2e.clean_env(AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="y", AWS_REGION="us-east-1",
                        AWS_ENDPOINT_URL="http://portalbd-e2e.invalid:9000", AWS_ALLOW_HTTP="true")
    line, secs = start_fails(tmp, env, unsafe=True)
    expect_in(line, "Unavailable", "cannot reach S3", "portalbd-e2e.invalid")
    check(secs < 30, f"took {secs:.1f} s")


def case_slow_silent_server(tmp):
    """A server that accepts connections and never answers: one line, after the client's
    stall timeout (30 s) for each of the start-up check's two attempts."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)  # the kernel completes handshakes; nobody reads or answers
        env = e2e.clean_env(AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="y",
                            AWS_REGION="us-east-1",
                            AWS_ENDPOINT_URL=f"http://127.0.0.1:{s.getsockname()[1]}",
                            AWS_ALLOW_HTTP="true")
        line, secs = start_fails(tmp, env, unsafe=True, timeout=150)
    expect_in(line, "Unavailable", "cannot reach S3")
    check(secs < 90, f"took {secs:.1f} s")


def case_plain_http_not_allowed(tmp):
    s3 = S3rver(tmp)
    env = s3.env()
    del env["AWS_ALLOW_HTTP"]
    line, _ = start_fails(tmp, env, unsafe=True)
    expect_in(line, "plain HTTP", "AWS_ALLOW_HTTP=true")


# --- credentials ----------------------------------------------------------------------------


def case_s3rver_unknown_access_key(tmp):
    s3 = S3rver(tmp)
    line, secs = start_fails(tmp, s3.env(AWS_ACCESS_KEY_ID="AKIDNOSUCHKEY"), unsafe=True)
    expect_in(line, "PermissionDenied", "403", "InvalidAccessKeyId", "AWS_ACCESS_KEY_ID")
    check(secs < 10, f"took {secs:.1f} s")


def case_sigv4_wrong_secret(tmp):
    srv = SigV4Server(tmp)
    line, secs = start_fails(tmp, srv.env(AWS_SECRET_ACCESS_KEY="not-the-secret"))
    expect_in(line, "PermissionDenied", "403", "SignatureDoesNotMatch", "AWS_SECRET_ACCESS_KEY")
    check(secs < 10, f"took {secs:.1f} s")
    check(srv.failures(), "the server saw no badly signed request")


def case_sigv4_wrong_region(tmp):
    """A signature scoped to another region is refused too (S3 would redirect or answer
    AuthorizationHeaderMalformed; this server answers 403): still one line."""
    srv = SigV4Server(tmp)
    line, _ = start_fails(tmp, srv.env(AWS_REGION="us-east-1"))
    expect_in(line, "403")


def case_sigv4_right_credentials(tmp):
    """Control for the cases above: the same server and settings with the right secret
    start, and every request portalbd made was correctly signed."""
    st = e2e.Storage(tmp, "sigv4")
    d = st.daemon()
    h = e2e.connect(d)
    h.pwrite(b"k" * 4096, 0)
    h.flush()
    h.shutdown()
    d.stop()
    st.check_server()


# --- on a real S3 server (Ceph RGW) ----------------------------------------------------------


def case_rgw_errors_are_one_line(tmp):
    """Ceph RGW's own answers to a wrong secret, an unknown key and a missing bucket: one
    line each, naming what to fix; then the right settings start with fencing on."""
    gw = e2e.Rgw(tmp)
    # RGW's error documents have no Message: no empty ": " before the hint (errors.cc).
    line, secs = start_fails(tmp, gw.env(AWS_SECRET_ACCESS_KEY="not-the-secret"))
    expect_in(line, "PermissionDenied", "HTTP 403 SignatureDoesNotMatch (check",
              "AWS_SECRET_ACCESS_KEY")
    check(secs < 10, f"took {secs:.1f} s")
    line, secs = start_fails(tmp, gw.env(AWS_ACCESS_KEY_ID="AKIDNOSUCHKEY"))
    expect_in(line, "PermissionDenied", "HTTP 403 InvalidAccessKeyId (check", "AWS_ACCESS_KEY_ID")
    check(secs < 10, f"took {secs:.1f} s")
    line, secs = start_fails(tmp, gw.env(), url="s3://no-such-bucket/e2e")
    expect_in(line, "NotFound", "no-such-bucket", "the bucket does not exist")
    check(secs < 10, f"took {secs:.1f} s")
    check(gw.keys("vol") == [], f"refused starts left objects behind: {gw.keys('vol')}")
    config = f'[storage]\nurl = "s3://vol/e2e"\ncache_dir = "{tmp}/cache"\n'
    d = harness.Daemon(tmp, config=config, env=gw.env(), ready_timeout=30)
    check("WITHOUT FENCING" not in d.log(), "warned on a store that fences")
    d.stop()


if __name__ == "__main__":
    run_cases(globals())
