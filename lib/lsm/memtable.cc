#include "lsm/memtable.h"

namespace portal::lsm {

void Memtable::Apply(const Extent& e, const std::function<void(const Extent&)>& replaced) {
  map_.ForEach(e.first, e.end, [&](uint64_t b, uint64_t en, const Loc& old) {
    if (old.is_data()) {
      auto it = segment_blocks_.find(old.segment);
      if (it != segment_blocks_.end()) {
        it->second -= std::min(it->second, en - b);
        if (it->second == 0) segment_blocks_.erase(it);
      }
      if (replaced) replaced(Extent{b, en, old});
    }
    return true;
  });
  map_.Assign(e.first, e.end, e.loc);
  if (e.loc.is_data()) segment_blocks_[e.loc.segment] += e.length();
}

void Memtable::ForEach(uint64_t first, uint64_t end,
                       const std::function<bool(const Extent&)>& fn) const {
  map_.ForEach(first, end, [&](uint64_t b, uint64_t e, const Loc& loc) {
    return fn(Extent{b, e, loc});
  });
}

std::vector<Extent> Memtable::Extents() const {
  std::vector<Extent> out;
  out.reserve(map_.size());
  for (const auto& [b, r] : map_.map()) out.push_back(Extent{b, r.end, r.value});
  return out;
}

}  // namespace portal::lsm
