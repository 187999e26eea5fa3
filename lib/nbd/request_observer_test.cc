// The Session's RequestObserver hook: every answered request is reported once, with the
// error that went on the wire and the token its OnRequest returned.
#include "nbd/request_observer.h"

#include <catch2/catch.hpp>
#include <map>

#include "nbd/protocol.h"
#include "nbd/session.h"
#include "testing/memory_volume.h"
#include "testing/nbd_script.h"
#include "util/coding.h"

namespace portal::nbd {
namespace {

using testing::Request;

constexpr uint64_t kSize = 1ull << 30;

struct Seen {
  uint16_t type;
  uint16_t flags;
  uint32_t error;
};

class TestObserver final : public RequestObserver {
 public:
  uint64_t OnRequest(const RequestHeader& h) override {
    ++requests;
    return h.cookie * 1000;  // checked on the way back
  }
  void OnReply(const RequestHeader& h, uint64_t token, uint32_t nbd_error) override {
    CHECK(token == h.cookie * 1000);
    CHECK(replies.count(h.cookie) == 0);
    replies[h.cookie] = {h.type, h.flags, nbd_error};
  }
  int requests = 0;
  std::map<uint64_t, Seen> replies;
};

// Attaches `observer` to every export it opens.
class ObservedCatalog final : public ExportCatalog {
 public:
  ObservedCatalog(std::shared_ptr<device::BlockDevice> dev, std::shared_ptr<TestObserver> o)
      : inner_(ExportInfo{"portalbd", "", kSize, false}, std::move(dev)), observer_(std::move(o)) {}
  std::vector<ExportInfo> List() override { return inner_.List(); }
  Result<ExportInfo> Lookup(std::string_view name) override { return inner_.Lookup(name); }
  Result<std::shared_ptr<OpenExport>> Open(std::string_view name) override {
    auto opened = inner_.Open(name);
    if (opened.ok()) (*opened)->observer = observer_;
    return opened;
  }

 private:
  SingleExportCatalog inner_;
  std::shared_ptr<TestObserver> observer_;
};

struct Fixture {
  std::shared_ptr<testing::MemoryVolume> device =
      std::make_shared<testing::MemoryVolume>(kSize, 4096);
  std::shared_ptr<TestObserver> observer = std::make_shared<TestObserver>();
  ObservedCatalog catalog{device, observer};
  testing::SessionDriver driver{catalog};

  Fixture() {
    std::string hello = testing::ClientFlags(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES) +
                        testing::Option(NBD_OPT_GO, testing::InfoOrGoData("portalbd"));
    REQUIRE(driver.Feed(hello) == hello.size());
    REQUIRE(driver.session().in_transmission());
    driver.TakeOutput();
  }
};

TEST_CASE("RequestObserver sees successes, invalid requests and drained WRITEs", "[nbd]") {
  Fixture f;
  f.driver.Feed(Request(NBD_CMD_WRITE, 1, 0, 4096, NBD_CMD_FLAG_FUA, std::string(4096, 'a')) +
                Request(NBD_CMD_READ, 2, 0, 4096) + Request(NBD_CMD_FLUSH, 3, 0, 0) +
                Request(NBD_CMD_READ, 4, kSize, 512) +                         // EINVAL
                Request(NBD_CMD_WRITE, 5, kSize, 8, 0, std::string(8, 'b')) +  // drained
                Request(NBD_CMD_WRITE, 6, 0, 0, 0x8000) +                      // bad flag
                Request(NBD_CMD_DISC, 7, 0, 0));
  f.driver.TakeOutput();
  CHECK(f.observer->requests == 6);  // DISC is not a request
  REQUIRE(f.observer->replies.size() == 6);
  const auto& r = f.observer->replies;
  CHECK((r.at(1).type == NBD_CMD_WRITE && r.at(1).flags == NBD_CMD_FLAG_FUA && r.at(1).error == 0));
  CHECK((r.at(2).type == NBD_CMD_READ && r.at(2).error == 0));
  CHECK((r.at(3).type == NBD_CMD_FLUSH && r.at(3).error == 0));
  CHECK(r.at(4).error == NBD_EINVAL);
  CHECK(r.at(5).error == NBD_ENOSPC);
  CHECK(r.at(6).error != 0);
}

TEST_CASE("RequestObserver sees shutdown answers, not an unanswered WRITE", "[nbd]") {
  Fixture f;
  // A whole WRITE, then one with half its payload: Shutdown answers it with ESHUTDOWN.
  std::string bytes = Request(NBD_CMD_WRITE, 7, 0, 4096, 0, std::string(4096, 'a'));
  bytes += Request(NBD_CMD_WRITE, 8, 4096, 8192, 0, std::string(4096, 'b'));
  REQUIRE(f.driver.Feed(bytes) == bytes.size());
  f.driver.session().Shutdown();
  f.driver.TakeOutput();
  CHECK(f.observer->replies.size() == 2);
  CHECK(f.observer->replies.at(7).error == 0);
  CHECK(f.observer->replies.at(8).error == NBD_ESHUTDOWN);

  // The peer going away mid-payload: no reply is queued, so nothing is reported.
  Fixture g;
  g.driver.Feed(Request(NBD_CMD_WRITE, 9, 0, 8192, 0, std::string(100, 'c')));
  g.driver.session().OnInputEof();
  g.driver.TakeOutput();
  CHECK(g.observer->requests == 1);
  CHECK(g.observer->replies.empty());
}

}  // namespace
}  // namespace portal::nbd
