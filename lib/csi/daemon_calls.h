// The controller's calls to a portalbd daemon over the control protocol (docs/control.md),
// with every failure already a gRPC status as the CSI spec wants it (ToGrpcStatus):
//   not_found -> NOT_FOUND, already_exists -> ALREADY_EXISTS, invalid_argument ->
//   INVALID_ARGUMENT, busy "with another operation" -> ABORTED (the CO retries), busy
//   otherwise (clients attached, a snapshot with clones) -> FAILED_PRECONDITION,
//   precondition_failed (fenced) -> FAILED_PRECONDITION, no_space -> RESOURCE_EXHAUSTED,
//   unavailable / shutdown / too_many_connections / no daemon -> UNAVAILABLE,
//   permission_denied -> PERMISSION_DENIED, not_owner -> ABORTED (IsNotOwner says so),
//   anything else -> INTERNAL.
// Two kinds of daemon: the one on this machine (its unix socket), or a volume's owner
// (its TCP control listener, with the token and TLS of OwnerAccess). One connection per
// call: a daemon restart between calls costs nothing.
#pragma once

#include <grpcpp/grpcpp.h>

#include <string>
#include <vector>

#include "control/client.h"
#include "control/protocol.h"
#include "csi/driver.h"

namespace portal::csi {

grpc::Status ToGrpcStatus(const control::ErrorReply& e);
// The daemon asked does not hold the volume as its writer (its owner record was stale).
bool IsNotOwner(const grpc::Status& st);

// How the controller reaches a volume's owner (docs/csi.md "How the controller reaches a
// volume's owner"): the nodes' shared token, and TLS if their listeners speak it.
struct OwnerAccess {
  std::string token;  // --owner-token-file's content; "": owners cannot be reached
  bool tls = false;
  std::string tls_ca_file;  // "": the system's CAs
};

class DaemonCalls {
 public:
  explicit DaemonCalls(DaemonEndpoint endpoint) : endpoint_(std::move(endpoint)) {}
  // The daemon whose control listener is at `address` ("host:port").
  DaemonCalls(std::string address, const OwnerAccess& access, int timeout_ms);

  // Sends one request; OK and `*reply` when the daemon answered without an error.
  grpc::Status Call(const control::Request& request, control::Reply* reply) const;

  // volume.inspect of one volume (snapshot_list filled): NOT_FOUND when unknown.
  grpc::Status Inspect(const std::string& volume, control::VolumeEntry* out) const;
  // volume.inspect of every registered volume, sorted by name.
  grpc::Status InspectAll(std::vector<control::VolumeEntry>* out) const;
  grpc::Status Create(const std::string& volume, uint64_t size_bytes, uint32_t block_size) const;
  grpc::Status Clone(const std::string& volume, const std::string& source,
                     const std::string& snapshot) const;
  grpc::Status Open(const std::string& volume) const;
  grpc::Status Release(const std::string& volume) const;
  grpc::Status Resize(const std::string& volume, uint64_t size_bytes) const;
  grpc::Status Delete(const std::string& volume) const;
  grpc::Status CreateSnapshot(const std::string& volume, const std::string& snapshot,
                              control::SnapshotEntry* out) const;
  grpc::Status DeleteSnapshot(const std::string& volume, const std::string& snapshot) const;
  // snapshot.list of a served volume: OK when this daemon holds it as its writer.
  grpc::Status Holds(const std::string& volume) const;
  // volume.publish: NOT_FOUND for an unknown volume or an unregistered node,
  // FAILED_PRECONDITION when published to another node, ALREADY_EXISTS when published to
  // `node` with the other read_only.
  grpc::Status Publish(const std::string& volume, const std::string& node, bool read_only) const;
  // volume.unpublish: OK also when nothing named `node` ("" = any).
  grpc::Status Unpublish(const std::string& volume, const std::string& node) const;

 private:
  DaemonEndpoint endpoint_;
  std::string tcp_address_;  // set: a TCP daemon (tcp_, endpoint_.timeout_ms)
  control::TcpClientOptions tcp_;
};

}  // namespace portal::csi
