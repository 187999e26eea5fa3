#include "control/server.h"

#include <fmt/format.h>
#include <grp.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <array>
#include <asio/bind_executor.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/local/stream_protocol.hpp>
#include <asio/post.hpp>
#include <asio/ssl/stream.hpp>
#include <asio/steady_timer.hpp>
#include <asio/strand.hpp>
#include <asio/write.hpp>
#include <chrono>
#include <cstring>
#include <filesystem>

#include "control/auth.h"
#include "nbd/listener.h"
#include "nbd/tls.h"
#include "util/log.h"

namespace portal::control {

namespace {

using Socket = asio::local::stream_protocol::socket;
using Acceptor = asio::local::stream_protocol::acceptor;

auto Log() { return log::Get("portalbd::control"); }

// The one place where errno and asio errors become a Status for the control socket.
Status SocketError(const std::string& what, const std::error_code& ec) {
  return Status::IOError(fmt::format("{}: {}", what, ec.message()));
}

// OK if `path` is free to bind (a stale socket file is removed).
Status PreparePath(asio::io_context& io, const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) return Status::Ok();  // nothing there
  if (!S_ISSOCK(st.st_mode)) {
    return Status::InvalidArgument(
        fmt::format("control socket {} exists and is not a socket; refusing to replace it", path));
  }
  Socket probe(io);
  std::error_code ec;
  probe.open(asio::local::stream_protocol(), ec);
  if (!ec) probe.non_blocking(true, ec);  // a listener with a full backlog must not hang us
  if (ec) return SocketError("control socket probe", ec);
  probe.connect(asio::local::stream_protocol::endpoint(path), ec);
  if (!ec || ec == asio::error::would_block || ec == asio::error::try_again ||
      ec == asio::error::in_progress) {
    return Status::Busy(fmt::format(
        "another portalbd is running: it answers on the control socket {}; stop it or use "
        "another socket (--socket, [nbd] socket)",
        path));
  }
  if (ec != asio::error::connection_refused && ec != asio::error::not_found &&
      ec.value() != ENOENT) {
    return SocketError("probing control socket " + path, ec);
  }
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    return SocketError("removing stale control socket " + path,
                       std::error_code(errno, std::generic_category()));
  }
  Log()->info("removed stale control socket path={}", path);
  return Status::Ok();
}

// Gives the socket file at `path` its permissions: 0600, or `group_name`'s and 0660.
Status RestrictSocket(const std::string& path, const std::string& group_name) {
  if (!group_name.empty()) {
    std::array<char, 16384> buf;
    struct group g {};
    struct group* found = nullptr;
    int rc = ::getgrnam_r(group_name.c_str(), &g, buf.data(), buf.size(), &found);
    if (found == nullptr) {
      return Status::InvalidArgument(
          fmt::format("control.socket_group: no group named '{}'{}", group_name,
                      rc == 0 ? "" : fmt::format(" ({})", std::strerror(rc))));
    }
    if (::chown(path.c_str(), static_cast<uid_t>(-1), found->gr_gid) != 0) {
      return SocketError(
          fmt::format("control.socket_group: chown {} to group {}", path, group_name),
          std::error_code(errno, std::generic_category()));
    }
  }
  const mode_t mode = group_name.empty() ? 0600 : 0660;
  if (::chmod(path.c_str(), mode) != 0) {
    return SocketError(fmt::format("chmod {:o} {}", mode, path),
                       std::error_code(errno, std::generic_category()));
  }
  return Status::Ok();
}

}  // namespace

struct Server::Impl {
  // A strand serializes accept completions with Shutdown()'s close().
  explicit Impl(asio::io_context& io)
      : acceptor(asio::make_strand(io)), tcp_acceptor(asio::make_strand(io)) {}
  Acceptor acceptor;
  nbd::Acceptor tcp_acceptor;  // Options::tcp_address set
};

// A connection's bytes: a unix socket, a TCP socket, or TLS over TCP. Every completion
// runs on `strand` (bound here: a std::function handler carries no executor of its own).
struct Server::Stream {
  using IoHandler = std::function<void(const std::error_code&, size_t)>;
  using Strand = asio::strand<asio::io_context::executor_type>;
  explicit Stream(asio::io_context& io) : strand(asio::make_strand(io)) {}
  virtual ~Stream() = default;
  virtual bool tls() const { return false; }
  virtual void Handshake(std::function<void(const std::error_code&)> done) { done({}); }
  virtual void ReadSome(asio::mutable_buffer b, IoHandler h) = 0;
  virtual void WriteAll(asio::const_buffer b, IoHandler h) = 0;
  virtual void Close() = 0;
  Strand strand;
};

namespace {

template <typename S>
class PlainStream final : public Server::Stream {
 public:
  PlainStream(asio::io_context& io, S socket) : Stream(io), socket_(std::move(socket)) {}
  void ReadSome(asio::mutable_buffer b, IoHandler h) override {
    socket_.async_read_some(b, asio::bind_executor(strand, std::move(h)));
  }
  void WriteAll(asio::const_buffer b, IoHandler h) override {
    asio::async_write(socket_, b, asio::bind_executor(strand, std::move(h)));
  }
  void Close() override {
    std::error_code ignored;
    socket_.shutdown(asio::socket_base::shutdown_both, ignored);
    socket_.close(ignored);
  }

 private:
  S socket_;
};

using TcpSocket = asio::generic::stream_protocol::socket;

class TlsStream final : public Server::Stream {
 public:
  TlsStream(asio::io_context& io, TcpSocket socket, nbd::TlsContext& tls)
      : Stream(io), stream_(std::move(socket), tls.context()) {}
  bool tls() const override { return true; }
  void Handshake(std::function<void(const std::error_code&)> done) override {
    stream_.async_handshake(asio::ssl::stream_base::server,
                            asio::bind_executor(strand, std::move(done)));
  }
  void ReadSome(asio::mutable_buffer b, IoHandler h) override {
    stream_.async_read_some(b, asio::bind_executor(strand, std::move(h)));
  }
  void WriteAll(asio::const_buffer b, IoHandler h) override {
    asio::async_write(stream_, b, asio::bind_executor(strand, std::move(h)));
  }
  void Close() override {
    // No close_notify: the peer learns from the closed socket; a TLS shutdown would wait
    // on a peer that may never answer.
    std::error_code ignored;
    stream_.lowest_layer().shutdown(asio::socket_base::shutdown_both, ignored);
    stream_.lowest_layer().close(ignored);
  }

 private:
  asio::ssl::stream<TcpSocket> stream_;
};

}  // namespace

// One accepted stream. Everything runs on its strand: read until a line is complete, run
// that request, write the reply, then the next line; one request at a time. Over TCP the
// first line is the auth request, checked here, never handed to the handler.
class Connection final : public std::enable_shared_from_this<Connection> {
 public:
  Connection(Server& server, std::unique_ptr<Server::Stream> stream)
      : server_(server),
        stream_(std::move(stream)),
        strand_(stream_->strand),
        deadline_(strand_),
        reader_(server.options_.max_request_bytes),
        authenticated_(server.options_.tcp_address.empty()) {}

  void Begin() {
    asio::post(strand_, [self = shared_from_this()] {
      if (self->authenticated_) return self->Next();
      self->deadline_.expires_after(
          std::chrono::milliseconds(self->server_.options_.handshake_timeout_ms));
      self->deadline_.async_wait([self](const std::error_code& ec) {
        if (ec || self->authenticated_ || self->closed_) return;
        Log()->info("control: TCP connection closed: no auth within {} ms",
                    self->server_.options_.handshake_timeout_ms);
        self->Close();
      });
      self->stream_->Handshake(
          asio::bind_executor(self->strand_, [self](const std::error_code& ec) {
            if (self->closed_) return;
            if (ec) {
              Log()->info("control: TLS handshake failed error=\"{}\"", ec.message());
              return self->Close();
            }
            self->Next();
          }));
    });
  }

  // Closes at once when idle; a request in flight finishes and its reply is written first.
  void Shutdown() {
    asio::post(strand_, [self = shared_from_this()] {
      self->stopping_ = true;
      if (!self->busy_) self->Close();
    });
  }

 private:
  void Next() {
    if (closed_) return;
    if (stopping_) return Close();
    if (auto line = reader_.Next()) return Dispatch(std::move(*line));
    if (eof_) return Close();
    stream_->ReadSome(asio::buffer(buf_),
                      asio::bind_executor(strand_, [self = shared_from_this()](
                                                       const std::error_code& ec, size_t n) {
                        if (self->closed_) return;
                        if (ec) {
                          self->eof_ = true;
                          self->reader_.Finish();
                        } else {
                          self->reader_.Feed(std::string_view(self->buf_.data(), n));
                        }
                        self->Next();
                      }));
  }

  // The first line over TCP: the right token, or an error reply and the end.
  void Authenticate(const LineReader::Line& line) {
    std::string id;
    std::optional<ErrorReply> err = line.too_long
                                        ? std::optional(ErrorReply{std::string(kUnauthenticated),
                                                                   "the auth request is too long"})
                                        : CheckAuthLine(line.text, server_.options_.token, &id);
    if (err) {
      Log()->warn("control: TCP connection refused: {}", err->message);
      close_after_write_ = true;
      return Write(EncodeReply(*err, id));
    }
    authenticated_ = true;
    deadline_.cancel();
    Log()->debug("control: TCP connection authenticated");
    Write(EncodeReply(OkReply{}, id));
  }

  void Dispatch(LineReader::Line line) {
    if (!authenticated_) return Authenticate(line);
    if (line.too_long) {
      Log()->info("control: request too long; skipped");
      return Write(EncodeReply(
          ErrorReply{std::string(kRequestTooLong),
                     fmt::format("request is longer than {} bytes; skipped up to its newline",
                                 server_.options_.max_request_bytes)}));
    }
    std::string id;
    auto parsed = ParseRequest(line.text, &id);
    if (auto* err = std::get_if<ErrorReply>(&parsed)) {
      Log()->info("control: bad request code={} message=\"{}\"", err->code, err->message);
      return Write(EncodeReply(*err, id));
    }
    busy_ = true;
    Start(server_.handler_.Handle(std::move(std::get<Request>(parsed))),
          [self = shared_from_this(), id = std::move(id)](Reply reply) mutable {
            std::string bytes = EncodeReply(reply, id);
            asio::post(self->strand_, [self, bytes = std::move(bytes)]() mutable {
              self->busy_ = false;
              self->Write(std::move(bytes));
            });
          });
  }

  void Write(std::string bytes) {
    if (closed_) return;
    out_ = std::move(bytes);
    stream_->WriteAll(asio::buffer(out_),
                      asio::bind_executor(
                          strand_, [self = shared_from_this()](const std::error_code& ec, size_t) {
                            // An error: the client went away.
                            if (ec || self->close_after_write_) return self->Close();
                            self->Next();
                          }));
  }

  void Close() {
    if (closed_) return;
    closed_ = true;
    deadline_.cancel();
    stream_->Close();
    server_.Unregister(this);
  }

  Server& server_;
  std::unique_ptr<Server::Stream> stream_;
  asio::strand<asio::io_context::executor_type> strand_;
  asio::steady_timer deadline_;  // TCP: accept to authenticated
  LineReader reader_;
  std::array<char, 4096> buf_;
  std::string out_;
  bool busy_ = false;      // a request is running
  bool eof_ = false;       // the client will send nothing more
  bool stopping_ = false;  // the server is shutting down
  bool closed_ = false;
  bool authenticated_;              // always, on the unix socket
  bool close_after_write_ = false;  // the auth refusal: close once it is written
};

Server::Server(RealEnv& env, Handler& handler, Options options)
    : env_(env),
      handler_(handler),
      options_(std::move(options)),
      impl_(std::make_unique<Impl>(env.io_context())),
      connections_(options_.max_connections) {}

Server::~Server() { Shutdown(); }

Status Server::ListenTcp() {
  if (options_.token.empty()) {
    return Status::InvalidArgument("control over TCP needs a token (control.token_file)");
  }
  auto bound = nbd::BindListener(env_.io_context(), impl_->tcp_acceptor, options_.tcp_address);
  if (!bound.ok()) return bound.status().WithContext("control.listen");
  if (!bound->tcp) {
    return Status::InvalidArgument(
        fmt::format("control.listen {}: a TCP address (HOST:PORT) is needed; the unix socket is "
                    "[nbd] socket",
                    options_.tcp_address));
  }
  address_ = bound->address;
  return Status::Ok();
}

Status Server::Listen() {
  if (!options_.tcp_address.empty()) return ListenTcp();
  const std::string& path = options_.path;
  if (path.empty() || path[0] != '/') {
    return Status::InvalidArgument("control socket needs an absolute path, got '" + path + "'");
  }
  if (path.size() >= sizeof(sockaddr_un{}.sun_path)) {
    return Status::InvalidArgument(
        fmt::format("control socket path {} is {} bytes long; the limit is {}", path, path.size(),
                    sizeof(sockaddr_un{}.sun_path) - 1));
  }
  std::error_code ec;
  const auto parent = std::filesystem::path(path).parent_path();
  std::filesystem::create_directories(parent, ec);
  if (ec) return SocketError("cannot create the control socket's directory " + parent.string(), ec);
  RETURN_IF_ERROR(PreparePath(env_.io_context(), path));
  Acceptor& acceptor = impl_->acceptor;
  const asio::local::stream_protocol::endpoint ep(path);
  acceptor.open(ep.protocol(), ec);
  if (!ec) acceptor.bind(ep, ec);
  if (ec) return SocketError("cannot bind the control socket " + path, ec);
  bound_ = true;
  // Before listen(): until then nobody can connect, so the file is never reachable with
  // the umask's wider permissions.
  RETURN_IF_ERROR(RestrictSocket(path, options_.group));
  acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return SocketError("cannot listen on the control socket " + path, ec);
  return Status::Ok();
}

void Server::Start() {
  started_ = true;
  if (!options_.tcp_address.empty()) {
    asio::post(impl_->tcp_acceptor.get_executor(), [this] { AcceptTcp(); });
  } else {
    asio::post(impl_->acceptor.get_executor(), [this] { Accept(); });
  }
}

void Server::Accept() {
  impl_->acceptor.async_accept([this](const std::error_code& ec, Socket socket) {
    if (connections_.stopping()) return;
    if (ec) {
      if (ec != asio::error::operation_aborted) {
        Log()->warn("control socket accept failed error=\"{}\"", ec.message());
        Accept();
      }
      return;
    }
    Admit(std::make_unique<PlainStream<Socket>>(env_.io_context(), std::move(socket)));
    Accept();
  });
}

void Server::AcceptTcp() {
  impl_->tcp_acceptor.async_accept([this](const std::error_code& ec, TcpSocket socket) {
    if (connections_.stopping()) return;
    if (ec) {
      if (ec != asio::error::operation_aborted) {
        Log()->warn("control TCP accept failed error=\"{}\"", ec.message());
        AcceptTcp();
      }
      return;
    }
    std::error_code ignored;
    socket.set_option(asio::ip::tcp::no_delay(true), ignored);
    if (options_.tls != nullptr) {
      Admit(std::make_unique<TlsStream>(env_.io_context(), std::move(socket), *options_.tls));
    } else {
      Admit(std::make_unique<PlainStream<TcpSocket>>(env_.io_context(), std::move(socket)));
    }
    AcceptTcp();
  });
}

void Server::Admit(std::unique_ptr<Stream> stream) {
  // Admitted in one critical section with Shutdown()'s snapshot of the connections: a
  // connection is either in it (and told to shut down) or never started.
  ConnectionSet<Connection>::Admit admit;
  std::shared_ptr<Connection> conn = connections_.Add(
      [&] { return std::make_shared<Connection>(*this, std::move(stream)); }, &admit);
  if (admit == ConnectionSet<Connection>::Admit::kStopping) return;
  if (admit == ConnectionSet<Connection>::Admit::kFull) {
    Log()->warn("control connection refused: limit reached max_connections={}",
                options_.max_connections);
    if (stream->tls()) return stream->Close();  // no handshake to say it in
    auto s = std::shared_ptr<Stream>(std::move(stream));
    auto msg = std::make_shared<std::string>(
        EncodeReply(ErrorReply{std::string(kTooManyConnections),
                               fmt::format("too many control connections (limit {}); try again",
                                           options_.max_connections)}));
    s->WriteAll(asio::buffer(*msg), [s, msg](const std::error_code&, size_t) { s->Close(); });
  } else {
    conn->Begin();
  }
}

void Server::Unregister(Connection* c) { connections_.Remove(c); }

size_t Server::connection_count() const { return connections_.size(); }

void Server::Shutdown(uint64_t timeout_ms) {
  std::vector<std::shared_ptr<Connection>> conns;
  if (!connections_.Stop(&conns)) return;
  nbd::CloseAcceptor(impl_->acceptor, started_);
  nbd::CloseAcceptor(impl_->tcp_acceptor, started_);
  for (auto& c : conns) c->Shutdown();
  if (!connections_.WaitEmpty(std::chrono::milliseconds(timeout_ms))) {
    Log()->warn("shutdown: control requests still running after {} ms count={}", timeout_ms,
                connections_.size());
  }
  if (bound_) ::unlink(options_.path.c_str());
}

}  // namespace portal::control
