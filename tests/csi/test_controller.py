#!/usr/bin/python3
"""CSI Controller against the real portalbd-csi and portalbd: volumes, capacity ranges,
snapshots with pagination and filters, clones with their data checked, expansion, deletes,
and each error code.

The controller's daemon serves no volume at rest (`volumes = []`); a second daemon on the
same storage plays the node: it opens a volume to write or read it through NBD
(python3-libnbd) and releases it. Cases are named BACKEND_what: `file_*` on file:// in the
case's directory, `s3_*` on s3rver (ctest runs those as their own entry, labelled s3).
"""

import json
import os
import re
import socket
import threading
from contextlib import contextmanager

from csi_harness import (Csi, Daemon, S3rver, check, check_eq, csi, expect_code, grpc,
                         portalctl, run_cases)
from harness import import_nbd

KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30
Code = grpc.StatusCode
Mode = csi.VolumeCapability.AccessMode
Rpc = csi.ControllerServiceCapability.RPC


# --- setup ----------------------------------------------------------------------------------


def storage_config(tmp, backend, who):
    if backend == "s3":
        return (f'[storage]\nurl = "s3://{tmp.s3.bucket}/csi"\nunsafe_no_fencing = true\n'
                f'cache_dir = "{tmp.path}/cache-{who}"\nvolumes = []\n')
    return (f'[storage]\nurl = "file://{tmp.path}/store"\ncache_dir = "{tmp.path}/cache-{who}"\n'
            'volumes = []\n')


class Setup:
    """The controller's daemon and portalbd-csi (role controller), and a node daemon on the
    same storage."""

    def __init__(self, path, backend, csi_args=(), node_config=""):
        self.path = path
        self.s3 = S3rver(path) if backend == "s3" else None
        env = self.s3.env() if self.s3 else None
        self.ctl_daemon = Daemon(path, config=storage_config(self, backend, "ctl"), env=env)
        self.node = Daemon(path, config=storage_config(self, backend, "node") + node_config,
                           env=env)
        self.csi = Csi(path, self.ctl_daemon, role="controller", args=csi_args)
        self.c = self.csi.controller

    def close(self):
        self.csi.stop()
        self.node.stop()
        self.ctl_daemon.stop()


@contextmanager
def setup(tmp, backend="file", csi_args=(), node_config=""):
    s = Setup(tmp, backend, csi_args, node_config)
    try:
        yield s
    finally:
        s.close()


def mount_cap(mode=Mode.SINGLE_NODE_WRITER, fs_type=""):
    return csi.VolumeCapability(mount=csi.VolumeCapability.MountVolume(fs_type=fs_type),
                                access_mode=csi.VolumeCapability.AccessMode(mode=mode))


def block_cap(mode=Mode.SINGLE_NODE_WRITER):
    return csi.VolumeCapability(block=csi.VolumeCapability.BlockVolume(),
                                access_mode=csi.VolumeCapability.AccessMode(mode=mode))


def create(c, name, required=0, limit=0, caps=None, params=None, source=None):
    req = csi.CreateVolumeRequest(name=name, volume_capabilities=caps or [mount_cap()],
                                  parameters=params or {})
    if required or limit:
        req.capacity_range.required_bytes = required
        req.capacity_range.limit_bytes = limit
    if source is not None:
        req.volume_content_source.CopyFrom(source)
    return c.CreateVolume(req).volume


def from_snapshot(snapshot_id):
    return csi.VolumeContentSource(
        snapshot=csi.VolumeContentSource.SnapshotSource(snapshot_id=snapshot_id))


def from_volume(volume_id):
    return csi.VolumeContentSource(
        volume=csi.VolumeContentSource.VolumeSource(volume_id=volume_id))


def snap(c, name, volume_id):
    return c.CreateSnapshot(csi.CreateSnapshotRequest(name=name,
                                                      source_volume_id=volume_id)).snapshot


def control(d, request):
    """One raw control request to daemon `d`: its reply as a dict."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(60)
    s.connect(d.ctl)
    s.sendall((json.dumps(request) + "\n").encode())
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = s.recv(65536)
        check(chunk, "daemon closed the control connection")
        buf += chunk
    s.close()
    return json.loads(buf)


def inspect(d, name):
    reply = control(d, {"op": "volume.inspect", "name": name})
    check(reply["ok"], f"volume.inspect {name}: {reply}")
    return reply["volumes"][0]


@contextmanager
def served(node, name):
    """Volume `name` opened on the node daemon for the block, released after."""
    portalctl(node, "volume", "open", name)
    try:
        yield
    finally:
        portalctl(node, "volume", "release", name)


def nbd_handle(node, name):
    nbd = import_nbd()
    h = nbd.NBD()
    h.connect_uri(node.uri(name))
    return h


def write(node, name, offset, data):
    with served(node, name):
        h = nbd_handle(node, name)
        h.pwrite(data, offset)
        h.flush()
        h.shutdown()


def read(node, name, offset, length):
    with served(node, name):
        h = nbd_handle(node, name)
        size = h.get_size()
        data = h.pread(length, offset)
        h.shutdown()
    return size, data


def pattern(n, seed):
    return bytes((i * 7 + seed) & 0xFF for i in range(n))


# --- cases ----------------------------------------------------------------------------------


def case_file_capabilities_and_capacity(tmp):
    with setup(tmp) as s:
        caps = s.c.ControllerGetCapabilities(csi.ControllerGetCapabilitiesRequest())
        types = {cap.rpc.type for cap in caps.capabilities}
        check_eq(types, {Rpc.CREATE_DELETE_VOLUME, Rpc.LIST_VOLUMES, Rpc.CREATE_DELETE_SNAPSHOT,
                         Rpc.LIST_SNAPSHOTS, Rpc.CLONE_VOLUME, Rpc.EXPAND_VOLUME, Rpc.GET_VOLUME,
                         Rpc.VOLUME_CONDITION, Rpc.SINGLE_NODE_MULTI_WRITER,
                         Rpc.PUBLISH_UNPUBLISH_VOLUME, Rpc.PUBLISH_READONLY,
                         Rpc.LIST_VOLUMES_PUBLISHED_NODES},
                 "controller capabilities without a capacity")
        expect_code(lambda: s.c.GetCapacity(csi.GetCapacityRequest()), Code.UNIMPLEMENTED,
                    "GetCapacity, not advertised")
    with Daemon(tmp, config=f'[storage]\nurl = "file://{tmp}/store2"\nvolumes = []\n') as d, \
            Csi(tmp, d, role="controller", args=["--capacity-bytes", str(10 * GIB)]) as c:
        caps = c.controller.ControllerGetCapabilities(csi.ControllerGetCapabilitiesRequest())
        check(Rpc.GET_CAPACITY in {cap.rpc.type for cap in caps.capabilities},
              "GET_CAPACITY advertised with --capacity-bytes")
        got = c.controller.GetCapacity(csi.GetCapacityRequest())
        check_eq(got.available_capacity, 10 * GIB, "capacity of an empty store")
        create(c.controller, "a", required=3 * GIB)
        got = c.controller.GetCapacity(csi.GetCapacityRequest())
        check_eq(got.available_capacity, 7 * GIB, "capacity less the volume's size")
        multi = c.controller.GetCapacity(csi.GetCapacityRequest(
            volume_capabilities=[mount_cap(Mode.MULTI_NODE_MULTI_WRITER)]))
        check_eq(multi.available_capacity, 0, "no capacity for a mode that does not work")
        expect_code(lambda: c.controller.GetCapacity(csi.GetCapacityRequest(
            parameters={"nope": "1"})), Code.INVALID_ARGUMENT, "GetCapacity, unknown parameter")


def case_file_create_idempotent_and_errors(tmp):
    with setup(tmp) as s:
        c = s.c
        v = create(c, "pvc-1", required=10 * MIB)
        check_eq((v.volume_id, v.capacity_bytes), ("pvc-1", 10 * MIB), "created")
        again = create(c, "pvc-1", required=10 * MIB)
        check_eq((again.volume_id, again.capacity_bytes), ("pvc-1", 10 * MIB), "retried")
        check_eq(create(c, "pvc-1", required=5 * MIB).capacity_bytes, 10 * MIB,
                 "a smaller minimum is met by the volume there")
        expect_code(lambda: create(c, "pvc-1", required=20 * MIB, limit=20 * MIB),
                    Code.ALREADY_EXISTS, "the name with another size")
        expect_code(lambda: create(c, "pvc-1", required=10 * MIB, params={"blockSize": "8192"}),
                    Code.ALREADY_EXISTS, "the name with another block size")
        # A name that is no volume name maps to a hash of it, the same on every retry.
        long_name = "PVC " + "x" * 124
        h = create(c, long_name)
        check(h.volume_id.startswith("csi-") and len(h.volume_id) == 36, f"id {h.volume_id}")
        check_eq(h.capacity_bytes, GIB, "the default size")
        check_eq(create(c, long_name).volume_id, h.volume_id, "the same id on a retry")
        # The block size parameter.
        b = create(c, "big-blocks", required=MIB, params={"blockSize": "8192"})
        check_eq(inspect(s.ctl_daemon, b.volume_id)["block_size"], 8192, "block size")
        check_eq(create(c, "small-blocks", required=MIB, params={
            "csi.storage.k8s.io/pvc/name": "x"}).capacity_bytes, MIB,
            "the provisioner's own parameters are ignored")
        check_eq(inspect(s.ctl_daemon, "small-blocks")["block_size"], 4096, "default block size")
        # Errors.
        bad = [
            ("no name", csi.CreateVolumeRequest(volume_capabilities=[mount_cap()])),
            ("no capabilities", csi.CreateVolumeRequest(name="x")),
            ("multi-node writer", csi.CreateVolumeRequest(
                name="x", volume_capabilities=[mount_cap(Mode.MULTI_NODE_MULTI_WRITER)])),
            ("multi-node reader", csi.CreateVolumeRequest(
                name="x", volume_capabilities=[block_cap(Mode.MULTI_NODE_READER_ONLY)])),
            ("unknown mode", csi.CreateVolumeRequest(
                name="x", volume_capabilities=[mount_cap(Mode.UNKNOWN)])),
            ("no access type", csi.CreateVolumeRequest(name="x", volume_capabilities=[
                csi.VolumeCapability(access_mode=csi.VolumeCapability.AccessMode(
                    mode=Mode.SINGLE_NODE_WRITER))])),
            ("unknown fs", csi.CreateVolumeRequest(
                name="x", volume_capabilities=[mount_cap(fs_type="vfat")])),
            ("unknown parameter", csi.CreateVolumeRequest(
                name="x", volume_capabilities=[mount_cap()], parameters={"replicas": "3"})),
            ("bad block size", csi.CreateVolumeRequest(
                name="x", volume_capabilities=[mount_cap()], parameters={"blockSize": "3000"})),
            ("control character", csi.CreateVolumeRequest(
                name="a\x01b", volume_capabilities=[mount_cap()])),
        ]
        for what, req in bad:
            expect_code(lambda req=req: c.CreateVolume(req), Code.INVALID_ARGUMENT, what)
        check_eq(inspect(s.ctl_daemon, "pvc-1")["size_bytes"], 10 * MIB, "left alone")
        # Every working mode and access type.
        for i, cap in enumerate([block_cap(), mount_cap(Mode.SINGLE_NODE_SINGLE_WRITER, "ext4"),
                                 mount_cap(Mode.SINGLE_NODE_MULTI_WRITER, "xfs"),
                                 mount_cap(Mode.SINGLE_NODE_WRITER, "btrfs"),
                                 block_cap(Mode.SINGLE_NODE_READER_ONLY)]):
            create(c, f"mode-{i}", required=MIB, caps=[cap])
        # Nothing stays served on the controller's daemon.
        served_now = control(s.ctl_daemon, {"op": "volume.list"})["volumes"]
        check_eq(served_now, [], "volumes served by the controller's daemon at rest")


def case_file_capacity_ranges(tmp):
    with setup(tmp) as s:
        c = s.c
        check_eq(create(c, "r1", required=1000).capacity_bytes, 4096, "rounded up to a block")
        check_eq(create(c, "r2", required=12 * KIB, limit=12 * KIB).capacity_bytes, 12 * KIB,
                 "exact size")
        check_eq(create(c, "r3", limit=MIB).capacity_bytes, MIB, "a limit below the default")
        check_eq(create(c, "r4", required=5000, limit=9000).capacity_bytes, 8192,
                 "a block multiple inside the range")
        expect_code(lambda: create(c, "r5", required=5000, limit=6000), Code.OUT_OF_RANGE,
                    "no block multiple in the range")
        expect_code(lambda: create(c, "r6", limit=1000), Code.OUT_OF_RANGE,
                    "a limit below one block")
        expect_code(lambda: create(c, "r7", required=(1 << 63) - 1), Code.OUT_OF_RANGE,
                    "larger than any volume")
        expect_code(lambda: create(c, "r8", required=2 * MIB, limit=MIB), Code.INVALID_ARGUMENT,
                    "required above limit")
        expect_code(lambda: create(c, "r9", required=-1), Code.INVALID_ARGUMENT, "negative")
        expect_code(lambda: create(c, "r10", required=MIB + 1, limit=MIB + 100,
                                   params={"blockSize": "65536"}),
                    Code.OUT_OF_RANGE, "no 64 KiB multiple in the range")
        names = {v.volume.volume_id for v in
                 s.c.ListVolumes(csi.ListVolumesRequest()).entries}
        check_eq(names, {"r1", "r2", "r3", "r4"}, "only the volumes that fit were made")


def case_file_snapshots_list_and_pages(tmp):
    with setup(tmp) as s:
        c = s.c
        create(c, "va", required=MIB)
        create(c, "vb", required=2 * MIB)
        made = {}
        for name, vol in [("s1", "va"), ("s2", "va"), ("s3", "vb"), ("s4", "vb"), ("s5", "va")]:
            sn = snap(c, name, vol)
            check_eq((sn.snapshot_id, sn.source_volume_id, sn.ready_to_use),
                     (f"{vol}@{name}", vol, True), f"snapshot {name}")
            check_eq(sn.size_bytes, MIB if vol == "va" else 2 * MIB, "snapshot size")
            check(sn.creation_time.seconds > 1_700_000_000, "creation time")
            made[sn.snapshot_id] = sn
        again = snap(c, "s1", "va")
        check_eq(again, made["va@s1"], "CreateSnapshot retried: the same snapshot")
        expect_code(lambda: snap(c, "s1", "vb"), Code.ALREADY_EXISTS,
                    "a snapshot name taken on another volume")
        expect_code(lambda: snap(c, "", "va"), Code.INVALID_ARGUMENT, "no name")
        expect_code(lambda: snap(c, "s9", ""), Code.INVALID_ARGUMENT, "no source")
        expect_code(lambda: snap(c, "s9", "nope"), Code.NOT_FOUND, "unknown source")
        expect_code(lambda: c.CreateSnapshot(csi.CreateSnapshotRequest(
            name="s9", source_volume_id="va", parameters={"x": "y"})), Code.INVALID_ARGUMENT,
            "unknown snapshot parameter")
        hashed = snap(c, "Weird Name/1", "va")
        check(hashed.snapshot_id.startswith("va@csi-"), f"hashed id {hashed.snapshot_id}")
        check_eq(snap(c, "Weird Name/1", "va").snapshot_id, hashed.snapshot_id, "hashed retry")
        made[hashed.snapshot_id] = hashed

        def ids(reply):
            return [e.snapshot.snapshot_id for e in reply.entries]

        every = c.ListSnapshots(csi.ListSnapshotsRequest())
        check_eq(sorted(ids(every)), sorted(made), "every snapshot listed")
        for e in every.entries:
            check_eq(e.snapshot, made[e.snapshot.snapshot_id], "listed as created")
        check_eq(every.next_token, "", "no token on the last page")
        # Pages of 2 cover every snapshot once, in order.
        seen, token, pages = [], "", 0
        while True:
            page = c.ListSnapshots(csi.ListSnapshotsRequest(max_entries=2, starting_token=token))
            check(len(page.entries) <= 2, "a page holds at most max_entries")
            seen += ids(page)
            pages += 1
            token = page.next_token
            if not token:
                break
        check_eq(seen, ids(every), "pages in order, none twice")
        check_eq(pages, 3, "6 snapshots in pages of 2")
        first = c.ListSnapshots(csi.ListSnapshotsRequest(max_entries=2))
        rest = c.ListSnapshots(csi.ListSnapshotsRequest(starting_token=first.next_token))
        check_eq(len(rest.entries), len(made) - 2, "the rest after a token without a max")
        # Filters.
        by_vol = c.ListSnapshots(csi.ListSnapshotsRequest(source_volume_id="vb"))
        check_eq(ids(by_vol), ["vb@s3", "vb@s4"], "by source volume")
        by_id = c.ListSnapshots(csi.ListSnapshotsRequest(snapshot_id="va@s2"))
        check_eq(ids(by_id), ["va@s2"], "by snapshot id")
        both = c.ListSnapshots(csi.ListSnapshotsRequest(snapshot_id="va@s2",
                                                        source_volume_id="vb"))
        check_eq(ids(both), [], "snapshot id of another volume")
        for what, req in [("unknown volume", csi.ListSnapshotsRequest(source_volume_id="zz")),
                          ("unknown snapshot", csi.ListSnapshotsRequest(snapshot_id="va@zz")),
                          ("malformed id", csi.ListSnapshotsRequest(snapshot_id="garbage"))]:
            check_eq(ids(c.ListSnapshots(req)), [], what)
        expect_code(lambda: c.ListSnapshots(csi.ListSnapshotsRequest(starting_token="bad")),
                    Code.ABORTED, "a bad token")
        expect_code(lambda: c.ListSnapshots(csi.ListSnapshotsRequest(max_entries=-1)),
                    Code.INVALID_ARGUMENT, "negative max_entries")
        # Deletes: idempotent; ids that name nothing are already gone.
        c.DeleteSnapshot(csi.DeleteSnapshotRequest(snapshot_id="va@s2"))
        c.DeleteSnapshot(csi.DeleteSnapshotRequest(snapshot_id="va@s2"))
        for gone in ["reallyfakesnapshotid", "nope@s1", "va@nope"]:
            c.DeleteSnapshot(csi.DeleteSnapshotRequest(snapshot_id=gone))
        expect_code(lambda: c.DeleteSnapshot(csi.DeleteSnapshotRequest()),
                    Code.INVALID_ARGUMENT, "DeleteSnapshot without an id")
        check("va@s2" not in ids(c.ListSnapshots(csi.ListSnapshotsRequest())), "deleted")
        check_eq([x["name"] for x in inspect(s.ctl_daemon, "va")["snapshot_list"]],
                 ["s1", "s5", hashed.snapshot_id.split("@")[1]], "the volume's snapshots")


def clone_from_snapshot_data(s):
    c = s.c
    create(c, "src", required=8 * MIB)
    before = pattern(MIB, 1)
    write(s.node, "src", 3 * MIB, before)
    sn = snap(c, "golden", "src")
    write(s.node, "src", 3 * MIB, pattern(MIB, 2))  # after the snapshot: not in the clone
    clone = create(c, "from-snap", required=16 * MIB, source=from_snapshot(sn.snapshot_id))
    check_eq(clone.capacity_bytes, 16 * MIB, "the clone has the size asked")
    check_eq(clone.content_source.snapshot.snapshot_id, "src@golden", "content source")
    size, data = read(s.node, "from-snap", 3 * MIB, MIB)
    check_eq(size, 16 * MIB, "the clone's device size")
    check_eq(data, before, "the clone holds the snapshot's data")
    _, tail = read(s.node, "from-snap", 8 * MIB, MIB)
    check_eq(tail, bytes(MIB), "beyond the snapshot's size: zeroes")
    same = create(c, "from-snap", required=16 * MIB, source=from_snapshot(sn.snapshot_id))
    check_eq(same.volume_id, "from-snap", "the clone retried")
    expect_code(lambda: create(c, "from-snap", required=16 * MIB), Code.ALREADY_EXISTS,
                "the clone's name without its source")
    plain = create(c, "plain-size", source=from_snapshot(sn.snapshot_id))
    check_eq(plain.capacity_bytes, 8 * MIB, "no size asked: the snapshot's")
    expect_code(lambda: create(c, "too-small", required=MIB, limit=4 * MIB,
                               source=from_snapshot(sn.snapshot_id)),
                Code.OUT_OF_RANGE, "a limit below the snapshot's size")
    expect_code(lambda: create(c, "x1", source=from_snapshot("src@nope")), Code.NOT_FOUND,
                "unknown snapshot")
    expect_code(lambda: create(c, "x2", source=from_snapshot("non-existing-snapshot-id")),
                Code.NOT_FOUND, "malformed snapshot id")
    expect_code(lambda: create(c, "x3", source=from_snapshot("gone@golden")), Code.NOT_FOUND,
                "snapshot of an unknown volume")
    expect_code(lambda: create(c, "x4", source=from_snapshot(sn.snapshot_id),
                               params={"blockSize": "8192"}),
                Code.INVALID_ARGUMENT, "a clone with another block size")
    # A snapshot with clones stays (the clone reads it); the source volume may go.
    expect_code(lambda: c.DeleteSnapshot(csi.DeleteSnapshotRequest(snapshot_id="src@golden")),
                Code.FAILED_PRECONDITION, "deleting a snapshot its clone reads")
    c.DeleteVolume(csi.DeleteVolumeRequest(volume_id="src"))
    _, data = read(s.node, "from-snap", 3 * MIB, MIB)
    check_eq(data, before, "the clone after its source's delete")


def case_file_clone_from_snapshot(tmp):
    with setup(tmp) as s:
        clone_from_snapshot_data(s)


def clone_from_volume_data(s):
    c = s.c
    create(c, "base", required=4 * MIB)
    data = pattern(2 * MIB, 3)
    write(s.node, "base", MIB, data)
    clone = create(c, "copy", source=from_volume("base"))
    check_eq(clone.capacity_bytes, 4 * MIB, "the source's size")
    check_eq(clone.content_source.volume.volume_id, "base", "content source")
    check_eq(create(c, "copy", source=from_volume("base")).volume_id, "copy", "retried")
    _, got = read(s.node, "copy", MIB, 2 * MIB)
    check_eq(got, data, "the clone holds the volume's data")
    write(s.node, "copy", MIB, pattern(4096, 9))
    _, base_now = read(s.node, "base", MIB, 2 * MIB)
    check_eq(base_now, data, "writing the clone leaves its source alone")
    listed = [e.snapshot.snapshot_id for e in
              c.ListSnapshots(csi.ListSnapshotsRequest()).entries]
    check_eq(listed, [], "the snapshot a clone of a volume reads is the controller's own")
    check_eq([x["name"] for x in inspect(s.ctl_daemon, "base")["snapshot_list"]],
             ["csi-clone-copy"], "the source keeps it while the clone lives")
    expect_code(lambda: create(c, "copy2", source=from_volume("nope")), Code.NOT_FOUND,
                "unknown source volume")
    expect_code(lambda: create(c, "copy3", required=MIB, limit=2 * MIB,
                               source=from_volume("base")),
                Code.OUT_OF_RANGE, "a limit below the source's size")
    c.DeleteVolume(csi.DeleteVolumeRequest(volume_id="copy"))
    check_eq(inspect(s.ctl_daemon, "base")["snapshot_list"], [],
             "the clone's snapshot goes with the clone")


def case_file_clone_from_volume(tmp):
    with setup(tmp) as s:
        clone_from_volume_data(s)


def expand(c, volume_id, required, limit=0, cap=None):
    req = csi.ControllerExpandVolumeRequest(volume_id=volume_id)
    req.capacity_range.required_bytes = required
    req.capacity_range.limit_bytes = limit
    if cap is not None:
        req.volume_capability.CopyFrom(cap)
    return c.ControllerExpandVolume(req)


def expand_checks(s):
    c = s.c
    create(c, "grow", required=4 * MIB)
    write(s.node, "grow", 0, pattern(MIB, 5))
    r = expand(c, "grow", 10 * MIB, cap=mount_cap())
    check_eq((r.capacity_bytes, r.node_expansion_required), (10 * MIB, True), "mount volume")
    r = expand(c, "grow", 12 * MIB, cap=block_cap())
    check_eq((r.capacity_bytes, r.node_expansion_required), (12 * MIB, False), "block volume")
    r = expand(c, "grow", 12 * MIB)
    check_eq(r.capacity_bytes, 12 * MIB, "the same size again")
    r = expand(c, "grow", 2 * MIB)
    check_eq(r.capacity_bytes, 12 * MIB, "never shrinks")
    size, data = read(s.node, "grow", 0, MIB)
    check_eq(size, 12 * MIB, "the device's new size")
    check_eq(data, pattern(MIB, 5), "data kept")
    check_eq(c.ControllerGetVolume(csi.ControllerGetVolumeRequest(
        volume_id="grow")).volume.capacity_bytes, 12 * MIB, "ControllerGetVolume's capacity")
    expect_code(lambda: expand(c, "grow", 13 * MIB, limit=13 * MIB - 100), Code.INVALID_ARGUMENT,
                "required above limit")
    expect_code(lambda: expand(c, "grow", 0, limit=8 * MIB), Code.OUT_OF_RANGE,
                "a limit below the volume's size")
    expect_code(lambda: expand(c, "nope", 20 * MIB), Code.NOT_FOUND, "unknown volume")
    expect_code(lambda: expand(c, "", 20 * MIB), Code.INVALID_ARGUMENT, "no volume id")
    expect_code(lambda: c.ControllerExpandVolume(csi.ControllerExpandVolumeRequest(
        volume_id="grow")), Code.INVALID_ARGUMENT, "no capacity range")


def case_file_expand(tmp):
    with setup(tmp) as s:
        expand_checks(s)


def case_file_volumes_list_get_validate_delete(tmp):
    with setup(tmp) as s:
        c = s.c
        for i in range(5):
            create(c, f"v{i}", required=(i + 1) * MIB)
        every = c.ListVolumes(csi.ListVolumesRequest())
        check_eq([(e.volume.volume_id, e.volume.capacity_bytes) for e in every.entries],
                 [(f"v{i}", (i + 1) * MIB) for i in range(5)], "every volume with its capacity")
        for e in every.entries:
            check(not e.status.volume_condition.abnormal, "a healthy volume")
        seen, token = [], ""
        while True:
            page = c.ListVolumes(csi.ListVolumesRequest(max_entries=2, starting_token=token))
            check(len(page.entries) <= 2, "at most max_entries")
            seen += [e.volume.volume_id for e in page.entries]
            token = page.next_token
            if not token:
                break
        check_eq(seen, [f"v{i}" for i in range(5)], "pages in order, none twice")
        # A token stays good when the last volume of its page is deleted.
        first = c.ListVolumes(csi.ListVolumesRequest(max_entries=2))
        c.DeleteVolume(csi.DeleteVolumeRequest(volume_id="v1"))
        rest = c.ListVolumes(csi.ListVolumesRequest(starting_token=first.next_token))
        check_eq([e.volume.volume_id for e in rest.entries], ["v2", "v3", "v4"], "after a delete")
        expect_code(lambda: c.ListVolumes(csi.ListVolumesRequest(starting_token="invalid-token")),
                    Code.ABORTED, "a bad token")
        # ControllerGetVolume.
        got = c.ControllerGetVolume(csi.ControllerGetVolumeRequest(volume_id="v2"))
        check_eq((got.volume.volume_id, got.volume.capacity_bytes), ("v2", 3 * MIB), "get")
        check(not got.status.volume_condition.abnormal, "healthy")
        for vid in ["v1", "nope", "Not A Volume"]:
            expect_code(lambda vid=vid: c.ControllerGetVolume(csi.ControllerGetVolumeRequest(
                volume_id=vid)), Code.NOT_FOUND, f"get {vid}")
        expect_code(lambda: c.ControllerGetVolume(csi.ControllerGetVolumeRequest()),
                    Code.INVALID_ARGUMENT, "get without an id")
        # ValidateVolumeCapabilities.
        ok = c.ValidateVolumeCapabilities(csi.ValidateVolumeCapabilitiesRequest(
            volume_id="v2", volume_capabilities=[mount_cap(), block_cap()]))
        check_eq(len(ok.confirmed.volume_capabilities), 2, "confirmed")
        no = c.ValidateVolumeCapabilities(csi.ValidateVolumeCapabilitiesRequest(
            volume_id="v2", volume_capabilities=[mount_cap(Mode.MULTI_NODE_MULTI_WRITER)]))
        check(not no.HasField("confirmed") and no.message, "multi-node writer not confirmed")
        no = c.ValidateVolumeCapabilities(csi.ValidateVolumeCapabilitiesRequest(
            volume_id="v2", volume_capabilities=[mount_cap()], parameters={"blockSize": "8192"}))
        check(not no.HasField("confirmed"), "another block size not confirmed")
        expect_code(lambda: c.ValidateVolumeCapabilities(csi.ValidateVolumeCapabilitiesRequest(
            volume_id="nope", volume_capabilities=[mount_cap()])), Code.NOT_FOUND, "unknown")
        expect_code(lambda: c.ValidateVolumeCapabilities(csi.ValidateVolumeCapabilitiesRequest(
            volume_capabilities=[mount_cap()])), Code.INVALID_ARGUMENT, "no id")
        expect_code(lambda: c.ValidateVolumeCapabilities(csi.ValidateVolumeCapabilitiesRequest(
            volume_id="v2")), Code.INVALID_ARGUMENT, "no capabilities")
        # DeleteVolume: idempotent; its objects go.
        c.DeleteVolume(csi.DeleteVolumeRequest(volume_id="v2"))
        c.DeleteVolume(csi.DeleteVolumeRequest(volume_id="v2"))
        for gone in ["never-made", "Not A Volume", "portalbd"]:
            c.DeleteVolume(csi.DeleteVolumeRequest(volume_id=gone))
        expect_code(lambda: c.DeleteVolume(csi.DeleteVolumeRequest()), Code.INVALID_ARGUMENT,
                    "delete without an id")
        check(os.path.isdir(os.path.join(tmp, "store", "volumes~", "v3~")), "file layout")
        check(not any(files for _, _, files in os.walk(os.path.join(tmp, "store", "volumes~",
                                                                    "v2~"))),
              "the volume's objects are gone")
        check_eq([e.volume.volume_id for e in c.ListVolumes(csi.ListVolumesRequest()).entries],
                 ["v0", "v3", "v4"], "after the deletes")


def case_file_reads_do_not_fence_a_served_volume(tmp):
    with setup(tmp) as s:
        c = s.c
        create(c, "busy", required=MIB)
        snap(c, "before", "busy")
        with served(s.node, "busy"):
            h = nbd_handle(s.node, "busy")
            h.pwrite(pattern(4096, 8), 0)
            h.flush()
            check_eq([e.volume.volume_id for e in c.ListVolumes(csi.ListVolumesRequest()).entries],
                     ["busy"], "listed while served elsewhere")
            c.ControllerGetVolume(csi.ControllerGetVolumeRequest(volume_id="busy"))
            check_eq(len(c.ListSnapshots(csi.ListSnapshotsRequest()).entries), 1, "snapshots")
            c.ValidateVolumeCapabilities(csi.ValidateVolumeCapabilitiesRequest(
                volume_id="busy", volume_capabilities=[mount_cap()]))
            create(c, "busy", required=MIB)  # the idempotent retry reads only
            snap(c, "before", "busy")
            h.pwrite(pattern(4096, 9), 4096)
            h.flush()  # fails if the controller's reads had fenced the node's daemon
            check_eq(h.pread(8192, 0), pattern(4096, 8) + pattern(4096, 9), "node's data")
            h.shutdown()
            got = json.loads(portalctl(s.node, "--json", "volume", "get", "busy").stdout)
            check(not got["volume"]["fenced"], "the node's daemon is not fenced")


class FakeOwner:
    """A TCP control listener playing the daemon an owner record names: checks the auth
    line's token, records each request, answers it with `answer(request)` (a dict)."""

    def __init__(self, token, answer):
        self.token, self.answer, self.requests = token, answer, []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        with conn, conn.makefile("rb") as f:
            auth = json.loads(f.readline())
            if auth != {"op": "auth", "token": self.token}:
                conn.sendall(b'{"ok":false,"error":{"code":"unauthenticated","message":"no"}}\n')
                return
            conn.sendall(b'{"ok":true}\n')
            for line in f:
                request = json.loads(line)
                self.requests.append(request)
                conn.sendall((json.dumps(self.answer(request)) + "\n").encode())

    def close(self):
        self.sock.close()


def write_owner_record(tmp, volume, control_address, epoch=7, node="node-b"):
    """What a node's daemon writes when it opens `volume` (daemon/owner_record.h)."""
    d = os.path.join(tmp, "store", "owners~")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"{volume}.json"), "w") as f:
        json.dump({"volume": volume, "epoch": epoch, "node": node,
                   "control": control_address, "since": "2026-12-07T15:00:00.000000Z"}, f)


def token_file(tmp):
    path = os.path.join(tmp, "owner.token")
    with open(path, "w") as f:
        f.write("t" * 40 + "\n")
    os.chmod(path, 0o600)
    return path, "t" * 40


def case_file_attached_volumes_go_to_their_owner(tmp):
    path, token = token_file(tmp)
    fake_snapshot = {"name": "s1", "id": "0c6e2a5e-46a1-4b8e-9d43-7d7f3e0b1c2a",
                     "created": "2026-12-07T15:00:00.000000Z",
                     "created_ns": 1796655600000000000, "size_bytes": 4 * MIB,
                     "pinned_bytes": 0, "attached": 0}

    def owner_answers(request):
        if request["op"] == "snapshot.create":
            return {"ok": True, "snapshot": dict(fake_snapshot, name=request["name"])}
        if request["op"] == "volume.resize":
            return {"ok": True, "volume": {
                "name": request["name"], "default": False, "size_bytes": request["size_bytes"],
                "block_size": 4096, "live_bytes": 0, "bytes_stored": 0, "snapshots": 0,
                "attached": 1, "epoch": 7, "fenced": False, "volume_uuid": "u",
                "clone_of": None}}
        return {"ok": True, "snapshots": []}

    owner = FakeOwner(token, owner_answers)
    with setup(tmp, csi_args=["--owner-token-file", path]) as s:
        c = s.c
        create(c, "att", required=4 * MIB)
        epoch = inspect(s.ctl_daemon, "att")["epoch"]
        write_owner_record(tmp, "att", owner.address, epoch)
        check_eq(inspect(s.ctl_daemon, "att")["owner"],
                 {"node": "node-b", "control": owner.address, "epoch": epoch},
                 "volume.inspect shows the owner record")
        sn = snap(c, "s1", "att")
        check_eq((sn.snapshot_id, sn.size_bytes), ("att@s1", 4 * MIB), "snapshot by the owner")
        r = expand(c, "att", 8 * MIB, cap=mount_cap())
        check_eq((r.capacity_bytes, r.node_expansion_required), (8 * MIB, True), "expanded")
        expect_code(lambda: c.DeleteVolume(csi.DeleteVolumeRequest(volume_id="att")),
                    Code.FAILED_PRECONDITION, "deleting a volume its owner still holds")
        check_eq([(q["op"], q.get("name"), q.get("volume")) for q in owner.requests],
                 [("snapshot.create", "s1", "att"), ("volume.resize", "att", None),
                  ("snapshot.list", None, "att")], "what the owner was asked")
        check_eq(inspect(s.ctl_daemon, "att")["epoch"], epoch,
                 "the controller's daemon never opened the attached volume")
        # An owner nobody answers for: UNAVAILABLE, and still nothing opened.
        dead = socket.socket()
        dead.bind(("127.0.0.1", 0))
        dead_address = f"127.0.0.1:{dead.getsockname()[1]}"
        dead.close()
        write_owner_record(tmp, "att", dead_address, epoch)
        expect_code(lambda: snap(c, "s2", "att"), Code.UNAVAILABLE, "snapshot, owner down")
        expect_code(lambda: expand(c, "att", 16 * MIB), Code.UNAVAILABLE, "expand, owner down")
        expect_code(lambda: c.DeleteVolume(csi.DeleteVolumeRequest(volume_id="att")),
                    Code.UNAVAILABLE, "delete, owner down")
        check_eq(inspect(s.ctl_daemon, "att")["epoch"], epoch, "still not opened")
        # A stale record (its daemon answers not_owner): the controller's daemon does it.
        stale = FakeOwner(token, lambda _: {"ok": False, "error": {
            "code": "not_owner", "message": "volume 'att' is not served here"}})
        write_owner_record(tmp, "att", stale.address, epoch)
        sn = snap(c, "s3", "att")
        check_eq(sn.snapshot_id, "att@s3", "snapshot past a stale record")
        check("s3" in [x["name"] for x in inspect(s.ctl_daemon, "att")["snapshot_list"]],
              "taken by the controller's daemon")
        c.DeleteVolume(csi.DeleteVolumeRequest(volume_id="att"))
        expect_code(lambda: c.ControllerGetVolume(csi.ControllerGetVolumeRequest(
            volume_id="att")), Code.NOT_FOUND, "deleted past a stale record")
        stale.close()
    owner.close()
    # Without a token the owner cannot be asked: UNAVAILABLE, never a fence.
    other = os.path.join(tmp, "no-token")
    os.makedirs(other)
    with setup(other) as s:
        create(s.c, "att2", required=MIB)
        write_owner_record(other, "att2", "127.0.0.1:1")
        expect_code(lambda: snap(s.c, "x", "att2"), Code.UNAVAILABLE, "no token")


def case_file_attached_volume_real_owner(tmp):
    """A node daemon with its TCP control listener serves the volume (an NBD client writing
    to it); snapshot and expansion go to it, and it is never fenced."""
    path, _ = token_file(tmp)
    node_config = f'[control]\nlisten = "127.0.0.1:0"\ntoken_file = "{path}"\nnode_id = "node-b"\n'
    with setup(tmp, csi_args=["--owner-token-file", path], node_config=node_config) as s:
        c = s.c
        create(c, "live", required=8 * MIB)
        with served(s.node, "live"):
            owner = inspect(s.ctl_daemon, "live")["owner"]
            check(owner and owner["node"] == "node-b", f"the node's owner record: {owner}")
            h = nbd_handle(s.node, "live")
            h.pwrite(pattern(4096, 1), 0)
            h.flush()
            sn = snap(c, "while-attached", "live")
            check_eq(sn.snapshot_id, "live@while-attached", "snapshot by the owner")
            h.pwrite(pattern(4096, 2), 4096)  # after the snapshot
            h.flush()  # the node's daemon still writes: it was not fenced
            r = expand(c, "live", 16 * MIB, cap=block_cap())
            check_eq((r.capacity_bytes, r.node_expansion_required), (16 * MIB, False), "grown")
            got = json.loads(portalctl(s.node, "--json", "volume", "get", "live").stdout)
            check_eq((got["volume"]["size_bytes"], got["volume"]["fenced"]), (16 * MIB, False),
                     "the owner's volume grew, unfenced")
            expect_code(lambda: c.DeleteVolume(csi.DeleteVolumeRequest(volume_id="live")),
                        Code.FAILED_PRECONDITION, "delete while attached")
            h.shutdown()
        clone = create(c, "live-copy", source=from_snapshot(sn.snapshot_id))
        check_eq(clone.capacity_bytes, 8 * MIB, "the snapshot's size")
        _, data = read(s.node, "live-copy", 0, 8192)
        check_eq(data, pattern(4096, 1) + bytes(4096), "the snapshot holds what was flushed "
                 "before it, not what came after")
        # Released: the record is gone, the controller does the work itself.
        check_eq(inspect(s.ctl_daemon, "live").get("owner"), None, "no owner once released")
        check_eq(expand(c, "live", 20 * MIB).capacity_bytes, 20 * MIB, "detached expand")


def control_address(d):
    """The address daemon `d`'s TCP control listener bound (its log says)."""
    m = re.search(r"control listening address=(\S+)", d.log())
    check(m, f"no control listener in the log\n{d.log()}")
    return m.group(1)


def served_volumes(d):
    reply = control(d, {"op": "volume.list"})
    check(reply["ok"], f"volume.list: {reply}")
    return [v["name"] for v in reply["volumes"]]


def node_daemon_config(tmp, node="node-b"):
    """A node's daemon: its TCP control listener on, registered as `node`."""
    path, _ = token_file(tmp)
    return path, (f'[control]\nlisten = "127.0.0.1:0"\ntoken_file = "{path}"\n'
                  f'node_id = "{node}"\n')


def publish(c, volume_id, node_id, readonly=False, cap=None):
    return c.ControllerPublishVolume(csi.ControllerPublishVolumeRequest(
        volume_id=volume_id, node_id=node_id, volume_capability=cap or mount_cap(),
        readonly=readonly))


def unpublish(c, volume_id, node_id=""):
    return c.ControllerUnpublishVolume(csi.ControllerUnpublishVolumeRequest(
        volume_id=volume_id, node_id=node_id))


def published_nodes(c, volume_id):
    got = c.ControllerGetVolume(csi.ControllerGetVolumeRequest(volume_id=volume_id))
    listed = [list(e.status.published_node_ids)
              for e in c.ListVolumes(csi.ListVolumesRequest()).entries
              if e.volume.volume_id == volume_id]
    check_eq(listed, [list(got.status.published_node_ids)], "ListVolumes agrees with GetVolume")
    return list(got.status.published_node_ids)


def case_file_publish_to_a_registered_node(tmp):
    path, node_config = node_daemon_config(tmp)
    with setup(tmp, csi_args=["--owner-token-file", path], node_config=node_config) as s:
        c = s.c
        with open(os.path.join(tmp, "store", "nodes~", "node-b.json")) as f:
            record = json.load(f)
        check_eq((record["node"], record["control"]), ("node-b", control_address(s.node)),
                 "the node daemon registered itself at start")
        create(c, "pv", required=4 * MIB)
        check_eq(published_nodes(c, "pv"), [], "published nowhere yet")
        reply = publish(c, "pv", "node-b")
        check_eq(dict(reply.publish_context), {}, "publish context")
        check_eq(inspect(s.ctl_daemon, "pv")["attachment"]["node"], "node-b",
                 "volume.inspect shows the attachment record")
        publish(c, "pv", "node-b")  # idempotent
        publish(c, "pv", "node-b", cap=block_cap())  # the same device, read-write
        check_eq(published_nodes(c, "pv"), ["node-b"], "published_node_ids")
        expect_code(lambda: publish(c, "pv", "node-b", readonly=True), Code.ALREADY_EXISTS,
                    "same node, read-only now")
        expect_code(lambda: publish(c, "pv", "node-x"), Code.NOT_FOUND, "unregistered node")
        expect_code(lambda: publish(c, "pv", "Not/A/Node"), Code.NOT_FOUND, "invalid node id")
        expect_code(lambda: publish(c, "nope", "node-b"), Code.NOT_FOUND, "unknown volume")
        expect_code(lambda: publish(c, "", "node-b"), Code.INVALID_ARGUMENT, "no volume id")
        expect_code(lambda: publish(c, "pv", ""), Code.INVALID_ARGUMENT, "no node id")
        expect_code(lambda: c.ControllerPublishVolume(csi.ControllerPublishVolumeRequest(
            volume_id="pv", node_id="node-b")), Code.INVALID_ARGUMENT, "no capability")
        expect_code(lambda: publish(c, "pv", "node-b", cap=mount_cap(
            Mode.MULTI_NODE_MULTI_WRITER)), Code.INVALID_ARGUMENT, "a multi-node mode")
        # Another registered node (its daemon is not running: only its record counts).
        d = os.path.join(tmp, "store", "nodes~")
        with open(os.path.join(d, "node-c.json"), "w") as f:
            json.dump({"node": "node-c", "control": "127.0.0.1:1",
                       "since": "2026-12-07T15:00:00.000000Z"}, f)
        expect_code(lambda: publish(c, "pv", "node-c"), Code.FAILED_PRECONDITION,
                    "published to another node (single-node access)")
        expect_code(lambda: c.DeleteVolume(csi.DeleteVolumeRequest(volume_id="pv")),
                    Code.FAILED_PRECONDITION, "deleting a published volume")
        unpublish(c, "pv", "node-c")  # names another node: nothing removed
        check_eq(published_nodes(c, "pv"), ["node-b"], "still published to node-b")
        unpublish(c, "pv", "node-b")
        check_eq(published_nodes(c, "pv"), [], "unpublished")
        check(not os.path.exists(os.path.join(tmp, "store", "attachments~", "pv.json")),
              "the attachment record is gone")
        unpublish(c, "pv", "node-b")  # idempotent
        unpublish(c, "nope", "node-b")  # an unknown volume is unpublished
        unpublish(c, "NOT A VOLUME")
        expect_code(lambda: unpublish(c, ""), Code.INVALID_ARGUMENT, "unpublish, no volume id")
        publish(c, "pv", "node-c")
        unpublish(c, "pv")  # no node: from whichever node
        check_eq(published_nodes(c, "pv"), [], "unpublished without a node id")
        c.DeleteVolume(csi.DeleteVolumeRequest(volume_id="pv"))
        check_eq(served_volumes(s.ctl_daemon), [], "the controller's daemon holds nothing")


def case_file_publish_closes_the_owner_window(tmp):
    """A volume published to node B whose daemon has not opened it yet: snapshots and
    expansions wait (UNAVAILABLE) instead of the controller opening it, which would fence
    B the moment it opens; once B holds it and its owner record is written, they reach B."""
    path, node_config = node_daemon_config(tmp)
    token = open(path).read().strip()
    with setup(tmp, csi_args=["--owner-token-file", path], node_config=node_config) as s:
        c = s.c
        create(c, "pv", required=4 * MIB)
        epoch = inspect(s.ctl_daemon, "pv")["epoch"]
        publish(c, "pv", "node-b")
        expect_code(lambda: snap(c, "s1", "pv"), Code.UNAVAILABLE,
                    "snapshot: published, not yet opened by its node")
        expect_code(lambda: expand(c, "pv", 8 * MIB), Code.UNAVAILABLE,
                    "expand: published, not yet opened by its node")
        # A record left by the node that had it before (or any other node) is not asked.
        other = FakeOwner(token, lambda _: {"ok": True, "snapshots": []})
        write_owner_record(tmp, "pv", other.address, epoch, node="node-a")
        expect_code(lambda: snap(c, "s1", "pv"), Code.UNAVAILABLE,
                    "snapshot: the owner record names another node")
        check_eq(other.requests, [], "the other node's daemon was not asked")
        other.close()
        os.remove(os.path.join(tmp, "store", "owners~", "pv.json"))
        got = inspect(s.ctl_daemon, "pv")
        check_eq((got["epoch"], got.get("owner")), (epoch, None),
                 "the controller's daemon never opened the published volume")
        check_eq(served_volumes(s.ctl_daemon), [], "and holds nothing")
        with served(s.node, "pv"):  # node B opens it: its owner record names node-b
            h = nbd_handle(s.node, "pv")
            h.pwrite(pattern(4096, 3), 0)
            h.flush()
            sn = snap(c, "s1", "pv")
            check_eq(sn.snapshot_id, "pv@s1", "the retry reaches node B")
            check_eq(expand(c, "pv", 8 * MIB).capacity_bytes, 8 * MIB, "expanded by node B")
            h.pwrite(pattern(4096, 4), 4096)
            h.flush()  # fails if anything had fenced node B
            h.shutdown()
            got = json.loads(portalctl(s.node, "--json", "volume", "get", "pv").stdout)
            check_eq((got["volume"]["size_bytes"], got["volume"]["fenced"]), (8 * MIB, False),
                     "node B grew the volume and was never fenced")
            c.DeleteSnapshot(csi.DeleteSnapshotRequest(snapshot_id="pv@s1"))
        # Released by node B but still published (NodeUnstage before ControllerUnpublish):
        # the controller still keeps its hands off.
        expect_code(lambda: snap(c, "s2", "pv"), Code.UNAVAILABLE,
                    "published, released by its node")
        unpublish(c, "pv", "node-b")
        check_eq(snap(c, "s2", "pv").snapshot_id, "pv@s2", "unpublished: the controller does it")
        check_eq(served_volumes(s.ctl_daemon), [], "and released it")


def case_file_unreadable_volume_is_abnormal(tmp):
    with setup(tmp) as s:
        c = s.c
        create(c, "ok", required=MIB)
        create(c, "broken", required=MIB)
        manifests = os.path.join(tmp, "store", "volumes~", "broken~", "manifest~")
        names = os.listdir(manifests)
        check(names, "the volume has manifests")
        for name in names:
            with open(os.path.join(manifests, name), "w") as f:
                f.write("not a manifest")
        got = c.ControllerGetVolume(csi.ControllerGetVolumeRequest(volume_id="broken"))
        check(got.status.volume_condition.abnormal, "an unreadable volume is abnormal")
        check("broken" in got.status.volume_condition.message,
              f"the reason names it: {got.status.volume_condition.message}")
        fine = c.ControllerGetVolume(csi.ControllerGetVolumeRequest(volume_id="ok"))
        check(not fine.status.volume_condition.abnormal, "the other volume is fine")
        listed = [e.volume.volume_id for e in c.ListVolumes(csi.ListVolumesRequest()).entries]
        check_eq(listed, ["broken", "ok"], "both listed")


def case_s3_controller(tmp):
    with setup(tmp, "s3") as s:
        clone_from_snapshot_data(s)
        clone_from_volume_data(s)
        expand_checks(s)
        c = s.c
        check_eq(sorted(e.volume.volume_id for e in
                        c.ListVolumes(csi.ListVolumesRequest()).entries),
                 ["base", "from-snap", "grow", "plain-size"], "volumes on s3")
        for e in c.ListVolumes(csi.ListVolumesRequest()).entries:
            c.DeleteVolume(csi.DeleteVolumeRequest(volume_id=e.volume.volume_id))
        check_eq(len(c.ListVolumes(csi.ListVolumesRequest()).entries), 0, "all deleted")


run_cases(globals())
