#include "volume/lsm_volume.h"

#include <catch2/catch.hpp>
#include <rapidcheck.h>
#include <rapidcheck/catch.h>

#include <cstring>
#include <functional>

#include "env/block_on.h"
#include "env/sim_env.h"
#include "objstore/fault_store.h"
#include "objstore/memory_store.h"
#include "testing/borrowed_store.h"
#include "testing/block_device_model.h"
#include "testing/volume_options.h"

namespace portal::volume {
namespace {

VolumeOptions TinyOptions(uint64_t size) { return testing::SmallVolumeOptions(size); }

std::shared_ptr<LsmVolume> MustOpen(SimEnv& env, objstore::ObjectStore& store, VolumeOptions o) {
  auto v = RunSim(env, LsmVolume::Open(env, store, o));
  if (!v.ok()) FAIL("open failed: " << v.status().ToString());
  return *v;
}

testing::DeviceUnderTest SimDevice(SimEnv& env, std::shared_ptr<BlockDevice> dev) {
  testing::DeviceUnderTest s;
  s.device = std::move(dev);
  s.run = [&env](Task<Status> t) { return RunSim(env, std::move(t)); };
  s.run_status = [&env](Task<Result<std::vector<StatusExtent>>> t) {
    return RunSim(env, std::move(t));
  };
  return s;
}

std::vector<uint8_t> Pattern(size_t n, uint8_t seed) {
  std::vector<uint8_t> d(n);
  for (size_t i = 0; i < n; ++i) d[i] = static_cast<uint8_t>(seed * 31 + i * 7 + (i >> 12) + 1);
  return d;
}

std::vector<uint8_t> ReadAll(SimEnv& env, BlockDevice& dev, uint64_t off, size_t n) {
  std::vector<uint8_t> out(n);
  REQUIRE(RunSim(env, dev.Read(off, out, nullptr)).ok());
  return out;
}

TEST_CASE("LsmVolume matches a byte-array model", "[volume][lsm][property]") {
  rc::prop("random command sequences with small thresholds", [] {
    SimEnv env(SimEnv::Options{.seed = *rc::gen::arbitrary<uint64_t>(), .shuffle_ready = true});
    objstore::MemoryStore store;
    VolumeOptions o = TinyOptions(256 * 1024);
    o.compress = *rc::gen::arbitrary<bool>();
    o.read_partial_raw_chunks = *rc::gen::arbitrary<bool>();
    auto v = RunSim(env, LsmVolume::Open(env, store, o));
    RC_ASSERT(v.ok());
    testing::RunBlockDeviceModel(o.size_bytes, SimDevice(env, *v));
    RC_ASSERT(RunSim(env, (*v)->Close()).ok());
  });
}

TEST_CASE("flushed data survives a clean reopen and maps through SSTs", "[volume][lsm]") {
  SimEnv env;
  objstore::MemoryStore store;
  VolumeOptions o = TinyOptions(4 << 20);
  auto v = MustOpen(env, store, o);
  auto a = Pattern(300 * 1024, 1);
  REQUIRE(RunSim(env, v->Write(12345, a, {})).ok());
  REQUIRE(RunSim(env, v->Trim(100000, 5000, {})).ok());
  std::fill(a.begin() + (100000 - 12345), a.begin() + (105000 - 12345), 0);
  REQUIRE(RunSim(env, v->Flush()).ok());
  REQUIRE(RunSim(env, v->FlushMemtable()).ok());
  REQUIRE(RunSim(env, v->CompactAll()).ok());
  CHECK(ReadAll(env, *v, 12345, a.size()) == a);
  REQUIRE(RunSim(env, v->Close()).ok());

  auto v2 = MustOpen(env, store, o);
  CHECK(v2->epoch() == 2);
  CHECK(ReadAll(env, *v2, 12345, a.size()) == a);
  auto st = v2->stats();
  CHECK(st.map_bytes > 0);
  REQUIRE(RunSim(env, v2->Close()).ok());
}

TEST_CASE("a crash keeps every flushed byte, unflushed blocks are old or new", "[volume][lsm]") {
  SimEnv env;
  objstore::MemoryStore store;
  VolumeOptions o = TinyOptions(4 << 20);
  o.l0_sst_size_bytes = 1 << 20;  // nothing seals on its own
  {
    auto v = MustOpen(env, store, o);
    auto a = Pattern(64 * 1024, 1);
    REQUIRE(RunSim(env, v->Write(0, a, {})).ok());
    REQUIRE(RunSim(env, v->Flush()).ok());
    auto b = Pattern(64 * 1024, 2);
    REQUIRE(RunSim(env, v->Write(32 * 1024, b, {})).ok());
    // Crash: abandon the volume and everything scheduled for it.
    env.DropAll();
  }
  SimEnv env2;
  auto v2 = MustOpen(env2, store, o);
  auto got = ReadAll(env2, *v2, 0, 96 * 1024);
  auto a = Pattern(64 * 1024, 1), b = Pattern(64 * 1024, 2);
  CHECK(std::equal(a.begin(), a.begin() + 32 * 1024, got.begin()));  // flushed, untouched
  for (size_t blk = 8; blk < 24; ++blk) {                           // overwritten: old or new
    const uint8_t* g = got.data() + blk * 4096;
    const uint8_t* old = blk < 16 ? a.data() + blk * 4096 : nullptr;
    const uint8_t* neu = b.data() + (blk - 8) * 4096;
    bool is_new = std::memcmp(g, neu, 4096) == 0;
    bool is_old = old ? std::memcmp(g, old, 4096) == 0
                      : std::all_of(g, g + 4096, [](uint8_t c) { return c == 0; });
    INFO("block " << blk);
    CHECK((is_new || is_old));
  }
  REQUIRE(RunSim(env2, v2->Close()).ok());
}

TEST_CASE("a second writer fences the first: its FLUSH fails, nothing acked is lost",
          "[volume][lsm]") {
  SimEnv env;
  objstore::MemoryStore store;
  VolumeOptions o = TinyOptions(4 << 20);
  auto v1 = MustOpen(env, store, o);
  auto a = Pattern(16 * 1024, 3);
  REQUIRE(RunSim(env, v1->Write(0, a, {.fua = true})).ok());
  auto v2 = MustOpen(env, store, o);  // bumps the epoch and fences
  CHECK(v2->epoch() == v1->epoch() + 1);
  auto b = Pattern(16 * 1024, 4);
  (void)RunSim(env, v1->Write(65536, b, {}));
  Status st = RunSim(env, v1->Flush());
  CHECK_FALSE(st.ok());
  CHECK(v1->fenced());
  CHECK_FALSE(RunSim(env, v1->Write(0, b, {})).ok());
  CHECK(ReadAll(env, *v2, 0, a.size()) == a);  // acked before the fence: kept
  REQUIRE(RunSim(env, v2->Close()).ok());
  (void)RunSim(env, v1->Close());
}

// Answers the first List of manifest/ with a listing taken earlier: a new writer that
// listed, then stalled while the running writer committed and collected manifests.
class StaleManifestListing : public testing::BorrowedStore {
 public:
  StaleManifestListing(objstore::ObjectStore& inner, std::vector<objstore::ObjectInfo> stale)
      : BorrowedStore(inner), stale_(std::move(stale)) {}
  Task<Result<std::vector<objstore::ObjectInfo>>> List(std::string prefix,
                                                       std::string start_after) override {
    if (prefix == "manifest/" && start_after.empty() && !used_) {
      used_ = true;
      co_return stale_;
    }
    co_return co_await BorrowedStore::List(std::move(prefix), std::move(start_after));
  }

 private:
  std::vector<objstore::ObjectInfo> stale_;
  bool used_ = false;
};

TEST_CASE("a new writer whose listing was stale still opens above the running writer",
          "[volume][lsm]") {
  SimEnv env;
  objstore::MemoryStore store;
  VolumeOptions o = TinyOptions(4 << 20);
  o.manifests_kept = 1;
  auto v1 = MustOpen(env, store, o);
  auto commit = [&](uint8_t seed) {
    REQUIRE(RunSim(env, v1->Write(0, Pattern(8192, seed), {.fua = true})).ok());
    REQUIRE(RunSim(env, v1->FlushMemtable()).ok());
  };
  // Listed right after the running writer opened: its opener is never collected.
  auto stale = RunSim(env, store.List("manifest/"));
  REQUIRE(stale.ok());
  // The running writer moves on and collects the manifests right above the stale view.
  for (uint8_t i = 1; i < 7; ++i) commit(i);
  REQUIRE(RunSim(env, v1->RunGc()).ok());
  const uint64_t latest = v1->stats().manifest_number;
  uint64_t stale_latest = 0;
  for (const auto& info : *stale) REQUIRE(ParseManifestKey(info.key, &stale_latest));
  REQUIRE(latest > stale_latest + 1);
  REQUIRE(RunSim(env, store.Head(ManifestKey(stale_latest + 1))).status().IsNotFound());
  // Something in the old writer's memtable, so that its next memtable flush commits.
  REQUIRE(RunSim(env, v1->Write(0, Pattern(8192, 9), {.fua = true})).ok());

  StaleManifestListing view(store, *stale);
  auto v2 = MustOpen(env, view, o);
  INFO("old writer's latest manifest " << latest << ", new opener "
                                       << v2->stats().manifest_number);
  CHECK(v2->stats().manifest_number == latest + 1);
  // The old writer's next manifest collides with the opener: it is fenced.
  CHECK_FALSE(RunSim(env, v1->FlushMemtable()).ok());
  CHECK(v1->fenced());
  CHECK(ReadAll(env, *v2, 0, 8192) == Pattern(8192, 9));
  REQUIRE(RunSim(env, v2->Close()).ok());
  (void)RunSim(env, v1->Close());
}

// Around the first PutIfAbsent of a manifest (a new writer's opener): `before` runs in
// front of it, `after` between its reply and the caller (the running writer commits and
// collects while the opener is on its way).
class AroundFirstManifestCreate : public testing::BorrowedStore {
 public:
  AroundFirstManifestCreate(objstore::ObjectStore& inner, std::function<Task<void>()> before,
                            std::function<Task<void>()> after)
      : BorrowedStore(inner), before_(std::move(before)), after_(std::move(after)) {}
  Task<Status> PutIfAbsent(std::string key, std::string data) override {
    uint64_t n;
    if (done_ || !ParseManifestKey(key, &n)) {
      co_return co_await BorrowedStore::PutIfAbsent(std::move(key), std::move(data));
    }
    done_ = true;
    co_await before_();
    Status st = co_await BorrowedStore::PutIfAbsent(std::move(key), std::move(data));
    co_await after_();
    co_return st;
  }

 private:
  std::function<Task<void>()> before_, after_;
  bool done_ = false;
};

TEST_CASE("a new writer whose opener lost to a manifest already collected re-reads and opens",
          "[volume][lsm]") {
  // dst seeds 743650240823, 262903834534: the new writer read manifest N and tried to
  // create N+1, which the running writer had just committed (412); before the read-back
  // that writer committed N+2 and collected N+1 (manifests_kept = 1), so the read-back
  // found nothing and the open failed NotFound. A newer manifest exists: the open must
  // read again and open above it.
  SimEnv env;
  objstore::MemoryStore store;
  VolumeOptions o = TinyOptions(4 << 20);
  o.manifests_kept = 1;
  auto v1 = MustOpen(env, store, o);
  const uint64_t n = v1->stats().manifest_number;
  // (CHECK, not REQUIRE, inside these coroutines)
  auto commit = [&](uint8_t seed) -> Task<void> {
    CHECK((co_await v1->Write(0, Pattern(8192, seed), {.fua = true})).ok());
    CHECK((co_await v1->FlushMemtable()).ok());
  };
  AroundFirstManifestCreate view(
      store, [&]() -> Task<void> { co_await commit(1); },
      [&]() -> Task<void> {
        co_await commit(2);
        CHECK((co_await v1->RunGc()).ok());
      });
  auto v2 = RunSim(env, LsmVolume::Open(env, view, o));
  INFO(v2.status().ToString());
  REQUIRE(v2.ok());  // was NotFound: manifest/...json (the collected N+1)
  CHECK(v1->stats().manifest_number == n + 2);
  CHECK(RunSim(env, store.Head(ManifestKey(n + 1))).status().IsNotFound());
  CHECK((*v2)->stats().manifest_number == n + 3);
  CHECK(ReadAll(env, **v2, 0, 8192) == Pattern(8192, 2));
  CHECK_FALSE(RunSim(env, v1->Write(0, Pattern(8192, 3), {.fua = true})).ok());
  CHECK(v1->fenced());
  REQUIRE(RunSim(env, (*v2)->Close()).ok());
  (void)RunSim(env, v1->Close());
}

TEST_CASE("a kept write payload is held until its segment is stored, then released",
          "[volume][lsm]") {
  SimEnv env;
  objstore::MemoryStore store;
  VolumeOptions o = TinyOptions(4 << 20);
  o.l0_sst_size_bytes = 1 << 20;
  auto v = MustOpen(env, store, o);
  auto payload = std::make_shared<const std::vector<uint8_t>>(Pattern(256 * 1024, 5));
  std::shared_ptr<const void> keep = payload;
  REQUIRE(RunSim(env, v->Write(8192, *payload, {.keep = &keep})).ok());
  CHECK(payload.use_count() == 3);  // payload, keep and the volume's write buffer
  keep.reset();
  REQUIRE(RunSim(env, v->Flush()).ok());
  // Released once its segment is stored (the uploader lets go of the buffer).
  CHECK(env.RunUntil([&] { return payload.use_count() == 1; }, 100000));
  CHECK(ReadAll(env, *v, 8192, payload->size()) == *payload);
  REQUIRE(RunSim(env, v->Close()).ok());
}

TEST_CASE("TRIM and WRITE_ZEROES cost O(1) whatever their length", "[volume][lsm]") {
  SimEnv env;
  objstore::MemoryStore store;
  VolumeOptions o = TinyOptions(uint64_t{1} << 60);  // 1 EiB
  auto v = MustOpen(env, store, o);
  auto a = Pattern(8192, 5);
  REQUIRE(RunSim(env, v->Write((uint64_t{1} << 60) - 8192, a, {})).ok());
  for (uint64_t i = 0; i < 4096; ++i) {  // 4 TiB in 1 GiB requests
    REQUIRE(RunSim(env, v->Trim(i << 30, uint64_t{1} << 30, {})).ok());
  }
  REQUIRE(RunSim(env, v->WriteZeroes(uint64_t{1} << 50, uint64_t{1} << 55, {.no_hole = true})).ok());
  REQUIRE(RunSim(env, v->Flush()).ok());
  REQUIRE(RunSim(env, v->FlushMemtable()).ok());
  auto st = v->stats();
  CHECK(st.map_bytes < 4096);  // a handful of extents, not billions
  auto status = RunSim(env, v->BlockStatus(0, uint64_t{1} << 32, 100));
  REQUIRE(status.ok());
  REQUIRE(status->size() == 1);
  CHECK((*status)[0] == StatusExtent{uint64_t{1} << 32, true, true});
  auto zero = RunSim(env, v->BlockStatus(uint64_t{1} << 50, 1 << 20, 100));
  REQUIRE(zero.ok());
  CHECK((*zero)[0] == StatusExtent{1 << 20, false, true});
  CHECK(ReadAll(env, *v, (uint64_t{1} << 60) - 8192, 8192) == a);
  REQUIRE(RunSim(env, v->Close()).ok());
}

Task<Status> PokeBytes(LsmVolume& v, uint64_t block, int writer, int count) {
  for (int i = 0; i < count; ++i) {
    uint8_t byte = static_cast<uint8_t>(writer + 1);
    CO_RETURN_IF_ERROR(co_await v.Write(block * 4096 + static_cast<uint64_t>(i * 8 + writer),
                                        {&byte, 1}, {}));
  }
  co_return Status::Ok();
}

TEST_CASE("concurrent sub-block writes to one block are never lost", "[volume][lsm][property]") {
  rc::prop("interleavings of 1-byte writers", [] {
    SimEnv env(SimEnv::Options{.seed = *rc::gen::arbitrary<uint64_t>(), .shuffle_ready = true});
    objstore::MemoryStore store;
    VolumeOptions o = TinyOptions(1 << 20);
    o.l0_sst_size_bytes = 8192;  // segments seal while the writers run
    auto v = RunSim(env, LsmVolume::Open(env, store, o));
    RC_ASSERT(v.ok());
    const int writers = *rc::gen::inRange(2, 8);
    std::vector<Task<Status>> tasks;
    for (int w = 0; w < writers; ++w) tasks.push_back(PokeBytes(**v, 3, w, 64));
    auto results = RunSim(env, WhenAll(std::move(tasks)));
    for (auto& r : results) RC_ASSERT(r.ok());
    std::vector<uint8_t> out(4096);
    RC_ASSERT(RunSim(env, (*v)->Read(3 * 4096, out, nullptr)).ok());
    for (int i = 0; i < 64; ++i) {
      for (int w = 0; w < writers; ++w) RC_ASSERT(out[i * 8 + w] == w + 1);
    }
    RC_ASSERT(RunSim(env, (*v)->Close()).ok());
  });
}

}  // namespace
}  // namespace portal::volume

namespace portal::volume {
namespace {

TEST_CASE("writes past max_unflushed_bytes stall, then progress, with a slow store",
          "[volume][lsm]") {
  SimEnv env;
  objstore::MemoryStore mem;
  objstore::FaultOptions fo;
  fo.latency_probability = 1.0;
  fo.min_latency_ns = 20 * kNanosPerMilli;
  fo.max_latency_ns = 80 * kNanosPerMilli;
  objstore::FaultStore slow(std::make_unique<testing::BorrowedStore>(mem), env, fo);
  VolumeOptions o = TinyOptions(8 << 20);
  o.max_unflushed_bytes = 256 * 1024;
  auto v = MustOpen(env, slow, o);
  for (uint64_t i = 0; i < 16; ++i) {  // 4 MiB: 16x the bound
    auto d = Pattern(256 * 1024, static_cast<uint8_t>(i));
    // A busy-waiting stall would exhaust the step budget instead of finishing.
    REQUIRE(RunSim(env, v->Write(i * 256 * 1024, d, {}), 2'000'000).ok());
  }
  REQUIRE(RunSim(env, v->Flush()).ok());
  CHECK(v->stats().write_stalls > 0);
  for (uint64_t i = 0; i < 16; ++i) {
    CHECK(ReadAll(env, *v, i * 256 * 1024, 256 * 1024) == Pattern(256 * 1024, uint8_t(i)));
  }
  REQUIRE(RunSim(env, v->Close()).ok());
}

TEST_CASE("transient errors and lost acknowledgements never lose an acknowledged write",
          "[volume][lsm]") {
  for (uint64_t seed = 1; seed <= 5; ++seed) {
    SimEnv env(SimEnv::Options{.seed = seed, .shuffle_ready = true});
    objstore::MemoryStore mem;
    objstore::FaultOptions fo;
    fo.seed = seed;
    fo.error_probability = 0.2;
    fo.lost_ack_probability = 0.2;
    VolumeOptions o = TinyOptions(2 << 20);
    std::vector<std::vector<uint8_t>> written;
    {
      objstore::FaultStore faulty(std::make_unique<testing::BorrowedStore>(mem), env, fo);
      auto v = MustOpen(env, faulty, o);
      for (int i = 0; i < 12; ++i) {
        written.push_back(Pattern(40 * 1024, static_cast<uint8_t>(seed * 16 + i)));
        REQUIRE(RunSim(env, v->Write(uint64_t(i) * 40 * 1024, written.back(), {})).ok());
        if (i % 3 == 2) REQUIRE(RunSim(env, v->Flush()).ok());
      }
      REQUIRE(RunSim(env, v->FlushMemtable()).ok());
      REQUIRE(RunSim(env, v->Close()).ok());
      CHECK_FALSE(v->fenced());
    }
    auto v2 = MustOpen(env, mem, o);  // the truth: what is really in the store
    for (int i = 0; i < 12; ++i) {
      INFO("seed " << seed << " write " << i);
      CHECK(ReadAll(env, *v2, uint64_t(i) * 40 * 1024, 40 * 1024) == written[i]);
    }
    REQUIRE(RunSim(env, v2->Close()).ok());
  }
}

TEST_CASE("durations whose nanoseconds overflow 64 bits mean never and do not wrap to 0",
          "[volume][lsm]") {
  // 18446744073710 ms is 2^64 ns + 448384 ns: multiplied out it wrapped to 0.45 ms, so
  // an unflushed write was sealed at once and GC ran every 0.45 ms (an idle daemon spun).
  constexpr uint64_t kWrapsMs = 18'446'744'073'710;
  SimEnv env;
  objstore::MemoryStore store;
  VolumeOptions o = TinyOptions(1 << 20);
  o.flush_interval_ms = kWrapsMs;
  o.memtable_flush_interval_ms = kWrapsMs;
  o.gc_interval_ms = kWrapsMs;
  o.gc_grace_ms = kWrapsMs;
  auto v = MustOpen(env, store, o);
  env.AdvanceBy(kNanosPerSecond);  // the first GC pass, due at open
  auto data = Pattern(4096, 3);
  REQUIRE(RunSim(env, v->Write(0, data, {})).ok());
  const size_t objects = store.object_count();
  const uint64_t steps = env.steps();
  env.AdvanceBy(10 * kNanosPerSecond);
  CHECK(store.object_count() == objects);  // nothing sealed, uploaded or collected
  CHECK(env.steps() - steps < 100);
  CHECK(ReadAll(env, *v, 0, 4096) == data);
  REQUIRE(RunSim(env, v->Flush()).ok());  // FLUSH still seals at once
  CHECK(store.object_count() > objects);
  REQUIRE(RunSim(env, v->Close()).ok());
}

}  // namespace
}  // namespace portal::volume
