// Opening a volume: the single-writer protocol of DESIGN.md and docs/volume.md.
#include <algorithm>
#include <map>

#include <fmt/format.h>

#include "util/log.h"
#include "volume/clone_protocol.h"
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
      own_cache_(options_.block_cache ? nullptr
                                      : std::make_unique<cache::BlockCache>(
                                            env, options_.block_cache_size_bytes)),
      cache_(options_.block_cache ? *options_.block_cache : *own_cache_),
      segments_(reads_, cache_, options_, meta_.get(), &corrupt_refetches_),
      ssts_(reads_, cache_, meta_.get(), &corrupt_refetches_, options_.keyring,
            options_.block_cache ? store.url() + "|" : ""),
      log_(store, env, &corrupt_refetches_, options_.keyring),
      changed_(env),
      own_budget_(options_.write_budget
                      ? nullptr
                      : std::make_unique<WriteBudget>(env, options_.max_unflushed_bytes)),
      budget_(options_.write_budget ? *options_.write_budget : *own_budget_),
      budget_account_(budget_.Join([this] { PushUpload(); })),
      jobs_mu_(env),
      loops_(env),
      stripes_(kStripes, 0),
      uploader_(env, store, segments_, options_, mu_, give_up_, *this) {}

LsmVolume::~LsmVolume() {
  budget_.Leave(*budget_account_);  // no push runs after this
  std::lock_guard lock(mu_);
  PORTAL_ASSERT(lifecycle_.stop || versions_.current() == nullptr,
                "LsmVolume destroyed without Close()");
}

Task<Result<std::shared_ptr<LsmVolume>>> LsmVolume::Open(Env& env, objstore::ObjectStore& store,
                                                         VolumeOptions options) {
  std::shared_ptr<LsmVolume> v(new LsmVolume(env, store, std::move(options)));
  Status st = co_await v->DoOpen();
  if (!st.ok()) {
    // Nothing runs yet; mark stopped so the destructor's check passes.
    std::lock_guard lock(v->mu_);
    v->lifecycle_.stop = true;
    co_return st;
  }
  if (v->options_.salvage) co_return v;  // read-only: no uploads, no maintenance, no GC
  v->loops_.Add(2);
  Start(v->uploader_.Run(v->opened_.epoch), [v] { v->loops_.Done(); });
  Start(v->MaintenanceLoop(), [v] { v->loops_.Done(); });
  if (v->options_.warm_map) {
    v->loops_.Add(1);
    const uint64_t start_ns = env.NowNanos();
    const lsm::SstReader::WarmStats before = v->ssts_.warm_stats();
    Start(v->WarmMap(), [v, start_ns, before] {
      const lsm::SstReader::WarmStats d = v->ssts_.warm_stats() - before;
      Log()->info(
          "map warm-up done ssts={} blocks={} blocks_from_metadata_cache={} "
          "indexes_from_metadata_cache={} gets={} get_bytes={} ms={}",
          d.ssts, d.blocks, d.local_blocks, d.local_indexes, d.gets, d.get_bytes,
          (v->env_.NowNanos() - start_ns) / kNanosPerMilli);
      v->loops_.Done();
    });
  }
  co_return v;
}

Task<Status> LsmVolume::ProbeConditionalWrites() {
  const std::string key =
      "probe/" + MakeUuid(env_.RandomU64(), env_.RandomU64()) + ".probe";
  // The key is fresh: it can only exist because an earlier attempt of ours succeeded and
  // its acknowledgement was lost. Read back, as every conditional write does.
  constexpr objstore::RetryPolicy kProbePolicy{10};
  auto created = co_await objstore::CreateOrVerify(env_, store_, key, "probe", kProbePolicy);
  Status first = created.status();
  if (created.ok() && *created == objstore::CreateOutcome::kTakenByOther) {
    first = Status::PreconditionFailed(key + " exists with other contents");
  }
  CO_RETURN_IF_ERROR(first.WithContext("probing conditional writes"));
  Status second = co_await RetryUnavailable(
      env_, store_, [&]() -> Task<Status> { co_return co_await store_.PutIfAbsent(key, "probe"); },
      kProbePolicy.max_attempts);
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

Task<Status> LsmVolume::OpenClone() {
  auto tomb = co_await reads_.Head(kTombstoneKey);
  if (tomb.ok()) {
    co_return Status::NotFound(store_.url() + " holds a deleted volume (" +
                               std::string(kTombstoneKey) + "); it cannot be opened");
  }
  if (!tomb.status().IsNotFound()) co_return tomb.status();
  CO_ASSIGN_OR_RETURN(auto record, co_await ReadCloneRecord(env_, store_, &corrupt_refetches_));
  if (!record) co_return Status::Ok();
  CO_ASSIGN_OR_RETURN(base_, co_await CloneBase::Open(env_, *record, options_));
  if (base_->block_size() != options_.block_size) {
    co_return Status::InvalidArgument(fmt::format(
        "clone '{}': its base {}@{} has block size {}; configured {}", record->name,
        record->parent, record->snapshot, base_->block_size(), options_.block_size));
  }
  co_return Status::Ok();
}

Task<Status> LsmVolume::DoOpen() {
  CO_RETURN_IF_ERROR(co_await OpenClone());
  if (!options_.salvage) CO_RETURN_IF_ERROR(co_await ProbeConditionalWrites());
  uint64_t number = 0;
  Manifest m;
  const uint64_t hint = co_await meta_->LatestManifestHint();
  for (int attempt = 0;; ++attempt) {
    auto latest = co_await log_.ReadLatest(attempt == 0 ? hint : 0);
    if (options_.salvage) {
      // Read-only: the latest manifest as it is; no new epoch, nothing written.
      if (latest.status().IsNotFound()) {
        co_return Status::NotFound(store_.url() + " holds no volume to salvage");
      }
      if (!latest.ok()) co_return latest.status();
      std::tie(number, m) = std::move(*latest);
      CO_RETURN_IF_ERROR(co_await CheckSstsStored(number, m));
      Log()->warn("SALVAGE: opening the volume at {} read-only at manifest {} epoch {}; "
                  "nothing will be written to the store",
                  store_.url(), number, m.epoch);
      break;
    }
    if (latest.status().IsNotFound()) {
      // A new volume: manifest 1, epoch 1 (unless segments say it is a damaged one).
      Status damage = co_await CheckNoManifestLeft();
      if (damage.IsUnavailable() && attempt < 10) continue;  // created meanwhile: re-read
      CO_RETURN_IF_ERROR(damage);
      m = Manifest{};
      m.volume_uuid = MakeUuid(env_.RandomU64(), env_.RandomU64());
      m.size_bytes = options_.size_bytes != 0 ? options_.size_bytes : (1ull << 30);
      if (base_) {
        // A clone's first manifest only after its reference is in the parent and the
        // snapshot still there (CreateClone did so; a crash may have cut it short).
        CO_RETURN_IF_ERROR(co_await ConfirmCloneReference(env_, options_.resolve_volume,
                                                          base_->record(), options_.keyring));
        m.size_bytes = std::max(base_->size_bytes(), options_.size_bytes);
      }
      m.block_size = options_.block_size;
      m.epoch = 1;
      m.epoch_manifest = 1;
      m.upload_window = std::max<uint64_t>(1, options_.upload_window);
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
    // A damaged store refuses before anything is written: no new epoch, no fence.
    // (Replay checks again, after our opener manifest: segments may land meanwhile.)
    {
      Result<ReplayPlan> plan = co_await PlanReplay(m.applied_segment);
      Status damage = plan.status();
      if (damage.ok()) damage = co_await CheckGap(*plan);
      if (damage.ok()) damage = co_await CheckNewestEpoch(*plan, number, m.epoch);
      if (damage.ok()) damage = co_await CheckSstsStored(number, m);
      if (damage.IsUnavailable() && attempt < 10) continue;  // a racing upload: re-read
      CO_RETURN_IF_ERROR(damage);
    }
    gc_.prev_epoch_manifest = m.epoch_manifest;
    gc_.prev_latest_manifest = number;
    Manifest next = m;
    next.size_bytes = want;  // growing is safe: new blocks are holes
    next.epoch = m.epoch + 1;
    next.epoch_manifest = number + 1;
    // Raised before our first upload, never lowered: a later opener's fence must reserve
    // the window of every writer before it (DESIGN.md single writer, step 5).
    next.upload_window = std::max<uint64_t>(m.upload_window, options_.upload_window);
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
  opened_.epoch = m.epoch;
  opened_.size_bytes = m.size_bytes;
  meta_->SetVolume(m.volume_uuid);
  segments_.SetDiskCacheScope(store_.url(), m.volume_uuid);
  meta_->SetLatestManifest(number);
  {
    std::lock_guard lock(mu_);
    versions_.Recover(Version{number, m.levels, m.applied_segment, m.applied_seq});
    head_ = m;
    head_.levels.clear();
    uploader_.SetNextSegmentIdLocked(m.next_segment_id);
    uploader_.SetWindowLocked(std::min<uint64_t>(options_.upload_window, m.upload_window));
    map_.next_seq = m.next_seq;
    map_.mem_last_segment = m.applied_segment;
    map_.mem_last_seq = m.applied_seq;
  }
  // Account the committed map's references (GC liveness).
  for (const auto& level : m.levels) {
    for (const auto& ref : level) {
      CO_ASSIGN_OR_RETURN(auto idx, co_await ssts_.Index(ref));
      std::lock_guard lock(mu_);
      const int64_t now = static_cast<int64_t>(env_.NowNanos());
      for (const auto& [seg, blocks] : idx->segment_blocks) {
        seg_table_.AddLive(seg, static_cast<int64_t>(blocks), now);
      }
    }
  }
  CO_RETURN_IF_ERROR(co_await LoadSnapshots());
  if (!options_.salvage) {
    // Our opener manifest fenced every older writer: a mark a crashed snapshot delete
    // left can be settled now (clone_protocol.h).
    CO_RETURN_IF_ERROR(co_await ClearStaleDeleteMarks(env_, store_, m.snapshots, m.epoch));
  }
  CO_RETURN_IF_ERROR(co_await Replay());
  Log()->info("opened volume uuid={} epoch={} manifest={} next_segment={} url={}", m.volume_uuid,
              opened_.epoch, number, uploader_.NextSegmentIdLocked(), store_.url());
  co_return Status::Ok();
}

Task<Status> LsmVolume::ApplyReplayed(const SegmentFooter& f, uint64_t size) {
  if (f.epoch == opened_.epoch && !options_.salvage) {
    // Our epoch is unique (our opener manifest was created exclusively) and we have not
    // uploaded yet: the manifest that opened this epoch before was lost (see
    // CheckNewestEpoch, which usually refuses before our opener is written).
    co_return Status::Corruption(fmt::format(
        "segment {} carries epoch {}, which this writer just opened: a newer manifest of "
        "this volume is missing",
        SegmentKey(f.segment_id), f.epoch));
  }
  if (f.epoch > opened_.epoch) {
    std::lock_guard lock(mu_);
    lifecycle_.fenced = true;
    co_return Status::PreconditionFailed(fmt::format(
        "segment {} was written by epoch {}, newer than ours ({}): another portalbd owns "
        "this volume",
        f.segment_id, f.epoch, opened_.epoch));
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
  // A fence's window counts as applied: applied_segment never lies inside it, so a later
  // replay starts at the fence or past its window, never among an older writer's late
  // segments there (DESIGN.md single writer, step 5).
  const uint64_t next = f.is_fence() ? std::max(f.resume, f.segment_id + 1) : f.segment_id + 1;
  uploader_.SetNextSegmentIdLocked(next);
  map_.mem_last_segment = std::max(map_.mem_last_segment, next - 1);
  map_.next_seq = std::max(map_.next_seq, f.last_seq + 1);
  co_return Status::Ok();
}

Task<Result<LsmVolume::ReplayPlan>> LsmVolume::PlanReplay(uint64_t applied) {
  Result<std::vector<objstore::ObjectInfo>> listed = Status::Unavailable("not listed");
  CO_RETURN_IF_ERROR(co_await RetryUnavailable(
      env_, store_,
      [&]() -> Task<Status> {
        listed = co_await store_.List("seg/", SegmentKey(applied));
        co_return listed.status();
      },
      20));
  std::map<uint64_t, uint64_t> present;  // id -> size, above applied_segment
  for (const auto& o : *listed) {
    uint64_t id;
    if (ParseSegmentKey(o.key, &id) && id > applied) present.emplace(id, o.size);
  }
  // Walk in id order up to the first gap. A fence continues at its resume, whatever lies
  // in its window (an older writer's late segments: none holds an acknowledged write),
  // and after a fence of epoch e no segment of an older epoch may follow (none can be
  // written there: DESIGN.md single writer, step 5).
  ReplayPlan plan;
  plan.gap = applied + 1;
  uint64_t fence_epoch = 0;
  uint64_t fence_id = 0;
  for (;;) {
    std::vector<std::pair<uint64_t, uint64_t>> run;
    for (uint64_t id = plan.gap; run.size() < kReplayBatch; ++id) {
      auto it = present.find(id);
      if (it == present.end()) break;
      run.emplace_back(id, it->second);
    }
    if (run.empty()) break;
    std::vector<Task<Result<SegmentFooter>>> batch;
    for (const auto& [id, size] : run) batch.push_back(segments_.ReadFooter(id, size));
    auto footers = co_await WhenAll(std::move(batch));
    for (size_t j = 0; j < footers.size(); ++j) {
      const uint64_t id = run[j].first;
      if (footers[j].status().IsNotFound()) {
        // Listed, then gone: collected by a writer that is still running. List again.
        co_return Status::Unavailable("relist: " + SegmentKey(id) + " disappeared");
      }
      if (!footers[j].ok()) co_return footers[j].status().WithContext("replaying");
      const SegmentFooter& f = *footers[j];
      if (f.epoch < fence_epoch) {
        co_return Status::Corruption(fmt::format(
            "{} carries epoch {}, but the fence {} of epoch {} precedes it and no older "
            "writer can write past a fence's window: the store is damaged",
            SegmentKey(id), f.epoch, SegmentKey(fence_id), fence_epoch));
      }
      plan.todo.push_back(run[j]);
      plan.footers.push_back(f);
      plan.gap = id + 1;
      if (f.is_fence()) {
        fence_epoch = std::max(fence_epoch, f.epoch);
        fence_id = id;
        if (f.resume > id + 1) {
          plan.gap = f.resume;
          break;  // the rest of this batch lies in the window (or was read for nothing)
        }
      }
    }
  }
  for (auto it = present.upper_bound(plan.gap); it != present.end(); ++it) {
    plan.above.push_back(it->first);
  }
  co_return plan;
}

Task<Status> LsmVolume::CheckGap(const ReplayPlan& plan) {
  if (plan.above.empty()) co_return Status::Ok();  // the gap is the end: a crash at most
  // The evidence: the largest durable_through above the gap. It does not decrease with
  // id, so the highest readable footer has it; a footer that does not decode is itself
  // damage (objects are written whole, by single PUTs).
  const uint64_t x = plan.gap;
  uint64_t evidence = 0, witness = 0, witness_epoch = 0;
  constexpr size_t kHighestFew = 3;
  for (size_t i = 0; i < std::min(kHighestFew, plan.above.size()); ++i) {
    const uint64_t id = plan.above[plan.above.size() - 1 - i];
    auto f = co_await segments_.ReadFooter(id, 0);
    if (f.status().IsNotFound()) continue;  // collected or listed stale: not evidence
    if (!f.ok()) {
      co_return f.status().WithContext(fmt::format(
          "reading {} above the first missing segment {}", SegmentKey(id), SegmentKey(x)));
    }
    if (f->durable_through > evidence) {
      evidence = f->durable_through;
      witness = id;
      witness_epoch = f->epoch;
    }
    break;
  }
  if (x > evidence) co_return Status::Ok();  // a crash gap: ids above it hold no acked write
  // Read after the evidence: a listing is not a snapshot, and an upload that raced it
  // may have landed since. Only an object that is still missing is lost.
  auto head = co_await reads_.Head(SegmentKey(x));
  if (head.ok()) co_return Status::Unavailable("relist: " + SegmentKey(x) + " appeared");
  if (!head.status().IsNotFound()) co_return head.status().WithContext("checking " + SegmentKey(x));
  co_return Status::Corruption(fmt::format(
      "{} is missing from {}, but {} (epoch {}) records every segment through {} as stored: "
      "the store is damaged (a crash cannot leave this gap), and replaying past it would "
      "serve old data. Nothing was written. To copy out what is left, start portalbd with "
      "--salvage (read-only, as of segment {}).",
      SegmentKey(x), store_.url(), SegmentKey(witness), witness_epoch, evidence, x - 1));
}

Task<Status> LsmVolume::CheckNewestEpoch(const ReplayPlan& plan, uint64_t number,
                                          uint64_t epoch) {
  // A segment's epoch was opened by a manifest, and openers are never collected; epochs
  // grow with ids, so the newest segment carries the highest. One above the latest
  // manifest's epoch means a newer manifest was lost: opening at this one would reuse
  // an epoch and could silently undo what that manifest held (a restore, a snapshot).
  uint64_t newest = !plan.above.empty() ? plan.above.back()
                    : !plan.todo.empty() ? plan.todo.back().first
                                         : 0;
  if (newest == 0) co_return Status::Ok();
  auto f = co_await segments_.ReadFooter(newest, 0);
  if (f.status().IsNotFound()) co_return Status::Ok();
  CO_RETURN_IF_ERROR(f.status().WithContext("reading the newest segment " + SegmentKey(newest)));
  if (f->epoch <= epoch) co_return Status::Ok();
  // A writer that opened after we read the manifest also fits: read again first.
  auto next = co_await reads_.Head(ManifestKey(number + 1));
  if (next.ok()) co_return Status::Unavailable("relist: " + ManifestKey(number + 1) + " appeared");
  if (!next.status().IsNotFound()) co_return next.status();
  // Every manifest above `number` is gone, the one that opened f->epoch among them.
  co_return Status::Corruption(fmt::format(
      "{} is missing from {}: the latest manifest there is {} (epoch {}), but {} was "
      "written by epoch {}, which a newer manifest opened. Opening here would serve an "
      "older state of the volume. Nothing was written.",
      ManifestKey(number + 1), store_.url(), ManifestKey(number), epoch, SegmentKey(newest),
      f->epoch));
}

Task<Status> LsmVolume::CheckNoManifestLeft() {
  auto listed = co_await reads_.List("seg/");
  if (!listed.ok()) co_return listed.status().WithContext("listing segments");
  uint64_t count = 0, first = UINT64_MAX, last = 0;
  for (const auto& o : *listed) {
    uint64_t id;
    if (!ParseSegmentKey(o.key, &id)) continue;
    ++count;
    first = std::min(first, id);
    last = std::max(last, id);
  }
  if (count == 0) co_return Status::Ok();  // a new volume
  // A writer that created the volume after we looked also fits: look again first.
  auto again = co_await log_.ReadLatest(0);
  if (again.ok()) co_return Status::Unavailable("relist: a manifest appeared");
  if (!again.status().IsNotFound()) co_return again.status();
  co_return Status::Corruption(fmt::format(
      "{} holds {} segment(s) ({} to {}) but no manifest: {} and every later manifest are "
      "missing. This is a damaged volume, not a new one; creating a volume here would read "
      "as zeroes over that data. Nothing was written.",
      store_.url(), count, SegmentKey(first), SegmentKey(last), ManifestKey(1)));
}

Task<Status> LsmVolume::Replay() {
  uint64_t applied;
  {
    std::lock_guard lock(mu_);
    applied = versions_.current()->applied_segment;
  }
  ReplayPlan plan;
  for (int attempt = 0;; ++attempt) {
    CO_ASSIGN_OR_RETURN(plan, co_await PlanReplay(applied));
    Status damage = co_await CheckGap(plan);
    if (damage.IsUnavailable() && attempt < 10) continue;  // a racing upload: list again
    if (damage.IsCorruption() && options_.salvage) {
      opened_.salvage_gap = plan.gap;
      Log()->error("SALVAGE: {}", damage.message());
      Log()->error("SALVAGE: serving the volume read-only as of segment {}; writes are refused",
                   plan.gap - 1);
      break;
    }
    CO_RETURN_IF_ERROR(damage);
    break;
  }
  uint64_t expect = plan.gap;
  uint64_t replayed = 0;
  for (size_t i = 0; i < plan.todo.size(); ++i) {
    CO_RETURN_IF_ERROR(co_await ApplyReplayed(plan.footers[i], plan.todo[i].second));
    ++replayed;
  }
  if (options_.salvage) {
    if (replayed > 0) Log()->info("replayed segments count={} from={}", replayed, applied + 1);
    co_return Status::Ok();  // read-only: no fence
  }
  // Fence: claim the first id not in the store (the first gap) with an empty segment
  // carrying our epoch. Not the manifest's next_segment_id: an older writer may have
  // allocated that id's predecessor, failed to upload it yet, and committed a manifest
  // meanwhile; fencing above it would let its retry land after we opened (ids are never
  // skipped).
  uint64_t floor_epoch = 0;  // the newest fence's epoch: nothing older may follow it
  for (const SegmentFooter& f : plan.footers) {
    if (f.is_fence()) floor_epoch = std::max(floor_epoch, f.epoch);
  }
  for (;;) {
    uint64_t id, window;
    {
      std::lock_guard lock(mu_);
      id = expect;
      window = head_.upload_window;
      uploader_.SetNextSegmentIdLocked(id);
    }
    SegmentFooter fence;
    fence.segment_id = id;
    fence.epoch = opened_.epoch;
    fence.block_size = block_size_;
    fence.blocks_per_chunk = options_.blocks_per_chunk;
    fence.durable_through = id - 1;  // everything below was replayed
    // Our first own id: an older writer may still land ids up to its settled prefix
    // (below `id`) plus its window (at most upload_window): the window is theirs.
    fence.resume = id + window;
    EncodedSegment enc = EncodeSegment(
        &fence, {}, {},
        options_.keyring ? options_.keyring->NewObjectKey(crypto::Purpose::kSegment) : nullptr);
    const std::string bytes = std::move(enc.bytes).Flatten();
    const uint64_t size = bytes.size();
    // Ours already when an earlier attempt landed with its reply lost: same epoch, same
    // footer checksum.
    Result<SegmentFooter> existing = Status::NotFound("not read");
    bool read_back = false;
    auto created = co_await objstore::CreateOrVerify(
        env_, objstore::kUntilDefinite,
        [&]() -> Task<Status> {
          co_return co_await store_.PutIfAbsent(SegmentKey(id), bytes);
        },
        [&]() -> Task<Result<bool>> {
          uint64_t sum = 0;
          read_back = true;
          existing = co_await segments_.ReadFooter(id, 0, &sum);
          if (!existing.ok()) co_return existing.status();
          co_return existing->epoch == opened_.epoch && sum == enc.footer_checksum;
        },
        1);
    if (!created.ok() && !read_back) co_return created.status().WithContext("fencing");
    CO_RETURN_IF_ERROR(created.status());  // the read-back's error, as it came
    if (*created != objstore::CreateOutcome::kTakenByOther) {
      std::lock_guard lock(mu_);
      seg_table_.AddSegment(id, size, 0, /*fence=*/true);
      uploader_.SettledFenceLocked(fence.resume);
      map_.mem_last_segment = std::max(map_.mem_last_segment, fence.resume - 1);
      break;
    }
    // A late segment of an older writer, contiguous with what we replayed: replay it and
    // fence the next id, or, if it is an older opener's fence, the id its window ends at.
    // A newer epoch fails inside ApplyReplayed.
    if (existing->epoch < floor_epoch) {
      co_return Status::Corruption(fmt::format(
          "{} carries epoch {}, past a fence of epoch {}: no older writer can write there",
          SegmentKey(id), existing->epoch, floor_epoch));
    }
    if (existing->is_fence()) floor_epoch = std::max(floor_epoch, existing->epoch);
    CO_RETURN_IF_ERROR(co_await ApplyReplayed(*existing, 0));
    ++replayed;
    expect = existing->is_fence() ? std::max(existing->resume, id + 1) : id + 1;
  }
  if (replayed > 0) Log()->info("replayed segments count={} from={}", replayed, applied + 1);
  co_return Status::Ok();
}

}  // namespace portal::volume
