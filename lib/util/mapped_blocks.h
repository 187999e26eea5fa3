// MappedBlocks: large byte blocks straight from mmap, for memory that lives long and is
// freed in bulk (the write buffer's slabs, which memory:// keeps as segment data). glibc
// would serve 1 MiB from its heap (its mmap threshold rises to the largest block freed)
// and keep freed heap memory for reuse: ~0.5 GiB of resident memory above the live data
// under sustained random overwrites. Here a freed block is cached for the next
// Allocate (its pages stay mapped) while the cache is under its budget, else unmapped.
//
//   std::shared_ptr<uint8_t[]> slab = MappedBlocks::Global().Allocate(1 << 20);
//
// Thread-safe. Blocks are not zeroed (fresh ones are, by the kernel).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

namespace portal {

class MappedBlocks {
 public:
  static constexpr size_t kDefaultCacheBytes = 64ull << 20;

  explicit MappedBlocks(size_t cache_bytes = kDefaultCacheBytes) : cache_bytes_(cache_bytes) {}
  MappedBlocks(const MappedBlocks&) = delete;
  MappedBlocks& operator=(const MappedBlocks&) = delete;
  ~MappedBlocks();

  static MappedBlocks& Global();

  // A block of `size` bytes (rounded up to pages); freed when the last owner lets go.
  // Aborts if the kernel has no memory (as operator new would throw).
  std::shared_ptr<uint8_t[]> Allocate(size_t size);

  size_t cached_bytes() const;
  uint64_t mapped() const;    // blocks mapped fresh
  uint64_t unmapped() const;  // blocks given back to the kernel

 private:
  void Release(uint8_t* p, size_t size);

  struct Free {
    uint8_t* p;
    size_t size;
  };
  mutable std::mutex mu_;
  std::vector<Free> cache_;  // GUARDED_BY(mu_)
  size_t cached_ = 0;        // GUARDED_BY(mu_)
  uint64_t mapped_ = 0;      // GUARDED_BY(mu_)
  uint64_t unmapped_ = 0;    // GUARDED_BY(mu_)
  const size_t cache_bytes_;
};

}  // namespace portal
