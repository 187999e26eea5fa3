#include "lsm/sst_reader.h"

#include <catch2/catch.hpp>

#include "env/block_on.h"
#include "env/sim_env.h"
#include "objstore/fault_store.h"
#include "objstore/memory_store.h"
#include "objstore/retrying_store.h"
#include "testing/body_damage.h"
#include "testing/borrowed_store.h"

namespace portal::lsm {
namespace {

// One stored map SST of several blocks behind a FaultStore whose GETs BodyDamage spoils.
struct Fixture {
  Fixture() {
    damage.prefix = "map/";
    SstBuilder b(256);
    for (uint64_t i = 0; i < 200; ++i) {
      extents.push_back({i * 10, i * 10 + 5, Loc::Data(1 + i / 50, i * 5)});
      b.Add(extents.back());
    }
    SstIndex idx;
    std::string bytes = b.Finish(&idx);
    ref.key = "map/1-1.sst";
    ref.min_block = idx.min_block;
    ref.end_block = idx.end_block;
    ref.size_bytes = bytes.size();
    ref.extent_count = idx.extent_count;
    ref.data_blocks = idx.data_blocks;
    REQUIRE(idx.blocks.size() > 2);
    REQUIRE(RunSim(env, memory.Put(ref.key, std::move(bytes))).ok());
  }

  SimEnv env;
  objstore::MemoryStore memory;
  testing::BodyDamage damage;
  objstore::FaultStore store{std::make_unique<testing::BorrowedStore>(memory), env,
                             damage.Options()};
  cache::BlockCache cache{env, 1 << 20};
  std::atomic<uint64_t> refetches{0};
  SstReader reader{store, cache, nullptr, &refetches};
  std::vector<Extent> extents;
  SstRef ref;
};

TEST_CASE("SST reader: an index and a block damaged on the way are fetched again and counted",
          "[lsm][sst][refetch]") {
  Fixture f;
  f.damage.armed = true;
  auto idx = RunSim(f.env, f.reader.Index(f.ref));
  REQUIRE(idx.ok());
  CHECK(f.refetches == 1);
  CHECK(f.damage.total_gets() == 2);
  // Blocks share the SST's key, whose first GET is spent: damage the next one.
  f.damage.gets.clear();
  auto block = RunSim(f.env, f.reader.Block(f.ref, (*idx)->blocks[1]));
  REQUIRE(block.ok());
  CHECK(f.refetches == 2);
  CHECK(f.damage.total_gets() == 2);
  auto all = RunSim(f.env, f.reader.ReadAll(f.ref));
  REQUIRE(all.ok());
  CHECK(*all == f.extents);
}

TEST_CASE("SST reader: damage that persists is Corruption after a bounded number of GETs",
          "[lsm][sst][refetch]") {
  Fixture f;
  f.damage.armed = true;
  f.damage.always = true;
  auto idx = RunSim(f.env, f.reader.Index(f.ref));
  REQUIRE_FALSE(idx.ok());
  CHECK(idx.status().IsCorruption());
  CHECK(idx.status().message().find(f.ref.key) != std::string::npos);
  CHECK(f.damage.total_gets() == objstore::kVerifiedReadAttempts);

  f.damage.always = false;  // the index is read intact and cached; blocks stay damaged
  f.damage.gets.clear();
  idx = RunSim(f.env, f.reader.Index(f.ref));
  REQUIRE(idx.ok());
  f.damage.always = true;
  f.damage.gets.clear();
  auto block = RunSim(f.env, f.reader.Block(f.ref, (*idx)->blocks[0]));
  REQUIRE_FALSE(block.ok());
  CHECK(block.status().IsCorruption());
  CHECK(block.status().message().find(f.ref.key) != std::string::npos);
  CHECK(f.damage.total_gets() == objstore::kVerifiedReadAttempts);
  // Nothing that failed was cached.
  f.damage.armed = false;
  CHECK(RunSim(f.env, f.reader.Block(f.ref, (*idx)->blocks[0])).ok());
}

}  // namespace
}  // namespace portal::lsm
