// Owner records: where a volume's writer can be reached (docs/volumes.md "Owner records",
// docs/csi.md "How the controller reaches a volume's owner").
//
//   <url>/owners/<volume>.json     at the top-level store, for every volume (the default
//                                  one as "portalbd")
//   {"volume":"db","epoch":7,"node":"node-a","control":"10.0.0.5:7070",
//    "since":"2026-12-07T15:00:00.000000Z"}
//
// A daemon whose TCP control listener is on writes its volume's record right after the
// open (which fenced any previous writer: the epoch is the open's) and before it serves
// it; it deletes the record when it releases or cleanly closes the volume, only if the
// record still names its epoch and node. A record is a hint, never proof: a crashed
// owner leaves its record behind, and two opens racing may leave the older one's. A
// reader asks the daemon the record names; a daemon that does not hold the volume as its
// writer (never did, released it, or was fenced) answers "not_owner".
//
// Thread-safe (no state beyond the store).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "env/env.h"
#include "env/task.h"
#include "objstore/object_store.h"
#include "util/status.h"

namespace portal::daemon {

struct OwnerRecord {
  std::string volume;
  uint64_t epoch = 0;
  std::string node;     // [control] node_id (default: the host name)
  std::string control;  // "host:port" of its control listener ([control] advertise)
  std::string since;    // RFC 3339, when it opened the volume
  friend bool operator==(const OwnerRecord&, const OwnerRecord&) = default;
};

// "owners/<volume>.json" (relative to the top-level store, not a volume's prefix).
std::string OwnerKey(std::string_view volume);
std::string EncodeOwnerRecord(const OwnerRecord& record);
// Corruption for anything but a record of the layout above.
Result<OwnerRecord> DecodeOwnerRecord(std::string_view json);

// The record of `volume` in `root` (the storage URL's top-level store), nullopt when no
// daemon recorded itself as its writer (the volume is detached, or its owner has no
// control listener). Corruption for a damaged record; the store's error otherwise.
Task<Result<std::optional<OwnerRecord>>> FindOwner(objstore::ObjectStore& root, std::string volume);

// Writes and withdraws one daemon's records. `root` must outlive it.
class OwnerRecords {
 public:
  OwnerRecords(Env& env, objstore::ObjectStore& root, std::string node, std::string control)
      : env_(env), root_(root), node_(std::move(node)), control_(std::move(control)) {}

  // After `volume` opened at `epoch`: writes its record, unless one with a higher epoch
  // is there (a newer open took the volume over already; this one is fenced).
  Task<Status> Publish(std::string volume, uint64_t epoch);
  // After `volume` (opened at `epoch`) closed: deletes its record if it still names this
  // epoch and node. A record that is not ours is left alone.
  Task<Status> Withdraw(std::string volume, uint64_t epoch);
  // After `volume` was deleted: deletes its record, whoever wrote it.
  Task<Status> Remove(std::string volume);

 private:
  Env& env_;
  objstore::ObjectStore& root_;
  const std::string node_;
  const std::string control_;
};

}  // namespace portal::daemon
