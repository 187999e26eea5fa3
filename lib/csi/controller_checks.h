// What the Controller service accepts, checked before anything is asked of a daemon
// (docs/csi.md "Controller"): volume capabilities, capacity ranges, StorageClass
// parameters and list pagination tokens.
#pragma once

#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <optional>
#include <string>

#include "csi/v1/csi.pb.h"

namespace portal::csi {

// A volume nobody asked a size for: 1 GiB.
inline constexpr uint64_t kDefaultVolumeBytes = 1ull << 30;
// The largest volume (every byte offset fits in 63 bits), rounded down to 64 KiB.
inline constexpr uint64_t kMaxVolumeBytes = (1ull << 63) - (1ull << 16);

// "" when portalbd serves `cap` as asked; else why not. Block and mount (fs_type "",
// ext4, xfs or btrfs); access modes SINGLE_NODE_WRITER, SINGLE_NODE_SINGLE_WRITER,
// SINGLE_NODE_MULTI_WRITER (one node's daemon serves the device; its pods share it) and
// SINGLE_NODE_READER_ONLY. Multi-node modes are refused: each node's daemon would open the
// volume as its single writer and fence the other.
std::string CapabilityProblem(const ::csi::v1::VolumeCapability& cap);

// ControllerPublishVolume's fields, before anything is looked up (the CSI spec's order):
// INVALID_ARGUMENT for a missing volume_id, node_id or volume_capability, or a capability
// CapabilityProblem refuses.
grpc::Status CheckPublish(const ::csi::v1::ControllerPublishVolumeRequest& req);

// Checks a list of capabilities (at least one): INVALID_ARGUMENT naming the problem.
grpc::Status CheckCapabilities(
    const google::protobuf::RepeatedPtrField<::csi::v1::VolumeCapability>& caps);

// The size to create for `range` (null: none given) with `block_size`, at least
// `min_bytes` (a clone's snapshot size; 0: none): required_bytes rounded up to the block
// size (and at least min_bytes), else min_bytes when given, else the default (capped by
// limit_bytes, rounded down). INVALID_ARGUMENT for negative fields or required above limit;
// OUT_OF_RANGE when no multiple of the block size fits.
grpc::Status PickSize(const ::csi::v1::CapacityRange* range, uint32_t block_size,
                      uint64_t min_bytes, uint64_t* size);
// Whether an existing volume of `size` meets `range`.
bool SizeFits(const ::csi::v1::CapacityRange* range, uint64_t size);

// StorageClass parameters (CreateVolume, GetCapacity, ValidateVolumeCapabilities):
//   blockSize   the volume's block size in bytes: a power of two from 512 to 65536
//               (default: the daemon's [device] block_size); not for clones, which keep
//               their source's
// and keys starting "csi.storage.k8s.io/" (the external-provisioner's own, ignored).
// Anything else is INVALID_ARGUMENT. `block_size` gets blockSize (0: not given).
grpc::Status ParseParameters(const google::protobuf::Map<std::string, std::string>& params,
                             uint32_t* block_size);

// List pagination: a token is "after:<key>", the last key of the previous page; the next
// page starts at the first key above it, so an entry deleted between pages never
// invalidates a token. Nullopt for a token that is not one of ours (ABORTED).
std::string PageToken(const std::string& last_key);
std::optional<std::string> ParsePageToken(const std::string& token);

}  // namespace portal::csi
