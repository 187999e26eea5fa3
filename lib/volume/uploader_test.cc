// The Uploader alone, against a memory store (and a FaultStore for failures), with a
// recording UploadSink in place of the volume.
#include "volume/uploader.h"

#include <optional>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "cache/block_cache.h"
#include "env/block_on.h"
#include "env/sim_env.h"
#include "objstore/fault_store.h"
#include "objstore/memory_store.h"
#include "volume/manifest.h"

namespace portal::volume {
namespace {

constexpr uint64_t kEpoch = 5;

struct Harness final : UploadSink {
  Harness(SimEnv& env, objstore::ObjectStore& store, VolumeOptions opts)
      : env(env), store(store), options(std::move(opts)) {}

  Task<Status> ApplyUploaded(const SegmentFooter& footer, uint64_t) override {
    applied.push_back(footer);
    co_return Status::Ok();
  }
  bool FencedLocked() const override { return fenced; }
  void FenceLocked(const std::string& reason) override {
    fenced = true;
    fenced_reason = reason;
    up.durable().Fail(Status::IOError("volume is fenced: " + reason));
    up.Wake();
  }
  void UploadSettled() override { ++settled; }

  // One block at `block` (filled with `fill`) into the active buffer, as a write does.
  void Write(uint64_t block, uint8_t fill) {
    std::vector<uint8_t> data(options.block_size, fill);
    std::lock_guard lock(mu);
    up.ActiveLocked().WriteBlocks(block, data.data(), 1, next_seq++);
    up.NoteWrittenLocked();
  }
  // What LsmVolume::Flush does before it awaits.
  uint64_t FlushTarget() {
    uint64_t target;
    {
      std::lock_guard lock(mu);
      target = up.FlushTargetLocked();
    }
    up.Wake();
    return target;
  }
  void StartRun() {
    {
      std::lock_guard lock(mu);
      up.SettledFenceLocked(1);  // open fenced segment 1
    }
    Start(up.Run(kEpoch), [this] { run_returned = true; });
  }

  SimEnv& env;
  objstore::ObjectStore& store;
  VolumeOptions options;
  cache::BlockCache cache{env, 1 << 20};
  SegmentReader segments{store, cache, options};
  std::mutex mu;
  Cancellation give_up{env};
  Uploader up{env, store, segments, options, mu, give_up, *this};

  std::vector<SegmentFooter> applied;
  bool fenced = false;
  std::string fenced_reason;
  int settled = 0;
  uint64_t next_seq = 1;
  bool run_returned = false;
};

VolumeOptions SmallOptions() {
  VolumeOptions o;
  o.flush_interval_ms = 0;         // only FLUSH, a full buffer or a stop seal one
  o.l0_sst_size_bytes = 2 * 4096;  // two blocks fill a buffer
  o.compress = false;
  return o;
}

TEST_CASE("Uploader: generations become durable in order, one segment each, ids in order",
          "[volume][uploader]") {
  SimEnv env;
  objstore::MemoryStore store;
  Harness h(env, store, SmallOptions());
  for (uint64_t b = 0; b < 5; ++b) h.Write(b, uint8_t(b + 1));  // gens 1, 2 sealed; 3 active
  const uint64_t target = h.FlushTarget();
  CHECK(target == 3);
  std::vector<uint64_t> order;
  for (uint64_t g = 1; g <= 3; ++g) {
    Start(h.up.durable().AwaitDurable(g), [&h, &order, g](Status st) {
      CHECK(st.ok());
      CHECK(h.applied.size() >= g);  // acknowledged only once its segment was applied
      order.push_back(g);
    });
  }
  h.StartRun();
  REQUIRE(h.env.RunUntil([&] { return order.size() == 3; }));
  CHECK(order == std::vector<uint64_t>{1, 2, 3});
  REQUIRE(h.applied.size() == 3);
  for (size_t i = 0; i < 3; ++i) {
    CHECK(h.applied[i].segment_id == 2 + i);
    CHECK(h.applied[i].epoch == kEpoch);
    CHECK(h.applied[i].durable_through == 1 + i);  // each names the one before it settled
  }
  CHECK(h.settled == 3);
  for (uint64_t id = 2; id <= 4; ++id) CHECK(RunSim(h.env, store.Head(SegmentKey(id))).ok());
  {
    std::lock_guard lock(h.mu);
    CHECK(h.up.EmptyLocked());
    CHECK(h.up.NextSegmentIdLocked() == 5);
    h.up.StopLocked();
  }
  h.env.RunUntilIdle();
  CHECK(h.run_returned);
  CHECK(!h.fenced);
}

TEST_CASE("Uploader: a newer writer's segment at our id fences and fails the FLUSH",
          "[volume][uploader]") {
  SimEnv env;
  objstore::MemoryStore store;
  SegmentFooter theirs;
  theirs.segment_id = 2;
  theirs.epoch = kEpoch + 1;
  theirs.block_size = 4096;
  theirs.blocks_per_chunk = 16;
  REQUIRE(RunSim(env, store.Put(SegmentKey(2), EncodeSegment(&theirs, {}, {}).bytes.Flatten())).ok());
  Harness h(env, store, SmallOptions());
  h.Write(0, 7);
  const uint64_t target = h.FlushTarget();
  h.StartRun();
  Status st = RunSim(h.env, h.up.durable().AwaitDurable(target));
  CHECK(st.message().find("volume is fenced") != std::string::npos);
  CHECK(st.message().find("a newer portalbd opened this volume") != std::string::npos);
  CHECK(h.fenced);
  CHECK(h.applied.empty());
  h.env.RunUntilIdle();
  CHECK(h.run_returned);
  std::lock_guard lock(h.mu);
  CHECK(!h.up.EmptyLocked());  // never acknowledged, never dropped
}

TEST_CASE("Uploader: a failing store is retried while the FLUSH waits, and health says so",
          "[volume][uploader]") {
  SimEnv env;
  int failures_left = 4;
  objstore::FaultOptions fo;
  fo.decide = [&](objstore::OpKind kind, std::string_view) {
    objstore::FaultDecision d;
    if (kind == objstore::OpKind::kPutIfAbsent && failures_left > 0) {
      --failures_left;
      d.action = objstore::FaultDecision::Action::kFail;
    }
    return d;
  };
  objstore::FaultStore store(std::make_unique<objstore::MemoryStore>(), env, fo);
  Harness h(env, store, SmallOptions());
  h.Write(0, 1);
  const uint64_t target = h.FlushTarget();
  std::optional<Status> flushed;
  Start(h.up.durable().AwaitDurable(target), [&](Status st) { flushed = st; });
  h.StartRun();
  REQUIRE(h.env.RunUntil([&] { return failures_left == 1; }));
  {
    std::lock_guard lock(h.mu);
    CHECK(h.up.HealthLocked().failing);
    CHECK(h.up.HealthLocked().failed_attempts == 3);
  }
  CHECK(!flushed);
  REQUIRE(h.env.RunUntil([&] { return flushed.has_value(); }));
  CHECK(flushed->ok());
  std::lock_guard lock(h.mu);
  CHECK(!h.up.HealthLocked().failing);
  CHECK(!h.fenced);
}

TEST_CASE("Uploader: giving up ends the retries without fencing, a stop drains the buffer",
          "[volume][uploader]") {
  SECTION("give up") {
    SimEnv env;
    objstore::FaultOptions fo;
    fo.error_probability = 1;  // the store never answers well
    objstore::FaultStore store(std::make_unique<objstore::MemoryStore>(), env, fo);
    Harness h(env, store, SmallOptions());
    h.Write(0, 1);
    h.FlushTarget();
    h.StartRun();
    h.env.AdvanceBy(60 * kNanosPerSecond);
    CHECK(!h.run_returned);
    h.give_up.Cancel();
    h.env.RunUntilIdle();
    CHECK(h.run_returned);
    CHECK(!h.fenced);  // the stop gave up: no other writer, nothing to fence over
    std::lock_guard lock(h.mu);
    CHECK(!h.up.EmptyLocked());
  }
  SECTION("stop") {
    SimEnv env;
    objstore::MemoryStore store;
    VolumeOptions o = SmallOptions();
    o.flush_interval_ms = 3'600'000;  // nothing is due for an hour: only the stop seals it
    Harness h(env, store, o);
    h.StartRun();
    h.Write(0, 1);
    h.env.AdvanceBy(kNanosPerSecond);
    CHECK(h.applied.empty());
    {
      std::lock_guard lock(h.mu);
      h.up.StopLocked();
    }
    h.env.RunUntilIdle();
    CHECK(h.run_returned);
    CHECK(h.applied.size() == 1);
    std::lock_guard lock(h.mu);
    CHECK(h.up.EmptyLocked());
  }
}

}  // namespace
}  // namespace portal::volume
