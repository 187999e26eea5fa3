// The server over real loopback sockets: the handshake timeout.
#include "nbd/server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include "env/real_env.h"
#include "nbd/protocol.h"
#include "testing/memory_volume.h"
#include "testing/nbd_script.h"

namespace portal::nbd {
namespace {

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
  Server::Options o;
  o.address = "127.0.0.1:0";
  o.handshake_timeout_ms = 300;
  Server server(env, catalog, o);
  REQUIRE(server.Listen().ok());
  server.Start();
  const uint16_t port =
      static_cast<uint16_t>(std::stoi(server.bound_address().substr(server.bound_address().rfind(':') + 1)));

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

}  // namespace
}  // namespace portal::nbd
