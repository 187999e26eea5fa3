#include "util/connection_set.h"

#include <catch2/catch.hpp>
#include <atomic>
#include <thread>

namespace portal {
namespace {

struct Conn {
  int id;
};
using Set = ConnectionSet<Conn>;

TEST_CASE("connection set admits up to its limit and nothing once stopping", "[util]") {
  Set set(2);
  Set::Admit admit;
  auto a = set.Add([] { return std::make_shared<Conn>(Conn{1}); }, &admit);
  CHECK(admit == Set::Admit::kAdded);
  auto b = set.Add([] { return std::make_shared<Conn>(Conn{2}); }, &admit);
  REQUIRE(b);
  bool made = false;
  auto c = set.Add([&] { made = true; return std::make_shared<Conn>(Conn{3}); }, &admit);
  CHECK(admit == Set::Admit::kFull);
  CHECK_FALSE(c);
  CHECK_FALSE(made);  // refused connections are never constructed
  CHECK(set.size() == 2);

  set.Remove(a.get());
  CHECK(set.size() == 1);
  std::vector<std::shared_ptr<Conn>> conns;
  REQUIRE(set.Stop(&conns));
  REQUIRE(conns.size() == 1);
  CHECK(conns[0]->id == 2);
  CHECK(set.stopping());
  CHECK_FALSE(set.Stop(&conns));  // once
  CHECK_FALSE(set.Add([] { return std::make_shared<Conn>(Conn{4}); }, &admit));
  CHECK(admit == Set::Admit::kStopping);
}

TEST_CASE("connection set waits for its connections to go, within a timeout", "[util]") {
  Set set(4);
  Set::Admit admit;
  auto a = set.Add([] { return std::make_shared<Conn>(Conn{1}); }, &admit);
  CHECK_FALSE(set.WaitEmpty(std::chrono::milliseconds(20)));
  std::thread closer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    set.Remove(a.get());
  });
  CHECK(set.WaitEmpty(std::chrono::seconds(10)));
  closer.join();
  // Notify wakes a waiter whose condition lives elsewhere.
  std::atomic<bool> flag{false};
  std::thread setter([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    flag = true;
    set.Notify();
  });
  CHECK(set.WaitFor(std::chrono::seconds(10), [&] { return flag.load(); }));
  setter.join();
}

}  // namespace
}  // namespace portal
