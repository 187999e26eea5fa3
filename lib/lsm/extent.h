// Map values: where a run of blocks lives. See docs/volume.md "Locations".
#pragma once

#include <cstdint>
#include <string>

namespace portal::lsm {

// Stored in segments and SSTs: never renumber.
enum class LocKind : uint8_t { kData = 1, kZero = 2, kHole = 3 };

struct Loc {
  LocKind kind = LocKind::kHole;
  uint64_t segment = 0;  // kData: the segment id
  uint64_t index = 0;    // kData: block index in the segment's data stream

  static Loc Data(uint64_t segment, uint64_t index) { return {LocKind::kData, segment, index}; }
  static Loc Zero() { return {LocKind::kZero, 0, 0}; }
  static Loc Hole() { return {LocKind::kHole, 0, 0}; }

  bool is_data() const { return kind == LocKind::kData; }
  // Reads as zeroes without stored data.
  bool is_zero() const { return kind != LocKind::kData; }

  // RangeMap requirements (util/range_map.h).
  Loc Slice(uint64_t skip) const {
    return is_data() ? Loc{kind, segment, index + skip} : *this;
  }
  bool Continues(uint64_t len, const Loc& next) const {
    if (kind != next.kind) return false;
    return !is_data() || (segment == next.segment && index + len == next.index);
  }
  friend bool operator==(const Loc&, const Loc&) = default;
};

// A run [first, end) of blocks and where it lives.
struct Extent {
  uint64_t first = 0;
  uint64_t end = 0;
  Loc loc;
  uint64_t length() const { return end - first; }
  friend bool operator==(const Extent&, const Extent&) = default;
};

std::string ToString(const Loc& loc);
std::string ToString(const Extent& e);

}  // namespace portal::lsm
