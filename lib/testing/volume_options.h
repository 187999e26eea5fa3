// Volume options for tests: small thresholds, so a short test seals segments, flushes
// memtables and compacts. Tests override what they are about.
#pragma once

#include <cstdint>

#include "volume/options.h"

namespace portal::testing {

inline volume::VolumeOptions SmallVolumeOptions(uint64_t size_bytes) {
  volume::VolumeOptions o;
  o.size_bytes = size_bytes;
  o.block_size = 4096;
  o.flush_interval_ms = 0;
  o.l0_sst_size_bytes = 64 * 1024;
  o.max_unflushed_bytes = 1 << 20;
  o.block_cache_size_bytes = 256 * 1024;
  o.memtable_flush_segments = 3;
  o.l0_compaction_trigger = 2;
  o.sst_target_bytes = 2048;
  o.level1_target_bytes = 4096;
  o.blocks_per_chunk = 4;
  return o;
}

}  // namespace portal::testing
