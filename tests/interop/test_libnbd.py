#!/usr/bin/python3
"""libnbd (python3-libnbd) against portalbd: every command, flag and error path.

Data is checked against a byte-array model of the region a case works in. The random
case prints its seed; PORTALBD_SEED=N replays it.
"""

import errno
import os
import random
import time

from harness import Daemon, check, check_eq, import_nbd, run_cases

KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30
BS = 4096
HOLE, ZERO = 1, 2  # base:allocation flags (NBD_STATE_HOLE, NBD_STATE_ZERO)

nbd = None  # imported in main, so that a missing module is a skip


def connect(d, structured=True, meta=True, strict=None, export="portalbd", full_info=False):
    h = nbd.NBD()
    h.set_full_info(full_info)
    h.set_request_structured_replies(structured)
    if meta:
        h.add_meta_context(nbd.CONTEXT_BASE_ALLOCATION)
    if strict is not None:
        h.set_strict_mode(strict)
    h.connect_uri(d.uri(export=export))
    check_eq(h.get_structured_replies_negotiated(), structured, "structured replies")
    check_eq(bool(h.can_df()), structured, "can_df (SEND_DF only with structured replies)")
    return h


def expect_error(fn, errnos, what):
    errnos = errnos if isinstance(errnos, (set, tuple, list)) else {errnos}
    try:
        fn()
    except nbd.Error as e:
        check(e.errnum in errnos,
              f"{what}: expected {[errno.errorcode[x] for x in errnos]}, got "
              f"{errno.errorcode.get(e.errnum, e.errnum)} ({e.string})")
        return e
    raise AssertionError(f"{what}: succeeded, expected an error")


def block_status(h, count, offset, flags=0):
    """[(length, flags)] of base:allocation."""
    got = []

    def cb(metacontext, off, entries, _err):
        check_eq(metacontext, nbd.CONTEXT_BASE_ALLOCATION, "context in block status reply")
        check_eq(off, offset, "block status reply offset")
        got.extend((entries[i], entries[i + 1]) for i in range(0, len(entries), 2))
        return 0

    h.block_status(count, offset, cb, flags)
    check(got, "block status returned no extents")
    check(all(n > 0 for n, _ in got), f"empty extent in {got}")
    return got


def merged(extents):
    out = []
    for n, f in extents:
        if out and out[-1][1] == f:
            out[-1] = (out[-1][0] + n, f)
        else:
            out.append((n, f))
    return out


class Region:
    """A window of the device and a model of its bytes."""

    def __init__(self, h, offset, size):
        self.h, self.offset, self.size = h, offset, size
        self.model = bytearray(size)

    def write(self, rel, data, flags=0):
        self.h.pwrite(bytes(data), self.offset + rel, flags)
        self.model[rel:rel + len(data)] = data

    def trim(self, rel, n, flags=0):
        self.h.trim(n, self.offset + rel, flags)
        self.model[rel:rel + n] = bytes(n)

    def zero(self, rel, n, flags=0):
        self.h.zero(n, self.offset + rel, flags)
        self.model[rel:rel + n] = bytes(n)

    def verify(self, rel=0, n=None, what="region"):
        n = self.size - rel if n is None else n
        got = self.h.pread(n, self.offset + rel)
        want = bytes(self.model[rel:rel + n])
        if got != want:
            i = next(i for i in range(n) if got[i] != want[i])
            raise AssertionError(f"{what}: byte {self.offset + rel + i} (region +{rel + i}) "
                                 f"is {got[i]:#04x}, expected {want[i]:#04x}")

    def check_allocation(self, structured):
        """Every extent claiming ZERO reads as zero."""
        if not structured:
            return
        pos = 0
        for n, f in block_status(self.h, self.size, self.offset):
            if f & ZERO:
                check(not any(self.model[pos:pos + n]),
                      f"extent +{pos}..+{pos + n} claims ZERO but holds data")
            pos += n
        check_eq(pos, self.size, "block status covers the region")


def rand_bytes(rng, n):
    return rng.randbytes(n)


# --- Data paths, with structured replies on and off ----------------------------------------


def io_suite(h, structured):
    rng = random.Random(1234)
    r = Region(h, 64 * MIB, 16 * MIB)

    # Whole-block writes, plain and FUA.
    r.write(0, rand_bytes(rng, MIB))
    r.write(2 * MIB, rand_bytes(rng, 64 * KIB), nbd.CMD_FLAG_FUA)
    r.verify(0, 3 * MIB, "after aligned writes")

    # Sparse: never-written space reads as zeroes, alone and next to data.
    check_eq(h.pread(8 * MIB, 512 * MIB), bytes(8 * MIB), "unwritten 8 MiB")
    r.write(5 * MIB + BS, rand_bytes(rng, BS))
    r.verify(4 * MIB, 4 * MIB, "data inside a hole")
    if structured:
        # Holes travel as OFFSET_HOLE chunks; with DF the reply is one data chunk.
        for flags in (0, nbd.CMD_FLAG_DF):
            chunks = []

            def chunk(sub, off, status, _err):
                chunks.append((off - r.offset - 4 * MIB, len(sub), status))
                return 0

            got = h.pread_structured(4 * MIB, r.offset + 4 * MIB, chunk, flags)
            check_eq(bytes(got), bytes(r.model[4 * MIB:8 * MIB]), f"READ with flags {flags}")
            want = ([(0, 4 * MIB, nbd.READ_DATA)] if flags else
                    [(0, MIB + BS, nbd.READ_HOLE), (MIB + BS, BS, nbd.READ_DATA),
                     (MIB + 2 * BS, 3 * MIB - 2 * BS, nbd.READ_HOLE)])
            check_eq(sorted(chunks), want, f"READ chunks with flags {flags}")

    # Unaligned: single bytes at block edges, inside data and inside holes.
    u = 8 * MIB
    r.write(u, b"\x11" * (3 * BS))
    for rel, val in ((u, 0xA4), (u + BS - 1, 0xA1), (u + BS, 0xA2), (u + 2 * BS - 1, 0xA3),
                     (u + 3 * BS - 1, 0xA5), (u + 3 * BS, 0xA6), (u + 5 * BS + 1, 0xA7)):
        r.write(rel, bytes([val]))
    r.verify(u - BS, 8 * BS, "1-byte writes at block edges")
    # A write straddling two blocks, and one spanning three with ragged ends.
    r.write(u + 2 * BS - 100, rand_bytes(rng, 200))
    r.write(u + 7 * BS + 1, rand_bytes(rng, 2 * BS + 5))
    r.verify(u - BS, 12 * BS, "straddling writes")
    # Unaligned reads.
    for rel, n in ((u + BS - 1, 1), (u + 3000, 5000), (u + 1, 3 * BS)):
        check_eq(h.pread(n, r.offset + rel), bytes(r.model[rel:rel + n]),
                 f"unaligned read +{rel} len {n}")

    # TRIM and WRITE_ZEROES are exact to the byte, with and without flags.
    cases = [
        ("trim", lambda rel, n: r.trim(rel, n)),
        ("trim+FUA", lambda rel, n: r.trim(rel, n, nbd.CMD_FLAG_FUA)),
        ("zero", lambda rel, n: r.zero(rel, n)),
        ("zero+NO_HOLE", lambda rel, n: r.zero(rel, n, nbd.CMD_FLAG_NO_HOLE)),
        ("zero+FAST_ZERO", lambda rel, n: r.zero(rel, n, nbd.CMD_FLAG_FAST_ZERO)),
        ("zero+FUA+NO_HOLE", lambda rel, n: r.zero(rel, n,
                                                  nbd.CMD_FLAG_FUA | nbd.CMD_FLAG_NO_HOLE)),
    ]
    base = 10 * MIB
    for name, op in cases:
        for start, n in ((100, 8000), (BS, 2 * BS), (BS - 1, 2), (5, 1), (BS + 7, 4 * BS - 9)):
            r.write(base, b"\x55" * (6 * BS))
            op(base + start, n)
            lo, hi = base + start, base + start + n
            got = h.pread(6 * BS + 2, r.offset + base - 1)
            check_eq(got[lo - base], 0x55 if lo > base else 0, f"{name}: byte before range")
            check_eq(got[lo - base + 1], 0, f"{name}: first byte of range")
            check_eq(got[hi - base], 0, f"{name}: last byte of range")
            check_eq(got[hi - base + 1], 0x55, f"{name}: byte after range")
            r.verify(base - BS, 8 * BS, f"{name} at +{start} len {n}")
            base += 8 * BS
    r.check_allocation(structured)

    h.flush()
    h.cache(MIB, r.offset)
    h.cache(1, r.offset + 7)
    r.verify(what="whole region at the end")


def case_io_structured(tmp):
    with Daemon(tmp, disk_size_gb=4) as d:
        h = connect(d, structured=True)
        io_suite(h, True)
        h.shutdown()


def case_io_simple(tmp):
    with Daemon(tmp, disk_size_gb=4) as d:
        h = connect(d, structured=False, meta=False)
        io_suite(h, False)
        h.shutdown()


def case_random_ops(tmp):
    """Random unaligned writes, trims and zeroes against the model; prints the seed."""
    seed = int(os.environ.get("PORTALBD_SEED", random.randrange(1 << 32)))
    print(f"seed={seed} (replay with PORTALBD_SEED={seed})")
    rng = random.Random(seed)
    with Daemon(tmp, disk_size_gb=1) as d:
        for structured in (True, False):
            h = connect(d, structured=structured, meta=structured)
            r = Region(h, (3 * MIB if structured else 7 * MIB), MIB)
            for i in range(400):
                op = rng.choice("wwwtzzr")
                rel = rng.randrange(r.size)
                n = min(rng.choice((1, 2, 511, 4095, 4096, 4097, 9000, 65536)), r.size - rel)
                if op == "w":
                    r.write(rel, rand_bytes(rng, n), rng.choice((0, nbd.CMD_FLAG_FUA)))
                elif op == "t":
                    r.trim(rel, n)
                elif op == "z":
                    r.zero(rel, n, rng.choice((0, nbd.CMD_FLAG_NO_HOLE)))
                lo = max(0, rel - 2 * BS)
                r.verify(lo, min(r.size, rel + n + 2 * BS) - lo, f"op {i} {op} +{rel} len {n}")
            r.verify(what="whole region")
            r.check_allocation(structured)
            h.shutdown()


# --- BLOCK_STATUS ------------------------------------------------------------------------


def case_block_status(tmp):
    with Daemon(tmp, disk_size_gb=4) as d:
        h = connect(d)
        check(h.can_meta_context(nbd.CONTEXT_BASE_ALLOCATION), "base:allocation not selected")
        b = 256 * MIB
        check_eq(block_status(h, MIB, b), [(MIB, HOLE | ZERO)], "unwritten")
        h.pwrite(b"\x01" * (2 * BS), b + 64 * KIB)
        check_eq(merged(block_status(h, MIB, b)),
                 [(64 * KIB, HOLE | ZERO), (2 * BS, 0), (MIB - 64 * KIB - 2 * BS, HOLE | ZERO)],
                 "after a write")
        h.trim(BS, b + 64 * KIB)
        check_eq(merged(block_status(h, MIB, b)),
                 [(64 * KIB + BS, HOLE | ZERO), (BS, 0), (MIB - 64 * KIB - 2 * BS, HOLE | ZERO)],
                 "after trimming the first data block")
        h.pwrite(b"\x02" * (4 * BS), b + 256 * KIB)
        h.zero(2 * BS, b + 256 * KIB, nbd.CMD_FLAG_NO_HOLE)
        ext = merged(block_status(h, 512 * KIB - 256 * KIB, b + 256 * KIB))
        check_eq(ext[0], (2 * BS, ZERO), "WRITE_ZEROES+NO_HOLE: zero, allocated")
        check_eq(ext[1], (2 * BS, 0), "data after the zeroed blocks")
        h.zero(BS, b + 256 * KIB + 2 * BS)
        ext = merged(block_status(h, 4 * BS, b + 256 * KIB))
        check(all(f & ZERO for _, f in ext[:2]) and ext[-1] == (BS, 0),
              f"WRITE_ZEROES without NO_HOLE must read as zero: {ext}")
        # A partial-block write makes its block data; a partial trim that leaves data in
        # the block must not claim ZERO. (A trim that zeroes every written byte may: the
        # block then does read as zeroes, and the server is allowed to know it.)
        h.pwrite(b"\x03", b + 512 * KIB + 10)
        h.pwrite(b"\x04", b + 512 * KIB + 200)
        check_eq(merged(block_status(h, 3 * BS, b + 512 * KIB - BS)),
                 [(BS, HOLE | ZERO), (BS, 0), (BS, HOLE | ZERO)], "1-byte writes in a hole")
        h.trim(100, b + 512 * KIB + 5)
        check_eq(block_status(h, BS, b + 512 * KIB)[0][1] & ZERO, 0,
                 "block with a partial trim claims ZERO although data remains")
        check_eq(h.pread(BS, b + 512 * KIB)[200], 4, "byte outside the trim kept")
        check_eq(h.pread(BS, b + 512 * KIB)[10], 0, "byte inside the trim zeroed")
        # Unaligned queries still answer from the right place.
        ext = block_status(h, 100, b + 512 * KIB + 1)
        check_eq(ext[0][1], 0, "unaligned query inside a data block")
        check(sum(n for n, _ in ext) <= 100, f"answer longer than the request: {ext}")
        # REQ_ONE: exactly one extent, no longer than asked.
        for off, n in ((b, MIB), (b + 64 * KIB + BS, MIB), (b + 7, 3)):
            full = merged(block_status(h, n, off))
            one = block_status(h, n, off, nbd.CMD_FLAG_REQ_ONE)
            check_eq(len(one), 1, f"REQ_ONE at {off} returned {one}")
            check(one[0][0] <= full[0][0] and one[0][1] == full[0][1],
                  f"REQ_ONE {one} disagrees with {full[0]}")
        # Beyond: the last byte of the device.
        check_eq(block_status(h, 1, 4 * GIB - 1), [(1, HOLE | ZERO)], "last byte")
        h.shutdown()


# --- Large device: 1 GiB TRIM, ~4 GiB BLOCK_STATUS ----------------------------------------


def case_large(tmp):
    size = 1024 * GIB
    with Daemon(tmp, disk_size_gb=1024) as d:
        h = connect(d)
        check_eq(h.get_size(), size, "size of a 1 TiB device")
        for start in (10 * GIB, 20 * GIB + 1):  # aligned, then unaligned by one byte
            edge = [start - BS, start, start + GIB // 2, start + GIB - BS, start + GIB]
            for off in edge:
                h.pwrite(b"\xee" * BS, off)
            t0 = time.monotonic()
            h.trim(GIB, start)
            check(time.monotonic() - t0 < 5, "a 1 GiB TRIM took over 5 s")
            check_eq(h.pread(BS, start - BS), b"\xee" * BS, "block before a 1 GiB TRIM")
            check_eq(h.pread(BS, start + GIB), b"\xee" * BS, "block after a 1 GiB TRIM")
            for off in edge[1:4]:
                check_eq(h.pread(BS, off), bytes(BS), f"inside 1 GiB TRIM at {off}")
            check_eq(h.pread(1, start - 1), b"\xee", "byte before the TRIM")
            check_eq(h.pread(1, start + GIB - 1), b"\x00", "last trimmed byte")
            if start % BS == 0:
                check_eq(merged(block_status(h, GIB, start)), [(GIB, HOLE | ZERO)],
                         "block status of a trimmed GiB")
        # ~4 GiB BLOCK_STATUS: no payload, so any 32-bit length is fine.
        n = 0xFFFFF000
        m = 100 * GIB
        check_eq(merged(block_status(h, n, m)), [(n, HOLE | ZERO)], "4 GiB of hole")
        h.pwrite(b"\x42" * BS, m + 2 * GIB)
        check_eq(merged(block_status(h, n, m)),
                 [(2 * GIB, HOLE | ZERO), (BS, 0), (n - 2 * GIB - BS, HOLE | ZERO)],
                 "4 GiB with one data block")
        check_eq(block_status(h, n, m, nbd.CMD_FLAG_REQ_ONE), [(2 * GIB, HOLE | ZERO)],
                 "4 GiB REQ_ONE")
        check_eq(merged(block_status(h, n, size - n)), [(n, HOLE | ZERO)], "last 4 GiB")
        # TRIM, CACHE and WRITE_ZEROES accept any 32-bit length.
        h.cache(0xFFFFFFFF, m)
        h.trim(0xFFFFFFFF, 200 * GIB)
        h.zero(0xFFFFFFFF, 300 * GIB + 1, nbd.CMD_FLAG_FAST_ZERO)
        # WRITE_ZEROES of ~4 GiB is O(1) too.
        h.zero(n, m, nbd.CMD_FLAG_NO_HOLE)
        check_eq(h.pread(BS, m + 2 * GIB), bytes(BS), "data block inside a 4 GiB zero")
        check_eq(merged(block_status(h, n, m)), [(n, ZERO)], "4 GiB zeroed with NO_HOLE")
        h.trim(n, m)
        check_eq(merged(block_status(h, n, m)), [(n, HOLE | ZERO)], "4 GiB trimmed")
        h.shutdown()


# --- Error paths (strict mode off, so that libnbd sends what it would refuse) -----------


def error_suite(d, structured):
    size = 4 * GIB
    h = connect(d, structured=structured, meta=structured, strict=0)
    ok_read = lambda: check_eq(h.pread(BS, size - BS), b"\xcc" * BS, "normal READ afterwards")
    h.pwrite(b"\xcc" * BS, size - BS)

    # Out of range: READ/TRIM/BLOCK_STATUS/CACHE -> EINVAL, WRITE/WRITE_ZEROES -> ENOSPC.
    for off, n in ((size, BS), (size - 2048, BS), (size + GIB, 1), (1 << 62, BS),
                   ((1 << 64) - BS, BS)):
        expect_error(lambda: h.pread(n, off), errno.EINVAL, f"READ {n}@{off}")
        expect_error(lambda: h.trim(n, off), errno.EINVAL, f"TRIM {n}@{off}")
        expect_error(lambda: h.cache(n, off), errno.EINVAL, f"CACHE {n}@{off}")
        if structured:
            expect_error(lambda: block_status(h, n, off), errno.EINVAL, f"BLOCK_STATUS {n}@{off}")
        expect_error(lambda: h.pwrite(b"\xdd" * n, off), errno.ENOSPC, f"WRITE {n}@{off}")
        expect_error(lambda: h.zero(n, off), errno.ENOSPC, f"WRITE_ZEROES {n}@{off}")
        ok_read()  # the straddling WRITE/ZERO left the last block alone
    check_eq(h.pread(1, size - 1), b"\xcc", "last byte is readable")

    # Unknown or misplaced command flags -> EINVAL, connection still usable.
    unknown = 1 << 7
    expect_error(lambda: h.pread(BS, 0, unknown), errno.EINVAL, "READ with flag 1<<7")
    ok_read()
    expect_error(lambda: h.pwrite(b"x", 0, 1 << 12), errno.EINVAL, "WRITE with flag 1<<12")
    ok_read()
    expect_error(lambda: h.trim(BS, 0, unknown), errno.EINVAL, "TRIM with flag 1<<7")
    expect_error(lambda: h.flush(1 << 15), errno.EINVAL, "FLUSH with flag 1<<15")
    expect_error(lambda: h.pread(BS, 0, nbd.CMD_FLAG_REQ_ONE), errno.EINVAL, "READ+REQ_ONE")
    expect_error(lambda: h.trim(BS, 0, nbd.CMD_FLAG_NO_HOLE), errno.EINVAL, "TRIM+NO_HOLE")
    expect_error(lambda: h.pwrite(b"x", 0, nbd.CMD_FLAG_FAST_ZERO), errno.EINVAL,
                 "WRITE+FAST_ZERO")
    if not structured:  # DF is only valid once structured replies are negotiated
        expect_error(lambda: h.pread(BS, 0, nbd.CMD_FLAG_DF), errno.EINVAL, "READ+DF (simple)")
    ok_read()

    # READ over the 32 MiB payload limit: EOVERFLOW with structured replies, else EINVAL.
    check_eq(h.pread(32 * MIB, 0), bytes(32 * MIB), "a 32 MiB READ")
    expect_error(lambda: h.pread(32 * MIB + 1, 0),
                 errno.EOVERFLOW if structured else errno.EINVAL, "READ of 32 MiB + 1")
    ok_read()
    # WRITE over the limit: an error, the payload is drained and the stream stays in frame.
    h.pwrite(b"\x77" * (32 * MIB), GIB)
    expect_error(lambda: h.pwrite(b"\x99" * (32 * MIB + BS), GIB), errno.EINVAL,
                 "WRITE of 32 MiB + 4 KiB")
    ok_read()
    check_eq(h.pread(32 * MIB, GIB), b"\x77" * (32 * MIB), "oversized WRITE changed data")
    for _ in range(3):  # again, back to back with normal requests
        expect_error(lambda: h.pwrite(b"\x99" * (40 * MIB), 0), errno.EINVAL, "WRITE of 40 MiB")
        ok_read()
    h.shutdown()

    # BLOCK_STATUS without a selected context -> EINVAL (connection stays).
    h = connect(d, structured=structured, meta=False, strict=0)
    expect_error(lambda: block_status(h, BS, 0), errno.EINVAL, "BLOCK_STATUS without context")
    ok_read()
    h.shutdown()


def case_errors_structured(tmp):
    with Daemon(tmp, disk_size_gb=4) as d:
        error_suite(d, True)


def case_errors_simple(tmp):
    with Daemon(tmp, disk_size_gb=4) as d:
        error_suite(d, False)


# --- Many requests in flight, many connections ----------------------------------------------


def wait_all(h, cookies, timeout=60):
    deadline = time.monotonic() + timeout
    while h.aio_in_flight() > 0:
        check(time.monotonic() < deadline,
              f"{h.aio_in_flight()} requests still unanswered after {timeout} s")
        h.poll(1000)
    for c in cookies:
        check(h.aio_command_completed(c), f"command {c} not completed")


def case_inflight(tmp):
    rng = random.Random(99)
    with Daemon(tmp, disk_size_gb=2) as d:
        for structured in (True, False):
            h = connect(d, structured=structured, meta=structured)
            n, size = 64, 64 * KIB
            base = 0 if structured else GIB
            data = [rand_bytes(rng, size) for _ in range(n)]
            cookies = [h.aio_pwrite(data[i], base + i * size) for i in range(n)]
            check(h.aio_in_flight() >= n // 2, f"only {h.aio_in_flight()} writes in flight")
            wait_all(h, cookies)
            # Reads and overlapping-free writes in flight together, then reads again.
            bufs = [nbd.Buffer(size) for _ in range(n)]
            data2 = [rand_bytes(rng, size) for _ in range(n)]
            cookies = []
            for i in range(n):
                cookies.append(h.aio_pread(bufs[i], base + i * size))
                cookies.append(h.aio_pwrite(data2[i], base + (n + i) * size))
            check(h.aio_in_flight() >= n, f"only {h.aio_in_flight()} requests in flight")
            wait_all(h, cookies)
            for i in range(n):
                check_eq(bufs[i].to_bytearray(), bytearray(data[i]), f"aio read {i}")
            bufs = [nbd.Buffer(size) for _ in range(n)]
            cookies = [h.aio_pread(bufs[i], base + (n + i) * size) for i in range(n)]
            wait_all(h, cookies)
            for i in range(n):
                check_eq(bufs[i].to_bytearray(), bytearray(data2[i]), f"aio read {n + i}")
            # Unaligned, odd-sized reads in flight (sub-block and straddling).
            cookies, bufs, spans = [], [], []
            for i in range(n):
                off = rng.randrange(2 * n * size - 10000)
                ln = rng.randrange(1, 10000)
                bufs.append(nbd.Buffer(ln))
                spans.append((off, ln))
                cookies.append(h.aio_pread(bufs[-1], base + off))
            wait_all(h, cookies)
            whole = b"".join(data) + b"".join(data2)
            for (off, ln), b in zip(spans, bufs):
                check_eq(bytes(b.to_bytearray()), whole[off:off + ln], f"read {ln}@{off}")
            h.shutdown()


def case_many_inflight(tmp):
    """2048 requests outstanding at once: far past the server's per-connection bound
    (256), so it must stop reading and resume without losing or reordering anything."""
    rng = random.Random(7)
    with Daemon(tmp, disk_size_gb=1) as d:
        h = connect(d)
        n, size = 2048, 8 * KIB
        data = [rand_bytes(rng, size) for _ in range(n)]
        cookies = [h.aio_pwrite(data[i], i * size) for i in range(n)]
        bufs = [nbd.Buffer(size) for _ in range(n)]
        cookies += [h.aio_pread(bufs[i], i * size) for i in range(n)]
        check(h.aio_in_flight() > 1000, f"only {h.aio_in_flight()} in flight")
        wait_all(h, cookies)
        for i in range(n):
            check_eq(bytes(bufs[i].to_bytearray()), data[i], f"read {i}")
        h.shutdown()


def case_inflight_bytes_bound(tmp):
    """256 MiB of READs and WRITEs in flight at once, twice the server's in-flight byte
    bound: it must hold some back and serve them once replies drain, with no further
    requests arriving to nudge it."""
    with Daemon(tmp, disk_size_gb=1) as d:
        h = connect(d)
        size, n = 4 * MIB, 64
        h.pwrite(bytes(range(256)) * (size // 256), 0)
        bufs = [nbd.Buffer(size) for _ in range(n)]
        cookies = [h.aio_pread(bufs[i], 0) for i in range(n)]
        wait_all(h, cookies, timeout=30)
        for i in range(n):
            check(bytes(bufs[i].to_bytearray()) == bytes(range(256)) * (size // 256),
                  f"READ {i} data")
        data = [bytes([i]) * size for i in range(n)]
        cookies = [h.aio_pwrite(data[i], i * size) for i in range(n)]
        wait_all(h, cookies, timeout=30)
        for i in range(0, n, 7):
            check(h.pread(size, i * size) == data[i], f"WRITE {i} data")
        h.shutdown()


def case_concurrent_subblock_writes(tmp):
    """Four connections write interleaved single bytes and 3-byte runs into the same
    blocks at once: no write may be lost to another's read-modify-write."""
    import threading  # noqa: PLC0415
    with Daemon(tmp, disk_size_gb=1) as d:
        span, conns = 8 * BS, 4
        base = 5 * MIB + 1
        hs = [connect(d) for _ in range(conns)]
        errors = []

        def writer(k):
            try:
                h = hs[k]
                cookies = []
                for j in range(k, span, conns):
                    if j % 3 == 0:
                        cookies.append(h.aio_pwrite(bytes([k + 1]), base + j))
                    else:
                        h.pwrite(bytes([k + 1]), base + j)
                    if len(cookies) >= 32:
                        wait_all(h, cookies)
                        cookies = []
                wait_all(h, cookies)
            except Exception as e:  # noqa: BLE001
                errors.append(e)

        threads = [threading.Thread(target=writer, args=(k,)) for k in range(conns)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        check(not errors, f"writer failed: {errors}")
        want = bytes((j % conns) + 1 for j in range(span))
        got = hs[0].pread(span, base)
        bad = [j for j in range(span) if got[j] != want[j]]
        check(not bad, f"{len(bad)} bytes lost, first at +{bad[:1]}")
        for h in hs:
            h.shutdown()


def case_block_status_fragmented(tmp):
    """70000 alternating zero/hole blocks: a 0xfffff000-byte BLOCK_STATUS answers with a
    correct prefix of the map, however many extents the server chooses to send."""
    with Daemon(tmp, disk_size_gb=8) as d:
        h = connect(d)
        frags = 70000
        cookies = []
        for i in range(0, frags, 2):
            cookies.append(h.aio_zero(BS, i * BS, flags=nbd.CMD_FLAG_NO_HOLE))
            if len(cookies) >= 256:
                wait_all(h, cookies)
                cookies = []
        wait_all(h, cookies)
        ext = block_status(h, 0xFFFFF000, 0)
        total = sum(n for n, _ in ext)
        check(0 < total <= 0xFFFFF000, f"extents cover {total} bytes")
        print(f"{len(ext)} extents for {frags} fragments")
        pos = 0
        for i, (n, f) in enumerate(ext):
            if pos < frags * BS:
                check_eq((n, f), (BS, ZERO if (pos // BS) % 2 == 0 else HOLE | ZERO),
                         f"extent {i} at {pos}")
            else:
                check_eq(f, HOLE | ZERO, f"extent {i} at {pos} after the fragments")
            pos += n
        h.shutdown()


def case_multi_conn(tmp):
    """CAN_MULTI_CONN: a write on one connection is seen by reads on others; a FLUSH on
    any connection is fine."""
    with Daemon(tmp, disk_size_gb=1) as d:
        hs = [connect(d) for _ in range(4)]
        check(all(h.can_multi_conn() for h in hs), "multi-conn not advertised")
        for i, h in enumerate(hs):
            h.pwrite(bytes([i + 1]) * MIB, i * MIB)
        hs[2].flush()
        for i, h in enumerate(hs):
            for j in range(4):
                check_eq(h.pread(MIB, j * MIB), bytes([j + 1]) * MIB, f"conn {i} reads {j}")
        for h in hs:
            h.shutdown()


def case_many_connections(tmp):
    """48 connections at once, each with requests in flight on its own region."""
    rng = random.Random(48)
    with Daemon(tmp, disk_size_gb=1) as d:
        hs = [connect(d, structured=bool(i % 2), meta=bool(i % 2)) for i in range(48)]
        data = [rand_bytes(rng, 256 * KIB) for _ in hs]
        cookies = [[h.aio_pwrite(data[i][k * 64 * KIB:(k + 1) * 64 * KIB],
                                 i * MIB + k * 64 * KIB) for k in range(4)]
                   for i, h in enumerate(hs)]
        for h, cs in zip(hs, cookies):
            wait_all(h, cs)
        for i, h in enumerate(hs):
            j = (i + 17) % len(hs)  # read another connection's region
            check_eq(h.pread(256 * KIB, j * MIB), data[j], f"conn {i} reads region {j}")
        for h in hs:
            h.shutdown()


def case_disconnect(tmp):
    """NBD_CMD_DISC after requests in flight: the server answers them, then closes; the
    data is there for the next client."""
    with Daemon(tmp, disk_size_gb=1) as d:
        h = connect(d)
        cookies = [h.aio_pwrite(bytes([i]) * 256 * KIB, i * 256 * KIB) for i in range(1, 33)]
        h.shutdown()  # waits for the commands, then sends NBD_CMD_DISC
        for c in cookies:
            check(h.aio_command_completed(c), f"write {c} not completed before disconnect")
        check(h.aio_is_closed() or h.aio_is_dead(), "handle not closed after shutdown")
        h2 = connect(d)
        for i in range(1, 33):
            check_eq(h2.pread(256 * KIB, i * 256 * KIB), bytes([i]) * 256 * KIB,
                     f"write {i} before DISC")
        h2.shutdown()
        # A client that disappears without DISC does not disturb the server either.
        h3 = connect(d)
        h3.pwrite(b"z" * BS, 0)
        del h3
        h4 = connect(d)
        check_eq(h4.pread(BS, 0), b"z" * BS, "after a client vanished")
        h4.shutdown()


def case_default_export(tmp):
    with Daemon(tmp, disk_size_gb=1) as d:
        h = connect(d, export="", full_info=True)
        check_eq(h.get_canonical_export_name(), "portalbd", "canonical name of ''")
        check_eq(h.get_block_size(nbd.SIZE_MINIMUM), 1, "minimum block size")
        check_eq(h.get_block_size(nbd.SIZE_PREFERRED), 4096, "preferred block size")
        check_eq(h.get_block_size(nbd.SIZE_MAXIMUM), 32 * MIB, "maximum block size")
        check("portalbd" in h.get_export_description(), "export description")
        h.pwrite(b"default", 0)
        h.shutdown()
        h = connect(d)
        check_eq(h.pread(7, 0), b"default", "'' and 'portalbd' are the same device")
        h.shutdown()


if __name__ == "__main__":
    try:
        nbd = import_nbd()
    except Exception as e:  # noqa: BLE001
        print(f"SKIP: {e}")
        raise SystemExit(77)
    run_cases(globals())
