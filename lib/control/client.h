// Client: a blocking client of the control socket (portalctl, tests), or of a daemon's
// control listener over TCP ([control] listen; the CSI controller reaching a volume's
// owner, docs/csi.md). One connection, any number of requests in sequence; each Call()
// waits for its reply.
//
// Not thread-safe. The only file where the client's errno and OpenSSL errors become a
// Status.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "control/protocol.h"
#include "util/status.h"

struct ssl_st;
struct ssl_ctx_st;

namespace portal::control {

struct TcpClientOptions {
  std::string token;               // the daemon's [control] token_file content (required)
  bool tls = false;                // speak TLS; the daemon's certificate is verified
  std::string tls_ca_file;         // TLS: the CA it must chain to ("": the system's CAs)
  std::string tls_hostname;        // TLS: the name (or IP) it must carry ("": the address's host)
  int connect_timeout_ms = 10000;  // TCP connect, TLS handshake and auth, each
};

class Client {
 public:
  // Connects to the daemon's control socket. Unavailable, naming the socket, when no
  // daemon answers there (no file, or a stale one); PermissionDenied when the socket is
  // not ours to use.
  static Result<std::unique_ptr<Client>> Connect(const std::string& path);
  // Connects to a daemon's control listener at "host:port" ("[v6]:port"; names are
  // resolved), over TLS if asked, and authenticates. Unavailable when nothing answers in
  // time (retry); PermissionDenied when the daemon refuses the token or its certificate
  // does not verify; InvalidArgument for a bad address or CA file.
  static Result<std::unique_ptr<Client>> ConnectTcp(const std::string& address,
                                                    const TcpClientOptions& options);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Waits at most this long for each reply (0: forever, the default).
  void set_timeout_ms(int timeout_ms) { timeout_ms_ = timeout_ms; }
  // While waiting for a reply, calls `tick` every `tick_ms` (portalctl's progress line).
  void set_wait_tick(int tick_ms, std::function<void()> tick) {
    tick_ms_ = tick_ms;
    tick_ = std::move(tick);
  }

  // Sends a request and waits for its reply. A reply that is not valid is Corruption; a
  // daemon that closes the connection first is Unavailable.
  Result<Reply> Call(const Request& request);
  // The raw form: sends `bytes` as they are, or reads one reply line (without "\n").
  Status Send(std::string_view bytes);
  Result<std::string> ReadLine();

 private:
  Client(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  Status StartTls(const TcpClientOptions& options, const std::string& host);
  // One recv() or SSL_read() into buf_: bytes read, 0 at the end of the stream.
  Result<size_t> Receive();
  int fd_;
  ssl_ctx_st* ssl_ctx_ = nullptr;  // TLS: owned
  ssl_st* ssl_ = nullptr;          // TLS: owned
  std::string path_;
  int timeout_ms_ = 0;
  int tick_ms_ = 0;
  std::function<void()> tick_;
  std::string buf_;  // received bytes not yet returned as a line
};

}  // namespace portal::control
