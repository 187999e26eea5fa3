#include "daemon/volume_set.h"

#include <fmt/format.h>

#include <bit>

#include "config/config.h"

#include "util/log.h"
#include "volume/clone.h"
#include "volume/snapshot.h"

namespace portal::daemon {
namespace {
auto Log() { return log::Get("portalbd"); }

bool IsDefault(std::string_view name) {
  return name.empty() || name == volume::kDefaultVolumeName;
}

// A connection's hold on a served volume: counted while it lives.
struct Attachment {
  explicit Attachment(std::shared_ptr<ServedVolume> v) : volume(std::move(v)) {
    volume->attached.fetch_add(1);
  }
  ~Attachment() { volume->attached.fetch_sub(1); }
  Attachment(const Attachment&) = delete;
  Attachment& operator=(const Attachment&) = delete;
  std::shared_ptr<ServedVolume> volume;
};

volume::VolumeOptions WithResolver(volume::VolumeOptions o, VolumeSet* set) {
  o.resolve_volume = [set](const std::string& name) { return set->ResolveStore(name); };
  return o;
}
}  // namespace

std::shared_ptr<void> AttachPin(std::shared_ptr<ServedVolume> v) {
  return std::make_shared<Attachment>(std::move(v));
}

VolumeSet::VolumeSet(Env& env, objstore::ObjectStore& root, volume::VolumeOptions base,
                     uint64_t close_timeout_ms)
    : env_(env),
      root_(root),
      base_(WithResolver(std::move(base), this)),
      close_timeout_ms_(close_timeout_ms),
      registry_(env, root) {}

VolumeSet::~VolumeSet() = default;

uint64_t VolumeSet::CloseDeadline() const {
  return env_.NowNanos() + close_timeout_ms_ * kNanosPerMilli;
}

Status VolumeSet::Claim(const std::string& name) {
  std::lock_guard lock(mu_);
  if (!busy_.insert(name).second) {
    return Status::Busy(fmt::format("volume '{}' is busy with another operation", name));
  }
  return Status::Ok();
}

void VolumeSet::Done(const std::string& name) {
  std::lock_guard lock(mu_);
  busy_.erase(name);
}

Result<objstore::ObjectStore*> VolumeSet::ResolveStore(const std::string& name) {
  if (name == volume::kDefaultVolumeName) return &root_;
  if (Status st = volume::ValidateVolumeName(name); !st.ok()) {
    return Status::NotFound(st.message());
  }
  // Any valid name has a view, registered or not: a deleted volume's store is read by
  // its clones, and swept by the last of them, after its record may be gone.
  std::lock_guard lock(views_mu_);
  auto& view = views_[name];
  if (!view) view = std::make_unique<objstore::PrefixStore>(root_, volume::VolumePrefix(name));
  return static_cast<objstore::ObjectStore*>(view.get());
}

Task<Status> VolumeSet::Announce(ServedVolume& v) {
  if (owners_ == nullptr) co_return Status::Ok();
  Status st = co_await owners_->Publish(v.name, v.volume->epoch());
  if (st.ok()) co_return st;
  // A writer the controller cannot find would be opened behind its back (fencing it):
  // better not to serve.
  Status closed = co_await v.volume->Close(CloseDeadline());
  if (!closed.ok()) Log()->warn("volume {} closed again: {}", v.name, closed.ToString());
  co_return st;
}

Task<void> VolumeSet::Withdraw(const ServedVolume& v) {
  if (owners_ == nullptr) co_return;
  Status st = co_await owners_->Withdraw(v.name, v.volume->epoch());
  if (!st.ok()) Log()->warn("owner record of volume {} not removed: {}", v.name, st.ToString());
}

void VolumeSet::Add(std::shared_ptr<ServedVolume> v) {
  std::lock_guard lock(mu_);
  served_[v->name] = std::move(v);
}

std::shared_ptr<ServedVolume> VolumeSet::Find(std::string_view name) const {
  std::lock_guard lock(mu_);
  auto it = served_.find(IsDefault(name) ? volume::kDefaultVolumeName : name);
  return it == served_.end() ? nullptr : it->second;
}

std::vector<std::shared_ptr<ServedVolume>> VolumeSet::All() const {
  std::lock_guard lock(mu_);
  std::vector<std::shared_ptr<ServedVolume>> out;
  for (const auto& [name, v] : served_) out.push_back(v);
  return out;
}

std::shared_ptr<void> VolumeSet::Attach(std::string_view name,
                                        std::shared_ptr<ServedVolume>* served) const {
  // Under mu_: Detach cannot slip between finding the volume and counting the client.
  std::lock_guard lock(mu_);
  auto it = served_.find(IsDefault(name) ? volume::kDefaultVolumeName : name);
  if (it == served_.end()) return nullptr;
  *served = it->second;
  return AttachPin(it->second);
}

Result<std::shared_ptr<ServedVolume>> VolumeSet::Detach(const std::string& name) {
  std::lock_guard lock(mu_);
  auto it = served_.find(name);
  if (it == served_.end()) {
    return Status::NotFound(fmt::format("volume '{}' is not served here", name));
  }
  if (int n = it->second->attached.load(); n > 0) {
    return Status::Busy(fmt::format("volume '{}' has {} client{} attached", name, n,
                                    n == 1 ? "" : "s"));
  }
  auto v = std::move(it->second);
  served_.erase(it);
  return v;
}

Task<Status> VolumeSet::OpenDefault() {
  const std::string name(volume::kDefaultVolumeName);
  CO_RETURN_IF_ERROR(Claim(name));
  Status st;
  if (!Find(name)) {
    auto vol = co_await volume::OpenVolume(env_, root_, base_);
    if (vol.ok()) {
      auto v = std::make_shared<ServedVolume>();
      v->name = name;
      v->volume = std::move(*vol);
      st = co_await Announce(*v);
      if (st.ok()) Add(std::move(v));
    } else {
      st = vol.status().WithContext("opening the volume at " + root_.url());
    }
  }
  Done(name);
  co_return st;
}

Task<Result<std::shared_ptr<ServedVolume>>> VolumeSet::OpenNamed(
    const volume::VolumeRecord& record) {
  auto v = std::make_shared<ServedVolume>();
  v->name = record.name;
  v->record = record;
  v->view = std::make_unique<objstore::PrefixStore>(root_, volume::VolumePrefix(record.name));
  volume::VolumeOptions o = base_;
  o.block_size = record.block_size;
  // A volume whose first manifest is not written yet takes its record's size; an existing
  // one keeps the size its manifest says (a resize changed it there, not in the record).
  auto manifests = co_await v->view->List("manifest/");
  if (!manifests.ok()) co_return manifests.status().WithContext("volume " + record.name);
  o.size_bytes = manifests->empty() ? record.size_bytes : 0;
  if (record.clone_of) {
    o.size_bytes = 0;  // its snapshot's size, then whatever resizes made it
    // A clone whose create stopped before the library wrote clone.json (a crash after the
    // record): create it now. With clone.json, the open itself completes a cut-short create.
    if (manifests->empty()) {
      auto base = co_await volume::ReadCloneRecord(env_, *v->view);
      if (!base.ok()) co_return base.status().WithContext("volume " + record.name);
      if (!base->has_value()) {
        CO_RETURN_IF_ERROR(
            co_await volume::CreateClone(env_, base_.resolve_volume, record.clone_of->volume,
                                         record.clone_of->snapshot, *v->view, record.name,
                                         base_.keyring));
      }
    }
  }
  auto vol = co_await volume::OpenVolume(env_, *v->view, o);
  if (!vol.ok()) co_return vol.status().WithContext("opening volume " + record.name);
  v->volume = std::move(*vol);
  Log()->info("volume opened name={} size_bytes={} epoch={} url={}", v->name,
              v->volume->size_bytes(), v->volume->epoch(), v->view->url());
  co_return v;
}

Task<Status> VolumeSet::Open(std::string name) {
  if (IsDefault(name)) co_return co_await OpenDefault();
  CO_RETURN_IF_ERROR(volume::ValidateVolumeName(name));
  CO_RETURN_IF_ERROR(Claim(name));
  Status st;
  if (!Find(name)) {
    auto record = co_await registry_.Get(name);
    if (!record.ok()) {
      st = record.status();
    } else if (record->deleting) {
      // Either a delete cut short, or a deleted volume whose objects stay for its clones.
      st = Status::Busy(fmt::format(
          "volume '{}' is deleted (kept while clones read its snapshots; a delete cut short "
          "is finished by deleting it again)",
          name));
    } else {
      auto v = co_await OpenNamed(*record);
      if (v.ok()) st = co_await Announce(**v);  // (closes it on failure)
      if (!v.ok()) {
        st = v.status();
      } else if (st.ok()) {
        Add(std::move(*v));
      }
    }
  }
  Done(name);
  co_return st;
}

Task<Status> VolumeSet::Register(const volume::VolumeRecord& record) {
  // The conditional create decides a race; this read covers stores that ignore the
  // condition (s3rver) in the common case, a name whose record is there already (a
  // deleted volume kept for its clones is not served, so Find does not see it).
  auto existing = co_await registry_.Get(record.name);
  if (existing.ok()) {
    co_return Status::PreconditionFailed(fmt::format("volume '{}' already exists", record.name));
  }
  if (!existing.status().IsNotFound()) co_return existing.status();
  co_return co_await registry_.Create(record);
}

Task<Result<std::shared_ptr<ServedVolume>>> VolumeSet::Create(std::string name,
                                                              uint64_t size_bytes,
                                                              uint32_t block_size) {
  CO_RETURN_IF_ERROR(volume::ValidateVolumeName(name));
  if (block_size == 0) block_size = base_.block_size;
  if (!std::has_single_bit(block_size) || block_size < config::kMinBlockSize ||
      block_size > config::kMaxBlockSize) {
    co_return Status::InvalidArgument(
        fmt::format("volume '{}': block size {} is not a power of two from {} to {}", name,
                    block_size, config::kMinBlockSize, config::kMaxBlockSize));
  }
  if (size_bytes == 0 || size_bytes % block_size != 0) {
    co_return Status::InvalidArgument(fmt::format(
        "volume '{}': size {} is not a positive multiple of the block size {}", name,
        size_bytes, block_size));
  }
  CO_RETURN_IF_ERROR(Claim(name));
  Result<std::shared_ptr<ServedVolume>> out = Status::PreconditionFailed(
      fmt::format("volume '{}' already exists", name));
  if (!Find(name)) {
    volume::VolumeRecord record{name,         size_bytes, block_size, env_.WallNanos(),
                                std::nullopt, false};
    Status st = co_await Register(record);
    if (st.ok()) {
      out = co_await OpenNamed(record);
      if (out.ok()) {
        Status announced = co_await Announce(**out);
        if (announced.ok()) {
          Add(*out);
        } else {
          out = announced;
        }
      }
    } else {
      out = st;
    }
  }
  Done(name);
  co_return out;
}

Task<Result<std::shared_ptr<ServedVolume>>> VolumeSet::Clone(std::string source,
                                                             std::string snapshot,
                                                             std::string name) {
  CO_RETURN_IF_ERROR(volume::ValidateVolumeName(name));
  if (source != volume::kDefaultVolumeName) {
    CO_RETURN_IF_ERROR(volume::ValidateVolumeName(source));
  }
  CO_RETURN_IF_ERROR(volume::ValidateSnapshotName(snapshot));
  CO_RETURN_IF_ERROR(Claim(name));
  auto out = co_await CloneClaimed(source, snapshot, name);
  Done(name);
  co_return out;
}

Task<Result<std::shared_ptr<ServedVolume>>> VolumeSet::CloneClaimed(const std::string& source,
                                                                    const std::string& snapshot,
                                                                    const std::string& name) {
  if (Find(name)) {
    co_return Status::PreconditionFailed(fmt::format("volume '{}' already exists", name));
  }
  // The source is checked here for clear errors and no registry churn; CreateClone checks
  // again against the store (the source may be served by another daemon, or go meanwhile).
  uint32_t block_size = base_.block_size;
  if (source != volume::kDefaultVolumeName) {
    CO_ASSIGN_OR_RETURN(volume::VolumeRecord parent, co_await registry_.Get(source));
    if (parent.deleting) co_return Status::NotFound(fmt::format("volume '{}' is deleted", source));
    block_size = parent.block_size;
  }
  uint64_t size_bytes = 0;  // unknown unless the source is served here: set after the open
  if (auto parent = Find(source)) {
    auto snap = parent->volume->GetSnapshot(snapshot);
    if (!snap.ok()) {
      co_return Status::NotFound(
          fmt::format("volume '{}' has no snapshot named '{}'", source, snapshot));
    }
    size_bytes = snap->size_bytes;
  }
  volume::VolumeRecord record{
      name, size_bytes, block_size, env_.WallNanos(), volume::CloneSource{source, snapshot}, false};
  CO_RETURN_IF_ERROR(co_await Register(record));
  auto v = co_await OpenNamed(record);  // creates the clone (its store is empty)
  if (!v.ok()) {
    // CreateClone withdrew what it wrote in the parent; the rest (its record, a clone
    // that could not open) goes, so the name is free again.
    CO_ASSIGN_OR_RETURN(objstore::ObjectStore * view, ResolveStore(name));
    Status undo = co_await volume::DeleteVolume(env_, base_.resolve_volume, *view, base_.keyring);
    if (undo.ok()) undo = co_await registry_.Remove(name);
    if (!undo.ok()) {
      Log()->warn("clone {} failed and was not removed (delete it): {}", name, undo.ToString());
    }
    co_return v.status();
  }
  if (record.size_bytes != (*v)->volume->size_bytes()) {
    record.size_bytes = (*v)->volume->size_bytes();
    if (Status st = co_await registry_.Update(record); st.ok()) {
      (*v)->record = record;
    } else {
      Log()->warn("volume {}: record size not updated: {}", name, st.ToString());
    }
  }
  CO_RETURN_IF_ERROR(co_await Announce(**v));
  Add(*v);
  Log()->info("volume cloned name={} source={}@{}", name, source, snapshot);
  co_return v;
}

Task<Status> VolumeSet::Release(std::string name) {
  if (IsDefault(name)) name = std::string(volume::kDefaultVolumeName);
  CO_RETURN_IF_ERROR(Claim(name));
  Status st;
  auto v = Detach(name);
  if (v.ok()) {
    st = co_await (*v)->volume->Close(CloseDeadline());
    Log()->info("volume released name={} result=\"{}\"", name, st.ToString());
    co_await Withdraw(**v);
    // A fenced volume belongs to another daemon now: what this one still held was lost
    // when that one took over (its clients saw their FLUSH fail), not by the release.
    if ((*v)->volume->fenced()) st = Status::Ok();
  } else {
    st = v.status();
  }
  Done(name);
  co_return st;
}

Task<Status> VolumeSet::Resize(std::string name, uint64_t size_bytes, bool allow_shrink) {
  if (IsDefault(name)) name = std::string(volume::kDefaultVolumeName);
  CO_RETURN_IF_ERROR(Claim(name));
  Status st;
  std::shared_ptr<ServedVolume> v = Find(name);
  if (!v) {
    st = Status::NotFound(fmt::format("volume '{}' is not served here", name));
  } else if (allow_shrink && size_bytes < v->volume->size_bytes()) {
    // Out of the catalog while it shrinks: no client may attach to the old size.
    auto detached = Detach(name);
    if (detached.ok()) {
      st = co_await v->volume->Resize(size_bytes, true);
      Add(std::move(*detached));
    } else {
      st = detached.status();
    }
  } else {
    st = co_await v->volume->Resize(size_bytes, allow_shrink);
  }
  Done(name);
  co_return st.ok() ? st : st.WithContext("volume " + name);
}

Task<Status> VolumeSet::Delete(std::string name) {
  if (IsDefault(name)) {
    co_return Status::InvalidArgument(fmt::format(
        "volume '{}' is the default volume, which lives at the URL's root and cannot be "
        "deleted",
        volume::kDefaultVolumeName));
  }
  CO_RETURN_IF_ERROR(volume::ValidateVolumeName(name));
  CO_RETURN_IF_ERROR(Claim(name));
  Status st = co_await DeleteClaimed(name);
  Done(name);
  co_return st;
}

Task<Status> VolumeSet::DeleteClaimed(const std::string& name) {
  CO_ASSIGN_OR_RETURN(volume::VolumeRecord record, co_await registry_.Get(name));
  CO_ASSIGN_OR_RETURN(objstore::ObjectStore * view, ResolveStore(name));
  std::shared_ptr<ServedVolume> v = Find(name);
  if (v) {
    CO_ASSIGN_OR_RETURN(v, Detach(name));
  } else if (!record.deleting) {
    // Served elsewhere, perhaps: open it, which fences that daemon, before removing it.
    // Without a manifest no writer ever committed (a clone whose create failed): nothing
    // to fence, and nothing an open could finish.
    CO_ASSIGN_OR_RETURN(auto manifests, co_await view->List("manifest/"));
    if (!manifests.empty()) {
      CO_ASSIGN_OR_RETURN(v, co_await OpenNamed(record));
    }
  }
  if (v) {
    // volume::DeleteVolume needs the writer closed.
    Status closed = co_await v->volume->Close(CloseDeadline());
    if (!closed.ok()) Log()->warn("volume {} closed for delete: {}", name, closed.ToString());
  }
  if (!record.deleting) {
    record.deleting = true;  // from here on, nobody opens it again
    CO_RETURN_IF_ERROR(co_await registry_.Update(record));
  }
  // The tombstone, then every object but what clones of its snapshots read; deleting a
  // clone removes its reference on its parent, and sweeps a deleted parent it released.
  CO_RETURN_IF_ERROR((co_await volume::DeleteVolume(env_, base_.resolve_volume, *view, base_.keyring))
                         .WithContext(fmt::format("deleting volume '{}'", name)));
  if (owners_ != nullptr) {
    // Whoever served it was fenced by the delete's open: its record names nobody now.
    if (Status st = co_await owners_->Remove(name); !st.ok()) {
      Log()->warn("owner record of deleted volume {} not removed: {}", name, st.ToString());
    }
  }
  co_return co_await RemoveEmptyRecords(name);
}

Task<Result<bool>> VolumeSet::StoreEmpty(const std::string& name) {
  CO_ASSIGN_OR_RETURN(objstore::ObjectStore * view, ResolveStore(name));
  CO_ASSIGN_OR_RETURN(auto objects, co_await view->List(""));
  co_return objects.empty();
}

Task<Status> VolumeSet::RemoveEmptyRecords(std::string name) {
  // A record stays while its store holds objects: the name stays taken, and clones keep
  // resolving it. Walks up through deleted parents that the delete released.
  while (true) {
    auto record = co_await registry_.Get(name);
    if (record.status().IsNotFound()) co_return Status::Ok();
    CO_RETURN_IF_ERROR(record.status());
    if (!record->deleting) co_return Status::Ok();
    CO_ASSIGN_OR_RETURN(bool empty, co_await StoreEmpty(name));
    if (!empty) {
      Log()->info("volume deleted name={} kept=\"what its clones read, until they are deleted\"",
                  name);
      co_return Status::Ok();
    }
    CO_RETURN_IF_ERROR(co_await registry_.Remove(name));
    Log()->info("volume deleted name={}", name);
    if (!record->clone_of || record->clone_of->volume == volume::kDefaultVolumeName) {
      co_return Status::Ok();
    }
    name = record->clone_of->volume;
  }
}

void VolumeSet::GiveUpAt(uint64_t deadline_ns) {
  for (const auto& v : All()) v->volume->GiveUpAt(deadline_ns);
}

Task<Status> VolumeSet::CloseAll(uint64_t deadline_ns) {
  Status result;
  for (const auto& v : All()) {
    Status st = co_await v->volume->Close(deadline_ns);
    if (!st.ok() && result.ok()) result = st.WithContext("volume " + v->name);
    co_await Withdraw(*v);
  }
  co_return result;
}

std::string VolumeSet::NotDurableSummary() const {
  std::string out;
  const auto all = All();
  for (const auto& v : all) {
    std::string s = v->volume->NotDurableSummary();
    if (s.empty()) continue;
    if (!out.empty()) out += "; ";
    out += all.size() == 1 ? s : v->name + ": " + s;
  }
  return out;
}

}  // namespace portal::daemon
