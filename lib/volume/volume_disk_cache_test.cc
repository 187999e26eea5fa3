// The disk cache under a volume: chunks written are kept once their segment settles, so
// a restart with a warm disk cache reads without a single GET; a lost, damaged or
// full cache costs GETs, never data.
#include <catch2/catch.hpp>

#include "cache/disk_cache.h"
#include "env/block_on.h"
#include "env/sim_env.h"
#include "objstore/counting_store.h"
#include "objstore/memory_store.h"
#include "testing/borrowed_store.h"
#include "testing/memory_cache_files.h"
#include "testing/testing.h"
#include "volume/lsm_volume.h"

namespace portal::volume {
namespace {

using testing::MemoryCacheFiles;

VolumeOptions Options(const std::string& cache_dir, cache::DiskCache* disk) {
  VolumeOptions o;
  o.size_bytes = 64 << 20;
  o.flush_interval_ms = 0;
  o.l0_sst_size_bytes = 1 << 20;
  o.block_cache_size_bytes = 256 * 1024;
  o.blocks_per_chunk = 4;
  o.compress = true;
  o.cache_dir = cache_dir;  // footers come from the metadata cache: only chunks cost GETs
  o.disk_cache = disk;
  return o;
}

std::vector<uint8_t> Pattern(size_t n, uint8_t seed) {
  std::vector<uint8_t> d(n);
  for (size_t i = 0; i < n; ++i) d[i] = static_cast<uint8_t>(seed * 13 + (i % 97) + (i >> 12));
  return d;
}

struct Rig {
  SimEnv env;
  testing::TempDir dir;
  objstore::MemoryStore mem;
  objstore::CountingStore store{std::make_unique<testing::BorrowedStore>(mem)};
  std::shared_ptr<MemoryCacheFiles::Disk> disk = std::make_shared<MemoryCacheFiles::Disk>();

  // A daemon's start: a new DiskCache over the same files.
  std::unique_ptr<cache::DiskCache> StartCache(uint64_t capacity = 64 << 20) {
    auto c =
        std::make_unique<cache::DiskCache>(env, std::make_unique<MemoryCacheFiles>(disk), capacity);
    RunSim(env, c->Load());
    return c;
  }

  // Opens the volume (fresh memory cache), reads [0, want.size()), closes; returns the
  // GETs the read cost.
  uint64_t ReopenAndRead(cache::DiskCache* dc, const std::vector<uint8_t>& want) {
    auto v = RunSim(env, LsmVolume::Open(env, store, Options(dir.Join("meta"), dc)));
    REQUIRE(v.ok());
    auto before = store.stats();
    std::vector<uint8_t> got(want.size());
    REQUIRE(RunSim(env, (*v)->Read(0, got, nullptr)).ok());
    CHECK(got == want);
    const uint64_t gets = store.stats().Since(before)[objstore::OpKind::kGet].calls;
    REQUIRE(RunSim(env, (*v)->Close()).ok());
    if (dc) RunSim(env, dc->Drain());
    return gets;
  }
};

TEST_CASE("a restart with a warm disk cache reads without GETs, and without it still correct",
          "[volume][disk_cache]") {
  Rig rig;
  std::vector<uint8_t> want(1 << 20);
  {
    auto dc = rig.StartCache();
    auto v = RunSim(rig.env,
                    LsmVolume::Open(rig.env, rig.store, Options(rig.dir.Join("meta"), dc.get())));
    REQUIRE(v.ok());
    for (int i = 0; i < 8; ++i) {
      auto part = Pattern(want.size() / 8, static_cast<uint8_t>(i));
      std::copy(part.begin(), part.end(), want.begin() + i * part.size());
      REQUIRE(RunSim(rig.env, (*v)->Write(i * part.size(), part, {})).ok());
      REQUIRE(RunSim(rig.env, (*v)->Flush()).ok());
    }
    REQUIRE(RunSim(rig.env, (*v)->Close()).ok());
    RunSim(rig.env, dc->Drain());
    CHECK(dc->stats().inserts > 0);  // written chunks, kept without being read
  }
  // Warms the metadata cache's footers (its first open after the writer replays them).
  CHECK(rig.ReopenAndRead(nullptr, want) > 0);

  SECTION("warm: zero GETs") {
    auto dc = rig.StartCache();
    CHECK(rig.ReopenAndRead(dc.get(), want) == 0);
    CHECK(dc->stats().hits > 0);
    CHECK(dc->stats().damaged == 0);
  }
  SECTION("warm, a read that covers some chunks in part: zero GETs, the same data") {
    // Whole chunks go from the disk straight into the read's buffer, the two partly
    // covered ones through the block cache.
    auto dc = rig.StartCache();
    auto v = RunSim(rig.env, LsmVolume::Open(rig.env, rig.store,
                                             Options(rig.dir.Join("meta"), dc.get())));
    REQUIRE(v.ok());
    auto before = rig.store.stats();
    std::vector<uint8_t> got(want.size() - 3 * 4096);
    REQUIRE(RunSim(rig.env, (*v)->Read(4096, got, nullptr)).ok());
    CHECK(std::equal(got.begin(), got.end(), want.begin() + 4096));
    CHECK(rig.store.stats().Since(before)[objstore::OpKind::kGet].calls == 0);
    REQUIRE(RunSim(rig.env, (*v)->Close()).ok());
    CHECK(dc->stats().damaged == 0);
  }
  SECTION("the cache directory deleted: GETs, the same data, and the cache refilled") {
    rig.disk->Clear();
    auto dc = rig.StartCache();
    CHECK(rig.ReopenAndRead(dc.get(), want) > 0);
    CHECK(rig.ReopenAndRead(dc.get(), want) == 0);
  }
  SECTION("every entry damaged: GETs and the same data, never the damaged bytes") {
    rig.disk->on_read = [](const std::string&, std::string* b) { (*b)[b->size() / 2] ^= 1; };
    auto dc = rig.StartCache();
    CHECK(rig.ReopenAndRead(dc.get(), want) > 0);
    CHECK(dc->stats().damaged > 0);
    CHECK(dc->stats().hits == 0);
  }
  SECTION("a full cache disk: off, GETs, the same data") {
    rig.disk->Clear();
    rig.disk->disk_bytes = 100000;
    auto dc = rig.StartCache();
    CHECK(rig.ReopenAndRead(dc.get(), want) > 0);
    CHECK_FALSE(dc->enabled());
    CHECK(rig.ReopenAndRead(dc.get(), want) > 0);
  }
}

TEST_CASE("a disk cache entry of another volume in the same store is never served",
          "[volume][disk_cache]") {
  // Two volumes one after the other at the same URL (the bucket wiped in between): the
  // same segment ids and chunks, other bytes. The second must not read the first's.
  Rig rig;
  auto dc = rig.StartCache();
  const auto first = Pattern(256 * 1024, 1);
  const auto second = Pattern(256 * 1024, 2);
  for (const auto* data : {&first, &second}) {
    auto all = RunSim(rig.env, rig.mem.List(""));  // the bucket wiped
    REQUIRE(all.ok());
    for (const auto& o : *all) REQUIRE(RunSim(rig.env, rig.mem.Delete(o.key)).ok());
    auto v = RunSim(rig.env,
                    LsmVolume::Open(rig.env, rig.store, Options(rig.dir.Join("meta"), dc.get())));
    REQUIRE(v.ok());
    REQUIRE(RunSim(rig.env, (*v)->Write(0, *data, {})).ok());
    REQUIRE(RunSim(rig.env, (*v)->Flush()).ok());
    REQUIRE(RunSim(rig.env, (*v)->Close()).ok());
    RunSim(rig.env, dc->Drain());
  }
  rig.ReopenAndRead(dc.get(), second);
}

}  // namespace
}  // namespace portal::volume
