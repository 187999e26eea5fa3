#include "control/protocol.h"

#include <limits>

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "control/entry_json.h"

namespace portal::control {

using nlohmann::json;
using nlohmann::ordered_json;
using entry_json::AttachmentJson;
using entry_json::DecodeAttachment;
using entry_json::DecodeDevice;
using entry_json::DecodeNode;
using entry_json::DecodeSnapshot;
using entry_json::DecodeStatus;
using entry_json::DecodeVolume;
using entry_json::DeviceJson;
using entry_json::Fields;
using entry_json::NodeJson;
using entry_json::SnapshotJson;
using entry_json::StatusJson;
using entry_json::VolumeJson;

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
    {Op::kVolumeInspect, "volume.inspect"},
    {Op::kVolumePublish, "volume.publish"},
    {Op::kVolumeUnpublish, "volume.unpublish"},
    {Op::kNodeGet, "node.get"},
};

bool IsSnapshotOp(Op op) {
  return op != Op::kStatus && !IsVolumeOp(op) && !IsDeviceOp(op) && !IsNodeOp(op);
}
bool TakesVolume(Op op) {
  return IsSnapshotOp(op) || op == Op::kDeviceAttach || op == Op::kDeviceDetach;
}
bool TakesSize(Op op) { return op == Op::kVolumeCreate || op == Op::kVolumeResize; }

ErrorReply BadRequest(std::string message) {
  return ErrorReply{std::string(kBadRequest), std::move(message)};
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
         !IsDeviceOp(op) && op != Op::kVolumeInspect;
}

bool IsDeviceOp(Op op) {
  return op == Op::kDeviceAttach || op == Op::kDeviceDetach || op == Op::kDeviceList;
}

bool IsNodeOp(Op op) { return op == Op::kNodeGet; }

Status ValidateNodeId(std::string_view id) {
  if (id.empty()) return Status::InvalidArgument("node id is empty");
  if (id.size() > kMaxNodeIdBytes) {
    return Status::InvalidArgument(fmt::format("node id '{}' is {} bytes long; the limit is {}",
                                               id, id.size(), kMaxNodeIdBytes));
  }
  auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  if (!alnum(id.front()) || !alnum(id.back())) {
    return Status::InvalidArgument(
        fmt::format("node id '{}' must start and end with a lowercase letter or a digit", id));
  }
  for (char c : id) {
    if (!alnum(c) && c != '.' && c != '_' && c != '-') {
      return Status::InvalidArgument(fmt::format(
          "node id '{}' may hold only lowercase letters, digits, '.', '_' and '-'", id));
    }
  }
  return Status::Ok();
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
    case Op::kVolumeInspect:
    case Op::kVolumePublish:
    case Op::kVolumeUnpublish:
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
        key != "read_only" && key != "block_size" && key != "node") {
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
                    "volume.clone, device.attach, device.detach, device.list, volume.inspect, "
                    "volume.publish, volume.unpublish, node.get)",
                    op_name));
  }
  auto name_it = j.find("name");
  if (r.op == Op::kVolumeInspect) {  // the name is optional: none inspects every volume
    if (name_it != j.end()) {
      if (!name_it->is_string()) return BadRequest("request field 'name' must be a string");
      r.name = name_it->get<std::string>();
    }
  } else if (!OpTakesName(r.op)) {
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
  if (auto it = j.find("block_size"); it != j.end()) {
    if (r.op != Op::kVolumeCreate) {
      return BadRequest(fmt::format("op '{}' takes no block_size", op_name));
    }
    if (!it->is_number_unsigned() || it->get<uint64_t>() == 0 ||
        it->get<uint64_t>() > std::numeric_limits<uint32_t>::max()) {
      return BadRequest("request field 'block_size' must be a positive integer");
    }
    r.block_size = static_cast<uint32_t>(it->get<uint64_t>());
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
    if (r.op != Op::kDeviceAttach && r.op != Op::kVolumePublish) {
      return BadRequest(fmt::format("op '{}' takes no read_only", op_name));
    }
    if (!it->is_boolean()) return BadRequest("request field 'read_only' must be a boolean");
    r.read_only = it->get<bool>();
  }
  if (auto it = j.find("node"); it != j.end()) {
    if (r.op != Op::kVolumePublish && r.op != Op::kVolumeUnpublish) {
      return BadRequest(fmt::format("op '{}' takes no node", op_name));
    }
    if (!it->is_string() || it->get<std::string>().empty()) {
      return BadRequest("request field 'node' must be a node id (a non-empty string)");
    }
    r.node = it->get<std::string>();
  } else if (r.op == Op::kVolumePublish) {
    return BadRequest("op 'volume.publish' needs a 'node' (a node id)");
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
        } else if constexpr (std::is_same_v<T, AttachmentReply>) {
          j["attachment"] = AttachmentJson(r.attachment);
        } else if constexpr (std::is_same_v<T, UnpublishReply>) {
          j["unpublished"] = r.unpublished;
        } else if constexpr (std::is_same_v<T, NodeReply>) {
          j["node"] = NodeJson(r.node);
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
  if (OpTakesName(request.op) || (request.op == Op::kVolumeInspect && !request.name.empty())) {
    j["name"] = request.name;
  }
  if (TakesVolume(request.op) && !request.volume.empty()) j["volume"] = request.volume;
  if (IsDeviceOp(request.op) && !request.device.empty()) j["device"] = request.device;
  if ((request.op == Op::kDeviceAttach || request.op == Op::kVolumePublish) && request.read_only) {
    j["read_only"] = true;
  }
  if ((request.op == Op::kVolumePublish || request.op == Op::kVolumeUnpublish) &&
      !request.node.empty()) {
    j["node"] = request.node;
  }
  if (TakesSize(request.op)) j["size_bytes"] = request.size_bytes;
  if (request.op == Op::kVolumeResize && request.allow_shrink) j["allow_shrink"] = true;
  if (request.op == Op::kVolumeCreate && request.block_size != 0) {
    j["block_size"] = request.block_size;
  }
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
  if (auto it = j.find("attachment"); it != j.end()) {
    ASSIGN_OR_RETURN(auto a, DecodeAttachment(*it));
    return Reply(AttachmentReply{std::move(a)});
  }
  if (auto it = j.find("unpublished"); it != j.end()) {
    if (!it->is_boolean()) return Status::Corruption("reply: unpublished is not a boolean");
    return Reply(UnpublishReply{it->get<bool>()});
  }
  if (auto it = j.find("node"); it != j.end()) {
    ASSIGN_OR_RETURN(auto n, DecodeNode(*it));
    return Reply(NodeReply{std::move(n)});
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
