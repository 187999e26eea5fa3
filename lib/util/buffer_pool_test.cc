#include "util/buffer_pool.h"

#include <catch2/catch.hpp>

namespace portal {
namespace {

TEST_CASE("buffer pool reuses a given-back buffer of fitting size", "[util]") {
  BufferPool pool(64 << 20);
  std::string a = pool.Take(4 << 20);
  REQUIRE(a.capacity() >= (4u << 20));
  CHECK(a.empty());
  a.assign(3 << 20, 'x');
  const char* storage = a.data();
  pool.Give(std::move(a));
  CHECK(pool.pooled_bytes() >= (4u << 20));

  // Too large a request for it: fresh. A fitting one: the same storage, emptied.
  std::string big = pool.Take(16 << 20);
  CHECK(big.data() != storage);
  std::string b = pool.Take((4 << 20) - 100);
  CHECK(b.data() == storage);
  CHECK(b.empty());
  CHECK(pool.pooled_bytes() == 0);
  CHECK(pool.hits() == 1);
  CHECK(pool.misses() == 2);
}

TEST_CASE("buffer pool does not hand out a buffer much larger than asked", "[util]") {
  BufferPool pool(256 << 20);
  pool.Give(pool.Take(64 << 20));
  std::string small = pool.Take(2 << 20);
  CHECK(small.capacity() < (4u << 20));
  CHECK(pool.pooled_bytes() >= (64u << 20));
}

TEST_CASE("buffer pool keeps within its budget and ignores small strings", "[util]") {
  BufferPool pool(10 << 20);
  pool.Give(std::string(1000, 'a'));
  CHECK(pool.pooled_bytes() == 0);
  pool.Give(pool.Take(4 << 20));
  pool.Give(pool.Take(5 << 20));
  CHECK(pool.pooled_bytes() == (9u << 20));
  pool.Give(pool.Take(16 << 20));  // larger than the whole budget: freed
  CHECK(pool.pooled_bytes() == (9u << 20));
  pool.set_budget(0);
  CHECK(pool.pooled_bytes() == 0);
}

TEST_CASE("buffer pool evicts its oldest strings for a new one", "[util]") {
  // Sizes nobody asks for any more must not hold the budget: after a burst of 4 MiB
  // strings, the 8 MiB ones a new workload gives back are kept and served.
  BufferPool pool(16 << 20);
  std::vector<std::string> small;
  for (int i = 0; i < 4; ++i) small.push_back(pool.Take(4 << 20));
  for (auto& s : small) pool.Give(std::move(s));
  CHECK(pool.pooled_bytes() == (16u << 20));
  std::string big = pool.Take(8 << 20);
  const char* storage = big.data();
  pool.Give(std::move(big));
  CHECK(pool.pooled_bytes() == (16u << 20));  // two 4 MiB strings went
  std::string again = pool.Take(8 << 20);
  CHECK(again.data() == storage);
  CHECK(pool.hits() == 1);
  CHECK(pool.pooled_bytes() == (8u << 20));
}

}  // namespace
}  // namespace portal
