#include "objstore/retrying_store.h"

#include <catch2/catch.hpp>

#include "env/block_on.h"
#include "env/sim_env.h"
#include "objstore/fault_store.h"
#include "objstore/memory_store.h"
#include "testing/borrowed_store.h"

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

// A fetch that answers with `script[i]` on its i-th call (the last one from then on).
struct Scripted {
  std::vector<Status> script;
  uint32_t calls = 0;
  std::function<Task<Status>()> fetch() {
    return [this]() -> Task<Status> {
      Status s = script[std::min<size_t>(calls, script.size() - 1)];
      ++calls;
      co_return s;
    };
  }
};

TEST_CASE("RefetchCorrupt: a body that fails verification is fetched again and counted",
          "[objstore][retry]") {
  SimEnv env;
  std::atomic<uint64_t> refetches{0};
  Scripted f{{Status::Corruption("seg/1: chunk 0 fails its checksum"), Status::Ok()}};
  CHECK(RunSim(env, RefetchCorrupt(f.fetch(), &refetches)).ok());
  CHECK(f.calls == 2);
  CHECK(refetches == 1);
}

TEST_CASE("RefetchCorrupt: damage that persists fails after a bounded number of fetches",
          "[objstore][retry]") {
  SimEnv env;
  std::atomic<uint64_t> refetches{0};
  Scripted f{{Status::Corruption("seg/1: chunk 0 fails its checksum")}};
  Status s = RunSim(env, RefetchCorrupt(f.fetch(), &refetches));
  CHECK(s.IsCorruption());
  CHECK(s.message() == "failed verification 3 times: seg/1: chunk 0 fails its checksum");
  CHECK(f.calls == kVerifiedReadAttempts);
  CHECK(refetches == kVerifiedReadAttempts - 1);
  Scripted once{{Status::Corruption("x")}};
  CHECK(RunSim(env, RefetchCorrupt(once.fetch(), nullptr, 1)).IsCorruption());
  CHECK(once.calls == 1);
}

TEST_CASE("RefetchCorrupt: other errors come back at once", "[objstore][retry]") {
  SimEnv env;
  std::atomic<uint64_t> refetches{0};
  for (const Status& first : {Status::NotFound("seg/1"), Status::Unavailable("503"),
                              Status::IOError("disk"), Status::Ok()}) {
    Scripted f{{first, Status::Ok()}};
    CHECK(RunSim(env, RefetchCorrupt(f.fetch(), &refetches)) == first);
    CHECK(f.calls == 1);
  }
  CHECK(refetches == 0);
}

// A conditional create whose acknowledgement was lost, and whose read-back arrives
// damaged `damaged_gets` times.
Status CreateWithDamagedReadBack(int damaged_gets, const std::string& stored, int* gets) {
  SimEnv env;
  MemoryStore memory;
  if (!stored.empty()) REQUIRE(RunSim(env, memory.Put("manifest/1", stored)).ok());
  FaultOptions o;
  bool first_put = true;
  o.decide = [&](OpKind kind, std::string_view) {
    FaultDecision d;
    if (kind == OpKind::kPutIfAbsent && std::exchange(first_put, false)) {
      d.action = FaultDecision::Action::kLoseAck;
    }
    if (kind == OpKind::kGet && ++*gets <= damaged_gets) {
      d.action = FaultDecision::Action::kCorruptBody;
    }
    return d;
  };
  FaultStore store(std::make_unique<testing::BorrowedStore>(memory), env, o);
  return RunSim(env, PutIfAbsentOrSame(env, store, "manifest/1", "ours"));
}

TEST_CASE("PutIfAbsentOrSame: a damaged read-back of our own object is read again",
          "[objstore][retry]") {
  int gets = 0;
  CHECK(CreateWithDamagedReadBack(1, "", &gets).ok());
  CHECK(gets == 2);
  gets = 0;
  CHECK(CreateWithDamagedReadBack(kVerifiedReadAttempts, "", &gets).IsPreconditionFailed());
  CHECK(gets == kVerifiedReadAttempts);
  // Another writer's object: PreconditionFailed after the same bounded read-backs.
  gets = 0;
  Status other = CreateWithDamagedReadBack(0, "theirs", &gets);
  CHECK(other.IsPreconditionFailed());
  CHECK(other.message() == "manifest/1 exists with other contents");
  CHECK(gets == kVerifiedReadAttempts);
}

}  // namespace
}  // namespace portal::objstore
