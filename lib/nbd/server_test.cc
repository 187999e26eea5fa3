// The server over real loopback sockets: the handshake timeout, and shutdown.
#include "nbd/server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <atomic>
#include <thread>

#include "env/async.h"
#include "env/real_env.h"
#include "nbd/protocol.h"
#include "testing/memory_volume.h"
#include "testing/nbd_script.h"

namespace portal::nbd {
namespace {

// Options for a server on 127.0.0.1 (a kernel-chosen port) with a 300 ms handshake
// timeout, and the port it bound.
Server::Options ShortHandshakeOptions() {
  Server::Options o;
  o.address = "127.0.0.1:0";
  o.handshake_timeout_ms = 300;
  return o;
}

uint16_t PortOf(const Server& server) {
  const std::string a = server.bound_address();
  return static_cast<uint16_t>(std::stoi(a.substr(a.rfind(':') + 1)));
}

int Connect(uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  return fd;
}

// Reads until EOF or `timeout_ms`; returns true on EOF (the server closed).
bool ClosedWithin(int fd, int timeout_ms) {
  char buf[256];
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, timeout_ms) <= 0) return false;
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) return true;
  }
}

TEST_CASE("a client that never finishes the handshake is dropped, others are not",
          "[nbd][interop]") {
  RealEnv env(RealEnv::Options{.executor_threads = 2, .blocking_threads = 1});
  env.Start();
  auto dev = std::make_shared<testing::MemoryVolume>(1 << 20, 4096);
  SingleExportCatalog catalog(ExportInfo{"portalbd", "", 1 << 20, false}, dev);
  Server server(env, catalog, ShortHandshakeOptions());
  REQUIRE(server.Listen().ok());
  server.Start();
  const uint16_t port = PortOf(server);

  int idle = Connect(port);
  int active = Connect(port);
  std::string go = testing::ClientFlags(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES) +
                   testing::Option(NBD_OPT_GO, testing::InfoOrGoData("portalbd"));
  REQUIRE(::write(active, go.data(), go.size()) == static_cast<ssize_t>(go.size()));
  CHECK(ClosedWithin(idle, 5000));          // dropped after ~300 ms
  CHECK_FALSE(ClosedWithin(active, 1000));  // in transmission: stays
  ::close(idle);
  ::close(active);
  server.Shutdown();
  env.Stop();
}

// A device whose FLUSH waits until released (a store that is failing).
class SlowFlushDevice final : public device::BlockDevice {
 public:
  explicit SlowFlushDevice(Env& env) : env_(env), mem_(1 << 20, 4096) {}
  uint64_t size_bytes() const override { return mem_.size_bytes(); }
  uint32_t block_size() const override { return mem_.block_size(); }
  Task<Status> Read(uint64_t o, std::span<uint8_t> out,
                    std::vector<device::ByteRange>* z) override {
    return mem_.Read(o, out, z);
  }
  Task<Status> Write(uint64_t o, std::span<const uint8_t> d, device::WriteFlags f) override {
    return mem_.Write(o, d, f);
  }
  Task<Status> Flush() override {
    entered = true;
    while (!released.load()) co_await SleepFor(env_, 10 * kNanosPerMilli);
    co_return Status::Ok();
  }
  Task<Status> Trim(uint64_t o, uint64_t n, device::WriteFlags f) override {
    return mem_.Trim(o, n, f);
  }
  Task<Status> WriteZeroes(uint64_t o, uint64_t n, device::ZeroFlags f) override {
    return mem_.WriteZeroes(o, n, f);
  }
  Task<Result<std::vector<device::StatusExtent>>> BlockStatus(uint64_t o, uint64_t n,
                                                               uint32_t max) override {
    return mem_.BlockStatus(o, n, max);
  }
  Task<Status> Cache(uint64_t o, uint64_t n) override { return mem_.Cache(o, n); }
  std::atomic<bool> entered{false};
  std::atomic<bool> released{false};

 private:
  Env& env_;
  testing::MemoryVolume mem_;
};

TEST_CASE("a request in flight at shutdown is answered even past the handshake timeout",
          "[nbd][interop]") {
  RealEnv env(RealEnv::Options{.executor_threads = 2, .blocking_threads = 1});
  env.Start();
  auto dev = std::make_shared<SlowFlushDevice>(env);
  SingleExportCatalog catalog(ExportInfo{"portalbd", "", 1 << 20, false}, dev);
  Server server(env, catalog, ShortHandshakeOptions());
  REQUIRE(server.Listen().ok());
  server.Start();
  const uint16_t port = PortOf(server);

  int fd = Connect(port);
  std::string out = testing::ClientFlags(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES) +
                    testing::Option(NBD_OPT_GO, testing::InfoOrGoData("portalbd")) +
                    testing::Request(NBD_CMD_FLUSH, 77, 0, 0);
  REQUIRE(::write(fd, out.data(), out.size()) == static_cast<ssize_t>(out.size()));
  for (int i = 0; i < 500 && !dev->entered; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  REQUIRE(dev->entered);
  std::thread stopper([&] { server.Shutdown(5000); });  // the FLUSH is in flight
  std::this_thread::sleep_for(std::chrono::milliseconds(600));  // past the handshake timer
  dev->released = true;
  std::string in;
  char buf[4096];
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 5000) <= 0) break;
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) break;
    in.append(buf, static_cast<size_t>(n));
  }
  stopper.join();
  const std::string reply = testing::SimpleReply(0, 77);
  CHECK(in.size() >= reply.size());
  CHECK(in.ends_with(reply));  // answered, not dropped as a stalled handshake
  ::close(fd);
  env.Stop();
}

}  // namespace
}  // namespace portal::nbd
