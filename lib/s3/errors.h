// The one place where libcurl's CURLcode and HTTP status codes (with S3 error bodies)
// become Status. What retries and what does not is decided here:
//
//   Unavailable (retried): connection refused/reset, DNS failure, timeouts, TLS handshake
//     failures, 5xx (except 501), 429 and 503 SlowDown, 408, 400 RequestTimeout (S3's "your
//     socket was idle too long", which AWS SDKs retry too), 400 XAmzContentSHA256Mismatch
//     and BadDigest (the body was damaged on the way; nothing stored), 409
//     ConditionalRequestConflict (a racing conditional write: retrying resolves it to 200
//     or 412).
//   Final: 404 NotFound (NoSuchBucket says so), 412 PreconditionFailed, 401/403 and expired
//     tokens PermissionDenied (message points at the credentials), 416 and other 400s
//     InvalidArgument, 301 (bucket in another region) InvalidArgument naming the region,
//     405/501 NotSupported, other 4xx IOError, certificate failures IOError.
#pragma once

#include <string_view>

#include "s3/http.h"
#include "util/status.h"

namespace portal::s3 {

// `code` is a CURLcode; `detail` is curl's error buffer (may be empty). `what` names the
// request ("GET s3://bucket/key").
Status StatusFromCurl(int code, std::string_view detail, std::string_view what);

// OK for 2xx; otherwise the Status for the response's code and S3 error body.
Status StatusFromResponse(const HttpResponse& response, std::string_view what);

}  // namespace portal::s3
