#include "s3/client.h"

#include <curl/curl.h>
#include <fmt/format.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>

#include "s3/curl_transport.h"
#include "s3/errors.h"
#include "s3/sha256.h"
#include "util/buffer_pool.h"
#include "util/log.h"

namespace portal::s3 {
namespace {

// Bodies above this are hashed on the blocking pool: SHA-256 of an 8 MiB segment takes
// milliseconds, too long for an executor thread.
constexpr size_t kInlineHashBytes = 64 * 1024;
// Error bodies are small; a ranged GET may carry one instead of the data.
constexpr uint64_t kErrorBodySlack = 64 * 1024;

struct Endpoint {
  std::string scheme;
  std::string host;  // with ":port" when given
  std::string path;  // without trailing '/'
};

// Endpoint URLs are parsed by libcurl's URL API, not by hand.
Result<Endpoint> ParseEndpoint(const std::string& url) {
  std::unique_ptr<CURLU, void (*)(CURLU*)> u(curl_url(), curl_url_cleanup);
  if (!u || curl_url_set(u.get(), CURLUPART_URL, url.c_str(), 0) != CURLUE_OK) {
    return Status::InvalidArgument("S3 endpoint '" + url + "' is not a URL");
  }
  auto part = [&](CURLUPart p) -> std::string {
    char* v = nullptr;
    if (curl_url_get(u.get(), p, &v, 0) != CURLUE_OK || v == nullptr) return "";
    std::string s(v);
    curl_free(v);
    return s;
  };
  Endpoint e;
  e.scheme = part(CURLUPART_SCHEME);
  e.host = part(CURLUPART_HOST);
  std::string port = part(CURLUPART_PORT);
  if (!port.empty()) e.host += ":" + port;
  e.path = part(CURLUPART_PATH);
  while (!e.path.empty() && e.path.back() == '/') e.path.pop_back();
  if (e.scheme != "http" && e.scheme != "https") {
    return Status::InvalidArgument("S3 endpoint '" + url + "' must be http:// or https://");
  }
  if (e.host.empty()) return Status::InvalidArgument("S3 endpoint '" + url + "' has no host");
  if (!part(CURLUPART_QUERY).empty()) {
    return Status::InvalidArgument("S3 endpoint '" + url + "' must not have a query");
  }
  return e;
}

}  // namespace

Result<std::unique_ptr<Client>> Client::Create(Env& env, std::string bucket, ClientOptions options,
                                               std::shared_ptr<HttpTransport> transport) {
  if (bucket.empty() || bucket.find('/') != std::string::npos) {
    return Status::InvalidArgument("bad S3 bucket name '" + bucket + "'");
  }
  if (options.access_key_id.empty() || options.secret_access_key.empty()) {
    return Status::InvalidArgument(
        "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY");
  }
  if (options.region.empty()) return Status::InvalidArgument("empty AWS_REGION");
  if (options.max_concurrent_requests == 0 || options.retry.max_attempts == 0 ||
      options.check_access_attempts == 0) {
    return Status::InvalidArgument("S3 request limits and attempts must be at least 1");
  }
  if (options.list_page_size == 0 || options.list_page_size > 1000) {
    return Status::InvalidArgument("S3 list page size must be 1..1000");
  }
  Endpoint ep{"https", "s3." + options.region + ".amazonaws.com", ""};
  if (!options.endpoint.empty()) {
    ASSIGN_OR_RETURN(ep, ParseEndpoint(options.endpoint));
  }
  if (ep.scheme == "http" && !options.allow_http) {
    return Status::InvalidArgument("S3 endpoint " + options.endpoint +
                                   " is plain HTTP: set AWS_ALLOW_HTTP=true to allow it");
  }
  if (!options.ca_file.empty()) {
    // Checked here, so that a wrong path is one line at start naming it, not a TLS error
    // on the first request.
    std::ifstream ca(options.ca_file);
    if (!ca) {
      return Status::InvalidArgument(fmt::format("CA bundle {} (AWS_CA_BUNDLE or storage.ca_file) "
                                                 "cannot be read: {}",
                                                 options.ca_file, std::strerror(errno)));
    }
  }
  if (!transport) {
    CurlTransport::Options t;
    t.ca_file = options.ca_file;
    t.max_connections = std::max<long>(64, options.max_concurrent_requests);
    transport = std::make_shared<CurlTransport>(env, t);
  }
  return std::unique_ptr<Client>(new Client(env, std::move(bucket), std::move(options),
                                            std::move(transport), ep.scheme, ep.host, ep.path));
}

Client::Client(Env& env, std::string bucket, ClientOptions options,
               std::shared_ptr<HttpTransport> transport, std::string scheme, std::string host,
               std::string base_path)
    : env_(env),
      bucket_(std::move(bucket)),
      options_(std::move(options)),
      transport_(std::move(transport)),
      scheme_(std::move(scheme)),
      host_(std::move(host)),
      base_path_(std::move(base_path)),
      base_url_(scheme_ + "://" + host_ + base_path_),
      path_style_(options_.path_style.value_or(!options_.endpoint.empty())),
      permits_(env, options_.max_concurrent_requests) {}

std::string Client::Describe(std::string_view key) const {
  return fmt::format("s3://{}/{}", bucket_, key);
}

HttpRequest Client::BuildRequest(std::string_view method, std::string_view key,
                                 const QueryString& query) const {
  HttpRequest r;
  r.method = std::string(method);
  // Path-style: /bucket/key, and /bucket for the bucket itself. Virtual-hosted: the bucket
  // moves into the host name and the path is /key, or / for the bucket.
  // (fmt rather than operator+: GCC 12 warns falsely on "literal" + std::string.)
  if (path_style_) {
    std::string path = fmt::format("{}/{}", base_path_, UriEncode(bucket_, true));
    if (!key.empty()) path = fmt::format("{}/{}", path, UriEncode(key, false));
    r.url = fmt::format("{}://{}{}", scheme_, host_, path);
  } else {
    r.url =
        fmt::format("{}://{}.{}{}/{}", scheme_, bucket_, host_, base_path_, UriEncode(key, false));
  }
  if (!query.empty()) r.url = fmt::format("{}?{}", r.url, query.Build());
  r.headers.emplace_back("x-amz-content-sha256", std::string(kEmptySha256));
  if (!options_.session_token.empty()) {
    r.headers.emplace_back("x-amz-security-token", options_.session_token);
  }
  r.sigv4 = fmt::format("aws:amz:{}:s3", options_.region);
  r.access_key_id = options_.access_key_id;
  r.secret_access_key = options_.secret_access_key;
  r.connect_timeout_ms = options_.connect_timeout_ms;
  r.stall_timeout_ms = options_.stall_timeout_ms;
  r.timeout_ms = options_.request_timeout_ms;
  return r;
}

uint64_t Client::BackoffNanos(uint32_t failed_attempt) {
  uint64_t base = options_.retry.base_delay_ms;
  uint64_t cap = std::max<uint64_t>(options_.retry.max_delay_ms, 1);
  uint32_t shift = std::min<uint32_t>(failed_attempt - 1, 30);
  uint64_t d_ms = base > (cap >> shift) ? cap : std::min(cap, base << shift);
  uint64_t d = MillisToNanos(d_ms);
  // Equal jitter: half fixed, half random; see RetryPolicy.
  return d / 2 + env_.RandomBelow(d / 2 + 1);
}

Task<Result<HttpResponse>> Client::Execute(const HttpRequest& request, std::string what,
                                           uint32_t max_attempts, bool quiet, bool missing_is_ok) {
  for (uint32_t attempt = 1;; ++attempt) {
    Result<HttpResponse> r = Status::Unavailable("not sent");
    {
      auto permit = co_await permits_.Acquire();
      attempts_.fetch_add(1, std::memory_order_relaxed);
      r = co_await transport_->Send(request);
    }
    if (r.ok() && missing_is_ok && r->status == 404) {
      auto body = ParseErrorBody(r->body);
      if (!body || body->code != "NoSuchBucket") co_return r;
    }
    Status st = r.ok() ? StatusFromResponse(*r, what) : r.status();
    if (st.ok()) co_return r;
    if (!st.retryable() || attempt >= max_attempts || no_retries_.cancelled()) {
      if (attempt > 1) {
        st = Status(st.code(), fmt::format("{} (after {} attempts)", st.message(), attempt));
      }
      co_return st;
    }
    uint64_t delay = BackoffNanos(attempt);
    if (!quiet) {
      // A warning from the third attempt on, but at most one a minute over all requests:
      // an outage is reported by whoever waits for the store (the volume's StoreHealth),
      // not by a line per retry.
      auto level = spdlog::level::debug;
      const uint64_t now = env_.NowNanos();
      uint64_t last = last_retry_warning_ns_.load();
      if (attempt >= 3 && (last == kNever || now - last >= kRetryWarningIntervalNs) &&
          last_retry_warning_ns_.compare_exchange_strong(last, now)) {
        level = spdlog::level::warn;
      }
      log::Get("portalbd::s3")
          ->log(level, "retrying error=\"{}\" attempt={}/{} backoff_ms={}", st.ToString(), attempt,
                max_attempts, delay / kNanosPerMilli);
    }
    retries_.fetch_add(1, std::memory_order_relaxed);
    co_await no_retries_.Sleep(delay);
    if (no_retries_.cancelled()) {
      co_return Status(st.code(), fmt::format("{} (after {} attempts; retries stopped)",
                                              st.message(), attempt));
    }
  }
}

Task<Result<GetResult>> Client::GetObject(const std::string& key, std::optional<ByteRange> range) {
  HttpRequest req = BuildRequest("GET", key, {});
  req.response_pool = options_.buffer_pool;
  if (range) {
    req.headers.emplace_back("range", range->last
                                          ? fmt::format("bytes={}-{}", range->first, *range->last)
                                          : fmt::format("bytes={}-", range->first));
    if (range->last) req.max_response_bytes = *range->last - range->first + 1 + kErrorBodySlack;
  }
  CO_ASSIGN_OR_RETURN(HttpResponse resp, co_await Execute(req, "GET " + Describe(key),
                                                          options_.retry.max_attempts, false));
  GetResult out{std::move(resp.body), resp.status == 206, std::nullopt};
  // "bytes <first>-<last>/<total>": only the first byte is needed.
  std::string_view cr = resp.Header("content-range");
  if (out.partial && cr.starts_with("bytes ")) {
    cr.remove_prefix(6);
    uint64_t first = 0;
    auto [p, ec] = std::from_chars(cr.data(), cr.data() + cr.size(), first);
    if (ec == std::errc() && p != cr.data() + cr.size() && *p == '-') out.range_first = first;
  }
  co_return out;
}

Task<Result<ObjectMeta>> Client::HeadObject(const std::string& key) {
  HttpRequest req = BuildRequest("HEAD", key, {});
  std::string what = "HEAD " + Describe(key);
  CO_ASSIGN_OR_RETURN(HttpResponse resp,
                      co_await Execute(req, what, options_.retry.max_attempts, false));
  ObjectMeta meta;
  std::string_view len = resp.Header("content-length");
  auto [p, ec] = std::from_chars(len.data(), len.data() + len.size(), meta.size);
  if (len.empty() || ec != std::errc() || p != len.data() + len.size()) {
    co_return Status::Corruption(what + ": response has no valid Content-Length");
  }
  meta.etag = UnquoteEtag(resp.Header("etag"));
  co_return meta;
}

Task<Status> Client::PutObject(const std::string& key, std::string body, bool if_none_match) {
  // One part: the body stays here, alive until the PUT is done, then goes back to the pool.
  std::vector<std::string_view> parts;
  parts.emplace_back(body);
  Status st = co_await PutObjectParts(key, std::move(parts), if_none_match);
  if (options_.buffer_pool) options_.buffer_pool->Give(std::move(body));
  co_return st;
}

Task<Status> Client::PutObjectParts(const std::string& key, std::vector<std::string_view> parts,
                                    bool if_none_match) {
  // (An if, not ?:, around co_await: GCC 12 miscompiles co_await inside ?: into a double
  // destruction.)
  std::string hash;
  uint64_t size = 0;
  for (std::string_view p : parts) size += p.size();
  if (size > kInlineHashBytes) {
    hash = co_await RunBlocking(env_, [&] { return Sha256Hex(parts); });
  } else {
    hash = Sha256Hex(parts);
  }
  HttpRequest req = BuildRequest("PUT", key, {});
  req.headers[0].second = std::move(hash);  // x-amz-content-sha256
  if (if_none_match) req.headers.emplace_back("if-none-match", "*");
  req.body_parts = std::move(parts);
  req.max_response_bytes = kErrorBodySlack;
  auto r = co_await Execute(req, "PUT " + Describe(key), options_.retry.max_attempts, false);
  co_return r.ok() ? Status::Ok() : r.status();
}

Task<Status> Client::DeleteObject(const std::string& key) {
  HttpRequest req = BuildRequest("DELETE", key, {});
  req.max_response_bytes = kErrorBodySlack;
  // S3 answers 204 for missing keys too; some clones answer 404 NoSuchKey. Both mean
  // "gone"; a missing bucket stays an error.
  auto r = co_await Execute(req, "DELETE " + Describe(key), options_.retry.max_attempts, false,
                            /*missing_is_ok=*/true);
  co_return r.ok() ? Status::Ok() : r.status();
}

Task<Result<ListPage>> Client::ListObjectsV2(const ListRequest& request) {
  QueryString q;
  q.Add("list-type", "2").Add("max-keys", std::to_string(request.max_keys));
  // encoding-type=url lets S3 return keys XML cannot carry (control characters).
  q.Add("encoding-type", "url");
  if (!request.prefix.empty()) q.Add("prefix", request.prefix);
  if (!request.start_after.empty()) q.Add("start-after", request.start_after);
  if (!request.continuation_token.empty()) {
    q.Add("continuation-token", request.continuation_token);
  }
  HttpRequest req = BuildRequest("GET", "", q);
  std::string what = "LIST " + Describe(request.prefix);
  CO_ASSIGN_OR_RETURN(HttpResponse resp,
                      co_await Execute(req, what, options_.retry.max_attempts, false));
  auto page = ParseListObjectsV2(resp.body);
  if (!page.ok()) co_return page.status().WithContext(what);
  co_return page;
}

Task<Status> Client::Probe(const std::string& prefix) {
  QueryString q;
  q.Add("list-type", "2").Add("max-keys", "1");
  if (!prefix.empty()) q.Add("prefix", prefix);
  HttpRequest req = BuildRequest("GET", "", q);
  req.connect_timeout_ms = options_.check_access_connect_timeout_ms;
  auto r = co_await Execute(req, "LIST " + Describe(prefix), options_.check_access_attempts,
                            /*quiet=*/true);
  if (!r.ok()) co_return r.status();
  auto page = ParseListObjectsV2(r->body);
  if (!page.ok()) {
    co_return Status::Corruption("the endpoint does not answer like S3: " +
                                 page.status().message());
  }
  co_return Status::Ok();
}

Client::Stats Client::stats() const {
  return Stats{attempts_.load(std::memory_order_relaxed), retries_.load(std::memory_order_relaxed)};
}

}  // namespace portal::s3
