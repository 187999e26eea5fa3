#include "objstore/retrying_store.h"

#include <fmt/format.h>

#include "env/async.h"
#include "util/log.h"

namespace portal::objstore {

Task<Status> RetryUnavailable(Env& env, std::function<Task<Status>()> op,
                              uint32_t max_attempts, Cancellation* cancel) {
  uint64_t backoff_ms = 10;
  for (uint32_t attempt = 1;; ++attempt) {
    Status st = co_await op();
    if (!st.retryable() || (max_attempts != 0 && attempt >= max_attempts)) co_return st;
    if (cancel && cancel->cancelled()) co_return st;
    const uint64_t wait_ns =
        (backoff_ms / 2 + env.RandomBelow(backoff_ms / 2 + 1)) * kNanosPerMilli;
    if (cancel) {
      co_await cancel->Sleep(wait_ns);
      if (cancel->cancelled()) co_return st;
    } else {
      co_await SleepFor(env, wait_ns);
    }
    backoff_ms = std::min<uint64_t>(backoff_ms * 2, 5000);
  }
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

Task<Status> PutIfAbsentOrSame(Env& env, ObjectStore& store, const std::string& key,
                               const std::string& bytes, bool* existed, Cancellation* cancel) {
  if (existed) *existed = false;
  Status st = co_await RetryUnavailable(
      env, [&]() -> Task<Status> { co_return co_await store.PutIfAbsent(key, bytes); }, 0,
      cancel);
  if (!st.IsPreconditionFailed()) co_return st;
  if (existed) *existed = true;
  // The read-back meets the same transient errors as the PUT: retry it as long, and
  // never take an unanswered GET for other contents. Nor a damaged one: other bytes are
  // fetched again (not counted: they are usually another writer's object, intact).
  Status same = co_await RefetchCorrupt(
      [&]() -> Task<Status> {
        Result<std::string> back = Status::Unavailable("not read");
        CO_RETURN_IF_ERROR(co_await RetryUnavailable(
            env,
            [&]() -> Task<Status> {
              back = co_await store.Get(key);
              co_return back.status();
            },
            0, cancel));
        co_return *back == bytes ? Status::Ok() : Status::Corruption("other contents");
      },
      nullptr);
  if (!same.IsCorruption()) co_return same;
  co_return Status::PreconditionFailed(key + " exists with other contents");
}

Task<Result<std::string>> RetryingReadStore::Get(std::string key, std::optional<GetRange> range) {
  Result<std::string> out = Status::Unavailable("not attempted");
  (void)co_await RetryUnavailable(
      env_,
      [&]() -> Task<Status> {
        out = co_await inner_.Get(key, range);
        co_return out.status();
      },
      max_attempts_);
  co_return out;
}

Task<Result<ObjectInfo>> RetryingReadStore::Head(std::string key) {
  Result<ObjectInfo> out = Status::Unavailable("not attempted");
  (void)co_await RetryUnavailable(
      env_,
      [&]() -> Task<Status> {
        out = co_await inner_.Head(key);
        co_return out.status();
      },
      max_attempts_);
  co_return out;
}

Task<Result<std::vector<ObjectInfo>>> RetryingReadStore::List(std::string prefix,
                                                              std::string start_after) {
  Result<std::vector<ObjectInfo>> out = Status::Unavailable("not attempted");
  (void)co_await RetryUnavailable(
      env_,
      [&]() -> Task<Status> {
        out = co_await inner_.List(prefix, start_after);
        co_return out.status();
      },
      max_attempts_);
  co_return out;
}

}  // namespace portal::objstore
