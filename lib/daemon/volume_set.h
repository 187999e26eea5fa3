// VolumeSet: the volumes one portalbd serves (docs/volumes.md), by name: the default
// volume at the storage URL's root ("portalbd") and named volumes under volumes/<name>/,
// each opened as its own single writer (volume::OpenVolume on its prefix view: its own
// manifest chain, epoch and fence). Opening a volume fences whoever served it before,
// for that volume only; releasing one closes it and leaves the others serving.
//
// One operation at a time per name (create, open, release, delete, resize): a second
// one is refused with Busy. Release and delete are refused (Busy) while NBD clients are
// attached to the volume or its snapshots; the catalog counts them (ServedVolume::attached).
//
// Clones (volume/clone.h, docs/volume.md "Clones"): every volume opens with
// VolumeOptions::resolve_volume set to this set's resolver, which maps any volume name to
// its store view (the root for "portalbd", volumes/<name>/ otherwise), served here or not.
// The views live as long as the set: a clone reads its ancestors' stores through them.
//
// Owner records (daemon/owner_record.h): with set_owner_records(), every open writes
// the volume's record before the volume is served (an open whose record cannot be
// written closes the volume again and fails), and release, delete and CloseAll remove it.
//
// Thread-safe. `env`, `root` and whatever `base` points to (buffer pool, caches) must
// outlive the set; CloseAll() before destroying it.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "daemon/owner_record.h"
#include "env/env.h"
#include "env/task.h"
#include "objstore/object_store.h"
#include "objstore/prefix_store.h"
#include "util/status.h"
#include "volume/options.h"
#include "volume/registry.h"
#include "volume/volume.h"

namespace portal::daemon {

// One served volume. Held by the set and by every NBD connection attached to it (the
// catalog's pin), so its store view outlives the connections.
struct ServedVolume {
  std::string name;  // volume::kDefaultVolumeName for the default volume
  std::unique_ptr<objstore::PrefixStore> view;  // named volumes; null: the root
  std::shared_ptr<volume::Volume> volume;
  std::optional<volume::VolumeRecord> record;  // named volumes
  std::atomic<int> attached{0};                // NBD clients on it or its snapshots

  bool is_default() const { return !view; }
};

class VolumeSet {
 public:
  static constexpr uint64_t kNoDeadline = volume::Volume::kNoDeadline;

  // `base`: the options every volume opens with; size_bytes is the default volume's
  // (0: keep its size), named volumes take theirs from their record and manifest.
  VolumeSet(Env& env, objstore::ObjectStore& root, volume::VolumeOptions base,
            uint64_t close_timeout_ms);
  ~VolumeSet();
  VolumeSet(const VolumeSet&) = delete;
  VolumeSet& operator=(const VolumeSet&) = delete;

  // Opens the default volume (creating it on an empty URL, as a single-volume portalbd).
  Task<Status> OpenDefault();
  // Opens a registered volume, or the default one by its name. NotFound for a name the
  // registry does not hold; Busy if a delete of it began.
  Task<Status> Open(std::string name);
  // Registers and opens a new named volume. PreconditionFailed "volume 'x' already
  // exists"; InvalidArgument for a bad name, size or block size (a power of two from 512
  // to 65536; 0: the set's own).
  Task<Result<std::shared_ptr<ServedVolume>>> Create(std::string name, uint64_t size_bytes,
                                                     uint32_t block_size = 0);
  // Closes a served volume; it stays in the store for any daemon to open. Fails when
  // written data could not be made durable, unless another daemon took the volume over
  // (fenced: that data was lost at the takeover, and its clients were told).
  Task<Status> Release(std::string name);
  // Registers and opens `name`, a clone of snapshot `snapshot` of volume `source` (served
  // here or not, the default volume too): its record (with clone_of), then
  // volume::CreateClone. NotFound for an unknown source or snapshot (nothing is left
  // behind), PreconditionFailed "volume 'x' already exists", InvalidArgument for bad names.
  Task<Result<std::shared_ptr<ServedVolume>>> Clone(std::string source, std::string snapshot,
                                                    std::string name);
  // Removes a named volume (volume::DeleteVolume): its objects, then its record. Opens it
  // first when another daemon serves it (fencing that one). Refused for the default volume
  // and while clients are attached. A volume whose snapshots have clones keeps what they
  // read and its record (marked deleting, so its name stays taken and resolvable) until
  // its last clone is deleted, which removes both.
  Task<Status> Delete(std::string name);
  // Volume::Resize on a served volume. Shrinking is refused while clients are attached.
  Task<Status> Resize(std::string name, uint64_t size_bytes, bool allow_shrink);

  // Records where each served volume's writer is (before any open; must outlive the set).
  void set_owner_records(OwnerRecords* owners) { owners_ = owners; }

  // Every served volume's GiveUpAt, then Close: at stop.
  void GiveUpAt(uint64_t deadline_ns);
  Task<Status> CloseAll(uint64_t deadline_ns);

  // "" names the default volume. Null if not served here.
  std::shared_ptr<ServedVolume> Find(std::string_view name) const;
  std::vector<std::shared_ptr<ServedVolume>> All() const;  // sorted by name
  // For an NBD connection: the served volume (into `served`) and a pin that counts the
  // client as attached until it is destroyed. Null if not served.
  std::shared_ptr<void> Attach(std::string_view name, std::shared_ptr<ServedVolume>* served) const;
  // Every served volume's NotDurableSummary, "name: summary; ...", "" when all durable.
  std::string NotDurableSummary() const;

  volume::Registry& registry() { return registry_; }
  Env& env() const { return env_; }
  const volume::VolumeOptions& options() const { return base_; }
  // The resolver's answer: the store view of volume `name`. NotFound for a bad name.
  Result<objstore::ObjectStore*> ResolveStore(const std::string& name);

 private:
  // Claims `name` for one operation; Busy if another runs. Release with Done().
  Status Claim(const std::string& name);
  void Done(const std::string& name);
  Task<Result<std::shared_ptr<ServedVolume>>> OpenNamed(const volume::VolumeRecord& record);
  // Takes a served volume out of the catalog if nothing is attached (else Busy).
  Result<std::shared_ptr<ServedVolume>> Detach(const std::string& name);
  Task<Result<std::shared_ptr<ServedVolume>>> CloneClaimed(const std::string& source,
                                                           const std::string& snapshot,
                                                           const std::string& name);
  Task<Status> DeleteClaimed(const std::string& name);
  // registry_.Create, after a read that refuses a name already registered.
  Task<Status> Register(const volume::VolumeRecord& record);
  // After `name` is deleted: removes the records of it and of its deleted ancestors whose
  // stores are empty now (its delete released them).
  Task<Status> RemoveEmptyRecords(std::string name);
  Task<Result<bool>> StoreEmpty(const std::string& name);
  void Add(std::shared_ptr<ServedVolume> v);
  // After an open, before serving: the owner record. An error closes the volume again.
  Task<Status> Announce(ServedVolume& v);
  // After a close: its owner record goes (failures are logged: a stale record is a hint).
  Task<void> Withdraw(const ServedVolume& v);
  uint64_t CloseDeadline() const;

  Env& env_;
  objstore::ObjectStore& root_;
  const volume::VolumeOptions base_;
  const uint64_t close_timeout_ms_;
  volume::Registry registry_;
  OwnerRecords* owners_ = nullptr;
  // The resolver's views, by name; never removed (volumes hold pointers to them).
  std::mutex views_mu_;
  std::map<std::string, std::unique_ptr<objstore::PrefixStore>> views_;  // GUARDED_BY(views_mu_)
  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<ServedVolume>, std::less<>> served_;  // GUARDED_BY(mu_)
  std::set<std::string> busy_;                                                // GUARDED_BY(mu_)
};

// Counts a client attached to `v` while the returned pin lives.
std::shared_ptr<void> AttachPin(std::shared_ptr<ServedVolume> v);

}  // namespace portal::daemon
