// LsmVolume: the object-store volume. Block data goes into segments (written once); a
// small LSM (the map) records where every block lives; manifests tie it together. See
// docs/volume.md for formats and protocols, DESIGN.md for the durability contract.
//
// Concurrency:
// - `mu_` (a std::mutex, never held across co_await) guards the in-memory state: the
//   active and sealed write buffers, the map memtables, the current Version, counters.
// - `jobs_mu_` (an AsyncMutex) serializes everything that commits a manifest: memtable
//   flushes, compactions, GC, snapshots, restore. Holding it for a whole job means no job
//   started before another can commit after it (DESIGN.md's generation check, by
//   construction).
// - One uploader coroutine owns segment uploads (one in flight, strictly in id order) and
//   applies each uploaded segment to the memtable.
// - One maintenance coroutine flushes the memtable, compacts and collects garbage.
//
// Thread-safe. Open() it, use it, Close() it before destroying it.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "cache/block_cache.h"
#include "device/block_device.h"
#include "env/async.h"
#include "env/env.h"
#include "lsm/memtable.h"
#include "lsm/sst_reader.h"
#include "objstore/object_store.h"
#include "objstore/retrying_store.h"
#include "volume/manifest.h"
#include "volume/manifest_log.h"
#include "volume/options.h"
#include "volume/segment_reader.h"
#include "volume/segment_table.h"
#include "volume/snapshot.h"
#include "volume/sqlite_cache.h"
#include "volume/store_health.h"
#include "volume/write_buffer.h"

namespace portal::volume {

// The device seam's types, used unqualified throughout the volume.
using device::BlockDevice;
using device::ByteRange;
using device::StatusExtent;
using device::WriteFlags;
using device::ZeroFlags;

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
  // Segment uploads failing (and retried; FLUSH and FUA wait meanwhile): since when
  // (wall clock, ns since the Unix epoch; 0 when not failing), attempts, last error.
  int64_t store_failing_since_ns = 0;
  uint64_t store_failed_attempts = 0;
  std::string store_error;
  // Object reads whose bytes failed verification and were fetched again (see
  // objstore::RefetchCorrupt): damage on the way from the store, or in it.
  uint64_t corrupt_refetches = 0;
  cache::CacheStats cache;
};

class LsmVolume final : public BlockDevice, public std::enable_shared_from_this<LsmVolume> {
 public:
  // Opens (or creates) the volume in `store`: epoch bump, replay, fence. `env` and
  // `store` must outlive the volume.
  static Task<Result<std::shared_ptr<LsmVolume>>> Open(Env& env, objstore::ObjectStore& store,
                                                       VolumeOptions options);
  ~LsmVolume() override;

  static constexpr uint64_t kNoDeadline = UINT64_MAX;
  // Makes everything durable and stops background work. Later calls fail. With a
  // deadline (Env::NowNanos), GiveUpAt(deadline) first. Fails (IOError) when written
  // data was left that is not durable; the message is NotDurableSummary().
  Task<Status> Close(uint64_t deadline_ns = kNoDeadline);
  // Bounds every wait for durability (a stop): once Env time reaches `deadline_ns` the
  // volume gives up on what is not yet in the store. Segment upload retries and the
  // background jobs' retries stop at once (even mid-backoff); FLUSH and FUA waiters,
  // stalled writers and later writes fail with IOError. What was acknowledged durable
  // stays durable; nothing is acknowledged that is not. The earliest deadline wins; it
  // cannot be undone (the volume can only be closed after it passed).
  void GiveUpAt(uint64_t deadline_ns);
  // "N bytes not durable (store failing since T: error)": written data not yet in the
  // store and why; "" when there is none. Thread-safe.
  std::string NotDurableSummary();

  uint64_t size_bytes() const override;
  uint32_t block_size() const override { return block_size_; }
  // Opened with VolumeOptions::salvage: nothing is written, writes are refused.
  bool read_only() const override { return options_.salvage; }

  Task<Status> Read(uint64_t offset, std::span<uint8_t> out,
                    std::vector<ByteRange>* zeroes) override;
  Task<Status> Write(uint64_t offset, std::span<const uint8_t> data, WriteFlags flags) override;
  Task<Status> Flush() override;
  Task<Status> Trim(uint64_t offset, uint64_t length, WriteFlags flags) override;
  Task<Status> WriteZeroes(uint64_t offset, uint64_t length, ZeroFlags flags) override;
  Task<Result<std::vector<StatusExtent>>> BlockStatus(uint64_t offset, uint64_t length,
                                                       uint32_t max_extents) override;
  Task<Status> Cache(uint64_t offset, uint64_t length) override;

  // Writes the memtable to an L0 SST and commits a manifest (tests, shutdown).
  Task<Status> FlushMemtable();
  // Compacts L0 down and then every level over its target (tests, tools).
  Task<Status> CompactAll();
  // Runs one round of garbage collection now (tests).
  Task<Status> RunGc();

  VolumeStats stats();
  bool fenced();
  uint64_t epoch() const { return epoch_; }

  // --- snapshots (volume_snapshot.cc) ---
  // Captures every write acknowledged before the call: a FLUSH, a memtable flush, a
  // snap/<uuid>.json object and one manifest write. InvalidArgument for a bad or
  // duplicate name.
  Task<Result<SnapshotInfo>> CreateSnapshot(std::string name);
  std::vector<SnapshotInfo> ListSnapshots();
  Result<SnapshotInfo> GetSnapshot(const std::string& name);
  // Unpins; GC reclaims what nothing else references. Busy while attached.
  Task<Status> DeleteSnapshot(std::string name);
  // Makes the device equal the snapshot, atomically (one manifest write). Every other
  // snapshot survives. Clients may stay connected but must drop cached blocks.
  Task<Status> RestoreSnapshot(std::string name);
  // A read-only device over the snapshot; it counts as attached until destroyed.
  Result<std::shared_ptr<BlockDevice>> OpenSnapshot(const std::string& name);

 private:
  struct Sealed {
    std::shared_ptr<const WriteBuffer> buf;
    uint64_t gen = 0;
    uint64_t segment_id = 0;
  };
  // Live blocks copied out of sparse segments by GC, uploaded as a segment of
  // conditional extents (they apply only where the map still points at the source).
  struct Relocation {
    std::vector<SegmentExtent> extents;  // sorted; loc.index into `data`; conditional
    std::string data;
    uint64_t data_blocks = 0;
    std::vector<uint64_t> sources;
  };
  // The map as committed: immutable, shared by readers.
  struct Version {
    Manifest manifest;
    uint64_t number = 0;
  };
  // A resolved run of blocks (the read path).
  struct Piece {
    uint64_t first;
    uint64_t end;
    lsm::Loc loc;             // data in a segment, or zero/hole
    const uint8_t* bytes;     // data already in a buffer (valid under mu_ only)
  };
  using Intervals = std::vector<std::pair<uint64_t, uint64_t>>;
  using Levels = std::vector<std::vector<SstRef>>;

  LsmVolume(Env& env, objstore::ObjectStore& store, VolumeOptions options);
  friend class SnapshotDevice;

  struct SnapDetail {
    SnapshotRef ref;
    SnapshotObject object;
    Status damage;  // not Ok: the object is missing or corrupt (opening it fails so)
    int attached = 0;
    bool deleting = false;
  };
  Task<Status> LoadSnapshots();
  void RecomputePinsLocked();
  SnapshotInfo InfoLocked(const SnapDetail& d) const;
  void Detach(const std::shared_ptr<SnapDetail>& d);
  // Writes wait while a restore runs; a restore waits for writes in flight.
  Task<Status> EnterWrite();
  void LeaveWrite();

  // --- open (volume_open.cc) ---
  Task<Status> DoOpen();
  Task<Status> ProbeConditionalWrites();
  Task<Status> Replay();
  // What replay found above applied_segment: the contiguous run to apply, the first
  // missing id after it, and the ids present above that gap.
  struct ReplayPlan {
    std::vector<std::pair<uint64_t, uint64_t>> todo;  // (id, size)
    uint64_t gap = 0;
    std::vector<uint64_t> above;  // ascending
  };
  Task<Result<ReplayPlan>> PlanReplay(uint64_t applied);
  // DESIGN.md single writer, step 7: Corruption naming seg/<gap> when a footer above
  // the gap records it as durable and a HEAD still finds nothing (damage, not a crash);
  // Unavailable "relist" when the HEAD finds it (a listing that raced an upload).
  Task<Status> CheckGap(const ReplayPlan& plan);
  // Corruption when the newest segment's epoch is above the latest manifest's `epoch`
  // (manifest `number`): a newer manifest was lost. Unavailable when one appeared.
  Task<Status> CheckNewestEpoch(const ReplayPlan& plan, uint64_t number, uint64_t epoch);
  Task<Status> ApplyReplayed(const SegmentFooter& f, uint64_t size);
  // Applies a segment's extents to the memtable. Conditional extents are first cut to
  // where the committed map (memtables + SSTs) still holds their expected location;
  // only the uploader and replay call this, so the map cannot change in between.
  Task<Status> ApplyFooter(const SegmentFooter& f, uint64_t size);

  // --- writes (volume_write.cc) ---
  Status CheckNotSalvage() const;  // PermissionDenied in salvage mode
  Status CheckWritable();
  Task<Status> WaitForRoom();
  // Put blocks into the active buffer; fail once fenced or stopped (CheckBufferableLocked).
  Status CheckBufferableLocked() const;
  // `keep`: see WriteFlags::keep (the buffer may adopt `data` instead of copying it).
  Status WriteFullBlocksLocked(uint64_t first, const uint8_t* data, uint64_t n,
                               const std::shared_ptr<const void>& keep = nullptr);
  Status WriteZeroRunLocked(uint64_t first, uint64_t end, lsm::LocKind kind);
  void BumpStripesLocked(uint64_t first, uint64_t end);
  void NoteDirtyLocked();
  // Read-modify-write of part of one block: `src` null writes zeroes.
  Task<Status> WritePartial(uint64_t block, uint32_t in_block, const uint8_t* src, uint32_t len);
  Task<Status> ZeroRange(uint64_t offset, uint64_t length, lsm::LocKind kind, bool fua);

  // --- reads (volume_read.cc) ---
  // Resolves [first, end) through every layer; `sink(piece)` sees buffer data (under
  // mu_), memtable and SST locations, and zero runs; blocks no layer defines come out
  // as holes.
  // With `frozen`, only those levels are consulted (a snapshot's map).
  Task<Status> Resolve(uint64_t first, uint64_t end, std::function<void(const Piece&)> sink,
                       bool include_buffers = true, const Levels* frozen = nullptr);
  Task<Status> ReadBlocksRaw(uint64_t first, uint64_t end, uint64_t offset,
                             std::span<uint8_t> out, std::vector<ByteRange>* zeroes,
                             const Levels* frozen = nullptr);
  Task<Result<std::vector<StatusExtent>>> StatusOf(uint64_t offset, uint64_t length,
                                                   uint32_t max_extents, const Levels* frozen);

  // --- upload (volume_upload.cc) ---
  // Moves the active buffer to the end of sealed_ under the next generation (its segment
  // id is taken when its upload starts; the uploader takes sealed_ before relocations).
  void SealActiveLocked();
  Task<void> UploaderLoop();
  // Encodes (user buffer or relocation) and uploads segment `id`.
  Task<Status> UploadSegment(uint64_t id, const WriteBuffer* buf, const Relocation* reloc,
                             SegmentFooter* footer, uint64_t* size);
  void ApplyExtentsLocked(const SegmentFooter& f, const std::vector<lsm::Extent>& extents,
                          uint64_t size);
  // Estimated data blocks of the committed map (SSTs and a flushing memtable) that a
  // write of [first, end) shadows, where the active memtable does not already.
  uint64_t ShadowedByLocked(uint64_t first, uint64_t end) const;

  // --- map maintenance (volume_maintain.cc) ---
  Task<void> MaintenanceLoop();
  Task<Status> FlushMemtableLocked();  // caller holds jobs_mu_
  // One compaction step if a level is over its target; `force` also compacts a
  // non-empty L0 below its trigger.
  // `level` >= 0: compact that level (if non-empty) instead of picking one.
  Task<Status> CompactOnce(bool* did_work, bool force = false, int level = -1);
  // Space amplification: shadowed references past the options' threshold call for a
  // full compaction, the only thing that releases them.
  bool FullCompactionDueLocked() const;
  // Flushes the memtable and compacts every level into the next, down to the last.
  Task<Status> CompactToBottomLocked();  // caller holds jobs_mu_
  Task<Status> Commit(const Manifest& next);  // caller holds jobs_mu_
  void GiveUpNow();
  uint64_t UnflushedBytesLocked() const;
  std::string NotDurableSummaryLocked() const;
  Status GaveUpLocked() const;  // the error waiters get once the volume gave up
  // Records a segment upload's outcome in store_health_ and logs what it says to.
  void NoteUpload(const Status& st, const std::string& key);
  std::string NextSstKey();

  // --- garbage collection (volume_gc.cc); callers hold jobs_mu_ ---
  Task<Status> CollectGarbage();
  Task<Status> DeleteDeadSegments();
  Task<Status> PlanRelocation();
  Task<Status> DeleteOrphanSsts();
  Task<Status> DeleteOldManifests();
  Task<Status> DiscoverSegments();  // once: learn of dead segments older epochs left
  Task<Status> CheckStillOwner();   // before deletes: nobody committed past us

  Env& env_;
  objstore::ObjectStore& store_;      // writes (callers handle their own retries)
  objstore::RetryingReadStore reads_;  // reads, with bounded retries of transient errors
  std::atomic<uint64_t> corrupt_refetches_{0};  // by segments_, ssts_, log_, LoadSnapshots
  VolumeOptions options_;
  uint32_t block_size_;
  std::unique_ptr<SqliteCache> meta_;  // local metadata cache (never authoritative)
  cache::BlockCache cache_;
  SegmentReader segments_;
  lsm::SstReader ssts_;
  ManifestLog log_;
  Notifier changed_;  // buffers, durability, fencing, stop: everything waits on this
  AsyncMutex jobs_mu_;
  WaitGroup loops_;

  uint64_t epoch_ = 0;
  uint64_t size_bytes_ = 0;   // fixed once open
  uint64_t sst_counter_ = 0;  // n in map/<epoch>-<n>.sst

  std::mutex mu_;
  std::shared_ptr<WriteBuffer> active_;                // GUARDED_BY(mu_)
  uint64_t active_gen_ = 1;                            // GUARDED_BY(mu_)
  int64_t active_dirty_since_ns_ = -1;                 // GUARDED_BY(mu_)
  std::deque<Sealed> sealed_;                          // GUARDED_BY(mu_)
  std::shared_ptr<const Relocation> relocation_;       // GUARDED_BY(mu_): queued, one
  bool relocating_ = false;                            // GUARDED_BY(mu_): being uploaded
  uint64_t durable_gen_ = 0;                           // GUARDED_BY(mu_)
  uint64_t flush_gen_ = 0;                             // GUARDED_BY(mu_)
  std::shared_ptr<lsm::Memtable> mem_;                 // GUARDED_BY(mu_)
  std::shared_ptr<const lsm::Memtable> imm_;           // GUARDED_BY(mu_)
  uint64_t imm_applied_segment_ = 0;                   // GUARDED_BY(mu_)
  uint64_t imm_applied_seq_ = 0;                       // GUARDED_BY(mu_)
  uint64_t mem_first_segment_ = 0;                     // GUARDED_BY(mu_)
  uint64_t mem_last_segment_ = 0;                      // GUARDED_BY(mu_)
  uint64_t mem_last_seq_ = 0;                          // GUARDED_BY(mu_)
  int64_t mem_dirty_since_ns_ = -1;                    // GUARDED_BY(mu_)
  uint64_t segments_since_mem_flush_ = 0;              // GUARDED_BY(mu_)
  std::shared_ptr<const Version> version_;             // GUARDED_BY(mu_)
  uint64_t next_seq_ = 1;                              // GUARDED_BY(mu_)
  uint64_t next_segment_id_ = 1;                       // GUARDED_BY(mu_)
  // The highest id such that it and every id below it are settled (stored, confirmed):
  // the fence at open, then each uploaded segment. A new segment's durable_through.
  uint64_t settled_through_ = 0;                       // GUARDED_BY(mu_)
  uint64_t salvage_gap_ = 0;  // salvage: the missing segment replay stopped at
  std::vector<uint64_t> stripes_;                      // GUARDED_BY(mu_)
  bool fenced_ = false;                                // GUARDED_BY(mu_)
  std::string fenced_reason_;                          // GUARDED_BY(mu_)
  bool closing_ = false;                               // GUARDED_BY(mu_)
  bool stop_ = false;                                  // GUARDED_BY(mu_)
  bool stalled_ = false;                               // GUARDED_BY(mu_)
  uint64_t write_stalls_ = 0;                          // GUARDED_BY(mu_)
  uint64_t shadowed_blocks_ = 0;                       // GUARDED_BY(mu_): see stats()
  uint64_t full_compactions_ = 0;                      // GUARDED_BY(mu_)
  // Per segment: size, data blocks the map references, snapshot pins (GC, stats).
  SegmentTable seg_table_;                             // GUARDED_BY(mu_)
  std::set<std::string> pinned_ssts_;                  // GUARDED_BY(mu_): by snapshots
  // SSTs dropped from the map, with when: deleted after the grace period.
  std::map<std::string, int64_t> retired_ssts_;        // GUARDED_BY(mu_)
  uint64_t prev_epoch_manifest_ = 0;  // previous epoch's opener (for manifest GC)
  uint64_t prev_latest_manifest_ = 0;
  uint64_t manifest_gc_floor_ = 0;    // manifests below this (in our epoch) are gone
  bool discovered_segments_ = false;
  std::map<std::string, std::shared_ptr<SnapDetail>> snaps_;  // GUARDED_BY(mu_): by name
  bool gc_blocked_ = false;       // GUARDED_BY(mu_): a snapshot's pins are unknown
  bool restoring_ = false;        // GUARDED_BY(mu_)
  uint64_t writes_inflight_ = 0;  // GUARDED_BY(mu_)
  int64_t last_gc_ns_ = -1;
  // Stopping (volume_stop.cc): cancelled when the deadline of GiveUpAt passes.
  Cancellation give_up_{env_};
  uint64_t give_up_deadline_ns_ = kNoDeadline;  // GUARDED_BY(mu_)
  // Segment uploads (in stats), GUARDED_BY(mu_); map maintenance (its loop's own).
  StoreHealth store_health_{"segment upload", ", and FLUSH/FUA wait until it succeeds"};
  StoreHealth maintenance_health_{"map maintenance", " every second"};
};

}  // namespace portal::volume
