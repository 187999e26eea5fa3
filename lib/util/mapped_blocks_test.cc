#include "util/mapped_blocks.h"

#include <catch2/catch.hpp>

#include <cstring>

namespace portal {
namespace {

TEST_CASE("mapped blocks are reused up to the cache budget, then unmapped", "[util]") {
  MappedBlocks blocks(2 << 20);
  auto a = blocks.Allocate(1 << 20);
  auto b = blocks.Allocate(1 << 20);
  auto c = blocks.Allocate(1 << 20);
  std::memset(a.get(), 0xab, 1 << 20);  // writable, whole
  CHECK(blocks.mapped() == 3);
  uint8_t* first = a.get();
  a.reset();
  b.reset();
  c.reset();  // past the 2 MiB budget: unmapped
  CHECK(blocks.cached_bytes() == (2u << 20));
  CHECK(blocks.unmapped() == 1);
  auto d = blocks.Allocate(1 << 20);  // from the cache
  CHECK(blocks.mapped() == 3);
  CHECK(blocks.cached_bytes() == (1u << 20));
  auto e = blocks.Allocate(1 << 20);
  CHECK((d.get() == first || e.get() == first));
  auto odd = blocks.Allocate(5000);  // another size: fresh
  CHECK(blocks.mapped() == 4);
  odd[4999] = 1;
}

}  // namespace
}  // namespace portal
