// RangeMap<V>: disjoint half-open ranges [begin, end) of uint64 keys (blocks) mapped to
// values, ordered by key. Assign() overwrites whatever it covers, splitting the ranges
// it cuts; memory is proportional to the number of ranges, never to their lengths, so a
// 1 EiB TRIM is one entry.
//
// V must provide:
//   V Slice(uint64_t skip) const;           // the value of a range trimmed by `skip` at
//                                           // its front (e.g. data offset += skip)
//   bool Continues(uint64_t len, const V& next) const;
//                                           // true if `next`, placed right after this
//                                           // range of length `len`, can merge into it
//
// Not thread-safe.
#pragma once

#include <cstdint>
#include <iterator>
#include <map>
#include <utility>

#include "util/assert.h"

namespace portal {

template <typename V>
class RangeMap {
 public:
  struct Range {
    uint64_t end;
    V value;
  };
  using Map = std::map<uint64_t, Range>;  // begin -> (end, value)

  // Maps [begin, end) to `value`, replacing what was there.
  void Assign(uint64_t begin, uint64_t end, V value) {
    if (begin >= end) return;
    Erase(begin, end);
    auto it = map_.emplace(begin, Range{end, std::move(value)}).first;
    MergeAround(it);
  }

  // Unmaps [begin, end).
  void Erase(uint64_t begin, uint64_t end) {
    if (begin >= end) return;
    SplitAt(begin);
    SplitAt(end);
    map_.erase(map_.lower_bound(begin), map_.lower_bound(end));
  }

  // Calls fn(begin, end, const V&) for each mapped piece overlapping [begin, end),
  // clipped to it, in ascending order; values of clipped pieces are Slice()d. Stops early
  // when fn returns false.
  template <typename F>
  void ForEach(uint64_t begin, uint64_t end, F&& fn) const {
    if (begin >= end) return;
    auto it = map_.upper_bound(begin);
    if (it != map_.begin()) {
      auto prev = std::prev(it);
      if (prev->second.end > begin) it = prev;
    }
    for (; it != map_.end() && it->first < end; ++it) {
      uint64_t b = std::max(it->first, begin);
      uint64_t e = std::min(it->second.end, end);
      bool go = (b == it->first) ? fn(b, e, it->second.value)
                                 : fn(b, e, it->second.value.Slice(b - it->first));
      if (!go) return;
    }
  }

  // The piece containing `key`, if any: (begin, end, value) unclipped.
  const typename Map::value_type* Find(uint64_t key) const {
    auto it = map_.upper_bound(key);
    if (it == map_.begin()) return nullptr;
    --it;
    return it->second.end > key ? &*it : nullptr;
  }

  size_t size() const { return map_.size(); }
  bool empty() const { return map_.empty(); }
  void clear() { map_.clear(); }
  const Map& map() const { return map_; }

 private:
  // Ensures no range straddles `key`.
  void SplitAt(uint64_t key) {
    auto it = map_.upper_bound(key);
    if (it == map_.begin()) return;
    --it;
    uint64_t b = it->first;
    if (b >= key || it->second.end <= key) return;
    Range right{it->second.end, it->second.value.Slice(key - b)};
    it->second.end = key;
    map_.emplace_hint(std::next(it), key, std::move(right));
  }

  void MergeAround(typename Map::iterator it) {
    if (it != map_.begin()) {
      auto prev = std::prev(it);
      if (prev->second.end == it->first &&
          prev->second.value.Continues(prev->second.end - prev->first, it->second.value)) {
        prev->second.end = it->second.end;
        map_.erase(it);
        it = prev;
      }
    }
    auto next = std::next(it);
    if (next != map_.end() && it->second.end == next->first &&
        it->second.value.Continues(it->second.end - it->first, next->second.value)) {
      it->second.end = next->second.end;
      map_.erase(next);
    }
  }

  Map map_;
};

}  // namespace portal
