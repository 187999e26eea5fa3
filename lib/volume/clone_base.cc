#include "volume/clone_base.h"

#include <fmt/format.h>

#include <algorithm>

namespace portal::volume {
namespace {
VolumeOptions BaseOptions(const VolumeOptions& o) {
  VolumeOptions b = o;
  b.disk_cache = nullptr;
  b.block_cache_size_bytes = std::max<uint64_t>(4ull << 20, o.block_cache_size_bytes / 4);
  return b;
}
}  // namespace

CloneBase::CloneBase(Env& env, objstore::ObjectStore& store, const VolumeOptions& options)
    : reads_(store, env),
      options_(BaseOptions(options)),
      own_cache_(options_.block_cache ? nullptr
                                      : std::make_unique<cache::BlockCache>(
                                            env, options_.block_cache_size_bytes)),
      cache_(options_.block_cache ? *options_.block_cache : *own_cache_),
      // Scoped as the volume's own readers are (LsmVolume's constructor): by this
      // layer's store, so layers never meet in a shared cache.
      segments_(reads_, cache_, options_),
      ssts_(reads_, cache_, nullptr, nullptr, options_.keyring,
            options_.block_cache ? store.url() + "|" : "") {}

Task<Result<std::unique_ptr<CloneBase>>> CloneBase::Open(Env& env, const CloneRecord& record,
                                                         const VolumeOptions& options, int depth) {
  if (depth >= kMaxDepth) {
    co_return Status::Corruption(fmt::format(
        "clone '{}': more than {} ancestors (a loop of clone records?)", record.name, kMaxDepth));
  }
  if (!options.resolve_volume) {
    co_return Status::InvalidArgument(
        fmt::format("volume '{}' is a clone of {}@{} and no volume resolver was given", record.name,
                    record.parent, record.snapshot));
  }
  Result<objstore::ObjectStore*> parent = options.resolve_volume(record.parent);
  if (!parent.ok()) {
    co_return parent.status().WithContext(
        fmt::format("clone '{}': finding its parent '{}'", record.name, record.parent));
  }
  std::unique_ptr<CloneBase> b(new CloneBase(env, **parent, options));
  b->record_ = record;
  auto bytes = co_await b->reads_.Get(record.snapshot_key);
  if (!bytes.ok()) {
    co_return bytes.status().WithContext(
        fmt::format("clone '{}': reading its base snapshot {}@{} ({})", record.name, record.parent,
                    record.snapshot, record.snapshot_key));
  }
  CO_ASSIGN_OR_RETURN(b->snap_, DecodeSnapshotObject(*bytes, record.snapshot_key, options.keyring));
  if (b->snap_.id != record.snapshot_id) {
    co_return Status::Corruption(fmt::format("clone '{}': {} holds snapshot {}, not {}",
                                             record.name, record.snapshot_key, b->snap_.id,
                                             record.snapshot_id));
  }
  CO_ASSIGN_OR_RETURN(auto up, co_await ReadCloneRecord(env, **parent));
  if (up) {
    CO_ASSIGN_OR_RETURN(b->next_, co_await Open(env, *up, options, depth + 1));
  }
  co_return b;
}

Task<Status> CloneBase::Resolve(uint64_t first, uint64_t end, const Sink& sink) {
  const uint64_t size_blocks = snap_.size_bytes / std::max<uint32_t>(1, snap_.block_size);
  std::vector<std::pair<uint64_t, uint64_t>> uncovered;
  if (first < std::min(end, size_blocks)) uncovered.emplace_back(first, std::min(end, size_blocks));
  if (end > size_blocks && first < end) {
    sink(std::max(first, size_blocks), end, lsm::Loc::Hole(), nullptr);  // past the snapshot
  }
  for (const auto& level : snap_.levels) {  // as LsmVolume::Resolve, over frozen levels
    for (const SstRef& ref : level) {
      if (uncovered.empty()) break;
      std::vector<std::pair<uint64_t, uint64_t>> next;
      for (auto [a, b] : uncovered) {
        if (b <= ref.min_block || a >= ref.end_block) {
          next.emplace_back(a, b);
          continue;
        }
        uint64_t cur = a;
        CO_RETURN_IF_ERROR(co_await ssts_.ForEach(ref, a, b, [&](const lsm::Extent& e) {
          if (e.first > cur) next.emplace_back(cur, e.first);
          sink(e.first, e.end, e.loc, e.loc.is_data() ? this : nullptr);
          cur = e.end;
          return true;
        }));
        if (cur < b) next.emplace_back(cur, b);
      }
      uncovered.swap(next);
    }
  }
  for (auto [a, b] : uncovered) {
    if (next_) {
      CO_RETURN_IF_ERROR(co_await next_->Resolve(a, b, sink));
    } else {
      sink(a, b, lsm::Loc::Hole(), nullptr);
    }
  }
  co_return Status::Ok();
}

Task<Status> CloneBase::ReadBlocks(uint64_t segment, uint64_t index, uint64_t n, uint8_t* dest) {
  Status st = co_await segments_.ReadBlocks(segment, index, n, dest);
  if (!st.ok()) {
    co_return st.WithContext(fmt::format("reading the base of clone '{}' ({}@{})", record_.name,
                                         record_.parent, record_.snapshot));
  }
  co_return st;
}

}  // namespace portal::volume
