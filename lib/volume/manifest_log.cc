#include "volume/manifest_log.h"

#include <fmt/format.h>

#include "env/async.h"
#include "util/log.h"

namespace portal::volume {

using objstore::Retried;

namespace {
auto Log() { return log::Get("portalbd::volume"); }
}  // namespace

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
  // The manifest found can be collected before it is read: a running writer committed
  // past it and its GC deleted it (it keeps only `manifests_kept`). A newer one exists
  // then: look again, from a fresh listing. NotFound stays "no manifest at all".
  for (int attempt = 1;; ++attempt) {
    auto found = co_await FindLatest(attempt == 1 ? hint : 0);
    if (!found.ok()) co_return found.status();
    Result<Manifest> m = co_await Read(*found);
    if (m.ok()) co_return std::make_pair(*found, std::move(*m));
    if (!m.status().IsNotFound()) co_return m.status();
    if (attempt >= kRelistAttempts) {
      co_return Status::Unavailable(fmt::format(
          "the latest manifest was collected before it could be read, {} times (another "
          "writer keeps committing): {}",
          attempt, m.status().message()));
    }
    Log()->info("latest manifest collected before it was read; listing again key={}",
                ManifestKey(*found));
  }
}

Task<Result<uint64_t>> ManifestLog::FindLatest(uint64_t hint) {
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
  co_return n;
}

Task<Status> ManifestLog::Create(uint64_t number, const Manifest& m, Cancellation* cancel) {
  const std::string key = ManifestKey(number);
  const std::string bytes = EncodeManifest(m, keyring_);
  const objstore::RetryPolicy policy = objstore::ForStore(store_, objstore::kUntilDefinite);
  // Someone created it: us (an acknowledgement lost on the way back) or another writer.
  // Gone by the time we read it back: collected by manifest GC, which only a writer that
  // committed past it runs (and never on an epoch's opener), so a newer manifest exists
  // and we are not the latest writer, whoever created it (dst seeds 743650240823 and
  // 262903834534: an open failed NotFound instead of re-reading).
  bool collected = false;
  auto is_ours = [&]() -> Task<Result<bool>> {
    Result<std::string> back = Status::Unavailable("not read");
    Retried got = co_await objstore::Retry(
        env_, policy,
        [&]() -> Task<Status> {
          back = co_await store_.Get(key);
          co_return back.status();
        },
        cancel);
    if (got.status.IsNotFound()) {
      collected = true;
      co_return false;
    }
    if (!got.status.ok()) co_return got.status;
    co_return *back == bytes;
  };
  auto created = co_await objstore::CreateOrVerify(
      env_, policy, [&]() -> Task<Status> { co_return co_await store_.PutIfAbsent(key, bytes); },
      is_ours, objstore::kVerifiedReadAttempts, cancel);
  if (!created.ok()) co_return created.status();
  if (*created != objstore::CreateOutcome::kTakenByOther) co_return Status::Ok();
  co_return Status::PreconditionFailed(
      "manifest " + key + " was created by another writer" +
      (collected ? " (and already collected, so a newer one exists)" : "") +
      ": this writer is fenced");
}

}  // namespace portal::volume
