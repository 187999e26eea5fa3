"""Shared pieces of the end-to-end suites: object-store servers, storage setups for
portalbd, and a block model that knows which contents a crash may leave.

Builds on tests/interop/harness.py (processes die with the script, temp dirs, case
selection, exit codes 0/1/77). Servers started here:

- s3rver (.deps/s3rver, installed by scripts/setup.sh; $PORTALBD_S3RVER overrides): a real
  S3 server in Node that ignores If-None-Match, so portalbd needs unsafe_no_fencing on it;
- lib/s3/sigv4_check_server.py: a small in-memory S3 look-alike that verifies every SigV4
  signature with botocore and honours If-None-Match (so portalbd fences on it);
- Ceph's RADOS Gateway (rgw.py: one monitor, one memstore OSD and radosgw, started here
  in a few seconds): a real S3 implementation that verifies signatures and payload hashes
  and honours If-None-Match atomically (fencing on).

Both listen on 127.0.0.1 with a free port; missing tools make the script exit 77.
"""

import os
import random
import re
import shutil
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "interop"))

import harness  # noqa: E402
from harness import check, check_eq, skip, spawn  # noqa: E402,F401
from rgw import Rgw  # noqa: E402

SOURCE_DIR = os.path.abspath(os.path.join(HERE, "..", ".."))
BLOCK = 4096


def wait_port(port, timeout_s, proc=None):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def clean_env(**extra):
    """Our environment without AWS_* settings or proxies (libcurl honours http_proxy),
    plus `extra`."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("AWS_") and not k.lower().endswith("_proxy")}
    env.update({k: str(v) for k, v in extra.items()})
    return env


# --- Object-store servers ----------------------------------------------------------------


class S3rver:
    """s3rver on 127.0.0.1:<free port> with `buckets` created, data in tmp."""

    def __init__(self, tmp, buckets=("vol",)):
        script = os.environ.get("PORTALBD_S3RVER") or os.path.join(
            SOURCE_DIR, ".deps", "s3rver", "node_modules", "s3rver", "bin", "s3rver.js")
        if shutil.which("node") is None:
            skip("node is not installed (scripts/setup.sh)")
        if not os.path.exists(script):
            skip(f"s3rver is not installed at {script} (scripts/setup.sh)")
        self.data_dir = os.path.join(tmp, "s3rver-data")
        os.makedirs(self.data_dir, exist_ok=True)
        self.log_path = os.path.join(tmp, "s3rver.log")
        env = dict(os.environ, NODE_OPTIONS="--openssl-legacy-provider")
        for _ in range(3):  # a free port can be taken before s3rver binds it
            self.port = harness.free_port()
            argv = ["node", script, "--directory", self.data_dir, "--address", "127.0.0.1",
                    "--port", str(self.port), "--silent"]
            for b in buckets:
                argv += ["--configure-bucket", b]
            with open(self.log_path, "ab") as log:
                self.proc = spawn(argv, stdout=log, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, env=env)
            if wait_port(self.port, 20, self.proc):
                return
            self.proc.kill()
            self.proc.wait()
        with open(self.log_path) as f:
            raise AssertionError("s3rver did not start:\n" + f.read()[-3000:])

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.port}"

    def env(self, **overrides):
        """The environment portalbd needs to use this server."""
        e = dict(AWS_ACCESS_KEY_ID="S3RVER", AWS_SECRET_ACCESS_KEY="S3RVER",
                 AWS_REGION="us-east-1", AWS_ENDPOINT_URL=self.endpoint, AWS_ALLOW_HTTP="true")
        e.update(overrides)
        return clean_env(**e)

    def keys(self, bucket):
        """Object keys in `bucket` (from s3rver's directory layout)."""
        root = os.path.join(self.data_dir, bucket)
        out = []
        suffix = "._S3rver_object"
        for d, _, files in os.walk(root):
            for f in files:
                if f.endswith(suffix):
                    out.append(os.path.relpath(os.path.join(d, f[:-len(suffix)]), root))
        return sorted(out)

    def remove_torn_object(self, bucket, key):
        """s3rver streams a PUT's body into the object file and writes the object's
        metadata only when the body is complete; a client killed mid-upload leaves the
        partial object listed and readable (S3 never shows a torn PUT; it also rejects a
        body that does not match x-amz-content-sha256, which s3rver does not check).
        If `key` is such a torn object (no metadata file), removes it, as the PUT never
        completed, and returns True."""
        path = os.path.join(self.data_dir, bucket, key)
        if not os.path.exists(path + "._S3rver_object"):
            return False
        if os.path.exists(path + "._S3rver_metadata.json"):
            return False  # a complete object: not s3rver's doing
        for suffix in ("._S3rver_object", "._S3rver_object.md5"):
            try:
                os.unlink(path + suffix)
            except FileNotFoundError:
                pass
        return True

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class SigV4Server:
    """lib/s3/sigv4_check_server.py: checks every signature, honours If-None-Match."""

    ACCESS_KEY = "AKIDE2ETEST"
    SECRET_KEY = "e2e-secret-key"
    REGION = "eu-west-3"

    def __init__(self, tmp):
        try:
            subprocess.run(["/usr/bin/python3", "-c", "import botocore"], check=True,
                           capture_output=True)
        except (OSError, subprocess.CalledProcessError):
            skip("python3-botocore is not installed for /usr/bin/python3")
        self.log_path = os.path.join(tmp, "sigv4-requests.log")
        script = os.path.join(SOURCE_DIR, "lib", "s3", "sigv4_check_server.py")
        for _ in range(3):
            self.port = harness.free_port()
            with open(os.path.join(tmp, "sigv4-server.out"), "ab") as out:
                self.proc = spawn(["/usr/bin/python3", script, "--port", str(self.port),
                                   "--access-key", self.ACCESS_KEY, "--secret-key",
                                   self.SECRET_KEY, "--region", self.REGION,
                                   "--log", self.log_path],
                                  stdout=out, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL)
            if wait_port(self.port, 20, self.proc):
                return
            self.proc.kill()
            self.proc.wait()
        raise AssertionError("sigv4_check_server.py did not start")

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.port}"

    def env(self, **overrides):
        e = dict(AWS_ACCESS_KEY_ID=self.ACCESS_KEY, AWS_SECRET_ACCESS_KEY=self.SECRET_KEY,
                 AWS_REGION=self.REGION, AWS_ENDPOINT_URL=self.endpoint, AWS_ALLOW_HTTP="true")
        e.update(overrides)
        return clean_env(**e)

    def failures(self):
        try:
            with open(self.log_path) as f:
                return [line for line in f if line.startswith("FAIL")]
        except FileNotFoundError:
            return []


# --- portalbd on a store --------------------------------------------------------------


class Storage:
    """Where a test's volume lives, and how to start portalbd on it.

    kind: "file" (file:// in tmp), "s3rver" (s3rver, unsafe_no_fencing), "sigv4"
    (sigv4_check_server.py, fencing on) or "rgw" (Ceph RGW, fencing on)."""

    def __init__(self, tmp, kind):
        self.tmp, self.kind = tmp, kind
        self.server = None
        self.env = clean_env()
        self.unsafe = False
        if kind == "file":
            self.url = "file://" + os.path.join(tmp, "store")
        elif kind == "s3rver":
            self.server = S3rver(tmp)
            self.url = "s3://vol/e2e"
            self.env = self.server.env()
            self.unsafe = True
        elif kind == "sigv4":
            self.server = SigV4Server(tmp)
            self.url = "s3://vol/e2e"
            self.env = self.server.env()
        elif kind == "rgw":
            self.server = Rgw(tmp)
            self.url = "s3://vol/e2e"
            self.env = self.server.env()
        else:
            raise ValueError(kind)

    def config(self, cache_dir, lsm=None, disk_size_gb=1):
        lines = ["[device]", f"disk_size_gb = {disk_size_gb}", "[storage]",
                 f'url = "{self.url}"', f'cache_dir = "{cache_dir}"']
        if self.unsafe:
            lines.append("unsafe_no_fencing = true")
        if lsm:
            lines.append("[lsm]")
            lines += [f"{k} = {v}" for k, v in lsm.items()]
        return "\n".join(lines) + "\n"

    def daemon(self, cache_dir=None, lsm=None, ready_timeout=30, **kw):
        cache_dir = cache_dir or os.path.join(self.tmp, "cache")
        for _ in range(3):
            try:
                return harness.Daemon(self.tmp, config=self.config(cache_dir, lsm),
                                      env=self.env, ready_timeout=ready_timeout, **kw)
            except AssertionError as e:
                if not self._repaired_torn_put(str(e)):
                    raise
        raise AssertionError("portalbd still refuses the volume after removing torn objects")

    def _repaired_torn_put(self, failure):
        """On s3rver only: a start refused because a segment is corrupt, where that
        segment is an s3rver torn upload (see S3rver.remove_torn_object), is retried
        once the torn object is gone. Anything else stays a failure."""
        if not isinstance(self.server, S3rver):
            return False
        m = re.search(r"Corruption: .*segment (seg/\d+\.seg)", failure)
        if not m:
            return False
        key = self.url[len("s3://vol/"):] + "/" + m.group(1)
        if not self.server.remove_torn_object("vol", key):
            return False
        print(f"  s3rver kept a torn upload of {m.group(1)} (killed mid-PUT); removed it",
              flush=True)
        return True

    def check_server(self):
        """For the signature-checking server: every request it saw was signed correctly."""
        if isinstance(self.server, SigV4Server):
            bad = self.server.failures()
            check(not bad, f"{len(bad)} requests failed the SigV4 check: {bad[:3]}")


def connect(daemon):
    nbd = harness.import_nbd()
    h = nbd.NBD()
    h.connect_uri(daemon.uri())
    return h


# --- The model ------------------------------------------------------------------------


class CrashModel:
    """Contents of the first `blocks` blocks of a device, as a crash may leave them.

    `base` is the content as of the last acknowledged FLUSH (durable); `cur` is the
    latest (what a read returns now). Every write, TRIM or zeroing since the last FLUSH
    adds the resulting block content to that block's versions. After a crash each block
    must hold its flushed content or one of the versions written since (DESIGN.md: no
    older than the last FLUSH, no torn blocks, no invented data)."""

    def __init__(self, blocks, seed):
        self.blocks = blocks
        self.size = blocks * BLOCK
        self.base = bytearray(self.size)
        self.cur = bytearray(self.size)
        self.since = {}  # block -> [contents written since the last flush]
        self.rng = random.Random(seed)

    def _record(self, offset, length):
        for b in range(offset // BLOCK, (offset + length + BLOCK - 1) // BLOCK):
            self.since.setdefault(b, []).append(bytes(self.cur[b * BLOCK:(b + 1) * BLOCK]))

    def write(self, offset, data):
        self.cur[offset:offset + len(data)] = data
        self._record(offset, len(data))

    def zero(self, offset, length):
        self.cur[offset:offset + length] = bytes(length)
        self._record(offset, length)

    def flush(self):
        self.base[:] = self.cur
        self.since.clear()

    def unflushed_blocks(self):
        return len(self.since)

    def read_all(self, h, chunk=4 << 20):
        out = bytearray()
        for off in range(0, self.size, chunk):
            out += h.pread(min(chunk, self.size - off), off)
        return out

    def verify_exact(self, h, what):
        check_eq(bytes(self.read_all(h)), bytes(self.cur), what)

    def verify_after_crash(self, h, what):
        """Checks every block against the crash rule, then adopts what the device shows
        as the new durable state. Returns (blocks holding flushed content, blocks holding
        a newer version) among the unflushed ones."""
        got = self.read_all(h)
        old = new = 0
        for b in range(self.blocks):
            blk = bytes(got[b * BLOCK:(b + 1) * BLOCK])
            flushed = bytes(self.base[b * BLOCK:(b + 1) * BLOCK])
            versions = self.since.get(b)
            if versions is None:
                if blk != flushed:
                    check_eq(blk, flushed, f"{what}: block {b} (flushed, not written since)")
                continue
            if blk == flushed:
                old += 1
            elif blk in versions:
                new += 1
            else:
                raise AssertionError(
                    f"{what}: block {b} holds data that was never written to it: "
                    f"{blk[:16]!r}..., flushed {flushed[:16]!r}..., "
                    f"{len(versions)} later versions {[v[:8] for v in versions[-3:]]}")
        self.base[:] = got
        self.cur[:] = got
        self.since.clear()
        return old, new

    # Random operations ---------------------------------------------------------------

    def random_data(self, n):
        # Random bytes: every version of every block is distinct, so a block that shows
        # another block's data or an older version is caught.
        return self.rng.randbytes(n)

    def random_op(self, h, nbd):
        r = self.rng.random()
        if r < 0.55:  # whole blocks
            n = self.rng.choice([1, 1, 2, 4, 16, 64])
            b = self.rng.randrange(self.blocks - n + 1)
            data = self.random_data(n * BLOCK)
            fua = self.rng.random() < 0.05
            h.pwrite(data, b * BLOCK, nbd.CMD_FLAG_FUA if fua else 0)
            self.write(b * BLOCK, data)
            if fua:  # FUA makes only this write durable; the model keeps it simple
                self._settle(b * BLOCK, len(data))
        elif r < 0.70:  # unaligned bytes (read-modify-write of edge blocks)
            n = self.rng.randrange(1, 3 * BLOCK)
            off = self.rng.randrange(self.size - n)
            data = self.random_data(n)
            h.pwrite(data, off)
            self.write(off, data)
        elif r < 0.78:  # a whole block of zero bytes (stored as a zero extent)
            n = self.rng.choice([1, 8])
            b = self.rng.randrange(self.blocks - n + 1)
            h.pwrite(bytes(n * BLOCK), b * BLOCK)
            self.write(b * BLOCK, bytes(n * BLOCK))
        elif r < 0.90:  # TRIM, sometimes unaligned
            n = self.rng.randrange(1, 64 * BLOCK)
            off = self.rng.randrange(self.size - n)
            if self.rng.random() < 0.5:
                off, n = off // BLOCK * BLOCK, max(BLOCK, n // BLOCK * BLOCK)
                off = min(off, self.size - n)
            h.trim(n, off)
            self.zero(off, n)
        else:  # WRITE_ZEROES
            n = self.rng.randrange(1, 32 * BLOCK)
            off = self.rng.randrange(self.size - n)
            h.zero(n, off, nbd.CMD_FLAG_NO_HOLE if self.rng.random() < 0.3 else 0)
            self.zero(off, n)

    def _settle(self, offset, length):
        """A FUA write's blocks: the written content is now durable for those blocks
        (earlier unflushed versions of them can no longer show after a crash)."""
        for b in range(offset // BLOCK, (offset + length + BLOCK - 1) // BLOCK):
            self.base[b * BLOCK:(b + 1) * BLOCK] = self.cur[b * BLOCK:(b + 1) * BLOCK]
            self.since.pop(b, None)
