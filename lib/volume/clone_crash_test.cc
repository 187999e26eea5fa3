// Crash points of the clone protocol (docs/volume.md "Clones"): each operation runs with
// its k-th store write (PUT, PUT_IF_ABSENT, DELETE, in any volume's store) crashing,
// before it takes effect or after (acknowledgement lost), for every k it reaches. Then a
// new process checks the safety rule (a reference in a parent means its snapshot and
// everything the snapshot pins is still there), finishes what the operation left, and
// checks that the data is right and that nothing is leaked.
#include <fmt/format.h>

#include <catch2/catch.hpp>
#include <functional>
#include <map>

#include "env/block_on.h"
#include "env/sim_env.h"
#include "objstore/fault_store.h"
#include "objstore/memory_store.h"
#include "testing/borrowed_store.h"
#include "testing/read_device.h"
#include "volume/clone.h"
#include "volume/clone_test_util.h"
#include "volume/lsm_volume.h"
#include "volume/segment_format.h"
#include "volume/snapshot.h"

namespace portal::volume {
namespace {

using objstore::FaultDecision;
using objstore::OpKind;

constexpr uint64_t kSize = 256 * 1024;

std::vector<uint8_t> Pattern(uint8_t tag, size_t n) {
  std::vector<uint8_t> d(n);
  for (size_t i = 0; i < n; ++i) d[i] = static_cast<uint8_t>(tag * 29 + i % 241 + 1);
  return d;
}

struct CrashPlan {
  uint64_t k = 0;  // 0: not armed
  bool after = false;
  uint64_t seen = 0;
  bool crashed = false;
  FaultDecision Decide(OpKind kind) {
    FaultDecision d;
    if (crashed) {
      d.action = FaultDecision::Action::kFail;
      d.error = Status::Shutdown("crashed");
      return d;
    }
    const bool mutating =
        kind == OpKind::kPut || kind == OpKind::kPutIfAbsent || kind == OpKind::kDelete;
    if (mutating && ++seen == k) {
      crashed = true;
      d.action = after ? FaultDecision::Action::kLoseAck : FaultDecision::Action::kFail;
      d.error = Status::Shutdown("crashed");
    }
    return d;
  }
};

// The process that crashes: every volume's store behind one crash plan.
struct Faulty {
  Faulty(SimEnv& env, CloneWorld& w, std::shared_ptr<CrashPlan> plan) : plan(plan) {
    for (const char* name : {"base", "c", "d"}) {
      objstore::FaultOptions fo;
      fo.decide = [plan](OpKind kind, std::string_view) { return plan->Decide(kind); };
      stores[name] = std::make_unique<objstore::FaultStore>(
          std::make_unique<portal::testing::BorrowedStore>(w.Store(name)), env, fo);
    }
    options = w.options();
    options.resolve_volume = resolver();
  }
  VolumeResolver resolver() {
    return [this](const std::string& name) -> Result<objstore::ObjectStore*> {
      auto it = stores.find(name);
      if (it == stores.end()) return Status::NotFound(name);
      return static_cast<objstore::ObjectStore*>(it->second.get());
    };
  }
  void Arm(uint64_t k, bool after) {
    plan->k = plan->seen + k;
    plan->after = after;
  }
  std::shared_ptr<CrashPlan> plan;
  std::map<std::string, std::unique_ptr<objstore::FaultStore>> stores;
  VolumeOptions options;
};

// The rule that makes GC across clones safe: wherever a parent holds a reference to a
// snapshot, the snapshot object, its SSTs and its segments all exist.
void CheckReferencesHold(SimEnv& env, CloneWorld& w, const std::string& parent) {
  objstore::MemoryStore& store = w.Store(parent);
  auto listed = RunSim(env, store.List("clones/"));
  REQUIRE(listed.ok());
  for (const auto& o : *listed) {
    const auto slash = o.key.find('/', 7);
    if (slash == std::string::npos) continue;
    const std::string id = o.key.substr(7, slash - 7);
    INFO("reference " << o.key);
    auto bytes = RunSim(env, store.Get(SnapshotKey(id)));
    if (!bytes.ok()) {
      // Only a creator that never completed may leave a reference to a deleted snapshot:
      // then its clone has no manifest and will never read.
      auto manifests = RunSim(env, w.Store(o.key.substr(slash + 1)).List("manifest/"));
      REQUIRE(manifests.ok());
      CHECK(manifests->empty());
      continue;
    }
    auto snap = DecodeSnapshotObject(*bytes, SnapshotKey(id));
    REQUIRE(snap.ok());
    for (const auto& level : snap->levels) {
      for (const auto& r : level) CHECK(RunSim(env, store.Head(r.key)).ok());
    }
    for (uint64_t seg : snap->segments) CHECK(RunSim(env, store.Head(SegmentKey(seg))).ok());
  }
}

struct Scenario {
  // Run cleanly first, in the world's plain stores.
  std::function<void(SimEnv&, CloneWorld&)> setup;
  // The operation, in the crashing process: Arm(k) before the first write to count.
  std::function<Task<Status>(SimEnv&, Faulty&, uint64_t k, bool after)> op;
  // After the crash, in a new process.
  std::function<void(SimEnv&, CloneWorld&)> verify;
};

void ForEachCrashPoint(const Scenario& s) {
  int crashes = 0;
  for (bool after : {false, true}) {
    for (uint64_t k = 1;; ++k) {
      CloneWorld w(kSize);
      {
        SimEnv env;
        s.setup(env, w);
      }
      bool reached;
      {
        SimEnv env;
        Faulty f(env, w, std::make_shared<CrashPlan>());
        (void)RunSim(env, s.op(env, f, k, after));
        reached = f.plan->crashed;
        env.DropAll();
      }
      if (!reached) break;
      ++crashes;
      INFO("crash " << (after ? "after" : "before") << " write " << k);
      SimEnv env;
      CheckReferencesHold(env, w, "base");
      CheckReferencesHold(env, w, "c");
      s.verify(env, w);
      CheckReferencesHold(env, w, "base");
    }
  }
  CHECK(crashes > 0);
}

// A parent "base" with snapshot "gold" (and data after it).
void SetupParent(SimEnv& env, CloneWorld& w) {
  auto v = w.Open(env, "base");
  REQUIRE(RunSim(env, v->Write(0, Pattern(1, kSize), {})).ok());
  REQUIRE(RunSim(env, v->CreateSnapshot("gold")).ok());
  REQUIRE(RunSim(env, v->Write(0, Pattern(2, kSize / 2), {})).ok());
  w.Close(env, v);
}

// The parent deletes what it can (aggressive GC) and the clone must still read gold.
void CollectParent(SimEnv& env, CloneWorld& w) {
  auto v = w.Open(env, "base");
  REQUIRE(RunSim(env, v->Write(0, Pattern(3, kSize), {})).ok());
  REQUIRE(RunSim(env, v->Flush()).ok());
  REQUIRE(RunSim(env, v->FlushMemtable()).ok());
  REQUIRE(RunSim(env, v->CompactAll()).ok());
  env.AdvanceBy(2 * w.options().gc_grace_ms * kNanosPerMilli);
  REQUIRE(RunSim(env, v->RunGc()).ok());
  REQUIRE(RunSim(env, v->RunGc()).ok());
  w.Close(env, v);
}

bool HasRecord(SimEnv& env, CloneWorld& w, const std::string& name) {
  return RunSim(env, w.Store(name).Head(kCloneRecordKey)).ok();
}

TEST_CASE("crash points of a clone's creation", "[volume][clone][crash]") {
  ForEachCrashPoint(Scenario{
      SetupParent,
      [](SimEnv& env, Faulty& f, uint64_t k, bool after) -> Task<Status> {
        f.Arm(k, after);
        co_return co_await CreateClone(env, f.resolver(), "base", "gold", *f.stores["c"], "c");
      },
      [](SimEnv& env, CloneWorld& w) {
        if (HasRecord(env, w, "c")) {
          // The first open completes the creation, and the snapshot then stays.
          auto c = w.Open(env, "c");
          CollectParent(env, w);
          CHECK(testing::ReadDevice(env, *c, 0, kSize) == Pattern(1, kSize));
          auto p = w.Open(env, "base");
          CHECK(RunSim(env, p->DeleteSnapshot("gold")).code() == Status::Code::kBusy);
          w.Close(env, p);
          w.Close(env, c);
          REQUIRE(RunSim(env, DeleteVolume(env, w.resolver(), w.Store("c"))).ok());
        }
        CHECK(w.Store("c").total_bytes() == 0);
        auto p = w.Open(env, "base");  // no reference left behind
        CHECK(RunSim(env, p->DeleteSnapshot("gold")).ok());
        w.Close(env, p);
      }});
}

TEST_CASE("crash points of a snapshot delete, with and without a clone", "[volume][clone][crash]") {
  for (bool with_clone : {false, true}) {
    INFO("with a clone: " << with_clone);
    ForEachCrashPoint(Scenario{
        [with_clone](SimEnv& env, CloneWorld& w) {
          SetupParent(env, w);
          if (with_clone) {
            REQUIRE(RunSim(env, CreateClone(env, w.resolver(), "base", "gold", w.Store("c"), "c"))
                        .ok());
          }
        },
        [](SimEnv& env, Faulty& f, uint64_t k, bool after) -> Task<Status> {
          auto v = co_await LsmVolume::Open(env, *f.stores["base"], f.options);
          if (!v.ok()) co_return v.status();
          f.Arm(k, after);
          Status st = co_await (*v)->DeleteSnapshot("gold");
          (void)co_await (*v)->Close(env.NowNanos());
          co_return st;
        },
        [with_clone](SimEnv& env, CloneWorld& w) {
          auto p = w.Open(env, "base");  // settles a crashed delete's mark
          const bool listed = p->ListSnapshots().size() == 1;
          if (with_clone) CHECK(listed);
          w.Close(env, p);
          // A clone now either is refused (deleted) or reads the snapshot for good.
          Status st =
              RunSim(env, CreateClone(env, w.resolver(), "base", "gold", w.Store("d"), "d"));
          CHECK(st.ok() == listed);
          if (st.ok()) {
            auto d = w.Open(env, "d");
            CollectParent(env, w);
            CHECK(testing::ReadDevice(env, *d, 0, kSize) == Pattern(1, kSize));
            w.Close(env, d);
          } else {
            CHECK(st.IsNotFound());
            CHECK(w.Store("d").total_bytes() == 0);
          }
        }});
  }
}

TEST_CASE("crash points of deleting a parent with a clone, then the clone",
          "[volume][clone][crash]") {
  for (bool delete_clone : {false, true}) {
    INFO("crashing the clone's delete: " << delete_clone);
    ForEachCrashPoint(Scenario{
        [delete_clone](SimEnv& env, CloneWorld& w) {
          SetupParent(env, w);
          REQUIRE(
              RunSim(env, CreateClone(env, w.resolver(), "base", "gold", w.Store("c"), "c")).ok());
          auto c = w.Open(env, "c");
          REQUIRE(RunSim(env, c->Write(8192, Pattern(5, 8192), {})).ok());
          w.Close(env, c);
          if (delete_clone) {
            REQUIRE(RunSim(env, DeleteVolume(env, w.resolver(), w.Store("base"))).ok());
          }
        },
        [delete_clone](SimEnv& env, Faulty& f, uint64_t k, bool after) -> Task<Status> {
          f.Arm(k, after);
          co_return co_await DeleteVolume(env, f.resolver(),
                                          *f.stores[delete_clone ? "c" : "base"]);
        },
        [delete_clone](SimEnv& env, CloneWorld& w) {
          if (!delete_clone) {
            // The parent is deleted or will be; the clone reads all the same.
            auto c = w.Open(env, "c");
            auto want = Pattern(1, kSize);
            auto five = Pattern(5, 8192);
            std::copy(five.begin(), five.end(), want.begin() + 8192);
            CHECK(testing::ReadDevice(env, *c, 0, kSize) == want);
            w.Close(env, c);
            REQUIRE(RunSim(env, DeleteVolume(env, w.resolver(), w.Store("base"))).ok());
            c = w.Open(env, "c");
            CHECK(testing::ReadDevice(env, *c, 0, kSize) == want);
            w.Close(env, c);
          }
          REQUIRE(RunSim(env, DeleteVolume(env, w.resolver(), w.Store("c"))).ok());
          CHECK(w.Store("c").total_bytes() == 0);
          CHECK(w.Store("base").total_bytes() == 0);
        }});
  }
}

}  // namespace
}  // namespace portal::volume
