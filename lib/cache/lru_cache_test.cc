#include "cache/lru_cache.h"

#include <catch2/catch.hpp>

#include "env/block_on.h"

namespace portal::cache {
namespace {

TEST_CASE("LruCache evicts least recently used entries to stay in bounds", "[cache]") {
  SimEnv env;
  LruCache<std::string> c(env, 100, 1);
  c.Insert("a", std::make_shared<std::string>("A"), 40);
  c.Insert("b", std::make_shared<std::string>("B"), 40);
  REQUIRE(c.Lookup("a"));  // a is now most recent
  c.Insert("c", std::make_shared<std::string>("C"), 40);
  CHECK(c.Lookup("b") == nullptr);
  CHECK(*c.Lookup("a") == "A");
  CHECK(*c.Lookup("c") == "C");
  CHECK(c.stats().usage_bytes == 80);
  c.Insert("huge", std::make_shared<std::string>("H"), 1000);  // larger than the cache
  CHECK(c.Lookup("huge") == nullptr);
  CHECK(c.stats().usage_bytes <= 100);
}

Task<Result<std::shared_ptr<const std::string>>> Get(LruCache<std::string>& c, SimEnv& env,
                                                     int& loads, bool fail) {
  co_return co_await c.GetOrLoad(
      "k", [&]() -> Task<Result<std::pair<std::shared_ptr<const std::string>, uint64_t>>> {
        ++loads;
        co_await SleepFor(env, 1000);
        if (fail) co_return Status::IOError("boom");
        co_return std::make_pair(std::make_shared<const std::string>("v"), uint64_t{1});
      });
}

TEST_CASE("GetOrLoad runs one load for concurrent misses and does not cache errors",
          "[cache]") {
  SimEnv env;
  LruCache<std::string> c(env, 100);
  int loads = 0;
  std::vector<Task<Result<std::shared_ptr<const std::string>>>> tasks;
  for (int i = 0; i < 10; ++i) tasks.push_back(Get(c, env, loads, true));
  auto failed = RunSim(env, WhenAll(std::move(tasks)));
  CHECK(loads == 1);
  for (auto& r : failed) CHECK(r.status().code() == Status::Code::kIOError);
  tasks.clear();
  for (int i = 0; i < 10; ++i) tasks.push_back(Get(c, env, loads, false));
  auto ok = RunSim(env, WhenAll(std::move(tasks)));
  CHECK(loads == 2);
  for (auto& r : ok) CHECK(**r == "v");
  CHECK(*RunSim(env, Get(c, env, loads, false)).value() == "v");
  CHECK(loads == 2);  // a hit
}

}  // namespace
}  // namespace portal::cache
