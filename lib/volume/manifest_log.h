// ManifestLog: the sequence of manifests in the store.
//
// ReadLatest finds the newest manifest without listing all of them: from a hint (the
// SQLite cache's last number) or, without one, a List of manifest/ (GC keeps it short),
// then probing upward until NotFound. A manifest collected between that and its read (a
// running writer committed past it) makes it look again: NotFound means no manifest.
//
// Create(n, m) commits manifest n with PutIfAbsent, so two writers can never both
// create the same successor. Lost acknowledgements: a retryable error is retried with
// the same bytes until the outcome is definite; a PreconditionFailed is then checked by
// reading the object back (identical bytes: it was our own earlier attempt). A different
// object, or none left to read (collected: someone committed past n), means another
// writer committed n: the caller is fenced (PreconditionFailed).
//
// Reads retry transient errors per kReadPolicy (one call on a store that retries by
// itself). ReadLatest's upward probe waits for a manifest that does not answer yet
// (HEAD failing transiently) up to kProbePolicy, ~5 s, then fails with Unavailable
// naming it.
//
// Read re-fetches a manifest that does not decode (objstore::RefetchCorrupt): manifests
// carry no checksum, so a damaged body is caught only where it stops being a manifest.
//
// Thread-safe; the volume serializes commits itself. The store, env and
// `corrupt_refetches` counter must outlive it.
#pragma once

#include <atomic>
#include <cstdint>
#include <utility>

#include "env/env.h"
#include "objstore/object_store.h"
#include "objstore/conditional_create.h"
#include "objstore/retry.h"
#include "objstore/retrying_store.h"
#include "volume/manifest.h"

namespace portal::volume {

class ManifestLog {
 public:
  // `keyring`: seal and open manifests with it (null: plain); must outlive the log.
  ManifestLog(objstore::ObjectStore& store, Env& env,
              std::atomic<uint64_t>* corrupt_refetches = nullptr,
              const crypto::Keyring* keyring = nullptr)
      : store_(store), env_(env), corrupt_refetches_(corrupt_refetches), keyring_(keyring) {}

  // NotFound if the store holds no manifest (a new volume).
  Task<Result<std::pair<uint64_t, Manifest>>> ReadLatest(uint64_t hint);
  Task<Result<Manifest>> Read(uint64_t number);
  // `cancel`: stop retrying once cancelled; the outcome is then unknown (an error).
  Task<Status> Create(uint64_t number, const Manifest& m, Cancellation* cancel = nullptr);

 private:
  // The newest manifest number (not read): from `hint` or a listing, then the probe.
  Task<Result<uint64_t>> FindLatest(uint64_t hint);

  static constexpr objstore::RetryPolicy kReadPolicy{20};
  // ReadLatest: how often the manifest found may be collected before its read.
  static constexpr int kRelistAttempts = 10;
  // Every 50 ms, 100 times (no jitter: a wait, not a crowd to spread).
  static constexpr objstore::RetryPolicy kProbePolicy{100, 50, 50, false};

  objstore::ObjectStore& store_;
  Env& env_;
  std::atomic<uint64_t>* corrupt_refetches_;  // may be null
  const crypto::Keyring* keyring_;            // may be null
};

using objstore::RetryUnavailable;

}  // namespace portal::volume
