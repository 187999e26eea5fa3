#!/usr/bin/python3
"""Many volumes in one daemon (docs/volumes.md), with real processes:

- s3rver_*: on s3rver (a real S3 server in Node): two named volumes created with
  portalctl, written at once by fio's nbd engine with crc32c verify, all exports in NBD
  LIST (nbdinfo --list), list/get/resize/delete through portalctl (--json and text, errors
  naming the volume, exit 1), and a restart that keeps every volume, its size and data.
- s3rver_clone: a clone of a snapshot (portalctl volume clone) reads what the snapshot
  holds, writes to it and to its parent never cross, its parent is deleted while it lives
  (the snapshot it reads cannot be), a restart keeps it, and deleting it removes both.
- file_takeover: a second daemon takes one volume over (file://, which honours conditional
  writes; s3rver ignores them, so fencing cannot work there): the first daemon is fenced
  for that volume only and keeps serving its others.
- rgw_takeover: the same on Ceph RGW (tests/e2e/rgw.py), a real S3 server with fencing on.
"""

import json
import os
import subprocess
import time

from e2e import Storage, check, check_eq, connect
from harness import import_nbd, portalctl, run, run_cases

MIB = 1 << 20


def ctl_json(d, *args, check_exit=True):
    r = portalctl(d, "--json", *args, check_exit=check_exit)
    return r.returncode, json.loads(r.stdout)


def fio_cmd(d, tmp, jobs, *opts):
    """One fio process, one job per (name, export): they run at once."""
    out = os.path.join(tmp, "fio.json")
    argv = ["fio", "--ioengine=nbd", "--output-format=json", f"--output={out}",
            "--rw=randwrite", "--bs=4k", "--iodepth=16", "--size=16M", "--verify=crc32c",
            "--verify_fatal=1", "--verify_dump=0", "--randseed=77", *opts]
    for name, export in jobs:
        argv += [f"--name={name}", f"--uri={d.uri(export)}"]
    r = run(argv, timeout=120, check_exit=False, cwd=tmp)
    check_eq(r.returncode, 0, f"fio exit status\n{r}")
    with open(out) as f:
        text = f.read()
    doc = json.loads(text[text.index("{"):])
    for j in doc["jobs"]:
        check_eq(j["error"], 0, f"fio job {j['jobname']}: error")
        check_eq(j["read"]["io_bytes"], j["write"]["io_bytes"] or 16 * MIB,
                 f"fio job {j['jobname']}: bytes verified")
    return doc


def exports(d):
    r = run(["nbdinfo", "--list", "--json", d.uri("")], timeout=30)
    return {e["export-name"]: e["export-size"] for e in json.loads(r.stdout)["exports"]}


def case_s3rver_two_volumes(tmp):
    st = Storage(tmp, "s3rver")
    d = st.daemon(cache_dir=os.path.join(tmp, "cache"))
    code, reply = ctl_json(d, "volume", "create", "alpha", "--size", "64M")
    check_eq(code, 0, "create alpha")
    check_eq(reply["volume"]["size_bytes"], 64 * MIB, "alpha's size")
    portalctl(d, "volume", "create", "beta", "--size", "32M")
    # Errors name the volume and exit 1, in text and --json.
    r = portalctl(d, "volume", "create", "alpha", "--size", "64M", check_exit=False)
    check_eq(r.returncode, 1, "duplicate create exit status")
    check("volume 'alpha' already exists" in r.stderr, r.stderr)
    code, reply = ctl_json(d, "volume", "get", "gamma", check_exit=False)
    check_eq((code, reply["error"]["code"]), (1, "not_found"), "get of a missing volume")
    check("'gamma'" in reply["error"]["message"], reply)
    r = portalctl(d, "volume", "create", "Bad_Name", "--size", "1G", check_exit=False)
    check(r.returncode == 1 and "'Bad_Name'" in r.stderr, r.stderr)

    fio_cmd(d, tmp, [("a", "alpha"), ("b", "beta")], "--do_verify=1")
    portalctl(d, "snapshot", "--volume", "alpha", "create", "s1")
    check_eq(exports(d), {"portalbd": 1 << 30, "alpha": 64 * MIB, "alpha@s1": 64 * MIB,
                          "beta": 32 * MIB}, "NBD LIST")

    code, listed = ctl_json(d, "volume", "list")
    vols = {v["name"]: v for v in listed["volumes"]}
    check_eq(sorted(vols), ["alpha", "beta", "portalbd"], "volume list")
    check(vols["alpha"]["live_bytes"] >= 15 * MIB, f"alpha's live bytes: {vols['alpha']}")
    check_eq(vols["alpha"]["snapshots"], 1, "alpha's snapshots")
    check_eq(vols["beta"]["attached"], 0, "beta's clients")
    text = portalctl(d, "volume", "list").stdout
    check("alpha" in text and "SNAPSHOTS" in text, text)

    # Grow online: a client connected before keeps its size, a new one sees the new size.
    nbd = import_nbd()
    h = connect_export(nbd, d, "beta")
    code, reply = ctl_json(d, "volume", "get", "beta")
    check_eq(reply["volume"]["attached"], 1, "beta's clients while connected")
    r = portalctl(d, "volume", "delete", "beta", check_exit=False)
    check(r.returncode == 1 and "volume 'beta' has 1 client attached" in r.stderr, r.stderr)
    r = portalctl(d, "volume", "resize", "beta", "--size", "16M", "--allow-shrink",
                  check_exit=False)
    check(r.returncode == 1 and "'beta'" in r.stderr, r.stderr)
    portalctl(d, "volume", "resize", "beta", "--size", "48M")
    check_eq(h.get_size(), 32 * MIB, "size seen by the client connected before the resize")
    h2 = connect_export(nbd, d, "beta")
    check_eq(h2.get_size(), 48 * MIB, "size seen by a new client")
    h.shutdown()
    h2.shutdown()
    r = portalctl(d, "volume", "resize", "beta", "--size", "40M", check_exit=False)
    check(r.returncode == 1 and "refusing to shrink" in r.stderr and "beta" in r.stderr,
          r.stderr)
    d.stop()

    # A restart keeps every volume, its size and its data.
    d = st.daemon(cache_dir=os.path.join(tmp, "cache"))
    check_eq(exports(d), {"portalbd": 1 << 30, "alpha": 64 * MIB, "alpha@s1": 64 * MIB,
                          "beta": 48 * MIB}, "NBD LIST after a restart")
    fio_cmd(d, tmp, [("a", "alpha"), ("b", "beta")], "--verify_only=1")
    fio_cmd(d, tmp, [("s", "alpha@s1")], "--verify_only=1")

    portalctl(d, "volume", "delete", "beta")
    check_eq(sorted(exports(d)), ["alpha", "alpha@s1", "portalbd"], "NBD LIST after delete")
    keys = st.server.keys("vol")
    check(not [k for k in keys if "/volumes/beta/" in k or k.endswith("/registry/beta.json")],
          f"beta's objects left: {[k for k in keys if 'beta' in k][:5]}")
    d.stop()
    d = st.daemon(cache_dir=os.path.join(tmp, "cache"))
    check_eq(sorted(exports(d)), ["alpha", "alpha@s1", "portalbd"], "deleted stays deleted")
    d.stop()


def nbdcopy_out(d, tmp, export, name):
    path = os.path.join(tmp, name)
    run(["nbdcopy", d.uri(export), path], timeout=60)
    with open(path, "rb") as f:
        return f.read()


def case_s3rver_clone(tmp):
    nbd = import_nbd()
    st = Storage(tmp, "s3rver")
    cache = os.path.join(tmp, "cache")
    d = st.daemon(cache_dir=cache)
    portalctl(d, "volume", "create", "src", "--size", "16M")
    pattern = os.urandom(8 * MIB) + bytes(8 * MIB)
    with open(os.path.join(tmp, "pattern"), "wb") as f:
        f.write(pattern)
    run(["nbdcopy", os.path.join(tmp, "pattern"), d.uri("src")], timeout=60)
    portalctl(d, "snapshot", "--volume", "src", "create", "gold")

    code, reply = ctl_json(d, "volume", "clone", "src@gold", "kid")
    check_eq(code, 0, "clone")
    check_eq((reply["volume"]["name"], reply["volume"]["size_bytes"], reply["volume"]["clone_of"]),
             ("kid", 16 * MIB, {"volume": "src", "snapshot": "gold"}), "the clone's entry")
    # Errors name the volume and exit 1.
    for args, words in [(("src@nope", "x"), ("'src'", "'nope'")),
                        (("gone@gold", "x"), ("'gone'",)),
                        (("src@gold", "kid"), ("volume 'kid' already exists",)),
                        (("src", "x"), ("'src'", "SOURCE@SNAPSHOT"))]:
        r = portalctl(d, "volume", "clone", *args, check_exit=False)
        check(r.returncode == 1 and all(w in r.stderr for w in words), f"{args}: {r}")
    check_eq(sorted(exports(d)), ["kid", "portalbd", "src", "src@gold"], "NBD LIST")
    check(nbdcopy_out(d, tmp, "kid", "kid.0") == pattern, "the clone reads its snapshot")
    check(nbdcopy_out(d, tmp, "src@gold", "gold.0") == pattern, "the snapshot itself")

    # Writes to either never appear in the other.
    hk, hs = connect_export(nbd, d, "kid"), connect_export(nbd, d, "src")
    hk.pwrite(b"\xaa" * 4096, 0)
    hs.pwrite(b"\xbb" * 4096, 4096)
    hk.flush()
    hs.flush()
    check_eq((hk.pread(4096, 0), hk.pread(4096, 4096)), (b"\xaa" * 4096, pattern[4096:8192]),
             "the clone after both writes")
    check_eq((hs.pread(4096, 0), hs.pread(4096, 4096)), (pattern[:4096], b"\xbb" * 4096),
             "the parent after both writes")
    hk.shutdown()
    hs.shutdown()
    kid = b"\xaa" * 4096 + pattern[4096:]

    # The snapshot a clone reads cannot be deleted; its volume can, the clone reads on.
    r = portalctl(d, "snapshot", "--volume", "src", "delete", "gold", check_exit=False)
    check(r.returncode == 1 and "'gold'" in r.stderr and "kid" in r.stderr and
          "src" in r.stderr, r.stderr)
    portalctl(d, "volume", "delete", "src")
    check_eq(sorted(exports(d)), ["kid", "portalbd"], "NBD LIST after the parent's delete")
    check(nbdcopy_out(d, tmp, "kid", "kid.1") == kid, "the clone after its parent's delete")
    r = portalctl(d, "volume", "create", "src", "--size", "16M", check_exit=False)
    check(r.returncode == 1 and "volume 'src' already exists" in r.stderr, r.stderr)
    text = portalctl(d, "volume", "list").stdout
    check("src@gold" in text, text)
    d.stop()

    d = st.daemon(cache_dir=cache)
    check_eq(sorted(exports(d)), ["kid", "portalbd"], "NBD LIST after a restart")
    check(nbdcopy_out(d, tmp, "kid", "kid.2") == kid, "the clone after a restart")
    portalctl(d, "volume", "delete", "kid")
    check_eq(sorted(exports(d)), ["portalbd"], "NBD LIST after the clone's delete")
    keys = st.server.keys("vol")
    left = [k for k in keys if "/volumes/" in k or "/registry/" in k or "/clones/" in k]
    check(not left, f"objects left: {left[:5]}")
    d.stop()


def connect_export(nbd, d, export):
    h = nbd.NBD()
    h.connect_uri(d.uri(export))
    return h


def takeover(tmp, kind):
    nbd = import_nbd()
    st = Storage(tmp, kind)
    a = st.daemon(cache_dir=os.path.join(tmp, "cache-a"), lsm={"flush_interval_ms": 0})
    portalctl(a, "volume", "create", "one", "--size", "16M")
    portalctl(a, "volume", "create", "two", "--size", "16M")
    ha1, ha2 = connect_export(nbd, a, "one"), connect_export(nbd, a, "two")
    ha1.pwrite(b"\x11" * 4096, 0)
    ha2.pwrite(b"\x22" * 4096, 0)
    ha1.flush()
    ha2.flush()

    # B serves only "two" ([storage] volumes as a flag): A is fenced for it alone.
    b = st.daemon(cache_dir=os.path.join(tmp, "cache-b"), lsm={"flush_interval_ms": 0},
                  args=("--volumes", "two"))
    check_eq(sorted(exports(b)), ["two"], "B's exports")
    hb = connect_export(nbd, b, "two")
    check_eq(hb.pread(4096, 0), b"\x22" * 4096, "B reads what A flushed to two")
    ha2.pwrite(b"\x33" * 4096, 4096)
    try:
        ha2.flush()
        raise AssertionError("A acknowledged a FLUSH of a volume B took over")
    except nbd.Error:
        pass
    ha1.pwrite(b"\x44" * 4096, 4096)
    ha1.flush()  # A's other volume keeps serving
    check_eq(ha1.pread(4096, 4096), b"\x44" * 4096, "A's one after the takeover")
    code, listed = ctl_json(a, "volume", "list")
    fenced = {v["name"]: v["fenced"] for v in listed["volumes"]}
    check_eq(fenced, {"one": False, "two": True, "portalbd": False}, "A's volumes fenced")
    hb.pwrite(b"\x55" * 4096, 8192)
    hb.flush()
    # A releases what it lost (nothing attached once its client left); B keeps it.
    ha2.shutdown()
    portalctl(a, "volume", "release", "two")
    check_eq(sorted(exports(a)), ["one", "portalbd"], "A's exports after release")
    ha1.shutdown()
    hb.shutdown()
    a.stop()
    b.stop()


def case_file_takeover(tmp):
    takeover(tmp, "file")


def case_rgw_takeover(tmp):
    # On Ceph RGW with fencing on: If-None-Match honoured, so B's open fences A for "two".
    takeover(tmp, "rgw")


if __name__ == "__main__":
    run_cases(globals(), tools=("fio", "nbdinfo"))
