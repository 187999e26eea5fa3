// FakeHttp: an s3::HttpTransport for unit tests. A handler decides every response (or
// transport error); every request is recorded. Completes without suspending, so it works
// under SimEnv and RealEnv alike. Thread-safe.
#pragma once

#include <fmt/format.h>

#include <functional>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "s3/http.h"

namespace portal::testing {

class FakeHttp final : public s3::HttpTransport {
 public:
  using Handler = std::function<Result<s3::HttpResponse>(const s3::HttpRequest&)>;
  explicit FakeHttp(Handler handler) : handler_(std::move(handler)) {}

  Task<Result<s3::HttpResponse>> Send(const s3::HttpRequest& request) override {
    Handler h;
    {
      std::lock_guard lock(mu_);
      requests_.push_back(request);
      // The parts are the caller's, valid only while the request runs: keep a copy.
      if (!request.body_parts.empty()) {
        requests_.back().body = request.JoinedBody();
        requests_.back().body_parts.clear();
      }
      h = handler_;
    }
    co_return h(request);
  }

  std::vector<s3::HttpRequest> requests() const {
    std::lock_guard lock(mu_);
    return requests_;
  }
  size_t count() const {
    std::lock_guard lock(mu_);
    return requests_.size();
  }
  void set_handler(Handler h) {
    std::lock_guard lock(mu_);
    handler_ = std::move(h);
  }

 private:
  mutable std::mutex mu_;
  Handler handler_;
  std::vector<s3::HttpRequest> requests_;
};

inline s3::HttpResponse HttpReply(int status, std::string body = "",
                                  std::vector<std::pair<std::string, std::string>> headers = {}) {
  s3::HttpResponse r;
  r.status = status;
  r.body = std::move(body);
  r.headers = std::move(headers);
  return r;
}

// An S3 error document.
inline std::string S3ErrorXml(const std::string& code, const std::string& message = "msg") {
  return fmt::format(
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{}</Code><Message>{}</Message>"
      "<RequestId>r1</RequestId></Error>",
      code, message);
}

}  // namespace portal::testing
