#include "s3/errors.h"

#include <curl/curl.h>

#include <catch2/catch.hpp>

#include "testing/fake_http.h"

namespace portal::s3 {
namespace {

using testing::HttpReply;
using testing::S3ErrorXml;

Status::Code Code(int http, const std::string& s3_code = "") {
  return StatusFromResponse(HttpReply(http, s3_code.empty() ? "" : S3ErrorXml(s3_code)), "GET x")
      .code();
}

TEST_CASE("HTTP statuses map to Status: only transient ones retry", "[s3client]") {
  using C = Status::Code;
  CHECK(Code(200) == C::kOk);
  CHECK(Code(204) == C::kOk);
  CHECK(Code(206) == C::kOk);
  // Retryable.
  CHECK(Code(500, "InternalError") == C::kUnavailable);
  CHECK(Code(502) == C::kUnavailable);  // a proxy's HTML or empty body
  CHECK(Code(503, "SlowDown") == C::kUnavailable);
  CHECK(Code(504) == C::kUnavailable);
  CHECK(Code(429) == C::kUnavailable);
  CHECK(Code(408) == C::kUnavailable);
  CHECK(Code(400, "RequestTimeout") == C::kUnavailable);
  // The body arrived damaged (its SHA-256 or MD5 does not match; RGW and S3 store
  // nothing then): sending it again can succeed.
  CHECK(Code(400, "XAmzContentSHA256Mismatch") == C::kUnavailable);
  CHECK(Code(400, "BadDigest") == C::kUnavailable);
  CHECK(Code(409, "ConditionalRequestConflict") == C::kUnavailable);
  // Final.
  CHECK(Code(404, "NoSuchKey") == C::kNotFound);
  CHECK(Code(404) == C::kNotFound);  // HEAD: no body
  CHECK(Code(404, "NoSuchBucket") == C::kNotFound);
  CHECK(Code(412, "PreconditionFailed") == C::kPreconditionFailed);
  CHECK(Code(403, "AccessDenied") == C::kPermissionDenied);
  CHECK(Code(403) == C::kPermissionDenied);
  CHECK(Code(400, "ExpiredToken") == C::kPermissionDenied);
  CHECK(Code(400, "InvalidArgument") == C::kInvalidArgument);
  CHECK(Code(416, "InvalidRange") == C::kInvalidArgument);
  CHECK(Code(301, "PermanentRedirect") == C::kInvalidArgument);
  CHECK(Code(501, "NotImplemented") == C::kNotSupported);
  CHECK(Code(409, "BucketAlreadyExists") == C::kIOError);
  CHECK(Code(418) == C::kIOError);
}

TEST_CASE("an error body without a Message (Ceph RGW's) leaves no empty ': '", "[s3client]") {
  // RGW 16.2 answers <Error><Code>SignatureDoesNotMatch</Code><RequestId>...: no Message.
  const std::string rgw =
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>SignatureDoesNotMatch</Code>"
      "<RequestId>tx0000</RequestId><HostId>1-default</HostId></Error>";
  auto denied = StatusFromResponse(HttpReply(403, rgw), "LIST s3://b/");
  CHECK(denied.message().starts_with("LIST s3://b/: HTTP 403 SignatureDoesNotMatch (check "));
  auto failed = StatusFromResponse(HttpReply(412, S3ErrorXml("PreconditionFailed", "")), "PUT x");
  CHECK(failed.message() == "PUT x: HTTP 412 PreconditionFailed");
}

TEST_CASE("error messages say what to do", "[s3client]") {
  auto denied = StatusFromResponse(HttpReply(403, S3ErrorXml("InvalidAccessKeyId", "no such key")),
                                   "LIST s3://b/");
  CHECK(denied.message().find("InvalidAccessKeyId") != std::string::npos);
  CHECK(denied.message().find("AWS_ACCESS_KEY_ID") != std::string::npos);
  auto bucket = StatusFromResponse(HttpReply(404, S3ErrorXml("NoSuchBucket")), "LIST s3://b/");
  CHECK(bucket.message() == "LIST s3://b/: the bucket does not exist");
  auto region = StatusFromResponse(
      HttpReply(301, S3ErrorXml("PermanentRedirect"), {{"x-amz-bucket-region", "eu-west-1"}}),
      "GET s3://b/k");
  CHECK(region.message().find("AWS_REGION=eu-west-1") != std::string::npos);
}

TEST_CASE("a server's error text cannot break the one-line error", "[s3client]") {
  // The server's Code and Message end up in the line portalbd prints when it refuses to
  // start and in log lines: control characters (a multi-line message, as from a proxy or
  // a test server) become spaces, and a runaway message is cut. (XML itself turns CR LF
  // into LF.)
  auto st = StatusFromResponse(
      HttpReply(403, S3ErrorXml("Signature\nDoesNotMatch", "line one\r\nline two\tand\x1b[31m")),
      "LIST s3://b/");
  CHECK(st.code() == Status::Code::kPermissionDenied);
  for (char c : st.message()) CHECK(static_cast<unsigned char>(c) >= 0x20);
  CHECK(st.message().find("line one line two and [31m") != std::string::npos);
  auto longer = StatusFromResponse(
      HttpReply(500, S3ErrorXml("InternalError", std::string(5000, 'x'))), "PUT s3://b/k");
  CHECK(longer.message().size() < 1000);
  CHECK(longer.message().find("PUT s3://b/k: HTTP 500 InternalError: xxx") == 0);
}

TEST_CASE("curl errors map to Status: network trouble retries, setup errors do not", "[s3client]") {
  using C = Status::Code;
  CHECK(StatusFromCurl(CURLE_COULDNT_CONNECT, "refused", "GET x").code() == C::kUnavailable);
  CHECK(StatusFromCurl(CURLE_OPERATION_TIMEDOUT, "", "GET x").code() == C::kUnavailable);
  CHECK(StatusFromCurl(CURLE_RECV_ERROR, "", "GET x").code() == C::kUnavailable);
  CHECK(StatusFromCurl(CURLE_PARTIAL_FILE, "", "GET x").code() == C::kUnavailable);
  CHECK(StatusFromCurl(CURLE_COULDNT_RESOLVE_HOST, "", "GET x").code() == C::kUnavailable);
  CHECK(StatusFromCurl(CURLE_URL_MALFORMAT, "", "GET x").code() == C::kInvalidArgument);
  CHECK(StatusFromCurl(CURLE_PEER_FAILED_VERIFICATION, "", "GET x").code() == C::kIOError);
  CHECK(StatusFromCurl(CURLE_COULDNT_CONNECT, "Failed to connect", "GET x").message() ==
        "GET x: Failed to connect");
}

}  // namespace
}  // namespace portal::s3
