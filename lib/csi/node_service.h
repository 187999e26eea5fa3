// The CSI Node service: stages a volume by asking the node's portalbd daemon to attach it
// to a /dev/nbdX, formats a blank device, mounts and bind-mounts it (docs/csi.md "Node").
#pragma once

#include <string>

#include "csi/driver.h"
#include "csi/v1/csi.grpc.pb.h"

namespace portal::csi {

class NodeService final : public ::csi::v1::Node::Service {
 public:
  NodeService(DaemonEndpoint daemon, std::string node_id)
      : daemon_(std::move(daemon)), node_id_(std::move(node_id)) {}

 private:
  DaemonEndpoint daemon_;
  std::string node_id_;
};

}  // namespace portal::csi
