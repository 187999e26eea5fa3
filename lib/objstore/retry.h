// The one retry layer: which store errors are transient, how often and how long a request
// is tried again, and what came of it (done, fenced, gave up).
//
// Classification (ClassifyError) is decided here and nowhere else:
// - transient: Status::retryable() (Unavailable: 5xx, SlowDown, timeouts, refused
//   connections, a lost reply); tried again per the policy;
// - fenced: PreconditionFailed (a conditional create lost: the key exists); never tried
//   again, the caller reads the object back (conditional_create.h);
// - final: everything else (NotFound, Corruption, InvalidArgument, PermissionDenied,
//   Shutdown, ...); never tried again. Corruption of verified bytes has its own bounded
//   re-fetch (RefetchCorrupt): another GET, not another try of a failed request.
//
// Exactly one layer retries each request. A store that retries transient errors itself
// (S3Store: s3::Client's RetryPolicy, 8 attempts) says so (RetriesTransientErrors()), and
// a bounded policy applied to it makes one call (ForStore). So one failing GET through
// the volume's RetryingReadStore costs at most kReadAttempts (8) requests on every store:
// the S3 client's 8, or RetryingReadStore's 8 on memory:// and file://.
// Unbounded policies (writes that must land: segments, manifests, snapshot objects)
// keep calling until the outcome is definite or their Cancellation (a stop's deadline)
// cuts them short.
//
// Time and randomness come from the Env: simulated and deterministic under SimEnv.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string_view>

#include "env/async.h"
#include "env/env.h"
#include "objstore/object_store.h"

namespace portal::objstore {

// Attempts of one read (GET, HEAD, LIST) in all, over every layer.
inline constexpr uint32_t kReadAttempts = 8;

// Attempt n (n >= 1) that failed transiently waits d/2 + random[0, d/2] (equal jitter:
// spreads clients apart yet always backs off), d = min(max_delay, base_delay * 2^(n-1)),
// or exactly d without jitter (no random number drawn); then the next attempt, up to
// max_attempts calls in all.
struct RetryPolicy {
  uint32_t max_attempts = kReadAttempts;  // calls in all; 0: until definite or cancelled
  uint64_t base_delay_ms = 10;
  uint64_t max_delay_ms = 5000;
  bool jitter = true;
  // A write that must land (segment uploads: FLUSH and FUA wait for them): every error
  // but fenced and Shutdown is tried again (a file store's EIO or a full disk that
  // clears, a read-back whose bytes failed verification on the way), until the
  // Cancellation (a stop's deadline) or `max_attempts` ends it. A verdict the caller
  // reaches itself (damage it proved) is its to return, not an error of the op.
  bool must_land = false;
};

// Until the outcome is definite: for writes that must land (bounded by a Cancellation).
inline constexpr RetryPolicy kUntilDefinite{0};
// Until the write landed or was refused for good (RetryPolicy::must_land).
inline constexpr RetryPolicy kUntilLanded{0, 10, 5000, true, true};

enum class ErrorClass : uint8_t { kTransient, kFenced, kFinal };
ErrorClass ClassifyError(const Status& st);
// ... under `policy` (RetryPolicy::must_land turns final errors but Shutdown into
// transient ones).
ErrorClass ClassifyError(const Status& st, const RetryPolicy& policy);

enum class RetryOutcome : uint8_t {
  kDone,    // the last call succeeded or failed for good (a final error): see `status`
  kFenced,  // PreconditionFailed: the conditional write lost; `status` says why
  kGaveUp,  // still transient after max_attempts calls, or cancelled: outcome unknown
};
std::string_view RetryOutcomeName(RetryOutcome o);

struct Retried {
  Status status;  // of the last call
  RetryOutcome outcome = RetryOutcome::kDone;
  uint32_t attempts = 0;  // calls made
};

// Calls `op` until it returns a non-transient status or the policy's attempts are used up.
// With `cancel`, it stops as soon as that is cancelled (even mid-wait): kGaveUp with the
// last call's (transient) status.
Task<Retried> Retry(Env& env, const RetryPolicy& policy, std::function<Task<Status>()> op,
                    Cancellation* cancel = nullptr);

// `policy` for calls to `store`: one call if the store retries transient errors itself
// and the policy is bounded (so exactly one layer retries each request).
RetryPolicy ForStore(const ObjectStore& store, RetryPolicy policy);

// Retry with the default backoff and `max_attempts` calls (0: no limit); the last status.
Task<Status> RetryUnavailable(Env& env, std::function<Task<Status>()> op,
                              uint32_t max_attempts, Cancellation* cancel = nullptr);

// The same for calls to `store`: one call when it retries by itself (ForStore).
Task<Status> RetryUnavailable(Env& env, const ObjectStore& store,
                              std::function<Task<Status>()> op, uint32_t max_attempts,
                              Cancellation* cancel = nullptr);

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

}  // namespace portal::objstore
