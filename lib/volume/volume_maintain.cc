// Map maintenance: memtable flushes to L0 SSTs, leveled compaction, manifest commits and
// statistics.
#include <algorithm>

#include <fmt/format.h>

#include "util/log.h"
#include "util/range_map.h"
#include "volume/lsm_volume.h"

namespace portal::volume {
namespace {

auto Log() { return log::Get("portalbd::volume"); }

uint64_t LevelBytes(const std::vector<SstRef>& level) {
  uint64_t total = 0;
  for (const auto& r : level) total += r.size_bytes;
  return total;
}

bool Overlaps(const SstRef& r, uint64_t first, uint64_t end) {
  return r.min_block < end && first < r.end_block;
}

}  // namespace

std::string LsmVolume::NextSstKey() { return SstKey(epoch_, ++sst_counter_); }

Task<Status> LsmVolume::Commit(const Manifest& next_in) {
  Manifest next = next_in;
  uint64_t number;
  {
    std::lock_guard lock(mu_);
    if (fenced_) co_return Status::IOError("volume is fenced: " + fenced_reason_);
    if (give_up_.cancelled()) co_return GaveUpLocked();
    number = version_->number + 1;
    next.next_segment_id = next_segment_id_;
    next.next_seq = next_seq_;
    next.epoch = epoch_;
  }
  Status st = co_await log_.Create(number, next, &give_up_);
  std::lock_guard lock(mu_);
  if (st.IsPreconditionFailed()) {
    fenced_ = true;
    fenced_reason_ = st.ToString();
    Log()->error("volume fenced: acknowledging nothing more error=\"{}\"", fenced_reason_);
    changed_.NotifyAll();
    co_return st;
  }
  if (st.ok()) {
    version_ = std::make_shared<const Version>(Version{std::move(next), number});
    meta_->SetLatestManifest(number);
  }
  co_return st;
}

// Uploads an SST under a fresh name. Names are unique to this epoch, so existing other
// contents are not a race but corruption.
static Task<Status> PutSst(Env& env, objstore::ObjectStore& store, const std::string& key,
                           const std::string& bytes, Cancellation* cancel) {
  Status st = co_await objstore::PutIfAbsentOrSame(env, store, key, bytes, nullptr, cancel);
  if (st.IsPreconditionFailed()) {
    co_return Status::Corruption("map SST " + key + " exists with other contents");
  }
  co_return st;
}

// Writes `extents` (sorted) as SSTs of about `target` bytes each.
static Task<Result<std::vector<std::pair<SstRef, SstIndex>>>> WriteSsts(
    Env& env, objstore::ObjectStore& store, const std::vector<lsm::Extent>& extents,
    uint64_t target, const std::function<std::string()>& next_key, Cancellation* cancel) {
  std::vector<std::pair<SstRef, SstIndex>> out;
  lsm::SstBuilder builder;
  auto finish = [&]() -> Task<Status> {
    if (builder.empty()) co_return Status::Ok();
    SstIndex idx;
    std::string bytes = builder.Finish(&idx);
    SstRef ref{next_key(), idx.min_block, idx.end_block, bytes.size(), idx.extent_count,
               idx.data_blocks};
    CO_RETURN_IF_ERROR(co_await PutSst(env, store, ref.key, bytes, cancel));
    out.emplace_back(std::move(ref), std::move(idx));
    builder = lsm::SstBuilder();
    co_return Status::Ok();
  };
  for (const lsm::Extent& e : extents) {
    builder.Add(e);
    if (builder.estimated_size() >= target) CO_RETURN_IF_ERROR(co_await finish());
  }
  CO_RETURN_IF_ERROR(co_await finish());
  co_return out;
}

Task<Status> LsmVolume::FlushMemtable() {
  auto guard = co_await jobs_mu_.Lock();
  co_return co_await FlushMemtableLocked();
}

Task<Status> LsmVolume::FlushMemtableLocked() {
  std::shared_ptr<const lsm::Memtable> imm;
  uint64_t applied_segment, applied_seq;
  {
    std::lock_guard lock(mu_);
    if (fenced_) co_return Status::IOError("volume is fenced: " + fenced_reason_);
    if (!imm_) {  // else: a previous flush failed; retry the same immutable memtable
      if (mem_->empty() && mem_last_segment_ == version_->manifest.applied_segment) {
        co_return Status::Ok();
      }
      imm_ = mem_;
      imm_applied_segment_ = mem_last_segment_;
      imm_applied_seq_ = mem_last_seq_;
      mem_ = std::make_shared<lsm::Memtable>();
      segments_since_mem_flush_ = 0;
      mem_dirty_since_ns_ = -1;
    }
    imm = imm_;
    applied_segment = imm_applied_segment_;
    applied_seq = imm_applied_seq_;
  }
  // On failure imm_ stays in the read path (newer than the SSTs, older than mem_).
  CO_ASSIGN_OR_RETURN(auto written,
                      co_await WriteSsts(env_, store_, imm->Extents(), options_.sst_target_bytes,
                                         [this] { return NextSstKey(); }, &give_up_));
  Manifest next;
  {
    std::lock_guard lock(mu_);
    next = version_->manifest;
  }
  if (next.levels.empty()) next.levels.emplace_back();
  auto& l0 = next.levels[0];
  std::vector<SstRef> fresh;
  for (auto& [ref, idx] : written) fresh.push_back(ref);
  l0.insert(l0.begin(), fresh.begin(), fresh.end());
  next.applied_segment = applied_segment;
  next.applied_seq = applied_seq;
  CO_RETURN_IF_ERROR(co_await Commit(next));
  {
    std::lock_guard lock(mu_);
    imm_.reset();
  }
  changed_.NotifyAll();
  co_return Status::Ok();
}

Task<Status> LsmVolume::CompactOnce(bool* did_work, bool force, int level) {
  *did_work = false;
  Manifest m;
  {
    std::lock_guard lock(mu_);
    if (fenced_) co_return Status::Ok();
    m = version_->manifest;
  }
  // Pick: L0 past its trigger, else the first level over its size target.
  size_t from = SIZE_MAX;
  if (level >= 0) {
    if (size_t(level) < m.levels.size() && !m.levels[level].empty()) from = size_t(level);
  } else if (!m.levels.empty() && !m.levels[0].empty() &&
      (force || m.levels[0].size() >= options_.l0_compaction_trigger)) {
    from = 0;
  } else {
    uint64_t target = options_.level1_target_bytes;
    for (size_t i = 1; i < m.levels.size(); ++i, target *= 10) {
      if (LevelBytes(m.levels[i]) > target) {
        from = i;
        break;
      }
    }
  }
  if (from == SIZE_MAX) co_return Status::Ok();
  const size_t to = from + 1;
  if (m.levels.size() <= to) m.levels.resize(to + 1);

  // Upper inputs: all of L0 (overlapping each other), or one file of a deeper level.
  std::vector<SstRef> upper = from == 0 ? m.levels[0] : std::vector<SstRef>{m.levels[from][0]};
  uint64_t lo = UINT64_MAX, hi = 0;
  for (const auto& r : upper) {
    lo = std::min(lo, r.min_block);
    hi = std::max(hi, r.end_block);
  }
  std::vector<SstRef> lower;
  for (const auto& r : m.levels[to]) {
    if (Overlaps(r, lo, hi)) lower.push_back(r);
  }
  const bool bottom = [&] {
    for (size_t i = to + 1; i < m.levels.size(); ++i) {
      if (!m.levels[i].empty()) return false;
    }
    return true;
  }();

  auto remove = [](std::vector<SstRef>* level, const std::vector<SstRef>& gone) {
    std::erase_if(*level, [&](const SstRef& r) {
      return std::any_of(gone.begin(), gone.end(), [&](const SstRef& g) { return g.key == r.key; });
    });
  };
  auto insert_sorted = [](std::vector<SstRef>* level, const std::vector<SstRef>& add) {
    level->insert(level->end(), add.begin(), add.end());
    std::sort(level->begin(), level->end(),
              [](const SstRef& a, const SstRef& b) { return a.min_block < b.min_block; });
  };

  // Trivial move: one upper file and nothing below it to merge with.
  if (upper.size() == 1 && lower.empty() && !bottom) {
    remove(&m.levels[from], upper);
    insert_sorted(&m.levels[to], upper);
    CO_RETURN_IF_ERROR(co_await Commit(m));
    *did_work = true;
    co_return Status::Ok();
  }

  // Merge: older (lower) first, then upper files from oldest to newest.
  RangeMap<lsm::Loc> merged;
  std::map<uint64_t, int64_t> delta;  // segment -> change in referenced blocks
  auto account = [&](const SstIndex& idx, int sign) {
    for (const auto& [seg, blocks] : idx.segment_blocks) delta[seg] += sign * int64_t(blocks);
  };
  for (auto it = upper.rbegin(); it != upper.rend(); ++it) {
    CO_ASSIGN_OR_RETURN(auto idx, co_await ssts_.Index(*it));
    account(*idx, -1);
  }
  // Coverage of the upper inputs: lower files entirely inside it are dropped unread.
  RangeMap<lsm::Loc> upper_map;
  for (auto it = upper.rbegin(); it != upper.rend(); ++it) {
    CO_ASSIGN_OR_RETURN(auto extents, co_await ssts_.ReadAll(*it));
    for (const auto& e : extents) upper_map.Assign(e.first, e.end, e.loc);
  }
  auto covered = [&](const SstRef& r) {
    uint64_t cur = r.min_block;
    upper_map.ForEach(r.min_block, r.end_block, [&](uint64_t b, uint64_t e, const lsm::Loc&) {
      if (b > cur) return false;
      cur = e;
      return true;
    });
    return cur >= r.end_block;
  };
  size_t dropped_unread = 0;
  for (const auto& r : lower) {
    CO_ASSIGN_OR_RETURN(auto idx, co_await ssts_.Index(r));
    account(*idx, -1);
    if (covered(r)) {
      ++dropped_unread;
      continue;
    }
    CO_ASSIGN_OR_RETURN(auto extents, co_await ssts_.ReadAll(r));
    for (const auto& e : extents) merged.Assign(e.first, e.end, e.loc);
  }
  for (const auto& [b, r] : upper_map.map()) merged.Assign(b, r.end, r.value);
  std::vector<lsm::Extent> out;
  out.reserve(merged.size());
  for (const auto& [b, r] : merged.map()) {
    if (bottom && r.value.kind == lsm::LocKind::kHole) continue;  // nothing below to shadow
    out.push_back(lsm::Extent{b, r.end, r.value});
  }
  CO_ASSIGN_OR_RETURN(auto written,
                      co_await WriteSsts(env_, store_, out, options_.sst_target_bytes,
                                         [this] { return NextSstKey(); }, &give_up_));
  std::vector<SstRef> outputs;
  for (auto& [ref, idx] : written) {
    outputs.push_back(ref);
    account(idx, +1);
  }
  // Re-read the current manifest: a memtable flush may not have happened meanwhile
  // (jobs_mu_ is held), but keep the edit minimal and exact anyway.
  remove(&m.levels[from], upper);
  remove(&m.levels[to], lower);
  insert_sorted(&m.levels[to], outputs);
  while (!m.levels.empty() && m.levels.back().empty() && m.levels.size() > 1) m.levels.pop_back();
  CO_RETURN_IF_ERROR(co_await Commit(m));
  {
    std::lock_guard lock(mu_);
    const int64_t now = static_cast<int64_t>(env_.NowNanos());
    for (const auto& r : upper) retired_ssts_[r.key] = now;
    for (const auto& r : lower) retired_ssts_[r.key] = now;
    seg_table_.ApplyLiveDeltas(delta, now);
  }
  Log()->debug("compacted L{}->L{} inputs={} outputs={} dropped_unread={}", from, to,
               upper.size() + lower.size(), outputs.size(), dropped_unread);
  *did_work = true;
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
  const uint64_t shadowed = shadowed_blocks_ * block_size_;
  if (shadowed < options_.full_compaction_min_bytes) return false;
  const uint64_t stored = seg_table_.totals().size_bytes;
  return double(shadowed) >= options_.full_compaction_ratio * double(stored);
}

Task<Status> LsmVolume::CompactToBottomLocked() {
  uint64_t shadowed;
  {
    std::lock_guard lock(mu_);
    shadowed = shadowed_blocks_;
  }
  CO_RETURN_IF_ERROR(co_await FlushMemtableLocked());
  for (size_t level = 0;; ++level) {
    {
      std::lock_guard lock(mu_);
      if (fenced_) co_return Status::IOError("volume is fenced: " + fenced_reason_);
      // L0 always goes down (into a new L1 if need be); deeper levels into the last.
      if (level > 0 && level + 1 >= version_->manifest.levels.size()) break;
    }
    for (bool did = true; did;) {
      CO_RETURN_IF_ERROR(co_await CompactOnce(&did, /*force=*/true, static_cast<int>(level)));
    }
  }
  std::lock_guard lock(mu_);
  shadowed_blocks_ -= std::min(shadowed, shadowed_blocks_);
  ++full_compactions_;
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
      if (stop_ || fenced_ || give_up_.cancelled()) co_return;
      const uint64_t now = env_.NowNanos();
      const bool dirty = mem_dirty_since_ns_ >= 0;
      const uint64_t due =
          dirty ? SaturatingAdd(static_cast<uint64_t>(mem_dirty_since_ns_),
                                MillisToNanos(options_.memtable_flush_interval_ms))
                : UINT64_MAX;
      flush = segments_since_mem_flush_ >= options_.memtable_flush_segments ||
              mem_->extent_count() >= options_.memtable_max_extents ||
              mem_->approximate_bytes() >= options_.l0_sst_size_bytes || (dirty && now >= due);
      if (!flush && due != UINT64_MAX) wait_ns = due - now;
      const uint64_t gc_due =
          last_gc_ns_ < 0 ? now
                          : SaturatingAdd(static_cast<uint64_t>(last_gc_ns_),
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
  return fenced_;
}

VolumeStats LsmVolume::stats() {
  VolumeStats s;
  s.storage_url = store_.url();
  s.block_size = block_size_;
  s.epoch = epoch_;
  s.cache = cache_.stats();
  s.corrupt_refetches = corrupt_refetches_.load(std::memory_order_relaxed);
  std::lock_guard lock(mu_);
  s.size_bytes = size_bytes_;
  s.volume_uuid = version_->manifest.volume_uuid;
  s.fenced = fenced_;
  s.manifest_number = version_->number;
  s.applied_segment = version_->manifest.applied_segment;
  s.next_segment_id = next_segment_id_;
  s.active_buffer_bytes = active_->bytes();
  for (const auto& x : sealed_) s.sealed_buffer_bytes += x.buf->bytes();
  s.memtable_extents = mem_->extent_count() + (imm_ ? imm_->extent_count() : 0);
  for (const auto& level : version_->manifest.levels) {
    s.ssts_per_level.push_back(level.size());
    s.map_bytes += LevelBytes(level);
  }
  const SegmentTable::Totals segs = seg_table_.totals();
  s.segments = segs.segments;
  s.segment_bytes = segs.size_bytes;
  s.live_data_blocks = segs.live_blocks;
  s.write_stalls = write_stalls_;
  s.shadowed_blocks = shadowed_blocks_;
  s.full_compactions = full_compactions_;
  s.snapshots = version_->manifest.snapshots.size();
  const StoreHealth::State& health = store_health_.state();
  if (health.failing) {
    s.store_failing_since_ns = health.since_wall_ns;
    s.store_failed_attempts = health.failed_attempts;
    s.store_error = health.error;
  }
  return s;
}

}  // namespace portal::volume
