// SnapshotSet: LsmVolume's snapshots as it knows them (volume_snapshot.cc), and the
// gate between writes and a restore, private to the volume.
//
// Not thread-safe: every field is GUARDED_BY(LsmVolume::mu_). A SnapDetail is shared
// with the SnapshotDevices attached to it; its fields are guarded by the same mutex.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "util/status.h"
#include "volume/snapshot.h"

namespace portal::volume {

// One snapshot: its manifest entry, its object (the frozen map), and its users.
struct SnapDetail {
  SnapshotRef ref;
  SnapshotObject object;
  Status damage;  // not Ok: the object is missing or corrupt (opening it fails so)
  int attached = 0;
  bool deleting = false;
};

struct SnapshotSet {
  std::map<std::string, std::shared_ptr<SnapDetail>> by_name;
  bool gc_blocked = false;  // a snapshot's pins are unknown (its object is unreadable)
  // Writes wait while a restore runs; a restore waits for writes in flight.
  bool restoring = false;
  uint64_t writes_inflight = 0;
};

}  // namespace portal::volume
