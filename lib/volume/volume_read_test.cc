#include "volume/lsm_volume.h"

#include <catch2/catch.hpp>

#include <algorithm>

#include "env/block_on.h"
#include "env/sim_env.h"
#include "objstore/fault_store.h"
#include "objstore/memory_store.h"
#include "objstore/retrying_store.h"
#include "testing/body_damage.h"
#include "testing/borrowed_store.h"
#include "testing/volume_options.h"

// The volume's reads against a store whose GET bodies arrive damaged (issue 13, finding 6).
namespace portal::volume {
namespace {

std::vector<uint8_t> Pattern(size_t n, uint8_t seed) {
  std::vector<uint8_t> d(n);
  for (size_t i = 0; i < n; ++i) d[i] = static_cast<uint8_t>(seed * 29 + i * 11 + (i >> 12) + 1);
  return d;
}

struct Fixture {
  Fixture() {
    // 32 KiB: one segment; a snapshot and a memtable flush: a snap/ object and a map SST.
    auto v = Open();
    REQUIRE(RunSim(env, v->Write(kOffset, data, {})).ok());
    REQUIRE(RunSim(env, v->CreateSnapshot("s")).ok());
    REQUIRE(RunSim(env, v->FlushMemtable()).ok());
    REQUIRE(RunSim(env, v->Close()).ok());
  }
  std::shared_ptr<LsmVolume> Open() {
    auto v = RunSim(env, LsmVolume::Open(env, faulty, testing::SmallVolumeOptions(2 << 20)));
    if (!v.ok()) FAIL("open failed: " << v.status().ToString());
    return *v;
  }
  Status Read(LsmVolume& v, std::vector<uint8_t>* out) {
    out->assign(data.size(), 0);
    return RunSim(env, v.Read(kOffset, *out, nullptr));
  }

  static constexpr uint64_t kOffset = 5 * 4096;
  SimEnv env;
  objstore::MemoryStore memory;
  testing::BodyDamage damage;  // prefix "": every object
  objstore::FaultStore faulty{std::make_unique<testing::BorrowedStore>(memory), env,
                              damage.Options()};
  std::vector<uint8_t> data = Pattern(32 * 1024, 7);
};

TEST_CASE("a volume opens and reads correctly when every object's first GET is damaged",
          "[volume][refetch]") {
  Fixture f;
  f.damage.armed = true;
  auto v = f.Open();  // manifest, snapshot object, map SST, segment footers
  std::vector<uint8_t> out;
  REQUIRE(f.Read(*v, &out).ok());
  CHECK(out == f.data);
  for (const char* prefix : {"manifest/", "snap/", "map/", "seg/"}) {
    INFO(prefix);
    CHECK(std::any_of(f.damage.gets.begin(), f.damage.gets.end(),
                      [&](const auto& g) { return g.first.starts_with(prefix); }));
  }
  // Every object read was damaged once and fetched once more (clone.json, absent from a
  // volume that is not a clone, was only asked for).
  CHECK(v->stats().corrupt_refetches == f.damage.gets.size() - f.damage.gets.count("clone.json"));
  REQUIRE(RunSim(f.env, v->Close()).ok());
}

TEST_CASE("a read whose segment stays damaged fails with Corruption after 3 GETs",
          "[volume][refetch]") {
  Fixture f;
  auto v = f.Open();
  REQUIRE(RunSim(f.env, v->RunGc()).ok());  // GC's one look at old fence segments, done
  f.damage.prefix = "seg/";
  f.damage.always = true;
  f.damage.armed = true;
  std::vector<uint8_t> out;
  Status st = f.Read(*v, &out);
  CHECK(st.IsCorruption());  // EIO at the NBD level
  CHECK(st.message().find("segment seg/") != std::string::npos);
  CHECK(st.message().find("failed verification 3 times") != std::string::npos);
  CHECK(f.damage.gets.size() == 1);
  CHECK(f.damage.total_gets() == objstore::kVerifiedReadAttempts);
  CHECK(v->stats().corrupt_refetches == objstore::kVerifiedReadAttempts - 1);
  // The damage stops: nothing that failed was cached, the read succeeds.
  f.damage.armed = false;
  REQUIRE(f.Read(*v, &out).ok());
  CHECK(out == f.data);
  REQUIRE(RunSim(f.env, v->Close()).ok());
}

}  // namespace
}  // namespace portal::volume
