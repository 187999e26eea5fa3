#include <lz4.h>

#include <catch2/catch.hpp>

#include <mutex>
#include <random>

#include "env/async.h"
#include "env/block_on.h"
#include "env/sim_env.h"
#include "testing/memory_volume.h"
#include "trace/replay.h"
#include "trace/replay_targets.h"

namespace portal::trace {
namespace {

TraceOp Op(OpType type, uint64_t offset, uint64_t length, uint64_t start_ns = 0) {
  TraceOp op;
  op.type = type;
  if (HasRange(type)) {
    op.offset = offset;
    op.length = length;
  }
  op.start_ns = start_ns;
  op.timestamp_ns = start_ns + 10;
  op.duration_ns = 10;
  return op;
}

TEST_CASE("replay scheduler: reads wait for overlapping writes, flush is a barrier", "[trace]") {
  ReplayScheduler s(4);
  s.Started(1, Op(OpType::kWrite, 0, 4096));
  CHECK(!s.CanStart(Op(OpType::kRead, 512, 512)));         // reads after the write
  CHECK(!s.CanStart(Op(OpType::kWrite, 4095, 1)));         // overlapping writes keep order
  CHECK(!s.CanStart(Op(OpType::kBlockStatus, 0, 1 << 20)));
  CHECK(s.CanStart(Op(OpType::kRead, 4096, 4096)));        // adjacent: independent
  CHECK(!s.CanStart(Op(OpType::kFlush, 0, 0)));            // waits for everything
  s.Started(2, Op(OpType::kRead, 8192, 4096));
  CHECK(s.CanStart(Op(OpType::kWrite, 8192, 4096)));       // a write may pass a read
  s.Completed(1);
  CHECK(s.CanStart(Op(OpType::kRead, 512, 512)));
  s.Completed(2);
  CHECK(s.CanStart(Op(OpType::kFlush, 0, 0)));
  s.Started(3, Op(OpType::kFlush, 0, 0));
  CHECK(!s.CanStart(Op(OpType::kRead, 1 << 30, 1)));       // nothing passes a flush
  s.Completed(3);
  for (uint64_t i = 0; i < 4; ++i) s.Started(10 + i, Op(OpType::kRead, 0, 1));
  CHECK(!s.CanStart(Op(OpType::kRead, 0, 1)));             // iodepth
  CHECK(s.inflight() == 4);
}

TEST_CASE("replay order is arrival order", "[trace]") {
  Trace t;
  t.ops = {Op(OpType::kRead, 0, 1, 30), Op(OpType::kRead, 0, 1, 10), Op(OpType::kRead, 0, 1, 20),
           Op(OpType::kRead, 0, 1, 10)};
  t.ops[0].start_ns.reset();  // original-style: start = timestamp - duration = 30
  t.ops[0].timestamp_ns = 35;
  t.ops[0].duration_ns = 5;
  CHECK(ReplayOrder(t) == std::vector<size_t>{1, 3, 2, 0});
}

// A target that takes a random (simulated) time per op and checks, as each op starts,
// that the scheduler's promises hold.
class CheckingTarget final : public ReplayTarget {
 public:
  CheckingTarget(SimEnv& env, uint32_t iodepth) : env_(env), iodepth_(iodepth) {}
  Task<Status> Execute(const TraceOp& op) override {
    {
      std::lock_guard lock(mu_);
      for (const TraceOp* r : running_) {
        if (r->type == OpType::kFlush || op.type == OpType::kFlush) {
          violations_.push_back("something ran beside a flush");
        } else if (IsWriteLike(r->type) && r->offset < op.end() && op.offset < r->end()) {
          violations_.push_back("an op overlapped a running write");
        }
      }
      if (running_.size() >= iodepth_) violations_.push_back("iodepth exceeded");
      if (op.StartNs() < last_start_) violations_.push_back("issued out of order");
      last_start_ = op.StartNs();
      running_.push_back(&op);
      max_running_ = std::max(max_running_, running_.size());
    }
    co_await SleepFor(env_, 1000 + env_.RandomBelow(50'000));
    {
      std::lock_guard lock(mu_);
      std::erase(running_, &op);
    }
    co_return op.offset == 666 ? Status::IOError("boom") : Status::Ok();
  }
  std::vector<std::string> violations_;
  size_t max_running_ = 0;

 private:
  SimEnv& env_;
  const uint32_t iodepth_;
  std::mutex mu_;
  std::vector<const TraceOp*> running_;
  uint64_t last_start_ = 0;
};

Trace RandomTrace(uint64_t seed, size_t n) {
  std::mt19937_64 rng(seed);
  Trace t;
  t.device_size_bytes = 1 << 20;
  uint64_t now = 0;
  for (size_t i = 0; i < n; ++i) {
    auto type = static_cast<OpType>(rng() % kNumOpTypes);
    uint64_t off = (rng() % 256) * 4096;
    uint64_t len = (1 + rng() % 4) * 4096;
    if (off + len > t.device_size_bytes) len = t.device_size_bytes - off;
    now += rng() % 100'000;
    t.ops.push_back(Op(type, off, len, now));
  }
  return t;
}

TEST_CASE("replay keeps dependencies under random timing", "[trace]") {
  for (uint64_t seed = 1; seed <= 5; ++seed) {
    for (uint32_t iodepth : {1u, 8u, 64u}) {
      INFO("seed " << seed << " iodepth " << iodepth);
      SimEnv env(SimEnv::Options{seed, true});
      Trace t = RandomTrace(seed, 2000);
      t.ops[17].offset = 666;  // one failure
      t.ops[17].type = OpType::kRead;
      CheckingTarget target(env, iodepth);
      ReplayOptions o;
      o.iodepth = iodepth;
      ReplayResult r = RunSim(env, Replay(env, t, target, o));
      CHECK(target.violations_.empty());
      if (!target.violations_.empty()) FAIL(target.violations_.front());
      CHECK(r.ops == t.ops.size());
      CHECK(r.failures == 1);
      CHECK(r.failures_by_type[static_cast<size_t>(OpType::kRead)] == 1);
      CHECK_THAT(r.first_error.message(), Catch::Contains("boom"));
      uint64_t total = 0;
      for (size_t i = 0; i < kNumOpTypes; ++i) {
        CHECK(r.latency[i].count() == r.ops_by_type[i]);
        total += r.ops_by_type[i];
      }
      CHECK(total == r.ops);
      if (iodepth > 1) CHECK(target.max_running_ > 1);  // it did run ops concurrently
      CHECK(r.duration_ns > 0);
    }
  }
}

TEST_CASE("replay at the original pace keeps the recorded gaps", "[trace]") {
  SimEnv env;
  Trace t;
  t.ops = {Op(OpType::kRead, 0, 1, 5'000'000), Op(OpType::kRead, 0, 1, 9'000'000),
           Op(OpType::kRead, 0, 1, 1'005'000'000)};
  CheckingTarget target(env, 8);
  ReplayOptions o;
  o.original_pace = true;
  uint64_t t0 = env.NowNanos();
  ReplayResult r = RunSim(env, Replay(env, t, target, o));
  CHECK(r.ops == 3);
  uint64_t elapsed = env.NowNanos() - t0;
  CHECK(elapsed >= 1'000'000'000);  // the last op started a second after the first
  CHECK(elapsed < 1'000'100'000);
  SimEnv fast_env;
  CheckingTarget fast_target(fast_env, 8);
  uint64_t f0 = fast_env.NowNanos();
  RunSim(fast_env, Replay(fast_env, t, fast_target, ReplayOptions{}));
  CHECK(fast_env.NowNanos() - f0 < 1'000'000);
}

TEST_CASE("replay against a device: every type, bad ops fail without reaching it", "[trace]") {
  SimEnv env;
  testing::MemoryVolume device(1 << 20, 4096);
  WritePattern pattern;
  DeviceTarget target(device, pattern);
  Trace t;
  t.device_size_bytes = 1 << 20;
  t.ops = {Op(OpType::kWrite, 0, 8192, 1),         Op(OpType::kRead, 0, 8192, 2),
           Op(OpType::kFlush, 0, 0, 3),            Op(OpType::kTrim, 0, 4096, 4),
           Op(OpType::kWriteZeroes, 4096, 4096, 5), Op(OpType::kBlockStatus, 0, 1 << 20, 6),
           Op(OpType::kCache, 0, 4096, 7),         Op(OpType::kRead, 1 << 20, 1, 8),
           Op(OpType::kWrite, 8192, 3, 9)};
  t.ops[7].success = false;
  ReplayResult r = RunSim(env, Replay(env, t, target, ReplayOptions{}));
  CHECK(r.ops == 9);
  CHECK(r.failures == 1);
  CHECK(r.recorded_failures == 1);
  CHECK(r.bytes_written == 8195);
  CHECK(r.bytes_read == 8193);
  CHECK(r.bytes_zeroed == 8192);
  CHECK(device.data_blocks() == 1);  // block 2 (the 3-byte write); 0 trimmed, 1 zeroed
  std::vector<uint8_t> back(3);
  REQUIRE(BlockOn(device.Read(8192, back, nullptr)).ok());
  auto expect = pattern.Get(8192, 3);
  CHECK(std::equal(back.begin(), back.end(), expect.begin()));
}

TEST_CASE("write pattern: writes at different offsets do not share bytes lz4 could reuse",
          "[trace]") {
  // portalbd compresses segments with lz4 on file:// and s3://: replayed writes that
  // repeat each other's bytes would upload a fraction of what a real workload does.
  WritePattern pattern;
  constexpr size_t kWrites = 2048;
  std::string all;
  std::vector<const uint8_t*> starts;
  for (size_t i = 0; i < kWrites; ++i) {
    auto w = pattern.Get(i * 4096, 4096);
    starts.push_back(w.data());
    all.append(reinterpret_cast<const char*>(w.data()), w.size());
  }
  std::sort(starts.begin(), starts.end());
  CHECK(starts.back() - starts.front() > (16 << 20));  // spread over the whole pattern
  std::vector<char> out(LZ4_compressBound(static_cast<int>(all.size())));
  int n = LZ4_compress_default(all.data(), out.data(), static_cast<int>(all.size()),
                               static_cast<int>(out.size()));
  REQUIRE(n > 0);
  CHECK(static_cast<size_t>(n) > all.size() * 99 / 100);
  // The same offset always gets the same bytes; a write as long as the pattern fits.
  auto a = pattern.Get(12345 * 512, 4096);
  auto b = pattern.Get(12345 * 512, 4096);
  CHECK(a.data() == b.data());
  CHECK(pattern.Get(1 << 30, kMaxPatternLength).size() == kMaxPatternLength);
}

}  // namespace
}  // namespace portal::trace
