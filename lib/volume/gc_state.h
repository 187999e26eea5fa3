// GcState: what LsmVolume's garbage collection (volume_gc.cc) remembers between rounds,
// private to the volume.
//
// Guards: retired_ssts, pinned_ssts, last_gc_ns and reclaimed_bytes are
// GUARDED_BY(LsmVolume::mu_) (stats() reads reclaimed_bytes; the
// commit path, restore and snapshot pins change them too). The rest is the GC job's own:
// set once at open (before the maintenance loop starts), then read and written only by
// GC, which runs under jobs_mu_.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace portal::volume {

struct GcState {
  // SSTs dropped from the map, with when: deleted after the grace period.
  std::map<std::string, int64_t> retired_ssts;
  std::set<std::string> pinned_ssts;  // held by snapshots: never deleted while pinned
  int64_t last_gc_ns = -1;            // when the last round began; -1 none yet
  uint64_t prev_epoch_manifest = 0;   // previous epoch's opener (for manifest GC)
  uint64_t prev_latest_manifest = 0;  // previous epoch's last manifest
  uint64_t manifest_gc_floor = 0;     // manifests below this (in our epoch) are gone
  bool discovered_segments = false;   // DiscoverSegments ran (once per open)
  // The map/ keys open listed to check the manifest's SSTs (CheckSstsStored), taken by
  // DiscoverSegments instead of listing again; cleared there.
  std::optional<std::vector<std::string>> open_listed_ssts;
  uint64_t reclaimed_bytes = 0;       // dead segments deleted since open (their sizes)
};

}  // namespace portal::volume
