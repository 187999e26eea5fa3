#include "csi/node_daemon.h"

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "control/client.h"

namespace portal::csi {
namespace {

using nlohmann::json;

// One request, one reply, raw JSON: the device.* payloads are newer than control's typed
// replies, and the node needs only a few fields of each.
Result<json> Call(const DaemonEndpoint& endpoint, const json& request) {
  auto client = control::Client::Connect(endpoint.socket);
  if (!client.ok()) return client.status();
  (*client)->set_timeout_ms(endpoint.timeout_ms);
  RETURN_IF_ERROR((*client)->Send(request.dump() + "\n"));
  auto line = (*client)->ReadLine();
  if (!line.ok()) return line.status();
  json reply = json::parse(*line, nullptr, /*allow_exceptions=*/false);
  if (!reply.is_object() || !reply.contains("ok") || !reply["ok"].is_boolean()) {
    return Status::Corruption("portalbd sent a reply that is not one: " + line->substr(0, 200));
  }
  if (!reply["ok"].get<bool>()) {
    const json& err = reply.contains("error") ? reply["error"] : json::object();
    const std::string code = err.value("code", std::string("unknown"));
    const std::string message = err.value("message", std::string());
    return StatusFromDaemonError(code,
                                 fmt::format("portalbd {}: {}", request.value("op", ""), message));
  }
  return reply;
}

Result<AttachedDevice> DeviceFrom(const json& j) {
  if (!j.is_object() || !j.contains("path") || !j["path"].is_string()) {
    return Status::Corruption("portalbd: a device without a path: " + j.dump());
  }
  AttachedDevice d;
  d.path = j["path"].get<std::string>();
  if (j.contains("volume") && j["volume"].is_string()) d.volume = j["volume"].get<std::string>();
  if (j.contains("size_bytes") && j["size_bytes"].is_number_unsigned()) {
    d.size_bytes = j["size_bytes"].get<uint64_t>();
  }
  if (j.contains("read_only") && j["read_only"].is_boolean())
    d.read_only = j["read_only"].get<bool>();
  if (j.contains("connected") && j["connected"].is_boolean())
    d.connected = j["connected"].get<bool>();
  return d;
}

}  // namespace

Status StatusFromDaemonError(std::string_view code, std::string_view message) {
  using C = Status::Code;
  static constexpr std::pair<std::string_view, C> kCodes[] = {
      {"not_found", C::kNotFound},
      {"invalid_argument", C::kInvalidArgument},
      {"unavailable", C::kUnavailable},
      {"busy", C::kBusy},
      {"precondition_failed", C::kPreconditionFailed},
      {"permission_denied", C::kPermissionDenied},
      {"no_space", C::kNoSpace},
      {"not_supported", C::kNotSupported},
      {"shutdown", C::kShutdown},
      {"io_error", C::kIOError},
      {"corruption", C::kCorruption},
      {"too_many_connections", C::kUnavailable},
  };
  for (const auto& [name, c] : kCodes) {
    if (name == code) return Status(c, std::string(message));
  }
  return Status::IOError(fmt::format("{} ({})", message, code));
}

Status ControlNodeDaemon::Open(const std::string& volume) {
  return Call(endpoint_, {{"op", "volume.open"}, {"name", volume}}).status();
}

Result<AttachedDevice> ControlNodeDaemon::Attach(const std::string& volume, bool read_only) {
  json req = {{"op", "device.attach"}, {"volume", volume}};
  if (read_only) req["read_only"] = true;
  ASSIGN_OR_RETURN(json reply, Call(endpoint_, req));
  return DeviceFrom(reply.contains("device") ? reply["device"] : json());
}

Status ControlNodeDaemon::Detach(const std::string& volume) {
  auto reply = Call(endpoint_, {{"op", "device.detach"}, {"volume", volume}});
  if (!reply.ok() && !reply.status().IsNotFound()) return reply.status();
  return Status::Ok();
}

Result<std::vector<AttachedDevice>> ControlNodeDaemon::List() {
  ASSIGN_OR_RETURN(json reply, Call(endpoint_, {{"op", "device.list"}}));
  std::vector<AttachedDevice> devices;
  if (!reply.contains("devices") || !reply["devices"].is_array()) {
    return Status::Corruption("portalbd device.list: no devices array");
  }
  for (const auto& j : reply["devices"]) {
    ASSIGN_OR_RETURN(AttachedDevice d, DeviceFrom(j));
    devices.push_back(std::move(d));
  }
  return devices;
}

Status ControlNodeDaemon::Release(const std::string& volume) {
  auto reply = Call(endpoint_, {{"op", "volume.release"}, {"name", volume}});
  if (!reply.ok() && !reply.status().IsNotFound()) return reply.status();
  return Status::Ok();
}

Result<bool> ControlNodeDaemon::Fenced(const std::string& volume) {
  ASSIGN_OR_RETURN(json reply, Call(endpoint_, {{"op", "volume.get"}, {"name", volume}}));
  if (!reply.contains("volume") || !reply["volume"].is_object()) {
    return Status::Corruption("portalbd volume.get: no volume object");
  }
  return reply["volume"].value("fenced", false);
}

}  // namespace portal::csi
