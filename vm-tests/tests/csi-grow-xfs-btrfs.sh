# shellcheck shell=sh
# vm-test csi-grow-xfs-btrfs: portalbd-csi stages a volume as xfs and one as btrfs, a file is written, ControllerExpandVolume (through the owner's control listener: the volume is attached) then NodeExpandVolume grow each mounted filesystem online (xfs_growfs, btrfs filesystem resize max); df and NodeGetVolumeStats show the new size, the file is intact after a restage, xfs_repair -n / btrfs check are clean.
# memory-mib: 2048
# timeout-s: 600
# requires: portalbd-csi csi-call
#
# One portalbd (file://) with its control listener and token, as a node's daemon runs in
# deploy/, and portalbd-csi --role all with --owner-token-file: the controller reaches the
# attached volume's owner (this same daemon) over TCP, as it reaches another node's.

STORE=file:///store/grow
PORTALBD_SOCKET=/run/portalbd/portalbd.sock
CSI=unix:///run/csi.sock
MIB=1048576
SIZE0=$((512 * MIB)) # mkfs.xfs wants at least 300 MiB
SIZE1=$((1024 * MIB))

call() { csi "$1" "$2"; } # one csi-call --batch (guest/lib.sh), started below
json_field() { echo "$1" | sed -n "s/.*\"$2\":\"\\([^\"]*\\)\".*/\\1/p"; }
contains() { case "$1" in *"$2"*) return 0 ;; esac; echo "no '$2' in: $1"; return 1; }
mounted_from() { awk -v p="$1" '$5 == p { for (i = 7; $i != "-"; i++); s = $(i + 2) } END { print s }' /proc/self/mountinfo; }
fs_bytes() { /sbin/df -B1 --output=size "$1" | tail -n 1 | tr -d ' '; }
# The BYTES total NodeGetVolumeStats reports for volume $1 at path $2.
stats_total() {
  call Node.NodeGetVolumeStats "{\"volumeId\":\"$1\",\"volumePath\":\"$2\"}" |
    tr '}' '\n' | grep '"BYTES"' | sed -n 's/.*"total":"\([0-9]*\)".*/\1/p'
}

check "load the xfs modules" load_modules xfs
check "load the btrfs modules" load_modules btrfs
mkdir -p /var/lib/grow /run/portalbd
run sh -c "openssl rand -hex 32 > /run/control.token && chmod 0400 /run/control.token"
cat >/tmp/grow.toml <<EOF
[storage]
url = "$STORE"
cache_dir = "/var/lib/grow"
volumes = []
[device]
state_file = "/var/lib/grow/devices.json"
[control]
listen = "127.0.0.1:10900"
token_file = "/run/control.token"
EOF
PORTALBD_STORAGE=$STORE
check "portalbd starts with a control listener (owner records name 127.0.0.1:10900)" portalbd_start -c /tmp/grow.toml
check "portalbd-csi --role all --owner-token-file starts" csi_plugin_start "$CSI" /tmp/csi.log \
  --role all --node-id grow-node --daemon-socket "$PORTALBD_SOCKET" \
  --owner-token-file /run/control.token
csi_batch_start "$CSI" # not under check or run: its fds 3 and 4 must stay open here
run random_file /tmp/data 8
SUM=$(sha /tmp/data)

for FS in xfs btrfs; do
  CAP="{\"mount\":{\"fsType\":\"$FS\"},\"accessMode\":{\"mode\":\"SINGLE_NODE_WRITER\"}}"
  BCAP='{"block":{},"accessMode":{"mode":"SINGLE_NODE_WRITER"}}'
  S=/var/lib/kubelet/plugins/csi/grow-$FS
  T=/var/lib/kubelet/pods/p-$FS/vol
  mkdir -p "$S" "$(dirname "$T")"
  reply=$(call Controller.CreateVolume "{\"name\":\"grow-$FS\",\"volumeCapabilities\":[$CAP],\"capacityRange\":{\"requiredBytes\":\"$SIZE0\"}}")
  V=$(json_field "$reply" volumeId)
  check_eq "$FS: CreateVolume grow-$FS (512 MiB)" "$(json_field "$reply" capacityBytes)" "$SIZE0"
  stage="{\"volumeId\":\"$V\",\"stagingTargetPath\":\"$S\",\"volumeCapability\":$CAP}"
  publish="{\"volumeId\":\"$V\",\"stagingTargetPath\":\"$S\",\"targetPath\":\"$T\",\"volumeCapability\":$CAP}"
  check "$FS: NodeStageVolume formats the blank volume as $FS" call Node.NodeStageVolume "$stage"
  DEV=$(mounted_from "$S")
  check "$FS: blkid finds $FS on $DEV" sh -c "/sbin/blkid -p -o value -s TYPE $DEV | grep -qx $FS"
  check "$FS: NodePublishVolume" call Node.NodePublishVolume "$publish"
  check "$FS: write 8 MiB and fsync" /sbin/dd if=/tmp/data of="$T/data" bs=1M conv=fsync status=none
  before=$(fs_bytes "$T")
  stats_before=$(stats_total "$V" "$T")
  pass "$FS: before: df $before bytes, NodeGetVolumeStats total $stats_before"

  reply=$(call Controller.ControllerExpandVolume "{\"volumeId\":\"$V\",\"capacityRange\":{\"requiredBytes\":\"$SIZE1\"},\"volumeCapability\":$CAP}")
  check_eq "$FS: ControllerExpandVolume to 1 GiB through the owner: capacity" "$(json_field "$reply" capacityBytes)" "$SIZE1"
  check "$FS: ControllerExpandVolume: node expansion required" contains "$reply" '"nodeExpansionRequired":true'
  i=0
  while [ "$(dev_size "$DEV")" != "$SIZE1" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
  check_eq "$FS: the kernel sees the new size of $DEV" "$(dev_size "$DEV")" "$SIZE1"
  check_eq "$FS: the filesystem has not grown by itself" "$(fs_bytes "$T")" "$before"
  check "$FS: NodeExpandVolume grows the mounted $FS" call Node.NodeExpandVolume \
    "{\"volumeId\":\"$V\",\"volumePath\":\"$T\",\"stagingTargetPath\":\"$S\",\"capacityRange\":{\"requiredBytes\":\"$SIZE1\"},\"volumeCapability\":$CAP}"
  after=$(fs_bytes "$T")
  stats_after=$(stats_total "$V" "$T")
  check "$FS: df grew from $before to $after bytes (over 900 MiB)" test "$after" -gt $((900 * MIB))
  check_eq "$FS: NodeGetVolumeStats total follows ($stats_before -> $stats_after)" "$stats_after" "$after"
  check "$FS: NodeExpandVolume again: OK (idempotent)" call Node.NodeExpandVolume \
    "{\"volumeId\":\"$V\",\"volumePath\":\"$T\",\"capacityRange\":{\"requiredBytes\":\"$SIZE1\"},\"volumeCapability\":$CAP}"
  check_eq "$FS: the file is intact" "$(sha "$T/data")" "$SUM"
  check "$FS: unpublish" call Node.NodeUnpublishVolume "{\"volumeId\":\"$V\",\"targetPath\":\"$T\"}"
  check "$FS: unstage (detach, release)" call Node.NodeUnstageVolume "{\"volumeId\":\"$V\",\"stagingTargetPath\":\"$S\"}"
  run drop_caches
  check "$FS: stage again" call Node.NodeStageVolume "$stage"
  check "$FS: publish again" call Node.NodePublishVolume "$publish"
  check_eq "$FS: after the restage the file is intact" "$(sha "$T/data")" "$SUM"
  check_eq "$FS: and the filesystem still spans 1 GiB" "$(fs_bytes "$T")" "$after"
  check "$FS: unpublish again" call Node.NodeUnpublishVolume "{\"volumeId\":\"$V\",\"targetPath\":\"$T\"}"
  check "$FS: unstage again" call Node.NodeUnstageVolume "{\"volumeId\":\"$V\",\"stagingTargetPath\":\"$S\"}"
  # As a block volume nothing mounts it, so the checkers may look.
  check "$FS: stage as a block volume" call Node.NodeStageVolume "{\"volumeId\":\"$V\",\"stagingTargetPath\":\"$S-raw\",\"volumeCapability\":$BCAP}"
  check "$FS: publish it as a device file" call Node.NodePublishVolume \
    "{\"volumeId\":\"$V\",\"stagingTargetPath\":\"$S-raw\",\"targetPath\":\"$T-raw\",\"volumeCapability\":$BCAP}"
  if [ "$FS" = xfs ]; then
    check "xfs: xfs_repair -n of the grown filesystem is clean" xfs_repair -n "$T-raw"
  else
    check "btrfs: btrfs check --readonly of the grown filesystem is clean" btrfs check --readonly "$T-raw"
  fi
  check "$FS: unpublish the device file" call Node.NodeUnpublishVolume "{\"volumeId\":\"$V\",\"targetPath\":\"$T-raw\"}"
  check "$FS: unstage it" call Node.NodeUnstageVolume "{\"volumeId\":\"$V\",\"stagingTargetPath\":\"$S-raw\"}"
  check "$FS: DeleteVolume" call Controller.DeleteVolume "{\"volumeId\":\"$V\"}"
done
check "portalbd exits 0 on SIGTERM" portalbd_stop
