#include "volume/manifest_log.h"

#include <fmt/format.h>

#include "env/async.h"
#include "util/log.h"

namespace portal::volume {

using objstore::Retried;

Task<Result<Manifest>> ManifestLog::Read(uint64_t number) {
  const std::string key = ManifestKey(number);
  Result<Manifest> m = Status::Corruption("not read");
  CO_RETURN_IF_ERROR(co_await objstore::RefetchCorrupt(
      [&]() -> Task<Status> {
        Result<std::string> bytes = Status::Unavailable("not read");
        Retried got = co_await objstore::Retry(env_, objstore::ForStore(store_, kReadPolicy),
                                               [&]() -> Task<Status> {
                                                 bytes = co_await store_.Get(key);
                                                 co_return bytes.status();
                                               });
        CO_RETURN_IF_ERROR(got.status);
        m = DecodeManifest(*bytes, key, keyring_);
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
    Retried got = co_await objstore::Retry(env_, objstore::ForStore(store_, kReadPolicy),
                                           [&]() -> Task<Status> {
                                             listed = co_await store_.List("manifest/");
                                             co_return listed.status();
                                           });
    CO_RETURN_IF_ERROR(got.status);
    for (const auto& o : *listed) {
      uint64_t num;
      if (ParseManifestKey(o.key, &num) && num > n) n = num;
    }
    if (n == 0) co_return Status::NotFound("no manifest in " + store_.url());
  }
  // Probe upward: commits made after the hint (or the listing) was taken. A manifest
  // that does not answer yet is waited for, within kProbePolicy.
  for (;;) {
    const std::string key = ManifestKey(n + 1);
    Retried probe = co_await objstore::Retry(
        env_, objstore::ForStore(store_, kProbePolicy),
        [&]() -> Task<Status> { co_return (co_await store_.Head(key)).status(); });
    if (probe.status.ok()) {
      ++n;
      continue;
    }
    if (probe.status.IsNotFound()) break;
    if (probe.outcome == objstore::RetryOutcome::kGaveUp) {
      co_return Status::Unavailable(fmt::format("manifest {} did not answer after {} attempts: {}",
                                                key, probe.attempts, probe.status.message()));
    }
    co_return probe.status;
  }
  CO_ASSIGN_OR_RETURN(Manifest m, co_await Read(n));
  co_return std::make_pair(n, std::move(m));
}

Task<Status> ManifestLog::Create(uint64_t number, const Manifest& m, Cancellation* cancel) {
  const std::string key = ManifestKey(number);
  const std::string bytes = EncodeManifest(m, keyring_);
  // Someone created it: us (an acknowledgement lost on the way back) or another writer.
  auto created =
      co_await objstore::CreateOrVerify(env_, store_, key, bytes, objstore::kUntilDefinite, cancel);
  if (!created.ok()) co_return created.status();
  if (*created != objstore::CreateOutcome::kTakenByOther) co_return Status::Ok();
  co_return Status::PreconditionFailed("manifest " + key +
                                       " was created by another writer: this writer is fenced");
}

}  // namespace portal::volume
