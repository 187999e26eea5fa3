// PeerDeadline's rules on plain numbers, and the PeerWait a Session reports for a client
// that trickles a WRITE, stops reading, or sits idle.
#include "nbd/peer_deadline.h"

#include <catch2/catch.hpp>

#include "nbd/session.h"
#include "testing/memory_volume.h"
#include "testing/nbd_script.h"

namespace portal::nbd {
namespace {

using testing::ClientFlags;
using testing::InfoOrGoData;
using testing::Option;
using testing::Request;
using testing::SessionDriver;

TEST_CASE("peer deadline: a request must complete within the timeout, bytes or not", "[nbd]") {
  PeerDeadline d({.request_timeout_ms = 1000, .idle_timeout_ms = 0});
  CHECK(d.Update({}, 0) == 0);  // nothing owed: no deadline
  CHECK(d.Update({.request = 1}, 100) == 1100);
  // More bytes of the same request arrive: the deadline does not move.
  CHECK(d.Update({.request = 1}, 900) == 1100);
  CHECK(d.Expired({.request = 1}, 1099) == nullptr);
  CHECK(std::string(d.Expired({.request = 1}, 1100)) == "request");
  // The next request starts its own clock.
  CHECK(d.Update({.request = 2}, 1050) == 2050);
  CHECK(d.Expired({.request = 2}, 1100) == nullptr);
}

TEST_CASE("peer deadline: a reply must be taken, idle only when asked", "[nbd]") {
  PeerDeadline d({.request_timeout_ms = 1000, .idle_timeout_ms = 0});
  CHECK(d.Update({.reply = 3}, 0) == 1000);
  CHECK(d.Update({.reply = 4}, 500) == 1500);  // one chunk went: a new wait
  CHECK(std::string(d.Expired({.reply = 4}, 1500)) == "reply");
  CHECK(d.Update({.idle = 9}, 2000) == 0);  // idle_timeout_ms = 0: kept forever
  CHECK(d.Expired({.idle = 9}, 1'000'000'000) == nullptr);

  PeerDeadline i({.request_timeout_ms = 1000, .idle_timeout_ms = 5000});
  CHECK(i.Update({.idle = 1}, 0) == 5000);
  CHECK(i.Update({.request = 2}, 4000) == 5000);  // a request: no longer idle
  CHECK(i.Update({.idle = 2}, 4500) == 9500);     // idle again, from now
  CHECK(std::string(i.Expired({.idle = 2}, 9500)) == "idle");
  // Both at once: the earliest.
  CHECK(i.Update({.request = 3, .reply = 7}, 10'000) == 11'000);
}

constexpr uint64_t kSize = 1 << 20;

struct Attached {
  Attached() {
    device = std::make_shared<testing::MemoryVolume>(kSize, 4096);
    catalog =
        std::make_unique<SingleExportCatalog>(ExportInfo{"portalbd", "", kSize, false}, device);
    driver = std::make_unique<SessionDriver>(*catalog);
    CHECK(driver->session().peer_wait().request == 0);  // handshake: its own timer
    driver->Feed(ClientFlags(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES) +
                 Option(NBD_OPT_GO, InfoOrGoData("portalbd")));
    driver->TakeOutput();
    REQUIRE(driver->session().in_transmission());
  }
  PeerWait wait() { return driver->session().peer_wait(); }
  std::shared_ptr<testing::MemoryVolume> device;
  std::unique_ptr<SingleExportCatalog> catalog;
  std::unique_ptr<SessionDriver> driver;
};

TEST_CASE("session peer wait: one number per request from its first byte to its last", "[nbd]") {
  Attached a;
  PeerWait idle = a.wait();
  CHECK(idle.request == 0);
  CHECK(idle.reply == 0);
  CHECK(idle.idle != 0);
  std::string write = Request(NBD_CMD_WRITE, 1, 0, 4096, 0, std::string(4096, 'w'));
  a.driver->Feed(write.substr(0, 5));  // part of the header
  const uint64_t first = a.wait().request;
  CHECK(first != 0);
  CHECK(a.wait().idle == 0);
  a.driver->Feed(write.substr(5, 20));  // the header and 9 payload bytes
  CHECK(a.wait().request == first);     // still the same request
  a.driver->Feed(write.substr(25));
  CHECK(a.wait().request == 0);
  CHECK(a.wait().reply != 0);  // its reply waits for the client
  a.driver->TakeOutput();
  CHECK(a.wait().reply == 0);
  CHECK(a.wait().idle != 0);
  CHECK(a.wait().idle != idle.idle);  // a request went by: the idle clock restarts
  a.driver->Feed(write.substr(0, 1));
  CHECK(a.wait().request != 0);
  CHECK(a.wait().request != first);
}

TEST_CASE("session peer wait: replies stay owed after the client half-closes", "[nbd]") {
  Attached a;
  a.driver->Feed(Request(NBD_CMD_READ, 1, 0, 4096));
  CHECK(a.wait().reply != 0);
  a.driver->session().OnInputEof();  // draining: the reply must still be taken
  CHECK(a.wait().reply != 0);
  CHECK(a.wait().request == 0);
  CHECK(a.wait().idle == 0);
  a.driver->TakeOutput();
  CHECK(a.wait().reply == 0);
}

}  // namespace
}  // namespace portal::nbd
