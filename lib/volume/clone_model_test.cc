// Model-based: random writes, trims, snapshots, clones (of clones), snapshot deletes,
// volume deletes, aggressive GC and reopens over several volumes, each against a byte
// array; at the end every volume and snapshot reads its model, and deleting every
// volume leaves every store empty (nothing leaked, nothing freed early).
#include <fmt/format.h>
#include <rapidcheck.h>
#include <rapidcheck/catch.h>

#include <catch2/catch.hpp>
#include <map>
#include <set>

#include "env/block_on.h"
#include "env/sim_env.h"
#include "volume/clone.h"
#include "volume/clone_test_util.h"
#include "volume/lsm_volume.h"

namespace portal::volume {
namespace {

using Bytes = std::vector<uint8_t>;

constexpr uint64_t kSize = 128 * 1024;

struct ModelVolume {
  std::shared_ptr<LsmVolume> vol;
  Bytes bytes = Bytes(kSize, 0);
  std::map<std::string, Bytes> snaps;
  std::map<std::string, std::set<std::string>> clones;  // snapshot -> live clones
  std::string parent, parent_snap;                      // a clone's base
};

Bytes ReadAll(SimEnv& env, device::BlockDevice& dev) {
  Bytes got(kSize);
  RC_ASSERT(RunSim(env, dev.Read(0, got, nullptr)).ok());
  return got;
}

TEST_CASE("random clones, snapshots, deletes, GC and reopens over several volumes match models",
          "[volume][clone][property]") {
  rc::prop("clone model", [] {
    const uint64_t seed = *rc::gen::arbitrary<uint64_t>();
    SimEnv env(SimEnv::Options{.seed = seed, .shuffle_ready = true});
    CloneWorld w(kSize);
    w.options().gc_live_ratio = 0.9;
    // (Not immediate_segment_free: memory:// frees replay-log segments too, since its
    // volumes are never reopened, and this test reopens.)
    std::map<std::string, ModelVolume> live;
    live["v0"].vol = w.Open(env, "v0");
    int next_name = 1;
    auto pick = [&](auto& m) {
      return std::next(m.begin(), *rc::gen::inRange<size_t>(0, m.size()));
    };
    const int n = *rc::gen::inRange(5, 45);
    for (int step = 0; step < n && !live.empty(); ++step) {
      auto it = pick(live);
      ModelVolume& mv = it->second;
      const int op = *rc::gen::inRange(0, 11);
      if (op <= 2) {
        const uint64_t off = *rc::gen::inRange<uint64_t>(0, kSize - 1);
        const uint64_t len =
            *rc::gen::inRange<uint64_t>(1, std::min<uint64_t>(kSize - off, 20000) + 1);
        Bytes d(len);
        const uint8_t tag = *rc::gen::arbitrary<uint8_t>();
        for (uint64_t i = 0; i < len; ++i) d[i] = static_cast<uint8_t>(tag + i * 7 + 1);
        RC_ASSERT(RunSim(env, mv.vol->Write(off, d, {})).ok());
        std::copy(d.begin(), d.end(), mv.bytes.begin() + off);
      } else if (op == 3) {
        const uint64_t off = *rc::gen::inRange<uint64_t>(0, kSize - 1);
        const uint64_t len = *rc::gen::inRange<uint64_t>(1, kSize - off + 1);
        RC_ASSERT(RunSim(env, mv.vol->Trim(off, len, {})).ok());
        std::fill(mv.bytes.begin() + off, mv.bytes.begin() + off + len, 0);
      } else if (op == 4) {
        const std::string name = fmt::format("s{}", step);
        RC_ASSERT(RunSim(env, mv.vol->CreateSnapshot(name)).ok());
        mv.snaps[name] = mv.bytes;
      } else if (op <= 6 && !mv.snaps.empty()) {  // clone
        auto s = pick(mv.snaps);
        const std::string child = fmt::format("v{}", next_name++);
        RC_ASSERT(
            RunSim(env, CreateClone(env, w.resolver(), it->first, s->first, w.Store(child), child))
                .ok());
        mv.clones[s->first].insert(child);
        ModelVolume c;
        c.bytes = s->second;
        c.parent = it->first;
        c.parent_snap = s->first;
        c.vol = w.Open(env, child);
        live[child] = std::move(c);
      } else if (op == 7 && !mv.snaps.empty()) {  // snapshot delete: refused while cloned
        auto s = pick(mv.snaps);
        Status st = RunSim(env, mv.vol->DeleteSnapshot(s->first));
        if (mv.clones[s->first].empty()) {
          RC_ASSERT(st.ok());
          mv.snaps.erase(s);
        } else {
          RC_ASSERT(st.code() == Status::Code::kBusy);
        }
      } else if (op == 8) {  // compact and collect hard
        RC_ASSERT(RunSim(env, mv.vol->Flush()).ok());
        RC_ASSERT(RunSim(env, mv.vol->FlushMemtable()).ok());
        RC_ASSERT(RunSim(env, mv.vol->CompactAll()).ok());
        env.AdvanceBy(2 * w.options().gc_grace_ms * kNanosPerMilli);
        RC_ASSERT(RunSim(env, mv.vol->RunGc()).ok());
        RC_ASSERT(RunSim(env, mv.vol->RunGc()).ok());
      } else if (op == 9) {  // clean reopen
        w.Close(env, mv.vol);
        mv.vol = w.Open(env, it->first);
      } else if (op == 10) {  // delete the volume; its clones live on
        w.Close(env, mv.vol);
        RC_ASSERT(RunSim(env, DeleteVolume(env, w.resolver(), w.Store(it->first))).ok());
        if (!mv.parent.empty() && live.count(mv.parent)) {
          live[mv.parent].clones[mv.parent_snap].erase(it->first);
        }
        live.erase(it);
      }
    }
    for (auto& [name, mv] : live) {
      RC_ASSERT(ReadAll(env, *mv.vol) == mv.bytes);
      for (const auto& [sname, bytes] : mv.snaps) {
        auto dev = mv.vol->OpenSnapshot(sname);
        RC_ASSERT(dev.ok());
        RC_ASSERT(ReadAll(env, **dev) == bytes);
      }
    }
    // Every clone reads its model after every parent collected once more from scratch.
    for (auto& [name, mv] : live) {
      w.Close(env, mv.vol);
      mv.vol = w.Open(env, name);
      env.AdvanceBy(2 * w.options().gc_grace_ms * kNanosPerMilli);
      RC_ASSERT(RunSim(env, mv.vol->RunGc()).ok());
    }
    for (auto& [name, mv] : live) RC_ASSERT(ReadAll(env, *mv.vol) == mv.bytes);
    // Delete all, in random order: every store ends empty.
    std::vector<std::string> order;
    for (auto& [name, mv] : live) {
      w.Close(env, mv.vol);
      order.push_back(name);
    }
    for (size_t i = order.size(); i > 1; --i) {
      std::swap(order[i - 1], order[*rc::gen::inRange<size_t>(0, i)]);
    }
    for (const auto& name : order) {
      RC_ASSERT(RunSim(env, DeleteVolume(env, w.resolver(), w.Store(name))).ok());
    }
    for (int i = 0; i < next_name; ++i) {
      RC_ASSERT(w.Store(fmt::format("v{}", i)).total_bytes() == 0u);
    }
  });
}

}  // namespace
}  // namespace portal::volume
