// Volume: the object-store volume as the rest of portalbd sees it. A block device (the NBD
// backend contract, device/block_device.h) plus what the daemon, the control protocol,
// the tools and dst need: snapshots, stats, a bounded stop, and maintenance hooks.
//
// This header, options.h and the object codecs (manifest.h, segment_format.h,
// snapshot.h, for tools that read a store) are volume/'s public headers; the
// implementation (lsm_volume.h and its parts) is private to lib/volume/, and the build
// refuses an include of it from anywhere else (CMakeLists.txt, PORTAL_VOLUME_PUBLIC).
// See docs/architecture.md.
//
// Thread-safe. OpenVolume() it, use it, Close() it before destroying it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "cache/block_cache.h"
#include "device/block_device.h"
#include "env/async.h"
#include "env/env.h"
#include "objstore/object_store.h"
#include "util/status.h"
#include "volume/options.h"

namespace portal::volume {

struct VolumeStats {
  std::string storage_url;
  std::string volume_uuid;
  uint64_t size_bytes = 0;
  uint32_t block_size = 0;
  uint64_t epoch = 0;
  bool fenced = false;
  uint64_t manifest_number = 0;
  uint64_t applied_segment = 0;
  uint64_t next_segment_id = 0;
  uint64_t active_buffer_bytes = 0;
  uint64_t sealed_buffer_bytes = 0;
  uint64_t memtable_extents = 0;
  std::vector<uint64_t> ssts_per_level;
  uint64_t map_bytes = 0;  // sum of SST sizes
  uint64_t segments = 0;
  uint64_t segment_bytes = 0;
  uint64_t live_data_blocks = 0;
  uint64_t write_stalls = 0;
  uint64_t snapshots = 0;
  // Estimated data-block references in SSTs that newer writes shadow (garbage only a
  // compaction can release), and how many full compactions that estimate triggered.
  uint64_t shadowed_blocks = 0;
  uint64_t full_compactions = 0;
  uint64_t gc_reclaimed_bytes = 0;  // stored bytes of the dead segments GC deleted
  // Segment uploads failing (and retried; FLUSH and FUA wait meanwhile): since when
  // (wall clock, ns since the Unix epoch; 0 when not failing), attempts, last error.
  int64_t store_failing_since_ns = 0;
  uint64_t store_failed_attempts = 0;
  std::string store_error;
  // Object reads whose bytes failed verification and were fetched again (see
  // objstore::RefetchCorrupt): damage on the way from the store, or in it.
  uint64_t corrupt_refetches = 0;
  // Read-ahead (read_ahead_max_bytes): GETs that succeeded and their bytes; chunks read
  // ahead that a read used (hits) or that left the cache unread (wasted); read-aheads that
  // failed (dropped; the reads that needed them fetched their own).
  uint64_t read_ahead_gets = 0;
  uint64_t read_ahead_bytes = 0;
  uint64_t read_ahead_hits = 0;
  uint64_t read_ahead_wasted = 0;
  uint64_t read_ahead_failed = 0;
  cache::CacheStats cache;
};

struct SnapshotInfo {
  std::string name;
  std::string id;          // uuid
  int64_t created_ns = 0;  // wall clock
  uint64_t size_bytes = 0;  // the device size when it was taken
  uint64_t data_bytes = 0;  // data the snapshot references (what it pins at most)
  int attached = 0;         // clients reading it as portalbd@NAME
};

class Volume : public device::BlockDevice {
 public:
  static constexpr uint64_t kNoDeadline = UINT64_MAX;

  // Makes everything durable and stops background work. Later calls fail. With a
  // deadline (Env::NowNanos), GiveUpAt(deadline) first. Fails (IOError) when written
  // data was left that is not durable; the message is NotDurableSummary().
  virtual Task<Status> Close(uint64_t deadline_ns = kNoDeadline) = 0;
  // Bounds every wait for durability (a stop): once Env time reaches `deadline_ns` the
  // volume gives up on what is not yet in the store. Segment upload retries and the
  // background jobs' retries stop at once (even mid-backoff); FLUSH and FUA waiters,
  // stalled writers and later writes fail with IOError. What was acknowledged durable
  // stays durable; nothing is acknowledged that is not. The earliest deadline wins; it
  // cannot be undone (the volume can only be closed after it passed).
  virtual void GiveUpAt(uint64_t deadline_ns) = 0;
  // "N bytes not durable (store failing since T: error)": written data not yet in the
  // store and why; "" when there is none.
  virtual std::string NotDurableSummary() = 0;

  virtual VolumeStats stats() = 0;
  virtual bool fenced() = 0;
  virtual uint64_t epoch() const = 0;

  // --- snapshots ---
  // Captures every write acknowledged before the call: a FLUSH, a memtable flush, a
  // snap/<uuid>.json object and one manifest write. InvalidArgument for a bad or
  // duplicate name.
  virtual Task<Result<SnapshotInfo>> CreateSnapshot(std::string name) = 0;
  virtual std::vector<SnapshotInfo> ListSnapshots() = 0;
  virtual Result<SnapshotInfo> GetSnapshot(const std::string& name) = 0;
  // Unpins; GC reclaims what nothing else references. Busy while attached.
  virtual Task<Status> DeleteSnapshot(std::string name) = 0;
  // Makes the device equal the snapshot, atomically (one manifest write). Every other
  // snapshot survives. Clients may stay connected but must drop cached blocks.
  virtual Task<Status> RestoreSnapshot(std::string name) = 0;
  // A read-only device over the snapshot; it counts as attached until destroyed.
  virtual Result<std::shared_ptr<device::BlockDevice>> OpenSnapshot(const std::string& name) = 0;

  // --- size ---
  // Sets the device size (a multiple of the block size, at most 2^63 bytes) with one
  // manifest write; size_bytes() says the new size once it is durable. Growing is online:
  // the new blocks read as zeroes. Shrinking is refused (InvalidArgument) unless
  // `allow_shrink`; it then first trims the cut-off range and makes that durable, so a
  // later grow shows zeroes there, never old data. The caller makes sure no client is
  // attached when shrinking (a connected client keeps the size it negotiated: growing
  // is invisible to it until it reconnects, shrinking would fail its I/O past the end).
  virtual Task<Status> Resize(uint64_t size_bytes, bool allow_shrink) = 0;

  // --- maintenance, run now (tests, dst, tools; the volume also runs them itself) ---
  // Writes the memtable to an L0 SST and commits a manifest.
  virtual Task<Status> FlushMemtable() = 0;
  // Compacts L0 down and then every level over its target.
  virtual Task<Status> CompactAll() = 0;
  // One round of garbage collection.
  virtual Task<Status> RunGc() = 0;
};

// Opens (or creates) the volume in `store`: epoch bump, replay, fence (docs/volume.md
// "Open"). `env` and `store` must outlive the volume.
Task<Result<std::shared_ptr<Volume>>> OpenVolume(Env& env, objstore::ObjectStore& store,
                                                 VolumeOptions options);

}  // namespace portal::volume
