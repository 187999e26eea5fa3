// The HTTP layer under the S3 client: one request in, one response (or a transport error)
// out. CurlTransport (curl_transport.h) is the real one; tests substitute fakes that record
// requests and inject failures (client_test.cc).
//
// A transport does not interpret HTTP status codes: any complete response, 500 included,
// is a Response. Errors are for requests that got no complete response (connection
// refused or reset, timeouts, TLS failures); errors.h decides which are retryable.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "env/task.h"
#include "util/status.h"

namespace portal {
class BufferPool;
}

namespace portal::s3 {

struct HttpRequest {
  std::string method;  // "GET", "HEAD", "PUT", "DELETE"
  std::string url;     // fully encoded: sent exactly as given, no normalization
  // Extra headers, names in lower case. Host, Content-Length, x-amz-date and
  // Authorization are added by the transport.
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;  // PUT only
  // PUT only, instead of `body`: the body as these parts in order (a segment whose
  // incompressible chunks stay where the write buffer holds them). Not owned: the caller
  // keeps them valid and unchanged until the request completes.
  std::vector<std::string_view> body_parts;

  // AWS SigV4 signing by the transport (libcurl's CURLOPT_AWS_SIGV4): provider string
  // such as "aws:amz:us-east-1:s3". Empty: the request is sent unsigned.
  std::string sigv4;
  std::string access_key_id;
  std::string secret_access_key;

  uint64_t connect_timeout_ms = 10'000;
  uint64_t stall_timeout_ms = 30'000;  // no byte moved for this long: fail
  uint64_t timeout_ms = 0;             // whole request; 0 = none
  // A response body larger than this fails the request (Corruption): bounds what a peer
  // can make us buffer. Callers set it from the size they expect.
  uint64_t max_response_bytes = uint64_t{5} << 30;  // S3's largest single PUT
  // Where a response body of at least BufferPool::kMinBytes (by its Content-Length) is
  // received: a string taken from this pool, whose pages are mapped already (fresh ones
  // fault in and are zeroed page by page: most of a large ranged GET's CPU time). Its
  // consumer may give it back. Null: a fresh string.
  BufferPool* response_pool = nullptr;

  std::string_view Header(std::string_view lower_name) const;
  // Bytes of the body: body_parts' if any, else body's.
  uint64_t BodySize() const;
  // The body in one string (a copy; for fakes and tests).
  std::string JoinedBody() const;
};

struct HttpResponse {
  int status = 0;
  std::vector<std::pair<std::string, std::string>> headers;  // names in lower case
  std::string body;

  // The value of the first header with this (lower-case) name, or empty.
  std::string_view Header(std::string_view lower_name) const;
};

class HttpTransport {
 public:
  virtual ~HttpTransport() = default;
  // Thread-safe; many requests in flight. `request` must stay valid until the task
  // completes (callers await at once). Completes on the Env's executor.
  virtual Task<Result<HttpResponse>> Send(const HttpRequest& request) = 0;
};

}  // namespace portal::s3
