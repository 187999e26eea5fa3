#include "util/mapped_blocks.h"

#include <sys/mman.h>
#include <unistd.h>

#include "util/assert.h"

namespace portal {
namespace {

size_t RoundToPages(size_t size) {
  static const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  return (size + page - 1) / page * page;
}

}  // namespace

MappedBlocks& MappedBlocks::Global() {
  static MappedBlocks* blocks = new MappedBlocks();  // never destroyed: owners may outlive main
  return *blocks;
}

MappedBlocks::~MappedBlocks() {
  for (const Free& f : cache_) munmap(f.p, f.size);
}

std::shared_ptr<uint8_t[]> MappedBlocks::Allocate(size_t size) {
  size = RoundToPages(size == 0 ? 1 : size);
  uint8_t* p = nullptr;
  {
    std::lock_guard lock(mu_);
    for (size_t i = 0; i < cache_.size(); ++i) {
      if (cache_[i].size != size) continue;
      p = cache_[i].p;
      cached_ -= size;
      cache_[i] = cache_.back();
      cache_.pop_back();
      break;
    }
    if (!p) ++mapped_;
  }
  if (!p) {
    void* m = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    PORTAL_ASSERT(m != MAP_FAILED, "out of memory mapping a block");
    p = static_cast<uint8_t*>(m);
  }
  return std::shared_ptr<uint8_t[]>(p, [this, size](uint8_t* q) { Release(q, size); });
}

void MappedBlocks::Release(uint8_t* p, size_t size) {
  {
    std::lock_guard lock(mu_);
    if (cached_ + size <= cache_bytes_) {
      cache_.push_back(Free{p, size});
      cached_ += size;
      return;
    }
    ++unmapped_;
  }
  munmap(p, size);
}

size_t MappedBlocks::cached_bytes() const {
  std::lock_guard lock(mu_);
  return cached_;
}

uint64_t MappedBlocks::mapped() const {
  std::lock_guard lock(mu_);
  return mapped_;
}

uint64_t MappedBlocks::unmapped() const {
  std::lock_guard lock(mu_);
  return unmapped_;
}

}  // namespace portal
