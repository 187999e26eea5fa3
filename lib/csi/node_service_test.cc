// The Node service against a scripted daemon and host: argument checks, the commands it
// runs (exact argv), and idempotency (a repeated call changes nothing and succeeds).
#include "csi/node_service.h"

#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <filesystem>

#include "csi/node_fakes_test.h"
#include "testing/testing.h"

namespace portal::csi {
namespace {

namespace v1 = ::csi::v1;
using grpc::StatusCode;
using testing::FakeDaemon;
using testing::FakeHost;
using Strings = std::vector<std::string>;

v1::VolumeCapability MountCap(std::string fs = "", std::vector<std::string> flags = {},
                              v1::VolumeCapability::AccessMode::Mode mode =
                                  v1::VolumeCapability::AccessMode::SINGLE_NODE_WRITER) {
  v1::VolumeCapability cap;
  cap.mutable_mount()->set_fs_type(fs);
  for (auto& f : flags) cap.mutable_mount()->add_mount_flags(f);
  cap.mutable_access_mode()->set_mode(mode);
  return cap;
}

v1::VolumeCapability BlockCap() {
  v1::VolumeCapability cap;
  cap.mutable_block();
  cap.mutable_access_mode()->set_mode(v1::VolumeCapability::AccessMode::SINGLE_NODE_WRITER);
  return cap;
}

struct Fixture {
  portal::testing::TempDir dir;
  FakeDaemon daemon;
  FakeHost host;
  NodeService node{&daemon, &host, "node-1"};
  std::string staging = dir.Join("staging");
  std::string target = dir.Join("pods/target");

  Fixture() {
    daemon.volumes = {"vol-a", "vol-b"};
    std::filesystem::create_directories(staging);
    std::filesystem::create_directories(dir.Join("pods"));
  }

  grpc::Status Stage(const std::string& volume, const v1::VolumeCapability& cap,
                     const std::string& path) {
    v1::NodeStageVolumeRequest req;
    req.set_volume_id(volume);
    req.set_staging_target_path(path);
    *req.mutable_volume_capability() = cap;
    v1::NodeStageVolumeResponse resp;
    return node.NodeStageVolume(nullptr, &req, &resp);
  }
  grpc::Status Stage(const std::string& volume, const v1::VolumeCapability& cap) {
    return Stage(volume, cap, staging);
  }
  grpc::Status Unstage(const std::string& volume) {
    v1::NodeUnstageVolumeRequest req;
    req.set_volume_id(volume);
    req.set_staging_target_path(staging);
    v1::NodeUnstageVolumeResponse resp;
    return node.NodeUnstageVolume(nullptr, &req, &resp);
  }
  grpc::Status Publish(const std::string& volume, const v1::VolumeCapability& cap,
                       bool readonly = false) {
    v1::NodePublishVolumeRequest req;
    req.set_volume_id(volume);
    req.set_staging_target_path(staging);
    req.set_target_path(target);
    req.set_readonly(readonly);
    *req.mutable_volume_capability() = cap;
    v1::NodePublishVolumeResponse resp;
    return node.NodePublishVolume(nullptr, &req, &resp);
  }
  grpc::Status Unpublish(const std::string& volume) {
    v1::NodeUnpublishVolumeRequest req;
    req.set_volume_id(volume);
    req.set_target_path(target);
    v1::NodeUnpublishVolumeResponse resp;
    return node.NodeUnpublishVolume(nullptr, &req, &resp);
  }
  grpc::Status Stats(const std::string& volume, const std::string& path,
                     v1::NodeGetVolumeStatsResponse* resp) {
    v1::NodeGetVolumeStatsRequest req;
    req.set_volume_id(volume);
    req.set_volume_path(path);
    return node.NodeGetVolumeStats(nullptr, &req, resp);
  }
  grpc::Status Expand(const std::string& volume, const std::string& path, int64_t required,
                      v1::NodeExpandVolumeResponse* resp) {
    v1::NodeExpandVolumeRequest req;
    req.set_volume_id(volume);
    req.set_volume_path(path);
    req.mutable_capacity_range()->set_required_bytes(required);
    return node.NodeExpandVolume(nullptr, &req, resp);
  }
};

TEST_CASE("csi node: missing and bad fields are INVALID_ARGUMENT before anything runs", "[csi]") {
  Fixture f;
  CHECK(f.Stage("", MountCap()).error_code() == StatusCode::INVALID_ARGUMENT);
  CHECK(f.Stage("vol-a", MountCap(), "").error_code() == StatusCode::INVALID_ARGUMENT);
  CHECK(f.Stage("vol-a", MountCap(), "relative/dir").error_code() == StatusCode::INVALID_ARGUMENT);
  v1::NodeStageVolumeRequest no_cap;
  no_cap.set_volume_id("vol-a");
  no_cap.set_staging_target_path(f.staging);
  v1::NodeStageVolumeResponse stage_resp;
  CHECK(f.node.NodeStageVolume(nullptr, &no_cap, &stage_resp).error_code() ==
        StatusCode::INVALID_ARGUMENT);
  // Ids that would name a path, or the default volume, never reach the daemon.
  for (const char* id : {"..", "../etc", "a/b", "/abs", "UPPER", "portalbd", "a b", "-x"}) {
    CAPTURE(id);
    CHECK(f.Stage(id, MountCap()).error_code() == StatusCode::INVALID_ARGUMENT);
    CHECK(f.Unstage(id).error_code() == StatusCode::INVALID_ARGUMENT);
    CHECK(f.Publish(id, MountCap()).error_code() == StatusCode::INVALID_ARGUMENT);
    CHECK(f.Unpublish(id).error_code() == StatusCode::INVALID_ARGUMENT);
  }
  // Several nodes cannot share a portalbd volume; no access mode is no request.
  CHECK(
      f.Stage("vol-a", MountCap("", {}, v1::VolumeCapability::AccessMode::MULTI_NODE_MULTI_WRITER))
          .error_code() == StatusCode::INVALID_ARGUMENT);
  CHECK(
      f.Stage("vol-a", MountCap("", {}, v1::VolumeCapability::AccessMode::UNKNOWN)).error_code() ==
      StatusCode::INVALID_ARGUMENT);
  // A filesystem this node cannot make, or a name that is no program name.
  CHECK(f.Stage("vol-a", MountCap("zfs")).error_code() == StatusCode::INVALID_ARGUMENT);
  CHECK(f.Stage("vol-a", MountCap("../../bin/sh")).error_code() == StatusCode::INVALID_ARGUMENT);

  v1::NodePublishVolumeRequest pub;  // sanity: no id; no target; no capability
  v1::NodePublishVolumeResponse pub_resp;
  CHECK(f.node.NodePublishVolume(nullptr, &pub, &pub_resp).error_code() ==
        StatusCode::INVALID_ARGUMENT);
  pub.set_volume_id("vol-a");
  CHECK(f.node.NodePublishVolume(nullptr, &pub, &pub_resp).error_code() ==
        StatusCode::INVALID_ARGUMENT);
  pub.set_target_path(f.target);
  CHECK(f.node.NodePublishVolume(nullptr, &pub, &pub_resp).error_code() ==
        StatusCode::INVALID_ARGUMENT);
  *pub.mutable_volume_capability() = MountCap();  // no staging path: the driver stages
  CHECK(f.node.NodePublishVolume(nullptr, &pub, &pub_resp).error_code() ==
        StatusCode::INVALID_ARGUMENT);

  v1::NodeUnstageVolumeRequest unstage;
  v1::NodeUnstageVolumeResponse unstage_resp;
  unstage.set_staging_target_path(f.staging);
  CHECK(f.node.NodeUnstageVolume(nullptr, &unstage, &unstage_resp).error_code() ==
        StatusCode::INVALID_ARGUMENT);
  unstage.set_volume_id("vol-a");
  unstage.clear_staging_target_path();
  CHECK(f.node.NodeUnstageVolume(nullptr, &unstage, &unstage_resp).error_code() ==
        StatusCode::INVALID_ARGUMENT);

  v1::NodeGetVolumeStatsResponse stats;
  CHECK(f.Stats("", "some/path", &stats).error_code() == StatusCode::INVALID_ARGUMENT);
  CHECK(f.Stats("vol-a", "", &stats).error_code() == StatusCode::INVALID_ARGUMENT);
  v1::NodeExpandVolumeResponse expand;
  CHECK(f.Expand("", f.target, 0, &expand).error_code() == StatusCode::INVALID_ARGUMENT);
  CHECK(f.Expand("vol-a", "", 0, &expand).error_code() == StatusCode::INVALID_ARGUMENT);

  CHECK(f.host.commands.empty());
  CHECK(f.daemon.calls.empty());
}

TEST_CASE("csi node: staging a blank mount volume formats it once and mounts it, a repeat is OK",
          "[csi]") {
  Fixture f;
  REQUIRE(f.Stage("vol-a", MountCap("", {"noatime", "discard"})).ok());
  CHECK(f.daemon.calls == Strings{"open vol-a", "attach vol-a"});
  CHECK(f.host.TakeCommands() ==
        Strings{"blkid -p -o export /dev/nbd0", "mkfs.ext4 -F /dev/nbd0",
                "mount -t ext4 -o noatime,discard /dev/nbd0 " + f.staging});
  // Staged already with this volume: nothing runs, nothing is formatted again.
  REQUIRE(f.Stage("vol-a", MountCap("", {"noatime", "discard"})).ok());
  CHECK(f.host.TakeCommands().empty());
  CHECK(f.daemon.calls == Strings{"open vol-a", "attach vol-a"});
  // The staging path holds vol-a: another volume there is ALREADY_EXISTS.
  CHECK(f.Stage("vol-b", MountCap()).error_code() == StatusCode::ALREADY_EXISTS);
}

TEST_CASE("csi node: a volume that holds anything is never formatted", "[csi]") {
  Fixture f;
  SECTION("the requested filesystem: mounted as it is") {
    f.host.fs_on["/dev/nbd0"] = "ext4";
    REQUIRE(f.Stage("vol-a", MountCap("ext4")).ok());
    CHECK(f.host.TakeCommands() ==
          Strings{"blkid -p -o export /dev/nbd0", "mount -t ext4 /dev/nbd0 " + f.staging});
  }
  SECTION("another filesystem: FAILED_PRECONDITION") {
    f.host.fs_on["/dev/nbd0"] = "xfs";
    CHECK(f.Stage("vol-a", MountCap("ext4")).error_code() == StatusCode::FAILED_PRECONDITION);
    CHECK(f.host.TakeCommands() == Strings{"blkid -p -o export /dev/nbd0"});
  }
  SECTION("raw data blkid does not know (a block volume's): FAILED_PRECONDITION") {
    f.host.heads["/dev/nbd0"] = std::string(4096, '\0') + "database page";
    CHECK(f.Stage("vol-a", MountCap("ext4")).error_code() == StatusCode::FAILED_PRECONDITION);
    CHECK(f.host.TakeCommands() == Strings{"blkid -p -o export /dev/nbd0"});
  }
  SECTION("a blank volume staged read-only: nothing to mount, not formatted") {
    CHECK(f.Stage("vol-a",
                  MountCap("", {}, v1::VolumeCapability::AccessMode::SINGLE_NODE_READER_ONLY))
              .error_code() == StatusCode::FAILED_PRECONDITION);
    CHECK(f.host.TakeCommands() == Strings{"blkid -p -o export /dev/nbd0"});
  }
}

TEST_CASE("csi node: errors of the daemon keep their meaning", "[csi]") {
  Fixture f;
  CHECK(f.Stage("vol-zzz", MountCap()).error_code() == StatusCode::NOT_FOUND);
  CHECK(f.host.commands.empty());
}

TEST_CASE("csi node: publish binds the staging mount, read-only when asked, idempotent", "[csi]") {
  Fixture f;
  CHECK(f.Publish("vol-a", MountCap()).error_code() ==
        StatusCode::FAILED_PRECONDITION);  // not staged
  REQUIRE(f.Stage("vol-a", MountCap()).ok());
  f.host.TakeCommands();
  REQUIRE(f.Publish("vol-a", MountCap(), /*readonly=*/true).ok());
  CHECK(f.host.TakeCommands() == Strings{"mount --bind " + f.staging + " " + f.target,
                                         "mount -o remount,bind,ro " + f.target});
  CHECK(std::filesystem::is_directory(f.target));
  REQUIRE(f.Publish("vol-a", MountCap(), true).ok());
  CHECK(f.host.TakeCommands().empty());
  // The same target asked writable is another publication.
  CHECK(f.Publish("vol-a", MountCap(), false).error_code() == StatusCode::ALREADY_EXISTS);

  // Unstage refuses while published: the pod's mount would lose its device.
  CHECK(f.Unstage("vol-a").error_code() == StatusCode::FAILED_PRECONDITION);
  CHECK(f.daemon.attached.count("vol-a") == 1);

  f.host.TakeCommands();
  REQUIRE(f.Unpublish("vol-a").ok());
  CHECK(f.host.TakeCommands() == Strings{"umount " + f.target});
  CHECK(!std::filesystem::exists(f.target));
  REQUIRE(f.Unpublish("vol-a").ok());  // not mounted, no target: OK
  CHECK(f.host.TakeCommands().empty());
}

TEST_CASE("csi node: unstage unmounts, detaches and releases, a repeat is OK", "[csi]") {
  Fixture f;
  REQUIRE(f.Stage("vol-a", MountCap()).ok());
  f.host.TakeCommands();
  f.daemon.calls.clear();
  REQUIRE(f.Unstage("vol-a").ok());
  CHECK(f.host.TakeCommands() == Strings{"umount " + f.staging});
  CHECK(f.daemon.calls == Strings{"detach vol-a", "release vol-a"});
  CHECK(f.host.mounts.empty());
  f.daemon.calls.clear();
  REQUIRE(f.Unstage("vol-a").ok());
  CHECK(f.host.TakeCommands().empty());
  CHECK(f.daemon.calls == Strings{"detach vol-a", "release vol-a"});
  // Staged again: the filesystem is found, not made again.
  REQUIRE(f.Stage("vol-a", MountCap()).ok());
  CHECK(f.host.TakeCommands() ==
        Strings{"blkid -p -o export /dev/nbd0", "mount -t ext4 /dev/nbd0 " + f.staging});
}

TEST_CASE("csi node: a block volume gets no filesystem and is published as a device file",
          "[csi]") {
  Fixture f;
  REQUIRE(f.Stage("vol-b", BlockCap()).ok());
  CHECK(f.host.TakeCommands().empty());
  REQUIRE(f.Stage("vol-b", BlockCap()).ok());
  REQUIRE(f.Publish("vol-b", BlockCap()).ok());
  CHECK(f.host.TakeCommands() == Strings{"mount --bind /dev/nbd0 " + f.target});
  struct stat st;
  REQUIRE(stat(f.target.c_str(), &st) == 0);
  CHECK(S_ISREG(st.st_mode));  // the file the device is bound onto
  REQUIRE(f.Publish("vol-b", BlockCap()).ok());
  CHECK(f.host.TakeCommands().empty());

  v1::NodeGetVolumeStatsResponse stats;
  f.host.sizes["/dev/nbd0"] = 3 << 20;
  REQUIRE(f.Stats("vol-b", f.target, &stats).ok());
  REQUIRE(stats.usage_size() == 1);
  CHECK(stats.usage(0).unit() == v1::VolumeUsage::BYTES);
  CHECK(stats.usage(0).total() == 3 << 20);

  v1::NodeExpandVolumeResponse expand;
  REQUIRE(f.Expand("vol-b", f.target, 3 << 20, &expand).ok());
  CHECK(expand.capacity_bytes() == 3 << 20);
  CHECK(f.host.TakeCommands().empty());  // no filesystem to grow

  REQUIRE(f.Unpublish("vol-b").ok());
  CHECK(!std::filesystem::exists(f.target));
  REQUIRE(f.Unstage("vol-b").ok());
  CHECK(f.host.TakeCommands() == Strings{"umount " + f.target});
  CHECK(f.daemon.attached.empty());
}

TEST_CASE("csi node: volume stats of a published volume, NOT_FOUND elsewhere", "[csi]") {
  Fixture f;
  v1::NodeGetVolumeStatsResponse stats;
  CHECK(f.Stats("vol-a", f.target, &stats).error_code() == StatusCode::NOT_FOUND);  // not staged
  REQUIRE(f.Stage("vol-a", MountCap()).ok());
  REQUIRE(f.Publish("vol-a", MountCap()).ok());
  CHECK(f.Stats("vol-a", "some/path", &stats).error_code() == StatusCode::NOT_FOUND);
  CHECK(f.Stats("vol-a", f.dir.path(), &stats).error_code() == StatusCode::NOT_FOUND);
  CHECK(f.Stats("vol-b", f.target, &stats).error_code() == StatusCode::NOT_FOUND);

  REQUIRE(f.Stats("vol-a", f.target + "/", &stats).ok());  // statvfs of the real directory
  REQUIRE(stats.usage_size() == 2);
  CHECK(stats.usage(0).unit() == v1::VolumeUsage::BYTES);
  CHECK(stats.usage(0).total() > 0);
  CHECK(stats.usage(1).unit() == v1::VolumeUsage::INODES);
  CHECK(stats.usage(1).total() > 0);
  CHECK_FALSE(stats.volume_condition().abnormal());

  f.daemon.attached["vol-a"].connected = false;
  stats.Clear();
  REQUIRE(f.Stats("vol-a", f.target, &stats).ok());
  CHECK(stats.volume_condition().abnormal());
  CHECK_THAT(stats.volume_condition().message(), Catch::Contains("no connection"));
  f.daemon.attached["vol-a"].connected = true;

  f.daemon.fenced = true;
  stats.Clear();
  REQUIRE(f.Stats("vol-a", f.staging, &stats).ok());
  CHECK(stats.volume_condition().abnormal());
  CHECK_THAT(stats.volume_condition().message(), Catch::Contains("fenced"));
}

TEST_CASE("csi node: expansion grows ext4 with resize2fs once the kernel has the new size",
          "[csi]") {
  Fixture f;
  v1::NodeExpandVolumeResponse resp;
  CHECK(f.Expand("vol-a", "some/path", 0, &resp).error_code() == StatusCode::NOT_FOUND);
  REQUIRE(f.Stage("vol-a", MountCap()).ok());
  REQUIRE(f.Publish("vol-a", MountCap()).ok());
  f.host.TakeCommands();
  CHECK(f.Expand("vol-a", "some/path", 0, &resp).error_code() == StatusCode::NOT_FOUND);

  const int64_t two_gib = int64_t{2} << 30;
  auto s = f.Expand("vol-a", f.target, two_gib, &resp);  // the kernel still says 1 GiB
  CHECK(s.error_code() == StatusCode::FAILED_PRECONDITION);
  CHECK_THAT(s.error_message(), Catch::Contains("/dev/nbd0 is 1073741824 bytes"));
  CHECK(f.host.TakeCommands().empty());

  f.host.sizes["/dev/nbd0"] = two_gib;
  REQUIRE(f.Expand("vol-a", f.target, two_gib, &resp).ok());
  CHECK(resp.capacity_bytes() == two_gib);
  CHECK(f.host.TakeCommands() == Strings{"resize2fs /dev/nbd0"});
}

TEST_CASE("csi node: a second call on a volume while one runs is ABORTED", "[csi]") {
  Fixture f;
  grpc::Status inner;
  f.host.on_run = [&](const Strings& argv) {
    if (argv[0] == "mkfs.ext4") inner = f.Stage("vol-a", MountCap());
  };
  REQUIRE(f.Stage("vol-a", MountCap()).ok());
  CHECK(inner.error_code() == StatusCode::ABORTED);
  f.host.on_run = nullptr;
  REQUIRE(f.Stage("vol-a", MountCap()).ok());  // the lock was given back
}

TEST_CASE("csi node: capabilities and info", "[csi]") {
  Fixture f;
  v1::NodeGetCapabilitiesResponse caps;
  REQUIRE(f.node.NodeGetCapabilities(nullptr, nullptr, &caps).ok());
  std::set<int> types;
  for (const auto& c : caps.capabilities()) types.insert(c.rpc().type());
  using Rpc = v1::NodeServiceCapability::RPC;
  CHECK(types == std::set<int>{Rpc::STAGE_UNSTAGE_VOLUME, Rpc::GET_VOLUME_STATS, Rpc::EXPAND_VOLUME,
                               Rpc::VOLUME_CONDITION});

  v1::NodeGetInfoResponse info;
  // No NBD device: CSI reads 0 as "no limit", so that is an error, not 0.
  CHECK(f.node.NodeGetInfo(nullptr, nullptr, &info).error_code() ==
        StatusCode::FAILED_PRECONDITION);
  f.host.nbd = {
      {"/dev/nbd0", false}, {"/dev/nbd1", true}, {"/dev/nbd2", true}, {"/dev/nbd3", false}};
  REQUIRE(f.Stage("vol-a", BlockCap()).ok());  // the daemon holds nbd0 now; the kernel says in use
  f.host.nbd[0].in_use = true;
  REQUIRE(f.node.NodeGetInfo(nullptr, nullptr, &info).ok());
  CHECK(info.node_id() == "node-1");
  CHECK(info.max_volumes_per_node() == 2);  // nbd0 (ours) and nbd3 (free)
}

}  // namespace
}  // namespace portal::csi
