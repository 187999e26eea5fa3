// Snapshots: create, list, delete, restore, and read-only snapshot devices.
// DESIGN.md "Versions, background work, restore, GC" and docs/volume.md "Snapshots".
#include <algorithm>
#include <set>

#include <fmt/format.h>

#include "util/log.h"
#include "volume/clone_protocol.h"
#include "volume/lsm_volume.h"
#include "volume/snapshot_device.h"

namespace portal::volume {
namespace {
auto Log() { return log::Get("portalbd::volume"); }
}  // namespace

SnapshotInfo LsmVolume::InfoLocked(const SnapDetail& d) const {
  return SnapshotInfo{d.ref.name,           d.ref.id,        d.ref.created_ns,
                      d.object.size_bytes, d.object.data_bytes, d.attached};
}

void LsmVolume::RecomputePinsLocked() {
  std::set<uint64_t> pinned_segments;
  gc_.pinned_ssts.clear();
  for (const auto& [name, d] : snaps_.by_name) {
    pinned_segments.insert(d->object.segments.begin(), d->object.segments.end());
    for (const auto& level : d->object.levels) {
      for (const auto& r : level) gc_.pinned_ssts.insert(r.key);
    }
  }
  seg_table_.SetPins(std::move(pinned_segments));
}

Task<Status> LsmVolume::LoadSnapshots() {
  std::vector<SnapshotRef> refs;
  {
    std::lock_guard lock(mu_);
    refs = head_.snapshots;
  }
  for (const SnapshotRef& ref : refs) {
    Result<SnapshotObject> obj = Status::Corruption("not read");
    Status read = co_await objstore::RefetchCorrupt(
        [&]() -> Task<Status> {
          auto bytes = co_await reads_.Get(ref.key);
          obj = bytes.ok() ? DecodeSnapshotObject(*bytes, ref.key, options_.keyring)
                           : Result<SnapshotObject>(bytes.status());
          co_return obj.status();
        },
        &corrupt_refetches_);
    if (!read.ok()) obj = read;
    if (!obj.ok() && obj.status().retryable()) {
      // The store is unreachable (the read already retried): fail the open instead of
      // serving a volume whose snapshot list silently misses one (dst seed 5261).
      co_return obj.status().WithContext("reading snapshot '" + ref.name + "' (" + ref.key + ")");
    }
    std::lock_guard lock(mu_);
    auto d = std::make_shared<SnapDetail>();
    d->ref = ref;
    if (!obj.ok()) {
      // Damaged or missing for good. It stays listed, and opening or restoring it fails
      // naming the object (never an empty or older device). Without its pins GC could
      // delete what the snapshot needs: stop deleting.
      snaps_.gc_blocked = true;
      d->damage = obj.status().WithContext(
          fmt::format("snapshot '{}' is unreadable ({})", ref.name, ref.key));
      Log()->error("snapshot unreadable; garbage collection disabled name={} key={} error=\"{}\"",
                   ref.name, ref.key, obj.status().ToString());
    } else {
      d->object = std::move(*obj);
    }
    snaps_.by_name[ref.name] = std::move(d);
  }
  std::lock_guard lock(mu_);
  RecomputePinsLocked();
  co_return Status::Ok();
}

std::vector<SnapshotInfo> LsmVolume::ListSnapshots() {
  std::lock_guard lock(mu_);
  std::vector<SnapshotInfo> out;
  for (const auto& [name, d] : snaps_.by_name) out.push_back(InfoLocked(*d));
  std::sort(out.begin(), out.end(), [](const SnapshotInfo& a, const SnapshotInfo& b) {
    return a.created_ns != b.created_ns ? a.created_ns < b.created_ns : a.name < b.name;
  });
  return out;
}

Result<SnapshotInfo> LsmVolume::GetSnapshot(const std::string& name) {
  std::lock_guard lock(mu_);
  auto it = snaps_.by_name.find(name);
  if (it == snaps_.by_name.end()) return Status::NotFound("no snapshot named '" + name + "'");
  return InfoLocked(*it->second);
}

Task<Result<SnapshotInfo>> LsmVolume::CreateSnapshot(std::string name) {
  CO_RETURN_IF_ERROR(CheckNotSalvage());
  CO_RETURN_IF_ERROR(ValidateSnapshotName(name));
  auto exists = [&] {
    std::lock_guard lock(mu_);
    return snaps_.by_name.count(name) > 0;
  };
  if (exists()) co_return Status::InvalidArgument("a snapshot named '" + name + "' already exists");
  // Every write acknowledged before now becomes durable and reaches the map.
  CO_RETURN_IF_ERROR(co_await Flush());
  auto guard = co_await jobs_mu_.Lock();
  if (exists()) co_return Status::InvalidArgument("a snapshot named '" + name + "' already exists");
  CO_RETURN_IF_ERROR(co_await FlushMemtableLocked());

  Manifest current;
  lsm::VersionEdit edit;  // the map stays; the snapshot list grows
  {
    std::lock_guard lock(mu_);
    current = ManifestOfLocked(*versions_.current());
    edit.base = versions_.current()->number;
  }
  SnapshotObject obj;
  obj.volume_uuid = current.volume_uuid;
  obj.name = name;
  obj.id = MakeUuid(env_.RandomU64(), env_.RandomU64());
  obj.created_ns = env_.WallNanos();
  obj.size_bytes = current.size_bytes;
  obj.block_size = current.block_size;
  obj.levels = current.levels;
  std::set<uint64_t> segments;
  for (const auto& level : obj.levels) {
    for (const auto& ref : level) {
      CO_ASSIGN_OR_RETURN(auto idx, co_await ssts_.Index(ref));
      for (const auto& [seg, blocks] : idx->segment_blocks) segments.insert(seg);
      obj.data_bytes += ref.data_blocks * block_size_;
    }
  }
  obj.segments.assign(segments.begin(), segments.end());
  const SnapshotRef ref{name, obj.id, obj.created_ns, SnapshotKey(obj.id)};
  const std::string bytes = EncodeSnapshotObject(obj, options_.keyring);
  // An existing object is our own lost acknowledgement (read back, dst seed 5562) or a
  // uuid collision (PreconditionFailed).
  auto put = co_await objstore::CreateOrVerify(env_, store_, ref.key, bytes,
                                               objstore::kUntilDefinite, &give_up_);
  Status st = put.status();
  if (put.ok() && *put == objstore::CreateOutcome::kTakenByOther) {
    st = Status::PreconditionFailed(ref.key + " exists with other contents");
  }
  CO_RETURN_IF_ERROR(st.WithContext("writing snapshot object " + ref.key));

  std::vector<SnapshotRef> snapshots = current.snapshots;
  snapshots.push_back(ref);
  CO_RETURN_IF_ERROR(co_await Commit(edit, &snapshots));
  auto d = std::make_shared<SnapDetail>();
  d->ref = ref;
  d->object = std::move(obj);
  std::lock_guard lock(mu_);
  snaps_.by_name[name] = d;
  RecomputePinsLocked();
  Log()->info("snapshot created name={} id={} data_bytes={}", name, ref.id, d->object.data_bytes);
  co_return InfoLocked(*d);
}

Task<Status> LsmVolume::DeleteSnapshot(std::string name) {
  CO_RETURN_IF_ERROR(CheckNotSalvage());
  auto guard = co_await jobs_mu_.Lock();
  std::shared_ptr<SnapDetail> d;
  std::vector<SnapshotRef> snapshots;
  lsm::VersionEdit edit;  // the map stays; the snapshot list shrinks
  {
    std::lock_guard lock(mu_);
    auto it = snaps_.by_name.find(name);
    if (it == snaps_.by_name.end()) co_return Status::NotFound("no snapshot named '" + name + "'");
    d = it->second;
    if (d->attached > 0) {
      co_return Status::Busy(fmt::format(
          "snapshot '{}' is attached by {} client(s) as portalbd@{}; disconnect them first", name,
          d->attached, name));
    }
    d->deleting = true;  // refuse new attachments while the manifest commits
    snapshots = head_.snapshots;
    edit.base = versions_.current()->number;
  }
  std::erase_if(snapshots, [&](const SnapshotRef& r) { return r.name == name; });
  // Clones read through the snapshot: refused while any references it (clone.h). The
  // mark first, then the list: a clone created meanwhile sees the mark and withdraws.
  // (A refused or failed mark withdraws itself.)
  Status st = co_await MarkSnapshotDeleting(env_, store_, name, d->ref.id, opened_.epoch);
  if (!st.ok()) {
    std::lock_guard lock(mu_);
    d->deleting = false;
    co_return st;
  }
  st = co_await Commit(edit, &snapshots);
  if (!st.ok()) {
    bool landed_maybe;
    {
      std::lock_guard lock(mu_);
      d->deleting = false;
      // Fenced or giving up: the commit may have landed (a lost acknowledgement), so the
      // mark stays; it stops refusing clones once a newer writer lists the snapshot
      // (clone_protocol.h). Otherwise the commit failed for good: still a snapshot.
      landed_maybe = lifecycle_.fenced || give_up_.cancelled();
    }
    if (!landed_maybe) (void)co_await FinishSnapshotDelete(env_, store_, d->ref.id, opened_.epoch);
    co_return st;
  }
  {
    std::lock_guard lock(mu_);
    snaps_.by_name.erase(name);
    RecomputePinsLocked();
    // Its SSTs that the live map no longer uses become garbage (GC checks again).
    const int64_t now = static_cast<int64_t>(env_.NowNanos());
    for (const auto& level : d->object.levels) {
      for (const auto& r : level) gc_.retired_ssts.emplace(r.key, now);
    }
    seg_table_.StartGrace(d->object.segments, now);
  }
  Status del = co_await store_.Delete(d->ref.key);
  // The mark goes only after the object: a clone creator that finds no mark must then
  // find no object (a leftover mark is settled at the next open).
  if (del.ok()) del = co_await FinishSnapshotDelete(env_, store_, d->ref.id, opened_.epoch);
  if (!del.ok()) {
    Log()->warn("could not delete snapshot object key={} error=\"{}\"", d->ref.key, del.ToString());
  }
  Log()->info("snapshot deleted name={} id={}", name, d->ref.id);
  co_return Status::Ok();
}

Task<Status> LsmVolume::EnterWrite() {
  for (;;) {
    const uint64_t seen = changed_.epoch();
    {
      std::lock_guard lock(mu_);
      if (!snaps_.restoring) {
        ++snaps_.writes_inflight;
        co_return Status::Ok();
      }
    }
    co_await changed_.Wait(seen);
  }
}

void LsmVolume::LeaveWrite() {
  bool wake;
  {
    std::lock_guard lock(mu_);
    wake = --snaps_.writes_inflight == 0 && snaps_.restoring;
  }
  if (wake) changed_.NotifyAll();
}

Task<Status> LsmVolume::RestoreSnapshot(std::string name) {
  CO_RETURN_IF_ERROR(CheckNotSalvage());
  std::shared_ptr<SnapDetail> d;
  {
    std::lock_guard lock(mu_);
    auto it = snaps_.by_name.find(name);
    if (it == snaps_.by_name.end()) co_return Status::NotFound("no snapshot named '" + name + "'");
    if (snaps_.restoring) co_return Status::Busy("a restore is already running");
    if (lifecycle_.fenced) co_return lifecycle_.FencedError();
    if (!it->second->damage.ok()) co_return it->second->damage;
    d = it->second;
    snaps_.restoring = true;  // new writes wait from here on
  }
  struct Done {
    LsmVolume* v;
    ~Done() {
      {
        std::lock_guard lock(v->mu_);
        v->snaps_.restoring = false;
      }
      v->changed_.NotifyAll();
    }
  } done{this};
  // Drain: writes in flight finish, then everything issued becomes durable.
  for (;;) {
    const uint64_t seen = changed_.epoch();
    {
      std::lock_guard lock(mu_);
      if (snaps_.writes_inflight == 0) break;
      if (lifecycle_.fenced) co_return lifecycle_.FencedError();
    }
    co_await changed_.Wait(seen);
  }
  CO_RETURN_IF_ERROR(co_await Flush());
  auto guard = co_await jobs_mu_.Lock();  // no background job runs from here
  {
    // A delete may have committed while we waited; GC may then have collected what only
    // the snapshot referenced. Under jobs_mu_ neither can happen any more.
    std::lock_guard lock(mu_);
    auto it = snaps_.by_name.find(name);
    if (it == snaps_.by_name.end() || it->second != d) {
      co_return Status::NotFound("no snapshot named '" + name +
                                 "' (deleted while the restore waited)");
    }
  }
  for (;;) {  // nor a GC relocation upload (it would apply to the abandoned timeline)
    const uint64_t seen = changed_.epoch();
    {
      std::lock_guard lock(mu_);
      if (!uploader_.DropRelocationLocked()) break;
      if (lifecycle_.fenced) co_return lifecycle_.FencedError();
      if (lifecycle_.stop) co_return Status::Shutdown("volume is closing");
    }
    co_await changed_.Wait(seen);
  }
  // Liveness of the restored map, computed before anything changes.
  std::map<uint64_t, uint64_t> live;
  for (const auto& level : d->object.levels) {
    for (const auto& ref : level) {
      CO_ASSIGN_OR_RETURN(auto idx, co_await ssts_.Index(ref));
      for (const auto& [seg, blocks] : idx->segment_blocks) live[seg] += blocks;
    }
  }
  // A new version (a new generation): a job computed against the old map cannot commit.
  lsm::VersionEdit next;
  Levels old_levels;
  {
    std::lock_guard lock(mu_);
    next.base = versions_.current()->number;
    old_levels = versions_.current()->levels;
    next.replace_levels = d->object.levels;
    // Segments issued so far belong to the abandoned timeline: never replay them.
    next.applied_segment = uploader_.NextSegmentIdLocked() - 1;
    next.applied_seq = map_.next_seq - 1;
  }
  CO_RETURN_IF_ERROR(co_await Commit(next));
  {
    std::lock_guard lock(mu_);
    map_.ResetForRestore(*next.applied_segment, *next.applied_seq);
    const int64_t now = static_cast<int64_t>(env_.NowNanos());
    seg_table_.SetLive(live, now);
    for (const auto& level : old_levels) {
      for (const auto& r : level) gc_.retired_ssts.emplace(r.key, now);  // GC re-checks
    }
  }
  Log()->info("snapshot restored name={} id={} applied_segment={}", name, d->ref.id,
              *next.applied_segment);
  co_return Status::Ok();
}

Result<std::shared_ptr<BlockDevice>> LsmVolume::OpenSnapshot(const std::string& name) {
  std::shared_ptr<SnapDetail> d;
  {
    std::lock_guard lock(mu_);
    auto it = snaps_.by_name.find(name);
    if (it == snaps_.by_name.end() || it->second->deleting) {
      return Status::NotFound("no snapshot named '" + name + "'");
    }
    if (!it->second->damage.ok()) return it->second->damage;
    d = it->second;
    ++d->attached;
  }
  return std::shared_ptr<BlockDevice>(std::make_shared<SnapshotDevice>(shared_from_this(), d));
}

void LsmVolume::Detach(const std::shared_ptr<SnapDetail>& d) {
  std::lock_guard lock(mu_);
  --d->attached;
}

}  // namespace portal::volume
