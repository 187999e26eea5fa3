#include "csi/controller_checks.h"

#include <fmt/format.h>

#include <bit>
#include <string_view>

namespace portal::csi {
namespace {

using ::csi::v1::VolumeCapability;
using Mode = VolumeCapability::AccessMode::Mode;

constexpr std::string_view kTokenPrefix = "after:";
constexpr std::string_view kBlockSizeParam = "blockSize";
constexpr std::string_view kProvisionerPrefix = "csi.storage.k8s.io/";

grpc::Status Invalid(std::string message) {
  return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, std::move(message));
}

}  // namespace

std::string CapabilityProblem(const VolumeCapability& cap) {
  if (!cap.has_access_mode()) return "volume capability without an access_mode";
  switch (cap.access_mode().mode()) {
    case VolumeCapability::AccessMode::SINGLE_NODE_WRITER:
    case VolumeCapability::AccessMode::SINGLE_NODE_SINGLE_WRITER:
    case VolumeCapability::AccessMode::SINGLE_NODE_MULTI_WRITER:
    case VolumeCapability::AccessMode::SINGLE_NODE_READER_ONLY:
      break;
    case VolumeCapability::AccessMode::UNKNOWN:
      return "volume capability with access mode UNKNOWN";
    default:
      return fmt::format(
          "access mode {} is not supported: a portalbd volume is served by one node's daemon "
          "at a time (single-node modes only)",
          VolumeCapability::AccessMode::Mode_Name(cap.access_mode().mode()));
  }
  if (cap.has_block()) return "";
  if (!cap.has_mount()) return "volume capability with neither block nor mount access";
  const std::string& fs = cap.mount().fs_type();
  // The filesystems the node formats and grows online (docs/csi.md "Node") and its image
  // ships the tools of.
  if (!fs.empty() && fs != "ext4" && fs != "xfs" && fs != "btrfs") {
    return fmt::format("fs_type '{}' is not supported (ext4, xfs or btrfs)", fs);
  }
  return "";
}

grpc::Status CheckPublish(const ::csi::v1::ControllerPublishVolumeRequest& req) {
  if (req.volume_id().empty()) return Invalid("volume_id is required");
  if (req.node_id().empty()) return Invalid("node_id is required");
  if (!req.has_volume_capability()) return Invalid("volume_capability is required");
  if (std::string problem = CapabilityProblem(req.volume_capability()); !problem.empty()) {
    return Invalid(problem);
  }
  return grpc::Status::OK;
}

grpc::Status CheckCapabilities(const google::protobuf::RepeatedPtrField<VolumeCapability>& caps) {
  if (caps.empty()) return Invalid("volume_capabilities is required");
  for (const auto& cap : caps) {
    if (std::string problem = CapabilityProblem(cap); !problem.empty()) {
      return Invalid(problem);
    }
  }
  return grpc::Status::OK;
}

grpc::Status PickSize(const ::csi::v1::CapacityRange* range, uint32_t block_size,
                      uint64_t min_bytes, uint64_t* size) {
  const int64_t required = range ? range->required_bytes() : 0;
  const int64_t limit = range ? range->limit_bytes() : 0;
  if (required < 0 || limit < 0) return Invalid("capacity_range: negative bytes");
  if (limit != 0 && required > limit) {
    return Invalid(
        fmt::format("capacity_range: required_bytes {} above limit_bytes {}", required, limit));
  }
  const uint64_t bs = block_size;
  uint64_t want = 0;
  if (required != 0) {
    want = std::max<uint64_t>(static_cast<uint64_t>(required), min_bytes);
  } else {
    // No minimum asked: a clone's source size, else the default capped by the limit.
    want = min_bytes != 0 ? min_bytes : kDefaultVolumeBytes;
    if (min_bytes == 0 && limit != 0 && want > static_cast<uint64_t>(limit)) {
      want = static_cast<uint64_t>(limit) / bs * bs;
    }
  }
  if (want > kMaxVolumeBytes) {
    return grpc::Status(
        grpc::StatusCode::OUT_OF_RANGE,
        fmt::format("{} bytes is above the largest volume, {} bytes", want, kMaxVolumeBytes));
  }
  want = (want + bs - 1) / bs * bs;
  if (want == 0 || (limit != 0 && want > static_cast<uint64_t>(limit))) {
    return grpc::Status(
        grpc::StatusCode::OUT_OF_RANGE,
        fmt::format("no size of at least {} bytes (a multiple of the block size {}{}) is at "
                    "most limit_bytes {}",
                    std::max<uint64_t>(static_cast<uint64_t>(required), min_bytes), bs,
                    min_bytes ? ", and no smaller than the source" : "", limit));
  }
  *size = want;
  return grpc::Status::OK;
}

bool SizeFits(const ::csi::v1::CapacityRange* range, uint64_t size) {
  if (!range) return true;
  if (range->required_bytes() > 0 && size < static_cast<uint64_t>(range->required_bytes())) {
    return false;
  }
  return range->limit_bytes() <= 0 || size <= static_cast<uint64_t>(range->limit_bytes());
}

grpc::Status ParseParameters(const google::protobuf::Map<std::string, std::string>& params,
                             uint32_t* block_size) {
  *block_size = 0;
  for (const auto& [key, value] : params) {
    if (key.starts_with(kProvisionerPrefix)) continue;
    if (key != kBlockSizeParam) {
      return Invalid(fmt::format("unknown parameter '{}' (known: {})", key, kBlockSizeParam));
    }
    uint64_t n = 0;
    bool digits = !value.empty() && value.size() <= 6;
    for (char c : value) {
      if (c < '0' || c > '9') digits = false;
      if (digits) n = n * 10 + static_cast<uint64_t>(c - '0');
    }
    if (!digits || !std::has_single_bit(n) || n < 512 || n > 65536) {
      return Invalid(
          fmt::format("parameter {}: '{}' is not a power of two from 512 to 65536", key, value));
    }
    *block_size = static_cast<uint32_t>(n);
  }
  return grpc::Status::OK;
}

std::string PageToken(const std::string& last_key) { return std::string(kTokenPrefix) + last_key; }

std::optional<std::string> ParsePageToken(const std::string& token) {
  if (!token.starts_with(kTokenPrefix) || token.size() == kTokenPrefix.size()) {
    return std::nullopt;
  }
  return token.substr(kTokenPrefix.size());
}

}  // namespace portal::csi
