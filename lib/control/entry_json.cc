#include "control/entry_json.h"

#include <fmt/format.h>

#include <limits>

#include "util/rfc3339.h"

namespace portal::control::entry_json {

using nlohmann::ordered_json;

ordered_json SnapshotJson(const SnapshotEntry& s) {
  ordered_json j;
  j["name"] = s.name;
  j["id"] = s.id;
  j["created"] = FormatRfc3339(s.created_ns);
  j["created_ns"] = s.created_ns;
  j["size_bytes"] = s.size_bytes;
  j["pinned_bytes"] = s.pinned_bytes;
  j["attached"] = s.attached;
  return j;
}

ordered_json StatusJson(const DaemonStatus& s) {
  ordered_json j;
  j["version"] = s.version;
  j["size_bytes"] = s.size_bytes;
  j["block_size"] = s.block_size;
  j["storage_url"] = s.storage_url;
  j["nbd_address"] = s.nbd_address;
  j["volume_uuid"] = s.volume_uuid;
  j["epoch"] = s.epoch;
  j["fenced"] = s.fenced;
  j["manifest"] = s.manifest_number;
  j["objects_stored"] = s.objects_stored;
  j["bytes_stored"] = s.bytes_stored;
  j["live_bytes"] = s.live_bytes;
  j["segments"] = s.segments;
  j["segment_bytes"] = s.segment_bytes;
  j["map_ssts"] = s.map_ssts;
  j["map_bytes"] = s.map_bytes;
  j["buffer_bytes"] = s.buffer_bytes;
  j["max_unflushed_bytes"] = s.max_unflushed_bytes;
  j["cache_bytes"] = s.cache_bytes;
  j["cache_capacity_bytes"] = s.cache_capacity_bytes;
  j["cache_hits"] = s.cache_hits;
  j["cache_misses"] = s.cache_misses;
  j["write_stalls"] = s.write_stalls;
  j["shadowed_bytes"] = s.shadowed_bytes;
  j["full_compactions"] = s.full_compactions;
  j["corrupt_refetches"] = s.corrupt_refetches;
  j["snapshots"] = s.snapshots;
  j["nbd_connections"] = s.nbd_connections;
  j["store_failing_since"] = s.store_failing_since;
  j["store_failed_attempts"] = s.store_failed_attempts;
  j["store_error"] = s.store_error;
  j["disk_cache_enabled"] = s.disk_cache_enabled;
  j["disk_cache_bytes"] = s.disk_cache_bytes;
  j["disk_cache_capacity_bytes"] = s.disk_cache_capacity_bytes;
  j["disk_cache_hits"] = s.disk_cache_hits;
  j["disk_cache_misses"] = s.disk_cache_misses;
  j["disk_cache_damaged"] = s.disk_cache_damaged;
  j["read_ahead_gets"] = s.read_ahead_gets;
  j["read_ahead_bytes"] = s.read_ahead_bytes;
  j["read_ahead_hits"] = s.read_ahead_hits;
  j["read_ahead_wasted"] = s.read_ahead_wasted;
  j["read_ahead_failed"] = s.read_ahead_failed;
  ordered_json requests = ordered_json::object();
  for (const auto& r : s.requests) {
    ordered_json one;
    one["calls"] = r.calls;
    one["errors"] = r.errors;
    one["bytes"] = r.bytes;
    requests[r.kind] = std::move(one);
  }
  j["requests"] = std::move(requests);
  return j;
}

ordered_json VolumeJson(const VolumeEntry& v) {
  ordered_json j;
  j["name"] = v.name;
  j["default"] = v.is_default;
  j["size_bytes"] = v.size_bytes;
  j["block_size"] = v.block_size;
  j["live_bytes"] = v.live_bytes;
  j["bytes_stored"] = v.bytes_stored;
  j["snapshots"] = v.snapshots;
  j["attached"] = v.attached;
  j["epoch"] = v.epoch;
  j["fenced"] = v.fenced;
  j["volume_uuid"] = v.volume_uuid;
  if (v.clone_of_volume.empty()) {
    j["clone_of"] = nullptr;
  } else {
    j["clone_of"] = {{"volume", v.clone_of_volume}, {"snapshot", v.clone_of_snapshot}};
  }
  if (v.snapshot_list) {
    ordered_json list = ordered_json::array();
    for (const auto& s : *v.snapshot_list) list.push_back(SnapshotJson(s));
    j["snapshot_list"] = std::move(list);
  }
  if (v.owner) {
    j["owner"] = {
        {"node", v.owner->node}, {"control", v.owner->control}, {"epoch", v.owner->epoch}};
  }
  if (v.attachment) j["attachment"] = AttachmentJson(*v.attachment);
  return j;
}

ordered_json AttachmentJson(const AttachmentEntry& a) {
  ordered_json j;
  j["volume"] = a.volume;
  j["node"] = a.node;
  j["read_only"] = a.read_only;
  j["since"] = a.since;
  return j;
}

ordered_json NodeJson(const NodeEntry& n) {
  ordered_json j;
  j["node"] = n.node;
  j["control"] = n.control;
  j["since"] = n.since;
  return j;
}

ordered_json DeviceJson(const DeviceEntry& d) {
  ordered_json j;
  j["path"] = d.path;
  j["volume"] = d.volume;
  j["size_bytes"] = d.size_bytes;
  j["read_only"] = d.read_only;
  j["connected"] = d.connected;
  return j;
}

Result<SnapshotEntry> DecodeSnapshot(const ordered_json& j) {
  if (!j.is_object()) return Status::Corruption("reply: a snapshot is not an object");
  Fields f(j, "reply snapshot");
  SnapshotEntry s;
  uint64_t attached = 0;
  RETURN_IF_ERROR(f.Str("name", &s.name));
  RETURN_IF_ERROR(f.Str("id", &s.id));
  RETURN_IF_ERROR(f.I64("created_ns", &s.created_ns));
  RETURN_IF_ERROR(f.U64("size_bytes", &s.size_bytes));
  RETURN_IF_ERROR(f.U64("pinned_bytes", &s.pinned_bytes));
  RETURN_IF_ERROR(f.U64("attached", &attached));
  if (attached > static_cast<uint64_t>(std::numeric_limits<int>::max())) {
    return Status::Corruption(fmt::format("reply snapshot: attached {} out of range", attached));
  }
  s.attached = static_cast<int>(attached);
  return s;
}

Result<VolumeEntry> DecodeVolume(const ordered_json& j) {
  if (!j.is_object()) return Status::Corruption("reply: a volume is not an object");
  Fields f(j, "reply volume");
  VolumeEntry v;
  uint64_t block_size = 0, attached = 0;
  RETURN_IF_ERROR(f.Str("name", &v.name));
  RETURN_IF_ERROR(f.Bool("default", &v.is_default));
  RETURN_IF_ERROR(f.U64("size_bytes", &v.size_bytes));
  RETURN_IF_ERROR(f.U64("block_size", &block_size));
  v.block_size = static_cast<uint32_t>(block_size);
  RETURN_IF_ERROR(f.U64("live_bytes", &v.live_bytes));
  RETURN_IF_ERROR(f.U64("bytes_stored", &v.bytes_stored));
  RETURN_IF_ERROR(f.U64("snapshots", &v.snapshots));
  RETURN_IF_ERROR(f.U64("attached", &attached));
  v.attached = static_cast<int>(attached);
  RETURN_IF_ERROR(f.U64("epoch", &v.epoch));
  RETURN_IF_ERROR(f.Bool("fenced", &v.fenced));
  RETURN_IF_ERROR(f.Str("volume_uuid", &v.volume_uuid));
  if (auto it = j.find("clone_of"); it != j.end() && !it->is_null()) {
    if (!it->is_object()) return Status::Corruption("reply volume: clone_of is not an object");
    Fields c(*it, "reply volume clone_of");
    RETURN_IF_ERROR(c.Str("volume", &v.clone_of_volume));
    RETURN_IF_ERROR(c.Str("snapshot", &v.clone_of_snapshot));
  }
  if (auto it = j.find("snapshot_list"); it != j.end()) {
    if (!it->is_array()) return Status::Corruption("reply volume: snapshot_list is not an array");
    v.snapshot_list.emplace();
    for (const auto& one : *it) {
      ASSIGN_OR_RETURN(auto s, DecodeSnapshot(one));
      v.snapshot_list->push_back(std::move(s));
    }
  }
  if (auto it = j.find("owner"); it != j.end() && !it->is_null()) {
    if (!it->is_object()) return Status::Corruption("reply volume: owner is not an object");
    Fields o(*it, "reply volume owner");
    v.owner.emplace();
    RETURN_IF_ERROR(o.Str("node", &v.owner->node));
    RETURN_IF_ERROR(o.Str("control", &v.owner->control));
    RETURN_IF_ERROR(o.U64("epoch", &v.owner->epoch));
  }
  if (auto it = j.find("attachment"); it != j.end() && !it->is_null()) {
    ASSIGN_OR_RETURN(auto a, DecodeAttachment(*it));
    v.attachment = std::move(a);
  }
  return v;
}

Result<AttachmentEntry> DecodeAttachment(const ordered_json& j, const char* what) {
  if (!j.is_object()) return Status::Corruption("reply: an attachment is not an object");
  Fields f(j, what);
  AttachmentEntry a;
  RETURN_IF_ERROR(f.Str("volume", &a.volume));
  RETURN_IF_ERROR(f.Str("node", &a.node));
  RETURN_IF_ERROR(f.Bool("read_only", &a.read_only));
  RETURN_IF_ERROR(f.Str("since", &a.since));
  return a;
}

Result<NodeEntry> DecodeNode(const ordered_json& j, const char* what) {
  if (!j.is_object()) return Status::Corruption("reply: a node is not an object");
  Fields f(j, what);
  NodeEntry n;
  RETURN_IF_ERROR(f.Str("node", &n.node));
  RETURN_IF_ERROR(f.Str("control", &n.control));
  RETURN_IF_ERROR(f.Str("since", &n.since));
  return n;
}

Result<DeviceEntry> DecodeDevice(const ordered_json& j) {
  if (!j.is_object()) return Status::Corruption("reply: a device is not an object");
  Fields f(j, "reply device");
  DeviceEntry d;
  RETURN_IF_ERROR(f.Str("path", &d.path));
  RETURN_IF_ERROR(f.Str("volume", &d.volume));
  RETURN_IF_ERROR(f.U64("size_bytes", &d.size_bytes));
  RETURN_IF_ERROR(f.Bool("read_only", &d.read_only));
  RETURN_IF_ERROR(f.Bool("connected", &d.connected));
  return d;
}

Result<DaemonStatus> DecodeStatus(const ordered_json& j) {
  if (!j.is_object()) return Status::Corruption("reply: status is not an object");
  Fields f(j, "reply status");
  DaemonStatus s;
  uint64_t block_size = 0;
  RETURN_IF_ERROR(f.Str("version", &s.version));
  RETURN_IF_ERROR(f.U64("size_bytes", &s.size_bytes));
  RETURN_IF_ERROR(f.U64("block_size", &block_size));
  s.block_size = static_cast<uint32_t>(block_size);
  RETURN_IF_ERROR(f.Str("storage_url", &s.storage_url));
  RETURN_IF_ERROR(f.Str("nbd_address", &s.nbd_address));
  RETURN_IF_ERROR(f.Str("volume_uuid", &s.volume_uuid));
  RETURN_IF_ERROR(f.U64("epoch", &s.epoch));
  RETURN_IF_ERROR(f.Bool("fenced", &s.fenced));
  RETURN_IF_ERROR(f.U64("manifest", &s.manifest_number));
  RETURN_IF_ERROR(f.U64("objects_stored", &s.objects_stored));
  RETURN_IF_ERROR(f.U64("bytes_stored", &s.bytes_stored));
  RETURN_IF_ERROR(f.U64("live_bytes", &s.live_bytes));
  RETURN_IF_ERROR(f.U64("segments", &s.segments));
  RETURN_IF_ERROR(f.U64("segment_bytes", &s.segment_bytes));
  RETURN_IF_ERROR(f.U64("map_ssts", &s.map_ssts));
  RETURN_IF_ERROR(f.U64("map_bytes", &s.map_bytes));
  RETURN_IF_ERROR(f.U64("buffer_bytes", &s.buffer_bytes));
  RETURN_IF_ERROR(f.U64("max_unflushed_bytes", &s.max_unflushed_bytes));
  RETURN_IF_ERROR(f.U64("cache_bytes", &s.cache_bytes));
  RETURN_IF_ERROR(f.U64("cache_capacity_bytes", &s.cache_capacity_bytes));
  RETURN_IF_ERROR(f.U64("cache_hits", &s.cache_hits));
  RETURN_IF_ERROR(f.U64("cache_misses", &s.cache_misses));
  RETURN_IF_ERROR(f.U64("write_stalls", &s.write_stalls));
  RETURN_IF_ERROR(f.U64("shadowed_bytes", &s.shadowed_bytes));
  RETURN_IF_ERROR(f.U64("full_compactions", &s.full_compactions));
  RETURN_IF_ERROR(f.U64("corrupt_refetches", &s.corrupt_refetches));
  RETURN_IF_ERROR(f.U64("snapshots", &s.snapshots));
  RETURN_IF_ERROR(f.U64("nbd_connections", &s.nbd_connections));
  // Newer fields: absent from older daemons' replies.
  if (j.contains("store_failing_since")) {
    RETURN_IF_ERROR(f.Str("store_failing_since", &s.store_failing_since));
    RETURN_IF_ERROR(f.U64("store_failed_attempts", &s.store_failed_attempts));
    RETURN_IF_ERROR(f.Str("store_error", &s.store_error));
  }
  if (j.contains("disk_cache_enabled")) {
    RETURN_IF_ERROR(f.Bool("disk_cache_enabled", &s.disk_cache_enabled));
    RETURN_IF_ERROR(f.U64("disk_cache_bytes", &s.disk_cache_bytes));
    RETURN_IF_ERROR(f.U64("disk_cache_capacity_bytes", &s.disk_cache_capacity_bytes));
    RETURN_IF_ERROR(f.U64("disk_cache_hits", &s.disk_cache_hits));
    RETURN_IF_ERROR(f.U64("disk_cache_misses", &s.disk_cache_misses));
    RETURN_IF_ERROR(f.U64("disk_cache_damaged", &s.disk_cache_damaged));
  }
  if (j.contains("read_ahead_gets")) {
    RETURN_IF_ERROR(f.U64("read_ahead_gets", &s.read_ahead_gets));
    RETURN_IF_ERROR(f.U64("read_ahead_bytes", &s.read_ahead_bytes));
    RETURN_IF_ERROR(f.U64("read_ahead_hits", &s.read_ahead_hits));
    RETURN_IF_ERROR(f.U64("read_ahead_wasted", &s.read_ahead_wasted));
    RETURN_IF_ERROR(f.U64("read_ahead_failed", &s.read_ahead_failed));
  }
  auto reqs = j.find("requests");
  if (reqs == j.end() || !reqs->is_object()) {
    return Status::Corruption("reply status: requests missing");
  }
  for (const auto& [kind, counts] : reqs->items()) {
    if (!counts.is_object()) return Status::Corruption("reply status: bad request counts");
    Fields c(counts, "reply status requests." + kind);
    RequestCount r;
    r.kind = kind;
    RETURN_IF_ERROR(c.U64("calls", &r.calls));
    RETURN_IF_ERROR(c.U64("errors", &r.errors));
    RETURN_IF_ERROR(c.U64("bytes", &r.bytes));
    s.requests.push_back(std::move(r));
  }
  return s;
}

}  // namespace portal::control::entry_json
