#!/usr/bin/python3
"""qemu's NBD client (qemu-io, qemu-img) against portalbd: pattern writes and verified
reads at aligned and unaligned offsets, zeroes, discards, across connections."""

import json

from harness import Daemon, check, check_eq, run, run_cases

GIB, MIB = 1 << 30, 1 << 20


def qemu_io(uri, *commands, expect_ok=True):
    argv = ["qemu-io", "-f", "raw", uri]
    for c in commands:
        argv += ["-c", c]
    r = run(argv, check_exit=False)
    text = r.stdout + r.stderr
    if expect_ok:
        check(r.returncode == 0 and "verification failed" not in text and
              "error" not in text.lower(), f"qemu-io failed:\n{r}")
    return r


# (offset, length, pattern): aligned, unaligned, straddling blocks and MiB boundaries.
WRITES = [
    (0, MIB, 0xAB),
    (3 * MIB, 64 * 1024, 0x11),
    (513, 4097, 0xCD),
    (8 * MIB - 1, 2, 0x22),
    (16 * MIB + 4095, 4096 * 3 + 2, 0x33),
    (GIB - 512, 512, 0x44),
    (GIB + 7, 1, 0x55),
    (2 * GIB - 4096, 4096, 0x66),  # the last block of the device
]


def expected_regions():
    """Non-overlapping (offset, length, pattern) after WRITES, in order."""
    # 513+4097 overlaps 0..1M: the later write wins on [513, 4610).
    return [(0, 513, 0xAB), (513, 4097, 0xCD), (4610, MIB - 4610, 0xAB)] + [
        (o, n, p) for (o, n, p) in WRITES[1:] if o != 513]


def case_patterns(tmp):
    with Daemon(tmp, disk_size_gb=2) as d:
        uri = d.uri()
        qemu_io(uri, *[f"write -P {p:#x} {o} {n}" for o, n, p in WRITES])
        # A fresh connection reads every region back, and the gaps as zeroes.
        reads = [f"read -P {p:#x} {o} {n}" for o, n, p in expected_regions()]
        reads += [f"read -P 0 {MIB} {2 * MIB}", f"read -P 0 {GIB + 8} {MIB}",
                  f"read -P 0 {16 * MIB + 4095 + 3 * 4096 + 2} 100"]
        r = qemu_io(uri, *reads)
        check_eq(r.stdout.count("read "), len(reads), f"reads reported:\n{r}")
        # The check can fail: a wrong pattern is reported.
        r = qemu_io(uri, "read -P 0xab 513 10", expect_ok=False)
        check("Pattern verification failed" in r.stdout + r.stderr,
              f"qemu-io did not notice a wrong pattern:\n{r}")
        # Vectored and asynchronous I/O.
        qemu_io(uri, "writev -P 0x77 100000 4096 1000 3", "readv -P 0x77 100000 2000 3099",
                "aio_write -P 0x78 200000 65536", "aio_flush", "read -P 0x78 200000 65536")
        # Zeroes and discards are exact.
        z = 32 * MIB
        qemu_io(uri, f"write -P 0x99 {z} {MIB}", f"write -z {z + 100} 5000",
                f"discard {z + MIB - 1} 1", f"read -P 0x99 {z} 100", f"read -P 0 {z + 100} 5000",
                f"read -P 0x99 {z + 5100} {MIB - 5101}", f"read -P 0 {z + MIB - 1} 1", "flush")
        qemu_io(uri, f"read -P 0x99 {z + MIB - 2} 1", f"read -P 0 {z + MIB - 1} 1",
                f"read -P 0x99 {z + 5100} 16", f"read -P 0 {z + MIB} 4096")


def case_unix_socket(tmp):
    with Daemon(tmp, address=f"unix:{tmp}/nbd.sock", disk_size_gb=1) as d:
        uri = d.uri()
        check(uri.startswith("nbd+unix:///portalbd?socket="), uri)
        qemu_io(uri, "write -P 0x5e 12345 67890", "read -P 0x5e 12345 67890")
        qemu_io(uri, "read -P 0x5e 12345 67890", "read -P 0 0 12345")


def case_qemu_img(tmp):
    with Daemon(tmp, disk_size_gb=3) as d:
        r = run(["qemu-img", "info", "--output=json", d.uri()])
        info = json.loads(r.stdout)
        check_eq(info["virtual-size"], 3 * GIB, "qemu-img virtual size")
        check_eq(info["format"], "raw", "format")
        # qemu-img convert to the export and compare back.
        src = f"{tmp}/src.img"
        with open(src, "wb") as f:
            f.truncate(64 * MIB)
            for i in range(0, 64, 3):
                f.seek(i * MIB + i)
                f.write(bytes([i + 1]) * (MIB // 2))
        run(["qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", src, d.uri()])
        r = run(["qemu-img", "compare", "-f", "raw", "-F", "raw", src, d.uri()],
                check_exit=False)
        # compare: 0 identical, 1 different. The export is bigger (3 GiB); qemu-img checks
        # that the excess is zero unless --strict.
        check_eq(r.returncode, 0, f"qemu-img compare:\n{r}")
        qemu_io(d.uri(), "write -P 0x1 5M 1")
        r = run(["qemu-img", "compare", "-f", "raw", "-F", "raw", src, d.uri()],
                check_exit=False)
        check_eq(r.returncode, 1, f"qemu-img compare after a change:\n{r}")


if __name__ == "__main__":
    run_cases(globals(), tools=["qemu-io", "qemu-img"])
