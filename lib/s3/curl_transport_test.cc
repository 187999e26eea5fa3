// CurlTransport against sockets on 127.0.0.1 that misbehave: nobody listening, a server
// that accepts and never answers; and one that answers a GET once, for where its body goes.
// (Well-behaved servers: sigv4_test.cc, s3rver suites.)
#include "s3/curl_transport.h"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <thread>

#include "env/block_on.h"
#include "env/real_env.h"
#include "testing/testing.h"
#include "util/buffer_pool.h"

namespace portal::s3 {
namespace {

// A listening socket that never accepts (unless a test does, on fd()): the kernel
// completes connections into the backlog, so requests are sent and never answered.
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
  int fd() const { return fd_; }

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

TEST_CASE("curl transport: a large response body is received into a pooled string",
          "[s3client][curl]") {
  // One connection, one answer: a 2 MiB body (at least BufferPool::kMinBytes).
  SilentListener listener;
  const std::string body(2 << 20, 'x');
  std::thread server([&] {
    int fd = ::accept(listener.fd(), nullptr, nullptr);
    REQUIRE(fd >= 0);
    std::string request;
    char buf[4096];
    while (request.find("\r\n\r\n") == std::string::npos) {
      ssize_t n = ::read(fd, buf, sizeof buf);
      if (n <= 0) break;
      request.append(buf, static_cast<size_t>(n));
    }
    std::string response =
        fmt::format("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.size()) + body;
    for (size_t off = 0; off < response.size();) {
      ssize_t n = ::write(fd, response.data() + off, response.size() - off);
      if (n <= 0) break;
      off += static_cast<size_t>(n);
    }
    ::close(fd);
  });
  BufferPool pool;
  std::string kept;
  kept.reserve(2 << 20);
  const char* kept_data = kept.data();
  pool.Give(std::move(kept));
  RealEnv env(RealEnv::Options{1, 1});
  env.Start();
  {
    CurlTransport t(env);
    HttpRequest r = Get(listener.port());
    r.response_pool = &pool;
    auto got = BlockOn(t.Send(r));
    REQUIRE(got.ok());
    CHECK(got->body == body);
    CHECK(pool.hits() == 1);
    CHECK(got->body.data() == kept_data);  // the pooled string's memory, no fresh pages
  }
  server.join();
  env.Stop();
}

TEST_CASE("curl transport: a PUT's body parts are sent in order, across read calls",
          "[s3client][curl]") {
  // Parts of odd sizes around curl's 1 MiB upload buffer, an empty one among them: every
  // byte arrives once, in order (what the server hashes is what the client hashed).
  SilentListener listener;
  const std::string a(700 * 1024 + 3, 'a'), b(1 << 20, 'b'), c(5, 'c');
  std::string d(300 * 1024, '\0');
  for (size_t i = 0; i < d.size(); ++i) d[i] = static_cast<char>(i * 7);
  const std::string expected = a + b + c + d;
  std::string received;
  std::thread server([&] {
    int fd = ::accept(listener.fd(), nullptr, nullptr);
    REQUIRE(fd >= 0);
    std::string request;
    char buf[65536];
    size_t head_end;
    while ((head_end = request.find("\r\n\r\n")) == std::string::npos) {
      ssize_t n = ::read(fd, buf, sizeof buf);
      if (n <= 0) break;
      request.append(buf, static_cast<size_t>(n));
    }
    if (request.find("Expect: 100-continue") != std::string::npos) {
      const std::string cont = "HTTP/1.1 100 Continue\r\n\r\n";
      REQUIRE(::write(fd, cont.data(), cont.size()) == static_cast<ssize_t>(cont.size()));
    }
    received = request.substr(head_end + 4);
    while (received.size() < expected.size()) {
      ssize_t n = ::read(fd, buf, sizeof buf);
      if (n <= 0) break;
      received.append(buf, static_cast<size_t>(n));
    }
    const std::string ok = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    REQUIRE(::write(fd, ok.data(), ok.size()) == static_cast<ssize_t>(ok.size()));
    ::close(fd);
  });
  RealEnv env(RealEnv::Options{1, 1});
  env.Start();
  {
    CurlTransport t(env);
    HttpRequest r = Get(listener.port());
    r.method = "PUT";
    r.body_parts = {a, b, std::string_view(), c, d};
    CHECK(r.BodySize() == expected.size());
    auto got = BlockOn(t.Send(r));
    REQUIRE(got.ok());
    CHECK(got->status == 200);
  }
  server.join();
  env.Stop();
  CHECK(received.size() == expected.size());
  CHECK(received == expected);
}

}  // namespace
}  // namespace portal::s3
