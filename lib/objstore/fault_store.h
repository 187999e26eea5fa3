// FaultStore: wraps a store and does to its callers what real object stores do: transient
// errors (5xx, SlowDown, timeouts), latency, lost acknowledgements (the write happened,
// the caller hears Unavailable), damaged bodies (a GET returns the object with one byte
// flipped, as behind a faulty proxy or NIC), and a crash (every call fails from now on).
//
// Each call gets one FaultDecision, drawn before the call:
// - from `FaultOptions::decide` when set (the deterministic simulator's hook: it sees the
//   kind of call and its key or list prefix, and decides; it is called under the store's
//   mutex, so keep it short and never call back into the store);
// - otherwise from the probabilities, with portal::Prng seeded by `seed`. Every call draws
//   exactly three numbers, so one seed and one order of calls always give the same faults.
// Latency is waited with SleepFor on the Env (simulated time under SimEnv).
//
// After Crash(), calls fail with Shutdown before reaching the inner store; calls already
// inside the inner store finish there but report Shutdown too (their effect may or may not
// be visible, as after a real crash). Crash() cannot be undone: wrap the inner store in a
// new FaultStore to "restart".
//
// Owns the inner store. Thread-safe.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>

#include "env/env.h"
#include "env/sim_env.h"
#include "objstore/object_store.h"

namespace portal::objstore {

struct FaultDecision {
  enum class Action : uint8_t {
    kPass,         // call the inner store
    kFail,         // return `error` without calling the inner store (request never arrived)
    kLoseAck,      // call the inner store, then return `error` instead of its result
    kCorruptBody,  // GET only: call the inner store, then flip one byte of the body
    // GET only, as a faulty disk, NIC or proxy does, or a connection cut mid-body that
    // the client did not notice (the simulator's body faults):
    kFlipBit,    // one bit flipped, at bit `corrupt_from_end` (modulo the body's bits)
    kTornBody,   // zeros from byte `corrupt_from_end` (modulo the size) to the end
    kShortBody,  // the body cut to `corrupt_from_end` (modulo the size) bytes
  };
  Action action = Action::kPass;
  uint64_t latency_ns = 0;  // waited before the call
  Status error = Status::Unavailable("injected fault");
  // kCorruptBody: the byte inverted, counted back from the body's last byte (modulo the
  // body's size; 0, the last byte, lies in every segment's and map SST's checked trailer).
  uint64_t corrupt_from_end = 0;
};

struct FaultOptions {
  uint64_t seed = 1;
  double error_probability = 0;     // kFail with a random 5xx/SlowDown/timeout Unavailable
  double lost_ack_probability = 0;  // kLoseAck; Put, PutIfAbsent and Delete only
  double latency_probability = 0;   // latency uniform in [min_latency_ns, max_latency_ns]
  uint64_t min_latency_ns = 0;
  uint64_t max_latency_ns = 0;
  // The only source of damaged bodies (the probabilities never damage bodies).
  std::function<FaultDecision(OpKind kind, std::string_view key)> decide;
};

class FaultStore final : public ObjectStore {
 public:
  FaultStore(std::unique_ptr<ObjectStore> inner, Env& env, FaultOptions options);

  void Crash();
  bool crashed() const { return crashed_.load(std::memory_order_acquire); }

  struct Counts {
    uint64_t failed = 0;     // kFail decisions
    uint64_t lost_acks = 0;  // kLoseAck decisions
    uint64_t delayed = 0;    // decisions with latency
    uint64_t corrupted = 0;  // GET bodies damaged (kCorruptBody on a non-empty body)
  };
  Counts counts() const;
  ObjectStore& inner() { return *inner_; }

  Task<Result<std::string>> Get(std::string key, std::optional<GetRange> range = {}) override;
  Task<Result<ObjectInfo>> Head(std::string key) override;
  Task<Status> Put(std::string key, std::string data) override;
  Task<Status> PutIfAbsent(std::string key, std::string data) override;
  Task<Status> PutIfAbsentRope(std::string key, Rope data) override;
  Task<Status> Delete(std::string key) override;
  Task<Result<std::vector<ObjectInfo>>> List(std::string prefix,
                                             std::string start_after = "") override;
  Task<Status> CheckAccess() override;
  std::string url() const override { return inner_->url(); }

 private:
  FaultDecision Decide(OpKind kind, std::string_view key);
  // Waits the latency; returns the status to fail with before the call, or OK to proceed.
  Task<Status> Before(const FaultDecision& d);
  // The status to report instead of the inner result, or OK to report the inner result.
  Status After(const FaultDecision& d) const;

  std::unique_ptr<ObjectStore> inner_;
  Env& env_;
  FaultOptions options_;
  std::atomic<bool> crashed_{false};
  mutable std::mutex mu_;
  Prng rng_;       // GUARDED_BY(mu_)
  Counts counts_;  // GUARDED_BY(mu_)
};

}  // namespace portal::objstore
