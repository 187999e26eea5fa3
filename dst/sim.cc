// The simulator's main loop and writer lifecycle: open, fork (second writer), crash,
// close. Requests are in sim_ops.cc, verification in sim_verify.cc.
#include "dst/sim.h"

#include <cstdio>

#include <fmt/format.h>

#include "dst/late_store.h"
#include "testing/borrowed_store.h"

namespace portal::dst {
namespace {
constexpr uint64_t kHour = 3600 * kNanosPerSecond;
constexpr uint64_t kMaxOpenFailures = 200;
}  // namespace

const char* OpName(OpType t) {
  static const char* kNames[] = {"READ",  "WRITE", "TRIM",          "WRITE_ZEROES",
                                 "FLUSH", "BLOCK_STATUS", "CACHE", "FLUSH_MEMTABLE",
                                 "COMPACT", "GC", "SNAP_CREATE", "SNAP_DELETE",
                                 "SNAP_RESTORE", "SNAP_READ"};
  return kNames[static_cast<int>(t)];
}

Simulator::Simulator(const Knobs& knobs)
    : k_(knobs),
      key_rng_(knobs.seed ^ 0x6b65797372ULL),
      env_(SimEnv::Options{.seed = knobs.seed, .shuffle_ready = knobs.shuffle_ready}),
      rng_(knobs.seed ^ 0x776f726b6c6f6164ULL),
      plan_(env_, knobs.faults, knobs.seed),
      cache_disk_(std::make_shared<testing::MemoryCacheFiles::Disk>()),
      cache_rng_(knobs.seed ^ 0x6361636865ULL),
      clone_rng_(knobs.seed ^ 0x636c6f6e65ULL),
      damage_rng_(knobs.seed ^ 0x64616d616765ULL) {
  if (k_.encrypt) {
    std::string key(crypto::kKeyBytes, '\0');
    for (char& c : key) c = static_cast<char>(key_rng_.Next());
    keyring_ = *crypto::Keyring::FromKeys({key}, [this](uint8_t* out, size_t n) {
      for (size_t i = 0; i < n; ++i) out[i] = static_cast<uint8_t>(key_rng_.Next());
    });
    k_.volume.keyring = keyring_.get();
  }
  if (k_.faults.cache_disk_bytes > 0) cache_disk_->disk_bytes = k_.faults.cache_disk_bytes;
  cache_disk_->read_only = k_.faults.cache_read_only;
  cache_disk_->on_read = [this](const std::string&, std::string* bytes) {
    // Three draws per read, as for the store's GETs.
    const uint64_t roll = cache_rng_.Below(1'000'000), how = cache_rng_.Below(3);
    const uint64_t where = cache_rng_.Next();
    if (roll >= k_.faults.cache_damage_ppm || bytes->empty()) return;
    ++cache_damages_;
    const uint64_t at = where % bytes->size();
    if (how == 0) (*bytes)[at] = static_cast<char>((*bytes)[at] ^ (1 << ((where >> 32) % 8)));
    if (how == 1) std::fill(bytes->begin() + static_cast<ptrdiff_t>(at), bytes->end(), '\0');
    if (how == 2) bytes->resize(at);
  };
  const uint64_t blocks = k_.volume.size_bytes / k_.volume.block_size;
  for (uint32_t i = 0; i < k_.work.hot_regions; ++i) hot_.push_back(rng_.Below(blocks - 256));
}

Simulator::~Simulator() {
  // Volumes that never finished closing (a liveness failure already reported) must not
  // be destroyed: Volume asserts on that. Leak them, as a dying process would.
  for (auto& w : writers_) {
    if (w->vol && !w->closed) {
      new std::shared_ptr<volume::Volume>(std::move(w->vol));
      (void)w->store.release();
      (void)w->nbd.release();
    }
  }
}

void Simulator::Fail(const std::string& what) {
  if (!failure_.empty()) return;
  failure_ = fmt::format("[{} phase, request {}, t={:.3f}s] {}", phase_, issued_,
                         double(env_.NowNanos()) / 1e9, what);
  history_.Note("VIOLATION " + what);
}

void Simulator::Note(std::string line) {
  history_.Note(fmt::format("t={:.6f} {}", double(env_.NowNanos()) / 1e9, line));
}

bool Simulator::Healthy(const Writer* w) const {
  return w && w == primary_ && !w->dead && !w->contested && !w->superseded && w->vol &&
         !w->closing;
}

Writer* Simulator::StartOpen() {
  auto owned = std::make_unique<Writer>();
  Writer* w = owned.get();
  w->id = static_cast<int>(writers_.size()) + 1;
  writers_.push_back(std::move(owned));
  objstore::FaultOptions fo;
  fo.decide = plan_.HookFor(w->id, [this, w](const std::string& why) {
    // Inside a store call: the process dies now. Its later replies are ignored; the
    // rest of the crash is handled between scheduler steps.
    w->dead = true;
    w->death = why;
  });
  // Late landings draw from their own stream per incarnation.
  auto late = std::make_unique<LateLandingStore>(
      mem_, env_, k_.seed * 0x2545f4914f6cdd1dULL + uint64_t(w->id) * 104729,
      k_.faults.late_ppm, k_.faults.late_max_ns, [this] { return plan_.enabled(); },
      [this, w](const std::string& key, bool landed) {
        const bool gone = w->dead || w->superseded || w->contested || !w->vol;
        ++(landed ? (gone ? late_after_writer_ : late_landed_) : late_taken_);
        // A segment that damage deleted can be put back by a PUT still on its way from
        // the writer that stored it (the same bytes: RepairDamage tells it from an open).
        if (landed && damage_.active && key == damage_.key) damage_.late_put_back = true;
        Note(fmt::format("late PUT of writer {} {} {}{}", w->id, key,
                         landed ? "landed" : "found the id taken",
                         gone ? " (its writer crashed or was superseded)" : ""));
      });
  w->store = std::make_unique<objstore::FaultStore>(std::move(late), env_, std::move(fo));
  std::string trigger;
  if (plan_.enabled() && rng_.Below(1000) < k_.faults.trigger_permille) {
    trigger = " armed: " + plan_.ArmRandomTrigger(w->id, rng_);
  }
  // A running writer is about to be fenced: from now on its errors are expected.
  for (auto& other : writers_) {
    if (other.get() != w && other->vol && !other->dead) other->contested = true;
  }
  w->opening = true;
  w->damaged = damage_.active;
  opening_ = w;
  Note(fmt::format("open writer {}{}", w->id, trigger));
  volume::VolumeOptions options = k_.volume;
  if (k_.faults.disk_cache_bytes > 0) {
    disk_caches_.push_back(std::make_unique<cache::DiskCache>(
        env_, std::make_unique<testing::MemoryCacheFiles>(cache_disk_),
        k_.faults.disk_cache_bytes));
    options.disk_cache = disk_caches_.back().get();
    Start(options.disk_cache->Load(), [] {});
  }
  Start(volume::OpenVolume(env_, *w->store, options),
        [this, w](Result<std::shared_ptr<volume::Volume>> r) {
          w->opening = false;
          if (!r.ok()) {
            w->open_status = r.status();
            return;
          }
          w->vol = std::move(*r);
          w->open_status = Status::Ok();
          w->epoch = w->vol->epoch();
          RecordOpen(w);
          // The fork happens at this instant: the previous writer's later FLUSH and FUA
          // acknowledgements are judged by the fencing rule, on its own timeline copy.
          Writer* prev = primary_;
          if (prev && !prev->dead && !prev->closed) {
            prev->superseded = true;
            prev->fork_t = Tick();
            timelines_.push_back(std::make_unique<Timeline>(*prev->tl));
            w->tl = timelines_.back().get();
          } else if (prev) {
            w->tl = prev->tl;
          } else {
            timelines_.push_back(
                std::make_unique<Timeline>(k_.volume.block_size, k_.volume.size_bytes));
            w->tl = timelines_.back().get();
          }
          primary_ = w;
        });
  return w;
}

void Simulator::OnOpened(Writer* w) {
  opening_ = nullptr;
  const Status st = *w->open_status;
  if (!st.ok()) {
    Note(fmt::format("writer {} open failed: {}", w->id, st.ToString()));
    w->dead = true;
    w->crash_handled = true;
    w->store->Crash();
    if (w->damaged && st.code() != Status::Code::kShutdown && !st.retryable()) {
      // Damage refused (DESIGN.md single writer, step 7): legal. Repair and go on.
      ++damage_refused_;
      Note(fmt::format("damage refused by writer {}: {}", w->id, st.ToString()));
      if (st.ToString().find(damage_.key) == std::string::npos) {
        return Fail(fmt::format("writer {} refused a damaged store ({}) without naming {}: {}",
                                w->id, damage_.what, damage_.key, st.ToString()));
      }
      RepairDamage();
      if (!failed()) StartOpen();
      return;
    }
    // Retryable errors ran out, or the incarnation crashed; PreconditionFailed only when
    // another writer kept committing manifests under our attempts.
    bool contested = false;
    for (auto& o : writers_) contested |= o.get() != w && o->vol && !o->dead && !o->closed;
    const bool expected = st.code() == Status::Code::kShutdown || st.IsUnavailable() ||
                          (st.IsPreconditionFailed() && contested);
    if (!expected) return Fail("Open failed: " + st.ToString());
    if (++open_failures_ > kMaxOpenFailures) return Fail("Open keeps failing: " + st.ToString());
    StartOpen();
    return;
  }
  Note(fmt::format("writer {} opened epoch={} {}", w->id, w->epoch,
                   w->tl->block_count() > 0 ? "resolving" : ""));
  if (w->damaged) return VerifyDamaged(w);
  Writer* prev = nullptr;
  for (auto& o : writers_) {
    if (o->superseded && !o->successor_resolved && o->fork_t > 0) prev = o.get();
  }
  Writer* restorer = nullptr;
  std::unique_ptr<Timeline> alt = TakeRestoreAlt(w, &restorer);
  if (!w->dead) Resolve(w, prev, std::move(alt));
  if (restorer && !w->dead && !failed()) {
    restorer->restore_alt.reset();
    restorer->restore_resolved = last_resolve_restored_ ? 1 : 0;
  }
  if (!w->dead && !failed()) CheckSnapshotList(w);
  if (!w->dead && !failed()) VerifySnapshots(w);
  if (!w->dead && !failed()) VerifyClones(w);
  if (!w->dead && !failed()) MaybeClone(w);
  if (failed()) return;
  if (prev) {
    prev->successor_resolved = true;
    auto deferred = std::move(deferred_claims_);
    deferred_claims_.clear();
    for (auto& [pw, ids] : deferred) FenceCheck(pw, ids, "a deferred acknowledgement");
  }
  if (!w->dead && k_.work.nbd_permille > 0) {
    w->nbd = std::make_unique<NbdClient>(env_, w->vol, rng_.Below(2) == 0,
                                         [this](const std::string& e) { Fail(e); });
    if (!w->nbd->Connect()) Fail("NBD handshake failed");
  }
  CheckInvariants("after open");
}

void Simulator::CrashWriter(Writer* w, const std::string& why) {
  w->dead = true;
  w->crash_handled = true;
  ++crashes_;
  Note(fmt::format("crash writer {}: {} ({} requests in flight)", w->id, why, w->inflight));
  w->store->Crash();
  if (w->nbd) w->nbd->Abandon();
  StartClose(w);
}

void Simulator::StartClose(Writer* w) {
  if (!w->vol || w->closing) return;
  w->closing = true;
  Note(fmt::format("close writer {}", w->id));
  Start(w->vol->Close(), [w](Status) { w->closed = true; });
}

void Simulator::ProcessEvents() {
  for (size_t i = 0; i < writers_.size(); ++i) {
    Writer* w = writers_[i].get();
    if (w->dead && !w->crash_handled && !w->opening) CrashWriter(w, w->death);
  }
  if (opening_ && opening_->open_status) OnOpened(opening_);
  if (failed()) return;
  if (!opening_ && (!primary_ || primary_->dead) && phase_ != "done") {
    MaybeDamage();
    StartOpen();
  }
  for (auto& w : writers_) {
    if (w->superseded && !w->dead && !w->closing && w->post_fork_ops >= k_.work.old_writer_ops) {
      StartClose(w.get());
    }
  }
}

void Simulator::Step(uint64_t n) {
  for (uint64_t i = 0; i < n && !failed(); ++i) {
    if (!env_.RunOne()) {
      // Dead writers may legitimately stop everything; live ones never go quiet with
      // requests outstanding (their maintenance loops keep timers).
      uint64_t inflight = 0;
      for (auto& w : writers_) inflight += w->dead ? 0 : w->inflight;
      const bool open_pending = opening_ && !opening_->open_status && !opening_->dead;
      if (inflight > 0 || open_pending) {
        Fail(fmt::format("deadlock: {} requests in flight{}, nothing scheduled", inflight,
                         open_pending ? " and an Open pending" : ""));
      }
      return;
    }
  }
}

void Simulator::WaitFor(const std::function<bool()>& done, const char* what, uint64_t max_ns) {
  const uint64_t deadline = env_.NowNanos() + max_ns;
  while (!failed() && !done()) {
    if (env_.NowNanos() > deadline) {
      return Fail(fmt::format("liveness: {} not done after {:.0f} s of simulated time", what,
                              double(max_ns) / 1e9));
    }
    if (!env_.RunOne()) return Fail(fmt::format("deadlock: waiting for {}, nothing scheduled", what));
  }
}

int Simulator::Run() {
  phase_ = "open";
  StartOpen();
  while (!failed() && (opening_ || !primary_ || primary_->dead)) {
    ProcessEvents();
    Step(64);
  }
  phase_ = "workload";
  uint64_t last_progress_ns = env_.NowNanos(), last_issued = 0;
  while (!failed() && issued_ < k_.ops) {
    ProcessEvents();
    if (failed()) break;
    Writer* p = primary_;
    const bool ready = p && !p->dead && !opening_;
    if (ready && rng_.Below(1000) < k_.work.crash_per_kop) {
      CrashWriter(p, "random crash between scheduler steps");
      continue;
    }
    if (ready && rng_.Below(1000) < k_.work.second_writer_per_kop) {
      bool old_alive = false;
      for (auto& w : writers_) old_alive |= w->superseded && !w->closed && !w->dead;
      if (!old_alive) {
        ++second_writers_;
        Note(fmt::format("second writer opens while writer {} runs", p->id));
        StartOpen();
        continue;
      }
    }
    if (ready && Healthy(p) && issued_ - last_audit_ >= k_.work.audit_every) {
      last_audit_ = issued_;
      Audit();
      continue;
    }
    if (issued_ - last_check_ >= k_.work.check_every && !damage_.active) {
      last_check_ = issued_;
      CheckInvariants("periodic");
    }
    IssueRandomOp();
    if (issued_ != last_issued) {
      last_issued = issued_;
      last_progress_ns = env_.NowNanos();
    } else if (env_.NowNanos() - last_progress_ns > kHour) {
      Fail("liveness: no request could be issued for an hour of simulated time");
    }
    Step(1 + rng_.Below(k_.work.steps_per_op));
  }
  if (!failed()) Liveness();
  if (!failed()) FinalCheck();
  if (!failed()) DeleteVolumesAtEnd();
  phase_ = "done";

  const uint64_t fp = history_.fingerprint();
  uint64_t inconclusive = 0;
  for (auto& t : timelines_) inconclusive += t->inconclusive();
  for (auto& [name, s] : snaps_) inconclusive += s.tl ? s.tl->inconclusive() : 0;
  if (failed()) {
    std::printf("FAILED %s\n", failure_.c_str());
    std::printf("recent history (oldest first):\n");
    for (const auto& line : history_.recent()) std::printf("  %s\n", line.c_str());
    std::printf("reproduce: %s\n", k_.Command().c_str());
  } else {
    std::printf("ok requests=%llu crashes=%llu second_writers=%llu open_failures=%llu "
                "audits=%llu checks=%llu tolerated_errors=%llu sim_time=%.1fs steps=%llu",
                (unsigned long long)issued_, (unsigned long long)crashes_,
                (unsigned long long)second_writers_, (unsigned long long)open_failures_,
                (unsigned long long)audits_, (unsigned long long)checks_,
                (unsigned long long)tolerated_errors_, double(env_.NowNanos()) / 1e9,
                (unsigned long long)env_.steps());
    uint64_t full = 0;  // every incarnation's full compactions
    for (auto& w : writers_) full += w->vol ? w->vol->stats().full_compactions : 0;
    std::printf(" snap_ops=%llu restores=%llu snap_reads=%llu snaps_verified=%llu inconclusive_reads=%llu"
                " full_compactions=%llu damage=%llu damage_refused=%llu damage_opened=%llu"
                " damage_read_errors=%llu late_landed=%llu late_after_writer=%llu"
                " late_taken=%llu clones=%llu clones_verified=%llu",
                (unsigned long long)snap_ops_, (unsigned long long)restores_,
                (unsigned long long)snap_reads_, (unsigned long long)snap_verified_,
                (unsigned long long)inconclusive, (unsigned long long)full,
                (unsigned long long)damages_, (unsigned long long)damage_refused_,
                (unsigned long long)damage_opened_, (unsigned long long)damage_errors_,
                (unsigned long long)late_landed_, (unsigned long long)late_after_writer_,
                (unsigned long long)late_taken_, (unsigned long long)clones_.size(),
                (unsigned long long)clones_verified_);
    cache::DiskCacheStats dc;
    for (auto& c : disk_caches_) {
      const cache::DiskCacheStats s = c->stats();
      dc.hits += s.hits;
      dc.damaged += s.damaged;
      dc.inserts += s.inserts;
    }
    uint64_t bodies = 0;  // store GET bodies damaged
    for (auto& w : writers_) bodies += w->store ? w->store->counts().corrupted : 0;
    std::printf(" damaged_bodies=%llu disk_cache_hits=%llu disk_cache_inserts=%llu"
                " disk_cache_damaged_reads=%llu disk_cache_dropped=%llu\n",
                (unsigned long long)bodies, (unsigned long long)dc.hits,
                (unsigned long long)dc.inserts, (unsigned long long)cache_damages_,
                (unsigned long long)dc.damaged);
  }
  std::printf("fingerprint=%016llx\n", (unsigned long long)fp);
  std::fflush(stdout);
  return failed() ? 1 : 0;
}

}  // namespace portal::dst
