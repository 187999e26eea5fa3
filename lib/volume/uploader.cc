// The uploader: seals the active buffer (or takes a GC relocation batch) into the next
// segment, uploads it (one upload in flight, strictly in id order), then has the volume
// apply its extents to the memtable and releases the FLUSHes waiting for it. User buffers
// always go first: relocation never delays a FLUSH beyond the upload already in flight.
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
      active_(std::make_shared<WriteBuffer>(options.block_size, options.blocks_per_chunk)) {}

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
          const EncodeOptions eo{options_.compress, options_.buffer_pool};
          if (buf) return EncodeSegment(footer, buf->Contents(footer), eo);
          footer->extents = reloc->extents;
          for (auto& se : footer->extents) se.extent.loc.segment = id;
          footer->data_blocks = reloc->data_blocks;
          // A pooled copy: memory:// keeps the object as this string and recycles it.
          std::string data = TakeFrom(options_.buffer_pool, reloc->data.size() + 4096);
          data.append(reloc->data);
          return EncodeSegment(footer, SegmentContents{objstore::Rope(std::move(data)), {}}, eo);
        });
        const uint64_t checksum = enc.footer_checksum;
        *size = enc.bytes.size();
        Status st = co_await store_.PutIfAbsentRope(key, std::move(enc.bytes));
        if (st.ok()) {
          NoteUpload(st, key);
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
  active_ = std::make_shared<WriteBuffer>(block_size_, options_.blocks_per_chunk);
  active_dirty_since_ns_ = -1;
}

Task<void> Uploader::Run(uint64_t epoch) {
  epoch_ = epoch;
  for (;;) {
    const uint64_t seen = wake_.epoch();
    Sealed s;
    std::shared_ptr<const Relocation> reloc;
    uint64_t wait_ns = Notifier::kForever;
    {
      std::lock_guard lock(mu_);
      if (sink_.FencedLocked() || give_up_.cancelled()) co_return;
      const bool dirty = !active_->empty();
      if (!dirty && sealed_.empty() && stop_) co_return;
      bool go = false;
      if (dirty) {
        const uint64_t now = env_.NowNanos();
        const uint64_t due = options_.flush_interval_ms == 0
                                 ? UINT64_MAX
                                 : SaturatingAdd(static_cast<uint64_t>(active_dirty_since_ns_),
                                                 MillisToNanos(options_.flush_interval_ms));
        go = stop_ || flush_gen_ >= active_gen_ || active_->bytes() >= options_.l0_sst_size_bytes ||
             now >= due;
        if (!go && due != UINT64_MAX) wait_ns = due - now;
      }
      if (go && sealed_.empty()) SealActiveLocked();
      if (!sealed_.empty()) {
        // Sealed by a writer at full size, or just now.
        if (sealed_.front().segment_id == 0) sealed_.front().segment_id = next_segment_id_++;
        s = sealed_.front();
      } else if (relocation_ && !stop_) {
        reloc = std::move(relocation_);
        relocating_ = true;
        s.segment_id = next_segment_id_++;
      }
    }
    if (!s.buf && !reloc) {
      co_await wake_.Wait(seen, wait_ns);
      continue;
    }
    SegmentFooter footer;
    uint64_t size = 0;
    Status st = co_await UploadSegment(s.segment_id, s.buf.get(), reloc.get(), &footer, &size);
    if (st.ok()) {
      segments_.Remember(s.segment_id, size, footer);
      // Settled: its chunks may go to the disk cache (read back from the buffer, later).
      segments_.KeepWritten(footer, [buf = s.buf, reloc, f = footer]() mutable {
        if (!buf) return objstore::Rope(reloc->data);
        return buf->Contents(&f).data;
      });
      // Applying a relocation reads the map; its reads retry a bounded number of times.
      // The segment is stored: keep trying (nothing was applied by a failed attempt)
      // rather than fence over an error burst (dst swarm seed 9340).
      (void)co_await RetryUnavailable(
          env_,
          [&]() -> Task<Status> {
            st = co_await sink_.ApplyUploaded(footer, size);
            if (!st.retryable()) co_return st;
            {
              std::lock_guard lock(mu_);
              if (stop_ || sink_.FencedLocked() || give_up_.cancelled()) {
                co_return Status::Ok();  // give up; `st` keeps the error
              }
            }
            Log()->warn("applying segment {} failed, retrying error=\"{}\"", s.segment_id,
                        st.ToString());
            co_return st;
          },
          0, &give_up_);
    }
    if (!st.ok()) {
      {
        std::lock_guard lock(mu_);
        if (reloc) relocating_ = false;  // nobody may wait for it any more (a restore does)
        // Not fenced when the stop gave up: Close reports what is left; FLUSH waiters
        // already failed (GiveUpNow).
        if (!give_up_.cancelled() || st.IsPreconditionFailed() || st.IsCorruption()) {
          sink_.FenceLocked(st.ToString());
        }
      }
      sink_.UploadSettled();
      co_return;
    }
    {
      std::lock_guard lock(mu_);
      if (s.buf) {
        PORTAL_ASSERT(!sealed_.empty() && sealed_.front().gen == s.gen,
                      "sealed buffers out of order");
        sealed_.pop_front();
        durable_.MarkDurable(s.gen);  // the FLUSHes waiting for it (resumed after `mu_`)
      } else {
        relocating_ = false;
      }
      settled_through_ = s.segment_id;
    }
    sink_.UploadSettled();  // stalled writers, maintenance, a restore
  }
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

void Uploader::SettledFenceLocked(uint64_t id) {
  next_segment_id_ = id + 1;
  settled_through_ = id;
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
