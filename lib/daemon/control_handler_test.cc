// The daemon's control handler on a real volume: snapshot names judged by the volume's
// rule, and the volume's snapshot records converted to the protocol's wire type.
#include "daemon/control_handler.h"

#include <catch2/catch.hpp>

#include "control/protocol.h"
#include "env/block_on.h"
#include "env/sim_env.h"
#include "objstore/memory_store.h"
#include "testing/read_device.h"
#include "testing/volume_options.h"

namespace portal::daemon {
namespace {

control::ErrorReply HandleError(SimEnv& env, ControlHandler& h, control::Op op,
                                std::string name) {
  control::Reply r = RunSim(env, h.Handle(control::Request{op, std::move(name), ""}));
  REQUIRE(std::holds_alternative<control::ErrorReply>(r));
  return std::get<control::ErrorReply>(r);
}

TEST_CASE("control requests with an invalid snapshot name are invalid_argument", "[control]") {
  // The volume is never consulted, so none is attached.
  SimEnv env;
  ControlHandler h;
  using control::Op;
  control::ErrorReply e = HandleError(env, h, Op::kSnapshotCreate, "");
  CHECK(e.code == "invalid_argument");
  CHECK(e.message == "snapshot name is empty");
  e = HandleError(env, h, Op::kSnapshotCreate, "a/b");
  CHECK(e.code == "invalid_argument");
  CHECK(e.message == "snapshot name 'a/b' contains '/', which is not allowed");
  e = HandleError(env, h, Op::kSnapshotGet, "portalbd@x");
  CHECK(e.message == "snapshot name 'portalbd@x' contains '@', which is not allowed");
  e = HandleError(env, h, Op::kSnapshotDelete, std::string(129, 'n'));
  CHECK(e.message == "snapshot name is 129 bytes long; the limit is 128");
  e = HandleError(env, h, Op::kSnapshotRestore, "a b");
  CHECK(e.message == "snapshot name 'a b' contains whitespace or a non-printable character");
}

TEST_CASE("control snapshot replies carry the volume's snapshot records", "[control]") {
  SimEnv env;
  objstore::MemoryStore store;
  VolumeSet set(env, store, testing::SmallVolumeOptions(1 << 20), 10'000);
  REQUIRE(RunSim(env, set.OpenDefault()).ok());
  std::optional<std::shared_ptr<volume::Volume>> v = set.Find("")->volume;
  std::vector<uint8_t> data(64 * 1024, 7);
  REQUIRE(RunSim(env, (*v)->Write(0, data, {})).ok());
  ControlHandler h;
  h.Attach(&set, [] { return control::DaemonStatus{}; });
  using control::Op;

  control::Reply created = RunSim(env, h.Handle(control::Request{Op::kSnapshotCreate, "s1", ""}));
  REQUIRE(std::holds_alternative<control::SnapshotReply>(created));
  auto info = (*v)->GetSnapshot("s1");
  REQUIRE(info.ok());
  const control::SnapshotEntry& e = std::get<control::SnapshotReply>(created).snapshot;
  CHECK(e.name == "s1");
  CHECK(e.id == info->id);
  CHECK(e.created_ns == info->created_ns);
  CHECK(e.size_bytes == (1u << 20));
  CHECK(e.pinned_bytes == info->data_bytes);
  CHECK(e.pinned_bytes > 0);
  CHECK(e.attached == info->attached);

  control::Reply got = RunSim(env, h.Handle(control::Request{Op::kSnapshotGet, "s1", ""}));
  REQUIRE(std::holds_alternative<control::SnapshotReply>(got));
  CHECK(std::get<control::SnapshotReply>(got).snapshot == e);
  control::Reply list = RunSim(env, h.Handle(control::Request{Op::kSnapshotList, "", ""}));
  REQUIRE(std::holds_alternative<control::SnapshotListReply>(list));
  CHECK(std::get<control::SnapshotListReply>(list).snapshots ==
        std::vector<control::SnapshotEntry>{e});
  // Encoded and decoded again, the entry is unchanged.
  auto back = control::DecodeReply(control::EncodeReply(got));
  REQUIRE(back.ok());
  CHECK(std::get<control::SnapshotReply>(*back).snapshot == e);

  control::ErrorReply missing = HandleError(env, h, Op::kSnapshotGet, "nope");
  CHECK(missing.code == "not_found");
  REQUIRE(RunSim(env, set.CloseAll(VolumeSet::kNoDeadline)).ok());
}

TEST_CASE("control volume.clone serves a clone, and its errors name the volume", "[control]") {
  SimEnv env;
  objstore::MemoryStore store;
  VolumeSet set(env, store, testing::SmallVolumeOptions(1 << 20), 10'000);
  ControlHandler h;
  h.Attach(&set, [] { return control::DaemonStatus{}; });
  using control::Op;
  auto request = [](Op op, std::string name, std::string source = "", std::string snapshot = "") {
    control::Request r{op, std::move(name), ""};
    r.source = std::move(source);
    r.snapshot = std::move(snapshot);
    return r;
  };
  REQUIRE(RunSim(env, set.Create("base", 2 << 20)).ok());
  std::vector<uint8_t> data(4096, 7);
  REQUIRE(RunSim(env, set.Find("base")->volume->Write(0, data, {.fua = true})).ok());
  control::Request snap{Op::kSnapshotCreate, "gold", ""};
  snap.volume = "base";
  REQUIRE(std::holds_alternative<control::SnapshotReply>(RunSim(env, h.Handle(snap))));

  control::Reply r = RunSim(env, h.Handle(request(Op::kVolumeClone, "kid", "base", "gold")));
  REQUIRE(std::holds_alternative<control::VolumeReply>(r));
  const control::VolumeEntry& e = std::get<control::VolumeReply>(r).volume;
  CHECK(e.name == "kid");
  CHECK(e.size_bytes == (2u << 20));
  CHECK(e.clone_of_volume == "base");
  CHECK(e.clone_of_snapshot == "gold");
  CHECK(set.Find("kid") != nullptr);

  auto error = [&](control::Request req) {
    control::Reply reply = RunSim(env, h.Handle(std::move(req)));
    REQUIRE(std::holds_alternative<control::ErrorReply>(reply));
    return std::get<control::ErrorReply>(reply);
  };
  control::ErrorReply taken = error(request(Op::kVolumeClone, "kid", "base", "gold"));
  CHECK(taken.code == "already_exists");
  CHECK(taken.message == "volume 'kid' already exists");
  control::ErrorReply no_source = error(request(Op::kVolumeClone, "x", "nope", "gold"));
  CHECK(no_source.code == "not_found");
  CHECK(no_source.message == "no volume named 'nope'");
  control::ErrorReply no_snap = error(request(Op::kVolumeClone, "x", "base", "silver"));
  CHECK(no_snap.code == "not_found");
  CHECK(no_snap.message == "volume 'base' has no snapshot named 'silver'");
  CHECK(error(request(Op::kVolumeClone, "X", "base", "gold")).code == "invalid_argument");
  CHECK(error(request(Op::kVolumeClone, "x", "base", "a/b")).code == "invalid_argument");

  // The library's refusal to delete a snapshot with clones reaches the client.
  control::Request del{Op::kSnapshotDelete, "gold", ""};
  del.volume = "base";
  control::ErrorReply busy = error(del);
  CHECK(busy.code == "busy");
  CHECK(busy.message.find("base") != std::string::npos);
  CHECK(busy.message.find("snapshot 'gold' has 1 clone(s): kid") != std::string::npos);
  // The parent goes while its clone lives; the clone reads on.
  REQUIRE(std::holds_alternative<control::OkReply>(
      RunSim(env, h.Handle(request(Op::kVolumeDelete, "base")))));
  CHECK(testing::ReadDevice(env, *set.Find("kid")->volume, 0, 4096) == data);
  REQUIRE(std::holds_alternative<control::OkReply>(
      RunSim(env, h.Handle(request(Op::kVolumeDelete, "kid")))));
  CHECK(RunSim(env, store.List("volumes/"))->empty());
  CHECK(RunSim(env, set.registry().ListNames())->empty());
  REQUIRE(RunSim(env, set.CloseAll(VolumeSet::kNoDeadline)).ok());
}

TEST_CASE("control volume.inspect reads a volume it does not serve, without opening it",
          "[control]") {
  SimEnv env;
  objstore::MemoryStore store;
  VolumeSet set(env, store, testing::SmallVolumeOptions(1 << 20), 10'000);
  ControlHandler h;
  h.Attach(&set, [] { return control::DaemonStatus{}; });
  using control::Op;
  auto handle = [&](control::Request r) { return RunSim(env, h.Handle(std::move(r))); };
  auto create = [](std::string name, uint32_t block_size) {
    control::Request r{Op::kVolumeCreate, std::move(name), ""};
    r.size_bytes = 2 << 20;
    r.block_size = block_size;
    return r;
  };
  REQUIRE(std::holds_alternative<control::VolumeReply>(handle(create("a", 8192))));
  control::Reply bad = handle(create("b", 1000));
  REQUIRE(std::holds_alternative<control::ErrorReply>(bad));
  CHECK(std::get<control::ErrorReply>(bad).code == "invalid_argument");
  REQUIRE(std::holds_alternative<control::VolumeReply>(handle(create("b", 0))));
  control::Request snap{Op::kSnapshotCreate, "s1", ""};
  snap.volume = "a";
  REQUIRE(std::holds_alternative<control::SnapshotReply>(handle(snap)));
  REQUIRE(RunSim(env, set.Resize("a", 4 << 20, false)).ok());
  const uint64_t epoch = set.Find("a")->volume->epoch();
  REQUIRE(RunSim(env, set.Release("a")).ok());

  auto inspect = [&](std::string name) {
    control::Request r{Op::kVolumeInspect, std::move(name), ""};
    return handle(r);
  };
  control::Reply one = inspect("a");
  REQUIRE(std::holds_alternative<control::VolumeListReply>(one));
  REQUIRE(std::get<control::VolumeListReply>(one).volumes.size() == 1);
  const control::VolumeEntry a = std::get<control::VolumeListReply>(one).volumes[0];
  CHECK(a.name == "a");
  CHECK(a.size_bytes == (4u << 20));  // the manifest's size, not the record's
  CHECK(a.block_size == 8192);
  CHECK(a.epoch == epoch);  // read, not opened: no new epoch
  REQUIRE(a.snapshot_list);
  REQUIRE(a.snapshot_list->size() == 1);
  CHECK((*a.snapshot_list)[0].name == "s1");
  CHECK((*a.snapshot_list)[0].size_bytes == (2u << 20));
  CHECK(set.Find("a") == nullptr);
  // Encoded and decoded again, the snapshot list survives.
  auto back = control::DecodeReply(control::EncodeReply(one));
  REQUIRE(back.ok());
  CHECK(std::get<control::VolumeListReply>(*back).volumes[0] == a);

  control::Reply all = inspect("");
  REQUIRE(std::holds_alternative<control::VolumeListReply>(all));
  const auto& volumes = std::get<control::VolumeListReply>(all).volumes;
  REQUIRE(volumes.size() == 2);
  CHECK(volumes[0] == a);
  CHECK(volumes[1].name == "b");  // served here: from the live volume
  CHECK(volumes[1].block_size == 4096);
  REQUIRE(volumes[1].snapshot_list);
  CHECK(volumes[1].snapshot_list->empty());

  control::Reply missing = inspect("nope");
  REQUIRE(std::holds_alternative<control::ErrorReply>(missing));
  CHECK(std::get<control::ErrorReply>(missing).code == "not_found");
  control::Reply invalid = inspect("Bad");
  REQUIRE(std::holds_alternative<control::ErrorReply>(invalid));
  CHECK(std::get<control::ErrorReply>(invalid).code == "invalid_argument");
  REQUIRE(RunSim(env, set.CloseAll(VolumeSet::kNoDeadline)).ok());
}

}  // namespace
}  // namespace portal::daemon
