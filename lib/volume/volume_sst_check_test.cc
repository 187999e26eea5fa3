// Open checks that every map SST the manifest names is stored (docs/volume.md "Damage"):
// this host's metadata cache may hold an SST the store lost, and must not hide the loss.
#include <catch2/catch.hpp>

#include <map>

#include "env/async.h"
#include "env/block_on.h"
#include "env/sim_env.h"
#include "objstore/fault_store.h"
#include "objstore/memory_store.h"
#include "testing/borrowed_store.h"
#include "testing/testing.h"
#include "volume/lsm_volume.h"
#include "volume/manifest_log.h"

namespace portal::volume {
namespace {

VolumeOptions Options(const std::string& cache_dir) {
  VolumeOptions o;
  o.size_bytes = 64 << 20;
  o.flush_interval_ms = 0;
  o.l0_sst_size_bytes = 64 * 1024;
  o.block_cache_size_bytes = 8 << 20;
  o.sst_target_bytes = 2048;  // several SSTs per memtable flush
  o.blocks_per_chunk = 4;
  o.memtable_flush_interval_ms = 1'000'000'000;
  o.gc_interval_ms = 1'000'000'000;
  o.cache_dir = cache_dir;
  return o;
}

std::vector<uint8_t> Pattern(size_t n, uint8_t seed) {
  std::vector<uint8_t> d(n);
  for (size_t i = 0; i < n; ++i) d[i] = static_cast<uint8_t>(seed * 13 + i * 5 + (i >> 12));
  return d;
}

void Drain(SimEnv& env) {  // the metadata cache's queued writes run
  RunSim(env, [](Env& e) -> Task<void> { co_await SleepFor(e, kNanosPerMilli); }(env));
}

std::map<std::string, std::string> Objects(SimEnv& env, objstore::MemoryStore& mem) {
  auto listed = RunSim(env, mem.List(""));
  REQUIRE(listed.ok());
  std::map<std::string, std::string> out;
  for (const auto& o : *listed) out[o.key] = *RunSim(env, mem.Get(o.key));
  return out;
}

// The map SSTs of the latest manifest.
std::vector<lsm::SstRef> ManifestSsts(SimEnv& env, objstore::MemoryStore& mem) {
  ManifestLog log(mem, env);
  auto latest = RunSim(env, log.ReadLatest(0));
  REQUIRE(latest.ok());
  std::vector<lsm::SstRef> out;
  for (const auto& level : latest->second.levels) out.insert(out.end(), level.begin(), level.end());
  return out;
}

// A volume whose map is in SSTs, then a second run that reads every block: the metadata
// cache in `cache_dir` holds every SST's index and blocks. Returns the device's contents.
std::vector<uint8_t> WriteAndWarm(SimEnv& env, objstore::ObjectStore& store,
                                  const VolumeOptions& o) {
  std::vector<uint8_t> want(8 << 20);
  {
    auto v = RunSim(env, LsmVolume::Open(env, store, o));
    REQUIRE(v.ok());
    // Every other 4 KiB block: a map of many extents, so several SSTs.
    for (int i = 0; i < 1024; ++i) {
      auto block = Pattern(4096, static_cast<uint8_t>(i));
      std::copy(block.begin(), block.end(), want.begin() + i * 8192);
      REQUIRE(RunSim(env, (*v)->Write(i * 8192, block, {})).ok());
      if (i % 128 == 127) REQUIRE(RunSim(env, (*v)->Flush()).ok());
    }
    REQUIRE(RunSim(env, (*v)->FlushMemtable()).ok());
    REQUIRE(RunSim(env, (*v)->Close()).ok());
  }
  {
    auto v = RunSim(env, LsmVolume::Open(env, store, o));
    REQUIRE(v.ok());
    std::vector<uint8_t> got(want.size());
    REQUIRE(RunSim(env, (*v)->Read(0, got, nullptr)).ok());
    REQUIRE(got == want);
    REQUIRE(RunSim(env, (*v)->Close()).ok());
  }
  Drain(env);
  return want;
}

TEST_CASE(
    "a map SST deleted or truncated in the store refuses the open, naming it and writing "
    "nothing, though the metadata cache holds all of it",
    "[volume][cache][damage]") {
  const bool truncate = GENERATE(false, true);
  INFO((truncate ? "truncated" : "deleted"));
  testing::TempDir dir;
  SimEnv env;
  objstore::MemoryStore mem;
  const VolumeOptions o = Options(dir.Join("cache"));
  WriteAndWarm(env, mem, o);
  const auto ssts = ManifestSsts(env, mem);
  REQUIRE(ssts.size() > 2);
  const std::string lost = ssts[ssts.size() / 2].key;
  if (truncate) {
    auto bytes = RunSim(env, mem.Get(lost));
    REQUIRE(bytes.ok());
    REQUIRE(RunSim(env, mem.Put(lost, bytes->substr(0, bytes->size() - 1))).ok());
  } else {
    REQUIRE(RunSim(env, mem.Delete(lost)).ok());
  }
  const auto before = Objects(env, mem);

  auto v = RunSim(env, LsmVolume::Open(env, mem, o));
  REQUIRE_FALSE(v.ok());
  INFO(v.status().ToString());
  CHECK(v.status().IsCorruption());
  CHECK_THAT(v.status().ToString(), Catch::Contains(lost));
  CHECK(Objects(env, mem) == before);  // no opener manifest, no fence

  VolumeOptions salvage = o;
  salvage.salvage = true;
  auto s = RunSim(env, LsmVolume::Open(env, mem, salvage));
  CHECK_FALSE(s.ok());
  CHECK(Objects(env, mem) == before);
}

TEST_CASE(
    "open and GC's discovery list the map SSTs once between them (the check costs no "
    "request of its own), and HEAD none",
    "[volume][cache]") {
  testing::TempDir dir;
  SimEnv env;
  objstore::MemoryStore mem;
  std::map<std::string, int> lists;  // prefix -> LIST calls
  std::map<std::string, int> heads;  // key prefix -> HEADs of map SSTs
  objstore::FaultOptions count;
  count.decide = [&](objstore::OpKind kind, std::string_view key) {
    if (kind == objstore::OpKind::kList) ++lists[std::string(key)];
    if (kind == objstore::OpKind::kHead && key.starts_with("map/")) ++heads["map/"];
    return objstore::FaultDecision{};
  };
  objstore::FaultStore store(std::make_unique<testing::BorrowedStore>(mem), env, count);
  const VolumeOptions o = Options(dir.Join("cache"));
  const auto want = WriteAndWarm(env, store, o);
  REQUIRE(ManifestSsts(env, mem).size() > 2);

  lists.clear();
  heads.clear();
  auto v = RunSim(env, LsmVolume::Open(env, store, o));
  REQUIRE(v.ok());
  CHECK(lists["map/"] == 1);  // the check's (discovery may have run meanwhile)
  REQUIRE(RunSim(env, (*v)->RunGc()).ok());
  CHECK(lists["map/"] == 1);  // discovery used the open's listing
  CHECK(heads["map/"] == 0);
  std::vector<uint8_t> got(want.size());
  REQUIRE(RunSim(env, (*v)->Read(0, got, nullptr)).ok());
  CHECK(got == want);
  REQUIRE(RunSim(env, (*v)->Close()).ok());
}

}  // namespace
}  // namespace portal::volume
