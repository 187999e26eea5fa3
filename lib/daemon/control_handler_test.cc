// The daemon's control handler on a real volume: snapshot names judged by the volume's
// rule, and the volume's snapshot records converted to the protocol's wire type.
#include "daemon/control_handler.h"

#include <catch2/catch.hpp>

#include "control/protocol.h"
#include "env/block_on.h"
#include "env/sim_env.h"
#include "objstore/memory_store.h"
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

}  // namespace
}  // namespace portal::daemon
