#include "s3/errors.h"

#include <curl/curl.h>
#include <fmt/format.h>

#include <algorithm>

#include "s3/xml.h"

namespace portal::s3 {
namespace {

constexpr std::string_view kCredentialsHint =
    "check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN, and that they "
    "may access the bucket";

// A server's text (error Code and Message) goes into one-line errors and log lines:
// control characters become spaces and it is cut at kMaxServerText bytes (never inside a
// UTF-8 sequence), so no server, proxy or test double can split or flood the line.
constexpr size_t kMaxServerText = 300;

std::string OneLine(std::string_view text) {
  std::string out;
  out.reserve(std::min(text.size(), kMaxServerText + 3));
  for (char c : text) {
    const auto u = static_cast<unsigned char>(c);
    out.push_back(u < 0x20 || u == 0x7f ? ' ' : c);
  }
  if (out.size() > kMaxServerText) {
    size_t cut = kMaxServerText;
    while (cut > 0 && (static_cast<unsigned char>(out[cut]) & 0xc0) == 0x80) --cut;
    out.resize(cut);
    out += "...";
  }
  return out;
}

}  // namespace

Status StatusFromCurl(int code, std::string_view detail, std::string_view what) {
  auto c = static_cast<CURLcode>(code);
  std::string m = fmt::format("{}: {}", what, detail.empty() ? curl_easy_strerror(c) : detail);
  switch (c) {
    case CURLE_OK:
      return Status::Ok();
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_AGAIN:
      return Status::Unavailable(std::move(m));
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_BAD_FUNCTION_ARGUMENT:
      return Status::InvalidArgument(std::move(m));
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
      return Status::IOError(m + " (TLS certificate not trusted)");
    case CURLE_ABORTED_BY_CALLBACK:
      return Status::Shutdown(std::move(m));
    default:
      return Status::IOError(std::move(m));
  }
}

Status StatusFromResponse(const HttpResponse& response, std::string_view what) {
  int http = response.status;
  if (http >= 200 && http < 300) return Status::Ok();
  auto body = ParseErrorBody(response.body);
  std::string code = body ? OneLine(body->code) : "";
  // Ceph RGW's error bodies carry no Message, or an empty one: then no empty ": " either.
  std::string detail = fmt::format("HTTP {}", http);
  if (body) detail = fmt::format("{} {}", detail, code);
  if (body && !body->message.empty()) {
    detail = fmt::format("{}: {}", detail, OneLine(body->message));
  }
  std::string m = fmt::format("{}: {}", what, detail);

  if (http == 301 || http == 307 || code == "AuthorizationHeaderMalformed" ||
      code == "PermanentRedirect") {
    std::string region(response.Header("x-amz-bucket-region"));
    if (region.empty() && body) region = body->region;
    return Status::InvalidArgument(
        region.empty()
            ? m + " (wrong region or endpoint? set AWS_REGION)"
            : fmt::format("{} (the bucket is in region {}: set AWS_REGION={})", m, region, region));
  }
  if (http == 401 || http == 403 || code == "ExpiredToken" || code == "InvalidToken" ||
      code == "InvalidAccessKeyId" || code == "SignatureDoesNotMatch") {
    return Status::PermissionDenied(fmt::format("{} ({})", m, kCredentialsHint));
  }
  switch (http) {
    case 404:
      if (code == "NoSuchBucket") {
        return Status::NotFound(fmt::format("{}: the bucket does not exist", what));
      }
      return Status::NotFound(std::move(m));
    case 408:
    case 429:
      return Status::Unavailable(std::move(m));
    case 400:
      if (code == "RequestTimeout") return Status::Unavailable(std::move(m));
      // The body arrived damaged (x-amz-content-sha256 or Content-MD5 does not match: a
      // proxy or NIC flipped bits); nothing was stored and a resend can succeed. RGW
      // checks the SHA-256 as S3 does.
      if (code == "XAmzContentSHA256Mismatch" || code == "BadDigest") {
        return Status::Unavailable(std::move(m));
      }
      return Status::InvalidArgument(std::move(m));
    case 409:
      if (code == "ConditionalRequestConflict" || code == "OperationAborted") {
        return Status::Unavailable(std::move(m));
      }
      return Status::IOError(std::move(m));
    case 412:
      return Status::PreconditionFailed(std::move(m));
    case 416:
      return Status::InvalidArgument(std::move(m));
    case 405:
    case 501:
      return Status::NotSupported(std::move(m));
    default:
      break;
  }
  if (http >= 500) return Status::Unavailable(std::move(m));
  return Status::IOError(std::move(m));
}

}  // namespace portal::s3
