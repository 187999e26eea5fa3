// LruCache<V>: a thread-safe, sharded LRU cache of immutable values, bounded by the sum
// of the entries' byte charges. Values are shared_ptr<const V>: a reader keeps what it
// looked up alive even if the cache evicts it meanwhile (so the bound is on what the
// cache holds, plus what readers hold at that moment).
//
// GetOrLoad() collapses concurrent misses on one key into a single load (single flight):
// 32 reads of one chunk cost one GET.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "env/async.h"
#include "env/env.h"
#include "env/task.h"
#include "util/status.h"

namespace portal::cache {

struct CacheStats {
  uint64_t hits = 0;
  uint64_t misses = 0;
  uint64_t loads = 0;  // misses that actually loaded (the rest waited on a load)
  uint64_t usage_bytes = 0;
  uint64_t capacity_bytes = 0;
  uint64_t entries = 0;
};

template <typename V>
class LruCache {
 public:
  using Ptr = std::shared_ptr<const V>;

  LruCache(Env& env, uint64_t capacity_bytes, size_t shards = 16)
      : env_(env), capacity_(capacity_bytes), shards_(shards) {
    for (auto& s : shards_) s.capacity = std::max<uint64_t>(1, capacity_bytes / shards);
  }
  LruCache(const LruCache&) = delete;
  LruCache& operator=(const LruCache&) = delete;

  Ptr Lookup(const std::string& key) {
    Shard& s = ShardFor(key);
    std::lock_guard lock(s.mu);
    auto it = s.index.find(key);
    if (it == s.index.end()) {
      misses_.fetch_add(1, std::memory_order_relaxed);
      return nullptr;
    }
    s.lru.splice(s.lru.begin(), s.lru, it->second);
    hits_.fetch_add(1, std::memory_order_relaxed);
    return it->second->value;
  }

  // Inserts (replacing any previous value) and returns the value.
  Ptr Insert(const std::string& key, Ptr value, uint64_t charge) {
    Shard& s = ShardFor(key);
    std::lock_guard lock(s.mu);
    InsertLocked(s, key, value, charge);
    return value;
  }

  void Erase(const std::string& key) {
    Shard& s = ShardFor(key);
    std::lock_guard lock(s.mu);
    auto it = s.index.find(key);
    if (it == s.index.end()) return;
    s.usage -= it->second->charge;
    s.lru.erase(it->second);
    s.index.erase(it);
  }

  // Looks up `key`; on a miss runs `load` once for all concurrent callers and caches a
  // successful result with the charge it reports. Errors are returned, not cached.
  // `load` must stay valid until this task completes.
  Task<Result<Ptr>> GetOrLoad(std::string key,
                              std::function<Task<Result<std::pair<Ptr, uint64_t>>>()> load) {
    if (Ptr hit = Lookup(key)) co_return hit;
    Shard& s = ShardFor(key);
    std::shared_ptr<Oneshot<Result<Ptr>>> wait;
    bool leader = false;
    {
      std::lock_guard lock(s.mu);
      auto it = s.index.find(key);  // raced with another loader finishing
      if (it != s.index.end()) co_return it->second->value;
      auto& waiters = s.loading[key];
      if (waiters.empty()) leader = true;
      if (!leader) {
        wait = std::make_shared<Oneshot<Result<Ptr>>>(env_);
        waiters.push_back(wait);
      } else {
        waiters.push_back(nullptr);  // marks "loading"
      }
    }
    if (!leader) co_return co_await wait->Wait();

    loads_.fetch_add(1, std::memory_order_relaxed);
    Result<std::pair<Ptr, uint64_t>> loaded = co_await load();
    std::vector<std::shared_ptr<Oneshot<Result<Ptr>>>> waiters;
    Result<Ptr> out = loaded.ok() ? Result<Ptr>(loaded->first) : Result<Ptr>(loaded.status());
    {
      std::lock_guard lock(s.mu);
      if (loaded.ok()) InsertLocked(s, key, loaded->first, loaded->second);
      auto node = s.loading.extract(key);
      waiters = std::move(node.mapped());
    }
    for (auto& w : waiters) {
      if (w) w->Set(out);
    }
    co_return out;
  }

  CacheStats stats() const {
    CacheStats st;
    st.hits = hits_.load(std::memory_order_relaxed);
    st.misses = misses_.load(std::memory_order_relaxed);
    st.loads = loads_.load(std::memory_order_relaxed);
    st.capacity_bytes = capacity_;
    for (auto& s : shards_) {
      std::lock_guard lock(s.mu);
      st.usage_bytes += s.usage;
      st.entries += s.index.size();
    }
    return st;
  }

 private:
  struct Entry {
    std::string key;
    Ptr value;
    uint64_t charge;
  };
  struct Shard {
    mutable std::mutex mu;
    std::list<Entry> lru;  // front: most recent
    std::unordered_map<std::string, typename std::list<Entry>::iterator> index;
    std::unordered_map<std::string, std::vector<std::shared_ptr<Oneshot<Result<Ptr>>>>> loading;
    uint64_t usage = 0;
    uint64_t capacity = 0;
  };

  Shard& ShardFor(const std::string& key) {
    return shards_[std::hash<std::string>{}(key) % shards_.size()];
  }

  void InsertLocked(Shard& s, const std::string& key, Ptr value, uint64_t charge) {
    auto it = s.index.find(key);
    if (it != s.index.end()) {
      s.usage -= it->second->charge;
      s.lru.erase(it->second);
      s.index.erase(it);
    }
    if (charge > s.capacity) return;  // would evict everything; serve it uncached
    s.lru.push_front(Entry{key, std::move(value), charge});
    s.index[key] = s.lru.begin();
    s.usage += charge;
    while (s.usage > s.capacity && !s.lru.empty()) {
      Entry& victim = s.lru.back();
      s.usage -= victim.charge;
      s.index.erase(victim.key);
      s.lru.pop_back();
    }
  }

  Env& env_;
  const uint64_t capacity_;
  std::vector<Shard> shards_;
  std::atomic<uint64_t> hits_{0}, misses_{0}, loads_{0};
};

}  // namespace portal::cache
