#include "lsm/extent.h"

#include <fmt/format.h>

namespace portal::lsm {

std::string ToString(const Loc& loc) {
  switch (loc.kind) {
    case LocKind::kData: return fmt::format("data({}:{})", loc.segment, loc.index);
    case LocKind::kZero: return "zero";
    case LocKind::kHole: return "hole";
  }
  return "?";
}

std::string ToString(const Extent& e) {
  return fmt::format("[{}, {}) -> {}", e.first, e.end, ToString(e.loc));
}

}  // namespace portal::lsm
