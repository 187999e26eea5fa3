// Map maintenance, the volume's side: when to flush the memtable and compact (lsm/
// compaction.h picks and merges), committing the edits (lsm/version_set.h checks their
// base), and statistics.
#include <algorithm>
#include <optional>

#include <fmt/format.h>

#include "lsm/compaction.h"
#include "util/log.h"
#include "volume/lsm_volume.h"

namespace portal::volume {
namespace {

auto Log() { return log::Get("portalbd::volume"); }

lsm::CompactionOptions CompactionOptionsOf(const VolumeOptions& o) {
  lsm::CompactionOptions c;
  c.l0_compaction_trigger = o.l0_compaction_trigger;
  c.level1_target_bytes = o.level1_target_bytes;
  c.sst_target_bytes = o.sst_target_bytes;
  c.full_compaction_min_bytes = o.full_compaction_min_bytes;
  c.full_compaction_ratio = o.full_compaction_ratio;
  return c;
}

}  // namespace

std::string LsmVolume::NextSstKey() { return SstKey(opened_.epoch, ++compaction_.sst_counter); }

Manifest LsmVolume::ManifestOfLocked(const Version& v) const {
  Manifest m = head_;
  m.levels = v.levels;
  m.applied_segment = v.applied_segment;
  m.applied_seq = v.applied_seq;
  return m;
}

Task<Status> LsmVolume::Commit(const lsm::VersionEdit& edit,
                               const std::vector<SnapshotRef>* snapshots) {
  std::optional<lsm::PreparedVersion> prepared;
  Manifest next;
  {
    std::lock_guard lock(mu_);
    if (lifecycle_.fenced) co_return lifecycle_.FencedError();
    if (give_up_.cancelled()) co_return GaveUpLocked();
    Result<lsm::PreparedVersion> p = versions_.Prepare(edit);
    if (!p.ok()) co_return p.status();
    prepared.emplace(std::move(*p));
    next = ManifestOfLocked(prepared->version());
    if (snapshots) next.snapshots = *snapshots;
    next.next_segment_id = uploader_.NextSegmentIdLocked();
    next.next_seq = map_.next_seq;
    next.epoch = opened_.epoch;
  }
  // Persisted before it is installed: nothing reads a map no manifest describes.
  const uint64_t number = prepared->number();
  Status st = co_await log_.Create(number, next, &give_up_);
  std::lock_guard lock(mu_);
  if (st.IsPreconditionFailed()) {
    FenceLocked(st.ToString());
    co_return st;
  }
  if (st.ok()) st = versions_.Install(std::move(*prepared));
  if (st.ok()) {
    head_ = std::move(next);
    head_.levels.clear();
    meta_->SetLatestManifest(number);
  }
  co_return st;
}

std::shared_ptr<const lsm::Version> LsmVolume::MapVersionForTest() {
  std::lock_guard lock(mu_);
  return versions_.current();
}

Task<Status> LsmVolume::CommitForTest(const lsm::VersionEdit& edit) {
  auto guard = co_await jobs_mu_.Lock();
  co_return co_await Commit(edit);
}

Task<Status> LsmVolume::FlushMemtable() {
  auto guard = co_await jobs_mu_.Lock();
  co_return co_await FlushMemtableLocked();
}

Task<Status> LsmVolume::FlushMemtableLocked() {
  std::shared_ptr<const lsm::Memtable> imm;
  uint64_t applied_segment, applied_seq, base;
  {
    std::lock_guard lock(mu_);
    if (lifecycle_.fenced) co_return lifecycle_.FencedError();
    if (!map_.imm) {  // else: a previous flush failed; retry the same immutable memtable
      if (map_.mem->empty() && map_.mem_last_segment == versions_.current()->applied_segment) {
        co_return Status::Ok();
      }
      map_.SwapToImmutable();
    }
    imm = map_.imm;
    applied_segment = map_.imm_applied_segment;
    applied_seq = map_.imm_applied_seq;
    base = versions_.current()->number;  // a restore from here on abandons this flush
  }
  // On failure map_.imm stays in the read path (newer than the SSTs, older than mem).
  CO_ASSIGN_OR_RETURN(auto written,
                      co_await lsm::WriteSsts(env_, store_, imm->Extents(),
                                              options_.sst_target_bytes,
                                              [this] { return NextSstKey(); }, &give_up_,
                                              options_.keyring, &ssts_));
  std::vector<SstRef> fresh;
  for (auto& [ref, idx] : written) fresh.push_back(ref);
  CO_RETURN_IF_ERROR(
      co_await Commit(lsm::FlushEdit(base, std::move(fresh), applied_segment, applied_seq)));
  {
    std::lock_guard lock(mu_);
    map_.imm.reset();
  }
  changed_.NotifyAll();
  co_return Status::Ok();
}

Task<Status> LsmVolume::CompactOnce(bool* did_work, bool force, int level) {
  *did_work = false;
  std::shared_ptr<const Version> base;
  {
    std::lock_guard lock(mu_);
    if (lifecycle_.fenced) co_return Status::Ok();
    base = versions_.current();
  }
  std::optional<lsm::Compaction> job =
      lsm::PickCompaction(*base, CompactionOptionsOf(options_), force, level);
  if (!job) co_return Status::Ok();
  job->keep_holes = base_ != nullptr;  // a clone's TRIM hides its base
  CO_ASSIGN_OR_RETURN(lsm::CompactionResult done,
                      co_await lsm::RunCompaction(*job, ssts_, env_, store_,
                                                  options_.sst_target_bytes,
                                                  [this] { return NextSstKey(); }, &give_up_));
  CO_RETURN_IF_ERROR(co_await Commit(done.edit));
  *did_work = true;
  if (job->trivial_move()) co_return Status::Ok();
  {
    std::lock_guard lock(mu_);
    const int64_t now = static_cast<int64_t>(env_.NowNanos());
    for (const auto& r : job->upper) gc_.retired_ssts[r.key] = now;
    for (const auto& r : job->lower) gc_.retired_ssts[r.key] = now;
    seg_table_.ApplyLiveDeltas(done.segment_delta, now);
  }
  Log()->debug("compacted L{}->L{} inputs={} outputs={} dropped_unread={}", job->from, job->to,
               job->upper.size() + job->lower.size(), done.outputs.size(), done.dropped_unread);
  co_return Status::Ok();
}

Task<Status> LsmVolume::CompactAll() {
  auto guard = co_await jobs_mu_.Lock();
  for (int i = 0; i < 100; ++i) {
    bool did = false;
    CO_RETURN_IF_ERROR(co_await CompactOnce(&did, /*force=*/i == 0));
    if (!did) break;
  }
  co_return Status::Ok();
}

bool LsmVolume::FullCompactionDueLocked() const {
  const uint64_t shadowed = compaction_.shadowed_blocks * block_size_;
  if (shadowed < options_.full_compaction_min_bytes) return false;  // skips the sum
  const uint64_t stored = seg_table_.totals().size_bytes;
  return lsm::FullCompactionDue(shadowed, stored, CompactionOptionsOf(options_));
}

Task<Status> LsmVolume::CompactToBottomLocked() {
  uint64_t shadowed;
  {
    std::lock_guard lock(mu_);
    shadowed = compaction_.shadowed_blocks;
  }
  CO_RETURN_IF_ERROR(co_await FlushMemtableLocked());
  for (size_t level = 0;; ++level) {
    {
      std::lock_guard lock(mu_);
      if (lifecycle_.fenced) co_return lifecycle_.FencedError();
      // L0 always goes down (into a new L1 if need be); deeper levels into the last.
      if (level > 0 && level + 1 >= versions_.current()->levels.size()) break;
    }
    for (bool did = true; did;) {
      CO_RETURN_IF_ERROR(co_await CompactOnce(&did, /*force=*/true, static_cast<int>(level)));
    }
  }
  std::lock_guard lock(mu_);
  compaction_.NoteFullCompaction(shadowed);
  Log()->debug("full compaction released shadowed_blocks={}", shadowed);
  co_return Status::Ok();
}

Task<Status> LsmVolume::RunGc() {
  auto guard = co_await jobs_mu_.Lock();
  co_return co_await CollectGarbage();
}

Task<void> LsmVolume::MaintenanceLoop() {
  for (;;) {
    const uint64_t seen = changed_.epoch();
    bool flush = false, gc = false, full = false;
    uint64_t wait_ns = Notifier::kForever;
    {
      std::lock_guard lock(mu_);
      if (lifecycle_.stop || lifecycle_.fenced || give_up_.cancelled()) co_return;
      const uint64_t now = env_.NowNanos();
      const bool dirty = map_.mem_dirty_since_ns >= 0;
      const uint64_t due =
          dirty ? SaturatingAdd(static_cast<uint64_t>(map_.mem_dirty_since_ns),
                                MillisToNanos(options_.memtable_flush_interval_ms))
                : UINT64_MAX;
      flush = map_.segments_since_mem_flush >= options_.memtable_flush_segments ||
              map_.mem->extent_count() >= options_.memtable_max_extents ||
              map_.mem->approximate_bytes() >= options_.l0_sst_size_bytes || (dirty && now >= due);
      if (!flush && due != UINT64_MAX) wait_ns = due - now;
      const uint64_t gc_due = gc_.last_gc_ns < 0
                                  ? now
                                  : SaturatingAdd(static_cast<uint64_t>(gc_.last_gc_ns),
                                                  MillisToNanos(options_.gc_interval_ms));
      gc = now >= gc_due;
      if (!gc && gc_due != UINT64_MAX) wait_ns = std::min(wait_ns, gc_due - now);
      full = FullCompactionDueLocked();
    }
    if (flush || gc || full) {
      auto guard = co_await jobs_mu_.Lock();
      // Not `flush ? co_await ... : ...`: GCC 12 miscompiles co_await inside ?:.
      Status st;
      if (flush) st = co_await FlushMemtableLocked();
      for (int i = 0; st.ok() && flush && i < 8; ++i) {
        bool did = false;
        st = co_await CompactOnce(&did);
        if (!did) break;
      }
      if (st.ok() && full) st = co_await CompactToBottomLocked();
      if (st.ok() && (gc || full)) st = co_await CollectGarbage();
      if (st.code() == Status::Code::kShutdown) co_return;  // the store is gone
      if (give_up_.cancelled()) co_return;  // a stop's deadline cut the job short
      // Logged when failures start, once a minute while they last, and when they end.
      const std::optional<std::string> line =
          st.ok() ? maintenance_health_.Succeeded(env_.NowNanos())
                  : maintenance_health_.Failed(st, "", env_.NowNanos(), env_.WallNanos());
      if (line && st.ok()) Log()->info("{}", *line);
      if (line && !st.ok()) Log()->warn("{}", *line);
      if (!st.ok()) {
        guard.Release();
        co_await give_up_.Sleep(kNanosPerSecond);
      }
      continue;
    }
    co_await changed_.Wait(seen, wait_ns);
  }
}

bool LsmVolume::fenced() {
  std::lock_guard lock(mu_);
  return lifecycle_.fenced;
}

VolumeStats LsmVolume::stats() {
  VolumeStats s;
  s.storage_url = store_.url();
  s.block_size = block_size_;
  s.epoch = opened_.epoch;
  s.cache = cache_.stats();
  s.corrupt_refetches = corrupt_refetches_.load(std::memory_order_relaxed);
  const ReadAheadCounters& ra = read_ahead_.counters();
  s.read_ahead_gets = ra.gets.load(std::memory_order_relaxed);
  s.read_ahead_bytes = ra.bytes.load(std::memory_order_relaxed);
  s.read_ahead_hits = ra.hits.load(std::memory_order_relaxed);
  s.read_ahead_wasted = ra.wasted.load(std::memory_order_relaxed);
  s.read_ahead_failed = ra.failed.load(std::memory_order_relaxed);
  std::lock_guard lock(mu_);
  s.size_bytes = opened_.size_bytes;
  s.volume_uuid = head_.volume_uuid;
  s.fenced = lifecycle_.fenced;
  s.manifest_number = versions_.current()->number;
  s.applied_segment = versions_.current()->applied_segment;
  s.next_segment_id = uploader_.NextSegmentIdLocked();
  s.active_buffer_bytes = uploader_.ActiveBytesLocked();
  s.sealed_buffer_bytes = uploader_.SealedBytesLocked();
  s.memtable_extents = map_.mem->extent_count() + (map_.imm ? map_.imm->extent_count() : 0);
  for (const auto& level : versions_.current()->levels) {
    s.ssts_per_level.push_back(level.size());
    s.map_bytes += lsm::LevelBytes(level);
  }
  const SegmentTable::Totals segs = seg_table_.totals();
  s.segments = segs.segments;
  s.segment_bytes = segs.size_bytes;
  s.live_data_blocks = segs.live_blocks;
  s.write_stalls = lifecycle_.write_stalls;
  s.shadowed_blocks = compaction_.shadowed_blocks;
  s.full_compactions = compaction_.full_compactions;
  s.gc_reclaimed_bytes = gc_.reclaimed_bytes;
  s.snapshots = head_.snapshots.size();
  const StoreHealth::State& health = uploader_.HealthLocked();
  if (health.failing) {
    s.store_failing_since_ns = health.since_wall_ns;
    s.store_failed_attempts = health.failed_attempts;
    s.store_error = health.error;
  }
  return s;
}

}  // namespace portal::volume
