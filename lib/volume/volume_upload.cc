// The volume's side of segment uploads (the Uploader, volume/uploader.h, does them):
// applying an uploaded or replayed segment's extents to the memtable, and fencing.
#include <algorithm>

#include <fmt/format.h>

#include "util/log.h"
#include "volume/lsm_volume.h"

namespace portal::volume {
namespace {
auto Log() { return log::Get("portalbd::volume"); }
}  // namespace

void LsmVolume::ApplyExtentsLocked(const SegmentFooter& f, const std::vector<lsm::Extent>& extents,
                                   uint64_t size) {
  const int64_t now = static_cast<int64_t>(env_.NowNanos());
  seg_table_.AddSegment(f.segment_id, size, f.data_blocks, f.is_fence());
  for (const lsm::Extent& e : extents) {
    compaction_.shadowed_blocks += ShadowedByLocked(e.first, e.end);
    map_.mem->Apply(e, [&](const lsm::Extent& replaced) {
      seg_table_.AddLive(replaced.loc.segment, -static_cast<int64_t>(replaced.length()), now);
    });
    if (e.loc.is_data()) seg_table_.AddLive(f.segment_id, static_cast<int64_t>(e.length()), now);
  }
  seg_table_.AddLive(f.segment_id, 0, now);  // none of its data live: its clock starts now
  map_.NoteApplied(f.segment_id, f.last_seq, now);
}

uint64_t LsmVolume::ShadowedByLocked(uint64_t first, uint64_t end) const {
  // The committed references a write shadows are not released until a compaction drops
  // them (live counts include them: DESIGN.md never deletes what a manifest references).
  // Estimated per SST from its data density, so a huge TRIM extent counts as ~nothing.
  const auto& levels = versions_.current()->levels;
  auto beneath = [&](uint64_t b, uint64_t e) {
    double n = 0;
    for (size_t i = 0; i < levels.size(); ++i) {
      const auto& level = levels[i];
      // L0 files overlap each other; deeper levels are sorted and disjoint.
      auto it = level.begin();
      if (i > 0) {
        it = std::partition_point(level.begin(), level.end(),
                                  [&](const SstRef& r) { return r.end_block <= b; });
      }
      for (; it != level.end(); ++it) {
        if (i > 0 && it->min_block >= e) break;
        const uint64_t lo = std::max(b, it->min_block), hi = std::min(e, it->end_block);
        if (lo >= hi || it->data_blocks == 0) continue;
        n += double(hi - lo) * double(it->data_blocks) / double(it->end_block - it->min_block);
      }
    }
    if (map_.imm) {
      map_.imm->ForEach(b, e, [&](const lsm::Extent& x) {
        if (x.loc.is_data()) n += double(x.length());
        return true;
      });
    }
    return static_cast<uint64_t>(n);
  };
  uint64_t total = 0, cur = first;
  map_.mem->ForEach(first, end, [&](const lsm::Extent& x) {
    if (x.first > cur) total += beneath(cur, x.first);
    cur = x.end;
    return true;
  });
  if (cur < end) total += beneath(cur, end);
  return total;
}

Task<Status> LsmVolume::ApplyFooter(const SegmentFooter& f, uint64_t size) {
  // Resolving a conditional extent reads map SSTs. Compaction may retire one and GC
  // collect it (after gc_grace_ms) under a slow lookup: the map's contents did not change,
  // only where they live, so resolve again as reads do (dst swarm seed 394565878, where
  // NotFound fenced the volume and failed a FLUSH).
  std::vector<lsm::Extent> extents;
  for (int attempt = 0;; ++attempt) {
    extents.clear();
    extents.reserve(f.extents.size());
    Status st;
    for (const SegmentExtent& se : f.extents) {
      if (!se.conditional) {
        extents.push_back(se.extent);
        continue;
      }
      // Apply only where the map still points at the expected location (sliced along).
      const lsm::Extent& e = se.extent;
      st = co_await Resolve(
          e.first, e.end,
          [&](const Piece& p) {
            lsm::Loc want = se.expected.Slice(p.first - e.first);
            if (p.loc.is_data() && p.loc == want) {
              extents.push_back(lsm::Extent{p.first, p.end, e.loc.Slice(p.first - e.first)});
            }
          },
          /*include_buffers=*/false);
      if (!st.ok()) break;
    }
    if (st.IsNotFound() && attempt < kReadRetries) continue;
    CO_RETURN_IF_ERROR(st);
    break;
  }
  std::sort(extents.begin(), extents.end(),
            [](const lsm::Extent& a, const lsm::Extent& b) { return a.first < b.first; });
  std::lock_guard lock(mu_);
  ApplyExtentsLocked(f, extents, size);
  co_return Status::Ok();
}

Task<Status> LsmVolume::ApplyUploaded(const SegmentFooter& footer, uint64_t size) {
  return ApplyFooter(footer, size);  // the caller awaits at once: `footer` outlives it
}

void LsmVolume::FenceLocked(const std::string& reason) {
  lifecycle_.fenced = true;
  lifecycle_.fenced_reason = reason;
  Log()->error("volume fenced: acknowledging nothing more error=\"{}\"", lifecycle_.fenced_reason);
  uploader_.durable().Fail(lifecycle_.FencedError());
  uploader_.Wake();   // exits
  UpdateBudgetLocked();  // its buffers stop counting; stalled writers fail
  changed_.NotifyAll();  // maintenance exits; a restore stops waiting
}

void LsmVolume::UploadSettled() {
  {
    // A sealed buffer left: its bytes go back to the budget (and wake its waiters).
    std::lock_guard lock(mu_);
    UpdateBudgetLocked();
  }
  changed_.NotifyAll();
}

void LsmVolume::UpdateBudgetLocked(uint64_t release_bytes) {
  // A fenced volume (or one that gave up) uploads nothing more: its buffers no longer
  // count, or they would hold the other volumes' writes until it is released.
  const bool dead = lifecycle_.fenced || give_up_.cancelled();
  budget_.Update(*budget_account_, dead ? 0 : UnflushedBytesLocked(),
                 dead ? 0 : uploader_.ActiveBytesLocked(), release_bytes);
}

void LsmVolume::PushUpload() {
  bool poke;
  {
    std::lock_guard lock(mu_);
    poke = uploader_.RequestFlushLocked();
  }
  if (poke) uploader_.Wake();
}

}  // namespace portal::volume
