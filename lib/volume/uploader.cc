// The uploader: seals the active buffer (or takes a GC relocation batch) into the next
// segment, uploads up to `window_` ids past the settled prefix at once, and as that prefix
// advances (in id order, whatever order the PUTs complete in) has the volume apply each
// footer to the memtable and releases the FLUSHes waiting for it. User buffers always go
// first: relocation never delays a FLUSH beyond the uploads already in flight.
#include "volume/uploader.h"

#include <fmt/format.h>

#include <algorithm>

#include "objstore/conditional_create.h"
#include "objstore/retrying_store.h"
#include "util/buffer_pool.h"
#include "util/log.h"
#include "volume/manifest.h"

namespace portal::volume {
namespace {
auto Log() { return log::Get("portalbd::volume"); }
using objstore::RetryUnavailable;
}  // namespace

Uploader::Uploader(Env& env, objstore::ObjectStore& store, SegmentReader& segments,
                   const VolumeOptions& options, std::mutex& mu, Cancellation& give_up,
                   UploadSink& sink)
    : env_(env),
      store_(store),
      segments_(segments),
      options_(options),
      block_size_(options.block_size),
      mu_(mu),
      give_up_(give_up),
      sink_(sink),
      wake_(env),
      durable_(env),
      active_(std::make_shared<WriteBuffer>(options.block_size, options.blocks_per_chunk,
                                           options.recycler)) {}

Task<Status> Uploader::UploadSegment(uint64_t id, const WriteBuffer* buf, const Relocation* reloc,
                                     SegmentFooter* footer, uint64_t* size) {
  footer->segment_id = id;
  footer->epoch = epoch_;
  footer->block_size = block_size_;
  footer->blocks_per_chunk = options_.blocks_per_chunk;
  {
    // Fixed for every attempt: a retry must produce the same bytes (lost-ack read-back).
    std::lock_guard lock(mu_);
    footer->durable_through = settled_through_;
  }
  const std::string key = SegmentKey(id);
  uint32_t attempt = 0;
  Status last;           // the last failed attempt's error
  Status verdict;        // damage proved by a read-back: no retry can help
  bool closing = false;  // a close ended the retries (5 attempts)
  // Drawn once: every attempt seals under the same object key, so a re-encode gives the
  // same bytes (and never a new plaintext under a used nonce).
  std::shared_ptr<const crypto::ObjectKey> object_key =
      options_.keyring ? options_.keyring->NewObjectKey(crypto::Purpose::kSegment) : nullptr;
  // The one retry layer (objstore/retry.h), as a write that must land: tried until it is
  // stored, refused for good (a newer writer's segment: fenced) or a stop's deadline
  // passes (GiveUpAt cancels give_up_, even mid-backoff).
  objstore::Retried r = co_await objstore::Retry(
      env_, objstore::kUntilLanded,
      [&]() -> Task<Status> {
        ++attempt;
        // Encode off the executor (LZ4 of up to l0_sst_size_bytes). Re-encoding on a retry
        // gives the same bytes, and saves holding a second copy while the PUT runs. A user
        // buffer's raw segment is the buffer's own memory (a Rope): memory:// keeps it with
        // no copy at all, file:// and s3:// join it into one pooled string.
        EncodedSegment enc = co_await RunBlocking(env_, [&] {
          const EncodeOptions eo{options_.compress, options_.buffer_pool,
                                 EncodedCapacity(options_.l0_sst_size_bytes)};
          if (buf) return EncodeSegment(footer, buf->Contents(footer), eo, object_key);
          footer->extents = reloc->extents;
          for (auto& se : footer->extents) se.extent.loc.segment = id;
          footer->data_blocks = reloc->data_blocks;
          // Views into the relocation's read buffers, as a user buffer's segment is.
          return EncodeSegment(footer, SegmentContents{reloc->data, {}}, eo, object_key);
        });
        const uint64_t checksum = enc.footer_checksum;
        *size = enc.bytes.size();
        std::string footer_entry = segments_.FooterEntry(enc.bytes);
        Status st = co_await store_.PutIfAbsentRope(key, std::move(enc.bytes));
        if (st.ok()) {
          NoteUpload(st, key);
          // Stored for good under this id: a restart reads its footer locally.
          segments_.KeepFooter(id, std::move(footer_entry));
          co_return st;
        }
        if (st.IsPreconditionFailed()) {
          // Someone created this id: our own earlier attempt (acknowledgement lost), or a
          // newer writer's fence. Read it back before concluding anything.
          uint64_t theirs = 0;
          Result<SegmentFooter> existing = Status::NotFound("not read");
          auto same = co_await objstore::ReadBack(
              [&]() -> Task<Result<bool>> {
                existing = co_await segments_.ReadFooter(id, 0, &theirs);
                if (!existing.ok()) co_return existing.status();
                co_return existing->epoch == epoch_&& theirs == checksum;
              },
              1);
          if (same.ok() && *same == objstore::CreateOutcome::kAlreadySame) {
            NoteUpload(Status::Ok(), key);
            co_return Status::Ok();
          }
          if (existing.ok() && existing->epoch < epoch_) {
            // Open replayed every segment below our fence and nothing of an older epoch can
            // land above it (DESIGN.md single writer, step 5): this object is damage or a
            // bug, not another writer.
            verdict = Status::Corruption(fmt::format(
                "segment {} already exists with the older epoch {} (ours is {}), above our "
                "fence: the store holds a segment that open did not replay",
                key, existing->epoch, epoch_));
            co_return Status::Ok();  // ends the retries; `verdict` is the outcome
          }
          if (existing.ok()) {
            co_return Status::PreconditionFailed(fmt::format(
                "segment {} already exists with epoch {} (ours is {}): a newer portalbd opened "
                "this volume",
                key, existing->epoch, epoch_));
          }
          st = existing.status();
        }
        // The store is gone for good (a crashed FaultStore in the simulator, or the process
        // shutting down): retrying cannot help (Shutdown is definite).
        if (st.code() == Status::Code::kShutdown) co_return st;
        NoteUpload(st, key);  // since when and why, for status and a rationed log
        last = st;
        {
          std::lock_guard lock(mu_);
          if (stop_ && attempt >= 5) {
            closing = true;
            co_return Status::Shutdown("closing");  // ends the retries
          }
          // Another upload failed for good and fenced the volume: nothing of ours can be
          // acknowledged any more, so stop retrying (Run waits for every upload to end).
          if (sink_.FencedLocked()) co_return Status::Shutdown("the volume is fenced");
        }
        co_return st;  // tried again after a backoff (kUntilLanded)
      },
      &give_up_);
  if (!verdict.ok()) co_return verdict;
  if (closing) co_return last.WithContext("giving up on " + key + " at close");
  if (r.outcome == objstore::RetryOutcome::kGaveUp) {
    co_return last.WithContext("gave up on " + key + " at the stop deadline");
  }
  co_return r.status;  // stored (Ok), fenced (a newer writer's segment) or Shutdown
}

void Uploader::SealActiveLocked() {
  // The segment id is taken when its upload starts: ids must not run ahead of uploads,
  // or a crash would leave manifests naming a next_segment_id above the first gap, where
  // the next writer fences (ids are never skipped: docs/volume.md "Single writer").
  sealed_.push_back(Sealed{std::move(active_), active_gen_++, 0});
  active_ = std::make_shared<WriteBuffer>(block_size_, options_.blocks_per_chunk, options_.recycler);
  active_dirty_since_ns_ = -1;
}

Uploader::Sealed* Uploader::UnstartedLocked() {
  // Started buffers are a prefix of sealed_ (ids are taken in seal order).
  for (auto it = sealed_.begin(); it != sealed_.end(); ++it) {
    if (it->segment_id == 0) return &*it;
  }
  return nullptr;
}

bool Uploader::StartNextLocked(uint64_t* id) {
  if (!WindowOpenLocked()) return false;
  Sealed* s = UnstartedLocked();
  if (!s && !active_->empty()) {
    // Seal the active buffer only when its upload can start now: while the window is
    // full it keeps growing, and FLUSHes keep joining it (fewer, larger segments).
    if (stop_ || flush_gen_ >= active_gen_ || active_->bytes() >= options_.l0_sst_size_bytes ||
        env_.NowNanos() >= ActiveDueLocked()) {
      SealActiveLocked();
      s = &sealed_.back();
    }
  }
  Flight f;
  if (s) {
    s->segment_id = next_segment_id_;
    f.buf = s->buf;
  } else if (relocation_ && !stop_) {
    f.reloc = std::move(relocation_);
    relocating_ = true;
  } else {
    return false;
  }
  *id = next_segment_id_++;
  flights_.emplace(*id, std::move(f));
  return true;
}

uint64_t Uploader::ActiveDueLocked() const {
  if (options_.flush_interval_ms == 0) return UINT64_MAX;
  return SaturatingAdd(static_cast<uint64_t>(active_dirty_since_ns_),
                       MillisToNanos(options_.flush_interval_ms));
}

void Uploader::FenceOnFailureLocked(const Status& st) {
  // Not fenced when the stop gave up: Close reports what is left; FLUSH waiters already
  // failed (GiveUpNow).
  if (!give_up_.cancelled() || st.IsPreconditionFailed() || st.IsCorruption()) {
    sink_.FenceLocked(st.ToString());
  }
}

Task<void> Uploader::UploadOne(uint64_t id) {
  std::shared_ptr<const WriteBuffer> buf;
  std::shared_ptr<const Relocation> reloc;
  {
    std::lock_guard lock(mu_);
    const Flight& f = flights_.at(id);
    buf = f.buf;
    reloc = f.reloc;
  }
  SegmentFooter footer;
  uint64_t size = 0;
  Status st = co_await UploadSegment(id, buf.get(), reloc.get(), &footer, &size);
  std::lock_guard lock(mu_);
  Flight& f = flights_.at(id);
  f.done = true;
  f.status = std::move(st);
  f.footer = std::move(footer);
  f.size = size;
  // Under `mu_`: once `done` is seen, Run may return and the uploader go away; this
  // coroutine touches nothing of it after the lock is released.
  wake_.NotifyAll();
}

Task<Status> Uploader::SettleNext(uint64_t id, Flight f) {
  segments_.Remember(id, f.size, f.footer);
  // Settled: its chunks may go to the disk cache (read back from the buffer, later).
  segments_.KeepWritten(f.footer, [buf = f.buf, reloc = f.reloc, footer = f.footer]() mutable {
    if (!buf) return reloc->data;
    return buf->Contents(&footer).data;
  });
  // Applying a relocation reads the map; its reads retry a bounded number of times.
  // The segment is stored: keep trying (nothing was applied by a failed attempt)
  // rather than fence over an error burst (dst swarm seed 9340).
  Status st;
  (void)co_await RetryUnavailable(
      env_,
      [&]() -> Task<Status> {
        st = co_await sink_.ApplyUploaded(f.footer, f.size);
        if (!st.retryable()) co_return st;
        {
          std::lock_guard lock(mu_);
          if (stop_ || sink_.FencedLocked() || give_up_.cancelled()) {
            co_return Status::Ok();  // give up; `st` keeps the error
          }
        }
        Log()->warn("applying segment {} failed, retrying error=\"{}\"", id, st.ToString());
        co_return st;
      },
      0, &give_up_);
  if (!st.ok()) co_return st;
  {
    std::lock_guard lock(mu_);
    if (f.buf) {
      PORTAL_ASSERT(!sealed_.empty() && sealed_.front().segment_id == id,
                    "sealed buffers settled out of order");
      const uint64_t gen = sealed_.front().gen;
      sealed_.pop_front();  // leaves the read path: the memtable maps it now
      durable_.MarkDurable(gen);  // the FLUSHes waiting for it (resumed after `mu_`)
    } else {
      relocating_ = false;
    }
    settled_through_ = id;
    wake_.NotifyAll();  // the window moved
  }
  sink_.UploadSettled();  // stalled writers, maintenance, a restore
  co_return Status::Ok();
}

Task<void> Uploader::Run(uint64_t epoch) {
  epoch_ = epoch;
  Status failed;  // an upload or apply that failed for good: drain, then return
  for (;;) {
    const uint64_t seen = wake_.epoch();
    std::vector<uint64_t> started;
    std::optional<std::pair<uint64_t, Flight>> next;
    uint64_t wait_ns = Notifier::kForever;
    {
      std::lock_guard lock(mu_);
      // A failed upload, in any position: nothing above the settled prefix can be
      // acknowledged any more, so fence at once (the other uploads stop retrying).
      if (failed.ok()) {
        for (auto& [id, f] : flights_) {
          if (f.done && !f.status.ok()) {
            failed = f.status;
            break;
          }
        }
        if (!failed.ok()) FenceOnFailureLocked(failed);
      }
      const bool quit = !failed.ok() || sink_.FencedLocked() || give_up_.cancelled();
      if (quit) {
        bool busy = false;
        for (auto& [id, f] : flights_) busy |= !f.done;
        if (!busy) {
          if (relocating_) relocating_ = false;  // nobody may wait for it any more
          break;
        }
      } else {
        if (!flights_.empty() && flights_.begin()->second.done) {
          PORTAL_ASSERT(flights_.begin()->first == settled_through_ + 1, "settled prefix gap");
          next.emplace(flights_.begin()->first, std::move(flights_.begin()->second));
          flights_.erase(flights_.begin());
        } else {
          uint64_t id;
          while (StartNextLocked(&id)) started.push_back(id);
          if (stop_ && active_->empty() && sealed_.empty() && flights_.empty()) break;
          if (started.empty() && !active_->empty() && WindowOpenLocked()) {
            // The active buffer is dirty but not due: wake when its flush interval ends.
            const uint64_t now = env_.NowNanos();
            const uint64_t due = ActiveDueLocked();
            if (due != UINT64_MAX && due > now) wait_ns = due - now;
          }
        }
      }
    }
    for (uint64_t id : started) Start(UploadOne(id), [] {});
    if (next) {
      Status st = co_await SettleNext(next->first, std::move(next->second));
      if (!st.ok()) {
        std::lock_guard lock(mu_);
        failed = st;
        FenceOnFailureLocked(st);
      }
      continue;
    }
    if (!started.empty()) continue;
    co_await wake_.Wait(seen, wait_ns);
  }
  sink_.UploadSettled();
}

void Uploader::StopLocked() {
  stop_ = true;
  wake_.NotifyAll();
}

void Uploader::NoteWrittenLocked() {
  if (active_dirty_since_ns_ < 0) {
    active_dirty_since_ns_ = static_cast<int64_t>(env_.NowNanos());
    wake_.NotifyAll();  // starts the flush_interval timer
  } else if (active_->bytes() >= options_.l0_sst_size_bytes) {
    // Full: seal it now even while an upload runs, so that segments keep to their size
    // (and their buffers can be recycled) instead of growing until the uploader is free.
    SealActiveLocked();
    wake_.NotifyAll();
  }
}

void Uploader::ForEachBufferLocked(const std::function<bool(const WriteBuffer&)>& fn) const {
  if (!fn(*active_)) return;
  for (auto it = sealed_.rbegin(); it != sealed_.rend(); ++it) {
    if (!fn(*it->buf)) return;
  }
}

uint64_t Uploader::SealedBytesLocked() const {
  uint64_t n = 0;
  for (const auto& s : sealed_) n += s.buf->bytes();
  return n;
}

uint64_t Uploader::FlushTargetLocked() {
  if (!active_->empty()) {
    flush_gen_ = std::max(flush_gen_, active_gen_);
    return active_gen_;
  }
  if (!sealed_.empty()) return sealed_.back().gen;
  return 0;  // nothing unflushed
}

bool Uploader::RequestFlushLocked() {
  if (active_->empty() || flush_gen_ >= active_gen_) return false;
  flush_gen_ = active_gen_;
  return true;
}

void Uploader::QueueRelocationLocked(std::shared_ptr<const Relocation> reloc) {
  relocation_ = std::move(reloc);
  wake_.NotifyAll();
}

bool Uploader::DropRelocationLocked() {
  relocation_.reset();
  return relocating_;
}

void Uploader::SettledFenceLocked(uint64_t resume) {
  next_segment_id_ = resume;
  settled_through_ = resume - 1;
}

void Uploader::NoteUpload(const Status& st, const std::string& key) {
  std::optional<std::string> line;
  {
    std::lock_guard lock(mu_);
    line = st.ok() ? health_.Succeeded(env_.NowNanos())
                   : health_.Failed(st, key, env_.NowNanos(), env_.WallNanos());
  }
  if (!line) return;
  if (st.ok()) {
    Log()->info("{}", *line);
  } else {
    Log()->warn("{}", *line);
  }
}

}  // namespace portal::volume
