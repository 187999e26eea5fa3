// Crash-point tests: the store "crashes" before or after the k-th object write (PUT,
// PUT_IF_ABSENT, DELETE) of an operation, for every k the operation reaches. Then a new
// process opens the same objects, and the durability contract must hold and nothing a
// manifest or snapshot references may be missing.
#include <catch2/catch.hpp>

#include <functional>
#include <map>

#include <fmt/format.h>

#include "env/block_on.h"
#include "env/sim_env.h"
#include "lsm/sst_reader.h"
#include "objstore/fault_store.h"
#include "objstore/memory_store.h"
#include "testing/borrowed_store.h"
#include "testing/read_device.h"
#include "testing/volume_options.h"
#include "volume/lsm_volume.h"
#include "volume/manifest_log.h"

namespace portal::volume {
namespace {

using objstore::FaultDecision;
using objstore::OpKind;

VolumeOptions CrashOptions() {
  VolumeOptions o = testing::SmallVolumeOptions(1 << 20);
  o.memtable_flush_segments = 1000;  // only explicit memtable flushes
  o.memtable_flush_interval_ms = 1'000'000'000;
  o.l0_compaction_trigger = 1000;    // only explicit compactions
  o.sst_target_bytes = 1024;
  o.level1_target_bytes = 2048;
  o.gc_grace_ms = 1000;
  o.gc_interval_ms = 1'000'000'000;  // only explicit GC
  return o;
}

std::vector<uint8_t> Data(uint64_t tag, size_t n) {
  std::vector<uint8_t> d(n);
  for (size_t i = 0; i < n; ++i) d[i] = static_cast<uint8_t>(tag * 71 + i / 512 + 1);
  return d;
}

// Crashes the k-th mutating call: before it takes effect, or after (acknowledgement
// lost); every later call fails too, as if the process died.
struct CrashPlan {
  uint64_t k = 0;
  bool after = false;
  uint64_t seen = 0;
  bool crashed = false;
  FaultDecision Decide(OpKind kind) {
    FaultDecision d;
    if (crashed) {
      d.action = FaultDecision::Action::kFail;
      d.error = Status::Shutdown("crashed");
      return d;
    }
    bool mutating = kind == OpKind::kPut || kind == OpKind::kPutIfAbsent || kind == OpKind::kDelete;
    if (mutating && ++seen == k) {
      crashed = true;
      d.action = after ? FaultDecision::Action::kLoseAck : FaultDecision::Action::kFail;
      d.error = Status::Shutdown("crashed");
    }
    return d;
  }
};

// Everything the latest manifest and its snapshots reference exists and decodes.
void CheckNothingMissing(SimEnv& env, objstore::MemoryStore& mem) {
  ManifestLog log(mem, env);
  auto latest = RunSim(env, log.ReadLatest(0));
  REQUIRE(latest.ok());
  cache::BlockCache cache(env, 1 << 20);
  lsm::SstReader ssts(mem, cache);
  auto check_levels = [&](const std::vector<std::vector<SstRef>>& levels) {
    for (const auto& level : levels) {
      for (const auto& ref : level) {
        auto idx = RunSim(env, ssts.Index(ref));
        INFO("SST " << ref.key);
        REQUIRE(idx.ok());
        for (const auto& [seg, blocks] : (*idx)->segment_blocks) {
          INFO("segment " << seg << " referenced by " << ref.key);
          REQUIRE(RunSim(env, mem.Head(SegmentKey(seg))).ok());
        }
      }
    }
  };
  check_levels(latest->second.levels);
  for (const auto& s : latest->second.snapshots) {
    auto obj = RunSim(env, mem.Get(s.key));
    INFO("snapshot object " << s.key);
    REQUIRE(obj.ok());
    auto decoded = DecodeSnapshotObject(*obj, s.key);
    REQUIRE(decoded.ok());
    check_levels(decoded->levels);
  }
}

// Runs `setup` cleanly, then `op` with the k-th mutating call crashing, for k = 1, 2, ...
// until `op` finishes without reaching k. `verify` checks the reopened volume.
void ForEachCrashPoint(const std::function<void(SimEnv&, LsmVolume&)>& setup,
                       const std::function<Task<Status>(SimEnv&, LsmVolume&)>& op,
                       const std::function<void(SimEnv&, LsmVolume&)>& verify) {
  int crashes = 0;
  for (bool after : {false, true}) {
    for (uint64_t k = 1;; ++k) {
      objstore::MemoryStore mem;
      auto plan = std::make_shared<CrashPlan>();
      bool reached;
      {
        SimEnv env;
        objstore::FaultOptions fo;
        fo.decide = [plan](OpKind kind, std::string_view) { return plan->Decide(kind); };
        objstore::FaultStore store(std::make_unique<testing::BorrowedStore>(mem), env, fo);
        auto v = *RunSim(env, LsmVolume::Open(env, store, CrashOptions()));
        setup(env, *v);
        plan->k = plan->seen + k;  // count from the operation's first write
        plan->after = after;
        (void)RunSim(env, op(env, *v));
        reached = plan->crashed;
        env.DropAll();  // the process is gone
      }
      if (!reached) break;
      ++crashes;
      SimEnv env2;
      INFO("crash " << (after ? "after" : "before") << " write " << k);
      CheckNothingMissing(env2, mem);
      auto v2 = RunSim(env2, LsmVolume::Open(env2, mem, CrashOptions()));
      if (!v2.ok()) FAIL("reopen failed: " << v2.status().ToString());
      verify(env2, **v2);
      CheckNothingMissing(env2, mem);
      REQUIRE(RunSim(env2, (*v2)->Close()).ok());
    }
  }
  CHECK(crashes > 0);  // the operation really wrote something to crash in
}

Task<Status> CreateStatus(LsmVolume& v, std::string name) {
  auto r = co_await v.CreateSnapshot(std::move(name));
  co_return r.status();
}

std::vector<uint8_t> Read(SimEnv& env, BlockDevice& dev, uint64_t off, size_t n) {
  return testing::ReadDevice(env, dev, off, n);
}

void Write(SimEnv& env, LsmVolume& v, uint64_t off, const std::vector<uint8_t>& d) {
  REQUIRE(RunSim(env, v.Write(off, d, {})).ok());
}

TEST_CASE("crash at every write of a FLUSH: flushed data kept, the rest old or new",
          "[volume][crash]") {
  ForEachCrashPoint(
      [](SimEnv& env, LsmVolume& v) {
        Write(env, v, 0, Data(1, 64 * 1024));
        REQUIRE(RunSim(env, v.Flush()).ok());
        Write(env, v, 32 * 1024, Data(2, 64 * 1024));
      },
      [](SimEnv&, LsmVolume& v) { return v.Flush(); },
      [](SimEnv& env, LsmVolume& v) {
        auto got = Read(env, v, 0, 96 * 1024);
        auto a = Data(1, 64 * 1024), b = Data(2, 64 * 1024);
        REQUIRE(std::equal(a.begin(), a.begin() + 32 * 1024, got.begin()));
        for (size_t blk = 8; blk < 24; ++blk) {
          const uint8_t* g = got.data() + blk * 4096;
          bool neu = std::equal(g, g + 4096, b.begin() + (blk - 8) * 4096);
          bool old = blk < 16 ? std::equal(g, g + 4096, a.begin() + blk * 4096)
                              : std::all_of(g, g + 4096, [](uint8_t c) { return c == 0; });
          INFO("block " << blk);
          REQUIRE((neu || old));
        }
      });
}

TEST_CASE("crash at every write of a memtable flush and of a compaction", "[volume][crash]") {
  auto setup = [](SimEnv& env, LsmVolume& v) {
    for (int i = 0; i < 6; ++i) {
      Write(env, v, uint64_t(i) * 20000, Data(10 + i, 30000));
      REQUIRE(RunSim(env, v.Flush()).ok());
      if (i % 2 == 1) REQUIRE(RunSim(env, v.FlushMemtable()).ok());
    }
    REQUIRE(RunSim(env, v.Trim(50000, 3000, {})).ok());
    REQUIRE(RunSim(env, v.Flush()).ok());
  };
  auto expected = [] {
    std::vector<uint8_t> m(1 << 20, 0);
    for (int i = 0; i < 6; ++i) {
      auto d = Data(10 + i, 30000);
      std::copy(d.begin(), d.end(), m.begin() + i * 20000);
    }
    std::fill(m.begin() + 50000, m.begin() + 53000, 0);
    return m;
  }();
  auto verify = [&](SimEnv& env, LsmVolume& v) {
    REQUIRE(Read(env, v, 0, 1 << 20) == expected);
  };
  ForEachCrashPoint(setup, [](SimEnv&, LsmVolume& v) { return v.FlushMemtable(); }, verify);
  ForEachCrashPoint(
      [&](SimEnv& env, LsmVolume& v) {
        setup(env, v);
        REQUIRE(RunSim(env, v.FlushMemtable()).ok());
      },
      [](SimEnv&, LsmVolume& v) { return v.CompactAll(); }, verify);
}

TEST_CASE("crash at every delete of a GC batch keeps everything referenced", "[volume][crash]") {
  std::vector<uint8_t> expected(1 << 20, 0);
  for (int round = 0; round < 5; ++round) {
    auto d = Data(20 + round, 256 * 1024);
    std::copy(d.begin(), d.end(), expected.begin() + (round % 2) * 128 * 1024);
  }
  ForEachCrashPoint(
      [](SimEnv& env, LsmVolume& v) {
        for (int round = 0; round < 5; ++round) {
          Write(env, v, (round % 2) * 128 * 1024, Data(20 + round, 256 * 1024));
          REQUIRE(RunSim(env, v.Flush()).ok());
          REQUIRE(RunSim(env, v.FlushMemtable()).ok());
        }
        REQUIRE(RunSim(env, v.CompactAll()).ok());
        REQUIRE(RunSim(env, v.RunGc()).ok());  // learns what is dead; too young to delete
        env.AdvanceBy(10 * kNanosPerSecond);
      },
      [](SimEnv&, LsmVolume& v) { return v.RunGc(); },
      [&](SimEnv& env, LsmVolume& v) { REQUIRE(Read(env, v, 0, 1 << 20) == expected); });
}

TEST_CASE("crash during snapshot create or restore leaves the old or the new state",
          "[volume][crash][snapshot]") {
  auto setup = [](SimEnv& env, LsmVolume& v) {
    Write(env, v, 0, Data(1, 128 * 1024));
    REQUIRE(RunSim(env, v.CreateSnapshot("base")).ok());
    Write(env, v, 64 * 1024, Data(2, 128 * 1024));
    REQUIRE(RunSim(env, v.Flush()).ok());
  };
  auto base = Data(1, 128 * 1024);
  std::vector<uint8_t> base_dev(1 << 20, 0), now_dev(1 << 20, 0);
  std::copy(base.begin(), base.end(), base_dev.begin());
  now_dev = base_dev;
  auto second = Data(2, 128 * 1024);
  std::copy(second.begin(), second.end(), now_dev.begin() + 64 * 1024);

  ForEachCrashPoint(
      setup, [](SimEnv&, LsmVolume& v) { return CreateStatus(v, "more"); },
      [&](SimEnv& env, LsmVolume& v) {
        REQUIRE(Read(env, v, 0, 1 << 20) == now_dev);
        auto snaps = v.ListSnapshots();
        REQUIRE((snaps.size() == 1 || snaps.size() == 2));
        for (const auto& s : snaps) {  // a listed snapshot is whole and exact
          auto dev = v.OpenSnapshot(s.name);
          REQUIRE(dev.ok());
          REQUIRE(Read(env, **dev, 0, 1 << 20) == (s.name == "base" ? base_dev : now_dev));
        }
      });
  ForEachCrashPoint(
      setup, [](SimEnv&, LsmVolume& v) { return v.RestoreSnapshot("base"); },
      [&](SimEnv& env, LsmVolume& v) {
        auto got = Read(env, v, 0, 1 << 20);
        REQUIRE((got == base_dev || got == now_dev));
        REQUIRE(v.ListSnapshots().size() == 1);
      });
}

}  // namespace
}  // namespace portal::volume
