# shellcheck shell=sh
# vm-test csi-node: portalbd-csi's Node service on the real kernel. A mount volume staged (formatted once), published, written, fsync'd (a FLUSH reaches portalbd), unpublished, unstaged, staged again with its files; a block volume as a device file; ext4 grown online; a second node's daemon taking a volume fences the first.
# memory-mib: 2048
# timeout-s: 600
# requires: portalctl portalbd-csi csi-call
#
# Two "nodes" in one guest, each a portalbd daemon (its own NBD port, control socket,
# cache and device state) with its own portalbd-csi --role node, on one file:// store.
# csi-call makes the gRPC calls the kubelet would make.

STORE=file:///store/csi
N1_SOCK=/run/n1/portalbd.sock
N2_SOCK=/run/n2/portalbd.sock
CSI1=unix:///run/csi1.sock
CSI2=unix:///run/csi2.sock
METRICS=127.0.0.1:9101
MIB=1048576

node_config() {  # node_config NAME NBD_PORT SOCKET [METRICS_ADDRESS]
  mkdir -p "/var/lib/$1"
  {
    echo "[storage]"
    echo "url = \"$STORE\""
    echo "cache_dir = \"/var/lib/$1\""
    echo "volumes = []"
    echo "[nbd]"
    echo "address = \"127.0.0.1:$2\""
    echo "socket = \"$3\""
    echo "[device]"
    echo "state_file = \"/var/lib/$1/devices.json\""
    if [ -n "${4:-}" ]; then
      echo "[metrics]"
      echo "address = \"$4\""
    fi
  } >"/tmp/$1.toml"
}


csi_start() {  # csi_start ENDPOINT NODE_ID DAEMON_SOCKET LOG
  csi_plugin_start "$1" "$4" --role node --node-id "$2" --daemon-socket "$3"
}

# call ENDPOINT Service.Method JSON: the response JSON on stdout; fails on a gRPC error.
call() { csi-call --endpoint "$1" "$2" "$3"; }
# call_code ENDPOINT Service.Method JSON: prints the gRPC code of a failed call ("OK" if none).
call_code() {
  if out=$(csi-call --endpoint "$1" "$2" "$3" 2>&1); then echo OK; else echo "${out%%:*}"; fi
}

mount_cap='"volumeCapability":{"mount":{"fsType":"ext4","mountFlags":["noatime"]},"accessMode":{"mode":"SINGLE_NODE_WRITER"}}'
block_cap='"volumeCapability":{"block":{},"accessMode":{"mode":"SINGLE_NODE_WRITER"}}'

stage() {  # stage ENDPOINT VOLUME STAGING CAP
  call "$1" Node.NodeStageVolume "{\"volumeId\":\"$2\",\"stagingTargetPath\":\"$3\",$4}"
}
unstage() {
  call "$1" Node.NodeUnstageVolume "{\"volumeId\":\"$2\",\"stagingTargetPath\":\"$3\"}"
}
publish() {  # publish ENDPOINT VOLUME STAGING TARGET CAP
  call "$1" Node.NodePublishVolume \
    "{\"volumeId\":\"$2\",\"stagingTargetPath\":\"$3\",\"targetPath\":\"$4\",$5}"
}
unpublish() {
  call "$1" Node.NodeUnpublishVolume "{\"volumeId\":\"$2\",\"targetPath\":\"$3\"}"
}
stats() {
  call "$1" Node.NodeGetVolumeStats "{\"volumeId\":\"$2\",\"volumePath\":\"$3\"}"
}

# The device a path is mounted from (mountinfo's source), "" if it is no mount point.
mounted_from() { awk -v p="$1" '$5 == p { for (i = 7; $i != "-"; i++); s = $(i + 2) } END { print s }' /proc/self/mountinfo; }
# contains TEXT PART: TEXT has PART in it (JSON replies hold quotes: no sh -c for them).
contains() { case "$1" in *"$2"*) return 0 ;; esac; echo "no '$2' in: $1"; return 1; }
is_mounted() { [ -n "$(mounted_from "$1")" ]; }
not_mounted() { ! is_mounted "$1"; }

# FLUSH requests node 1's portalbd has served on export $1 (its Prometheus counter).
flushes() {
  wget -qO- "http://$METRICS/metrics" |
    awk -v e="export=\"$1\"" 'index($0, "portalbd_nbd_request_duration_seconds_count{") == 1 &&
      index($0, e) && index($0, "op=\"flush\"") { n += $NF } END { print n + 0 }'
}

# Total bytes of the filesystem at $1 (GNU df).
fs_bytes() { /sbin/df -B1 --output=size "$1" | tail -n 1 | tr -d ' '; }

S1=/var/lib/kubelet/plugins/csi/fsvol
T1=/var/lib/kubelet/pods/p1/fsvol
SB=/var/lib/kubelet/plugins/csi/blkvol
TB=/var/lib/kubelet/pods/p2/blkvol
mkdir -p /var/lib/kubelet/pods/p1 /var/lib/kubelet/pods/p2 "$S1" "$SB" /run/n1 /run/n2

run node_config n1 10809 "$N1_SOCK" "$METRICS"
run node_config n2 10810 "$N2_SOCK"
PORTALBD_SOCKET=$N1_SOCK
PORTALBD_STORAGE=$STORE
check "node 1: portalbd starts on file:// serving no volume" portalbd_start -c /tmp/n1.toml
check "node 1: portalbd-csi --role node starts" csi_start "$CSI1" node-1 "$N1_SOCK" /tmp/csi1.log
check "portalctl volume create fsvol (256 MiB)" portalctl -s "$N1_SOCK" volume create fsvol --size 256M
check "portalctl volume create blkvol (64 MiB)" portalctl -s "$N1_SOCK" volume create blkvol --size 64M

info=$(call "$CSI1" Node.NodeGetInfo '{}')
check_eq "NodeGetInfo: node id" "$(echo "$info" | sed -n 's/.*"nodeId":"\([^"]*\)".*/\1/p')" node-1
nbds=$(ls -d /sys/block/nbd* | wc -l)
check_eq "NodeGetInfo: max_volumes_per_node = the free nbd devices" \
  "$(echo "$info" | sed -n 's/.*"maxVolumesPerNode":"\([0-9]*\)".*/\1/p')" "$nbds"

# --- errors --------------------------------------------------------------------------
check_eq "stage of an unknown volume: NOT_FOUND" \
  "$(call_code "$CSI1" Node.NodeStageVolume "{\"volumeId\":\"nosuch\",\"stagingTargetPath\":\"$S1\",$mount_cap}")" NOT_FOUND
check_eq "stage with a path-like volume id: INVALID_ARGUMENT" \
  "$(call_code "$CSI1" Node.NodeStageVolume "{\"volumeId\":\"../fsvol\",\"stagingTargetPath\":\"$S1\",$mount_cap}")" INVALID_ARGUMENT
check_eq "stage as f2fs (no mkfs.f2fs here): INVALID_ARGUMENT" \
  "$(call_code "$CSI1" Node.NodeStageVolume "{\"volumeId\":\"fsvol\",\"stagingTargetPath\":\"$S1\",\"volumeCapability\":{\"mount\":{\"fsType\":\"f2fs\"},\"accessMode\":{\"mode\":\"SINGLE_NODE_WRITER\"}}}")" INVALID_ARGUMENT
check_eq "publish before stage: FAILED_PRECONDITION" \
  "$(call_code "$CSI1" Node.NodePublishVolume "{\"volumeId\":\"fsvol\",\"stagingTargetPath\":\"$S1\",\"targetPath\":\"$T1\",$mount_cap}")" FAILED_PRECONDITION

# --- a mount volume ------------------------------------------------------------------
check "NodeStageVolume fsvol (ext4, blank: formatted)" stage "$CSI1" fsvol "$S1" "$mount_cap"
dev1=$(mounted_from "$S1")
check "the staging path is mounted from an nbd device ($dev1)" sh -c "case '$dev1' in /dev/nbd*) true;; *) false;; esac"
check "it holds ext4 (blkid)" sh -c "/sbin/blkid -p -o value -s TYPE $dev1 | grep -qx ext4"
check "mounted with the capability's flag (noatime)" sh -c "grep ' $S1 ' /proc/self/mountinfo | grep -q noatime"
check "NodeStageVolume again: OK (idempotent)" stage "$CSI1" fsvol "$S1" "$mount_cap"
check_eq "still one mount at the staging path" "$(awk -v p="$S1" '$5 == p' /proc/self/mountinfo | wc -l)" 1
check_eq "another volume on the same staging path: ALREADY_EXISTS" \
  "$(call_code "$CSI1" Node.NodeStageVolume "{\"volumeId\":\"blkvol\",\"stagingTargetPath\":\"$S1\",$mount_cap}")" ALREADY_EXISTS
check "NodePublishVolume fsvol" publish "$CSI1" fsvol "$S1" "$T1" "$mount_cap"
check "NodePublishVolume again: OK (idempotent)" publish "$CSI1" fsvol "$S1" "$T1" "$mount_cap"
check "the target is a bind mount of the same device" sh -c "[ '$(mounted_from "$T1")' = '$dev1' ]"

run random_file /tmp/data1 4
sum1=$(sha /tmp/data1)
before=$(flushes fsvol)
check "write a file on the published volume and fsync it" /sbin/dd if=/tmp/data1 of="$T1/data1" bs=1M conv=fsync status=none
after=$(flushes fsvol)
check "the fsync reached portalbd as a FLUSH (flushes $before -> $after)" test "$after" -gt "$before"
run sh -c "echo hello > $T1/note && sync -f $T1"

st=$(stats "$CSI1" fsvol "$T1")
check "NodeGetVolumeStats: bytes" contains "$st" '"unit":"BYTES"'
check "NodeGetVolumeStats: inodes" contains "$st" '"unit":"INODES"'
check "NodeGetVolumeStats: condition normal" contains "$st" '"abnormal":false'
check_eq "NodeGetVolumeStats on a path that is not the volume's: NOT_FOUND" \
  "$(call_code "$CSI1" Node.NodeGetVolumeStats '{"volumeId":"fsvol","volumePath":"/tmp"}')" NOT_FOUND

check "NodeUnpublishVolume fsvol" unpublish "$CSI1" fsvol "$T1"
check "the target is unmounted and removed" sh -c "! grep -q ' $T1 ' /proc/self/mountinfo && [ ! -e '$T1' ]"
check "NodeUnpublishVolume again: OK (idempotent)" unpublish "$CSI1" fsvol "$T1"
check "NodeUnstageVolume fsvol" unstage "$CSI1" fsvol "$S1"
check "the staging path is unmounted" not_mounted "$S1"
check_eq "the device is detached (no size in sysfs)" "$(cat /sys/block/${dev1#/dev/}/size)" 0
check "NodeUnstageVolume again: OK (idempotent)" unstage "$CSI1" fsvol "$S1"
run drop_caches

check "stage fsvol again" stage "$CSI1" fsvol "$S1" "$mount_cap"
check "publish fsvol again" publish "$CSI1" fsvol "$S1" "$T1" "$mount_cap"
check_eq "the file is back, byte for byte" "$(sha "$T1/data1")" "$sum1"
check_eq "and the note" "$(cat "$T1/note")" hello

# --- online expansion of the mounted ext4 --------------------------------------------
size0=$(fs_bytes "$T1")
check "ext4 is about 256 MiB before ($size0 bytes)" test "$size0" -lt $((260 * MIB))
check_eq "NodeExpandVolume before the volume grew: FAILED_PRECONDITION" \
  "$(call_code "$CSI1" Node.NodeExpandVolume "{\"volumeId\":\"fsvol\",\"volumePath\":\"$T1\",\"capacityRange\":{\"requiredBytes\":\"$((512 * MIB))\"}}")" FAILED_PRECONDITION
check "portalctl volume resize fsvol --size 512M" portalctl -s "$N1_SOCK" volume resize fsvol --size 512M
dev1=$(mounted_from "$S1")
i=0
while [ "$(cat /sys/block/${dev1#/dev/}/size)" != $((512 * 2048)) ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
check_eq "the kernel sees the new size" "$(dev_size "$dev1")" $((512 * MIB))
check "NodeExpandVolume grows ext4 online" call "$CSI1" Node.NodeExpandVolume \
  "{\"volumeId\":\"fsvol\",\"volumePath\":\"$T1\",\"capacityRange\":{\"requiredBytes\":\"$((512 * MIB))\"},$mount_cap}"
size1=$(fs_bytes "$T1")
check "df shows the grown filesystem ($size0 -> $size1 bytes)" test "$size1" -gt $((450 * MIB))
check_eq "the file is intact after growing" "$(sha "$T1/data1")" "$sum1"
check "unpublish fsvol" unpublish "$CSI1" fsvol "$T1"
check "unstage fsvol" unstage "$CSI1" fsvol "$S1"
# The same volume staged as a block device: no filesystem is touched, so e2fsck can look.
check "stage fsvol as a block volume" stage "$CSI1" fsvol "$S1-raw" "$block_cap"
check "publish it as a device file" publish "$CSI1" fsvol "$S1-raw" "$T1-raw" "$block_cap"
check "e2fsck -fn of the grown ext4 is clean" e2fsck -fn "$T1-raw"
check "unpublish the device file" unpublish "$CSI1" fsvol "$T1-raw"
check "unstage it" unstage "$CSI1" fsvol "$S1-raw"

# --- a block volume ------------------------------------------------------------------
check "NodeStageVolume blkvol (block: no filesystem)" stage "$CSI1" blkvol "$SB" "$block_cap"
check "NodePublishVolume blkvol as a device file" publish "$CSI1" blkvol "$SB" "$TB" "$block_cap"
check "NodePublishVolume blkvol again: OK (idempotent)" publish "$CSI1" blkvol "$SB" "$TB" "$block_cap"
check "the target is a block device" test -b "$TB"
check_eq "of the volume's size" "$(dev_size "$TB")" $((64 * MIB))
run random_file /tmp/data2 4
sum2=$(sha /tmp/data2)
check "dd 4 MiB onto the device file (O_DIRECT, fsync)" /sbin/dd if=/tmp/data2 of="$TB" bs=1M oflag=direct conv=fsync status=none
check "read them back (O_DIRECT)" /sbin/dd if="$TB" of=/tmp/back2 bs=1M count=4 iflag=direct status=none
check_eq "the same bytes" "$(sha /tmp/back2)" "$sum2"
check "no filesystem was made on it (blkid finds none)" sh -c "! /sbin/blkid -p $TB"
st=$(stats "$CSI1" blkvol "$TB")
check "NodeGetVolumeStats of the block volume: its total bytes" contains "$st" "\"total\":\"$((64 * MIB))\""

# --- a second node takes the volume: the first is fenced -----------------------------
PORTALBD_LOG2=/tmp/portalbd2.log
portalbd2_start() {
  portalbd -c /tmp/n2.toml --storage "$STORE" >"$PORTALBD_LOG2" 2>&1 &
  PORTALBD2_PID=$!
  i=0
  while ! listening 10810; do
    kill -0 "$PORTALBD2_PID" 2>/dev/null || { cat "$PORTALBD_LOG2"; return 1; }
    i=$((i + 1))
    [ $i -lt 300 ] || return 1
    sleep 0.1
  done
}
check "node 2: a second portalbd on the same store" portalbd2_start
check "node 2: its portalbd-csi" csi_start "$CSI2" node-2 "$N2_SOCK" /tmp/csi2.log
check "node 2: NodeStageVolume blkvol (opens it there)" stage "$CSI2" blkvol "$SB-n2" "$block_cap"
check "node 2: NodePublishVolume blkvol" publish "$CSI2" blkvol "$SB-n2" "$TB-n2" "$block_cap"
check "node 2: reads node 1's acknowledged bytes" /sbin/dd if="$TB-n2" of=/tmp/back3 bs=1M count=4 iflag=direct status=none
check_eq "node 2: the same bytes" "$(sha /tmp/back3)" "$sum2"
check_fails "node 1 is fenced: its write and fsync fail" \
  /sbin/dd if=/dev/urandom of="$TB" bs=4k count=1 oflag=direct conv=fsync status=none
st=$(stats "$CSI1" blkvol "$TB")
check "node 1: NodeGetVolumeStats says the volume is abnormal (fenced)" contains "$st" '"abnormal":true'
check "node 1: unpublish blkvol" unpublish "$CSI1" blkvol "$TB"
check "node 2: still writes" /sbin/dd if=/dev/urandom of="$TB-n2" bs=4k count=1 oflag=direct conv=fsync status=none
check "node 2: unpublish blkvol" unpublish "$CSI2" blkvol "$TB-n2"
check "node 2: unstage blkvol" unstage "$CSI2" blkvol "$SB-n2"
portalbd2_stop() { kill -TERM "$PORTALBD2_PID" && wait "$PORTALBD2_PID"; }
check "node 2: portalbd exits 0 on SIGTERM" portalbd2_stop
# The fenced node lets go of its copy: nothing it still holds was acknowledged as
# durable (its FLUSHes fail), so there is nothing to save, and the CO must be able to
# clean the node up.
check "node 1: unstage blkvol (detaches and releases its fenced copy)" unstage "$CSI1" blkvol "$SB"
check "node 1: portalbd exits 0 on SIGTERM" portalbd_stop
