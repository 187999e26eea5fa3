#include "env/task.h"

#include <catch2/catch.hpp>

#include "env/async.h"
#include "env/block_on.h"
#include "env/real_env.h"
#include "env/sim_env.h"

namespace portal {
namespace {

Task<int> Add(int a, int b) { co_return a + b; }

Task<int> Chain(int depth) {
  int total = 0;
  for (int i = 0; i < depth; ++i) total += co_await Add(0, 1);
  co_return total;
}

TEST_CASE("tasks that never suspend complete inline without stack growth", "[env]") {
  std::optional<int> out;
  Start(Chain(1000000), [&](int v) { out = v; });
  REQUIRE(out.has_value());
  CHECK(*out == 1000000);
}

Task<int> SleepThen(SimEnv& env, uint64_t ns, int v) {
  co_await SleepFor(env, ns);
  co_return v;
}

TEST_CASE("SimEnv jumps time to timers and WhenAll gathers in order", "[env]") {
  SimEnv env;
  std::vector<Task<int>> tasks;
  tasks.push_back(SleepThen(env, 3 * kNanosPerSecond, 1));
  tasks.push_back(SleepThen(env, 1 * kNanosPerSecond, 2));
  tasks.push_back(SleepThen(env, 3600 * kNanosPerSecond, 3));
  auto out = RunSim(env, WhenAll(std::move(tasks)));
  CHECK(out == std::vector<int>{1, 2, 3});
  CHECK(env.NowNanos() == 3600 * kNanosPerSecond);
}

Task<void> Locked(SimEnv& env, AsyncMutex& mu, int& inside, int& max_inside) {
  auto guard = co_await mu.Lock();
  ++inside;
  max_inside = std::max(max_inside, inside);
  co_await SleepFor(env, 1000);
  --inside;
}

TEST_CASE("AsyncMutex admits one coroutine at a time across suspensions", "[env]") {
  SimEnv env(SimEnv::Options{.seed = 7, .shuffle_ready = true});
  AsyncMutex mu(env);
  int inside = 0, max_inside = 0;
  std::vector<Task<void>> tasks;
  for (int i = 0; i < 10; ++i) Start(Locked(env, mu, inside, max_inside));
  env.RunUntilIdle();
  CHECK(max_inside == 1);
  CHECK(inside == 0);
  CHECK(env.NowNanos() == 10 * 1000);
}

Task<bool> WaitFor(Notifier& n, uint64_t seen, uint64_t timeout) {
  co_return co_await n.Wait(seen, timeout);
}

TEST_CASE("Notifier wakes on notify, times out otherwise, never loses a wake-up", "[env]") {
  SimEnv env;
  Notifier n(env);
  std::optional<bool> a, b, c;
  uint64_t e = n.epoch();
  Start(WaitFor(n, e, kNanosPerSecond), [&](bool v) { a = v; });
  Start(WaitFor(n, e, Notifier::kForever), [&](bool v) { b = v; });
  env.RunUntil([&] { return a.has_value(); });
  CHECK(a == false);  // timed out
  n.NotifyAll();
  env.RunUntilIdle();
  CHECK(b == true);
  // Notified between reading the epoch and waiting: returns at once.
  uint64_t e2 = n.epoch();
  n.NotifyAll();
  Start(WaitFor(n, e2, Notifier::kForever), [&](bool v) { c = v; });
  CHECK(c == true);
}

TEST_CASE("Cancellation cuts a sleep short, and later sleeps return at once", "[env]") {
  SimEnv env;
  Cancellation c(env);
  bool slept = false;
  Start(c.Sleep(kNanosPerSecond), [&] { slept = true; });
  env.RunUntil([&] { return slept; });
  CHECK(env.NowNanos() == kNanosPerSecond);  // not cancelled: the whole sleep
  slept = false;
  Start(c.Sleep(3600 * kNanosPerSecond), [&] { slept = true; });
  env.AdvanceBy(kNanosPerSecond);
  CHECK(!slept);
  c.Cancel();
  env.RunUntil([&] { return slept; });
  CHECK(env.NowNanos() == 2 * kNanosPerSecond);  // woken by Cancel, not by the hour
  CHECK(c.cancelled());
  slept = false;
  Start(c.Sleep(3600 * kNanosPerSecond), [&] { slept = true; });
  CHECK(slept);  // already cancelled: no wait at all
}

TEST_CASE("SimEnv runs are reproducible from the seed", "[env]") {
  auto trace = [](uint64_t seed) {
    SimEnv env(SimEnv::Options{.seed = seed, .shuffle_ready = true});
    std::vector<int> order;
    for (int i = 0; i < 20; ++i) env.Post([&, i] { order.push_back(i); });
    env.RunUntilIdle();
    order.push_back(static_cast<int>(env.RandomU64() % 1000));
    return order;
  };
  CHECK(trace(42) == trace(42));
  CHECK(trace(42) != trace(43));
}

Task<int> OffThread(RealEnv& env) {
  int v = co_await RunBlocking(env, [] { return 41; });
  co_await Yield(env);
  co_return v + 1;
}

TEST_CASE("RealEnv runs blocking work off the executor and resumes on it", "[env]") {
  RealEnv env(RealEnv::Options{.executor_threads = 2, .blocking_threads = 2});
  env.Start();
  CHECK(BlockOn(OffThread(env)) == 42);
  env.Stop();
}

}  // namespace
}  // namespace portal
