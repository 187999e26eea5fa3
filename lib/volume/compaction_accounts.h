// CompactionAccounts: LsmVolume's accounting for map compactions (volume_maintain.cc),
// private to the volume: the space amplification that calls for a full compaction, how
// many ran, and the counter naming new SSTs.
//
// Guards: shadowed_blocks and full_compactions are GUARDED_BY(LsmVolume::mu_);
// sst_counter is only used by the jobs that write SSTs (flush, compaction), which run
// under LsmVolume::jobs_mu_.
#pragma once

#include <algorithm>
#include <cstdint>

namespace portal::volume {

struct CompactionAccounts {
  // Data blocks of the committed map that later writes shadowed: referenced (so kept)
  // until a full compaction drops them. An estimate; see LsmVolume::stats().
  uint64_t shadowed_blocks = 0;
  uint64_t full_compactions = 0;  // completed (stats)
  uint64_t sst_counter = 0;       // n in map/<epoch>-<n>.sst

  // A full compaction finished: the `released` shadowed blocks counted when it began
  // are gone (writes meanwhile added more, which stay counted).
  void NoteFullCompaction(uint64_t released) {
    shadowed_blocks -= std::min(released, shadowed_blocks);
    ++full_compactions;
  }
};

}  // namespace portal::volume
