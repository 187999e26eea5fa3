// S3Store (s3://bucket/prefix): objects are S3 objects named prefix + key, through
// s3::Client (lib/s3). The prefix is the URL's path plus a '/' (s3://b/vol1 stores "k" as
// "vol1/k"); without a path, keys are used as they are.
//
// Ranges: S3 clips a range that runs past the end (206) and refuses one that starts at or
// past it (416 -> InvalidArgument). Servers that answer 200 (whole object) or an empty 206
// are normalized here, so that every store gives the same answer (object_store.h).
// List follows NextContinuationToken to the end. Each page must start past the previous
// one (so a misbehaving server cannot make it loop); the result is sorted here, because
// s3rver returns a page in directory-walk order, not byte order.
// PutIfAbsent sends If-None-Match: *; S3 answers 412 when the key exists. Servers that
// ignore the header (s3rver) silently overwrite: see object_store.h.
//
// Thread-safe (the client is). Owns the client.
#pragma once

#include <memory>
#include <string>

#include "objstore/object_store.h"
#include "s3/client.h"

namespace portal::objstore {

class S3Store final : public ObjectStore {
 public:
  // `prefix`: empty, or ending with '/'. `url`: for url() and messages.
  S3Store(std::unique_ptr<s3::Client> client, std::string prefix, std::string url);

  Task<Result<std::string>> Get(std::string key, std::optional<GetRange> range = {}) override;
  Task<Result<ObjectInfo>> Head(std::string key) override;
  Task<Status> Put(std::string key, std::string data) override;
  Task<Status> PutIfAbsent(std::string key, std::string data) override;
  Task<Status> Delete(std::string key) override;
  Task<Result<std::vector<ObjectInfo>>> List(std::string prefix,
                                             std::string start_after = "") override;
  Task<Status> CheckAccess() override;
  Task<Status> PutIfAbsentRope(std::string key, Rope data) override;
  std::string url() const override { return url_; }
  // s3::Client's RetryPolicy (ClientOptions::retry), unless set to one attempt.
  bool RetriesTransientErrors() const override {
    return client_->options().retry.max_attempts > 1;
  }

  s3::Client& client() { return *client_; }

 private:
  std::unique_ptr<s3::Client> client_;
  const std::string prefix_;
  const std::string url_;
};

}  // namespace portal::objstore
