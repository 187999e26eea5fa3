// Client: a blocking client of the control socket (portalctl, tests). One connection, any
// number of requests in sequence; each Call() waits for its reply.
//
// Not thread-safe. The only file where the client's errno values become a Status.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "control/protocol.h"
#include "util/status.h"

namespace portal::control {

class Client {
 public:
  // Connects to the daemon's control socket. Unavailable, naming the socket, when no
  // daemon answers there (no file, or a stale one); PermissionDenied when the socket is
  // not ours to use.
  static Result<std::unique_ptr<Client>> Connect(const std::string& path);
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
  int fd_;
  std::string path_;
  int timeout_ms_ = 0;
  int tick_ms_ = 0;
  std::function<void()> tick_;
  std::string buf_;  // received bytes not yet returned as a line
};

}  // namespace portal::control
