// The server-wide in-flight budget alone, and shared by many sessions: a session whose
// request does not fit stops reading and is woken when another gives bytes back; no
// request fails; the budget is never exceeded.
#include "nbd/inflight_budget.h"

#include <catch2/catch.hpp>
#include <memory>
#include <random>
#include <vector>

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
using testing::SimpleReply;

TEST_CASE("budget: takes what fits, wakes waiters once when bytes come back", "[nbd]") {
  InflightBudget b(100);
  int woken = 0;
  bool taken = false;
  auto l1 = b.TryTake(
      60, [&] { ++woken; }, &taken);
  CHECK(taken);
  auto l2 = b.TryTake(
      50, [&] { ++woken; }, &taken);
  CHECK_FALSE(taken);
  CHECK(l2.bytes() == 0);
  CHECK(b.waiters() == 1);
  auto l3 = b.TryTake(
      40, [&] { ++woken; }, &taken);
  CHECK(taken);
  CHECK(b.used_bytes() == 100);
  l3.Reset();
  CHECK(woken == 1);
  CHECK(b.waiters() == 0);
  l1 = InflightBudget::Lease();  // move-assigning gives the old bytes back
  CHECK(b.used_bytes() == 0);
  CHECK(woken == 1);  // nobody was waiting any more
  CHECK(b.peak_bytes() == 100);
}

TEST_CASE("budget: a request larger than the budget runs alone, never waits forever", "[nbd]") {
  InflightBudget b(100);
  bool taken = false;
  auto big = b.TryTake(
      1000, [] {}, &taken);
  CHECK(taken);
  auto small = b.TryTake(
      1, [] {}, &taken);
  CHECK_FALSE(taken);
  big.Reset();
  small = b.TryTake(
      1, [] {}, &taken);
  CHECK(taken);
  CHECK_FALSE(b.TryTake(
                   1000, [] {}, &taken)
                  .bytes());
  CHECK_FALSE(taken);
}

constexpr uint64_t kSize = 4 << 20;
constexpr uint32_t kBlock = 4096;

std::string Attach() {
  return ClientFlags(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES) +
         Option(NBD_OPT_GO, InfoOrGoData("portalbd"));
}

struct Sessions {
  Sessions(int n, uint64_t budget_bytes) : budget(budget_bytes) {
    device = std::make_shared<testing::MemoryVolume>(kSize, kBlock);
    catalog =
        std::make_unique<SingleExportCatalog>(ExportInfo{"portalbd", "", kSize, false}, device);
    Session::Options o;
    o.budget = &budget;
    for (int i = 0; i < n; ++i) {
      drivers.push_back(std::make_unique<SessionDriver>(*catalog, o));
      drivers.back()->Feed(Attach());
      drivers.back()->TakeOutput();
      REQUIRE(drivers.back()->session().in_transmission());
    }
  }
  InflightBudget budget;
  std::shared_ptr<testing::MemoryVolume> device;
  std::unique_ptr<SingleExportCatalog> catalog;
  std::vector<std::unique_ptr<SessionDriver>> drivers;
};

TEST_CASE("sessions sharing a budget: one over it stops reading until another's replies go",
          "[nbd]") {
  Sessions s(2, 64 * 1024);
  SessionDriver& a = *s.drivers[0];
  SessionDriver& b = *s.drivers[1];
  // A's two 32 KiB READ replies are not taken by its client: they hold the whole budget.
  a.Feed(Request(NBD_CMD_READ, 1, 0, 32768) + Request(NBD_CMD_READ, 2, 32768, 32768));
  CHECK(s.budget.used_bytes() == 65536);
  // B's READ does not fit: B parses nothing, reads nothing more and answers nothing.
  CHECK(b.Feed(Request(NBD_CMD_READ, 7, 0, 4096)) == kRequestHeaderSize);
  CHECK(b.session().InputSpace().empty());
  CHECK(b.Feed("more") == 0);
  CHECK_FALSE(b.session().HasOutput());
  CHECK(s.budget.waiters() == 1);
  // A's client takes its replies: the bytes come back and B is woken (through its host).
  CHECK(a.TakeOutput().size() == 2 * (16 + 32768));
  CHECK(s.budget.used_bytes() == 0);
  CHECK(b.TakeOutput() == SimpleReply(0, 7, std::string(4096, '\0')));
  CHECK_FALSE(b.session().InputSpace().empty());
  CHECK(s.budget.peak_bytes() == 65536);
}

TEST_CASE("64 sessions with more requests than the budget holds: all answered, bound kept",
          "[nbd]") {
  constexpr int kSessions = 64;
  constexpr uint64_t kBudget = 256 * 1024;
  Sessions s(kSessions, kBudget);
  std::mt19937 rng(42);
  std::vector<std::string> pending(kSessions);   // client bytes not yet accepted
  std::vector<std::string> replies(kSessions);   // server bytes received
  std::vector<std::string> expected(kSessions);  // what the replies must be
  uint64_t cookie = 0;
  for (int i = 0; i < kSessions; ++i) {
    for (int r = 0; r < 8; ++r) {  // 8 x 32 KiB per session: 16 MiB in all, 64x the budget
      const uint64_t offset = (static_cast<uint64_t>(i) * 8 + r) * 32768 % kSize;
      std::string data(32768, static_cast<char>('a' + (i + r) % 26));
      pending[i] += Request(NBD_CMD_WRITE, ++cookie, offset, 32768, 0, data);
      expected[i] += SimpleReply(0, cookie);
      pending[i] += Request(NBD_CMD_READ, ++cookie, offset, 32768);
      expected[i] += SimpleReply(0, cookie, data);
    }
  }
  // Random steps: a client sends some bytes, or takes its replies. Replies are held long
  // enough that the budget, not the sessions, is what stops reading.
  for (int step = 0; step < 200000; ++step) {
    bool done = true;
    for (int i = 0; i < kSessions; ++i) {
      done &= pending[i].empty() && !s.drivers[i]->session().HasOutput();
    }
    if (done) break;
    const int i = static_cast<int>(rng() % kSessions);
    SessionDriver& d = *s.drivers[i];
    if (rng() % 4 == 0) {
      replies[i] += d.TakeOutput();
    } else if (!pending[i].empty()) {
      size_t n = d.Feed(std::string_view(pending[i]).substr(0, 1 + rng() % 40000));
      pending[i].erase(0, n);
    } else {
      d.RunCompletions();
    }
    REQUIRE(s.budget.used_bytes() <= kBudget);
  }
  for (int i = 0; i < kSessions; ++i) {
    INFO("session " << i);
    replies[i] += s.drivers[i]->TakeOutput();
    CHECK(pending[i].empty());
    CHECK(replies[i] == expected[i]);
  }
  CHECK(s.budget.peak_bytes() <= kBudget);
  CHECK(s.budget.peak_bytes() >= kBudget / 2);  // the budget, not luck, was the bound
  CHECK(s.budget.used_bytes() == 0);
  CHECK(s.budget.waiters() == 0);
}

}  // namespace
}  // namespace portal::nbd
