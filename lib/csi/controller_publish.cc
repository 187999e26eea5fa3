// ControllerPublishVolume and ControllerUnpublishVolume: the attachment records that tell
// the controller which node a volume belongs to before that node's daemon has opened it
// (docs/csi.md "How the controller reaches a volume's owner"). The records are written by
// the controller's daemon (volume.publish, volume.unpublish); nothing is opened here.
#include <fmt/format.h>

#include "csi/controller_checks.h"
#include "csi/controller_service.h"
#include "csi/ids.h"

namespace portal::csi {

namespace v1 = ::csi::v1;
using grpc::StatusCode;

grpc::Status ControllerService::ControllerPublishVolume(
    grpc::ServerContext*, const v1::ControllerPublishVolumeRequest* req,
    v1::ControllerPublishVolumeResponse*) {
  if (grpc::Status st = CheckPublish(*req); !st.ok()) return st;
  const std::string& id = req->volume_id();
  const std::string& node = req->node_id();
  if (!IsVolumeId(id)) return grpc::Status(StatusCode::NOT_FOUND, "no volume '" + id + "'");
  if (!control::ValidateNodeId(node).ok()) {
    return grpc::Status(StatusCode::NOT_FOUND, "no node '" + node + "' (not a valid node id)");
  }
  // Under the volume's lock: a change that read "not published" has released the volume
  // before the record exists, so before the node (which waits for this call) opens it.
  std::shared_ptr<std::mutex> lock = LockFor(id);
  std::lock_guard hold(*lock);
  // NOT_FOUND (volume or node), FAILED_PRECONDITION (another node: every access mode we
  // serve is single-node), ALREADY_EXISTS (this node, the other read_only), or OK.
  return daemon_.Publish(id, node, req->readonly());
}

grpc::Status ControllerService::ControllerUnpublishVolume(
    grpc::ServerContext*, const v1::ControllerUnpublishVolumeRequest* req,
    v1::ControllerUnpublishVolumeResponse*) {
  const std::string& id = req->volume_id();
  if (id.empty()) return grpc::Status(StatusCode::INVALID_ARGUMENT, "volume_id is required");
  // An id that names nothing is unpublished already (the spec: NOT_FOUND "can be safely
  // regarded as unpublished"); so is a node id that cannot have a record.
  if (!IsVolumeId(id)) return grpc::Status::OK;
  if (!req->node_id().empty() && !control::ValidateNodeId(req->node_id()).ok()) {
    return grpc::Status::OK;
  }
  std::shared_ptr<std::mutex> lock = LockFor(id);
  std::lock_guard hold(*lock);
  grpc::Status st = daemon_.Unpublish(id, req->node_id());
  return st.error_code() == StatusCode::NOT_FOUND ? grpc::Status::OK : st;
}

}  // namespace portal::csi
