// Clones in the simulation (dst/README.md "Clones"): after an open, a snapshot the oracle
// knows to exist may get a clone (a volume of its own in its own store, another daemon's,
// whose base is the simulated volume's store); every open then reads every clone and
// checks it against the snapshot's oracle, however the parent went on writing,
// deleting snapshots, crashing and collecting. A SNAP_DELETE of a cloned snapshot must be
// refused (Busy). At the end the parent is deleted while its clones live, the clones
// still read their snapshots, and deleting them leaves every store empty.
#include <fmt/format.h>

#include "dst/sim.h"
#include "volume/clone.h"

namespace portal::dst {
namespace {
constexpr uint64_t kTenMinutes = 600 * kNanosPerSecond;
constexpr size_t kMaxClones = 3;
constexpr char kParent[] = "parent";
}  // namespace

template <typename T>
std::optional<T> Simulator::AwaitTask(Task<T> task, const char* what) {
  auto r = std::make_shared<std::optional<T>>();
  Start(std::move(task), [r](T v) { *r = std::move(v); });
  WaitFor([&] { return r->has_value(); }, what, kTenMinutes);
  return std::move(*r);
}

volume::VolumeResolver Simulator::CloneResolver() {
  return [this](const std::string& name) -> Result<objstore::ObjectStore*> {
    if (name == kParent) return static_cast<objstore::ObjectStore*>(&mem_);
    auto it = clones_.find(name);
    if (it == clones_.end()) return Status::NotFound("no volume named '" + name + "'");
    return static_cast<objstore::ObjectStore*>(it->second.store.get());
  };
}

std::shared_ptr<volume::Volume> Simulator::OpenClone(const std::string& name) {
  volume::VolumeOptions o = k_.volume;
  o.size_bytes = 0;  // the snapshot's
  o.disk_cache = nullptr;
  o.resolve_volume = CloneResolver();
  auto v = AwaitTask(volume::OpenVolume(env_, *clones_.at(name).store, o), "a clone's open");
  if (!v) return nullptr;
  if (!v->ok()) {
    Fail(fmt::format("clone {} did not open: {}", name, v->status().ToString()));
    return nullptr;
  }
  return **v;
}

void Simulator::MaybeClone(Writer* w) {
  if (clones_.size() >= kMaxClones || w->dead || w->damaged || !Healthy(w) ||
      clone_rng_.Below(4) != 0) {
    return;
  }
  std::vector<std::string> candidates;
  for (auto& [name, s] : snaps_) {
    if (s.must_exist && !s.busy && s.tl && s.clone.empty()) candidates.push_back(name);
  }
  if (candidates.empty()) return;
  const std::string snap = candidates[clone_rng_.Below(candidates.size())];
  const std::string name = fmt::format("clone{}", clones_.size() + 1);
  CloneState& c = clones_[name];
  c.store = std::make_unique<objstore::MemoryStore>();
  c.snap = snap;
  auto st = AwaitTask(volume::CreateClone(env_, CloneResolver(), kParent, snap, *c.store, name,
                                          keyring_.get()),
                      "a clone's creation");
  if (!st) return;
  if (!st->ok()) {
    // Only a delete racing it may refuse, and none runs (the snapshot is not busy).
    return Fail(fmt::format("clone of snapshot '{}' refused: {}", snap, st->ToString()));
  }
  c.tl = std::make_unique<Timeline>(*snaps_.at(snap).tl);
  snaps_.at(snap).clone = name;
  Note(fmt::format("clone {} of snapshot {}", name, snap));
}

void Simulator::VerifyClones(Writer* w) {
  const uint64_t bs = k_.volume.block_size;
  for (auto& [name, c] : clones_) {
    if (failed() || (w && w->dead)) return;
    auto vol = OpenClone(name);
    if (!vol) return;
    std::vector<uint64_t> blocks = c.tl->Blocks();
    const uint64_t nblocks = vol->size_bytes() / bs;
    for (int i = 0; i < 4 && nblocks > 0; ++i) blocks.push_back(clone_rng_.Below(nblocks));
    std::sort(blocks.begin(), blocks.end());
    blocks.erase(std::unique(blocks.begin(), blocks.end()), blocks.end());
    for (size_t i = 0; i < blocks.size() && !failed();) {
      size_t j = i + 1;
      while (j < blocks.size() && blocks[j] == blocks[j - 1] + 1 && j - i < 64) ++j;
      std::vector<uint8_t> data((j - i) * bs);
      auto st = AwaitTask(vol->Read(blocks[i] * bs, data, nullptr), "a clone's read");
      if (!st) return;
      if (!st->ok()) {
        return Fail(fmt::format("clone {} of snapshot '{}': read of blocks [{}, +{}) failed: {}",
                                name, c.snap, blocks[i], j - i, st->ToString()));
      }
      for (size_t k = i; k < j; ++k) {
        std::span<const uint8_t> blk(data.data() + (k - i) * bs, bs);
        std::string err = c.tl->Resolve(blocks[k], blk, nullptr, nullptr);
        if (!err.empty()) {
          return Fail(fmt::format("clone {} of snapshot '{}': {}", name, c.snap, err));
        }
      }
      i = j;
    }
    ++clones_verified_;
    auto closed = AwaitTask(vol->Close(), "a clone's close");
    if (closed && !closed->ok()) Fail(fmt::format("clone {} close: {}", name, closed->ToString()));
  }
}

void Simulator::DeleteVolumesAtEnd() {
  if (clones_.empty() || failed()) return;
  for (auto& w : writers_) {
    if (w->vol && !w->closing) StartClose(w.get());
  }
  WaitFor(
      [&] {
        for (auto& w : writers_) {
          if (w->vol && !w->closed) return false;
        }
        return true;
      },
      "closes before the volume delete", kTenMinutes);
  if (failed()) return;
  auto st = AwaitTask(volume::DeleteVolume(env_, CloneResolver(), mem_, keyring_.get()), "the parent's delete");
  if (!st || failed()) return;
  if (!st->ok()) return Fail("deleting the parent volume: " + st->ToString());
  VerifyClones(nullptr);  // they read their snapshots all the same
  for (auto& [name, c] : clones_) {
    if (failed()) return;
    st = AwaitTask(volume::DeleteVolume(env_, CloneResolver(), *c.store, keyring_.get()), "a clone's delete");
    if (!st || failed()) return;
    if (!st->ok()) return Fail(fmt::format("deleting clone {}: {}", name, st->ToString()));
    if (c.store->total_bytes() != 0) Fail(fmt::format("clone {} deleted, bytes left", name));
  }
  auto left = AwaitTask(mem_.List(""), "listing the deleted parent");
  if (left && left->ok() && !(*left)->empty()) {
    Fail(fmt::format("every volume deleted, the parent's store still holds {} (first {})",
                     (*left)->size(), (*left)->front().key));
  }
  Note(fmt::format("deleted the parent and {} clone(s)", clones_.size()));
}

}  // namespace portal::dst
