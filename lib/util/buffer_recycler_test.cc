#include "util/buffer_recycler.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

namespace portal {
namespace {

TEST_CASE("buffer recycler reuses the memory of a dropped buffer of the same size", "[util]") {
  BufferRecycler r(64 << 20);
  auto a = r.Take(1 << 20);
  REQUIRE(a->size() == (1u << 20));
  const uint8_t* memory = a->data();
  a->data()[0] = 7;
  a.reset();
  CHECK(r.pooled_bytes() == (1u << 20));

  auto other = r.Take(2 << 20);  // another size: fresh
  CHECK(other->data() != memory);
  auto b = r.Take(1 << 20);
  CHECK(b->data() == memory);
  CHECK(b->size() == (1u << 20));
  CHECK(r.pooled_bytes() == 0);
  CHECK(r.hits() == 1);
  CHECK(r.misses() == 2);
}

TEST_CASE("buffer recycler rounds capacities up to its granule", "[util]") {
  BufferRecycler r(64 << 20);
  auto a = r.Take((1 << 20) - 4096);
  const uint8_t* memory = a->data();
  a.reset();
  CHECK(r.pooled_bytes() == (1u << 20));
  auto b = r.Take((1 << 20) - 100);  // the same granule
  CHECK(b->data() == memory);
  CHECK(b->size() == (1u << 20) - 100);
  b.reset();
  auto c = r.Take((1 << 20) + 100);  // the next granule: not the same memory
  CHECK(c->data() != memory);
}

TEST_CASE("buffer recycler keeps no small buffers", "[util]") {
  BufferRecycler r(64 << 20);
  auto a = r.Take(4096);
  REQUIRE(a->size() == 4096u);
  a.reset();
  CHECK(r.pooled_bytes() == 0);
  CHECK(r.hits() + r.misses() == 0);
}

TEST_CASE("buffer recycler holds at most its budget, dropping the oldest", "[util]") {
  BufferRecycler r(3 << 20);
  std::vector<std::shared_ptr<Buffer>> bufs;
  std::vector<const uint8_t*> memory;
  for (int i = 0; i < 4; ++i) {
    bufs.push_back(r.Take(1 << 20));
    memory.push_back(bufs.back()->data());
  }
  bufs.clear();  // given back in order 0..3: the first is dropped
  CHECK(r.pooled_bytes() == (3u << 20));
  std::vector<const uint8_t*> again;
  for (int i = 0; i < 3; ++i) {
    bufs.push_back(r.Take(1 << 20));
    again.push_back(bufs.back()->data());
  }
  CHECK(r.hits() == 3);
  CHECK(std::find(again.begin(), again.end(), memory[0]) == again.end());
  // Larger than the whole budget: never kept.
  auto huge = r.Take(4 << 20);
  huge.reset();
  CHECK(r.pooled_bytes() == 0);
}

TEST_CASE("buffer recycler buffers may outlive it", "[util]") {
  std::shared_ptr<Buffer> kept;
  {
    BufferRecycler r(8 << 20);
    kept = r.Take(1 << 20);
    kept->data()[(1 << 20) - 1] = 1;
  }
  kept.reset();  // freed, not given back to a destroyed recycler (ASan would say)
}

TEST_CASE("buffer recycler takes buffers back from other threads", "[util]") {
  BufferRecycler r(256 << 20);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&r] {
      for (int i = 0; i < 200; ++i) {
        auto b = r.Take(128 << 10);
        b->data()[0] = static_cast<uint8_t>(i);
      }
    });
  }
  for (auto& t : threads) t.join();
  CHECK(r.hits() + r.misses() == 800);
  CHECK(r.misses() <= 4);  // at most one fresh buffer per thread in flight
  CHECK(r.pooled_bytes() == r.misses() * (128u << 10));
}

// How many whole pages [p, p + n) holds, and how many of them are mapped now.
std::pair<size_t, size_t> ResidentPages(const uint8_t* p, size_t n) {
  const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(p) + page - 1) & ~(page - 1);
  const uintptr_t end = (reinterpret_cast<uintptr_t>(p) + n) & ~(page - 1);
  std::vector<unsigned char> vec((end - begin) / page);
  REQUIRE(::mincore(reinterpret_cast<void*>(begin), end - begin, vec.data()) == 0);
  return {vec.size(), static_cast<size_t>(std::count_if(
                          vec.begin(), vec.end(), [](unsigned char c) { return c & 1; }))};
}

TEST_CASE("buffer recycler hands out fresh memory already mapped", "[util]") {
  // Larger than glibc's largest mmap threshold, so the allocation is fresh pages.
  constexpr size_t kSize = 64 << 20;
  {
    std::unique_ptr<uint8_t[]> probe(new uint8_t[kSize]);
    if (!PopulateMemory(probe.get(), kSize)) {
      WARN("MADV_POPULATE_WRITE is not supported here: nothing to check");
      return;
    }
  }
  BufferRecycler r(128 << 20);
  auto b = r.Take(kSize);
  auto [pages, resident] = ResidentPages(b->data(), b->size());
  CHECK(pages > 0);
  CHECK(resident == pages);
}

TEST_CASE("TakeBuffer without a recycler is a plain buffer", "[util]") {
  auto b = TakeBuffer(nullptr, 1 << 20);
  CHECK(b->size() == (1u << 20));
}

}  // namespace
}  // namespace portal
