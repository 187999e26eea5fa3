# shellcheck shell=sh
# vm-test csi-sanity-node: csi-sanity v5's Node specs that need a kernel device, call by call as pkg/sanity/node.go makes them (same order, arguments and expected codes, its Cleanup after each It()), with mount then block capabilities, against portalbd-csi --role all on one portalbd.
# memory-mib: 2048
# timeout-s: 600
# requires: portalbd-csi csi-call
#
# csi-sanity cannot be built here (no Go modules), so this is its Node suite replayed with
# csi-call; tests/csi/test_sanity_node.py has the It()s that need no device. Each check is
# named "<Describe> <It> [mount|block]: <step>". csi-sanity's defaults: one endpoint for
# every service (--csi.endpoint), 10 GiB volumes (VMTEST_KERNEL_ARGS=SANITY_VOLUME_MIB=N
# for others, as --csi.testvolumesize), expansion by 1 GiB, IdempotentCount 10, no parameters or
# secrets, SINGLE_NODE_WRITER, mount volumes with no fs type (then
# --csi.testvolumeaccesstype block). Before each It() the staging directory and the target's
# parent are made with mkdir (an error if they exist), the target is <parent>/target; after
# it, for every volume made, last first: NodeUnpublishVolume and NodeUnstageVolume (OK or
# NOT_FOUND), ControllerUnpublishVolume if the controller published it, DeleteVolume (OK);
# then both directories are removed, which fails here if the driver left anything in them.

STORE=file:///store/sanity
PORTALBD_SOCKET=/run/portalbd/portalbd.sock
PORTALBD_STORAGE=$STORE
CSI=unix:///run/csi.sock
MIB=1048576
GIB=1073741824
SIZE=$((${SANITY_VOLUME_MIB:-10240} * MIB))
EXPAND_SIZE=$((SIZE + GIB))
IDEMPOTENT_COUNT=10
TARGET_DIR=/tmp/csi-mount
STAGING=/tmp/csi-staging
TARGET=$TARGET_DIR/target
# uniqueSuffix: "-" + "%08X-%08X" of 8 random bytes.
hex4() { od -An -N4 -tx1 /dev/urandom | tr -d ' \n' | tr a-f A-F; }
SUFFIX=-$(hex4)-$(hex4)

# Every call goes through one `csi-call --batch` on one gRPC connection, as csi-sanity
# makes its calls (guest/lib.sh csi_batch_start, below).
call() { csi "$1" "$2"; }
call_code() { csi_code "$1" "$2"; }
# json_field JSON NAME: the string value of the first "NAME":"..." in JSON.
json_field() { echo "$1" | sed -n "s/.*\"$2\":\"\\([^\"]*\\)\".*/\\1/p"; }
# json_map JSON NAME: the first "NAME":{...} (a flat map of strings) as it is, or "NAME":{}.
json_map() {
  m=$(echo "$1" | sed -n "s/.*\\(\"$2\":{[^}]*}\\).*/\\1/p")
  echo "${m:-\"$2\":{\}}"
}
contains() { case "$1" in *"$2"*) return 0 ;; esac; echo "no '$2' in: $1"; return 1; }
mounted_from() { awk -v p="$1" '$5 == p { for (i = 7; $i != "-"; i++); s = $(i + 2) } END { print s }' /proc/self/mountinfo; }
fs_bytes() { /sbin/df -B1 --output=size "$1" | tail -n 1 | tr -d ' '; }

cap_json() {  # TestVolumeCapabilityWithAccessType(sc, SINGLE_NODE_WRITER)
  if [ "$ACCESS" = block ]; then
    echo '{"block":{},"accessMode":{"mode":"SINGLE_NODE_WRITER"}}'
  else
    echo '{"mount":{},"accessMode":{"mode":"SINGLE_NODE_WRITER"}}'
  fi
}

# --- csi-sanity's TestContext and Resources ---------------------------------------------

sanity_setup() {  # sc.Setup(): os.Mkdir of both, an error if either exists
  mkdir "$TARGET_DIR" && mkdir "$STAGING"
}
VOLUMES=""    # "id" or "id@node" (controller-published to node), made first to last
VOLUME_ID=""  # of the last must_create_volume
VOLUME_CONTEXT='"volumeContext":{}'
PUBLISH_CONTEXT=""

must_create_volume() {  # must_create_volume NAME: Resources.MustCreateVolume, 10 GiB required
  reply=$(call Controller.CreateVolume "{\"name\":\"$1\",\"volumeCapabilities\":[$(cap_json)],\"capacityRange\":{\"requiredBytes\":\"$SIZE\"}}") || return 1
  VOLUME_ID=$(json_field "$reply" volumeId)
  [ -n "$VOLUME_ID" ] || { echo "volume ID in response is missing: $reply"; return 1; }
  VOLUME_CONTEXT=$(json_map "$reply" volumeContext)
  VOLUMES="$VOLUMES $VOLUME_ID"
}

node_get_info() {
  reply=$(call Node.NodeGetInfo '{}') || return 1
  NODE_ID=$(json_field "$reply" nodeId)
  [ -n "$NODE_ID" ] || { echo "empty node id: $reply"; return 1; }
}

controller_publish() {  # if PUBLISH_UNPUBLISH_VOLUME: MustControllerPublishVolume
  PUBLISH_CONTEXT=""
  [ "$CONTROLLER_PUBLISH" = 1 ] || return 0
  reply=$(call Controller.ControllerPublishVolume "{\"volumeId\":\"$VOLUME_ID\",\"nodeId\":\"$NODE_ID\",\"volumeCapability\":$(cap_json),$VOLUME_CONTEXT,\"readonly\":false}") || return 1
  PUBLISH_CONTEXT=,$(json_map "$reply" publishContext)
  VOLUMES=$(echo "$VOLUMES" | sed "s/ $VOLUME_ID\$/ $VOLUME_ID@$NODE_ID/")
}

node_stage() {
  call Node.NodeStageVolume "{\"volumeId\":\"$VOLUME_ID\",\"volumeCapability\":$(cap_json),\"stagingTargetPath\":\"$STAGING\",$VOLUME_CONTEXT$PUBLISH_CONTEXT}"
}
node_publish() {
  call Node.NodePublishVolume "{\"volumeId\":\"$VOLUME_ID\",\"targetPath\":\"$TARGET\",\"stagingTargetPath\":\"$STAGING\",\"volumeCapability\":$(cap_json),$VOLUME_CONTEXT$PUBLISH_CONTEXT}"
}

# ok_or_not_found Service.Method JSON: the call succeeds or answers NOT_FOUND
# (csi-sanity's isRelevantError).
ok_or_not_found() {
  r=$(csi_reply "$1" "$2")
  case $r in "OK "* | NOT_FOUND:*) return 0 ;; esac
  echo "${1#*.} failed: $r"
  return 1
}

# Resources.Cleanup(): every volume, last made first.
cleanup() {
  rev=""
  for v in $VOLUMES; do rev="$v $rev"; done
  for v in $rev; do
    id=${v%@*}
    ok_or_not_found Node.NodeUnpublishVolume "{\"volumeId\":\"$id\",\"targetPath\":\"$TARGET\"}" || return 1
    ok_or_not_found Node.NodeUnstageVolume "{\"volumeId\":\"$id\",\"stagingTargetPath\":\"$STAGING\"}" || return 1
    if [ "$v" != "$id" ]; then
      call Controller.ControllerUnpublishVolume "{\"volumeId\":\"$id\",\"nodeId\":\"${v#*@}\"}" >/dev/null || return 1
    fi
    call Controller.DeleteVolume "{\"volumeId\":\"$id\"}" >/dev/null || return 1
  done
  VOLUMES=""
}

# sc.Teardown(): os.Remove of both directories; fails if the driver left anything in them.
teardown() { rmdir "$TARGET_DIR" "$STAGING"; }

# it DESCRIBE_IT: Setup before, Cleanup and Teardown after the steps the caller checks.
it_begin() {
  IT="$1 [$ACCESS]"
  check "$IT: setup (mkdir $TARGET_DIR $STAGING)" sanity_setup
}
it_end() {
  check "$IT: Cleanup (unpublish, unstage: OK or NOT_FOUND; delete)" cleanup
  check "$IT: teardown (both directories empty)" teardown
}

# --- the It()s, in node.go's order ------------------------------------------------------

it_nodegetcapabilities() {
  it_begin "NodeGetCapabilities should return appropriate capabilities"
  caps=$(call Node.NodeGetCapabilities '{}')
  for t in $(echo "$caps" | grep -o '"type":"[A-Z_]*"' | cut -d'"' -f4); do
    check "$IT: $t is a known capability" sh -c "case $t in UNKNOWN|STAGE_UNSTAGE_VOLUME|GET_VOLUME_STATS|EXPAND_VOLUME|VOLUME_CONDITION|SINGLE_NODE_MULTI_WRITER|VOLUME_MOUNT_GROUP) true;; *) false;; esac"
  done
  it_end
}

it_nodegetinfo() {
  it_begin "NodeGetInfo should return appropriate values"
  info=$(call Node.NodeGetInfo '{}')
  check "$IT: node id not empty" test -n "$(json_field "$info" nodeId)"
  max=$(echo "$info" | sed -n 's/.*"maxVolumesPerNode":"\([0-9-]*\)".*/\1/p')
  check "$IT: max_volumes_per_node $max is not negative" test "${max:--1}" -ge 0
  plugin=$(call Identity.GetPluginCapabilities '{}')
  case $plugin in
    *VOLUME_ACCESSIBILITY_CONSTRAINTS*)
      check "$IT: accessible topology (constraints advertised)" contains "$info" '"accessibleTopology":{' ;;
  esac
  it_end
}

it_remove_target_path() {
  it_begin "NodeUnpublishVolume should remove target path"
  check "$IT: CreateVolume" must_create_volume "sanity-node-unpublish-volume$SUFFIX"
  check "$IT: NodeGetInfo" node_get_info
  check "$IT: ControllerPublishVolume if advertised" controller_publish
  check "$IT: NodeStageVolume" node_stage
  check "$IT: NodePublishVolume" node_publish
  check "$IT: the target path exists" test -e "$TARGET"
  check "$IT: NodeUnpublishVolume" call Node.NodeUnpublishVolume "{\"volumeId\":\"$VOLUME_ID\",\"targetPath\":\"$TARGET\"}"
  check "$IT: the target path was removed" test ! -e "$TARGET"
  it_end
}

it_stats_not_on_path() {
  it_begin "NodeGetVolumeStats should fail when volume does not exist on the specified path"
  check "$IT: CreateVolume" must_create_volume "sanity-node-get-volume-stats$SUFFIX"
  check "$IT: NodeGetInfo" node_get_info
  check "$IT: ControllerPublishVolume if advertised" controller_publish
  check "$IT: NodeStageVolume" node_stage
  check "$IT: NodePublishVolume" node_publish
  check_eq "$IT: NodeGetVolumeStats at some/path: NOT_FOUND" \
    "$(call_code Node.NodeGetVolumeStats "{\"volumeId\":\"$VOLUME_ID\",\"volumePath\":\"some/path\"}")" NOT_FOUND
  it_end
}

it_expand_after_publish() {
  it_begin "NodeExpandVolume should work if node-expand is called after node-publish"
  check "$IT: CreateVolume" must_create_volume "sanity-node-expand-volume$SUFFIX"
  reply=$(call Controller.ControllerExpandVolume "{\"volumeId\":\"$VOLUME_ID\",\"capacityRange\":{\"requiredBytes\":\"$EXPAND_SIZE\"}}")
  check_eq "$IT: ControllerExpandVolume: capacity_bytes" "$(json_field "$reply" capacityBytes)" "$EXPAND_SIZE"
  check "$IT: NodeGetInfo" node_get_info
  check "$IT: ControllerPublishVolume if advertised" controller_publish
  check "$IT: NodeStageVolume" node_stage
  check "$IT: NodePublishVolume" node_publish
  check "$IT: NodeExpandVolume" call Node.NodeExpandVolume "{\"volumeId\":\"$VOLUME_ID\",\"volumePath\":\"$TARGET\",\"capacityRange\":{\"requiredBytes\":\"$EXPAND_SIZE\"}}"
  # Not csi-sanity's: what the node now shows.
  if [ "$ACCESS" = block ]; then
    check_eq "$IT: the device file has the expanded size" "$(dev_size "$TARGET")" "$EXPAND_SIZE"
  else
    fs=$(fs_bytes "$TARGET")
    check "$IT: the filesystem spans the expanded volume ($fs of $EXPAND_SIZE bytes)" \
      test "$fs" -gt $((EXPAND_SIZE * 95 / 100))
  fi
  it_end
}

# runControllerTest(count): csi-sanity's "should work" (1) and "should be idempotent" (10).
run_controller_test() {
  count=$1
  check "$IT: NodeGetInfo" node_get_info
  check "$IT: CreateVolume" must_create_volume "sanity-node-full-$count$SUFFIX"
  check "$IT: ControllerPublishVolume if advertised" controller_publish
  i=1
  while [ $i -le "$count" ]; do
    check "$IT: NodeStageVolume ($i of $count)" node_stage
    i=$((i + 1))
  done
  i=1
  while [ $i -le "$count" ]; do
    check "$IT: NodePublishVolume ($i of $count)" node_publish
    i=$((i + 1))
  done
  st=$(call Node.NodeGetVolumeStats "{\"volumeId\":\"$VOLUME_ID\",\"volumePath\":\"$TARGET\"}")
  check "$IT: NodeGetVolumeStats: usage" contains "$st" '"usage":[{'
  # Not csi-sanity's: one mount each, whatever the count; a mount volume got the default
  # filesystem (ext4: the capability names none).
  check_eq "$IT: one mount at the staging path" "$(awk -v p="$STAGING" '$5 == p' /proc/self/mountinfo | wc -l)" \
    "$([ "$ACCESS" = block ] && echo 0 || echo 1)"
  check_eq "$IT: one mount at the target" "$(awk -v p="$TARGET" '$5 == p' /proc/self/mountinfo | wc -l)" 1
  if [ "$ACCESS" = mount ]; then
    check "$IT: the staged volume holds ext4" sh -c "/sbin/blkid -p -o value -s TYPE $(mounted_from "$STAGING") | grep -qx ext4"
  fi
}

it_should_work() {
  it_begin "Node Service should work"
  run_controller_test 1
  it_end
}

it_should_be_idempotent() {
  it_begin "Node Service should be idempotent"
  run_controller_test "$IDEMPOTENT_COUNT"
  it_end
}

# A node with nothing attached: every nbd device free again.
no_device_attached() {
  for p in /sys/block/nbd*/pid; do [ -e "$p" ] && { echo "still attached: $p"; return 1; }; done
  return 0
}

# --- the run ---------------------------------------------------------------------------

mkdir -p /var/lib/sanity /run/portalbd
# The TCP control listener registers this daemon as node 'sanity-node' (nodes/<id>.json),
# the node ControllerPublishVolume records (csi-sanity calls it with NodeGetInfo's id).
printf '%s' "sanity-control-token-0123456789abcdef" >/tmp/sanity.token
chmod 0400 /tmp/sanity.token
cat >/tmp/sanity.toml <<EOF
[storage]
url = "$STORE"
cache_dir = "/var/lib/sanity"
volumes = []
[device]
state_file = "/var/lib/sanity/devices.json"
[control]
listen = "127.0.0.1:7071"
token_file = "/tmp/sanity.token"
node_id = "sanity-node"
EOF
check "portalbd starts on file:// serving no volume" portalbd_start -c /tmp/sanity.toml
check "portalbd-csi --role all starts (csi-sanity's one endpoint)" csi_plugin_start "$CSI" \
  /tmp/csi.log --role all --node-id sanity-node --daemon-socket "$PORTALBD_SOCKET"
csi_batch_start "$CSI" # not under check or run: its fds 3 and 4 must stay open here
CONTROLLER_PUBLISH=0
case $(call Controller.ControllerGetCapabilities '{}') in
  *PUBLISH_UNPUBLISH_VOLUME*) CONTROLLER_PUBLISH=1 ;;
esac
pass "ControllerPublishVolume advertised: $CONTROLLER_PUBLISH (csi-sanity calls it only then)"

for ACCESS in mount block; do
  it_nodegetcapabilities
  it_nodegetinfo
  it_remove_target_path
  it_stats_not_on_path
  it_expand_after_publish
  it_should_work
  it_should_be_idempotent
  check "[$ACCESS] no nbd device is left attached" no_device_attached
done
check "portalbd exits 0 on SIGTERM" portalbd_stop
