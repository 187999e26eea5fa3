#include "volume/segment_table.h"

#include <algorithm>
#include <utility>

namespace portal::volume {

void SegmentTable::Adjust(Segment& s, int64_t delta_blocks, int64_t now_ns) {
  const int64_t v = static_cast<int64_t>(s.live_blocks) + delta_blocks;
  s.live_blocks = v < 0 ? 0 : static_cast<uint64_t>(v);
  if (s.live_blocks == 0) {
    if (s.unreferenced_since_ns < 0) s.unreferenced_since_ns = now_ns;
  } else {
    s.unreferenced_since_ns = -1;
  }
}

void SegmentTable::AddSegment(uint64_t id, uint64_t size_bytes, uint64_t data_blocks, bool fence) {
  Segment& s = segs_[id];
  s.size_bytes = size_bytes;
  s.data_blocks = data_blocks;
  s.fence = fence;
}

bool SegmentTable::AddListed(uint64_t id, uint64_t size_bytes, int64_t now_ns) {
  auto [it, added] = segs_.try_emplace(id);
  if (!added) return false;
  it->second.size_bytes = size_bytes;
  it->second.unreferenced_since_ns = now_ns;
  return true;
}

void SegmentTable::MarkFence(uint64_t id) { segs_[id].fence = true; }

void SegmentTable::AddLive(uint64_t id, int64_t delta_blocks, int64_t now_ns) {
  Adjust(segs_[id], delta_blocks, now_ns);
}

void SegmentTable::ApplyLiveDeltas(const std::map<uint64_t, int64_t>& deltas, int64_t now_ns) {
  // Unknown segments are skipped, not made: a compaction only moves references among
  // segments the map already names (its outputs reference a subset of its inputs).
  for (const auto& [id, delta] : deltas) {
    auto it = segs_.find(id);
    if (it != segs_.end()) Adjust(it->second, delta, now_ns);
  }
}

void SegmentTable::SetLive(const std::map<uint64_t, uint64_t>& live, int64_t now_ns) {
  for (auto& [id, s] : segs_) {
    auto it = live.find(id);
    s.live_blocks = 0;
    Adjust(s, it == live.end() ? 0 : static_cast<int64_t>(it->second), now_ns);
  }
  for (const auto& [id, blocks] : live) segs_[id].live_blocks = blocks;  // new: referenced
}

void SegmentTable::StartGrace(const std::vector<uint64_t>& ids, int64_t now_ns) {
  for (uint64_t id : ids) {
    auto it = segs_.find(id);
    if (it != segs_.end() && it->second.live_blocks == 0 && it->second.unreferenced_since_ns < 0) {
      it->second.unreferenced_since_ns = now_ns;
    }
  }
}

void SegmentTable::MarkNothingToCopy(uint64_t id) {
  auto it = segs_.find(id);
  if (it != segs_.end()) it->second.nothing_to_copy = true;
}

void SegmentTable::Remove(uint64_t id) { segs_.erase(id); }

const SegmentTable::Segment* SegmentTable::Find(uint64_t id) const {
  auto it = segs_.find(id);
  return it == segs_.end() ? nullptr : &it->second;
}

std::vector<uint64_t> SegmentTable::DeadSegments(int64_t now_ns, int64_t grace_ns,
                                                 uint64_t max_id) const {
  std::vector<uint64_t> dead;
  for (const auto& [id, s] : segs_) {
    if (s.fence || s.live_blocks > 0 || s.unreferenced_since_ns < 0 || pinned_.count(id)) {
      continue;
    }
    if (id <= max_id && now_ns - s.unreferenced_since_ns >= grace_ns) dead.push_back(id);
  }
  return dead;
}

std::vector<uint64_t> SegmentTable::RelocationSources(double live_ratio, uint64_t max_id,
                                                      size_t max_sources,
                                                      uint64_t max_blocks) const {
  std::vector<std::pair<double, uint64_t>> sparse;
  for (const auto& [id, s] : segs_) {
    if (s.fence || s.data_blocks == 0 || s.live_blocks == 0 || s.nothing_to_copy ||
        pinned_.count(id) || id > max_id) {
      continue;
    }
    const double ratio = double(s.live_blocks) / double(s.data_blocks);
    if (ratio < live_ratio) sparse.emplace_back(ratio, id);
  }
  std::sort(sparse.begin(), sparse.end());
  std::vector<uint64_t> sources;
  uint64_t blocks = 0;
  for (const auto& [ratio, id] : sparse) {
    if (sources.size() >= max_sources || blocks >= max_blocks) break;
    sources.push_back(id);
    blocks += segs_.at(id).live_blocks;
  }
  return sources;
}

SegmentTable::Totals SegmentTable::totals() const {
  Totals t;
  for (const auto& [id, s] : segs_) {
    ++t.segments;
    t.size_bytes += s.size_bytes;
    t.live_blocks += s.live_blocks;
  }
  return t;
}

}  // namespace portal::volume
