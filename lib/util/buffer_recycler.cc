#include "util/buffer_recycler.h"

#include <sys/mman.h>
#include <unistd.h>

#include <deque>
#include <mutex>
#include <vector>

namespace portal {

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23  // Linux 5.14; older kernels answer EINVAL (then: no-op)
#endif

bool PopulateMemory(void* data, size_t size) {
  static const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(data) + page - 1) & ~(page - 1);
  const uintptr_t end = (reinterpret_cast<uintptr_t>(data) + size) & ~(page - 1);
  if (end <= begin) return false;
  // Maps the pages as a write would, without writing: bytes already there stay.
  return ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_POPULATE_WRITE) == 0;
}

struct BufferRecycler::State {
  struct Kept {
    size_t capacity;
    std::unique_ptr<uint8_t[]> memory;
  };

  explicit State(size_t budget) : budget(budget) {}

  void Give(std::unique_ptr<uint8_t[]> memory, size_t capacity) {
    std::vector<Kept> evicted;  // freed outside the lock
    std::lock_guard lock(mu);
    if (capacity > budget) {
      evicted.push_back(Kept{capacity, std::move(memory)});
      return;
    }
    // The oldest go first: what came back recently is what the workload uses now.
    while (pooled + capacity > budget) {
      pooled -= free.front().capacity;
      evicted.push_back(std::move(free.front()));
      free.pop_front();
    }
    pooled += capacity;
    free.push_back(Kept{capacity, std::move(memory)});
  }

  std::unique_ptr<uint8_t[]> Find(size_t capacity) {
    std::lock_guard lock(mu);
    // Newest first: with one size in use (the usual case) that is the last one.
    for (size_t i = free.size(); i-- > 0;) {
      if (free[i].capacity != capacity) continue;
      std::unique_ptr<uint8_t[]> out = std::move(free[i].memory);
      free.erase(free.begin() + static_cast<std::ptrdiff_t>(i));
      pooled -= capacity;
      ++hits;
      return out;
    }
    ++misses;
    return nullptr;
  }

  mutable std::mutex mu;
  std::deque<Kept> free;  // GUARDED_BY(mu), oldest first
  const size_t budget;
  size_t pooled = 0;    // GUARDED_BY(mu)
  uint64_t hits = 0;    // GUARDED_BY(mu)
  uint64_t misses = 0;  // GUARDED_BY(mu)
};

// Gives a kept-size buffer's memory back to the recycler, if it still exists.
struct BufferRecycler::GiveBack {
  std::weak_ptr<State> state;
  size_t capacity;
  void operator()(Buffer* b) const {
    std::unique_ptr<uint8_t[]> memory = b->Release();
    delete b;
    if (auto s = state.lock()) s->Give(std::move(memory), capacity);
  }
};

BufferRecycler::BufferRecycler(size_t budget_bytes)
    : state_(std::make_shared<State>(budget_bytes)) {}

BufferRecycler::~BufferRecycler() = default;

std::shared_ptr<Buffer> BufferRecycler::Take(size_t size) {
  if (size < kMinBytes) return std::make_shared<Buffer>(size);
  const size_t capacity = (size + kGranuleBytes - 1) / kGranuleBytes * kGranuleBytes;
  std::unique_ptr<uint8_t[]> memory = state_->Find(capacity);
  if (!memory) {
    memory.reset(new uint8_t[capacity]);
    PopulateMemory(memory.get(), capacity);
  }
  return std::shared_ptr<Buffer>(new Buffer(std::move(memory), size),
                                 GiveBack{state_, capacity});
}

size_t BufferRecycler::budget_bytes() const { return state_->budget; }

size_t BufferRecycler::pooled_bytes() const {
  std::lock_guard lock(state_->mu);
  return state_->pooled;
}

uint64_t BufferRecycler::hits() const {
  std::lock_guard lock(state_->mu);
  return state_->hits;
}

uint64_t BufferRecycler::misses() const {
  std::lock_guard lock(state_->mu);
  return state_->misses;
}

std::shared_ptr<Buffer> TakeBuffer(BufferRecycler* recycler, size_t size) {
  if (recycler) return recycler->Take(size);
  return std::make_shared<Buffer>(size);
}

}  // namespace portal
