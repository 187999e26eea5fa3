// Clones: writable volumes made from another volume's snapshot without copying data, and
// the reference records that keep garbage collection safe across them (docs/volume.md
// "Clones"). Each volume lives in its own ObjectStore (for the daemon, a prefix view of
// one bucket); a volume is named by the daemon's registry, and VolumeResolver maps a name
// to its store.
//
// Objects (all JSON with a "checksum" seal, see json_seal.h):
//   <child>  clone.json                        the clone's base: parent name, snapshot
//                                              name, id and object key; written first,
//                                              never changed, deleted last
//   <parent> clones/<snapshot-id>/<child>      a reference: the snapshot has a clone
//   <parent> clones/<snapshot-id>.<epoch>.deleting
//                                              a snapshot delete in progress, by the
//                                              writer of that epoch (20 digits)
//   <any>    deleted.json                      tombstone: the volume is deleted; what its
//                                              referenced snapshots need stays until the
//                                              last reference goes
//
// Only the owner of a store deletes objects in it, except a tombstoned store, which has
// no owner: whoever removes its last reference (or deletes it) sweeps it. Two daemons
// agree without a lock by writing their record first and then checking the other's
// (both sides of a create/delete race cannot pass their check; see docs).
#pragma once

#include <atomic>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "env/async.h"
#include "env/env.h"
#include "objstore/object_store.h"
#include "util/status.h"
#include "volume/options.h"

namespace portal::volume {

inline constexpr char kCloneRecordKey[] = "clone.json";
inline constexpr char kTombstoneKey[] = "deleted.json";

// clone.json: what the clone reads through to.
struct CloneRecord {
  std::string name;          // the clone's own volume name
  std::string parent;        // the parent's volume name (VolumeResolver's key)
  std::string snapshot;      // the parent's snapshot name, when the clone was made
  std::string snapshot_id;   // its uuid (names outlive snapshots; ids do not)
  std::string snapshot_key;  // snap/<uuid>.json in the parent's store
  int64_t created_ns = 0;
};

std::string EncodeCloneRecord(const CloneRecord& r);
Result<CloneRecord> DecodeCloneRecord(std::string_view json);

// The key of the reference `child` holds on the parent's snapshot `snapshot_id`.
std::string CloneRefKey(const std::string& snapshot_id, const std::string& child);
std::string CloneRefPrefix(const std::string& snapshot_id);
// A snapshot delete's mark: one per deleting writer, named by its epoch, so that no
// writer's mark is ever overwritten or removed by another's. Marks written before epochs
// were named (`clones/<id>.deleting`) are still honoured (epoch 0 when parsed).
std::string SnapshotDeletingKey(const std::string& snapshot_id, uint64_t epoch);
std::string SnapshotDeletingKey(const std::string& snapshot_id);     // the unnamed, older form
std::string SnapshotDeletingPrefix(const std::string& snapshot_id);  // lists both forms
// False for keys that are no delete mark (references, other objects).
bool ParseSnapshotDeletingKey(std::string_view key, std::string* snapshot_id, uint64_t* epoch);

// The clone record of `store`, or nullopt for a volume that is not a clone. Damaged bytes
// are fetched again (counted in `corrupt_refetches`, if set) before Corruption.
Task<Result<std::optional<CloneRecord>>> ReadCloneRecord(
    Env& env, objstore::ObjectStore& store, std::atomic<uint64_t>* corrupt_refetches = nullptr);

// Creates the clone `child_name` (an empty store, `child_store`) of snapshot
// `snapshot_name` of volume `parent_name`. No data is copied: the clone is writable at
// once (OpenVolume with options.resolve_volume set), reads what it has not written
// from the snapshot, and neither side ever sees the other's later writes.
// Order: clone.json in the child; the reference in the parent; then a re-check that the
// parent is not deleted and the snapshot neither deleted nor being deleted (on failure
// the reference is removed again: NotFound / Busy naming the snapshot); then the
// clone's first manifest. An open that finds clone.json without a manifest (a crash cut
// the create short) repeats reference and check (idempotent) before creating it, so a
// crash anywhere leaves either no clone, or a clone.json that the next open completes
// or DeleteVolume removes. InvalidArgument: a bad name, a child store that already
// holds a volume, an unknown parent.
Task<Status> CreateClone(Env& env, const VolumeResolver& resolve, const std::string& parent_name,
                         const std::string& snapshot_name, objstore::ObjectStore& child_store,
                         const std::string& child_name, const crypto::Keyring* keyring = nullptr);

// The clones referencing `snapshot_id` of the volume in `store` (their names).
Task<Result<std::vector<std::string>>> ListCloneRefs(Env& env, objstore::ObjectStore& store,
                                                     const std::string& snapshot_id);

// Deletes the volume in `store` (its owner must have closed it; the daemon refuses while
// clients are attached). Writes the tombstone, then sweeps: with no clone referencing any
// of its snapshots every object goes (a clone's own reference on its parent last but for
// clone.json and the tombstone); otherwise everything but what the referenced snapshots
// need (their objects, SSTs and segments, clone.json, references, tombstone) goes, and
// removing the last reference later sweeps the rest. Idempotent: a crash at any point
// is finished by calling it again (or by any later sweep of the store).
Task<Status> DeleteVolume(Env& env, const VolumeResolver& resolve, objstore::ObjectStore& store,
                          const crypto::Keyring* keyring = nullptr);

// The sweep of a tombstoned store (DeleteVolume's second half); OK and nothing done when
// the store holds no tombstone.
Task<Status> SweepDeletedVolume(Env& env, const VolumeResolver& resolve,
                                objstore::ObjectStore& store,
                                const crypto::Keyring* keyring = nullptr);

}  // namespace portal::volume
