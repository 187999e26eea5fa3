#include "volume/registry.h"

#include <catch2/catch.hpp>

#include "env/block_on.h"
#include "env/sim_env.h"
#include "objstore/memory_store.h"

namespace portal::volume {
namespace {

TEST_CASE("registry: volume names", "[volume][registry]") {
  for (const char* ok : {"a", "db", "pvc-0f1e2d3c-aaaa-bbbb-cccc-0123456789ab", "x.y_z-1", "9"}) {
    CHECK(ValidateVolumeName(ok).ok());
  }
  CHECK(ValidateVolumeName(std::string(63, 'a')).ok());
  for (const char* bad : {"", "-a", ".", "..", "_a", "A", "a/b", "a@b", "a b", "portalbd", "é"}) {
    Status st = ValidateVolumeName(bad);
    CHECK(st.code() == Status::Code::kInvalidArgument);
  }
  Status long_name = ValidateVolumeName(std::string(64, 'a'));
  CHECK(long_name.code() == Status::Code::kInvalidArgument);
  CHECK(long_name.message().find("limit is 63") != std::string::npos);
  CHECK(ValidateVolumeName("Db").message().find("'Db'") != std::string::npos);
  CHECK(VolumePrefix("db") == "volumes/db/");
  CHECK(RegistryKey("db") == "registry/db.json");
}

TEST_CASE("registry: records round-trip and damage is caught", "[volume][registry]") {
  VolumeRecord r{"db", 100ull << 30, 4096, 1765100000000000000, std::nullopt, false};
  CHECK(*DecodeVolumeRecord(EncodeVolumeRecord(r), "db") == r);
  r.clone_of = CloneSource{"base", "golden"};
  r.deleting = true;
  const std::string bytes = EncodeVolumeRecord(r);
  CHECK(*DecodeVolumeRecord(bytes, "db") == r);
  CHECK(DecodeVolumeRecord(bytes, "other").status().IsCorruption());  // a record moved
  std::string damaged = bytes;
  damaged.replace(damaged.find("golden"), 6, "silver");
  CHECK(DecodeVolumeRecord(damaged, "db").status().IsCorruption());
  CHECK(DecodeVolumeRecord("{", "db").status().IsCorruption());
  CHECK(DecodeVolumeRecord("[]", "db").status().IsCorruption());
}

TEST_CASE("registry: create once, get, list, update, remove", "[volume][registry]") {
  SimEnv env;
  objstore::MemoryStore store;
  Registry reg(env, store);
  VolumeRecord a{"a", 1ull << 30, 4096, 1, std::nullopt, false};
  VolumeRecord b{"b", 2ull << 30, 4096, 2, CloneSource{"a", "s1"}, false};
  REQUIRE(RunSim(env, reg.Create(a)).ok());
  REQUIRE(RunSim(env, reg.Create(b)).ok());
  CHECK(RunSim(env, reg.Create(a)).ok());  // the same bytes: our own lost acknowledgement
  VolumeRecord a2 = a;
  a2.size_bytes *= 2;
  Status dup = RunSim(env, reg.Create(a2));
  CHECK(dup.IsPreconditionFailed());
  CHECK(dup.message() == "volume 'a' already exists");
  CHECK(RunSim(env, reg.Create(VolumeRecord{"portalbd", 1, 4096, 0, std::nullopt, false})).code() ==
        Status::Code::kInvalidArgument);

  CHECK(*RunSim(env, reg.Get("b")) == b);
  Result<VolumeRecord> missing = RunSim(env, reg.Get("c"));
  CHECK(missing.status().IsNotFound());
  CHECK(missing.status().message() == "no volume named 'c'");

  // Foreign objects under registry/ and the volumes' own objects are not volumes.
  REQUIRE(RunSim(env, store.Put("registry/README", "x")).ok());
  REQUIRE(RunSim(env, store.Put("registry/Bad.json", "x")).ok());
  REQUIRE(RunSim(env, store.Put("volumes/a/manifest/00000001", "x")).ok());
  CHECK(*RunSim(env, reg.ListNames()) == std::vector<std::string>{"a", "b"});

  b.deleting = true;
  REQUIRE(RunSim(env, reg.Update(b)).ok());
  CHECK(RunSim(env, reg.Get("b"))->deleting);
  REQUIRE(RunSim(env, reg.Remove("b")).ok());
  CHECK(*RunSim(env, reg.ListNames()) == std::vector<std::string>{"a"});
}

}  // namespace
}  // namespace portal::volume
