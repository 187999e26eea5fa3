#!/usr/bin/python3
"""nbdcopy: 1 GiB of random data into the export over several connections, back out
again, compared with cmp. Then a sparse copy: holes stay holes and read as zero."""

import json
import os
import shutil
import time

from harness import Daemon, check_eq, run, run_cases

GIB, MIB = 1 << 30, 1 << 20


def random_file(path, size):
    """Incompressible pseudo-random bytes: AES-CTR keystream via openssl when present
    (several times faster than os.urandom here), else os.urandom."""
    key = os.urandom(16).hex()
    if shutil.which("openssl"):
        print(f"random data: openssl aes-128-ctr key {key}")
        run(["sh", "-c", f"openssl enc -aes-128-ctr -K {key} -iv {'0' * 32} -in /dev/zero "
             f"2>/dev/null | head -c {size} > '{path}'"], timeout=300)
        check_eq(os.path.getsize(path), size, "size of the random file")
        return
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 16 * MIB)
            f.write(os.urandom(n))
            left -= n


def case_copy_1gib(tmp):
    src, back = f"{tmp}/src.img", f"{tmp}/back.img"
    t = time.monotonic()
    random_file(src, GIB)
    print(f"1 GiB of random data: {time.monotonic() - t:.1f} s")
    with Daemon(tmp, disk_size_gb=1) as d:  # exactly the file's size (no --length in 1.14)
        t0 = time.monotonic()
        # Into the export: 4 connections (multi-conn), many requests in flight each.
        run(["nbdcopy", "--connections=4", "--requests=32", "--flush", src, d.uri()],
            timeout=600)
        t1 = time.monotonic()
        run(["nbdcopy", "--connections=4", d.uri(), back], timeout=600)
        t2 = time.monotonic()
        print(f"1 GiB in: {t1 - t0:.1f} s, out: {t2 - t1:.1f} s")
        check_eq(os.path.getsize(back), GIB, "size of the copy")
        t = time.monotonic()
        run(["cmp", src, back], timeout=600)
        print(f"cmp: {time.monotonic() - t:.1f} s")
        # Random data has no zero blocks: all of it is data.
        r = run(["nbdinfo", "--map", "--json", d.uri()])
        ext = json.loads(r.stdout)
        check_eq([(x["offset"], x["length"], x["type"]) for x in ext], [(0, GIB, 0)],
                 "allocation map after the copy")
    os.unlink(back)
    os.unlink(src)


def case_sparse_copy(tmp):
    """A sparse source: nbdcopy writes data and zeroes the rest (WRITE_ZEROES / TRIM);
    the copy back out matches, and the map shows the holes."""
    src, back = f"{tmp}/sparse.img", f"{tmp}/back.img"
    with open(src, "wb") as f:
        f.truncate(GIB)
        for i in range(0, 1024, 64):
            f.seek(i * MIB + 12345)
            f.write(os.urandom(MIB))
    with Daemon(tmp, disk_size_gb=1) as d:
        # Pre-fill the export so that the copy must really zero what the source lacks.
        fill = f"{tmp}/fill.img"
        with open(fill, "wb") as f:
            for _ in range(16):
                f.write(b"\xee" * (16 * MIB))
        run(["nbdcopy", fill, d.uri()], timeout=300)
        os.unlink(fill)
        run(["nbdcopy", src, d.uri()], timeout=300)
        run(["nbdcopy", d.uri(), back], timeout=300)
        run(["cmp", src, back])
        r = run(["nbdinfo", "--map", "--json", "--totals", d.uri()])
        totals = {x["type"]: x["size"] for x in json.loads(r.stdout)}
        check_eq(totals.get(0, 0), 16 * (MIB + 4096), f"data after a sparse copy: {totals}")


if __name__ == "__main__":
    run_cases(globals(), tools=["nbdcopy", "nbdinfo", "cmp"])
