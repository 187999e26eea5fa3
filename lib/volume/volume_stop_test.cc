// Stopping while the store fails: Close(deadline) ends at its deadline and says how many
// written bytes it leaves behind, FLUSH waiters and stalled writers fail instead of
// hanging, nothing unflushed is acknowledged, and status says since when and why uploads
// fail.
#include <memory>
#include <optional>

#include <catch2/catch.hpp>

#include "env/block_on.h"
#include "env/sim_env.h"
#include "objstore/fault_store.h"
#include "objstore/memory_store.h"
#include "testing/borrowed_store.h"
#include "testing/volume_options.h"
#include "volume/lsm_volume.h"

namespace portal::volume {
namespace {

using objstore::FaultDecision;
using objstore::OpKind;

std::vector<uint8_t> Data(uint64_t tag, size_t n) {
  std::vector<uint8_t> d(n);
  for (size_t i = 0; i < n; ++i) d[i] = static_cast<uint8_t>(tag * 37 + i / 4096 + 1);
  return d;
}

// A volume on `mem` whose store refuses every write while `*failing` ("disk full").
struct FailingStore {
  explicit FailingStore(objstore::MemoryStore& mem)
      : failing(std::make_shared<bool>(false)),
        store(std::make_unique<testing::BorrowedStore>(mem), env, Options(failing)) {}
  static objstore::FaultOptions Options(std::shared_ptr<bool> failing) {
    objstore::FaultOptions o;
    o.decide = [failing](OpKind kind, std::string_view) {
      FaultDecision d;
      if (*failing && (kind == OpKind::kPut || kind == OpKind::kPutIfAbsent)) {
        d.action = FaultDecision::Action::kFail;
        d.error = Status::Unavailable("no space left on device (injected)");
      }
      return d;
    };
    return o;
  }
  SimEnv env;
  std::shared_ptr<bool> failing;
  objstore::FaultStore store;
};

VolumeOptions StopOptions() {
  VolumeOptions o = testing::SmallVolumeOptions(4 << 20);
  o.memtable_flush_segments = 1000;
  o.memtable_flush_interval_ms = 10'000;  // a memtable flush falls due while failing
  o.gc_interval_ms = 1'000'000'000;
  return o;
}

TEST_CASE(
    "Close with a deadline ends while every store write fails, and reports what it "
    "leaves, and FLUSH waiters and stalled writers fail",
    "[volume]") {
  objstore::MemoryStore mem;
  const auto flushed_data = Data(1, 64 * 1024);
  {
    FailingStore f(mem);
    SimEnv& env = f.env;
    auto v = *RunSim(env, LsmVolume::Open(env, f.store, StopOptions()));
    REQUIRE(RunSim(env, v->Write(0, flushed_data, {})).ok());
    REQUIRE(RunSim(env, v->Flush()).ok());  // durable; the memtable is now dirty

    *f.failing = true;
    const int64_t failing_from = env.WallNanos();
    const auto unflushed = Data(2, 32 * 1024);
    REQUIRE(RunSim(env, v->Write(128 * 1024, unflushed, {})).ok());
    std::optional<Status> flushed;
    Start(v->Flush(), [&](Status st) { flushed = std::move(st); });
    // Fill the buffers past max_unflushed_bytes (1 MiB): the last writer stalls.
    std::vector<std::optional<Status>> writes(20);
    const auto chunk = Data(3, 64 * 1024);
    for (size_t i = 0; i < writes.size(); ++i) {
      Start(v->Write((1 << 20) + i * chunk.size(), chunk, {}),
            [&writes, i](Status st) { writes[i] = std::move(st); });
    }
    // Two minutes of retries: segment uploads, and the memtable flush's SST writes.
    env.AdvanceBy(120 * kNanosPerSecond);
    CHECK(!flushed);        // FLUSH waits while the store fails
    CHECK(!writes.back());  // stalled
    VolumeStats s = v->stats();
    CHECK(s.store_failing_since_ns >= failing_from);
    CHECK(s.store_failing_since_ns <= failing_from + int64_t(kNanosPerSecond));
    CHECK(s.store_failed_attempts > 10);
    CHECK(s.store_error.find("no space left on device") != std::string::npos);

    const uint64_t deadline = env.NowNanos() + 3 * kNanosPerSecond;
    std::optional<Status> closed;
    Start(v->Close(deadline), [&](Status st) { closed = std::move(st); });
    REQUIRE(env.RunUntil([&] { return closed.has_value(); }, 5'000'000));
    CHECK(env.NowNanos() <= deadline + 10 * kNanosPerMilli);  // no backoff overran it
    INFO(closed->ToString());
    CHECK(closed->code() == Status::Code::kIOError);
    CHECK(closed->message().find(" bytes not durable (store failing since 2026-01-01T") !=
          std::string::npos);
    CHECK(closed->message().find("no space left on device") != std::string::npos);
    const uint64_t left = std::stoull(closed->message());
    CHECK(left >= unflushed.size());

    env.RunUntil([&] { return flushed.has_value() && writes.back().has_value(); }, 1'000'000);
    REQUIRE(flushed);
    CHECK(flushed->code() == Status::Code::kIOError);  // never acknowledged
    CHECK(flushed->message().find("gave up at the stop deadline") != std::string::npos);
    REQUIRE(writes.back());
    CHECK(!writes.back()->ok());
    env.DropAll();
  }
  // What a FLUSH acknowledged is in the store.
  SimEnv env;
  auto v = *RunSim(env, LsmVolume::Open(env, mem, StopOptions()));
  std::vector<uint8_t> got(flushed_data.size());
  REQUIRE(RunSim(env, v->Read(0, got, nullptr)).ok());
  CHECK(got == flushed_data);
  REQUIRE(RunSim(env, v->Close()).ok());
}

TEST_CASE("stats say since when and why segment uploads fail, and clear on recovery", "[volume]") {
  objstore::MemoryStore mem;
  FailingStore f(mem);
  SimEnv& env = f.env;
  auto v = *RunSim(env, LsmVolume::Open(env, f.store, StopOptions()));
  CHECK(v->stats().store_failing_since_ns == 0);
  CHECK(v->NotDurableSummary().empty());

  *f.failing = true;
  const int64_t failing_from = env.WallNanos();
  REQUIRE(RunSim(env, v->Write(0, Data(4, 16 * 1024), {})).ok());
  std::optional<Status> flushed;
  Start(v->Flush(), [&](Status st) { flushed = std::move(st); });
  env.AdvanceBy(90 * kNanosPerSecond);
  CHECK(!flushed);
  VolumeStats s = v->stats();
  CHECK(s.store_failing_since_ns >= failing_from);
  CHECK(s.store_failing_since_ns <= failing_from + int64_t(kNanosPerSecond));
  CHECK(s.store_failed_attempts > 1);
  CHECK(s.store_error.find("no space left on device") != std::string::npos);
  CHECK(v->NotDurableSummary().starts_with("16384 bytes not durable (store failing since "));

  *f.failing = false;
  env.RunUntil([&] { return flushed.has_value(); }, 1'000'000);
  REQUIRE(flushed);
  CHECK(flushed->ok());
  s = v->stats();
  CHECK(s.store_failing_since_ns == 0);
  CHECK(s.store_failed_attempts == 0);
  CHECK(s.store_error.empty());
  CHECK(v->NotDurableSummary().empty());
  REQUIRE(RunSim(env, v->Close(env.NowNanos() + kNanosPerSecond)).ok());
}

}  // namespace
}  // namespace portal::volume
