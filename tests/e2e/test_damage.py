"""End-to-end damaged stores (DESIGN.md "Single-writer protocol", step 7): objects deleted
or altered behind portalbd's back, on file://, on s3rver (unsafe_no_fencing) and on Ceph
RGW (fencing on). The rule:
a damaged store is refused or fails the read naming what is wrong, and is never served as
if it were whole (no old data where newer data was acknowledged, no invented data).

- missing_segment: a data segment deleted below later ones. Start exits 1 naming the
  segment and --salvage, and writes nothing; --salvage serves the volume read-only as of
  the segment before the gap (writes: EPERM; nbdcopy copies it out) and writes nothing.
- flipped_segment: one bit flipped in a data chunk of a segment. Reads of that chunk's
  blocks fail with EIO; every other block reads back; the daemon keeps serving.
- corrupt_manifest: a digit of the latest manifest's applied_segment changed (it would
  skip acknowledged segments). Start refuses naming the manifest, or serves exact data.
- missing_sst: a map SST the manifest references deleted. Start exits 1 naming it.
- missing_sst_warm: the same after a second run read every block, so this host's metadata
  cache holds the SST (index and blocks): open still notices it is gone from the store.

Objects are deleted and altered through the store's own interface: files under the
file:// directory (lib/objstore/file_key.h), S3 requests (botocore) to s3rver or RGW.
Cases: `file_*`, `s3rver_*`, `rgw_*`.
"""

import hashlib
import json
import os
import random
import subprocess
import time

from e2e import BLOCK, Storage, check, check_eq, connect  # e2e puts tests/interop on the path
from harness import LISTENING_RE, import_nbd, portalbd_path, portalctl, run, run_cases, spawn
import nbdwire  # noqa: I001 (tests/interop)

REGION = 64 * BLOCK  # one write: 256 KiB, four 64 KiB chunks of one segment
LSM = {"flush_interval_ms": 0}  # segments are uploaded only when the client FLUSHes
NBD_EPERM = 1


def is_errno(e, name, number):
    # python3-libnbd 1.14 gives errno as its name ("EIO"), later versions as a number.
    return e.errno in (number, name)


# --- The store's objects, behind portalbd's back ------------------------------------------


class Objects:
    """The volume's objects, keyed as portalbd names them (seg/..., manifest/..., map/...,
    snap/...), read, altered and deleted without portalbd."""

    def __init__(self, st):
        self.kind = st.kind
        if st.kind == "file":
            self.root = st.url[len("file://"):]
        elif st.kind == "rgw":
            self.bucket, self.prefix = "vol", st.url[len("s3://vol/"):] + "/"
            self.s3 = st.server.client
        else:
            import botocore.session  # noqa: PLC0415
            from botocore.config import Config  # noqa: PLC0415
            self.bucket, self.prefix = "vol", st.url[len("s3://vol/"):] + "/"
            self.s3 = botocore.session.get_session().create_client(
                "s3", region_name="us-east-1", endpoint_url=st.server.endpoint,
                aws_access_key_id="S3RVER", aws_secret_access_key="S3RVER",
                config=Config(s3={"addressing_style": "path"}))

    def _path(self, key):
        # file_key.h: every segment but the last is a directory "<seg>~"; portalbd's own
        # keys use only bytes that E() keeps as they are.
        check(all(c.isalnum() or c in "_-./" for c in key), f"key {key!r} needs escaping")
        parts = key.split("/")
        return os.path.join(self.root, *[p + "~" for p in parts[:-1]], parts[-1])

    def keys(self):
        if self.kind == "file":
            out = []
            for d, _, files in os.walk(self.root):
                rel = os.path.relpath(d, self.root)
                dirs = [] if rel == "." else rel.split(os.sep)
                check(all(x.endswith("~") for x in dirs), f"foreign directory {d}")
                out += ["/".join([x[:-1] for x in dirs] + [f]) for f in files
                        if not f.startswith(".")]
            return sorted(out)
        out = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.prefix):
            out += [o["Key"][len(self.prefix):] for o in page.get("Contents", [])]
        return sorted(out)

    def get(self, key):
        if self.kind == "file":
            with open(self._path(key), "rb") as f:
                return f.read()
        return self.s3.get_object(Bucket=self.bucket, Key=self.prefix + key)["Body"].read()

    def put(self, key, data):
        if self.kind == "file":
            with open(self._path(key), "wb") as f:
                f.write(data)
            return
        self.s3.put_object(Bucket=self.bucket, Key=self.prefix + key, Body=data)

    def delete(self, key):
        if self.kind == "file":
            os.unlink(self._path(key))
        else:
            self.s3.delete_object(Bucket=self.bucket, Key=self.prefix + key)
        check(key not in self.keys(), f"{key} is still listed after deleting it")

    def state(self):
        """Every object's key and the sha256 of its bytes."""
        return {k: hashlib.sha256(self.get(k)).hexdigest() for k in self.keys()}

    def segments(self):
        return sorted(k for k in self.keys() if k.startswith("seg/"))

    def latest_manifest(self):
        return max(k for k in self.keys() if k.startswith("manifest/"))


# --- Helpers ------------------------------------------------------------------------------


def rng_for(name):
    s = int(os.environ.get("PORTALBD_SEED", random.randrange(1 << 32)))
    print(f"{name}: PORTALBD_SEED={s}", flush=True)
    return random.Random(s)


class Image:
    """The expected contents of the first `regions` regions of the device."""

    def __init__(self, regions):
        self.b = bytearray(regions * REGION)

    def region(self, i):
        return bytes(self.b[i * REGION:(i + 1) * REGION])

    def copy(self):
        c = Image(0)
        c.b = bytearray(self.b)
        return c


def write_flush(h, objs, image, region, data, trim_regions=()):
    """Writes one region (and TRIMs others), FLUSHes, and returns the one new segment."""
    before = set(objs.segments())
    h.pwrite(data, region * REGION)
    image.b[region * REGION:(region + 1) * REGION] = data
    for t in trim_regions:
        h.trim(REGION, t * REGION)
        image.b[t * REGION:(t + 1) * REGION] = bytes(REGION)
    h.flush()
    new = sorted(set(objs.segments()) - before)
    check(len(new) == 1, f"one FLUSH of one write uploaded {new}, expected one segment")
    return new[0]


def exact_or_eio(h, nbd, image, regions, what):
    """Every block of the first `regions` regions reads back as `image` holds it or
    fails with EIO (never other data). Returns how many failed."""
    eio = 0
    for r in range(regions):
        try:
            check_eq(h.pread(REGION, r * REGION), image.region(r), f"{what}: region {r}")
            continue
        except nbd.Error:
            pass
        for b in range(REGION // BLOCK):
            off = r * REGION + b * BLOCK
            try:
                got = h.pread(BLOCK, off)
            except nbd.Error as e:
                check(is_errno(e, "EIO", 5), f"{what}: block {off // BLOCK}: {e}")
                eio += 1
                continue
            check_eq(got, bytes(image.b[off:off + BLOCK]), f"{what}: block {off // BLOCK}")
    return eio


def read_regions(h, n):
    return h.pread(n * REGION, 0)


def start_or_refusal(st, tmp, objs, before, key):
    """Starts portalbd on a damaged store where refusing is one legal outcome: a refusal
    must exit 1 naming `key` and leave the store as it was (`before`). Returns the NBD
    address if it opened instead, else None."""
    status, err, secs, address = try_start(st, tmp, "after")
    if address is None:
        print(f"  refused: exit {status} after {secs:.2f} s: {err.strip()[-400:]}",
              flush=True)
        check(status == 1, f"exit {status}, expected 1:\n{err}")
        check(key in err, f"stderr does not name {key}:\n{err}")
        check(objs.state() == before, "a refused start changed the store")
    return address


def try_start(st, tmp, name, timeout_s=20):
    """Starts portalbd on the volume and waits until it exits or listens. Returns
    (exit status or None, stderr, seconds, the NBD address or None); a daemon that
    listens is left running (the harness kills it at the end of the case)."""
    cfg = os.path.join(tmp, f"{name}.toml")
    with open(cfg, "w") as f:
        f.write(st.config(os.path.join(tmp, "cache"), LSM))
    out_path, err_path = os.path.join(tmp, f"{name}.out"), os.path.join(tmp, f"{name}.err")
    t0 = time.monotonic()
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        p = spawn([portalbd_path(), "--config", cfg, "--address", "127.0.0.1:0", "--socket",
                   os.path.join(tmp, f"{name}.ctl")], stdout=out, stderr=err,
                  stdin=subprocess.DEVNULL, env=st.env)

    def text(path):
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    while True:
        status = p.poll()
        m = LISTENING_RE.search(text(out_path) + text(err_path))
        if status is not None or m:
            return status, text(err_path), time.monotonic() - t0, m and m.group(1)
        check(time.monotonic() - t0 < timeout_s, f"portalbd neither exited nor listened "
              f"within {timeout_s} s:\n{text(out_path)}{text(err_path)}")
        time.sleep(0.02)


def check_refused(st, tmp, objs, name, key, *also):
    """portalbd refuses the damaged volume: exit 1 within seconds, stderr names `key` (and
    each of `also`), and the store is exactly as before."""
    before = objs.state()
    status, err, secs, address = try_start(st, tmp, name)
    check(address is None, f"portalbd serves the damaged volume on {address}:\n{err}")
    print(f"  refused start: exit {status} after {secs:.2f} s: {err.strip()[-400:]}",
          flush=True)
    check(status == 1, f"start on a damaged store exited {status}, expected 1:\n{err}")
    check(secs < 10, f"refusing took {secs:.1f} s")
    for word in (key, *also):
        check(word in err, f"stderr does not mention {word!r}:\n{err}")
    check(objs.state() == before, "a refused start changed the store: "
          f"{sorted(set(objs.state().items()) ^ set(before.items()))}")


# --- Cases ------------------------------------------------------------------------------


def missing_segment(tmp, kind):
    """Six FLUSHed writes (one segment each); the third's segment is deleted. Region 0 is
    rewritten and region 1 trimmed after the gap: salvage must show their contents from
    before the gap, and zeroes where the only data was at or above the gap."""
    nbd = import_nbd()
    st = Storage(tmp, kind)
    objs = Objects(st)
    rng = rng_for(f"{kind} missing segment")
    image = Image(6)
    d = st.daemon(lsm=LSM)
    h = connect(d)
    segs = []
    for region in (0, 1, 2):
        segs.append(write_flush(h, objs, image, region, rng.randbytes(REGION)))
    at_gap = image.copy()  # what the volume held just before the third segment
    at_gap.b[2 * REGION:3 * REGION] = bytes(REGION)
    segs.append(write_flush(h, objs, image, 0, rng.randbytes(REGION)))
    segs.append(write_flush(h, objs, image, 3, rng.randbytes(REGION), trim_regions=[1]))
    segs.append(write_flush(h, objs, image, 4, rng.randbytes(REGION)))
    check_eq(read_regions(h, 6), bytes(image.b), "before the damage")
    h.shutdown()
    d.stop()

    lost = segs[2]
    objs.delete(lost)
    print(f"  deleted {lost} (segments written: {segs})", flush=True)
    check_refused(st, tmp, objs, "refused", lost, "--salvage")

    before = objs.state()
    d = st.daemon(lsm=LSM, args=["--salvage"])
    h = connect(d)
    check(h.is_read_only(), "--salvage exports the volume writable")
    check_eq(read_regions(h, 6), bytes(at_gap.b),
             "salvaged volume (expected as of the segment before the gap)")
    check(read_regions(h, 6) != bytes(image.b), "test bug: the gap changed nothing")
    try:
        h.pwrite(b"w" * BLOCK, 0)
        raise AssertionError("a write to the salvaged volume succeeded")
    except nbd.Error as e:
        check(is_errno(e, "EPERM", 1), f"libnbd write: expected EPERM, got {e.errno} ({e})")
    # The server's own answer, whatever the client library checks before sending.
    with nbdwire.Conn(d.connect()) as c:
        c.start()
        c.go()
        check(c.tflags & nbdwire.TF_READ_ONLY, "NBD_FLAG_READ_ONLY is not set")
        for what, cmd, payload in (("WRITE", nbdwire.CMD_WRITE, b"w" * BLOCK),
                                   ("TRIM", nbdwire.CMD_TRIM, b"")):
            err, _ = c.cmd(cmd, 0, BLOCK, payload=payload)
            check_eq(err, NBD_EPERM, f"server's reply to {what} on the salvaged volume")
        err, data = c.cmd(nbdwire.CMD_READ, 0, REGION)
        check_eq((err, data), (0, at_gap.region(0)), "raw READ after the refused writes")
    out = os.path.join(tmp, "salvaged.img")
    run(["nbdcopy", d.uri(), out], timeout=60)
    check_eq(os.path.getsize(out), 1 << 30, "nbdcopy output size")
    with open(out, "rb") as f:
        check_eq(f.read(6 * REGION), bytes(at_gap.b), "nbdcopy of the salvaged volume")
    h.shutdown()
    check_eq(d.stop(), 0, "salvage exit status on SIGTERM")
    check(objs.state() == before, "--salvage changed the store")
    # And still refused without --salvage.
    check_refused(st, tmp, objs, "refused-again", lost, "--salvage")


def flipped_segment(tmp, kind):
    """One bit flipped in the middle of the data of a referenced segment: its chunk's
    blocks fail with EIO, everything else reads back, the daemon keeps serving and can
    overwrite the damaged blocks."""
    nbd = import_nbd()
    st = Storage(tmp, kind)
    objs = Objects(st)
    rng = rng_for(f"{kind} flipped segment")
    image = Image(3)
    d = st.daemon(lsm=LSM)
    h = connect(d)
    segs = [write_flush(h, objs, image, r, rng.randbytes(REGION)) for r in range(3)]
    h.shutdown()
    d.stop()

    bad = segs[1]
    data = bytearray(objs.get(bad))
    check(len(data) > REGION, f"{bad} is {len(data)} bytes: compressed? (random data)")
    at = len(data) // 2
    data[at] ^= 0x10
    objs.put(bad, bytes(data))
    print(f"  flipped a bit at byte {at} of {bad} ({len(data)} bytes)", flush=True)

    d = st.daemon(lsm=LSM)
    h = connect(d)
    check_eq(h.pread(REGION, 0), image.region(0), "region 0 (another segment)")
    check_eq(h.pread(REGION, 2 * REGION), image.region(2), "region 2 (another segment)")
    eio = []
    for b in range(REGION // BLOCK):
        off = REGION + b * BLOCK
        try:
            got = h.pread(BLOCK, off)
        except nbd.Error as e:
            check(is_errno(e, "EIO", 5), f"block {b}: expected EIO, got {e.errno} ({e})")
            eio.append(b)
            continue
        check_eq(got, bytes(image.b[off:off + BLOCK]), f"block {b} of the damaged region")
    print(f"  EIO on blocks {eio[0]}..{eio[-1]} of 64" if eio else "  no EIO", flush=True)
    check(eio, "every block of the bit-flipped segment read back without error")
    check(len(eio) < REGION // BLOCK, "EIO on every block: more than the flipped chunk")
    try:
        h.pread(REGION, REGION)
        raise AssertionError("a read covering the flipped chunk succeeded")
    except nbd.Error as e:
        check(is_errno(e, "EIO", 5), f"whole region: expected EIO, got {e.errno} ({e})")
    check(d.running(), "portalbd exited after a corrupt chunk")
    check_eq(h.pread(REGION, 0), image.region(0), "region 0 after the errors")
    # The damaged blocks can be overwritten.
    fresh = rng.randbytes(REGION)
    h.pwrite(fresh, REGION)
    h.flush()
    image.b[REGION:2 * REGION] = fresh
    check_eq(read_regions(h, 3), bytes(image.b), "after overwriting the damaged region")
    h.shutdown()
    d.stop()


def corrupt_manifest(tmp, kind):
    """Regions 0-2 are written, a snapshot flushes them to a map SST (blocks 0-191), then
    regions 3 and 0 are written again. In the latest manifest one digit of the SST's
    "end" is zeroed (192 -> 102): taken at its word, reads would skip the SST above the new end and
    serve zeroes where data was acknowledged. Start must refuse naming the manifest, or
    serve every block exactly (or fail its read with EIO)."""
    nbd = import_nbd()
    st = Storage(tmp, kind)
    objs = Objects(st)
    rng = rng_for(f"{kind} corrupt manifest")
    image = Image(4)
    d = st.daemon(lsm=LSM)
    h = connect(d)
    for r in (0, 1, 2):
        write_flush(h, objs, image, r, rng.randbytes(REGION))
    portalctl(d, "snapshot", "create", "s1")
    for r in (3, 0):
        write_flush(h, objs, image, r, rng.randbytes(REGION))
    h.shutdown()
    d.stop()

    key = objs.latest_manifest()
    text = objs.get(key)
    ssts = [t for level in json.loads(text)["levels"] for t in level]
    check(len(ssts) == 1 and ssts[0]["end"] == 3 * REGION // BLOCK,
          f"expected one SST covering regions 0-2 in {key}: {ssts}")
    end = str(ssts[0]["end"])
    i = next(i for i in range(1, len(end)) if end[i] != "0")
    lowered = end[:i] + "0" + end[i + 1:]  # 192 -> 102: one digit
    field = b'"end":' + end.encode()
    check(text.count(field) == 1, f"{key} has no unique {field!r}: {text[:400]!r}")
    bad = text.replace(field, b'"end":' + lowered.encode())
    check(len(bad) == len(text) and sum(x != y for x, y in zip(bad, text)) == 1,
          "test bug: not exactly one byte changed")
    objs.put(key, bad)
    print(f"  {key}: the SST's end {end} -> {lowered}", flush=True)

    before = objs.state()
    address = start_or_refusal(st, tmp, objs, before, key)
    if address is None:
        return
    print("  opened: every block must read back or fail", flush=True)
    h = nbd.NBD()
    h.connect_uri(f"nbd://{address}/portalbd")
    eio = exact_or_eio(h, nbd, image, 4, "volume opened on a corrupted manifest")
    print(f"  {eio} blocks failed with EIO", flush=True)
    h.shutdown()


def missing_sst(tmp, kind, warm=False):
    """A snapshot flushes the map memtable to an SST (regions 0-2); region 0 is rewritten
    after it; then the SST is deleted. As lib/volume/volume_damage_test.cc: refused, or
    EIO naming the object, never old data. Either start exits 1 naming the SST (store
    unchanged), or the volume opens, region 0 reads back and every block only the SST
    maps fails with EIO, the log naming the SST. `warm`: before the delete a second run
    reads every block, so the metadata cache (same cache_dir) holds the SST's index and
    blocks; the outcome must be the same (docs/volume.md "Damage")."""
    nbd = import_nbd()
    st = Storage(tmp, kind)
    objs = Objects(st)
    rng = rng_for(f"{kind} missing sst{' warm' if warm else ''}")
    image = Image(3)
    d = st.daemon(lsm=LSM)
    h = connect(d)
    for r in range(3):
        write_flush(h, objs, image, r, rng.randbytes(REGION))
    portalctl(d, "snapshot", "create", "s1")
    write_flush(h, objs, image, 0, rng.randbytes(REGION))
    h.shutdown()
    d.stop()
    if warm:
        d = st.daemon(lsm=LSM)
        h = connect(d)
        check_eq(read_regions(h, 3), bytes(image.b), "the warming run's read")
        h.shutdown()
        d.stop()

    m = json.loads(objs.get(objs.latest_manifest()))
    ssts = [t["key"] for level in m["levels"] for t in level]
    check(len(ssts) == 1, f"expected one map SST in the latest manifest: {m}")
    check(ssts[0] in objs.keys(), f"manifest SST {ssts[0]} not stored")
    objs.delete(ssts[0])
    print(f"  deleted {ssts[0]}", flush=True)

    before = objs.state()
    address = start_or_refusal(st, tmp, objs, before, ssts[0])
    if address is None:
        return
    print("  opened; reads must fail where only the SST maps",
          flush=True)
    h = nbd.NBD()
    h.connect_uri(f"nbd://{address}/portalbd")
    check_eq(h.pread(REGION, 0), image.region(0), "region 0 (rewritten after the SST)")
    for off in (REGION, 2 * REGION, 2 * REGION + 17 * BLOCK):
        try:
            got = h.pread(BLOCK, off)
            raise AssertionError(f"block {off // BLOCK}, mapped only by the missing SST, "
                                 f"read {'zeroes' if got == bytes(BLOCK) else got[:16]}")
        except nbd.Error as e:
            check(is_errno(e, "EIO", 5), f"block {off // BLOCK}: expected EIO, got {e}")
    deadline = time.monotonic() + 5  # the log is written asynchronously
    while True:
        log = b"".join(open(os.path.join(tmp, f"after.{x}"), "rb").read() for x in ("out", "err"))
        if ssts[0].encode() in log or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    check(ssts[0].encode() in log, f"the log does not name {ssts[0]}:\n{log[-2000:]}")
    h.shutdown()


def missing_sst_warm(tmp, kind):
    missing_sst(tmp, kind, warm=True)


for _kind in ("file", "s3rver", "rgw"):
    for _fn in (missing_segment, flipped_segment, corrupt_manifest, missing_sst,
                missing_sst_warm):
        globals()[f"case_{_kind}_{_fn.__name__}"] = (
            lambda tmp, fn=_fn, kind=_kind: fn(tmp, kind))

if __name__ == "__main__":
    run_cases(globals(), tools=("nbdcopy",))
