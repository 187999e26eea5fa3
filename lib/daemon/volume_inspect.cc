#include "daemon/volume_inspect.h"

#include <fmt/format.h>

#include <algorithm>

#include "daemon/attachments.h"
#include "daemon/control_handler.h"  // VolumeEntryOf
#include "daemon/owner_record.h"
#include "util/log.h"
#include "volume/snapshot.h"
#include "volume/stored_volume.h"

namespace portal::daemon {
namespace {

auto Log() { return log::Get("portalbd::control"); }

control::SnapshotEntry EntryOf(const volume::SnapshotInfo& s) {
  return control::SnapshotEntry{s.name, s.id, s.created_ns, s.size_bytes, s.data_bytes, s.attached};
}

control::VolumeEntry FromRecord(const volume::VolumeRecord& r) {
  control::VolumeEntry e;
  e.name = r.name;
  e.size_bytes = r.size_bytes;
  e.block_size = r.block_size;
  if (r.clone_of) {
    e.clone_of_volume = r.clone_of->volume;
    e.clone_of_snapshot = r.clone_of->snapshot;
  }
  e.snapshot_list.emplace();
  return e;
}

// The store's view of a volume that is not served here: read, never written.
Task<Result<control::VolumeEntry>> ReadStored(VolumeSet& set, const volume::VolumeRecord& r) {
  control::VolumeEntry e = FromRecord(r);
  CO_ASSIGN_OR_RETURN(objstore::ObjectStore * view, set.ResolveStore(r.name));
  const crypto::Keyring* keyring = set.options().keyring;
  auto latest = co_await volume::ReadNewestManifest(set.env(), *view, keyring);
  CO_RETURN_IF_ERROR(latest.status().WithContext("volume " + r.name));
  // No manifest yet: a create cut short before its first commit; the record says it all.
  if (!latest->has_value()) co_return e;
  const volume::Manifest& m = **latest;
  e.size_bytes = m.size_bytes;
  e.block_size = m.block_size;
  e.epoch = m.epoch;
  e.volume_uuid = m.volume_uuid;
  e.snapshots = m.snapshots.size();
  for (const volume::SnapshotRef& ref : m.snapshots) {
    auto bytes = co_await view->Get(ref.key);
    CO_RETURN_IF_ERROR(
        bytes.status().WithContext(fmt::format("volume {}: snapshot {}", r.name, ref.name)));
    CO_ASSIGN_OR_RETURN(volume::SnapshotObject obj,
                        volume::DecodeSnapshotObject(*bytes, ref.key, keyring));
    e.snapshot_list->push_back(control::SnapshotEntry{ref.name, ref.id, ref.created_ns,
                                                      obj.size_bytes, obj.data_bytes, 0});
  }
  std::sort(e.snapshot_list->begin(), e.snapshot_list->end(),
            [](const control::SnapshotEntry& a, const control::SnapshotEntry& b) {
              return a.created_ns != b.created_ns ? a.created_ns < b.created_ns : a.name < b.name;
            });
  co_return e;
}

Task<Result<control::VolumeEntry>> InspectWithoutOwner(VolumeSet& set, const std::string& name,
                                                       std::optional<volume::VolumeRecord> record) {
  if (auto served = set.Find(name)) {
    control::VolumeEntry e = VolumeEntryOf(*served);
    e.snapshot_list.emplace();
    for (const auto& s : served->volume->ListSnapshots()) e.snapshot_list->push_back(EntryOf(s));
    co_return e;
  }
  if (name == volume::kDefaultVolumeName) {
    co_return Status::NotFound(fmt::format("volume '{}' is not served here", name));
  }
  if (!record) {
    CO_ASSIGN_OR_RETURN(volume::VolumeRecord r, co_await set.registry().Get(name));
    record = std::move(r);
  }
  if (record->deleting) co_return Status::NotFound(fmt::format("volume '{}' is deleted", name));
  co_return co_await ReadStored(set, *record);
}

// The owner record of `name`, if one names a daemon; a damaged one is no owner (a record
// is a hint: its reader asks the daemon it names, daemon/owner_record.h).
Task<std::optional<control::OwnerEntry>> OwnerOf(VolumeSet& set, const std::string& name) {
  auto root = set.ResolveStore(std::string(volume::kDefaultVolumeName));
  if (!root.ok()) co_return std::nullopt;
  auto owner = co_await FindOwner(**root, name);
  if (!owner.ok()) {
    Log()->warn("volume.inspect: volume {}: owner record ignored: {}", name,
                owner.status().ToString());
    co_return std::nullopt;
  }
  if (!owner->has_value()) co_return std::nullopt;
  co_return control::OwnerEntry{(*owner)->node, (*owner)->control, (*owner)->epoch};
}

// The attachment record of `name` (the node it is published to), if any. Unlike an owner
// record it is not a hint: the controller never opens a published volume itself, so a
// damaged one fails the read rather than passing for "published nowhere".
Task<Result<std::optional<control::AttachmentEntry>>> AttachmentOf(VolumeSet& set,
                                                                   const std::string& name) {
  auto root = set.ResolveStore(std::string(volume::kDefaultVolumeName));
  if (!root.ok()) co_return root.status();
  co_return co_await FindAttachment(**root, name);
}

Task<Result<control::VolumeEntry>> Inspect(VolumeSet& set, const std::string& name,
                                           std::optional<volume::VolumeRecord> record) {
  auto e = co_await InspectWithoutOwner(set, name, std::move(record));
  if (!e.ok()) co_return e;
  e->owner = co_await OwnerOf(set, name);
  auto attachment = co_await AttachmentOf(set, name);
  if (!attachment.ok()) co_return attachment.status().WithContext("volume " + name);
  e->attachment = std::move(*attachment);
  co_return e;
}

}  // namespace

Task<Result<control::VolumeEntry>> InspectVolume(VolumeSet& set, std::string name) {
  if (name != volume::kDefaultVolumeName) CO_RETURN_IF_ERROR(volume::ValidateVolumeName(name));
  co_return co_await Inspect(set, name, std::nullopt);
}

Task<Result<std::vector<control::VolumeEntry>>> InspectAllVolumes(VolumeSet& set) {
  CO_ASSIGN_OR_RETURN(std::vector<std::string> names, co_await set.registry().ListNames());
  std::vector<control::VolumeEntry> out;
  for (const std::string& name : names) {
    auto record = co_await set.registry().Get(name);
    if (record.status().IsNotFound()) continue;  // deleted meanwhile
    CO_RETURN_IF_ERROR(record.status());
    if (record->deleting) continue;
    auto e = co_await Inspect(set, name, *record);
    if (e.ok()) {
      out.push_back(std::move(*e));
    } else if (!e.status().IsNotFound()) {
      Log()->warn("volume.inspect: volume {} listed from its record: {}", name,
                  e.status().ToString());
      out.push_back(FromRecord(*record));
    }
  }
  co_return out;
}

}  // namespace portal::daemon
