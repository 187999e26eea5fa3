// A clone's ancestor layers read through the daemon's shared block cache (clone_base.h,
// docs/volumes.md "One budget"), each under its own store's URL: layers whose segments
// have the same ids never see each other's chunks.
#include <catch2/catch.hpp>
#include <map>
#include <memory>
#include <string>

#include "cache/block_cache.h"
#include "env/block_on.h"
#include "env/sim_env.h"
#include "objstore/memory_store.h"
#include "objstore/prefix_store.h"
#include "testing/read_device.h"
#include "testing/volume_options.h"
#include "volume/clone.h"
#include "volume/lsm_volume.h"

namespace portal::volume {
namespace {

constexpr uint64_t kSize = 1 << 20;

std::vector<uint8_t> Fill(uint8_t tag, size_t n) {
  std::vector<uint8_t> d(n);
  for (size_t i = 0; i < n; ++i) d[i] = static_cast<uint8_t>(tag * 37 + i % 251 + 1);
  return d;
}

TEST_CASE("a clone's ancestors read through the shared block cache, each under its own store",
          "[volume][clone][shared_cache]") {
  SimEnv env;
  objstore::MemoryStore mem;
  std::map<std::string, std::unique_ptr<objstore::PrefixStore>> views;
  for (const char* n : {"g", "p", "c"}) {
    views[n] = std::make_unique<objstore::PrefixStore>(mem, std::string("volumes/") + n + "/");
  }
  cache::BlockCache shared(env, 16 << 20);
  VolumeOptions o = testing::SmallVolumeOptions(kSize);
  o.block_cache = &shared;
  o.resolve_volume = [&](const std::string& name) -> Result<objstore::ObjectStore*> {
    auto it = views.find(name);
    if (it == views.end()) return Status::NotFound("no volume named '" + name + "'");
    return static_cast<objstore::ObjectStore*>(it->second.get());
  };
  auto open = [&](const std::string& name, uint64_t size) {
    VolumeOptions vo = o;
    vo.size_bytes = size;
    auto v = RunSim(env, LsmVolume::Open(env, *views[name], vo));
    REQUIRE(v.ok());
    return *v;
  };
  // The grandparent writes everything, the parent (its clone) the second half, each in
  // one segment: the clone reads chunks 0.. of segment 1 of each, with different data.
  auto g = open("g", kSize);
  const auto gdata = Fill(1, kSize);
  REQUIRE(RunSim(env, g->Write(0, gdata, {.fua = true})).ok());
  REQUIRE(RunSim(env, g->CreateSnapshot("s")).ok());
  REQUIRE(RunSim(env, CreateClone(env, o.resolve_volume, "g", "s", *views["p"], "p")).ok());
  auto p = open("p", 0);
  const auto pdata = Fill(2, kSize / 2);
  REQUIRE(RunSim(env, p->Write(kSize / 2, pdata, {.fua = true})).ok());
  REQUIRE(RunSim(env, p->CreateSnapshot("t")).ok());
  REQUIRE(RunSim(env, CreateClone(env, o.resolve_volume, "p", "t", *views["c"], "c")).ok());
  REQUIRE(RunSim(env, g->Close()).ok());
  REQUIRE(RunSim(env, p->Close()).ok());
  g.reset();
  p.reset();
  const uint64_t before = shared.stats().usage_bytes;
  auto c = open("c", 0);
  auto want = gdata;
  std::copy(pdata.begin(), pdata.end(), want.begin() + kSize / 2);
  CHECK(testing::ReadDevice(env, *c, 0, kSize) == want);
  // The clone wrote nothing: what it read came through its ancestors' layers, into the
  // shared cache (not into caches of their own).
  CHECK(shared.stats().usage_bytes >= before + kSize / 2);
  CHECK(testing::ReadDevice(env, *c, 0, kSize) == want);  // again, from the cache
  REQUIRE(RunSim(env, c->Close()).ok());
}

}  // namespace
}  // namespace portal::volume
