// Invariants over the objects in the store, read straight from the MemoryStore (no
// faults, no caches): what any future open would find.
//
//   - the latest manifest decodes, matches the device geometry, and never moves
//     backwards (number, epoch, next segment id);
//   - each epoch's opening manifest and every fence segment still exist;
//   - levels 1+ are sorted and non-overlapping; every listed SST exists, decodes, agrees
//     with its manifest entry, and holds sorted, non-overlapping extents inside its key
//     range whose per-segment summary adds up;
//   - every segment a listed SST maps to exists, decodes, is at or below
//     applied_segment, and holds the referenced data blocks;
//   - every snapshot the latest manifest lists has its snap/ object, which decodes and
//     matches the device; every SST it pins exists and decodes, and every segment those
//     SSTs reference exists and is in the snapshot's pin list (counted as referenced).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "objstore/memory_store.h"
#include "volume/manifest.h"
#include "volume/segment_format.h"

namespace portal::dst {

struct StoreFacts {
  uint64_t max_manifest = 0;
  uint64_t max_epoch = 0;
  uint64_t max_next_segment = 0;
  uint64_t max_open_epoch = 0;            // highest epoch an Open returned
  std::set<uint64_t> openers;             // manifest numbers that opened an epoch
  std::map<uint64_t, uint64_t> fences;    // fence segment id -> epoch
};

// Returns "" or the first violation found. `checked` (optional) receives a short
// summary for the history ("m=12 ssts=4 segs=9").
// `keyring`: the volume's keys when it is encrypted (null: not).
std::string CheckStore(objstore::MemoryStore& mem, StoreFacts* facts, uint32_t block_size,
                       uint64_t size_bytes, std::string* summary,
                       const crypto::Keyring* keyring = nullptr);

// Reads the latest manifest (number 0 if none).
std::pair<uint64_t, volume::Manifest> LatestManifest(objstore::MemoryStore& mem,
                                                     const crypto::Keyring* keyring = nullptr);

// The footer of segment `id`, if it exists and decodes.
std::optional<volume::SegmentFooter> SegmentFooterOf(objstore::MemoryStore& mem, uint64_t id,
                                                     const crypto::Keyring* keyring = nullptr);

// Direct object access (no faults): the damage step (sim_damage.cc).
std::optional<std::string> ReadObject(objstore::MemoryStore& mem, const std::string& key);
void WriteObject(objstore::MemoryStore& mem, const std::string& key, std::string bytes);
void DeleteObject(objstore::MemoryStore& mem, const std::string& key);
std::vector<std::string> ListKeys(objstore::MemoryStore& mem, const std::string& prefix);

// Copies every object into `to` (for the cache-vs-rebuilt audit).
void CopyStore(objstore::MemoryStore& from, objstore::MemoryStore& to);

}  // namespace portal::dst
