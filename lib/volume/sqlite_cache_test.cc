// The metadata cache in `[storage] cache_dir`: it saves GETs at reopen, and deleting or
// corrupting it loses nothing (it is never authoritative).
#include "volume/sqlite_cache.h"

#include <sqlite3.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>

#include "env/async.h"
#include "env/block_on.h"
#include "env/sim_env.h"
#include "objstore/counting_store.h"
#include "objstore/fault_store.h"
#include "objstore/memory_store.h"
#include "testing/borrowed_store.h"
#include "testing/testing.h"
#include "volume/lsm_volume.h"

namespace portal::volume {
namespace {

VolumeOptions SmallOptions(const std::string& cache_dir) {
  VolumeOptions o;
  o.size_bytes = 64 << 20;
  o.flush_interval_ms = 0;
  o.l0_sst_size_bytes = 64 * 1024;
  o.block_cache_size_bytes = 256 * 1024;
  o.sst_target_bytes = 2048;
  o.level1_target_bytes = 4096;
  o.blocks_per_chunk = 4;
  o.cache_dir = cache_dir;
  return o;
}

std::vector<uint8_t> Pattern(size_t n, uint8_t seed) {
  std::vector<uint8_t> d(n);
  for (size_t i = 0; i < n; ++i) d[i] = static_cast<uint8_t>(seed * 13 + i * 5 + (i >> 12));
  return d;
}

// Opens the volume, reads [0, n), closes it; returns the GETs and HEADs it cost.
uint64_t ReopenAndRead(SimEnv& env, objstore::CountingStore& store, const VolumeOptions& o,
                       const std::vector<uint8_t>& want) {
  auto before = store.stats();
  auto v = RunSim(env, LsmVolume::Open(env, store, o));
  REQUIRE(v.ok());
  std::vector<uint8_t> got(want.size());
  REQUIRE(RunSim(env, (*v)->Read(0, got, nullptr)).ok());
  CHECK(got == want);
  REQUIRE(RunSim(env, (*v)->Close()).ok());
  auto d = store.stats().Since(before);
  return d[objstore::OpKind::kGet].calls + d[objstore::OpKind::kHead].calls +
         d[objstore::OpKind::kList].calls;
}

TEST_CASE("the metadata cache saves requests at reopen, and losing or corrupting it loses nothing",
          "[volume][cache]") {
  testing::TempDir dir;
  const std::string cache_dir = dir.Join("cache");
  SimEnv env;
  objstore::MemoryStore mem;
  objstore::CountingStore store(std::make_unique<testing::BorrowedStore>(mem));
  const VolumeOptions o = SmallOptions(cache_dir);

  // Data spread over several segments and SSTs.
  std::vector<uint8_t> want(2 << 20);
  {
    auto v = RunSim(env, LsmVolume::Open(env, store, o));
    REQUIRE(v.ok());
    for (int i = 0; i < 8; ++i) {
      auto part = Pattern(want.size() / 8, static_cast<uint8_t>(i));
      std::copy(part.begin(), part.end(), want.begin() + i * part.size());
      REQUIRE(RunSim(env, (*v)->Write(i * part.size(), part, {})).ok());
      REQUIRE(RunSim(env, (*v)->Flush()).ok());
    }
    REQUIRE(RunSim(env, (*v)->FlushMemtable()).ok());
    REQUIRE(RunSim(env, (*v)->Close()).ok());
  }
  REQUIRE(std::filesystem::exists(cache_dir + "/portalbd-cache.sqlite"));

  // Without the cache (an in-memory one per open). The writer already kept its segments'
  // footers; the first reopen keeps the rest (SSTs).
  const uint64_t uncached = ReopenAndRead(env, store, SmallOptions(""), want);
  const uint64_t warming = ReopenAndRead(env, store, o, want);  // fills the cache
  const uint64_t warm = ReopenAndRead(env, store, o, want);
  INFO("requests: no cache " << uncached << ", warming run " << warming << ", warm run " << warm);
  CHECK(warming < uncached);
  CHECK(warm <= warming);
  CHECK(warm < uncached);

  // Corrupt every cached entry: each is rejected by its checksum, the store answers.
  {
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open((cache_dir + "/portalbd-cache.sqlite").c_str(), &db) == SQLITE_OK);
    REQUIRE(sqlite3_exec(db, "UPDATE objects SET bytes = randomblob(length(bytes))", nullptr,
                         nullptr, nullptr) == SQLITE_OK);
    CHECK(sqlite3_changes(db) > 0);
    REQUIRE(sqlite3_exec(db, "UPDATE hints SET manifest = 999999", nullptr, nullptr, nullptr) ==
            SQLITE_OK);
    sqlite3_close(db);
  }
  const uint64_t corrupted = ReopenAndRead(env, store, o, want);
  CHECK(corrupted > warm);

  // Delete it: the next open rebuilds it from the store.
  std::filesystem::remove_all(cache_dir);
  const uint64_t cold = ReopenAndRead(env, store, o, want);
  CHECK(cold > warm);
  CHECK(std::filesystem::exists(cache_dir + "/portalbd-cache.sqlite"));
}

TEST_CASE("an unusable cache_dir disables the cache instead of failing the volume",
          "[volume][cache]") {
  testing::TempDir dir;
  // A regular file where the directory should be.
  { std::ofstream(dir.Join("file")) << "x"; }
  SimEnv env;
  objstore::MemoryStore mem;
  objstore::CountingStore store(std::make_unique<testing::BorrowedStore>(mem));
  VolumeOptions o = SmallOptions(dir.Join("file"));
  auto want = Pattern(256 * 1024, 3);
  auto v = RunSim(env, LsmVolume::Open(env, store, o));
  REQUIRE(v.ok());
  REQUIRE(RunSim(env, (*v)->Write(0, want, {})).ok());
  REQUIRE(RunSim(env, (*v)->Flush()).ok());
  REQUIRE(RunSim(env, (*v)->Close()).ok());
  CHECK(ReopenAndRead(env, store, o, want) > 0);
}


TEST_CASE("the metadata cache erases an object with its parts, and nothing else",
          "[volume][cache]") {
  testing::TempDir dir;
  SimEnv env;
  auto c = SqliteCache::Open(env, dir.Join("cache"), "memory://");
  REQUIRE(c->enabled());
  c->SetVolume("uuid");
  for (std::string k : {"map/1-2.sst", "map/1-2.sst@0", "map/1-2.sst@4096", "map/1-20.sst",
                        "map/1-20.sst@0", "map/1-2.ssu", "map/1-2.sst?"}) {
    c->Put(k, "bytes of " + k);
  }
  auto drain = [&] {  // the queued writes run before a later lookup (one queue in SimEnv)
    RunSim(env, [](Env& e) -> Task<void> { co_await SleepFor(e, kNanosPerMilli); }(env));
  };
  drain();
  REQUIRE(c->CountForTest() == 7);
  c->Erase("map/1-2.sst");
  drain();
  CHECK(c->CountForTest() == 4);
  CHECK_FALSE(RunSim(env, c->Get("map/1-2.sst@4096")).has_value());
  CHECK(RunSim(env, c->Get("map/1-20.sst@0")) == "bytes of map/1-20.sst@0");
  CHECK(RunSim(env, c->Get("map/1-2.ssu")) == "bytes of map/1-2.ssu");
  CHECK(RunSim(env, c->Get("map/1-2.sst?")) == "bytes of map/1-2.sst?");
}

TEST_CASE(
    "the map warm-up after open takes SST blocks from the metadata cache and keeps "
    "what it fetched there",
    "[volume][cache][warm]") {
  testing::TempDir dir;
  SimEnv env;
  objstore::MemoryStore mem;
  uint64_t map_gets = 0;  // GETs of map SSTs
  objstore::FaultOptions count;
  count.decide = [&](objstore::OpKind kind, std::string_view key) {
    if (kind == objstore::OpKind::kGet && key.starts_with("map/")) ++map_gets;
    return objstore::FaultDecision{};
  };
  objstore::FaultStore store(std::make_unique<testing::BorrowedStore>(mem), env, count);
  VolumeOptions o = SmallOptions(dir.Join("cache"));
  o.block_cache_size_bytes = 8 << 20;  // the whole map fits the warm-up's budget
  o.l0_sst_size_bytes = 4 << 20;
  // Scattered 4 KiB writes: a map of thousands of extents, SSTs of many blocks.
  {
    auto v = RunSim(env, LsmVolume::Open(env, store, o));
    REQUIRE(v.ok());
    const auto block = Pattern(4096, 7);
    for (uint64_t i = 0; i < 3000; ++i) {
      REQUIRE(RunSim(env, (*v)->Write((i * 7919 % 16000) * 8192, block, {})).ok());
    }
    REQUIRE(RunSim(env, (*v)->Flush()).ok());
    REQUIRE(RunSim(env, (*v)->FlushMemtable()).ok());
    REQUIRE(RunSim(env, (*v)->Close()).ok());
  }
  // Opens the volume, lets its warm-up run, closes it; returns the map GETs it cost.
  auto open_and_warm = [&] {
    const uint64_t before = map_gets;
    auto v = RunSim(env, LsmVolume::Open(env, store, o));
    REQUIRE(v.ok());
    RunSim(env, [](Env& e) -> Task<void> { co_await SleepFor(e, kNanosPerSecond); }(env));
    REQUIRE(RunSim(env, (*v)->Close()).ok());
    RunSim(env, [](Env& e) -> Task<void> { co_await SleepFor(e, kNanosPerMilli); }(env));
    return map_gets - before;
  };
  const uint64_t warming = open_and_warm();
  const uint64_t warm = open_and_warm();
  INFO("map GETs: first warm-up " << warming << ", second " << warm);
  CHECK(warming > 2);
  CHECK(warm == 0);
}

TEST_CASE("the metadata cache stores and looks up many keys at once, in order", "[volume][cache]") {
  testing::TempDir dir;
  SimEnv env;
  auto c = SqliteCache::Open(env, dir.Join("cache"), "memory://");
  REQUIRE(c->enabled());
  c->SetVolume("uuid");
  c->Put("a", "0");
  c->PutMany({{"a", "1"}, {"c", std::string("3\0x", 3)}});  // replaces "a"
  c->PutMany({});
  RunSim(env, [](Env& e) -> Task<void> { co_await SleepFor(e, kNanosPerMilli); }(env));
  CHECK(c->CountForTest() == 2);
  auto got = RunSim(env, c->GetMany({"c", "b", "a", "a"}));
  REQUIRE(got.size() == 4);
  CHECK(got[0] == std::string("3\0x", 3));
  CHECK_FALSE(got[1].has_value());
  CHECK(got[2] == "1");
  CHECK(got[3] == "1");
  CHECK(RunSim(env, c->GetMany({})).empty());
}

}  // namespace
}  // namespace portal::volume
