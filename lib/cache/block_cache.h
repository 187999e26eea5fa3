// The volume's one bounded cache (block_cache_size_bytes) for every kind of cached
// object: decoded chunks, SST indexes and blocks, segment footers. Keys carry a kind
// prefix ("c/", "si/", "sb/", "sf/") so kinds never collide; values are typed through
// CacheValue<T>.
#pragma once

#include <memory>
#include <utility>

#include "cache/lru_cache.h"

namespace portal::cache {

struct CacheEntry {
  virtual ~CacheEntry() = default;
};

template <typename T>
struct CacheValue final : CacheEntry {
  explicit CacheValue(T v) : value(std::move(v)) {}
  T value;
};

using BlockCache = LruCache<CacheEntry>;

// Loads a typed value through the cache: `load` returns (value, charge in bytes).
template <typename T, typename Load>
Task<Result<std::shared_ptr<const CacheValue<T>>>> GetTyped(BlockCache& cache, std::string key,
                                                            Load load) {
  auto r = co_await cache.GetOrLoad(
      std::move(key),
      [&load]() -> Task<Result<std::pair<std::shared_ptr<const CacheEntry>, uint64_t>>> {
        Result<std::pair<T, uint64_t>> v = co_await load();
        if (!v.ok()) co_return v.status();
        auto entry = std::make_shared<const CacheValue<T>>(std::move(v->first));
        co_return std::make_pair(std::shared_ptr<const CacheEntry>(std::move(entry)), v->second);
      });
  if (!r.ok()) co_return r.status();
  co_return std::static_pointer_cast<const CacheValue<T>>(*r);
}

}  // namespace portal::cache
