// The metadata cache in `[storage] cache_dir`: it saves GETs at reopen, and deleting or
// corrupting it loses nothing (it is never authoritative).
#include "volume/sqlite_cache.h"

#include <sqlite3.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <set>

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

// Faults that inject nothing and count the GETs of map SSTs in `*map_gets`.
objstore::FaultOptions CountMapGets(uint64_t* map_gets) {
  objstore::FaultOptions count;
  count.decide = [map_gets](objstore::OpKind kind, std::string_view key) {
    if (kind == objstore::OpKind::kGet && key.starts_with("map/")) ++*map_gets;
    return objstore::FaultDecision{};
  };
  return count;
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
  objstore::FaultStore store(std::make_unique<testing::BorrowedStore>(mem), env,
                             CountMapGets(&map_gets));
  VolumeOptions o = SmallOptions(dir.Join("cache"));
  o.block_cache_size_bytes = 8 << 20;  // the whole map fits the warm-up's budget
  o.l0_sst_size_bytes = 4 << 20;
  // Scattered 4 KiB writes: a map of thousands of extents, SSTs of many blocks. Written
  // with an in-memory metadata cache: the SSTs are not in the one the warm-ups use.
  {
    VolumeOptions writer = o;
    writer.cache_dir = "";
    auto v = RunSim(env, LsmVolume::Open(env, store, writer));
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

// Map SST keys (without "@<offset>") that the metadata cache at `cache_dir` holds rows for.
std::set<std::string> CachedSsts(const std::string& cache_dir) {
  std::set<std::string> out;
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open((cache_dir + "/portalbd-cache.sqlite").c_str(), &db) == SQLITE_OK);
  sqlite3_stmt* s = nullptr;
  REQUIRE(sqlite3_prepare_v2(db, "SELECT key FROM objects WHERE key LIKE 'map/%'", -1, &s,
                             nullptr) == SQLITE_OK);
  while (sqlite3_step(s) == SQLITE_ROW) {
    std::string key(reinterpret_cast<const char*>(sqlite3_column_text(s, 0)));
    out.insert(key.substr(0, key.find('@')));
  }
  sqlite3_finalize(s);
  sqlite3_close(db);
  return out;
}

std::set<std::string> StoredSsts(SimEnv& env, objstore::MemoryStore& mem) {
  auto listed = RunSim(env, mem.List("map/"));
  REQUIRE(listed.ok());
  std::set<std::string> out;
  for (const auto& o : *listed) out.insert(o.key);
  return out;
}

void Drain(SimEnv& env) {  // the metadata cache's queued writes run
  RunSim(env, [](Env& e) -> Task<void> { co_await SleepFor(e, kNanosPerMilli); }(env));
}

TEST_CASE(
    "map SSTs that memtable flushes and compactions wrote are in the metadata cache, so "
    "neither their writer nor the next open's warm-up GETs them",
    "[volume][cache][warm]") {
  testing::TempDir dir;
  const std::string cache_dir = dir.Join("cache");
  SimEnv env;
  objstore::MemoryStore mem;
  uint64_t map_gets = 0;  // GETs of map SSTs
  objstore::FaultStore store(std::make_unique<testing::BorrowedStore>(mem), env,
                             CountMapGets(&map_gets));
  VolumeOptions o = SmallOptions(cache_dir);
  o.block_cache_size_bytes = 8 << 20;  // the whole map fits the warm-up's budget
  o.l0_sst_size_bytes = 4 << 20;
  o.gc_grace_ms = 0;  // retired SSTs go at the next GC
  std::vector<uint8_t> want(o.size_bytes);
  {
    auto v = RunSim(env, LsmVolume::Open(env, store, o));
    REQUIRE(v.ok());
    // Scattered 4 KiB writes, a memtable flush after each 1000: several SSTs per flush,
    // L0 files that a compaction merges, then more L0 files above them.
    for (uint64_t i = 0; i < 4000; ++i) {
      const auto block = Pattern(4096, static_cast<uint8_t>(i));
      const uint64_t at = (i * 7919 % 8000) * 8192;
      std::copy(block.begin(), block.end(), want.begin() + at);
      REQUIRE(RunSim(env, (*v)->Write(at, block, {})).ok());
      if (i % 1000 == 999) {
        REQUIRE(RunSim(env, (*v)->Flush()).ok());
        REQUIRE(RunSim(env, (*v)->FlushMemtable()).ok());
      }
      if (i == 2999) REQUIRE(RunSim(env, (*v)->CompactAll()).ok());
    }
    REQUIRE(RunSim(env, (*v)->RunGc()).ok());
    REQUIRE(RunSim(env, (*v)->Close()).ok());
    Drain(env);
  }
  CHECK(map_gets == 0);  // the compaction found its inputs in the metadata cache
  REQUIRE(StoredSsts(env, mem).size() > 4);
  // No row of an SST the store no longer holds (GC erased the retired inputs' rows).
  const std::set<std::string> stored = StoredSsts(env, mem);
  for (const std::string& key : CachedSsts(cache_dir)) {
    INFO(key);
    CHECK(stored.count(key) == 1);
  }
  // The next open: its warm-up, then a read of everything.
  {
    auto v = RunSim(env, LsmVolume::Open(env, store, o));
    REQUIRE(v.ok());
    RunSim(env, [](Env& e) -> Task<void> { co_await SleepFor(e, kNanosPerSecond); }(env));
    std::vector<uint8_t> got(want.size());
    REQUIRE(RunSim(env, (*v)->Read(0, got, nullptr)).ok());
    CHECK(got == want);
    REQUIRE(RunSim(env, (*v)->Close()).ok());
    Drain(env);
  }
  CHECK(map_gets == 0);
}

TEST_CASE(
    "the metadata cache rows of an SST stored by a writer that crashed before committing it "
    "go when the next writer's GC deletes it",
    "[volume][cache]") {
  testing::TempDir dir;
  const std::string cache_dir = dir.Join("cache");
  objstore::MemoryStore mem;
  VolumeOptions o = SmallOptions(cache_dir);
  o.memtable_flush_segments = 1000;  // only explicit memtable flushes
  o.memtable_flush_interval_ms = 1'000'000'000;
  o.gc_grace_ms = 0;
  std::set<std::string> orphans;
  const auto data = Pattern(256 * 1024, 5);
  {
    SimEnv env;
    bool fail_manifests = false;
    objstore::FaultOptions fo;
    fo.decide = [&](objstore::OpKind, std::string_view key) {
      objstore::FaultDecision d;
      if (fail_manifests && key.starts_with("manifest/")) {
        d.action = objstore::FaultDecision::Action::kFail;
        d.error = Status::IOError("injected");
      }
      return d;
    };
    objstore::FaultStore store(std::make_unique<testing::BorrowedStore>(mem), env, fo);
    auto v = RunSim(env, LsmVolume::Open(env, store, o));
    REQUIRE(v.ok());
    REQUIRE(RunSim(env, (*v)->Write(0, data, {})).ok());
    REQUIRE(RunSim(env, (*v)->Flush()).ok());
    const std::set<std::string> before = StoredSsts(env, mem);
    fail_manifests = true;  // the SST is stored, the manifest listing it never is
    CHECK_FALSE(RunSim(env, (*v)->FlushMemtable()).ok());
    for (const std::string& key : StoredSsts(env, mem)) {
      if (!before.count(key)) orphans.insert(key);
    }
    Drain(env);
    env.DropAll();  // the process is gone
  }
  REQUIRE(!orphans.empty());
  for (const std::string& key : orphans) CHECK(CachedSsts(cache_dir).count(key) == 1);
  SimEnv env;
  auto v = RunSim(env, LsmVolume::Open(env, mem, o));
  REQUIRE(v.ok());
  REQUIRE(RunSim(env, (*v)->RunGc()).ok());
  std::vector<uint8_t> got(data.size());
  REQUIRE(RunSim(env, (*v)->Read(0, got, nullptr)).ok());
  CHECK(got == std::vector<uint8_t>(data.begin(), data.end()));  // replayed from segments
  REQUIRE(RunSim(env, (*v)->Close()).ok());
  Drain(env);
  const std::set<std::string> stored = StoredSsts(env, mem);
  const std::set<std::string> cached = CachedSsts(cache_dir);
  for (const std::string& key : orphans) {
    INFO(key);
    CHECK(stored.count(key) == 0);  // GC deleted the orphan...
    CHECK(cached.count(key) == 0);  // ...and erased its rows
  }
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
