// The CSI Controller service: volumes, snapshots, clones and expansion, done by the
// controller's own portalbd daemon for detached volumes and by a volume's owner for an
// attached one (docs/csi.md "Where a writer lives").
#pragma once

#include "csi/driver.h"
#include "csi/v1/csi.grpc.pb.h"

namespace portal::csi {

class ControllerService final : public ::csi::v1::Controller::Service {
 public:
  explicit ControllerService(DaemonEndpoint daemon) : daemon_(std::move(daemon)) {}

 private:
  DaemonEndpoint daemon_;
};

}  // namespace portal::csi
