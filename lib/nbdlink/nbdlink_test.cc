#include "nbdlink/nbdlink.h"

#include <catch2/catch.hpp>

namespace portal::nbdlink {
namespace {

TEST_CASE("NBD device paths parse strictly", "[device]") {
  CHECK(*ParseDevicePath("/dev/nbd0") == 0);
  CHECK(*ParseDevicePath("/dev/nbd15") == 15);
  CHECK(DevicePath(15) == "/dev/nbd15");
  for (const char* bad : {"", "/dev/nbd", "nbd0", "/dev/nbd01", "/dev/nbd-1", "/dev/nbd1p1",
                          "/dev/sda", "/dev/nbd 1", "/dev/nbd99999999999999"}) {
    INFO(bad);
    CHECK(ParseDevicePath(bad).status().code() == Status::Code::kInvalidArgument);
  }
}

}  // namespace
}  // namespace portal::nbdlink
