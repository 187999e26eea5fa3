// Deleting a volume (DeleteVolume's sweep, clone_protocol.cc) sends its DELETEs several at
// once, within a bound: one at a time, a volume of thousands of objects took a round trip
// per object.
#include <catch2/catch.hpp>
#include <memory>

#include "env/block_on.h"
#include "env/sim_env.h"
#include "objstore/fault_store.h"
#include "objstore/memory_store.h"
#include "testing/borrowed_store.h"
#include "testing/volume_options.h"
#include "volume/clone.h"
#include "volume/lsm_volume.h"

namespace portal::volume {
namespace {

TEST_CASE("deleting a volume sends its DELETEs several at once", "[volume][clone][delete]") {
  SimEnv env;
  objstore::MemoryStore mem;
  constexpr uint64_t kDeleteMs = 20;
  objstore::FaultOptions fo;
  fo.decide = [&](objstore::OpKind kind, std::string_view) {
    objstore::FaultDecision d;
    if (kind == objstore::OpKind::kDelete) d.latency_ns = kDeleteMs * kNanosPerMilli;
    return d;
  };
  objstore::FaultStore store(std::make_unique<testing::BorrowedStore>(mem), env, fo);
  VolumeOptions o = testing::SmallVolumeOptions(4 << 20);
  o.gc_interval_ms = 1'000'000'000;  // GC deletes nothing meanwhile
  auto v = RunSim(env, LsmVolume::Open(env, store, o));
  REQUIRE(v.ok());
  std::vector<uint8_t> block(4096, 0x5a);
  for (uint64_t i = 0; i < 200; ++i) {  // a segment each
    REQUIRE(RunSim(env, (*v)->Write(i * block.size(), block, {.fua = true})).ok());
  }
  REQUIRE(RunSim(env, (*v)->Close()).ok());
  v->reset();
  const size_t objects = RunSim(env, mem.List(""))->size();
  REQUIRE(objects >= 200);
  const uint64_t t0 = env.NowNanos();
  VolumeResolver none = [](const std::string& n) -> Result<objstore::ObjectStore*> {
    return Status::NotFound(n);
  };
  REQUIRE(RunSim(env, DeleteVolume(env, none, store)).ok());
  const uint64_t took_ms = (env.NowNanos() - t0) / kNanosPerMilli;
  INFO(objects << " objects deleted in " << took_ms << " ms (simulated)");
  CHECK(RunSim(env, mem.List(""))->empty());
  // One at a time would take objects * kDeleteMs; 16 at once about a sixteenth.
  CHECK(took_ms < objects * kDeleteMs / 8);
}

}  // namespace
}  // namespace portal::volume
