// Garbage collection (DESIGN.md "Versions, background work, restore, GC"):
// - segments referenced by neither the map nor a snapshot are deleted after a grace
//   period counted from "unreferenced since", and only at or below applied_segment
//   (above it they are the replay log) — except on memory://, private to this process;
// - segments with little live data are rewritten: their live blocks are copied into a
//   relocation segment of conditional extents (see volume_upload.cc);
// - SSTs dropped from the map, and old manifests, are deleted; each epoch's opening
//   manifest and every fence segment are kept forever (deleting one would let a stalled
//   older writer succeed).
// Only the current epoch collects, and it re-checks that nobody committed past it
// before each batch of deletes.
#include <algorithm>

#include <fmt/format.h>

#include "util/buffer_recycler.h"
#include "util/log.h"
#include "volume/lsm_volume.h"

namespace portal::volume {
namespace {
auto Log() { return log::Get("portalbd::volume"); }
constexpr uint64_t kMaxRelocationSources = 8;
// The grace period in the signed nanoseconds it is compared in; too long to count is never.
int64_t GraceNanos(uint64_t grace_ms) {
  return static_cast<int64_t>(std::min<uint64_t>(MillisToNanos(grace_ms), INT64_MAX));
}
}  // namespace

Task<Status> LsmVolume::CheckStillOwner() {
  if (options_.immediate_segment_free) co_return Status::Ok();  // memory://: private
  uint64_t number;
  {
    std::lock_guard lock(mu_);
    number = versions_.current()->number;
  }
  auto next = co_await reads_.Head(ManifestKey(number + 1));
  if (next.status().IsNotFound()) co_return Status::Ok();
  if (!next.ok()) co_return next.status();
  std::lock_guard lock(mu_);
  FenceLocked(fmt::format("manifest {} was committed by another writer", number + 1));
  co_return Status::PreconditionFailed(lifecycle_.fenced_reason);
}

Task<Status> LsmVolume::DiscoverSegments() {
  if (gc_.discovered_segments || options_.immediate_segment_free) co_return Status::Ok();
  uint64_t applied;
  {
    std::lock_guard lock(mu_);
    applied = versions_.current()->applied_segment;
  }
  CO_ASSIGN_OR_RETURN(auto segs, co_await reads_.List("seg/"));
  // Open listed map/ already (CheckSstsStored): SSTs stored since are ours, or orphans of
  // a writer fenced meanwhile, which the next open's listing finds.
  std::vector<std::string> ssts;
  if (gc_.open_listed_ssts) {
    ssts = std::move(*gc_.open_listed_ssts);
  } else {
    CO_ASSIGN_OR_RETURN(auto listed, co_await reads_.List("map/"));
    for (auto& o : listed) ssts.push_back(std::move(o.key));
  }
  gc_.open_listed_ssts.reset();
  const int64_t now = static_cast<int64_t>(env_.NowNanos());
  std::vector<std::pair<uint64_t, uint64_t>> unknown_small;
  {
    std::lock_guard lock(mu_);
    for (const auto& o : segs) {
      uint64_t id;
      if (!ParseSegmentKey(o.key, &id) || id > applied) continue;
      if (!seg_table_.AddListed(id, o.size, now)) continue;  // known: the map or an upload
      // A tiny segment may be another epoch's fence: find out before it is a candidate.
      if (o.size < 4096) unknown_small.emplace_back(id, o.size);
    }
    std::set<std::string> live;
    for (const auto& level : versions_.current()->levels) {
      for (const auto& r : level) live.insert(r.key);
    }
    for (const auto& key : ssts) {
      if (!live.count(key) && !gc_.pinned_ssts.count(key) && !gc_.retired_ssts.count(key)) {
        gc_.retired_ssts[key] = now;  // an orphan of a crashed or fenced writer
      }
    }
  }
  for (auto [id, size] : unknown_small) {
    auto f = co_await segments_.ReadFooter(id, size);
    std::lock_guard lock(mu_);
    if (!f.ok() || f->is_fence()) seg_table_.MarkFence(id);  // unreadable: keep, to be safe
  }
  gc_.discovered_segments = true;
  co_return Status::Ok();
}

Task<Status> LsmVolume::DeleteDeadSegments() {
  std::vector<uint64_t> dead;
  {
    std::lock_guard lock(mu_);
    const int64_t now = static_cast<int64_t>(env_.NowNanos());
    // memory:// (private to this process): every unreferenced segment, at once.
    const bool at_once = options_.immediate_segment_free;
    dead = seg_table_.DeadSegments(now, at_once ? 0 : GraceNanos(options_.gc_grace_ms),
                                   at_once ? UINT64_MAX : versions_.current()->applied_segment);
  }
  if (dead.empty()) co_return Status::Ok();
  CO_RETURN_IF_ERROR(co_await CheckStillOwner());
  for (uint64_t id : dead) {
    Status st = co_await RetryUnavailable(
        env_, store_,
        [&]() -> Task<Status> { co_return co_await store_.Delete(SegmentKey(id)); }, 5);
    if (!st.ok()) co_return st.WithContext("deleting a dead segment");
    segments_.Forget(id);
    meta_->Erase(SegmentKey(id));
    std::lock_guard lock(mu_);
    if (const SegmentTable::Segment* s = seg_table_.Find(id)) gc_.reclaimed_bytes += s->size_bytes;
    seg_table_.Remove(id);
  }
  Log()->debug("deleted dead segments count={}", dead.size());
  co_return Status::Ok();
}

Task<Status> LsmVolume::PlanRelocation() {
  std::vector<uint64_t> sources;
  {
    std::lock_guard lock(mu_);
    if (uploader_.RelocationPendingLocked() || options_.gc_live_ratio <= 0) co_return Status::Ok();
    const uint64_t max_id =
        options_.immediate_segment_free ? UINT64_MAX : versions_.current()->applied_segment;
    sources = seg_table_.RelocationSources(options_.gc_live_ratio, max_id, kMaxRelocationSources,
                                           options_.l0_sst_size_bytes / block_size_);
  }
  if (sources.empty()) co_return Status::Ok();

  // Each source's live blocks are read into one buffer of their own (mapped at once: no
  // page fault per block, no string per block), in the source's order, which is block
  // order; runs adjacent in the source are read together. The relocation's data is a rope
  // of views into those buffers, in block order over all sources: nothing is copied
  // again, here or by the uploader.
  struct LivePiece {
    lsm::Extent from;  // blocks and where they live now (the source segment)
    std::shared_ptr<const Buffer> owner;
    const uint8_t* data;
  };
  std::vector<LivePiece> pieces;
  for (uint64_t src : sources) {
    CO_ASSIGN_OR_RETURN(SegmentFooter f, co_await segments_.ReadFooter(src, 0));
    std::vector<lsm::Extent> here;
    for (const SegmentExtent& se : f.extents) {
      const lsm::Extent& e = se.extent;
      if (!e.loc.is_data()) continue;
      CO_RETURN_IF_ERROR(co_await Resolve(
          e.first, e.end,
          [&](const Piece& p) {
            if (p.loc.is_data() && p.loc == e.loc.Slice(p.first - e.first)) {
              here.push_back(lsm::Extent{p.first, p.end, p.loc});
            }
          },
          /*include_buffers=*/false));
    }
    if (here.empty()) {
      // Nothing visible to copy: every block the count covers is shadowed by newer map
      // entries, but older SSTs of the committed map still reference the segment. It is
      // not garbage until compaction drops those references (the count then reaches 0);
      // deleting it now would leave the manifest pointing at a missing object. Just stop
      // planning it.
      std::lock_guard lock(mu_);
      seg_table_.MarkNothingToCopy(src);
      continue;
    }
    uint64_t live = 0;
    for (const lsm::Extent& x : here) live += x.length();
    auto buf = std::make_shared<Buffer>(live * block_size_);
    PopulateMemory(buf->data(), buf->size());
    uint64_t at = 0;  // blocks of `buf` filled
    for (size_t i = 0; i < here.size();) {
      size_t j = i + 1;
      uint64_t run = here[i].length();
      while (j < here.size() && here[j].loc.index == here[i].loc.index + run) {
        run += here[j].length();
        ++j;
      }
      CO_RETURN_IF_ERROR(co_await segments_.ReadBlocks(src, here[i].loc.index, run,
                                                       buf->data() + at * block_size_));
      for (; i < j; ++i) {
        pieces.push_back(LivePiece{here[i], buf, buf->data() + at * block_size_});
        at += here[i].length();
      }
    }
  }
  if (pieces.empty()) co_return Status::Ok();
  std::sort(pieces.begin(), pieces.end(),
            [](const LivePiece& a, const LivePiece& b) { return a.from.first < b.from.first; });
  auto reloc = std::make_shared<Relocation>();
  reloc->sources = sources;
  for (LivePiece& p : pieces) {
    SegmentExtent se;
    se.extent = lsm::Extent{p.from.first, p.from.end, lsm::Loc::Data(0, reloc->data_blocks)};
    se.conditional = true;
    se.expected = p.from.loc;
    reloc->extents.push_back(se);
    reloc->data_blocks += p.from.length();
    reloc->data.Append(p.owner, std::string_view(reinterpret_cast<const char*>(p.data),
                                                 p.from.length() * block_size_));
  }
  Log()->debug("relocating live blocks blocks={} sources={}", reloc->data_blocks, sources.size());
  {
    std::lock_guard lock(mu_);
    uploader_.QueueRelocationLocked(std::move(reloc));
  }
  co_return Status::Ok();
}

Task<Status> LsmVolume::DeleteOrphanSsts() {
  std::vector<std::string> dead;
  {
    std::lock_guard lock(mu_);
    const int64_t now = static_cast<int64_t>(env_.NowNanos());
    const int64_t grace = GraceNanos(options_.gc_grace_ms);
    std::set<std::string> live;
    for (const auto& level : versions_.current()->levels) {
      for (const auto& r : level) live.insert(r.key);
    }
    for (auto it = gc_.retired_ssts.begin(); it != gc_.retired_ssts.end();) {
      if (live.count(it->first)) {
        it = gc_.retired_ssts.erase(it);  // in the map again (restore): not garbage
        continue;
      }
      if (gc_.pinned_ssts.count(it->first)) {  // a snapshot holds it: wait for its delete
        ++it;
        continue;
      }
      if (options_.immediate_segment_free || now - it->second >= grace) dead.push_back(it->first);
      ++it;
    }
  }
  if (dead.empty()) co_return Status::Ok();
  CO_RETURN_IF_ERROR(co_await CheckStillOwner());
  for (const auto& key : dead) {
    Status st = co_await RetryUnavailable(
        env_, store_, [&]() -> Task<Status> { co_return co_await store_.Delete(key); }, 5);
    if (!st.ok()) co_return st.WithContext("deleting a retired map SST");
    cache_.Erase(ssts_.IndexCacheKey(key));
    meta_->Erase(key);
    std::lock_guard lock(mu_);
    gc_.retired_ssts.erase(key);
  }
  co_return Status::Ok();
}

Task<Status> LsmVolume::DeleteOldManifests() {
  uint64_t current, opener;
  {
    std::lock_guard lock(mu_);
    current = versions_.current()->number;
    opener = head_.epoch_manifest;
  }
  std::vector<uint64_t> doomed;
  // The previous epoch's manifests between its opener and its last (both kept).
  for (uint64_t n = gc_.prev_epoch_manifest + 1;
       gc_.prev_epoch_manifest && n < gc_.prev_latest_manifest; ++n) {
    doomed.push_back(n);
  }
  gc_.prev_epoch_manifest = gc_.prev_latest_manifest = 0;
  // Ours, between our opener and the most recent few.
  for (uint64_t n = std::max(opener + 1, gc_.manifest_gc_floor);
       n + options_.manifests_kept <= current; ++n) {
    doomed.push_back(n);
  }
  if (doomed.empty()) co_return Status::Ok();
  CO_RETURN_IF_ERROR(co_await CheckStillOwner());
  for (uint64_t n : doomed) {
    CO_RETURN_IF_ERROR(co_await RetryUnavailable(
        env_, store_,
        [&]() -> Task<Status> { co_return co_await store_.Delete(ManifestKey(n)); }, 5));
    if (n >= gc_.manifest_gc_floor && n > opener) gc_.manifest_gc_floor = n + 1;
  }
  co_return Status::Ok();
}

Task<Status> LsmVolume::CollectGarbage() {
  {
    std::lock_guard lock(mu_);
    // Counts as a round even when skipped: the maintenance loop would otherwise find GC
    // still due and spin without ever suspending (dst seed 5261, while snaps_.gc_blocked).
    gc_.last_gc_ns = static_cast<int64_t>(env_.NowNanos());
    if (lifecycle_.fenced || lifecycle_.stop || snaps_.gc_blocked) co_return Status::Ok();
  }
  CO_RETURN_IF_ERROR(co_await DiscoverSegments());
  CO_RETURN_IF_ERROR(co_await DeleteDeadSegments());
  CO_RETURN_IF_ERROR(co_await DeleteOrphanSsts());
  CO_RETURN_IF_ERROR(co_await DeleteOldManifests());
  CO_RETURN_IF_ERROR(co_await PlanRelocation());
  co_return Status::Ok();
}

}  // namespace portal::volume
