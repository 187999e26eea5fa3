// Settings of the S3 client: where, who, how many at once, how long, how often to retry.
//
// ClientOptionsFromEnv reads the variables the original portalbd (Rust object_store)
// reads: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_REGION (else
// AWS_DEFAULT_REGION), AWS_ENDPOINT_URL (else AWS_ENDPOINT), AWS_ALLOW_HTTP, and
// AWS_CA_BUNDLE (the AWS CLI's and SDKs' name for a PEM file of CAs to trust).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "util/status.h"

namespace portal {
class BufferPool;
}

namespace portal::s3 {

// Bounded retries with jittered exponential backoff. Attempt n (n >= 1) that failed with a
// retryable status waits a random time in [d/2, d], d = min(max_delay, base_delay * 2^(n-1))
// ("equal jitter": spreads clients apart yet always backs off), then tries again, up to
// max_attempts attempts in all. Time and randomness come from the Env.
struct RetryPolicy {
  uint32_t max_attempts = 8;
  uint64_t base_delay_ms = 100;
  uint64_t max_delay_ms = 10'000;
};

struct ClientOptions {
  std::string region = "us-east-1";
  // "http(s)://host[:port]". Empty: AWS, https://s3.<region>.amazonaws.com.
  std::string endpoint;
  // Path-style (endpoint/bucket/key) or virtual-hosted (bucket.host/key). Unset: path-style
  // when an endpoint is configured, virtual-hosted otherwise.
  std::optional<bool> path_style;
  // Plain http:// endpoints are refused unless this is set (AWS_ALLOW_HTTP=true).
  bool allow_http = false;
  // PEM file of the CAs that https:// endpoints must chain to, in place of the system's
  // (a private CA in front of MinIO, Ceph RGW, ...). Empty: the system's CA store. The
  // file must be readable when the client is created; peers are always verified, host
  // name included.
  std::string ca_file;

  std::string access_key_id;
  std::string secret_access_key;
  std::string session_token;  // optional (temporary credentials)

  // Requests in flight at once, over all calls of one client (an AsyncSemaphore).
  uint32_t max_concurrent_requests = 32;
  // Keys per ListObjectsV2 request; S3 caps it at 1000. Tests lower it.
  uint32_t list_page_size = 1000;

  uint64_t connect_timeout_ms = 10'000;
  // A transfer that moves no byte for this long fails (retryably).
  uint64_t stall_timeout_ms = 30'000;
  // Whole-request limit; 0 = none (large objects on slow links take what they take).
  uint64_t request_timeout_ms = 0;

  RetryPolicy retry;
  // CheckAccess uses this many attempts and connect timeout, so that a wrong endpoint
  // fails start-up quickly with one line.
  uint32_t check_access_attempts = 2;
  uint64_t check_access_connect_timeout_ms = 5'000;

  // Not from the environment: where a PUT's body goes once sent (util/buffer_pool.h),
  // set by whoever owns the pool. Null: freed. Must outlive the client.
  BufferPool* buffer_pool = nullptr;
};

// getenv-like lookup: the value, or nullopt when unset.
using EnvLookup = std::function<std::optional<std::string>(const char* name)>;
EnvLookup ProcessEnvLookup();

// Defaults overridden by the AWS_* variables. InvalidArgument names a bad value
// (AWS_ALLOW_HTTP must be true/false/1/0).
Result<ClientOptions> ClientOptionsFromEnv(const EnvLookup& lookup = ProcessEnvLookup());

}  // namespace portal::s3
