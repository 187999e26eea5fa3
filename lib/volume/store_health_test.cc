#include "volume/store_health.h"

#include <catch2/catch.hpp>

namespace portal::volume {
namespace {

constexpr uint64_t kSec = 1'000'000'000;

TEST_CASE("StoreHealth logs a failure's start, once a minute while it lasts, and its end",
          "[volume]") {
  StoreHealth h("segment upload", ", and FLUSH/FUA wait until it succeeds");
  CHECK(!h.Succeeded(0));  // healthy: nothing to say
  const int64_t wall0 = 1767225600LL * int64_t(kSec);
  int lines = 0;
  std::string first;
  // Ten minutes of retries, one every 500 ms.
  for (uint64_t t = 10 * kSec; t < 610 * kSec; t += kSec / 2) {
    auto line =
        h.Failed(Status::Unavailable("disk full"), "seg/1.seg", t, wall0 + int64_t(t - 10 * kSec));
    if (line) {
      if (lines == 0) first = *line;
      ++lines;
    }
  }
  CHECK(lines == 10);  // the start, then one per minute: not 1200
  CHECK(first ==
        "store failing: segment upload failed; retrying, and FLUSH/FUA wait until it succeeds "
        "key=seg/1.seg error=\"Unavailable: disk full\"");
  CHECK(first.find("disk full") != std::string::npos);
  CHECK(h.state().failing);
  CHECK(h.state().since_wall_ns == wall0);
  CHECK(h.state().failed_attempts == 1200);
  CHECK(h.state().error == "Unavailable: disk full");

  auto end = h.Succeeded(610 * kSec);
  REQUIRE(end);
  CHECK(*end ==
        "store recovered: segment upload succeeds again after failing for 10m0s (1200 failed "
        "attempts)");
  CHECK(!h.state().failing);
  CHECK(h.state().error.empty());
  CHECK(!h.Succeeded(611 * kSec));  // said once

  // A new failure starts a new stretch, logged at once.
  CHECK(h.Failed(Status::IOError("x"), "seg/2.seg", 700 * kSec, wall0 + 690 * int64_t(kSec)));
  CHECK(h.state().failed_attempts == 1);
}

TEST_CASE("FormatDuration", "[volume]") {
  CHECK(FormatDuration(0) == "0s");
  CHECK(FormatDuration(59 * kSec) == "59s");
  CHECK(FormatDuration(192 * kSec) == "3m12s");
  CHECK(FormatDuration(7500 * kSec) == "2h5m");
}

}  // namespace
}  // namespace portal::volume
