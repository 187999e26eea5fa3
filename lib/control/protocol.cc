#include "control/protocol.h"

#include <limits>

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "util/rfc3339.h"

namespace portal::control {

using nlohmann::json;
using nlohmann::ordered_json;

namespace {

// Never throws: invalid UTF-8 (which parsed JSON cannot contain, but a store's error
// message might) is replaced rather than rejected.
template <typename J>
std::string Dump(const J& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

constexpr struct {
  Op op;
  std::string_view name;
} kOps[] = {
    {Op::kSnapshotCreate, "snapshot.create"},   {Op::kSnapshotList, "snapshot.list"},
    {Op::kSnapshotGet, "snapshot.get"},         {Op::kSnapshotDelete, "snapshot.delete"},
    {Op::kSnapshotRestore, "snapshot.restore"}, {Op::kStatus, "status"},
    {Op::kVolumeCreate, "volume.create"},       {Op::kVolumeList, "volume.list"},
    {Op::kVolumeGet, "volume.get"},             {Op::kVolumeDelete, "volume.delete"},
    {Op::kVolumeResize, "volume.resize"},       {Op::kVolumeOpen, "volume.open"},
    {Op::kVolumeRelease, "volume.release"},     {Op::kVolumeClone, "volume.clone"},
    {Op::kDeviceAttach, "device.attach"},       {Op::kDeviceDetach, "device.detach"},
    {Op::kDeviceList, "device.list"},
};

bool IsSnapshotOp(Op op) { return op != Op::kStatus && !IsVolumeOp(op) && !IsDeviceOp(op); }
bool TakesVolume(Op op) { return IsSnapshotOp(op) || op == Op::kDeviceAttach || op == Op::kDeviceDetach; }
bool TakesSize(Op op) { return op == Op::kVolumeCreate || op == Op::kVolumeResize; }

ErrorReply BadRequest(std::string message) {
  return ErrorReply{std::string(kBadRequest), std::move(message)};
}

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

// --- decoding helpers (client side): type-checked, never throwing ---

// Decoding keeps the daemon's key order (request kinds are listed in enum order).
class Fields {
 public:
  Fields(const ordered_json& j, std::string what) : j_(j), what_(std::move(what)) {}
  Status U64(const char* key, uint64_t* out) const {
    auto it = j_.find(key);
    if (it == j_.end() || !it->is_number_unsigned()) return Bad(key);
    *out = it->get<uint64_t>();
    return Status::Ok();
  }
  Status I64(const char* key, int64_t* out) const {
    auto it = j_.find(key);
    if (it == j_.end() || !it->is_number_integer()) return Bad(key);
    *out = it->get<int64_t>();
    return Status::Ok();
  }
  Status Str(const char* key, std::string* out) const {
    auto it = j_.find(key);
    if (it == j_.end() || !it->is_string()) return Bad(key);
    *out = it->get<std::string>();
    return Status::Ok();
  }
  Status Bool(const char* key, bool* out) const {
    auto it = j_.find(key);
    if (it == j_.end() || !it->is_boolean()) return Bad(key);
    *out = it->get<bool>();
    return Status::Ok();
  }

 private:
  Status Bad(const char* key) const {
    return Status::Corruption(
        fmt::format("{}: field '{}' missing or of the wrong type", what_, key));
  }
  const ordered_json& j_;
  std::string what_;
};

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
  return v;
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

}  // namespace

std::string_view OpName(Op op) {
  for (const auto& o : kOps) {
    if (o.op == op) return o.name;
  }
  PORTAL_ASSERT(false, "unknown control op");
  return "";
}

bool OpTakesName(Op op) {
  return op != Op::kSnapshotList && op != Op::kStatus && op != Op::kVolumeList &&
         !IsDeviceOp(op);
}

bool IsDeviceOp(Op op) {
  return op == Op::kDeviceAttach || op == Op::kDeviceDetach || op == Op::kDeviceList;
}

bool IsVolumeOp(Op op) {
  switch (op) {
    case Op::kVolumeCreate:
    case Op::kVolumeList:
    case Op::kVolumeGet:
    case Op::kVolumeDelete:
    case Op::kVolumeResize:
    case Op::kVolumeOpen:
    case Op::kVolumeRelease:
    case Op::kVolumeClone:
      return true;
    default:
      return false;
  }
}

ErrorReply ErrorFromStatus(const Status& status) {
  std::string_view code = "internal";
  switch (status.code()) {
    case Status::Code::kOk:
      code = "internal";
      break;
    case Status::Code::kNotFound:
      code = "not_found";
      break;
    case Status::Code::kCorruption:
      code = "corruption";
      break;
    case Status::Code::kIOError:
      code = "io_error";
      break;
    case Status::Code::kInvalidArgument:
      code = "invalid_argument";
      break;
    case Status::Code::kUnavailable:
      code = "unavailable";
      break;
    case Status::Code::kPreconditionFailed:
      code = "precondition_failed";
      break;
    case Status::Code::kNotSupported:
      code = "not_supported";
      break;
    case Status::Code::kPermissionDenied:
      code = "permission_denied";
      break;
    case Status::Code::kNoSpace:
      code = "no_space";
      break;
    case Status::Code::kBusy:
      code = "busy";
      break;
    case Status::Code::kShutdown:
      code = "shutdown";
      break;
  }
  return ErrorReply{std::string(code), status.message()};
}

std::variant<Request, ErrorReply> ParseRequest(std::string_view line, std::string* id_json) {
  id_json->clear();
  if (line.size() > kMaxRequestBytes) {
    return ErrorReply{std::string(kRequestTooLong),
                      fmt::format("request is longer than {} bytes", kMaxRequestBytes)};
  }
  json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return BadRequest("request is not valid JSON");
  if (!j.is_object()) return BadRequest("request is not a JSON object");
  // The id first, so that even a bad request's error reply carries it.
  if (auto it = j.find("id"); it != j.end()) {
    if (!it->is_string() && !it->is_number_integer()) {
      return BadRequest("request field 'id' must be a string or an integer");
    }
    *id_json = Dump(*it);
  }
  for (const auto& [key, value] : j.items()) {
    if (key != "op" && key != "name" && key != "id" && key != "volume" && key != "size_bytes" &&
        key != "allow_shrink" && key != "source" && key != "snapshot" && key != "device" &&
        key != "read_only") {
      return BadRequest(fmt::format("unknown request field '{}'", key));
    }
  }
  auto op_it = j.find("op");
  if (op_it == j.end() || !op_it->is_string()) {
    return BadRequest("request field 'op' (a string) is missing");
  }
  const std::string op_name = op_it->get<std::string>();
  Request r;
  bool known = false;
  for (const auto& o : kOps) {
    if (o.name == op_name) {
      r.op = o.op;
      known = true;
    }
  }
  if (!known) {
    return BadRequest(
        fmt::format("unknown op '{}' (known: snapshot.create, snapshot.list, snapshot.get, "
                    "snapshot.delete, snapshot.restore, status, volume.create, volume.list, "
                    "volume.get, volume.delete, volume.resize, volume.open, volume.release, "
                    "volume.clone, device.attach, device.detach, device.list)",
                    op_name));
  }
  auto name_it = j.find("name");
  if (!OpTakesName(r.op)) {
    if (name_it != j.end()) return BadRequest(fmt::format("op '{}' takes no name", op_name));
  } else {
    if (name_it == j.end() || !name_it->is_string()) {
      return BadRequest(fmt::format("op '{}' needs a 'name' (a string)", op_name));
    }
    r.name = name_it->get<std::string>();
  }
  // The fields below belong to some ops only; elsewhere they are a mistake worth naming.
  if (auto it = j.find("volume"); it != j.end()) {
    if (!TakesVolume(r.op)) return BadRequest(fmt::format("op '{}' takes no volume", op_name));
    if (!it->is_string()) return BadRequest("request field 'volume' must be a string");
    r.volume = it->get<std::string>();
  }
  if (auto it = j.find("size_bytes"); it != j.end()) {
    if (!TakesSize(r.op)) return BadRequest(fmt::format("op '{}' takes no size_bytes", op_name));
    if (!it->is_number_unsigned() || it->get<uint64_t>() == 0) {
      return BadRequest("request field 'size_bytes' must be a positive integer");
    }
    r.size_bytes = it->get<uint64_t>();
  } else if (TakesSize(r.op)) {
    return BadRequest(fmt::format("op '{}' needs 'size_bytes' (a positive integer)", op_name));
  }
  if (auto it = j.find("allow_shrink"); it != j.end()) {
    if (r.op != Op::kVolumeResize) {
      return BadRequest(fmt::format("op '{}' takes no allow_shrink", op_name));
    }
    if (!it->is_boolean()) return BadRequest("request field 'allow_shrink' must be a boolean");
    r.allow_shrink = it->get<bool>();
  }
  for (auto [field, value] : {std::pair{"source", &r.source}, std::pair{"snapshot", &r.snapshot}}) {
    auto it = j.find(field);
    if (r.op != Op::kVolumeClone) {
      if (it != j.end()) return BadRequest(fmt::format("op '{}' takes no {}", op_name, field));
    } else if (it == j.end() || !it->is_string()) {
      return BadRequest(fmt::format("op '{}' needs a '{}' (a string)", op_name, field));
    } else {
      *value = it->get<std::string>();
    }
  }
  if (auto it = j.find("device"); it != j.end()) {
    if (r.op != Op::kDeviceAttach && r.op != Op::kDeviceDetach) {
      return BadRequest(fmt::format("op '{}' takes no device", op_name));
    }
    if (!it->is_string() || it->get<std::string>().empty()) {
      return BadRequest("request field 'device' must be a device path (/dev/nbdN)");
    }
    r.device = it->get<std::string>();
  }
  if (auto it = j.find("read_only"); it != j.end()) {
    if (r.op != Op::kDeviceAttach) {
      return BadRequest(fmt::format("op '{}' takes no read_only", op_name));
    }
    if (!it->is_boolean()) return BadRequest("request field 'read_only' must be a boolean");
    r.read_only = it->get<bool>();
  }
  if (r.op == Op::kDeviceAttach && r.volume.empty()) {
    return BadRequest("op 'device.attach' needs a 'volume' (a volume name)");
  }
  if (r.op == Op::kDeviceDetach && r.volume.empty() == r.device.empty()) {
    return BadRequest("op 'device.detach' needs exactly one of 'device' and 'volume'");
  }
  r.id_json = *id_json;
  return r;
}

std::string EncodeReply(const Reply& reply, std::string_view id_json) {
  ordered_json j;
  j["ok"] = !std::holds_alternative<ErrorReply>(reply);
  if (!id_json.empty()) {
    // Came from our own Dump() of a string or integer, so it parses.
    j["id"] = ordered_json::parse(id_json, nullptr, false);
  }
  std::visit(
      [&](const auto& r) {
        using T = std::decay_t<decltype(r)>;
        if constexpr (std::is_same_v<T, SnapshotReply>) {
          j["snapshot"] = SnapshotJson(r.snapshot);
        } else if constexpr (std::is_same_v<T, SnapshotListReply>) {
          ordered_json list = ordered_json::array();
          for (const auto& s : r.snapshots) list.push_back(SnapshotJson(s));
          j["snapshots"] = std::move(list);
        } else if constexpr (std::is_same_v<T, StatusReply>) {
          j["status"] = StatusJson(r.status);
        } else if constexpr (std::is_same_v<T, VolumeReply>) {
          j["volume"] = VolumeJson(r.volume);
        } else if constexpr (std::is_same_v<T, VolumeListReply>) {
          ordered_json list = ordered_json::array();
          for (const auto& v : r.volumes) list.push_back(VolumeJson(v));
          j["volumes"] = std::move(list);
        } else if constexpr (std::is_same_v<T, DeviceReply>) {
          j["device"] = DeviceJson(r.device);
        } else if constexpr (std::is_same_v<T, DeviceListReply>) {
          ordered_json list = ordered_json::array();
          for (const auto& d : r.devices) list.push_back(DeviceJson(d));
          j["devices"] = std::move(list);
        } else if constexpr (std::is_same_v<T, DeviceDetachReply>) {
          j["detached"] = r.detached;
          if (r.detached) j["device"] = DeviceJson(r.device);
        } else if constexpr (std::is_same_v<T, ErrorReply>) {
          ordered_json e;
          e["code"] = r.code;
          e["message"] = r.message;
          j["error"] = std::move(e);
        }
      },
      reply);
  return Dump(j) + "\n";
}

void LineReader::Feed(std::string_view bytes) {
  while (!bytes.empty()) {
    const size_t nl = bytes.find('\n');
    if (discarding_) {
      if (nl == std::string_view::npos) return;
      bytes.remove_prefix(nl + 1);
      discarding_ = false;
      continue;
    }
    const std::string_view piece = bytes.substr(0, nl);  // all of it when npos
    if (partial_.size() + piece.size() > max_) {
      ready_.push_back(Line{"", true});
      partial_.clear();
      if (nl == std::string_view::npos) {
        discarding_ = true;
        return;
      }
      bytes.remove_prefix(nl + 1);
      continue;
    }
    partial_.append(piece);
    if (nl == std::string_view::npos) return;
    bytes.remove_prefix(nl + 1);
    std::string text = std::move(partial_);
    partial_.clear();
    if (!text.empty() && text.back() == '\r') text.pop_back();
    if (!text.empty()) ready_.push_back(Line{std::move(text), false});  // blank: ignored
  }
}

void LineReader::Finish() {
  if (discarding_ || partial_.empty()) return;
  Feed("\n");
}

std::optional<LineReader::Line> LineReader::Next() {
  if (ready_.empty()) return std::nullopt;
  Line l = std::move(ready_.front());
  ready_.pop_front();
  return l;
}

std::string EncodeRequest(const Request& request) {
  ordered_json j;
  j["op"] = std::string(OpName(request.op));
  if (OpTakesName(request.op)) j["name"] = request.name;
  if (TakesVolume(request.op) && !request.volume.empty()) j["volume"] = request.volume;
  if (IsDeviceOp(request.op) && !request.device.empty()) j["device"] = request.device;
  if (request.op == Op::kDeviceAttach && request.read_only) j["read_only"] = true;
  if (TakesSize(request.op)) j["size_bytes"] = request.size_bytes;
  if (request.op == Op::kVolumeResize && request.allow_shrink) j["allow_shrink"] = true;
  if (request.op == Op::kVolumeClone) {
    j["source"] = request.source;
    j["snapshot"] = request.snapshot;
  }
  if (!request.id_json.empty()) j["id"] = ordered_json::parse(request.id_json, nullptr, false);
  return Dump(j) + "\n";
}

Result<Reply> DecodeReply(std::string_view line) {
  ordered_json j = ordered_json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return Status::Corruption("reply is not a JSON object");
  }
  auto ok = j.find("ok");
  if (ok == j.end() || !ok->is_boolean()) return Status::Corruption("reply has no 'ok'");
  if (!ok->get<bool>()) {
    auto e = j.find("error");
    if (e == j.end() || !e->is_object()) return Status::Corruption("error reply has no 'error'");
    ErrorReply r;
    Fields f(*e, "reply error");
    RETURN_IF_ERROR(f.Str("code", &r.code));
    RETURN_IF_ERROR(f.Str("message", &r.message));
    return Reply(std::move(r));
  }
  if (auto it = j.find("detached"); it != j.end()) {
    if (!it->is_boolean()) return Status::Corruption("reply: detached is not a boolean");
    DeviceDetachReply r;
    r.detached = it->get<bool>();
    if (auto d = j.find("device"); r.detached && d != j.end()) {
      ASSIGN_OR_RETURN(r.device, DecodeDevice(*d));
    }
    return Reply(std::move(r));
  }
  if (auto it = j.find("device"); it != j.end()) {
    ASSIGN_OR_RETURN(auto d, DecodeDevice(*it));
    return Reply(DeviceReply{std::move(d)});
  }
  if (auto it = j.find("devices"); it != j.end()) {
    if (!it->is_array()) return Status::Corruption("reply: devices is not an array");
    DeviceListReply list;
    for (const auto& one : *it) {
      ASSIGN_OR_RETURN(auto d, DecodeDevice(one));
      list.devices.push_back(std::move(d));
    }
    return Reply(std::move(list));
  }
  if (auto it = j.find("snapshot"); it != j.end()) {
    ASSIGN_OR_RETURN(auto s, DecodeSnapshot(*it));
    return Reply(SnapshotReply{std::move(s)});
  }
  if (auto it = j.find("snapshots"); it != j.end()) {
    if (!it->is_array()) return Status::Corruption("reply: snapshots is not an array");
    SnapshotListReply list;
    for (const auto& one : *it) {
      ASSIGN_OR_RETURN(auto s, DecodeSnapshot(one));
      list.snapshots.push_back(std::move(s));
    }
    return Reply(std::move(list));
  }
  if (auto it = j.find("status"); it != j.end()) {
    ASSIGN_OR_RETURN(auto s, DecodeStatus(*it));
    return Reply(StatusReply{std::move(s)});
  }
  if (auto it = j.find("volume"); it != j.end()) {
    ASSIGN_OR_RETURN(auto v, DecodeVolume(*it));
    return Reply(VolumeReply{std::move(v)});
  }
  if (auto it = j.find("volumes"); it != j.end()) {
    if (!it->is_array()) return Status::Corruption("reply: volumes is not an array");
    VolumeListReply list;
    for (const auto& one : *it) {
      ASSIGN_OR_RETURN(auto v, DecodeVolume(one));
      list.volumes.push_back(std::move(v));
    }
    return Reply(std::move(list));
  }
  return Reply(OkReply{});
}

}  // namespace portal::control
