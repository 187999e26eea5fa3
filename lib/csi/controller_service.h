// The CSI Controller service: volumes, snapshots, clones and expansion, done by the
// controller's own portalbd daemon for detached volumes and by a volume's owner for an
// attached one (docs/csi.md "Controller", "Where a writer lives").
//
// The controller's daemon serves no volume at rest. Reads (list, get, validate, the
// idempotency checks) use volume.inspect, which opens nothing and so fences nobody. A
// change to a detached volume opens it on the controller's daemon, makes the change and
// releases it, under a per-volume lock of this process so that two calls never interleave
// their open and release. ControllerPublishVolume records the node a volume is published
// to (volume.publish) under the same lock, before the node may open it: a change that read
// "not published" finishes its open and release before the node can open the volume.
//
// Thread-safe (gRPC's sync server calls it from many threads).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "csi/daemon_calls.h"
#include "csi/driver.h"
#include "csi/v1/csi.grpc.pb.h"

namespace portal::csi {

struct ControllerOptions {
  // GetCapacity's figure (--capacity-bytes): the bytes volumes may take in all, less what
  // registered volumes' sizes take. 0: object storage has no figure to report, and
  // GET_CAPACITY is not advertised.
  uint64_t capacity_bytes = 0;
  // Reaching an attached volume's owner (--owner-token-file, --owner-tls, --owner-tls-ca).
  OwnerAccess owner;
};

class ControllerService final : public ::csi::v1::Controller::Service {
 public:
  explicit ControllerService(DaemonEndpoint daemon, ControllerOptions options = {})
      : daemon_(daemon), timeout_ms_(daemon.timeout_ms), options_(std::move(options)) {}

  grpc::Status CreateVolume(grpc::ServerContext*, const ::csi::v1::CreateVolumeRequest*,
                            ::csi::v1::CreateVolumeResponse*) override;
  grpc::Status DeleteVolume(grpc::ServerContext*, const ::csi::v1::DeleteVolumeRequest*,
                            ::csi::v1::DeleteVolumeResponse*) override;
  grpc::Status ValidateVolumeCapabilities(grpc::ServerContext*,
                                          const ::csi::v1::ValidateVolumeCapabilitiesRequest*,
                                          ::csi::v1::ValidateVolumeCapabilitiesResponse*) override;
  grpc::Status ListVolumes(grpc::ServerContext*, const ::csi::v1::ListVolumesRequest*,
                           ::csi::v1::ListVolumesResponse*) override;
  grpc::Status GetCapacity(grpc::ServerContext*, const ::csi::v1::GetCapacityRequest*,
                           ::csi::v1::GetCapacityResponse*) override;
  grpc::Status ControllerGetCapabilities(grpc::ServerContext*,
                                         const ::csi::v1::ControllerGetCapabilitiesRequest*,
                                         ::csi::v1::ControllerGetCapabilitiesResponse*) override;
  grpc::Status CreateSnapshot(grpc::ServerContext*, const ::csi::v1::CreateSnapshotRequest*,
                              ::csi::v1::CreateSnapshotResponse*) override;
  grpc::Status DeleteSnapshot(grpc::ServerContext*, const ::csi::v1::DeleteSnapshotRequest*,
                              ::csi::v1::DeleteSnapshotResponse*) override;
  grpc::Status ListSnapshots(grpc::ServerContext*, const ::csi::v1::ListSnapshotsRequest*,
                             ::csi::v1::ListSnapshotsResponse*) override;
  grpc::Status ControllerExpandVolume(grpc::ServerContext*,
                                      const ::csi::v1::ControllerExpandVolumeRequest*,
                                      ::csi::v1::ControllerExpandVolumeResponse*) override;
  grpc::Status ControllerGetVolume(grpc::ServerContext*,
                                   const ::csi::v1::ControllerGetVolumeRequest*,
                                   ::csi::v1::ControllerGetVolumeResponse*) override;
  grpc::Status ControllerPublishVolume(grpc::ServerContext*,
                                       const ::csi::v1::ControllerPublishVolumeRequest*,
                                       ::csi::v1::ControllerPublishVolumeResponse*) override;
  grpc::Status ControllerUnpublishVolume(grpc::ServerContext*,
                                         const ::csi::v1::ControllerUnpublishVolumeRequest*,
                                         ::csi::v1::ControllerUnpublishVolumeResponse*) override;

 private:
  // Serializes this process's changes to one volume (its open, change, release).
  std::shared_ptr<std::mutex> LockFor(const std::string& volume);
  // Opens `volume` on the controller's daemon, runs `change`, releases it (also when the
  // change failed); the first failure wins.
  template <typename Change>
  grpc::Status OnDetached(const std::string& volume, Change change);
  // Runs `change(daemon)` on the daemon that is `v`'s writer: the owner its owner record
  // names (UNAVAILABLE when it cannot be reached), or, for a detached volume or a stale
  // record (the daemon named answers not_owner), the controller's daemon (OnDetached).
  // A published volume (an attachment record) is never opened here: only the owner record
  // naming the node it is published to is asked; otherwise UNAVAILABLE (that node has not
  // opened it yet; the CO retries).
  template <typename Change>
  grpc::Status OnWriter(const control::VolumeEntry& v, Change change);
  grpc::Status Snapshot(const control::VolumeEntry& v, const std::string& snapshot,
                        control::SnapshotEntry* out);
  grpc::Status Grow(const control::VolumeEntry& v, uint64_t size_bytes);
  grpc::Status CreateFromSource(const ::csi::v1::CreateVolumeRequest& req, const std::string& name,
                                uint32_t block_size);
  grpc::Status CheckExisting(const ::csi::v1::CreateVolumeRequest& req,
                             const control::VolumeEntry& v, uint32_t block_size);

  DaemonCalls daemon_;
  const int timeout_ms_;
  const ControllerOptions options_;
  std::mutex locks_mu_;
  std::map<std::string, std::shared_ptr<std::mutex>> locks_;  // GUARDED_BY(locks_mu_)
};

}  // namespace portal::csi
