// Snapshots: named, immutable map states of the volume (see docs/volume.md "Snapshots").
//
// A snapshot object (snap/<uuid>.json) holds the snapshot's map levels and the segments
// they reference (its pins); the manifest lists only name, id, creation time and key, so
// it stays small however many snapshots exist.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "volume/manifest.h"
#include "volume/volume.h"  // SnapshotInfo

namespace portal::volume {

struct SnapshotObject {
  std::string volume_uuid;
  std::string name;
  std::string id;
  int64_t created_ns = 0;
  uint64_t size_bytes = 0;
  uint32_t block_size = 0;
  uint64_t data_bytes = 0;
  std::vector<std::vector<SstRef>> levels;
  std::vector<uint64_t> segments;  // every segment the levels reference (sorted)
};

// `keyring`: sealed as manifests are (EncodeManifest, DecodeManifest).
std::string EncodeSnapshotObject(const SnapshotObject& s,
                                 const crypto::Keyring* keyring = nullptr);
Result<SnapshotObject> DecodeSnapshotObject(std::string_view json, const std::string& name,
                                            const crypto::Keyring* keyring = nullptr);

// Names: 1..128 bytes of printable ASCII without '/', '@' or whitespace (they appear in
// export names "portalbd@NAME" and in object keys). InvalidArgument says what is wrong.
Status ValidateSnapshotName(std::string_view name);

}  // namespace portal::volume
