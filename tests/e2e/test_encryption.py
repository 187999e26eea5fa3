"""End-to-end encryption at rest ([storage] encryption_key_file, docs/volume.md
"Encryption"): a real portalbd on file:// and on s3rver.

- plaintext_absent: a distinctive plaintext pattern written through NBD, FLUSHed, a
  snapshot taken (a map SST and a snapshot object), more writes, a clean stop; then EVERY
  object in the store (and, on file://, every file under the store directory) is read and
  none holds the pattern, and every segment, map SST, manifest and snapshot object is
  sealed. The volume reopens with its key and reads back exactly.
- wrong_key: start without a key, and with another key: exit 1, stderr saying the volume
  is encrypted (key id) and which setting to fix; the store is left as it was.
- flipped_bit: one bit flipped in the middle of an encrypted data segment: reads of its
  chunk fail with EIO, the log names the segment (Corruption: fails authentication), and
  every other block reads back.
Cases: `file_*`, `s3rver_*`.
"""

import os
import re
import time

from e2e import BLOCK, Storage, check, check_eq, connect  # e2e puts tests/interop on the path
from harness import Daemon, import_nbd, portalctl, run, run_cases
from test_damage import Objects, is_errno, try_start

REGION = 64 * BLOCK
LSM = {"flush_interval_ms": 0}
PATTERN = b"PORTALBD-PLAINTEXT-PATTERN-7f3a9c"
KEY_HEX = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
OTHER_HEX = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100"
SEALED = {"seg/": b"PBDSEGE1", "map/": b"PBDSSTE1"}


def pattern_region(i):
    """A region of the pattern (compresses well: LZ4 runs before encryption) with its
    index, so every region differs."""
    unit = PATTERN + b"#%06d;" % i
    return (unit * (REGION // len(unit) + 1))[:REGION]


def key_file(tmp, name, hex_key):
    path = os.path.join(tmp, name)
    with open(path, "w") as f:
        f.write(hex_key + "\n")
    os.chmod(path, 0o600)
    return path


class Encrypted:
    """A Storage whose config carries the key settings."""

    def __init__(self, tmp, kind):
        self.st = Storage(tmp, kind)
        self.tmp = tmp
        self.key = key_file(tmp, "volume.key", KEY_HEX)

    def config(self, key=None):
        text = self.st.config(os.path.join(self.tmp, "cache"), LSM)
        if key:
            text = text.replace("[storage]\n", f'[storage]\nencryption_key_file = "{key}"\n', 1)
        return text

    def daemon(self, key=None):
        return Daemon(self.tmp, config=self.config(key), env=self.st.env, ready_timeout=30)

    def try_start(self, name, key=None):
        # test_damage.try_start writes Storage.config; ours adds the key.
        class Cfg:
            url, env, unsafe = self.st.url, self.st.env, self.st.unsafe

            @staticmethod
            def config(cache_dir, lsm=None):
                return self.config(key)
        return try_start(Cfg, self.tmp, name)


def write_volume(enc, regions=8):
    d = enc.daemon(enc.key)
    check("encryption at rest on" in d.log(), f"no encryption line in the log:\n{d.log()}")
    h = connect(d)
    for i in range(regions // 2):
        h.pwrite(pattern_region(i), i * REGION)
    h.flush()
    portalctl(d, "snapshot", "create", "s1")  # flushes the map memtable: a map SST
    for i in range(regions // 2, regions):
        h.pwrite(pattern_region(i), i * REGION)
    h.flush()
    h.shutdown()
    check_eq(d.stop(), 0, "portalbd exit status")


def verify_volume(enc, regions=8):
    d = enc.daemon(enc.key)
    h = connect(d)
    for i in range(regions):
        check_eq(h.pread(REGION, i * REGION), pattern_region(i), f"region {i} after reopen")
    h.shutdown()
    d.stop()


def plaintext_absent(tmp, kind):
    enc = Encrypted(tmp, kind)
    write_volume(enc)
    objs = Objects(enc.st)
    keys = objs.keys()
    seen = {}
    for k in keys:
        data = objs.get(k)
        check(PATTERN[:16] not in data, f"{k} holds the plaintext pattern")
        prefix = k.split("/")[0] + "/"
        seen[prefix] = seen.get(prefix, 0) + 1
        if prefix in SEALED:
            check_eq(data[-8:], SEALED[prefix], f"{k}: trailer magic")
        elif prefix in ("manifest/", "snap/"):
            check_eq(data[:8], b"PBDAEAD1", f"{k}: header magic")
    print(f"  scanned {len(keys)} objects: {seen}", flush=True)
    for p in ("seg/", "map/", "manifest/", "snap/"):
        check(seen.get(p), f"no {p} object in the store: {sorted(seen)}")
    if kind == "file":
        # The files themselves, whatever lies in the directory.
        root = enc.st.url[len("file://"):]
        files = 0
        for d, _, names in os.walk(root):
            for n in names:
                with open(os.path.join(d, n), "rb") as f:
                    check(PATTERN[:16] not in f.read(), f"{os.path.join(d, n)} holds the pattern")
                files += 1
        print(f"  scanned {files} files under {root}", flush=True)
    verify_volume(enc)


def wrong_key(tmp, kind):
    enc = Encrypted(tmp, kind)
    write_volume(enc, regions=2)
    objs = Objects(enc.st)
    before = objs.state()
    other = key_file(tmp, "other.key", OTHER_HEX)
    for name, key, words in (("nokey", None, ("encrypted", "encryption_key_file")),
                             ("wrongkey", other, ("wrong encryption_key_file",))):
        status, err, secs, address = enc.try_start(name, key)
        check(address is None, f"{name}: portalbd serves the volume on {address}:\n{err}")
        print(f"  {name}: exit {status} after {secs:.2f} s: {err.strip()[-300:]}", flush=True)
        check_eq(status, 1, f"{name}: exit status")
        for w in words:
            check(w in err, f"{name}: stderr does not say {w!r}:\n{err}")
        check(re.search(r"key id [0-9a-f]{16}", err), f"{name}: no key id in:\n{err}")
        check(objs.state() == before, f"{name}: a refused start changed the store")
    bad = key_file(tmp, "bad.key", "not a key")
    status, err, _, address = enc.try_start("badkey", bad)
    check(address is None and status == 1, f"a malformed key file was accepted:\n{err}")
    check("64 hex digits" in err, f"malformed key file: stderr says:\n{err}")
    verify_volume(enc, regions=2)


def flipped_bit(tmp, kind):
    nbd = import_nbd()
    enc = Encrypted(tmp, kind)
    objs = Objects(enc.st)
    d = enc.daemon(enc.key)
    h = connect(d)
    segs = []
    for r in range(3):
        before = set(objs.segments())
        h.pwrite(pattern_region(r), r * REGION)
        h.flush()
        segs += sorted(set(objs.segments()) - before)
    h.shutdown()
    d.stop()
    check_eq(len(segs), 3, f"one segment per FLUSH: {segs}")
    bad = segs[1]
    data = bytearray(objs.get(bad))
    at = 100  # inside the first chunk's ciphertext (the footer is at the end)
    data[at] ^= 0x08
    objs.put(bad, bytes(data))
    print(f"  flipped a bit at byte {at} of {bad} ({len(data)} bytes)", flush=True)
    d = enc.daemon(enc.key)
    h = connect(d)
    check_eq(h.pread(REGION, 0), pattern_region(0), "region 0 (another segment)")
    check_eq(h.pread(REGION, 2 * REGION), pattern_region(2), "region 2 (another segment)")
    try:
        h.pread(BLOCK, REGION)
        raise AssertionError("a read of the damaged chunk succeeded")
    except nbd.Error as e:
        check(is_errno(e, "EIO", 5), f"expected EIO, got {e.errno} ({e})")
    check(d.running(), "portalbd exited after a corrupt chunk")
    deadline = time.monotonic() + 5  # the log is written asynchronously
    while bad not in d.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    log = d.log()
    check(bad in log and "authentication" in log,
          f"the log does not name {bad} failing authentication:\n{log[-2000:]}")
    h.shutdown()
    d.stop()


def case_file_clone(tmp):
    """A named volume and its clone, encrypted: the clone reads its snapshot through the
    parent's sealed objects, also after the parent's delete and a restart; no object of
    either holds the plaintext; deleting the clone empties the store of both."""
    from test_volumes import nbdcopy_out
    enc = Encrypted(tmp, "file")
    d = enc.daemon(enc.key)
    portalctl(d, "volume", "create", "src", "--size", "4M")
    data = b"".join(pattern_region(i) for i in range(4 * 1024 * 1024 // REGION))
    src = os.path.join(tmp, "src.img")
    with open(src, "wb") as f:
        f.write(data)
    run(["nbdcopy", src, d.uri("src")], timeout=60)
    portalctl(d, "snapshot", "--volume", "src", "create", "gold")
    portalctl(d, "volume", "clone", "src@gold", "kid")
    check(nbdcopy_out(d, tmp, "kid", "kid.0") == data, "the encrypted clone reads its snapshot")
    portalctl(d, "volume", "delete", "src")
    check(nbdcopy_out(d, tmp, "kid", "kid.1") == data, "the clone after its parent's delete")
    d.stop()
    objs = Objects(enc.st)
    keys = objs.keys()
    check(any(k.startswith("volumes/kid/") for k in keys), f"no clone objects: {keys}")
    for k in keys:
        check(PATTERN[:16] not in objs.get(k), f"{k} holds the plaintext pattern")
    d = enc.daemon(enc.key)
    check(nbdcopy_out(d, tmp, "kid", "kid.2") == data, "the clone after a restart")
    portalctl(d, "volume", "delete", "kid")
    left = [k for k in Objects(enc.st).keys() if k.startswith(("volumes/", "registry/"))]
    check_eq(left, [], "objects of the deleted volumes")
    d.stop()


for _kind in ("file", "s3rver"):
    for _fn in (plaintext_absent, wrong_key, flipped_bit):
        globals()[f"case_{_kind}_{_fn.__name__}"] = (
            lambda tmp, fn=_fn, kind=_kind: fn(tmp, kind))

if __name__ == "__main__":
    run_cases(globals())
