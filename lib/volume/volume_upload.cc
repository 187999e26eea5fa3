// The uploader: seals the active buffer (or takes a GC relocation batch) into the next
// segment, uploads it (one upload in flight, strictly in id order), then applies its
// extents to the memtable and releases the FLUSHes waiting for it. User buffers always
// go first: relocation never delays a FLUSH beyond the upload already in flight.
#include <algorithm>

#include <fmt/format.h>

#include "env/async.h"
#include "util/buffer_pool.h"
#include "util/log.h"
#include "volume/lsm_volume.h"

namespace portal::volume {
namespace {
auto Log() { return log::Get("portalbd::volume"); }
}  // namespace

void LsmVolume::ApplyExtentsLocked(const SegmentFooter& f, const std::vector<lsm::Extent>& extents,
                                   uint64_t size) {
  const int64_t now = static_cast<int64_t>(env_.NowNanos());
  auto adjust = [&](uint64_t seg, int64_t delta) {
    SegInfo& info = segs_[seg];
    int64_t v = static_cast<int64_t>(info.live_blocks) + delta;
    info.live_blocks = v < 0 ? 0 : static_cast<uint64_t>(v);
    if (info.live_blocks == 0) {
      if (info.unreferenced_since_ns < 0) info.unreferenced_since_ns = now;
    } else {
      info.unreferenced_since_ns = -1;
    }
  };
  SegInfo& self = segs_[f.segment_id];
  self.size = size;
  self.data_blocks = f.data_blocks;
  self.fence = f.is_fence();
  for (const lsm::Extent& e : extents) {
    shadowed_blocks_ += ShadowedByLocked(e.first, e.end);
    mem_->Apply(e, [&](const lsm::Extent& replaced) {
      adjust(replaced.loc.segment, -static_cast<int64_t>(replaced.length()));
    });
    if (e.loc.is_data()) adjust(f.segment_id, static_cast<int64_t>(e.length()));
  }
  if (segs_[f.segment_id].live_blocks == 0) adjust(f.segment_id, 0);
  mem_last_segment_ = f.segment_id;
  mem_last_seq_ = std::max(mem_last_seq_, f.last_seq);
  ++segments_since_mem_flush_;
  if (mem_dirty_since_ns_ < 0) mem_dirty_since_ns_ = now;
}

uint64_t LsmVolume::ShadowedByLocked(uint64_t first, uint64_t end) const {
  // The committed references a write shadows are not released until a compaction drops
  // them (live counts include them: DESIGN.md never deletes what a manifest references).
  // Estimated per SST from its data density, so a huge TRIM extent counts as ~nothing.
  const auto& levels = version_->manifest.levels;
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
    if (imm_) {
      imm_->ForEach(b, e, [&](const lsm::Extent& x) {
        if (x.loc.is_data()) n += double(x.length());
        return true;
      });
    }
    return static_cast<uint64_t>(n);
  };
  uint64_t total = 0, cur = first;
  mem_->ForEach(first, end, [&](const lsm::Extent& x) {
    if (x.first > cur) total += beneath(cur, x.first);
    cur = x.end;
    return true;
  });
  if (cur < end) total += beneath(cur, end);
  return total;
}

Task<Status> LsmVolume::ApplyFooter(const SegmentFooter& f, uint64_t size) {
  std::vector<lsm::Extent> extents;
  extents.reserve(f.extents.size());
  for (const SegmentExtent& se : f.extents) {
    if (!se.conditional) {
      extents.push_back(se.extent);
      continue;
    }
    // Apply only where the map still points at the expected location (sliced along).
    const lsm::Extent& e = se.extent;
    CO_RETURN_IF_ERROR(co_await Resolve(
        e.first, e.end,
        [&](const Piece& p) {
          lsm::Loc want = se.expected.Slice(p.first - e.first);
          if (p.loc.is_data() && p.loc == want) {
            extents.push_back(lsm::Extent{p.first, p.end, e.loc.Slice(p.first - e.first)});
          }
        },
        /*include_buffers=*/false));
  }
  std::sort(extents.begin(), extents.end(),
            [](const lsm::Extent& a, const lsm::Extent& b) { return a.first < b.first; });
  std::lock_guard lock(mu_);
  ApplyExtentsLocked(f, extents, size);
  co_return Status::Ok();
}

Task<Status> LsmVolume::UploadSegment(uint64_t id, const WriteBuffer* buf, const Relocation* reloc,
                                      SegmentFooter* footer, uint64_t* size) {
  footer->segment_id = id;
  footer->epoch = epoch_;
  footer->block_size = block_size_;
  footer->blocks_per_chunk = options_.blocks_per_chunk;
  {
    // Fixed for every attempt: a retry must produce the same bytes (lost-ack read-back).
    std::lock_guard lock(mu_);
    footer->durable_through = settled_through_;
  }
  const std::string key = SegmentKey(id);
  uint64_t backoff_ms = 10;
  for (uint64_t attempt = 1;; ++attempt) {
    // Encode off the executor (LZ4 of up to l0_sst_size_bytes). Re-encoding on a retry
    // gives the same bytes, and saves holding a second copy while the PUT runs. A user
    // buffer's raw segment is the buffer's own memory (a Rope): memory:// keeps it with
    // no copy at all, file:// and s3:// join it into one pooled string.
    EncodedSegment enc = co_await RunBlocking(env_, [&] {
      const EncodeOptions eo{options_.compress, options_.buffer_pool};
      if (buf) return EncodeSegment(footer, buf->Contents(footer), eo);
      footer->extents = reloc->extents;
      for (auto& se : footer->extents) se.extent.loc.segment = id;
      footer->data_blocks = reloc->data_blocks;
      // A pooled copy: memory:// keeps the object as this string and recycles it.
      std::string data = TakeFrom(options_.buffer_pool, reloc->data.size() + 4096);
      data.append(reloc->data);
      return EncodeSegment(footer, SegmentContents{objstore::Rope(std::move(data)), {}}, eo);
    });
    const uint64_t checksum = enc.footer_checksum;
    *size = enc.bytes.size();
    Status st = co_await store_.PutIfAbsentRope(key, std::move(enc.bytes));
    if (st.ok()) {
      NoteUpload(st, key);
      co_return st;
    }
    if (st.IsPreconditionFailed()) {
      // Someone created this id: our own earlier attempt (acknowledgement lost), or a
      // newer writer's fence. Read it back before concluding anything.
      uint64_t theirs = 0;
      auto existing = co_await segments_.ReadFooter(id, 0, &theirs);
      if (existing.ok() && existing->epoch == epoch_ && theirs == checksum) {
        NoteUpload(Status::Ok(), key);
        co_return Status::Ok();
      }
      if (existing.ok() && existing->epoch < epoch_) {
        // Open replayed every segment below our fence and nothing of an older epoch can
        // land above it (DESIGN.md single writer, step 5): this object is damage or a
        // bug, not another writer.
        co_return Status::Corruption(fmt::format(
            "segment {} already exists with the older epoch {} (ours is {}), above our "
            "fence: the store holds a segment that open did not replay",
            key, existing->epoch, epoch_));
      }
      if (existing.ok()) {
        co_return Status::PreconditionFailed(fmt::format(
            "segment {} already exists with epoch {} (ours is {}): a newer portalbd opened "
            "this volume",
            key, existing->epoch, epoch_));
      }
      st = existing.status();
    }
    // The store is gone for good (a crashed FaultStore in the simulator, or the process
    // shutting down): retrying cannot help.
    if (st.code() == Status::Code::kShutdown) co_return st;
    NoteUpload(st, key);  // since when and why, for status and a rationed log
    {
      std::lock_guard lock(mu_);
      if (stop_ && attempt >= 5) co_return st.WithContext("giving up on " + key + " at close");
    }
    // The backoff ends early when a stop's deadline passes (GiveUpAt).
    if (!give_up_.cancelled()) {
      co_await give_up_.Sleep((backoff_ms / 2 + env_.RandomBelow(backoff_ms / 2 + 1)) *
                              kNanosPerMilli);
    }
    if (give_up_.cancelled()) {
      co_return st.WithContext("gave up on " + key + " at the stop deadline");
    }
    backoff_ms = std::min<uint64_t>(backoff_ms * 2, 5000);
  }
}

void LsmVolume::SealActiveLocked() {
  // The segment id is taken when its upload starts: ids must not run ahead of uploads,
  // or a crash would leave manifests naming a next_segment_id above the first gap, where
  // the next writer fences (ids are never skipped: docs/volume.md "Single writer").
  sealed_.push_back(Sealed{std::move(active_), active_gen_++, 0});
  active_ = std::make_shared<WriteBuffer>(block_size_, options_.blocks_per_chunk);
  active_dirty_since_ns_ = -1;
}

Task<void> LsmVolume::UploaderLoop() {
  for (;;) {
    const uint64_t seen = changed_.epoch();
    Sealed s;
    std::shared_ptr<const Relocation> reloc;
    uint64_t wait_ns = Notifier::kForever;
    {
      std::lock_guard lock(mu_);
      if (fenced_ || give_up_.cancelled()) co_return;
      const bool dirty = !active_->empty();
      if (!dirty && sealed_.empty() && stop_) co_return;
      bool go = false;
      if (dirty) {
        const uint64_t now = env_.NowNanos();
        const uint64_t due =
            options_.flush_interval_ms == 0
                ? UINT64_MAX
                : SaturatingAdd(static_cast<uint64_t>(active_dirty_since_ns_),
                                MillisToNanos(options_.flush_interval_ms));
        go = stop_ || flush_gen_ >= active_gen_ ||
             active_->bytes() >= options_.l0_sst_size_bytes || now >= due;
        if (!go && due != UINT64_MAX) wait_ns = due - now;
      }
      if (go && sealed_.empty()) SealActiveLocked();
      if (!sealed_.empty()) {
        // Sealed by a writer at full size, or just now.
        if (sealed_.front().segment_id == 0) sealed_.front().segment_id = next_segment_id_++;
        s = sealed_.front();
      } else if (relocation_ && !stop_) {
        reloc = std::move(relocation_);
        relocating_ = true;
        s.segment_id = next_segment_id_++;
      }
    }
    if (!s.buf && !reloc) {
      co_await changed_.Wait(seen, wait_ns);
      continue;
    }
    SegmentFooter footer;
    uint64_t size = 0;
    Status st = co_await UploadSegment(s.segment_id, s.buf.get(), reloc.get(), &footer, &size);
    if (st.ok()) {
      segments_.Remember(s.segment_id, size, footer);
      // Applying a relocation reads the map; its reads retry a bounded number of times.
      // The segment is stored: keep trying (nothing was applied by a failed attempt)
      // rather than fence over an error burst (dst swarm seed 9340).
      (void)co_await RetryUnavailable(
          env_,
          [&]() -> Task<Status> {
            st = co_await ApplyFooter(footer, size);
            if (!st.retryable()) co_return st;
            {
              std::lock_guard lock(mu_);
              if (stop_ || fenced_ || give_up_.cancelled()) {
                co_return Status::Ok();  // give up; `st` keeps the error
              }
            }
            Log()->warn("applying segment {} failed, retrying error=\"{}\"", s.segment_id,
                        st.ToString());
            co_return st;
          },
          0, &give_up_);
    }
    if (!st.ok()) {
      std::lock_guard lock(mu_);
      if (reloc) relocating_ = false;  // nobody may wait for it any more (a restore does)
      if (give_up_.cancelled() && !st.IsPreconditionFailed() && !st.IsCorruption()) {
        // Not fenced: the stop gave up. Close reports what is left; waiters see GaveUp.
        changed_.NotifyAll();
        co_return;
      }
      fenced_ = true;
      fenced_reason_ = st.ToString();
      Log()->error("volume fenced: acknowledging nothing more error=\"{}\"", fenced_reason_);
      changed_.NotifyAll();
      co_return;
    }
    {
      std::lock_guard lock(mu_);
      if (s.buf) {
        PORTAL_ASSERT(!sealed_.empty() && sealed_.front().gen == s.gen,
                      "sealed buffers out of order");
        sealed_.pop_front();
        durable_gen_ = s.gen;
      } else {
        relocating_ = false;
      }
      settled_through_ = s.segment_id;
    }
    changed_.NotifyAll();  // FLUSH waiters, stalled writers, maintenance
  }
}

}  // namespace portal::volume
