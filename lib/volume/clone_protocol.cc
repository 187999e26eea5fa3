// The clone protocol: create, reference, refuse a snapshot delete, delete and sweep a
// volume (clone.h; the argument and the crash points are in docs/volume.md "Clones").
//
// Every race between two sides is settled the same way, without a lock: each side
// writes its own record first and then looks for the other's (S3 is strongly
// consistent: a read or list after a write's reply sees it). A creator writes its
// reference, then checks the parent's tombstone, the snapshot's delete mark and the
// snapshot object; a deleter writes the mark or tombstone, then lists the references.
// Whichever checks second sees the other's record, so at most one of them proceeds.
#include "volume/clone_protocol.h"

#include <fmt/format.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <algorithm>
#include <mutex>
#include <set>
#include <vector>

#include "objstore/conditional_create.h"
#include "objstore/retry.h"
#include "objstore/retrying_store.h"
#include "util/log.h"
#include "volume/json_seal.h"
#include "volume/manifest_log.h"
#include "volume/segment_format.h"
#include "volume/snapshot.h"

namespace portal::volume {
namespace {
auto Log() { return log::Get("portalbd::volume"); }
constexpr uint32_t kWriteAttempts = 5;

Task<Status> PutRetried(Env& env, objstore::ObjectStore& store, const std::string& key,
                        const std::string& body) {
  co_return co_await RetryUnavailable(
      env, store, [&]() -> Task<Status> { co_return co_await store.Put(key, body); },
      kWriteAttempts);
}
Task<Status> DeleteRetried(Env& env, objstore::ObjectStore& store, const std::string& key) {
  co_return co_await RetryUnavailable(
      env, store, [&]() -> Task<Status> { co_return co_await store.Delete(key); }, kWriteAttempts);
}
// DELETEs in flight at once while sweeping a deleted volume: one at a time, a volume of
// thousands of objects took a round trip each; more would only queue in the store's
// connection pool.
constexpr size_t kDeletesInFlight = 16;
// Deletes `keys`, at most kDeletesInFlight at once. The first error is returned once
// every DELETE started has ended; whatever is left, the next sweep deletes.
Task<Status> DeleteAllRetried(Env& env, objstore::ObjectStore& store,
                              const std::vector<std::string>& keys) {
  std::mutex mu;  // the workers may resume on different threads
  size_t next = 0;
  Status failed;
  auto worker = [&]() -> Task<Status> {
    for (;;) {
      std::string key;
      {
        std::lock_guard lock(mu);
        if (next >= keys.size() || !failed.ok()) co_return Status::Ok();
        key = keys[next++];
      }
      Status st = co_await DeleteRetried(env, store, key);
      if (!st.ok()) {
        std::lock_guard lock(mu);
        if (failed.ok()) failed = std::move(st);
      }
    }
  };
  std::vector<Task<Status>> workers;
  for (size_t i = 0; i < std::min(kDeletesInFlight, keys.size()); ++i) workers.push_back(worker());
  (void)co_await WhenAll(std::move(workers));
  co_return failed;
}
// Whether `key` exists (a HEAD, retried).
Task<Result<bool>> Exists(Env& env, objstore::ObjectStore& store, const std::string& key) {
  objstore::RetryingReadStore reads(store, env);
  auto h = co_await reads.Head(key);
  if (h.ok()) co_return true;
  if (h.status().IsNotFound()) co_return false;
  co_return h.status();
}
Result<objstore::ObjectStore*> Resolve(const VolumeResolver& resolve, const std::string& name) {
  if (!resolve) return Status::InvalidArgument("no volume resolver given");
  return resolve(name);
}
}  // namespace

Task<Result<std::optional<CloneRecord>>> ReadCloneRecord(Env& env, objstore::ObjectStore& store,
                                                         std::atomic<uint64_t>* corrupt_refetches) {
  objstore::RetryingReadStore reads(store, env);
  Result<CloneRecord> rec = Status::Corruption("not read");
  Status st = co_await objstore::RefetchCorrupt(
      [&]() -> Task<Status> {
        auto bytes = co_await reads.Get(kCloneRecordKey);
        rec = bytes.ok() ? DecodeCloneRecord(*bytes) : Result<CloneRecord>(bytes.status());
        co_return rec.status();
      },
      corrupt_refetches);
  if (st.IsNotFound()) co_return std::optional<CloneRecord>();
  if (!st.ok()) co_return st.WithContext(store.url());
  co_return std::optional<CloneRecord>(std::move(*rec));
}

Task<Result<std::vector<std::string>>> ListCloneRefs(Env& env, objstore::ObjectStore& store,
                                                     const std::string& snapshot_id) {
  objstore::RetryingReadStore reads(store, env);
  const std::string prefix = CloneRefPrefix(snapshot_id);
  CO_ASSIGN_OR_RETURN(auto objects, co_await reads.List(prefix));
  std::vector<std::string> names;
  for (const auto& o : objects) names.push_back(o.key.substr(prefix.size()));
  co_return names;
}

namespace {
// The snapshot's delete marks, read after our reference was written: `*refused` stays
// OK when none stands, else says why the clone is refused; the return is an error when
// the check could not be made. A mark of epoch e whose snapshot the latest
// manifest, of a newer epoch, still lists is stale: writer e was superseded before its
// delete committed, and a superseded writer can commit nothing (its manifests collide
// with its successor's opener), so that delete never will. The latest manifest's own
// writer may be deleting right now (its mark: Busy); one that marks after our listing
// lists our reference after and refuses itself. (dst seed 768287148537: a superseded
// writer's mark, landed after its successor cleared marks at open, refused every clone.)
Task<Status> CheckDeleteMarks(Env& env, objstore::ObjectStore& parent, const CloneRecord& record,
                              const crypto::Keyring* keyring, Status* refused) {
  objstore::RetryingReadStore reads(parent, env);
  CO_ASSIGN_OR_RETURN(auto objects,
                      co_await reads.List(SnapshotDeletingPrefix(record.snapshot_id)));
  const Status busy =
      Status::Busy(fmt::format("snapshot {}@{} is being deleted", record.parent, record.snapshot));
  uint64_t newest = 0;
  bool any = false;
  for (const auto& o : objects) {
    std::string id;
    uint64_t epoch;
    if (!ParseSnapshotDeletingKey(o.key, &id, &epoch) || id != record.snapshot_id) continue;
    if (epoch == 0) {  // an older version's mark names no writer: it stands
      *refused = busy;
      co_return Status::Ok();
    }
    any = true;
    newest = std::max(newest, epoch);
  }
  if (!any) co_return Status::Ok();
  ManifestLog log(parent, env, nullptr, keyring);
  auto latest = co_await log.ReadLatest(0);
  if (latest.status().IsNotFound()) {
    *refused = Status::NotFound(fmt::format("volume '{}' holds no volume", record.parent));
    co_return Status::Ok();
  }
  CO_RETURN_IF_ERROR(latest.status());
  const Manifest& m = latest->second;
  const bool listed = std::any_of(m.snapshots.begin(), m.snapshots.end(),
                                  [&](const SnapshotRef& s) { return s.id == record.snapshot_id; });
  if (!listed) {
    *refused =
        Status::NotFound(fmt::format("snapshot {}@{} was deleted", record.parent, record.snapshot));
    co_return Status::Ok();
  }
  if (newest >= m.epoch) {
    *refused = busy;
    co_return Status::Ok();
  }
  Log()->info("ignoring a superseded writer's delete mark snapshot={}@{} mark_epoch={} epoch={}",
              record.parent, record.snapshot, newest, m.epoch);
  co_return Status::Ok();
}
}  // namespace

Task<Status> ConfirmCloneReference(Env& env, const VolumeResolver& resolve,
                                   const CloneRecord& record, const crypto::Keyring* keyring) {
  CO_ASSIGN_OR_RETURN(objstore::ObjectStore * parent, Resolve(resolve, record.parent));
  const std::string ref = CloneRefKey(record.snapshot_id, record.name);
  nlohmann::json body{{"clone", record.name}, {"snapshot", record.snapshot}};
  CO_RETURN_IF_ERROR((co_await PutRetried(env, *parent, ref, body.dump()))
                         .WithContext("writing the clone reference " + ref));
  // Then the other side's records: the tombstone, the delete mark, and the snapshot
  // object (a delete removes the object before its mark, so a creator that finds no
  // mark finds no object when the delete completed meanwhile).
  Status refused;
  CO_ASSIGN_OR_RETURN(bool deleted, co_await Exists(env, *parent, kTombstoneKey));
  if (deleted) {
    refused = Status::NotFound(fmt::format("volume '{}' is deleted", record.parent));
  } else {
    CO_RETURN_IF_ERROR(co_await CheckDeleteMarks(env, *parent, record, keyring, &refused));
    if (refused.ok()) {
      CO_ASSIGN_OR_RETURN(bool alive, co_await Exists(env, *parent, record.snapshot_key));
      if (!alive) {
        refused = Status::NotFound(
            fmt::format("snapshot {}@{} was deleted", record.parent, record.snapshot));
      }
    }
  }
  if (refused.ok()) co_return Status::Ok();
  Status undo = co_await DeleteRetried(env, *parent, ref);
  if (undo.ok()) undo = co_await SweepDeletedVolume(env, resolve, *parent, keyring);  // we may be last
  if (!undo.ok()) {
    Log()->warn("could not remove the refused clone reference key={} error=\"{}\"", ref,
                undo.ToString());
  }
  co_return refused;
}

Task<Status> CreateClone(Env& env, const VolumeResolver& resolve, const std::string& parent_name,
                         const std::string& snapshot_name, objstore::ObjectStore& child_store,
                         const std::string& child_name, const crypto::Keyring* keyring) {
  // Clone names are keys in the parent's store: the snapshot name rules fit.
  CO_RETURN_IF_ERROR(ValidateSnapshotName(child_name).WithContext("clone name"));
  CO_ASSIGN_OR_RETURN(objstore::ObjectStore * parent, Resolve(resolve, parent_name));
  objstore::RetryingReadStore child_reads(child_store, env);
  CO_ASSIGN_OR_RETURN(auto existing, co_await child_reads.List("manifest/"));
  CO_ASSIGN_OR_RETURN(bool has_record, co_await Exists(env, child_store, kCloneRecordKey));
  if (!existing.empty() || has_record) {
    co_return Status::InvalidArgument(
        fmt::format("volume '{}' already exists ({})", child_name, child_store.url()));
  }
  ManifestLog log(*parent, env, nullptr, keyring);
  auto latest = co_await log.ReadLatest(0);
  if (latest.status().IsNotFound()) {
    co_return Status::NotFound(fmt::format("volume '{}' holds no volume", parent_name));
  }
  CO_RETURN_IF_ERROR(latest.status());
  const SnapshotRef* snap = nullptr;
  for (const auto& s : latest->second.snapshots) {
    if (s.name == snapshot_name) snap = &s;
  }
  if (!snap) {
    co_return Status::NotFound(
        fmt::format("volume '{}' has no snapshot named '{}'", parent_name, snapshot_name));
  }
  objstore::RetryingReadStore parent_reads(*parent, env);
  auto snap_bytes = co_await parent_reads.Get(snap->key);
  CO_RETURN_IF_ERROR(snap_bytes.status().WithContext("reading snapshot " + snap->key));
  CO_ASSIGN_OR_RETURN(SnapshotObject snap_obj, DecodeSnapshotObject(*snap_bytes, snap->key, keyring));
  CloneRecord record{child_name, parent_name, snapshot_name,
                     snap->id,   snap->key,   static_cast<int64_t>(env.WallNanos())};
  CO_RETURN_IF_ERROR((co_await objstore::PutIfAbsentOrSame(env, child_store, kCloneRecordKey,
                                                           EncodeCloneRecord(record)))
                         .WithContext("writing " + std::string(kCloneRecordKey)));
  Status st = co_await ConfirmCloneReference(env, resolve, record, keyring);
  if (!st.ok()) {
    (void)co_await DeleteRetried(env, child_store, kCloneRecordKey);  // never completed
    co_return st;
  }
  // The first manifest: from here on the clone is complete (its opens no longer check
  // the parent). One an opener created meanwhile (after the same check) is as good.
  Manifest m;
  m.volume_uuid = MakeUuid(env.RandomU64(), env.RandomU64());
  m.size_bytes = snap_obj.size_bytes;
  m.block_size = snap_obj.block_size;
  m.epoch = 1;
  m.epoch_manifest = 1;
  ManifestLog child_log(child_store, env, nullptr, keyring);
  st = co_await child_log.Create(1, m);
  if (!st.ok() && !st.IsPreconditionFailed()) co_return st.WithContext("creating the clone");
  Log()->info("clone created name={} base={}@{} snapshot_id={}", child_name, parent_name,
              snapshot_name, snap->id);
  co_return Status::Ok();
}

Task<Status> MarkSnapshotDeleting(Env& env, objstore::ObjectStore& store, const std::string& name,
                                  const std::string& id, uint64_t epoch) {
  const std::string mark = SnapshotDeletingKey(id, epoch);
  nlohmann::json body{
      {"snapshot", name}, {"epoch", epoch}, {"deleting_ns", static_cast<int64_t>(env.WallNanos())}};
  Status st = (co_await PutRetried(env, store, mark, body.dump()))
                  .WithContext("marking snapshot '" + name + "' deleting");
  Result<std::vector<std::string>> clones = Status::Unavailable("not listed");
  if (st.ok()) {
    clones = co_await ListCloneRefs(env, store, id);
  } else {
    clones = st;
  }
  if (clones.ok() && clones->empty()) co_return Status::Ok();
  // Refused or failed: nothing was deleted, so nothing stays marked (a failed PUT may
  // have landed too). The mark is ours alone; a leftover is cleared at the next open.
  (void)co_await DeleteRetried(env, store, mark);
  if (!clones.ok()) co_return clones.status();
  std::string names;
  for (const auto& c : *clones) names += (names.empty() ? "" : ", ") + c;
  co_return Status::Busy(fmt::format("snapshot '{}' has {} clone(s): {}; delete them first", name,
                                     clones->size(), names));
}

Task<Status> FinishSnapshotDelete(Env& env, objstore::ObjectStore& store, const std::string& id,
                                  uint64_t epoch) {
  co_return co_await DeleteRetried(env, store, SnapshotDeletingKey(id, epoch));
}

Task<Status> ClearStaleDeleteMarks(Env& env, objstore::ObjectStore& store,
                                   const std::vector<SnapshotRef>& listed, uint64_t epoch) {
  objstore::RetryingReadStore reads(store, env);
  CO_ASSIGN_OR_RETURN(auto objects, co_await reads.List("clones/"));
  for (const auto& o : objects) {
    std::string id;
    uint64_t mark_epoch;
    if (!ParseSnapshotDeletingKey(o.key, &id, &mark_epoch)) continue;  // a reference
    // A newer writer's (we are superseded already): its delete may be running.
    if (mark_epoch >= epoch) continue;
    bool is_listed = false;
    for (const auto& s : listed) is_listed |= s.id == id;
    if (!is_listed) CO_RETURN_IF_ERROR(co_await DeleteRetried(env, store, SnapshotKey(id)));
    CO_RETURN_IF_ERROR(co_await DeleteRetried(env, store, o.key));
    Log()->info("cleared a crashed snapshot delete's mark key={} snapshot_listed={}", o.key,
                is_listed);
  }
  co_return Status::Ok();
}

Task<Status> DeleteVolume(Env& env, const VolumeResolver& resolve, objstore::ObjectStore& store,
                          const crypto::Keyring* keyring) {
  CO_ASSIGN_OR_RETURN(bool tombstoned, co_await Exists(env, store, kTombstoneKey));
  if (!tombstoned) {
    nlohmann::json body{{"deleted_ns", static_cast<int64_t>(env.WallNanos())}};
    CO_RETURN_IF_ERROR((co_await PutRetried(env, store, kTombstoneKey, body.dump()))
                           .WithContext("writing the tombstone of " + store.url()));
  }
  co_return co_await SweepDeletedVolume(env, resolve, store, keyring);
}

Task<Status> SweepDeletedVolume(Env& env, const VolumeResolver& resolve,
                                objstore::ObjectStore& store, const crypto::Keyring* keyring) {
  CO_ASSIGN_OR_RETURN(bool tombstoned, co_await Exists(env, store, kTombstoneKey));
  if (!tombstoned) co_return Status::Ok();
  objstore::RetryingReadStore reads(store, env);
  // References are listed after the tombstone is known to exist: a creator that wrote its
  // reference after this list finds the tombstone and withdraws.
  CO_ASSIGN_OR_RETURN(auto listed, co_await reads.List("clones/"));
  std::vector<objstore::ObjectInfo> refs;  // references, not delete marks
  std::set<std::string> referenced;        // snapshot ids
  for (const auto& o : listed) {
    const auto slash = o.key.find('/', 7);
    if (slash == std::string::npos) continue;
    referenced.insert(o.key.substr(7, slash - 7));
    refs.push_back(o);
  }
  std::set<std::string> keep{kTombstoneKey, kCloneRecordKey};
  for (const auto& o : refs) keep.insert(o.key);
  for (const std::string& id : referenced) {
    auto bytes = co_await reads.Get(SnapshotKey(id));
    if (bytes.status().IsNotFound()) continue;  // a withdrawn creator's reference
    CO_RETURN_IF_ERROR(bytes.status());
    CO_ASSIGN_OR_RETURN(SnapshotObject snap, DecodeSnapshotObject(*bytes, SnapshotKey(id), keyring));
    keep.insert(SnapshotKey(id));
    for (const auto& level : snap.levels) {
      for (const auto& r : level) keep.insert(r.key);
    }
    for (uint64_t seg : snap.segments) keep.insert(SegmentKey(seg));
  }
  CO_ASSIGN_OR_RETURN(auto all, co_await reads.List(""));
  // In any order, and several at once: nothing reads a tombstoned store, and a sweep cut
  // short is finished by the next one (the keep set is computed again).
  std::vector<std::string> doomed;
  for (const auto& o : all) {
    if (!keep.count(o.key)) doomed.push_back(o.key);
  }
  CO_RETURN_IF_ERROR(co_await DeleteAllRetried(env, store, doomed));
  if (!refs.empty()) {
    Log()->info("deleted volume keeps what its clones need url={} snapshots={}", store.url(),
                referenced.size());
    co_return Status::Ok();
  }
  // Nothing references it any more: its own reference on its parent goes (which may let
  // a deleted parent go too), then the record, then the tombstone.
  CO_ASSIGN_OR_RETURN(auto record, co_await ReadCloneRecord(env, store));
  if (record) {
    Result<objstore::ObjectStore*> parent = Resolve(resolve, record->parent);
    if (parent.ok()) {
      CO_RETURN_IF_ERROR(
          co_await DeleteRetried(env, **parent, CloneRefKey(record->snapshot_id, record->name)));
      CO_RETURN_IF_ERROR(co_await SweepDeletedVolume(env, resolve, **parent, keyring));
    } else if (!parent.status().IsNotFound()) {
      co_return parent.status();
    }  // NotFound: the parent is gone from the registry (swept): nothing to release
    CO_RETURN_IF_ERROR(co_await DeleteRetried(env, store, kCloneRecordKey));
  }
  CO_RETURN_IF_ERROR(co_await DeleteRetried(env, store, kTombstoneKey));
  Log()->info("volume deleted url={}", store.url());
  co_return Status::Ok();
}

}  // namespace portal::volume
