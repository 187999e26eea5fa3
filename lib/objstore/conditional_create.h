// Conditional create with read-back: the one way an object that must not be overwritten
// is written (segments, fences, manifests, snapshot objects, map SSTs, the
// conditional-write probe).
//
// A conditional create (PutIfAbsent: If-None-Match: *) that saw a transient error is sent
// again with the same bytes (retry.h). A PreconditionFailed then does not yet mean
// "someone else": our earlier attempt may have landed with its reply lost (a torn
// acknowledgement). So the existing object is read back and judged:
//
//   kCreated       this call stored it
//   kAlreadySame   it exists and is ours (an earlier attempt's reply was lost)
//   kTakenByOther  it exists with other contents: the caller maps this to its meaning
//                  (fenced by a newer writer for manifests and segments, a uuid collision
//                  or corruption for names unique to us)
//
// Errors (the put or the read-back still failing when the policy gave up or was
// cancelled, NotFound, PermissionDenied...) come back as they came: the object may or
// may not be stored.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "env/async.h"
#include "env/env.h"
#include "objstore/object_store.h"
#include "objstore/retry.h"

namespace portal::objstore {

enum class CreateOutcome : uint8_t { kCreated, kAlreadySame, kTakenByOther };
std::string_view CreateOutcomeName(CreateOutcome o);

// Reads the existing object back and says whether it is ours. `false` is read again,
// `reads` times in all; an error ends the read-back and comes back as it is.
using IsOurs = std::function<Task<Result<bool>>()>;

// The read-back alone, after a conditional create failed with PreconditionFailed:
// kAlreadySame or kTakenByOther. `reads`: 1 when `is_ours` reads verified bytes (a
// checksummed footer: a mismatch is another object), kVerifiedReadAttempts when it
// compares raw bytes (a mismatch may be our object damaged on the way).
Task<Result<CreateOutcome>> ReadBack(const IsOurs& is_ours, uint32_t reads);

// `put`: one conditional create, the same bytes every call; retried per `policy` (with
// `cancel`), then, if the key exists, ReadBack(is_ours, reads).
Task<Result<CreateOutcome>> CreateOrVerify(Env& env, const RetryPolicy& policy,
                                           std::function<Task<Status>()> put,
                                           const IsOurs& is_ours, uint32_t reads,
                                           Cancellation* cancel = nullptr);

// The common case: PutIfAbsent(key, bytes); the read-back GETs the object (retried per
// `policy` too) and compares its bytes, up to kVerifiedReadAttempts times.
Task<Result<CreateOutcome>> CreateOrVerify(Env& env, ObjectStore& store, const std::string& key,
                                           const std::string& bytes,
                                           const RetryPolicy& policy = kUntilDefinite,
                                           Cancellation* cancel = nullptr);

// CreateOrVerify(store, key, bytes) until definite, as a Status: OK when created or ours,
// PreconditionFailed "<key> exists with other contents" when taken by another.
// `existed` (if set) says whether the key was found existing.
Task<Status> PutIfAbsentOrSame(Env& env, ObjectStore& store, const std::string& key,
                               const std::string& bytes, bool* existed = nullptr,
                               Cancellation* cancel = nullptr);

}  // namespace portal::objstore
