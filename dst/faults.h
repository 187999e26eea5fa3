// FaultPlan: the simulator's object-store faults, handed to each FaultStore as its
// `decide` hook. One plan serves every incarnation (process lifetime) of the volume;
// each incarnation's hook draws from its own seeded stream, so the faults one writer
// sees do not depend on how many calls another made.
//
// Fault classes (see dst/README.md):
//   errors      kFail with a retryable 5xx / SlowDown / timeout, plus error bursts
//   latency     small delays and rare stragglers: concurrent requests land reordered
//   lost acks   kLoseAck on writes: the object changed, the caller hears Unavailable
//   bodies      GET bodies with a flipped bit, torn (zeros from some byte) or short,
//               drawn from a stream of their own (older seeds keep their other faults)
//   crashes     a trigger armed on the n-th call of one kind (segment PUT, SST PUT,
//               manifest PUT, GC DELETE, footer GET, LIST, manifest HEAD), before the
//               call reaches the store or after it took effect; the incarnation dies at
//               that instant (the hook calls back, and every later call fails)
//
// Thread-safety: as FaultStore's hook, called under the store's mutex; never calls into
// a store.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>

#include "dst/knobs.h"
#include "env/env.h"
#include "env/sim_env.h"
#include "objstore/fault_store.h"

namespace portal::dst {

struct CrashTrigger {
  objstore::OpKind kind = objstore::OpKind::kPutIfAbsent;
  std::string prefix;  // key prefix ("" = any)
  uint32_t nth = 1;    // fire on this matching call
  bool after = false;  // let the call take effect first (the reply is lost)
  std::string Describe() const;
};

class FaultPlan {
 public:
  FaultPlan(Env& env, const FaultKnobs& knobs, uint64_t seed);

  // The hook for incarnation `id`. `on_crash(why)` runs inside the hook when a trigger
  // fires (mark the writer dead; do not touch the store there).
  std::function<objstore::FaultDecision(objstore::OpKind, std::string_view)> HookFor(
      int id, std::function<void(const std::string&)> on_crash);
  // Arms a crash trigger for incarnation `id` (drawn from `rng`); returns its description.
  std::string ArmRandomTrigger(int id, Prng& rng);
  // Faults on or off for everyone (off: the liveness phase).
  void set_enabled(bool on) { enabled_ = on; }
  bool enabled() const { return enabled_; }
  // Crash triggers of `id` held back (verification reads after an open).
  void set_triggers_suspended(int id, bool suspended);

  // Arms a crash on the next store writes of a snapshot operation of incarnation `id`
  // (create: the snap/ object, its memtable flush's SST or manifest, its own manifest;
  // restore: its manifest; delete: its manifest or the object's DELETE), unless a
  // trigger is already armed. Returns its description, or "" if none was armed.
  enum class SnapOp { kCreate, kRestore, kDelete };
  std::string ArmSnapshotTrigger(int id, SnapOp op, Prng& rng);

 private:
  struct Incarnation {
    Prng rng{1};
    Prng body_rng{1};
    std::function<void(const std::string&)> on_crash;
    bool has_trigger = false;
    CrashTrigger trigger;
    uint32_t matches = 0;
    bool suspended = false;
    bool crashed = false;
  };
  objstore::FaultDecision Decide(Incarnation& inc, objstore::OpKind kind, std::string_view key);

  Env& env_;
  FaultKnobs k_;
  uint64_t seed_;
  bool enabled_ = true;
  std::map<int, Incarnation> incs_;
};

}  // namespace portal::dst
