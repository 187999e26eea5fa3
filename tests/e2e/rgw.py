"""A real S3 server for the tests: Ceph's RADOS Gateway (Debian 12: ceph-mon, ceph-osd,
radosgw, ceph-common; Ceph 16.2), started by the test itself in a few seconds.

One monitor, one OSD on memstore (objects in RAM) and radosgw, all on 127.0.0.1 with free
ports, every file (config, mon store, logs, sockets, pid files) under a temp dir; no
systemd, no /etc/ceph, no /var/lib/ceph. Each daemon runs in the foreground as a child of
the test (harness.spawn: it dies with the test) and is killed at stop(); memstore keeps
nothing on disk, so there is nothing to shut down cleanly. A user with fixed keys and the
requested buckets are created before the constructor returns.

Start-up, in order: ceph-mon --mkfs and ceph-mon (quorum); `ceph osd new` while
ceph-osd --mkfs runs; ceph-osd (boots, joins); radosgw (creates its pools, then listens);
radosgw-admin creates the user; the buckets. On the 2-core development machine
that took 5.0 s at best and up to 14 s while other builds ran; the constructor prints it.

What the trial that chose these settings found:
- cephx is off (auth_*_required = none): keys would only slow the start. Then radosgw
  waits for ever on authentication unless every messenger connection mode is `crc`
  (ms_*_mode), and msgr1 is off so that only v2 addresses exist.
- paxos propose interval = 0.05 (default 1 s): each pool radosgw creates is one proposal.
- One OSD: pool size 1 (mon_allow_pool_size_one), 8 PGs, no autoscaler, and CRUSH picks
  OSDs, not hosts (osd_crush_chooseleaf_type = 0).

As an S3 server (what tests meet, and docs/objstore.md):
- SigV4 signatures and x-amz-content-sha256 payload hashes are verified.
- PUT with If-None-Match: * is atomic: exactly one of racing creates wins, the others get
  412.
- If-Match matches only an unquoted ETag (a quoted one, as S3 and RFC 7232 write it,
  always fails with 412); racing If-Match PUTs may answer 500 instead of 412 (seen in
  the first trial, not since). portalbd sends no If-Match.
- CompleteMultipartUpload ignores If-None-Match (portalbd uses no multipart upload).

Command line: runs a command with a gateway up and PORTALBD_TEST_S3_* set (the C++
conformance suite reads them: lib/objstore/conformance_test.cc):
    /usr/bin/python3 tests/e2e/rgw.py [--bucket B] -- build/portal_tests "[rgw]"
Exit status: the command's, or 77 when Ceph is not installed.
"""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "interop"))

import harness  # noqa: E402
from harness import skip, spawn  # noqa: E402

BINARIES = ("ceph-mon", "ceph-osd", "radosgw", "radosgw-admin", "ceph")

CONF = """\
[global]
fsid = {fsid}
mon host = v2:127.0.0.1:{mon_port}
mon initial members = a
auth cluster required = none
auth service required = none
auth client required = none
ms bind msgr1 = false
ms cluster mode = crc
ms service mode = crc
ms client mode = crc
ms mon cluster mode = crc
ms mon service mode = crc
ms mon client mode = crc
run dir = {tmp}/run
admin socket = {tmp}/run/$name.asok
pid file = {tmp}/run/$name.pid
log file = {tmp}/log/$name.log
mon cluster log file = {tmp}/log/cluster.log
keyring = /dev/null
paxos propose interval = 0.05
mon allow pool size one = true
mon allow pool delete = true
mon data avail warn = 1
mon data avail crit = 0
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
[mon]
mon data = {tmp}/mon
[osd]
public addr = 127.0.0.1
cluster addr = 127.0.0.1
osd objectstore = memstore
osd data = {tmp}/osd
memstore device bytes = {memstore_bytes}
[client.rgw]
rgw frontends = beast endpoint=127.0.0.1:{rgw_port}
rgw data = {tmp}/rgw
"""


def available():
    """None when every Ceph program is installed, else what is missing."""
    missing = [b for b in BINARIES if shutil.which(b) is None]
    return f"{', '.join(missing)} not installed (scripts/setup.sh)" if missing else None


def s3_client(endpoint, access_key, secret_key, region):
    """A botocore S3 client (path-style), or a skip without python3-botocore."""
    try:
        import botocore.config  # noqa: PLC0415
        import botocore.session  # noqa: PLC0415
    except ImportError:
        skip("python3-botocore is not installed for /usr/bin/python3")
    return botocore.session.get_session().create_client(
        "s3", endpoint_url=endpoint, aws_access_key_id=access_key,
        aws_secret_access_key=secret_key, region_name=region,
        config=botocore.config.Config(s3={"addressing_style": "path"},
                                      retries={"max_attempts": 3}))


class Rgw:
    """A one-OSD Ceph cluster with radosgw on 127.0.0.1, data in RAM, files under tmp."""

    ACCESS_KEY = "AKIDRGWTEST"
    SECRET_KEY = "rgw-test-secret-key"
    REGION = "us-east-1"

    def __init__(self, tmp, buckets=("vol",), memstore_bytes=4 << 30, timeout_s=60):
        why = available()
        if why:
            skip(why)
        self.tmp = os.path.join(tmp, "rgw")
        self.procs = []
        t0 = time.monotonic()
        for attempt in range(3):  # a free port can be taken before a daemon binds it
            try:
                self._start(memstore_bytes, timeout_s)
                break
            except _PortTaken as e:
                self.stop()
                if attempt == 2:
                    raise AssertionError(f"RGW did not start: {e}") from None
        for b in buckets:
            self.client.create_bucket(Bucket=b)
        self.start_seconds = time.monotonic() - t0
        print(f"  RGW up on {self.endpoint} in {self.start_seconds:.1f} s", flush=True)

    # --- Start and stop ----------------------------------------------------------------

    def _start(self, memstore_bytes, timeout_s):
        shutil.rmtree(self.tmp, ignore_errors=True)
        for d in ("run", "log", "mon", "osd", "rgw"):
            os.makedirs(os.path.join(self.tmp, d))
        self.mon_port, self.port = harness.free_port(), harness.free_port()
        self.conf = os.path.join(self.tmp, "ceph.conf")
        with open(self.conf, "w") as f:
            f.write(CONF.format(fsid=uuid.uuid4(), mon_port=self.mon_port, tmp=self.tmp,
                                rgw_port=self.port, memstore_bytes=memstore_bytes))
        deadline = time.monotonic() + timeout_s
        self._run(["ceph-mon", "--mkfs", "-i", "a"], deadline)
        self._daemon(["ceph-mon", "-f", "-i", "a"], "mon.a")
        # The OSD's store is made while the monitor starts; `osd new` then also waits for
        # the monitor (the CLI's own connect retries) and gives the id 0.
        osd_uuid = str(uuid.uuid4())
        mkfs = self._start_run(["ceph-osd", "-i", "0", "--mkfs", "--no-mon-config",
                                "--osd-uuid", osd_uuid])
        try:
            osd_id = self._run(["ceph", "--connect-timeout", "20", "osd", "new", osd_uuid],
                               deadline).strip()
        finally:
            self._finish_run(mkfs, deadline)  # before a retry removes its directory
        if osd_id != "0":
            raise AssertionError(f"`ceph osd new` gave id {osd_id!r}, expected 0")
        self._daemon(["ceph-osd", "-f", "-i", "0"], "osd.0")
        self._daemon(["radosgw", "-f", "-n", "client.rgw"], "client.rgw")
        # botocore takes a while to import: meanwhile radosgw creates its pools.
        self.client = s3_client(self.endpoint, self.ACCESS_KEY, self.SECRET_KEY, self.REGION)
        while not _port_open(self.port, 0.1):
            for name, p in self.procs:
                if p.poll() is not None:
                    log = self.log(name)
                    if "Address already in use" in log:
                        raise _PortTaken(f"{name}: address in use")
                    raise AssertionError(f"{name} exited with {p.returncode}:\n{log[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"radosgw does not listen after {timeout_s} s:\n"
                                     + self.log("client.rgw")[-3000:])
        # Only now: run while radosgw started, radosgw-admin took up to 8 s (its notice of
        # the new user to radosgw's watchers waited out a timeout); after, well under 1 s.
        self._run(["radosgw-admin", "user", "create", "--uid", "test", "--display-name",
                   "portalbd tests", "--access-key", self.ACCESS_KEY, "--secret",
                   self.SECRET_KEY], deadline)

    def _run(self, argv, deadline):
        return self._finish_run(self._start_run(argv), deadline)

    def _start_run(self, argv):
        argv = [argv[0], "-c", self.conf] + argv[1:]
        return spawn(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                     stdin=subprocess.DEVNULL)

    def _finish_run(self, p, deadline):
        """Waits for a command of _start_run; its stdout."""
        what = " ".join(p.args)
        try:
            out, err = p.communicate(timeout=max(1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.communicate()
            raise AssertionError(f"{what} did not finish in time:\n"
                                 + self.log("mon.a")[-3000:]) from None
        if p.returncode != 0:
            if "Address already in use" in err + self.log("mon.a"):
                raise _PortTaken(f"{p.args[0]}: address in use")
            raise AssertionError(f"{what} exited with {p.returncode}:\n{out[-2000:]}{err[-2000:]}")
        return out

    def _daemon(self, argv, name):
        argv = [argv[0], "-c", self.conf] + argv[1:]
        with open(os.path.join(self.tmp, "log", name + ".out"), "ab") as out:
            p = spawn(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.procs.append((name, p))

    def log(self, name):
        """A daemon's log file and its stdout/stderr."""
        text = ""
        for suffix in (".log", ".out"):
            try:
                with open(os.path.join(self.tmp, "log", name + suffix), errors="replace") as f:
                    text += f.read()
            except FileNotFoundError:
                pass
        return text

    def stop(self):
        """Kills radosgw, the OSD and the monitor (memstore: nothing to flush)."""
        for _, p in reversed(self.procs):
            if p.poll() is None:
                p.kill()
        for _, p in self.procs:
            p.wait()
        self.procs = []

    # --- As an S3 server ---------------------------------------------------------------

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.port}"

    def env(self, **overrides):
        """The environment portalbd needs to use this gateway: ours without AWS_* settings
        or proxies (libcurl honours http_proxy), plus the gateway's."""
        e = {k: v for k, v in os.environ.items()
             if not k.startswith("AWS_") and not k.lower().endswith("_proxy")}
        e.update(AWS_ACCESS_KEY_ID=self.ACCESS_KEY, AWS_SECRET_ACCESS_KEY=self.SECRET_KEY,
                 AWS_REGION=self.REGION, AWS_ENDPOINT_URL=self.endpoint, AWS_ALLOW_HTTP="true")
        e.update({k: str(v) for k, v in overrides.items()})
        return e

    def keys(self, bucket, prefix=""):
        """Every object key in `bucket` under `prefix`."""
        out = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket,
                                                                          Prefix=prefix):
            out += [o["Key"] for o in page.get("Contents", [])]
        return out


class _PortTaken(Exception):
    pass


def _port_open(port, timeout_s):
    """Whether 127.0.0.1:port accepts a connection within timeout_s."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)


def main(argv):
    buckets = ["conformance"]
    if argv[:1] == ["--bucket"]:
        buckets, argv = [argv[1]], argv[2:]
    if argv[:1] != ["--"] or len(argv) < 2:
        print(__doc__)
        return 2
    try:
        tmp = tempfile.mkdtemp(prefix="portalbd-rgw-")
        harness._tmp_roots.append(tmp)
        gw = Rgw(tmp, buckets=buckets)
    except harness.Skip as e:
        print(f"SKIP: {e}", flush=True)
        return harness.SKIP
    env = dict(os.environ, PORTALBD_TEST_S3_ENDPOINT=gw.endpoint,
               PORTALBD_TEST_S3_ACCESS_KEY=gw.ACCESS_KEY,
               PORTALBD_TEST_S3_SECRET_KEY=gw.SECRET_KEY, PORTALBD_TEST_S3_REGION=gw.REGION,
               PORTALBD_TEST_S3_BUCKET=buckets[0])
    t0 = time.monotonic()
    status = subprocess.run(argv[1:], env=env).returncode
    print(f"rgw.py: command exited {status} after {time.monotonic() - t0:.1f} s "
          f"(RGW start {gw.start_seconds:.1f} s)", flush=True)
    gw.stop()
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
