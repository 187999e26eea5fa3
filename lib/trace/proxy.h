// Proxy: trace-record's network side. Accepts NBD clients, connects each to the upstream
// server, relays bytes both ways through an NbdTap and hands finished requests to a
// Recorder. The only Asio-aware file of lib/trace (Asio stays in proxy.cc).
//
// Per connection: one strand; the client's bytes are read only while the tap accepts
// them and the upstream keeps up (at most kBufferBytes buffered per direction), so a fast
// client cannot make the proxy buffer without bound. A client that closes its side makes
// the proxy close its side to the upstream; the upstream closing ends the connection
// once everything it sent has reached the client.
//
// TLS: each side has its own session (NbdTap says when to start them); the contexts in
// Options must outlive the proxy.
//
// Shutdown: stop accepting, stop reading new requests from clients, let in-flight
// requests finish (up to a deadline), then close every connection. Requests still
// unanswered at the deadline are not recorded (the log says how many).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "env/real_env.h"
#include "nbd/handshake.h"  // TlsMode
#include "trace/recorder.h"
#include "util/connection_set.h"
#include "util/status.h"

namespace portal::nbd {
class TlsContext;
}

namespace portal::trace {

class ProxyConnection;

class Proxy {
 public:
  struct Options {
    std::string listen = "127.0.0.1:10809";  // HOST:PORT or unix:/path
    std::string upstream;                    // HOST:PORT or unix:/path
    uint32_t max_connections = 256;
    // Client side: STARTTLS served with `tls` (required unless tls_mode is kOff).
    nbd::TlsMode tls_mode = nbd::TlsMode::kOff;
    nbd::TlsContext* tls = nullptr;
    // Upstream side: STARTTLS towards the upstream with this client context (null: plain),
    // its certificate checked against upstream_tls_hostname (empty: the CA chain only).
    nbd::TlsContext* upstream_tls = nullptr;
    std::string upstream_tls_hostname = {};
  };
  static constexpr size_t kBufferBytes = 1 << 20;

  // `env` and `recorder` must outlive the proxy.
  Proxy(RealEnv& env, Recorder& recorder, Options options);
  ~Proxy();  // Shutdown(0)
  Proxy(const Proxy&) = delete;
  Proxy& operator=(const Proxy&) = delete;

  // Resolves the upstream address and binds the listener. Errors name the address.
  Status Listen();
  // "127.0.0.1:PORT" as bound (the real port when 0 was asked for) or "unix:/path".
  std::string bound_address() const { return bound_address_; }
  void Start();
  // Blocks; never call from an executor thread. Idempotent.
  void Shutdown(uint64_t drain_ms = 5000);

  uint64_t connections_accepted() const { return accepted_.load(); }
  uint64_t requests_lost() const { return lost_.load(); }

 private:
  friend class ProxyConnection;
  struct Impl;
  void Accept();
  void Unregister(ProxyConnection* c);
  void NoteDrained();  // a connection has no request in flight any more

  RealEnv& env_;
  Recorder& recorder_;
  Options options_;
  std::unique_ptr<Impl> impl_;
  std::string bound_address_;
  std::string unix_path_;
  ConnectionSet<ProxyConnection> connections_;
  bool started_ = false;
  std::atomic<uint64_t> accepted_{0};
  std::atomic<uint64_t> lost_{0};
};

}  // namespace portal::trace
