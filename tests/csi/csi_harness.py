"""Harness for the CSI tests: the real portalbd and portalbd-csi, and a gRPC client.

Builds on tests/interop/harness.py (cases, checks, child processes, Daemon, S3rver). The
CSI messages and stubs are generated from proto/csi/v1/csi.proto at import, with Debian's
protoc and grpc_python_plugin, into the build tree; python3-grpcio and python3-protobuf
run them.

    from csi_harness import Csi, csi, grpc
    def case_x(tmp):
        with Daemon(tmp) as d, Csi(tmp, d, role="controller") as c:
            reply = c.identity.GetPluginInfo(csi.GetPluginInfoRequest())
    run_cases(globals())
"""

import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(SOURCE, "tests", "interop"))

from harness import (Daemon, S3rver, Skip, build_dir, check, check_eq, portalctl,  # noqa: E402,F401
                     run, run_cases, spawn)

try:
    import grpc  # noqa: E402
except ImportError:  # python3-grpcio (scripts/setup.sh)
    print("SKIP: python3-grpcio is not installed")
    sys.exit(77)


def _generate_stubs():
    out = os.path.join(build_dir(), "gen", "python")
    proto = os.path.join(SOURCE, "proto", "csi", "v1", "csi.proto")
    stamp = os.path.join(out, "csi", "v1", "csi_pb2_grpc.py")
    if not os.path.exists(stamp) or os.path.getmtime(stamp) < os.path.getmtime(proto):
        os.makedirs(out, exist_ok=True)
        subprocess.run(["protoc", "-I", os.path.join(SOURCE, "proto"), f"--python_out={out}",
                        f"--grpc_python_out={out}",
                        "--plugin=protoc-gen-grpc_python=/usr/bin/grpc_python_plugin", proto],
                       check=True)
    sys.path.insert(0, out)


_generate_stubs()
from csi.v1 import csi_pb2 as csi  # noqa: E402
from csi.v1 import csi_pb2_grpc as csi_grpc  # noqa: E402

DRIVER_NAME = "portalbd.csi.portalbd.dev"


def csi_path():
    path = os.path.join(build_dir(), "portalbd-csi")
    check(os.access(path, os.X_OK), f"portalbd-csi binary not found at {path} (build first)")
    return path


class Csi:
    """A portalbd-csi process on a unix socket in `tmp`, talking to daemon `d`, with
    Identity, Controller and Node stubs (`identity`, `controller`, `node`)."""

    _count = 0

    def __init__(self, tmp, daemon, role="all", node_id="node-1", args=()):
        Csi._count += 1
        self.name = f"csi{Csi._count}"
        self.sock = os.path.join(tmp, f"{self.name}.sock")
        self.log_path = os.path.join(tmp, f"{self.name}.log")
        daemon_sock = daemon if isinstance(daemon, str) else daemon.ctl
        self.argv = [csi_path(), "--endpoint", f"unix://{self.sock}", "--role", role,
                     "--node-id", node_id, "--daemon-socket", daemon_sock, *args]
        self._log = open(self.log_path, "wb")
        self.proc = spawn(self.argv, stdout=self._log, stderr=subprocess.STDOUT,
                          stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not os.path.exists(self.sock):
            if self.proc.poll() is not None:
                raise AssertionError(f"portalbd-csi exited with {self.proc.returncode}\n"
                                     f"{self.log()}")
            check(time.monotonic() < deadline, f"portalbd-csi not listening\n{self.log()}")
            time.sleep(0.01)
        self.channel = grpc.insecure_channel(f"unix://{self.sock}")
        grpc.channel_ready_future(self.channel).result(timeout=10)
        self.identity = csi_grpc.IdentityStub(self.channel)
        self.controller = csi_grpc.ControllerStub(self.channel)
        self.node = csi_grpc.NodeStub(self.channel)

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stop(self, timeout=10):
        self.channel.close()
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            status = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"portalbd-csi did not exit on SIGTERM\n{self.log()}")
        self._log.close()
        check_eq(status, 0, f"portalbd-csi exit status\n{self.log()}")

    def __enter__(self):
        return self

    def __exit__(self, exc_type, _exc, _tb):
        if exc_type is None:
            self.stop()
        elif self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        return False


def expect_code(call, code, what):
    """Runs `call()` and checks that it fails with gRPC status `code`. Returns the error."""
    try:
        call()
    except grpc.RpcError as e:
        check(e.code() == code, f"{what}: want {code}, got {e.code()}: {e.details()}")
        return e
    raise AssertionError(f"{what}: want {code}, the call succeeded")
