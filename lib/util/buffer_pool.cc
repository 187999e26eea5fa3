#include "util/buffer_pool.h"

#include <utility>

namespace portal {

std::string BufferPool::Take(size_t min_capacity) {
  std::string out;
  if (min_capacity < kMinBytes) {
    out.reserve(min_capacity);
    return out;
  }
  {
    std::lock_guard lock(mu_);
    size_t best = free_.size();
    for (size_t i = 0; i < free_.size(); ++i) {
      const size_t cap = free_[i].capacity();
      if (cap < min_capacity || cap > min_capacity + min_capacity / 8) continue;
      if (best == free_.size() || cap < free_[best].capacity()) best = i;
    }
    if (best != free_.size()) {
      out = std::move(free_[best]);
      free_.erase(free_.begin() + static_cast<std::ptrdiff_t>(best));
      pooled_ -= out.capacity();
      ++hits_;
      return out;
    }
    ++misses_;
  }
  out.reserve((min_capacity + kGranule - 1) / kGranule * kGranule);
  return out;
}

std::string TakeFrom(BufferPool* pool, size_t min_capacity) {
  if (pool) return pool->Take(min_capacity);
  std::string out;
  out.reserve(min_capacity);
  return out;
}

void BufferPool::Give(std::string&& s) {
  std::string kept = std::move(s);
  const size_t cap = kept.capacity();
  if (cap < kMinBytes) return;
  kept.clear();
  std::vector<std::string> evicted;  // freed outside the lock
  std::lock_guard lock(mu_);
  if (cap > budget_) return;
  EvictLocked(budget_ - cap, &evicted);
  pooled_ += cap;
  free_.push_back(std::move(kept));
}

void BufferPool::EvictLocked(size_t limit, std::vector<std::string>* evicted) {
  // The oldest go first: what was given back recently is what the workload makes now
  // (strings of a size nobody asks for any more must not hold the budget for good).
  while (pooled_ > limit && !free_.empty()) {
    pooled_ -= free_.front().capacity();
    evicted->push_back(std::move(free_.front()));
    free_.pop_front();
  }
}

void BufferPool::set_budget(size_t bytes) {
  std::vector<std::string> evicted;  // freed outside the lock
  std::lock_guard lock(mu_);
  budget_ = bytes;
  EvictLocked(budget_, &evicted);
}

size_t BufferPool::budget() const {
  std::lock_guard lock(mu_);
  return budget_;
}

size_t BufferPool::pooled_bytes() const {
  std::lock_guard lock(mu_);
  return pooled_;
}

uint64_t BufferPool::hits() const {
  std::lock_guard lock(mu_);
  return hits_;
}

uint64_t BufferPool::misses() const {
  std::lock_guard lock(mu_);
  return misses_;
}

}  // namespace portal
