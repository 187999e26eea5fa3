// Owner records: where a volume's writer is, written at open and removed at release only
// by the daemon they name.
#include "daemon/owner_record.h"

#include <catch2/catch.hpp>

#include "daemon/control_handler.h"
#include "daemon/volume_set.h"
#include "env/block_on.h"
#include "env/sim_env.h"
#include "objstore/memory_store.h"
#include "testing/volume_options.h"

namespace portal::daemon {
namespace {

std::optional<OwnerRecord> Owner(SimEnv& env, objstore::ObjectStore& store,
                                 const std::string& volume) {
  auto r = RunSim(env, FindOwner(store, volume));
  REQUIRE(r.ok());
  return *r;
}

TEST_CASE("owner records encode and decode, and damage is corruption", "[daemon][owner]") {
  OwnerRecord r{"db", 7, "node-a", "10.0.0.5:7070", "2026-12-07T15:00:00.000000Z"};
  CHECK(EncodeOwnerRecord(r) ==
        R"({"volume":"db","epoch":7,"node":"node-a","control":"10.0.0.5:7070",)"
        R"("since":"2026-12-07T15:00:00.000000Z"})"
        "\n");
  auto back = DecodeOwnerRecord(EncodeOwnerRecord(r));
  REQUIRE(back.ok());
  CHECK(*back == r);
  CHECK(OwnerKey("db") == "owners/db.json");
  CHECK(DecodeOwnerRecord("[]").status().IsCorruption());
  CHECK(DecodeOwnerRecord(R"({"volume":"db","epoch":-1,"node":"n","control":"c","since":"s"})")
            .status()
            .IsCorruption());
  CHECK(DecodeOwnerRecord(R"({"volume":"db","epoch":1,"node":"n","since":"s"})")
            .status()
            .IsCorruption());
}

TEST_CASE("owner records: a newer epoch is never replaced, only the owner withdraws",
          "[daemon][owner]") {
  SimEnv env;
  objstore::MemoryStore store;
  OwnerRecords a(env, store, "node-a", "10.0.0.1:7070");
  OwnerRecords b(env, store, "node-b", "10.0.0.2:7070");
  CHECK_FALSE(Owner(env, store, "db").has_value());

  REQUIRE(RunSim(env, a.Publish("db", 3)).ok());
  CHECK(Owner(env, store, "db")->control == "10.0.0.1:7070");
  REQUIRE(RunSim(env, b.Publish("db", 4)).ok());  // b took it over
  // a's late publish (it lost the race) and its release leave b's record.
  REQUIRE(RunSim(env, a.Publish("db", 3)).ok());
  REQUIRE(RunSim(env, a.Withdraw("db", 3)).ok());
  auto owner = Owner(env, store, "db");
  REQUIRE(owner.has_value());
  CHECK(owner->epoch == 4);
  CHECK(owner->node == "node-b");
  REQUIRE(RunSim(env, b.Withdraw("db", 4)).ok());
  CHECK_FALSE(Owner(env, store, "db").has_value());

  // A record for another name under this key is damage, not an owner.
  REQUIRE(RunSim(env, store.Put("owners/x.json", EncodeOwnerRecord({"y", 1, "n", "c", "s"}))).ok());
  CHECK(RunSim(env, FindOwner(store, "x")).status().IsCorruption());
}

TEST_CASE(
    "volume set: open writes the owner record, release removes it, a takeover "
    "replaces it",
    "[daemon][owner]") {
  SimEnv env;
  objstore::MemoryStore store;
  OwnerRecords ra(env, store, "node-a", "10.0.0.1:7070");
  OwnerRecords rb(env, store, "node-b", "10.0.0.2:7070");
  VolumeSet a(env, store, testing::SmallVolumeOptions(1 << 20), 10'000);
  a.set_owner_records(&ra);
  REQUIRE(RunSim(env, a.OpenDefault()).ok());
  REQUIRE(RunSim(env, a.Create("db", 2 << 20)).ok());
  auto owner = Owner(env, store, "db");
  REQUIRE(owner.has_value());
  CHECK(owner->epoch == a.Find("db")->volume->epoch());
  CHECK(owner->node == "node-a");
  CHECK(Owner(env, store, "portalbd")->epoch == a.Find("")->volume->epoch());

  // A second daemon takes db over: its record, with its higher epoch.
  VolumeSet b(env, store, testing::SmallVolumeOptions(0), 10'000);
  b.set_owner_records(&rb);
  REQUIRE(RunSim(env, b.Open("db")).ok());
  const uint64_t b_epoch = b.Find("db")->volume->epoch();
  CHECK(b_epoch > owner->epoch);
  CHECK(Owner(env, store, "db")->node == "node-b");

  // The fenced daemon answers not_owner once it knows; its release leaves b's record.
  std::vector<uint8_t> block(4096, 1);
  (void)RunSim(env, a.Find("db")->volume->Write(0, block, {.fua = true}));
  ControlHandler h;
  h.Attach(&a, [] { return control::DaemonStatus{}; });
  auto snapshot_of = [&](std::string volume) {
    control::Request r;
    r.op = control::Op::kSnapshotCreate;
    r.name = "s1";
    r.volume = std::move(volume);
    control::Reply reply = RunSim(env, h.Handle(std::move(r)));
    REQUIRE(std::holds_alternative<control::ErrorReply>(reply));
    return std::get<control::ErrorReply>(reply);
  };
  CHECK(snapshot_of("db").code == control::kNotOwner);
  CHECK_THAT(snapshot_of("db").message, Catch::Contains("fenced"));
  CHECK(snapshot_of("nope").code == control::kNotOwner);

  REQUIRE(RunSim(env, a.Release("db")).ok());
  CHECK(Owner(env, store, "db")->epoch == b_epoch);
  REQUIRE(RunSim(env, b.Release("db")).ok());
  CHECK_FALSE(Owner(env, store, "db").has_value());

  // A delete removes the record, whoever wrote it.
  REQUIRE(RunSim(env, b.Open("db")).ok());
  REQUIRE(RunSim(env, b.Delete("db")).ok());
  CHECK_FALSE(Owner(env, store, "db").has_value());
  REQUIRE(RunSim(env, a.CloseAll(VolumeSet::kNoDeadline)).ok());
  CHECK_FALSE(Owner(env, store, "portalbd").has_value());
  REQUIRE(RunSim(env, b.CloseAll(VolumeSet::kNoDeadline)).ok());
}

}  // namespace
}  // namespace portal::daemon
