# shellcheck shell=sh
# vm-test trace-mkfs: records mkfs.ext4 from the real kernel client through trace-record,
# and the trace replays against portalbd.
# memory-mib: 2048
# timeout-s: 240
# requires: trace-record trace-bench
# pending: not written yet: needs bin/trace-record (recording NBD proxy) and bin/trace-bench
#
# Plan, for when trace-record and trace-bench exist (shared/DESIGN.md: "trace-record:
# recording NBD proxy: client <-> trace-record <-> any NBD server"; trace format in
# docs/; traces/README says how each trace was recorded):
#   1. portalbd_start --disk-size-gb 1 (listens on 127.0.0.1:10809).
#   2. trace-record listening on 127.0.0.1:10810, forwarding to 127.0.0.1:10809, writing
#      /tmp/mkfs.trace.json with workload "mkfs.ext4".
#   3. nbd-client -N portalbd 127.0.0.1 10810 /dev/nbd0; mkfs.ext4 -F /dev/nbd0; sync;
#      nbd-client -d /dev/nbd0; stop trace-record (SIGTERM) so that it writes the trace.
#   4. Checks: the trace file exists and parses (trace-bench reads it); it holds the
#      requests mkfs.ext4 makes of a 1 GiB device: a TRIM of the device (mke2fs
#      discards first), WRITEs (superblocks, group descriptors, journal) and a FLUSH;
#      replaying it with trace-bench against portalbd succeeds; and, through the proxy,
#      the device still mounts and e2fsck -fn is clean (the proxy changed nothing).
#   5. The recorded trace is kept as a console-visible artifact (or copied to traces/
#      by hand) so that traces/mkfs-ext4-1g.json can be refreshed from a real kernel.
# Then delete the "pending:" line above; the runner boots the test once both binaries
# are built.

skip "record mkfs.ext4 through trace-record" "pending: trace-record does not exist yet"
