// Every manifest commit is an edit against the version it was computed from; a stale one
// is refused (DESIGN.md "every commit checks its base generation"; lsm/version_set.h).
#include <catch2/catch.hpp>

#include <fmt/format.h>

#include "env/block_on.h"
#include "env/sim_env.h"
#include "lsm/compaction.h"
#include "objstore/memory_store.h"
#include "testing/read_device.h"
#include "testing/volume_options.h"
#include "volume/lsm_volume.h"

namespace portal::volume {
namespace {

// Background maintenance stays quiet: the test decides what commits when.
VolumeOptions QuietOptions() {
  VolumeOptions o = testing::SmallVolumeOptions(1 << 20);
  o.memtable_flush_segments = 1000;
  o.memtable_flush_interval_ms = 3'600'000;
  o.l0_compaction_trigger = 1000;
  return o;
}

std::vector<uint8_t> Gen(uint8_t g, size_t n = 64 * 1024) {
  std::vector<uint8_t> d(n);
  for (size_t i = 0; i < n; ++i) d[i] = static_cast<uint8_t>(g * 37 + i % 251 + 1);
  return d;
}

std::vector<uint8_t> Read(SimEnv& env, BlockDevice& dev, uint64_t off, size_t n) {
  return testing::ReadDevice(env, dev, off, n);
}

TEST_CASE("a job started before a restore cannot commit after it", "[volume][commit]") {
  SimEnv env;
  objstore::MemoryStore store;
  auto opened = RunSim(env, LsmVolume::Open(env, store, QuietOptions()));
  REQUIRE(opened.ok());
  std::shared_ptr<LsmVolume> v = *opened;
  const auto gen1 = Gen(1), gen2 = Gen(2);
  REQUIRE(RunSim(env, v->Write(8192, gen1, {})).ok());
  REQUIRE(RunSim(env, v->CreateSnapshot("snap")).ok());
  REQUIRE(RunSim(env, v->Write(8192, gen2, {})).ok());
  REQUIRE(RunSim(env, v->Flush()).ok());
  REQUIRE(RunSim(env, v->FlushMemtable()).ok());

  // A compaction computed against version G (all of L0, both generations, into L1)...
  const std::shared_ptr<const lsm::Version> g = v->MapVersionForTest();
  REQUIRE(g->levels.at(0).size() >= 2);
  cache::BlockCache cache{env, 1 << 20};
  lsm::SstReader reader{store, cache};
  uint64_t n = 0;
  lsm::SstKeyFn next_key = [&n] { return fmt::format("map/job-{}.sst", ++n); };
  auto job = lsm::PickCompaction(*g, lsm::CompactionOptions{}, /*force=*/true);
  REQUIRE(job.has_value());
  auto done = RunSim(env, lsm::RunCompaction(*job, reader, env, store, 1 << 20, next_key, nullptr));
  REQUIRE(done.ok());
  REQUIRE(done->edit.base == g->number);
  REQUIRE(v->MapVersionForTest()->number == g->number);

  // ...then a restore commits version G+1...
  REQUIRE(RunSim(env, v->RestoreSnapshot("snap")).ok());
  CHECK(v->MapVersionForTest()->number == g->number + 1);
  CHECK(Read(env, *v, 8192, gen1.size()) == gen1);

  // ...and the job's commit is refused: the map stays the snapshot's.
  Status st = RunSim(env, v->CommitForTest(done->edit));
  CHECK(st.code() == Status::Code::kBusy);
  CHECK(st.message() ==
        fmt::format("stale base: version {}, current {}", g->number, g->number + 1));
  CHECK(v->MapVersionForTest()->number == g->number + 1);
  CHECK(Read(env, *v, 8192, gen1.size()) == gen1);
  CHECK_FALSE(v->fenced());
  // So is a memtable flush computed against G (its log position is the old timeline's).
  st = RunSim(env, v->CommitForTest(lsm::FlushEdit(g->number, {}, g->applied_segment,
                                                   g->applied_seq)));
  CHECK(st.code() == Status::Code::kBusy);
  CHECK(v->MapVersionForTest()->number == g->number + 1);

  // A job computed against the restored version commits, and changes nothing visible.
  REQUIRE(RunSim(env, v->CompactAll()).ok());
  CHECK(v->MapVersionForTest()->number > g->number + 1);
  CHECK(Read(env, *v, 8192, gen1.size()) == gen1);
  REQUIRE(RunSim(env, v->Close()).ok());

  auto reopened = RunSim(env, LsmVolume::Open(env, store, QuietOptions()));
  REQUIRE(reopened.ok());
  CHECK(Read(env, **reopened, 8192, gen1.size()) == gen1);
  REQUIRE(RunSim(env, (*reopened)->Close()).ok());
}

}  // namespace
}  // namespace portal::volume
