#include "objstore/fault_store.h"

#include <fmt/format.h>

#include <catch2/catch.hpp>

#include "env/block_on.h"
#include "env/sim_env.h"
#include "objstore/memory_store.h"

namespace portal::objstore {
namespace {

struct Faulty {
  explicit Faulty(FaultOptions o)
      : store(std::make_unique<MemoryStore>(), env, std::move(o)),
        memory(static_cast<MemoryStore&>(store.inner())) {}
  SimEnv env;
  FaultStore store;
  MemoryStore& memory;
};

// One character per call: '.' ok, 'U' Unavailable, other codes by first letter.
std::string Outcomes(uint64_t seed, int calls) {
  FaultOptions o;
  o.seed = seed;
  o.error_probability = 0.3;
  Faulty f(o);
  std::string out;
  for (int i = 0; i < calls; ++i) {
    Status s = RunSim(f.env, f.store.Put(fmt::format("k{}", i), "v"));
    out.push_back(s.ok() ? '.' : s.IsUnavailable() ? 'U' : '?');
  }
  return out;
}

TEST_CASE("fault store: one seed gives one sequence of faults", "[objstore][fault]") {
  std::string a = Outcomes(7, 2000);
  CHECK(a == Outcomes(7, 2000));
  CHECK(a != Outcomes(8, 2000));
  auto errors = std::count(a.begin(), a.end(), 'U');
  CHECK(errors > 500);  // 30% of 2000, with a wide margin
  CHECK(errors < 700);
  CHECK(a.find('?') == std::string::npos);
}

TEST_CASE("fault store: injected errors never reach the inner store", "[objstore][fault]") {
  FaultOptions o;
  o.error_probability = 1.0;
  Faulty f(o);
  Status s = RunSim(f.env, f.store.Put("k", "v"));
  CHECK(s.IsUnavailable());
  CHECK(s.retryable());
  CHECK(f.memory.object_count() == 0);
  CHECK(f.store.counts().failed == 1);
}

TEST_CASE("fault store: a lost acknowledgement applies the write", "[objstore][fault]") {
  FaultOptions o;
  o.lost_ack_probability = 1.0;
  Faulty f(o);
  CHECK(RunSim(f.env, f.store.Put("k", "v")).IsUnavailable());
  CHECK(*RunSim(f.env, f.memory.Get("k")) == "v");
  // The retry of a conditional create whose ack was lost finds its own object.
  CHECK(RunSim(f.env, f.store.PutIfAbsent("c", "1")).IsUnavailable());
  CHECK(RunSim(f.env, f.memory.PutIfAbsent("c", "1")).IsPreconditionFailed());
  CHECK(RunSim(f.env, f.store.Delete("k")).IsUnavailable());
  CHECK(RunSim(f.env, f.memory.Get("k")).status().IsNotFound());
  // Reads are never "lost": the random path only loses acknowledgements of mutations.
  CHECK(RunSim(f.env, f.store.Get("c")).ok());
  CHECK(f.store.counts().lost_acks == 3);
}

TEST_CASE("fault store: latency is waited in Env time", "[objstore][fault]") {
  FaultOptions o;
  o.latency_probability = 1.0;
  o.min_latency_ns = 5 * kNanosPerMilli;
  o.max_latency_ns = 5 * kNanosPerMilli;
  Faulty f(o);
  REQUIRE(RunSim(f.env, f.store.Put("k", "v")).ok());
  CHECK(f.env.NowNanos() == 5 * kNanosPerMilli);
  REQUIRE(RunSim(f.env, f.store.Get("k")).ok());
  CHECK(f.env.NowNanos() == 10 * kNanosPerMilli);
  CHECK(f.store.counts().delayed == 2);
}

TEST_CASE("fault store: the decide hook sees each call and decides", "[objstore][fault]") {
  std::vector<std::string> seen;
  FaultOptions o;
  o.error_probability = 1.0;  // ignored: the hook decides
  o.decide = [&](OpKind kind, std::string_view key) {
    seen.push_back(fmt::format("{} {}", OpKindName(kind), key));
    FaultDecision d;
    if (kind == OpKind::kPut && key == "seg/2") {
      d.action = FaultDecision::Action::kFail;
      d.error = Status::Unavailable("HTTP 503 SlowDown");
    }
    if (kind == OpKind::kDelete) d.action = FaultDecision::Action::kLoseAck;
    return d;
  };
  Faulty f(o);
  CHECK(RunSim(f.env, f.store.Put("seg/1", "a")).ok());
  CHECK(RunSim(f.env, f.store.Put("seg/2", "b")).message() == "HTTP 503 SlowDown");
  CHECK(RunSim(f.env, f.store.Delete("seg/1")).IsUnavailable());
  CHECK(RunSim(f.env, f.store.List("seg/")).value().empty());
  CHECK(seen == std::vector<std::string>{"PUT seg/1", "PUT seg/2", "DELETE seg/1", "LIST seg/"});
}

TEST_CASE("fault store: after a crash every call fails, in-flight ones too", "[objstore][fault]") {
  FaultOptions o;
  o.latency_probability = 1.0;
  o.min_latency_ns = o.max_latency_ns = 10 * kNanosPerMilli;
  Faulty f(o);
  std::optional<Status> in_flight;
  Start(f.store.Put("k", "v"), [&](Status s) { in_flight = s; });
  f.env.AdvanceBy(5 * kNanosPerMilli);
  CHECK_FALSE(in_flight.has_value());
  f.store.Crash();
  f.env.RunUntilIdle();
  REQUIRE(in_flight.has_value());
  CHECK(in_flight->code() == Status::Code::kShutdown);
  CHECK(f.memory.object_count() == 0);  // it was still waiting: it never arrived
  CHECK(RunSim(f.env, f.store.Get("k")).status().code() == Status::Code::kShutdown);
  CHECK(RunSim(f.env, f.store.CheckAccess()).code() == Status::Code::kShutdown);
  CHECK(f.store.crashed());
}

TEST_CASE("fault store: a damaged body has one byte flipped, counted from its end",
          "[objstore][fault]") {
  FaultOptions o;
  o.decide = [](OpKind kind, std::string_view key) {
    FaultDecision d;
    if (kind == OpKind::kGet) {
      d.action = FaultDecision::Action::kCorruptBody;
      d.corrupt_from_end = key == "j" ? 6 : 0;  // 6 % 4 == 2
    }
    return d;
  };
  Faulty f(o);
  REQUIRE(RunSim(f.env, f.store.Put("k", "abcd")).ok());
  REQUIRE(RunSim(f.env, f.store.Put("j", "abcd")).ok());
  REQUIRE(RunSim(f.env, f.store.Put("empty", "")).ok());
  CHECK(*RunSim(f.env, f.store.Get("k")) == std::string("abc") + char('d' ^ 0xff));
  CHECK(*RunSim(f.env, f.store.Get("j")) == std::string("a") + char('b' ^ 0xff) + "cd");
  CHECK(*RunSim(f.env, f.store.Get("k", GetRange{1, 2})) == std::string("b") + char('c' ^ 0xff));
  CHECK(*RunSim(f.env, f.memory.Get("k")) == "abcd");  // the stored object is intact
  CHECK(RunSim(f.env, f.store.Get("missing")).status().IsNotFound());
  CHECK(RunSim(f.env, f.store.Get("empty"))->empty());
  CHECK(f.store.counts().corrupted == 3);
}

}  // namespace
}  // namespace portal::objstore
