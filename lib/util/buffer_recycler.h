// BufferRecycler: the memory of large Buffers, kept for reuse once their last reference
// drops, so that recv() and memcpy land in pages that are already mapped instead of
// fresh ones the kernel must fault in and zero. NBD WRITE payloads and write-buffer slabs
// are taken from it: on memory:// they are the stored segments themselves, freed in
// bursts by GC, and glibc hands much of such memory back to the kernel (sequential 1 MiB
// writes spent about a third of their time in page faults on fresh payload buffers).
//
// Buffers of at least kMinBytes come back here when their last shared_ptr drops, from
// any thread; capacities are rounded up to kGranuleBytes, and Take() reuses only one of
// exactly the rounded size; fresh memory is populated at once (PopulateMemory below), so
// that its first use takes no page faults either. The recycler holds at most budget_bytes
// of idle memory, dropping the oldest to keep a newer one. Buffers may outlive the recycler: they are
// then simply freed. Smaller buffers are plain allocations.
//
// Whoever owns the lifetime (the daemon) makes one and hands a pointer to its users; a
// null BufferRecycler* means "no recycling" (TakeBuffer below). Thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "util/buffer.h"

namespace portal {

class BufferRecycler {
 public:
  static constexpr size_t kMinBytes = 64 << 10;      // smaller buffers are not kept
  static constexpr size_t kGranuleBytes = 64 << 10;  // capacities are rounded up to this

  explicit BufferRecycler(size_t budget_bytes);
  ~BufferRecycler();
  BufferRecycler(const BufferRecycler&) = delete;
  BufferRecycler& operator=(const BufferRecycler&) = delete;

  // A buffer of `size` bytes, contents undefined: reused memory when some of the rounded
  // capacity is kept, else fresh.
  std::shared_ptr<Buffer> Take(size_t size);

  size_t budget_bytes() const;
  size_t pooled_bytes() const;  // idle memory held now
  uint64_t hits() const;        // Take()s of kept size served from kept memory
  uint64_t misses() const;      // Take()s of kept size that allocated

 private:
  struct State;
  struct GiveBack;
  std::shared_ptr<State> state_;  // buffers hold it weakly, to give their memory back
};

// Maps the pages inside [data, data + size) now, in one system call, instead of one page
// fault per page on first touch (MADV_POPULATE_WRITE: ~1 us a page on the 2-core VM of
// our benchmarks, where a page fault costs ~17 us). Contents are unchanged. False
// when nothing was populated (an old kernel, or no whole page in the range).
bool PopulateMemory(void* data, size_t size);

// recycler->Take(size), or with no recycler a plain Buffer of `size` bytes.
std::shared_ptr<Buffer> TakeBuffer(BufferRecycler* recycler, size_t size);

}  // namespace portal
