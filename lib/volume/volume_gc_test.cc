#include <catch2/catch.hpp>

#include <cstring>
#include <map>

#include "env/block_on.h"
#include "env/sim_env.h"
#include "objstore/memory_store.h"
#include "volume/lsm_volume.h"

namespace portal::volume {
namespace {

VolumeOptions GcOptions(bool immediate) {
  VolumeOptions o;
  o.size_bytes = 1 << 20;  // 256 blocks
  o.flush_interval_ms = 0;
  o.l0_sst_size_bytes = 32 * 4096;  // 32-block segments
  o.max_unflushed_bytes = 1 << 20;
  o.block_cache_size_bytes = 1 << 20;
  o.memtable_flush_segments = 4;
  o.l0_compaction_trigger = 2;
  o.sst_target_bytes = 4096;
  o.level1_target_bytes = 16384;
  o.blocks_per_chunk = 4;
  o.gc_interval_ms = 1000;
  o.gc_grace_ms = 60'000;
  o.immediate_segment_free = immediate;
  o.compress = !immediate;
  o.read_partial_raw_chunks = immediate;
  return o;
}

std::vector<uint8_t> Block(uint64_t tag) {
  std::vector<uint8_t> d(4096);
  for (size_t i = 0; i < d.size(); ++i) d[i] = static_cast<uint8_t>(tag * 131 + i / 64 + 1);
  return d;
}

// Overwrites random blocks of a 64-block span, checking content at the end.
void Churn(SimEnv& env, LsmVolume& v, std::map<uint64_t, uint64_t>* model, int writes,
           uint64_t seed) {
  Prng rng(seed);
  for (int i = 0; i < writes; ++i) {
    uint64_t blk = rng.Below(64);
    uint64_t tag = rng.Next() % 100000 + 1;
    REQUIRE(RunSim(env, v.Write(blk * 4096, Block(tag), {})).ok());
    (*model)[blk] = tag;
    if (i % 50 == 49) REQUIRE(RunSim(env, v.Flush()).ok());
  }
  REQUIRE(RunSim(env, v.Flush()).ok());
}

void Verify(SimEnv& env, LsmVolume& v, const std::map<uint64_t, uint64_t>& model) {
  for (const auto& [blk, tag] : model) {
    std::vector<uint8_t> out(4096);
    REQUIRE(RunSim(env, v.Read(blk * 4096, out, nullptr)).ok());
    INFO("block " << blk);
    REQUIRE(out == Block(tag));
  }
}

TEST_CASE("GC keeps memory:// bounded under sustained overwrites", "[volume][gc]") {
  SimEnv env;
  objstore::MemoryStore store;
  auto v = *RunSim(env, LsmVolume::Open(env, store, GcOptions(true)));
  std::map<uint64_t, uint64_t> model;
  uint64_t peak = 0;
  for (int round = 0; round < 20; ++round) {
    Churn(env, *v, &model, 500, round + 1);
    REQUIRE(RunSim(env, v->FlushMemtable()).ok());
    REQUIRE(RunSim(env, v->CompactAll()).ok());
    REQUIRE(RunSim(env, v->RunGc()).ok());
    REQUIRE(RunSim(env, v->Flush()).ok());  // uploads the relocation batch
    REQUIRE(RunSim(env, v->RunGc()).ok());
    peak = std::max(peak, store.total_bytes());
  }
  // 10,000 block writes (40 MiB) over a 256 KiB span: the store must stay a small
  // multiple of the live data instead of growing with what was written.
  INFO("peak store bytes " << peak);
  CHECK(peak < 12 * 64 * 4096);
  Verify(env, *v, model);
  REQUIRE(RunSim(env, v->Close()).ok());
}

// Sequential passes over a 64-block span with a FLUSH after each, and no explicit
// compaction or GC: only the maintenance loop runs. Returns the peak store size.
uint64_t OverwritePasses(uint64_t full_compaction_min_bytes, uint64_t* full_compactions) {
  SimEnv env;
  objstore::MemoryStore store;
  VolumeOptions o = GcOptions(true);
  o.l0_compaction_trigger = 1000;      // regular compaction never runs here:
  o.level1_target_bytes = 1ull << 40;  // only a full compaction can drop shadowed refs
  o.full_compaction_min_bytes = full_compaction_min_bytes;
  auto v = *RunSim(env, LsmVolume::Open(env, store, o));
  std::map<uint64_t, uint64_t> model;
  uint64_t peak = 0, tag = 0;
  for (int pass = 0; pass < 40; ++pass) {
    for (uint64_t blk = 0; blk < 64; blk += 8) {
      std::vector<uint8_t> data;
      for (uint64_t i = 0; i < 8; ++i) {
        auto b = Block(++tag);
        data.insert(data.end(), b.begin(), b.end());
        model[blk + i] = tag;
      }
      REQUIRE(RunSim(env, v->Write(blk * 4096, data, {})).ok());
    }
    REQUIRE(RunSim(env, v->Flush()).ok());
    env.AdvanceBy(1100 * kNanosPerMilli);  // the GC interval
    REQUIRE(RunSim(env, v->Flush()).ok());
    peak = std::max(peak, store.total_bytes());
  }
  Verify(env, *v, model);
  *full_compactions = v->stats().full_compactions;
  REQUIRE(RunSim(env, v->Close()).ok());
  auto v2 = *RunSim(env, LsmVolume::Open(env, store, o));
  Verify(env, *v2, model);
  REQUIRE(RunSim(env, v2->Close()).ok());
  return peak;
}

TEST_CASE("shadowed map references trigger a full compaction that frees their segments",
          "[volume][gc]") {
  // 2,560 blocks (10 MiB) written over a 256 KiB span.
  uint64_t full = 0;
  const uint64_t bounded = OverwritePasses(64 * 4096, &full);
  INFO("peak store bytes with full compactions " << bounded << " (" << full << " of them)");
  CHECK(full > 0);
  CHECK(bounded < 8 * 64 * 4096);
  // The control: with the trigger off, shadowed references keep every segment alive.
  uint64_t none = 0;
  const uint64_t unbounded = OverwritePasses(UINT64_MAX, &none);
  INFO("peak store bytes without " << unbounded);
  CHECK(none == 0);
  CHECK(unbounded > 16 * 64 * 4096);
}

TEST_CASE("GC on a durable store waits for the grace period and never deletes what is "
          "referenced",
          "[volume][gc]") {
  SimEnv env;
  objstore::MemoryStore store;
  VolumeOptions o = GcOptions(false);
  auto v = *RunSim(env, LsmVolume::Open(env, store, o));
  std::map<uint64_t, uint64_t> model;
  Churn(env, *v, &model, 400, 7);
  REQUIRE(RunSim(env, v->FlushMemtable()).ok());
  REQUIRE(RunSim(env, v->CompactAll()).ok());
  const size_t before = store.object_count();
  REQUIRE(RunSim(env, v->RunGc()).ok());
  CHECK(store.object_count() >= before - 0);  // nothing is old enough yet... manifests aside
  env.AdvanceBy(2 * o.gc_grace_ms * kNanosPerMilli);
  REQUIRE(RunSim(env, v->RunGc()).ok());
  REQUIRE(RunSim(env, v->Flush()).ok());
  REQUIRE(RunSim(env, v->FlushMemtable()).ok());
  REQUIRE(RunSim(env, v->CompactAll()).ok());
  env.AdvanceBy(2 * o.gc_grace_ms * kNanosPerMilli);
  REQUIRE(RunSim(env, v->RunGc()).ok());
  CHECK(store.object_count() < before);
  Verify(env, *v, model);
  REQUIRE(RunSim(env, v->Close()).ok());
  // Everything the latest manifest references still exists: reopen and read it all.
  auto v2 = *RunSim(env, LsmVolume::Open(env, store, o));
  Verify(env, *v2, model);
  // The first epoch's fence segment (id 1) is kept forever.
  CHECK(RunSim(env, store.Head(SegmentKey(1))).ok());
  REQUIRE(RunSim(env, v2->Close()).ok());
}

}  // namespace
}  // namespace portal::volume
