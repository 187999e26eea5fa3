#include "util/rfc3339.h"

#include <catch2/catch.hpp>

namespace portal {
namespace {

TEST_CASE("FormatRfc3339 is UTC with microseconds, truncated", "[util]") {
  CHECK(FormatRfc3339(0) == "1970-01-01T00:00:00.000000Z");
  CHECK(FormatRfc3339(1767755083123456789) == "2026-01-07T03:04:43.123456Z");
  CHECK(FormatRfc3339(-1'000) == "1969-12-31T23:59:59.999999Z");
}

}  // namespace
}  // namespace portal
