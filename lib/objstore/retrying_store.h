// Retries of transient store errors (Status::retryable()) with jittered exponential
// backoff taken from the Env (simulated time under SimEnv), and re-fetches of objects
// whose bytes fail verification (RefetchCorrupt).
//
// RetryingReadStore retries reads (Get, Head, List, CheckAccess) a bounded number of
// times and passes writes through untouched: a retried conditional write needs its
// caller's read-back logic (a PreconditionFailed after a lost acknowledgement may be
// the caller's own write), so writers use RetryUnavailable themselves.
//
// Does not own the inner store. Thread-safe.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>

#include "env/async.h"
#include "env/env.h"
#include "objstore/object_store.h"

namespace portal::objstore {

// Calls `op` until it returns a non-retryable status or `max_attempts` calls were made
// (0: no limit). Waits d/2..d between attempts, d = 10 ms doubling up to 5 s. With
// `cancel`, it stops as soon as that is cancelled (even mid-wait) and returns the last
// attempt's (retryable) status: the outcome of that attempt stays unknown.
Task<Status> RetryUnavailable(Env& env, std::function<Task<Status>()> op,
                              uint32_t max_attempts, Cancellation* cancel = nullptr);

// Calls to `fetch` a verified read makes at most: the first and two more.
inline constexpr uint32_t kVerifiedReadAttempts = 3;

// Verified reads. Bytes that fail verification after a GET (a checksum, a magic, lengths
// that do not add up) were damaged on the way (a proxy or NIC flipping bits) or are
// damaged in the store for good; objects are immutable, so only another GET tells which.
// Calls `fetch` -- GET the object and verify its bytes -- until it returns anything but
// Corruption or `max_attempts` calls were made. Every repeat adds one to `*refetches`
// (if not null) and logs a warning. The last Corruption comes back saying how many
// fetches saw it; NotFound and every other error come back at once (transient errors
// are the store's to retry: GET through a RetryingReadStore).
// `fetch` must return Corruption only from checking bytes (checks of verified contents
// against expectations belong after this call: another GET cannot change them) and must
// leave nothing of a failed attempt behind (no cache may hold bytes that failed).
// Every verified read of a segment, map SST, manifest or snapshot object goes through here.
Task<Status> RefetchCorrupt(std::function<Task<Status>()> fetch, std::atomic<uint64_t>* refetches,
                            uint32_t max_attempts = kVerifiedReadAttempts);

// A conditional create that survives a lost acknowledgement: PutIfAbsent, and if the key
// exists read it back (both retried without bound on transient errors). The same bytes
// are our own earlier attempt: OK. Other bytes in kVerifiedReadAttempts read-backs (one
// could be ours, damaged on the way): PreconditionFailed. Any other error as it came.
// `existed` (if set) says whether the key was found existing. `cancel`: as for
// RetryUnavailable (a cancelled call may or may not have stored the object).
Task<Status> PutIfAbsentOrSame(Env& env, ObjectStore& store, const std::string& key,
                               const std::string& bytes, bool* existed = nullptr,
                               Cancellation* cancel = nullptr);

class RetryingReadStore final : public ObjectStore {
 public:
  RetryingReadStore(ObjectStore& inner, Env& env, uint32_t max_attempts = 8)
      : inner_(inner), env_(env), max_attempts_(max_attempts) {}

  Task<Result<std::string>> Get(std::string key, std::optional<GetRange> range = {}) override;
  Task<Result<ObjectInfo>> Head(std::string key) override;
  Task<Status> Put(std::string key, std::string data) override {
    return inner_.Put(std::move(key), std::move(data));
  }
  Task<Status> PutIfAbsent(std::string key, std::string data) override {
    return inner_.PutIfAbsent(std::move(key), std::move(data));
  }
  Task<Status> PutIfAbsentRope(std::string key, Rope data) override {
    return inner_.PutIfAbsentRope(std::move(key), std::move(data));
  }
  Task<Status> Delete(std::string key) override { return inner_.Delete(std::move(key)); }
  Task<Result<std::vector<ObjectInfo>>> List(std::string prefix,
                                             std::string start_after = "") override;
  Task<Status> CheckAccess() override { return inner_.CheckAccess(); }
  std::string url() const override { return inner_.url(); }

 private:
  ObjectStore& inner_;
  Env& env_;
  uint32_t max_attempts_;
};

}  // namespace portal::objstore
