// Manifests (manifest/<n>.json): immutable JSON describing the whole volume at one
// moment. See docs/volume.md "Manifest". Decoding validates every field and returns
// Corruption naming the object; unknown fields are ignored (forward compatible).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "lsm/sst_format.h"
#include "util/status.h"

namespace portal::volume {

using lsm::SstIndex;
using lsm::SstRef;

struct SnapshotRef {
  std::string name;
  std::string id;       // uuid
  int64_t created_ns = 0;  // wall clock, ns since the Unix epoch
  std::string key;      // snap/<uuid>.json
  friend bool operator==(const SnapshotRef&, const SnapshotRef&) = default;
};

// Version 2 adds "checksum" (volume/json_seal.h); version 1 manifests still decode.
// "segtab" is always "" (a segment table object that was never written): written for
// older binaries, which require it; ignored on decode like any unknown field, and covered
// by the checksum.
constexpr uint64_t kManifestFormatVersion = 2;
// Bound on Manifest::upload_window (and the configured window): ids a fence reserves.
constexpr uint64_t kMaxUploadWindow = 1024;

struct Manifest {
  uint64_t format_version = 2;  // as read; always written as kManifestFormatVersion
  std::string volume_uuid;
  uint64_t size_bytes = 0;
  uint32_t block_size = 4096;
  uint64_t epoch = 0;
  uint64_t epoch_manifest = 0;  // number of the manifest that opened this epoch
  uint64_t next_segment_id = 1;
  uint64_t next_seq = 1;
  uint64_t applied_segment = 0;  // every segment <= this is in `levels` (or abandoned)
  uint64_t applied_seq = 0;
  // The largest id window any writer of this volume may upload in (DESIGN.md single
  // writer, step 5): a writer PUTs only ids <= settled prefix + upload_window, so a fence
  // at the first gap F reserves (F, F + upload_window). Raised by an opener (never
  // lowered) before its first upload. Absent (volumes written before it): 1, one upload
  // in flight. Written only when above 1, so such manifests stay byte for byte as before.
  uint64_t upload_window = 1;
  std::vector<std::vector<SstRef>> levels;  // levels[0] newest first
  std::vector<SnapshotRef> snapshots;
  friend bool operator==(const Manifest&, const Manifest&) = default;
};

// `keyring`: seal the manifest (docs/volume.md "Encryption"; its header names the key id
// the volume is written under). Null: plain JSON, unchanged.
std::string EncodeManifest(const Manifest& m, const crypto::Keyring* keyring = nullptr);
// The "levels" array alone (snapshot objects carry the same structure).
std::string EncodeLevels(const std::vector<std::vector<SstRef>>& levels);
Result<std::vector<std::vector<SstRef>>> DecodeLevels(std::string_view json_array,
                                                      const std::string& name);
// A sealed manifest needs `keyring`, and with one a plain manifest is refused: both are
// InvalidArgument saying so (a missing or wrong key, an unencrypted volume).
Result<Manifest> DecodeManifest(std::string_view json, const std::string& name,
                                const crypto::Keyring* keyring = nullptr);

// Object names.
std::string ManifestKey(uint64_t number);
std::string SegmentKey(uint64_t id);
std::string SstKey(uint64_t epoch, uint64_t n);
std::string SnapshotKey(const std::string& uuid);
// Parses "manifest/<n>.json" / "seg/<id>.seg"; false if the key is not one.
bool ParseManifestKey(std::string_view key, uint64_t* number);
bool ParseSegmentKey(std::string_view key, uint64_t* id);

// A random (version 4) UUID from two random words.
std::string MakeUuid(uint64_t a, uint64_t b);

}  // namespace portal::volume
