// CurlTransport against sockets on 127.0.0.1 that misbehave: nobody listening, a server
// that accepts and never answers. (Well-behaved servers: sigv4_test.cc, s3rver suites.)
#include "s3/curl_transport.h"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include "env/block_on.h"
#include "env/real_env.h"
#include "testing/testing.h"

namespace portal::s3 {
namespace {

// A listening socket that never accepts: the kernel completes connections into the
// backlog, so requests are sent and never answered.
class SilentListener {
 public:
  SilentListener() {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    REQUIRE(::listen(fd_, 16) == 0);
    socklen_t len = sizeof addr;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
  }
  ~SilentListener() { ::close(fd_); }
  uint16_t port() const { return port_; }

 private:
  int fd_;
  uint16_t port_;
};

HttpRequest Request(std::string method, std::string body) {
  HttpRequest r;
  r.method = std::move(method);
  r.url = "http://127.0.0.1:1/bucket/key";
  r.body = std::move(body);
  return r;
}

HttpRequest Get(uint16_t port) {
  HttpRequest r;
  r.method = "GET";
  r.url = fmt::format("http://127.0.0.1:{}/bucket/key", port);
  return r;
}

TEST_CASE("curl transport: refused connections are retryable errors", "[s3client][curl]") {
  RealEnv env(RealEnv::Options{1, 1});
  env.Start();
  {
    CurlTransport t(env);
    HttpRequest r = Get(testing::FreeLoopbackPort());
    auto got = BlockOn(t.Send(r));
    REQUIRE_FALSE(got.ok());
    CHECK(got.status().IsUnavailable());
    CHECK(got.status().message().starts_with("GET http://127.0.0.1:"));
  }
  env.Stop();
}

TEST_CASE("curl transport: silent servers time out, whole-request and stalled",
          "[s3client][curl]") {
  RealEnv env(RealEnv::Options{1, 1});
  env.Start();
  {
    SilentListener silent;
    CurlTransport t(env);
    HttpRequest whole = Get(silent.port());
    whole.timeout_ms = 300;
    uint64_t start = env.NowNanos();
    auto got = BlockOn(t.Send(whole));
    CHECK(got.status().IsUnavailable());
    CHECK(env.NowNanos() - start < 5 * kNanosPerSecond);

    HttpRequest stalled = Get(silent.port());
    stalled.stall_timeout_ms = 1000;
    got = BlockOn(t.Send(stalled));
    CHECK(got.status().IsUnavailable());
    INFO(got.status().message());
    CHECK(got.status().message().find("too slow") != std::string::npos);
  }
  env.Stop();
}

TEST_CASE("curl transport: requests it cannot express are refused before sending",
          "[s3client][curl]") {
  RealEnv env(RealEnv::Options{1, 1});
  env.Start();
  {
    CurlTransport t(env);
    HttpRequest patch = Request(std::string("PATCH"), "");
    CHECK(BlockOn(t.Send(patch)).status().code() == Status::Code::kInvalidArgument);
    HttpRequest get_with_body = Request(std::string("GET"), std::string("x"));
    CHECK(BlockOn(t.Send(get_with_body)).status().code() == Status::Code::kInvalidArgument);
  }
  env.Stop();
}

}  // namespace
}  // namespace portal::s3
