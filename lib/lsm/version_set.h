// Versions of the map and the one way to commit a new one (LevelDB's version_set).
//
// A Version is the map at one moment: its levels of SSTs and the position in the
// owner's log it includes. Versions are immutable and shared (readers keep the one they
// started with). A VersionEdit says how a job changes the map, and names the version it
// was computed from. The VersionSet holds the current version and commits edits in two
// steps, so the owner can persist the new version in between (the volume writes
// manifest/<n>.json before anything can read the map it describes):
//
//   Prepare(edit) -> PreparedVersion   refuses an edit whose base is not current
//   ... persist ...
//   Install(prepared)                  refuses it again if another commit came first
//
// DESIGN.md "every commit checks its base generation": a job computed against an older
// version (a compaction started before a restore) cannot commit. The check is here, not
// in the caller's locking.
//
// Not thread-safe: the owner guards it with its own lock (as LevelDB's DBImpl::mutex_
// guards its VersionSet) and does not hold that lock while persisting.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "lsm/sst_format.h"
#include "util/status.h"

namespace portal::lsm {

using Levels = std::vector<std::vector<SstRef>>;

struct Version {
  uint64_t number = 0;  // the generation; the volume's manifest number
  Levels levels;        // levels[0] newest first (overlapping); deeper: sorted, disjoint
  // Carried for the owner: the newest segment and sequence number the map includes.
  uint64_t applied_segment = 0;
  uint64_t applied_seq = 0;
};

struct VersionEdit {
  uint64_t base = 0;  // number of the version the edit was computed from
  // Restore: the whole map is replaced (before `removed` and `added` apply).
  std::optional<Levels> replace_levels;
  std::vector<std::pair<size_t, std::string>> removed;  // (level, key)
  // Per level, files to add. Level 0: in front, in the given order (newest first).
  // Deeper levels: merged in by min_block. Naming a level (even with no files) makes
  // the map at least that deep.
  std::map<size_t, std::vector<SstRef>> added;
  // Drop empty levels at the bottom (keeping L0) after a merge emptied them.
  bool drop_empty_tail = false;
  std::optional<uint64_t> applied_segment;
  std::optional<uint64_t> applied_seq;
};

class VersionSet;

// A new version checked against its base, not yet current. Only VersionSet::Prepare
// makes one, so nothing reaches Install without the base check.
class PreparedVersion {
 public:
  const Version& version() const { return *next_; }
  uint64_t number() const { return next_->number; }

 private:
  friend class VersionSet;
  PreparedVersion(const VersionSet* set, std::shared_ptr<const Version> next)
      : set_(set), next_(std::move(next)) {}
  const VersionSet* set_;
  std::shared_ptr<const Version> next_;
};

class VersionSet {
 public:
  VersionSet() = default;
  VersionSet(const VersionSet&) = delete;
  VersionSet& operator=(const VersionSet&) = delete;

  // The first version (what the log's latest manifest says). Once, before anything else.
  void Recover(Version first);
  // Null until Recover.
  const std::shared_ptr<const Version>& current() const { return current_; }

  // The version `edit` makes of the current one, numbered current + 1. Busy "stale base"
  // when edit.base is not the current version (something committed since the edit was
  // computed: compute it again); InvalidArgument when it removes a file its level does
  // not hold.
  Result<PreparedVersion> Prepare(const VersionEdit& edit) const;
  // Makes `next` (persisted by the caller) current. Busy "stale base" when another
  // commit was installed since Prepare; the current version is then unchanged.
  Status Install(PreparedVersion next);

 private:
  Status CheckBase(uint64_t base) const;

  std::shared_ptr<const Version> current_;
};

}  // namespace portal::lsm
