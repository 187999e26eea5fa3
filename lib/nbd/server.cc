#include "nbd/server.h"

#include <unistd.h>

#include <charconv>
#include <chrono>

#include <arpa/inet.h>

#include <cstring>

#include <asio/basic_socket_acceptor.hpp>
#include <asio/bind_executor.hpp>
#include <asio/generic/stream_protocol.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/local/stream_protocol.hpp>
#include <asio/post.hpp>
#include <asio/ssl/stream.hpp>
#include <asio/steady_timer.hpp>
#include <asio/strand.hpp>
#include <asio/write.hpp>

#include "nbd/listener.h"
#include "util/log.h"

namespace portal::nbd {

using Socket = asio::generic::stream_protocol::socket;
using TlsStream = asio::ssl::stream<Socket&>;

// The most one sendmsg is offered (the kernel takes what the socket buffer holds).
constexpr size_t kMaxWriteBytes = 8 << 20;

Result<ListenAddress> ParseListenAddress(std::string_view address) {
  ListenAddress out;
  if (address.starts_with("unix:")) {
    out.is_unix = true;
    out.host = std::string(address.substr(5));
    if (out.host.empty() || out.host[0] != '/') {
      return Status::InvalidArgument("unix socket address needs an absolute path: " +
                                     std::string(address));
    }
    return out;
  }
  size_t colon = address.rfind(':');
  if (colon == std::string_view::npos || colon == 0) {
    return Status::InvalidArgument("address must be HOST:PORT or unix:/path, got '" +
                                   std::string(address) + "'");
  }
  std::string_view host = address.substr(0, colon);
  std::string_view port = address.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  unsigned value = 0;
  auto [p, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (ec != std::errc() || p != port.data() + port.size() || value > 65535) {
    return Status::InvalidArgument("bad port in address '" + std::string(address) + "'");
  }
  out.host = std::string(host);
  if (out.host == "localhost") out.host = "127.0.0.1";
  out.port = static_cast<uint16_t>(value);
  return out;
}

struct Server::Impl {
  // A strand serializes accept completions with Shutdown()'s close().
  explicit Impl(asio::io_context& io) : acceptor(asio::make_strand(io)) {}
  Acceptor acceptor;
};

// One accepted socket driving one Session; see session.h for the loop.
class Connection final : public std::enable_shared_from_this<Connection>,
                         public Session::Host,
                         public AdoptedConnection {
 public:
  Connection(Server& server, Socket socket, std::string peer,
             const PeerDeadline::Options& deadlines)
      : server_(server),
        socket_(std::move(socket)),
        strand_(asio::make_strand(server.env_.io_context())),
        handshake_timer_(strand_),
        peer_timer_(strand_),
        peer_deadline_(deadlines),
        session_(server.catalog_, *this, server.options_.session, std::move(peer)) {}

  // An adopted socket: no handshake, no handshake timer.
  void BeginTransmission(std::shared_ptr<OpenExport> exp, std::function<void()> on_closed) {
    on_closed_ = std::move(on_closed);
    asio::post(strand_, [self = shared_from_this(), exp = std::move(exp)]() mutable {
      self->session_.StartTransmission(std::move(exp));
      self->Pump();
    });
  }

  void SetSize(uint64_t size_bytes) override {
    asio::post(strand_, [self = shared_from_this(), size_bytes] {
      self->session_.SetSize(size_bytes);
    });
  }

  void Begin() {
    asio::post(strand_, [self = shared_from_this()] {
      self->session_.Start();
      self->Pump();
    });
    handshake_timer_.expires_after(
        std::chrono::milliseconds(server_.options_.handshake_timeout_ms));
    handshake_timer_.async_wait([self = shared_from_this()](const std::error_code& ec) {
      // Only a stalled handshake: a session draining at shutdown owes its replies.
      if (ec || self->closed_ || !self->session_.in_handshake()) return;
      log::Get("portalbd::nbd")
          ->warn("handshake timed out, closing peer={} timeout_ms={}", self->session_.peer(),
                 self->server_.options_.handshake_timeout_ms);
      self->session_.OnOutputError();  // drop it: nothing more is read or written
      self->Pump();
    });
  }

  void Shutdown() {
    asio::post(strand_, [self = shared_from_this()] {
      self->session_.Shutdown();
      self->Pump();
    });
  }

  void RunInContext(std::function<void()> fn) override {
    asio::post(strand_, [self = shared_from_this(), fn = std::move(fn)] {
      fn();
      self->Pump();
    });
  }

  std::shared_ptr<void> KeepAlive() override { return shared_from_this(); }

 private:
  void Pump() {
    if (closed_) return;
    if (!writing_ && session_.HasOutput()) {
      spans_.clear();
      session_.GatherOutput(&spans_, 64);
      buffers_.clear();
      for (auto s : spans_) buffers_.emplace_back(s.data(), s.size());
      writing_ = true;
      auto done = asio::bind_executor(
          strand_, [self = shared_from_this()](const std::error_code& ec, size_t n) {
            self->writing_ = false;
            if (ec) {
              self->session_.OnOutputError();
            } else {
              self->session_.ConsumeOutput(n);
            }
            self->Pump();
          });
      if (tls_) {
        asio::async_write(*tls_, buffers_, std::move(done));
      } else {
        // Each write_some as large as the socket takes: asio's default completion
        // condition caps one at 64 KiB, which split a 1 MiB READ reply into 16 sendmsg
        // calls, most of them after a trip through epoll.
        asio::async_write(
            socket_, buffers_,
            [](const std::error_code& ec, size_t) -> size_t { return ec ? 0 : kMaxWriteBytes; },
            std::move(done));
      }
    }
    if (session_.WantsTls() && !writing_ && !session_.HasOutput() && !tls_) StartTls();
    if (!reading_) {
      std::span<uint8_t> space = session_.InputSpace();
      if (!space.empty()) {
        reading_ = true;
        auto done = asio::bind_executor(
            strand_, [self = shared_from_this()](const std::error_code& ec, size_t n) {
              self->reading_ = false;
              if (ec) {
                self->session_.OnInputEof();
              } else {
                self->session_.CommitInput(n);
              }
              self->Pump();
            });
        if (tls_) {
          tls_->async_read_some(asio::buffer(space.data(), space.size()), std::move(done));
        } else {
          socket_.async_read_some(asio::buffer(space.data(), space.size()), std::move(done));
        }
      }
    }
    if (session_.Finished() && !writing_ && !session_.HasOutput()) {
      closed_ = true;
      handshake_timer_.cancel();
      peer_timer_.cancel();
      std::error_code ignored;
      socket_.shutdown(asio::socket_base::shutdown_both, ignored);
      socket_.close(ignored);
      log::Get("portalbd::nbd")->debug("connection closed peer={}", session_.peer());
      // Unregister after the close; pending handlers still hold us alive.
      server_.Unregister(this);
      if (on_closed_) std::exchange(on_closed_, nullptr)();
      return;
    }
    WatchPeer();
  }

  // Arms peer_timer_ for the earliest deadline the client now runs against.
  void WatchPeer() {
    const uint64_t at = peer_deadline_.Update(session_.peer_wait(), NowMs());
    if (at == peer_armed_at_ms_) return;
    peer_armed_at_ms_ = at;
    if (at == 0) {
      peer_timer_.cancel();
      return;
    }
    peer_timer_.expires_at(std::chrono::steady_clock::time_point(std::chrono::milliseconds(at)));
    peer_timer_.async_wait([self = shared_from_this()](const std::error_code& ec) {
      if (ec || self->closed_) return;
      self->peer_armed_at_ms_ = 0;
      const char* why = self->peer_deadline_.Expired(self->session_.peer_wait(), NowMs());
      if (why == nullptr) return self->WatchPeer();
      log::Get("portalbd::nbd")
          ->warn("client too slow, closing peer={} waited_for={} timeout_ms={}",
                 self->session_.peer(), why,
                 std::string_view(why) == "idle"
                     ? self->peer_deadline_.options().idle_timeout_ms
                     : self->peer_deadline_.options().request_timeout_ms);
      self->session_.OnOutputError();  // read and write nothing more
      std::error_code ignored;
      self->socket_.cancel(ignored);  // a write the client never takes would hang forever
      self->Pump();
    });
  }

  static uint64_t NowMs() {
    return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                     std::chrono::steady_clock::now().time_since_epoch())
                                     .count());
  }

  // The session acknowledged STARTTLS and its ACK is sent: TLS handshake, then the
  // session negotiates on over TLS. No read is pending (the session wanted none).
  void StartTls() {
    PORTAL_ASSERT(server_.options_.tls != nullptr, "STARTTLS without TLS credentials");
    tls_ = std::make_unique<TlsStream>(socket_, server_.options_.tls->context());
    tls_->async_handshake(
        asio::ssl::stream_base::server,
        asio::bind_executor(strand_, [self = shared_from_this()](const std::error_code& ec) {
          if (self->closed_) return;  // timed out: the socket is closed
          if (ec) {
            log::Get("portalbd::nbd")
                ->warn("TLS handshake failed, closing peer={} error=\"{}\"", self->session_.peer(),
                       ec.message());
            self->session_.OnOutputError();
          } else {
            log::Get("portalbd::nbd")
                ->debug("TLS established peer={} {}", self->session_.peer(),
                        DescribeTlsSession(self->tls_->native_handle()));
            self->session_.OnTlsStarted();
          }
          self->Pump();
        }));
  }

  Server& server_;
  Socket socket_;
  asio::strand<asio::io_context::executor_type> strand_;
  asio::steady_timer handshake_timer_;
  asio::steady_timer peer_timer_;  // the earliest of peer_deadline_'s deadlines
  PeerDeadline peer_deadline_;
  uint64_t peer_armed_at_ms_ = 0;  // what peer_timer_ is armed for (0: nothing)
  Session session_;
  std::unique_ptr<TlsStream> tls_;  // after STARTTLS: every byte goes through it
  bool reading_ = false;
  bool writing_ = false;
  bool closed_ = false;
  std::vector<std::span<const uint8_t>> spans_;
  std::vector<asio::const_buffer> buffers_;
  std::function<void()> on_closed_;  // adopted connections: told once closed
};

Server::Server(RealEnv& env, ExportCatalog& catalog, Options options)
    : env_(env),
      catalog_(catalog),
      options_(std::move(options)),
      impl_(std::make_unique<Impl>(env.io_context())),
      budget_(options_.max_inflight_bytes),
      connections_(options_.max_connections) {
  PORTAL_ASSERT((options_.session.tls == TlsMode::kOff) == (options_.tls == nullptr),
                "TLS mode and credentials disagree");
  options_.session.budget = &budget_;
}

Server::~Server() { Shutdown(); }

Status Server::Listen() {
  auto bound = BindListener(env_.io_context(), impl_->acceptor, options_.address);
  if (!bound.ok()) return bound.status();
  unix_path_ = bound->unix_path;
  bound_address_ = bound->address;
  return Status::Ok();
}

void Server::Start() {
  started_ = true;
  asio::post(impl_->acceptor.get_executor(), [this] { Accept(); });
}

void Server::Accept() {
  impl_->acceptor.async_accept([this](const std::error_code& ec, Socket socket) {
    if (connections_.stopping()) return;
    if (ec) {
      if (ec != asio::error::operation_aborted) {
        log::Get("portalbd::nbd")->warn("accept failed error=\"{}\"", ec.message());
        Accept();
      }
      return;
    }
    std::error_code ignored;
    std::string peer = unix_path_.empty() ? "tcp" : "unix";
    if (unix_path_.empty()) {
      socket.set_option(asio::ip::tcp::no_delay(true), ignored);
      sockaddr_storage ss;
      socklen_t len = sizeof ss;
      if (::getpeername(socket.native_handle(), reinterpret_cast<sockaddr*>(&ss), &len) == 0 &&
          ss.ss_family == AF_INET) {
        auto* in = reinterpret_cast<sockaddr_in*>(&ss);
        char buf[INET_ADDRSTRLEN];
        ::inet_ntop(AF_INET, &in->sin_addr, buf, sizeof buf);
        peer = std::string(buf) + ":" + std::to_string(ntohs(in->sin_port));
      }
    }
    ConnectionSet<Connection>::Admit admit;
    std::shared_ptr<Connection> conn = connections_.Add(
        [&] {
          peer += "#" + std::to_string(++next_id_);
          return std::make_shared<Connection>(*this, std::move(socket), peer, options_.peer);
        },
        &admit);
    if (admit == ConnectionSet<Connection>::Admit::kFull) {
      log::Get("portalbd::nbd")
          ->warn("connection refused: limit reached peer={} max_connections={}", peer,
                 options_.max_connections);
    }
    if (!conn) socket.close(ignored);
    if (conn) {
      log::Get("portalbd::nbd")->debug("connection accepted peer={}", peer);
      conn->Begin();
    }
    Accept();
  });
}

Result<std::weak_ptr<AdoptedConnection>> Server::Adopt(int fd, std::shared_ptr<OpenExport> exp,
                                                       std::string peer,
                                                       std::function<void()> on_closed) {
  Socket socket(env_.io_context());
  std::error_code ec;
  socket.assign(asio::generic::stream_protocol(AF_UNIX, SOCK_STREAM), fd, ec);
  if (ec) {
    ::close(fd);
    return Status::IOError("cannot serve the socket of " + peer + ": " + ec.message());
  }
  PeerDeadline::Options deadlines = options_.peer;
  deadlines.idle_timeout_ms = 0;  // an idle block device is no stalled client
  ConnectionSet<Connection>::Admit admit;
  std::shared_ptr<Connection> conn = connections_.Add(
      [&] {
        peer += "#" + std::to_string(++next_id_);
        return std::make_shared<Connection>(*this, std::move(socket), peer, deadlines);
      },
      &admit);
  if (!conn) {
    socket.close(ec);
    if (admit == ConnectionSet<Connection>::Admit::kFull) {
      return Status::Busy("NBD connection limit reached (nbd.max_connections = " +
                          std::to_string(options_.max_connections) + ")");
    }
    return Status::Shutdown("the NBD server is stopping");
  }
  log::Get("portalbd::nbd")->debug("connection adopted peer={}", peer);
  conn->BeginTransmission(std::move(exp), std::move(on_closed));
  return std::weak_ptr<AdoptedConnection>(conn);
}

void Server::Unregister(Connection* c) { connections_.Remove(c); }

size_t Server::connection_count() const { return connections_.size(); }

void Server::Shutdown(uint64_t timeout_ms) {
  std::vector<std::shared_ptr<Connection>> conns;
  if (!connections_.Stop(&conns)) return;
  CloseAcceptor(impl_->acceptor, started_);
  if (!started_) {
    // Nothing ran (as when the daemon gives up after a failed Listen()): no connections.
    if (!unix_path_.empty()) ::unlink(unix_path_.c_str());
    return;
  }
  for (auto& c : conns) c->Shutdown();
  if (!connections_.WaitEmpty(std::chrono::milliseconds(timeout_ms))) {
    log::Get("portalbd::nbd")
        ->warn("shutdown: connections still open after {} ms count={}", timeout_ms,
               connections_.size());
  }
  if (!unix_path_.empty()) ::unlink(unix_path_.c_str());
}

}  // namespace portal::nbd
