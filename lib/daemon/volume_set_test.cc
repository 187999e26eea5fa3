// The daemon's volumes: named volumes beside the default one, each its own writer under
// volumes/<name>/, exported by name through the catalog; release, delete and resize
// refused while clients are attached.
#include "daemon/volume_set.h"

#include <catch2/catch.hpp>

#include "daemon/catalog.h"
#include "env/block_on.h"
#include "env/sim_env.h"
#include "objstore/memory_store.h"
#include "testing/read_device.h"
#include "testing/volume_options.h"

namespace portal::daemon {
namespace {

std::vector<std::string> Names(const std::vector<nbd::ExportInfo>& infos) {
  std::vector<std::string> out;
  for (const auto& i : infos) out.push_back(i.name);
  return out;
}

TEST_CASE("volume set: the default volume stays at the root, named ones under volumes/",
          "[daemon][volumes]") {
  SimEnv env;
  objstore::MemoryStore store;
  std::vector<uint8_t> a(4096, 0xa), b(4096, 0xb), d(4096, 0xd);
  {
    VolumeSet set(env, store, testing::SmallVolumeOptions(1 << 20), 10'000);
    REQUIRE(RunSim(env, set.OpenDefault()).ok());
    REQUIRE(RunSim(env, set.Create("a", 2 << 20)).ok());
    REQUIRE(RunSim(env, set.Create("b", 4 << 20)).ok());
    auto dup = RunSim(env, set.Create("a", 2 << 20));
    CHECK(dup.status().message() == "volume 'a' already exists");
    CHECK(RunSim(env, set.Create("Bad", 1 << 20)).status().code() ==
          Status::Code::kInvalidArgument);
    CHECK(RunSim(env, set.Create("c", 1000)).status().code() == Status::Code::kInvalidArgument);
    REQUIRE(RunSim(env, set.Find("")->volume->Write(0, d, {.fua = true})).ok());
    REQUIRE(RunSim(env, set.Find("a")->volume->Write(0, a, {.fua = true})).ok());
    REQUIRE(RunSim(env, set.Find("b")->volume->Write(0, b, {.fua = true})).ok());
    CHECK(set.Find("a")->volume->size_bytes() == (2u << 20));

    VolumeCatalog catalog(set);
    CHECK(Names(catalog.List()) == std::vector<std::string>{"a", "b", "portalbd"});
    CHECK(catalog.Lookup("")->name == "portalbd");
    CHECK(catalog.Lookup("b")->size_bytes == (4u << 20));
    CHECK(catalog.Lookup("c").status().IsNotFound());
    REQUIRE(RunSim(env, set.CloseAll(VolumeSet::kNoDeadline)).ok());
  }
  // The default volume's objects are where a single-volume portalbd put them.
  CHECK_FALSE(RunSim(env, store.List("manifest/"))->empty());
  CHECK_FALSE(RunSim(env, store.List("volumes/a/manifest/"))->empty());
  CHECK_FALSE(RunSim(env, store.List("volumes/b/seg/"))->empty());
  CHECK(RunSim(env, store.List("registry/"))->size() == 2);

  // Reopened by name: each its own data.
  VolumeSet set(env, store, testing::SmallVolumeOptions(0), 10'000);
  REQUIRE(RunSim(env, set.Open("b")).ok());
  REQUIRE(RunSim(env, set.Open("a")).ok());
  REQUIRE(RunSim(env, set.Open("portalbd")).ok());
  CHECK(RunSim(env, set.Open("zz")).IsNotFound());
  CHECK(testing::ReadDevice(env, *set.Find("a")->volume, 0, 4096) == a);
  CHECK(testing::ReadDevice(env, *set.Find("b")->volume, 0, 4096) == b);
  CHECK(testing::ReadDevice(env, *set.Find("")->volume, 0, 4096) == d);
  CHECK(set.Find("b")->volume->size_bytes() == (4u << 20));
  REQUIRE(RunSim(env, set.CloseAll(VolumeSet::kNoDeadline)).ok());
}

TEST_CASE("volume set: attached clients block release, delete and shrink", "[daemon][volumes]") {
  SimEnv env;
  objstore::MemoryStore store;
  VolumeSet set(env, store, testing::SmallVolumeOptions(1 << 20), 10'000);
  REQUIRE(RunSim(env, set.Create("a", 2 << 20)).ok());
  REQUIRE(RunSim(env, set.Create("b", 2 << 20)).ok());
  VolumeCatalog catalog(set);
  auto conn = catalog.Open("a");
  REQUIRE(conn.ok());
  CHECK(set.Find("a")->attached == 1);
  Status busy = RunSim(env, set.Release("a"));
  CHECK(busy.code() == Status::Code::kBusy);
  CHECK(busy.message() == "volume 'a' has 1 client attached");
  CHECK(RunSim(env, set.Delete("a")).code() == Status::Code::kBusy);
  CHECK(RunSim(env, set.Resize("a", 1 << 20, true)).code() == Status::Code::kBusy);
  // Growing is online; shrinking needs asking.
  REQUIRE(RunSim(env, set.Resize("a", 8 << 20, false)).ok());
  CHECK(catalog.Lookup("a")->size_bytes == (8u << 20));
  CHECK((*conn)->info.size_bytes == (2u << 20));  // a connected client keeps its size
  CHECK(RunSim(env, set.Resize("a", 4 << 20, false)).code() == Status::Code::kInvalidArgument);

  conn->reset();
  CHECK(set.Find("a")->attached == 0);
  REQUIRE(RunSim(env, set.Resize("a", 4 << 20, true)).ok());
  CHECK(set.Find("a")->volume->size_bytes() == (4u << 20));
  // Releasing one leaves the other serving; it can be opened again.
  REQUIRE(RunSim(env, set.Release("a")).ok());
  CHECK(set.Find("a") == nullptr);
  CHECK(Names(catalog.List()) == std::vector<std::string>{"b"});
  CHECK(catalog.Lookup("").value().name == "b");  // the only volume
  REQUIRE(RunSim(env, set.Open("a")).ok());
  CHECK(set.Find("a")->volume->size_bytes() == (4u << 20));

  // Delete: objects, then the record; the default volume cannot be deleted.
  CHECK(RunSim(env, set.Delete("portalbd")).code() == Status::Code::kInvalidArgument);
  REQUIRE(RunSim(env, set.Delete("a")).ok());
  CHECK(set.Find("a") == nullptr);
  CHECK(RunSim(env, store.List("volumes/a/"))->empty());
  CHECK(*RunSim(env, set.registry().ListNames()) == std::vector<std::string>{"b"});
  CHECK(RunSim(env, set.Delete("a")).IsNotFound());
  // The name is free again.
  REQUIRE(RunSim(env, set.Create("a", 1 << 20)).ok());
  REQUIRE(RunSim(env, set.CloseAll(VolumeSet::kNoDeadline)).ok());
}

TEST_CASE("volume set: a second set opening a volume fences the first for it only",
          "[daemon][volumes]") {
  SimEnv env;
  objstore::MemoryStore store;
  VolumeSet first(env, store, testing::SmallVolumeOptions(1 << 20), 10'000);
  REQUIRE(RunSim(env, first.Create("a", 1 << 20)).ok());
  REQUIRE(RunSim(env, first.Create("b", 1 << 20)).ok());
  VolumeSet second(env, store, testing::SmallVolumeOptions(1 << 20), 10'000);
  REQUIRE(RunSim(env, second.Open("b")).ok());
  std::vector<uint8_t> data(4096, 1);
  CHECK_FALSE(RunSim(env, first.Find("b")->volume->Write(0, data, {.fua = true})).ok());
  CHECK(first.Find("b")->volume->fenced());
  REQUIRE(RunSim(env, first.Find("a")->volume->Write(0, data, {.fua = true})).ok());
  REQUIRE(RunSim(env, second.Find("b")->volume->Write(0, data, {.fua = true})).ok());
  CHECK_FALSE(first.Find("a")->volume->fenced());
  (void)RunSim(env, first.CloseAll(VolumeSet::kNoDeadline));
  REQUIRE(RunSim(env, second.CloseAll(VolumeSet::kNoDeadline)).ok());
}

TEST_CASE("volume set: a clone reads its snapshot, outlives a deleted parent, and releases it",
          "[daemon][volumes][clone]") {
  SimEnv env;
  objstore::MemoryStore store;
  std::vector<uint8_t> a(4096, 0xa), b(4096, 0xb), c(4096, 0xc);
  {
    VolumeSet set(env, store, testing::SmallVolumeOptions(1 << 20), 10'000);
    REQUIRE(RunSim(env, set.Create("base", 2 << 20)).ok());
    REQUIRE(RunSim(env, set.Find("base")->volume->Write(0, a, {.fua = true})).ok());
    REQUIRE(RunSim(env, set.Find("base")->volume->CreateSnapshot("gold")).ok());
    REQUIRE(RunSim(env, set.Find("base")->volume->Write(0, b, {.fua = true})).ok());

    // Errors name what is missing or taken.
    auto missing = RunSim(env, set.Clone("nope", "gold", "x"));
    CHECK(missing.status().IsNotFound());
    CHECK(missing.status().message().find("'nope'") != std::string::npos);
    auto no_snap = RunSim(env, set.Clone("base", "silver", "x"));
    CHECK(no_snap.status().IsNotFound());
    CHECK(no_snap.status().message() == "volume 'base' has no snapshot named 'silver'");
    CHECK(RunSim(env, set.registry().Get("x")).status().IsNotFound());  // nothing left behind
    CHECK(RunSim(env, store.List("volumes/x/"))->empty());
    auto taken = RunSim(env, set.Clone("base", "gold", "base"));
    CHECK(taken.status().message() == "volume 'base' already exists");

    // A source this set does not serve: the library finds it through the resolver.
    REQUIRE(RunSim(env, set.Release("base")).ok());
    auto unserved = RunSim(env, set.Clone("base", "silver", "x"));
    CHECK(unserved.status().IsNotFound());
    CHECK(unserved.status().message() == "volume 'base' has no snapshot named 'silver'");
    CHECK(RunSim(env, set.registry().Get("x")).status().IsNotFound());
    CHECK(RunSim(env, store.List("volumes/x/"))->empty());
    REQUIRE(RunSim(env, set.Clone("base", "gold", "early")).ok());
    CHECK(testing::ReadDevice(env, *set.Find("early")->volume, 0, 4096) == a);
    CHECK(RunSim(env, set.registry().Get("early"))->size_bytes == (2u << 20));
    REQUIRE(RunSim(env, set.Delete("early")).ok());
    REQUIRE(RunSim(env, set.Open("base")).ok());

    auto clone = RunSim(env, set.Clone("base", "gold", "child"));
    REQUIRE(clone.ok());
    CHECK((*clone)->record->clone_of == volume::CloneSource{"base", "gold"});
    CHECK((*clone)->volume->size_bytes() == (2u << 20));
    CHECK(testing::ReadDevice(env, *set.Find("child")->volume, 0, 4096) == a);
    REQUIRE(RunSim(env, set.Find("child")->volume->Write(4096, c, {.fua = true})).ok());
    CHECK(testing::ReadDevice(env, *set.Find("base")->volume, 4096, 4096) ==
          std::vector<uint8_t>(4096, 0));
    // A clone of the clone of the default volume's snapshot: chains resolve by name.
    REQUIRE(RunSim(env, set.OpenDefault()).ok());
    REQUIRE(RunSim(env, set.Find("")->volume->Write(0, c, {.fua = true})).ok());
    REQUIRE(RunSim(env, set.Find("")->volume->CreateSnapshot("d1")).ok());
    REQUIRE(RunSim(env, set.Clone("portalbd", "d1", "fromdefault")).ok());
    CHECK(testing::ReadDevice(env, *set.Find("fromdefault")->volume, 0, 4096) == c);

    // The snapshot the clone reads cannot go; the parent can, keeping what the clone reads.
    Status snap_delete = RunSim(env, set.Find("base")->volume->DeleteSnapshot("gold"));
    CHECK(snap_delete.code() == Status::Code::kBusy);
    CHECK(snap_delete.message().find("child") != std::string::npos);
    REQUIRE(RunSim(env, set.Delete("base")).ok());
    CHECK(set.Find("base") == nullptr);
    CHECK(RunSim(env, set.registry().Get("base"))->deleting);  // still resolvable
    CHECK(RunSim(env, set.Create("base", 1 << 20)).status().message() ==
          "volume 'base' already exists");
    CHECK(testing::ReadDevice(env, *set.Find("child")->volume, 0, 4096) == a);
    REQUIRE(RunSim(env, set.CloseAll(VolumeSet::kNoDeadline)).ok());
  }
  // After a restart the clone still reads its deleted parent's snapshot.
  VolumeSet set(env, store, testing::SmallVolumeOptions(0), 10'000);
  CHECK(RunSim(env, set.Open("base")).code() == Status::Code::kBusy);
  REQUIRE(RunSim(env, set.Open("child")).ok());
  CHECK(testing::ReadDevice(env, *set.Find("child")->volume, 0, 4096) == a);
  CHECK(testing::ReadDevice(env, *set.Find("child")->volume, 4096, 4096) == c);
  // Deleting the last clone releases the deleted parent: both go, records too.
  REQUIRE(RunSim(env, set.Delete("child")).ok());
  CHECK(RunSim(env, store.List("volumes/child/"))->empty());
  CHECK(RunSim(env, store.List("volumes/base/"))->empty());
  CHECK(*RunSim(env, set.registry().ListNames()) == std::vector<std::string>{"fromdefault"});
  REQUIRE(RunSim(env, set.CloseAll(VolumeSet::kNoDeadline)).ok());
}

}  // namespace
}  // namespace portal::daemon
