// Tunables of the object-store volume. Defaults follow DESIGN.md "Configuration".
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "util/status.h"

namespace portal {
class BufferPool;
class BufferRecycler;
}
namespace portal::objstore {
class ObjectStore;
}
namespace portal::cache {
class DiskCache;
struct CacheEntry;
template <typename V>
class LruCache;
using BlockCache = LruCache<CacheEntry>;
}
namespace portal::crypto {
class Keyring;
}

namespace portal::volume {

class WriteBudget;

// The daemon's volume registry: a volume's name to its store (clone.h). The store must
// outlive every volume opened with the resolver. NotFound for an unknown name.
using VolumeResolver = std::function<Result<objstore::ObjectStore*>(const std::string& name)>;

struct VolumeOptions {
  // A new volume's size (0: 1 GiB); an existing volume grows to it if larger, keeps its
  // own if 0, and refuses to shrink.
  uint64_t size_bytes = 1ull << 30;
  uint32_t block_size = 4096;
  // Seal the active buffer after this long dirty (0: only on FLUSH/FUA/size).
  uint64_t flush_interval_ms = 1000;
  // Seal the active buffer at this size; also the memtable's flush target.
  uint64_t l0_sst_size_bytes = 64ull << 20;
  // Active + sealed buffers above this stall writes (the volume's own budget; with
  // write_budget, that budget's limit counts instead).
  uint64_t max_unflushed_bytes = 256ull << 20;
  // Decompressed chunks, SST indexes and blocks, segment footers.
  uint64_t block_cache_size_bytes = 256ull << 20;
  // Read-ahead of sequential streams: GET bytes in flight at most (0: no read-ahead).
  // Read-ahead lands in the block cache; a stream's window is at most a quarter of it.
  uint64_t read_ahead_max_bytes = 64ull << 20;
  // Segments with less live data than this ratio are rewritten by GC.
  double gc_live_ratio = 0.5;
  // Segment uploads in flight: ids are uploaded in a window of this many past the
  // settled prefix (DESIGN.md write path, "Uploads in flight"); 1 = one at a time. The
  // daemon's default is config's [lsm] upload_window; the library keeps 1.
  uint32_t upload_window = 1;
  // Refuse stores that ignore conditional writes unless set.
  bool unsafe_no_fencing = false;
  // Directory for the SQLite cache ("" = in-memory database).
  std::string cache_dir;
  // Open a damaged volume read-only for copying out what is left (portalbd --salvage):
  // replay stops at the first missing segment, nothing is written to the store (no new
  // epoch, no fence, no GC), and every write is refused. See docs/volume.md "Damage".
  bool salvage = false;

  // Encryption at rest ([storage] encryption_key_file, docs/volume.md "Encryption"): every
  // segment, map SST, manifest and snapshot object this volume writes is sealed under the
  // keyring's first key, and every one it reads must be sealed under one of its keys. Null:
  // an unencrypted volume (an encrypted one then fails to open, naming its key id). Not
  // owned: the daemon's, and it must outlive the volume.
  const crypto::Keyring* keyring = nullptr;

  // Clones (clone.h): finds the stores of a clone's parent, grandparent, ... A volume
  // whose store holds clone.json cannot open without it. A new clone's size is its
  // snapshot's (grown to size_bytes if that is larger: pass 0 to keep it).
  VolumeResolver resolve_volume;

  // Internal knobs (not in the config file).
  uint32_t blocks_per_chunk = 16;
  bool compress = true;                 // LZ4 per chunk (off for memory://)
  bool read_partial_raw_chunks = false;  // memory://: read just the blocks, skip chunk fetch
  bool warm_map = true;                  // load the map's SSTs into the cache after open
  uint64_t memtable_flush_segments = 64;
  uint64_t memtable_flush_interval_ms = 60'000;
  uint64_t memtable_max_extents = 1u << 20;
  uint64_t l0_compaction_trigger = 4;
  uint64_t sst_target_bytes = 2ull << 20;
  uint64_t level1_target_bytes = 16ull << 20;
  uint64_t gc_grace_ms = 10 * 60'000;
  uint64_t gc_interval_ms = 10'000;
  // Full compaction once SST references shadowed by newer writes (garbage nothing else
  // releases) pass max(full_compaction_min_bytes, full_compaction_ratio * stored bytes).
  uint64_t full_compaction_min_bytes = 256ull << 20;
  double full_compaction_ratio = 0.25;
  uint64_t manifests_kept = 8;          // recent manifests kept besides epoch openers
  bool immediate_segment_free = false;  // memory://: free unreferenced segments at once
  // Where segments built in one string come from (util/buffer_pool.h); null: no pooling.
  // Not owned: the daemon's, and it must outlive the volume.
  BufferPool* buffer_pool = nullptr;
  // Where the write buffers' slabs come from (util/buffer_recycler.h); null: plain
  // allocations. Not owned: the daemon's, and it must outlive the volume.
  BufferRecycler* recycler = nullptr;
  // The block cache shared by the daemon's volumes (one budget, docs/volumes.md); keys
  // carry the store's URL so volumes never see each other's entries. Null: the volume's
  // own cache of block_cache_size_bytes. Not owned: the daemon's, and it must outlive the
  // volume (entries may outlive it: they hold nothing of the volume's).
  cache::BlockCache* block_cache = nullptr;
  // The write buffers' budget shared by the daemon's volumes (write_budget.h; [lsm]
  // max_unflushed_bytes for all of them together). Null: the volume's own budget of
  // max_unflushed_bytes. Not owned: the daemon's, and it must outlive the volume.
  WriteBudget* write_budget = nullptr;
  // Chunks on local disk ([cache] dir, cache/disk_cache.h), shared by the daemon's volumes;
  // null: none. Not owned: the daemon's, and it must outlive the volume. Unused with
  // read_partial_raw_chunks (memory://: the bytes are in this process already).
  cache::DiskCache* disk_cache = nullptr;
};

}  // namespace portal::volume
