#include "lsm/compaction.h"

#include <catch2/catch.hpp>

#include <fmt/format.h>

#include "env/block_on.h"
#include "env/sim_env.h"
#include "objstore/counting_store.h"
#include "objstore/fault_store.h"
#include "objstore/memory_store.h"
#include "testing/borrowed_store.h"
#include "testing/map_cache.h"

namespace portal::lsm {
namespace {

struct Fixture {
  // Stores `extents` as one SST (through WriteSsts, as a flush does) and returns its ref.
  SstRef Put(const std::vector<Extent>& extents) {
    auto written = RunSim(env, WriteSsts(env, store, extents, 1 << 20, next_key, nullptr));
    REQUIRE(written.ok());
    REQUIRE(written->size() == 1);
    return (*written)[0].first;
  }
  std::vector<Extent> Read(const SstRef& ref) {
    auto all = RunSim(env, reader.ReadAll(ref));
    REQUIRE(all.ok());
    return *all;
  }

  SimEnv env;
  objstore::MemoryStore store;
  cache::BlockCache cache{env, 1 << 20};
  SstReader reader{store, cache};
  uint64_t n = 0;
  SstKeyFn next_key = [this] { return fmt::format("map/1-{}.sst", ++n); };
};

TEST_CASE("L0 is picked at its trigger, or below it when forced", "[lsm][compaction]") {
  const SstRef a{"a", 0, 10, 100, 1, 10}, b{"b", 5, 20, 100, 1, 15};
  const Version v{3, {{b, a}}, 0, 0};
  CompactionOptions o;
  o.l0_compaction_trigger = 3;
  CHECK_FALSE(PickCompaction(v, o).has_value());
  auto c = PickCompaction(v, o, /*force=*/true);
  REQUIRE(c.has_value());
  CHECK(c->base == 3);
  CHECK(c->from == 0);
  CHECK(c->to == 1);
  CHECK(c->upper.size() == 2);
  CHECK(c->bottom);
  o.l0_compaction_trigger = 2;
  CHECK(PickCompaction(v, o).has_value());
}

TEST_CASE("a level over its size target is compacted one file at a time", "[lsm][compaction]") {
  const SstRef x{"x", 0, 10, 600, 1, 10}, y{"y", 10, 20, 600, 1, 10}, z{"z", 5, 15, 10, 1, 10};
  const Version v{1, {{}, {x, y}, {z}}, 0, 0};
  CompactionOptions o;
  o.level1_target_bytes = 1000;
  auto c = PickCompaction(v, o);
  REQUIRE(c.has_value());
  CHECK(c->from == 1);
  CHECK(c->upper == std::vector<SstRef>{x});
  CHECK(c->lower == std::vector<SstRef>{z});
  CHECK(c->bottom);  // nothing below L2
  CHECK(FullCompactionDue(300, 1000, CompactionOptions{4, 1, 1, 200, 0.25}));
  CHECK_FALSE(FullCompactionDue(100, 1000, CompactionOptions{4, 1, 1, 200, 0.25}));
}

TEST_CASE("a merge: newer wins, holes at the bottom go, liveness deltas, an edit on its base",
          "[lsm][compaction]") {
  Fixture f;
  // Older: blocks 0-10 in segment 1; newer: 5-8 in segment 2 and a hole over 8-10.
  const SstRef older = f.Put({{0, 10, Loc::Data(1, 0)}});
  const SstRef newer = f.Put({{5, 8, Loc::Data(2, 0)}, {8, 10, Loc::Hole()}});
  const Version v{9, {{newer, older}}, 0, 0};
  auto c = PickCompaction(v, CompactionOptions{}, /*force=*/true);
  REQUIRE(c.has_value());
  auto done =
      RunSim(f.env, RunCompaction(*c, f.reader, f.env, f.store, 1 << 20, f.next_key, nullptr));
  REQUIRE(done.ok());
  REQUIRE(done->outputs.size() == 1);
  CHECK(f.Read(done->outputs[0]) ==
        std::vector<Extent>{{0, 5, Loc::Data(1, 0)}, {5, 8, Loc::Data(2, 0)}});
  CHECK(done->segment_delta == std::map<uint64_t, int64_t>{{1, -5}, {2, 0}});
  CHECK(done->edit.base == 9);

  VersionSet set;
  set.Recover(v);
  auto next = set.Prepare(done->edit);
  REQUIRE(next.ok());
  REQUIRE(set.Install(std::move(*next)).ok());
  REQUIRE(set.current()->levels.size() == 2);
  CHECK(set.current()->levels[0].empty());
  CHECK(set.current()->levels[1] == done->outputs);
}

// Thousands of small extents: several SSTs of several blocks at an 8 KiB target.
std::vector<Extent> ManyExtents() {
  std::vector<Extent> out;
  for (uint64_t i = 0; i < 3000; ++i)
    out.push_back({i * 10, i * 10 + 5, Loc::Data(1 + i / 100, i * 5)});
  return out;
}

TEST_CASE(
    "WriteSsts keeps each SST it stored in the metadata cache under the reader's keys, "
    "so a restart warms and reads them without a GET",
    "[lsm][compaction][cache]") {
  Fixture f;
  std::shared_ptr<const crypto::Keyring> ring;
  SECTION("unencrypted") {}
  SECTION("encrypted") {
    auto r = crypto::Keyring::FromKeys({std::string(crypto::kKeyBytes, 'k')});
    REQUIRE(r.ok());
    ring = *r;
  }
  testing::MapCache meta;
  SstReader keeper{f.store, f.cache, &meta, nullptr, ring.get()};
  const std::vector<Extent> extents = ManyExtents();
  auto written = RunSim(
      f.env, WriteSsts(f.env, f.store, extents, 8192, f.next_key, nullptr, ring.get(), &keeper));
  REQUIRE(written.ok());
  REQUIRE(written->size() > 2);
  size_t blocks = 0;
  for (const auto& [ref, idx] : *written) {
    blocks += idx.blocks.size();
    CHECK(meta.rows.count(ref.key) == 1);  // the tail
    for (const SstIndexEntry& b : idx.blocks) {
      CHECK(meta.rows.count(SstReader::BlockPartKey(ref.key, b.offset)) == 1);
    }
  }
  CHECK(blocks > written->size());
  CHECK(meta.rows.size() == written->size() + blocks);

  // A restart: an empty block cache, the same metadata cache, GETs counted.
  objstore::CountingStore counted(std::make_unique<testing::BorrowedStore>(f.store));
  cache::BlockCache cache{f.env, 4 << 20};
  SstReader reader{counted, cache, &meta, nullptr, ring.get()};
  std::vector<Extent> all;
  for (const auto& [ref, idx] : *written) {
    CHECK(RunSim(f.env, reader.Warm(ref, counted, 1 << 20)));
    auto got = RunSim(f.env, reader.ReadAll(ref));
    REQUIRE(got.ok());
    all.insert(all.end(), got->begin(), got->end());
  }
  CHECK(all == extents);
  CHECK(counted.stats()[objstore::OpKind::kGet].calls == 0);
}

TEST_CASE("an SST whose PUT fails leaves nothing in the metadata cache",
          "[lsm][compaction][cache]") {
  Fixture f;
  int puts = 0;
  objstore::FaultOptions o;
  o.decide = [&](objstore::OpKind kind, std::string_view) {
    objstore::FaultDecision d;
    if (kind == objstore::OpKind::kPutIfAbsent && ++puts == 2) {  // the second SST's
      d.action = objstore::FaultDecision::Action::kFail;
      d.error = Status::IOError("injected");
    }
    return d;
  };
  objstore::FaultStore failing{std::make_unique<testing::BorrowedStore>(f.store), f.env, o};
  testing::MapCache meta;
  SstReader keeper{failing, f.cache, &meta};
  auto written = RunSim(
      f.env, WriteSsts(f.env, failing, ManyExtents(), 8192, f.next_key, nullptr, nullptr, &keeper));
  CHECK(written.status().code() == Status::Code::kIOError);
  REQUIRE(f.n >= 2);
  // The first SST is stored (an orphan for GC, which erases its rows with it); the
  // second is not, and nothing of it is cached.
  const std::string first = "map/1-1.sst", second = "map/1-2.sst";
  CHECK(RunSim(f.env, f.store.Head(first)).ok());
  CHECK(RunSim(f.env, f.store.Head(second)).status().IsNotFound());
  CHECK(meta.rows.count(first) == 1);
  for (const auto& [key, bytes] : meta.rows) {
    INFO(key);
    CHECK((key == first || key.starts_with(first + "@")));
  }
  meta.Erase(first);
  CHECK(meta.rows.empty());
}

TEST_CASE("a compaction's outputs are in the metadata cache, so reading them costs no GET",
          "[lsm][compaction][cache]") {
  Fixture f;
  testing::MapCache meta;
  SstReader keeper{f.store, f.cache, &meta};
  const std::vector<Extent> extents = ManyExtents();
  const std::vector<Extent> older(extents.begin(), extents.begin() + 2000);
  const std::vector<Extent> newer(extents.begin() + 1000, extents.end());
  const SstRef a = f.Put(older), b = f.Put(newer);
  const Version v{4, {{b, a}}, 0, 0};
  auto c = PickCompaction(v, CompactionOptions{}, /*force=*/true);
  REQUIRE(c.has_value());
  auto done = RunSim(f.env, RunCompaction(*c, keeper, f.env, f.store, 8192, f.next_key, nullptr));
  REQUIRE(done.ok());
  REQUIRE(done->outputs.size() > 1);
  objstore::CountingStore counted(std::make_unique<testing::BorrowedStore>(f.store));
  cache::BlockCache cache{f.env, 4 << 20};
  SstReader reader{counted, cache, &meta};
  std::vector<Extent> all;
  for (const SstRef& ref : done->outputs) {
    auto got = RunSim(f.env, reader.ReadAll(ref));
    REQUIRE(got.ok());
    all.insert(all.end(), got->begin(), got->end());
  }
  CHECK(all == extents);
  CHECK(counted.stats()[objstore::OpKind::kGet].calls == 0);
}

TEST_CASE("a trivial move reads and writes nothing", "[lsm][compaction]") {
  Fixture f;
  const SstRef a{"never-read", 0, 10, 100, 1, 10}, deep{"deep", 50, 60, 100, 1, 10};
  const Version v{2, {{a}, {}, {deep}}, 0, 0};
  auto c = PickCompaction(v, CompactionOptions{}, /*force=*/true);
  REQUIRE(c.has_value());
  CHECK(c->trivial_move());
  auto done =
      RunSim(f.env, RunCompaction(*c, f.reader, f.env, f.store, 1 << 20, f.next_key, nullptr));
  REQUIRE(done.ok());  // "never-read" is not in the store
  CHECK(done->outputs.empty());
  CHECK(done->segment_delta.empty());
  CHECK(f.n == 0);
  VersionSet set;
  set.Recover(v);
  auto next = set.Prepare(done->edit);
  REQUIRE(next.ok());
  REQUIRE(set.Install(std::move(*next)).ok());
  CHECK(set.current()->levels == Levels{{}, {a}, {deep}});
}

}  // namespace
}  // namespace portal::lsm
