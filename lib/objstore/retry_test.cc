// The retry layer: bounded attempts, named outcomes, cancellation, one layer per request.
#include "objstore/retry.h"

#include <catch2/catch.hpp>

#include "env/block_on.h"
#include "env/sim_env.h"
#include "objstore/counting_store.h"
#include "objstore/fault_store.h"
#include "objstore/memory_store.h"
#include "objstore/retrying_store.h"
#include "testing/fake_http.h"

namespace portal::objstore {
namespace {

// An op that answers with `script[i]` on its i-th call (the last one from then on).
struct Scripted {
  std::vector<Status> script;
  uint32_t calls = 0;
  std::function<Task<Status>()> op() {
    return [this]() -> Task<Status> {
      Status s = script[std::min<size_t>(calls, script.size() - 1)];
      ++calls;
      co_return s;
    };
  }
};

// An s3:// store (default retry policy) on a fake HTTP layer.
std::unique_ptr<ObjectStore> FakeS3(Env& env, std::shared_ptr<testing::FakeHttp> fake) {
  StoreOptions o;
  o.s3 = s3::ClientOptions{};
  o.s3->endpoint = "http://127.0.0.1:9000";
  o.s3->allow_http = true;
  o.s3->access_key_id = "AK";
  o.s3->secret_access_key = "SK";
  o.s3_transport = std::move(fake);
  auto s3 = OpenStore("s3://bkt/pre", env, o);
  REQUIRE(s3.ok());
  return std::move(*s3);
}

TEST_CASE("Retry: transient errors are tried again a bounded number of times",
          "[objstore][retry]") {
  SimEnv env;
  Scripted f{{Status::Unavailable("503 SlowDown")}};
  Retried r = RunSim(env, Retry(env, RetryPolicy{5}, f.op()));
  CHECK(r.outcome == RetryOutcome::kGaveUp);
  CHECK(RetryOutcomeName(r.outcome) == "gave up");
  CHECK(r.attempts == 5);
  CHECK(f.calls == 5);
  CHECK(r.status.IsUnavailable());
  // Waits d/2..d, d = 10, 20, 40, 80 ms: at least 75 ms, at most 150 ms in all.
  CHECK(env.NowNanos() >= 75 * kNanosPerMilli);
  CHECK(env.NowNanos() <= 150 * kNanosPerMilli);

  Scripted heals{{Status::Unavailable("reset"), Status::Unavailable("reset"), Status::Ok()}};
  r = RunSim(env, Retry(env, RetryPolicy{5}, heals.op()));
  CHECK(r.outcome == RetryOutcome::kDone);
  CHECK(r.status.ok());
  CHECK(r.attempts == 3);
}

TEST_CASE("Retry: final and fenced errors are not tried again, and are named",
          "[objstore][retry]") {
  SimEnv env;
  struct Case {
    Status status;
    RetryOutcome outcome;
    ErrorClass kind;
  };
  for (const Case& c : {
           Case{Status::Ok(), RetryOutcome::kDone, ErrorClass::kFinal},
           Case{Status::PreconditionFailed("412"), RetryOutcome::kFenced, ErrorClass::kFenced},
           Case{Status::NotFound("seg/1"), RetryOutcome::kDone, ErrorClass::kFinal},
           Case{Status::Corruption("checksum"), RetryOutcome::kDone, ErrorClass::kFinal},
           Case{Status::Shutdown("crashed"), RetryOutcome::kDone, ErrorClass::kFinal},
           Case{Status::InvalidArgument("416"), RetryOutcome::kDone, ErrorClass::kFinal},
       }) {
    Scripted f{{c.status, Status::Ok()}};
    Retried r = RunSim(env, Retry(env, kUntilDefinite, f.op()));
    CHECK(ClassifyError(c.status) == c.kind);
    CHECK(r.outcome == c.outcome);
    CHECK(r.status == c.status);
    CHECK(r.attempts == 1);
    CHECK(f.calls == 1);
  }
  CHECK(ClassifyError(Status::Unavailable("x")) == ErrorClass::kTransient);
  CHECK(RetryOutcomeName(RetryOutcome::kFenced) == "fenced");
  CHECK(RetryOutcomeName(RetryOutcome::kDone) == "done");
  CHECK(env.NowNanos() == 0);  // never waited
}

TEST_CASE("Retry: a write that must land is tried again on every error but a definite one",
          "[objstore][retry]") {
  SimEnv env;
  // EIO, a read-back that found nothing or failed verification, a 503: tried again, then
  // it lands.
  Scripted f{{Status::IOError("EIO"), Status::NotFound("read-back"), Status::Corruption("torn"),
              Status::Unavailable("503"), Status::Ok()}};
  Retried r = RunSim(env, Retry(env, kUntilLanded, f.op()));
  CHECK(r.outcome == RetryOutcome::kDone);
  CHECK(r.status.ok());
  CHECK(r.attempts == 5);
  // Definite: fenced and Shutdown end it at once.
  for (const Status& st : {Status::PreconditionFailed("412"), Status::Shutdown("crashed")}) {
    Scripted g{{st, Status::Ok()}};
    Retried d = RunSim(env, Retry(env, kUntilLanded, g.op()));
    CHECK(d.status == st);
    CHECK(d.attempts == 1);
    CHECK(ClassifyError(st, kUntilLanded) == ClassifyError(st));
  }
  CHECK(ClassifyError(Status::Ok(), kUntilLanded) == ErrorClass::kFinal);
  CHECK(ClassifyError(Status::IOError("EIO"), kUntilLanded) == ErrorClass::kTransient);
  CHECK(ClassifyError(Status::IOError("EIO"), kUntilDefinite) == ErrorClass::kFinal);
}

TEST_CASE("Retry: a cancellation cuts a backoff short", "[objstore][retry]") {
  SimEnv env;
  Scripted f{{Status::Unavailable("refused")}};
  Cancellation cancel(env);
  std::optional<Retried> r;
  Start(Retry(env, kUntilDefinite, f.op(), &cancel), [&](Retried x) { r = std::move(x); });
  env.AdvanceBy(30 * kNanosPerSecond);  // long past the backoff's 5 s cap: still trying
  REQUIRE(!r);
  const uint32_t calls = f.calls;
  const uint64_t cancelled_at = env.NowNanos();
  cancel.Cancel();
  env.RunUntil([&] { return r.has_value(); });
  REQUIRE(r);
  CHECK(env.NowNanos() == cancelled_at);  // no wait for the backoff to end
  CHECK(r->outcome == RetryOutcome::kGaveUp);
  CHECK(r->status.retryable());  // the last attempt's error: its outcome is unknown
  CHECK(r->attempts == calls);
  CHECK(f.calls == calls);
}

TEST_CASE("Retry: a jitter-free policy waits exactly and draws no random number",
          "[objstore][retry]") {
  SimEnv env;
  Scripted f{{Status::Unavailable("x")}};
  Retried r = RunSim(env, Retry(env, RetryPolicy{4, 50, 50, false}, f.op()));
  CHECK(r.attempts == 4);
  CHECK(env.NowNanos() == 150 * kNanosPerMilli);
}

TEST_CASE("ForStore: a store that retries by itself gets one call of a bounded policy",
          "[objstore][retry]") {
  MemoryStore memory;
  CHECK(ForStore(memory, RetryPolicy{20}).max_attempts == 20);
  SimEnv env;
  auto fake = std::make_shared<testing::FakeHttp>(
      [](const s3::HttpRequest&) { return testing::HttpReply(200); });
  CountingStore counted(FakeS3(env, fake));
  CHECK(counted.RetriesTransientErrors());
  CHECK(ForStore(counted, RetryPolicy{20}).max_attempts == 1);
  CHECK(ForStore(counted, kUntilDefinite).max_attempts == 0);  // writes that must land
}

// One GET that fails for good (503 on every request) through the volume's read stack.
TEST_CASE("one failing GET costs at most kReadAttempts requests, on S3 and elsewhere",
          "[objstore][retry]") {
  SimEnv env;
  SECTION("s3://: the S3 client retries, RetryingReadStore makes one call") {
    auto fake = std::make_shared<testing::FakeHttp>([](const s3::HttpRequest&) {
      return testing::HttpReply(503, testing::S3ErrorXml("SlowDown"));
    });
    CountingStore counted(FakeS3(env, fake));  // as the daemon wraps it
    RetryingReadStore reads(counted, env);
    auto got = RunSim(env, reads.Get("seg/1"));
    CHECK(got.status().IsUnavailable());
    CHECK(fake->count() == kReadAttempts);
  }
  SECTION("memory:// behind faults: RetryingReadStore retries") {
    uint32_t gets = 0;
    FaultOptions fo;
    fo.decide = [&](OpKind kind, std::string_view) {
      FaultDecision d;
      if (kind == OpKind::kGet) ++gets;
      d.action = FaultDecision::Action::kFail;
      return d;
    };
    FaultStore faulty(std::make_unique<MemoryStore>(), env, fo);
    RetryingReadStore reads(faulty, env);
    auto got = RunSim(env, reads.Get("seg/1"));
    CHECK(got.status().IsUnavailable());
    CHECK(gets == kReadAttempts);
  }
}

}  // namespace
}  // namespace portal::objstore
