// Listening sockets and address resolution for the Asio-aware network files (nbd/server.cc,
// nbd/client.cc, trace/proxy.cc). This header includes Asio: include it from .cc files
// only, never from another header.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>

#include <asio/basic_socket_acceptor.hpp>
#include <asio/post.hpp>
#include <asio/generic/stream_protocol.hpp>
#include <asio/io_context.hpp>

#include "util/status.h"

namespace portal::nbd {

using Acceptor = asio::basic_socket_acceptor<asio::generic::stream_protocol>;
using Endpoint = asio::generic::stream_protocol::endpoint;

struct BoundListener {
  std::string address;    // "127.0.0.1:10809" (the real port when 0 was asked for) or "unix:/p"
  std::string unix_path;  // the socket file we bound (ours to unlink at shutdown), or ""
  bool tcp = true;
};

// Binds `acceptor` to `address` ("host:port" with an IP literal or localhost, "[v6]:port",
// "unix:/path") and listens. Unix paths: a stale socket file (nobody answers) is replaced;
// a live server on it is Busy; a path that is not a socket is refused. Errors name the
// address.
Result<BoundListener> BindListener(asio::io_context& io, Acceptor& acceptor,
                                   const std::string& address);

// The endpoint to connect to for "host:port" (names resolved) or "unix:/path".
Result<Endpoint> ResolveEndpoint(asio::io_context& io, const std::string& address);

// Closes `acceptor`, so that a pending async_accept completes with operation_aborted. With
// the accept loop started, on the acceptor's executor, waiting at most 5 s for that;
// otherwise here (nothing runs there, and the executor may be stopped already). Any
// acceptor type: the NBD server's, the proxy's, the control socket's.
template <typename AnyAcceptor>
void CloseAcceptor(AnyAcceptor& acceptor, bool started) {
  if (!started) {
    std::error_code ignored;
    acceptor.close(ignored);
    return;
  }
  std::mutex m;
  std::condition_variable closed_cv;
  bool closed = false;
  asio::post(acceptor.get_executor(), [&] {
    std::error_code ignored;
    acceptor.close(ignored);
    std::lock_guard lock(m);
    closed = true;
    closed_cv.notify_all();
  });
  std::unique_lock lock(m);
  closed_cv.wait_for(lock, std::chrono::seconds(5), [&] { return closed; });
}

}  // namespace portal::nbd
