// One write-buffer budget for several volumes (write_budget.h, docs/volumes.md "One
// budget"): the bound holds across volumes written at once, an idle volume's buffer is
// pushed out for a blocked one, and waiters are served in order.
#include "volume/write_budget.h"

#include <fmt/format.h>

#include <catch2/catch.hpp>
#include <memory>
#include <vector>

#include "env/async.h"
#include "env/block_on.h"
#include "env/sim_env.h"
#include "objstore/fault_store.h"
#include "objstore/memory_store.h"
#include "objstore/prefix_store.h"
#include "testing/borrowed_store.h"
#include "testing/volume_options.h"
#include "volume/lsm_volume.h"

namespace portal::volume {
namespace {

constexpr uint64_t kBlock = 4096;

// Segment uploads take `put_ms` of simulated time: the store is slower than the writes.
objstore::FaultOptions SlowPuts(uint64_t put_ms) {
  objstore::FaultOptions fo;
  fo.decide = [put_ms](objstore::OpKind kind, std::string_view) {
    objstore::FaultDecision d;
    if (kind == objstore::OpKind::kPutIfAbsent) d.latency_ns = put_ms * kNanosPerMilli;
    return d;
  };
  return fo;
}

// Writes `count` writes of `bytes` filled with `fill` at `first_off`, `stride` apart
// (modulo `wrap`); counts failures, and successes in `*ok` (if set), until `*stop` (if set).
Task<void> Writer(std::shared_ptr<LsmVolume> v, uint64_t first_off, uint64_t stride, uint64_t wrap,
                  uint64_t bytes, uint8_t fill, uint64_t count, int* failed, uint64_t* ok,
                  const bool* stop) {
  std::vector<uint8_t> data(bytes, fill);
  for (uint64_t k = 0; k < count && !(stop && *stop); ++k) {
    if ((co_await v->Write((first_off + k * stride) % wrap, data, {})).ok()) {
      if (ok) ++*ok;
    } else {
      ++*failed;
    }
  }
}

std::shared_ptr<LsmVolume> OpenOn(SimEnv& env, objstore::ObjectStore& store, VolumeOptions o) {
  auto v = RunSim(env, LsmVolume::Open(env, store, std::move(o)));
  REQUIRE(v.ok());
  return *v;
}

TEST_CASE("write budget: waiters are served in order of arrival and push the holders",
          "[volume][write_budget]") {
  SimEnv env;
  WriteBudget budget(env, 100);
  int pushes_a = 0, pushes_b = 0;
  auto a = budget.Join([&] { ++pushes_a; });
  auto b = budget.Join([&] { ++pushes_b; });
  {
    WriteBudget::Waiter w(budget, *a, 80);
    REQUIRE(w.TryReserve());
  }
  budget.Update(*a, 80, 80, 80);  // a holds 80, all in its active buffer
  WriteBudget::Waiter big(budget, *b, 50);
  CHECK_FALSE(big.TryReserve());  // 130 > 100: queued first
  CHECK(big.push());              // and nothing is on its way to upload
  WriteBudget::Waiter small(budget, *a, 10);
  CHECK_FALSE(small.TryReserve());  // fits (90), but behind `big`: no overtaking
  CHECK_FALSE(small.push());        // not first in line
  budget.Update(*a, 80, 0);         // sealed: on its way
  CHECK_FALSE(big.TryReserve());
  CHECK_FALSE(big.push());  // its settling makes room: no need to push
  budget.Update(*a, 80, 80);
  budget.PushHolders();
  CHECK(pushes_a == 1);
  CHECK(pushes_b == 0);       // b holds nothing
  budget.Update(*a, 40, 40);  // an upload settled
  CHECK(big.TryReserve());
  CHECK(small.TryReserve());  // 40 + 50 + 10 = 100
  CHECK(budget.stats().high_water_bytes == 100);
  CHECK(budget.stats().waits == 2);
  budget.Update(*b, 50, 50, 50);
  budget.Update(*a, 50, 50, 10);
  budget.Leave(*a);
  budget.PushHolders();
  CHECK(pushes_a == 1);  // never called after Leave
  CHECK(budget.stats().used_bytes == 50);
  // A write larger than the whole budget goes alone.
  WriteBudget::Waiter huge(budget, *b, 500);
  CHECK_FALSE(huge.TryReserve());
  budget.Update(*b, 0, 0);
  CHECK(huge.TryReserve());
  budget.Update(*b, 0, 0, 500);
  budget.Leave(*b);
}

TEST_CASE("write budget: four volumes written at once never hold more than the budget",
          "[volume][write_budget]") {
  SimEnv env;
  objstore::MemoryStore mem;
  objstore::FaultStore slow(std::make_unique<testing::BorrowedStore>(mem), env, SlowPuts(20));
  constexpr uint64_t kBudget = 512 * 1024;
  WriteBudget budget(env, kBudget);
  VolumeOptions o = testing::SmallVolumeOptions(8 << 20);
  o.l0_sst_size_bytes = 128 * 1024;
  o.max_unflushed_bytes = kBudget;  // each volume's own bound: 4x the budget together
  o.upload_window = 2;
  o.write_budget = &budget;
  std::vector<std::unique_ptr<objstore::PrefixStore>> views;
  std::vector<std::shared_ptr<LsmVolume>> vols;
  for (int i = 0; i < 4; ++i) {
    views.push_back(std::make_unique<objstore::PrefixStore>(slow, fmt::format("v{}/", i)));
    vols.push_back(OpenOn(env, *views.back(), o));
  }
  // 8 writers per volume, 64 KiB each, 1 MiB per writer (4 MiB per volume, 16 in all).
  int finished = 0, failed = 0;
  for (int i = 0; i < 4; ++i) {
    for (int w = 0; w < 8; ++w) {
      const uint64_t kWrite = 64 * 1024;
      Start(Writer(vols[i], w * 16 * kWrite, kWrite, 8 << 20, kWrite,
                   static_cast<uint8_t>(1 + i * 8 + w), 16, &failed, nullptr, nullptr),
            [&] { ++finished; });
    }
  }
  REQUIRE(env.RunUntil([&] { return finished == 32; }, 50'000'000));
  CHECK(failed == 0);
  const WriteBudgetStats s = budget.stats();
  INFO("high water " << s.high_water_bytes << " waits " << s.waits);
  CHECK(s.waits > 0);  // the budget was contended
  CHECK(s.high_water_bytes <= kBudget);
  CHECK(s.high_water_bytes > kBudget / 2);
  for (auto& v : vols) REQUIRE(RunSim(env, v->Flush()).ok());
  for (int i = 0; i < 4; ++i) {
    std::vector<uint8_t> out(64 * 1024);
    REQUIRE(RunSim(env, vols[i]->Read(7 * 16 * out.size(), out, nullptr)).ok());
    CHECK(out[0] == static_cast<uint8_t>(1 + i * 8 + 7));
  }
  for (auto& v : vols) REQUIRE(RunSim(env, v->Close()).ok());
  CHECK(budget.stats().used_bytes == 0);
}

TEST_CASE("write budget: a volume blocked behind an idle one's buffer completes",
          "[volume][write_budget]") {
  SimEnv env;
  objstore::MemoryStore mem;
  objstore::PrefixStore view_a(mem, "a/"), view_b(mem, "b/");
  constexpr uint64_t kBudget = 256 * 1024;
  WriteBudget budget(env, kBudget);
  VolumeOptions o = testing::SmallVolumeOptions(4 << 20);
  // Nothing seals a buffer on its own: no flush interval, segments far above the budget.
  o.flush_interval_ms = 0;
  o.l0_sst_size_bytes = 4 << 20;
  o.max_unflushed_bytes = 4 << 20;
  o.write_budget = &budget;
  auto a = OpenOn(env, view_a, o);
  auto b = OpenOn(env, view_b, o);
  // `a` fills most of the budget, then goes idle without a FLUSH.
  std::vector<uint8_t> fill(192 * 1024, 0xaa);
  REQUIRE(RunSim(env, a->Write(0, fill, {})).ok());
  CHECK(a->stats().active_buffer_bytes == fill.size());
  // `b` needs more than is left: it waits until a's buffer is pushed out and uploaded.
  std::vector<uint8_t> more(128 * 1024, 0xbb);
  REQUIRE(RunSim(env, b->Write(0, more, {})).ok());
  CHECK(a->stats().active_buffer_bytes == 0);
  CHECK(budget.stats().high_water_bytes <= kBudget);
  REQUIRE(RunSim(env, b->Flush()).ok());
  std::vector<uint8_t> out(fill.size());
  REQUIRE(RunSim(env, a->Read(0, out, nullptr)).ok());
  CHECK(out == fill);
  REQUIRE(RunSim(env, a->Close()).ok());
  REQUIRE(RunSim(env, b->Close()).ok());
}

TEST_CASE("write budget: a busy volume does not starve a second one", "[volume][write_budget]") {
  SimEnv env;
  objstore::MemoryStore mem;
  objstore::FaultStore slow(std::make_unique<testing::BorrowedStore>(mem), env, SlowPuts(10));
  objstore::PrefixStore view_a(slow, "a/"), view_b(slow, "b/");
  constexpr uint64_t kBudget = 256 * 1024;
  WriteBudget budget(env, kBudget);
  VolumeOptions o = testing::SmallVolumeOptions(64 << 20);
  o.l0_sst_size_bytes = 64 * 1024;
  o.write_budget = &budget;
  auto a = OpenOn(env, view_a, o);
  auto b = OpenOn(env, view_b, o);
  // `a` has 16 writers of small writes that never stop while `b` runs; `b` writes 64
  // KiB at a time, more than what one settling upload of `a` frees at once.
  bool stop = false;
  uint64_t a_writes = 0;
  int finished = 0, failed = 0;
  for (int w = 0; w < 16; ++w) {
    const uint64_t kWrite = 8 * 1024;
    Start(Writer(a, w * 4096 * kWrite, kWrite, 64 << 20, kWrite, 0xaa, UINT64_MAX, &failed,
                 &a_writes, &stop),
          [&] { ++finished; });
  }
  std::vector<uint8_t> data(64 * 1024, 0xbb);
  for (uint64_t k = 0; k < 32; ++k) {
    REQUIRE(RunSim(env, b->Write(k * data.size(), data, {})).ok());
  }
  stop = true;
  REQUIRE(env.RunUntil([&] { return finished == 16; }, 50'000'000));
  CHECK(failed == 0);
  CHECK(a_writes > 0);
  CHECK(budget.stats().high_water_bytes <= kBudget);
  REQUIRE(RunSim(env, a->Close()).ok());
  REQUIRE(RunSim(env, b->Close()).ok());
}

}  // namespace
}  // namespace portal::volume
