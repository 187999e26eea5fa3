#include "lsm/compaction.h"

#include <algorithm>

#include "objstore/retrying_store.h"
#include "util/range_map.h"

namespace portal::lsm {
namespace {

bool Overlaps(const SstRef& r, uint64_t first, uint64_t end) {
  return r.min_block < end && first < r.end_block;
}

// Uploads an SST under a fresh name. Names are unique to this epoch, so existing other
// contents are not a race but corruption.
Task<Status> PutSst(Env& env, objstore::ObjectStore& store, const std::string& key,
                    const std::string& bytes, Cancellation* cancel) {
  Status st = co_await objstore::PutIfAbsentOrSame(env, store, key, bytes, nullptr, cancel);
  if (st.IsPreconditionFailed()) {
    co_return Status::Corruption("map SST " + key + " exists with other contents");
  }
  co_return st;
}

}  // namespace

uint64_t LevelBytes(const std::vector<SstRef>& level) {
  uint64_t total = 0;
  for (const auto& r : level) total += r.size_bytes;
  return total;
}

std::optional<Compaction> PickCompaction(const Version& v, const CompactionOptions& options,
                                         bool force, int level) {
  const Levels& levels = v.levels;
  // Pick: L0 past its trigger, else the first level over its size target.
  size_t from = SIZE_MAX;
  if (level >= 0) {
    if (size_t(level) < levels.size() && !levels[level].empty()) from = size_t(level);
  } else if (!levels.empty() && !levels[0].empty() &&
             (force || levels[0].size() >= options.l0_compaction_trigger)) {
    from = 0;
  } else {
    uint64_t target = options.level1_target_bytes;
    for (size_t i = 1; i < levels.size(); ++i, target *= 10) {
      if (LevelBytes(levels[i]) > target) {
        from = i;
        break;
      }
    }
  }
  if (from == SIZE_MAX) return std::nullopt;
  Compaction c;
  c.base = v.number;
  c.from = from;
  c.to = from + 1;
  // Upper inputs: all of L0 (overlapping each other), or one file of a deeper level.
  c.upper = from == 0 ? levels[0] : std::vector<SstRef>{levels[from][0]};
  uint64_t lo = UINT64_MAX, hi = 0;
  for (const auto& r : c.upper) {
    lo = std::min(lo, r.min_block);
    hi = std::max(hi, r.end_block);
  }
  if (c.to < levels.size()) {
    for (const auto& r : levels[c.to]) {
      if (Overlaps(r, lo, hi)) c.lower.push_back(r);
    }
  }
  c.bottom = true;
  for (size_t i = c.to + 1; i < levels.size(); ++i) {
    if (!levels[i].empty()) c.bottom = false;
  }
  return c;
}

bool FullCompactionDue(uint64_t shadowed_bytes, uint64_t stored_bytes,
                       const CompactionOptions& options) {
  if (shadowed_bytes < options.full_compaction_min_bytes) return false;
  return double(shadowed_bytes) >= options.full_compaction_ratio * double(stored_bytes);
}

Task<Result<std::vector<std::pair<SstRef, SstIndex>>>> WriteSsts(
    Env& env, objstore::ObjectStore& store, const std::vector<Extent>& extents,
    uint64_t target_bytes, const SstKeyFn& next_key, Cancellation* cancel,
    const crypto::Keyring* keyring, SstReader* keep) {
  std::vector<std::pair<SstRef, SstIndex>> out;
  SstBuilder builder(4096, keyring);
  auto finish = [&]() -> Task<Status> {
    if (builder.empty()) co_return Status::Ok();
    SstIndex idx;
    std::string bytes = builder.Finish(&idx);
    SstRef ref{next_key(), idx.min_block, idx.end_block, bytes.size(), idx.extent_count,
               idx.data_blocks};
    CO_RETURN_IF_ERROR(co_await PutSst(env, store, ref.key, bytes, cancel));
    if (keep) keep->KeepWritten(ref, idx, bytes);  // stored: now the cache may hold it
    out.emplace_back(std::move(ref), std::move(idx));
    builder = SstBuilder(4096, keyring);
    co_return Status::Ok();
  };
  for (const Extent& e : extents) {
    builder.Add(e);
    if (builder.estimated_size() >= target_bytes) CO_RETURN_IF_ERROR(co_await finish());
  }
  CO_RETURN_IF_ERROR(co_await finish());
  co_return out;
}

VersionEdit FlushEdit(uint64_t base, std::vector<SstRef> fresh, uint64_t applied_segment,
                      uint64_t applied_seq) {
  VersionEdit edit;
  edit.base = base;
  edit.added[0] = std::move(fresh);
  edit.applied_segment = applied_segment;
  edit.applied_seq = applied_seq;
  return edit;
}

Task<Result<CompactionResult>> RunCompaction(const Compaction& c, SstReader& ssts, Env& env,
                                             objstore::ObjectStore& store,
                                             uint64_t sst_target_bytes, const SstKeyFn& next_key,
                                             Cancellation* cancel) {
  CompactionResult result;
  VersionEdit& edit = result.edit;
  edit.base = c.base;
  for (const auto& r : c.upper) edit.removed.emplace_back(c.from, r.key);
  if (c.trivial_move()) {
    edit.added[c.to] = c.upper;
    co_return result;
  }
  for (const auto& r : c.lower) edit.removed.emplace_back(c.to, r.key);

  // Merge: older (lower) first, then upper files from oldest to newest.
  RangeMap<Loc> merged;
  std::map<uint64_t, int64_t>& delta = result.segment_delta;
  auto account = [&](const SstIndex& idx, int sign) {
    for (const auto& [seg, blocks] : idx.segment_blocks) delta[seg] += sign * int64_t(blocks);
  };
  for (auto it = c.upper.rbegin(); it != c.upper.rend(); ++it) {
    CO_ASSIGN_OR_RETURN(auto idx, co_await ssts.Index(*it));
    account(*idx, -1);
  }
  // Coverage of the upper inputs: lower files entirely inside it are dropped unread.
  RangeMap<Loc> upper_map;
  for (auto it = c.upper.rbegin(); it != c.upper.rend(); ++it) {
    CO_ASSIGN_OR_RETURN(auto extents, co_await ssts.ReadAll(*it));
    for (const auto& e : extents) upper_map.Assign(e.first, e.end, e.loc);
  }
  auto covered = [&](const SstRef& r) {
    uint64_t cur = r.min_block;
    upper_map.ForEach(r.min_block, r.end_block, [&](uint64_t b, uint64_t e, const Loc&) {
      if (b > cur) return false;
      cur = e;
      return true;
    });
    return cur >= r.end_block;
  };
  for (const auto& r : c.lower) {
    CO_ASSIGN_OR_RETURN(auto idx, co_await ssts.Index(r));
    account(*idx, -1);
    if (covered(r)) {
      ++result.dropped_unread;
      continue;
    }
    CO_ASSIGN_OR_RETURN(auto extents, co_await ssts.ReadAll(r));
    for (const auto& e : extents) merged.Assign(e.first, e.end, e.loc);
  }
  for (const auto& [b, r] : upper_map.map()) merged.Assign(b, r.end, r.value);
  std::vector<Extent> out;
  out.reserve(merged.size());
  for (const auto& [b, r] : merged.map()) {
    if (c.bottom && !c.keep_holes && r.value.kind == LocKind::kHole) continue;  // nothing below
    out.push_back(Extent{b, r.end, r.value});
  }
  CO_ASSIGN_OR_RETURN(auto written,
                      co_await WriteSsts(env, store, out, sst_target_bytes, next_key, cancel,
                                         ssts.keyring(), &ssts));
  for (auto& [ref, idx] : written) {
    result.outputs.push_back(ref);
    account(idx, +1);
  }
  edit.added[c.to] = result.outputs;
  edit.drop_empty_tail = true;
  co_return result;
}

}  // namespace portal::lsm
