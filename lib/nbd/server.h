// Server: the only Asio-aware NBD file. Accepts connections on TCP ("host:port") or a
// unix socket ("unix:/path") and runs one Session per connection on the RealEnv's
// io_context, serialized per connection by a strand.
//
// Unix sockets: a stale socket file (nobody answers) is replaced; if a live server
// answers on it, Listen() fails and says so; a path that is not a socket is refused.
//
// TLS: with session.tls on or require, a STARTTLS the session acknowledges upgrades the
// socket to a TLS stream with `tls`'s credentials (nbd/tls.h); a failed TLS handshake
// (no or a wrong client certificate, an unknown PSK) closes the connection and is logged.
// The handshake timeout covers the TLS handshake too.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "env/real_env.h"
#include "nbd/export.h"
#include "nbd/inflight_budget.h"
#include "nbd/peer_deadline.h"
#include "nbd/session.h"
#include "nbd/tls.h"
#include "util/connection_set.h"
#include "util/status.h"

namespace portal::nbd {

class Connection;

// A connection the server adopted (Server::Adopt): what its owner may still do with it.
class AdoptedConnection {
 public:
  virtual ~AdoptedConnection() = default;
  // Requests are checked against this size from now on (the volume was resized).
  virtual void SetSize(uint64_t size_bytes) = 0;
};

class Server {
 public:
  struct Options {
    std::string address = "127.0.0.1:10809";
    uint32_t max_connections = 64;
    // A client must reach the transmission phase within this time, or it is dropped
    // (idle connections would otherwise hold max_connections slots forever).
    uint64_t handshake_timeout_ms = 10'000;
    // READ/WRITE payload bytes in flight over all connections (nbd/inflight_budget.h).
    uint64_t max_inflight_bytes = 1ull << 30;
    // Clients that stop sending a request or taking replies, or sit idle (peer_deadline.h).
    PeerDeadline::Options peer;
    Session::Options session;  // its `budget` is the server's own
    // Credentials for STARTTLS: set exactly when session.tls is not kOff; must outlive
    // the server.
    TlsContext* tls = nullptr;
  };

  // `env` and `catalog` must outlive the server.
  Server(RealEnv& env, ExportCatalog& catalog, Options options);
  ~Server();  // Shutdown()s
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds and listens. Errors name the address.
  Status Listen();
  // "127.0.0.1:10809" (the real port when 0 was asked for) or "unix:/path".
  std::string bound_address() const { return bound_address_; }
  // Starts accepting (on the env's executor threads).
  void Start();
  // Stops accepting, lets every connection finish its in-flight requests and close,
  // waiting up to `timeout_ms`. Blocks; never call from an executor thread. Idempotent.
  void Shutdown(uint64_t timeout_ms = 30000);

  // Serves `fd`, a connected stream socket whose peer skips the handshake (the kernel's
  // NBD client, handed the other end through netlink: Session::StartTransmission), on
  // `exp`. Takes `fd` (closed on failure too). `on_closed` runs on an executor thread
  // once the connection has closed, whatever closed it. It counts against
  // max_connections; no idle timeout applies. Refused (Shutdown) once the server stops.
  Result<std::weak_ptr<AdoptedConnection>> Adopt(int fd, std::shared_ptr<OpenExport> exp,
                                                 std::string peer,
                                                 std::function<void()> on_closed);

  size_t connection_count() const;
  const InflightBudget& budget() const { return budget_; }

 private:
  friend class Connection;
  struct Impl;
  void Accept();
  void Unregister(Connection* c);

  RealEnv& env_;
  ExportCatalog& catalog_;
  Options options_;
  std::unique_ptr<Impl> impl_;
  std::string bound_address_;
  std::string unix_path_;
  InflightBudget budget_;  // before connections_: their reply buffers give bytes back to it
  ConnectionSet<Connection> connections_;
  bool started_ = false;  // Start() was called; set and read by the owning thread only
  std::atomic<uint64_t> next_id_ = 0;
};

// Parses "host:port", "[v6]:port" or "unix:/path" without resolving names.
struct ListenAddress {
  bool is_unix = false;
  std::string host;  // or the unix path
  uint16_t port = 0;
};
Result<ListenAddress> ParseListenAddress(std::string_view address);

}  // namespace portal::nbd
