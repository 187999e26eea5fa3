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
#include "testing/map_cache.h"

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

using testing::MapCache;

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

// Warm and Block share the metadata cache's entries both ways: a restart whose metadata
// cache holds an SST's blocks warms it without a GET, whoever kept them.
TEST_CASE(
    "SST reader: Warm keeps the blocks it fetched in the metadata cache, and takes "
    "them from there after a restart",
    "[lsm][sst][warm][cache]") {
  Fixture f;
  objstore::CountingStore counted(std::make_unique<testing::BorrowedStore>(f.memory));
  MapCache meta;
  auto gets = [&] { return counted.stats()[objstore::OpKind::kGet].calls; };
  size_t blocks = 0;
  {
    cache::BlockCache cache{f.env, 1 << 20};
    SstReader reader{counted, cache, &meta};
    REQUIRE(RunSim(f.env, reader.Warm(f.ref, counted, 512)));
    auto idx = RunSim(f.env, reader.Index(f.ref));
    REQUIRE(idx.ok());
    blocks = (*idx)->blocks.size();
  }
  CHECK(meta.rows.size() == 1 + blocks);  // the tail and every block Warm fetched
  const uint64_t first = gets();
  CHECK(first > 1);

  SECTION("a restart's Warm costs no GET, and then reads cost none either") {
    cache::BlockCache cache{f.env, 1 << 20};
    SstReader reader{counted, cache, &meta};
    CHECK(RunSim(f.env, reader.Warm(f.ref, counted, 512)));
    CHECK(gets() == first);
    CHECK(cache.stats().loads == blocks + 1);  // every block and the index came from Warm
    auto all = RunSim(f.env, reader.ReadAll(f.ref));
    REQUIRE(all.ok());
    CHECK(*all == f.extents);
    CHECK(gets() == first);
    CHECK(cache.stats().loads == blocks + 1);  // ReadAll found them all in the block cache
  }
  SECTION("blocks Warm kept are served by Block after a restart without a GET") {
    cache::BlockCache cache{f.env, 1 << 20};
    SstReader reader{counted, cache, &meta};
    auto all = RunSim(f.env, reader.ReadAll(f.ref));
    REQUIRE(all.ok());
    CHECK(*all == f.extents);
    CHECK(gets() == first);
  }
}

TEST_CASE("SST reader: warm_stats counts what Warm took from the metadata cache and fetched",
          "[lsm][sst][warm][cache]") {
  Fixture f;
  objstore::CountingStore counted(std::make_unique<testing::BorrowedStore>(f.memory));
  MapCache meta;
  auto gets = [&] { return counted.stats()[objstore::OpKind::kGet]; };
  size_t blocks = 0;
  {
    cache::BlockCache cache{f.env, 1 << 20};
    SstReader reader{counted, cache, &meta};
    CHECK(RunSim(f.env, reader.Warm(f.ref, counted, 512)));
    blocks = (*RunSim(f.env, reader.Index(f.ref)))->blocks.size();
    const SstReader::WarmStats s = reader.warm_stats();
    CHECK(s.ssts == 1);
    CHECK(s.blocks == blocks);
    CHECK(s.local_blocks == 0);
    CHECK(s.local_indexes == 0);
    CHECK(s.gets == gets().calls);  // the tail and the blocks' runs
    CHECK(s.get_bytes == gets().bytes);
    CHECK(s.gets > 2);
  }
  cache::BlockCache cache{f.env, 1 << 20};
  SstReader reader{counted, cache, &meta};
  CHECK(RunSim(f.env, reader.Warm(f.ref, counted, 512)));
  CHECK(RunSim(f.env, reader.Warm(f.ref, counted, 512)));  // all in the block cache now
  const SstReader::WarmStats s = reader.warm_stats();
  CHECK(s.ssts == 2);
  CHECK(s.blocks == 2 * blocks);
  CHECK(s.local_blocks == blocks);
  CHECK(s.local_indexes == 1);
  CHECK(s.gets == 0);
  CHECK(s.get_bytes == 0);
}

TEST_CASE("SST reader: Warm after reads kept blocks in the metadata cache costs no GET",
          "[lsm][sst][warm][cache]") {
  Fixture f;
  objstore::CountingStore counted(std::make_unique<testing::BorrowedStore>(f.memory));
  MapCache meta;
  auto gets = [&] { return counted.stats()[objstore::OpKind::kGet].calls; };
  {
    cache::BlockCache cache{f.env, 1 << 20};
    SstReader reader{counted, cache, &meta};
    REQUIRE(RunSim(f.env, reader.ReadAll(f.ref)).ok());
  }
  const uint64_t first = gets();
  cache::BlockCache cache{f.env, 1 << 20};
  SstReader reader{counted, cache, &meta};
  CHECK(RunSim(f.env, reader.Warm(f.ref, counted, 512)));
  CHECK(gets() == first);
  auto all = RunSim(f.env, reader.ReadAll(f.ref));
  REQUIRE(all.ok());
  CHECK(*all == f.extents);
  CHECK(gets() == first);
}

TEST_CASE(
    "SST reader: Warm drops a damaged or stale metadata cache entry and fetches that "
    "block alone",
    "[lsm][sst][warm][cache]") {
  Fixture f;
  objstore::CountingStore counted(std::make_unique<testing::BorrowedStore>(f.memory));
  MapCache meta;
  auto gets = [&] { return counted.stats()[objstore::OpKind::kGet].calls; };
  std::shared_ptr<const SstIndex> idx;
  {
    cache::BlockCache cache{f.env, 1 << 20};
    SstReader reader{counted, cache, &meta};
    REQUIRE(RunSim(f.env, reader.Warm(f.ref, counted, 512)));
    auto i = RunSim(f.env, reader.Index(f.ref));
    REQUIRE(i.ok());
    idx = *i;
  }
  const SstIndexEntry& bad = idx->blocks[1];
  const std::string part = SstReader::BlockPartKey(f.ref.key, bad.offset);
  const std::string good = meta.rows.at(part);
  SECTION("a flipped bit") { meta.rows[part][good.size() / 2] ^= 0x10; }
  SECTION("another block's bytes (a stale entry)") {
    meta.rows[part] = meta.rows.at(SstReader::BlockPartKey(f.ref.key, idx->blocks[2].offset));
  }
  SECTION("truncated") { meta.rows[part].resize(good.size() - 1); }
  const auto before = counted.stats();
  const uint64_t first = gets();
  cache::BlockCache cache{f.env, 1 << 20};
  SstReader reader{counted, cache, &meta};
  CHECK(RunSim(f.env, reader.Warm(f.ref, counted, 512)));
  // That block alone: its neighbours came from the metadata cache.
  CHECK(gets() == first + 1);
  CHECK(counted.stats().Since(before)[objstore::OpKind::kGet].bytes == bad.length);
  CHECK(meta.rows.at(part) == good);  // the GET's verified bytes replaced the bad copy
  auto all = RunSim(f.env, reader.ReadAll(f.ref));
  REQUIRE(all.ok());
  CHECK(*all == f.extents);  // the bad copy never reached a reader
  CHECK(gets() == first + 1);
}

TEST_CASE("SST reader: a block Warm fetched damaged reaches neither cache",
          "[lsm][sst][warm][cache]") {
  Fixture f;
  MapCache meta;
  cache::BlockCache cache{f.env, 1 << 20};
  SstReader reader{f.store, cache, &meta};
  auto idx = RunSim(f.env, reader.Index(f.ref));
  REQUIRE(idx.ok());
  const size_t kept = meta.rows.size();  // the tail
  f.damage.armed = true;                 // the first GET's last block is damaged
  CHECK(RunSim(f.env, reader.Warm(f.ref, f.store, 512)));
  CHECK(meta.rows.size() == kept + (*idx)->blocks.size() - 1);
  f.damage.armed = false;
  auto all = RunSim(f.env, reader.ReadAll(f.ref));  // fetches the dropped block itself
  REQUIRE(all.ok());
  CHECK(*all == f.extents);
  CHECK(meta.rows.size() == kept + (*idx)->blocks.size());
}

}  // namespace
}  // namespace portal::lsm
