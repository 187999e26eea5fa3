// BufferPool: large byte strings kept for reuse, so that the next segment is built in
// memory whose pages are already mapped instead of fresh pages the kernel must fault in
// and zero (that was half the CPU time of a sequential write on memory://).
//
// Producers of large objects Take() a string; whoever consumes it last (a store after
// writing it out, memory:// when it drops an object) Give()s it back. Both are optional:
// a string that is never given back is simply freed.
//
// There is no process-wide pool: whoever owns the lifetime (the daemon) makes one and
// hands a pointer to the stores and the volume it opens, and it must outlive them; a null
// BufferPool* everywhere means "no pooling" (tests, dst). The pool holds at most budget()
// bytes of capacity, evicting the oldest strings to take a new one; strings under
// kMinBytes are not kept.
//
// Thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <vector>

namespace portal {

class BufferPool {
 public:
  static constexpr size_t kMinBytes = 1 << 20;   // smaller strings are not pooled
  static constexpr size_t kGranule = 1 << 20;    // fresh capacities are rounded up to this
  static constexpr size_t kDefaultBudget = 256ull << 20;

  explicit BufferPool(size_t budget = kDefaultBudget) : budget_(budget) {}
  BufferPool(const BufferPool&) = delete;
  BufferPool& operator=(const BufferPool&) = delete;

  // An empty string with capacity() >= min_capacity: a pooled one whose capacity is at
  // most 1/8 more than needed (best fit), or a fresh one.
  std::string Take(size_t min_capacity);
  // Keeps `s` (its contents are dropped) if it is large enough and fits the budget.
  void Give(std::string&& s);

  void set_budget(size_t bytes);
  size_t budget() const;
  size_t pooled_bytes() const;  // capacity held now
  uint64_t hits() const;        // Take()s served from the pool
  uint64_t misses() const;      // Take()s of pooled size that allocated

 private:
  // Drops the oldest strings until at most `limit` bytes are pooled.
  void EvictLocked(size_t limit, std::vector<std::string>* evicted);

  mutable std::mutex mu_;
  std::deque<std::string> free_;   // GUARDED_BY(mu_), oldest first
  size_t budget_;                  // GUARDED_BY(mu_)
  size_t pooled_ = 0;              // GUARDED_BY(mu_)
  uint64_t hits_ = 0;              // GUARDED_BY(mu_)
  uint64_t misses_ = 0;            // GUARDED_BY(mu_)
};

// pool->Take(min_capacity), or with no pool a fresh string of that capacity.
std::string TakeFrom(BufferPool* pool, size_t min_capacity);

}  // namespace portal
