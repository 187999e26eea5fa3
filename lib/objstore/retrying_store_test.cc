#include "objstore/retrying_store.h"

#include <catch2/catch.hpp>

#include "env/block_on.h"
#include "env/sim_env.h"
#include "objstore/fault_store.h"
#include "objstore/memory_store.h"

namespace portal::objstore {
namespace {

TEST_CASE("a cancelled retry stops at once, even in the middle of a backoff", "[objstore]") {
  SimEnv env;
  FaultOptions o;
  o.error_probability = 1.0;  // the store never answers
  FaultStore store(std::make_unique<MemoryStore>(), env, o);
  Cancellation cancel(env);
  std::optional<Status> put;
  Start(PutIfAbsentOrSame(env, store, "k", "v", nullptr, &cancel),
        [&](Status st) { put = std::move(st); });
  env.AdvanceBy(30 * kNanosPerSecond);  // long past the backoff's 5 s cap
  REQUIRE(!put);
  const uint64_t cancelled_at = env.NowNanos();
  cancel.Cancel();
  env.RunUntil([&] { return put.has_value(); });
  REQUIRE(put);
  CHECK(put->retryable());  // the last attempt's error: its outcome is unknown
  CHECK(env.NowNanos() == cancelled_at);

  // Already cancelled: one attempt, no wait.
  std::optional<Status> again;
  Start(RetryUnavailable(
            env, [&]() -> Task<Status> { co_return co_await store.Put("k", "v"); }, 0, &cancel),
        [&](Status st) { again = std::move(st); });
  env.RunUntil([&] { return again.has_value(); });
  REQUIRE(again);
  CHECK(env.NowNanos() == cancelled_at);
}

}  // namespace
}  // namespace portal::objstore
