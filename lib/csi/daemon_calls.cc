#include "csi/daemon_calls.h"

#include <fmt/format.h>

#include <variant>

#include "control/client.h"

namespace portal::csi {
namespace {

using control::Op;

control::Request MakeRequest(Op op, std::string name = "") {
  control::Request r;
  r.op = op;
  r.name = std::move(name);
  return r;
}

}  // namespace

grpc::Status ToGrpcStatus(const control::ErrorReply& e) {
  using grpc::StatusCode;
  StatusCode code = StatusCode::INTERNAL;
  if (e.code == "not_found") {
    code = StatusCode::NOT_FOUND;
  } else if (e.code == control::kAlreadyExists) {
    code = StatusCode::ALREADY_EXISTS;
  } else if (e.code == "invalid_argument") {
    code = StatusCode::INVALID_ARGUMENT;
  } else if (e.code == "busy") {
    // VolumeSet's claim on a name ("is busy with another operation") passes; the rest
    // (clients attached, a snapshot its clones read) lasts until someone acts.
    code = e.message.find("busy with another operation") != std::string::npos
               ? StatusCode::ABORTED
               : StatusCode::FAILED_PRECONDITION;
  } else if (e.code == "precondition_failed") {
    code = StatusCode::FAILED_PRECONDITION;
  } else if (e.code == "no_space") {
    code = StatusCode::RESOURCE_EXHAUSTED;
  } else if (e.code == "unavailable" || e.code == "shutdown" ||
             e.code == control::kTooManyConnections) {
    code = StatusCode::UNAVAILABLE;
  } else if (e.code == "permission_denied") {
    code = StatusCode::PERMISSION_DENIED;
  }
  return grpc::Status(code, e.message);
}

grpc::Status DaemonCalls::Call(const control::Request& request, control::Reply* reply) const {
  auto client = control::Client::Connect(endpoint_.socket);
  if (!client.ok()) {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                        "portalbd daemon: " + client.status().ToString());
  }
  (*client)->set_timeout_ms(endpoint_.timeout_ms);
  auto r = (*client)->Call(request);
  if (!r.ok()) {
    return grpc::Status(
        grpc::StatusCode::UNAVAILABLE,
        fmt::format("portalbd daemon, {}: {}", control::OpName(request.op), r.status().ToString()));
  }
  if (const auto* e = std::get_if<control::ErrorReply>(&*r)) return ToGrpcStatus(*e);
  *reply = std::move(*r);
  return grpc::Status::OK;
}

grpc::Status DaemonCalls::Inspect(const std::string& volume, control::VolumeEntry* out) const {
  control::Reply reply;
  grpc::Status st = Call(MakeRequest(Op::kVolumeInspect, volume), &reply);
  if (!st.ok()) return st;
  const auto* list = std::get_if<control::VolumeListReply>(&reply);
  if (!list || list->volumes.size() != 1) {
    return grpc::Status(grpc::StatusCode::INTERNAL, "volume.inspect: unexpected reply");
  }
  *out = list->volumes[0];
  return grpc::Status::OK;
}

grpc::Status DaemonCalls::InspectAll(std::vector<control::VolumeEntry>* out) const {
  control::Reply reply;
  grpc::Status st = Call(MakeRequest(Op::kVolumeInspect), &reply);
  if (!st.ok()) return st;
  const auto* list = std::get_if<control::VolumeListReply>(&reply);
  if (!list) return grpc::Status(grpc::StatusCode::INTERNAL, "volume.inspect: unexpected reply");
  *out = list->volumes;
  return grpc::Status::OK;
}

grpc::Status DaemonCalls::Create(const std::string& volume, uint64_t size_bytes,
                                 uint32_t block_size) const {
  control::Request r = MakeRequest(Op::kVolumeCreate, volume);
  r.size_bytes = size_bytes;
  r.block_size = block_size;
  control::Reply reply;
  return Call(r, &reply);
}

grpc::Status DaemonCalls::Clone(const std::string& volume, const std::string& source,
                                const std::string& snapshot) const {
  control::Request r = MakeRequest(Op::kVolumeClone, volume);
  r.source = source;
  r.snapshot = snapshot;
  control::Reply reply;
  return Call(r, &reply);
}

grpc::Status DaemonCalls::Open(const std::string& volume) const {
  control::Reply reply;
  return Call(MakeRequest(Op::kVolumeOpen, volume), &reply);
}

grpc::Status DaemonCalls::Release(const std::string& volume) const {
  control::Reply reply;
  return Call(MakeRequest(Op::kVolumeRelease, volume), &reply);
}

grpc::Status DaemonCalls::Resize(const std::string& volume, uint64_t size_bytes) const {
  control::Request r = MakeRequest(Op::kVolumeResize, volume);
  r.size_bytes = size_bytes;
  control::Reply reply;
  return Call(r, &reply);
}

grpc::Status DaemonCalls::Delete(const std::string& volume) const {
  control::Reply reply;
  return Call(MakeRequest(Op::kVolumeDelete, volume), &reply);
}

grpc::Status DaemonCalls::CreateSnapshot(const std::string& volume, const std::string& snapshot,
                                         control::SnapshotEntry* out) const {
  control::Request r = MakeRequest(Op::kSnapshotCreate, snapshot);
  r.volume = volume;
  control::Reply reply;
  grpc::Status st = Call(r, &reply);
  if (!st.ok()) return st;
  const auto* s = std::get_if<control::SnapshotReply>(&reply);
  if (!s) return grpc::Status(grpc::StatusCode::INTERNAL, "snapshot.create: unexpected reply");
  *out = s->snapshot;
  return grpc::Status::OK;
}

grpc::Status DaemonCalls::DeleteSnapshot(const std::string& volume,
                                         const std::string& snapshot) const {
  control::Request r = MakeRequest(Op::kSnapshotDelete, snapshot);
  r.volume = volume;
  control::Reply reply;
  return Call(r, &reply);
}

}  // namespace portal::csi
