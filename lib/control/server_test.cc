// The control socket server and client over a real unix socket, with a fake handler.
#include "control/server.h"

#include <arpa/inet.h>
#include <grp.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstring>
#include <fstream>
#include <thread>

#include "control/client.h"
#include "env/async.h"
#include "env/real_env.h"
#include "testing/testing.h"

namespace portal::control {
namespace {

// status answers at once; snapshot.create "slow" waits until the gate opens.
class FakeHandler final : public Handler {
 public:
  explicit FakeHandler(Env& env) : changed_(env) {}

  Task<Reply> Handle(Request request) override {
    ++calls;
    if (request.op == Op::kSnapshotCreate && request.name == "slow") {
      ++waiting;
      for (;;) {
        const uint64_t seen = changed_.epoch();
        if (open_) break;
        co_await changed_.Wait(seen);
      }
      --waiting;
      SnapshotEntry s;
      s.name = "slow";
      co_return SnapshotReply{s};
    }
    if (request.op == Op::kSnapshotGet)
      co_return ErrorFromStatus(Status::NotFound("no " + request.name));
    if (request.op == Op::kStatus) {
      DaemonStatus d;
      d.version = "fake";
      co_return StatusReply{d};
    }
    co_return OkReply{};
  }

  void Open() {
    open_ = true;
    changed_.NotifyAll();
  }

  std::atomic<int> calls{0};
  std::atomic<int> waiting{0};

 private:
  Notifier changed_;
  std::atomic<bool> open_{false};
};

struct Fixture {
  explicit Fixture(uint32_t max_connections = 16, std::string sub = "run/portalbd/ctl.sock")
      : handler(env), path(dir.Join(sub)) {
    env.Start();
    Server::Options o;
    o.path = path;
    o.max_connections = max_connections;
    server = std::make_unique<Server>(env, handler, o);
  }
  ~Fixture() {
    handler.Open();
    server->Shutdown(10000);
    env.Stop();
  }
  void Listen() {
    Status st = server->Listen();
    REQUIRE(st.ok());
    server->Start();
  }
  std::unique_ptr<Client> Connect() {
    auto c = Client::Connect(path);
    if (!c.ok()) FAIL(c.status().ToString());
    (*c)->set_timeout_ms(10000);
    return std::move(*c);
  }

  testing::TempDir dir;
  RealEnv env;
  FakeHandler handler;
  std::string path;
  std::unique_ptr<Server> server;
};

bool WaitUntil(const std::function<bool()>& cond, int timeout_ms = 10000) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (!cond()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

std::string Line(Client& c) {
  auto l = c.ReadLine();
  if (!l.ok()) FAIL(l.status().ToString());
  return *l;
}

TEST_CASE("control server creates the directory and a 0600 socket, removed at shutdown",
          "[control]") {
  Fixture f;
  f.Listen();
  struct stat st;
  REQUIRE(::lstat(f.path.c_str(), &st) == 0);
  CHECK(S_ISSOCK(st.st_mode));
  CHECK((st.st_mode & 0777) == 0600);
  f.server->Shutdown();
  CHECK(::lstat(f.path.c_str(), &st) != 0);
}

TEST_CASE("control server with a socket_group: the group's socket, mode 0660, unknown refused",
          "[control]") {
  testing::TempDir dir;
  RealEnv env;
  FakeHandler handler(env);
  // Our own group: chown to it needs no privilege, so the test runs as any user.
  const gid_t gid = ::getegid();
  struct group* g = ::getgrgid(gid);
  REQUIRE(g != nullptr);
  Server::Options o;
  o.path = dir.Join("ctl.sock");
  o.group = g->gr_name;
  auto server = std::make_unique<Server>(env, handler, o);
  REQUIRE(server->Listen().ok());
  struct stat st;
  REQUIRE(::lstat(o.path.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0660);
  CHECK(st.st_gid == gid);
  server->Shutdown();

  o.path = dir.Join("ctl2.sock");
  o.group = "no-such-group-portalbd";
  server = std::make_unique<Server>(env, handler, o);
  Status bad = server->Listen();
  CHECK(bad.code() == Status::Code::kInvalidArgument);
  CHECK(bad.message().find("control.socket_group: no group named 'no-such-group-portalbd'") !=
        std::string::npos);
  server->Shutdown();
}

TEST_CASE("control server answers several requests of one connection in order", "[control]") {
  Fixture f;
  f.Listen();
  auto c = f.Connect();
  // Three requests in one write, one of them malformed: three replies, in order.
  REQUIRE(c->Send("{\"op\":\"status\",\"id\":1}\nnot json\n{\"op\":\"snapshot.get\",\"name\":"
                  "\"x\",\"id\":\"three\"}\n")
              .ok());
  CHECK(Line(*c).starts_with(R"({"ok":true,"id":1,"status":{"version":"fake",)"));
  CHECK(Line(*c) ==
        R"({"ok":false,"error":{"code":"bad_request","message":"request is not valid JSON"}})");
  CHECK(Line(*c) == R"({"ok":false,"id":"three","error":{"code":"not_found","message":"no x"}})");
  auto r = c->Call(Request{Op::kSnapshotDelete, "x", ""});
  REQUIRE(r.ok());
  CHECK(std::holds_alternative<OkReply>(*r));
  CHECK(f.handler.calls == 3);  // the malformed line never reached the handler
}

TEST_CASE("a too-long control request is answered and the connection stays usable", "[control]") {
  Fixture f;
  f.Listen();
  auto c = f.Connect();
  REQUIRE(c->Send(std::string(3 * kMaxRequestBytes, 'x') + "\n{\"op\":\"status\"}\n").ok());
  CHECK(Line(*c) ==
        R"({"ok":false,"error":{"code":"request_too_long","message":"request is longer than )"
        R"(16384 bytes; skipped up to its newline"}})");
  CHECK(Line(*c).starts_with(R"({"ok":true,"status":)"));
  CHECK(f.handler.calls == 1);
}

TEST_CASE("a request without its newline is answered when the client half-closes", "[control]") {
  Fixture f;
  f.Listen();
  // The client has no half-close of its own: a raw socket.
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, f.path.c_str(), sizeof addr.sun_path - 1);
  int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  const std::string req = R"({"op":"snapshot.list"})";
  REQUIRE(::write(fd, req.data(), req.size()) == static_cast<ssize_t>(req.size()));
  ::shutdown(fd, SHUT_WR);
  std::string got;
  char buf[256];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof buf)) > 0) got.append(buf, static_cast<size_t>(n));
  ::close(fd);
  CHECK(got == "{\"ok\":true}\n");  // then the server closed
}

TEST_CASE("control connections run concurrently, each one request at a time", "[control]") {
  Fixture f;
  f.Listen();
  auto a = f.Connect();
  auto b = f.Connect();
  REQUIRE(a->Send("{\"op\":\"snapshot.create\",\"name\":\"slow\"}\n{\"op\":\"status\"}\n").ok());
  REQUIRE(WaitUntil([&] { return f.handler.waiting == 1; }));
  // b is answered while a's first request waits; a's second has not started.
  auto r = b->Call(Request{Op::kStatus, "", ""});
  REQUIRE(r.ok());
  CHECK(std::holds_alternative<StatusReply>(*r));
  CHECK(f.handler.calls == 2);
  f.handler.Open();
  CHECK(Line(*a).starts_with(R"({"ok":true,"snapshot":{"name":"slow",)"));
  CHECK(Line(*a).starts_with(R"({"ok":true,"status":)"));
}

TEST_CASE("control shutdown answers the request in flight, closes idle connections", "[control]") {
  Fixture f;
  f.Listen();
  auto busy = f.Connect();
  auto idle = f.Connect();
  REQUIRE(idle->Call(Request{Op::kStatus, "", ""}).ok());
  REQUIRE(busy->Send("{\"op\":\"snapshot.create\",\"name\":\"slow\"}\n").ok());
  REQUIRE(WaitUntil([&] { return f.handler.waiting == 1; }));
  std::atomic<bool> done{false};
  std::thread stopper([&] {
    f.server->Shutdown(10000);
    done = true;
  });
  auto closed = idle->ReadLine();  // closed at once
  REQUIRE_FALSE(closed.ok());
  CHECK(closed.status().IsUnavailable());
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  CHECK_FALSE(done);  // still waiting for the request in flight
  f.handler.Open();
  CHECK(Line(*busy).starts_with(R"({"ok":true,"snapshot":)"));
  stopper.join();
  CHECK(done);
  CHECK(::access(f.path.c_str(), F_OK) != 0);
  CHECK_FALSE(Client::Connect(f.path).ok());
}

TEST_CASE("the control client gives up on a reply after its timeout", "[control]") {
  Fixture f;
  f.Listen();
  auto c = f.Connect();
  c->set_timeout_ms(200);
  auto r = c->Call(Request{Op::kSnapshotCreate, "slow", ""});
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().IsUnavailable());
  CHECK(r.status().message() == "no reply from portalbd on " + f.path + " within 200 ms");
}

TEST_CASE("control connections beyond the limit are told so and closed", "[control]") {
  Fixture f(1);
  f.Listen();
  auto first = f.Connect();
  REQUIRE(first->Call(Request{Op::kStatus, "", ""}).ok());
  auto second = f.Connect();
  CHECK(Line(*second) ==
        R"({"ok":false,"error":{"code":"too_many_connections","message":"too many control )"
        R"(connections (limit 1); try again"}})");
  CHECK(first->Call(Request{Op::kStatus, "", ""}).ok());
  first.reset();
  REQUIRE(WaitUntil([&] { return f.server->connection_count() == 0; }));
  CHECK(f.Connect()->Call(Request{Op::kStatus, "", ""}).ok());
}

TEST_CASE("a stale control socket is replaced, a live one refused, a file kept", "[control]") {
  testing::TempDir dir;
  const std::string path = dir.Join("ctl.sock");
  {  // a socket file nobody listens on: what a killed daemon leaves behind
    int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    ::close(fd);
  }
  auto stale = Client::Connect(path);
  REQUIRE_FALSE(stale.ok());
  CHECK(stale.status().message() ==
        "portalbd is not running: nobody answers on the control socket " + path +
            " (a stale file left by a daemon that died)");

  RealEnv env;
  env.Start();
  FakeHandler handler(env);
  Server first(env, handler, Server::Options{path});
  REQUIRE(first.Listen().ok());
  first.Start();
  Server second(env, handler, Server::Options{path});
  Status st = second.Listen();
  CHECK(st.code() == Status::Code::kBusy);
  CHECK(st.message() == "another portalbd is running: it answers on the control socket " + path +
                            "; stop it or use another socket (--socket, [nbd] socket)");
  second.Shutdown();
  CHECK(::access(path.c_str(), F_OK) == 0);  // the loser never removes the winner's file
  first.Shutdown();

  const std::string file = dir.Join("plain");
  std::ofstream(file) << "x";
  Server third(env, handler, Server::Options{file});
  st = third.Listen();
  CHECK(st.code() == Status::Code::kInvalidArgument);
  CHECK(st.message() ==
        "control socket " + file + " exists and is not a socket; refusing to replace it");
  third.Shutdown();
  CHECK(::access(file.c_str(), F_OK) == 0);
  env.Stop();
}

TEST_CASE("control client says which socket it tried when no daemon runs", "[control]") {
  testing::TempDir dir;
  auto c = Client::Connect(dir.Join("none.sock"));
  REQUIRE_FALSE(c.ok());
  CHECK(c.status().IsUnavailable());
  CHECK(c.status().message() == "portalbd is not running: no control socket at " +
                                    dir.Join("none.sock") +
                                    " (start portalbd, or name its socket with --socket)");
  RealEnv env;
  FakeHandler handler(env);
  Server s(env, handler, Server::Options{"/" + std::string(200, 'x')});
  CHECK(s.Listen().code() == Status::Code::kInvalidArgument);
}

}  // namespace
}  // namespace portal::control

// --- over TCP ---------------------------------------------------------------------------

namespace portal::control {
namespace {

constexpr std::string_view kTestToken = "0123456789abcdef0123456789abcdef";

struct TcpFixture {
  explicit TcpFixture(uint64_t handshake_timeout_ms = 10000) : handler(env) {
    env.Start();
    Server::Options o;
    o.tcp_address = "127.0.0.1:0";
    o.token = std::string(kTestToken);
    o.handshake_timeout_ms = handshake_timeout_ms;
    server = std::make_unique<Server>(env, handler, o);
    Status st = server->Listen();
    REQUIRE(st.ok());
    server->Start();
  }
  ~TcpFixture() {
    handler.Open();
    server->Shutdown(10000);
    env.Stop();
  }
  Result<std::unique_ptr<Client>> Connect(std::string token) {
    TcpClientOptions o;
    o.token = std::move(token);
    return Client::ConnectTcp(server->address(), o);
  }

  RealEnv env;
  FakeHandler handler;
  std::unique_ptr<Server> server;
};

// A raw TCP client: what a peer that does not authenticate sends.
int RawConnect(const std::string& address) {
  const auto colon = address.rfind(':');
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<uint16_t>(std::stoi(address.substr(colon + 1))));
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
  return fd;
}

// Everything the server sends until it closes (or 10 s pass).
std::string ReadToEnd(int fd) {
  timeval tv{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  std::string out;
  char buf[4096];
  for (;;) {
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

TEST_CASE("control over TCP: the right token first, then requests", "[control][auth]") {
  TcpFixture f;
  auto c = f.Connect(std::string(kTestToken));
  REQUIRE(c.ok());
  Request status;
  status.op = Op::kStatus;
  auto reply = (*c)->Call(status);
  REQUIRE(reply.ok());
  REQUIRE(std::holds_alternative<StatusReply>(*reply));
  CHECK(std::get<StatusReply>(*reply).status.version == "fake");
  CHECK(f.handler.calls == 1);  // the auth request never reaches the handler
}

TEST_CASE("control over TCP: a wrong token is refused and the connection closed",
          "[control][auth]") {
  TcpFixture f;
  auto c = f.Connect(std::string(kTestToken.substr(0, 31)) + "x");
  REQUIRE(c.status().code() == Status::Code::kPermissionDenied);
  CHECK_THAT(c.status().message(), Catch::Contains("unauthenticated: wrong token"));
  CHECK(f.handler.calls == 0);
}

TEST_CASE("control over TCP: a request before auth is refused, never handled", "[control][auth]") {
  TcpFixture f;
  int fd = RawConnect(f.server->address());
  const std::string req = R"({"op":"snapshot.create","name":"s","id":3})"
                          "\n"
                          R"({"op":"status"})"
                          "\n";
  REQUIRE(::send(fd, req.data(), req.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(req.size()));
  const std::string got = ReadToEnd(fd);  // one refusal, then the end
  ::close(fd);
  CHECK_THAT(got, Catch::StartsWith(R"({"ok":false,"id":3,"error":{"code":"unauthenticated")"));
  CHECK(std::count(got.begin(), got.end(), '\n') == 1);
  CHECK(f.handler.calls == 0);
}

TEST_CASE("control over TCP: a peer that never authenticates is closed at the deadline",
          "[control][auth]") {
  TcpFixture f(200);
  int fd = RawConnect(f.server->address());
  const auto start = std::chrono::steady_clock::now();
  CHECK(ReadToEnd(fd).empty());
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(5));
  ::close(fd);
  CHECK(WaitUntil([&] { return f.server->connection_count() == 0; }));
}

TEST_CASE("control over TCP needs a token and a TCP address", "[control][auth]") {
  RealEnv env;
  FakeHandler handler(env);
  Server::Options o;
  o.tcp_address = "127.0.0.1:0";
  CHECK(Server(env, handler, o).Listen().code() == Status::Code::kInvalidArgument);
  o.token = std::string(kTestToken);
  o.tcp_address = "unix:/tmp/nope.sock";
  CHECK(Server(env, handler, o).Listen().code() == Status::Code::kInvalidArgument);
}

}  // namespace
}  // namespace portal::control
