// Opening a volume: the single-writer protocol of DESIGN.md and docs/volume.md.
#include <algorithm>

#include <fmt/format.h>

#include "util/log.h"
#include "volume/lsm_volume.h"

namespace portal::volume {
namespace {
constexpr size_t kStripes = 4096;
constexpr size_t kReplayBatch = 16;  // footers fetched in parallel

auto Log() { return log::Get("portalbd::volume"); }
}  // namespace

LsmVolume::LsmVolume(Env& env, objstore::ObjectStore& store, VolumeOptions options)
    : env_(env),
      store_(store),
      reads_(store, env),
      options_(std::move(options)),
      block_size_(options_.block_size),
      meta_(SqliteCache::Open(env, options_.cache_dir, store.url())),
      cache_(env, options_.block_cache_size_bytes),
      segments_(reads_, cache_, options_, meta_.get(), &corrupt_refetches_),
      ssts_(reads_, cache_, meta_.get(), &corrupt_refetches_),
      log_(store, env, &corrupt_refetches_),
      changed_(env),
      jobs_mu_(env),
      loops_(env),
      active_(std::make_shared<WriteBuffer>(options_.block_size, options_.blocks_per_chunk)),
      mem_(std::make_shared<lsm::Memtable>()),
      stripes_(kStripes, 0) {}

LsmVolume::~LsmVolume() {
  std::lock_guard lock(mu_);
  PORTAL_ASSERT(stop_ || version_ == nullptr, "LsmVolume destroyed without Close()");
}

Task<Result<std::shared_ptr<LsmVolume>>> LsmVolume::Open(Env& env, objstore::ObjectStore& store,
                                                         VolumeOptions options) {
  std::shared_ptr<LsmVolume> v(new LsmVolume(env, store, std::move(options)));
  Status st = co_await v->DoOpen();
  if (!st.ok()) {
    // Nothing runs yet; mark stopped so the destructor's check passes.
    std::lock_guard lock(v->mu_);
    v->stop_ = true;
    co_return st;
  }
  v->loops_.Add(2);
  Start(v->UploaderLoop(), [v] { v->loops_.Done(); });
  Start(v->MaintenanceLoop(), [v] { v->loops_.Done(); });
  co_return v;
}

Task<Status> LsmVolume::ProbeConditionalWrites() {
  const std::string key =
      "probe/" + MakeUuid(env_.RandomU64(), env_.RandomU64()) + ".probe";
  Status first = co_await RetryUnavailable(
      env_, [&]() -> Task<Status> { co_return co_await store_.PutIfAbsent(key, "probe"); }, 10);
  if (first.IsPreconditionFailed()) {
    // The key is fresh: it can only exist because an earlier attempt of ours succeeded
    // and its acknowledgement was lost. Check, as every conditional write does.
    auto existing = co_await reads_.Get(key);
    if (!existing.ok()) {
      first = existing.status();  // e.g. still Unavailable: the caller may retry the open
    } else if (*existing == "probe") {
      first = Status::Ok();
    }
  }
  CO_RETURN_IF_ERROR(first.WithContext("probing conditional writes"));
  Status second = co_await RetryUnavailable(
      env_, [&]() -> Task<Status> { co_return co_await store_.PutIfAbsent(key, "probe"); }, 10);
  (void)co_await store_.Delete(key);
  if (second.IsPreconditionFailed()) co_return Status::Ok();
  if (!second.ok()) co_return second.WithContext("probing conditional writes");
  if (!options_.unsafe_no_fencing) {
    co_return Status::NotSupported(
        store_.url() +
        " ignores conditional writes (If-None-Match), so a second portalbd could corrupt "
        "the volume; set [storage] unsafe_no_fencing = true to run without fencing");
  }
  Log()->warn(
      "storage ignores conditional writes; running WITHOUT FENCING because "
      "unsafe_no_fencing = true: never run two portalbd on this volume url={}",
      store_.url());
  co_return Status::Ok();
}

Task<Status> LsmVolume::DoOpen() {
  CO_RETURN_IF_ERROR(co_await ProbeConditionalWrites());
  uint64_t number = 0;
  Manifest m;
  const uint64_t hint = co_await meta_->LatestManifestHint();
  for (int attempt = 0;; ++attempt) {
    auto latest = co_await log_.ReadLatest(attempt == 0 ? hint : 0);
    if (latest.status().IsNotFound()) {
      // A new volume: manifest 1, epoch 1.
      m = Manifest{};
      m.volume_uuid = MakeUuid(env_.RandomU64(), env_.RandomU64());
      m.size_bytes = options_.size_bytes != 0 ? options_.size_bytes : (1ull << 30);
      m.block_size = options_.block_size;
      m.epoch = 1;
      m.epoch_manifest = 1;
      number = 1;
      Status st = co_await log_.Create(number, m);
      if (st.ok()) {
        Log()->info("created volume uuid={} size_bytes={} url={}", m.volume_uuid, m.size_bytes,
                    store_.url());
        break;
      }
      if (st.IsPreconditionFailed() && attempt < 10) continue;  // someone else created it
      co_return st;
    }
    if (!latest.ok()) co_return latest.status();
    std::tie(number, m) = std::move(*latest);
    if (m.block_size != options_.block_size) {
      co_return Status::InvalidArgument(fmt::format(
          "the volume at {} has block size {}; configured {}", store_.url(), m.block_size,
          options_.block_size));
    }
    const uint64_t want = options_.size_bytes != 0 ? options_.size_bytes : m.size_bytes;
    if (want < m.size_bytes) {
      co_return Status::InvalidArgument(fmt::format(
          "the volume at {} is {} bytes; refusing to shrink it to {}", store_.url(),
          m.size_bytes, want));
    }
    prev_epoch_manifest_ = m.epoch_manifest;
    prev_latest_manifest_ = number;
    Manifest next = m;
    next.size_bytes = want;  // growing is safe: new blocks are holes
    next.epoch = m.epoch + 1;
    next.epoch_manifest = number + 1;
    Status st = co_await log_.Create(number + 1, next);
    if (st.ok()) {
      // A writer deletes its own older manifests, so ReadLatest's upward probe can stop
      // in a hole below a live writer's latest manifest (it committed and collected
      // while we listed). An opener there is not above that writer's next commit and
      // would fence nothing (dst seed 5461). Nothing may sort above our opener.
      auto above = co_await reads_.List("manifest/", ManifestKey(number + 1));
      if (!above.ok()) co_return above.status().WithContext("checking for newer manifests");
      uint64_t highest = 0;
      for (const auto& o : *above) {
        uint64_t k;
        if (ParseManifestKey(o.key, &k)) highest = std::max(highest, k);
      }
      if (highest > number + 1) {
        Log()->warn("another writer committed manifest {} past our opener {}: re-reading",
                    highest, number + 1);
        if (attempt < 10) continue;
        co_return Status::PreconditionFailed("another writer keeps committing manifests");
      }
      if (next.size_bytes != m.size_bytes) {
        Log()->info("grew volume from {} to {} bytes", m.size_bytes, next.size_bytes);
      }
      number += 1;
      m = std::move(next);
      break;
    }
    if (st.IsPreconditionFailed() && attempt < 10) continue;  // another writer moved: re-read
    co_return st;
  }
  epoch_ = m.epoch;
  size_bytes_ = m.size_bytes;
  meta_->SetVolume(m.volume_uuid);
  meta_->SetLatestManifest(number);
  {
    std::lock_guard lock(mu_);
    version_ = std::make_shared<const Version>(Version{m, number});
    next_segment_id_ = m.next_segment_id;
    next_seq_ = m.next_seq;
    mem_first_segment_ = mem_last_segment_ = m.applied_segment;
    mem_last_seq_ = m.applied_seq;
  }
  // Account the committed map's references (GC liveness).
  for (const auto& level : m.levels) {
    for (const auto& ref : level) {
      CO_ASSIGN_OR_RETURN(auto idx, co_await ssts_.Index(ref));
      std::lock_guard lock(mu_);
      for (const auto& [seg, blocks] : idx->segment_blocks) segs_[seg].live_blocks += blocks;
    }
  }
  CO_RETURN_IF_ERROR(co_await LoadSnapshots());
  CO_RETURN_IF_ERROR(co_await Replay());
  Log()->info("opened volume uuid={} epoch={} manifest={} next_segment={} url={}", m.volume_uuid,
              epoch_, number, next_segment_id_, store_.url());
  co_return Status::Ok();
}

Task<Status> LsmVolume::ApplyReplayed(const SegmentFooter& f, uint64_t size) {
  if (f.epoch > epoch_) {
    std::lock_guard lock(mu_);
    fenced_ = true;
    co_return Status::PreconditionFailed(fmt::format(
        "segment {} was written by epoch {}, newer than ours ({}): another portalbd owns "
        "this volume",
        f.segment_id, f.epoch, epoch_));
  }
  for (const auto& se : f.extents) {
    if (se.extent.end > size_bytes() / block_size_) {
      co_return Status::Corruption(fmt::format("segment {} maps blocks past the device end",
                                               f.segment_id));
    }
  }
  if (size == 0) size = segments_.KnownSize(f.segment_id);
  segments_.Remember(f.segment_id, size, f);
  CO_RETURN_IF_ERROR(co_await ApplyFooter(f, size));
  std::lock_guard lock(mu_);
  next_segment_id_ = f.segment_id + 1;
  next_seq_ = std::max(next_seq_, f.last_seq + 1);
  co_return Status::Ok();
}

Task<Status> LsmVolume::Replay() {
  uint64_t applied;
  {
    std::lock_guard lock(mu_);
    applied = version_->manifest.applied_segment;
  }
  Result<std::vector<objstore::ObjectInfo>> listed = Status::Unavailable("not listed");
  CO_RETURN_IF_ERROR(co_await RetryUnavailable(
      env_,
      [&]() -> Task<Status> {
        listed = co_await reads_.List("seg/", SegmentKey(applied));
        co_return listed.status();
      },
      20));
  // Contiguous ids above applied_segment; stop at the first gap.
  std::vector<std::pair<uint64_t, uint64_t>> todo;  // (id, size)
  uint64_t expect = applied + 1;
  for (const auto& o : *listed) {
    uint64_t id;
    if (!ParseSegmentKey(o.key, &id) || id < expect) continue;
    if (id != expect) break;
    todo.emplace_back(id, o.size);
    ++expect;
  }
  uint64_t replayed = 0;
  for (size_t i = 0; i < todo.size(); i += kReplayBatch) {
    std::vector<Task<Result<SegmentFooter>>> batch;
    for (size_t j = i; j < std::min(todo.size(), i + kReplayBatch); ++j) {
      batch.push_back(segments_.ReadFooter(todo[j].first, todo[j].second));
    }
    auto footers = co_await WhenAll(std::move(batch));
    for (size_t j = 0; j < footers.size(); ++j) {
      if (!footers[j].ok()) co_return footers[j].status().WithContext("replaying");
      CO_RETURN_IF_ERROR(co_await ApplyReplayed(*footers[j], todo[i + j].second));
      ++replayed;
    }
  }
  // Fence: claim the first id not in the store (the first gap) with an empty segment
  // carrying our epoch. Not the manifest's next_segment_id: an older writer may have
  // allocated that id's predecessor, failed to upload it yet, and committed a manifest
  // meanwhile; fencing above it would let its retry land after we opened (ids are never
  // skipped).
  for (;;) {
    uint64_t id;
    {
      std::lock_guard lock(mu_);
      id = expect;
      next_segment_id_ = id;
    }
    SegmentFooter fence;
    fence.segment_id = id;
    fence.epoch = epoch_;
    fence.block_size = block_size_;
    fence.blocks_per_chunk = options_.blocks_per_chunk;
    EncodedSegment enc = EncodeSegment(&fence, "", false);
    const uint64_t size = enc.bytes.size();
    Status st = co_await RetryUnavailable(
        env_,
        [&]() -> Task<Status> {
          co_return co_await store_.PutIfAbsent(SegmentKey(id), enc.bytes);
        },
        0);
    if (st.ok()) {
      std::lock_guard lock(mu_);
      segs_[id].fence = true;
      segs_[id].size = size;
      next_segment_id_ = id + 1;
      break;
    }
    if (!st.IsPreconditionFailed()) co_return st.WithContext("fencing");
    uint64_t sum = 0;
    CO_ASSIGN_OR_RETURN(SegmentFooter existing, co_await segments_.ReadFooter(id, 0, &sum));
    if (existing.epoch == epoch_ && sum == enc.footer_checksum) {  // our own lost ack
      std::lock_guard lock(mu_);
      segs_[id].fence = true;
      segs_[id].size = size;
      next_segment_id_ = id + 1;
      break;
    }
    // A late segment of an older writer: replay it and fence the next id. A newer
    // epoch fails inside ApplyReplayed.
    CO_RETURN_IF_ERROR(co_await ApplyReplayed(existing, 0));
    ++replayed;
    expect = id + 1;
  }
  if (replayed > 0) Log()->info("replayed segments count={} from={}", replayed, applied + 1);
  co_return Status::Ok();
}

}  // namespace portal::volume
