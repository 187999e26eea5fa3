#include "lsm/sst_reader.h"

#include <catch2/catch.hpp>

#include "env/block_on.h"
#include "env/sim_env.h"
#include <map>

#include "objstore/counting_store.h"
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

TEST_CASE("SST reader: Warm loads every verified block in GETs of at most the limit",
          "[lsm][sst][warm]") {
  Fixture f;
  auto idx = RunSim(f.env, f.reader.Index(f.ref));
  REQUIRE(idx.ok());
  const auto& blocks = (*idx)->blocks;
  constexpr uint64_t kMaxGet = 512;
  size_t runs = 0;  // adjacent blocks grouped up to kMaxGet bytes
  for (size_t i = 0, start = 0; i < blocks.size(); ++i) {
    if (i == 0 || blocks[i].offset + blocks[i].length - blocks[start].offset > kMaxGet) {
      ++runs;
      start = i;
    }
  }
  REQUIRE(runs > 2);
  f.damage.armed = true;  // the first GET's body is damaged: its last block is dropped
  CHECK(RunSim(f.env, f.reader.Warm(f.ref, f.store, kMaxGet)));
  CHECK(f.damage.total_gets() == runs);
  // Every block but the damaged one is cached: reading all of it costs one GET, and the
  // damaged bytes never reach a reader.
  auto all = RunSim(f.env, f.reader.ReadAll(f.ref));
  REQUIRE(all.ok());
  CHECK(*all == f.extents);
  CHECK(f.damage.total_gets() == runs + 1);
  // Warm again: everything is cached, nothing to fetch.
  CHECK(RunSim(f.env, f.reader.Warm(f.ref, f.store, kMaxGet)));
  CHECK(f.damage.total_gets() == runs + 1);
}

TEST_CASE("SST reader: a Warm whose GETs fail caches nothing and leaves no claim behind",
          "[lsm][sst][warm]") {
  Fixture f;
  REQUIRE(RunSim(f.env, f.reader.Index(f.ref)).ok());
  bool fail = true;
  objstore::FaultOptions o;
  o.decide = [&](objstore::OpKind kind, std::string_view) {
    objstore::FaultDecision d;
    if (fail && kind == objstore::OpKind::kGet) {
      d.action = objstore::FaultDecision::Action::kFail;
      d.error = Status::IOError("injected");
    }
    return d;
  };
  objstore::FaultStore failing{std::make_unique<testing::BorrowedStore>(f.memory), f.env, o};
  CHECK_FALSE(RunSim(f.env, f.reader.Warm(f.ref, failing, 1024)));
  fail = false;
  auto all = RunSim(f.env, f.reader.ReadAll(f.ref));  // fetched by the reader itself
  REQUIRE(all.ok());
  CHECK(*all == f.extents);
}

// A metadata cache in memory.
struct MapCache final : cache::PersistentCache {
  std::map<std::string, std::string> rows;
  Task<std::optional<std::string>> Get(std::string key) override {
    auto it = rows.find(key);
    if (it == rows.end()) co_return std::nullopt;
    co_return it->second;
  }
  void Put(std::string key, std::string value) override { rows[key] = std::move(value); }
  void Erase(std::string key) override { rows.erase(key); }
};

TEST_CASE("SST reader: blocks kept in the metadata cache cost no GET after a restart, and a "
          "damaged one is fetched again, never used",
          "[lsm][sst][cache]") {
  Fixture f;
  objstore::CountingStore counted(std::make_unique<testing::BorrowedStore>(f.memory));
  MapCache meta;
  auto gets = [&] { return counted.stats()[objstore::OpKind::kGet].calls; };
  {
    cache::BlockCache cache{f.env, 1 << 20};
    SstReader reader{counted, cache, &meta};
    auto all = RunSim(f.env, reader.ReadAll(f.ref));
    REQUIRE(all.ok());
    CHECK(*all == f.extents);
  }
  const uint64_t first = gets();
  cache::BlockCache fresh{f.env, 1 << 20};
  SstReader fresh_reader{counted, fresh, &meta};
  auto idx = RunSim(f.env, fresh_reader.Index(f.ref));
  REQUIRE(idx.ok());
  CHECK(meta.rows.size() == 1 + (*idx)->blocks.size());  // the tail and every block
  CHECK(meta.rows.count(SstReader::BlockPartKey(f.ref.key, (*idx)->blocks[1].offset)) == 1);
  {  // a restart: an empty block cache, the same metadata cache
    cache::BlockCache cache{f.env, 1 << 20};
    SstReader reader{counted, cache, &meta};
    auto all = RunSim(f.env, reader.ReadAll(f.ref));
    REQUIRE(all.ok());
    CHECK(*all == f.extents);
    CHECK(gets() == first);
  }
  // A flipped bit in one kept block: that block costs a GET, the others none.
  std::string& kept = meta.rows[SstReader::BlockPartKey(f.ref.key, (*idx)->blocks[1].offset)];
  kept[kept.size() / 2] ^= 0x10;
  {
    cache::BlockCache cache{f.env, 1 << 20};
    SstReader reader{counted, cache, &meta};
    auto all = RunSim(f.env, reader.ReadAll(f.ref));
    REQUIRE(all.ok());
    CHECK(*all == f.extents);
    CHECK(gets() == first + 1);
  }
  // The GET's verified bytes replaced the damaged copy.
  {
    cache::BlockCache cache{f.env, 1 << 20};
    SstReader reader{counted, cache, &meta};
    REQUIRE(RunSim(f.env, reader.ReadAll(f.ref)).ok());
    CHECK(gets() == first + 1);
  }
}

}  // namespace
}  // namespace portal::lsm
