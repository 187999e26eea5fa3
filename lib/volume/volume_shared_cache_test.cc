// Volumes sharing one block cache (VolumeOptions::block_cache, the daemon's one budget):
// the same segment ids and SST keys in two volumes never meet in the cache.
#include <catch2/catch.hpp>

#include "cache/block_cache.h"
#include "env/block_on.h"
#include "env/sim_env.h"
#include "objstore/memory_store.h"
#include "objstore/prefix_store.h"
#include "testing/read_device.h"
#include "testing/volume_options.h"
#include "volume/lsm_volume.h"

namespace portal::volume {
namespace {

TEST_CASE("shared block cache: volumes with the same segment ids read their own data",
          "[volume][shared_cache]") {
  SimEnv env;
  objstore::MemoryStore store;
  objstore::PrefixStore view_a(store, "volumes/a/"), view_b(store, "volumes/b/");
  cache::BlockCache shared(env, 8 << 20);
  VolumeOptions o = testing::SmallVolumeOptions(1 << 20);
  o.block_cache = &shared;
  auto a = RunSim(env, LsmVolume::Open(env, view_a, o));
  auto b = RunSim(env, LsmVolume::Open(env, view_b, o));
  REQUIRE(a.ok());
  REQUIRE(b.ok());
  std::vector<uint8_t> da(64 * 1024, 0xaa), db(64 * 1024, 0xbb);
  // The same writes in the same order: the same segment ids and SST names in both.
  REQUIRE(RunSim(env, (*a)->Write(0, da, {.fua = true})).ok());
  REQUIRE(RunSim(env, (*b)->Write(0, db, {.fua = true})).ok());
  REQUIRE(RunSim(env, (*a)->FlushMemtable()).ok());
  REQUIRE(RunSim(env, (*b)->FlushMemtable()).ok());
  CHECK(testing::ReadDevice(env, **a, 0, da.size()) == da);  // a's chunks now cached
  CHECK(testing::ReadDevice(env, **b, 0, db.size()) == db);
  CHECK(testing::ReadDevice(env, **a, 0, da.size()) == da);
  CHECK(shared.stats().usage_bytes > 0);
  CHECK((*a)->stats().cache.capacity_bytes == (8u << 20));  // the shared one's
  REQUIRE(RunSim(env, (*a)->Close()).ok());
  a->reset();  // its entries stay in the shared cache, holding nothing of the volume's
  CHECK(testing::ReadDevice(env, **b, 0, db.size()) == db);
  REQUIRE(RunSim(env, (*b)->Close()).ok());
}

}  // namespace
}  // namespace portal::volume
