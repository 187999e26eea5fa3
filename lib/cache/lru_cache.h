// LruCache<V>: a thread-safe, sharded LRU cache of immutable values, bounded by the sum
// of the entries' byte charges. Values are shared_ptr<const V>: a reader keeps what it
// looked up alive even if the cache evicts it meanwhile (so the bound is on what the
// cache holds, plus what readers hold at that moment).
//
// GetOrLoad() collapses concurrent misses on one key into a single load (single flight):
// 32 reads of one chunk cost one GET. Claim() / Finish() / Await() are the same single
// flight for a caller that loads several keys with one request (a coalesced ranged GET):
// it claims each key, loads the ones it leads together and finishes each; a key another
// caller is loading is awaited, not loaded again.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "env/async.h"
#include "env/env.h"
#include "env/task.h"
#include "util/assert.h"
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

  Env& env() const { return env_; }

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

  // Whether `key` is cached now (a load in progress is not); counts nothing and leaves
  // the entry's recency alone.
  bool Contains(const std::string& key) const {
    const Shard& s = shards_[std::hash<std::string>{}(key) % shards_.size()];
    std::lock_guard lock(s.mu);
    return s.index.count(key) > 0;
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

  // One key's load in progress. `tentative`: a speculative load (read-ahead) whose
  // failure says nothing about the key; its waiters load the key themselves instead.
  class Flight {
   public:
    Flight(bool tentative, uint64_t started_ns) : tentative_(tentative), started_ns_(started_ns) {}
    bool tentative() const { return tentative_; }
    uint64_t started_ns() const { return started_ns_; }

   private:
    friend class LruCache;
    using Waiter = Oneshot<std::optional<Result<Ptr>>>;
    const bool tentative_;
    const uint64_t started_ns_;
    std::mutex mu_;
    std::optional<Result<Ptr>> result_;             // GUARDED_BY(mu_)
    std::vector<std::shared_ptr<Waiter>> waiters_;  // GUARDED_BY(mu_)
  };

  // What Claim() found: the cached value, the lead (the caller loads the key and must
  // call Finish(key, ...) exactly once), or another caller's load in progress (Await it).
  struct Claimed {
    Ptr hit;
    bool lead = false;
    std::shared_ptr<Flight> flight;
  };

  Claimed Claim(const std::string& key, bool tentative = false) {
    if (Ptr hit = Lookup(key)) return Claimed{std::move(hit), false, nullptr};
    Shard& s = ShardFor(key);
    std::lock_guard lock(s.mu);
    auto it = s.index.find(key);  // raced with another loader finishing
    if (it != s.index.end()) return Claimed{it->second->value, false, nullptr};
    auto [f, fresh] = s.loading.try_emplace(key);
    if (!fresh) return Claimed{nullptr, false, f->second};
    f->second = std::make_shared<Flight>(tentative, env_.NowNanos());
    loads_.fetch_add(1, std::memory_order_relaxed);
    return Claimed{nullptr, true, nullptr};
  }

  // Ends the caller's lead on `key`: caches a successful value with its charge, and hands
  // the result to every waiter.
  void Finish(const std::string& key, Result<Ptr> value, uint64_t charge) {
    Shard& s = ShardFor(key);
    std::shared_ptr<Flight> f;
    {
      std::lock_guard lock(s.mu);
      if (value.ok()) InsertLocked(s, key, *value, charge);
      auto node = s.loading.extract(key);
      PORTAL_ASSERT(!node.empty(), "LruCache::Finish without a lead");
      f = std::move(node.mapped());
    }
    std::vector<std::shared_ptr<typename Flight::Waiter>> waiters;
    {
      std::lock_guard lock(f->mu_);
      f->result_ = value;
      waiters.swap(f->waiters_);
    }
    for (auto& w : waiters) w->Set(value);
  }

  // The flight's result, or nullopt once `timeout_ns` of Env time passed first
  // (UINT64_MAX: no timeout).
  Task<std::optional<Result<Ptr>>> Await(std::shared_ptr<Flight> f, uint64_t timeout_ns) {
    auto w = std::make_shared<typename Flight::Waiter>(env_);
    {
      std::lock_guard lock(f->mu_);
      if (f->result_) co_return *f->result_;
      f->waiters_.push_back(w);
    }
    if (timeout_ns != UINT64_MAX) {
      env_.PostAfter(timeout_ns, [w] { w->Set(std::nullopt); });
    }
    co_return co_await w->Wait();
  }

  // Looks up `key`; on a miss runs `load` once for all concurrent callers and caches a
  // successful result with the charge it reports. Errors are returned, not cached.
  // `load` must stay valid until this task completes. A tentative load met here is
  // awaited; if it fails, this caller loads the key itself.
  Task<Result<Ptr>> GetOrLoad(std::string key,
                              std::function<Task<Result<std::pair<Ptr, uint64_t>>>()> load) {
    for (;;) {
      Claimed c = Claim(key);
      if (c.hit) co_return c.hit;
      if (c.flight) {
        std::optional<Result<Ptr>> r = co_await Await(c.flight, UINT64_MAX);
        if (r->ok() || !c.flight->tentative()) co_return *r;
        continue;
      }
      Result<std::pair<Ptr, uint64_t>> loaded = co_await load();
      if (!loaded.ok()) {
        Finish(key, loaded.status(), 0);
        co_return loaded.status();
      }
      Finish(key, loaded->first, loaded->second);
      co_return loaded->first;
    }
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
    std::unordered_map<std::string, std::shared_ptr<Flight>> loading;
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
