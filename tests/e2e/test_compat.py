"""Stores written by earlier portalbd versions open unchanged, with the same data.

tests/fixtures/store-vN/ is a file:// volume written by an earlier portalbd
(tests/fixtures/make_store.py says which and how): store-v1 by e613346 (segment footer
format 1, manifest and snapshot JSON format 1), store-v2 by 0e050f1 (footer format 2,
JSON format 2 with checksums and the legacy "segtab" field). store-vN.json holds the
sha256 of its device and of its snapshot's export. A copy of each is opened with the
current portalbd: both read as recorded; a write and a TRIM
land on top (new-format objects beside old ones); after a clean restart the device reads
as the old data plus those changes and the snapshot is untouched.

Exports are copied out with nbdcopy into sparse files (it skips what block status reports
as holes), cross-checked with plain reads of the written areas, and hashed here.
"""

import hashlib
import json
import os
import random
import shutil

from e2e import BLOCK, Storage, check_eq, connect
from harness import import_nbd, run, run_cases

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures")
SIZE = 1 << 30
# Where make_store.py wrote: blocks 0-767 and 131072-131135 (checked with plain reads).
WRITTEN = [(0, 4 << 20), (131072 * BLOCK, 1 << 20)]


def data_extents(path):
    """The (offset, length) ranges of a sparse file that are not holes."""
    out = []
    with open(path, "rb") as f:
        fd, end, pos = f.fileno(), os.fstat(f.fileno()).st_size, 0
        while pos < end:
            try:
                start = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError:  # ENXIO: only a hole is left
                break
            stop = os.lseek(fd, start, os.SEEK_HOLE)
            out.append((start, stop - start))
            pos = stop
    return out


def sha256_sparse(path):
    """sha256 of a file, holes hashed from memory instead of read."""
    s, zero, pos = hashlib.sha256(), memoryview(bytes(1 << 24)), 0
    with open(path, "rb") as f:
        for off, n in data_extents(path) + [(os.path.getsize(path), 0)]:
            while pos < off:
                k = min(off - pos, len(zero))
                s.update(zero[:k])
                pos += k
            f.seek(off)
            s.update(f.read(n))
            pos = off + n
    return s.hexdigest()


def check_same(path_a, path_b, what):
    """The two sparse files hold the same bytes (compared where either has data)."""
    check_eq(os.path.getsize(path_a), os.path.getsize(path_b), f"{what}: size")
    with open(path_a, "rb") as fa, open(path_b, "rb") as fb:
        for off, n in sorted(data_extents(path_a) + data_extents(path_b)):
            fa.seek(off)
            fb.seek(off)
            check_eq(fa.read(n), fb.read(n), f"{what}: bytes {off}+{n}")


def copy_out(tmp, uri, name, h=None):
    """Copies the export to the sparse file tmp/name with nbdcopy and returns its path.
    With a libnbd handle `h` on the same export, the WRITTEN areas are also read
    directly and compared."""
    path = os.path.join(tmp, name)
    run(["nbdcopy", uri, path], timeout=60)
    check_eq(os.path.getsize(path), SIZE, f"{name}: size")
    if h is not None:
        with open(path, "rb") as f:
            for off, n in WRITTEN:
                f.seek(off)
                check_eq(h.pread(n, off), f.read(n), f"{name}: bytes {off}+{n}, read directly")
    return path


def check_fixture(tmp, name, format_version):
    """The fixture `name` opens with the current portalbd, reads as recorded, takes
    writes, and reads as expected after a restart."""
    nbd = import_nbd()
    with open(os.path.join(FIXTURES, name + ".json")) as f:
        want = json.load(f)
    st = Storage(tmp, "file")
    shutil.copytree(os.path.join(FIXTURES, name), st.url[len("file://"):])
    with open(os.path.join(st.url[len("file://"):], "manifest~",
                           "00000000000000000003.json")) as f:
        check_eq(json.load(f)["format_version"], format_version,
                 "the fixture's latest manifest format")
    snap_export = "portalbd@" + want["snapshot"]

    d = st.daemon()
    h = connect(d)
    dev = copy_out(tmp, d.uri(), "device.img", h)
    check_eq(sha256_sparse(dev), want["device_sha256"], f"sha256 of the {name} device")
    hs = nbd.NBD()
    hs.connect_uri(d.uri(snap_export))
    snap = copy_out(tmp, d.uri(snap_export), "snapshot.img", hs)
    check_eq(sha256_sparse(snap), want["snapshot_sha256"], f"sha256 of the {name} snapshot")
    hs.shutdown()

    # New writes over old data, over the trimmed range and in fresh space; a TRIM of old data.
    rng = random.Random(1)
    changes = [(200 * BLOCK, rng.randbytes(128 * BLOCK)), (590 * BLOCK, rng.randbytes(20 * BLOCK)),
               (1234000, rng.randbytes(3000)), (300 << 20, rng.randbytes(64 * BLOCK))]
    with open(dev, "r+b") as f:
        for off, data in changes:
            h.pwrite(data, off)
            f.seek(off)
            f.write(data)
        h.trim(32 * BLOCK, 700 * BLOCK)
        f.seek(700 * BLOCK)
        f.write(bytes(32 * BLOCK))
    h.flush()
    h.shutdown()
    d.stop()

    d = st.daemon()
    h = connect(d)
    with open(dev, "rb") as f:
        for off, data in changes:  # (they overlap: the image holds the outcome)
            f.seek(off)
            check_eq(h.pread(len(data), off), f.read(len(data)), f"bytes {off}+{len(data)}")
    check_same(copy_out(tmp, d.uri(), "device2.img", h), dev,
               f"the device after writes and a restart (expected: the {name} device plus them)")
    check_same(copy_out(tmp, d.uri(snap_export), "snapshot2.img"), snap,
               f"the {name} snapshot after the restart")
    h.shutdown()
    d.stop()


def case_file_store_v1(tmp):
    check_fixture(tmp, "store-v1", 1)


def case_file_store_v2(tmp):
    check_fixture(tmp, "store-v2", 2)


if __name__ == "__main__":
    run_cases(globals(), tools=("nbdcopy",))
