#include "lsm/sst_reader.h"

#include <algorithm>

#include "objstore/retrying_store.h"
#include "util/assert.h"

namespace portal::lsm {
namespace {
constexpr uint64_t kTailGuess = 64 * 1024;  // most indexes fit; else a second GET
}  // namespace

void SstReader::KeepWritten(const SstRef& ref, const SstIndex& index, std::string_view bytes) {
  if (!tails_) return;
  PORTAL_ASSERT(ref.size_bytes == bytes.size() && index.index_offset <= bytes.size(),
                "KeepWritten: the index is not of these bytes");
  std::vector<std::pair<std::string, std::string>> rows;
  rows.reserve(1 + index.blocks.size());
  // What Index keeps: the meta and the trailer, which follow the data blocks.
  rows.emplace_back(ref.key, bytes.substr(index.index_offset));
  for (const SstIndexEntry& b : index.blocks) {
    PORTAL_ASSERT(b.offset + b.length <= index.index_offset, "KeepWritten: a block past the data");
    rows.emplace_back(BlockPartKey(ref.key, b.offset), bytes.substr(b.offset, b.length));
  }
  tails_->PutMany(std::move(rows));
}

Task<Result<std::shared_ptr<const SstIndex>>> SstReader::Index(const SstRef& ref,
                                                               WarmStats* counts) {
  auto v = co_await cache::GetTyped<SstIndex>(
      cache_, IndexCacheKey(ref.key), [&]() -> Task<Result<std::pair<SstIndex, uint64_t>>> {
        auto matches = [&](const SstIndex& idx) {
          return idx.min_block == ref.min_block && idx.end_block == ref.end_block &&
                 idx.extent_count == ref.extent_count;
        };
        if (tails_) {  // a verified local copy saves the GET; a bad one costs only the GET
          std::optional<std::string> cached = co_await tails_->Get(ref.key);
          if (cached) {
            auto idx = DecodeSstIndex(*cached, ref.size_bytes, ref.key, keyring_);
            if (idx.ok() && matches(*idx)) {
              if (counts) ++counts->local_indexes;
              uint64_t charge = idx->memory_bytes();
              co_return std::make_pair(std::move(*idx), charge);
            }
          }
        }
        std::string tail;
        uint64_t meta_len = 0;
        Result<SstIndex> decoded = Status::Corruption("not read");
        CO_RETURN_IF_ERROR(co_await objstore::RefetchCorrupt(
            [&]() -> Task<Status> {
              uint64_t guess = std::min(ref.size_bytes, kTailGuess);
              auto count = [&](const Result<std::string>& got) {
                if (!counts) return;
                ++counts->gets;
                if (got.ok()) counts->get_bytes += got->size();
              };
              // A failed GET names the SST (a range past the end of a truncated one is an
              // InvalidArgument from the store that names nothing).
              auto got =
                  co_await store_.Get(ref.key, objstore::GetRange{ref.size_bytes - guess, guess});
              count(got);
              if (!got.ok()) co_return got.status().WithContext("map SST " + ref.key);
              tail = std::move(*got);
              CO_ASSIGN_OR_RETURN(meta_len, ParseSstTrailer(tail, ref.key));
              uint64_t need = meta_len + kSstTrailerSize;
              if (need > tail.size() && need <= ref.size_bytes) {
                got = co_await store_.Get(ref.key, objstore::GetRange{ref.size_bytes - need, need});
                count(got);
                if (!got.ok()) co_return got.status().WithContext("map SST " + ref.key);
                tail = std::move(*got);
              }
              decoded = DecodeSstIndex(tail, ref.size_bytes, ref.key, keyring_);
              co_return decoded.status();
            },
            corrupt_refetches_));
        SstIndex idx = std::move(*decoded);
        if (!matches(idx)) {
          co_return Status::Corruption("map SST " + ref.key +
                                       " does not match its manifest entry");
        }
        if (tails_ && meta_len + kSstTrailerSize <= tail.size()) {
          tails_->Put(ref.key, tail.substr(tail.size() - meta_len - kSstTrailerSize));
        }
        uint64_t charge = idx.memory_bytes();
        co_return std::make_pair(std::move(idx), charge);
      });
  if (!v.ok()) co_return v.status();
  co_return std::shared_ptr<const SstIndex>(*v, &(*v)->value);
}

Task<Result<std::shared_ptr<const std::vector<Extent>>>> SstReader::Block(
    const SstRef& ref, const SstIndexEntry& entry, const crypto::ObjectKey* key) {
  auto v = co_await cache::GetTyped<std::vector<Extent>>(
      cache_, BlockCacheKey(ref.key, entry.offset),
      [&]() -> Task<Result<std::pair<std::vector<Extent>, uint64_t>>> {
        std::vector<Extent> extents;
        // The metadata cache first: the block's checksum comes from the (verified) index,
        // so a stale or damaged local copy fails DecodeSstBlock and costs only the GET.
        const std::string part = BlockPartKey(ref.key, entry.offset);
        if (tails_) {
          std::optional<std::string> cached = co_await tails_->Get(part);
          if (cached) {
            auto decoded = DecodeSstBlock(*cached, entry, ref.key, key);
            if (decoded.ok()) {
              uint64_t charge = BlockCharge(*decoded);
              co_return std::make_pair(std::move(*decoded), charge);
            }
          }
        }
        std::string stored;
        CO_RETURN_IF_ERROR(co_await objstore::RefetchCorrupt(
            [&]() -> Task<Status> {
              CO_ASSIGN_OR_RETURN(
                  stored,
                  co_await store_.Get(ref.key, objstore::GetRange{entry.offset, entry.length}));
              CO_ASSIGN_OR_RETURN(extents, DecodeSstBlock(stored, entry, ref.key, key));
              co_return Status::Ok();
            },
            corrupt_refetches_));
        if (tails_) tails_->Put(part, std::move(stored));  // verified bytes only
        uint64_t charge = BlockCharge(extents);
        co_return std::make_pair(std::move(extents), charge);
      });
  if (!v.ok()) co_return v.status();
  co_return std::shared_ptr<const std::vector<Extent>>(*v, &(*v)->value);
}

Task<Status> SstReader::ForEach(const SstRef& ref, uint64_t first, uint64_t end,
                                std::function<bool(const Extent&)> fn) {
  if (first >= end || end <= ref.min_block || first >= ref.end_block) co_return Status::Ok();
  CO_ASSIGN_OR_RETURN(auto idx, co_await Index(ref));
  // First block whose range ends after `first`.
  auto it = std::partition_point(idx->blocks.begin(), idx->blocks.end(),
                                 [&](const SstIndexEntry& b) { return b.end_block <= first; });
  for (; it != idx->blocks.end() && it->first_block < end; ++it) {
    CO_ASSIGN_OR_RETURN(auto block, co_await Block(ref, *it, idx->key.get()));
    auto e = std::partition_point(block->begin(), block->end(),
                                  [&](const Extent& x) { return x.end <= first; });
    for (; e != block->end() && e->first < end; ++e) {
      Extent clipped = *e;
      if (clipped.first < first) {
        clipped.loc = clipped.loc.Slice(first - clipped.first);
        clipped.first = first;
      }
      clipped.end = std::min(clipped.end, end);
      if (!fn(clipped)) co_return Status::Ok();
    }
  }
  co_return Status::Ok();
}

Task<bool> SstReader::Warm(const SstRef& ref, objstore::ObjectStore& once,
                           uint64_t max_get_bytes) {
  WarmStats counts;
  counts.ssts = 1;
  auto tally = [&] {
    std::lock_guard lock(warm_mu_);
    warm_ += counts;
  };
  auto idx = co_await Index(ref, &counts);
  if (!idx.ok()) {
    tally();
    co_return false;
  }
  const std::vector<SstIndexEntry>& blocks = (*idx)->blocks;
  counts.blocks = blocks.size();
  const crypto::ObjectKey* key = (*idx)->key.get();
  auto finish = [&](size_t i, std::vector<Extent> extents) {
    const uint64_t charge = BlockCharge(extents);
    cache_.Finish(
        BlockCacheKey(ref.key, blocks[i].offset),
        std::shared_ptr<const cache::CacheEntry>(
            std::make_shared<const cache::CacheValue<std::vector<Extent>>>(std::move(extents))),
        charge);
  };
  // Runs [first, end) of adjacent blocks this call leads, each at most max_get_bytes, at
  // most kRunsAtOnce GETs in flight. A block is claimed only when its GET is about to
  // start (or its local copy is being checked), so a read never waits behind GETs queued
  // here.
  constexpr size_t kRunsAtOnce = 4;
  std::vector<std::pair<size_t, size_t>> runs;
  auto fetch_run = [&](size_t first, size_t end) -> Task<bool> {
    const uint64_t begin = blocks[first].offset;
    const uint64_t length = blocks[end - 1].offset + blocks[end - 1].length - begin;
    auto got = co_await once.Get(ref.key, objstore::GetRange{begin, length});
    ++counts.gets;
    if (got.ok()) counts.get_bytes += got->size();
    Status failed = got.ok() ? Status::Ok() : got.status().WithContext("map SST " + ref.key);
    if (got.ok() && got->size() != length) failed = Status::Corruption("short read of " + ref.key);
    std::vector<std::pair<std::string, std::string>> keep;  // for the metadata cache
    for (size_t i = first; i < end; ++i) {
      if (!failed.ok()) {  // tentative: its waiters fetch the block themselves
        cache_.Finish(BlockCacheKey(ref.key, blocks[i].offset), failed, 0);
        continue;
      }
      const std::string_view bytes =
          std::string_view(*got).substr(blocks[i].offset - begin, blocks[i].length);
      auto extents = DecodeSstBlock(bytes, blocks[i], ref.key, key);
      if (!extents.ok()) {
        cache_.Finish(BlockCacheKey(ref.key, blocks[i].offset), extents.status(), 0);
        continue;
      }
      if (tails_) keep.emplace_back(BlockPartKey(ref.key, blocks[i].offset), bytes);
      finish(i, std::move(*extents));
    }
    if (tails_ && !keep.empty()) tails_->PutMany(std::move(keep));  // verified bytes only
    co_return failed.ok();
  };
  // The metadata cache's copies of blocks [looked_first, looked_end), looked up together
  // (at most max_get_bytes of them) just before the blocks are claimed.
  std::vector<std::optional<std::string>> looked;
  size_t looked_first = 0, looked_end = 0;
  auto look_up = [&](size_t first) -> Task<void> {
    std::vector<std::string> keys;
    uint64_t bytes = 0;
    for (size_t i = first;
         i < blocks.size() && (keys.empty() || bytes + blocks[i].length <= max_get_bytes); ++i) {
      bytes += blocks[i].length;
      keys.push_back(BlockPartKey(ref.key, blocks[i].offset));
    }
    looked_first = first;
    looked_end = first + keys.size();
    looked = co_await tails_->GetMany(std::move(keys));
    PORTAL_ASSERT(looked.size() == looked_end - first, "GetMany answered another count");
  };
  bool all = true;
  for (size_t i = 0; i < blocks.size();) {
    runs.clear();
    for (; i < blocks.size(); ++i) {
      const bool extends =
          !runs.empty() && runs.back().second == i &&
          blocks[i - 1].offset + blocks[i - 1].length == blocks[i].offset &&
          blocks[i].offset + blocks[i].length - blocks[runs.back().first].offset <= max_get_bytes;
      if (!extends && runs.size() == kRunsAtOnce) break;
      if (tails_ && i >= looked_end) co_await look_up(i);
      if (!cache_.Claim(BlockCacheKey(ref.key, blocks[i].offset), /*tentative=*/true).lead) {
        continue;
      }
      if (tails_) {
        // Verified as Block() verifies it (the checksum is the index's): a damaged or
        // stale copy is dropped, and the block fetched (the GET's bytes replace it).
        std::optional<std::string>& copy = looked[i - looked_first];
        if (copy) {
          auto extents = DecodeSstBlock(*copy, blocks[i], ref.key, key);
          copy.reset();
          if (extents.ok()) {
            ++counts.local_blocks;
            finish(i, std::move(*extents));
            continue;
          }
        }
      }
      if (extends) {
        runs.back().second = i + 1;
      } else {
        runs.emplace_back(i, i + 1);
      }
    }
    std::vector<Task<bool>> gets;
    for (auto [first, end] : runs) gets.push_back(fetch_run(first, end));
    for (bool ok : co_await WhenAll(std::move(gets))) all = all && ok;
  }
  tally();
  co_return all;
}

Task<Result<std::vector<Extent>>> SstReader::ReadAll(const SstRef& ref) {
  std::vector<Extent> out;
  out.reserve(ref.extent_count);
  CO_RETURN_IF_ERROR(co_await ForEach(ref, ref.min_block, ref.end_block, [&](const Extent& e) {
    out.push_back(e);
    return true;
  }));
  co_return out;
}

}  // namespace portal::lsm
