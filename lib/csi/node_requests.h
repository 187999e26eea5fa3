// Argument checks of the Node service's requests, and the one place where a portal Status
// becomes a gRPC status for it. Every id is checked before it names anything.
#pragma once

#include <grpcpp/grpcpp.h>

#include <string>
#include <string_view>
#include <vector>

#include "csi/v1/csi.pb.h"
#include "util/status.h"

namespace portal::csi {

// INVALID_ARGUMENT unless `id` is empty-free and follows portalbd's volume-name rule
// (volume/registry.h: 1..63 of [a-z0-9._-], starting with a letter or digit), so no id
// can name a path ("..", "/") or another thing.
grpc::Status CheckVolumeId(const std::string& id);

// INVALID_ARGUMENT when a required path is empty or not absolute; else `*normal` is its
// lexically normal form ("/a/b" for "/a/b/").
grpc::Status CheckPath(std::string_view field, const std::string& path, std::string* normal);

// A volume capability as the node uses it.
struct NodeCapability {
  bool block = false;
  bool read_only = false;  // a *_READER_ONLY access mode
  std::string fs_type;     // mount volumes: "ext4" when the CO leaves it empty
  std::vector<std::string> mount_flags;
};

// INVALID_ARGUMENT when missing, without an access type, or with an access mode a
// portalbd volume cannot give (several nodes: a volume has one writer node, and opening
// it elsewhere fences this one).
grpc::Status ParseCapability(bool present, const ::csi::v1::VolumeCapability& cap,
                             NodeCapability* out);

// NotFound -> NOT_FOUND, InvalidArgument -> INVALID_ARGUMENT, Unavailable and Shutdown ->
// UNAVAILABLE (the CO retries), Busy and PreconditionFailed -> FAILED_PRECONDITION,
// NoSpace -> RESOURCE_EXHAUSTED (no free NBD device), PermissionDenied ->
// PERMISSION_DENIED, anything else -> INTERNAL. The message is the Status's.
grpc::Status ToGrpc(const Status& status);

}  // namespace portal::csi
