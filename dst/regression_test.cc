// Named regression tests for bugs the simulator's RapidCheck side found (each shrunk
// counterexample, replayed as a fixed scenario; see dst/regressions.txt for the seeds of
// portalbd-dst findings).
#include <catch2/catch.hpp>

#include <functional>
#include <memory>
#include <string>

#include "env/block_on.h"
#include "env/sim_env.h"
#include "objstore/fault_store.h"
#include "objstore/memory_store.h"
#include "testing/borrowed_store.h"
#include "util/log.h"
#include "volume/manifest.h"
#include "volume/volume.h"

namespace portal::dst {
namespace {

using objstore::FaultDecision;
using objstore::OpKind;
using volume::Volume;

volume::VolumeOptions Options() {
  volume::VolumeOptions o;
  o.size_bytes = 64 * 1024;
  o.block_size = 1024;
  o.flush_interval_ms = 0;
  o.l0_sst_size_bytes = 64 * 1024;
  o.memtable_flush_segments = 1000;
  o.gc_interval_ms = 3'600'000;
  return o;
}

// A FaultStore over `mem` whose decisions come from `decide` (nullptr: no faults).
std::unique_ptr<objstore::FaultStore> Faulty(
    SimEnv& env, objstore::MemoryStore& mem,
    std::function<FaultDecision(OpKind, std::string_view)> decide) {
  objstore::FaultOptions fo;
  fo.decide = decide ? std::move(decide) : [](OpKind, std::string_view) { return FaultDecision{}; };
  return std::make_unique<objstore::FaultStore>(std::make_unique<testing::BorrowedStore>(mem),
                                                env, fo);
}

FaultDecision LoseAck() {
  return {FaultDecision::Action::kLoseAck, 0, Status::Unavailable("lost ack")};
}
FaultDecision Fail() { return {FaultDecision::Action::kFail, 0, Status::Unavailable("503")}; }

TEST_CASE("regression: a lost acknowledgement of the open probe does not fail Open",
          "[dst]") {
  log::Init("off");
  SimEnv env;
  objstore::MemoryStore mem;
  bool lost = false;
  auto store = Faulty(env, mem, [&](OpKind kind, std::string_view key) {
    if (kind == OpKind::kPutIfAbsent && key.starts_with("probe/") && !lost) {
      lost = true;
      return LoseAck();
    }
    return FaultDecision{};
  });
  auto v = RunSim(env, OpenVolume(env, *store, Options()));
  REQUIRE(lost);
  REQUIRE(v.ok());
  REQUIRE(RunSim(env, (*v)->Close()).ok());
}

TEST_CASE("regression: a failed read-back after a lost SST acknowledgement is retried, "
          "not Corruption",
          "[dst]") {
  log::Init("off");
  SimEnv env;
  objstore::MemoryStore mem;
  int state = 0;  // 0: lose the SST PUT's ack, 1: fail the read-back once, 2: pass
  auto store = Faulty(env, mem, [&](OpKind kind, std::string_view key) {
    if (key.starts_with("map/") && kind == OpKind::kPutIfAbsent && state == 0) {
      state = 1;
      return LoseAck();
    }
    if (key.starts_with("map/") && kind == OpKind::kGet && state == 1) {
      state = 2;
      return Fail();
    }
    return FaultDecision{};
  });
  auto v = RunSim(env, OpenVolume(env, *store, Options()));
  REQUIRE(v.ok());
  std::vector<uint8_t> data(1024, 7);
  REQUIRE(RunSim(env, (*v)->Write(0, data, {.fua = true})).ok());
  Status st = RunSim(env, (*v)->FlushMemtable());
  CHECK(state == 2);
  CHECK(st.ok());
  REQUIRE(RunSim(env, (*v)->Close()).ok());
}

TEST_CASE("regression: a new writer fences the first missing segment id, not the "
          "manifest's next id",
          "[dst]") {
  log::Init("off");
  SimEnv env;
  objstore::MemoryStore mem;
  // Segments: 1 is writer 1's fence, 2 its first data; the first upload of 3 fails once.
  bool failed_once = false;
  auto s1 = Faulty(env, mem, [&](OpKind kind, std::string_view key) {
    if (kind == OpKind::kPutIfAbsent && key == volume::SegmentKey(3) && !failed_once) {
      failed_once = true;
      return Fail();
    }
    return FaultDecision{};
  });
  auto v1 = *RunSim(env, OpenVolume(env, *s1, Options()));
  std::vector<uint8_t> first(1024, 0x41);
  REQUIRE(RunSim(env, v1->Write(1024, first, {.fua = true})).ok());  // segment 2, applied
  std::vector<uint8_t> data(1024, 0x42);
  REQUIRE(RunSim(env, v1->Write(0, data, {})).ok());
  std::optional<Status> flush;
  Start(v1->Flush(), [&](Status st) { flush = st; });
  while (!failed_once) REQUIRE(env.RunOne());  // the upload failed; its retry is pending
  // Writer 1 commits a manifest (applied_segment 2) that already counts segment 3's id.
  REQUIRE(RunSim(env, v1->FlushMemtable()).ok());
  REQUIRE(v1->stats().next_segment_id == 4);
  REQUIRE(!flush.has_value());
  // Writer 2 opens while writer 1's segment is not in the store.
  auto s2 = Faulty(env, mem, nullptr);
  auto v2 = *RunSim(env, OpenVolume(env, *s2, Options()));
  // Writer 1's retry must now collide with writer 2's fence: no acknowledgement.
  env.RunUntil([&] { return flush.has_value(); });
  REQUIRE(flush.has_value());
  CHECK_FALSE(flush->ok());
  std::vector<uint8_t> out(1024, 0xee);
  REQUIRE(RunSim(env, v2->Read(0, out, nullptr)).ok());
  CHECK(out == std::vector<uint8_t>(1024, 0));  // writer 1's unacknowledged write is not in
  REQUIRE(RunSim(env, v2->Close()).ok());
  (void)RunSim(env, v1->Close());
  // And no later open resurrects it.
  auto s3 = Faulty(env, mem, nullptr);
  auto v3 = *RunSim(env, OpenVolume(env, *s3, Options()));
  REQUIRE(RunSim(env, v3->Read(0, out, nullptr)).ok());
  CHECK(out == std::vector<uint8_t>(1024, 0));
  REQUIRE(RunSim(env, v3->Close()).ok());
}

}  // namespace
}  // namespace portal::dst
