// The CSI Node service: stages a volume by asking the node's portalbd daemon to attach it
// to a /dev/nbdX, formats a blank device, mounts and bind-mounts it (docs/csi.md "Node").
//
// It keeps no state of its own: which volume is on which device is the daemon's
// (device.list), what is mounted where is the kernel's (mountinfo). So a restarted plugin
// answers every call as the one before it would have, and every call is idempotent by
// looking first. Calls on one volume are serialized: a second one while the first runs
// gets ABORTED (the CO retries), as the spec asks.
#pragma once

#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "csi/driver.h"
#include "csi/mount_table.h"
#include "csi/node_daemon.h"
#include "csi/node_host.h"
#include "csi/v1/csi.grpc.pb.h"

namespace portal::csi {

class NodeService final : public ::csi::v1::Node::Service {
 public:
  // The real service: the daemon on `daemon`'s socket, this machine's mounts and devices.
  NodeService(DaemonEndpoint daemon, std::string node_id);
  // With a daemon and a host of the caller's (tests); both must outlive the service.
  NodeService(NodeDaemon* daemon, NodeHost* host, std::string node_id);
  ~NodeService() override;

  grpc::Status NodeStageVolume(grpc::ServerContext*, const ::csi::v1::NodeStageVolumeRequest*,
                               ::csi::v1::NodeStageVolumeResponse*) override;
  grpc::Status NodeUnstageVolume(grpc::ServerContext*, const ::csi::v1::NodeUnstageVolumeRequest*,
                                 ::csi::v1::NodeUnstageVolumeResponse*) override;
  grpc::Status NodePublishVolume(grpc::ServerContext*, const ::csi::v1::NodePublishVolumeRequest*,
                                 ::csi::v1::NodePublishVolumeResponse*) override;
  grpc::Status NodeUnpublishVolume(grpc::ServerContext*,
                                   const ::csi::v1::NodeUnpublishVolumeRequest*,
                                   ::csi::v1::NodeUnpublishVolumeResponse*) override;
  grpc::Status NodeGetVolumeStats(grpc::ServerContext*, const ::csi::v1::NodeGetVolumeStatsRequest*,
                                  ::csi::v1::NodeGetVolumeStatsResponse*) override;
  grpc::Status NodeExpandVolume(grpc::ServerContext*, const ::csi::v1::NodeExpandVolumeRequest*,
                                ::csi::v1::NodeExpandVolumeResponse*) override;
  grpc::Status NodeGetCapabilities(grpc::ServerContext*,
                                   const ::csi::v1::NodeGetCapabilitiesRequest*,
                                   ::csi::v1::NodeGetCapabilitiesResponse*) override;
  grpc::Status NodeGetInfo(grpc::ServerContext*, const ::csi::v1::NodeGetInfoRequest*,
                           ::csi::v1::NodeGetInfoResponse*) override;

 private:
  class VolumeLock;
  // The device the daemon has `volume` on, nullopt-like empty path when none.
  grpc::Status FindDevice(const std::string& volume, AttachedDevice* device, bool* found);
  grpc::Status FindMounted(const std::string& volume, const std::string& path,
                           AttachedDevice* device, std::vector<MountEntry>* mounts,
                           const MountEntry** at);

  std::unique_ptr<NodeDaemon> own_daemon_;
  std::unique_ptr<NodeHost> own_host_;
  NodeDaemon* daemon_;
  NodeHost* host_;
  std::string node_id_;
  std::mutex mu_;
  std::set<std::string> busy_volumes_;  // guarded by mu_: volumes with a call running
};

}  // namespace portal::csi
