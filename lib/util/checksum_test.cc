#include "util/checksum.h"

#include <xxhash.h>

#include <catch2/catch.hpp>
#include <string>

namespace portal {
namespace {

TEST_CASE("Checksum64 is XXH3-64 whatever implementation the CPU dispatch picks", "[util]") {
  // Stored checksums must not depend on the machine that wrote them.
  std::string data;
  for (size_t i = 0; i < (1 << 17) + 13; ++i) data.push_back(static_cast<char>(i * 131 + i / 7));
  for (size_t n : {size_t{0}, size_t{1}, size_t{16}, size_t{17}, size_t{128}, size_t{129},
                   size_t{240}, size_t{241}, size_t{4096}, size_t{65536}, data.size()}) {
    INFO("length " << n);
    CHECK(Checksum64(std::string_view(data).substr(0, n)) == XXH3_64bits(data.data(), n));
    CHECK(Checksum64(data.data() + 3, n > 3 ? n - 3 : 0) ==
          XXH3_64bits(data.data() + 3, n > 3 ? n - 3 : 0));
  }
}

}  // namespace
}  // namespace portal
