#include "s3/curl_transport.h"

#include <curl/curl.h>
#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <coroutine>
#include <cstring>
#include <mutex>
#include <optional>
#include <unordered_set>

#include "s3/errors.h"
#include "util/assert.h"
#include "util/buffer_pool.h"

namespace portal::s3 {
namespace {

// curl_global_init is not thread-safe in 7.88; run it once, before any handle exists, and
// never clean up (other users of libcurl in the process may still need it).
void GlobalInitOnce() {
  static std::once_flag once;
  std::call_once(once, [] { PORTAL_CHECK(curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK); });
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() &&
         (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n')) {
    s.remove_suffix(1);
  }
  return s;
}

}  // namespace

struct CurlTransport::Transfer {
  const HttpRequest* request = nullptr;
  std::string what;  // "GET <url>", for messages
  CURL* easy = nullptr;
  curl_slist* headers = nullptr;
  size_t upload_offset = 0;  // of the body
  size_t upload_part = 0;    // with body_parts: the part holding upload_offset,
  size_t part_start = 0;     // which starts here
  bool too_large = false;
  HttpResponse response;
  char errbuf[CURL_ERROR_SIZE] = {0};
  std::optional<Result<HttpResponse>> result;
  std::coroutine_handle<> waiter;

  ~Transfer() {
    if (easy) curl_easy_cleanup(easy);
    if (headers) curl_slist_free_all(headers);
  }
};

namespace {

using Transfer = CurlTransport::Transfer;

size_t OnHeader(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  std::string_view line(data, size * n);
  if (line.starts_with("HTTP/")) {
    t->response.headers.clear();  // a new response begins (e.g. after "100 Continue")
    return size * n;
  }
  size_t colon = line.find(':');
  if (colon == std::string_view::npos) return size * n;
  std::string name(Trim(line.substr(0, colon)));
  std::transform(name.begin(), name.end(), name.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  t->response.headers.emplace_back(std::move(name), std::string(Trim(line.substr(colon + 1))));
  return size * n;
}

size_t OnWrite(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  size_t len = size * n;
  std::string& body = t->response.body;
  if (body.size() + len > t->request->max_response_bytes) {
    t->too_large = true;
    return 0;  // makes curl fail the transfer with CURLE_WRITE_ERROR
  }
  if (body.empty()) {
    curl_off_t expected = -1;
    curl_easy_getinfo(t->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &expected);
    if (expected > 0 && static_cast<uint64_t>(expected) <= t->request->max_response_bytes) {
      const size_t n = static_cast<size_t>(expected);
      if (t->request->response_pool && n >= BufferPool::kMinBytes) {
        body = t->request->response_pool->Take(n);
      } else {
        body.reserve(n);
      }
    }
  }
  body.append(data, len);
  return len;
}

size_t OnRead(char* buffer, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const std::vector<std::string_view>& parts = t->request->body_parts;
  if (parts.empty()) {
    const std::string& body = t->request->body;
    size_t len = std::min(size * n, body.size() - t->upload_offset);
    std::memcpy(buffer, body.data() + t->upload_offset, len);
    t->upload_offset += len;
    return len;
  }
  size_t done = 0;
  while (done < size * n && t->upload_part < parts.size()) {
    std::string_view part = parts[t->upload_part];
    const size_t at = t->upload_offset - t->part_start;
    const size_t len = std::min(size * n - done, part.size() - at);
    std::memcpy(buffer + done, part.data() + at, len);
    done += len;
    t->upload_offset += len;
    if (at + len == part.size()) {
      t->part_start += part.size();
      ++t->upload_part;
    }
  }
  return done;
}

int OnSeek(void* user, curl_off_t offset, int origin) {
  auto* t = static_cast<Transfer*>(user);
  if (origin != SEEK_SET || offset < 0 || static_cast<uint64_t>(offset) > t->request->BodySize()) {
    return CURL_SEEKFUNC_CANTSEEK;
  }
  t->upload_offset = static_cast<size_t>(offset);
  // With body_parts: find the part holding the offset again (rewinds are rare: a redirect
  // or an auth retry re-sends from 0).
  t->upload_part = 0;
  t->part_start = 0;
  const std::vector<std::string_view>& parts = t->request->body_parts;
  while (t->upload_part < parts.size() &&
         t->part_start + parts[t->upload_part].size() <= t->upload_offset) {
    t->part_start += parts[t->upload_part++].size();
  }
  return CURL_SEEKFUNC_OK;
}

// Configures the easy handle; InvalidArgument for requests we cannot express.
Status Setup(Transfer* t, const CurlTransport::Options& options) {
  const HttpRequest& r = *t->request;
  t->easy = curl_easy_init();
  if (!t->easy) return Status::Unavailable("curl_easy_init failed");
  CURL* e = t->easy;
  curl_easy_setopt(e, CURLOPT_URL, r.url.c_str());
  curl_easy_setopt(e, CURLOPT_PRIVATE, t);
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, t->errbuf);
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  // The URL is canonical already (uri.h); curl must not "fix" dot segments in keys.
  curl_easy_setopt(e, CURLOPT_PATH_AS_IS, 1L);
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(e, CURLOPT_HTTP_VERSION, CURL_HTTP_VERSION_1_1);
  curl_easy_setopt(e, CURLOPT_USERAGENT, "portalbd/" PORTALBD_VERSION);
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(r.connect_timeout_ms));
  if (r.timeout_ms > 0) curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, static_cast<long>(r.timeout_ms));
  // Stall detection: fewer than 1 byte/s for the whole window fails the transfer.
  curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME,
                   static_cast<long>(std::max<uint64_t>(1, r.stall_timeout_ms / 1000)));
  curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
  // Larger buffers than the 16/64 KiB defaults: fewer callbacks and syscalls for 8 MiB
  // segments.
  curl_easy_setopt(e, CURLOPT_BUFFERSIZE, 256L * 1024);
  curl_easy_setopt(e, CURLOPT_UPLOAD_BUFFERSIZE, 1024L * 1024);
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, OnHeader);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, t);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, OnWrite);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, t);
  if (options.verbose) curl_easy_setopt(e, CURLOPT_VERBOSE, 1L);
  // Verification stays on (libcurl's default: peer and host name); only the trust
  // anchors change.
  if (!options.ca_file.empty()) curl_easy_setopt(e, CURLOPT_CAINFO, options.ca_file.c_str());

  if (r.method == "GET") {
    curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
  } else if (r.method == "HEAD") {
    curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
  } else if (r.method == "PUT") {
    curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(e, CURLOPT_READFUNCTION, OnRead);
    curl_easy_setopt(e, CURLOPT_READDATA, t);
    curl_easy_setopt(e, CURLOPT_SEEKFUNCTION, OnSeek);
    curl_easy_setopt(e, CURLOPT_SEEKDATA, t);
    curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(r.BodySize()));
  } else if (r.method == "DELETE") {
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, "DELETE");
  } else {
    return Status::InvalidArgument("unsupported HTTP method " + r.method);
  }
  if ((!r.body.empty() || !r.body_parts.empty()) && r.method != "PUT") {
    return Status::InvalidArgument(r.method + " with a body is not supported");
  }

  for (const auto& [name, value] : r.headers) {
    // "name;" is curl's spelling of a header with an empty value ("name:" removes it).
    std::string line = value.empty() ? name + ";" : name + ": " + value;
    curl_slist* next = curl_slist_append(t->headers, line.c_str());
    if (!next) return Status::Unavailable("out of memory building headers");
    t->headers = next;
  }
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, t->headers);

  if (!r.sigv4.empty()) {
    curl_easy_setopt(e, CURLOPT_AWS_SIGV4, r.sigv4.c_str());
    curl_easy_setopt(e, CURLOPT_USERNAME, r.access_key_id.c_str());
    curl_easy_setopt(e, CURLOPT_PASSWORD, r.secret_access_key.c_str());
  }
  return Status::Ok();
}

}  // namespace

CurlTransport::CurlTransport(Env& env, Options options) : env_(env), options_(options) {
  GlobalInitOnce();
  CURLM* m = curl_multi_init();
  PORTAL_ASSERT(m != nullptr, "curl_multi_init failed");
  curl_multi_setopt(m, CURLMOPT_MAXCONNECTS, options_.max_connections);
  multi_ = m;
  thread_ = std::thread([this] { Loop(); });
}

CurlTransport::~CurlTransport() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  curl_multi_wakeup(static_cast<CURLM*>(multi_));
  thread_.join();
  curl_multi_cleanup(static_cast<CURLM*>(multi_));
}

Task<Result<HttpResponse>> CurlTransport::Send(const HttpRequest& request) {
  Transfer t;
  t.request = &request;
  t.what = fmt::format("{} {}", request.method, request.url);
  if (Status s = Setup(&t, options_); !s.ok()) co_return s;

  struct Awaiter {
    CurlTransport* self;
    Transfer* t;
    bool await_ready() const noexcept { return false; }
    void await_suspend(std::coroutine_handle<> h) {
      t->waiter = h;
      self->Submit(t);  // may complete (and be resumed elsewhere) before this returns
    }
    void await_resume() const noexcept {}
  };
  co_await Awaiter{this, &t};
  co_return std::move(*t.result);
}

void CurlTransport::Submit(Transfer* t) {
  {
    std::lock_guard lock(mu_);
    if (!stopping_) {
      pending_.push_back(t);
      t = nullptr;
    }
  }
  if (t != nullptr) {
    Complete(t, Status::Shutdown("HTTP transport stopped"));
    return;
  }
  curl_multi_wakeup(static_cast<CURLM*>(multi_));
}

void CurlTransport::Complete(Transfer* t, Result<HttpResponse> result) {
  t->result.emplace(std::move(result));
  auto h = t->waiter;
  // From here on `t` belongs to the resumed coroutine again: do not touch it.
  env_.Post([h] { h.resume(); });
}

void CurlTransport::Finish(Transfer* t, int curl_code) {
  if (curl_code == CURLE_OK) {
    long http = 0;
    curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &http);
    t->response.status = static_cast<int>(http);
    Complete(t, std::move(t->response));
  } else if (t->too_large) {
    Complete(t, Status::Corruption(fmt::format("{}: response larger than the {} bytes expected",
                                               t->what, t->request->max_response_bytes)));
  } else {
    Complete(t, StatusFromCurl(curl_code, t->errbuf, t->what));
  }
}

void CurlTransport::Loop() {
  auto* m = static_cast<CURLM*>(multi_);
  std::unordered_set<Transfer*> active;
  for (;;) {
    std::vector<Transfer*> added;
    bool stop;
    {
      std::lock_guard lock(mu_);
      added.swap(pending_);
      stop = stopping_;
    }
    for (Transfer* t : added) {
      if (stop) {
        Complete(t, Status::Shutdown("HTTP transport stopped"));
      } else if (CURLMcode rc = curl_multi_add_handle(m, t->easy); rc != CURLM_OK) {
        Complete(t, Status::IOError(fmt::format("{}: {}", t->what, curl_multi_strerror(rc))));
      } else {
        active.insert(t);
      }
    }
    if (stop) {
      for (Transfer* t : active) {
        curl_multi_remove_handle(m, t->easy);
        Complete(t, Status::Shutdown("HTTP transport stopped"));
      }
      return;
    }
    int running = 0;
    curl_multi_perform(m, &running);
    int left = 0;
    while (CURLMsg* msg = curl_multi_info_read(m, &left)) {
      if (msg->msg != CURLMSG_DONE) continue;
      CURL* easy = msg->easy_handle;
      CURLcode code = msg->data.result;  // read before remove_handle invalidates msg
      Transfer* t = nullptr;
      curl_easy_getinfo(easy, CURLINFO_PRIVATE, &t);
      curl_multi_remove_handle(m, easy);
      active.erase(t);
      Finish(t, code);
    }
    curl_multi_poll(m, nullptr, 0, 1000, nullptr);
  }
}

}  // namespace portal::s3
