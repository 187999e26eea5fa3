// OpenFacts: what LsmVolume's Open (volume_open.cc) settled about this writer, private
// to the volume: its epoch, the device size, and where a salvage replay stopped.
//
// Written only while Open runs (before the volume is returned and its loops start),
// read-only afterwards: no lock needed.
#pragma once

#include <cstdint>

namespace portal::volume {

struct OpenFacts {
  uint64_t epoch = 0;        // ours: in every segment and manifest we write
  uint64_t size_bytes = 0;   // the device size
  uint64_t salvage_gap = 0;  // salvage: the missing segment replay stopped at
};

}  // namespace portal::volume
