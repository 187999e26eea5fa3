#include "env/real_env.h"

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <thread>

namespace portal {
namespace {

TEST_CASE("RealEnv::PostAfter with a huge delay never fires early", "[env]") {
  RealEnv env(RealEnv::Options{.executor_threads = 1, .blocking_threads = 1});
  env.Start();
  std::atomic<int> fired{0};
  // 2^63 ns and more do not fit a signed std::chrono::nanoseconds: they wrapped to a
  // negative delay, and the timer fired at once.
  for (uint64_t delay : {uint64_t{1} << 62, (uint64_t{1} << 63) - 1, uint64_t{1} << 63,
                         (uint64_t{1} << 63) + 1'000'000, UINT64_MAX - 1, UINT64_MAX}) {
    env.PostAfter(delay, [&] { fired.fetch_add(1); });
  }
  std::atomic<bool> soon{false};
  env.PostAfter(20 * kNanosPerMilli, [&] { soon = true; });
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!soon && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  CHECK(soon);
  CHECK(fired == 0);
  env.Stop();  // drops the pending timers unrun
}

}  // namespace
}  // namespace portal
