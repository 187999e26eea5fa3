// The Uploader alone, against a memory store (and a FaultStore for failures), with a
// recording UploadSink in place of the volume.
#include "volume/uploader.h"

#include <algorithm>
#include <optional>
#include <set>
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
  void StartRun(uint64_t window = 1) {
    {
      std::lock_guard lock(mu);
      up.SettledFenceLocked(2);  // open fenced segment 1; our ids resume at 2
      up.SetWindowLocked(window);
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

// A store whose segment PUTs hang while their key is held (each attempt waits in
// simulated time, then fails as a timeout), and that records when each PUT landed.
struct HeldStore {
  explicit HeldStore(SimEnv& env) : env(env) {
    objstore::FaultOptions fo;
    fo.decide = [this](objstore::OpKind kind, std::string_view key) {
      objstore::FaultDecision d;
      if (kind != objstore::OpKind::kPutIfAbsent || !key.starts_with("seg/")) return d;
      attempts.push_back(std::string(key));
      if (held.count(std::string(key))) {
        d.latency_ns = kNanosPerSecond;
        d.action = objstore::FaultDecision::Action::kFail;
        d.error = Status::Unavailable("held: request timed out");
      }
      return d;
    };
    store = std::make_unique<objstore::FaultStore>(std::make_unique<objstore::MemoryStore>(),
                                                   env, std::move(fo));
  }
  bool Stored(uint64_t id) { return RunSim(env, store->Head(SegmentKey(id))).ok(); }
  bool Attempted(uint64_t id) {
    return std::find(attempts.begin(), attempts.end(), SegmentKey(id)) != attempts.end();
  }
  SimEnv& env;
  std::set<std::string> held;
  std::vector<std::string> attempts;
  std::unique_ptr<objstore::FaultStore> store;
};

TEST_CASE("Uploader: uploads complete out of order, are applied and acknowledged in id order",
          "[volume][uploader]") {
  SimEnv env;
  HeldStore hs(env);
  hs.held.insert(SegmentKey(2));  // the lowest id hangs; 3 and 4 land at once
  Harness h(env, *hs.store, SmallOptions());
  for (uint64_t b = 0; b < 6; ++b) h.Write(b, uint8_t(b + 1));  // gens 1..3 sealed
  const uint64_t target = h.FlushTarget();
  std::vector<uint64_t> acked;
  for (uint64_t g = 1; g <= target; ++g) {
    Start(h.up.durable().AwaitDurable(g), [&acked, g](Status st) {
      CHECK(st.ok());
      acked.push_back(g);
    });
  }
  h.StartRun(/*window=*/4);
  REQUIRE(h.env.RunUntil([&] { return hs.Stored(3) && hs.Stored(4); }));
  h.env.AdvanceBy(5 * kNanosPerSecond);
  CHECK(!hs.Stored(2));
  // Stored above an unsettled id: nothing applied, nothing acknowledged, and every
  // buffer still readable.
  CHECK(h.applied.empty());
  CHECK(acked.empty());
  CHECK(h.up.durable().durable() == 0);
  {
    std::lock_guard lock(h.mu);
    int buffers = 0;
    h.up.ForEachBufferLocked([&](const WriteBuffer& b) { return buffers += !b.empty(), true; });
    CHECK(buffers == 3);
    CHECK(h.up.SettledThroughLocked() == 1);
  }
  hs.held.clear();
  REQUIRE(h.env.RunUntil([&] { return acked.size() == target; }));
  CHECK(acked == std::vector<uint64_t>{1, 2, 3});
  REQUIRE(h.applied.size() == 3);
  for (size_t i = 0; i < 3; ++i) {
    CHECK(h.applied[i].segment_id == 2 + i);
    CHECK(h.applied[i].durable_through == 1);  // all three started with only 1 settled
  }
  std::lock_guard lock(h.mu);
  CHECK(h.up.EmptyLocked());
  CHECK(h.up.SettledThroughLocked() == 4);
  h.up.StopLocked();
}

TEST_CASE("Uploader: id i starts only once every id <= i - K is settled",
          "[volume][uploader]") {
  SimEnv env;
  HeldStore hs(env);
  hs.held.insert(SegmentKey(2));
  Harness h(env, *hs.store, SmallOptions());
  for (uint64_t b = 0; b < 10; ++b) h.Write(b, uint8_t(b + 1));  // gens 1..5 sealed
  const uint64_t target = h.FlushTarget();
  h.StartRun(/*window=*/2);
  h.env.AdvanceBy(10 * kNanosPerSecond);
  // K = 2, settled prefix 1: ids 2 and 3 may be in flight, 4 may not start.
  CHECK(hs.Attempted(2));
  CHECK(hs.Stored(3));
  CHECK(!hs.Attempted(4));
  {
    std::lock_guard lock(h.mu);
    CHECK(h.up.InFlightLocked() == 2);
  }
  hs.held.clear();
  REQUIRE(RunSim(h.env, h.up.durable().AwaitDurable(target)).ok());
  REQUIRE(h.applied.size() == 5);
  for (size_t i = 0; i < 5; ++i) {
    // Each names a settled prefix at least i + 2 - K (its start needed it settled).
    CHECK(h.applied[i].segment_id == 2 + i);
    CHECK(h.applied[i].durable_through + 2 >= h.applied[i].segment_id);
  }
  std::lock_guard lock(h.mu);
  h.up.StopLocked();
}

TEST_CASE("Uploader: a failed upload above others in flight fences, and none is acknowledged",
          "[volume][uploader]") {
  SimEnv env;
  HeldStore hs(env);
  hs.held.insert(SegmentKey(2));
  SegmentFooter theirs;  // a newer writer's fence at 3
  theirs.segment_id = 3;
  theirs.epoch = kEpoch + 1;
  REQUIRE(RunSim(env, hs.store->inner().Put(SegmentKey(3),
                                            EncodeSegment(&theirs, {}, {}).bytes.Flatten()))
              .ok());
  Harness h(env, *hs.store, SmallOptions());
  for (uint64_t b = 0; b < 4; ++b) h.Write(b, uint8_t(b + 1));
  const uint64_t target = h.FlushTarget();
  h.StartRun(/*window=*/4);
  Status st = RunSim(h.env, h.up.durable().AwaitDurable(target));
  CHECK(st.message().find("a newer portalbd opened this volume") != std::string::npos);
  CHECK(h.fenced);
  h.env.RunUntilIdle();  // the held upload of 2 stops retrying; Run waits for it
  CHECK(h.run_returned);
  CHECK(h.applied.empty());
}

}  // namespace
}  // namespace portal::volume
