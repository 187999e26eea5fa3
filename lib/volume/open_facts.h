// OpenFacts: what LsmVolume's Open (volume_open.cc) settled about this writer, private
// to the volume: its epoch, the device size, and where a salvage replay stopped.
//
// Written only while Open runs (before the volume is returned and its loops start),
// read-only afterwards: no lock needed. Except the size, which Resize changes (atomic).
#pragma once

#include <atomic>
#include <cstdint>

namespace portal::volume {

struct OpenFacts {
  uint64_t epoch = 0;        // ours: in every segment and manifest we write
  std::atomic<uint64_t> size_bytes = 0;  // the device size (Resize changes it)
  uint64_t salvage_gap = 0;  // salvage: the missing segment replay stopped at
};

}  // namespace portal::volume
