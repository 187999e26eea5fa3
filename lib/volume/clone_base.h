// CloneBase: what a clone reads through to. One layer per ancestor: the parent's
// snapshot (its frozen map levels, read from the parent's store), then, when the parent
// is itself a clone, the grandparent's snapshot, and so on. Read-only: it never writes
// to an ancestor's store. Private to lib/volume/ (docs/volume.md "Clones").
//
// Each layer reads through the daemon's shared block cache (VolumeOptions::block_cache,
// one budget) under its own store's URL: segment ids and SST keys are per store, so the
// scope keeps two layers' (and the clone's own) entries apart, while an ancestor that is
// also open as a volume shares its entries with it (the same immutable objects). Without
// a shared cache, a layer has its own small one. No disk cache (its keys carry the volume).
//
// Thread-safe after Open. The resolver's stores and `env` must outlive it.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "cache/block_cache.h"
#include "env/env.h"
#include "lsm/extent.h"
#include "lsm/sst_reader.h"
#include "objstore/retrying_store.h"
#include "volume/clone.h"
#include "volume/options.h"
#include "volume/segment_reader.h"
#include "volume/snapshot.h"

namespace portal::volume {

class CloneBase {
 public:
  // Ancestors deeper than this are refused (a loop in the records would be damage).
  static constexpr int kMaxDepth = 64;

  // Resolves `record.parent`, reads its snapshot object (NotFound / Corruption naming
  // it: the snapshot a live clone references is gone, which is damage), then the
  // parent's own clone record and so on.
  static Task<Result<std::unique_ptr<CloneBase>>> Open(Env& env, const CloneRecord& record,
                                                       const VolumeOptions& options, int depth = 0);

  // A run of blocks and the layer holding its data (null for zero/hole runs).
  using Sink =
      std::function<void(uint64_t first, uint64_t end, const lsm::Loc& loc, CloneBase* layer)>;
  // Covers all of [first, end): the snapshot's levels, then the next layer; blocks past
  // the snapshot's size, or that no layer defines, are holes.
  Task<Status> Resolve(uint64_t first, uint64_t end, const Sink& sink);
  // `n` blocks of this layer's segment `segment` from data-stream index `index`.
  Task<Status> ReadBlocks(uint64_t segment, uint64_t index, uint64_t n, uint8_t* dest);

  const CloneRecord& record() const { return record_; }
  const SnapshotObject& snapshot() const { return snap_; }
  uint64_t size_bytes() const { return snap_.size_bytes; }
  uint32_t block_size() const { return snap_.block_size; }

 private:
  CloneBase(Env& env, objstore::ObjectStore& store, const VolumeOptions& options);

  objstore::RetryingReadStore reads_;
  VolumeOptions options_;  // the clone's, without the disk cache
  std::unique_ptr<cache::BlockCache> own_cache_;  // unless options_.block_cache is shared
  cache::BlockCache& cache_;
  SegmentReader segments_;
  lsm::SstReader ssts_;
  CloneRecord record_;
  SnapshotObject snap_;
  std::unique_ptr<CloneBase> next_;  // the parent's base, if the parent is a clone
};

}  // namespace portal::volume
