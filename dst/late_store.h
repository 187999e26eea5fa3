// LateLandingStore: a segment PUT that lands late. The caller hears a timeout at once
// (Unavailable: it may retry, or crash, or be superseded), and the request, still on its
// way, reaches the shared store after a random delay: after its writer's retry, after
// its writer crashed, or after the next writer opened (DESIGN.md single writer, step 5).
// It lands with PutIfAbsent semantics (an id already taken stays as it is).
//
// One per incarnation, between its FaultStore and the shared MemoryStore. The landing
// itself references only `shared` and `env` (which outlive every incarnation), never
// this object, so a writer's crash and teardown do not cancel it. Decisions come from
// its own seeded stream (one draw pair per segment PUT), so they do not shift the
// FaultPlan's.
#pragma once

#include <cstdint>
#include <functional>

#include "env/async.h"
#include "env/sim_env.h"
#include "testing/borrowed_store.h"

namespace portal::dst {

class LateLandingStore final : public testing::BorrowedStore {
 public:
  // `enabled` is asked per call (faults off in the liveness phase); `landed(key)` runs
  // when a late PUT lands (for the history).
  LateLandingStore(objstore::ObjectStore& shared, Env& env, uint64_t seed, uint32_t ppm,
                   uint64_t max_delay_ns, std::function<bool()> enabled,
                   std::function<void(const std::string&, bool)> landed);

  Task<Status> PutIfAbsent(std::string key, std::string data) override;
  Task<Status> PutIfAbsentRope(std::string key, objstore::Rope data) override;

 private:
  // True when this PUT is to land late (drawn); then it is handed to Land.
  bool Late(std::string_view key);
  void Land(std::string key, std::string data);

  objstore::ObjectStore& shared_;
  Env& env_;
  Prng rng_;
  uint32_t ppm_;
  uint64_t max_delay_ns_;
  uint64_t last_delay_ns_ = 1;  // drawn by Late for the PUT it picked
  std::function<bool()> enabled_;
  std::function<void(const std::string&, bool)> landed_;
};

}  // namespace portal::dst
