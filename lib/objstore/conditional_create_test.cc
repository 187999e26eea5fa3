// CreateOrVerify's three outcomes, a lost acknowledgement, and read-backs that fail.
#include "objstore/conditional_create.h"

#include <catch2/catch.hpp>

#include "env/block_on.h"
#include "env/sim_env.h"
#include "objstore/fault_store.h"
#include "objstore/memory_store.h"
#include "testing/borrowed_store.h"

namespace portal::objstore {
namespace {

struct Fixture {
  SimEnv env;
  MemoryStore memory;
  int puts = 0;
  int gets = 0;
  // Decides every call to the store behind `store`; default: pass.
  std::function<FaultDecision(OpKind, int call)> decide = [](OpKind, int) {
    return FaultDecision{};
  };
  FaultStore store{std::make_unique<testing::BorrowedStore>(memory), env, [this] {
                     FaultOptions o;
                     o.decide = [this](OpKind kind, std::string_view) {
                       if (kind == OpKind::kPutIfAbsent) return decide(kind, ++puts);
                       if (kind == OpKind::kGet) return decide(kind, ++gets);
                       return FaultDecision{};
                     };
                     return o;
                   }()};

  Result<CreateOutcome> Create(const std::string& bytes,
                               const RetryPolicy& policy = kUntilDefinite) {
    return RunSim(env, CreateOrVerify(env, store, "manifest/1", bytes, policy));
  }
};

TEST_CASE("CreateOrVerify: created, already ours, or taken by another", "[objstore][retry]") {
  Fixture f;
  auto r = f.Create("ours");
  REQUIRE(r.ok());
  CHECK(*r == CreateOutcome::kCreated);
  CHECK(CreateOutcomeName(*r) == "created");
  CHECK(f.gets == 0);  // no read-back on success: one request

  r = f.Create("ours");  // an earlier attempt of ours is there
  REQUIRE(r.ok());
  CHECK(*r == CreateOutcome::kAlreadySame);
  CHECK(f.gets == 1);

  f.gets = 0;
  r = f.Create("mine, not yours");
  REQUIRE(r.ok());
  CHECK(*r == CreateOutcome::kTakenByOther);
  CHECK(CreateOutcomeName(*r) == "taken by other");
  // Raw bytes that differ may be ours damaged on the way: read again, boundedly.
  CHECK(f.gets == static_cast<int>(kVerifiedReadAttempts));
  CHECK(*RunSim(f.env, f.memory.Get("manifest/1")) == "ours");
}

TEST_CASE("CreateOrVerify: a PUT that landed but whose reply was lost is ours, not fenced",
          "[objstore][retry]") {
  Fixture f;
  f.decide = [](OpKind kind, int call) {
    FaultDecision d;
    if (kind == OpKind::kPutIfAbsent && call == 1) d.action = FaultDecision::Action::kLoseAck;
    return d;
  };
  auto r = f.Create("ours");
  REQUIRE(r.ok());
  CHECK(*r == CreateOutcome::kAlreadySame);
  CHECK(f.puts == 2);  // the lost one, then the 412
  CHECK(f.gets == 1);
  CHECK(*RunSim(f.env, f.memory.Get("manifest/1")) == "ours");
}

TEST_CASE("CreateOrVerify: a read-back that does not answer is an error, never 'taken'",
          "[objstore][retry]") {
  Fixture f;
  REQUIRE(RunSim(f.env, f.memory.Put("manifest/1", "ours")).ok());
  f.decide = [](OpKind kind, int) {
    FaultDecision d;
    if (kind == OpKind::kGet) d.action = FaultDecision::Action::kFail;
    return d;
  };
  auto r = f.Create("ours", RetryPolicy{4});
  CHECK(r.status().IsUnavailable());
  CHECK(f.gets == 4);  // bounded by the policy

  // Until definite, but cancelled (a stop's deadline): gave up, the outcome unknown.
  f.gets = 0;
  Cancellation cancel(f.env);
  std::optional<Result<CreateOutcome>> got;
  Start(CreateOrVerify(f.env, f.store, "manifest/1", "ours", kUntilDefinite, &cancel),
        [&](Result<CreateOutcome> x) { got = std::move(x); });
  f.env.AdvanceBy(30 * kNanosPerSecond);
  REQUIRE(!got);
  cancel.Cancel();
  f.env.RunUntil([&] { return got.has_value(); });
  REQUIRE(got);
  CHECK(got->status().retryable());
}

TEST_CASE("CreateOrVerify: a judge of verified bytes decides on its first read",
          "[objstore][retry]") {
  SimEnv env;
  MemoryStore memory;
  REQUIRE(RunSim(env, memory.Put("seg/7", "theirs")).ok());
  int reads = 0;
  auto judge = [&]() -> Task<Result<bool>> {
    ++reads;
    co_return false;  // e.g. a footer of another epoch
  };
  auto put = [&]() -> Task<Status> { co_return co_await memory.PutIfAbsent("seg/7", "ours"); };
  auto r = RunSim(env, CreateOrVerify(env, kUntilDefinite, put, judge, 1));
  REQUIRE(r.ok());
  CHECK(*r == CreateOutcome::kTakenByOther);
  CHECK(reads == 1);

  // The judge's errors come back as they are (a damaged footer stays Corruption).
  auto broken = [&]() -> Task<Result<bool>> { co_return Status::Corruption("bad footer"); };
  auto e = RunSim(env, ReadBack(broken, 3));
  CHECK(e.status().IsCorruption());
}

}  // namespace
}  // namespace portal::objstore
