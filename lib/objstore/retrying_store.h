// RetryingReadStore retries reads (Get, Head, List) per a bounded RetryPolicy (retry.h)
// and passes writes through untouched: a retried conditional write needs its caller's
// read-back logic (a PreconditionFailed after a lost acknowledgement may be the caller's
// own write), so writers use CreateOrVerify (conditional_create.h) or Retry themselves.
// Over a store that retries by itself (S3) it makes one call per read: exactly one layer
// retries each request, so one failing GET costs at most kReadAttempts requests.
//
// Does not own the inner store. Thread-safe.
#pragma once

#include <cstdint>

#include "env/env.h"
#include "objstore/conditional_create.h"
#include "objstore/object_store.h"
#include "objstore/retry.h"

namespace portal::objstore {

class RetryingReadStore final : public ObjectStore {
 public:
  RetryingReadStore(ObjectStore& inner, Env& env, RetryPolicy policy = {})
      : inner_(inner), env_(env), policy_(ForStore(inner, policy)) {}

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
  // Writes are not retried here: only the inner store's retries count.
  bool RetriesTransientErrors() const override { return inner_.RetriesTransientErrors(); }

 private:
  ObjectStore& inner_;
  Env& env_;
  const RetryPolicy policy_;
};

}  // namespace portal::objstore
