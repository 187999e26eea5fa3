#include "env/env.h"

#include <catch2/catch.hpp>

namespace portal {
namespace {

TEST_CASE("MillisToNanos and SaturatingAdd saturate instead of wrapping", "[env]") {
  STATIC_REQUIRE(MillisToNanos(0) == 0);
  STATIC_REQUIRE(MillisToNanos(1500) == 1'500'000'000);
  STATIC_REQUIRE(MillisToNanos(UINT64_MAX / kNanosPerMilli) ==
                 UINT64_MAX / kNanosPerMilli * kNanosPerMilli);
  STATIC_REQUIRE(MillisToNanos(UINT64_MAX / kNanosPerMilli + 1) == UINT64_MAX);
  STATIC_REQUIRE(MillisToNanos(18'446'744'073'710) == UINT64_MAX);  // wrapped to 448384
  STATIC_REQUIRE(MillisToNanos(UINT64_MAX) == UINT64_MAX);
  STATIC_REQUIRE(SaturatingAdd(1, 2) == 3);
  STATIC_REQUIRE(SaturatingAdd(UINT64_MAX - 1, 1) == UINT64_MAX);
  STATIC_REQUIRE(SaturatingAdd(UINT64_MAX - 1, 2) == UINT64_MAX);
  STATIC_REQUIRE(SaturatingAdd(5, UINT64_MAX) == UINT64_MAX);
}

}  // namespace
}  // namespace portal
