#include "daemon/nbd_exposure.h"

#include <catch2/catch.hpp>

namespace portal::daemon {
namespace {

TEST_CASE("a warning for a plaintext NBD port reachable from other hosts, not for loopback",
          "[daemon]") {
  for (const char* quiet : {"127.0.0.1:10809", "127.1.2.3:0", "localhost:10809", "[::1]:10809",
                            "[::ffff:127.0.0.1]:1", "unix:/run/portalbd/nbd.sock"}) {
    INFO(quiet);
    CHECK(NbdExposureWarning(quiet, false).empty());
  }
  for (const char* loud : {"0.0.0.0:10809", "[::]:10809", "192.168.1.5:10809", "nbd.example:1"}) {
    INFO(loud);
    std::string w = NbdExposureWarning(loud, false);
    CHECK(w.find(std::string("NBD address ") + loud + " is not loopback and TLS is off") !=
          std::string::npos);
    CHECK(NbdExposureWarning(loud, true).empty());
  }
}

TEST_CASE("a warning for a plaintext control listener beyond loopback", "[daemon][auth]") {
  CHECK(ControlExposureWarning("127.0.0.1:7070", false).empty());
  CHECK(ControlExposureWarning("[::1]:7070", false).empty());
  CHECK(ControlExposureWarning("0.0.0.0:7070", true).empty());
  for (const char* loud : {"0.0.0.0:7070", "10.0.0.5:7070"}) {
    INFO(loud);
    CHECK(ControlExposureWarning(loud, false).find("is not loopback and TLS is off") !=
          std::string::npos);
  }
}

}  // namespace
}  // namespace portal::daemon
