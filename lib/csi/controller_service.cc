#include "csi/controller_service.h"

#include <fmt/format.h>

#include <algorithm>

#include "csi/controller_checks.h"
#include "csi/ids.h"

namespace portal::csi {
namespace {

using grpc::StatusCode;
namespace v1 = ::csi::v1;

// Without a blockSize parameter a volume gets portalbd's usual block size, whatever the
// controller daemon's [device] block_size, so a size check here agrees with the daemon's.
constexpr uint32_t kDefaultBlockSize = 4096;

grpc::Status Invalid(std::string message) {
  return grpc::Status(StatusCode::INVALID_ARGUMENT, std::move(message));
}

bool IsNotFound(const grpc::Status& st) { return st.error_code() == StatusCode::NOT_FOUND; }

// The content source a volume was made from, as CSI names it (none for a plain volume).
void SetContentSource(const control::VolumeEntry& v, v1::VolumeContentSource* out) {
  if (IsCloneSnapshot(v.clone_of_snapshot)) {
    out->mutable_volume()->set_volume_id(v.clone_of_volume);
  } else {
    out->mutable_snapshot()->set_snapshot_id(
        FormatSnapshotId(v.clone_of_volume, v.clone_of_snapshot));
  }
}

// The node a volume is published to (LIST_VOLUMES_PUBLISHED_NODES).
template <typename VolumeStatus>
void FillPublished(const control::VolumeEntry& v, VolumeStatus* status) {
  if (v.attachment) status->add_published_node_ids(v.attachment->node);
}

void FillVolume(const control::VolumeEntry& v, v1::Volume* out) {
  out->set_volume_id(v.name);
  out->set_capacity_bytes(static_cast<int64_t>(v.size_bytes));
  if (!v.clone_of_volume.empty()) SetContentSource(v, out->mutable_content_source());
}

void FillSnapshot(const std::string& volume, const control::SnapshotEntry& s, v1::Snapshot* out) {
  out->set_snapshot_id(FormatSnapshotId(volume, s.name));
  out->set_source_volume_id(volume);
  out->set_size_bytes(static_cast<int64_t>(s.size_bytes));
  out->mutable_creation_time()->set_seconds(s.created_ns / 1'000'000'000);
  out->mutable_creation_time()->set_nanos(static_cast<int32_t>(s.created_ns % 1'000'000'000));
  out->set_ready_to_use(true);  // a snapshot is durable when snapshot.create answers
}

const control::SnapshotEntry* FindSnapshot(const control::VolumeEntry& v, const std::string& name) {
  if (!v.snapshot_list) return nullptr;
  for (const auto& s : *v.snapshot_list) {
    if (s.name == name) return &s;
  }
  return nullptr;
}

// Where a new volume's data comes from: the source volume and snapshot (empty: none).
struct Source {
  std::string volume;
  std::string snapshot;
};

// The clone_of a volume made for `req` has; a source id that names nothing is NOT_FOUND.
grpc::Status WantedSource(const v1::CreateVolumeRequest& req, const std::string& name,
                          Source* out) {
  if (!req.has_volume_content_source()) return grpc::Status::OK;
  const auto& src = req.volume_content_source();
  if (src.has_snapshot()) {
    const std::string& id = src.snapshot().snapshot_id();
    if (id.empty()) return Invalid("volume_content_source.snapshot.snapshot_id is required");
    auto parsed = ParseSnapshotId(id);
    if (!parsed) return grpc::Status(StatusCode::NOT_FOUND, "no snapshot with id '" + id + "'");
    *out = Source{parsed->volume, parsed->snapshot};
  } else if (src.has_volume()) {
    const std::string& id = src.volume().volume_id();
    if (id.empty()) return Invalid("volume_content_source.volume.volume_id is required");
    if (!IsVolumeId(id)) return grpc::Status(StatusCode::NOT_FOUND, "no volume '" + id + "'");
    *out = Source{id, CloneSnapshotName(name)};
  } else {
    return Invalid("volume_content_source names neither a snapshot nor a volume");
  }
  return grpc::Status::OK;
}

}  // namespace

std::shared_ptr<std::mutex> ControllerService::LockFor(const std::string& volume) {
  std::lock_guard lock(locks_mu_);
  auto& m = locks_[volume];
  if (!m) m = std::make_shared<std::mutex>();
  return m;
}

template <typename Change>
grpc::Status ControllerService::OnDetached(const std::string& volume, Change change) {
  if (grpc::Status st = daemon_.Open(volume); !st.ok()) return st;
  grpc::Status result = change();
  // Released even when the change failed: the controller's daemon holds nothing at rest.
  grpc::Status released = daemon_.Release(volume);
  return result.ok() ? released : result;
}

namespace {

// A published volume whose node's daemon does not hold it (yet): its owner record is
// missing, names another node, or its daemon answered not_owner.
grpc::Status NotYetOpened(const control::VolumeEntry& v) {
  return grpc::Status(
      StatusCode::UNAVAILABLE,
      fmt::format("volume '{}' is published to node '{}', whose daemon does not hold it yet{}; "
                  "the controller never opens a published volume itself",
                  v.name, v.attachment->node,
                  v.owner ? fmt::format(" (the owner record names node '{}')", v.owner->node)
                          : std::string(" (no owner record)")));
}

}  // namespace

template <typename Change>
grpc::Status ControllerService::OnWriter(const control::VolumeEntry& entry, Change change) {
  control::VolumeEntry v = entry;
  // A stale record (a crashed, released or fenced owner's) answers not_owner: read it
  // again; a newer record is tried in turn, the same one means nobody holds the volume.
  // A published volume is asked of the node it is published to, and only of it.
  for (int tries = 0; v.owner || v.attachment; ++tries) {
    if (v.attachment && (!v.owner || v.owner->node != v.attachment->node)) {
      return NotYetOpened(v);
    }
    if (tries == 3) {
      return grpc::Status(StatusCode::ABORTED,
                          fmt::format("volume '{}': its owner record keeps changing", v.name));
    }
    if (v.owner->control.empty()) {
      return grpc::Status(StatusCode::UNAVAILABLE,
                          fmt::format("volume '{}' is attached on node '{}', whose daemon has "
                                      "no control listener",
                                      v.name, v.owner->node));
    }
    DaemonCalls owner(v.owner->control, options_.owner, timeout_ms_);
    grpc::Status st = change(owner);
    if (!IsNotOwner(st)) return st;
    control::VolumeEntry again;
    if (grpc::Status read = daemon_.Inspect(v.name, &again); !read.ok()) return read;
    if (again.owner == v.owner) {
      if (again.attachment) return NotYetOpened(again);
      again.owner.reset();
    }
    v = std::move(again);
  }
  return OnDetached(v.name, [&] { return change(daemon_); });
}

grpc::Status ControllerService::Snapshot(const control::VolumeEntry& v, const std::string& snapshot,
                                         control::SnapshotEntry* out) {
  return OnWriter(v, [&](const DaemonCalls& d) { return d.CreateSnapshot(v.name, snapshot, out); });
}

grpc::Status ControllerService::Grow(const control::VolumeEntry& v, uint64_t size_bytes) {
  return OnWriter(v, [&](const DaemonCalls& d) { return d.Resize(v.name, size_bytes); });
}

// --- volumes --------------------------------------------------------------------------

grpc::Status ControllerService::CheckExisting(const v1::CreateVolumeRequest& req,
                                              const control::VolumeEntry& v, uint32_t block_size) {
  Source want;
  if (grpc::Status st = WantedSource(req, v.name, &want); !st.ok()) return st;
  auto exists = [&](std::string why) {
    return grpc::Status(
        StatusCode::ALREADY_EXISTS,
        fmt::format("volume '{}' (for name '{}') already exists {}", v.name, req.name(), why));
  };
  if (want.volume != v.clone_of_volume || want.snapshot != v.clone_of_snapshot) {
    return exists("with another content source");
  }
  if (block_size != 0 && block_size != v.block_size) {
    return exists(fmt::format("with block size {}", v.block_size));
  }
  const v1::CapacityRange* range = req.has_capacity_range() ? &req.capacity_range() : nullptr;
  if (SizeFits(range, v.size_bytes)) return grpc::Status::OK;
  // A clone whose create stopped before its resize (the same request, retried) grows now;
  // a plain volume of another size was asked for with other parameters.
  uint64_t size = 0;
  if (v.clone_of_volume.empty() || range == nullptr || !range->required_bytes() ||
      (range->limit_bytes() > 0 && v.size_bytes > static_cast<uint64_t>(range->limit_bytes())) ||
      !PickSize(range, v.block_size, v.size_bytes, &size).ok()) {
    return exists(fmt::format("with {} bytes", v.size_bytes));
  }
  return Grow(v, size);
}

grpc::Status ControllerService::CreateFromSource(const v1::CreateVolumeRequest& req,
                                                 const std::string& name, uint32_t block_size) {
  Source src;
  if (grpc::Status st = WantedSource(req, name, &src); !st.ok()) return st;
  control::VolumeEntry parent;
  if (grpc::Status st = daemon_.Inspect(src.volume, &parent); !st.ok()) {
    if (IsNotFound(st) && req.volume_content_source().has_snapshot()) {
      return grpc::Status(
          StatusCode::NOT_FOUND,
          "no snapshot with id '" + req.volume_content_source().snapshot().snapshot_id() + "'");
    }
    return st;
  }
  if (block_size != 0 && block_size != parent.block_size) {
    return Invalid(fmt::format("blockSize {}: a clone keeps its source's block size, {}",
                               block_size, parent.block_size));
  }
  const control::SnapshotEntry* snap = FindSnapshot(parent, src.snapshot);
  control::SnapshotEntry taken;
  if (!snap && req.volume_content_source().has_snapshot()) {
    return grpc::Status(StatusCode::NOT_FOUND,
                        fmt::format("volume '{}' has no snapshot '{}'", src.volume, src.snapshot));
  }
  const v1::CapacityRange* range = req.has_capacity_range() ? &req.capacity_range() : nullptr;
  const uint64_t source_bytes = snap ? snap->size_bytes : parent.size_bytes;
  uint64_t size = 0;
  if (grpc::Status st = PickSize(range, parent.block_size, source_bytes, &size); !st.ok()) {
    return st;
  }
  if (!snap) {
    // A clone of a volume: of a snapshot taken now, kept while the clone reads it.
    std::shared_ptr<std::mutex> source_lock = LockFor(src.volume);
    std::lock_guard hold(*source_lock);
    // Read again under the lock: a publish since the read above must be seen.
    if (grpc::Status st = daemon_.Inspect(src.volume, &parent); !st.ok()) return st;
    if (grpc::Status st = Snapshot(parent, src.snapshot, &taken); !st.ok()) return st;
    snap = &taken;
  }
  if (grpc::Status st = daemon_.Clone(name, src.volume, src.snapshot); !st.ok()) return st;
  // volume.clone leaves the clone served here: grow it to the size asked, then release.
  grpc::Status grown = size > snap->size_bytes ? daemon_.Resize(name, size) : grpc::Status::OK;
  grpc::Status released = daemon_.Release(name);
  return grown.ok() ? released : grown;
}

grpc::Status ControllerService::CreateVolume(grpc::ServerContext*,
                                             const v1::CreateVolumeRequest* req,
                                             v1::CreateVolumeResponse* resp) {
  if (req->name().empty()) return Invalid("name is required");
  if (HasBannedCharacter(req->name())) return Invalid("name holds a control character");
  if (grpc::Status st = CheckCapabilities(req->volume_capabilities()); !st.ok()) return st;
  uint32_t block_size = 0;
  if (grpc::Status st = ParseParameters(req->parameters(), &block_size); !st.ok()) return st;
  const std::string name = VolumeNameFor(req->name());
  std::shared_ptr<std::mutex> lock = LockFor(name);
  std::lock_guard hold(*lock);

  control::VolumeEntry v;
  grpc::Status found = daemon_.Inspect(name, &v);
  if (found.ok()) {
    if (grpc::Status st = CheckExisting(*req, v, block_size); !st.ok()) return st;
  } else if (!IsNotFound(found)) {
    return found;
  } else if (req->has_volume_content_source()) {
    if (grpc::Status st = CreateFromSource(*req, name, block_size); !st.ok()) return st;
  } else {
    if (block_size == 0) block_size = kDefaultBlockSize;
    uint64_t size = 0;
    const v1::CapacityRange* range = req->has_capacity_range() ? &req->capacity_range() : nullptr;
    if (grpc::Status st = PickSize(range, block_size, 0, &size); !st.ok()) return st;
    grpc::Status created = daemon_.Create(name, size, block_size);
    if (!created.ok()) return created;
    if (grpc::Status st = daemon_.Release(name); !st.ok()) return st;
  }
  if (grpc::Status st = daemon_.Inspect(name, &v); !st.ok()) return st;
  FillVolume(v, resp->mutable_volume());
  return grpc::Status::OK;
}

grpc::Status ControllerService::DeleteVolume(grpc::ServerContext*,
                                             const v1::DeleteVolumeRequest* req,
                                             v1::DeleteVolumeResponse*) {
  const std::string& id = req->volume_id();
  if (id.empty()) return Invalid("volume_id is required");
  if (!IsVolumeId(id)) return grpc::Status::OK;  // names nothing: already gone
  std::shared_ptr<std::mutex> lock = LockFor(id);
  std::lock_guard hold(*lock);
  control::VolumeEntry v;
  grpc::Status found = daemon_.Inspect(id, &v);
  if (IsNotFound(found)) return grpc::Status::OK;
  if (!found.ok()) return found;
  if (v.attachment) {
    // The CO deletes a volume only after ControllerUnpublishVolume; until then its node
    // may open it at any moment.
    return grpc::Status(
        StatusCode::FAILED_PRECONDITION,
        fmt::format("volume '{}' is published to node '{}'", id, v.attachment->node));
  }
  if (v.owner) {
    // Deleting opens the volume, which would fence a node still serving it: only when the
    // daemon its owner record names no longer holds it.
    grpc::Status held = v.owner->control.empty()
                            ? grpc::Status::OK
                            : DaemonCalls(v.owner->control, options_.owner, timeout_ms_).Holds(id);
    if (held.ok()) {
      return grpc::Status(StatusCode::FAILED_PRECONDITION,
                          fmt::format("volume '{}' is attached on node '{}'", id, v.owner->node));
    }
    if (!IsNotOwner(held)) return held;
  }
  grpc::Status deleted = daemon_.Delete(id);
  if (!deleted.ok() && !IsNotFound(deleted)) return deleted;
  // A clone of a volume: the snapshot it was made from was the controller's own; its
  // source keeps it no longer (best effort: the source may be gone or busy).
  if (IsCloneSnapshot(v.clone_of_snapshot)) {
    std::shared_ptr<std::mutex> source_lock = LockFor(v.clone_of_volume);
    std::lock_guard hold_source(*source_lock);
    control::VolumeEntry parent;
    if (daemon_.Inspect(v.clone_of_volume, &parent).ok() &&
        FindSnapshot(parent, v.clone_of_snapshot)) {
      (void)OnWriter(parent, [&](const DaemonCalls& d) {
        return d.DeleteSnapshot(v.clone_of_volume, v.clone_of_snapshot);
      });
    }
  }
  return grpc::Status::OK;
}

grpc::Status ControllerService::ValidateVolumeCapabilities(
    grpc::ServerContext*, const v1::ValidateVolumeCapabilitiesRequest* req,
    v1::ValidateVolumeCapabilitiesResponse* resp) {
  if (req->volume_id().empty()) return Invalid("volume_id is required");
  if (req->volume_capabilities().empty()) return Invalid("volume_capabilities is required");
  if (!IsVolumeId(req->volume_id())) {
    return grpc::Status(StatusCode::NOT_FOUND, "no volume '" + req->volume_id() + "'");
  }
  control::VolumeEntry v;
  if (grpc::Status st = daemon_.Inspect(req->volume_id(), &v); !st.ok()) return st;
  for (const auto& cap : req->volume_capabilities()) {
    if (std::string problem = CapabilityProblem(cap); !problem.empty()) {
      resp->set_message(problem);
      return grpc::Status::OK;
    }
  }
  uint32_t block_size = 0;
  if (grpc::Status st = ParseParameters(req->parameters(), &block_size); !st.ok()) {
    resp->set_message(st.error_message());
    return grpc::Status::OK;
  }
  if (block_size != 0 && block_size != v.block_size) {
    resp->set_message(fmt::format("the volume's block size is {}", v.block_size));
    return grpc::Status::OK;
  }
  auto* confirmed = resp->mutable_confirmed();
  *confirmed->mutable_volume_capabilities() = req->volume_capabilities();
  *confirmed->mutable_volume_context() = req->volume_context();
  *confirmed->mutable_parameters() = req->parameters();
  return grpc::Status::OK;
}

namespace {

// A List call's paging fields: INVALID_ARGUMENT for a negative max_entries, ABORTED for
// a token we did not hand out; `*after` is the last name of the previous page.
grpc::Status CheckPage(int32_t max_entries, const std::string& token,
                       std::optional<std::string>* after) {
  if (max_entries < 0) return Invalid("max_entries is negative");
  if (token.empty()) return grpc::Status::OK;
  *after = ParsePageToken(token);
  if (!*after) {
    return grpc::Status(StatusCode::ABORTED, "starting_token '" + token + "' is not one of ours");
  }
  return grpc::Status::OK;
}

}  // namespace

grpc::Status ControllerService::ListVolumes(grpc::ServerContext*, const v1::ListVolumesRequest* req,
                                            v1::ListVolumesResponse* resp) {
  std::optional<std::string> after;
  if (grpc::Status st = CheckPage(req->max_entries(), req->starting_token(), &after); !st.ok()) {
    return st;
  }
  std::vector<control::VolumeEntry> all;
  if (grpc::Status st = daemon_.InspectAll(&all); !st.ok()) return st;
  const size_t max = static_cast<size_t>(req->max_entries());
  for (const auto& v : all) {  // sorted by name
    if (after && v.name <= *after) continue;
    if (max != 0 && static_cast<size_t>(resp->entries_size()) == max) {
      resp->set_next_token(PageToken(resp->entries(resp->entries_size() - 1).volume().volume_id()));
      break;
    }
    auto* entry = resp->add_entries();
    FillVolume(v, entry->mutable_volume());
    auto* condition = entry->mutable_status()->mutable_volume_condition();
    condition->set_abnormal(v.fenced);
    condition->set_message(v.fenced ? "fenced: another daemon opened the volume" : "");
    FillPublished(v, entry->mutable_status());
  }
  return grpc::Status::OK;
}

grpc::Status ControllerService::ControllerGetVolume(grpc::ServerContext*,
                                                    const v1::ControllerGetVolumeRequest* req,
                                                    v1::ControllerGetVolumeResponse* resp) {
  const std::string& id = req->volume_id();
  if (id.empty()) return Invalid("volume_id is required");
  if (!IsVolumeId(id)) return grpc::Status(StatusCode::NOT_FOUND, "no volume '" + id + "'");
  control::VolumeEntry v;
  grpc::Status st = daemon_.Inspect(id, &v);
  auto* condition = resp->mutable_status()->mutable_volume_condition();
  if (st.ok()) {
    FillVolume(v, resp->mutable_volume());
    condition->set_abnormal(v.fenced);
    condition->set_message(v.fenced ? "fenced: another daemon opened the volume" : "");
    FillPublished(v, resp->mutable_status());
    return grpc::Status::OK;
  }
  if (st.error_code() != StatusCode::INTERNAL) return st;  // NOT_FOUND, UNAVAILABLE, ...
  // The volume exists but its manifest or a snapshot object cannot be read: the CO sees an
  // abnormal volume, with the daemon's reason.
  resp->mutable_volume()->set_volume_id(id);
  condition->set_abnormal(true);
  condition->set_message(st.error_message());
  return grpc::Status::OK;
}

grpc::Status ControllerService::GetCapacity(grpc::ServerContext*, const v1::GetCapacityRequest* req,
                                            v1::GetCapacityResponse* resp) {
  if (options_.capacity_bytes == 0) {
    return grpc::Status(StatusCode::UNIMPLEMENTED,
                        "no capacity configured (--capacity-bytes): object storage has none "
                        "to report");
  }
  for (const auto& cap : req->volume_capabilities()) {
    if (!CapabilityProblem(cap).empty()) {
      resp->set_available_capacity(0);  // nothing can be provisioned with it
      return grpc::Status::OK;
    }
  }
  uint32_t block_size = 0;
  if (grpc::Status st = ParseParameters(req->parameters(), &block_size); !st.ok()) return st;
  std::vector<control::VolumeEntry> all;
  if (grpc::Status st = daemon_.InspectAll(&all); !st.ok()) return st;
  uint64_t used = 0;
  for (const auto& v : all) used += v.size_bytes;
  const uint64_t available = used >= options_.capacity_bytes ? 0 : options_.capacity_bytes - used;
  resp->set_available_capacity(static_cast<int64_t>(std::min(available, kMaxVolumeBytes)));
  resp->mutable_maximum_volume_size()->set_value(
      static_cast<int64_t>(std::min(available, kMaxVolumeBytes)));
  return grpc::Status::OK;
}

grpc::Status ControllerService::ControllerGetCapabilities(
    grpc::ServerContext*, const v1::ControllerGetCapabilitiesRequest*,
    v1::ControllerGetCapabilitiesResponse* resp) {
  using Rpc = v1::ControllerServiceCapability::RPC;
  std::vector<Rpc::Type> types = {
      Rpc::CREATE_DELETE_VOLUME, Rpc::LIST_VOLUMES,     Rpc::CREATE_DELETE_SNAPSHOT,
      Rpc::LIST_SNAPSHOTS,       Rpc::CLONE_VOLUME,     Rpc::EXPAND_VOLUME,
      Rpc::GET_VOLUME,           Rpc::VOLUME_CONDITION, Rpc::SINGLE_NODE_MULTI_WRITER,
      Rpc::PUBLISH_UNPUBLISH_VOLUME, Rpc::PUBLISH_READONLY, Rpc::LIST_VOLUMES_PUBLISHED_NODES,
  };
  if (options_.capacity_bytes != 0) types.push_back(Rpc::GET_CAPACITY);
  for (Rpc::Type t : types) resp->add_capabilities()->mutable_rpc()->set_type(t);
  return grpc::Status::OK;
}

// --- snapshots and expansion ----------------------------------------------------------

grpc::Status ControllerService::CreateSnapshot(grpc::ServerContext*,
                                               const v1::CreateSnapshotRequest* req,
                                               v1::CreateSnapshotResponse* resp) {
  if (req->name().empty()) return Invalid("name is required");
  if (req->source_volume_id().empty()) return Invalid("source_volume_id is required");
  if (HasBannedCharacter(req->name())) return Invalid("name holds a control character");
  if (!req->parameters().empty()) {
    return Invalid(fmt::format("unknown parameter '{}' (snapshots take none)",
                               req->parameters().begin()->first));
  }
  const std::string& volume = req->source_volume_id();
  if (!IsVolumeId(volume)) return grpc::Status(StatusCode::NOT_FOUND, "no volume '" + volume + "'");
  const std::string snapshot = SnapshotNameFor(req->name());
  std::shared_ptr<std::mutex> lock = LockFor(volume);
  std::lock_guard hold(*lock);
  // A snapshot name is one name across volumes (the CSI spec): the same name on another
  // volume is ALREADY_EXISTS, on this one the snapshot made before.
  std::vector<control::VolumeEntry> all;
  if (grpc::Status st = daemon_.InspectAll(&all); !st.ok()) return st;
  const control::VolumeEntry* source = nullptr;
  for (const auto& v : all) {
    if (v.name == volume) {
      source = &v;
    } else if (FindSnapshot(v, snapshot)) {
      return grpc::Status(
          StatusCode::ALREADY_EXISTS,
          fmt::format("snapshot name '{}' is taken by volume '{}'", req->name(), v.name));
    }
  }
  if (!source) return grpc::Status(StatusCode::NOT_FOUND, "no volume '" + volume + "'");
  if (const control::SnapshotEntry* s = FindSnapshot(*source, snapshot)) {
    FillSnapshot(volume, *s, resp->mutable_snapshot());
    return grpc::Status::OK;
  }
  // The list above may describe a volume it could not read fully (from its record alone,
  // without its attachment): the writer is chosen from a read of this volume alone.
  control::VolumeEntry fresh;
  if (grpc::Status st = daemon_.Inspect(volume, &fresh); !st.ok()) return st;
  control::SnapshotEntry made;
  if (grpc::Status st = Snapshot(fresh, snapshot, &made); !st.ok()) return st;
  FillSnapshot(volume, made, resp->mutable_snapshot());
  return grpc::Status::OK;
}

grpc::Status ControllerService::DeleteSnapshot(grpc::ServerContext*,
                                               const v1::DeleteSnapshotRequest* req,
                                               v1::DeleteSnapshotResponse*) {
  if (req->snapshot_id().empty()) return Invalid("snapshot_id is required");
  auto id = ParseSnapshotId(req->snapshot_id());
  if (!id) return grpc::Status::OK;  // names nothing: already gone
  std::shared_ptr<std::mutex> lock = LockFor(id->volume);
  std::lock_guard hold(*lock);
  control::VolumeEntry v;
  grpc::Status found = daemon_.Inspect(id->volume, &v);
  if (IsNotFound(found)) return grpc::Status::OK;
  if (!found.ok()) return found;
  if (!FindSnapshot(v, id->snapshot)) return grpc::Status::OK;
  grpc::Status st =
      OnWriter(v, [&](const DaemonCalls& d) { return d.DeleteSnapshot(id->volume, id->snapshot); });
  return IsNotFound(st) ? grpc::Status::OK : st;
}

grpc::Status ControllerService::ListSnapshots(grpc::ServerContext*,
                                              const v1::ListSnapshotsRequest* req,
                                              v1::ListSnapshotsResponse* resp) {
  std::optional<std::string> after;
  if (grpc::Status st = CheckPage(req->max_entries(), req->starting_token(), &after); !st.ok()) {
    return st;
  }
  // The filters narrow the volumes read; an id that names nothing lists nothing.
  std::string only_volume = req->source_volume_id();
  std::string only_snapshot;
  if (!req->snapshot_id().empty()) {
    auto id = ParseSnapshotId(req->snapshot_id());
    if (!id || (!only_volume.empty() && only_volume != id->volume)) return grpc::Status::OK;
    only_volume = id->volume;
    only_snapshot = id->snapshot;
  }
  std::vector<control::VolumeEntry> volumes;
  if (!only_volume.empty()) {
    if (!IsVolumeId(only_volume)) return grpc::Status::OK;
    control::VolumeEntry v;
    grpc::Status st = daemon_.Inspect(only_volume, &v);
    if (IsNotFound(st)) return grpc::Status::OK;
    if (!st.ok()) return st;
    volumes.push_back(std::move(v));
  } else if (grpc::Status st = daemon_.InspectAll(&volumes); !st.ok()) {
    return st;
  }
  // Every listed snapshot by id, so pages follow one order.
  std::vector<
      std::pair<std::string, std::pair<const control::VolumeEntry*, const control::SnapshotEntry*>>>
      snaps;
  for (const auto& v : volumes) {
    if (!v.snapshot_list) continue;
    for (const auto& s : *v.snapshot_list) {
      if (IsCloneSnapshot(s.name)) continue;  // the controller's own, for clones of volumes
      if (!only_snapshot.empty() && s.name != only_snapshot) continue;
      snaps.push_back({FormatSnapshotId(v.name, s.name), {&v, &s}});
    }
  }
  std::sort(snaps.begin(), snaps.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  const size_t max = static_cast<size_t>(req->max_entries());
  for (const auto& [id, vs] : snaps) {
    if (after && id <= *after) continue;
    if (max != 0 && static_cast<size_t>(resp->entries_size()) == max) {
      resp->set_next_token(
          PageToken(resp->entries(resp->entries_size() - 1).snapshot().snapshot_id()));
      break;
    }
    FillSnapshot(vs.first->name, *vs.second, resp->add_entries()->mutable_snapshot());
  }
  return grpc::Status::OK;
}

grpc::Status ControllerService::ControllerExpandVolume(grpc::ServerContext*,
                                                       const v1::ControllerExpandVolumeRequest* req,
                                                       v1::ControllerExpandVolumeResponse* resp) {
  const std::string& id = req->volume_id();
  if (id.empty()) return Invalid("volume_id is required");
  if (!req->has_capacity_range()) return Invalid("capacity_range is required");
  if (req->has_volume_capability()) {
    if (std::string problem = CapabilityProblem(req->volume_capability()); !problem.empty()) {
      return Invalid(problem);
    }
  }
  if (!IsVolumeId(id)) return grpc::Status(StatusCode::NOT_FOUND, "no volume '" + id + "'");
  std::shared_ptr<std::mutex> lock = LockFor(id);
  std::lock_guard hold(*lock);
  control::VolumeEntry v;
  if (grpc::Status st = daemon_.Inspect(id, &v); !st.ok()) return st;
  const v1::CapacityRange& range = req->capacity_range();
  uint64_t size = v.size_bytes;
  if (range.required_bytes() != 0) {
    if (grpc::Status st = PickSize(&range, v.block_size, 0, &size); !st.ok()) return st;
  }
  if (range.limit_bytes() > 0 &&
      std::max(size, v.size_bytes) > static_cast<uint64_t>(range.limit_bytes())) {
    return grpc::Status(StatusCode::OUT_OF_RANGE,
                        fmt::format("volume '{}' has {} bytes, above limit_bytes {}, and "
                                    "volumes do not shrink",
                                    id, v.size_bytes, range.limit_bytes()));
  }
  if (size > v.size_bytes) {  // never shrinks: a smaller request is already met
    if (grpc::Status st = Grow(v, size); !st.ok()) return st;
    v.size_bytes = size;
  }
  resp->set_capacity_bytes(static_cast<int64_t>(v.size_bytes));
  // A block volume is used as it is; a filesystem grows on its node (NodeExpandVolume).
  resp->set_node_expansion_required(
      !(req->has_volume_capability() && req->volume_capability().has_block()));
  return grpc::Status::OK;
}

}  // namespace portal::csi
