#include "lsm/compaction.h"

#include <catch2/catch.hpp>

#include <fmt/format.h>

#include "env/block_on.h"
#include "env/sim_env.h"
#include "objstore/memory_store.h"

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
