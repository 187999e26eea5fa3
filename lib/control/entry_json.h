// The JSON form of the control protocol's entries (snapshot, volume, device, daemon
// status, attachment, node), both ways: the daemon encodes them into replies, the client
// decodes them, type-checked and never throwing (a malformed reply is Corruption).
// Internal to control/protocol.cc; split out to keep the request and reply framing apart
// from the shape of each entry.
#pragma once

#include <fmt/format.h>

#include <nlohmann/json.hpp>
#include <string>

#include "control/protocol.h"
#include "util/status.h"

namespace portal::control::entry_json {

// Reads one object's fields, type-checked, never throwing: a field missing or of the
// wrong type is Corruption naming `what` and the key.
// Decoding keeps the daemon's key order (request kinds are listed in enum order).
class Fields {
 public:
  Fields(const nlohmann::ordered_json& j, std::string what) : j_(j), what_(std::move(what)) {}
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
  const nlohmann::ordered_json& j_;
  std::string what_;
};

nlohmann::ordered_json SnapshotJson(const SnapshotEntry& s);
nlohmann::ordered_json StatusJson(const DaemonStatus& s);
nlohmann::ordered_json VolumeJson(const VolumeEntry& v);
nlohmann::ordered_json DeviceJson(const DeviceEntry& d);
nlohmann::ordered_json AttachmentJson(const AttachmentEntry& a);
nlohmann::ordered_json NodeJson(const NodeEntry& n);

Result<SnapshotEntry> DecodeSnapshot(const nlohmann::ordered_json& j);
Result<VolumeEntry> DecodeVolume(const nlohmann::ordered_json& j);
Result<DeviceEntry> DecodeDevice(const nlohmann::ordered_json& j);
// `what` names the object in errors: a reply's, or a stored record's (daemon/attachments.h).
Result<AttachmentEntry> DecodeAttachment(const nlohmann::ordered_json& j,
                                         const char* what = "reply attachment");
Result<NodeEntry> DecodeNode(const nlohmann::ordered_json& j, const char* what = "reply node");
Result<DaemonStatus> DecodeStatus(const nlohmann::ordered_json& j);

}  // namespace portal::control::entry_json
