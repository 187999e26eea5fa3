// Memtable: the newest layer of the map, in memory. Applying an extent erases and splits
// whatever it covers; the memtable also counts, per segment, how many data blocks it
// references (segment liveness for GC and for the SST's segment summary).
//
// Not thread-safe: the volume guards it with its lock.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <vector>

#include "lsm/extent.h"
#include "util/range_map.h"

namespace portal::lsm {

class Memtable {
 public:
  // Maps [e.first, e.end) to e.loc. Calls `replaced` (if set) for every data piece it
  // overwrote, so callers can account dead blocks.
  void Apply(const Extent& e, const std::function<void(const Extent&)>& replaced = nullptr);

  // Calls fn for each piece defined in [first, end), in order, clipped. Gaps are blocks
  // the memtable says nothing about (look further down the map).
  void ForEach(uint64_t first, uint64_t end,
               const std::function<bool(const Extent&)>& fn) const;

  // All extents, sorted (to build an SST).
  std::vector<Extent> Extents() const;

  bool empty() const { return map_.empty(); }
  size_t extent_count() const { return map_.size(); }
  // Approximate memory in bytes (nodes of the ordered map).
  uint64_t approximate_bytes() const { return map_.size() * 96; }
  // Data blocks referenced, per segment.
  const std::map<uint64_t, uint64_t>& segment_blocks() const { return segment_blocks_; }

 private:
  RangeMap<Loc> map_;
  std::map<uint64_t, uint64_t> segment_blocks_;
};

}  // namespace portal::lsm
