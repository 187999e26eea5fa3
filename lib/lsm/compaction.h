// Compaction (LevelDB's compaction picking and DoCompactionWork): which files of a
// version to merge, the merge, and writing SSTs to the object store. The owner asks
// (PickCompaction), lets it run (RunCompaction) and commits the edit it returns through
// its VersionSet; nothing here commits, so a job computed against an old version is
// refused there.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "env/async.h"
#include "env/env.h"
#include "lsm/extent.h"
#include "lsm/sst_format.h"
#include "lsm/sst_reader.h"
#include "lsm/version_set.h"
#include "objstore/object_store.h"

namespace portal::lsm {

struct CompactionOptions {
  uint64_t l0_compaction_trigger = 4;          // L0 files that call for a compaction
  uint64_t level1_target_bytes = 16ull << 20;  // L1's size target; each deeper level 10x
  uint64_t sst_target_bytes = 2ull << 20;      // outputs are cut at about this size
  // A full compaction (every level down to the last) is due once the shadowed bytes
  // pass max(full_compaction_min_bytes, full_compaction_ratio * stored bytes).
  uint64_t full_compaction_min_bytes = 256ull << 20;
  double full_compaction_ratio = 0.25;
};

// One compaction picked from one version: `upper` (all of L0, or one file of a deeper
// level) merged into the files of the next level it overlaps (`lower`).
struct Compaction {
  uint64_t base = 0;  // number of the version picked from
  size_t from = 0;
  size_t to = 1;
  std::vector<SstRef> upper;  // as the level lists them (L0: newest first)
  std::vector<SstRef> lower;
  bool bottom = false;  // no files below `to`: holes shadow nothing and are dropped
  // ...unless the map has something below its last level (a clone's base): then a hole
  // hides what lies there and is kept at every level.
  bool keep_holes = false;
  // One upper file and nothing to merge with: it moves down unread.
  bool trivial_move() const { return upper.size() == 1 && lower.empty() && !bottom; }
};

// L0 past its trigger (with `force`: any L0 file), else the first level over its size
// target. `level` >= 0: that level, if it has files. Nothing to do: nullopt.
std::optional<Compaction> PickCompaction(const Version& v, const CompactionOptions& options,
                                         bool force = false, int level = -1);

// Whether shadowed references (garbage only a compaction releases) call for a full one.
bool FullCompactionDue(uint64_t shadowed_bytes, uint64_t stored_bytes,
                       const CompactionOptions& options);

// Fresh SST keys, unique to the writer (map/<epoch>-<n>.sst for the volume).
using SstKeyFn = std::function<std::string()>;

struct CompactionResult {
  VersionEdit edit;  // against the compaction's base version
  std::vector<SstRef> outputs;
  // Segment id -> change in data blocks the map references (liveness for the owner's
  // garbage collection). Empty for a trivial move.
  std::map<uint64_t, int64_t> segment_delta;
  size_t dropped_unread = 0;  // lower files the upper inputs cover entirely
};

// Runs `c`: reads the inputs through `ssts`, merges them (newer wins) and writes the
// outputs to `store` (a trivial move reads and writes nothing), each kept in `ssts`'s
// metadata cache once stored (WriteSsts). The outputs are stored before it returns; when
// the edit is then refused they are orphans for the owner's GC.
Task<Result<CompactionResult>> RunCompaction(const Compaction& c, SstReader& ssts, Env& env,
                                             objstore::ObjectStore& store,
                                             uint64_t sst_target_bytes, const SstKeyFn& next_key,
                                             Cancellation* cancel);

// Writes `extents` (sorted, disjoint) as SSTs of about `target_bytes` each, under keys
// from `next_key`. An existing object under a fresh key is Corruption (keys are unique).
// `keyring`: encrypt them (null: unencrypted). `keep`: each SST whose PUT succeeded goes
// into its metadata cache too (SstReader::KeepWritten), so that neither a read nor the
// next open's warm-up GETs it.
Task<Result<std::vector<std::pair<SstRef, SstIndex>>>> WriteSsts(
    Env& env, objstore::ObjectStore& store, const std::vector<Extent>& extents,
    uint64_t target_bytes, const SstKeyFn& next_key, Cancellation* cancel,
    const crypto::Keyring* keyring = nullptr, SstReader* keep = nullptr);

// The edit of a memtable flush: `fresh` in front of L0 (at least an empty L0), and the
// log position the map now includes.
VersionEdit FlushEdit(uint64_t base, std::vector<SstRef> fresh, uint64_t applied_segment,
                      uint64_t applied_seq);

uint64_t LevelBytes(const std::vector<SstRef>& level);

}  // namespace portal::lsm
