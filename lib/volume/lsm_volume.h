// LsmVolume: the object-store volume. Block data goes into segments (written once); a
// small LSM (the map) records where every block lives; manifests tie it together. See
// docs/volume.md for formats and protocols, DESIGN.md for the durability contract.
//
// Concurrency:
// - `mu_` (a std::mutex, never held across co_await) guards the in-memory state: the
//   active and sealed write buffers, the map memtables, the current Version, counters.
// - `jobs_mu_` (an AsyncMutex) serializes everything that commits a manifest: memtable
//   flushes, compactions, GC, snapshots, restore (two commits in flight would race for
//   the same manifest number). Every commit is an lsm::VersionEdit against the version
//   it was computed from, and lsm::VersionSet refuses a stale base (DESIGN.md's
//   generation check): a job computed before another commit cannot commit after it.
// - The Uploader (volume/uploader.h) owns the write buffers and segment uploads (one in
//   flight, strictly in id order); the volume applies each uploaded segment to the
//   memtable. A FLUSH awaits its write generation (uploader_.durable()).
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
#include "lsm/version_set.h"
#include "objstore/object_store.h"
#include "objstore/retrying_store.h"
#include "volume/clone_base.h"
#include "volume/compaction_accounts.h"
#include "volume/gc_state.h"
#include "volume/manifest.h"
#include "volume/manifest_log.h"
#include "volume/map_memtables.h"
#include "volume/open_facts.h"
#include "volume/options.h"
#include "volume/read_ahead.h"
#include "volume/segment_reader.h"
#include "volume/segment_table.h"
#include "volume/snapshot.h"
#include "volume/snapshot_set.h"
#include "volume/sqlite_cache.h"
#include "volume/store_health.h"
#include "volume/volume.h"
#include "volume/uploader.h"
#include "volume/volume_lifecycle.h"
#include "volume/write_budget.h"
#include "volume/write_buffer.h"

namespace portal::volume {

// The device seam's types, used unqualified throughout the volume.
using device::BlockDevice;
using device::ByteRange;
using device::StatusExtent;
using device::WriteFlags;
using device::ZeroFlags;

// The implementation of Volume (volume.h), private to lib/volume/.
class LsmVolume final : public Volume,
                        private UploadSink,
                        public std::enable_shared_from_this<LsmVolume> {
 public:
  // Opens (or creates) the volume in `store`: epoch bump, replay, fence. `env` and
  // `store` must outlive the volume.
  static Task<Result<std::shared_ptr<LsmVolume>>> Open(Env& env, objstore::ObjectStore& store,
                                                       VolumeOptions options);
  ~LsmVolume() override;

  // Volume (see volume.h for the contract of each).
  Task<Status> Close(uint64_t deadline_ns = kNoDeadline) override;
  void GiveUpAt(uint64_t deadline_ns) override;
  std::string NotDurableSummary() override;

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

  Task<Status> FlushMemtable() override;
  Task<Status> CompactAll() override;
  Task<Status> RunGc() override;

  // Tests: the committed map version, and the commit path every job takes (as a job,
  // under jobs_mu_). A stale edit.base is refused (Busy).
  std::shared_ptr<const lsm::Version> MapVersionForTest();
  Task<Status> CommitForTest(const lsm::VersionEdit& edit);

  VolumeStats stats() override;
  bool fenced() override;
  uint64_t epoch() const override { return opened_.epoch; }

  Task<Result<SnapshotInfo>> CreateSnapshot(std::string name) override;
  std::vector<SnapshotInfo> ListSnapshots() override;
  Result<SnapshotInfo> GetSnapshot(const std::string& name) override;
  Task<Status> DeleteSnapshot(std::string name) override;
  Task<Status> RestoreSnapshot(std::string name) override;
  Result<std::shared_ptr<BlockDevice>> OpenSnapshot(const std::string& name) override;

  Task<Status> Resize(uint64_t size_bytes, bool allow_shrink) override;  // volume_resize.cc

 private:
  // Lookups that meet NotFound resolve again this many times: compaction retires an SST
  // and GC collects it, or GC frees a segment, under a slow lookup (the map's contents
  // did not change, only where they live). Reads, BLOCK_STATUS and ApplyFooter.
  static constexpr int kReadRetries = 3;
  // The map as committed (number = manifest number): immutable, shared by readers.
  using Version = lsm::Version;
  // A resolved run of blocks (the read path).
  struct Piece {
    uint64_t first;
    uint64_t end;
    lsm::Loc loc;             // data in a segment, or zero/hole
    const uint8_t* bytes;     // data already in a buffer (valid under mu_ only)
    CloneBase* base = nullptr;  // a clone's: loc is in this ancestor's segment
  };
  using Intervals = std::vector<std::pair<uint64_t, uint64_t>>;
  using Levels = std::vector<std::vector<SstRef>>;

  LsmVolume(Env& env, objstore::ObjectStore& store, VolumeOptions options);
  friend class SnapshotDevice;

  using SnapDetail = volume::SnapDetail;  // snapshot_set.h
  Task<Status> LoadSnapshots();
  void RecomputePinsLocked();
  SnapshotInfo InfoLocked(const SnapDetail& d) const;
  void Detach(const std::shared_ptr<SnapDetail>& d);
  // Writes wait while a restore runs; a restore waits for writes in flight.
  Task<Status> EnterWrite();
  void LeaveWrite();

  // --- open (volume_open.cc) ---
  Task<Status> DoOpen();
  // Refuses a deleted volume; for a clone (clone.json), opens its base (base_).
  Task<Status> OpenClone();
  Task<Status> ProbeConditionalWrites();
  Task<Status> Replay();
  // What replay found above applied_segment: the contiguous run to apply, the first
  // missing id after it, and the ids present above that gap.
  // What replay applies: the walk from applied_segment + 1 in id order, over present
  // ids, jumping from each fence to its resume (DESIGN.md single writer, step 5), up to
  // the first missing id (the gap); `above` lists the present ids past it.
  struct ReplayPlan {
    std::vector<std::pair<uint64_t, uint64_t>> todo;  // (id, size)
    std::vector<SegmentFooter> footers;               // todo's, read while walking
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
  // Open found no manifest: Corruption naming manifest 1 when segments exist (every
  // manifest was lost; a new volume there would read as zeroes over the old data);
  // Unavailable "relist" when a manifest appeared meanwhile (another writer created it).
  Task<Status> CheckNoManifestLeft();
  // Every map SST manifest `number` (`m`) names is stored, at its size: one listing of
  // map/ (paginated), kept for DiscoverSegments. Corruption naming the first missing or
  // resized SST; Unavailable "relist" when a manifest above `number` exists (a writer
  // that committed and collected meanwhile). The metadata cache may hold an SST the store
  // lost, so only the store can tell (docs/volume.md "Damage").
  Task<Status> CheckSstsStored(uint64_t number, const Manifest& m);
  Task<Status> ApplyReplayed(const SegmentFooter& f, uint64_t size);
  // Applies a segment's extents to the memtable. Conditional extents are first cut to
  // where the committed map (memtables + SSTs) still holds their expected location;
  // only the uploader and replay call this, so the map cannot change in between.
  Task<Status> ApplyFooter(const SegmentFooter& f, uint64_t size);

  // --- writes (volume_write.cc) ---
  Status CheckNotSalvage() const;  // PermissionDenied in salvage mode
  Status CheckWritable();
  // Reserves `need` bytes of the write budget (write_budget.h), waiting (and pushing the
  // buffers that hold it to upload) while they do not fit; fails once fenced or given up.
  // A reservation is given back by ~Reserved.
  Task<Status> WaitForRoom(uint64_t need);
  struct Reserved {
    LsmVolume* v;
    uint64_t bytes;
    ~Reserved();  // the volume's charge after the write, and the reservation back
  };
  // The budget's push (write_budget.h): the active buffer goes to upload now.
  void PushUpload();
  // Tells the budget what the buffers hold now (nothing once fenced or given up), giving
  // back `release_bytes` of a write's reservation.
  void UpdateBudgetLocked(uint64_t release_bytes = 0);
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
  // With `frozen`, only those levels are consulted (a snapshot's map). A clone's blocks
  // that no level defines come from its base (Piece::base) when `include_buffers` (a
  // read's view); without it (GC, conditional extents: the map alone) they are holes.
  Task<Status> Resolve(uint64_t first, uint64_t end, std::function<void(const Piece&)> sink,
                       bool include_buffers = true, const Levels* frozen = nullptr);
  Task<Status> ReadBlocksRaw(uint64_t first, uint64_t end, uint64_t offset,
                             std::span<uint8_t> out, std::vector<ByteRange>* zeroes,
                             const Levels* frozen = nullptr);
  Task<Result<std::vector<StatusExtent>>> StatusOf(uint64_t offset, uint64_t length,
                                                   uint32_t max_extents, const Levels* frozen);
  // Starts reading ahead of a client read of blocks [first, end) if it continues a
  // sequential stream (read_ahead.h). Runs in the background; Close waits for it.
  void MaybeReadAhead(uint64_t first, uint64_t end);
  Task<void> ReadAheadBlocks(uint64_t first, uint64_t end);
  // After open: loads the committed map's SSTs, level by level, into the block cache
  // while they fit in a quarter of it, so that cold reads find the map in memory rather
  // than fetching an SST block per level in series before their chunk (docs/volume.md
  // "Read path"). A hint: failures are dropped. Runs in the background; Close waits.
  Task<void> WarmMap();

  // --- the uploader's side of the volume (UploadSink, volume_upload.cc) ---
  Task<Status> ApplyUploaded(const SegmentFooter& footer, uint64_t size) override;
  bool FencedLocked() const override { return lifecycle_.fenced; }
  // Fences (every fencing site): nothing more is acknowledged; FLUSH waiters, stalled
  // writers, the uploader and the maintenance loop learn of it.
  void FenceLocked(const std::string& reason) override;
  void UploadSettled() override;
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
  // The one commit path: `edit` (against the version it was computed from) becomes
  // manifest/<n>.json, then the current version. `snapshots` (computed from the same
  // version): the manifest's new snapshot list; null keeps it. Busy when the base is
  // stale; PreconditionFailed (and fenced) when another writer committed <n>.
  Task<Status> Commit(const lsm::VersionEdit& edit,
                      const std::vector<SnapshotRef>* snapshots = nullptr);
  // The manifest of `v`: its map, with head_'s other fields.
  Manifest ManifestOfLocked(const Version& v) const;
  void GiveUpNow();
  uint64_t UnflushedBytesLocked() const;
  std::string NotDurableSummaryLocked() const;
  Status GaveUpLocked() const;  // the error waiters get once the volume gave up
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
  // Sequential streams and the read-ahead budget; before cache_, whose read-ahead chunks
  // count into its counters until they are evicted.
  ReadAhead read_ahead_{env_, block_size_, ReadAheadOptionsFor(options_)};
  std::unique_ptr<SqliteCache> meta_;  // local metadata cache (never authoritative)
  std::unique_ptr<cache::BlockCache> own_cache_;  // unless options_.block_cache is shared
  cache::BlockCache& cache_;
  SegmentReader segments_;
  lsm::SstReader ssts_;
  ManifestLog log_;
  // Map work, fencing, stop, restore's drain and writes waiting for a restore. A FLUSH
  // waits on uploader_.durable(), the uploader on its own notifier.
  Notifier changed_;
  // The write buffers' budget (the daemon's, or own_budget_): writers stalled for room
  // wait on it; an upload settling, a fence or a give-up wakes them.
  std::unique_ptr<WriteBudget> own_budget_;
  WriteBudget& budget_;
  std::shared_ptr<WriteBudget::Account> budget_account_;
  AsyncMutex jobs_mu_;
  WaitGroup loops_;

  OpenFacts opened_;  // fixed once open: see open_facts.h
  // A clone's base (clone_base.h), set at open before anything reads; null otherwise.
  std::unique_ptr<CloneBase> base_;

  std::mutex mu_;
  MapMemtables map_;          // GUARDED_BY(mu_)
  lsm::VersionSet versions_;  // GUARDED_BY(mu_): the map
  // The latest manifest's fields the map does not hold (uuid, geometry, epoch_manifest,
  // snapshots); its levels stay empty. Set at open and by Commit.
  Manifest head_;                  // GUARDED_BY(mu_)
  std::vector<uint64_t> stripes_;  // GUARDED_BY(mu_)
  VolumeLifecycle lifecycle_;      // GUARDED_BY(mu_)
  CompactionAccounts compaction_;  // partly GUARDED_BY(mu_): see compaction_accounts.h
  // Per segment: size, data blocks the map references, snapshot pins (GC, stats).
  SegmentTable seg_table_;  // GUARDED_BY(mu_)
  GcState gc_;              // partly GUARDED_BY(mu_): see gc_state.h
  SnapshotSet snaps_;       // GUARDED_BY(mu_)
  // Stopping (volume_stop.cc): cancelled when the deadline of GiveUpAt passes.
  Cancellation give_up_{env_};
  // Map maintenance (its loop's own); segment uploads' is the uploader's.
  StoreHealth maintenance_health_{"map maintenance", " every second"};
  // The write buffers and their uploads; its state is GUARDED_BY(mu_). Last: it refers
  // to mu_, give_up_, segments_ and options_.
  Uploader uploader_;
};

}  // namespace portal::volume
