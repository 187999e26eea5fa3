// The CSI Identity service: the plugin's name and version, what it can do, and whether it
// is ready (Probe: the local portalbd daemon answers on its control socket).
#pragma once

#include "csi/driver.h"
#include "csi/v1/csi.grpc.pb.h"

namespace portal::csi {

class IdentityService final : public ::csi::v1::Identity::Service {
 public:
  IdentityService(Roles roles, DaemonEndpoint daemon) : roles_(roles), daemon_(std::move(daemon)) {}

  grpc::Status GetPluginInfo(grpc::ServerContext*, const ::csi::v1::GetPluginInfoRequest*,
                             ::csi::v1::GetPluginInfoResponse* response) override;
  grpc::Status GetPluginCapabilities(grpc::ServerContext*,
                                     const ::csi::v1::GetPluginCapabilitiesRequest*,
                                     ::csi::v1::GetPluginCapabilitiesResponse* response) override;
  grpc::Status Probe(grpc::ServerContext*, const ::csi::v1::ProbeRequest*,
                     ::csi::v1::ProbeResponse* response) override;

 private:
  Roles roles_;
  DaemonEndpoint daemon_;
};

}  // namespace portal::csi
