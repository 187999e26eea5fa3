// Client: a minimal S3 client for one bucket: GET (whole or a byte range), HEAD, PUT
// (optionally If-None-Match: *), DELETE, ListObjectsV2. Keys here are full S3 keys; the
// s3:// store (objstore/s3_store.h) adds its prefix.
//
// Every request:
// - is built in canonical form (uri.h) and signed by libcurl (CURLOPT_AWS_SIGV4,
//   "aws:amz:<region>:s3"); we set x-amz-content-sha256 ourselves: the SHA-256 of the
//   body for PUT (so S3 rejects an upload torn by a crash instead of storing a truncated
//   object), the empty-body hash otherwise; x-amz-security-token with temporary
//   credentials;
// - goes to endpoint/bucket/key (path-style) or bucket.host/key (virtual-hosted), see
//   options.h;
// - waits for a permit of the client's AsyncSemaphore (max_concurrent_requests), held for
//   one attempt only, never across a backoff;
// - is retried per options.retry when errors.h calls the outcome retryable, with the Env's
//   clock and randomness, so tests never sleep (retries are logged at debug level; one
//   warning a minute at most, from a request's third attempt on). These are the only
//   retries of the request: the objstore retry layer above makes one call to an S3Store
//   (objstore/retry.h ForStore), so one failing GET costs at most max_attempts requests.
//
// Errors: the Status of the last attempt as errors.h maps it (the message names the
// request, "PUT s3://bucket/key", and the attempts made); Corruption for 2xx answers we
// cannot read (bad XML, no Content-Length) or bodies larger than expected.
//
// Thread-safe; many calls in flight. `env` must outlive the client; the client must
// outlive its calls.
#pragma once

#include <atomic>
#include <memory>
#include <optional>
#include <string>

#include "env/async.h"
#include "env/env.h"
#include "s3/http.h"
#include "s3/options.h"
#include "s3/uri.h"
#include "s3/xml.h"

namespace portal::s3 {

struct ObjectMeta {
  uint64_t size = 0;
  std::string etag;  // unquoted
};

struct GetResult {
  std::string body;
  bool partial = false;  // 206: the server applied the Range; 200: the whole object
  // The first byte of a 206's "Content-Range: bytes first-last/total", when present.
  std::optional<uint64_t> range_first;
};

// "bytes=first-last", or "bytes=first-" without `last`.
struct ByteRange {
  uint64_t first = 0;
  std::optional<uint64_t> last;
};

struct ListRequest {
  std::string prefix;
  std::string start_after;
  std::string continuation_token;
  uint32_t max_keys = 1000;
};

class Client {
 public:
  // Validates the options: credentials present, endpoint parseable, plain HTTP allowed if
  // used. `transport` null: a CurlTransport of its own.
  static Result<std::unique_ptr<Client>> Create(Env& env, std::string bucket, ClientOptions options,
                                                std::shared_ptr<HttpTransport> transport);

  Task<Result<GetResult>> GetObject(const std::string& key, std::optional<ByteRange> range);
  Task<Result<ObjectMeta>> HeadObject(const std::string& key);
  Task<Status> PutObject(const std::string& key, std::string body, bool if_none_match);
  // The same with the body in parts, sent in order without joining them (HttpRequest::
  // body_parts); they must stay valid and unchanged until the task completes.
  Task<Status> PutObjectParts(const std::string& key, std::vector<std::string_view> parts,
                              bool if_none_match);
  Task<Status> DeleteObject(const std::string& key);
  Task<Result<ListPage>> ListObjectsV2(const ListRequest& request);
  // One ListObjectsV2 of at most one key under `prefix`, with the CheckAccess attempts and
  // connect timeout: proves the bucket exists, is reachable and accepts our credentials.
  Task<Status> Probe(const std::string& prefix);

  // Request construction, public for tests. `key` empty: the bucket itself.
  HttpRequest BuildRequest(std::string_view method, std::string_view key,
                           const QueryString& query) const;
  // "s3://bucket/key", for messages.
  std::string Describe(std::string_view key) const;
  const std::string& bucket() const { return bucket_; }
  const std::string& endpoint() const { return base_url_; }
  const ClientOptions& options() const { return options_; }

  struct Stats {
    uint64_t attempts = 0;  // HTTP requests sent (or tried)
    uint64_t retries = 0;   // attempts after a retryable failure
  };
  Stats stats() const;

  // From now on every request gets one attempt: retries stop, and a backoff in progress
  // ends at once with the last attempt's error (a stop's deadline passed). Cannot be
  // undone. Thread-safe.
  void StopRetrying() { no_retries_.Cancel(); }

 private:
  Client(Env& env, std::string bucket, ClientOptions options,
         std::shared_ptr<HttpTransport> transport, std::string scheme, std::string host,
         std::string base_path);

  // Sends with permits and retries; the response is 2xx (or, with missing_is_ok, a 404
  // that is not NoSuchBucket), else the mapped Status. `quiet`: no retry log lines.
  Task<Result<HttpResponse>> Execute(const HttpRequest& request, std::string what,
                                     uint32_t max_attempts, bool quiet, bool missing_is_ok = false);
  uint64_t BackoffNanos(uint32_t failed_attempt);

  Env& env_;
  const std::string bucket_;
  const ClientOptions options_;
  std::shared_ptr<HttpTransport> transport_;
  const std::string scheme_;     // "http" or "https"
  const std::string host_;       // "host[:port]" of the endpoint (without the bucket)
  const std::string base_path_;  // endpoint path without trailing '/', usually empty
  const std::string base_url_;   // scheme://host/base_path, for messages
  const bool path_style_;
  AsyncSemaphore permits_;
  std::atomic<uint64_t> attempts_{0};
  std::atomic<uint64_t> retries_{0};
  Cancellation no_retries_{env_};
  static constexpr uint64_t kNever = UINT64_MAX;
  static constexpr uint64_t kRetryWarningIntervalNs = 60 * kNanosPerSecond;
  std::atomic<uint64_t> last_retry_warning_ns_{kNever};
};

}  // namespace portal::s3
