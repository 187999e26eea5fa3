// Uploads in flight across writers (DESIGN.md single writer, step 5; docs/volume.md
// "Uploads in flight"): an old writer's id N+1 stored while N was not, and one that lands
// after the next writer opened, are never applied; the fence reserves their window.
#include <catch2/catch.hpp>

#include <chrono>
#include <optional>
#include <set>
#include <string>

#include "env/async.h"
#include "env/block_on.h"
#include "env/real_env.h"
#include "env/sim_env.h"
#include "objstore/fault_store.h"
#include "objstore/memory_store.h"
#include "testing/borrowed_store.h"
#include "testing/volume_options.h"
#include "volume/lsm_volume.h"

namespace portal::volume {
namespace {

constexpr size_t kBlock = 4096;

VolumeOptions WindowOptions(uint32_t window) {
  VolumeOptions o = testing::SmallVolumeOptions(1 << 20);
  o.upload_window = window;
  o.memtable_flush_segments = 1000;  // everything stays in the replay log
  o.memtable_flush_interval_ms = 1'000'000'000;
  o.gc_interval_ms = 1'000'000'000;
  return o;
}

std::vector<uint8_t> Block(uint8_t fill) { return std::vector<uint8_t>(kBlock, fill); }

uint8_t ReadByte(SimEnv& env, LsmVolume& v, uint64_t block) {
  std::vector<uint8_t> out(kBlock);
  REQUIRE(RunSim(env, v.Read(block * kBlock, out, nullptr)).ok());
  for (uint8_t b : out) REQUIRE(b == out[0]);
  return out[0];
}

TEST_CASE("an old writer's segments above its first gap are never applied, landed before "
          "or after the next writer opened",
          "[volume][window]") {
  SimEnv env;
  objstore::MemoryStore mem;
  std::set<std::string> held;  // segment PUTs that hang (and time out) while listed here
  objstore::FaultOptions fo;
  fo.decide = [&](objstore::OpKind kind, std::string_view key) {
    objstore::FaultDecision d;
    if (kind == objstore::OpKind::kPutIfAbsent && held.count(std::string(key))) {
      d.latency_ns = kNanosPerSecond;
      d.action = objstore::FaultDecision::Action::kFail;
      d.error = Status::Unavailable("held: request timed out");
    }
    return d;
  };
  objstore::FaultStore a_store(std::make_unique<testing::BorrowedStore>(mem), env, fo);
  auto a = *RunSim(env, LsmVolume::Open(env, a_store, WindowOptions(4)));
  // Fence 1 reserves 2..4: A's ids start at 5.
  REQUIRE(RunSim(env, a->Write(0, Block('a'), {})).ok());
  REQUIRE(RunSim(env, a->Flush()).ok());
  REQUIRE(RunSim(env, mem.Head(SegmentKey(5))).ok());

  // 6 hangs, 7 lands, 8 hangs: three FLUSHes in flight, none may be acknowledged.
  held = {SegmentKey(6), SegmentKey(8)};
  std::vector<std::optional<Status>> flushed(3);
  const std::pair<uint64_t, uint8_t> writes[] = {{1, 'b'}, {2, 'c'}, {4, 'd'}};
  for (size_t i = 0; i < 3; ++i) {
    REQUIRE(RunSim(env, a->Write(writes[i].first * kBlock, Block(writes[i].second), {})).ok());
    Start(a->Flush(), [&flushed, i](Status st) { flushed[i] = st; });
    const uint64_t id = 6 + i;
    REQUIRE(env.RunUntil([&] { return a->stats().next_segment_id > id; }));
  }
  REQUIRE(env.RunUntil([&] { return RunSim(env, mem.Head(SegmentKey(7))).ok(); }));
  env.AdvanceBy(3 * kNanosPerSecond);
  for (auto& f : flushed) CHECK(!f.has_value());
  CHECK(ReadByte(env, *a, 2) == 'c');  // stored above an unsettled id: still readable

  // B opens: replay stops at the gap 6 (7's durable_through is 5: a crash gap, not
  // damage), fences 6 and resumes at 6 + 4. 7 is never applied.
  testing::BorrowedStore b_store(mem);
  auto b = *RunSim(env, LsmVolume::Open(env, b_store, WindowOptions(4)));
  CHECK(ReadByte(env, *b, 0) == 'a');
  CHECK(ReadByte(env, *b, 1) == 0);
  CHECK(ReadByte(env, *b, 2) == 0);
  CHECK(b->stats().next_segment_id == 10);

  // A's stalled PUTs go on: 8 lands after B opened (inside B's window), then 6 meets
  // B's fence.
  held.erase(SegmentKey(8));
  REQUIRE(env.RunUntil([&] { return RunSim(env, mem.Head(SegmentKey(8))).ok(); }));
  env.AdvanceBy(kNanosPerSecond);
  for (auto& f : flushed) CHECK(!f.has_value());
  held.clear();
  REQUIRE(env.RunUntil([&] { return flushed[0] && flushed[1] && flushed[2]; }));
  for (auto& f : flushed) CHECK(!f->ok());
  CHECK(a->fenced());
  REQUIRE(RunSim(env, mem.Head(SegmentKey(8))).ok());
  CHECK(ReadByte(env, *b, 4) == 0);

  REQUIRE(RunSim(env, b->Write(5 * kBlock, Block('B'), {})).ok());
  REQUIRE(RunSim(env, b->Flush()).ok());
  REQUIRE(RunSim(env, mem.Head(SegmentKey(10))).ok());
  REQUIRE(RunSim(env, b->Close()).ok());
  (void)RunSim(env, a->Close());

  // C replays 1 (fence) 5, 6 (fence, resume 10) 10: 7 and 8 lie in the window.
  auto c = *RunSim(env, LsmVolume::Open(env, b_store, WindowOptions(1)));
  CHECK(ReadByte(env, *c, 0) == 'a');
  CHECK(ReadByte(env, *c, 1) == 0);
  CHECK(ReadByte(env, *c, 2) == 0);
  CHECK(ReadByte(env, *c, 4) == 0);
  CHECK(ReadByte(env, *c, 5) == 'B');
  // The manifest's window is never lowered: C's fence reserves 4 ids too.
  CHECK(c->stats().next_segment_id == 11 + 4);
  REQUIRE(RunSim(env, c->Close()).ok());
}

// A store as far away as real S3 in-region: every PUT waits 25 ms plus its bytes at
// 150 MB/s (one connection each), in real time.
class SlowStore final : public testing::BorrowedStore {
 public:
  SlowStore(objstore::ObjectStore& inner, Env& env) : BorrowedStore(inner), env_(env) {}
  Task<Status> PutIfAbsentRope(std::string key, objstore::Rope data) override {
    co_await SleepFor(env_, Delay(data.size()));
    co_return co_await BorrowedStore::PutIfAbsentRope(std::move(key), std::move(data));
  }
  Task<Status> PutIfAbsent(std::string key, std::string data) override {
    co_await SleepFor(env_, Delay(data.size()));
    co_return co_await BorrowedStore::PutIfAbsent(std::move(key), std::move(data));
  }

 private:
  static uint64_t Delay(uint64_t bytes) { return 25'000'000 + bytes * 1000 / 150; }
  Env& env_;
};

// A measurement, in the slow label only: build/portal_tests "[bench][window]". Sequential
// 1 MiB writes until durable (one FLUSH at the end) through SlowStore, by upload window.
TEST_CASE("bench: sequential writes through a 25 ms, 150 MB/s store by upload window",
          "[.][bench][window][slow]") {
  constexpr uint64_t kTotal = 128ull << 20, kWrite = 1 << 20;
  for (uint64_t segment : {8ull << 20, 2ull << 20})
  for (uint32_t window : {1u, 2u, 4u, 8u}) {
    RealEnv env(RealEnv::Options{.executor_threads = 2, .blocking_threads = 2});
    env.Start();
    objstore::MemoryStore mem;
    SlowStore store(mem, env);
    VolumeOptions o = WindowOptions(window);
    o.size_bytes = 1ull << 30;
    o.l0_sst_size_bytes = segment;
    o.max_unflushed_bytes = 128 << 20;
    o.compress = false;
    o.blocks_per_chunk = 16;
    auto v = *BlockOn(LsmVolume::Open(env, store, o));
    std::vector<uint8_t> data(kWrite);
    const auto t0 = std::chrono::steady_clock::now();
    for (uint64_t off = 0; off < kTotal; off += kWrite) {
      for (size_t i = 0; i < data.size(); i += 8) data[i] = uint8_t(1 + (off >> 20) + i / 4096);
      REQUIRE(BlockOn(v->Write(off, data, {})).ok());
    }
    REQUIRE(BlockOn(v->Flush()).ok());
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const VolumeStats st = v->stats();
    std::printf("segments of %llu MiB, upload_window=%u: %llu MiB sequential until durable in %.2f s = %.0f MB/s, "
                "%llu segments, %.1f MiB stored\n",
                (unsigned long long)(segment >> 20), window, (unsigned long long)(kTotal >> 20), s, double(kTotal) / s / 1e6,
                (unsigned long long)st.segments, double(st.segment_bytes) / (1 << 20));
    REQUIRE(BlockOn(v->Close()).ok());
    env.Stop();
  }
}

}  // namespace
}  // namespace portal::volume
