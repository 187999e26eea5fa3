#include "volume/manifest_log.h"

#include "env/async.h"
#include "util/log.h"

namespace portal::volume {

Task<Result<Manifest>> ManifestLog::Read(uint64_t number) {
  const std::string key = ManifestKey(number);
  Result<Manifest> m = Status::Corruption("not read");
  CO_RETURN_IF_ERROR(co_await objstore::RefetchCorrupt(
      [&]() -> Task<Status> {
        Result<std::string> bytes = Status::Unavailable("not read");
        CO_RETURN_IF_ERROR(co_await RetryUnavailable(
            env_,
            [&]() -> Task<Status> {
              bytes = co_await store_.Get(key);
              co_return bytes.status();
            },
            20));
        m = DecodeManifest(*bytes, key);
        co_return m.status();
      },
      corrupt_refetches_));
  co_return std::move(*m);
}

Task<Result<std::pair<uint64_t, Manifest>>> ManifestLog::ReadLatest(uint64_t hint) {
  uint64_t n = 0;
  if (hint != 0) {
    auto exists = co_await store_.Head(ManifestKey(hint));
    if (exists.ok()) n = hint;
  }
  if (n == 0) {
    Result<std::vector<objstore::ObjectInfo>> listed = Status::Unavailable("not listed");
    CO_RETURN_IF_ERROR(co_await RetryUnavailable(
        env_,
        [&]() -> Task<Status> {
          listed = co_await store_.List("manifest/");
          co_return listed.status();
        },
        20));
    for (const auto& o : *listed) {
      uint64_t num;
      if (ParseManifestKey(o.key, &num) && num > n) n = num;
    }
    if (n == 0) co_return Status::NotFound("no manifest in " + store_.url());
  }
  // Probe upward: commits made after the hint (or the listing) was taken.
  for (;;) {
    auto next = co_await store_.Head(ManifestKey(n + 1));
    if (next.ok()) {
      ++n;
      continue;
    }
    if (next.status().IsNotFound()) break;
    if (!next.status().retryable()) co_return next.status();
    co_await SleepFor(env_, 50 * kNanosPerMilli);
  }
  CO_ASSIGN_OR_RETURN(Manifest m, co_await Read(n));
  co_return std::make_pair(n, std::move(m));
}

Task<Status> ManifestLog::Create(uint64_t number, const Manifest& m, Cancellation* cancel) {
  const std::string key = ManifestKey(number);
  const std::string bytes = EncodeManifest(m);
  // Someone created it: us (an acknowledgement lost on the way back) or another writer.
  bool existed = false;
  Status st = co_await objstore::PutIfAbsentOrSame(env_, store_, key, bytes, &existed, cancel);
  if (st.ok() || !existed) co_return st;
  co_return Status::PreconditionFailed("manifest " + key +
                                       " was created by another writer: this writer is fenced");
}

}  // namespace portal::volume
