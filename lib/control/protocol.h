// The control protocol between portalbd and portalctl: line-delimited JSON over a unix
// socket (docs/control.md has every request, reply and error). Sans-io: bytes in, values
// out, and back; the socket server (control/server.h) and client (control/client.h) do
// the I/O.
//
//   request  = one JSON object + "\n", at most kMaxRequestBytes before the newline
//              {"op":"snapshot.create","name":"snap1","id":7}
//   reply    = one JSON object + "\n", one per request, in request order
//              {"ok":true,"id":7,"snapshot":{...}}
//              {"ok":false,"id":7,"error":{"code":"not_found","message":"..."}}
//
// Parsing never throws and never asserts on peer bytes: every malformed request becomes
// an ErrorReply with code "bad_request" (or "request_too_long"). A snapshot name is
// passed on unjudged: the handler applies the volume's rule (invalid_argument).
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "util/status.h"

namespace portal::control {

// Longest request line, excluding its newline. Requests are tiny (a name is at most 128
// bytes); the bound only keeps a misbehaving peer from growing the daemon's buffers.
inline constexpr size_t kMaxRequestBytes = 16 * 1024;
// Longest reply line portalctl accepts (a list of many snapshots is the largest reply).
inline constexpr size_t kMaxReplyBytes = 64ull << 20;

enum class Op {
  kSnapshotCreate,
  kSnapshotList,
  kSnapshotGet,
  kSnapshotDelete,
  kSnapshotRestore,
  kStatus,
  kVolumeCreate,
  kVolumeList,
  kVolumeGet,
  kVolumeDelete,
  kVolumeResize,
  kVolumeOpen,
  kVolumeRelease,
  kVolumeClone,
  kDeviceAttach,
  kDeviceDetach,
  kDeviceList,
  kVolumeInspect,
  kVolumePublish,
  kVolumeUnpublish,
  kNodeGet,
};
std::string_view OpName(Op op);  // "snapshot.create", "volume.create", ...
bool OpTakesName(Op op);
bool IsVolumeOp(Op op);  // volume.*: `name` is a volume's name
bool IsDeviceOp(Op op);  // device.*: kernel NBD devices the daemon serves (no `name`)
bool IsNodeOp(Op op);    // node.*: `name` is a node id (docs/csi.md, the node registry)

struct Request {
  Op op = Op::kStatus;
  std::string name;  // snapshot ops other than list; volume ops other than list
  // The client's optional correlation id, echoed verbatim in the reply: the JSON text of
  // a string or an integer ("" when absent).
  std::string id_json;
  // Snapshot ops: the volume they act on ("" = the default volume, "portalbd").
  std::string volume{};
  uint64_t size_bytes = 0;    // volume.create, volume.resize (required there)
  bool allow_shrink = false;  // volume.resize
  // volume.clone (both required): the new volume `name` is a clone of snapshot
  // `snapshot` of volume `source`.
  std::string source{};
  std::string snapshot{};
  // device.attach: `volume` (required), `device` ("/dev/nbdN"; "" = the first unused one),
  // `read_only`. device.detach: exactly one of `device` and `volume`.
  std::string device{};
  bool read_only = false;
  // volume.create, optional: the new volume's block size (0: the daemon's [device]
  // block_size).
  uint32_t block_size = 0;
  // volume.publish (required), volume.unpublish (optional): the node id the volume is
  // published to; volume.publish also takes `read_only`.
  std::string node{};
};

// --- replies --------------------------------------------------------------------------

// Error codes on the wire (snake_case, stable).
inline constexpr std::string_view kBadRequest = "bad_request";
inline constexpr std::string_view kRequestTooLong = "request_too_long";
inline constexpr std::string_view kAlreadyExists = "already_exists";
inline constexpr std::string_view kTooManyConnections = "too_many_connections";
// The request names a volume this daemon does not hold as its writer: not served here,
// or fenced by another daemon's open. Its owner record (if any) is stale.
inline constexpr std::string_view kNotOwner = "not_owner";

// A snapshot as replies show it (docs/control.md "Snapshot object"). The protocol owns
// this type; the daemon fills it from the volume's own record.
struct SnapshotEntry {
  std::string name;
  std::string id;             // uuid
  int64_t created_ns = 0;     // wall clock; also sent as RFC 3339 ("created")
  uint64_t size_bytes = 0;    // the device size when it was taken
  uint64_t pinned_bytes = 0;  // data the snapshot references (what it pins at most)
  int attached = 0;           // clients reading it as portalbd@NAME
  friend bool operator==(const SnapshotEntry&, const SnapshotEntry&) = default;
};

// Where a volume's writer can be reached: its owner record (daemon/owner_record.h).
struct OwnerEntry {
  std::string node;
  std::string control;  // "host:port" of its control listener
  uint64_t epoch = 0;
  friend bool operator==(const OwnerEntry&, const OwnerEntry&) = default;
};

// A volume published to a node (its attachment record, daemon/attachments.h).
struct AttachmentEntry {
  std::string volume;
  std::string node;
  bool read_only = false;
  std::string since;  // RFC 3339, when it was published
  friend bool operator==(const AttachmentEntry&, const AttachmentEntry&) = default;
};

// A registered node (its node record, daemon/attachments.h).
struct NodeEntry {
  std::string node;
  std::string control;  // "host:port" of its daemon's control listener
  std::string since;    // RFC 3339, when its daemon started
  friend bool operator==(const NodeEntry&, const NodeEntry&) = default;
};

// A node id names an object (nodes/<id>.json), so it is checked before it does: 1 to 253
// bytes of lowercase letters, digits, '.', '_' and '-', starting and ending with a letter
// or digit. That takes every Kubernetes node name (a DNS subdomain, up to 253 bytes; the
// CSI node id is the node's name) and nothing that could climb out of nodes/.
inline constexpr size_t kMaxNodeIdBytes = 253;
Status ValidateNodeId(std::string_view id);

// A served volume as replies show it (docs/control.md "Volume object").
struct VolumeEntry {
  std::string name;  // "portalbd" for the default volume
  bool is_default = false;
  uint64_t size_bytes = 0;
  uint32_t block_size = 0;
  uint64_t live_bytes = 0;    // data blocks the current map references
  uint64_t bytes_stored = 0;  // segments + map SSTs
  uint64_t snapshots = 0;
  int attached = 0;  // NBD clients on the volume or its snapshots
  uint64_t epoch = 0;
  bool fenced = false;  // another daemon opened it: this one no longer writes
  std::string volume_uuid;
  std::string clone_of_volume;    // a clone's source, else ""
  std::string clone_of_snapshot;  // a clone's source, else ""
  // volume.inspect only ("snapshot_list"): the volume's snapshots, oldest first.
  std::optional<std::vector<SnapshotEntry>> snapshot_list{};
  // volume.inspect only ("owner"): its owner record, when one names a daemon.
  std::optional<OwnerEntry> owner{};
  // volume.inspect only ("attachment"): the node it is published to, if any.
  std::optional<AttachmentEntry> attachment{};
  friend bool operator==(const VolumeEntry&, const VolumeEntry&) = default;
};

// A kernel NBD device the daemon serves (docs/control.md "Device object").
struct DeviceEntry {
  std::string path;  // "/dev/nbd0"
  std::string volume;
  uint64_t size_bytes = 0;
  bool read_only = false;
  bool connected = false;  // the kernel holds a live connection to the daemon
  friend bool operator==(const DeviceEntry&, const DeviceEntry&) = default;
};

struct OkReply {};
struct DeviceReply {
  DeviceEntry device;
};
struct DeviceListReply {
  std::vector<DeviceEntry> devices;
};
// device.detach: `detached` false when nothing was attached (then `device` is empty).
struct DeviceDetachReply {
  bool detached = false;
  DeviceEntry device;
};
struct VolumeReply {
  VolumeEntry volume;
};
struct AttachmentReply {  // volume.publish
  AttachmentEntry attachment;
};
// volume.unpublish: `unpublished` false when no record named the node (nothing removed).
struct UnpublishReply {
  bool unpublished = false;
};
struct NodeReply {  // node.get
  NodeEntry node;
};
struct VolumeListReply {
  std::vector<VolumeEntry> volumes;
};
struct SnapshotReply {
  SnapshotEntry snapshot;
};
struct SnapshotListReply {
  std::vector<SnapshotEntry> snapshots;
};
struct RequestCount {  // object store requests of one kind since the daemon started
  std::string kind;    // "GET", "PUT_IF_ABSENT", ...
  uint64_t calls = 0;
  uint64_t errors = 0;
  uint64_t bytes = 0;
  friend bool operator==(const RequestCount&, const RequestCount&) = default;
};
struct DaemonStatus {
  std::string version;
  uint64_t size_bytes = 0;
  uint32_t block_size = 0;
  std::string storage_url;
  std::string nbd_address;
  std::string volume_uuid;
  uint64_t epoch = 0;
  bool fenced = false;
  uint64_t manifest_number = 0;
  uint64_t objects_stored = 0;  // segments + map SSTs the volume tracks
  uint64_t bytes_stored = 0;
  uint64_t live_bytes = 0;  // data blocks the current map references
  uint64_t segments = 0;
  uint64_t segment_bytes = 0;
  uint64_t map_ssts = 0;
  uint64_t map_bytes = 0;
  uint64_t buffer_bytes = 0;  // written, not yet in a segment (active + sealed buffers)
  uint64_t max_unflushed_bytes = 0;
  uint64_t cache_bytes = 0;
  uint64_t cache_capacity_bytes = 0;
  uint64_t cache_hits = 0;
  uint64_t cache_misses = 0;
  uint64_t write_stalls = 0;
  uint64_t shadowed_bytes = 0;    // estimated: referenced only by shadowed map entries
  uint64_t full_compactions = 0;  // run to release them
  uint64_t corrupt_refetches = 0;  // objects fetched again after failing verification
  uint64_t snapshots = 0;
  uint64_t nbd_connections = 0;
  // While segment uploads fail (they are retried; FLUSH and FUA wait): since when (RFC
  // 3339), failed attempts so far, and the last error. "", 0 and "" otherwise.
  std::string store_failing_since;
  uint64_t store_failed_attempts = 0;
  std::string store_error;
  // The local disk cache ([cache] disk_size_bytes; all 0 when there is none).
  bool disk_cache_enabled = false;
  uint64_t disk_cache_bytes = 0;
  uint64_t disk_cache_capacity_bytes = 0;
  uint64_t disk_cache_hits = 0;
  uint64_t disk_cache_misses = 0;
  uint64_t disk_cache_damaged = 0;  // entries that failed verification (dropped, fetched again)
  // Read-ahead (volume.h VolumeStats::read_ahead_*): GETs, their bytes, chunks used,
  // chunks evicted unused, failed read-aheads. 0 from daemons before them.
  uint64_t read_ahead_gets = 0;
  uint64_t read_ahead_bytes = 0;
  uint64_t read_ahead_hits = 0;
  uint64_t read_ahead_wasted = 0;
  uint64_t read_ahead_failed = 0;
  std::vector<RequestCount> requests;  // kinds with at least one call
  friend bool operator==(const DaemonStatus&, const DaemonStatus&) = default;
};
struct StatusReply {
  DaemonStatus status;
};
struct ErrorReply {
  std::string code;  // kBadRequest, "not_found", ...
  std::string message;
};

using Reply = std::variant<OkReply, SnapshotReply, SnapshotListReply, StatusReply, ErrorReply,
                           VolumeReply, VolumeListReply, DeviceReply, DeviceListReply,
                           DeviceDetachReply, AttachmentReply, UnpublishReply, NodeReply>;

// An error reply for a Status from the volume: the code is the Status code in snake_case
// ("not_found", "invalid_argument", "busy", "io_error", ...).
ErrorReply ErrorFromStatus(const Status& status);

// --- daemon side ----------------------------------------------------------------------

// Parses one request line (without its newline). An ErrorReply says what is wrong; the
// caller still echoes the id if the line had a valid one (`id_json` is set when it did).
std::variant<Request, ErrorReply> ParseRequest(std::string_view line, std::string* id_json);

// One reply line, newline included.
std::string EncodeReply(const Reply& reply, std::string_view id_json = "");

// Splits a byte stream into request lines of at most `max_line_bytes`. A longer line is
// reported once as too long and skipped up to its newline, so the stream stays in frame.
// Memory is bounded by max_line_bytes plus one Feed().
class LineReader {
 public:
  explicit LineReader(size_t max_line_bytes = kMaxRequestBytes) : max_(max_line_bytes) {}

  struct Line {
    std::string text;       // without "\n" (and without a trailing "\r")
    bool too_long = false;  // text is empty then
  };

  void Feed(std::string_view bytes);
  // The end of the stream: a last line without its newline becomes a line.
  void Finish();
  // The next complete line, if any.
  std::optional<Line> Next();
  // Bytes buffered that are not yet a complete line.
  size_t buffered() const { return partial_.size(); }

 private:
  size_t max_;
  std::string partial_;
  bool discarding_ = false;  // inside a too-long line: drop up to the next newline
  std::deque<Line> ready_;
};

// --- client side ----------------------------------------------------------------------

// One request line, newline included.
std::string EncodeRequest(const Request& request);

// Parses a reply line (without its newline). Corruption if it is not a valid reply.
Result<Reply> DecodeReply(std::string_view line);

}  // namespace portal::control
