// Server: the control socket. A thin Asio adapter (the only Asio-aware control file)
// around the sans-io protocol in control/protocol.h: it accepts on a unix socket, splits
// each connection's bytes into request lines, hands each request to a Handler and writes
// the reply. One connection's requests run one after another, in order; connections run
// concurrently.
//
// The socket file: its parent directory is created; it is made mode 0600 (or, with a
// `group`, given to that group and made 0660) before listen(), so no connection is ever
// accepted under wider permissions. A stale file (nobody answers)
// is replaced; if a live server answers on it, Listen() fails with Busy and says so; a
// path that is not a socket is refused. Shutdown() removes the file it bound.
//
// Bounds: max_connections (one more is told too_many_connections and closed), one request
// line of kMaxRequestBytes, one request in flight per connection.
//
// Over TCP (Options::tcp_address set; docs/control.md "Over TCP"): the same protocol, for
// a controller on another host. Every connection authenticates first (control/auth.h:
// its first request is {"op":"auth","token":...}, anything else or a wrong token is
// answered "unauthenticated" and closed), within handshake_timeout_ms of its accept (TLS
// handshake included), or is closed. With `tls`, connections speak TLS from the first
// byte.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "control/protocol.h"
#include "env/real_env.h"
#include "env/task.h"
#include "util/connection_set.h"
#include "util/status.h"

namespace portal::nbd {
class TlsContext;
}

namespace portal::control {

// What the daemon does with a request. Called on an executor thread; may suspend (a
// snapshot create or restore takes seconds). Must be thread-safe: connections call it
// concurrently. A request's snapshot name has not been checked: the handler answers a
// name the volume would refuse with invalid_argument (docs/control.md).
class Handler {
 public:
  virtual ~Handler() = default;
  virtual Task<Reply> Handle(Request request) = 0;
};

class Connection;

class Server {
 public:
  struct Options {
    std::string path;  // absolute path of the socket file
    // A group name: the socket is chowned to it and made 0660, so its members may run
    // portalctl. Empty: owner only (0600). An unknown group, or one the process may not
    // give files to, fails Listen().
    std::string group = "";
    uint32_t max_connections = 16;
    size_t max_request_bytes = kMaxRequestBytes;
    // TCP instead of the unix socket (`path` and `group` unused): "host:port" as
    // nbd::BindListener takes it (port 0: the kernel picks; see address()).
    std::string tcp_address = "";
    std::string token = "";                 // TCP: the shared secret (required)
    nbd::TlsContext* tls = nullptr;         // TCP: TLS credentials, or plain; must outlive us
    uint64_t handshake_timeout_ms = 10000;  // TCP: accept to authenticated
  };

  // `env` and `handler` must outlive the server.
  Server(RealEnv& env, Handler& handler, Options options);
  ~Server();  // Shutdown()s
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Creates the parent directory, replaces a stale socket file, binds, chmods 0600 (or
  // chowns to `group` and chmods 0660) and listens. Busy if a live server answers on the
  // path; errors name the path.
  Status Listen();
  // Starts accepting (on the env's executor threads).
  void Start();
  // Stops accepting, closes idle connections, lets requests in flight finish and their
  // replies be written (up to `timeout_ms`), removes the socket file. Blocks; never call
  // from an executor thread. Idempotent.
  void Shutdown(uint64_t timeout_ms = 120000);

  const std::string& path() const { return options_.path; }
  // TCP: the address bound ("127.0.0.1:41234"), after Listen().
  const std::string& address() const { return address_; }
  size_t connection_count() const;

  struct Stream;  // a connection's bytes (server.cc)

 private:
  friend class Connection;
  struct Impl;
  void Accept();
  void AcceptTcp();
  // Starts a connection on an accepted stream, or refuses it (too many).
  void Admit(std::unique_ptr<Stream> stream);
  Status ListenTcp();
  void Unregister(Connection* c);

  RealEnv& env_;
  Handler& handler_;
  Options options_;
  std::unique_ptr<Impl> impl_;
  std::string address_;   // TCP: as bound
  bool bound_ = false;    // we created the socket file (ours to remove)
  bool started_ = false;  // set and read by the owning thread only
  ConnectionSet<Connection> connections_;
};

}  // namespace portal::control
