// Verification: crash resolution after every open, cache-vs-rebuilt audits, store
// invariants, the liveness phase and the final reopen.
#include <cstdio>

#include <fmt/format.h>

#include "dst/sim.h"
#include "util/checksum.h"

namespace portal::dst {
namespace {

constexpr uint64_t kRunBlocks = 64;   // blocks per verification read
constexpr int kReadAttempts = 30;     // transient failures tolerated per verification read
constexpr uint64_t kSampledHoles = 8;  // untouched blocks read back per verification
constexpr uint64_t kTenMinutes = 600 * kNanosPerSecond;

// Groups ascending block numbers into runs of at most kRunBlocks consecutive blocks.
std::vector<std::pair<uint64_t, uint64_t>> Runs(const std::vector<uint64_t>& blocks) {
  std::vector<std::pair<uint64_t, uint64_t>> runs;
  for (uint64_t b : blocks) {
    if (!runs.empty() && runs.back().first + runs.back().second == b &&
        runs.back().second < kRunBlocks) {
      ++runs.back().second;
    } else {
      runs.emplace_back(b, 1);
    }
  }
  return runs;
}

}  // namespace

void Simulator::RecordOpen(Writer* w) {
  const volume::VolumeStats s = w->vol->stats();
  if (s.epoch <= facts_.max_open_epoch) {
    Fail(fmt::format("writer {} opened with epoch {}, not above an earlier open's {}", w->id,
                     s.epoch, facts_.max_open_epoch));
  }
  facts_.max_open_epoch = s.epoch;
  // Background work started inside Open may already have committed manifests and
  // uploaded segments: find this epoch's opener and fence in the store itself.
  auto [number, m] = LatestManifest(mem_, k_.volume.keyring);
  if (m.epoch == s.epoch) facts_.openers.insert(m.epoch_manifest);
  for (uint64_t id = s.next_segment_id; id-- > 0;) {
    auto f = SegmentFooterOf(mem_, id, k_.volume.keyring);
    if (f && f->is_fence() && f->epoch == s.epoch) {
      facts_.fences[id] = s.epoch;
      break;
    }
    if (f && f->epoch < s.epoch) break;  // below our first segment: no fence found
  }
}

bool Simulator::ReadBlocks(Writer* w, uint64_t first, uint64_t count, std::vector<uint8_t>* out,
                           device::BlockDevice* dev, Status* error) {
  const uint64_t bs = k_.volume.block_size;
  if (!dev) dev = w->vol.get();
  for (int attempt = 0; attempt < kReadAttempts && !failed(); ++attempt) {
    struct State {
      std::vector<uint8_t> buf;
      std::optional<Status> st;
    };
    auto s = std::make_shared<State>();
    s->buf.assign(count * bs, 0xee);
    Start(dev->Read(first * bs, s->buf, nullptr), [s](Status st) { s->st = std::move(st); });
    WaitFor([&] { return s->st.has_value() || w->dead; }, "a verification read", kTenMinutes);
    if (failed() || w->dead) return false;
    if (s->st->ok()) {
      *out = std::move(s->buf);
      history_.Mix(first);
      for (uint8_t c : *out) history_.Mix(uint64_t{c});
      return true;
    }
    if (!s->st->IsUnavailable()) {
      if (error) {
        *error = *s->st;
        return false;
      }
      Fail(fmt::format("verification read of blocks [{}, +{}) on writer {}{} failed: {}", first,
                       count, w->id, dev == w->vol.get() ? "" : " (a snapshot)",
                       s->st->ToString()));
      return false;
    }
  }
  if (!failed()) Fail(fmt::format("verification read of block {} kept failing", first));
  return false;
}

void Simulator::Resolve(Writer* w, Writer* predecessor, std::unique_ptr<Timeline> alt) {
  plan_.set_triggers_suspended(w->id, true);
  const uint64_t bs = k_.volume.block_size;
  std::vector<uint64_t> blocks = w->tl->Blocks();
  if (alt) {
    for (uint64_t b : alt->Blocks()) blocks.push_back(b);
    std::sort(blocks.begin(), blocks.end());
    blocks.erase(std::unique(blocks.begin(), blocks.end()), blocks.end());
  }
  // Untouched blocks must read as zeroes ("no invented data").
  const uint64_t nblocks = k_.volume.size_bytes / bs;
  std::set<uint64_t> known(blocks.begin(), blocks.end());
  for (uint64_t i = 0; i < kSampledHoles; ++i) {
    uint64_t b = rng_.Below(nblocks);
    if (!known.count(b)) blocks.push_back(b);
  }
  // Read everything first: with a restore of unknown outcome, the same content is judged
  // against both timelines.
  std::vector<std::pair<uint64_t, std::vector<uint8_t>>> runs;
  const size_t sampled_from = known.size();
  std::vector<uint64_t> sorted(blocks.begin(), blocks.begin() + sampled_from);
  for (auto [first, count] : Runs(sorted)) {
    std::vector<uint8_t> data;
    if (!ReadBlocks(w, first, count, &data)) break;
    runs.emplace_back(first, std::move(data));
  }
  for (size_t i = sampled_from; i < blocks.size() && !failed(); ++i) {
    std::vector<uint8_t> data;
    if (!ReadBlocks(w, blocks[i], 1, &data)) break;
    runs.emplace_back(blocks[i], std::move(data));
  }
  plan_.set_triggers_suspended(w->id, false);
  if (failed() || w->dead) return;
  auto judge = [&](Timeline& tl, std::set<uint64_t>* absent) -> std::string {
    for (const auto& [first, data] : runs) {
      for (uint64_t i = 0; i < data.size() / bs; ++i) {
        std::span<const uint8_t> blk(data.data() + i * bs, bs);
        if (first + i == trace_block_) {
          std::fprintf(stderr, "trace: writer %d opened, block reads xxh3=%016llx\n", w->id,
                       (unsigned long long)Checksum64(blk.data(), blk.size()));
        }
        std::string err = tl.Resolve(first + i, blk, nullptr, absent);
        if (!err.empty()) return err;
      }
    }
    return "";
  };
  std::set<uint64_t> absent;
  last_resolve_restored_ = false;
  if (!alt) {
    std::string err = judge(*w->tl, &absent);
    if (!err.empty()) return Fail(fmt::format("after writer {} opened: {}", w->id, err));
  } else {
    Timeline before = *w->tl;
    std::string err = judge(before, &absent);
    std::string restored;
    if (err.empty()) {
      *w->tl = std::move(before);
    } else {
      absent.clear();
      restored = judge(*alt, &absent);
      if (!restored.empty()) {
        return Fail(fmt::format("after writer {} opened (a restore was in flight): neither the "
                                "old device ({}) nor the restored one ({})",
                                w->id, err, restored));
      }
      *w->tl = std::move(*alt);
      last_resolve_restored_ = true;
    }
    Note(fmt::format("writer {} finds the restore {}", w->id, err.empty() ? "absent" : "landed"));
  }
  if (predecessor) predecessor->successor_absent = std::move(absent);
  Note(fmt::format("writer {} verified {} blocks", w->id, known.size()));
}

void Simulator::Audit() {
  Writer* w = primary_;
  ++audits_;
  phase_ = "audit";
  plan_.set_triggers_suspended(w->id, true);
  WaitFor([&] { return w->inflight == 0 || w->dead; }, "requests before an audit", kTenMinutes);
  auto flush = std::make_unique<Op>();
  flush->id = next_op_id_++;
  flush->type = OpType::kFlush;
  flush->w = w;
  Op* f = flush.get();
  ops_.push_back(std::move(flush));
  if (!failed() && !w->dead) {
    Issue(f);
    WaitFor([&] { return f->done; }, "the audit's FLUSH", kTenMinutes);
  }
  // The in-memory view must equal a fresh open of a copy of the store.
  objstore::MemoryStore copy;
  CopyStore(mem_, copy);
  std::shared_ptr<volume::Volume> rebuilt;
  if (!failed() && !w->dead && Healthy(w)) {
    std::optional<Status> st;
    Start(volume::OpenVolume(env_, copy, k_.volume),
          [&](Result<std::shared_ptr<volume::Volume>> r) {
            if (r.ok()) rebuilt = *r;
            st = r.status();
          });
    WaitFor([&] { return st.has_value(); }, "opening the store copy", kTenMinutes);
    if (st && !st->ok()) Fail("opening a copy of the store failed: " + st->ToString());
  }
  const uint64_t bs = k_.volume.block_size;
  std::vector<uint64_t> blocks = w->tl->Blocks();
  for (int i = 0; i < 8; ++i) blocks.push_back(rng_.Below(k_.volume.size_bytes / bs));
  std::sort(blocks.begin(), blocks.end());
  blocks.erase(std::unique(blocks.begin(), blocks.end()), blocks.end());
  for (auto [first, count] : Runs(blocks)) {
    if (failed() || !rebuilt || w->dead) break;
    std::vector<uint8_t> live;
    if (!ReadBlocks(w, first, count, &live)) break;
    std::vector<uint8_t> fresh(count * bs);
    std::optional<Status> st;
    Start(rebuilt->Read(first * bs, fresh, nullptr), [&](Status s) { st = s; });
    WaitFor([&] { return st.has_value(); }, "a read of the rebuilt volume", kTenMinutes);
    if (failed()) break;
    if (!st->ok()) {
      Fail("reading the rebuilt volume failed: " + st->ToString());
      break;
    }
    for (uint64_t i = 0; i < count && !failed(); ++i) {
      std::span<const uint8_t> blk(live.data() + i * bs, bs);
      if (!std::equal(blk.begin(), blk.end(), fresh.begin() + i * bs)) {
        Fail(fmt::format("audit: block {} differs between the live volume and a fresh open "
                         "of the store",
                         first + i));
      }
      std::string err = w->tl->Audit(first + i, blk);
      if (!err.empty()) Fail("audit: " + err);
    }
  }
  if (!failed() && !w->dead) VerifySnapshots(w);
  // TODO(sqlite cache): once volumes keep a SQLite cache, compare it with this rebuild.
  if (rebuilt) {
    bool closed = false;
    Start(rebuilt->Close(), [&](Status) { closed = true; });
    WaitFor([&] { return closed; }, "closing the rebuilt volume", kTenMinutes);
  }
  plan_.set_triggers_suspended(w->id, false);
  Note(fmt::format("audit {} of writer {}: {} blocks", audits_, w->id, blocks.size()));
  phase_ = "workload";
}

void Simulator::CheckInvariants(const char* when) {
  ++checks_;
  std::string summary;
  std::string err =
      CheckStore(mem_, &facts_, k_.volume.block_size, k_.volume.size_bytes, &summary,
                 k_.volume.keyring);
  if (!err.empty()) return Fail(fmt::format("store invariant ({}): {}", when, err));
  if (Healthy(primary_) && primary_->vol->fenced()) {
    return Fail(fmt::format("writer {} fenced itself with no other writer", primary_->id));
  }
  Note(fmt::format("invariants {}: {}", when, summary));
}

void Simulator::Liveness() {
  phase_ = "liveness";
  plan_.set_enabled(false);
  Note("liveness: faults off");
  // A primary that is open and verified.
  const uint64_t deadline = env_.NowNanos() + kTenMinutes;
  // The deadline is checked only while no writer is open: 64 steps of an idle scheduler
  // can jump many timers ahead (seed 7516: the open completed, then the GC timers took
  // the clock 640 s further, and a healthy writer was reported as never opening).
  while (!failed() && (opening_ || !primary_ || primary_->dead)) {
    if (env_.NowNanos() > deadline) return Fail("liveness: no writer could open");
    ProcessEvents();
    Step(64);
  }
  for (auto& o : writers_) {
    if (o.get() != primary_) StartClose(o.get());
  }
  auto all_idle = [&] {
    for (auto& o : writers_) {
      if (o->inflight > 0) return false;
    }
    return true;
  };
  WaitFor(all_idle, "every request in flight", kTenMinutes);
  if (failed()) {
    for (auto& o : writers_) {
      for (const Op* op : o->ops) {
        failure_ += fmt::format("\n  still in flight: #{} {} on writer {} (dead={} closing={} "
                                "closed={} superseded={})",
                                op->id, OpName(op->type), o->id, o->dead, o->closing, o->closed,
                                o->superseded);
        if (o->vol) {
          const volume::VolumeStats s = o->vol->stats();
          failure_ += fmt::format(" volume: fenced={} active={} sealed={} bytes", s.fenced,
                                  s.active_buffer_bytes, s.sealed_buffer_bytes);
        }
        if (o->nbd) {
          failure_ += fmt::format(" nbd: client={} session={} in flight", o->nbd->inflight(),
                                  o->nbd->session_inflight());
        }
      }
    }
    return;
  }
  Writer* w = primary_;
  auto run = [&](OpType type) {
    auto op = std::make_unique<Op>();
    op->id = next_op_id_++;
    op->type = type;
    op->w = w;
    Op* raw = op.get();
    ops_.push_back(std::move(op));
    if (failed()) return;
    Issue(raw);
    WaitFor([&] { return raw->done; }, OpName(type), kTenMinutes);
  };
  // Drain everything: uploads, memtable, compaction, GC (twice past the grace period).
  for (int round = 0; round < 2 && !failed(); ++round) {
    run(OpType::kFlush);
    run(OpType::kFlushMemtable);
    run(OpType::kCompact);
    run(OpType::kGc);
    env_.AdvanceBy(2 * (k_.volume.gc_grace_ms + k_.volume.gc_interval_ms) * kNanosPerMilli);
    run(OpType::kGc);
  }
  run(OpType::kFlush);
  if (failed()) return;
  const volume::VolumeStats s = w->vol->stats();
  if (s.active_buffer_bytes != 0 || s.sealed_buffer_bytes != 0 || s.fenced) {
    return Fail(fmt::format("liveness: after FLUSH the volume holds active={} sealed={} bytes "
                            "(fenced={})",
                            s.active_buffer_bytes, s.sealed_buffer_bytes, s.fenced));
  }
  Audit();
  if (failed()) return;
  phase_ = "liveness";
  for (auto& o : writers_) StartClose(o.get());
  auto all_closed = [&] {
    for (auto& o : writers_) {
      if (o->vol && !o->closed) return false;
    }
    return true;
  };
  WaitFor(all_closed, "closing every volume", kTenMinutes);
  if (failed()) return;
  // Nothing may keep running once every volume is closed.
  const uint64_t steps = env_.RunUntilIdle(10'000'000);
  if (env_.ready_count() > 0 || env_.timer_count() > 0) {
    return Fail(fmt::format("liveness: the scheduler is still busy after every volume closed "
                            "({} steps)",
                            steps));
  }
  CheckInvariants("after close");
}

void Simulator::FinalCheck() {
  phase_ = "final";
  Writer* last = primary_;
  Writer* w = StartOpen();
  WaitFor([&] { return w->open_status.has_value(); }, "the final open", kTenMinutes);
  if (failed()) return;
  if (!w->open_status->ok()) return Fail("final open failed: " + w->open_status->ToString());
  opening_ = nullptr;
  if (w->tl != last->tl) return Fail("internal: the final open forked a live writer");
  // Everything was flushed: the oracle's crash-mode resolution is exact now.
  Resolve(w, nullptr);
  if (!failed()) CheckSnapshotList(w);
  if (!failed()) VerifySnapshots(w);
  if (failed()) return;
  StartClose(w);
  WaitFor([&] { return w->closed; }, "closing the final volume", kTenMinutes);
  (void)env_.RunUntilIdle(10'000'000);
  CheckInvariants("final");
}

}  // namespace portal::dst
