#include "objstore/conditional_create.h"

#include <algorithm>

namespace portal::objstore {

std::string_view CreateOutcomeName(CreateOutcome o) {
  switch (o) {
    case CreateOutcome::kCreated:
      return "created";
    case CreateOutcome::kAlreadySame:
      return "already same";
    case CreateOutcome::kTakenByOther:
      return "taken by other";
  }
  return "?";
}

Task<Result<CreateOutcome>> ReadBack(const IsOurs& is_ours, uint32_t reads) {
  // Another object is read again when `reads` allows: raw bytes that differ may be ours,
  // damaged on the way (not counted as a refetch: it is usually another writer's object).
  for (uint32_t read = 1; read <= std::max<uint32_t>(reads, 1); ++read) {
    CO_ASSIGN_OR_RETURN(bool ours, co_await is_ours());
    if (ours) co_return CreateOutcome::kAlreadySame;
  }
  co_return CreateOutcome::kTakenByOther;
}

Task<Result<CreateOutcome>> CreateOrVerify(Env& env, const RetryPolicy& policy,
                                           std::function<Task<Status>()> put,
                                           const IsOurs& is_ours, uint32_t reads,
                                           Cancellation* cancel) {
  Retried r = co_await Retry(env, policy, std::move(put), cancel);
  if (r.status.ok()) co_return CreateOutcome::kCreated;
  if (r.outcome != RetryOutcome::kFenced) co_return r.status;
  co_return co_await ReadBack(is_ours, reads);
}

Task<Result<CreateOutcome>> CreateOrVerify(Env& env, ObjectStore& store, const std::string& key,
                                           const std::string& bytes, const RetryPolicy& policy,
                                           Cancellation* cancel) {
  const RetryPolicy p = ForStore(store, policy);
  // The read-back meets the same transient errors as the PUT: retry it as long, and never
  // take an unanswered GET for other contents.
  auto is_ours = [&]() -> Task<Result<bool>> {
    Result<std::string> back = Status::Unavailable("not read");
    Retried got = co_await Retry(
        env, p,
        [&]() -> Task<Status> {
          back = co_await store.Get(key);
          co_return back.status();
        },
        cancel);
    if (!got.status.ok()) co_return got.status;
    co_return *back == bytes;
  };
  co_return co_await CreateOrVerify(
      env, p, [&]() -> Task<Status> { co_return co_await store.PutIfAbsent(key, bytes); },
      is_ours, kVerifiedReadAttempts, cancel);
}

Task<Status> PutIfAbsentOrSame(Env& env, ObjectStore& store, const std::string& key,
                               const std::string& bytes, bool* existed, Cancellation* cancel) {
  if (existed) *existed = false;
  Result<CreateOutcome> r = co_await CreateOrVerify(env, store, key, bytes, kUntilDefinite, cancel);
  if (!r.ok()) co_return r.status();
  if (existed) *existed = *r != CreateOutcome::kCreated;
  if (*r == CreateOutcome::kTakenByOther) {
    co_return Status::PreconditionFailed(key + " exists with other contents");
  }
  co_return Status::Ok();
}

}  // namespace portal::objstore
