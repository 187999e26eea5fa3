"""Harness for the interop tests: starts and stops the real portalbd, runs clients, reports.

Every test script is run by ctest with Debian's /usr/bin/python3 (the libnbd module lives
there) and PORTALBD_BUILD_DIR pointing at the build tree. A script:

    from harness import Daemon, check, require_tools, run_cases
    def case_something(tmp):          # tmp: a fresh directory for this case
        with Daemon(tmp) as d:        # portalbd on 127.0.0.1:<kernel-chosen port>
            out = run(["nbdinfo", "--json", d.uri()])
            check(..., "what went wrong")
    run_cases(globals())              # runs every case_* (or those selected on argv:
                                      # NAME, PREFIX*, ~NAME, ~PREFIX*)

Exit codes: 0 all cases passed, 1 a case failed, 77 (ctest SKIP_RETURN_CODE) a tool the
test needs is missing. Processes: every child is started with PR_SET_PDEATHSIG=SIGKILL,
recorded, and killed at exit, on SIGTERM/SIGINT and on failures, so that neither a
failing case nor ctest killing the script on timeout leaves a portalbd behind.
"""

import atexit
import ctypes
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback

SKIP = 77

# --- Results ---------------------------------------------------------------------------


class Skip(Exception):
    """Raised (or exit 77) when a required tool is missing."""


def skip(why):
    raise Skip(why)


def check(cond, message):
    if not cond:
        raise AssertionError(message)


def _short(v, limit=200):
    r = repr(v)
    return r if len(r) <= limit else f"{r[:limit]}... (length {len(v)})"


def check_eq(actual, expected, what):
    if actual == expected:
        return
    if isinstance(actual, (bytes, bytearray)) and isinstance(expected, (bytes, bytearray)):
        diff = next((i for i in range(min(len(actual), len(expected)))
                     if actual[i] != expected[i]), min(len(actual), len(expected)))
        raise AssertionError(
            f"{what}: {len(actual)} bytes, expected {len(expected)}; first difference at "
            f"+{diff}: got {_short(actual[diff:diff + 16])}, expected "
            f"{_short(expected[diff:diff + 16])}")
    raise AssertionError(f"{what}: expected {_short(expected)}, got {_short(actual)}")


def require_tools(*names):
    for name in names:
        if shutil.which(name) is None:
            skip(f"{name} is not installed")


def import_nbd():
    """The libnbd Python bindings (python3-libnbd), or a skip."""
    try:
        import nbd  # noqa: PLC0415
    except ImportError as e:
        skip(f"python3-libnbd is not available to {sys.executable}: {e}")
    return nbd


# --- Child processes -------------------------------------------------------------------

_children = []
_tmp_roots = []
_libc = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1


def _die_with_parent():
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def spawn(argv, **kwargs):
    """subprocess.Popen that dies with us and is killed at exit if still running."""
    p = subprocess.Popen(argv, preexec_fn=_die_with_parent, **kwargs)
    _children.append(p)
    return p


def kill_all_children():
    for p in _children:
        if p.poll() is None:
            try:
                p.kill()
            except ProcessLookupError:
                pass
    for p in _children:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
    _children.clear()


def _cleanup():
    kill_all_children()
    if not os.environ.get("PORTALBD_KEEP_TMP"):
        for d in _tmp_roots:
            shutil.rmtree(d, ignore_errors=True)


atexit.register(_cleanup)


def _on_signal(signum, _frame):
    print(f"harness: got signal {signum}, cleaning up", flush=True)
    sys.exit(128 + signum)  # runs atexit


for _sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(_sig, _on_signal)


class Result:
    def __init__(self, argv, returncode, stdout, stderr):
        self.argv, self.returncode, self.stdout, self.stderr = argv, returncode, stdout, stderr

    def __repr__(self):
        return (f"$ {' '.join(map(str, self.argv))}\nexit {self.returncode}\n"
                f"stdout:\n{self.stdout[-4000:]}\nstderr:\n{self.stderr[-4000:]}")


def run(argv, timeout=120, check_exit=True, input=None, env=None, cwd=None):
    """Runs a client to completion (killed on timeout). Fails unless it exits 0."""
    p = spawn([str(a) for a in argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
              stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL, env=env,
              cwd=cwd, text=True)
    try:
        out, err = p.communicate(input=input, timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        raise AssertionError(f"timed out after {timeout} s: {argv}\n{out}\n{err}")
    finally:
        if p in _children:
            _children.remove(p)
    r = Result(argv, p.returncode, out, err)
    if check_exit and p.returncode != 0:
        raise AssertionError(f"command failed:\n{r}")
    return r


# --- portalbd ---------------------------------------------------------------------------


def build_dir():
    d = os.environ.get("PORTALBD_BUILD_DIR")
    if not d:
        d = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "build")
    return os.path.abspath(d)


def portalbd_path():
    path = os.path.join(build_dir(), "portalbd")
    # The product itself missing is a failure, not a skip.
    check(os.access(path, os.X_OK), f"portalbd binary not found at {path} (build first)")
    return path


LISTENING_RE = re.compile(r"NBD server listening address=(\S+)")


class Daemon:
    """A portalbd process. By default on 127.0.0.1 with a kernel-chosen port (read back
    from its log), its control socket in `tmp`, memory:// storage.

    address: passed as --address unless None (then the config file or default decides).
    config: TOML text written to tmp/portalbd.toml and passed with --config.
    args: extra command-line arguments.
    env: the process environment (default: ours).
    """

    _count = 0

    def __init__(self, tmp, address="127.0.0.1:0", disk_size_gb=None, config=None,
                 args=(), start=True, ready_timeout=10, env=None):
        Daemon._count += 1
        self.tmp = tmp
        self.name = f"portalbd{Daemon._count}"
        self.log_path = os.path.join(tmp, f"{self.name}.log")
        self.ctl = os.path.join(tmp, f"{self.name}.ctl")  # the control socket
        self.env = env  # None: inherit ours
        self.argv = [portalbd_path(), "--socket", self.ctl]
        if config is not None:
            cfg = os.path.join(tmp, f"{self.name}.toml")
            with open(cfg, "w") as f:
                f.write(config)
            self.argv += ["--config", cfg]
        if address is not None:
            self.argv += ["--address", address]
        if disk_size_gb is not None:
            self.argv += ["--disk-size-gb", str(disk_size_gb)]
        self.argv += list(args)
        self.env = env
        self.proc = None
        self.address = None
        self.started_s = None
        if start:
            self.start(ready_timeout)

    def start(self, ready_timeout=10):
        self._log = open(self.log_path, "wb")
        t0 = time.monotonic()
        self.proc = spawn(self.argv, stdout=self._log, stderr=subprocess.STDOUT,
                          stdin=subprocess.DEVNULL, env=self.env)
        deadline = t0 + ready_timeout
        while True:
            m = LISTENING_RE.search(self.log())
            if m:
                self.address = m.group(1)
                self.started_s = time.monotonic() - t0
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"portalbd exited with {self.proc.returncode} during "
                                     f"startup: {self.argv}\n{self.log()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"portalbd not listening after {ready_timeout} s\n"
                                     f"{self.log()}")
            time.sleep(0.01)

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    @property
    def pid(self):
        return self.proc.pid

    @property
    def port(self):
        check(not self.address.startswith("unix:"), "daemon listens on a unix socket")
        return int(self.address.rsplit(":", 1)[1])

    @property
    def unix_path(self):
        check(self.address.startswith("unix:"), "daemon listens on TCP")
        return self.address[len("unix:"):]

    def uri(self, export="portalbd"):
        if self.address.startswith("unix:"):
            return f"nbd+unix:///{export}?socket={self.unix_path}"
        return f"nbd://{self.address}/{export}"

    def connect(self, timeout=10):
        """A plain socket connected to the daemon."""
        if self.address.startswith("unix:"):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(timeout)
            s.connect(self.unix_path)
        else:
            s = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return s

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def vm_rss_kib(self):
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise AssertionError("no VmRSS in /proc status")

    def wait(self, timeout):
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout=15, expect_status=0):
        """SIGTERM, wait; SIGKILL (and fail) if it does not exit in time. Checks the exit
        status unless expect_status is None. Returns the status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        status = self.wait(timeout)
        if status is None:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"portalbd did not exit within {timeout} s of SIGTERM\n"
                                 f"{self.log()[-3000:]}")
        self._log.close()
        if expect_status is not None and status != expect_status:
            raise AssertionError(f"portalbd exited with {status}, expected {expect_status}\n"
                                 f"{self.log()[-3000:]}")
        return status

    def kill9(self):
        self.proc.kill()
        self.proc.wait()
        self._log.close()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, _exc, _tb):
        if exc_type is None:
            self.stop()
        elif self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        return False


def portalctl_path():
    path = os.path.join(build_dir(), "portalctl")
    check(os.access(path, os.X_OK), f"portalctl binary not found at {path} (build first)")
    return path


def portalctl(d, *args, check_exit=True, timeout=120, env=None):
    """Runs portalctl against daemon `d` (or a socket path given as a str). Returns the
    Result; fails unless it exits 0 when check_exit."""
    sock = d if isinstance(d, str) else d.ctl
    return run([portalctl_path(), "--socket", sock, *args], timeout=timeout,
               check_exit=check_exit, env=env)


class S3rver:
    """s3rver (installed by scripts/setup.sh into <repo>/.deps/s3rver) on 127.0.0.1 with a
    free port and a data directory in `tmp`; a missing node or s3rver is a skip. It ignores
    If-None-Match, so portalbd needs [storage] unsafe_no_fencing = true against it."""

    def __init__(self, tmp, bucket="bucket"):
        script = os.environ.get("PORTALBD_S3RVER") or os.path.join(
            os.path.dirname(os.path.abspath(__file__)), "..", "..", ".deps", "s3rver",
            "node_modules", "s3rver", "bin", "s3rver.js")
        if shutil.which("node") is None:
            skip("node is not installed (s3rver needs it)")
        if not os.path.exists(script):
            skip(f"s3rver is not installed at {script} (run scripts/setup.sh)")
        self.bucket = bucket
        data = os.path.join(tmp, "s3rver")
        os.makedirs(data, exist_ok=True)
        env = dict(os.environ, NODE_OPTIONS="--openssl-legacy-provider")
        for _attempt in range(3):
            self.port = free_port()
            self.log = open(os.path.join(tmp, "s3rver.log"), "wb")
            self.proc = spawn(["node", script, "--directory", data, "--address", "127.0.0.1",
                               "--port", str(self.port), "--silent", "--configure-bucket",
                               bucket], stdout=self.log, stderr=subprocess.STDOUT, env=env)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                    return
                except OSError:
                    time.sleep(0.05)
            self.proc.kill()
            self.proc.wait()
        raise AssertionError("s3rver did not start")

    def env(self):
        """Environment for a portalbd that uses this s3rver."""
        return dict(os.environ, AWS_ENDPOINT_URL=f"http://127.0.0.1:{self.port}",
                    AWS_ALLOW_HTTP="true", AWS_ACCESS_KEY_ID="S3RVER",
                    AWS_SECRET_ACCESS_KEY="S3RVER", AWS_REGION="us-east-1")


def free_port():
    """A loopback TCP port that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- Running cases ------------------------------------------------------------------------


def run_cases(namespace, tools=(), argv=None):
    """Runs every function named case_* in `namespace` (those named on the command line,
    if any), each with its own temporary directory. `tools`: programs every case needs;
    if one is missing the whole script is skipped. Exits 0, 1 or 77."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        require_tools(*tools)
    except Skip as e:
        print(f"SKIP: {e}", flush=True)
        sys.exit(SKIP)
    cases = [(n[len("case_"):], f) for n, f in namespace.items()
             if n.startswith("case_") and callable(f)]
    # Selection: NAME, PREFIX* and ~NAME / ~PREFIX* (exclude), as Catch2 test specs.
    def matches(pattern, name):
        return name.startswith(pattern[:-1]) if pattern.endswith("*") else name == pattern
    known = [n for n, _ in cases]
    for a in argv:
        if not any(matches(a.lstrip("~"), n) for n in known):
            print(f"no case matches {a!r}; known: {sorted(known)}")
            sys.exit(2)
    include = [a for a in argv if not a.startswith("~")]
    exclude = [a[1:] for a in argv if a.startswith("~")]
    cases = [(n, f) for n, f in cases
             if (not include or any(matches(a, n) for a in include)) and
             not any(matches(a, n) for a in exclude)]
    root = tempfile.mkdtemp(prefix="portalbd-interop-")
    _tmp_roots.append(root)
    failed, skipped = [], []
    t_all = time.monotonic()
    for name, fn in cases:
        tmp = os.path.join(root, name)
        os.mkdir(tmp)
        t0 = time.monotonic()
        print(f"--- {name}", flush=True)
        try:
            fn(tmp)
            print(f"ok   {name} ({time.monotonic() - t0:.2f} s)", flush=True)
        except Skip as e:
            print(f"SKIP {name}: {e}", flush=True)
            skipped.append(name)
        except Exception:  # noqa: BLE001 - every failure is reported, then the next case
            traceback.print_exc()
            print(f"FAIL {name} ({time.monotonic() - t0:.2f} s)", flush=True)
            failed.append(name)
        finally:
            kill_all_children()  # nothing a case started outlives it
    total = time.monotonic() - t_all
    print(f"{len(cases) - len(failed) - len(skipped)} passed, {len(failed)} failed, "
          f"{len(skipped)} skipped in {total:.1f} s", flush=True)
    if failed:
        print("failed: " + " ".join(failed))
        sys.exit(1)
    if skipped and len(skipped) == len(cases):
        sys.exit(SKIP)
    if skipped:
        # A partial skip must not look like a full pass: fail loudly instead.
        print("some cases were skipped: " + " ".join(skipped))
        sys.exit(1)
    sys.exit(0)
