#include <catch2/catch.hpp>
#include <rapidcheck.h>
#include <rapidcheck/catch.h>

#include <map>
#include <optional>

#include <fmt/format.h>

#include "env/block_on.h"
#include "env/sim_env.h"
#include "objstore/memory_store.h"
#include "testing/read_device.h"
#include "testing/volume_options.h"
#include "volume/lsm_volume.h"

namespace portal::volume {
namespace {

VolumeOptions SnapOptions(bool immediate = false) {
  VolumeOptions o = testing::SmallVolumeOptions(1 << 20);
  o.gc_grace_ms = 1000;
  o.immediate_segment_free = immediate;
  return o;
}

std::shared_ptr<LsmVolume> Open(SimEnv& env, objstore::ObjectStore& store, VolumeOptions o) {
  auto v = RunSim(env, LsmVolume::Open(env, store, o));
  if (!v.ok()) FAIL("open failed: " << v.status().ToString());
  return *v;
}

std::vector<uint8_t> Gen(uint8_t g, size_t n = 64 * 1024) {
  std::vector<uint8_t> d(n);
  for (size_t i = 0; i < n; ++i) d[i] = static_cast<uint8_t>(g * 37 + i % 251 + 1);
  return d;
}

std::vector<uint8_t> Noise(uint64_t seed, size_t n) {  // incompressible
  Prng rng(seed);
  std::vector<uint8_t> d(n);
  for (auto& b : d) b = static_cast<uint8_t>(rng.Next());
  return d;
}

std::vector<uint8_t> Read(SimEnv& env, BlockDevice& dev, uint64_t off, size_t n) {
  return testing::ReadDevice(env, dev, off, n);
}

TEST_CASE("the original's scenario: gen1, snap1, gen2, snap2, restores, delete, restart",
          "[volume][snapshot]") {
  SimEnv env;
  objstore::MemoryStore store;
  auto v = Open(env, store, SnapOptions());
  auto gen1 = Gen(1), gen2 = Gen(2);
  REQUIRE(RunSim(env, v->Write(8192, gen1, {})).ok());
  auto s1 = RunSim(env, v->CreateSnapshot("snap1"));
  REQUIRE(s1.ok());
  REQUIRE(RunSim(env, v->Write(8192, gen2, {})).ok());
  REQUIRE(RunSim(env, v->Trim(200000, 4096, {})).ok());
  REQUIRE(RunSim(env, v->CreateSnapshot("snap2")).ok());
  REQUIRE(RunSim(env, v->RestoreSnapshot("snap1")).ok());
  CHECK(Read(env, *v, 8192, gen1.size()) == gen1);
  REQUIRE(RunSim(env, v->RestoreSnapshot("snap2")).ok());  // no snapshot lost
  CHECK(Read(env, *v, 8192, gen2.size()) == gen2);
  REQUIRE(RunSim(env, v->DeleteSnapshot("snap1")).ok());
  REQUIRE(RunSim(env, v->RestoreSnapshot("snap2")).ok());
  CHECK(Read(env, *v, 8192, gen2.size()) == gen2);
  REQUIRE(RunSim(env, v->Close()).ok());
  auto v2 = Open(env, store, SnapOptions());
  auto list = v2->ListSnapshots();
  REQUIRE(list.size() == 1);
  CHECK(list[0].name == "snap2");
  CHECK(Read(env, *v2, 8192, gen2.size()) == gen2);
  REQUIRE(RunSim(env, v2->Close()).ok());
}

TEST_CASE("a restore abandons unflushed and later writes, and survives a crash right after",
          "[volume][snapshot]") {
  SimEnv env;
  objstore::MemoryStore store;
  {
    auto v = Open(env, store, SnapOptions());
    REQUIRE(RunSim(env, v->Write(0, Gen(1), {})).ok());
    REQUIRE(RunSim(env, v->CreateSnapshot("a")).ok());
    REQUIRE(RunSim(env, v->Write(0, Gen(2), {.fua = true})).ok());  // durable, then abandoned
    REQUIRE(RunSim(env, v->Write(65536, Gen(3), {})).ok());         // unflushed, abandoned
    REQUIRE(RunSim(env, v->RestoreSnapshot("a")).ok());
    CHECK(Read(env, *v, 0, 65536) == Gen(1));
    CHECK(Read(env, *v, 65536, 65536) == std::vector<uint8_t>(65536, 0));
    env.DropAll();  // crash: replay must not resurrect the abandoned segments
  }
  SimEnv env2;
  auto v = Open(env2, store, SnapOptions());
  CHECK(Read(env2, *v, 0, 65536) == Gen(1));
  CHECK(Read(env2, *v, 65536, 65536) == std::vector<uint8_t>(65536, 0));
  REQUIRE(RunSim(env2, v->Close()).ok());
}

TEST_CASE("snapshot devices are read-only views, and delete waits for detach",
          "[volume][snapshot]") {
  SimEnv env;
  objstore::MemoryStore store;
  auto v = Open(env, store, SnapOptions());
  REQUIRE(RunSim(env, v->Write(4096, Gen(5), {})).ok());
  REQUIRE(RunSim(env, v->CreateSnapshot("ro")).ok());
  REQUIRE(RunSim(env, v->Write(4096, Gen(6), {})).ok());
  {
    auto dev = v->OpenSnapshot("ro");
    REQUIRE(dev.ok());
    CHECK((*dev)->read_only());
    CHECK(Read(env, **dev, 4096, 65536) == Gen(5));
    CHECK(Read(env, *v, 4096, 65536) == Gen(6));
    auto w = RunSim(env, (*dev)->Write(0, Gen(7, 512), {}));
    CHECK(w.code() == Status::Code::kPermissionDenied);
    CHECK(v->GetSnapshot("ro")->attached == 1);
    auto del = RunSim(env, v->DeleteSnapshot("ro"));
    CHECK(del.code() == Status::Code::kBusy);
    auto st = RunSim(env, (*dev)->BlockStatus(0, 1 << 20, 100));
    REQUIRE(st.ok());
    CHECK((*st)[0].hole);
  }
  CHECK(RunSim(env, v->DeleteSnapshot("ro")).ok());
  CHECK(v->OpenSnapshot("ro").status().IsNotFound());
  REQUIRE(RunSim(env, v->Close()).ok());
}

TEST_CASE("bad snapshot names and unknown snapshots are refused clearly", "[volume][snapshot]") {
  SimEnv env;
  objstore::MemoryStore store;
  auto v = Open(env, store, SnapOptions());
  for (const char* bad : {"", "a/b", "a@b", "has space"}) {
    auto r = RunSim(env, v->CreateSnapshot(bad));
    CHECK(r.status().code() == Status::Code::kInvalidArgument);
  }
  CHECK(RunSim(env, v->CreateSnapshot(std::string(129, 'x'))).status().code() ==
        Status::Code::kInvalidArgument);
  REQUIRE(RunSim(env, v->CreateSnapshot("dup")).ok());
  auto dup = RunSim(env, v->CreateSnapshot("dup"));
  CHECK(dup.status().message().find("already exists") != std::string::npos);
  CHECK(RunSim(env, v->RestoreSnapshot("nope")).IsNotFound());
  CHECK(RunSim(env, v->DeleteSnapshot("nope")).IsNotFound());
  REQUIRE(RunSim(env, v->Close()).ok());
}

TEST_CASE("deleting a snapshot lets GC reclaim what only it referenced", "[volume][snapshot]") {
  SimEnv env;
  objstore::MemoryStore store;
  auto v = Open(env, store, SnapOptions(/*immediate=*/true));
  REQUIRE(RunSim(env, v->Write(0, Noise(1, 512 * 1024), {})).ok());
  REQUIRE(RunSim(env, v->CreateSnapshot("old")).ok());
  for (int i = 0; i < 4; ++i) {
    REQUIRE(RunSim(env, v->Write(0, Noise(2 + i, 512 * 1024), {})).ok());
  }
  REQUIRE(RunSim(env, v->Flush()).ok());
  REQUIRE(RunSim(env, v->FlushMemtable()).ok());
  REQUIRE(RunSim(env, v->CompactAll()).ok());
  REQUIRE(RunSim(env, v->RunGc()).ok());
  const uint64_t pinned = store.total_bytes();
  const uint64_t reclaimed = v->stats().gc_reclaimed_bytes;
  REQUIRE(RunSim(env, v->DeleteSnapshot("old")).ok());
  REQUIRE(RunSim(env, v->RunGc()).ok());
  INFO("before " << pinned << " after " << store.total_bytes());
  CHECK(store.total_bytes() + 400 * 1024 < pinned);  // gen1's ~512 KiB are gone
  CHECK(v->stats().gc_reclaimed_bytes >= reclaimed + 400 * 1024);  // and counted
  CHECK(Read(env, *v, 0, 512 * 1024) == Noise(5, 512 * 1024));
  REQUIRE(RunSim(env, v->Close()).ok());
}

// A restore waits in its FLUSH while the snapshot is deleted and GC collects what only
// the snapshot referenced: the restore must then fail cleanly, not commit a map whose
// segments and SSTs are gone.
TEST_CASE("a restore racing the delete of its snapshot and a GC round fails cleanly",
          "[volume][snapshot]") {
  SimEnv env;
  objstore::MemoryStore store;
  auto v = Open(env, store, SnapOptions(/*immediate=*/true));
  REQUIRE(RunSim(env, v->Write(0, Noise(1, 256 * 1024), {})).ok());
  REQUIRE(RunSim(env, v->CreateSnapshot("old")).ok());
  REQUIRE(RunSim(env, v->Write(0, Noise(2, 256 * 1024), {})).ok());
  REQUIRE(RunSim(env, v->Flush()).ok());
  REQUIRE(RunSim(env, v->FlushMemtable()).ok());
  REQUIRE(RunSim(env, v->CompactAll()).ok());
  REQUIRE(RunSim(env, v->Write(0, Noise(3, 256 * 1024), {})).ok());  // the restore's FLUSH waits

  std::optional<Status> restored, deleted, collected;
  Start(v->RestoreSnapshot("old"), [&](Status s) { restored = s; });
  Start(v->DeleteSnapshot("old"), [&](Status s) { deleted = s; });
  REQUIRE(env.RunUntil([&] { return deleted.has_value(); }));
  REQUIRE(deleted->ok());
  Start(v->RunGc(), [&](Status s) { collected = s; });
  REQUIRE(env.RunUntil([&] { return restored.has_value() && collected.has_value(); }));
  REQUIRE(collected->ok());
  // Refused because the snapshot is gone, before it looks at any of its objects (which
  // GC may have deleted in part: a map SST found with its segments gone would be a map
  // that cannot be read).
  CHECK(restored->ToString() == "NotFound: no snapshot named 'old' (deleted while the restore "
                                "waited)");
  // Either way the volume must stay readable and equal to its last writes.
  CHECK(Read(env, *v, 0, 256 * 1024) == Noise(3, 256 * 1024));
  REQUIRE(RunSim(env, v->Close()).ok());
  auto v2 = Open(env, store, SnapOptions(true));
  CHECK(Read(env, *v2, 0, 256 * 1024) == Noise(3, 256 * 1024));
  REQUIRE(RunSim(env, v2->Close()).ok());
}

// Model: the device's bytes plus every snapshot's bytes.
TEST_CASE("random writes, trims, snapshots, restores, deletes, GC and reopens match a model",
          "[volume][snapshot][property]") {
  rc::prop("snapshot model", [] {
    const uint64_t seed = *rc::gen::arbitrary<uint64_t>();
    SimEnv env(SimEnv::Options{.seed = seed, .shuffle_ready = true});
    objstore::MemoryStore store;
    VolumeOptions o = SnapOptions();
    o.size_bytes = 256 * 1024;
    std::shared_ptr<LsmVolume> vol = *RunSim(env, LsmVolume::Open(env, store, o));
    std::vector<uint8_t> model(o.size_bytes, 0);
    std::map<std::string, std::vector<uint8_t>> snaps;
    const int n = *rc::gen::inRange(5, 40);
    for (int step = 0; step < n; ++step) {
      const int op = *rc::gen::inRange(0, 9);
      if (op <= 2) {
        uint64_t off = *rc::gen::inRange<uint64_t>(0, o.size_bytes - 1);
        uint64_t len = *rc::gen::inRange<uint64_t>(1, std::min<uint64_t>(o.size_bytes - off, 20000) + 1);
        std::vector<uint8_t> d(len);
        uint8_t seedb = *rc::gen::arbitrary<uint8_t>();
        for (uint64_t i = 0; i < len; ++i) d[i] = static_cast<uint8_t>(seedb + i * 13);
        RC_ASSERT(RunSim(env, vol->Write(off, d, {})).ok());
        std::copy(d.begin(), d.end(), model.begin() + off);
      } else if (op == 3) {
        uint64_t off = *rc::gen::inRange<uint64_t>(0, o.size_bytes - 1);
        uint64_t len = *rc::gen::inRange<uint64_t>(1, o.size_bytes - off + 1);
        RC_ASSERT(RunSim(env, vol->Trim(off, len, {})).ok());
        std::fill(model.begin() + off, model.begin() + off + len, 0);
      } else if (op == 4) {
        std::string name = fmt::format("s{}", step);
        RC_ASSERT(RunSim(env, vol->CreateSnapshot(name)).ok());
        snaps[name] = model;
      } else if (op == 5 && !snaps.empty()) {
        auto it = std::next(snaps.begin(), *rc::gen::inRange<size_t>(0, snaps.size()));
        RC_ASSERT(RunSim(env, vol->RestoreSnapshot(it->first)).ok());
        model = it->second;
      } else if (op == 6 && !snaps.empty()) {
        auto it = std::next(snaps.begin(), *rc::gen::inRange<size_t>(0, snaps.size()));
        RC_ASSERT(RunSim(env, vol->DeleteSnapshot(it->first)).ok());
        snaps.erase(it);
      } else if (op == 7) {
        RC_ASSERT(RunSim(env, vol->FlushMemtable()).ok());
        RC_ASSERT(RunSim(env, vol->CompactAll()).ok());
        env.AdvanceBy(2 * o.gc_grace_ms * kNanosPerMilli);
        RC_ASSERT(RunSim(env, vol->RunGc()).ok());
      } else if (op == 8) {  // clean reopen (flushes everything)
        RC_ASSERT(RunSim(env, vol->Close()).ok());
        vol = *RunSim(env, LsmVolume::Open(env, store, o));
      }
    }
    std::vector<uint8_t> got(o.size_bytes);
    RC_ASSERT(RunSim(env, vol->Read(0, got, nullptr)).ok());
    RC_ASSERT(got == model);
    for (const auto& [name, bytes] : snaps) {
      auto dev = vol->OpenSnapshot(name);
      RC_ASSERT(dev.ok());
      std::vector<uint8_t> s(o.size_bytes);
      RC_ASSERT(RunSim(env, (*dev)->Read(0, s, nullptr)).ok());
      RC_ASSERT(s == bytes);
    }
    RC_ASSERT(vol->ListSnapshots().size() == snaps.size());
    RC_ASSERT(RunSim(env, vol->Close()).ok());
  });
}

}  // namespace
}  // namespace portal::volume
