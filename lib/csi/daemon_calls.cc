#include "csi/daemon_calls.h"

#include <fmt/format.h>

#include <algorithm>
#include <variant>

#include "control/client.h"

namespace portal::csi {
namespace {

using control::Op;

constexpr std::string_view kNotOwnerPrefix = "not_owner: ";

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
  } else if (e.code == control::kNotOwner) {
    return grpc::Status(StatusCode::ABORTED, std::string(kNotOwnerPrefix) + e.message);
  }
  return grpc::Status(code, e.message);
}

bool IsNotOwner(const grpc::Status& st) {
  return st.error_code() == grpc::StatusCode::ABORTED &&
         st.error_message().starts_with(kNotOwnerPrefix);
}

DaemonCalls::DaemonCalls(std::string address, const OwnerAccess& access, int timeout_ms)
    : tcp_address_(std::move(address)) {
  endpoint_.socket.clear();
  endpoint_.timeout_ms = timeout_ms;
  tcp_.token = access.token;
  tcp_.tls = access.tls;
  tcp_.tls_ca_file = access.tls_ca_file;
  tcp_.connect_timeout_ms = std::min(timeout_ms, 10'000);
}

grpc::Status DaemonCalls::Call(const control::Request& request, control::Reply* reply) const {
  const std::string who = tcp_address_.empty() ? std::string("portalbd daemon")
                                               : "the volume's owner at " + tcp_address_;
  if (!tcp_address_.empty() && tcp_.token.empty()) {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                        who + ": no --owner-token-file to authenticate with");
  }
  auto client = tcp_address_.empty() ? control::Client::Connect(endpoint_.socket)
                                     : control::Client::ConnectTcp(tcp_address_, tcp_);
  if (!client.ok() && !tcp_address_.empty() &&
      client.status().code() == Status::Code::kPermissionDenied) {
    // The owner refused our token or we refused its certificate: configuration, which
    // retrying does not mend.
    return grpc::Status(grpc::StatusCode::INTERNAL, who + ": " + client.status().ToString());
  }
  if (!client.ok()) {
    // A daemon that cannot be reached is UNAVAILABLE: the CO retries.
    return grpc::Status(grpc::StatusCode::UNAVAILABLE, who + ": " + client.status().ToString());
  }
  (*client)->set_timeout_ms(endpoint_.timeout_ms);
  auto r = (*client)->Call(request);
  if (!r.ok()) {
    return grpc::Status(
        grpc::StatusCode::UNAVAILABLE,
        fmt::format("{}, {}: {}", who, control::OpName(request.op), r.status().ToString()));
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

grpc::Status DaemonCalls::Holds(const std::string& volume) const {
  control::Request r = MakeRequest(Op::kSnapshotList);
  r.volume = volume;
  control::Reply reply;
  return Call(r, &reply);
}

grpc::Status DaemonCalls::Publish(const std::string& volume, const std::string& node,
                                  bool read_only) const {
  control::Request r = MakeRequest(Op::kVolumePublish, volume);
  r.node = node;
  r.read_only = read_only;
  control::Reply reply;
  return Call(r, &reply);
}

grpc::Status DaemonCalls::Unpublish(const std::string& volume, const std::string& node) const {
  control::Request r = MakeRequest(Op::kVolumeUnpublish, volume);
  r.node = node;
  control::Reply reply;
  return Call(r, &reply);
}

grpc::Status DaemonCalls::DeleteSnapshot(const std::string& volume,
                                         const std::string& snapshot) const {
  control::Request r = MakeRequest(Op::kSnapshotDelete, snapshot);
  r.volume = volume;
  control::Reply reply;
  return Call(r, &reply);
}

}  // namespace portal::csi
