"""s3-front (tools/s3-front): the latency and bandwidth front the S3 benchmarks put in
front of their server. It must add at least its latency to every request, hold each
connection to its cap, count requests and bytes by method, and pass bodies (and the Host
header SigV4 signs) through unchanged.

- Quick cases (no S3 server): an in-test object server (PUT stores, GET returns, with
  Content-Length or chunked bodies both ways) behind the front.
- s3_* cases: signed requests through the front to lib/s3/sigv4_check_server.py (checks
  every signature, so a changed Host or body fails) and to s3rver (curl --aws-sigv4, with
  its Expect: 100-continue, and a chunked PUT).
"""

import hashlib
import http.client
import http.server
import json
import os
import re
import subprocess
import threading
import time

import e2e
import harness
from e2e import check, check_eq
from harness import run_cases

MB = 1000 * 1000
EMPTY_SHA = hashlib.sha256(b"").hexdigest()


def front_path():
    path = os.path.join(harness.build_dir(), "s3-front")
    check(os.access(path, os.X_OK), f"s3-front not found at {path} (build it)")
    return path


class Front:
    """s3-front on a free port in front of 127.0.0.1:`upstream_port`."""

    def __init__(self, upstream_port, latency_ms=0, conn_mbps=0, stats_file=None):
        argv = [front_path(), "--listen", "127.0.0.1:0", "--upstream",
                f"127.0.0.1:{upstream_port}", "--latency-ms", str(latency_ms),
                "--conn-mbps", str(conn_mbps)]
        if stats_file:
            argv += ["--stats-file", stats_file]
        self.proc = harness.spawn(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True)
        line = self.proc.stdout.readline()
        m = re.match(r"s3-front: listening on 127\.0\.0\.1:(\d+)", line)
        check(m, f"unexpected first line from s3-front: {line!r}")
        self.port = int(m.group(1))

    def conn(self):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)

    def stats(self):
        c = self.conn()
        c.request("GET", "/__stats")
        r = c.getresponse()
        check_eq(r.status, 200, "/__stats status")
        out = json.loads(r.read())
        c.close()
        return out


class Handler(http.server.BaseHTTPRequestHandler):
    """A minimal object store: PUT keeps the body, GET returns it (chunked when the path
    ends in ?chunked), HEAD its length, DELETE forgets it."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else a body written after its head waits 40 ms
    objects = {}

    def log_message(self, *args):
        pass

    def key(self):
        return self.path.split("?", 1)[0]

    def body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", ""):
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b""):
                        pass
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def do_PUT(self):
        Handler.objects[self.key()] = self.body()
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self):
        data = Handler.objects.get(self.key())
        if data is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        if self.path.endswith("?chunked"):
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(0, len(data), 100_000):
                part = data[i:i + 100_000]
                self.wfile.write(b"%x;ext=1\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\nx-trailer: 1\r\n\r\n")
        else:
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    def do_HEAD(self):
        data = Handler.objects.get(self.key(), b"")
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))  # and no body: HEAD
        self.end_headers()

    def do_DELETE(self):
        Handler.objects.pop(self.key(), None)
        self.send_response(204)
        self.end_headers()


def object_server(handler=Handler):
    Handler.objects = {}
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def request(conn, method, path, body=None, chunked=False):
    t0 = time.monotonic()
    if chunked:
        conn.request(method, path, body=iter([body[i:i + 65536]
                                              for i in range(0, len(body), 65536)]),
                     encode_chunked=True)
    else:
        conn.request(method, path, body=body)
    r = conn.getresponse()
    data = r.read()
    return r.status, data, time.monotonic() - t0


def case_bodies_and_counters(tmp):
    srv = object_server()
    stats_file = os.path.join(tmp, "stats.json")
    f = Front(srv.server_port, stats_file=stats_file)
    c = f.conn()  # one keep-alive connection for all of it
    sizes = [0, 1, 4096, 1 << 20, 3 * (1 << 20) + 7]
    put_bytes = get_bytes = 0  # bodies sent and received through the front
    for i, n in enumerate(sizes):
        body = os.urandom(n)
        for chunked in (False, True):
            key = f"/b/k{i}{'c' if chunked else ''}"
            status, _, _ = request(c, "PUT", key, body, chunked=chunked)
            check_eq(status, 200, f"PUT {key}")
            check_eq(Handler.objects[key], body, f"stored {key} ({n} bytes, chunked={chunked})")
            put_bytes += n
            for suffix in ("", "?chunked"):
                status, data, _ = request(c, "GET", key + suffix)
                check_eq(status, 200, f"GET {key}{suffix}")
                check(data == body, f"GET {key}{suffix}: {len(data)} bytes back, not the {n} put")
                get_bytes += n
        status, data, _ = request(c, "HEAD", f"/b/k{i}")
        check_eq((status, data), (200, b""), "HEAD")
    status, _, _ = request(c, "DELETE", "/b/k0")
    check_eq(status, 204, "DELETE")
    status, _, _ = request(c, "GET", "/b/k0")
    check_eq(status, 404, "GET after DELETE")
    s = f.stats()
    print(f"  stats: {s}")
    m = s["methods"]
    check_eq(m["PUT"]["requests"], 2 * len(sizes), "PUT requests")
    check_eq(m["GET"]["requests"], 4 * len(sizes) + 1, "GET requests")
    check_eq(m["HEAD"]["requests"], len(sizes), "HEAD requests")
    check_eq(m["DELETE"]["requests"], 1, "DELETE requests")
    # Content-Length bodies count exactly; chunked ones with their framing (a little more).
    check(put_bytes <= m["PUT"]["bytes_in"] <= put_bytes + 4096,
          f"PUT bytes_in {m['PUT']['bytes_in']}, bodies {put_bytes}")
    check(get_bytes <= m["GET"]["bytes_out"] <= get_bytes + 8192,
          f"GET bytes_out {m['GET']['bytes_out']}, bodies {get_bytes}")
    check_eq(m["HEAD"]["bytes_out"], 0, "HEAD bytes_out")
    check_eq(s["status"], {"2xx": 7 * len(sizes) + 1, "4xx": 1}, "status classes")
    check(s["connections"] == 2, f"connections {s['connections']} (1 + the stats one)")
    c.close()
    f.proc.send_signal(subprocess.signal.SIGUSR1)
    deadline = time.monotonic() + 10
    while not os.path.exists(stats_file) and time.monotonic() < deadline:
        time.sleep(0.02)
    with open(stats_file) as fh:
        check_eq(json.load(fh)["methods"], m, "stats file after SIGUSR1")


def case_latency(tmp):
    srv = object_server()
    Handler.objects["/b/x"] = b"x" * 100
    for latency_ms in (0, 50, 120):
        f = Front(srv.server_port, latency_ms=latency_ms)
        c = f.conn()
        times = [request(c, "GET", "/b/x")[2] for _ in range(5)]
        times += [request(f.conn(), "HEAD", "/b/x")[2] for _ in range(3)]  # new connections
        print(f"  latency {latency_ms} ms: requests took "
              + " ".join(f"{t * 1e3:.1f}" for t in times) + " ms")
        check(min(times) >= latency_ms / 1e3,
              f"a request took {min(times) * 1e3:.1f} ms with latency {latency_ms} ms")
        if latency_ms:
            check(sorted(times)[len(times) // 2] < latency_ms / 1e3 + 0.1,
                  "median far above the latency")


def case_bandwidth_cap(tmp):
    srv = object_server()
    size = 6 * MB
    Handler.objects["/b/big"] = os.urandom(size)
    f = Front(srv.server_port, conn_mbps=10)
    # One connection: at most 10 MB/s each way (the first 256 KiB write may go at once).
    for method in ("GET", "PUT"):
        body = os.urandom(size) if method == "PUT" else None
        status, _, t = request(f.conn(), method, "/b/big", body)
        check_eq(status, 200, method)
        print(f"  {method} of {size / MB:.0f} MB at 10 MB/s: {t:.2f} s")
        check(t >= (size - 256 * 1024) / (10 * MB), f"{method} beat the cap: {t:.2f} s")
    # The cap is per connection: three in parallel together go three times as fast.
    times = []

    def get():
        times.append(request(f.conn(), "GET", "/b/big")[2])

    threads = [threading.Thread(target=get) for _ in range(3)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - t0
    print(f"  3 GETs in parallel: {wall:.2f} s ({' '.join(f'{t:.2f}' for t in times)})")
    check(min(times) >= (size - 256 * 1024) / (10 * MB), "a parallel GET beat the cap")
    check(wall < 2 * size / (10 * MB), f"3 connections took {wall:.2f} s: the cap is shared")


class IdleClosingHandler(Handler):
    timeout = 0.2  # closes a connection idle for 0.2 s, as s3rver does after 5 s


def case_upstream_idle_close(tmp):
    """The server closing an idle connection does not close the client's: the front
    opens a new one for the next request (which may already be waiting out its latency
    when the server closes)."""
    srv = object_server(IdleClosingHandler)
    Handler.objects["/b/x"] = b"abc"
    for latency_ms in (0, 150):
        f = Front(srv.server_port, latency_ms=latency_ms)
        c = f.conn()
        for pause in (0, 0.5, 0.1, 0.5):
            time.sleep(pause)
            status, data, _ = request(c, "GET", "/b/x")
            check_eq((status, data), (200, b"abc"), f"GET after {pause} s idle")
        check_eq(f.stats()["connections"], 2, "client connections (1 + the stats one)")


def curl_sigv4(user, region, *args):
    return ["curl", "-sS", "--fail-with-body", "--aws-sigv4", f"aws:amz:{region}:s3",
            "--user", user, *args]


def case_s3_sigv4(tmp):
    """Every request signed, and checked by a server that verifies each signature."""
    harness.require_tools("curl")
    s = e2e.SigV4Server(tmp)
    f = Front(s.port, latency_ms=5)
    user = f"{s.ACCESS_KEY}:{s.SECRET_KEY}"
    for n in (0, 4096, 2 * (1 << 20) + 1):  # 2 MiB: curl sends Expect: 100-continue
        path = os.path.join(tmp, f"obj{n}")
        with open(path, "wb") as fh:
            fh.write(os.urandom(n))
        sha = hashlib.sha256(open(path, "rb").read()).hexdigest()
        url = f"http://127.0.0.1:{f.port}/vol/k{n}"
        harness.run(curl_sigv4(user, s.REGION, "-H", f"x-amz-content-sha256: {sha}", "-T",
                               path, url))
        harness.run(curl_sigv4(user, s.REGION, "-H", f"x-amz-content-sha256: {EMPTY_SHA}",
                               "-o", path + ".back", url))
        check(open(path, "rb").read() == open(path + ".back", "rb").read(), f"{n} bytes back")
    check_eq(s.failures(), [], "signature failures at the server")
    m = f.stats()["methods"]
    check_eq((m["PUT"]["requests"], m["GET"]["requests"]), (3, 3), "requests")


def case_s3_s3rver(tmp):
    """s3rver, as the benchmarks use it: signed curl PUT/GET and a chunked PUT."""
    harness.require_tools("curl")
    s3 = e2e.S3rver(tmp, buckets=("b",))
    f = Front(s3.port, latency_ms=5, conn_mbps=150)
    user = "S3RVER:S3RVER"
    for n in (1, 1 << 20, 5 * (1 << 20) + 3):
        path = os.path.join(tmp, f"obj{n}")
        with open(path, "wb") as fh:
            fh.write(os.urandom(n))
        sha = hashlib.sha256(open(path, "rb").read()).hexdigest()
        url = f"http://127.0.0.1:{f.port}/b/k{n}"
        harness.run(curl_sigv4(user, "us-east-1", "-H", f"x-amz-content-sha256: {sha}", "-T",
                               path, url))
        harness.run(curl_sigv4(user, "us-east-1", "-H", f"x-amz-content-sha256: {EMPTY_SHA}",
                               "-o", path + ".back", url))
        check(open(path, "rb").read() == open(path + ".back", "rb").read(), f"{n} bytes back")
        # The same through stdin: curl sends it chunked (no length known in advance).
        with open(path, "rb") as fh:
            p = subprocess.run(curl_sigv4(user, "us-east-1", "-H",
                                          "x-amz-content-sha256: UNSIGNED-PAYLOAD", "-T", "-",
                                          url + "c"), stdin=fh, capture_output=True, timeout=60)
        check_eq(p.returncode, 0, f"chunked PUT: {p.stderr!r} {p.stdout!r}")
        harness.run(curl_sigv4(user, "us-east-1", "-H", f"x-amz-content-sha256: {EMPTY_SHA}",
                               "-o", path + ".back", url + "c"))
        check(open(path, "rb").read() == open(path + ".back", "rb").read(),
              f"{n} bytes back after a chunked PUT")
    m = f.stats()["methods"]
    check_eq((m["PUT"]["requests"], m["GET"]["requests"]), (6, 6), "requests")


run_cases(globals())
