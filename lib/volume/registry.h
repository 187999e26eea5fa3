// The volume registry: which named volumes live under a storage URL (docs/volumes.md).
//
// Layout under the URL (the root store):
//   manifest/ seg/ map/ snap/ ...     the default volume, exactly as a single-volume
//                                     portalbd wrote it (its export name "portalbd")
//   registry/<name>.json              one record per named volume (below)
//   volumes/<name>/manifest/ ...      that volume's objects, the same layout as the
//                                     default volume's, through objstore::PrefixStore
//
// A record is created with a conditional create (CreateOrVerify): of two daemons creating
// one name, one wins and the other gets AlreadyExists ("already exists"). The record says a
// volume exists and how it was made; the volume's own manifest chain (under its prefix)
// stays the truth for its size, epoch and data. Listing names is one LIST of "registry/".
//
// Record (JSON, sealed with a checksum like manifests, volume/json_seal.h):
//   {"format": 1, "name": "db", "size_bytes": 107374182400, "block_size": 4096,
//    "created_ns": 1765100000000000000,
//    "clone_of": {"volume": "base", "snapshot": "golden"},   optional: a clone's source
//    "deleting": true,                                      optional: a delete began
//    "checksum": "0123456789abcdef"}
// Unknown members are ignored (a newer portalbd may add some); "format" above 1 is refused.
//
// Thread-safe: a Registry holds no state but its references; `env` and `store` (the root
// store, not a view) must outlive it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "env/env.h"
#include "env/task.h"
#include "objstore/object_store.h"
#include "util/status.h"

namespace portal::volume {

// The default volume's name: it lives at the URL's root and is exported as "portalbd",
// as before there were named volumes. No named volume may take it.
inline constexpr std::string_view kDefaultVolumeName = "portalbd";

// Names: 1..63 bytes of [a-z0-9._-], starting with a letter or digit, not "portalbd"
// (they appear in object keys, export names "NAME@SNAPSHOT" and Kubernetes objects).
// InvalidArgument says what is wrong and names the volume.
Status ValidateVolumeName(std::string_view name);

// "volumes/<name>/": the prefix of a named volume's objects.
std::string VolumePrefix(std::string_view name);
// "registry/<name>.json".
std::string RegistryKey(std::string_view name);

struct CloneSource {
  std::string volume;    // the parent volume's name
  std::string snapshot;  // the parent's snapshot the clone reads through to

  friend bool operator==(const CloneSource&, const CloneSource&) = default;
};

struct VolumeRecord {
  std::string name;
  uint64_t size_bytes = 0;  // as created; the volume's manifest holds the current size
  uint32_t block_size = 4096;
  int64_t created_ns = 0;  // wall clock
  std::optional<CloneSource> clone_of;
  bool deleting = false;  // a delete began: the volume is not opened again, only removed

  friend bool operator==(const VolumeRecord&, const VolumeRecord&) = default;
};

std::string EncodeVolumeRecord(const VolumeRecord& r);
// Corruption for a damaged or foreign record, or one whose name is not `name`.
Result<VolumeRecord> DecodeVolumeRecord(std::string_view json, std::string_view name);

class Registry {
 public:
  Registry(Env& env, objstore::ObjectStore& store) : env_(env), store_(store) {}

  // Creates the record. AlreadyExists-style PreconditionFailed ("volume 'x' already
  // exists") if another record holds the name; InvalidArgument for a bad name.
  Task<Status> Create(const VolumeRecord& record);
  // NotFound "no volume named 'x'".
  Task<Result<VolumeRecord>> Get(std::string name);
  // Every registered name, sorted (one LIST).
  Task<Result<std::vector<std::string>>> ListNames();
  // Replaces the record (unconditionally: only the volume's owner calls it).
  Task<Status> Update(const VolumeRecord& record);
  // Removes the record; the volume's objects must be gone first (docs/volumes.md).
  Task<Status> Remove(std::string name);

 private:
  Env& env_;
  objstore::ObjectStore& store_;
};

}  // namespace portal::volume
