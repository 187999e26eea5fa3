#include "csi/node_requests.h"

#include <fmt/format.h>

#include "csi/mount_table.h"
#include "volume/registry.h"

namespace portal::csi {

using grpc::StatusCode;

grpc::Status CheckVolumeId(const std::string& id) {
  if (id.empty()) return {StatusCode::INVALID_ARGUMENT, "volume_id is required"};
  Status s = volume::ValidateVolumeName(id);
  if (!s.ok()) {
    return {StatusCode::INVALID_ARGUMENT, fmt::format("volume_id: {}", s.message())};
  }
  return grpc::Status::OK;
}

grpc::Status CheckPath(std::string_view field, const std::string& path, std::string* normal) {
  if (path.empty()) return {StatusCode::INVALID_ARGUMENT, fmt::format("{} is required", field)};
  *normal = NormalPath(path);
  if (normal->empty() || path.find('\0') != std::string::npos) {
    return {StatusCode::INVALID_ARGUMENT,
            fmt::format("{} '{}' is not an absolute path", field, path)};
  }
  return grpc::Status::OK;
}

grpc::Status ParseCapability(bool present, const ::csi::v1::VolumeCapability& cap,
                             NodeCapability* out) {
  using Mode = ::csi::v1::VolumeCapability::AccessMode;
  if (!present) return {StatusCode::INVALID_ARGUMENT, "volume_capability is required"};
  if (cap.has_block()) {
    out->block = true;
  } else if (cap.has_mount()) {
    out->fs_type = cap.mount().fs_type().empty() ? "ext4" : cap.mount().fs_type();
    out->mount_flags.assign(cap.mount().mount_flags().begin(), cap.mount().mount_flags().end());
  } else {
    return {StatusCode::INVALID_ARGUMENT,
            "volume_capability: access_type (block or mount) is required"};
  }
  switch (cap.access_mode().mode()) {
    case Mode::SINGLE_NODE_WRITER:
    case Mode::SINGLE_NODE_SINGLE_WRITER:
    case Mode::SINGLE_NODE_MULTI_WRITER:
      out->read_only = false;
      return grpc::Status::OK;
    case Mode::SINGLE_NODE_READER_ONLY:
      out->read_only = true;
      return grpc::Status::OK;
    case Mode::MULTI_NODE_READER_ONLY:
    case Mode::MULTI_NODE_SINGLE_WRITER:
    case Mode::MULTI_NODE_MULTI_WRITER:
      return {StatusCode::INVALID_ARGUMENT,
              fmt::format("access mode {}: a portalbd volume is attached on one node at a time",
                          Mode::Mode_Name(cap.access_mode().mode()))};
    default:
      return {StatusCode::INVALID_ARGUMENT, "volume_capability: access_mode is required"};
  }
}

grpc::Status ToGrpc(const Status& status) {
  using C = Status::Code;
  StatusCode code = StatusCode::INTERNAL;
  switch (status.code()) {
    case C::kOk:
      return grpc::Status::OK;
    case C::kNotFound:
      code = StatusCode::NOT_FOUND;
      break;
    case C::kInvalidArgument:
      code = StatusCode::INVALID_ARGUMENT;
      break;
    case C::kUnavailable:
    case C::kShutdown:
      code = StatusCode::UNAVAILABLE;
      break;
    case C::kBusy:
    case C::kPreconditionFailed:
      code = StatusCode::FAILED_PRECONDITION;
      break;
    case C::kNoSpace:
      code = StatusCode::RESOURCE_EXHAUSTED;
      break;
    case C::kPermissionDenied:
      code = StatusCode::PERMISSION_DENIED;
      break;
    default:
      break;
  }
  return {code, status.message()};
}

}  // namespace portal::csi
