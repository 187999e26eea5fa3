#include "daemon/control_handler.h"

#include <fmt/format.h>

#include "daemon/attachments.h"
#include "daemon/volume_inspect.h"
#include "util/assert.h"
#include "util/log.h"
#include "util/rfc3339.h"

namespace portal::daemon {

namespace {

auto Log() { return log::Get("portalbd::control"); }

control::Reply FromStatus(const Status& st) { return control::ErrorFromStatus(st); }

control::SnapshotEntry Entry(const volume::SnapshotInfo& s) {
  control::SnapshotEntry e;
  e.name = s.name;
  e.id = s.id;
  e.created_ns = s.created_ns;
  e.size_bytes = s.size_bytes;
  e.pinned_bytes = s.data_bytes;
  e.attached = s.attached;
  return e;
}

// A volume this daemon is not the writer of (docs/control.md "not_owner").
control::Reply NotServed(const std::string& volume_name) {
  return control::ErrorReply{std::string(control::kNotOwner),
                             fmt::format("volume '{}' is not served here", volume_name)};
}

// An error from a volume another daemon took over is not_owner, with the volume's own
// message ("volume is fenced: ..."): the caller must find the new owner.
control::Reply FencedIsNotOwner(control::Reply reply, volume::Volume& v) {
  auto* err = std::get_if<control::ErrorReply>(&reply);
  if (err != nullptr && v.fenced()) err->code = std::string(control::kNotOwner);
  return reply;
}

control::Reply AlreadyExists(std::string message) {
  return control::ErrorReply{std::string(control::kAlreadyExists), std::move(message)};
}

// Snapshot errors name the volume when it is not the default one (whose messages stay
// as they were before named volumes).
Status Named(const Status& st, const std::string& volume_name) {
  if (st.ok() || volume_name == volume::kDefaultVolumeName) return st;
  return st.WithContext("volume " + volume_name);
}

// volume.publish: the volume must be registered and the node too (nodes/<node>.json);
// then its attachment record, unless another one is there (docs/control.md).
Task<control::Reply> Publish(VolumeSet& volumes, const control::Request& request) {
  auto root = volumes.ResolveStore(std::string(volume::kDefaultVolumeName));
  if (!root.ok()) co_return FromStatus(root.status());
  auto record = co_await volumes.registry().Get(request.name);
  if (record.ok() && record->deleting) {
    record = Status::NotFound(fmt::format("volume '{}' is deleted", request.name));
  }
  if (!record.ok()) co_return FromStatus(record.status());
  auto node = co_await FindNode(**root, request.node);
  if (!node.ok()) co_return FromStatus(node.status());
  if (!*node) {
    co_return FromStatus(Status::NotFound(fmt::format(
        "node '{}' is not registered (no portalbd daemon with [control] node_id = \"{}\" and a "
        "control listener has started on this storage)",
        request.node, request.node)));
  }
  control::AttachmentEntry want{request.name, request.node, request.read_only,
                                FormatRfc3339(volumes.env().WallNanos())};
  auto out = co_await PublishVolume(**root, std::move(want));
  if (!out.ok()) co_return FromStatus(out.status());
  const control::AttachmentEntry& at = out->record;
  switch (out->kind) {
    case PublishOutcome::kPublished:
      co_return control::AttachmentReply{at};
    case PublishOutcome::kOtherNode:
      co_return FromStatus(Status::PreconditionFailed(fmt::format(
          "volume '{}' is published to node '{}' (since {})", at.volume, at.node, at.since)));
    case PublishOutcome::kOtherMode:
      co_return AlreadyExists(fmt::format("volume '{}' is published to node '{}' {}", at.volume,
                                          at.node, at.read_only ? "read-only" : "read-write"));
  }
  co_return control::AttachmentReply{at};
}

Task<control::Reply> Unpublish(VolumeSet& volumes, const control::Request& request) {
  auto root = volumes.ResolveStore(std::string(volume::kDefaultVolumeName));
  if (!root.ok()) co_return FromStatus(root.status());
  auto removed = co_await UnpublishVolume(**root, request.name, request.node);
  if (!removed.ok()) co_return FromStatus(removed.status());
  co_return control::UnpublishReply{*removed};
}

Task<control::Reply> GetNode(VolumeSet& volumes, const std::string& name) {
  auto root = volumes.ResolveStore(std::string(volume::kDefaultVolumeName));
  if (!root.ok()) co_return FromStatus(root.status());
  auto node = co_await FindNode(**root, name);
  if (!node.ok()) co_return FromStatus(node.status());
  if (!*node) {
    co_return FromStatus(Status::NotFound(fmt::format("node '{}' is not registered", name)));
  }
  co_return control::NodeReply{**node};
}

}  // namespace

control::VolumeEntry VolumeEntryOf(const ServedVolume& v) {
  volume::VolumeStats s = v.volume->stats();
  control::VolumeEntry e;
  e.name = v.name;
  e.is_default = v.is_default();
  e.size_bytes = v.volume->size_bytes();
  e.block_size = s.block_size;
  e.live_bytes = s.live_data_blocks * s.block_size;
  e.bytes_stored = s.segment_bytes + s.map_bytes;
  e.snapshots = s.snapshots;
  e.attached = v.attached.load();
  e.epoch = s.epoch;
  e.fenced = s.fenced;
  e.volume_uuid = s.volume_uuid;
  if (v.record && v.record->clone_of) {
    e.clone_of_volume = v.record->clone_of->volume;
    e.clone_of_snapshot = v.record->clone_of->snapshot;
  }
  return e;
}

Task<control::Reply> ControlHandler::Create(volume::Volume& v, const std::string& volume_name,
                                            std::string name) {
  auto exists = [&] {
    return AlreadyExists(volume_name == volume::kDefaultVolumeName
                             ? fmt::format("a snapshot named '{}' already exists", name)
                             : fmt::format("volume {}: a snapshot named '{}' already exists",
                                           volume_name, name));
  };
  if (v.GetSnapshot(name).ok()) co_return exists();
  auto created = co_await v.CreateSnapshot(name);
  if (created.ok()) co_return control::SnapshotReply{Entry(*created)};
  // Two creates of one name raced: the loser's InvalidArgument is a duplicate.
  if (v.GetSnapshot(name).ok()) co_return exists();
  co_return FromStatus(Named(created.status(), volume_name));
}

Task<control::Reply> ControlHandler::DispatchSnapshot(const control::Request& request,
                                                      volume::Volume& v,
                                                      const std::string& vn) {
  using control::Op;
  switch (request.op) {
    case Op::kSnapshotCreate:
      co_return co_await Create(v, vn, request.name);
    case Op::kSnapshotList: {
      control::SnapshotListReply list;
      for (const auto& s : v.ListSnapshots()) list.snapshots.push_back(Entry(s));
      co_return control::Reply(std::move(list));
    }
    case Op::kSnapshotGet: {
      auto s = v.GetSnapshot(request.name);
      if (!s.ok()) co_return FromStatus(Named(s.status(), vn));
      co_return control::SnapshotReply{Entry(*s)};
    }
    case Op::kSnapshotDelete: {
      Status st = co_await v.DeleteSnapshot(request.name);
      if (!st.ok()) co_return FromStatus(Named(st, vn));
      co_return control::OkReply{};
    }
    case Op::kSnapshotRestore: {
      Status st = co_await v.RestoreSnapshot(request.name);
      if (!st.ok()) co_return FromStatus(Named(st, vn));
      co_return control::OkReply{};
    }
    default:
      break;
  }
  PORTAL_ASSERT(false, "not a snapshot op");
  co_return control::OkReply{};
}

Task<control::Reply> ControlHandler::DispatchVolume(const control::Request& request) {
  using control::Op;
  const std::string& name = request.name;
  auto entry = [&](const std::string& n) -> control::Reply {
    auto v = volumes_->Find(n);
    if (!v) return FromStatus(Status::NotFound(fmt::format("volume '{}' is not served here", n)));
    return control::VolumeReply{VolumeEntryOf(*v)};
  };
  switch (request.op) {
    case Op::kVolumeCreate:
    case Op::kVolumeClone: {
      // (No co_await inside ?:, which GCC has miscompiled.)
      Result<std::shared_ptr<ServedVolume>> created = std::shared_ptr<ServedVolume>();
      if (request.op == Op::kVolumeCreate) {
        created = co_await volumes_->Create(name, request.size_bytes, request.block_size);
      } else {
        created = co_await volumes_->Clone(request.source, request.snapshot, name);
      }
      if (created.ok()) co_return control::VolumeReply{VolumeEntryOf(**created)};
      if (created.status().IsPreconditionFailed() &&
          created.status().message().ends_with("already exists")) {
        co_return AlreadyExists(created.status().message());
      }
      co_return FromStatus(created.status());
    }
    case Op::kVolumeList: {
      control::VolumeListReply list;
      for (const auto& v : volumes_->All()) list.volumes.push_back(VolumeEntryOf(*v));
      co_return control::Reply(std::move(list));
    }
    case Op::kVolumeGet:
      co_return entry(name);
    case Op::kVolumeInspect: {
      control::VolumeListReply list;
      if (name.empty()) {
        auto all = co_await InspectAllVolumes(*volumes_);
        if (!all.ok()) co_return FromStatus(all.status());
        list.volumes = std::move(*all);
      } else {
        auto one = co_await InspectVolume(*volumes_, name);
        if (!one.ok()) co_return FromStatus(one.status());
        list.volumes.push_back(std::move(*one));
      }
      co_return control::Reply(std::move(list));
    }
    case Op::kVolumeDelete: {
      Status st = co_await volumes_->Delete(name);
      if (!st.ok()) co_return FromStatus(st);
      co_return control::OkReply{};
    }
    case Op::kVolumeResize: {
      auto v = volumes_->Find(name);
      if (!v) co_return NotServed(name);
      Status st = co_await volumes_->Resize(name, request.size_bytes, request.allow_shrink);
      if (!st.ok()) co_return FencedIsNotOwner(FromStatus(st), *v->volume);
      if (devices_) {
        st = co_await devices_->Resized(v->name, v->volume->size_bytes());
        if (!st.ok()) {
          co_return FromStatus(st.WithContext("resized, but its kernel device still shows the "
                                              "old size"));
        }
      }
      co_return entry(name);
    }
    case Op::kVolumeOpen: {
      Status st = co_await volumes_->Open(name);
      if (!st.ok()) co_return FromStatus(st);
      co_return entry(name);
    }
    case Op::kVolumeRelease: {
      Status st = co_await volumes_->Release(name);
      if (!st.ok()) co_return FromStatus(st);
      co_return control::OkReply{};
    }
    case Op::kVolumePublish:
      co_return co_await Publish(*volumes_, request);
    case Op::kVolumeUnpublish:
      co_return co_await Unpublish(*volumes_, request);
    default:
      break;
  }
  PORTAL_ASSERT(false, "not a volume op");
  co_return control::OkReply{};
}

Task<control::Reply> ControlHandler::DispatchDevice(const control::Request& request) {
  using control::Op;
  if (!devices_) co_return FromStatus(Status::Unavailable("kernel devices are not available"));
  switch (request.op) {
    case Op::kDeviceAttach: {
      auto d = co_await devices_->Attach(request.volume, request.device, request.read_only);
      if (!d.ok()) co_return FromStatus(d.status());
      co_return control::DeviceReply{*d};
    }
    case Op::kDeviceDetach: {
      auto d = co_await devices_->Detach(request.device, request.volume);
      if (!d.ok()) co_return FromStatus(d.status());
      control::DeviceDetachReply r;
      r.detached = d->has_value();
      if (*d) r.device = **d;
      co_return control::Reply(std::move(r));
    }
    case Op::kDeviceList: {
      // (Not co_await inside a braced initializer, which GCC has miscompiled.)
      std::vector<control::DeviceEntry> list = co_await devices_->List();
      co_return control::DeviceListReply{std::move(list)};
    }
    default:
      break;
  }
  PORTAL_ASSERT(false, "not a device op");
  co_return control::OkReply{};
}

Task<control::Reply> ControlHandler::Dispatch(const control::Request& request) {
  if (request.op == control::Op::kStatus) co_return control::StatusReply{status_()};
  if (control::IsDeviceOp(request.op)) co_return co_await DispatchDevice(request);
  if (control::IsVolumeOp(request.op)) co_return co_await DispatchVolume(request);
  if (control::IsNodeOp(request.op)) co_return co_await GetNode(*volumes_, request.name);
  std::shared_ptr<ServedVolume> v = volumes_->Find(request.volume);
  if (!v) {
    co_return NotServed(request.volume.empty() ? std::string(volume::kDefaultVolumeName)
                                               : request.volume);
  }
  control::Reply reply = co_await DispatchSnapshot(request, *v->volume, v->name);
  co_return FencedIsNotOwner(std::move(reply), *v->volume);
}

Task<control::Reply> ControlHandler::Handle(control::Request request) {
  using control::Op;
  // The protocol passes names on unjudged; the volume's rule decides, for every op.
  Status name = Status::Ok();
  if (control::IsNodeOp(request.op)) {
    name = control::ValidateNodeId(request.name);
  } else if (control::IsVolumeOp(request.op)) {
    const bool is_default = request.name == volume::kDefaultVolumeName;
    if (control::OpTakesName(request.op) && !(is_default && request.op != Op::kVolumeCreate)) {
      name = volume::ValidateVolumeName(request.name);
    }
  } else if (control::OpTakesName(request.op)) {
    name = volume::ValidateSnapshotName(request.name);
  }
  control::Reply reply;
  if (name.ok()) {
    reply = co_await Dispatch(request);
  } else {
    reply = FromStatus(name);
  }
  const auto* err = std::get_if<control::ErrorReply>(&reply);
  const bool changes = request.op != Op::kSnapshotList && request.op != Op::kSnapshotGet &&
                       request.op != Op::kStatus && request.op != Op::kVolumeList &&
                       request.op != Op::kVolumeGet && request.op != Op::kDeviceList &&
                       request.op != Op::kVolumeInspect && request.op != Op::kNodeGet;
  std::string vol = request.op == Op::kVolumeClone
                        ? " source=" + request.source + "@" + request.snapshot
                    : request.volume.empty() ? ""
                                             : " volume=" + request.volume;
  if (!request.device.empty()) vol += " device=" + request.device;
  if (!request.node.empty()) vol += " node=" + request.node;
  if (err) {
    Log()->info("control {} name={}{} failed code={} message=\"{}\"", control::OpName(request.op),
                request.name, vol, err->code, err->message);
  } else if (changes) {
    Log()->info("control {} name={}{} ok", control::OpName(request.op), request.name, vol);
  } else {
    Log()->debug("control {} ok", control::OpName(request.op));
  }
  co_return reply;
}

}  // namespace portal::daemon
