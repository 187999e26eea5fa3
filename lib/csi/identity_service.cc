#include "csi/identity_service.h"

#include <variant>

#include "control/client.h"
#include "control/protocol.h"

namespace portal::csi {

grpc::Status IdentityService::GetPluginInfo(grpc::ServerContext*,
                                            const ::csi::v1::GetPluginInfoRequest*,
                                            ::csi::v1::GetPluginInfoResponse* response) {
  response->set_name(std::string(kDriverName));
  response->set_vendor_version(PORTALBD_VERSION);
  return grpc::Status::OK;
}

grpc::Status IdentityService::GetPluginCapabilities(
    grpc::ServerContext*, const ::csi::v1::GetPluginCapabilitiesRequest*,
    ::csi::v1::GetPluginCapabilitiesResponse* response) {
  using Cap = ::csi::v1::PluginCapability;
  if (roles_.controller) {
    response->add_capabilities()->mutable_service()->set_type(Cap::Service::CONTROLLER_SERVICE);
  }
  // Volumes grow while attached: the owner's daemon resizes, the node grows the
  // filesystem (docs/csi.md "Expansion").
  response->add_capabilities()->mutable_volume_expansion()->set_type(Cap::VolumeExpansion::ONLINE);
  return grpc::Status::OK;
}

grpc::Status IdentityService::Probe(grpc::ServerContext*, const ::csi::v1::ProbeRequest*,
                                    ::csi::v1::ProbeResponse* response) {
  // Ready when the daemon that does the work answers; a plugin whose daemon is down or
  // still opening its volumes is not ready (the CO retries), which is not an error.
  bool ready = false;
  if (auto client = control::Client::Connect(daemon_.socket); client.ok()) {
    (*client)->set_timeout_ms(daemon_.timeout_ms);
    control::Request status;
    status.op = control::Op::kStatus;
    auto reply = (*client)->Call(status);
    ready = reply.ok() && std::holds_alternative<control::StatusReply>(*reply);
  }
  response->mutable_ready()->set_value(ready);
  return grpc::Status::OK;
}

}  // namespace portal::csi
