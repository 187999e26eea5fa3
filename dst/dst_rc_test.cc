// RapidCheck stateful properties over the simulator's components: the real Volume on
// a SimEnv, a FaultStore over a MemoryStore, and the dst oracle (Timeline). Commands run
// one at a time (background work still interleaves inside the volume), so a failure
// shrinks to a minimal command sequence. Replay with RC_PARAMS="seed=N".
//
// Commands: writes (aligned or not, FUA), TRIM / WRITE_ZEROES (huge too), reads, FLUSH,
// memtable flush / compaction / GC, time passing, store faults on or off, a crash with
// requests in flight at an arbitrary scheduler step, and a second writer opening while
// the first keeps writing (whose FLUSH must then fail).
#include <catch2/catch.hpp>
#include <rapidcheck.h>
#include <rapidcheck/catch.h>
#include <rapidcheck/state.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <sstream>
#include <optional>

#include "dst/oracle.h"
#include "env/block_on.h"
#include "env/sim_env.h"
#include "objstore/fault_store.h"
#include "objstore/memory_store.h"
#include "testing/borrowed_store.h"
#include "util/log.h"
#include "volume/volume.h"

namespace portal::dst {
namespace {

using volume::Volume;

constexpr uint32_t kBs = 1024;
constexpr uint64_t kBlocks = 96;

volume::VolumeOptions RcOptions() {
  volume::VolumeOptions o;
  o.size_bytes = kBs * kBlocks;
  o.block_size = kBs;
  o.flush_interval_ms = 0;
  o.l0_sst_size_bytes = 8 * kBs;
  o.max_unflushed_bytes = 64 * kBs;
  o.block_cache_size_bytes = 32 * 1024;
  o.blocks_per_chunk = 2;
  o.memtable_flush_segments = 2;
  o.l0_compaction_trigger = 2;
  o.sst_target_bytes = 512;
  o.level1_target_bytes = 1024;
  o.gc_grace_ms = 1000;
  o.gc_interval_ms = 500;
  o.gc_live_ratio = 0.5;
  return o;
}

struct RcModel {};

struct RcSut {
  SimEnv env{SimEnv::Options{.seed = 7, .shuffle_ready = true}};
  objstore::MemoryStore mem;
  Prng rng{1};
  bool faults = false;
  std::unique_ptr<objstore::FaultStore> store;
  std::shared_ptr<Volume> vol;
  Timeline tl{kBs, kBs * kBlocks};
  uint64_t clock = 0;
  uint64_t next_id = 1;
  std::vector<std::pair<std::unique_ptr<objstore::FaultStore>, std::shared_ptr<Volume>>> zombies;

  std::unique_ptr<objstore::FaultStore> NewStore() {
    objstore::FaultOptions fo;
    fo.decide = [this](objstore::OpKind kind, std::string_view) {
      objstore::FaultDecision d;
      const uint64_t roll = rng.Below(100);
      if (!faults) return d;
      d.latency_ns = rng.Below(3) * kNanosPerMilli;
      if (roll < 10) d.action = objstore::FaultDecision::Action::kFail;
      const bool write = kind == objstore::OpKind::kPut || kind == objstore::OpKind::kPutIfAbsent ||
                         kind == objstore::OpKind::kDelete;
      if (roll >= 10 && roll < 20 && write) d.action = objstore::FaultDecision::Action::kLoseAck;
      return d;
    };
    return std::make_unique<objstore::FaultStore>(std::make_unique<testing::BorrowedStore>(mem),
                                                  env, fo);
  }

  std::shared_ptr<Volume> OpenOn(objstore::ObjectStore& s) {
    for (int attempt = 0; attempt < 20; ++attempt) {
      auto v = RunSim(env, OpenVolume(env, s, RcOptions()));
      if (v.ok()) return *v;
      if (!v.status().IsUnavailable()) RC_FAIL("Open failed: " + v.status().ToString());
    }
    RC_FAIL("Open kept failing");
  }

  // Reads every block the oracle knows (plus a few others) and resolves it.
  void Resolve() {
    if (std::getenv("DST_RC_TRACE")) std::fprintf(stderr, "rc: resolve after reopen\n");
    std::vector<uint8_t> data(kBs);
    for (uint64_t b = 0; b < kBlocks; ++b) {
      Status st;
      for (int i = 0; i < 20; ++i) {
        st = RunSim(env, vol->Read(b * kBs, data, nullptr));
        if (!st.IsUnavailable()) break;
      }
      if (!st.ok()) RC_FAIL("read after reopen failed: " + st.ToString());
      if (std::getenv("DST_RC_TRACE") && b < 8) {
        std::fprintf(stderr, "rc:   block %llu reads %02x%02x%02x%02x...\n", (unsigned long long)b,
                     data[0], data[500], data[900], data[1023]);
      }
      std::string err = tl.Resolve(b, data, nullptr, nullptr);
      if (!err.empty()) RC_FAIL("after reopen: " + err);
    }
  }

  void Crash() {
    store->Crash();
    Start(vol->Close(), [](Status) {});
    zombies.emplace_back(std::move(store), std::move(vol));
    store = NewStore();
    vol = OpenOn(*store);
    Resolve();
  }

  ~RcSut() {
    if (vol) (void)RunSim(env, vol->Close());
    env.RunUntilIdle(1'000'000);
    for (auto& [s, v] : zombies) {  // a zombie that never closed is leaked, not destroyed
      (void)s.release();
      new std::shared_ptr<Volume>(std::move(v));
    }
  }
};

using Cmd = rc::state::Command<RcModel, RcSut>;

// DST_RC_TRACE=1 prints every command as it runs (the last sequence printed before a
// failure report is the shrunk counterexample's run).
void Trace(const Cmd& c) {
  static const bool on = std::getenv("DST_RC_TRACE") != nullptr;
  if (!on) return;
  std::ostringstream os;
  c.show(os);
  std::fprintf(stderr, "rc: %s\n", os.str().c_str());
}

Status Run(RcSut& s, Task<Status> t) { return RunSim(s.env, std::move(t)); }

struct WriteCmd : Cmd {
  uint64_t offset = *rc::gen::inRange<uint64_t>(0, kBs * kBlocks - 1);
  uint64_t length = *rc::gen::inRange<uint64_t>(1, 6 * kBs);
  bool aligned = *rc::gen::arbitrary<bool>();
  bool fua = *rc::gen::weightedElement<bool>({{1, true}, {5, false}});
  uint64_t seed = *rc::gen::inRange<uint64_t>(1, 1000);
  void run(const RcModel&, RcSut& s) const override {
    Trace(*this);
    uint64_t off = aligned ? offset / kBs * kBs : offset;
    uint64_t len = std::min(aligned ? (length + kBs - 1) / kBs * kBs : length, kBs * kBlocks - off);
    std::vector<uint8_t> data(len);
    FillPattern(seed, off, data.data(), len);
    Mutation m{s.next_id++, off, len, seed, fua, ++s.clock};
    s.tl.Issue(m);
    Status st = Run(s, s.vol->Write(off, data, {.fua = fua}));
    if (!st.ok() && !st.IsUnavailable()) RC_FAIL("write failed: " + st.ToString());
    s.tl.Complete(m.id, st.ok(), ++s.clock);
  }
  void show(std::ostream& os) const override {
    os << "Write(" << offset << ", " << length << (aligned ? ", aligned" : "") << (fua ? ", FUA" : "")
       << ", seed=" << seed << ")";
  }
};

struct ZeroCmd : Cmd {
  uint64_t offset = *rc::gen::inRange<uint64_t>(0, kBs * kBlocks - 1);
  uint64_t length = *rc::gen::oneOf(rc::gen::inRange<uint64_t>(1, 4 * kBs),
                                    rc::gen::just<uint64_t>(kBs * kBlocks));
  bool trim = *rc::gen::arbitrary<bool>();
  bool no_hole = *rc::gen::arbitrary<bool>();
  void run(const RcModel&, RcSut& s) const override {
    Trace(*this);
    const uint64_t len = std::min(length, kBs * kBlocks - offset);
    Mutation m{s.next_id++, offset, len, 0, false, ++s.clock};
    s.tl.Issue(m);
    Status st = trim ? Run(s, s.vol->Trim(offset, len, {}))
                     : Run(s, s.vol->WriteZeroes(offset, len, {.no_hole = no_hole}));
    if (!st.ok() && !st.IsUnavailable()) RC_FAIL("zeroing failed: " + st.ToString());
    s.tl.Complete(m.id, st.ok(), ++s.clock);
  }
  void show(std::ostream& os) const override {
    os << (trim ? "Trim(" : "WriteZeroes(") << offset << ", " << length << (no_hole ? ", NO_HOLE)" : ")");
  }
};

struct ReadCmd : Cmd {
  uint64_t offset = *rc::gen::inRange<uint64_t>(0, kBs * kBlocks - 1);
  uint64_t length = *rc::gen::inRange<uint64_t>(1, 8 * kBs);
  void run(const RcModel&, RcSut& s) const override {
    Trace(*this);
    const uint64_t len = std::min(length, kBs * kBlocks - offset);
    std::vector<uint8_t> out(len);
    Status st = Run(s, s.vol->Read(offset, out, nullptr));
    if (!st.ok() && !st.IsUnavailable()) RC_FAIL("read failed: " + st.ToString());
    if (!st.ok()) return;
    std::string err = s.tl.CheckLive(offset, out);
    if (!err.empty()) RC_FAIL(err);
  }
  void show(std::ostream& os) const override { os << "Read(" << offset << ", " << length << ")"; }
};

struct FlushCmd : Cmd {
  void run(const RcModel&, RcSut& s) const override {
    Trace(*this);
    const uint64_t t = ++s.clock;
    Status st = Run(s, s.vol->Flush());
    if (!st.ok()) RC_FAIL("FLUSH failed: " + st.ToString());
    s.tl.FlushSucceeded(t);
  }
  void show(std::ostream& os) const override { os << "Flush()"; }
};

struct MaintainCmd : Cmd {
  int kind = *rc::gen::inRange(0, 4);
  void run(const RcModel&, RcSut& s) const override {
    Trace(*this);
    Status st;
    if (kind == 0) st = Run(s, s.vol->FlushMemtable());
    if (kind == 1) st = Run(s, s.vol->CompactAll());
    if (kind == 2) st = Run(s, s.vol->RunGc());
    if (kind == 3) s.env.AdvanceBy(2 * RcOptions().gc_grace_ms * kNanosPerMilli);
    if (!st.ok() && !st.IsUnavailable()) RC_FAIL("maintenance failed: " + st.ToString());
  }
  void show(std::ostream& os) const override {
    static const char* kNames[] = {"FlushMemtable()", "CompactAll()", "RunGc()", "AdvanceTime()"};
    os << kNames[kind];
  }
};

struct FaultsCmd : Cmd {
  bool on = *rc::gen::arbitrary<bool>();
  void run(const RcModel&, RcSut& s) const override {
    Trace(*this); s.faults = on; }
  void show(std::ostream& os) const override { os << "Faults(" << (on ? "on" : "off") << ")"; }
};

// A crash with a write and a FLUSH in flight, after `steps` scheduler steps.
struct CrashCmd : Cmd {
  uint64_t offset = *rc::gen::inRange<uint64_t>(0, kBlocks) * kBs;
  uint64_t seed = *rc::gen::inRange<uint64_t>(1, 1000);
  int steps = *rc::gen::inRange(0, 40);
  void run(const RcModel&, RcSut& s) const override {
    Trace(*this);
    const uint64_t len = std::min<uint64_t>(2 * kBs, kBs * kBlocks - offset);
    auto data = std::make_shared<std::vector<uint8_t>>(len);
    if (len > 0) {
      FillPattern(seed, offset, data->data(), len);
      s.tl.Issue(Mutation{s.next_id++, offset, len, seed, false, ++s.clock});
      Start(s.vol->Write(offset, *data, {}), [data](Status) {});
    }
    Start(s.vol->Flush(), [](Status) {});
    for (int i = 0; i < steps && s.env.RunOne(); ++i) {
    }
    s.Crash();  // the write stays in flight in the oracle: optional after the crash
  }
  void show(std::ostream& os) const override {
    os << "CrashDuring(Write(" << offset << ", seed=" << seed << ") + Flush, after " << steps
       << " steps)";
  }
};

// A second writer opens; the first writes and FLUSHes: the FLUSH must not succeed.
struct SecondWriterCmd : Cmd {
  uint64_t offset = *rc::gen::inRange<uint64_t>(0, kBlocks) * kBs;
  void run(const RcModel&, RcSut& s) const override {
    Trace(*this);
    auto store2 = s.NewStore();
    auto v2 = s.OpenOn(*store2);
    if (offset < kBs * kBlocks) {
      std::vector<uint8_t> data(kBs, 0x5a);
      (void)Run(s, s.vol->Write(offset, data, {}));  // into the old writer's buffer only
      RC_ASSERT(!Run(s, s.vol->Flush()).ok());
    }
    (void)Run(s, s.vol->Close());
    s.zombies.emplace_back(std::move(s.store), std::move(s.vol));
    s.store = std::move(store2);
    s.vol = std::move(v2);
    s.Resolve();
  }
  void show(std::ostream& os) const override { os << "SecondWriter(old writes " << offset << ")"; }
};

TEST_CASE("stateful volume model with crashes, faults and a second writer", "[dst]") {
  // Failures explain themselves; the volume's log is noise here unless tracing.
  log::Init(std::getenv("DST_RC_TRACE") ? "debug" : "off");
  rc::prop("command sequences keep the durability contract", [] {
    if (std::getenv("DST_RC_TRACE")) std::fprintf(stderr, "rc: --- new sequence\n");
    RcModel model;
    RcSut sut;
    sut.rng = Prng(*rc::gen::arbitrary<uint64_t>());
    sut.store = sut.NewStore();
    sut.vol = sut.OpenOn(*sut.store);
    rc::state::check(model, sut,
                     rc::state::gen::execOneOfWithArgs<WriteCmd, WriteCmd, ZeroCmd, ReadCmd,
                                                       ReadCmd, FlushCmd, MaintainCmd,
                                                       FaultsCmd, CrashCmd, SecondWriterCmd>());
  });
}

}  // namespace
}  // namespace portal::dst
