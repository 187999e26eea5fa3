// What portalbd-csi is, as the CSI services tell a container orchestrator: its name, its
// roles and how it reaches the portalbd daemons (docs/csi.md).
#pragma once

#include <string>
#include <string_view>

namespace portal::csi {

// The driver name (CSI GetPluginInfo): the StorageClass's provisioner and the CSIDriver
// object's name in deploy/.
inline constexpr std::string_view kDriverName = "portalbd.csi.portalbd.dev";

// What one portalbd-csi process serves (--role controller | node | all).
struct Roles {
  bool controller = false;
  bool node = false;
};

// Where the services find the portalbd daemon on their own machine: its control socket
// ([nbd] socket of portalbd.toml). The controller's daemon does the work on detached
// volumes; the node's daemon attaches volumes to /dev/nbdX and serves them.
struct DaemonEndpoint {
  std::string socket = "/run/portalbd/portalbd.sock";
  int timeout_ms = 60'000;  // per control request
};

}  // namespace portal::csi
