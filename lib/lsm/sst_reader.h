// SstReader: reads map SSTs from the object store through the block cache. Indexes and
// blocks are fetched on demand with ranged GETs and cached, so memory is bounded by the
// cache, never by the size of the map. With a metadata cache (`tails`), an index's tail
// and each data block read or warmed are kept there too, so that a restart costs no GET
// for them. Bytes that fail verification are fetched again
// (objstore::RefetchCorrupt) before a read fails with Corruption naming the SST; only
// verified bytes reach a cache.
//
// Thread-safe. The store, cache and `corrupt_refetches` counter must outlive the reader.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string_view>
#include <vector>

#include "cache/block_cache.h"
#include "cache/persistent_cache.h"
#include "lsm/extent.h"
#include "lsm/sst_format.h"
#include "objstore/object_store.h"

namespace portal::lsm {

class SstReader {
 public:
  // `keyring`: the volume's encryption keys (null: unencrypted); must outlive the reader.
  SstReader(objstore::ObjectStore& store, cache::BlockCache& cache,
            cache::PersistentCache* tails = nullptr,
            std::atomic<uint64_t>* corrupt_refetches = nullptr,
            const crypto::Keyring* keyring = nullptr, std::string cache_scope = "")
      : store_(store),
        cache_(cache),
        tails_(tails),
        corrupt_refetches_(corrupt_refetches),
        keyring_(keyring),
        cache_scope_(std::move(cache_scope)) {}

  // What SSTs are written with (RunCompaction's outputs): this reader's keyring.
  const crypto::Keyring* keyring() const { return keyring_; }

  // The block cache key of `key`'s index: "<scope>si/<key>" (blocks: "<scope>sb/<key>/<offset>").
  // The scope keeps volumes apart in a block cache they share; "" in one of its own.
  std::string IndexCacheKey(const std::string& key) const { return cache_scope_ + "si/" + key; }
  std::string BlockCacheKey(const std::string& key, uint64_t offset) const {
    return cache_scope_ + "sb/" + key + "/" + std::to_string(offset);
  }

  // The metadata cache's key of a data block: "<key>@<offset>", a part of `key` (erased
  // with it: cache::PersistentCache::Erase).
  static std::string BlockPartKey(const std::string& key, uint64_t offset) {
    return key + "@" + std::to_string(offset);
  }

  // Keeps a freshly written SST in the metadata cache (none: nothing), as Index, Block
  // and Warm would keep it after fetching it: the tail (meta + trailer) under `ref.key`,
  // each data block under BlockPartKey, in one PutMany. `bytes` is the whole object and
  // `index` what SstBuilder::Finish made of it. Call only once the PUT of exactly these
  // bytes under `ref.key` succeeded: the cache holds only what the store holds, and a
  // key is never stored with other bytes (map/<epoch>-<n>.sst: epochs are taken by a
  // conditional manifest create, n counts within one). An SST that is then never
  // committed is an orphan; GC erases its rows when it deletes it, and until then they
  // are bytes the store holds under that key.
  void KeepWritten(const SstRef& ref, const SstIndex& index, std::string_view bytes);

  // What Warm did, summed over its calls (LsmVolume logs a warm-up's share).
  struct WarmStats {
    uint64_t ssts = 0;           // Warm calls
    uint64_t blocks = 0;         // data blocks of the SSTs warmed
    uint64_t local_blocks = 0;   // of them, taken from the metadata cache
    uint64_t local_indexes = 0;  // indexes taken from the metadata cache
    uint64_t gets = 0;           // GETs of indexes and blocks
    uint64_t get_bytes = 0;

    WarmStats& operator+=(const WarmStats& o) {
      ssts += o.ssts;
      blocks += o.blocks;
      local_blocks += o.local_blocks;
      local_indexes += o.local_indexes;
      gets += o.gets;
      get_bytes += o.get_bytes;
      return *this;
    }
    // What happened since `before` (an earlier warm_stats()).
    WarmStats operator-(const WarmStats& before) const {
      return {ssts - before.ssts,
              blocks - before.blocks,
              local_blocks - before.local_blocks,
              local_indexes - before.local_indexes,
              gets - before.gets,
              get_bytes - before.get_bytes};
    }
  };
  WarmStats warm_stats() const {
    std::lock_guard lock(warm_mu_);
    return warm_;
  }

  // `counts` (Warm's): where the index came from, if this call loaded it.
  Task<Result<std::shared_ptr<const SstIndex>>> Index(const SstRef& ref,
                                                      WarmStats* counts = nullptr);
  // `key`: the SST's index's key (SstIndex::key; null when unencrypted).
  Task<Result<std::shared_ptr<const std::vector<Extent>>>> Block(
      const SstRef& ref, const SstIndexEntry& entry, const crypto::ObjectKey* key = nullptr);
  // Calls fn for every extent of `ref` overlapping [first, end), clipped, in order; stops
  // early when fn returns false.
  Task<Status> ForEach(const SstRef& ref, uint64_t first, uint64_t end,
                       std::function<bool(const Extent&)> fn);
  // All extents (for compaction).
  Task<Result<std::vector<Extent>>> ReadAll(const SstRef& ref);

  // Loads `ref`'s index (as Index does) and every block not cached or on its way into the
  // block cache: from the metadata cache where it holds a copy (looked up at most
  // `max_get_bytes` of blocks at a time, each verified against the index as Block verifies
  // it; a damaged or stale copy is dropped and the block fetched), the rest in ranged GETs
  // of adjacent blocks of at most `max_get_bytes` each, at most 4 in flight, through
  // `once` (a store without retries: a failure is dropped). The blocks fetched are kept in
  // the metadata cache under BlockPartKey, as Block keeps them, so either one's copies
  // serve the other after a restart. Each block is claimed tentatively just before its
  // copy is checked or its GET starts: a read that needs one meanwhile waits for that
  // instead of issuing its own GET, and fetches it itself if the GET fails. Every block is
  // verified as Block verifies it; a damaged one is dropped, never cached. Returns whether
  // every GET succeeded. For warming the map after open (LsmVolume::WarmMap).
  Task<bool> Warm(const SstRef& ref, objstore::ObjectStore& once, uint64_t max_get_bytes);

 private:
  // A decoded block's charge in the block cache.
  static uint64_t BlockCharge(const std::vector<Extent>& extents) {
    return extents.size() * sizeof(Extent) + 64;
  }

  objstore::ObjectStore& store_;
  cache::BlockCache& cache_;
  cache::PersistentCache* tails_;  // may be null
  std::atomic<uint64_t>* corrupt_refetches_;  // may be null; see RefetchCorrupt
  const crypto::Keyring* keyring_;            // may be null
  const std::string cache_scope_;
  mutable std::mutex warm_mu_;
  WarmStats warm_;  // GUARDED_BY(warm_mu_)
};

}  // namespace portal::lsm
