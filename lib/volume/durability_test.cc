#include "volume/durability.h"

#include <optional>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "env/block_on.h"
#include "env/real_env.h"
#include "env/sim_env.h"

namespace portal::volume {
namespace {

// Starts AwaitDurable(gen); its outcome lands in `out` once resolved.
void Await(DurableGenerations& d, uint64_t gen, std::optional<Status>* out) {
  Start(d.AwaitDurable(gen), [out](Status st) { out->emplace(std::move(st)); });
}

TEST_CASE("DurableGenerations resolves each waiter when its generation is durable",
          "[volume][durability]") {
  SimEnv env(SimEnv::Options{.seed = 3, .shuffle_ready = true});
  DurableGenerations d(env);
  std::optional<Status> g1, g2, g2b, g3;
  Await(d, 1, &g1);
  Await(d, 2, &g2);
  Await(d, 2, &g2b);  // a second FLUSH of the same generation: its own waiter
  Await(d, 3, &g3);
  env.RunUntilIdle();
  CHECK((!g1 && !g2 && !g2b && !g3));
  CHECK(d.waiters() == 4);

  d.MarkDurable(1);
  env.RunUntilIdle();
  REQUIRE(g1);
  CHECK(g1->ok());
  CHECK((!g2 && !g2b && !g3));

  d.MarkDurable(2);
  env.RunUntilIdle();
  REQUIRE((g2 && g2b));
  CHECK((g2->ok() && g2b->ok()));
  CHECK(!g3);
  CHECK(d.waiters() == 1);
  CHECK(d.durable() == 2);
}

TEST_CASE("DurableGenerations: a later generation made durable resolves earlier ones",
          "[volume][durability]") {
  SimEnv env;
  DurableGenerations d(env);
  std::vector<std::optional<Status>> out(5);
  for (uint64_t g = 1; g <= 4; ++g) Await(d, g, &out[g]);
  env.RunUntilIdle();
  d.MarkDurable(3);
  env.RunUntilIdle();
  for (uint64_t g = 1; g <= 3; ++g) {
    REQUIRE(out[g]);
    CHECK(out[g]->ok());
  }
  CHECK(!out[4]);
  d.MarkDurable(2);  // older news changes nothing
  CHECK(d.durable() == 3);
  env.RunUntilIdle();
  CHECK(!out[4]);
  d.MarkDurable(4);
  env.RunUntilIdle();
  REQUIRE(out[4]);
  CHECK(out[4]->ok());
  CHECK(d.waiters() == 0);
}

TEST_CASE("DurableGenerations: Fail fails every pending and later waiter above durable",
          "[volume][durability]") {
  SimEnv env;
  DurableGenerations d(env);
  d.MarkDurable(1);
  std::optional<Status> g2, g3;
  Await(d, 2, &g2);
  Await(d, 3, &g3);
  env.RunUntilIdle();
  d.Fail(Status::IOError("volume is fenced: test"));
  d.Fail(Status::IOError("second"));  // the first failure wins
  env.RunUntilIdle();
  REQUIRE((g2 && g3));
  CHECK(g2->message() == "volume is fenced: test");
  CHECK(g3->message() == "volume is fenced: test");
  CHECK(d.waiters() == 0);
  // Later: what was durable stays so; anything above fails at once.
  CHECK(RunSim(env, d.AwaitDurable(1)).ok());
  Status later = RunSim(env, d.AwaitDurable(5));
  CHECK(later.message() == "volume is fenced: test");
}

TEST_CASE("DurableGenerations: awaiting a durable generation returns without suspending",
          "[volume][durability]") {
  SimEnv env;
  DurableGenerations d(env);
  d.MarkDurable(7);
  for (uint64_t g : {0, 1, 7}) {
    std::optional<Status> out;
    Await(d, g, &out);  // no env step: it must complete inline
    REQUIRE(out);
    CHECK(out->ok());
  }
  CHECK(d.waiters() == 0);
}

TEST_CASE("DurableGenerations resolves waiters across threads on the real Env",
          "[volume][durability]") {
  RealEnv env(RealEnv::Options{.executor_threads = 2, .blocking_threads = 1});
  env.Start();
  DurableGenerations d(env);
  std::vector<Task<Status>> waits;
  for (uint64_t g = 1; g <= 8; ++g) waits.push_back(d.AwaitDurable(g));
  std::thread marker([&] {
    for (uint64_t g = 1; g <= 8; ++g) d.MarkDurable(g);
  });
  auto results = BlockOn(WhenAll(std::move(waits)));
  marker.join();
  for (const Status& st : results) CHECK(st.ok());
  env.Stop();
}

}  // namespace
}  // namespace portal::volume
