#include "objstore/retry.h"

#include <fmt/format.h>

#include "util/log.h"

namespace portal::objstore {

ErrorClass ClassifyError(const Status& st) {
  if (st.retryable()) return ErrorClass::kTransient;
  if (st.IsPreconditionFailed()) return ErrorClass::kFenced;
  return ErrorClass::kFinal;
}

ErrorClass ClassifyError(const Status& st, const RetryPolicy& policy) {
  const ErrorClass c = ClassifyError(st);
  if (c != ErrorClass::kFinal || !policy.must_land) return c;
  if (st.ok() || st.code() == Status::Code::kShutdown) return c;
  return ErrorClass::kTransient;
}

std::string_view RetryOutcomeName(RetryOutcome o) {
  switch (o) {
    case RetryOutcome::kDone:
      return "done";
    case RetryOutcome::kFenced:
      return "fenced";
    case RetryOutcome::kGaveUp:
      return "gave up";
  }
  return "?";
}

Task<Retried> Retry(Env& env, const RetryPolicy& policy, std::function<Task<Status>()> op,
                    Cancellation* cancel) {
  uint64_t backoff_ms = policy.base_delay_ms;
  Retried r;
  for (;;) {
    r.status = co_await op();
    ++r.attempts;
    switch (ClassifyError(r.status, policy)) {
      case ErrorClass::kFenced:
        r.outcome = RetryOutcome::kFenced;
        co_return r;
      case ErrorClass::kFinal:
        r.outcome = RetryOutcome::kDone;
        co_return r;
      case ErrorClass::kTransient:
        break;
    }
    r.outcome = RetryOutcome::kGaveUp;
    if (policy.max_attempts != 0 && r.attempts >= policy.max_attempts) co_return r;
    if (cancel && cancel->cancelled()) co_return r;
    // Milliseconds, so that one draw per wait keeps the simulator's random stream as it was.
    const uint64_t wait_ms =
        policy.jitter ? backoff_ms / 2 + env.RandomBelow(backoff_ms / 2 + 1) : backoff_ms;
    if (cancel) {
      co_await cancel->Sleep(wait_ms * kNanosPerMilli);
      if (cancel->cancelled()) co_return r;
    } else {
      co_await SleepFor(env, wait_ms * kNanosPerMilli);
    }
    backoff_ms = std::min<uint64_t>(backoff_ms * 2, policy.max_delay_ms);
  }
}

RetryPolicy ForStore(const ObjectStore& store, RetryPolicy policy) {
  if (policy.max_attempts != 0 && store.RetriesTransientErrors()) policy.max_attempts = 1;
  return policy;
}

Task<Status> RetryUnavailable(Env& env, std::function<Task<Status>()> op, uint32_t max_attempts,
                              Cancellation* cancel) {
  RetryPolicy policy;
  policy.max_attempts = max_attempts;
  Retried r = co_await Retry(env, policy, std::move(op), cancel);
  co_return std::move(r.status);
}

Task<Status> RetryUnavailable(Env& env, const ObjectStore& store,
                              std::function<Task<Status>()> op, uint32_t max_attempts,
                              Cancellation* cancel) {
  Retried r = co_await Retry(env, ForStore(store, RetryPolicy{max_attempts}), std::move(op),
                             cancel);
  co_return std::move(r.status);
}

Task<Status> RefetchCorrupt(std::function<Task<Status>()> fetch, std::atomic<uint64_t>* refetches,
                            uint32_t max_attempts) {
  PORTAL_ASSERT(max_attempts >= 1, "a verified read makes at least one attempt");
  for (uint32_t attempt = 1;; ++attempt) {
    Status st = co_await fetch();
    if (!st.IsCorruption()) co_return st;
    if (attempt >= max_attempts) {
      co_return st.WithContext(fmt::format("failed verification {} times", attempt));
    }
    if (refetches) refetches->fetch_add(1, std::memory_order_relaxed);
    log::Get("portalbd::objstore")
        ->warn("object failed verification; fetching it again attempt={} error=\"{}\"", attempt,
               st.message());
  }
}

}  // namespace portal::objstore
