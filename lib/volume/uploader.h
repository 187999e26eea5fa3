// Uploader: the volume's write buffers on their way to the store. Writes fill the active
// buffer; it is sealed (full, due after flush_interval_ms, asked for by a FLUSH, or at a
// stop) under the next write generation, and takes the next segment id when its upload
// starts. Uploads run in an id window (DESIGN.md write path, "Uploads in flight"): id i
// starts only once every id <= i - K is settled (K = window, never above the manifest's
// upload_window), and they complete in any order. One coroutine (Run) starts them and
// settles them strictly in id order: only when the settled prefix reaches a segment is
// its footer applied to the map (UploadSink), its sealed buffer released from the read
// path and its generation durable. A segment stored above an unsettled id stays a
// readable sealed buffer. User buffers go before a GC relocation (which never delays a
// FLUSH beyond the uploads already in flight). Who wakes a FLUSH:
//
//   LsmVolume::Flush -> FlushTargetLocked() = g -> durable().AwaitDurable(g)
//   Run -> UploadOne(id) ... settled prefix reaches id -> UploadSink::ApplyUploaded
//       -> durable().MarkDurable(g)
//   an upload that fails for good -> UploadSink::FenceLocked -> durable().Fail(fenced)
//   (a stop's deadline: LsmVolume::GiveUpNow -> durable().Fail(gave up))
//
// Concurrency: the uploader's state is guarded by the volume's mutex `mu`, which the read
// path holds while it walks these buffers and the memtable (a block is always in one of
// them while its segment is applied). Methods named *Locked need `mu` held; the others
// must be called without it. `mu` is never held across co_await.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "env/async.h"
#include "env/env.h"
#include "objstore/object_store.h"
#include "volume/durability.h"
#include "volume/options.h"
#include "volume/segment_format.h"
#include "volume/segment_reader.h"
#include "volume/store_health.h"
#include "volume/write_buffer.h"

namespace portal::volume {

// Live blocks copied out of sparse segments by GC, uploaded as a segment of conditional
// extents (they apply only where the map still points at the source).
struct Relocation {
  std::vector<SegmentExtent> extents;  // sorted; loc.index into `data`; conditional
  objstore::Rope data;                 // data_blocks blocks, in the order of `extents`
  uint64_t data_blocks = 0;
  std::vector<uint64_t> sources;
};

// What the uploader needs from the volume (LsmVolume implements it).
class UploadSink {
 public:
  // Applies a stored segment's extents to the map (the memtable). The uploader retries a
  // retryable error until it succeeds, the volume fences, or the stop gives up.
  virtual Task<Status> ApplyUploaded(const SegmentFooter& footer, uint64_t size) = 0;
  // Fenced: nothing more is uploaded or acknowledged.
  virtual bool FencedLocked() const = 0;
  // An upload failed for good (another writer's segment, damage, the store gone): fence
  // the volume, which fails every FLUSH waiting (durable().Fail).
  virtual void FenceLocked(const std::string& reason) = 0;
  // A segment settled, or the uploader quit: there may be room for stalled writers, map
  // work, or a restore waiting for a relocation to end.
  virtual void UploadSettled() = 0;

 protected:
  ~UploadSink() = default;
};

class Uploader {
 public:
  // Everything passed must outlive the uploader; `give_up` cuts retries short (a stop's
  // deadline, see LsmVolume::GiveUpAt).
  Uploader(Env& env, objstore::ObjectStore& store, SegmentReader& segments,
           const VolumeOptions& options, std::mutex& mu, Cancellation& give_up, UploadSink& sink);
  Uploader(const Uploader&) = delete;
  Uploader& operator=(const Uploader&) = delete;

  // The upload loop (segments carry `epoch`). Returns once stopped with nothing left to
  // upload, fenced, or given up.
  Task<void> Run(uint64_t epoch);
  // Close: everything buffered is uploaded (retries bounded), then Run returns.
  void StopLocked();
  // Look at the state again (the volume fenced, or gave up).
  void Wake() { wake_.NotifyAll(); }

  // --- the write buffers ---
  WriteBuffer& ActiveLocked() { return *active_; }
  // Blocks went into the active buffer: starts its flush_interval timer, or seals it
  // when full (even while an upload runs, so that segments keep to their size).
  void NoteWrittenLocked();
  // Newest first: the active buffer, then the sealed ones; `fn` returns false to stop.
  void ForEachBufferLocked(const std::function<bool(const WriteBuffer&)>& fn) const;
  bool EmptyLocked() const { return active_->empty() && sealed_.empty(); }
  uint64_t ActiveBytesLocked() const { return active_->bytes(); }
  uint64_t SealedBytesLocked() const;

  // --- durability ---
  // Asks for everything written so far to be uploaded now; returns the generation that
  // makes it durable (0: nothing is buffered). Wake() after releasing `mu`.
  uint64_t FlushTargetLocked();
  // Asks for the active buffer to be uploaded now (writers stalled for room); true when
  // that is a new request (Wake() after releasing `mu`).
  bool RequestFlushLocked();
  DurableGenerations& durable() { return durable_; }

  // --- GC relocations: one queued or uploading at a time ---
  bool RelocationPendingLocked() const { return relocation_ || relocating_; }
  void QueueRelocationLocked(std::shared_ptr<const Relocation> reloc);
  // Drops a queued relocation (a restore); true while one is still being uploaded.
  bool DropRelocationLocked();

  // --- segment ids (set while opening; taken by uploads after) ---
  uint64_t NextSegmentIdLocked() const { return next_segment_id_; }
  void SetNextSegmentIdLocked(uint64_t id) { next_segment_id_ = id; }
  // Open's fence is stored: every id below `resume` is settled (replayed, the fence, or
  // in its window), uploads go on at `resume`.
  void SettledFenceLocked(uint64_t resume);
  // Open: at most `window` ids in flight past the settled prefix (>= 1; the caller keeps
  // it at or below the manifest's upload_window).
  void SetWindowLocked(uint64_t window) { window_ = std::max<uint64_t>(window, 1); }
  uint64_t SettledThroughLocked() const { return settled_through_; }
  size_t InFlightLocked() const { return flights_.size(); }  // for tests

  // Segment uploads failing (and retried) since when and why.
  const StoreHealth::State& HealthLocked() const { return health_.state(); }

 private:
  struct Sealed {
    std::shared_ptr<const WriteBuffer> buf;
    uint64_t gen = 0;
    uint64_t segment_id = 0;
  };

  // One segment upload started and not yet settled in id order.
  struct Flight {
    std::shared_ptr<const WriteBuffer> buf;  // a user buffer (in sealed_), or
    std::shared_ptr<const Relocation> reloc;  // a GC relocation
    bool done = false;  // UploadSegment returned: `status`, `footer`, `size` are set
    Status status;
    SegmentFooter footer;
    uint64_t size = 0;
  };

  // Moves the active buffer to the end of sealed_ under the next generation (its segment
  // id is taken when its upload starts; the uploader takes sealed_ before relocations).
  void SealActiveLocked();
  // The first sealed buffer whose upload has not started (null: none).
  Sealed* UnstartedLocked();
  // Whether the next id may start: every id <= next - window is settled.
  bool WindowOpenLocked() const { return next_segment_id_ <= settled_through_ + window_; }
  // When the dirty active buffer is due by flush_interval_ms (UINT64_MAX: never).
  uint64_t ActiveDueLocked() const;
  // An upload or apply that failed for good: fence, unless the stop gave up on it.
  void FenceOnFailureLocked(const Status& st);
  // Takes the next id for a sealed buffer or the queued relocation if the window and
  // the state allow; false when nothing starts.
  bool StartNextLocked(uint64_t* id);
  // Uploads flights_[id] and records its outcome (the task Run starts per id).
  Task<void> UploadOne(uint64_t id);
  // Applies the settled prefix's next segment (flights_[settled_through_ + 1], done and
  // stored) and releases what waited for it.
  Task<Status> SettleNext(uint64_t id, Flight f);
  // Encodes (user buffer or relocation) and uploads segment `id`.
  Task<Status> UploadSegment(uint64_t id, const WriteBuffer* buf, const Relocation* reloc,
                             SegmentFooter* footer, uint64_t* size);
  // Records a segment upload's outcome in health_ and logs what it says to.
  void NoteUpload(const Status& st, const std::string& key);

  Env& env_;
  objstore::ObjectStore& store_;
  SegmentReader& segments_;
  const VolumeOptions& options_;
  const uint32_t block_size_;
  std::mutex& mu_;
  Cancellation& give_up_;
  UploadSink& sink_;
  Notifier wake_;  // work for Run: a buffer sealed or dirty, a FLUSH, a relocation, a stop
  DurableGenerations durable_;
  uint64_t epoch_ = 0;  // set by Run

  std::shared_ptr<WriteBuffer> active_;           // GUARDED_BY(mu_)
  uint64_t active_gen_ = 1;                       // GUARDED_BY(mu_)
  int64_t active_dirty_since_ns_ = -1;            // GUARDED_BY(mu_)
  std::deque<Sealed> sealed_;                     // GUARDED_BY(mu_): in gen and id order
  std::map<uint64_t, Flight> flights_;            // GUARDED_BY(mu_): started, by id
  uint64_t window_ = 1;                           // GUARDED_BY(mu_): K
  uint64_t flush_gen_ = 0;                        // GUARDED_BY(mu_): asked to upload through
  std::shared_ptr<const Relocation> relocation_;  // GUARDED_BY(mu_): queued, one
  bool relocating_ = false;                       // GUARDED_BY(mu_): being uploaded
  uint64_t next_segment_id_ = 1;                  // GUARDED_BY(mu_)
  // The settled prefix: the highest id such that it and every id below it are settled
  // (settled at open, or stored, confirmed and applied here in id order). A new
  // segment's durable_through; the window counts from it.
  uint64_t settled_through_ = 0;  // GUARDED_BY(mu_)
  bool stop_ = false;             // GUARDED_BY(mu_)
  StoreHealth health_{"segment upload", ", and FLUSH/FUA wait until it succeeds"};  // mu_
};

}  // namespace portal::volume
